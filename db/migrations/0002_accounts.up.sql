CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    email         text        CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    -- a PHC string (argon2id); never the password
    password_hash text        NOT NULL CHECK (password_hash LIKE '$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

-- A player's body in one world.
CREATE TABLE characters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id      bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    x             real        NOT NULL DEFAULT 0,
    y             real        NOT NULL DEFAULT 0,
    location_name text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT characters_world_id_name_key UNIQUE (world_id, name),
    -- target of composite foreign keys that keep references inside one world
    CONSTRAINT characters_world_id_id_key UNIQUE (world_id, id)
);
CREATE INDEX characters_user_id_idx ON characters (user_id);

CREATE TABLE world_members (
    world_id   bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL CHECK (role IN ('admin', 'designer', 'player', 'spectator')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, user_id)
);
CREATE INDEX world_members_user_id_idx ON world_members (user_id);

-- Login sessions. Only a hash of the bearer token is stored.
CREATE TABLE sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
