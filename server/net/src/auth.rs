//! Accounts for game clients (`docs/accounts.md`): passwords hashed with
//! argon2id, signed session tokens that expire and can be revoked, and roles
//! per world; and `hearth user add`. Touches the database through
//! `hearth_db::accounts` only, `<HEARTH_HOME>/token.key`, and the terminal
//! when `hearth user add` asks for a password.
//!
//! A token is `v1.<payload>.<signature>`, both parts unpadded base64url: the
//! payload is JSON naming the session, its user, its expiry (unix seconds)
//! and a random secret whose SHA-256 is all the `sessions` row keeps; the
//! signature is HMAC-SHA256 over `v1.<payload>` with the server's 32-byte
//! key. Checking one goes format → signature → expiry → the session row
//! (same secret, not revoked), so a forged or stale token never reaches the
//! database, and a token cannot be forged from the key alone.
//!
//! ```
//! use hearth_net::auth::{Claims, TokenKey, open_token, seal_token};
//!
//! let key = TokenKey::from_bytes([7; 32]);
//! let claims = Claims::new(42, 7, 1_900_000_000, [1; 32]);
//! let token = seal_token(&key, &claims);
//! assert!(token.starts_with("v1."));
//! assert_eq!(open_token(&key, &token, 1_800_000_000).ok(), Some(claims));
//! assert!(open_token(&TokenKey::from_bytes([8; 32]), &token, 1_800_000_000).is_err());
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hearth_db::accounts::{self, EMAIL_KEY, USERNAME_KEY, UserRow};
use hearth_db::{DbError, Pool};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tracing::{debug, info, instrument, warn};

/// The environment variable that, when set, holds the token key (base64 of
/// 32 bytes) instead of `<HEARTH_HOME>/token.key`.
pub const TOKEN_SECRET_ENV: &str = "HEARTH_TOKEN_SECRET";
/// The token key's file under `HEARTH_HOME`, created (mode 0600) on first use.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// How long a token stays valid after login unless configured otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Password length in characters (not bytes).
pub const PASSWORD_CHARS: RangeInclusive<usize> = 8..=128;

/// The version prefix of the token format; another format gets another one.
const TOKEN_VERSION: &str = "v1";
/// Longer strings are refused before any decoding (ours are about 200).
const MAX_TOKEN_LEN: usize = 1024;
const KEY_LEN: usize = 32;
const SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a user may do in one world (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Designer,
    Player,
    Spectator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Designer, Role::Player, Role::Spectator];

    /// The name on the wire and in `world_members.role`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Designer => "designer",
            Role::Player => "player",
            Role::Spectator => "spectator",
        }
    }

    /// `agent_memories` and `agent_prompt`, and `agent_detail` of any agent,
    /// wherever it is: designers and admins.
    pub const fn can_query_memories(self) -> bool {
        matches!(self, Role::Admin | Role::Designer)
    }

    /// The protocol's "admin and designer commands" (`pause`, `resume`,
    /// `set_time_scale`, `reload_content`): designers and admins.
    pub const fn can_administer(self) -> bool {
        matches!(self, Role::Admin | Role::Designer)
    }

    /// Has a character of its own and sends the player commands (`move_to`,
    /// `say`, `start_conversation`, `end_conversation`, `interact`): players.
    pub const fn controls_character(self) -> bool {
        matches!(self, Role::Player)
    }

    /// The role of a user in a world: its membership there, else spectator
    /// when the world admits anonymous spectators, else none (refused).
    pub const fn resolve(member: Option<Role>, anonymous_spectators: bool) -> Option<Role> {
        match member {
            Some(role) => Some(role),
            None if anonymous_spectators => Some(Role::Spectator),
            None => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "'{s}' is not a role (admin, designer, player or spectator)"
                ))
            })
    }
}

/// Why an account operation was refused. [`AuthError::code`] is the
/// protocol's error code; [`AuthError::client_message`] is what a client may
/// be shown.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password: the same answer for both, so the
    /// answer does not tell which usernames exist.
    #[error("unknown username or wrong password")]
    InvalidCredentials,
    /// Not a token of this format.
    #[error("invalid token")]
    TokenMalformed,
    /// Not signed by this server's key, altered, or not the secret its
    /// session was created with.
    #[error("invalid token")]
    TokenSignature,
    #[error("token expired; log in again")]
    TokenExpired,
    /// Logged out (or its session is gone).
    #[error("token revoked; log in again")]
    TokenRevoked,
    #[error("account '{0}' is disabled")]
    Disabled(String),
    /// No token, in a world that admits no anonymous spectators.
    #[error("world '{0}' admits no anonymous spectators; log in")]
    LoginRequired(String),
    /// A user with no role in a world that admits no anonymous spectators.
    #[error("'{user}' has no role in world '{world}', which admits no anonymous spectators")]
    NoRole { user: String, world: String },
    #[error("no world '{0}'")]
    NoWorld(String),
    #[error("username '{0}' is taken (usernames are compared without case)")]
    UsernameTaken(String),
    /// A username, password, email or role that breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// The token key could not be loaded or created.
    #[error("token key: {0}")]
    Key(String),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl AuthError {
    /// The protocol's error code (`docs/protocol.md`, Errors).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidCredentials
            | AuthError::TokenMalformed
            | AuthError::TokenSignature
            | AuthError::TokenExpired
            | AuthError::TokenRevoked
            | AuthError::Disabled(_)
            | AuthError::LoginRequired(_) => "unauthorized",
            AuthError::NoRole { .. } => "forbidden",
            AuthError::NoWorld(_) | AuthError::UsernameTaken(_) | AuthError::Invalid(_) => {
                "bad_request"
            }
            AuthError::Key(_) | AuthError::Hash(_) | AuthError::Db(_) => "internal",
        }
    }

    /// The message for a client: the error itself, except that internal
    /// failures say what failed without the database's or the file
    /// system's details (those go to the log).
    pub fn client_message(&self) -> String {
        match self {
            AuthError::Db(e) if e.is_transient() => {
                "the account database is unavailable; try again".into()
            }
            AuthError::Db(_) => "the account database failed".into(),
            AuthError::Key(_) => "the token key is unavailable".into(),
            AuthError::Hash(_) => "password hashing failed".into(),
            other => other.to_string(),
        }
    }
}

