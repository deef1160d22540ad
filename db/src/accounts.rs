//! Accounts as rows: users, their role in each world, login sessions (of
//! which only a hash of the token's secret is stored) and players'
//! characters. Touches `users`, `world_members`, `sessions` and
//! `characters`, and reads `worlds` (its `anonymous_spectators` setting).
//! Passwords arrive here already hashed: this crate never sees one.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Row};
use tracing::instrument;

use crate::DbError;

/// The unique index on `lower(username)`: usernames differ by more than case.
pub const USERNAME_KEY: &str = "users_username_key";
/// The unique index on `lower(email)`.
pub const EMAIL_KEY: &str = "users_email_key";

/// The roles `world_members.role` accepts, as stored.
pub const ROLES: [&str; 4] = ["admin", "designer", "player", "spectator"];

/// A row of `users`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    /// As registered; compared without case.
    pub username: String,
    pub email: Option<String>,
    /// A PHC string (argon2id).
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    /// Set when the account may no longer log in.
    pub disabled_at: Option<DateTime<Utc>>,
}

// by hand: the password hash stays out of logs
impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// What accounts need of a world: its id and whether it admits anonymous
/// spectators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldAccess {
    pub id: i64,
    pub slug: String,
    /// The world setting `anonymous_spectators`: true when absent or null,
    /// its value when a boolean, false when it is anything else (a setting
    /// that cannot be read does not open the world).
    pub anonymous_spectators: bool,
}

/// A row of `sessions`, with what checking a token needs of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    /// Whether the user is disabled (`users.disabled_at` is set).
    pub user_disabled: bool,
    /// SHA-256 of the token's secret.
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A row of `characters`: a player's body in one world.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterRow {
    pub id: i64,
    pub world_id: i64,
    pub user_id: i64,
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub location_name: Option<String>,
}

/// Whether `name` passes `users`' CHECK: 3–32 of `A–Z a–z 0–9 _ . -`.
///
/// ```
/// use hearth_db::accounts::valid_username;
/// assert!(valid_username("ada.l-ovelace_2"));
/// assert!(!valid_username("ad"));
/// assert!(!valid_username("ada lovelace"));
/// assert!(!valid_username("adé"));
/// ```
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `email` passes `users`' CHECK: one `@` with no whitespace and
/// something either side, at most 254 characters.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.chars().count() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
}

const USER_COLUMNS: &str = "id, username, email, password_hash, created_at, disabled_at";

fn user_row(r: &Row) -> Result<UserRow, DbError> {
    Ok(UserRow {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        email: r.try_get(2)?,
        password_hash: r.try_get(3)?,
        created_at: r.try_get(4)?,
        disabled_at: r.try_get(5)?,
    })
}

/// Creates a user. A username or email another user has (compared without
/// case) is a [`DbError::Constraint`] naming [`USERNAME_KEY`] or
/// [`EMAIL_KEY`] and saying which value is taken.
#[instrument(skip_all, fields(username))]
pub async fn create_user(
    client: &Client,
    username: &str,
    email: Option<&str>,
    password_hash: &str,
) -> Result<UserRow, DbError> {
    if !valid_username(username) {
        return Err(DbError::InvalidValue(format!(
            "username '{username}' must be 3 to 32 letters, digits, '_', '.' or '-'"
        )));
    }
    if let Some(email) = email
        && !valid_email(email)
    {
        return Err(DbError::InvalidValue(format!(
            "'{email}' is not an email address"
        )));
    }
    let row = client
        .query_one(
            &format!(
                "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) \
                 RETURNING {USER_COLUMNS}"
            ),
            &[&username, &email, &password_hash],
        )
        .await
        .map_err(|e| {
            let err = DbError::from(e);
            match err.constraint() {
                Some(USERNAME_KEY) => DbError::Constraint {
                    table: "users".into(),
                    constraint: USERNAME_KEY.into(),
                    message: format!(
                        "username '{username}' is taken (usernames are compared without case)"
                    ),
                },
                Some(EMAIL_KEY) => DbError::Constraint {
                    table: "users".into(),
                    constraint: EMAIL_KEY.into(),
                    message: "that email address belongs to another account".into(),
                },
                _ => err,
            }
        })?;
    user_row(&row)
}

/// The user named `username`, compared without case (through the unique
/// index on `lower(username)`).
#[instrument(skip_all, fields(username))]
pub async fn user_by_name(client: &Client, username: &str) -> Result<Option<UserRow>, DbError> {
    let row = client
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)"),
            &[&username],
        )
        .await?;
    row.as_ref().map(user_row).transpose()
}

/// The world `slug`, as accounts need it.
#[instrument(skip_all, fields(slug))]
pub async fn world_access(client: &Client, slug: &str) -> Result<Option<WorldAccess>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, slug, CASE jsonb_typeof(settings -> 'anonymous_spectators') \
                 WHEN 'boolean' THEN (settings -> 'anonymous_spectators')::boolean \
                 WHEN 'null' THEN true \
                 ELSE settings -> 'anonymous_spectators' IS NULL END \
             FROM worlds WHERE slug = $1 AND archived_at IS NULL",
            &[&slug],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(WorldAccess {
            id: r.try_get(0)?,
            slug: r.try_get(1)?,
            anonymous_spectators: r.try_get(2)?,
        }),
        None => None,
    })
}

