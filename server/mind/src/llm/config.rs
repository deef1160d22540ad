//! How a world talks to its language model: the world's settings
//! ([`LlmConfig`]), each agent's overrides from its file, and the resolved
//! [`Endpoint`] a request goes to. Reads environment variables (API keys)
//! once, when resolving; touches nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;

use super::LlmError;
use crate::openai;
use hearth_content::AgentDef;
use hearth_content::agent::LlmSettings;

/// How the answer's shape is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Structured {
    /// `response_format: {type: "json_schema", …}` with the prompt's schema
    /// (OpenAI, vLLM, llama.cpp's server, Ollama ≥ 0.5, LM Studio). A server
    /// that refuses it is asked again with `json_object`, then plain text.
    #[default]
    JsonSchema,
    /// `response_format: {type: "json_object"}`.
    JsonObject,
    /// No `response_format`: the JSON is found in the text.
    Text,
}

impl Structured {
    pub fn as_str(self) -> &'static str {
        match self {
            Structured::JsonSchema => "json_schema",
            Structured::JsonObject => "json_object",
            Structured::Text => "text",
        }
    }

    /// The next, more tolerant way to ask.
    pub fn weaker(self) -> Option<Structured> {
        match self {
            Structured::JsonSchema => Some(Structured::JsonObject),
            Structured::JsonObject => Some(Structured::Text),
            Structured::Text => None,
        }
    }
}

/// A world's model settings. Without `base_url` (and no agent naming one)
/// every agent thinks with the rule-based mind.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// An OpenAI-compatible API, e.g. `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// The longest any decision waits for the model, queueing and retries
    /// included; then the rule-based mind decides.
    pub timeout: Duration,
    /// Requests in flight at once, for the whole world.
    pub max_concurrent: usize,
    /// Retries of a request that failed with a connection error, 429 or 5xx
    /// (within `timeout`).
    pub max_retries: u32,
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens the world may spend per game day.
    pub tokens_per_game_day: Option<u64>,
    pub temperature: f32,
    pub max_tokens: u32,
    pub structured: Structured,
    /// Answers kept by prompt hash (0: no cache).
    pub cache_entries: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: None,
            api_key_env: None,
            timeout: Duration::from_secs(20),
            max_concurrent: 4,
            max_retries: 2,
            requests_per_minute: None,
            tokens_per_game_day: None,
            temperature: 0.7,
            max_tokens: 400,
            structured: Structured::JsonSchema,
            cache_entries: 10_000,
        }
    }
}

impl LlmConfig {
    /// Checks the numbers; the endpoints are checked by [`Endpoints::resolve`].
    pub fn validate(&self) -> Result<(), LlmError> {
        let bad = |key: &str, why: &str| Err(LlmError::Config(format!("`{key}` {why}")));
        if self.timeout.is_zero() {
            return bad("llm timeout", "must be more than 0");
        }
        if self.max_concurrent == 0 {
            return bad("llm max_concurrent", "must be at least 1");
        }
        if self.requests_per_minute == Some(0) {
            return bad("llm requests_per_minute", "must be at least 1 when set");
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad("llm temperature", "must be within 0..=2");
        }
        if self.max_tokens == 0 {
            return bad("llm max_tokens", "must be at least 1");
        }
        Ok(())
    }
}

/// Where one agent's requests go.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// `…/v1/chat/completions`.
    pub url: Url,
    pub model: String,
    pub api_key: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
}

/// Written by hand so the API key never reaches a log.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// The world's endpoint and each agent's, resolved once.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub world: Option<Endpoint>,
    /// By agent index, where the agent's file overrides the world.
    pub agents: BTreeMap<u32, Endpoint>,
}

