-- Coalitions of agents with a shared goal.
CREATE TABLE groups (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id          bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    goal              text        NOT NULL DEFAULT '',
    rules             jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rules) = 'array'),
    status            text        NOT NULL DEFAULT 'forming' CHECK (status IN ('forming', 'active', 'dissolved')),
    -- resources held in common, by name: {"coins": 12, "wood": 3}
    shared_pool       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(shared_pool) = 'object'),
    created_game_time timestamp   NOT NULL,
    updated_tick      bigint      NOT NULL DEFAULT 0 CHECK (updated_tick >= 0),
    CONSTRAINT groups_world_id_name_key UNIQUE (world_id, name),
    CONSTRAINT groups_world_id_id_key UNIQUE (world_id, id)
);

CREATE TABLE group_members (
    world_id         bigint    NOT NULL,
    group_id         bigint    NOT NULL,
    agent_id         bigint    NOT NULL,
    role             text      NOT NULL DEFAULT 'member' CHECK (role ~ '^[a-z][a-z_-]{0,39}$'),
    joined_game_time timestamp NOT NULL,
    PRIMARY KEY (group_id, agent_id),
    FOREIGN KEY (world_id, group_id) REFERENCES groups (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE
);
CREATE INDEX group_members_agent_idx ON group_members (agent_id);

-- Facts agents can know: a triple or free text, owned by an agent (personal),
-- a group or an access list (shared), or the whole world (global).
CREATE TABLE knowledge (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id          bigint    NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    scope             text      NOT NULL CHECK (scope IN ('personal', 'shared', 'global')),
    owner_agent_id    bigint,
    owner_group_id    bigint,
    subject           text,
    predicate         text,
    object            text,
    text              text,
    access_agent_ids  bigint[]  NOT NULL DEFAULT '{}',
    confidence        real      NOT NULL DEFAULT 1 CHECK (confidence BETWEEN 0 AND 1),
    created_game_time timestamp NOT NULL,
    CONSTRAINT knowledge_has_content CHECK (
        text IS NOT NULL OR (subject IS NOT NULL AND predicate IS NOT NULL AND object IS NOT NULL)),
    CONSTRAINT knowledge_owner_matches_scope CHECK (
        (scope = 'personal' AND owner_agent_id IS NOT NULL AND owner_group_id IS NULL)
        OR (scope = 'shared' AND num_nonnulls(owner_agent_id, owner_group_id) <= 1)
        OR (scope = 'global' AND owner_agent_id IS NULL AND owner_group_id IS NULL)),
    FOREIGN KEY (world_id, owner_agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, owner_group_id) REFERENCES groups (world_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_world_scope_idx ON knowledge (world_id, scope);
CREATE INDEX knowledge_owner_agent_idx ON knowledge (owner_agent_id) WHERE owner_agent_id IS NOT NULL;
CREATE INDEX knowledge_owner_group_idx ON knowledge (owner_group_id) WHERE owner_group_id IS NOT NULL;
CREATE INDEX knowledge_access_idx ON knowledge USING gin (access_agent_ids);
CREATE INDEX knowledge_subject_idx ON knowledge (world_id, subject) WHERE subject IS NOT NULL;
