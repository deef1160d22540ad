//! The `hearth` command line: flags and subcommands (clap), and what each
//! subcommand does. Command output goes to the writer it is given (stdout in
//! the binary); logs go through `tracing`. Touches the database only through
//! `hearth-db`.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations};
use tokio_postgres::Client;

use crate::config::{
    self, Config, ConfigError, DEFAULT_AGENTS, DEFAULT_MAP, Layered, MAX_SYNTHETIC_AGENTS,
};
use crate::export::{self, ExportError};
use crate::memories::{self, MemoriesError, QueryArgs};
use crate::serve::{self, ServeError, ServeOptions};
use crate::simulate;
use crate::telemetry::LogFormat;
use hearth_content::{agent, validate};
use hearth_mind::embed;
use hearth_world::SimConfig;

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "A game server for worlds of generative agents"
)]
pub struct Cli {
    /// The configuration file (docs/configuration.md); default: ./hearth.toml
    /// when it exists.
    #[arg(long, env = config::FILE_ENV, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// PostgreSQL connection string (URL or key=value). Unset: Hearth runs its
    /// own cluster under <HOME>/pg. [database] url; env DATABASE_URL.
    #[arg(long, global = true)]
    pub database_url: Option<String>,

    /// Directory for Hearth's local state; the embedded cluster lives in <HOME>/pg.
    #[arg(long, env = "HEARTH_HOME", default_value = ".hearth", global = true)]
    pub home: PathBuf,

    /// Log format on stderr (default: text). [log] format.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: load the content, migrate the database, run the world until stopped.
    Serve(Box<ServeArgs>),
    /// Print the configuration in effect (hearth.toml, the environment and
    /// the global flags over the defaults) as TOML, secrets redacted.
    Config {
        /// Print the built-in defaults instead.
        #[arg(long)]
        default: bool,
    },
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
    /// Reload the content files into the world a `hearth serve` on this
    /// machine runs (it is signalled with SIGHUP), and print the outcome:
    /// exit 0 when the world runs the files, 1 when they have problems or
    /// cannot be applied.
    Reload {
        /// The world whose server to signal (its slug).
        #[arg(long, default_value = "valley")]
        world: String,
        /// How long to wait for the server's answer.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
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
        role: hearth_net::auth::Role,
        /// The world (its slug); it must exist.
        #[arg(long)]
        world: String,
        /// The new user's password (8 to 128 characters). It shows in the
        /// process list and shell history: prefer the prompt.
        #[arg(long)]
        password: Option<hearth_net::auth::Password>,
        /// The new user's email address.
        #[arg(long)]
        email: Option<String>,
    },
}

/// Which embedder makes the vectors (docs/embeddings.md). Default: the
/// all-MiniLM-L6-v2 model in process when provisioned, else word hashing.
/// Each flag overrides its key of `[embed]` (docs/configuration.md).
#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    /// Base URL of an OpenAI-compatible embeddings API, e.g.
    /// http://127.0.0.1:11434/v1 (Ollama); unset: embed in process.
    /// [embed] url; env HEARTH_EMBED_URL.
    #[arg(long, value_name = "URL")]
    pub embed_url: Option<String>,
    /// The model the API should use. [embed] model; env HEARTH_EMBED_MODEL.
    #[arg(long, value_name = "NAME")]
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
    /// The flags given, over the configuration's `[embed]`.
    pub fn apply(&self, c: &mut Layered) {
        c.flag(
            "embed.url",
            "--embed-url",
            self.embed_url.clone(),
            |c, v| {
                c.embed.url = Some(v);
            },
        );
        c.flag(
            "embed.model",
            "--embed-model",
            self.embed_model.clone(),
            |c, v| {
                c.embed.model = Some(v);
            },
        );
        let key_env = self.embed_api_key_env.clone();
        c.flag(
            "embed.api_key_env",
            "--embed-api-key-env",
            key_env,
            |c, v| {
                c.embed.api_key_env = Some(v);
            },
        );
        let dimensions = self.embed_dimensions;
        c.flag(
            "embed.dimensions",
            "--embed-dimensions",
            dimensions,
            |c, v| {
                c.embed.dimensions = Some(v);
            },
        );
        let dir = self.embed_model_dir.clone();
        c.flag("embed.model_dir", "--embed-model-dir", dir, |c, v| {
            c.embed.model_dir = Some(v);
        });
    }
}

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
    /// Directory of agent files (default: agents). [content] agents.
    #[arg(long)]
    pub agents: Option<PathBuf>,
    /// Tiled map (.tmj) (default: assets/maps/valley.tmj). [content] map.
    #[arg(long)]
    pub map: Option<PathBuf>,
}

