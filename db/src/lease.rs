//! World ownership: one process runs a world at a time. The owner holds a
//! session advisory lock on the world on a connection of its own (PostgreSQL
//! releases it the moment that connection ends, so a dead owner frees the
//! world at once) and writes a fencing token and its name into
//! `world_leases`. Every write-behind commit checks the token inside its own
//! transaction ([`check_in`]), so a process that lost the lock (its
//! connection dropped while another process took over) can never write into
//! the world again. Touches `world_leases` and advisory locks only.

use tokio_postgres::{Client, Config, GenericClient};
use tracing::{info, warn};

use crate::DbError;
use crate::connect;

/// First half of the advisory lock key of a world ("hear"); the second half
/// is the world's id.
const LOCK_CLASS: i32 = 0x6865_6172;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live process runs the world.
    #[error(
        "world '{world}' is already being served by {owner} (since {since}); stop that process \
         first, or serve another world"
    )]
    Owned {
        world: String,
        owner: String,
        since: String,
    },
    /// This process held the world, lost its lock connection, and another
    /// process has taken the world over meanwhile.
    #[error("world '{world}' was taken over by {owner} while this process was disconnected")]
    Lost { world: String, owner: String },
    #[error("world id {0} cannot be used as an advisory lock key")]
    Key(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for LeaseError {
    fn from(e: tokio_postgres::Error) -> Self {
        LeaseError::Db(DbError::from(e))
    }
}

/// A held world. Dropping it closes the lock connection, which frees the
/// world.
#[derive(Debug)]
pub struct Lease {
    config: Config,
    client: Client,
    world_id: i64,
    world: String,
    owner: String,
    token: i64,
}

/// "hearth pid 4242 on host alpha": how this process names itself.
pub fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("hearth pid {} on host {host}", std::process::id())
}

fn key(world_id: i64) -> Result<i32, LeaseError> {
    i32::try_from(world_id).map_err(|_| LeaseError::Key(world_id))
}

impl Lease {
    /// Takes world `world_id` (slug `world`) for `owner`, or says who has it.
    pub async fn acquire(
        config: &Config,
        world_id: i64,
        world: &str,
        owner: &str,
    ) -> Result<Lease, LeaseError> {
        let client = connect::connect(config).await?;
        let token = rand::random::<i64>();
        take(&client, world_id, world, owner, token).await?;
        info!(world, owner, "world lease acquired");
        Ok(Lease {
            config: config.clone(),
            client,
            world_id,
            world: world.to_owned(),
            owner: owner.to_owned(),
            token,
        })
    }

    /// The token commits must show (see [`check_in`]).
    pub fn token(&self) -> i64 {
        self.token
    }

    pub fn world_id(&self) -> i64 {
        self.world_id
    }

    /// Whether the lock connection is still up.
    pub fn is_held(&self) -> bool {
        !self.client.is_closed()
    }

    /// Makes sure the lock is held, reconnecting and retaking it (with the
    /// same token) if its connection dropped. Fails with
    /// [`LeaseError::Lost`] if another process owns the world now.
    pub async fn ensure(&mut self) -> Result<(), LeaseError> {
        if self.is_held() {
            return Ok(());
        }
        let client = connect::connect(&self.config).await?;
        let key = key(self.world_id)?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
            .await?
            .try_get(0)?;
        let row = client
            .query_opt(
                "SELECT token, owner FROM world_leases WHERE world_id = $1",
                &[&self.world_id],
            )
            .await?;
        let (token, holder): (Option<i64>, Option<String>) = match &row {
            Some(r) => (Some(r.try_get(0)?), Some(r.try_get(1)?)),
            None => (None, None),
        };
        if !locked || token.is_some_and(|t| t != self.token) {
            return Err(LeaseError::Lost {
                world: self.world.clone(),
                owner: holder.unwrap_or_else(|| "another process".into()),
            });
        }
        client
            .execute(
                "UPDATE world_leases SET heartbeat_at = now() WHERE world_id = $1",
                &[&self.world_id],
            )
            .await?;
        self.client = client;
        info!(world = %self.world, "world lease retaken after reconnecting");
        Ok(())
    }

    /// Gives the world up (the lock and the row) before exiting.
    pub async fn release(self) {
        let done = self
            .client
            .execute(
                "DELETE FROM world_leases WHERE world_id = $1 AND token = $2",
                &[&self.world_id, &self.token],
            )
            .await;
        if let Err(e) = done {
            warn!(error = %e, "releasing the world lease");
        }
        let _ = self
            .client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&LOCK_CLASS, &(self.world_id as i32)],
            )
            .await;
        info!(world = %self.world, owner = %self.owner, "world lease released");
    }
}

async fn take(
    client: &Client,
    world_id: i64,
    world: &str,
    owner: &str,
    token: i64,
) -> Result<(), LeaseError> {
    let key = key(world_id)?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
        .await?
        .try_get(0)?;
    if !locked {
        let row = client
            .query_opt(
                "SELECT owner, to_char(acquired_at AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD HH24:MI:SS \"UTC\"') FROM world_leases WHERE world_id = $1",
                &[&world_id],
            )
            .await?;
        let (owner, since) = match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => ("another process".to_owned(), "an unknown time".to_owned()),
        };
        return Err(LeaseError::Owned {
            world: world.to_owned(),
            owner,
            since,
        });
    }
    client
        .execute(
            "INSERT INTO world_leases (world_id, token, owner) VALUES ($1, $2, $3) \
             ON CONFLICT (world_id) DO UPDATE SET token = EXCLUDED.token, owner = EXCLUDED.owner, \
             acquired_at = now(), heartbeat_at = now()",
            &[&world_id, &token, &owner],
        )
        .await?;
    Ok(())
}

/// Inside a commit's transaction: fails unless the world is still leased
/// with `token` (fencing: a process that lost the world writes nothing).
pub async fn check_in(
    client: &impl GenericClient,
    world_id: i64,
    token: i64,
) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE world_leases SET heartbeat_at = now() WHERE world_id = $1 AND token = $2",
            &[&world_id, &token],
        )
        .await?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process() {
        let me = this_process();
        assert!(me.starts_with(&format!("hearth pid {} on host ", std::process::id())));
    }

    #[test]
    fn world_ids_beyond_int4_are_refused() {
        assert_eq!(key(7).ok(), Some(7));
        assert!(matches!(
            key(i64::from(i32::MAX) + 1),
            Err(LeaseError::Key(_))
        ));
    }
}
