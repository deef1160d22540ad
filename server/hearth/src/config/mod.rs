//! `hearth.toml`: every setting of `hearth serve` as a key of a section,
//! each with its default (docs/configuration.md), overridden by the
//! environment (`HEARTH_<SECTION>_<KEY>`, and `DATABASE_URL`) and then by the
//! command line's flags; errors that name the key and where its value came
//! from; and the redacted rendering `hearth config` prints.
//!
//! Reads the one configuration file and the environment variables it is
//! given; touches nothing else (the command line in [`crate::cli`] applies
//! the flags and turns the result into each part's own settings).
//!
//! Built on `serde` and `toml` rather than a layering crate (`figment`):
//! the file is read as a plain TOML table, checked key by key against
//! [`KEYS`] (so an unknown key or a bad value is reported with its name,
//! its source, and a suggestion), the environment is converted by each
//! key's [`Kind`] and merged into that table, and the whole is then
//! deserialized once into [`Config`].
//!
//! ```
//! use hearth::config::Layered;
//! use std::path::Path;
//!
//! let file = "[server]\nlisten = \"0.0.0.0:9000\"\n";
//! let env = [("HEARTH_DATABASE_POOL_SIZE".into(), "4".into())];
//! let config = Layered::from_sources(Some((Path::new("hearth.toml"), file)), env)?.finish()?;
//! assert_eq!(config.server.listen.port(), 9000);
//! assert_eq!(config.database.pool_size, 4);
//! # Ok::<(), hearth::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::serve::ServeOptions;
use crate::telemetry::LogFormat;

mod keys;
use hearth_mind::embed::EmbedConfig;
use hearth_mind::llm::{LlmConfig, Structured};
use hearth_net::ws::NetLimits;
pub use keys::{KEYS, SECTIONS};

/// The most synthetic agents `simulate` accepts (about 6 KiB each).
pub const MAX_SYNTHETIC_AGENTS: usize = 2_000_000;

/// The demo world's content, relative to the working directory.
pub const DEFAULT_AGENTS: &str = "agents";
pub const DEFAULT_MAP: &str = "assets/maps/valley.tmj";

/// The environment variable naming the configuration file (as `--config`).
pub const FILE_ENV: &str = "HEARTH_CONFIG";
/// The file read, when it exists in the working directory, without `--config`.
pub const DEFAULT_FILE: &str = "hearth.toml";
/// The conventional variable for `[database] url` (`HEARTH_DATABASE_URL`
/// wins when both are set).
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";
/// The prefix of every key's environment variable.
pub const ENV_PREFIX: &str = "HEARTH_";

/// `HEARTH_` variables under a section's prefix that are not configuration
/// keys: docker/llm.sh's and docker/llm-bench.sh's own settings. (The
/// variables named by `api_key_env` are not keys either.)
const OTHER_ENV: &[&str] = &[
    "HEARTH_LLM_PORT",
    "HEARTH_LLM_THREADS",
    "HEARTH_LLM_PARALLEL",
    "HEARTH_LLM_CTX",
    "HEARTH_LLM_REPORT",
];

/// What a key's value is, for reading it from an environment variable and
/// for the first check of a file's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string: text, a path, a duration ("1s"), an address, a choice.
    Text,
    Bool,
    /// A number (integers are taken too).
    Float,
    /// A whole number from 0 to this.
    Uint(i64),
}

/// One key of `hearth.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
}

impl Key {
    /// `section.name`.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// `HEARTH_SECTION_NAME`.
    pub fn env(&self) -> String {
        format!(
            "{ENV_PREFIX}{}_{}",
            self.section.to_ascii_uppercase(),
            self.name.to_ascii_uppercase()
        )
    }
}

impl Config {
    /// What `hearth serve` runs with, under `home`. Content files are
    /// watched and reloaded only when the world is loaded from them (not
    /// for `synthetic_agents`).
    #[expect(
        clippy::needless_update,
        reason = "every option is a key today; one added to ServeOptions takes its default until it is"
    )]
    pub fn serve_options(&self, home: &Path) -> ServeOptions {
        let from_files = self.content.synthetic_agents.is_none();
        ServeOptions {
            world: self.server.world.clone(),
            world_name: self.server.world_name.clone(),
            migrate: self.database.migrate,
            pool_size: self.database.pool_size,
            embed: self.embed.to_embed_config(),
            home: home.to_path_buf(),
            lore: self.content.lore.clone(),
            flush_interval: self.database.flush_interval,
            hot_window: self.database.hot_window,
            max_backlog: self.database.max_backlog,
            listen: self.server.listen,
            limits: self.net.limits(),
            llm: self.llm.to_llm_config(),
            prompts: Some(self.content.prompts.clone()),
            stop_after: self.server.stop_after.map(|d| d.as_secs()),
            llm_report: self.server.llm_report.clone(),
            map_file: from_files.then(|| self.content.map.clone()),
            agents_dir: from_files.then(|| self.content.agents.clone()),
            watch: self.content.watch,
            ..ServeOptions::default()
        }
    }
}

/// The key at `section.name`.
pub fn find_key(path: &str) -> Option<&'static Key> {
    let (section, name) = path.split_once('.')?;
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

/// The whole configuration: what `hearth serve` runs with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub database: DatabaseSection,
    pub world: WorldSection,
    pub content: ContentSection,
    pub llm: LlmSection,
    pub embed: EmbedSection,
    pub net: NetSection,
    pub log: LogSection,
}

/// `[server]`: which world, where it listens, how long it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The world to run (its slug); created on first start.
    pub world: String,
    /// The world's display name, given when it is created.
    pub world_name: String,
    /// Address of the HTTP surface and game clients (port 0: any free port,
    /// logged).
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// Stop by itself after this much game time, as a benchmark run does
    /// (unset: run until stopped).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<Duration>,
    /// At the end, write what the agents' models did to this file (JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_report: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            world: "valley".into(),
            world_name: "The Valley".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            stop_after: None,
            llm_report: None,
        }
    }
}

