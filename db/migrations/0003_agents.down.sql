DROP TABLE agent_states;
DROP TABLE agents;
