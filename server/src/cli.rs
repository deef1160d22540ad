//! The `hearth` command line: flags and subcommands (clap), and what each
//! subcommand does. Command output goes to the writer it is given (stdout in
//! the binary); logs go through `tracing`. Touches the database only through
//! `hearth-db`.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations};
use tokio_postgres::Client;

use crate::content::{agent, validate};
use crate::export::{self, ExportError};
use crate::memories::{self, MemoriesError, QueryArgs};
use crate::mind::embed::{self, EmbedConfig};
use crate::serve::{self, ServeError, ServeOptions};
use crate::simulate;
use crate::telemetry::LogFormat;
use crate::world::SimConfig;

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "A game server for worlds of generative agents"
)]
pub struct Cli {
    /// PostgreSQL connection string (URL or key=value). Unset: Hearth runs its
    /// own cluster under <HOME>/pg.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Directory for Hearth's local state; the embedded cluster lives in <HOME>/pg.
    #[arg(long, env = "HEARTH_HOME", default_value = ".hearth", global = true)]
    pub home: PathBuf,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: load the content, migrate the database, run the world until stopped.
    Serve(Box<ServeArgs>),
    /// Run the world headless (no database, no network) and print a report.
    Simulate(SimulateArgs),
    /// Load-test a server with real WebSocket clients (docs/loadtest.md).
    Loadtest(LoadtestArgs),
    /// Check agent files and maps; report every problem with file:line:col.
    Validate {
        /// Agent files (.json), maps (.tmj) or directories; default: the demo world.
        paths: Vec<PathBuf>,
        /// The map to check agents against when no map is among PATHS.
        #[arg(long, default_value = DEFAULT_MAP)]
        map: PathBuf,
    },
    /// Print the JSON Schema of a content file format.
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
    /// A world's stored memories: ranked queries and re-embedding.
    #[command(subcommand)]
    Memories(MemoriesCommand),
    /// Write a whole world (definitions, state, memories with embeddings,
    /// relationships, logs) as a versioned JSON document (docs/export.md).
    Export {
        /// The world to export (its slug).
        #[arg(long)]
        world: String,
        /// Write the document to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load a document written by `hearth export` into a new world, in one
    /// transaction: all of it, or nothing.
    Import {
        /// The document.
        file: PathBuf,
        /// Create the world under this slug instead of the document's.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
    },
    /// Accounts: users and their roles per world (docs/accounts.md).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum MemoriesCommand {
    /// Rank an agent's stored memories for a text, as retrieval does.
    Query {
        #[arg(long, default_value = "valley")]
        world: String,
        /// The agent's id (slug).
        #[arg(long)]
        agent: String,
        #[arg(long)]
        text: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Show each score term (recency, importance, relevance, emotion).
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        embed: EmbedArgs,
    },
    /// Print the prompt context an agent would be given about a text: its
    /// identity, relationships, top memories and lore, within a token budget,
    /// with what was included and dropped.
    Prompt {
        #[arg(long, default_value = "valley")]
        world: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        text: String,
        /// Memories to retrieve for it.
        #[arg(long, default_value_t = 8)]
        k: usize,
        /// Token budget of the prompt.
        #[arg(long, default_value_t = 2048)]
        max_tokens: usize,
        #[command(flatten)]
        content: ContentArgs,
        #[command(flatten)]
        embed: EmbedArgs,
    },
    /// Re-embed every memory and lore chunk of a world with the configured
    /// embedder; a different model or dimension switches the world to it.
    Reembed {
        #[arg(long, default_value = "valley")]
        world: String,
        /// Memories per request.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[command(flatten)]
        embed: EmbedArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (or reuse the one of that name) and give it a role in a
    /// world; a player also gets its character, named after it. Without
    /// --password a new user's password is asked twice on the terminal.
    Add {
        /// The username: 3 to 32 letters, digits, '_', '.' or '-'.
        name: String,
        #[arg(long, value_enum)]
        role: crate::net::auth::Role,
        /// The world (its slug); it must exist.
        #[arg(long)]
        world: String,
        /// The new user's password (8 to 128 characters). It shows in the
        /// process list and shell history: prefer the prompt.
        #[arg(long)]
        password: Option<crate::net::auth::Password>,
        /// The new user's email address.
        #[arg(long)]
        email: Option<String>,
    },
}

/// Which embedder makes the vectors (docs/embeddings.md). Default: the
/// all-MiniLM-L6-v2 model in process when provisioned, else word hashing.
#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    /// Base URL of an OpenAI-compatible embeddings API, e.g.
    /// http://127.0.0.1:11434/v1 (Ollama); unset: embed in process.
    #[arg(long, env = "HEARTH_EMBED_URL", value_name = "URL")]
    pub embed_url: Option<String>,
    /// The model the API should use.
    #[arg(long, env = "HEARTH_EMBED_MODEL", value_name = "NAME")]
    pub embed_model: Option<String>,
    /// Name of the environment variable holding the API key.
    #[arg(long, value_name = "VAR")]
    pub embed_api_key_env: Option<String>,
    /// Ask the API for vectors of this many dimensions.
    #[arg(long, value_name = "N")]
    pub embed_dimensions: Option<usize>,
    /// Directory of the in-process model (default <HOME>/models/all-MiniLM-L6-v2).
    #[arg(long, value_name = "DIR")]
    pub embed_model_dir: Option<PathBuf>,
}

impl EmbedArgs {
    pub fn config(&self) -> EmbedConfig {
        EmbedConfig {
            base_url: self.embed_url.clone(),
            model: self.embed_model.clone(),
            api_key_env: self.embed_api_key_env.clone(),
            dimensions: self.embed_dimensions,
            model_dir: self.embed_model_dir.clone(),
            ..EmbedConfig::default()
        }
    }
}

/// The most synthetic agents `simulate` accepts (about 6 KiB each).
pub const MAX_SYNTHETIC_AGENTS: usize = 2_000_000;

/// The demo world's content, relative to the working directory.
pub const DEFAULT_AGENTS: &str = "agents";
pub const DEFAULT_MAP: &str = "assets/maps/valley.tmj";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    Agent,
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Table,
}