/// `[database]`: where the world is persisted and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// PostgreSQL connection string (URL or key=value); unset: Hearth runs
    /// its own cluster under `<HOME>/pg`. A secret: `hearth config` hides
    /// its password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Maximum database connections.
    pub pool_size: usize,
    /// Apply pending migrations at start (false: refuse to start with any).
    pub migrate: bool,
    /// How often the world's changes are committed, each commit a checkpoint.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Memories and messages waiting to be written beyond which the server
    /// reports itself backlogged and holds new ones back.
    pub max_backlog: usize,
    /// Memories per agent kept in process for retrieval (the rest are in
    /// PostgreSQL only).
    pub hot_window: usize,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            migrate: true,
            flush_interval: Duration::from_secs(1),
            max_backlog: 1_000_000,
            hot_window: 10_000,
        }
    }
}

/// `[world]`: the simulation's clock and randomness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldSection {
    pub seed: u64,
    /// Ticks per real second.
    pub tick_rate: u32,
    /// Game minutes per real second.
    pub time_scale: u32,
}

impl Default for WorldSection {
    fn default() -> Self {
        Self {
            seed: 1,
            tick_rate: 10,
            time_scale: 1,
        }
    }
}

/// `[content]`: where the world's agents, map, lore and prompts come from.
/// Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentSection {
    /// Directory of agent files.
    pub agents: PathBuf,
    /// Tiled map (.tmj).
    pub map: PathBuf,
    /// World lore (Markdown and text files).
    pub lore: PathBuf,
    /// Prompt templates (each kind's file there replaces the built-in one).
    pub prompts: PathBuf,
    /// Reload the content into the live world when its files change.
    pub watch: bool,
    /// Serve this many generated agents on a generated map instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthetic_agents: Option<usize>,
}

impl Default for ContentSection {
    fn default() -> Self {
        Self {
            agents: PathBuf::from(DEFAULT_AGENTS),
            map: PathBuf::from(DEFAULT_MAP),
            lore: PathBuf::from("assets/lore"),
            prompts: PathBuf::from("assets/prompts"),
            watch: true,
            synthetic_agents: None,
        }
    }
}

/// `[llm]`: the language model agents think with (docs/llm.md); without
/// `url` every agent thinks with the rule-based mind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSection {
    /// Base URL of an OpenAI-compatible chat API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The longest one decision waits for the model.
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub max_concurrent: usize,
    pub max_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_game_day: Option<u64>,
    /// A `f64` here so that 0.7 reads and prints as 0.7.
    pub temperature: f64,
    pub max_tokens: u32,
    #[serde(with = "value_enum")]
    pub structured: Structured,
    /// Answers cached by prompt hash (0: none).
    pub cache: usize,
}

impl Default for LlmSection {
    /// The model client's own defaults ([`LlmConfig::default`]).
    fn default() -> Self {
        let d = LlmConfig::default();
        Self {
            url: d.base_url,
            model: d.model,
            api_key_env: d.api_key_env,
            timeout: d.timeout,
            max_concurrent: d.max_concurrent,
            max_retries: d.max_retries,
            requests_per_minute: d.requests_per_minute,
            tokens_per_game_day: d.tokens_per_game_day,
            // written out: 0.7f32 widened would read 0.699999988 in
            // `hearth config`; a unit test keeps it equal to the f32
            temperature: 0.7,
            max_tokens: d.max_tokens,
            structured: d.structured,
            cache: d.cache_entries,
        }
    }
}

impl LlmSection {
    pub fn to_llm_config(&self) -> LlmConfig {
        LlmConfig {
            base_url: self.url.clone(),
            model: self.model.clone(),
            api_key_env: self.api_key_env.clone(),
            timeout: self.timeout,
            max_concurrent: self.max_concurrent,
            max_retries: self.max_retries,
            requests_per_minute: self.requests_per_minute,
            tokens_per_game_day: self.tokens_per_game_day,
            temperature: self.temperature as f32,
            max_tokens: self.max_tokens,
            structured: self.structured,
            cache_entries: self.cache,
        }
    }
}

/// `[embed]`: which embedder makes the vectors (docs/embeddings.md); without
/// `url`, the in-process model when provisioned, else word hashing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedSection {
    /// Base URL of an OpenAI-compatible embeddings API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// The in-process model's directory (unset: `<HOME>/models/all-MiniLM-L6-v2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub batch_size: usize,
    pub max_retries: u32,
}

impl Default for EmbedSection {
    /// The embedder's own defaults ([`EmbedConfig::default`]).
    fn default() -> Self {
        let d = EmbedConfig::default();
        Self {
            url: d.base_url,
            model: d.model,
            api_key_env: d.api_key_env,
            dimensions: d.dimensions,
            model_dir: d.model_dir,
            timeout: d.timeout,
            batch_size: d.batch_size,
            max_retries: d.max_retries,
        }
    }
}

impl EmbedSection {
    pub fn to_embed_config(&self) -> EmbedConfig {
        EmbedConfig {
            base_url: self.url.clone(),
            model: self.model.clone(),
            api_key_env: self.api_key_env.clone(),
            dimensions: self.dimensions,
            model_dir: self.model_dir.clone(),
            timeout: self.timeout,
            batch_size: self.batch_size,
            max_retries: self.max_retries,
        }
    }
}

/// `[net]`: limits of the game clients' WebSocket surface (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    pub max_message_bytes: usize,
    pub commands_per_second: u32,
    pub command_burst: u32,
    pub max_connections: usize,
    pub client_queue: usize,
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    #[serde(with = "duration")]
    pub hello_timeout: Duration,
    pub max_abuse: u32,
}

impl Default for NetSection {
    fn default() -> Self {
        Self {
            max_message_bytes: 65_536,
            commands_per_second: 20,
            command_burst: 40,
            max_connections: 20_000,
            client_queue: 256,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            max_abuse: 50,
        }
    }
}

