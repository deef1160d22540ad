DROP TABLE agent_memories;
