-- The vector extension is left in place: it is a server prerequisite, like the
-- database itself, and may have been created by an administrator.
DROP TABLE world_checkpoints;
DROP TABLE worlds;