impl ContentArgs {
    /// The flags given, over the configuration's `[content]`.
    pub fn apply(&self, c: &mut Layered) {
        c.flag("content.agents", "--agents", self.agents.clone(), |c, v| {
            c.content.agents = v;
        });
        c.flag("content.map", "--map", self.map.clone(), |c, v| {
            c.content.map = v
        });
    }
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

/// `hearth serve`. Every flag but `--no-db` overrides a key of the
/// configuration (hearth.toml, then `HEARTH_…` variables; see
/// docs/configuration.md, or `hearth config --default` for the defaults),
/// named at the end of its help.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The world to run (its slug). [server] world.
    #[arg(long)]
    pub world: Option<String>,
    #[command(flatten)]
    pub content: ContentArgs,
    /// Run without a database: nothing is persisted.
    #[arg(long)]
    pub no_db: bool,
    /// [world] seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Ticks per second. [world] tick_rate.
    #[arg(long)]
    pub tick_rate: Option<u32>,
    /// Game minutes per real second. [world] time_scale.
    #[arg(long)]
    pub time_scale: Option<u32>,
    /// Do not apply pending migrations; refuse to start if any are pending.
    /// [database] migrate = false.
    #[arg(long)]
    pub no_migrate: bool,
    /// Maximum database connections. [database] pool_size.
    #[arg(long)]
    pub db_pool_size: Option<usize>,
    /// World lore (Markdown and text files). [content] lore.
    #[arg(long)]
    pub lore: Option<PathBuf>,
    /// Do not watch the content for changes (reload it on SIGHUP only).
    /// [content] watch = false.
    #[arg(long)]
    pub no_watch: bool,
    /// How often the world's changes are committed to the database, each
    /// commit a checkpoint the world can resume from (e.g. 1s, 500ms).
    /// [database] flush_interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub flush_interval: Option<std::time::Duration>,
    /// Memories per agent kept in process for retrieval (the rest are in
    /// PostgreSQL only): the server's memory grows until these fill.
    /// [database] hot_window.
    #[arg(long)]
    pub hot_window: Option<usize>,
    /// Memories and messages waiting to be written beyond which the server
    /// reports itself backlogged and holds new ones back.
    /// [database] max_backlog.
    #[arg(long)]
    pub max_backlog: Option<usize>,
    /// Serve N generated agents on a generated map instead of the content
    /// (the same generator as `simulate --synthetic-agents`, seeded by
    /// `--seed`). [content] synthetic_agents.
    #[arg(long, value_name = "N")]
    pub synthetic_agents: Option<usize>,
    /// Address of the HTTP surface and game clients (port 0: any free port,
    /// logged). [server] listen.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub embed: EmbedArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub net: NetArgs,
    /// Stop by itself after this much game time (e.g. 2h), as a benchmark
    /// run does. [server] stop_after.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "GAME_TIME")]
    pub stop_after: Option<std::time::Duration>,
    /// At the end, write what the agents' models did to FILE (JSON: calls
    /// per agent per game hour by kind, fallbacks, a sample of dialogue).
    /// [server] llm_report.
    #[arg(long, value_name = "FILE")]
    pub llm_report: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags given, over the configuration.
    pub fn apply(&self, c: &mut Layered) {
        c.flag("server.world", "--world", self.world.clone(), |c, v| {
            c.server.world = v;
        });
        c.flag("server.listen", "--listen", self.listen, |c, v| {
            c.server.listen = v;
        });
        c.flag(
            "server.stop_after",
            "--stop-after",
            self.stop_after,
            |c, v| {
                c.server.stop_after = Some(v);
            },
        );
        let report = self.llm_report.clone();
        c.flag("server.llm_report", "--llm-report", report, |c, v| {
            c.server.llm_report = Some(v);
        });
        c.flag(
            "database.pool_size",
            "--db-pool-size",
            self.db_pool_size,
            |c, v| {
                c.database.pool_size = v;
            },
        );
        let migrate = self.no_migrate.then_some(false);
        c.flag("database.migrate", "--no-migrate", migrate, |c, v| {
            c.database.migrate = v;
        });
        let interval = self.flush_interval;
        c.flag(
            "database.flush_interval",
            "--flush-interval",
            interval,
            |c, v| {
                c.database.flush_interval = v;
            },
        );
        c.flag(
            "database.max_backlog",
            "--max-backlog",
            self.max_backlog,
            |c, v| {
                c.database.max_backlog = v;
            },
        );
        c.flag(
            "database.hot_window",
            "--hot-window",
            self.hot_window,
            |c, v| {
                c.database.hot_window = v;
            },
        );
        c.flag("world.seed", "--seed", self.seed, |c, v| c.world.seed = v);
        c.flag("world.tick_rate", "--tick-rate", self.tick_rate, |c, v| {
            c.world.tick_rate = v;
        });
        c.flag(
            "world.time_scale",
            "--time-scale",
            self.time_scale,
            |c, v| {
                c.world.time_scale = v;
            },
        );
        c.flag("content.lore", "--lore", self.lore.clone(), |c, v| {
            c.content.lore = v;
        });
        c.flag(
            "content.watch",
            "--no-watch",
            self.no_watch.then_some(false),
            |c, v| {
                c.content.watch = v;
            },
        );
        let synthetic = self.synthetic_agents;
        c.flag(
            "content.synthetic_agents",
            "--synthetic-agents",
            synthetic,
            |c, v| {
                c.content.synthetic_agents = Some(v);
            },
        );
        self.content.apply(c);
        self.embed.apply(c);
        self.llm.apply(c);
        self.net.apply(c);
    }
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
/// `--llm-url` every agent thinks with the rule-based mind. Each flag
/// overrides its key of `[llm]` (docs/configuration.md).
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// Base URL of an OpenAI-compatible chat API, e.g.
    /// http://127.0.0.1:11434/v1 (Ollama). [llm] url; env HEARTH_LLM_URL.
    #[arg(long, value_name = "URL")]
    pub llm_url: Option<String>,
    /// The model's name on that server. [llm] model; env HEARTH_LLM_MODEL.
    #[arg(long, value_name = "NAME")]
    pub llm_model: Option<String>,
    /// Name of the environment variable holding the API key.
    #[arg(long, value_name = "VAR")]
    pub llm_api_key_env: Option<String>,
    /// The longest one decision waits for the model (queueing and retries
    /// included) before the rule-based mind decides (default: 20s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub llm_timeout: Option<std::time::Duration>,
    /// Requests in flight at once for the whole world (default: 4).
    #[arg(long)]
    pub llm_max_concurrent: Option<usize>,
    /// Retries of a request that failed with a connection error, 429 or 5xx
    /// (default: 2).
    #[arg(long)]
    pub llm_max_retries: Option<u32>,
    /// Requests per minute, at most.
    #[arg(long, value_name = "N")]
    pub llm_requests_per_minute: Option<u32>,
    /// Tokens (prompt and completion) the world may spend per game day.
    #[arg(long, value_name = "N")]
    pub llm_tokens_per_game_day: Option<u64>,
    /// (default: 0.7)
    #[arg(long)]
    pub llm_temperature: Option<f64>,
    /// Completion tokens per request unless a prompt sets its own
    /// (default: 400).
    #[arg(long)]
    pub llm_max_tokens: Option<u32>,
    /// How JSON answers are asked for (default: json-schema).
    #[arg(long, value_enum)]
    pub llm_structured: Option<hearth_mind::llm::Structured>,
    /// Answers cached by prompt hash (0: none; default: 10000).
    #[arg(long)]
    pub llm_cache: Option<usize>,
    /// Directory of prompt templates (each kind's file there replaces the
    /// built-in one; default: assets/prompts). [content] prompts.
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
}