impl NetSection {
    pub fn limits(&self) -> NetLimits {
        NetLimits {
            max_message_bytes: self.max_message_bytes,
            commands_per_second: self.commands_per_second,
            burst: self.command_burst,
            max_connections: self.max_connections,
            queue: self.client_queue,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            hello_timeout: self.hello_timeout,
            max_abuse: self.max_abuse,
        }
    }
}

/// `[log]`: the log on stderr (its filter is `RUST_LOG`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    #[serde(with = "value_enum")]
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
        }
    }
}

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => f.write_str(var),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A configuration that cannot be used. Each names the key (or variable)
/// and where it was set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: unknown section [{section}]{}", path.display(), did_you_mean(suggestion))]
    UnknownSection {
        path: PathBuf,
        section: String,
        suggestion: Option<String>,
    },
    /// `key` is `section.name` (or a bare name outside any section).
    #[error("{}: unknown key '{key}'{}", path.display(), did_you_mean(suggestion))]
    UnknownKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
    },
    #[error("{var}: not a configuration key{}", did_you_mean(suggestion))]
    UnknownEnv {
        var: String,
        suggestion: Option<String>,
    },
    /// A bad value of `key` (`section.name`), set by `origin`.
    #[error("{}", invalid(origin, key, reason))]
    Invalid {
        origin: Origin,
        key: String,
        reason: String,
    },
    #[error("the configuration cannot be written as TOML: {0}")]
    Render(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// `hearth.toml: [server] listen: …`, `HEARTH_SERVER_LISTEN: …`,
/// `--listen: …`.
fn invalid(origin: &Origin, key: &str, reason: &str) -> String {
    let place = match key.split_once('.') {
        Some((section, name)) => format!("[{section}] {name}"),
        None => format!("[{key}]"),
    };
    match origin {
        Origin::File(path) => format!("{}: {place}: {reason}", path.display()),
        Origin::Env(var) => format!("{var}: {reason}"),
        Origin::Flag(flag) => format!("{flag}: {reason}"),
        Origin::Default => format!("{place}: {reason}"),
    }
}

/// A value as an error message shows it.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "a table".into(),
        toml::Value::Array(_) => "an array".into(),
        scalar => scalar.to_string(),
    }
}

/// Checks one key's value: its kind first (for a plain message), then by
/// deserializing it alone into [`Config`] (formats and ranges).
fn check_value(key: &Key, value: &toml::Value) -> Result<(), String> {
    use toml::Value as V;
    match (key.kind, value) {
        (Kind::Text, V::String(_)) | (Kind::Bool, V::Boolean(_)) => {}
        (Kind::Float, V::Float(_) | V::Integer(_)) => {}
        (Kind::Uint(max), V::Integer(n)) => {
            if *n < 0 || *n > max {
                return Err(format!("expected an integer from 0 to {max}, found {n}"));
            }
        }
        (Kind::Text, other) => return Err(format!("expected a string, found {}", describe(other))),
        (Kind::Bool, other) => {
            return Err(format!("expected true or false, found {}", describe(other)));
        }
        (Kind::Float, other) => {
            return Err(format!("expected a number, found {}", describe(other)));
        }
        (Kind::Uint(_), other) => {
            return Err(format!("expected an integer, found {}", describe(other)));
        }
    }
    let mut section = toml::Table::new();
    section.insert(key.name.to_owned(), value.clone());
    let mut root = toml::Table::new();
    root.insert(key.section.to_owned(), toml::Value::Table(section));
    root.try_into::<Config>()
        .map(drop)
        .map_err(|e| e.message().to_owned())
}

/// An environment variable's text as a value of `key`.
fn env_value(key: &Key, text: &str) -> Result<toml::Value, String> {
    let trimmed = text.trim();
    match key.kind {
        Kind::Text => Ok(toml::Value::String(text.to_owned())),
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, found {text:?}")),
        },
        Kind::Float => trimmed
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, found {text:?}")),
        Kind::Uint(_) => trimmed
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, found {text:?}")),
    }
}

/// The configuration as it is being put together: defaults, the file, the
/// environment, then flags ([`Layered::flag`]); [`Layered::finish`] checks it.
#[derive(Debug, Clone)]
pub struct Layered {
    config: Config,
    /// The file read, if any.
    file: Option<PathBuf>,
    /// Where each key not at its default was set, by `section.name`.
    origins: BTreeMap<String, Origin>,
    /// `HEARTH_<SECTION>_…` variables that name no key, with a suggestion;
    /// reported by [`Layered::validate`] unless an `api_key_env` names them.
    unknown_env: Vec<(String, Option<String>)>,
}

impl Layered {
    /// The built-in defaults alone.
    pub fn defaults() -> Self {
        Self {
            config: Config::default(),
            file: None,
            origins: BTreeMap::new(),
            unknown_env: Vec::new(),
        }
    }

