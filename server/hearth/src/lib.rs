//! Hearth: a game server for worlds whose characters are generative agents.
//!
//! # Layout
//! - [`cli`]: the `hearth` command line (clap) and what each command does.
//! - [`config`]: `hearth.toml`, its environment overrides, and what
//!   `hearth config` prints.
//! - [`export`]: `hearth export` and `hearth import`: a whole world as a
//!   versioned JSON document, and back.
//! - [`serve`]: `hearth serve`, the long-running server; [`fanout`]: each
//!   tick handed to its consumers (persistence, models, hub, memories);
//!   [`think`]: what the world wants of agents' models, asked off its thread.
//! - [`minds`]: the hub's view of agents' minds, answered by `hearth-mind`.
//! - [`memories`]: `hearth memories`: query, prompt and re-embed stored
//!   memories.
//! - [`persist`]: the write-behind pipeline from the world's snapshots to
//!   the database writer.
//! - [`reload`]: content files reloaded into the running world (watched,
//!   SIGHUP, `reload_content`).
//! - [`shutdown`]: the signals that stop it gracefully.
//! - [`simulate`]: `hearth simulate`, the headless run and its report.
//! - [`telemetry`]: logging setup.
//!
//! The binary of a workspace with one crate per concern (`ARCHITECTURE.md`):
//! content, world, mind, protocol, net and loadtest are crates of their
//! own, and the database is `hearth-db`; this crate never writes SQL.

pub mod cli;
pub mod config;
pub mod export;
pub mod fanout;
pub mod memories;
pub mod minds;
pub mod persist;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
pub mod think;
