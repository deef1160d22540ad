ALTER TABLE world_checkpoints DROP COLUMN state;
ALTER TABLE agent_states DROP COLUMN sim;