/// Where the world's content comes from.
#[derive(Debug, Clone, Args)]
pub struct ContentArgs {
    /// Directory of agent files.
    #[arg(long, default_value = DEFAULT_AGENTS)]
    pub agents: PathBuf,
    /// Tiled map (.tmj).
    #[arg(long, default_value = DEFAULT_MAP)]
    pub map: PathBuf,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Ticks to run (at 10 Hz and 1 game minute per second, 14400 ticks are a game day).
    #[arg(long, default_value_t = 600)]
    pub ticks: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replace the content with N generated agents on a generated map.
    #[arg(long, value_name = "N")]
    pub synthetic_agents: Option<usize>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub report: ReportFormat,
    /// Write every tick's duration to FILE as CSV (`tick,duration_us,events`).
    #[arg(long, value_name = "FILE")]
    pub tick_log: Option<PathBuf>,
    #[command(flatten)]
    pub content: ContentArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The world to run (its slug).
    #[arg(long, default_value = "valley")]
    pub world: String,
    #[command(flatten)]
    pub content: ContentArgs,
    /// Run without a database: nothing is persisted.
    #[arg(long)]
    pub no_db: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Ticks per second.
    #[arg(long, default_value_t = 10)]
    pub tick_rate: u32,
    /// Game minutes per real second.
    #[arg(long, default_value_t = 1)]
    pub time_scale: u32,
    /// Do not apply pending migrations; refuse to start if any are pending.
    #[arg(long)]
    pub no_migrate: bool,
    /// Maximum database connections.
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: usize,
    /// World lore (Markdown and text files).
    #[arg(long, default_value = "assets/lore")]
    pub lore: PathBuf,
    /// How often the world's changes are committed to the database, each
    /// commit a checkpoint the world can resume from (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub flush_interval: std::time::Duration,
    /// Memories per agent kept in process for retrieval (the rest are in
    /// PostgreSQL only): the server's memory grows until these fill.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub hot_window: u32,
    /// Memories and messages waiting to be written beyond which the server
    /// reports itself backlogged and holds new ones back.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_backlog: usize,
    /// Serve N generated agents on a generated map instead of the content
    /// (the same generator as `simulate --synthetic-agents`, seeded by
    /// `--seed`).
    #[arg(long, value_name = "N")]
    pub synthetic_agents: Option<usize>,
    /// Address of the HTTP surface and game clients (port 0: any free port,
    /// logged).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub embed: EmbedArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub net: NetArgs,
    /// Stop by itself after this much game time (e.g. 2h), as a benchmark
    /// run does.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "GAME_TIME")]
    pub stop_after: Option<std::time::Duration>,
    /// At the end, write what the agents' models did to FILE (JSON: calls
    /// per agent per game hour by kind, fallbacks, a sample of dialogue).
    #[arg(long, value_name = "FILE")]
    pub llm_report: Option<PathBuf>,
}

