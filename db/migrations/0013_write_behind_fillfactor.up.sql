-- The write-behind writer rewrites the row of every agent whose state
-- changed, every flush interval. Leaving free space on each page lets those
-- updates be HOT (heap-only tuples: the new version goes on the same page and
-- no index is touched, since no indexed column changes), which is most of
-- the cost of a flush. Applies to pages written from now on.
ALTER TABLE agent_states SET (fillfactor = 50);
ALTER TABLE agent_relationships SET (fillfactor = 70);
ALTER TABLE agent_plans SET (fillfactor = 70);