impl LlmArgs {
    /// The flags given, over the configuration's `[llm]`.
    pub fn apply(&self, c: &mut Layered) {
        c.flag("llm.url", "--llm-url", self.llm_url.clone(), |c, v| {
            c.llm.url = Some(v);
        });
        c.flag(
            "llm.model",
            "--llm-model",
            self.llm_model.clone(),
            |c, v| {
                c.llm.model = Some(v);
            },
        );
        let key_env = self.llm_api_key_env.clone();
        c.flag("llm.api_key_env", "--llm-api-key-env", key_env, |c, v| {
            c.llm.api_key_env = Some(v);
        });
        c.flag("llm.timeout", "--llm-timeout", self.llm_timeout, |c, v| {
            c.llm.timeout = v;
        });
        let concurrent = self.llm_max_concurrent;
        c.flag(
            "llm.max_concurrent",
            "--llm-max-concurrent",
            concurrent,
            |c, v| {
                c.llm.max_concurrent = v;
            },
        );
        c.flag(
            "llm.max_retries",
            "--llm-max-retries",
            self.llm_max_retries,
            |c, v| {
                c.llm.max_retries = v;
            },
        );
        let rpm = self.llm_requests_per_minute;
        c.flag(
            "llm.requests_per_minute",
            "--llm-requests-per-minute",
            rpm,
            |c, v| {
                c.llm.requests_per_minute = Some(v);
            },
        );
        let tokens = self.llm_tokens_per_game_day;
        c.flag(
            "llm.tokens_per_game_day",
            "--llm-tokens-per-game-day",
            tokens,
            |c, v| {
                c.llm.tokens_per_game_day = Some(v);
            },
        );
        c.flag(
            "llm.temperature",
            "--llm-temperature",
            self.llm_temperature,
            |c, v| {
                c.llm.temperature = v;
            },
        );
        c.flag(
            "llm.max_tokens",
            "--llm-max-tokens",
            self.llm_max_tokens,
            |c, v| {
                c.llm.max_tokens = v;
            },
        );
        c.flag(
            "llm.structured",
            "--llm-structured",
            self.llm_structured,
            |c, v| {
                c.llm.structured = v;
            },
        );
        c.flag("llm.cache", "--llm-cache", self.llm_cache, |c, v| {
            c.llm.cache = v
        });
        c.flag(
            "content.prompts",
            "--prompts",
            self.prompts.clone(),
            |c, v| {
                c.content.prompts = v;
            },
        );
    }
}