/// `hearth loadtest` (docs/loadtest.md).
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// A running server's game-client endpoint (ws://HOST:PORT/ws); without
    /// it a server is started here on synthetic agents, without a database.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The world the clients join.
    #[arg(long, default_value = "loadtest")]
    pub world: String,
    /// Synthetic agents of the server started here.
    #[arg(long, default_value_t = 1_000)]
    pub agents: usize,
    /// WebSocket clients, each watching a random area (players included).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Of the clients, players: each logs in with an account of its own,
    /// follows its character, and walks and talks.
    #[arg(long, default_value_t = 0)]
    pub players: usize,
    /// Each player's actions per minute (a walk to a place, then a line to
    /// everyone near, in turn).
    #[arg(long, default_value_t = 12)]
    pub player_actions_per_minute: u32,
    /// Start the server here without a database (spectators only).
    #[arg(long)]
    pub no_db: bool,
    /// Keep the world and its accounts in the database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// How long every client stays, after the ramp.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Clients connect evenly over this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ramp: std::time::Duration,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Side of each client's area, in tiles.
    #[arg(long, default_value_t = 32)]
    pub area: u16,
    /// The map's size for a remote server's areas (WIDTHxHEIGHT).
    #[arg(long, default_value = "128x128", value_name = "WxH")]
    pub map_size: String,
    /// Ticks per second of the server started here.
    #[arg(long, default_value_t = 10)]
    pub tick_rate: u32,
    /// Limits to check (TOML: tick_p99_ms, delivery_p99_ms, max_errors,
    /// max_disconnects, max_resyncs, min_connected); any missed: exit 1.
    #[arg(long, value_name = "FILE")]
    pub slo: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub report: ReportFormat,
    /// Memories per agent the server started here keeps in process; its
    /// RSS grows until these fill (docs/loadtest.md, soak runs).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub hot_window: u32,
    /// How long the run warms up before RSS growth is measured (default:
    /// the ramp plus a tenth of the duration).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<std::time::Duration>,
    /// Spread the clients over this many worker processes (each raises its
    /// open-file limit to the hard limit); 1: in this process.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Run as one of a parent's workers: the clients only, tokens from
    /// HEARTH_LOADTEST_BRIEF, JSON lines on standard output.
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// The language model agents think with (docs/llm.md). Without
/// `--llm-url` every agent thinks with the rule-based mind.
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// Base URL of an OpenAI-compatible chat API, e.g.
    /// http://127.0.0.1:11434/v1 (Ollama).
    #[arg(long, env = "HEARTH_LLM_URL", value_name = "URL")]
    pub llm_url: Option<String>,
    /// The model's name on that server.
    #[arg(long, env = "HEARTH_LLM_MODEL", value_name = "NAME")]
    pub llm_model: Option<String>,
    /// Name of the environment variable holding the API key.
    #[arg(long, value_name = "VAR")]
    pub llm_api_key_env: Option<String>,
    /// The longest one decision waits for the model (queueing and retries
    /// included) before the rule-based mind decides.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub llm_timeout: std::time::Duration,
    /// Requests in flight at once for the whole world.
    #[arg(long, default_value_t = 4)]
    pub llm_max_concurrent: usize,
    /// Retries of a request that failed with a connection error, 429 or 5xx.
    #[arg(long, default_value_t = 2)]
    pub llm_max_retries: u32,
    /// Requests per minute, at most.
    #[arg(long, value_name = "N")]
    pub llm_requests_per_minute: Option<u32>,
    /// Tokens (prompt and completion) the world may spend per game day.
    #[arg(long, value_name = "N")]
    pub llm_tokens_per_game_day: Option<u64>,
    #[arg(long, default_value_t = 0.7)]
    pub llm_temperature: f32,
    /// Completion tokens per request unless a prompt sets its own.
    #[arg(long, default_value_t = 400)]
    pub llm_max_tokens: u32,
    /// How JSON answers are asked for.
    #[arg(long, value_enum, default_value_t = crate::mind::llm::Structured::JsonSchema)]
    pub llm_structured: crate::mind::llm::Structured,
    /// Answers cached by prompt hash (0: none).
    #[arg(long, default_value_t = 10_000)]
    pub llm_cache: usize,
    /// Directory of prompt templates (each kind's file there replaces the
    /// built-in one).
    #[arg(long, default_value = "assets/prompts", value_name = "DIR")]
    pub prompts: PathBuf,
}

impl LlmArgs {
    pub fn config(&self) -> crate::mind::llm::LlmConfig {
        crate::mind::llm::LlmConfig {
            base_url: self.llm_url.clone(),
            model: self.llm_model.clone(),
            api_key_env: self.llm_api_key_env.clone(),
            timeout: self.llm_timeout,
            max_concurrent: self.llm_max_concurrent,
            max_retries: self.llm_max_retries,
            requests_per_minute: self.llm_requests_per_minute,
            tokens_per_game_day: self.llm_tokens_per_game_day,
            temperature: self.llm_temperature,
            max_tokens: self.llm_max_tokens,
            structured: self.llm_structured,
            cache_entries: self.llm_cache,
        }
    }
}

/// Limits of the game clients' WebSocket surface (docs/protocol.md).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Largest message a client may send, in bytes (4× this is not read at
    /// all: the connection is closed with 1009).
    #[arg(long, default_value_t = 65_536)]
    pub max_message_bytes: usize,
    /// Commands per second per connection (token bucket rate).
    #[arg(long, default_value_t = 20)]
    pub commands_per_second: u32,
    /// Commands a connection may send at once (token bucket size).
    #[arg(long, default_value_t = 40)]
    pub command_burst: u32,
    /// Connections served at once; more are refused with HTTP 503.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Messages queued for a client before it is behind.
    #[arg(long, default_value_t = 256)]
    pub client_queue: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_interval: std::time::Duration,
    /// A connection silent for this long is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: std::time::Duration,
}

