-- Every call to a language or embedding model, for cost and debugging.
CREATE TABLE llm_calls (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id          bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    agent_id          bigint      REFERENCES agents (id) ON DELETE SET NULL,
    kind              text        NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
    model             text        NOT NULL,
    prompt            text        NOT NULL,
    response          text,
    latency_ms        integer     NOT NULL CHECK (latency_ms >= 0),
    prompt_tokens     integer     CHECK (prompt_tokens >= 0),
    completion_tokens integer     CHECK (completion_tokens >= 0),
    error             text,
    game_time         timestamp,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT llm_calls_outcome CHECK (response IS NOT NULL OR error IS NOT NULL)
);
CREATE INDEX llm_calls_world_created_idx ON llm_calls (world_id, created_at);
CREATE INDEX llm_calls_agent_created_idx ON llm_calls (agent_id, created_at) WHERE agent_id IS NOT NULL;

-- One row per checkpoint: how the simulation and its writer performed.
CREATE TABLE sim_metrics (
    world_id      bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    tick          bigint      NOT NULL CHECK (tick >= 0),
    game_time     timestamp   NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    agents        integer     NOT NULL CHECK (agents >= 0),
    tick_ms_p50   real        NOT NULL CHECK (tick_ms_p50 >= 0),
    tick_ms_p99   real        NOT NULL CHECK (tick_ms_p99 >= 0),
    tick_ms_max   real        NOT NULL CHECK (tick_ms_max >= 0),
    flush_ms      real        CHECK (flush_ms >= 0),
    rows_flushed  integer     NOT NULL DEFAULT 0 CHECK (rows_flushed >= 0),
    queue_depth   integer     NOT NULL DEFAULT 0 CHECK (queue_depth >= 0),
    PRIMARY KEY (world_id, tick)
);

-- Audit: who did what to which world.
CREATE TABLE event_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id   bigint      REFERENCES worlds (id) ON DELETE CASCADE,
    user_id    bigint      REFERENCES users (id) ON DELETE SET NULL,
    -- "user:alice", "system", "cli"
    actor      text        NOT NULL,
    action     text        NOT NULL CHECK (action ~ '^[a-z][a-z_.]{0,63}$'),
    target     text,
    details    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_world_created_idx ON event_log (world_id, created_at);
