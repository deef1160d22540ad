-- Who runs each world. One process owns a world at a time: it holds a
-- session advisory lock on the world (released by PostgreSQL the moment its
-- connection ends, so a process that died frees the world at once) and this
-- row says who it is. Every write-behind commit checks `token` in its own
-- transaction, so a process that lost the world (its lock connection dropped
-- and another process took over) can never write into it again.
CREATE TABLE world_leases (
    world_id     bigint      PRIMARY KEY REFERENCES worlds (id) ON DELETE CASCADE,
    token        bigint      NOT NULL,
    -- "hearth pid 4242 on host alpha"
    owner        text        NOT NULL CHECK (length(owner) BETWEEN 1 AND 300),
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
