CREATE TABLE agent_schedules (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id     bigint     NOT NULL,
    agent_id     bigint     NOT NULL,
    -- ISO days 1 (Monday) .. 7 (Sunday); empty means every day
    days_of_week smallint[] NOT NULL DEFAULT '{}' CHECK (days_of_week <@ ARRAY[1, 2, 3, 4, 5, 6, 7]::smallint[]),
    -- minutes after midnight; an entry may cross midnight (start > end)
    start_minute smallint   NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute   smallint   NOT NULL CHECK (end_minute BETWEEN 0 AND 1440),
    activity     text       NOT NULL CHECK (length(activity) BETWEEN 1 AND 200),
    location     text       NOT NULL,
    priority     smallint   NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    flexible     boolean    NOT NULL DEFAULT false,
    position     smallint   NOT NULL DEFAULT 0 CHECK (position >= 0),
    CONSTRAINT agent_schedules_nonempty CHECK (start_minute <> end_minute),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_schedules_agent_idx ON agent_schedules (agent_id, position);

CREATE TABLE agent_plans (
    agent_id          bigint    NOT NULL,
    id                bigint    NOT NULL CHECK (id > 0),
    world_id          bigint    NOT NULL,
    -- the broader plan this one decomposes (day -> hour block -> step)
    parent_id         bigint,
    goal              text      NOT NULL CHECK (length(goal) BETWEEN 1 AND 1000),
    steps             jsonb     NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
    current_step      integer   NOT NULL DEFAULT 0 CHECK (current_step >= 0),
    status            text      NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'done', 'abandoned', 'failed')),
    priority          smallint  NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    deadline          timestamp,
    created_game_time timestamp NOT NULL,
    updated_tick      bigint    NOT NULL DEFAULT 0 CHECK (updated_tick >= 0),
    PRIMARY KEY (agent_id, id),
    FOREIGN KEY (world_id, agent_id) REFERENCES agents (world_id, id) ON DELETE CASCADE,
    FOREIGN KEY (agent_id, parent_id) REFERENCES agent_plans (agent_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_plans_agent_status_idx ON agent_plans (agent_id, status);
