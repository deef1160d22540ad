//! The database crate's error type. Driver errors that are constraint
//! violations are turned into variants that name the constraint, so a caller
//! (and a player or designer reading the message) learns which rule a value
//! broke without reading PostgreSQL internals.

use tokio_postgres::error::SqlState;

use crate::{ClusterError, MigrationError};

/// Constraints that guard the embedding dimension of a world's vectors.
const EMBEDDING_DIM_CONSTRAINTS: &[&str] = &[
    "agent_memories_embedding_dim_check",
    "agent_memories_world_embedding_dim_fkey",
    "lore_chunks_embedding_dim_check",
    "lore_chunks_world_embedding_dim_fkey",
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A row broke a CHECK, UNIQUE, NOT NULL or foreign-key rule.
    #[error("{table}: value rejected by constraint {constraint}: {message}")]
    Constraint {
        table: String,
        constraint: String,
        message: String,
    },
    /// A vector whose dimension is not the one of its world's embedding model.
    #[error(
        "embedding dimension does not match the world's embedding model \
         (constraint {constraint}): {detail}"
    )]
    EmbeddingDimension { constraint: String, detail: String },
    /// The world exists with another embedding model or dimension.
    #[error(
        "world '{world}' stores embeddings of model '{stored_model}' ({stored_dim} dimensions), \
         but '{configured_model}' ({configured_dim} dimensions) is configured: configure the \
         stored model, or re-embed the world's memories with the new one"
    )]
    EmbeddingModelMismatch {
        world: String,
        stored_model: String,
        stored_dim: i32,
        configured_model: String,
        configured_dim: i32,
    },
    #[error("invalid value: {0}")]
    InvalidValue(String),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database pool configuration: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    #[error("database: {}", describe_postgres(.0))]
    Postgres(tokio_postgres::Error),
}

/// PostgreSQL's own message (with detail and hint) where there is one:
/// `tokio_postgres::Error` alone displays only "db error".
pub fn describe_postgres(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            return DbError::Postgres(err);
        };
        let code = db.code();
        let is_constraint = *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::FOREIGN_KEY_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
            || *code == SqlState::EXCLUSION_VIOLATION;
        if !is_constraint {
            return DbError::Postgres(err);
        }
        let constraint = db
            .constraint()
            .or(db.column())
            .unwrap_or("unnamed")
            .to_owned();
        let mut message = db.message().to_owned();
        if let Some(detail) = db.detail() {
            message = format!("{message} ({detail})");
        }
        if EMBEDDING_DIM_CONSTRAINTS.contains(&constraint.as_str()) {
            return DbError::EmbeddingDimension {
                constraint,
                detail: message,
            };
        }
        DbError::Constraint {
            table: db.table().unwrap_or("?").to_owned(),
            constraint,
            message,
        }
    }
}

impl DbError {
    /// Whether the failure is the database being away or busy (worth
    /// retrying: a restart, a cut connection, a full pool, a serialization
    /// conflict) rather than the data being wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Postgres(pg) => match pg.as_db_error() {
                None => true,
                Some(db) => {
                    let code = db.code().code();
                    // 08: connection exception; 57P0x: shutdown, crash, cannot
                    // connect now; 53: insufficient resources; 40001, 40P01
                    code.starts_with("08")
                        || code.starts_with("57P0")
                        || code.starts_with("53")
                        || code == "40001"
                        || code == "40P01"
                }
            },
            _ => false,
        }
    }

    /// The violated constraint's name, when this error is a violation.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Constraint { constraint, .. }
            | DbError::EmbeddingDimension { constraint, .. } => Some(constraint),
            _ => None,
        }
    }
}