impl NetArgs {
    pub fn limits(&self) -> crate::net::ws::NetLimits {
        crate::net::ws::NetLimits {
            max_message_bytes: self.max_message_bytes.clamp(256, 16 << 20),
            commands_per_second: self.commands_per_second.max(1),
            burst: self.command_burst.max(1),
            max_connections: self.max_connections.max(1),
            queue: self.client_queue.clamp(2, 1 << 20),
            ping_interval: self
                .ping_interval
                .max(std::time::Duration::from_millis(100)),
            idle_timeout: self.idle_timeout.max(std::time::Duration::from_secs(1)),
            ..crate::net::ws::NetLimits::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (all, or up to --to).
    Migrate {
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
    },
    /// Roll back migrations: the newest one, or every one above --to (0: all).
    Rollback {
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Check the server, pgvector and migrations; exit non-zero on a problem.
    Check,
    /// Clear the dirty mark of a migration finished by hand.
    Repair {
        #[arg(long, value_name = "VERSION")]
        version: i64,
    },
    /// Stop the embedded PostgreSQL cluster.
    Stop,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Usage(String),
    /// Content with problems; the report lists them.
    #[error("{0}")]
    Content(validate::Report),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Memories(#[from] MemoriesError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Loadtest(#[from] crate::loadtest::LoadtestError),
    /// The report was printed; these SLO lines were missed.
    #[error("the SLO was missed: {}", .0.join("; "))]
    SloMissed(Vec<String>),
}

impl From<DbError> for CliError {
    fn from(e: DbError) -> Self {
        CliError::Check(CheckError::from(e))
    }
}

impl CliError {
    /// The exit code: `db check`'s codes for database problems (see
    /// docs/database.md), 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Check(e) => e.exit_code(),
            CliError::Serve(ServeError::Check(e)) => e.exit_code(),
            CliError::Usage(_) => 2,
            CliError::Content(_) => 1,
            CliError::Serve(_) | CliError::Io(_) | CliError::Memories(_) => 1,
            CliError::Export(_) => 1,
            CliError::Loadtest(crate::loadtest::LoadtestError::Slo { .. }) => 2,
            CliError::Loadtest(_) | CliError::SloMissed(_) => 1,
        }
    }
}

/// Runs one command. `shutdown` stops `serve`; other commands ignore it.
pub async fn run(
    cli: Cli,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CliError> {
    let database = || -> Result<(DatabaseTarget, Migrations), CliError> {
        let target = DatabaseTarget::resolve(cli.database_url.as_deref(), &cli.home)?;
        let migrations = Migrations::embedded().map_err(DbError::from)?;
        Ok((target, migrations))
    };
    match cli.command {
        Command::Serve(args) => {
            let args = *args;
            let content = match args.synthetic_agents {
                Some(n) if n > MAX_SYNTHETIC_AGENTS => {
                    return Err(CliError::Usage(format!(
                        "--synthetic-agents {n} is more than this build serves ({MAX_SYNTHETIC_AGENTS})"
                    )));
                }
                Some(n) => crate::content::synthetic::world(n, args.seed),
                None => validate::load(&args.content.agents, &args.content.map)
                    .map_err(CliError::Content)?,
            };
            let sim = SimConfig {
                seed: args.seed,
                tick_rate: args.tick_rate,
                game_minutes_per_second: args.time_scale,
                ..SimConfig::default()
            };
            let options = ServeOptions {
                world: args.world,
                migrate: !args.no_migrate,
                pool_size: args.db_pool_size,
                embed: args.embed.config(),
                home: cli.home.clone(),
                lore: args.lore,
                flush_interval: args.flush_interval,
                hot_window: args.hot_window as usize,
                max_backlog: args.max_backlog,
                listen: args.listen,
                limits: args.net.limits(),
                llm: args.llm.config(),
                prompts: Some(args.llm.prompts.clone()),
                stop_after: args.stop_after.map(|d| d.as_secs()),
                llm_report: args.llm_report.clone(),
                map_file: args
                    .synthetic_agents
                    .is_none()
                    .then(|| args.content.map.clone()),
                agents_dir: args
                    .synthetic_agents
                    .is_none()
                    .then(|| args.content.agents.clone()),
                ..ServeOptions::default()
            };
            let db = if args.no_db { None } else { Some(database()?) };
            serve::run(
                db.as_ref().map(|(t, m)| (t, m)),
                content,
                sim,
                options,
                shutdown,
            )
            .await?;
        }
        Command::Loadtest(args) if args.worker => loadtest_worker(&args, out).await?,
        Command::Loadtest(args) => {
            let db = if args.url.is_none() && !args.no_db {
                Some(database()?)
            } else {
                None
            };
            let report = loadtest(&args, &cli.home, db).await?;
            match args.report {
                ReportFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                )?,
                ReportFormat::Table => write!(out, "{}", report.table())?,
            }
            if !report.violations.is_empty() {
                return Err(CliError::SloMissed(report.violations));
            }
        }
        Command::Simulate(args) => {
            let content = match args.synthetic_agents {
                Some(n) if n > MAX_SYNTHETIC_AGENTS => {
                    return Err(CliError::Usage(format!(
                        "--synthetic-agents {n} is more than this build simulates ({MAX_SYNTHETIC_AGENTS}); \
                         about 6 KiB of memory per agent is needed"
                    )));
                }
                Some(n) => crate::content::synthetic::world(n, args.seed),
                None => validate::load(&args.content.agents, &args.content.map)
                    .map_err(CliError::Content)?,
            };
            let config = SimConfig {
                seed: args.seed,
                ..SimConfig::default()
            };
            // CPU-bound and alone on this runtime: the command has nothing else to do meanwhile
            let report = match &args.tick_log {
                None => simulate::run(content, config, args.ticks),
                Some(path) => {
                    let mut log = std::io::BufWriter::new(std::fs::File::create(path)?);
                    writeln!(log, "tick,duration_us,events")?;
                    let mut failed = None;
                    let report = simulate::run_with(content, config, args.ticks, |tick, us, n| {
                        if failed.is_none()
                            && let Err(e) = writeln!(log, "{tick},{us},{n}")
                        {
                            failed = Some(e);
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e.into());
                    }
                    log.flush()?;
                    report
                }
            };
            match args.report {
                ReportFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                )?,
                ReportFormat::Table => writeln!(out, "{report}")?,
            }
        }
        Command::Validate { paths, map } => {
            let paths = if paths.is_empty() {
                vec![PathBuf::from(DEFAULT_AGENTS), map.clone()]
            } else {
                paths
            };
            let report = validate::validate_paths(&paths, &map);
            if !report.is_ok() {
                return Err(CliError::Content(report));
            }
            writeln!(out, "{report}")?;
        }
        Command::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Agent => agent::schema(),
                SchemaKind::Map => validate::map_schema(),
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            )?;
        }
        Command::Db(cmd) => {
            let (target, migrations) = database()?;
            db(cmd, &target, &migrations, out).await?;
        }
        Command::Memories(cmd) => {
            let (target, _) = database()?;
            let config = target.config().await?;
            connect_checked(&target).await?;
            let pool = connect::pool(config, 4)?;
            match cmd {
                MemoriesCommand::Query {
                    world,
                    agent,
                    text,
                    k,
                    explain,
                    embed,
                } => {
                    let embedder = embed::from_config(&embed.config(), &cli.home)
                        .map_err(MemoriesError::from)?;
                    let args = QueryArgs {
                        world,
                        agent,
                        text,
                        k: k.clamp(1, 1000),
                        explain,
                    };
                    memories::query(&pool, embedder.as_ref(), &args, out).await?;
                }
                MemoriesCommand::Prompt {
                    world,
                    agent,
                    text,
                    k,
                    max_tokens,
                    content,
                    embed,
                } => {
                    let content =
                        validate::load(&content.agents, &content.map).map_err(CliError::Content)?;
                    let Some(def) = content.agents.iter().find(|a| a.file.id == agent) else {
                        return Err(CliError::Usage(format!(
                            "no agent '{agent}' in the content (agent ids are file ids, e.g. 'amara')"
                        )));
                    };
                    let embedder = embed::from_config(&embed.config(), &cli.home)
                        .map_err(MemoriesError::from)?;
                    let args = QueryArgs {
                        world,
                        agent: agent.clone(),
                        text,
                        k: k.clamp(1, 1000),
                        explain: false,
                    };
                    memories::prompt(
                        &pool,
                        embedder.as_ref(),
                        &args,
                        def,
                        &content.agents,
                        max_tokens.clamp(64, 1_000_000),
                        out,
                    )
                    .await?;
                }
                MemoriesCommand::Reembed {
                    world,
                    batch,
                    embed,
                } => {
                    let embedder = embed::from_config(&embed.config(), &cli.home)
                        .map_err(MemoriesError::from)?;
                    let (memories, lore) =
                        memories::reembed(&pool, embedder.as_ref(), &world, batch).await?;
                    writeln!(
                        out,
                        "re-embedded {memories} memories and {lore} lore chunks of '{world}' with {}",
                        embedder.model()
                    )?;
                }
            }
            pool.close();
        }
        Command::Export { world, output } => {
            let (target, migrations) = database()?;
            let mut client = connect_checked(&target).await?;
            export::export_command(&mut client, &migrations, &world, output.as_deref(), out)
                .await?;
        }
        Command::Import { file, as_name } => {
            let (target, migrations) = database()?;
            let mut client = connect_checked(&target).await?;
            export::import_command(&mut client, &migrations, &file, as_name.as_deref(), out)
                .await?;
        }
        Command::User(UserCommand::Add {
            name,
            role,
            world,
            password,
            email,
        }) => {
            use crate::net::auth::{self, AuthError, UserAdd};
            let (target, _) = database()?;
            let client = connect_checked(&target).await?;
            let request = UserAdd {
                name,
                role,
                world,
                password,
                email,
            };
            let added = auth::add_user(&client, request)
                .await
                .map_err(|e| match e {
                    AuthError::Db(db) => CliError::from(db),
                    other => CliError::Usage(other.to_string()),
                })?;
            writeln!(out, "{added}")?;
        }
    }
    Ok(())
}