impl Endpoints {
    /// The world's endpoint from `config`, and each agent's where its file
    /// has `llm` settings (each field overrides the world's). An error names
    /// the agent and the setting.
    pub fn resolve(config: &LlmConfig, agents: &[AgentDef]) -> Result<Endpoints, LlmError> {
        config.validate()?;
        let world = match &config.base_url {
            Some(base) => Some(endpoint(
                base,
                config.model.as_deref(),
                config.api_key_env.as_deref(),
                config.temperature,
                config.max_tokens,
                "the world",
            )?),
            None => None,
        };
        let mut out = BTreeMap::new();
        for (i, def) in agents.iter().enumerate() {
            let Some(s) = &def.file.llm else { continue };
            if *s == LlmSettings::default() {
                continue;
            }
            let who = format!("agent '{}'", def.file.id);
            let base = s.base_url.as_deref().or(config.base_url.as_deref());
            let Some(base) = base else {
                return Err(LlmError::Config(format!(
                    "{who} sets `llm` but neither it nor the world names a `base_url`"
                )));
            };
            let e = endpoint(
                base,
                s.model.as_deref().or(config.model.as_deref()),
                s.api_key_env.as_deref().or(config.api_key_env.as_deref()),
                s.temperature.unwrap_or(config.temperature),
                s.max_tokens.unwrap_or(config.max_tokens),
                &who,
            )?;
            out.insert(i as u32, e);
        }
        Ok(Endpoints { world, agents: out })
    }

    /// Where `agent`'s requests go (the world's for `None`); `None` when
    /// it thinks with the rule-based mind.
    pub fn for_agent(&self, agent: Option<u32>) -> Option<&Endpoint> {
        agent
            .and_then(|a| self.agents.get(&a))
            .or(self.world.as_ref())
    }

    /// Whether any agent thinks with a model.
    pub fn any(&self) -> bool {
        self.world.is_some() || !self.agents.is_empty()
    }
}

fn endpoint(
    base: &str,
    model: Option<&str>,
    key_env: Option<&str>,
    temperature: f32,
    max_tokens: u32,
    who: &str,
) -> Result<Endpoint, LlmError> {
    let url = openai::endpoint(base, "chat/completions")
        .map_err(|e| LlmError::Config(format!("{who}: {e}")))?;
    let model = model
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            LlmError::Config(format!(
                "{who}: `base_url` is {base}; set `model` to the model's name too"
            ))
        })?
        .to_owned();
    let api_key = match key_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| {
            LlmError::Config(format!(
                "{who}: `api_key_env` names {var}, which is not set (or not UTF-8)"
            ))
        })?),
    };
    if !(0.0..=2.0).contains(&temperature) {
        return Err(LlmError::Config(format!(
            "{who}: `temperature` must be within 0..=2"
        )));
    }
    Ok(Endpoint {
        url,
        model,
        api_key,
        temperature,
        max_tokens: max_tokens.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::synthetic;

    #[test]
    fn agents_override_the_world_field_by_field() {
        let mut content = synthetic::world(3, 1);
        content.agents[1].file.llm = Some(LlmSettings {
            model: Some("big".into()),
            temperature: Some(0.1),
            ..LlmSettings::default()
        });
        let config = LlmConfig {
            base_url: Some("http://127.0.0.1:8080".into()),
            model: Some("small".into()),
            ..LlmConfig::default()
        };
        let e = Endpoints::resolve(&config, &content.agents).expect("resolves");
        let world = e.for_agent(Some(0)).expect("world endpoint");
        assert_eq!(
            world.url.as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(world.model, "small");
        let one = e.for_agent(Some(1)).expect("agent endpoint");
        assert_eq!((one.model.as_str(), one.temperature), ("big", 0.1));
        assert_eq!(one.url, world.url);
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let content = synthetic::world(1, 1);
        let no_model = LlmConfig {
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            ..LlmConfig::default()
        };
        let e = Endpoints::resolve(&no_model, &content.agents).expect_err("no model");
        assert!(e.to_string().contains("`model`"), "{e}");
        let missing_key = LlmConfig {
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            model: Some("m".into()),
            api_key_env: Some("HEARTH_TEST_SURELY_UNSET_KEY".into()),
            ..LlmConfig::default()
        };
        let e = Endpoints::resolve(&missing_key, &content.agents).expect_err("no key");
        assert!(
            e.to_string().contains("HEARTH_TEST_SURELY_UNSET_KEY"),
            "{e}"
        );
        let zero = LlmConfig {
            max_concurrent: 0,
            ..LlmConfig::default()
        };
        assert!(Endpoints::resolve(&zero, &content.agents).is_err());
        let none = Endpoints::resolve(&LlmConfig::default(), &content.agents).expect("none");
        assert!(!none.any());
    }

    #[test]
    fn the_api_key_is_never_printed() {
        let e = Endpoint {
            url: Url::parse("http://x/v1/chat/completions").expect("url"),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            temperature: 0.0,
            max_tokens: 1,
        };
        assert!(!format!("{e:?}").contains("sk-secret"));
    }
}
