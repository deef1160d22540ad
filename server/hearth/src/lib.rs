//! Hearth: a game server for worlds whose characters are generative agents.
//!
//! # Layout
//! - [`cli`]: the `hearth` command line (clap) and what each command does.
//! - [`config`]: `hearth.toml`, its environment overrides, and what
//!   `hearth config` prints.
//! - [`content`]: agent files and Tiled maps: formats, validation, the compiled [`content::Content`].
//! - [`export`]: `hearth export` and `hearth import`: a whole world as a
//!   versioned JSON document, and back.
//! - [`serve`]: `hearth serve`, the long-running server.
//! - [`net`]: the game clients' protocol and accounts.
//! - [`persist`]: the write-behind pipeline from the world's snapshots to
//!   the database writer.
//! - [`reload`]: content files reloaded into the running world (watched,
//!   SIGHUP, `reload_content`).
//! - [`shutdown`]: the signals that stop it gracefully.
//! - [`simulate`]: `hearth simulate`, the headless run and its report.
//! - [`telemetry`]: logging setup.
//! - [`world`]: the `bevy_ecs` simulation of agents.
//!
//! The database lives in the `hearth-db` crate; this crate never writes SQL.

pub mod cli;
pub mod config;
pub mod export;
pub mod memories;
pub mod minds;
pub mod persist;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