/// The server's token key: 32 bytes. Its `Debug` does not show it.
#[derive(Clone)]
pub struct TokenKey([u8; KEY_LEN]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A new random key (the thread's CSPRNG, seeded from the OS).
    pub fn generate() -> Self {
        let mut bytes = [0; KEY_LEN];
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// The key from `HEARTH_TOKEN_SECRET` when set, else from
    /// `<home>/token.key`, created on first use.
    pub fn load(home: &Path) -> Result<Self, AuthError> {
        let secret = std::env::var(TOKEN_SECRET_ENV).ok();
        Self::resolve(secret.as_deref(), home)
    }

    /// [`TokenKey::load`] with the variable's value given: `secret` (base64
    /// of 32 bytes, standard or URL-safe alphabet, padded or not) when set
    /// and not blank, else the file.
    pub fn resolve(secret: Option<&str>, home: &Path) -> Result<Self, AuthError> {
        match secret.map(str::trim).filter(|s| !s.is_empty()) {
            Some(text) => Self::from_base64(text)
                .map_err(|why| AuthError::Key(format!("{TOKEN_SECRET_ENV} {why}"))),
            None => Self::load_or_create_file(&home.join(TOKEN_KEY_FILE)),
        }
    }

    fn from_base64(text: &str) -> Result<Self, String> {
        let config =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
        let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
        let bytes = standard
            .decode(text)
            .or_else(|_| url_safe.decode(text))
            .map_err(|e| format!("is not base64: {e}"))?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "holds {} bytes; the key is {KEY_LEN} (e.g. `openssl rand -base64 32`)",
                b.len()
            )
        })?;
        Ok(Self(bytes))
    }

    /// Reads the key file: 32 raw bytes, or their base64 on one line. A
    /// missing file is created with a new key, mode 0600, atomically (written
    /// aside, then hard-linked into place), so two processes starting at once
    /// agree on one key.
    fn load_or_create_file(path: &Path) -> Result<Self, AuthError> {
        let failed =
            |what: &str, e: io::Error| AuthError::Key(format!("{what} {}: {e}", path.display()));
        match std::fs::File::open(path) {
            Ok(file) => {
                warn_if_readable_by_others(path, &file);
                let mut bytes = Vec::with_capacity(64);
                file.take(4096)
                    .read_to_end(&mut bytes)
                    .map_err(|e| failed("reading", e))?;
                return Self::from_file_bytes(&bytes)
                    .map_err(|why| AuthError::Key(format!("{} {why}", path.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("opening", e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| failed("creating the directory of", e))?;
        }
        let key = Self::generate();
        let aside = path.with_extension(format!(
            "key.{}.{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let written = write_private(&aside, &key.0).and_then(|()| std::fs::hard_link(&aside, path));
        let _ = std::fs::remove_file(&aside);
        match written {
            Ok(()) => {
                info!(path = %path.display(), "created a new token key");
                Ok(key)
            }
            // another process created it first: use theirs
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load_or_create_file(path),
            Err(e) => Err(failed("creating", e)),
        }
    }

    fn from_file_bytes(bytes: &[u8]) -> Result<Self, String> {
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
            return Ok(Self(raw));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("is neither {KEY_LEN} raw bytes nor base64 text"))?;
        Self::from_base64(text.trim())
    }

    fn mac(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length
            Err(_) => unreachable!("HMAC-SHA256 refused a 32-byte key"),
        }
    }
}

/// Creates `path` with mode 0600 (where modes exist), failing if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path, file: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata() {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the token key file is readable by others: anyone who reads it can forge \
                     tokens' signatures; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
}

/// What a token says, once its signature is checked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The session (`sessions.id`).
    #[serde(rename = "s")]
    pub session_id: i64,
    #[serde(rename = "u")]
    pub user_id: i64,
    /// Unix seconds; the token is refused from this second on.
    #[serde(rename = "e")]
    pub expires: i64,
    /// The session's secret, base64url: the database keeps only its SHA-256.
    #[serde(rename = "k")]
    secret: String,
}

// by hand: the secret stays out of logs
impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Claims {
    pub fn new(session_id: i64, user_id: i64, expires: i64, secret: [u8; SECRET_LEN]) -> Self {
        Self {
            session_id,
            user_id,
            expires,
            secret: URL_SAFE_NO_PAD.encode(secret),
        }
    }

    /// SHA-256 of the secret: what `sessions.token_hash` holds.
    pub fn secret_hash(&self) -> Result<[u8; 32], AuthError> {
        let secret = URL_SAFE_NO_PAD
            .decode(&self.secret)
            .map_err(|_| AuthError::TokenMalformed)?;
        if secret.len() != SECRET_LEN {
            return Err(AuthError::TokenMalformed);
        }
        Ok(Sha256::digest(&secret).into())
    }
}

/// Signs `claims` into a token.
pub fn seal_token(key: &TokenKey, claims: &Claims) -> String {
    // a struct of integers and a string always serializes
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    seal_payload(key, &payload)
}

fn seal_payload(key: &TokenKey, payload: &[u8]) -> String {
    let signed = format!("{TOKEN_VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = key.mac();
    mac.update(signed.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token's format, signature (in constant time) and expiry against
/// `now` (unix seconds), and returns what it says. Whether its session still
/// stands is the database's to say ([`Auth::verify`]).
pub fn open_token(key: &TokenKey, token: &str, now: i64) -> Result<Claims, AuthError> {
    let claims = open_token_unexpired_or_not(key, token)?;
    if now >= claims.expires {
        return Err(AuthError::TokenExpired);
    }
    Ok(claims)
}

/// Format and signature only: for logging out, which may revoke an expired
/// token too.
fn open_token_unexpired_or_not(key: &TokenKey, token: &str) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::TokenMalformed);
    }
    let mut parts = token.split('.');
    let (Some(version), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::TokenMalformed);
    };
    if version != TOKEN_VERSION || payload.is_empty() {
        return Err(AuthError::TokenMalformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::TokenMalformed)?;
    let mut mac = key.mac();
    // exactly the bytes that were signed: "v1.<payload>"
    mac.update(&token.as_bytes()[..version.len() + 1 + payload.len()]);
    mac.verify_slice(&tag)
        .map_err(|_| AuthError::TokenSignature)?;
    // signed by us from here on; still decoded defensively
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::TokenMalformed)?;
    serde_json::from_slice(&payload).map_err(|_| AuthError::TokenMalformed)
}

