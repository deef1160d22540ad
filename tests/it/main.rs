//! Hearth's end-to-end tests, as the one test binary `it` (linked once):
//! each module is what used to be a test binary of its own, and its tests
//! are named `module::test`, so `cargo test -p hearth-tests --test it
//! reload::` runs one module's.
//!
//! All of them run in one process, side by side, so none may rely on
//! having the process to itself: no test sets environment variables;
//! scratch directories are named per test; a test that reads `/metrics`
//! (one recorder per process) runs its server as a process of its own
//! (`ServerBuilder::process`); and the tests that stop a PostgreSQL cluster
//! of their own take [`OWN_CLUSTER`] first.
//!
//! - `auth`: accounts: register, login, verify and logout, roles per world, `hearth user add`.
//! - `check`: `hearth db check` and the database commands, each failure with its message and exit code.
//! - `cluster`: the embedded PostgreSQL cluster created, found running, stopped and restarted with its data.
//! - `config`: `hearth config` and the configuration files, variables and flags, through the real binary.
//! - `constraints`: the schema refuses bad values naming the constraint, and keeps each world's rows apart.
//! - `docker`: `docker/Dockerfile`, `docker/compose.yml` and `.dockerignore`, checked without a Docker engine.
//! - `embed`: the MiniLM embedder on a toy retrieval set, and the HTTP embedder against a real server.
//! - `export`: `hearth export` and `hearth import` round trips, refused documents, the real binary's exit codes.
//! - `http`: `/healthz`, `/readyz`, `/metrics` and the account routes of `hearth serve`.
//! - `llm_client`: the language-model client against the scripted OpenAI-compatible server.
//! - `llm_world`: agents that think with a language model in a real `hearth serve`, and a model that fails.
//! - `loadtest`: `hearth loadtest` end to end: its report, its SLOs, worker processes and accounts.
//! - `lore`: world lore in PostgreSQL: sync by content hash, and hybrid search.
//! - `memories`: memories in PostgreSQL: COPY ingestion, exact retrieval, the same ranking as the hot store.
//! - `memory_service`: memories beside a live world: stored, loaded back, a hanging embedder, `hearth memories reembed`.
//! - `migrations`: migrations: round trips, checksums, dirty marks, failed scripts, concurrent runners.
//! - `outage`: the database stopped for 30 s under a running world: nothing lost, nothing stalled.
//! - `persistence`: write-behind persistence: graceful stops, one owner per world, SIGKILL at any moment.
//! - `reload`: content reloaded into a running world: edits, broken files, map, lore, agents, `hearth reload`.
//! - `serve`: `hearth serve` migrates, opens the world, runs and stops, with a database or without.
//! - `validate`: content validation on the fixtures: every kind of problem located, never a panic.
//! - `vectors`: pgvector's HNSW index over reflections, and worlds of other dimensions.
//! - `viewer`: the web viewer in headless Chromium through chromedriver.
//! - `world`: the living world headless: the demo cast over one game day, and a deterministic state hash.
//! - `writer`: the write-behind commit: a batch lands whole or not at all.
//! - `ws`: game clients over real WebSocket connections: snapshots, deltas, roles, hostile input, slow clients.

mod auth;
mod check;
mod cluster;
mod config;
mod constraints;
mod docker;
mod embed;
mod export;
mod http;
mod llm_client;
mod llm_world;
mod loadtest;
mod lore;
mod memories;
mod memory_service;
mod migrations;
mod outage;
mod persistence;
mod reload;
mod serve;
mod validate;
mod vectors;
mod viewer;
mod world;
mod writer;
mod ws;

/// Held by each test that starts and stops a PostgreSQL cluster of its own
/// (`cluster`, `outage`). Clusters pick their ports in one range, so one
/// being created or started could take the port of another that is down,
/// which would then come back on another port than its server was given.
static OWN_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
