-- What the simulation needs to resume exactly where a checkpoint left it,
-- beyond the relational columns: each agent's components, and the world's
-- own state (clock, conversations under way, path queue, counters). Both are
-- serialized by hearth; the format carries its own version.
ALTER TABLE agent_states ADD COLUMN sim bytea;
ALTER TABLE world_checkpoints ADD COLUMN state bytea;