/// Checks a password against the rules: 8 to 128 characters.
pub fn check_password(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if PASSWORD_CHARS.contains(&n) {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "a password has {} to {} characters (this one has {n})",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        )))
    }
}

/// Hashes a password with argon2id (the crate's default parameters, a random
/// salt) into a PHC string. Slow on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0; 16];
    rand::fill(&mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (compared in constant time
/// by the crate, with the parameters the hash was made with). A hash that
/// cannot be read matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(e) => {
            warn!(error = %e, "a stored password hash cannot be read");
            false
        }
    }
}

/// A hash no password is known for, checked against when the user does not
/// exist so that an unknown username takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut noise = [0u8; 32];
    rand::fill(&mut noise[..]);
    hash_password(&URL_SAFE_NO_PAD.encode(noise)).unwrap_or_default()
});

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::Hash(format!("hashing task failed: {e}")))
}

/// An account as clients may see it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            email: row.email,
            created_at: row.created_at,
        }
    }
}

/// What a login gives: the token, until when it holds, and the user's role
/// in the world it logged into.
#[derive(Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub role: Role,
    pub user: User,
}

// by hand: the token stays out of logs
impl fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginOutcome")
            .field("token", &"..")
            .field("expires_at", &self.expires_at)
            .field("role", &self.role)
            .field("user", &self.user)
            .finish()
    }
}

/// Who a verified token speaks for, in one world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub session_id: i64,
}

/// Settings of [`Auth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// How long a token holds after login, in seconds. Default 86,400 (24 h).
    pub token_lifetime_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME.as_secs(),
        }
    }
}

