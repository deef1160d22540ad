//! Test harness for Hearth's end-to-end tests: every test gets its own fresh
//! PostgreSQL database (with pgvector), cloned from a migrated template and
//! dropped when the test ends. Never a mock.
//!
//! Which server: `HEARTH_TEST_DATABASE_URL` (a connection string whose user
//! may `CREATE DATABASE` and `CREATE EXTENSION vector`, i.e. a superuser), or,
//! when unset, the embedded cluster under `<workspace>/.hearth`, created and
//! started on first use exactly as `hearth` does it.
//!
//! The template is named after a digest of the migrations
//! (`hearth_tpl_<digest>`), built once under an advisory lock, and rebuilt
//! when a migration changes.

pub mod llm_server;
pub mod server;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use hearth_db::{EmbeddedCluster, Migrations, connect, migrate};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config};

/// The environment variable naming the test server.
pub const TEST_DATABASE_ENV: &str = "HEARTH_TEST_DATABASE_URL";

/// Advisory lock key serialising template builds ("hearthtp").
const TEMPLATE_LOCK: i64 = 0x6865_6172_7468_7470;

static ADMIN: OnceCell<Config> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The workspace root (where `.hearth/` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn uses_embedded() -> bool {
    std::env::var(TEST_DATABASE_ENV).map_or(true, |v| v.trim().is_empty())
}

/// Connection settings for the test server's maintenance database.
pub async fn admin_config() -> Config {
    ADMIN
        .get_or_init(|| async {
            match std::env::var(TEST_DATABASE_ENV) {
                Ok(url) if !url.trim().is_empty() => Config::from_str(&url).unwrap_or_else(|e| {
                    panic!("{TEST_DATABASE_ENV} is not a connection string: {e}")
                }),
                _ => EmbeddedCluster::new(&workspace_root().join(".hearth"))
                    .ensure_running("postgres")
                    .await
                    .unwrap_or_else(|e| panic!("cannot start the embedded cluster for tests: {e}")),
            }
        })
        .await
        .clone()
}

async fn admin_client() -> Client {
    connect::connect(&admin_config().await)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrated template's name, building it if needed.
async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let migrations = Migrations::embedded().expect("embedded migrations");
            let name = format!("hearth_tpl_{}", migrations.fingerprint());
            let admin = admin_client().await;
            admin
                .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
                .await
                .expect("template lock");
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .expect("query pg_database")
                .is_some();
            if !exists {
                let building = format!("{name}_build");
                // one statement per call: DROP/CREATE DATABASE refuse transaction blocks
                for sql in [
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&building)),
                    format!("CREATE DATABASE {}", quote(&building)),
                ] {
                    admin.batch_execute(&sql).await.expect("create template database");
                }
                let mut config = admin_config().await;
                config.dbname(&building);
                let mut client = connect::connect(&config).await.expect("connect to template");
                migrate::migrate(&mut client, &migrations, None)
                    .await
                    .unwrap_or_else(|e| panic!("migrating the template failed: {e}"));
                drop(client);
                for sql in [
                    format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", quote(&building)),
                    format!("ALTER DATABASE {} RENAME TO {}", quote(&building), quote(&name)),
                ] {
                    admin.batch_execute(&sql).await.expect("publish template");
                }
                // templates of older migration sets are of no further use
                let stale = admin
                    .query(
                        "SELECT datname FROM pg_database WHERE datname LIKE 'hearth\\_tpl\\_%' AND datname <> $1",
                        &[&name],
                    )
                    .await
                    .expect("list templates");
                for row in stale {
                    let old: String = row.get(0);
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&old)))
                        .await;
                }
            }
            if uses_embedded() {
                drop_leaked_databases(&admin).await;
            }
            admin
                .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
                .await
                .expect("template unlock");
            name
        })
        .await
        .clone()
}

/// Drops test databases left by test processes that died (the embedded
/// cluster is this machine's own, so a dead PID means a leak).
async fn drop_leaked_databases(admin: &Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'hearth\\_test\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .strip_prefix("hearth_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !PathBuf::from(format!("/proc/{pid}")).exists()
        {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote(&name)
                ))
                .await;
        }
    }
}

/// A database of its own for one test; dropped on `Drop`.
#[derive(Debug)]
pub struct TestDb {
    pub config: Config,
    pub name: String,
}

impl TestDb {
    /// A fresh database at the binary's latest migration.
    pub async fn migrated() -> Self {
        let template = template().await;
        Self::create(&template).await
    }

    /// A fresh, empty database: no migrations, no `vector` extension.
    pub async fn empty() -> Self {
        Self::create("template0").await
    }

    async fn create(template: &str) -> Self {
        let name = format!(
            "hearth_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let admin = admin_client().await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote(&name),
                quote(template)
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let mut config = admin_config().await;
        config.dbname(&name);
        Self { config, name }
    }

    /// A new connection to this database.
    pub async fn client(&self) -> Client {
        connect::connect(&self.config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }

    /// The connection string of this database, as `DATABASE_URL` takes it.
    pub fn url(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        let password = self
            .config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we can rely on, so the database
        // is dropped from a thread with a runtime of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let admin = admin_client().await;
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote(&name)
                    ))
                    .await;
            });
        });
        let _ = handle.join();
    }
}
