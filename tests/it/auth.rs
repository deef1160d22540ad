//! Accounts against a real PostgreSQL: register, login, verify and logout
//! (a revoked token is refused), the same refusal for an unknown user and a
//! wrong password, roles that hold in one world only, usernames unique
//! without case, and `hearth user add` run in process.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::time::Duration;

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_db::{DbError, accounts, connect, worlds};
use hearth_net::auth::{
    Auth, AuthError, AuthSettings, Claims, Role, TokenKey, open_token, seal_token,
};
use hearth_tests::TestDb;

const PASSWORD: &str = "correct horse battery";

/// A fresh database with these worlds, and an `Auth` over it.
async fn setup(slugs: &[&str], settings: AuthSettings) -> (TestDb, Auth, TokenKey) {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    for slug in slugs {
        worlds::ensure(&client, slug, slug, "hearth-hashed-v1", 384)
            .await
            .unwrap();
    }
    let pool = connect::pool(db.config.clone(), 4).unwrap();
    let key = TokenKey::generate();
    (db, Auth::new(pool, key.clone(), settings), key)
}

async fn close_to_anonymous(db: &TestDb, world: &str) {
    db.client()
        .await
        .execute(
            "UPDATE worlds SET settings = settings || '{\"anonymous_spectators\": false}' \
             WHERE slug = $1",
            &[&world],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn register_login_verify_logout_round_trip() {
    let (db, auth, _) = setup(&["valley"], AuthSettings::default()).await;
    let user = auth
        .register("Ada", PASSWORD, Some("ada@example.org"))
        .await
        .unwrap();
    assert_eq!(user.username, "Ada");

    // the name is matched without case
    let login = auth.login("ada", PASSWORD, "valley").await.unwrap();
    assert_eq!(login.user.id, user.id);
    assert_eq!(
        login.role,
        Role::Spectator,
        "no role: a spectator of an open world"
    );
    assert!(login.token.starts_with("v1."), "{}", login.token);
    let lifetime = login.expires_at - chrono::Utc::now();
    assert!(
        lifetime >= chrono::Duration::hours(24) - chrono::Duration::seconds(5)
            && lifetime <= chrono::Duration::hours(24) + chrono::Duration::seconds(1),
        "{lifetime}"
    );

    let me = auth.verify(&login.token, "valley").await.unwrap();
    assert_eq!(me.user_id, user.id);
    assert_eq!(me.username, "Ada");
    assert_eq!(me.role, Role::Spectator);

    // only a hash of the token's secret is stored
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT token_hash, expires_at, revoked_at FROM sessions WHERE id = $1",
            &[&me.session_id],
        )
        .await
        .unwrap();
    let hash: Vec<u8> = row.get(0);
    assert_eq!(hash.len(), 32);
    assert!(
        !login
            .token
            .as_bytes()
            .windows(32)
            .any(|w| w == hash.as_slice())
    );
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(1),
        login.expires_at
    );
    assert!(
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
            .is_none()
    );

    auth.logout(&login.token).await.unwrap();
    let err = auth.verify(&login.token, "valley").await.unwrap_err();
    assert!(matches!(err, AuthError::TokenRevoked), "{err:?}");
    assert_eq!(err.code(), "unauthorized");
    // logging out twice is no error; a new login gives a new, working token
    auth.logout(&login.token).await.unwrap();
    let again = auth.login("Ada", PASSWORD, "valley").await.unwrap();
    assert_ne!(again.token, login.token);
    auth.verify(&again.token, "valley").await.unwrap();

    // a disabled account can neither log in nor use its tokens
    client
        .execute(
            "UPDATE users SET disabled_at = now() WHERE id = $1",
            &[&user.id],
        )
        .await
        .unwrap();
    assert!(matches!(
        auth.verify(&again.token, "valley").await,
        Err(AuthError::Disabled(_))
    ));
    assert!(matches!(
        auth.login("Ada", PASSWORD, "valley").await,
        Err(AuthError::Disabled(_))
    ));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let (_db, auth, _) = setup(&["valley"], AuthSettings::default()).await;
    auth.register("bob", PASSWORD, None).await.unwrap();
    let wrong = auth
        .login("bob", "correct horse battery!", "valley")
        .await
        .unwrap_err();
    let unknown = auth.login("nobody", PASSWORD, "valley").await.unwrap_err();
    let malformed = auth.login("no one!", "x", "valley").await.unwrap_err();
    for err in [&wrong, &unknown, &malformed] {
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
        assert_eq!(err.code(), "unauthorized");
        assert_eq!(err.to_string(), wrong.to_string());
        assert_eq!(err.client_message(), wrong.client_message());
    }
}