/// Registration, login, token checks and logout against the database.
/// Cheap to clone (the pool and key are shared).
#[derive(Clone)]
pub struct Auth {
    key: TokenKey,
    pool: Pool,
    settings: AuthSettings,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Also computes the dummy hash unknown users are checked against (one
    /// argon2 hash, tens of milliseconds), so the first of them takes no
    /// longer than a wrong password.
    pub fn new(pool: Pool, key: TokenKey, settings: AuthSettings) -> Self {
        LazyLock::force(&DUMMY_HASH);
        Self {
            key,
            pool,
            settings,
        }
    }

    /// Creates an account (a spectator wherever anonymous spectators are
    /// admitted; roles are given with `hearth user add`).
    #[instrument(skip_all, fields(username))]
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<User, AuthError> {
        check_new_account(username, password, email)?;
        let client = self.pool.get().await.map_err(DbError::from)?;
        if accounts::user_by_name(&client, username).await?.is_some() {
            return Err(AuthError::UsernameTaken(username.to_owned()));
        }
        let password = password.to_owned();
        let hash = blocking(move || hash_password(&password)).await??;
        let row = create_user(&client, username, email, &hash).await?;
        info!(user = %row.username, id = row.id, "registered");
        Ok(row.into())
    }

    /// Checks the password and opens a session: a token for every world,
    /// with the user's role in `world` (the world the server runs). Unknown
    /// users and wrong passwords get the same error, after the same work.
    #[instrument(skip_all, fields(username, world))]
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        world: &str,
    ) -> Result<LoginOutcome, AuthError> {
        // no account can have such a name or password: nothing to look up
        if !accounts::valid_username(username) || check_password(password).is_err() {
            return Err(AuthError::InvalidCredentials);
        }
        let client = self.pool.get().await.map_err(DbError::from)?;
        let access = accounts::world_access(&client, world)
            .await?
            .ok_or_else(|| AuthError::NoWorld(world.to_owned()))?;
        let row = accounts::user_by_name(&client, username).await?;
        let phc = match &row {
            Some(u) => u.password_hash.clone(),
            None => String::new(),
        };
        let password = password.to_owned();
        let matches = blocking(move || {
            let phc = if phc.is_empty() { &*DUMMY_HASH } else { &phc };
            verify_password(&password, phc)
        })
        .await?;
        let user = match row {
            Some(user) if matches => user,
            _ => {
                info!(
                    username,
                    "login refused: unknown username or wrong password"
                );
                return Err(AuthError::InvalidCredentials);
            }
        };
        if user.disabled_at.is_some() {
            return Err(AuthError::Disabled(user.username));
        }
        let role = role_in(&client, &access, user.id, &user.username).await?;

        let mut secret = [0; SECRET_LEN];
        rand::fill(&mut secret[..]);
        let hash: [u8; 32] = Sha256::digest(secret).into();
        let lifetime = i64::try_from(self.settings.token_lifetime_secs)
            .unwrap_or(i64::MAX)
            .clamp(1, 10 * 366 * 24 * 60 * 60);
        // whole seconds, rounded up: the token holds at least its lifetime
        let now = Utc::now();
        let expires = now
            .timestamp()
            .saturating_add(lifetime)
            .saturating_add(i64::from(now.timestamp_subsec_nanos() > 0));
        let expires_at = DateTime::from_timestamp(expires, 0).ok_or_else(|| {
            AuthError::Invalid(format!("token lifetime {lifetime} s is out of range"))
        })?;
        let session_id = accounts::create_session(&client, user.id, &hash, expires_at).await?;
        let token = seal_token(
            &self.key,
            &Claims::new(session_id, user.id, expires, secret),
        );
        info!(user = %user.username, session_id, %role, "logged in");
        Ok(LoginOutcome {
            token,
            expires_at,
            role,
            user: user.into(),
        })
    }

    /// Who `token` speaks for in `world`: format, signature, expiry, then the
    /// session (the same secret, not revoked, its user not disabled), then
    /// the user's role there.
    #[instrument(skip_all, fields(world))]
    pub async fn verify(&self, token: &str, world: &str) -> Result<Identity, AuthError> {
        let now = Utc::now().timestamp();
        let claims = open_token(&self.key, token, now)?;
        let client = self.pool.get().await.map_err(DbError::from)?;
        let session = live_session(&client, &claims).await?;
        if session.expires_at.timestamp() <= now {
            return Err(AuthError::TokenExpired);
        }
        let access = accounts::world_access(&client, world)
            .await?
            .ok_or_else(|| AuthError::NoWorld(world.to_owned()))?;
        let role = role_in(&client, &access, session.user_id, &session.username).await?;
        debug!(user = %session.username, session_id = session.id, %role, "token verified");
        Ok(Identity {
            user_id: session.user_id,
            username: session.username,
            role,
            session_id: session.id,
        })
    }

    /// Revokes `token`'s session. A token already revoked or expired is
    /// fine (nothing more to do); one that is not ours is refused.
    #[instrument(skip_all)]
    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        let claims = open_token_unexpired_or_not(&self.key, token)?;
        let client = self.pool.get().await.map_err(DbError::from)?;
        match live_session(&client, &claims).await {
            Ok(_) | Err(AuthError::TokenRevoked) | Err(AuthError::Disabled(_)) => {}
            Err(e) => return Err(e),
        }
        if accounts::revoke_session(&client, claims.session_id).await? {
            info!(session_id = claims.session_id, "logged out");
        }
        Ok(())
    }

    /// The role of a connection without a token: spectator where anonymous
    /// spectators are admitted.
    #[instrument(skip_all, fields(world))]
    pub async fn anonymous(&self, world: &str) -> Result<Role, AuthError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        let access = accounts::world_access(&client, world)
            .await?
            .ok_or_else(|| AuthError::NoWorld(world.to_owned()))?;
        Role::resolve(None, access.anonymous_spectators)
            .ok_or_else(|| AuthError::LoginRequired(access.slug))
    }
}

