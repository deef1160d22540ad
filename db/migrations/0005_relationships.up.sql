CREATE TABLE agent_relationships (
    world_id          bigint    NOT NULL,
    agent_id          bigint    NOT NULL,
    target_agent_id   bigint    NOT NULL,
    type              text      NOT NULL DEFAULT 'acquaintance' CHECK (type ~ '^[a-z][a-z_-]{0,39}$'),
    affection         real      NOT NULL DEFAULT 0 CHECK (affection BETWEEN -100 AND 100),
    trust             real      NOT NULL DEFAULT 50 CHECK (trust BETWEEN 0 AND 100),
    interaction_count integer   NOT NULL DEFAULT 0 CHECK (interaction_count >= 0),
    last_interaction  timestamp,
    -- a sentence or two the mind keeps about the other, for prompts
    summary           text      NOT NULL DEFAULT '',
    updated_tick      bigint    NOT NULL DEFAULT 0 CHECK (updated_tick >= 0),
    PRIMARY KEY (agent_id, target_agent_id),
    CONSTRAINT agent_relationships_not_self CHECK (agent_id <> target_agent_id),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, target_agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_relationships_target_idx ON agent_relationships (target_agent_id);

CREATE TABLE agent_character_relationships (
    world_id          bigint    NOT NULL,
    agent_id          bigint    NOT NULL,
    character_id      bigint    NOT NULL,
    type              text      NOT NULL DEFAULT 'stranger' CHECK (type ~ '^[a-z][a-z_-]{0,39}$'),
    affection         real      NOT NULL DEFAULT 0 CHECK (affection BETWEEN -100 AND 100),
    trust             real      NOT NULL DEFAULT 50 CHECK (trust BETWEEN 0 AND 100),
    interaction_count integer   NOT NULL DEFAULT 0 CHECK (interaction_count >= 0),
    last_interaction  timestamp,
    summary           text      NOT NULL DEFAULT '',
    updated_tick      bigint    NOT NULL DEFAULT 0 CHECK (updated_tick >= 0),
    PRIMARY KEY (agent_id, character_id),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, character_id) REFERENCES characters (world_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_character_relationships_character_idx ON agent_character_relationships (character_id);
