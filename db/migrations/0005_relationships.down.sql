DROP TABLE agent_character_relationships;
DROP TABLE agent_relationships;