/// The session `claims` names, if it stands for them: the same user and
/// secret (a token whose key leaked still needs a live session's secret),
/// not revoked, its user not disabled.
async fn live_session(client: &Client, claims: &Claims) -> Result<accounts::SessionRow, AuthError> {
    let hash = claims.secret_hash()?;
    let Some(session) = accounts::find_session(client, claims.session_id).await? else {
        // deleted with its user
        return Err(AuthError::TokenRevoked);
    };
    if session.user_id != claims.user_id || !equal_in_constant_time(&session.token_hash, &hash) {
        return Err(AuthError::TokenSignature);
    }
    if session.revoked_at.is_some() {
        return Err(AuthError::TokenRevoked);
    }
    if session.user_disabled {
        return Err(AuthError::Disabled(session.username));
    }
    Ok(session)
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn role_in(
    client: &Client,
    access: &accounts::WorldAccess,
    user_id: i64,
    username: &str,
) -> Result<Role, AuthError> {
    let member = match accounts::role(client, access.id, user_id).await? {
        Some(name) => Some(Role::from_str(&name).map_err(|_| {
            AuthError::Db(DbError::InvalidValue(format!(
                "world_members holds an unknown role '{name}'"
            )))
        })?),
        None => None,
    };
    Role::resolve(member, access.anonymous_spectators).ok_or_else(|| AuthError::NoRole {
        user: username.to_owned(),
        world: access.slug.clone(),
    })
}

fn check_new_account(username: &str, password: &str, email: Option<&str>) -> Result<(), AuthError> {
    if !accounts::valid_username(username) {
        return Err(AuthError::Invalid(format!(
            "a username has 3 to 32 letters, digits, '_', '.' or '-' ('{username}' does not)"
        )));
    }
    check_password(password)?;
    if let Some(email) = email
        && !accounts::valid_email(email)
    {
        return Err(AuthError::Invalid(format!(
            "'{email}' is not an email address"
        )));
    }
    Ok(())
}

/// `accounts::create_user`, with taken names and emails as account errors.
async fn create_user(
    client: &Client,
    username: &str,
    email: Option<&str>,
    hash: &str,
) -> Result<UserRow, AuthError> {
    accounts::create_user(client, username, email, hash)
        .await
        .map_err(|e| match e.constraint() {
            Some(USERNAME_KEY) => AuthError::UsernameTaken(username.to_owned()),
            Some(EMAIL_KEY) => {
                AuthError::Invalid("that email address belongs to another account".into())
            }
            _ => match e {
                DbError::InvalidValue(why) => AuthError::Invalid(why),
                other => AuthError::Db(other),
            },
        })
}

/// A password given on the command line. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// `hearth user add`: what to do.
#[derive(Debug, Clone)]
pub struct UserAdd {
    pub name: String,
    pub role: Role,
    pub world: String,
    /// Unset: asked for on the terminal (only if the user is new).
    pub password: Option<Password>,
    pub email: Option<String>,
}

/// `hearth user add`: what it did. Its `Display` is the line printed.
#[derive(Debug, Clone)]
pub struct UserAdded {
    pub user: User,
    /// False when a user of that name existed (its password and email were
    /// left as they were).
    pub created: bool,
    pub world: String,
    pub role: Role,
    /// The role it had in the world before, if any.
    pub previous_role: Option<Role>,
    /// The player's character, and whether it was created now.
    pub character: Option<(String, bool)>,
}

impl fmt::Display for UserAdded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = &self.user.username;
        if self.created {
            write!(f, "created user '{who}' (id {})", self.user.id)?;
        } else {
            write!(
                f,
                "user '{who}' (id {}) exists, password unchanged",
                self.user.id
            )?;
        }
        match self.previous_role {
            Some(old) if old == self.role => {
                write!(f, "; already {} in world '{}'", self.role, self.world)?
            }
            Some(old) => write!(
                f,
                "; now {} in world '{}' (was {old})",
                self.role, self.world
            )?,
            None => write!(f, "; {} in world '{}'", self.role, self.world)?,
        }
        match &self.character {
            Some((name, true)) => write!(f, "; created character '{name}'"),
            Some((name, false)) => write!(f, "; character '{name}'"),
            None => Ok(()),
        }
    }
}

