CREATE TABLE agents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id        bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    slug            text        NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- the designer's file as loaded, for audit and for re-deriving columns
    definition      jsonb       NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    age             integer     CHECK (age BETWEEN 0 AND 10000),
    constitution    text        NOT NULL DEFAULT '',
    background      text        NOT NULL DEFAULT '',
    traits          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(traits) = 'object'),
    likes           text[]      NOT NULL DEFAULT '{}',
    dislikes        text[]      NOT NULL DEFAULT '{}',
    primary_goal    text,
    secondary_goals text[]      NOT NULL DEFAULT '{}',
    home_location   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- removed from the designer's files: kept with its history, not simulated
    archived_at     timestamptz,
    CONSTRAINT agents_world_id_slug_key UNIQUE (world_id, slug),
    CONSTRAINT agents_world_id_id_key UNIQUE (world_id, id)
);

-- The live state of an agent, written behind the simulation.
CREATE TABLE agent_states (
    agent_id          bigint    PRIMARY KEY,
    world_id          bigint    NOT NULL,
    x                 real      NOT NULL,
    y                 real      NOT NULL,
    facing            text      NOT NULL DEFAULT 's' CHECK (facing IN ('n', 'ne', 'e', 'se', 's', 'sw', 'w', 'nw')),
    action            text      NOT NULL DEFAULT 'idle',
    action_started_at timestamp,
    action_target     text,
    target_x          real,
    target_y          real,
    location_name     text,
    energy            real      NOT NULL DEFAULT 1 CHECK (energy BETWEEN 0 AND 1),
    -- valence of the agent's mood, -1 (miserable) .. 1 (elated)
    mood              real      NOT NULL DEFAULT 0 CHECK (mood BETWEEN -1 AND 1),
    emotional_state   jsonb     NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(emotional_state) = 'object'),
    physical_state    jsonb     NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(physical_state) = 'object'),
    cognitive_load    real      NOT NULL DEFAULT 0 CHECK (cognitive_load BETWEEN 0 AND 1),
    updated_tick      bigint    NOT NULL DEFAULT 0 CHECK (updated_tick >= 0),
    CHECK ((target_x IS NULL) = (target_y IS NULL)),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_states_world_id_idx ON agent_states (world_id);
