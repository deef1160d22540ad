ALTER TABLE agent_states RESET (fillfactor);
ALTER TABLE agent_relationships RESET (fillfactor);
ALTER TABLE agent_plans RESET (fillfactor);