/// `hearth user add`: creates the user (or reuses the one of that name),
/// gives it `role` in the world, and a player its character named after it
/// if it has none there. Each step can be repeated: running it again
/// changes nothing but the role.
pub async fn add_user(client: &Client, req: UserAdd) -> Result<UserAdded, AuthError> {
    let access = accounts::world_access(client, &req.world)
        .await?
        .ok_or_else(|| {
            AuthError::Invalid(format!(
                "no world '{}' in the database (a world is created by `hearth serve --world {}`)",
                req.world, req.world
            ))
        })?;
    let (user, created) = match accounts::user_by_name(client, &req.name).await? {
        Some(user) => (user, false),
        None => {
            // the name and email first: no point asking for a password otherwise
            check_new_account(&req.name, "a valid password", req.email.as_deref())?;
            let password = match req.password {
                Some(Password(p)) => p,
                None => {
                    let name = req.name.clone();
                    blocking(move || prompt_new_password(&name)).await??
                }
            };
            check_new_account(&req.name, &password, req.email.as_deref())?;
            let hash = blocking(move || hash_password(&password)).await??;
            let user = create_user(client, &req.name, req.email.as_deref(), &hash).await?;
            (user, true)
        }
    };
    let previous_role = accounts::role(client, access.id, user.id)
        .await?
        .and_then(|r| Role::from_str(&r).ok());
    accounts::set_role(client, access.id, user.id, req.role.as_str()).await?;
    let character = if req.role.controls_character() {
        Some(
            match accounts::character_of(client, access.id, user.id).await? {
                Some(c) => (c.name, false),
                None => {
                    let c = accounts::create_character(client, access.id, user.id, &user.username)
                        .await
                        .map_err(|e| match e.constraint() {
                            Some("characters_world_id_name_key") => AuthError::Invalid(format!(
                                "world '{}' already has a character named '{}' (another user's)",
                                access.slug, user.username
                            )),
                            _ => AuthError::Db(e),
                        })?;
                    (c.name, true)
                }
            },
        )
    } else {
        None
    };
    Ok(UserAdded {
        user: user.into(),
        created,
        world: access.slug,
        role: req.role,
        previous_role,
        character,
    })
}

/// Asks for a new user's password twice on the terminal, without echo.
/// Without a terminal it refuses: the password must then be passed.
pub fn prompt_new_password(username: &str) -> Result<String, AuthError> {
    #[cfg(unix)]
    {
        use std::io::IsTerminal;
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty");
        if !tty.is_ok_and(|t| t.is_terminal()) {
            return Err(AuthError::Invalid(format!(
                "no terminal to ask for the password of new user '{username}': pass --password"
            )));
        }
    }
    let read = |prompt: String| rpassword::prompt_password(prompt);
    confirm_new_password(username, read).map_err(|e| match e {
        PromptError::Io(e) => AuthError::Invalid(format!(
            "cannot read the password of new user '{username}' from the terminal ({e}): \
             pass --password"
        )),
        PromptError::Refused(e) => e,
    })
}

#[derive(Debug)]
enum PromptError {
    Io(io::Error),
    Refused(AuthError),
}