    /// Reads `file` (an error when it cannot be read), or else
    /// [`DEFAULT_FILE`] in the working directory when it exists, and the
    /// variables of `env` (the process's: `std::env::vars_os()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let text = match file {
            Some(path) => Some((path.to_owned(), read(path)?)),
            None => {
                let path = Path::new(DEFAULT_FILE);
                match std::fs::metadata(path) {
                    Ok(_) => Some((path.to_owned(), read(path)?)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => {
                        return Err(ConfigError::Read {
                            path: path.to_owned(),
                            source,
                        });
                    }
                }
            }
        };
        Self::from_sources(
            text.as_ref()
                .map(|(path, text)| (path.as_path(), text.as_str())),
            env,
        )
    }

    /// Layers a file's text (named by its path) and environment variables
    /// over the defaults.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let mut layered = Self::defaults();
        let mut merged = toml::Table::new();
        if let Some((path, text)) = file {
            layered.file = Some(path.to_owned());
            for (key, value) in read_file(path, text)? {
                layered
                    .origins
                    .insert(key.path(), Origin::File(path.to_owned()));
                set(&mut merged, key, value);
            }
        }
        for (key, var, value) in layered.read_env(env)? {
            layered.origins.insert(key.path(), Origin::Env(var));
            set(&mut merged, key, value);
        }
        layered.config = merged
            .try_into::<Config>()
            .map_err(|e| ConfigError::Invalid {
                origin: Origin::Default,
                key: "configuration".into(),
                reason: e.message().to_owned(),
            })?;
        Ok(layered)
    }

    /// The keys the environment sets, each checked, in precedence order
    /// (`DATABASE_URL` before `HEARTH_DATABASE_URL`); unknown `HEARTH_`
    /// variables of a section are kept for [`Layered::validate`].
    fn read_env(
        &mut self,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Vec<(&'static Key, String, toml::Value)>, ConfigError> {
        let mut vars: Vec<(String, OsString)> = env
            .into_iter()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut found = Vec::new();
        let database_url = find_key("database.url");
        for (var, value) in &vars {
            let key = if var == DATABASE_URL_ENV {
                database_url
            } else if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
                let Some(section) = SECTIONS.iter().find(|s| {
                    rest.strip_prefix(&s.to_ascii_uppercase())
                        .is_some_and(|r| r.starts_with('_'))
                }) else {
                    continue; // HEARTH_HOME, HEARTH_TOKEN_SECRET, …: not keys
                };
                let name = rest[section.len() + 1..].to_ascii_lowercase();
                let key = KEYS
                    .iter()
                    .find(|k| k.section == *section && k.name == name);
                if key.is_none() && !OTHER_ENV.contains(&var.as_str()) {
                    let suggestion = hearth_suggest::closest(
                        &name,
                        KEYS.iter()
                            .filter(|k| k.section == *section)
                            .map(|k| k.name),
                    )
                    .and_then(|n| find_key(&format!("{section}.{n}")))
                    .map(Key::env);
                    self.unknown_env.push((var.clone(), suggestion));
                }
                key
            } else {
                None
            };
            let Some(key) = key else { continue };
            let bad = |reason: String| ConfigError::Invalid {
                origin: Origin::Env(var.clone()),
                key: key.path(),
                reason,
            };
            let Some(text) = value.to_str() else {
                return Err(bad("not valid UTF-8".into()));
            };
            if text.is_empty() {
                continue; // set but empty: as if unset
            }
            let value = env_value(key, text).map_err(bad)?;
            check_value(key, &value).map_err(bad)?;
            found.push((key, var.clone(), value));
        }
        // the conventional DATABASE_URL yields to HEARTH_DATABASE_URL
        found.sort_by_key(|(_, var, _)| var.starts_with(ENV_PREFIX));
        Ok(found)
    }

    /// Sets a key from a flag given on the command line (`None`: not
    /// given, the key keeps its value). `key` is `section.name`.
    pub fn flag<T>(
        &mut self,
        key: &str,
        flag: &str,
        value: Option<T>,
        set: impl FnOnce(&mut Config, T),
    ) {
        if let Some(value) = value {
            set(&mut self.config, value);
            self.origins
                .insert(key.to_owned(), Origin::Flag(flag.to_owned()));
        }
    }

    /// The configuration in effect so far (unchecked).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The file read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The keys not at their defaults (`section.name`) and where each was set.
    pub fn origins(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.origins.iter().map(|(k, o)| (k.as_str(), o))
    }

    /// Where `key` (`section.name`) was set.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Checks what no type says: unknown `HEARTH_` variables, then each
    /// value's range, naming the key and where it was set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key_vars = [&self.config.llm.api_key_env, &self.config.embed.api_key_env];
        if let Some((var, suggestion)) = self
            .unknown_env
            .iter()
            .find(|(var, _)| !key_vars.iter().any(|k| k.as_deref() == Some(var.as_str())))
        {
            return Err(ConfigError::UnknownEnv {
                var: var.clone(),
                suggestion: suggestion.clone(),
            });
        }
        let c = &self.config;
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            origin: self.origin(key),
            key: key.to_owned(),
            reason,
        };
        let at_least = |key: &str, n: u64, min: u64| {
            if n < min {
                Err(bad(key, format!("must be at least {min}, found {n}")))
            } else {
                Ok(())
            }
        };
        let within = |key: &str, n: u64, min: u64, max: u64| {
            if n < min || n > max {
                Err(bad(key, format!("must be from {min} to {max}, found {n}")))
            } else {
                Ok(())
            }
        };
        let longer = |key: &str, d: Duration, min: Duration| {
            if d < min {
                let min = humantime::format_duration(min);
                let d = humantime::format_duration(d);
                Err(bad(key, format!("must be at least {min}, found {d}")))
            } else {
                Ok(())
            }
        };
        let ms = Duration::from_millis;
        if c.server.world.trim().is_empty() {
            return Err(bad("server.world", "must not be empty".into()));
        }
        at_least("database.pool_size", c.database.pool_size as u64, 1)?;
        longer("database.flush_interval", c.database.flush_interval, ms(1))?;
        at_least("database.max_backlog", c.database.max_backlog as u64, 1)?;
        at_least("database.hot_window", c.database.hot_window as u64, 1)?;
        within("world.tick_rate", c.world.tick_rate.into(), 1, 1000)?;
        if let Some(n) = c.content.synthetic_agents {
            let max = MAX_SYNTHETIC_AGENTS as u64;
            within("content.synthetic_agents", n as u64, 0, max)?;
        }
        longer("llm.timeout", c.llm.timeout, ms(1))?;
        at_least("llm.max_concurrent", c.llm.max_concurrent as u64, 1)?;
        if let Some(n) = c.llm.requests_per_minute {
            at_least("llm.requests_per_minute", n.into(), 1)?;
        }
        if !(0.0..=2.0).contains(&c.llm.temperature) {
            let t = c.llm.temperature;
            return Err(bad(
                "llm.temperature",
                format!("must be from 0 to 2, found {t}"),
            ));
        }
        at_least("llm.max_tokens", c.llm.max_tokens.into(), 1)?;
        if let Some(n) = c.embed.dimensions {
            at_least("embed.dimensions", n as u64, 1)?;
        }
        longer("embed.timeout", c.embed.timeout, ms(1))?;
        at_least("embed.batch_size", c.embed.batch_size as u64, 1)?;
        within(
            "net.max_message_bytes",
            c.net.max_message_bytes as u64,
            256,
            16 << 20,
        )?;
        at_least(
            "net.commands_per_second",
            c.net.commands_per_second.into(),
            1,
        )?;
        at_least("net.command_burst", c.net.command_burst.into(), 1)?;
        at_least("net.max_connections", c.net.max_connections as u64, 1)?;
        within("net.client_queue", c.net.client_queue as u64, 2, 1 << 20)?;
        longer("net.ping_interval", c.net.ping_interval, ms(100))?;
        longer("net.idle_timeout", c.net.idle_timeout, ms(1000))?;
        longer("net.hello_timeout", c.net.hello_timeout, ms(100))?;
        at_least("net.max_abuse", c.net.max_abuse.into(), 1)?;
        Ok(())
    }

    /// The checked configuration.
    pub fn finish(self) -> Result<Config, ConfigError> {
        self.validate()?;
        Ok(self.config)
    }

    /// The configuration as TOML, every key with the value in effect (an
    /// unset one as a comment), where it was set as a trailing comment,
    /// and secrets redacted: what `hearth config` prints. It reads back
    /// as the same configuration, but for the redacted secrets.
    pub fn render(&self) -> Result<String, ConfigError> {
        let mut shown = self.config.clone();
        for url in [
            &mut shown.database.url,
            &mut shown.llm.url,
            &mut shown.embed.url,
        ] {
            if let Some(u) = url.as_mut() {
                *u = redact(u);
            }
        }
        let table =
            toml::Table::try_from(&shown).map_err(|e| ConfigError::Render(e.to_string()))?;
        let mut out = String::from(
            "# Hearth's configuration: built-in defaults < hearth.toml < environment < flags.\n",
        );
        match &self.file {
            Some(path) => out += &format!("# File: {}\n", path.display()),
            None => out += "# File: none\n",
        }
        out += "# Secrets are redacted. Reference: docs/configuration.md\n";
        for section in SECTIONS.iter() {
            out += &format!("\n[{section}]\n");
            let values = table.get(*section).and_then(toml::Value::as_table);
            for key in KEYS.iter().filter(|k| k.section == *section) {
                let origin = self.origin(&key.path());
                match values.and_then(|t| t.get(key.name)) {
                    Some(value) => {
                        out += &format!("{} = {value}", key.name);
                        if origin != Origin::Default {
                            out += &format!("  # {origin}");
                        }
                        out += "\n";
                    }
                    None => out += &format!("# {} is unset\n", key.name),
                }
            }
        }
        Ok(out)
    }
}

