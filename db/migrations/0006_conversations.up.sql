-- Conversations and messages are created inside the simulation and written
-- behind it, so their ids are assigned by the server (per world).
CREATE TABLE conversations (
    world_id          bigint    NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    id                bigint    NOT NULL CHECK (id > 0),
    kind              text      NOT NULL CHECK (kind IN ('direct', 'group', 'broadcast', 'system')),
    location          text,
    topic             text,
    started_game_time timestamp NOT NULL,
    ended_game_time   timestamp,
    PRIMARY KEY (world_id, id),
    CONSTRAINT conversations_ends_after_start CHECK (ended_game_time IS NULL OR ended_game_time >= started_game_time)
);
CREATE INDEX conversations_world_started_idx ON conversations (world_id, started_game_time);

CREATE TABLE conversation_participants (
    world_id         bigint    NOT NULL,
    conversation_id  bigint    NOT NULL,
    agent_id         bigint,
    character_id     bigint,
    joined_game_time timestamp NOT NULL,
    left_game_time   timestamp,
    CONSTRAINT conversation_participants_one_kind CHECK (num_nonnulls(agent_id, character_id) = 1),
    FOREIGN KEY (world_id, conversation_id) REFERENCES conversations (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, character_id) REFERENCES characters (world_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX conversation_participants_agent_key
    ON conversation_participants (world_id, conversation_id, agent_id) WHERE agent_id IS NOT NULL;
CREATE UNIQUE INDEX conversation_participants_character_key
    ON conversation_participants (world_id, conversation_id, character_id) WHERE character_id IS NOT NULL;
CREATE INDEX conversation_participants_agent_idx ON conversation_participants (agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX conversation_participants_character_idx ON conversation_participants (character_id) WHERE character_id IS NOT NULL;

CREATE TABLE messages (
    world_id             bigint    NOT NULL,
    conversation_id      bigint    NOT NULL,
    seq                  integer   NOT NULL CHECK (seq >= 0),
    -- at most one speaker; none for system lines ("Mei left the tavern")
    speaker_agent_id     bigint,
    speaker_character_id bigint,
    text                 text      NOT NULL CHECK (length(text) BETWEEN 1 AND 4000),
    emotional_tone       text,
    game_time            timestamp NOT NULL,
    PRIMARY KEY (world_id, conversation_id, seq),
    CONSTRAINT messages_one_speaker CHECK (num_nonnulls(speaker_agent_id, speaker_character_id) <= 1),
    FOREIGN KEY (world_id, conversation_id) REFERENCES conversations (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, speaker_agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (world_id, speaker_character_id) REFERENCES characters (world_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_speaker_agent_idx ON messages (speaker_agent_id) WHERE speaker_agent_id IS NOT NULL;