/// The prompting of [`prompt_new_password`] with the terminal given as
/// `read` (prompt → line).
fn confirm_new_password(
    username: &str,
    mut read: impl FnMut(String) -> io::Result<String>,
) -> Result<String, PromptError> {
    let first = read(format!("password for {username}: ")).map_err(PromptError::Io)?;
    check_password(&first).map_err(PromptError::Refused)?;
    let second = read("same password again: ".into()).map_err(PromptError::Io)?;
    if first != second {
        return Err(PromptError::Refused(AuthError::Invalid(
            "the two passwords differ; nothing was created".into(),
        )));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    fn key() -> TokenKey {
        TokenKey::from_bytes([7; 32])
    }

    fn claims() -> Claims {
        Claims::new(42, 7, NOW + 3600, [9; 32])
    }

    #[test]
    fn tokens_round_trip() {
        let token = seal_token(&key(), &claims());
        assert!(token.starts_with("v1."), "{token}");
        assert_eq!(token.split('.').count(), 3);
        assert!(token.len() < 200, "{} chars", token.len());
        let opened = open_token(&key(), &token, NOW).expect("valid");
        assert_eq!(opened, claims());
        assert_eq!(opened.session_id, 42);
        assert_eq!(opened.user_id, 7);
        assert_eq!(
            opened.secret_hash().expect("secret"),
            <[u8; 32]>::from(Sha256::digest([9; 32]))
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = seal_token(&key(), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        // someone else's user id, with the original signature
        let mut forged = claims();
        forged.user_id = 1;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let token2 = format!("v1.{forged_payload}.{}", parts[2]);
        assert!(matches!(
            open_token(&key(), &token2, NOW),
            Err(AuthError::TokenSignature)
        ));
        // one character of the payload changed
        let mut payload = parts[1].to_owned().into_bytes();
        payload[3] = if payload[3] == b'A' { b'B' } else { b'A' };
        let token3 = format!(
            "v1.{}.{}",
            String::from_utf8(payload).expect("ascii"),
            parts[2]
        );
        assert!(matches!(
            open_token(&key(), &token3, NOW),
            Err(AuthError::TokenSignature)
        ));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let token = seal_token(&key(), &claims());
        let (signed, sig) = token.rsplit_once('.').expect("three parts");
        let mut tag = URL_SAFE_NO_PAD.decode(sig).expect("b64");
        tag[0] ^= 1;
        let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&tag));
        assert!(matches!(
            open_token(&key(), &flipped, NOW),
            Err(AuthError::TokenSignature)
        ));
        // a truncated tag is no shortcut
        let short = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]));
        assert!(open_token(&key(), &short, NOW).is_err());
        let empty = format!("{signed}.");
        assert!(open_token(&key(), &empty, NOW).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let token = seal_token(&key(), &claims());
        let expires = claims().expires;
        assert!(open_token(&key(), &token, expires - 1).is_ok());
        assert!(matches!(
            open_token(&key(), &token, expires),
            Err(AuthError::TokenExpired)
        ));
        assert!(matches!(
            open_token(&key(), &token, expires + 86_400),
            Err(AuthError::TokenExpired)
        ));
        // logging out may still revoke it
        assert!(open_token_unexpired_or_not(&key(), &token).is_ok());
    }

    #[test]
    fn another_keys_token_is_refused() {
        let token = seal_token(&key(), &claims());
        assert!(matches!(
            open_token(&TokenKey::from_bytes([8; 32]), &token, NOW),
            Err(AuthError::TokenSignature)
        ));
        assert!(matches!(
            open_token(&TokenKey::generate(), &token, NOW),
            Err(AuthError::TokenSignature)
        ));
    }

    #[test]
    fn malformed_tokens_of_every_shape_are_refused() {
        let good = seal_token(&key(), &claims());
        let (_, payload_and_sig) = good.split_once('.').expect("parts");
        let mut shapes: Vec<String> = [
            "",
            ".",
            "..",
            "...",
            "v1",
            "v1.",
            "v1..",
            "v1...",
            "v1.a",
            "v1.a.",
            "v1..a",
            "v1.a.b",
            "v1.a.b.c",
            "V1.a.b",
            "v2.a.b",
            " v1.a.b",
            "v1.====.====",
            "v1.***.***",
            "v1.é.ü",
            "v1.\0.\0",
            "Bearer v1.a.b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        shapes.push(format!("v2.{payload_and_sig}"));
        shapes.push(format!("{good}."));
        shapes.push(format!("{good}.x"));
        shapes.push(format!(" {good}"));
        shapes.push(format!("{good} "));
        shapes.push(format!("{good}="));
        shapes.push(good.replace('.', ".."));
        shapes.push(format!("v1.{}.{}", "A".repeat(2000), "B".repeat(43)));
        shapes.push("v1.".repeat(1000));
        // signed by us, but not claims: the signature does not make them valid
        for payload in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"not json",
            b"{\"s\":1}",
            b"{\"s\":\"1\",\"u\":2,\"e\":3,\"k\":\"x\"}",
            b"{\"s\":1,\"u\":2,\"e\":1e99,\"k\":\"x\"}",
            b"{\"s\":1,\"u\":2,\"e\":3,\"k\":\"x\",\"admin\":true}",
            b"\xff\xfe\x00",
        ] {
            shapes.push(seal_payload(&key(), payload));
        }
        for shape in &shapes {
            let result = open_token(&key(), shape, NOW);
            assert!(
                matches!(
                    result,
                    Err(AuthError::TokenMalformed | AuthError::TokenSignature)
                ),
                "{shape:?} gave {result:?}"
            );
        }
        // a signed payload with a secret that is not 32 bytes opens, but
        // matches no session
        let odd = seal_payload(&key(), b"{\"s\":1,\"u\":2,\"e\":1900000000,\"k\":\"x\"}");
        let claims = open_token(&key(), &odd, NOW).expect("signed claims");
        assert!(matches!(
            claims.secret_hash(),
            Err(AuthError::TokenMalformed)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
            prop_assert!(open_token(&key(), &s, NOW).is_err());
        }

        #[test]
        fn token_like_strings_never_panic(
            a in "[A-Za-z0-9_=+/-]{0,80}",
            b in "[A-Za-z0-9_=+/-]{0,80}",
            dots in 0usize..5,
        ) {
            let s = format!("v1.{a}{}{b}", ".".repeat(dots));
            prop_assert!(open_token(&key(), &s, NOW).is_err());
        }

        #[test]
        fn any_change_to_a_token_is_refused(pos in 0usize..200, byte in 0u8..128) {
            let token = seal_token(&key(), &claims());
            let mut bytes = token.clone().into_bytes();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != byte);
            bytes[pos] = byte;
            let changed = String::from_utf8(bytes).expect("ascii");
            prop_assert!(open_token(&key(), &changed, NOW).is_err(), "{changed}");
        }
    }

    #[test]
    fn passwords_hash_to_argon2id_and_verify() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
        // the same password salts differently
        assert_ne!(phc, hash_password("correct horse").expect("hash"));
        for broken in ["", "$", "$argon2id$", "plaintext", "$argon2id$v=19$m=1$x$y"] {
            assert!(!verify_password("correct horse", broken), "{broken}");
        }
        assert!(!verify_password("x", &DUMMY_HASH));
        assert!(DUMMY_HASH.starts_with("$argon2id$"));
    }

    #[test]
    fn password_rules_count_characters() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"x".repeat(128)).is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
        // eight characters, sixteen bytes
        assert!(check_password("éééééééé").is_ok());
        let err = check_password("short").expect_err("too short");
        assert_eq!(err.code(), "bad_request");
    }

    #[test]
    fn roles_parse_and_allow_what_the_protocol_says() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
            assert_eq!(
                serde_json::to_string(&role).expect("json"),
                format!("\"{role}\"")
            );
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
        let can = |r: Role| {
            (
                r.can_query_memories(),
                r.can_administer(),
                r.controls_character(),
            )
        };
        assert_eq!(can(Role::Admin), (true, true, false));
        assert_eq!(can(Role::Designer), (true, true, false));
        assert_eq!(can(Role::Player), (false, false, true));
        assert_eq!(can(Role::Spectator), (false, false, false));
        assert_eq!(hearth_db::accounts::ROLES, Role::ALL.map(Role::as_str));
    }

    #[test]
    fn non_members_spectate_only_where_admitted() {
        assert_eq!(Role::resolve(None, true), Some(Role::Spectator));
        assert_eq!(Role::resolve(None, false), None);
        assert_eq!(Role::resolve(Some(Role::Player), false), Some(Role::Player));
        assert_eq!(
            Role::resolve(Some(Role::Spectator), false),
            Some(Role::Spectator)
        );
    }

    #[test]
    fn errors_map_onto_protocol_codes() {
        assert_eq!(AuthError::InvalidCredentials.code(), "unauthorized");
        assert_eq!(AuthError::TokenRevoked.code(), "unauthorized");
        assert_eq!(AuthError::LoginRequired("w".into()).code(), "unauthorized");
        assert_eq!(
            AuthError::NoRole {
                user: "u".into(),
                world: "w".into()
            }
            .code(),
            "forbidden"
        );
        assert_eq!(AuthError::UsernameTaken("u".into()).code(), "bad_request");
        let db = AuthError::Db(DbError::InvalidValue("secret internals".into()));
        assert_eq!(db.code(), "internal");
        assert!(!db.client_message().contains("internals"));
        // malformed and forged tokens are told apart only in the log
        assert_eq!(
            AuthError::TokenMalformed.to_string(),
            AuthError::TokenSignature.to_string()
        );
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hearth-auth-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let home = scratch_dir("key");
        let first = TokenKey::resolve(None, &home.join("nested")).expect("created");
        let path = home.join("nested").join(TOKEN_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read(&path).expect("file").len(), 32);
        let again = TokenKey::resolve(Some("  "), &home.join("nested")).expect("read");
        assert_eq!(first.0, again.0);
        // no leftovers from the atomic creation
        assert_eq!(
            std::fs::read_dir(home.join("nested")).expect("dir").count(),
            1
        );
        // base64 text is accepted too
        std::fs::write(
            &path,
            format!("{}\n", general_purpose::STANDARD.encode([5; 32])),
        )
        .expect("write");
        assert_eq!(
            TokenKey::resolve(None, &home.join("nested"))
                .expect("b64")
                .0,
            [5; 32]
        );
        std::fs::write(&path, b"too short").expect("write");
        let err = TokenKey::resolve(None, &home.join("nested")).expect_err("garbage");
        assert_eq!(err.code(), "internal");
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn the_environment_key_wins_and_must_be_32_bytes() {
        let home = scratch_dir("env");
        let bytes = [0xfb; 32];
        for text in [
            general_purpose::STANDARD.encode(bytes),
            general_purpose::STANDARD_NO_PAD.encode(bytes),
            general_purpose::URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
        ] {
            assert_eq!(TokenKey::resolve(Some(&text), &home).expect(&text).0, bytes);
        }
        assert!(
            !home.join(TOKEN_KEY_FILE).exists(),
            "no file when the variable is set"
        );
        let err = TokenKey::resolve(Some(&general_purpose::STANDARD.encode([1; 16])), &home)
            .expect_err("16 bytes");
        assert!(err.to_string().contains(TOKEN_SECRET_ENV), "{err}");
        assert!(TokenKey::resolve(Some("not base64!"), &home).is_err());
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn debug_output_hides_secrets() {
        assert_eq!(format!("{:?}", key()), "TokenKey(..)");
        assert!(!format!("{:?}", claims()).contains(&claims().secret));
        assert_eq!(format!("{:?}", Password("hunter22".into())), "Password(..)");
    }

    #[test]
    fn a_new_password_is_asked_twice() {
        let answers = |lines: &'static [&'static str]| {
            let mut it = lines.iter();
            move |_prompt: String| {
                it.next()
                    .map(|s| s.to_string())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
            }
        };
        assert_eq!(
            confirm_new_password("ada", answers(&["s3cret-pw", "s3cret-pw"])).expect("same"),
            "s3cret-pw"
        );
        let err =
            confirm_new_password("ada", answers(&["s3cret-pw", "s3cret-pX"])).expect_err("differ");
        assert!(matches!(err, PromptError::Refused(AuthError::Invalid(m)) if m.contains("differ")));
        // too short: refused before asking again
        let err = confirm_new_password("ada", answers(&["short"])).expect_err("short");
        assert!(matches!(err, PromptError::Refused(_)));
        let err = confirm_new_password("ada", answers(&[])).expect_err("no input");
        assert!(matches!(err, PromptError::Io(_)));
    }
}
