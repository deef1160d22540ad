-- The memory stream. Append-only and written at thousands of rows per second,
-- so ids are assigned by the server (per agent) and the table carries no
-- vector index on its hot rows: an HNSW index cuts inserts ~50x and, under an
-- agent filter, returns almost nothing (see docs/database.md). Per-agent
-- similarity search is an exact scan over that agent's rows; only reflections
-- (rare, and searched across agents) get an HNSW index.
CREATE TABLE agent_memories (
    agent_id                bigint    NOT NULL,
    id                      bigint    NOT NULL CHECK (id > 0),
    world_id                bigint    NOT NULL,
    kind                    text      NOT NULL CHECK (kind IN ('observation', 'conversation', 'reflection', 'plan', 'metacognition')),
    content                 text      NOT NULL CHECK (length(content) BETWEEN 1 AND 8000),
    importance              smallint  NOT NULL CHECK (importance BETWEEN 1 AND 10),
    emotional_valence       real      NOT NULL DEFAULT 0 CHECK (emotional_valence BETWEEN -1 AND 1),
    emotional_intensity     real      NOT NULL DEFAULT 0 CHECK (emotional_intensity BETWEEN 0 AND 1),
    tags                    text[]    NOT NULL DEFAULT '{}',
    related_agent_ids       bigint[]  NOT NULL DEFAULT '{}',
    related_character_ids   bigint[]  NOT NULL DEFAULT '{}',
    location                text,
    created_game_time       timestamp NOT NULL,
    last_accessed_game_time timestamp NOT NULL,
    -- 0 for what was perceived; 1 + the deepest evidence for reflections
    depth                   smallint  NOT NULL DEFAULT 0 CHECK (depth BETWEEN 0 AND 64),
    evidence_ids            bigint[]  NOT NULL DEFAULT '{}',
    -- NULL until the embedder has run; the dimension travels with the vector
    embedding               vector,
    embedding_dim           integer,
    PRIMARY KEY (agent_id, id),
    CONSTRAINT agent_memories_accessed_after_created CHECK (last_accessed_game_time >= created_game_time),
    CONSTRAINT agent_memories_embedding_dim_check CHECK (
        (embedding IS NULL AND embedding_dim IS NULL)
        OR (embedding IS NOT NULL AND vector_dims(embedding) = embedding_dim)),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_memories_world_embedding_dim_fkey FOREIGN KEY (world_id, embedding_dim)
        REFERENCES worlds (id, embedding_dim) ON DELETE CASCADE
);
CREATE INDEX agent_memories_agent_created_idx ON agent_memories (agent_id, created_game_time);
CREATE INDEX agent_memories_agent_kind_created_idx ON agent_memories (agent_id, kind, created_game_time);
CREATE INDEX agent_memories_agent_importance_idx ON agent_memories (agent_id, importance);
CREATE INDEX agent_memories_world_embedding_dim_idx ON agent_memories (world_id, embedding_dim);
-- HNSW for the default 384-dimension model; hearth-db creates the same partial
-- index for another dimension when a world with that dimension is registered.
CREATE INDEX agent_memories_reflection_hnsw_384 ON agent_memories
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE kind = 'reflection' AND embedding_dim = 384;