/// Connects with `db check`'s diagnosis of connection failures.
pub async fn connect_checked(target: &DatabaseTarget) -> Result<Client, CheckError> {
    let config = target.config().await?;
    connect::connect(&config)
        .await
        .map_err(|e| check::connect_error(&connect::describe(&config), &e))
}

async fn db(
    cmd: DbCommand,
    target: &DatabaseTarget,
    migrations: &Migrations,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        DbCommand::Check => {
            let report = check::check_target(target, migrations).await?;
            writeln!(out, "{report}")?;
            writeln!(out, "ok")?;
        }
        DbCommand::Status => {
            let client = connect_checked(target).await?;
            let rows = migrate::status(&client, migrations).await?;
            writeln!(out, "database: {}", target.describe())?;
            writeln!(
                out,
                "{:<8} {:<22} {:<22} applied at",
                "version", "name", "state"
            )?;
            for r in &rows {
                let at = r
                    .applied_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<8} {:<22} {:<22} {at}",
                    format!("{:04}", r.version),
                    r.name,
                    r.state.to_string()
                )?;
            }
            let current = migrate::current_version(&rows);
            let pending = rows
                .iter()
                .filter(|r| r.state == MigrationState::Pending)
                .count();
            writeln!(
                out,
                "at version {current} of {}; {pending} pending",
                migrations.latest()
            )?;
        }
        DbCommand::Migrate { to } => {
            let mut client = connect_checked(target).await?;
            let applied = migrate::migrate(&mut client, migrations, to).await?;
            report_versions(out, migrations, &applied, "applied")?;
            let rows = migrate::status(&client, migrations).await?;
            writeln!(
                out,
                "database at version {}",
                migrate::current_version(&rows)
            )?;
        }
        DbCommand::Rollback { to } => {
            let mut client = connect_checked(target).await?;
            let current = migrate::current_version(&migrate::status(&client, migrations).await?);
            let to = to.unwrap_or((current - 1).max(0));
            if to > current {
                return Err(CliError::Usage(format!(
                    "cannot roll back to {to}: the database is at version {current}"
                )));
            }
            let undone = migrate::rollback(&mut client, migrations, to).await?;
            report_versions(out, migrations, &undone, "rolled back")?;
            writeln!(out, "database at version {to}")?;
        }
        DbCommand::Repair { version } => {
            let client = connect_checked(target).await?;
            if migrate::mark_clean(&client, version).await? {
                writeln!(out, "migration {version} marked clean")?;
            } else {
                return Err(CliError::Usage(format!("migration {version} is not dirty")));
            }
        }
        DbCommand::Stop => match target {
            DatabaseTarget::Embedded(cluster) => {
                let was_running = cluster.stop().await.map_err(DbError::from)?;
                let verb = if was_running {
                    "stopped"
                } else {
                    "was not running"
                };
                writeln!(
                    out,
                    "embedded cluster at {} {verb}",
                    cluster.root().display()
                )?;
            }
            DatabaseTarget::Url(_) => {
                return Err(CliError::Usage(
                    "DATABASE_URL is set: hearth only stops its own embedded cluster".into(),
                ));
            }
        },
    }
    Ok(())
}

