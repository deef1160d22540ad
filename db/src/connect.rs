//! Where the database is — `DATABASE_URL`, or the embedded cluster when it is
//! unset — and how to reach it: single connections and the
//! `deadpool-postgres` pool. Touches the network and, for the embedded
//! cluster, its directory.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use tracing::warn;

use crate::{DbError, EmbeddedCluster};

pub type Pool = deadpool_postgres::Pool;

/// The database Hearth will use.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    /// A server named by `DATABASE_URL` (URL or `key=value` form).
    Url(Box<Config>),
    /// The project-local cluster under `<home>/pg`.
    Embedded(EmbeddedCluster),
}

impl DatabaseTarget {
    /// `url` when given (normally from `DATABASE_URL`), else the embedded
    /// cluster under `home`.
    pub fn resolve(url: Option<&str>, home: &Path) -> Result<Self, DbError> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                let mut config = Config::from_str(url).map_err(|e| {
                    DbError::InvalidValue(format!(
                        "DATABASE_URL is not a PostgreSQL connection string: {e}"
                    ))
                })?;
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(Duration::from_secs(10));
                }
                if config.get_application_name().is_none() {
                    config.application_name("hearth");
                }
                Ok(Self::Url(Box::new(config)))
            }
            None => Ok(Self::Embedded(EmbeddedCluster::new(home))),
        }
    }

    /// The connection settings, starting the embedded cluster if needed.
    pub async fn config(&self) -> Result<Config, DbError> {
        match self {
            Self::Url(config) => Ok((**config).clone()),
            Self::Embedded(cluster) => Ok(cluster.ensure_running(crate::cluster::DATABASE).await?),
        }
    }

    /// A description for messages, never with the password.
    pub fn describe(&self) -> String {
        match self {
            Self::Url(config) => describe(config),
            Self::Embedded(cluster) => format!("embedded cluster at {}", cluster.root().display()),
        }
    }
}

/// `postgres://user@host:port/db`, without the password.
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// One connection, its driver task spawned on the current runtime.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "database connection closed with an error");
        }
    });
    Ok(client)
}

/// A pool of up to `max_size` connections. Connections are made lazily.
/// Whether the database answers a trivial query through `pool` (the
/// readiness probe).
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

pub fn pool(config: Config, max_size: usize) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_described_without_password() {
        let t = DatabaseTarget::resolve(
            Some("postgres://alice:secret@db.example:6543/game"),
            Path::new("."),
        )
        .expect("valid url");
        let d = t.describe();
        assert_eq!(d, "postgres://alice@db.example:6543/game");
        assert!(!d.contains("secret"));
    }

    #[test]
    fn key_value_form_is_accepted() {
        let t = DatabaseTarget::resolve(
            Some("host=127.0.0.1 port=5 user=u dbname=d"),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(t.describe(), "postgres://u@127.0.0.1:5/d");
    }

    #[test]
    fn empty_url_means_embedded_and_garbage_is_an_error() {
        assert!(matches!(
            DatabaseTarget::resolve(Some("  "), Path::new(".hearth")),
            Ok(DatabaseTarget::Embedded(_))
        ));
        let err = DatabaseTarget::resolve(Some("postgres://u@h:notaport/d"), Path::new("."))
            .expect_err("bad port");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }
}