/// A file's keys and values, each checked.
fn read_file(path: &Path, text: &str) -> Result<Vec<(&'static Key, toml::Value)>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: syntax_message(text, &e),
    })?;
    let mut found = Vec::new();
    for (section, values) in table {
        if !SECTIONS.contains(&section.as_str()) {
            // a key written outside its section?
            if let Some(key) = KEYS.iter().find(|k| k.name == section)
                && !values.is_table()
            {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: section,
                    suggestion: Some(format!("'{}'", key.path())),
                });
            }
            let suggestion = hearth_suggest::closest(&section, SECTIONS.iter().copied())
                .map(|s| format!("[{s}]"));
            return Err(ConfigError::UnknownSection {
                path: path.to_owned(),
                section,
                suggestion,
            });
        }
        let toml::Value::Table(values) = values else {
            return Err(ConfigError::Invalid {
                origin: Origin::File(path.to_owned()),
                key: section,
                reason: format!("expected a table ([section]), found {}", describe(&values)),
            });
        };
        for (name, value) in values {
            let Some(key) = find_key(&format!("{section}.{name}")) else {
                let suggestion = hearth_suggest::closest(
                    &name,
                    KEYS.iter().filter(|k| k.section == section).map(|k| k.name),
                )
                .map(|n| format!("'{n}'"));
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: format!("{section}.{name}"),
                    suggestion,
                });
            };
            check_value(key, &value).map_err(|reason| ConfigError::Invalid {
                origin: Origin::File(path.to_owned()),
                key: key.path(),
                reason,
            })?;
            // a whole number given for a number: the same value
            let value = match (key.kind, value) {
                (Kind::Float, toml::Value::Integer(n)) => toml::Value::Float(n as f64),
                (_, value) => value,
            };
            found.push((key, value));
        }
    }
    Ok(found)
}

/// `line L, column C: message` from a TOML parse error.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

fn set(table: &mut toml::Table, key: &Key, value: toml::Value) {
    let section = table
        .entry(key.section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(section) = section {
        section.insert(key.name.to_owned(), value);
    }
}

/// A connection string or URL with its password replaced by `***`:
/// `postgres://user:***@host/db`, `host=h user=u password=***`, and any
/// `password=` query parameter.
pub fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return redact_passwords(text);
    };
    let start = scheme_end + 3;
    let rest = &text[start..];
    // the user information ends at the last '@' before any query: a
    // password with an unencoded '/' is still hidden
    let head = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let mut out = text[..start].to_owned();
    let after_userinfo = match head.rfind('@') {
        Some(at) => {
            match head[..at].split_once(':') {
                Some((user, _)) => {
                    out += user;
                    out += ":***";
                }
                None => out += &head[..at],
            }
            at
        }
        None => 0,
    };
    out += &redact_passwords(&rest[after_userinfo..]);
    out
}