fn report_versions(
    out: &mut (dyn Write + Send),
    migrations: &Migrations,
    versions: &[i64],
    verb: &str,
) -> std::io::Result<()> {
    if versions.is_empty() {
        return writeln!(out, "nothing to do");
    }
    for v in versions {
        let name = migrations.get(*v).map_or("?", |m| m.name.as_str());
        writeln!(out, "{verb} {v:04} {name}")?;
    }
    Ok(())
}

/// Runs `hearth loadtest`: against `--url`, or a server started here on
/// synthetic agents (no database; the hashed embedder, so the test
/// measures the server rather than the embedding model).
async fn loadtest(
    args: &LoadtestArgs,
    home: &std::path::Path,
    db: Option<(DatabaseTarget, Migrations)>,
) -> Result<crate::loadtest::Report, CliError> {
    use crate::loadtest::{Identities, LoadOptions, Slo, drive};
    let slo = args.slo.as_deref().map(Slo::load).transpose()?;
    if args.clients == 0 {
        return Err(CliError::Usage("--clients must be at least 1".into()));
    }
    if args.procs == 0 || args.procs > args.clients {
        return Err(CliError::Usage(format!(
            "--procs {} must be between 1 and --clients ({})",
            args.procs, args.clients
        )));
    }
    if args.players > args.clients {
        return Err(CliError::Usage(format!(
            "--players {} is more than --clients {}: players are among the clients",
            args.players, args.clients
        )));
    }
    if args.players > 0 && (args.url.is_some() || db.is_none()) {
        return Err(CliError::Usage(
            "players need accounts: run without --url and without --no-db, so the test creates them"
                .into(),
        ));
    }
    if args.agents > MAX_SYNTHETIC_AGENTS {
        return Err(CliError::Usage(format!(
            "--agents {} is more than this build serves ({MAX_SYNTHETIC_AGENTS})",
            args.agents
        )));
    }
    // a fresh world per run in the database, unless one is named
    let world = if db.is_some() && args.world == "loadtest" {
        format!("loadtest-{:08x}", rand::random::<u32>())
    } else {
        args.world.clone()
    };
    let mut options = LoadOptions {
        url: args.url.clone(),
        world: world.clone(),
        agents: args.agents,
        clients: args.clients,
        duration: args.duration,
        ramp: args.ramp,
        seed: args.seed,
        area: args.area,
        tick_rate: args.tick_rate,
        player_actions_per_minute: args.player_actions_per_minute,
        places: Vec::new(),
        procs: args.procs,
        warmup: args.warmup,
    };
    let fds = raise_open_file_limit();
    let per_client = if args.url.is_none() { 2 } else { 1 };
    let here = if args.procs > 1 { 0 } else { args.clients };
    if (here * per_client + 64) as u64 > fds {
        return Err(CliError::Usage(format!(
            "{} clients need about {} open files in this process and the limit is {fds}: \
             raise it (`ulimit -n`) or spread the clients with --procs",
            args.clients,
            here * per_client + 64
        )));
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let progress = |line: &str| bar.set_message(line.to_owned());
    let mut report = match &args.url {
        Some(url) => {
            let (w, h) = parse_map_size(&args.map_size)?;
            let metrics = url
                .replacen("ws://", "http://", 1)
                .replacen("wss://", "https://", 1)
                .trim_end_matches('/')
                .trim_end_matches("/ws")
                .to_owned()
                + "/metrics";
            drive(
                &options,
                url,
                &metrics,
                (w, h),
                &Identities::default(),
                progress,
            )
            .await?
        }
        None => {
            let content = crate::content::synthetic::world(args.agents, args.seed);
            let map = (content.map.width, content.map.height);
            options.places = content
                .map
                .locations
                .iter()
                .filter(|l| !l.walkable.is_empty())
                .map(|l| l.name.clone())
                .collect();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(CliError::Io)?
                .port();
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let sim = SimConfig {
                seed: args.seed,
                tick_rate: args.tick_rate,
                ..SimConfig::default()
            };
            let serve_options = ServeOptions {
                world: world.clone(),
                listen,
                // a home of its own, without the embedding model: the
                // hashed embedder (said in the log)
                home: home.join("loadtest"),
                lore: home.join("loadtest").join("no-lore"),
                hot_window: args.hot_window as usize,
                ..ServeOptions::default()
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server_db = db.clone();
            let server = tokio::spawn(async move {
                serve::run(
                    server_db.as_ref().map(|(t, m)| (t, m)),
                    content,
                    sim,
                    serve_options,
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
            });
            let base = format!("http://{listen}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                if server.is_finished() {
                    let why = match server.await {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(())) => "it stopped".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    return Err(crate::loadtest::LoadtestError::Server(why).into());
                }
                if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
                    && r.status().is_success()
                {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(crate::loadtest::LoadtestError::Server(
                        "not ready within 120 s".into(),
                    )
                    .into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let accounts = match &db {
                Some((target, _)) => loadtest_accounts(target, &base, &world, args.players).await,
                None => Ok((Identities::default(), Vec::new())),
            };
            let report = match &accounts {
                Ok((who, _)) => {
                    drive(
                        &options,
                        &format!("ws://{listen}/ws"),
                        &format!("{base}/metrics"),
                        map,
                        who,
                        progress,
                    )
                    .await
                }
                Err(e) => Err(crate::loadtest::LoadtestError::Server(format!(
                    "cannot create the test's accounts: {e}"
                ))),
            };
            let _ = stop.send(());
            match tokio::time::timeout(std::time::Duration::from_secs(15), server).await {
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "the load test's server stopped with an error")
                }
                Err(_) => tracing::warn!("the load test's server did not stop within 15 s"),
                _ => {}
            }
            if let Some((target, _)) = &db
                && !args.keep
            {
                let users = accounts.map(|(_, u)| u).unwrap_or_default();
                if let Err(e) = loadtest_teardown(target, &world, &users).await {
                    tracing::warn!(error = %e, world, "cannot remove the load test's world");
                }
            }
            report?
        }
    };
    bar.finish_and_clear();
    if let Some(slo) = slo {
        report.violations = slo.verdict(&report);
    }
    Ok(report)
}

/// Raises this process's open-file limit to its hard limit (each client
/// is a socket, and each of the server's connections another); returns the
/// limit now in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => u64::MAX,
    }
}

/// `hearth loadtest --worker`: one of a parent's worker processes. Runs its
/// clients against `--url` and writes a JSON line a second (progress), then
/// its tally, on standard output.
async fn loadtest_worker(
    args: &LoadtestArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    use crate::loadtest::{BRIEF_ENV, Brief, Identities, LoadOptions, WorkerLine, clients};
    let Some(url) = &args.url else {
        return Err(CliError::Usage("--worker needs --url".into()));
    };
    let brief: Brief = match std::env::var(BRIEF_ENV) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{BRIEF_ENV} is not a brief: {e}")))?,
        Err(_) => Brief::default(),
    };
    let (w, h) = parse_map_size(&args.map_size)?;
    raise_open_file_limit();
    let options = LoadOptions {
        url: Some(url.clone()),
        world: args.world.clone(),
        agents: 0,
        clients: args.clients,
        duration: args.duration,
        ramp: args.ramp,
        seed: args.seed,
        area: args.area,
        tick_rate: args.tick_rate,
        player_actions_per_minute: args.player_actions_per_minute,
        places: brief.places,
        procs: 1,
        warmup: None,
    };
    let who = Identities {
        spectator: brief.spectator,
        players: brief.players,
    };
    let emit = |out: &mut (dyn Write + Send), line: &WorkerLine| {
        let text = serde_json::to_string(line).unwrap_or_default();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    let tally = clients(&options, url, (w, h), &who, |s| {
        emit(&mut *out, &WorkerLine::Second(s))
    })
    .await;
    emit(out, &WorkerLine::Tally(tally));
    Ok(())
}

/// `--map-size WxH`.
fn parse_map_size(text: &str) -> Result<(u16, u16), CliError> {
    text.split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| CliError::Usage(format!("--map-size {text:?} is not WIDTHxHEIGHT")))
}

