-- Worlds are the unit of tenancy: every world-scoped table carries world_id.
-- pgvector is not a "trusted" extension: creating it needs a superuser, unless
-- an administrator created it in this database beforehand.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE worlds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug            text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The embedding model every vector of this world was made with, and its
    -- dimension. Vectors carry their dimension too and a composite foreign key
    -- ties the two, so a vector of another dimension cannot be stored.
    embedding_model text        NOT NULL CHECK (length(embedding_model) BETWEEN 1 AND 200),
    embedding_dim   integer     NOT NULL CHECK (embedding_dim BETWEEN 1 AND 16000),
    settings        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    archived_at     timestamptz,
    CONSTRAINT worlds_id_embedding_dim_key UNIQUE (id, embedding_dim)
);

-- One row per committed flush of the live world: the database never holds
-- half a tick, so the newest row is where a restart resumes.
CREATE TABLE world_checkpoints (
    world_id     bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    tick         bigint      NOT NULL CHECK (tick >= 0),
    -- in-game calendar time (no time zone: it is the world's own clock)
    game_time    timestamp   NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, tick)
);