/// Every `password=VALUE` (a key=value string's, or a query's) as
/// `password=***`.
fn redact_passwords(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(KEY) {
        let start = from + found;
        let after = start + KEY.len();
        from = after;
        let whole =
            start == 0 || matches!(bytes[start - 1], b'?' | b'&' | b';' | b' ' | b'\t' | b'\n');
        let rest = &text[after..];
        let spaced = rest.len() - rest.trim_start().len();
        if !whole || !rest[spaced..].starts_with('=') {
            continue;
        }
        let eq = after + spaced + 1;
        let value_start = eq + (text[eq..].len() - text[eq..].trim_start().len());
        let value_end = if bytes.get(value_start) == Some(&b'\'') {
            // a quoted value, with \' inside
            let mut i = value_start + 1;
            let mut end = text.len();
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            end
        } else {
            text[value_start..]
                .find(|c: char| c.is_whitespace() || c == '&' || c == '#' || c == ';')
                .map_or(text.len(), |n| value_start + n)
        };
        out += &text[done..value_start];
        out += "***";
        done = value_end;
        from = value_end.max(from);
    }
    out += &text[done..];
    out
}

/// Durations as humantime strings ("1s", "500ms", "2h").
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration {text:?}: {e} (write e.g. \"1s\" or \"500ms\")"))
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::duration::parse(&text)
            .map(Some)
            .map_err(D::Error::custom)
    }
}

/// Socket addresses as "HOST:PORT" strings, with a message that says so.
mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.trim().parse().map_err(|_| {
            D::Error::custom(format!(
                "invalid socket address {text:?}: expected IP:PORT, e.g. \"127.0.0.1:7878\" or \"[::]:7878\""
            ))
        })
    }
}