/// Creates the load test's accounts in `world` (one spectator shared by the
/// spectators, one player per player, each with its character) and logs
/// them in over HTTP at `base`; returns their tokens and the user names.
async fn loadtest_accounts(
    target: &DatabaseTarget,
    base: &str,
    world: &str,
    players: usize,
) -> Result<(crate::loadtest::Identities, Vec<String>), String> {
    use crate::net::auth::{Password, Role, UserAdd, add_user};
    let client = connect_checked(target).await.map_err(|e| e.to_string())?;
    let tag = world.trim_start_matches("loadtest-");
    let password: String = format!("lt-{:016x}", rand::random::<u64>());
    let http = reqwest::Client::new();
    let mut names = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..=players {
        let (name, role) = if i == 0 {
            (format!("lt{tag}s"), Role::Spectator)
        } else {
            (format!("lt{tag}p{i}"), Role::Player)
        };
        add_user(
            &client,
            UserAdd {
                name: name.clone(),
                role,
                world: world.to_owned(),
                password: Some(Password(password.clone())),
                email: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let answer: serde_json::Value = http
            .post(format!("{base}/auth/login"))
            .json(&serde_json::json!({"username": name, "password": password}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| format!("no token for {name}: {answer}"))?
            .to_owned();
        names.push(name);
        tokens.push(token);
    }
    let spectator = tokens.first().cloned();
    Ok((
        crate::loadtest::Identities {
            spectator,
            players: tokens.into_iter().skip(1).collect(),
        },
        names,
    ))
}

/// Removes the load test's world (its agents, memories, characters and
/// roles go with it) and its accounts.
async fn loadtest_teardown(
    target: &DatabaseTarget,
    world: &str,
    users: &[String],
) -> Result<(), String> {
    let client = connect_checked(target).await.map_err(|e| e.to_string())?;
    // The run filled these tables from (near) empty within a minute, before
    // autovacuum's analyze: with the old statistics, the cascade's per-row
    // lookups are planned as sequential scans, and deleting a 10k-agent
    // world took over ten minutes instead of about three seconds.
    client
        .batch_execute(
            "ANALYZE agents, agent_states, agent_memories, agent_relationships, \
             agent_plans, agent_schedules, conversations, conversation_participants, messages",
        )
        .await
        .map_err(|e| e.to_string())?;
    client
        .execute("DELETE FROM worlds WHERE slug = $1", &[&world])
        .await
        .map_err(|e| e.to_string())?;
    client
        .execute("DELETE FROM users WHERE username = ANY($1)", &[&users])
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn db_subcommands_parse() {
        let cli = Cli::try_parse_from(["hearth", "db", "rollback", "--to", "0"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Db(DbCommand::Rollback { to: Some(0) })
        ));
        assert!(Cli::try_parse_from(["hearth", "db", "rollback", "--to", "x"]).is_err());
        assert!(Cli::try_parse_from(["hearth", "db", "explode"]).is_err());
    }
}