/// Limits of the game clients' WebSocket surface (docs/protocol.md). Each
/// flag overrides its key of `[net]` (docs/configuration.md).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Largest message a client may send, in bytes (4× this is not read at
    /// all: the connection is closed with 1009; default: 65536).
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// Commands per second per connection (token bucket rate; default: 20).
    #[arg(long)]
    pub commands_per_second: Option<u32>,
    /// Commands a connection may send at once (token bucket size; default: 40).
    #[arg(long)]
    pub command_burst: Option<u32>,
    /// Connections served at once; more are refused with HTTP 503
    /// (default: 20000).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Messages queued for a client before it is behind (default: 256).
    #[arg(long)]
    pub client_queue: Option<usize>,
    /// (default: 20s)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ping_interval: Option<std::time::Duration>,
    /// A connection silent for this long is closed (default: 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
}

impl NetArgs {
    /// The flags given, over the configuration's `[net]`.
    pub fn apply(&self, c: &mut Layered) {
        let bytes = self.max_message_bytes;
        c.flag(
            "net.max_message_bytes",
            "--max-message-bytes",
            bytes,
            |c, v| {
                c.net.max_message_bytes = v;
            },
        );
        let rate = self.commands_per_second;
        c.flag(
            "net.commands_per_second",
            "--commands-per-second",
            rate,
            |c, v| {
                c.net.commands_per_second = v;
            },
        );
        c.flag(
            "net.command_burst",
            "--command-burst",
            self.command_burst,
            |c, v| {
                c.net.command_burst = v;
            },
        );
        let max = self.max_connections;
        c.flag("net.max_connections", "--max-connections", max, |c, v| {
            c.net.max_connections = v;
        });
        c.flag(
            "net.client_queue",
            "--client-queue",
            self.client_queue,
            |c, v| {
                c.net.client_queue = v;
            },
        );
        c.flag(
            "net.ping_interval",
            "--ping-interval",
            self.ping_interval,
            |c, v| {
                c.net.ping_interval = v;
            },
        );
        c.flag(
            "net.idle_timeout",
            "--idle-timeout",
            self.idle_timeout,
            |c, v| {
                c.net.idle_timeout = v;
            },
        );
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
    /// A configuration that cannot be used (hearth.toml, a `HEARTH_…`
    /// variable or a flag); the message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    Loadtest(#[from] hearth_loadtest::LoadtestError),
    /// The report was printed; these SLO lines were missed.
    #[error("the SLO was missed: {}", .0.join("; "))]
    SloMissed(Vec<String>),
    #[error(transparent)]
    Reload(#[from] crate::reload::ReloadError),
    /// The outcome was printed; the world goes on with its last version.
    #[error("the content was not reloaded")]
    NotReloaded,
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
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Content(_) => 1,
            CliError::Serve(_) | CliError::Io(_) | CliError::Memories(_) => 1,
            CliError::Export(_) => 1,
            CliError::Loadtest(hearth_loadtest::LoadtestError::Slo { .. }) => 2,
            CliError::Loadtest(_) | CliError::SloMissed(_) => 1,
            CliError::Reload(crate::reload::ReloadError::NotRunning { .. }) => 2,
            CliError::Reload(_) | CliError::NotReloaded => 1,
        }
    }
}

