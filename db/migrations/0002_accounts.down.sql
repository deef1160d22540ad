DROP TABLE sessions;
DROP TABLE world_members;
DROP TABLE characters;
DROP TABLE users;