/// Gives user `user_id` the role `role` in world `world_id`, replacing the
/// one it had there.
#[instrument(skip_all, fields(world_id, user_id, role))]
pub async fn set_role(
    client: &Client,
    world_id: i64,
    user_id: i64,
    role: &str,
) -> Result<(), DbError> {
    if !ROLES.contains(&role) {
        return Err(DbError::InvalidValue(format!(
            "'{role}' is not a role (one of {})",
            ROLES.join(", ")
        )));
    }
    client
        .execute(
            "INSERT INTO world_members (world_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (world_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            &[&world_id, &user_id, &role],
        )
        .await?;
    Ok(())
}

/// User `user_id`'s role in world `world_id`, if it is a member.
#[instrument(skip_all, fields(world_id, user_id))]
pub async fn role(client: &Client, world_id: i64, user_id: i64) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT role FROM world_members WHERE world_id = $1 AND user_id = $2",
            &[&world_id, &user_id],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(DbError::from)
}

/// Records a login session of user `user_id` until `expires_at`; `token_hash`
/// is the SHA-256 of the token's secret (never the token). Returns the new
/// session's id.
#[instrument(skip_all, fields(user_id))]
pub async fn create_session(
    client: &Client,
    user_id: i64,
    token_hash: &[u8; 32],
    expires_at: DateTime<Utc>,
) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ($1, $2, $3) RETURNING id",
            &[&user_id, &token_hash.as_slice(), &expires_at],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Session `id` with its user's name and state, whether or not it is revoked
/// or expired (the caller decides).
#[instrument(skip_all, fields(id))]
pub async fn find_session(client: &Client, id: i64) -> Result<Option<SessionRow>, DbError> {
    let row = client
        .query_opt(
            "SELECT s.id, s.user_id, u.username, u.disabled_at IS NOT NULL, s.token_hash, \
                 s.created_at, s.expires_at, s.revoked_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
            &[&id],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(SessionRow {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            username: r.try_get(2)?,
            user_disabled: r.try_get(3)?,
            token_hash: r.try_get(4)?,
            created_at: r.try_get(5)?,
            expires_at: r.try_get(6)?,
            revoked_at: r.try_get(7)?,
        }),
        None => None,
    })
}

/// Deletes the accounts named `usernames` (their sessions, roles and
/// characters go with them); returns how many there were.
#[instrument(skip_all, fields(users = usernames.len()))]
pub async fn delete_users(client: &Client, usernames: &[String]) -> Result<u64, DbError> {
    Ok(client
        .execute("DELETE FROM users WHERE username = ANY($1)", &[&usernames])
        .await?)
}

/// Revokes session `id`; false when it was already revoked or does not exist.
#[instrument(skip_all, fields(id))]
pub async fn revoke_session(client: &Client, id: i64) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

const CHARACTER_COLUMNS: &str = "id, world_id, user_id, name, x, y, location_name";

fn character_row(r: &Row) -> Result<CharacterRow, DbError> {
    Ok(CharacterRow {
        id: r.try_get(0)?,
        world_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        name: r.try_get(3)?,
        x: r.try_get(4)?,
        y: r.try_get(5)?,
        location_name: r.try_get(6)?,
    })
}

/// Creates user `user_id`'s character `name` in world `world_id` (at the
/// origin until the world places it). A name taken in that world is a
/// [`DbError::Constraint`] naming `characters_world_id_name_key`.
#[instrument(skip_all, fields(world_id, user_id, name))]
pub async fn create_character(
    client: &Client,
    world_id: i64,
    user_id: i64,
    name: &str,
) -> Result<CharacterRow, DbError> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO characters (world_id, user_id, name) VALUES ($1, $2, $3) \
                 RETURNING {CHARACTER_COLUMNS}"
            ),
            &[&world_id, &user_id, &name],
        )
        .await?;
    character_row(&row)
}

/// User `user_id`'s character in world `world_id` (its first, should it have
/// several).
#[instrument(skip_all, fields(world_id, user_id))]
pub async fn character_of(
    client: &Client,
    world_id: i64,
    user_id: i64,
) -> Result<Option<CharacterRow>, DbError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {CHARACTER_COLUMNS} FROM characters WHERE world_id = $1 AND user_id = $2 \
                 ORDER BY id LIMIT 1"
            ),
            &[&world_id, &user_id],
        )
        .await?;
    row.as_ref().map(character_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_tables_check() {
        for ok in ["ada", "Ada_Lovelace", "a.b-c", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "ab", &"x".repeat(33), "a b", "ada!", "adé", "ada\n"] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }

    #[test]
    fn emails_follow_the_tables_check() {
        assert!(valid_email("ada@example.org"));
        for bad in ["ada", "@example.org", "ada@", "a@b@c", "a da@x", "a@x\t"] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }
}