#[tokio::test]
async fn roles_hold_in_their_own_world_only() {
    let (db, auth, _) = setup(&["alpha", "beta", "gamma"], AuthSettings::default()).await;
    close_to_anonymous(&db, "beta").await;
    let user = auth.register("cyd", PASSWORD, None).await.unwrap();
    let client = db.client().await;
    let alpha = accounts::world_access(&client, "alpha")
        .await
        .unwrap()
        .unwrap();
    accounts::set_role(&client, alpha.id, user.id, "admin")
        .await
        .unwrap();

    let login = auth.login("cyd", PASSWORD, "alpha").await.unwrap();
    assert_eq!(login.role, Role::Admin);
    let in_alpha = auth.verify(&login.token, "alpha").await.unwrap();
    assert_eq!(in_alpha.role, Role::Admin);
    assert!(in_alpha.role.can_administer());

    // beta admits no anonymous spectators: an admin of alpha is nothing there
    let err = auth.verify(&login.token, "beta").await.unwrap_err();
    assert!(matches!(err, AuthError::NoRole { .. }), "{err:?}");
    assert_eq!(err.code(), "forbidden");
    assert!(matches!(
        auth.login("cyd", PASSWORD, "beta").await,
        Err(AuthError::NoRole { .. })
    ));
    assert!(matches!(
        auth.anonymous("beta").await,
        Err(AuthError::LoginRequired(_))
    ));
    // gamma admits them: there it is a mere spectator
    let in_gamma = auth.verify(&login.token, "gamma").await.unwrap();
    assert_eq!(in_gamma.role, Role::Spectator);
    assert!(!in_gamma.role.can_query_memories());
    assert_eq!(auth.anonymous("gamma").await.unwrap(), Role::Spectator);

    // a role given in beta opens beta, and changes nothing in alpha
    let beta = accounts::world_access(&client, "beta")
        .await
        .unwrap()
        .unwrap();
    accounts::set_role(&client, beta.id, user.id, "player")
        .await
        .unwrap();
    assert_eq!(
        auth.verify(&login.token, "beta").await.unwrap().role,
        Role::Player
    );
    assert_eq!(
        auth.verify(&login.token, "alpha").await.unwrap().role,
        Role::Admin
    );
    // and a world that does not exist is named
    let err = auth.verify(&login.token, "nowhere").await.unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[tokio::test]
async fn usernames_are_unique_without_case() {
    let (db, auth, _) = setup(&[], AuthSettings::default()).await;
    auth.register("Dana", PASSWORD, Some("dana@example.org"))
        .await
        .unwrap();
    let err = auth.register("dANA", PASSWORD, None).await.unwrap_err();
    assert!(matches!(err, AuthError::UsernameTaken(_)), "{err:?}");
    assert_eq!(err.code(), "bad_request");
    assert!(err.to_string().contains("'dANA' is taken"), "{err}");

    // the database says the same, naming its constraint, when asked directly
    // (as two racing registrations would find out)
    let client = db.client().await;
    let err = accounts::create_user(&client, "DANA", None, "$argon2id$x")
        .await
        .unwrap_err();
    assert_eq!(err.constraint(), Some(accounts::USERNAME_KEY));
    assert!(matches!(err, DbError::Constraint { .. }));
    assert!(err.to_string().contains("'DANA' is taken"), "{err}");
    let err = auth
        .register("dana2", PASSWORD, Some("DANA@example.org"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_request");
    assert!(err.to_string().contains("email"), "{err}");

    for (name, password) in [("da", PASSWORD), ("da na", PASSWORD), ("dana3", "short")] {
        let err = auth.register(name, password, None).await.unwrap_err();
        assert_eq!(err.code(), "bad_request", "{name}: {err}");
    }
}

#[tokio::test]
async fn tokens_expire_and_cannot_be_forged_with_the_key_alone() {
    let settings = AuthSettings {
        token_lifetime_secs: 1,
    };
    let (_db, auth, key) = setup(&["valley"], settings).await;
    auth.register("eve", PASSWORD, None).await.unwrap();
    let login = auth.login("eve", PASSWORD, "valley").await.unwrap();
    let me = auth.verify(&login.token, "valley").await.unwrap();

    // signed with the right key, for the right session, but not its secret
    let claims = open_token(&key, &login.token, 0).unwrap();
    let forged = seal_token(
        &key,
        &Claims::new(me.session_id, me.user_id, claims.expires, [0; 32]),
    );
    assert!(matches!(
        auth.verify(&forged, "valley").await,
        Err(AuthError::TokenSignature)
    ));
    // nor log the session out
    assert!(matches!(
        auth.logout(&forged).await,
        Err(AuthError::TokenSignature)
    ));
    auth.verify(&login.token, "valley").await.unwrap();
    // nor name a session that does not exist
    let forged = seal_token(
        &key,
        &Claims::new(me.session_id + 1000, me.user_id, claims.expires, [0; 32]),
    );
    assert!(auth.verify(&forged, "valley").await.is_err());

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = auth.verify(&login.token, "valley").await.unwrap_err();
    assert!(matches!(err, AuthError::TokenExpired), "{err:?}");
    assert_eq!(err.code(), "unauthorized");
}

/// `hearth --database-url URL user add …`, in process: its output, or its error.
async fn user_add(url: &str, rest: &[&str]) -> Result<String, cli::CliError> {
    let mut argv = vec!["hearth", "--database-url", url, "user", "add"];
    argv.extend(rest);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    cli::run(cli, &mut out, std::future::ready(()))
        .await
        .map(|()| String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn hearth_user_add_creates_a_player_who_can_log_in() {
    let (db, auth, _) = setup(&["valley"], AuthSettings::default()).await;
    let url = db.url();
    let out = user_add(
        &url,
        &[
            "finn",
            "--role",
            "player",
            "--world",
            "valley",
            "--password",
            "finns-password",
            "--email",
            "finn@example.org",
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("created user 'finn'"), "{out}");
    assert!(out.contains("player in world 'valley'"), "{out}");
    assert!(out.contains("created character 'finn'"), "{out}");

    let login = auth
        .login("finn", "finns-password", "valley")
        .await
        .unwrap();
    assert_eq!(login.role, Role::Player);
    assert_eq!(login.user.email.as_deref(), Some("finn@example.org"));
    assert!(login.role.controls_character());
    let client = db.client().await;
    let world = accounts::world_access(&client, "valley")
        .await
        .unwrap()
        .unwrap();
    let character = accounts::character_of(&client, world.id, login.user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(character.name, "finn");

    // again, as a designer: the user is reused (no password needed), its
    // role changes, and it keeps its one character
    let out = user_add(&url, &["FINN", "--role", "designer", "--world", "valley"])
        .await
        .unwrap();
    assert!(out.contains("exists"), "{out}");
    assert!(
        out.contains("now designer in world 'valley' (was player)"),
        "{out}"
    );
    let me = auth.verify(&login.token, "valley").await.unwrap();
    assert_eq!(me.role, Role::Designer);
    let characters: i64 = client
        .query_one("SELECT count(*) FROM characters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(characters, 1);

    // a world that does not exist is a clear error, and creates nobody
    let err = user_add(
        &url,
        &[
            "gil",
            "--role",
            "admin",
            "--world",
            "nowhere",
            "--password",
            "gils-password",
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no world 'nowhere'"), "{err}");
    assert_eq!(err.exit_code(), 2);
    assert!(
        accounts::user_by_name(&client, "gil")
            .await
            .unwrap()
            .is_none()
    );
    // so is a password that breaks the rules
    let err = user_add(
        &url,
        &[
            "gil",
            "--role",
            "admin",
            "--world",
            "valley",
            "--password",
            "short",
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("8 to 128 characters"), "{err}");
    // and a role that does not exist never parses
    assert!(
        Cli::try_parse_from([
            "hearth", "user", "add", "gil", "--role", "root", "--world", "valley"
        ])
        .is_err()
    );
}