impl Cli {
    /// The configuration file, the environment and the global flags over
    /// the defaults; not yet checked ([`Layered::finish`]).
    pub fn layered_config(&self) -> Result<Layered, ConfigError> {
        layered_config(
            self.config.as_deref(),
            self.database_url.clone(),
            self.log_format,
        )
    }

    /// The log format in effect: `--log-format`, else the configuration's;
    /// text when the configuration cannot be read (the command then
    /// reports why).
    pub fn effective_log_format(&self) -> LogFormat {
        self.log_format.unwrap_or_else(|| {
            self.layered_config()
                .map_or(LogFormat::Text, |c| c.config().log.format)
        })
    }
}

fn layered_config(
    file: Option<&std::path::Path>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
) -> Result<Layered, ConfigError> {
    let mut layered = Layered::load(file, std::env::vars_os())?;
    layered.flag("database.url", "--database-url", database_url, |c, v| {
        c.database.url = Some(v);
    });
    layered.flag("log.format", "--log-format", log_format, |c, v| {
        c.log.format = v;
    });
    Ok(layered)
}

/// What every command may read of the command line's global flags. The
/// configuration is read by the commands that use it: a broken
/// `hearth.toml` does not stop `validate` or `schema`.
struct Context<'a> {
    config: Option<&'a Path>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
    home: &'a Path,
}

impl Context<'_> {
    /// Defaults, `hearth.toml` and the environment, before the command's flags.
    fn layered(&self) -> Result<Layered, CliError> {
        Ok(layered_config(
            self.config,
            self.database_url.clone(),
            self.log_format,
        )?)
    }

    /// The configuration in effect, for commands with no flags of their own.
    fn checked(&self) -> Result<Config, CliError> {
        Ok(self.layered()?.finish()?)
    }

    /// The database at `url` (the embedded cluster when none) and the
    /// migrations this binary carries.
    fn database(&self, url: Option<&str>) -> Result<(DatabaseTarget, Migrations), CliError> {
        let target = DatabaseTarget::resolve(url, self.home)?;
        let migrations = Migrations::embedded().map_err(DbError::from)?;
        Ok((target, migrations))
    }
}