/// A clap `ValueEnum` as its name, `_` or `-` between words.
mod value_enum {
    use clap::ValueEnum;
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser};

    pub fn serialize<T: ValueEnum, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        match v.to_possible_value() {
            Some(p) => s.serialize_str(&p.get_name().replace('-', "_")),
            None => Err(<S::Error as ser::Error>::custom("a value without a name")),
        }
    }

    pub fn deserialize<'de, T: ValueEnum, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::from_str(&text.trim().replace('_', "-"), true).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|p| format!("{:?}", p.get_name().replace('-', "_")))
                .collect();
            D::Error::custom(format!(
                "expected one of {}, found {text:?}",
                names.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn file(text: &str) -> Option<(&'static Path, &str)> {
        Some((Path::new("hearth.toml"), text))
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Layered::from_sources(file(text), env(vars))?.finish()
    }

    fn error(text: &str, vars: &[(&str, &str)]) -> String {
        match load(text, vars) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every optional key set, so that serializing shows every key.
    fn full() -> Config {
        let mut c = Config::default();
        c.server.stop_after = Some(Duration::from_secs(7200));
        c.server.llm_report = Some("report.json".into());
        c.database.url = Some("postgres://u:p@h/d".into());
        c.content.synthetic_agents = Some(10);
        c.llm.url = Some("http://127.0.0.1:11434/v1".into());
        c.llm.model = Some("m".into());
        c.llm.api_key_env = Some("KEY".into());
        c.llm.requests_per_minute = Some(60);
        c.llm.tokens_per_game_day = Some(1000);
        c.embed.url = Some("http://127.0.0.1:11434/v1".into());
        c.embed.model = Some("e".into());
        c.embed.api_key_env = Some("KEY".into());
        c.embed.dimensions = Some(384);
        c.embed.model_dir = Some("models".into());
        c
    }

    #[test]
    fn the_key_list_is_the_structs_fields() {
        let table = toml::Table::try_from(full()).unwrap();
        let mut fields: Vec<String> = table
            .iter()
            .flat_map(|(s, t)| {
                t.as_table()
                    .unwrap()
                    .keys()
                    .map(move |k| format!("{s}.{k}"))
            })
            .collect();
        let mut keys: Vec<String> = KEYS.iter().map(Key::path).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
        let sections: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut expected = SECTIONS.to_vec();
        expected.sort_unstable();
        assert_eq!(sections, expected);
        // each key's kind is what its field takes
        for key in KEYS.iter() {
            let value = &table[key.section][key.name];
            check_value(key, value).unwrap_or_else(|e| panic!("{}: {e}", key.path()));
        }
    }

    #[test]
    fn the_defaults_are_the_parts_own() {
        let c = Config::default();
        assert_eq!(c.llm.to_llm_config(), LlmConfig::default());
        assert_eq!(c.embed.to_embed_config(), EmbedConfig::default());
        let (limits, expected) = (c.net.limits(), NetLimits::default());
        assert_eq!(format!("{limits:?}"), format!("{expected:?}"));
        let serve = crate::serve::ServeOptions::default();
        assert_eq!(c.server.world, serve.world);
        assert_eq!(c.server.world_name, serve.world_name);
        assert_eq!(c.server.listen, serve.listen);
        assert_eq!(c.database.pool_size, serve.pool_size);
        assert_eq!(c.database.migrate, serve.migrate);
        assert_eq!(c.database.flush_interval, serve.flush_interval);
        assert_eq!(c.database.max_backlog, serve.max_backlog);
        assert_eq!(c.database.hot_window, serve.hot_window);
        assert_eq!(c.content.lore, serve.lore);
        assert_eq!(c.content.watch, serve.watch);
        let sim = hearth_world::SimConfig::default();
        assert_eq!(
            (c.world.seed, c.world.tick_rate, c.world.time_scale),
            (sim.seed, sim.tick_rate, sim.game_minutes_per_second)
        );
        Layered::defaults().validate().unwrap();
    }

    #[test]
    fn a_file_sets_keys_and_leaves_the_rest_at_their_defaults() {
        let c = load(
            r#"
            [server]
            listen = "0.0.0.0:9000"
            stop_after = "2h"
            [database]
            flush_interval = "500ms"
            migrate = false
            [llm]
            temperature = 1
            structured = "json_object"
            [log]
            format = "json"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.server.stop_after, Some(Duration::from_secs(7200)));
        assert_eq!(c.database.flush_interval, Duration::from_millis(500));
        assert!(!c.database.migrate);
        assert_eq!(c.llm.temperature, 1.0);
        assert_eq!(c.llm.structured, Structured::JsonObject);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.server.world, "valley");
        assert_eq!(c.database.pool_size, 16);
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let text = "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\npool_size = 8\n";
        let vars = [
            ("HEARTH_DATABASE_POOL_SIZE", "4"),
            ("HEARTH_WORLD_TICK_RATE", "20"),
            ("HEARTH_LLM_URL", "http://llm:8080/v1"),
            ("HEARTH_LLM_TEMPERATURE", "0.2"),
            ("HEARTH_CONTENT_WATCH", "no"),
            ("HEARTH_NET_PING_INTERVAL", "5s"),
            ("HEARTH_LOG_FORMAT", "JSON"),
            ("DATABASE_URL", "postgres://a@h/x"),
        ];
        let mut layered = Layered::from_sources(file(text), env(&vars)).unwrap();
        let c = layered.config();
        assert_eq!(c.database.pool_size, 4);
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.world.tick_rate, 20);
        assert_eq!(c.llm.url.as_deref(), Some("http://llm:8080/v1"));
        assert_eq!(c.llm.temperature, 0.2);
        assert!(!c.content.watch);
        assert_eq!(c.net.ping_interval, Duration::from_secs(5));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.database.url.as_deref(), Some("postgres://a@h/x"));
        assert_eq!(
            layered.origin("server.listen"),
            Origin::File("hearth.toml".into())
        );
        assert_eq!(
            layered.origin("database.pool_size"),
            Origin::Env("HEARTH_DATABASE_POOL_SIZE".into())
        );
        assert_eq!(layered.origin("world.seed"), Origin::Default);

        layered.flag("database.pool_size", "--db-pool-size", Some(2), |c, v| {
            c.database.pool_size = v;
        });
        layered.flag("world.tick_rate", "--tick-rate", None, |c, v| {
            c.world.tick_rate = v
        });
        assert_eq!(
            layered.origin("database.pool_size"),
            Origin::Flag("--db-pool-size".into())
        );
        let c = layered.finish().unwrap();
        assert_eq!(c.database.pool_size, 2);
        assert_eq!(c.world.tick_rate, 20);
    }

    #[test]
    fn hearth_database_url_wins_over_database_url_and_empty_variables_are_unset() {
        let vars = [
            ("HEARTH_DATABASE_URL", "postgres://hearth@h/x"),
            ("DATABASE_URL", "postgres://other@h/x"),
            ("HEARTH_LLM_MODEL", ""),
        ];
        let c = load("[llm]\nmodel = \"m\"\n", &vars).unwrap();
        assert_eq!(c.database.url.as_deref(), Some("postgres://hearth@h/x"));
        assert_eq!(c.llm.model.as_deref(), Some("m"));
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        assert_eq!(
            error("[server]\nlissen = \"0.0.0.0:1\"\n", &[]),
            "hearth.toml: unknown key 'server.lissen' (did you mean 'listen'?)"
        );
        assert_eq!(
            error("[sever]\nlisten = \"0.0.0.0:1\"\n", &[]),
            "hearth.toml: unknown section [sever] (did you mean [server]?)"
        );
        assert_eq!(
            error("listen = \"0.0.0.0:1\"\n", &[]),
            "hearth.toml: unknown key 'listen' (did you mean 'server.listen'?)"
        );
        assert_eq!(
            error("[server]\nfrobnicate = 1\n", &[]),
            "hearth.toml: unknown key 'server.frobnicate'"
        );
        assert_eq!(
            error("", &[("HEARTH_SERVER_LISSEN", "0.0.0.0:1")]),
            "HEARTH_SERVER_LISSEN: not a configuration key (did you mean HEARTH_SERVER_LISTEN?)"
        );
    }

    #[test]
    fn other_hearth_variables_are_not_keys() {
        let vars = [
            ("HEARTH_HOME", "/tmp/h"),
            ("HEARTH_TOKEN_SECRET", "s"),
            ("HEARTH_CONFIG", "x.toml"),
            ("HEARTH_LOADTEST_BRIEF", "{}"),
            ("HEARTH_PG_BIN", "/usr/bin"),
            ("HEARTH_TEST_DATABASE_URL", "postgres://x"),
            ("HEARTH_LLM_PORT", "8088"),
            ("HEARTH_LLM_REPORT", "r.json"),
            ("HEARTH_LLM_SECRET_KEY", "sk-1"),
            ("HEARTH_LLM_API_KEY_ENV", "HEARTH_LLM_SECRET_KEY"),
        ];
        let c = load("", &vars).unwrap();
        assert_eq!(c.llm.api_key_env.as_deref(), Some("HEARTH_LLM_SECRET_KEY"));
        // the same variable is an error when no api_key_env names it
        assert!(
            error("", &vars[..9]).starts_with("HEARTH_LLM_SECRET_KEY: not a configuration key")
        );
    }

    #[test]
    fn bad_values_are_named_with_their_source() {
        assert_eq!(
            error("[server]\nlisten = \"nope\"\n", &[]),
            "hearth.toml: [server] listen: invalid socket address \"nope\": \
             expected IP:PORT, e.g. \"127.0.0.1:7878\" or \"[::]:7878\""
        );
        assert_eq!(
            error("[database]\npool_size = \"many\"\n", &[]),
            "hearth.toml: [database] pool_size: expected an integer, found \"many\""
        );
        assert_eq!(
            error("[database]\npool_size = -1\n", &[]),
            "hearth.toml: [database] pool_size: expected an integer from 0 to 9223372036854775807, found -1"
        );
        assert_eq!(
            error("", &[("HEARTH_DATABASE_POOL_SIZE", "many")]),
            "HEARTH_DATABASE_POOL_SIZE: expected an integer, found \"many\""
        );
        assert!(
            error("[database]\nflush_interval = \"soon\"\n", &[])
                .starts_with("hearth.toml: [database] flush_interval: invalid duration \"soon\"")
        );
        assert_eq!(
            error("", &[("HEARTH_LLM_STRUCTURED", "yaml")]),
            "HEARTH_LLM_STRUCTURED: expected one of \"json_schema\", \"json_object\", \"text\", found \"yaml\""
        );
        assert_eq!(
            error("[content]\nwatch = \"yes\"\n", &[]),
            "hearth.toml: [content] watch: expected true or false, found \"yes\""
        );
        assert_eq!(
            error("[world]\ntick_rate = 0\n", &[]),
            "hearth.toml: [world] tick_rate: must be from 1 to 1000, found 0"
        );
        assert_eq!(
            error("", &[("HEARTH_LLM_TEMPERATURE", "3")]),
            "HEARTH_LLM_TEMPERATURE: must be from 0 to 2, found 3"
        );
        assert_eq!(
            error("server = 1\n", &[]),
            "hearth.toml: [server]: expected a table ([section]), found 1"
        );
        assert_eq!(
            error("[server]\nlisten = [1]\n", &[]),
            "hearth.toml: [server] listen: expected a string, found an array"
        );
        assert!(error("[server\n", &[]).starts_with("hearth.toml: line 1, column "));
        let mut layered = Layered::defaults();
        layered.flag("world.tick_rate", "--tick-rate", Some(0), |c, v| {
            c.world.tick_rate = v
        });
        assert_eq!(
            layered.finish().unwrap_err().to_string(),
            "--tick-rate: must be from 1 to 1000, found 0"
        );
    }

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        for text in [
            "\u{feff}[server]",
            "[server]\nlisten = \"\u{1F525}\"",
            "[database]\nhot_window = 99999999999999999999",
            "[llm]\ntemperature = nan",
            "[llm]\ntemperature = inf",
            "[[server]]\nworld = \"x\"",
            "[server.listen]\nx = 1",
            "[server]\nstop_after = \"99999999999999999999999h\"",
            "a.b.c.d = 1",
            "\"\" = 1",
            "[log]\nformat = \"\"",
        ] {
            let _ = load(text, &[]);
        }
        for (var, value) in [
            ("HEARTH_WORLD_SEED", "-1"),
            ("HEARTH_WORLD_SEED", "99999999999999999999"),
            ("HEARTH_LLM_TEMPERATURE", "NaN"),
            ("HEARTH_LLM_", "x"),
            ("HEARTH_SERVER_LISTEN", " "),
        ] {
            assert!(load("", &[(var, value)]).is_err(), "{var}={value}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let vars = vec![(
                OsString::from("HEARTH_SERVER_WORLD"),
                OsString::from_vec(vec![0xff, 0xfe]),
            )];
            let e = Layered::from_sources(None, vars).unwrap_err().to_string();
            assert_eq!(e, "HEARTH_SERVER_WORLD: not valid UTF-8");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("postgres://user:secret@host:5432/db"),
            "postgres://user:***@host:5432/db"
        );
        assert_eq!(redact("postgres://user@host/db"), "postgres://user@host/db");
        assert_eq!(
            redact("postgres://host/db?password=x&sslmode=disable"),
            "postgres://host/db?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://u:p%40ss@h/d"),
            "postgresql://u:***@h/d"
        );
        assert_eq!(
            redact("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact("host=h password = 'se cr\\'et' dbname=d"),
            "host=h password = *** dbname=d"
        );
        assert_eq!(redact("host=h passwordless=1"), "host=h passwordless=1");
        assert_eq!(redact("password='unterminated"), "password=***");
        assert_eq!(redact("http://k:v@llm/v1"), "http://k:***@llm/v1");
        assert_eq!(redact("postgres://u:pa/ss@h/d"), "postgres://u:***@h/d");

        let vars = [
            (
                "DATABASE_URL",
                "postgres://hearth:hunter2@db.example/hearth",
            ),
            ("HEARTH_LLM_URL", "https://key:sk-123@llm.example/v1"),
        ];
        let shown = Layered::from_sources(None, env(&vars))
            .unwrap()
            .render()
            .unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("sk-123"),
            "{shown}"
        );
        assert!(
            shown.contains("url = \"postgres://hearth:***@db.example/hearth\"  # DATABASE_URL"),
            "{shown}"
        );
    }

    #[test]
    fn the_rendering_has_every_key_and_reads_back() {
        let shown = Layered::defaults().render().unwrap();
        for key in KEYS.iter() {
            assert!(
                shown.contains(&format!("\n{} = ", key.name))
                    || shown.contains(&format!("\n# {} is unset", key.name)),
                "{} missing:\n{shown}",
                key.path()
            );
        }
        assert_eq!(load(&shown, &[]).unwrap(), Config::default());

        let mut layered = Layered::from_sources(None, env(&[("HEARTH_WORLD_SEED", "7")])).unwrap();
        layered.flag(
            "content.synthetic_agents",
            "--synthetic-agents",
            Some(5),
            |c, v| {
                c.content.synthetic_agents = Some(v);
            },
        );
        let shown = layered.render().unwrap();
        assert!(shown.contains("seed = 7  # HEARTH_WORLD_SEED\n"), "{shown}");
        assert!(
            shown.contains("synthetic_agents = 5  # --synthetic-agents\n"),
            "{shown}"
        );
        let mut full = full();
        full.database.url = Some("postgres://u@h/d".into());
        let mut layered = Layered::defaults();
        layered.config = full.clone();
        assert_eq!(load(&layered.render().unwrap(), &[]).unwrap(), full);
    }

    #[test]
    fn the_example_file_is_the_defaults_and_names_every_key() {
        let example = include_str!("../../../../hearth.example.toml");
        assert_eq!(load(example, &[]).unwrap(), Config::default());
        let mut section = "";
        let mut seen = Vec::new();
        for line in example.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s;
            } else if let Some((name, _)) = line.split_once(" = ")
                && find_key(&format!("{section}.{name}")).is_some()
            {
                seen.push(format!("{section}.{name}"));
            }
        }
        for key in KEYS.iter() {
            assert!(
                seen.contains(&key.path()),
                "{} is not in hearth.example.toml",
                key.path()
            );
        }
    }

    #[test]
    fn the_documentation_names_every_key_and_variable() {
        let docs = include_str!("../../../../docs/configuration.md");
        for key in KEYS.iter() {
            assert!(
                docs.contains(&format!("`{}`", key.env())),
                "{} is not in docs/configuration.md",
                key.env()
            );
        }
    }
}