/// Runs one command. `shutdown` stops `serve`; other commands ignore it.
pub async fn run(
    cli: Cli,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CliError> {
    let ctx = Context {
        config: cli.config.as_deref(),
        database_url: cli.database_url.clone(),
        log_format: cli.log_format,
        home: &cli.home,
    };
    let database = |url: Option<&str>| ctx.database(url);
    let checked = || ctx.checked();
    let layered = || ctx.layered();
    match cli.command {
        Command::Config { default } => {
            let layered = if default {
                Layered::defaults()
            } else {
                layered()?
            };
            layered.validate()?;
            write!(out, "{}", layered.render()?)?;
        }
        Command::Serve(args) => serve_command(&ctx, &args, shutdown).await?,
        Command::Reload { world, wait } => {
            let outcome = crate::reload::request(&cli.home, &world, wait).await?;
            writeln!(out, "{outcome}")?;
            if !outcome.is_ok() {
                return Err(CliError::NotReloaded);
            }
        }
        Command::Loadtest(args) if args.worker => loadtest_worker(&args, out).await?,
        Command::Loadtest(args) => {
            let db = if args.url.is_none() && !args.no_db {
                Some(database(checked()?.database.url.as_deref())?)
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
        Command::Simulate(args) => simulate_command(&ctx, &args, out)?,
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
            let (target, migrations) = database(checked()?.database.url.as_deref())?;
            db(cmd, &target, &migrations, out).await?;
        }
        Command::Memories(cmd) => memories_command(&ctx, cmd, out).await?,
        Command::Export { world, output } => {
            let (target, migrations) = database(checked()?.database.url.as_deref())?;
            let mut client = connect_checked(&target).await?;
            export::export_command(&mut client, &migrations, &world, output.as_deref(), out)
                .await?;
        }
        Command::Import { file, as_name } => {
            let (target, migrations) = database(checked()?.database.url.as_deref())?;
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
            use hearth_net::auth::{self, AuthError, UserAdd};
            let (target, _) = database(checked()?.database.url.as_deref())?;
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

/// `hearth serve`: the configuration with the command's flags, the content
/// it names (or a synthetic world), then the server until `shutdown`.
async fn serve_command(
    ctx: &Context<'_>,
    args: &ServeArgs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CliError> {
    let mut layered = ctx.layered()?;
    args.apply(&mut layered);
    let config = layered.finish()?;
    let content = match config.content.synthetic_agents {
        Some(n) => hearth_content::synthetic::world(n, config.world.seed),
        None => validate::load(&config.content.agents, &config.content.map)
            .map_err(CliError::Content)?,
    };
    let sim = SimConfig {
        seed: config.world.seed,
        tick_rate: config.world.tick_rate,
        game_minutes_per_second: config.world.time_scale,
        ..SimConfig::default()
    };
    let options = config.serve_options(ctx.home);
    let db = if args.no_db {
        None
    } else {
        Some(ctx.database(config.database.url.as_deref())?)
    };
    serve::run(
        db.as_ref().map(|(t, m)| (t, m)),
        content,
        sim,
        options,
        shutdown,
    )
    .await?;
    Ok(())
}

/// `hearth simulate`: the world headless, as fast as it goes, and its report.
fn simulate_command(
    ctx: &Context<'_>,
    args: &SimulateArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let content = match args.synthetic_agents {
        Some(n) if n > MAX_SYNTHETIC_AGENTS => {
            return Err(CliError::Usage(format!(
                "--synthetic-agents {n} is more than this build simulates ({MAX_SYNTHETIC_AGENTS}); \
                 about 6 KiB of memory per agent is needed"
            )));
        }
        Some(n) => hearth_content::synthetic::world(n, args.seed),
        None => {
            let mut layered = ctx.layered()?;
            args.content.apply(&mut layered);
            let config = layered.finish()?;
            validate::load(&config.content.agents, &config.content.map)
                .map_err(CliError::Content)?
        }
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
    Ok(())
}

/// `hearth memories query|prompt|reembed`.
async fn memories_command(
    ctx: &Context<'_>,
    cmd: MemoriesCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut layered = ctx.layered()?;
    match &cmd {
        MemoriesCommand::Query { embed, .. } | MemoriesCommand::Reembed { embed, .. } => {
            embed.apply(&mut layered);
        }
        MemoriesCommand::Prompt { embed, content, .. } => {
            embed.apply(&mut layered);
            content.apply(&mut layered);
        }
    }
    let settings = layered.finish()?;
    let embed_config = settings.embed.to_embed_config();
    let (target, _) = ctx.database(settings.database.url.as_deref())?;
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
            embed: _,
        } => {
            let embedder =
                embed::from_config(&embed_config, ctx.home).map_err(MemoriesError::from)?;
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
            content: _,
            embed: _,
        } => {
            let content = validate::load(&settings.content.agents, &settings.content.map)
                .map_err(CliError::Content)?;
            let Some(def) = content.agents.iter().find(|a| a.file.id == agent) else {
                return Err(CliError::Usage(format!(
                    "no agent '{agent}' in the content (agent ids are file ids, e.g. 'amara')"
                )));
            };
            let embedder =
                embed::from_config(&embed_config, ctx.home).map_err(MemoriesError::from)?;
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
            embed: _,
        } => {
            let embedder =
                embed::from_config(&embed_config, ctx.home).map_err(MemoriesError::from)?;
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
) -> Result<hearth_loadtest::Report, CliError> {
    use hearth_loadtest::{Identities, LoadOptions, Slo, drive};
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
            let content = hearth_content::synthetic::world(args.agents, args.seed);
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
                    return Err(hearth_loadtest::LoadtestError::Server(why).into());
                }
                if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
                    && r.status().is_success()
                {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(hearth_loadtest::LoadtestError::Server(
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
                Err(e) => Err(hearth_loadtest::LoadtestError::Server(format!(
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
    use hearth_loadtest::{BRIEF_ENV, Brief, Identities, LoadOptions, WorkerLine, clients};
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
) -> Result<(hearth_loadtest::Identities, Vec<String>), String> {
    use hearth_net::auth::{Password, Role, UserAdd, add_user};
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
        hearth_loadtest::Identities {
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
    hearth_db::worlds::delete(&client, world)
        .await
        .map_err(|e| e.to_string())?;
    hearth_db::accounts::delete_users(&client, users)
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
    fn every_serve_flag_sets_its_own_key() {
        let flags = [
            "--world w --listen 127.0.0.1:1 --stop-after 1h --llm-report r",
            "--db-pool-size 3 --no-migrate --flush-interval 2s --max-backlog 9 --hot-window 5",
            "--seed 2 --tick-rate 5 --time-scale 2",
            "--agents a --map m --lore l --prompts p --no-watch --synthetic-agents 4",
            "--llm-url u --llm-model m --llm-api-key-env K --llm-timeout 3s",
            "--llm-max-concurrent 2 --llm-max-retries 1 --llm-requests-per-minute 5",
            "--llm-tokens-per-game-day 6 --llm-temperature 0.5 --llm-max-tokens 7",
            "--llm-structured text --llm-cache 8",
            "--embed-url u --embed-model m --embed-api-key-env K --embed-dimensions 3",
            "--embed-model-dir d",
            "--max-message-bytes 1024 --commands-per-second 3 --command-burst 4",
            "--max-connections 5 --client-queue 6 --ping-interval 1s --idle-timeout 2s",
        ]
        .join(" ");
        let argv: Vec<&str> = ["hearth", "serve"]
            .into_iter()
            .chain(flags.split(' '))
            .collect();
        let cli = Cli::try_parse_from(argv).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let mut layered = Layered::defaults();
        args.apply(&mut layered);
        let given = flags.split(' ').filter(|f| f.starts_with("--")).count();
        let set: Vec<(&str, &config::Origin)> = layered.origins().collect();
        assert_eq!(set.len(), given, "{set:?}");
        for (key, origin) in &set {
            assert!(config::find_key(key).is_some(), "{key} (from {origin})");
        }
        let c = layered.finish().expect("valid");
        assert_eq!((c.world.tick_rate, c.net.client_queue), (5, 6));
        assert!(!c.content.watch && !c.database.migrate);
        assert_eq!(c.llm.structured, hearth_mind::llm::Structured::Text);

        // a flag not given leaves the key alone
        let cli = Cli::try_parse_from(["hearth", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let mut layered = Layered::defaults();
        args.apply(&mut layered);
        assert_eq!(layered.origins().count(), 0);
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
