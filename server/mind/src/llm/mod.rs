//! The language-model client: any OpenAI-compatible `POST
//! /v1/chat/completions` (Ollama, vLLM, llama.cpp's server, LM Studio,
//! OpenAI) asked for JSON that a prompt's schema checks. Touches only the
//! network, its own cache and counters, and the call log it feeds (rows for
//! `llm_calls`, written by the caller's writer); never the world.
//!
//! One [`Llm::ask`] is one decision, and it never takes longer than the
//! world's timeout, queueing and retries included: the request waits its
//! turn at the world's concurrency gate (highest priority, then oldest,
//! first), within the requests-per-minute bucket and the tokens-per-game-day
//! budget; connection errors, 429 (honouring `Retry-After`) and 5xx are
//! retried with jittered backoff while time is left; a server that refuses
//! `json_schema` output is asked with `json_object`, then plain text, and
//! the JSON is found in whatever it says. Answers are cached by a hash of the
//! prompt. Every request is logged with its latency, tokens and error; every
//! failure is an error the caller turns into the rule-based mind's decision.

pub mod config;
pub mod gate;
pub mod parse;
pub mod prompts;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

pub use config::{Endpoint, Endpoints, LlmConfig, Structured};
use gate::{Budget, Gate, RateLimit};
pub use prompts::{Kind, Prompts, Rendered};

use crate::memory::GameSeconds;
use crate::openai::{backoff, error_chain, error_message, retry_after};
use hearth_content::AgentDef;

/// Worlds with more agents than this get no per-agent request metric (one
/// time series per agent would swamp Prometheus); `llm_calls` has them all.
const MAX_AGENT_LABELS: usize = 1_000;

/// How much of a response is kept in an error message.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("model settings: {0}")]
    Config(String),
    #[error("prompt {file}: {message}")]
    Prompt { file: String, message: String },
    #[error("this agent thinks without a model")]
    NoModel,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the world's token budget for game day {0} is spent")]
    Budget(u64),
    #[error("over the requests-per-minute limit until the deadline")]
    RateLimited,
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach the model: {0}")]
    Connect(String),
    #[error("unusable answer: {0}")]
    BadOutput(String),
}

impl LlmError {
    /// The `outcome` label of the metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::Config(_) | LlmError::Prompt { .. } => "config",
            LlmError::NoModel => "no_model",
            LlmError::Timeout(_) => "timeout",
            LlmError::Budget(_) => "budget",
            LlmError::RateLimited => "rate_limited",
            LlmError::Status { .. } => "http_error",
            LlmError::Connect(_) => "connect_error",
            LlmError::BadOutput(_) => "bad_output",
        }
    }
}

/// One decision asked of the model.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    /// Whose decision (its endpoint, the log's agent); `None` for the world.
    pub agent: Option<u32>,
    /// Higher goes first when requests queue (see [`priority`]).
    pub priority: u8,
    /// Game time, for the budget's day and the log.
    pub now: GameSeconds,
    /// What the prompt's templates are filled in with.
    pub context: Value,
}

/// Queueing priorities by kind: what a player waits for first, then what
/// agents say, plan and conclude, then memory ratings.
pub mod priority {
    pub const PLAYER: u8 = 200;
    pub const LINE: u8 = 150;
    pub const REACT: u8 = 120;
    pub const PLAN: u8 = 100;
    pub const REFLECT: u8 = 60;
    pub const IMPORTANCE: u8 = 40;
}

/// A request as the log keeps it (`llm_calls`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub agent: Option<u32>,
    pub kind: &'static str,
    pub model: String,
    pub prompt: String,
    pub response: Option<String>,
    pub latency_ms: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub error: Option<String>,
    pub game_time: GameSeconds,
}

/// Counts since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmStats {
    /// Decisions asked of the model, by kind (answered from the cache, sent,
    /// or failed before being sent).
    pub asked: BTreeMap<&'static str, u64>,
    /// HTTP requests sent, by kind.
    pub requests: BTreeMap<&'static str, u64>,
    /// Answers used, by kind (from the model or the cache).
    pub answers: BTreeMap<&'static str, u64>,
    pub cached: u64,
    /// Decisions the rule-based mind made instead, by kind.
    pub failures: BTreeMap<&'static str, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl LlmStats {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn total_asked(&self) -> u64 {
        self.asked.values().sum()
    }
}

/// A world's model client; share it behind an `Arc`.
pub struct Llm {
    http: reqwest::Client,
    /// Swapped whole when agents' files are reloaded.
    endpoints: arc_swap::ArcSwap<Endpoints>,
    /// The world's settings the endpoints are resolved with.
    config: LlmConfig,
    /// Swapped whole when the templates are reloaded.
    prompts: arc_swap::ArcSwap<Prompts>,
    gate: Arc<Gate>,
    rate: Option<RateLimit>,
    budget: Option<Budget>,
    cache: Option<Mutex<lru::LruCache<u64, Value>>>,
    /// How each endpoint URL is asked for JSON (weakened when refused).
    structured: Mutex<HashMap<String, Structured>>,
    default_structured: Structured,
    timeout: Duration,
    max_retries: u32,
    log: Option<mpsc::UnboundedSender<CallRecord>>,
    stats: Mutex<LlmStats>,
    /// Agents' slugs, for the per-agent metric.
    slugs: arc_swap::ArcSwap<Vec<String>>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// How one HTTP attempt ended.
enum Attempt {
    Done {
        content: String,
        usage: Option<Usage>,
    },
    /// The server refused the way JSON was asked for.
    Unsupported(LlmError),
    Retry(LlmError, Option<Duration>),
    Fail(LlmError),
}

impl Llm {
    /// The client for `agents` with `config` and `prompts`; `None` when no
    /// endpoint is configured for the world or any agent.
    pub fn new(
        config: &LlmConfig,
        agents: &[AgentDef],
        prompts: Prompts,
    ) -> Result<Option<Llm>, LlmError> {
        let endpoints = Endpoints::resolve(config, agents)?;
        if !endpoints.any() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Some(Llm {
            http,
            endpoints: arc_swap::ArcSwap::from_pointee(endpoints),
            config: config.clone(),
            prompts: arc_swap::ArcSwap::from_pointee(prompts),
            gate: Gate::new(config.max_concurrent),
            rate: config.requests_per_minute.map(RateLimit::per_minute),
            budget: config.tokens_per_game_day.map(Budget::per_game_day),
            cache: NonZeroUsize::new(config.cache_entries)
                .map(|n| Mutex::new(lru::LruCache::new(n))),
            structured: Mutex::new(HashMap::new()),
            default_structured: config.structured,
            timeout: config.timeout,
            max_retries: config.max_retries,
            log: None,
            stats: Mutex::new(LlmStats::default()),
            slugs: arc_swap::ArcSwap::from_pointee(
                agents.iter().map(|a| a.file.id.clone()).collect(),
            ),
        }))
    }

    /// Sends a record of every request to `log`.
    pub fn with_log(mut self, log: mpsc::UnboundedSender<CallRecord>) -> Llm {
        self.log = Some(log);
        self
    }

    /// The longest one decision waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether `agent` (the world for `None`) thinks with a model.
    pub fn thinks(&self, agent: Option<u32>) -> bool {
        self.endpoints.load().for_agent(agent).is_some()
    }

    /// The prompt templates in use now.
    pub fn prompts(&self) -> Arc<Prompts> {
        self.prompts.load_full()
    }

    /// Resolves every agent's endpoint again from reloaded agent files (the
    /// world's settings stay): a changed `llm` section, or an agent that
    /// joined, thinks accordingly from the next decision on. On an error
    /// (an agent's settings that cannot be used) nothing changes.
    pub fn set_agents(&self, agents: &[AgentDef]) -> Result<(), LlmError> {
        let endpoints = Endpoints::resolve(&self.config, agents)?;
        self.endpoints.store(Arc::new(endpoints));
        self.slugs
            .store(Arc::new(agents.iter().map(|a| a.file.id.clone()).collect()));
        Ok(())
    }

    /// Uses `prompts` for every decision asked from now on.
    pub fn set_prompts(&self, prompts: Prompts) {
        self.prompts.store(Arc::new(prompts));
    }

    pub fn stats(&self) -> LlmStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for one decision; the answer satisfies the prompt's schema.
    /// Never takes longer than [`Llm::timeout`].
    pub async fn ask(&self, req: Request) -> Result<Value, LlmError> {
        let started = Instant::now();
        self.count(|s| *s.asked.entry(req.kind.as_str()).or_default() += 1);
        let result = self.ask_inner(&req, started).await;
        let kind = req.kind.as_str();
        match &result {
            Ok(_) => {}
            Err(e) => {
                self.count(|s| *s.failures.entry(kind).or_default() += 1);
                metrics::counter!("hearth_llm_fallbacks_total", "kind" => kind, "outcome" => e.outcome())
                    .increment(1);
                debug!(kind, agent = ?req.agent, error = %e, "model decision failed; the rule-based mind decides");
            }
        }
        result
    }

    async fn ask_inner(&self, req: &Request, started: Instant) -> Result<Value, LlmError> {
        let deadline = started + self.timeout;
        let kind = req.kind;
        let endpoints = self.endpoints.load_full();
        let endpoint = endpoints.for_agent(req.agent).ok_or(LlmError::NoModel)?;
        let prompts = self.prompts.load_full();
        let prompt = prompts.get(kind).ok_or_else(|| LlmError::Prompt {
            file: kind.as_str().to_owned(),
            message: "no such prompt".into(),
        })?;
        let rendered = prompts.render(kind, &req.context)?;
        let key = cache_key(endpoint, kind, &rendered);
        if let Some(cache) = &self.cache
            && let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        {
            self.count(|s| {
                s.cached += 1;
                *s.answers.entry(kind.as_str()).or_default() += 1;
            });
            metrics::counter!("hearth_llm_requests_total", "kind" => kind.as_str(), "outcome" => "cached")
                .increment(1);
            return Ok(v.clone());
        }
        let day = req.now / 86_400;
        let fail_early = |e: LlmError| {
            self.record(req, endpoint, &rendered, started, None, None, Some(&e));
            Err(e)
        };
        if let Some(b) = &self.budget
            && !b.allows(day)
        {
            return fail_early(LlmError::Budget(day));
        }
        metrics::gauge!("hearth_llm_queue_depth").set(self.gate.waiting() as f64);
        let Some(_permit) = self.gate.acquire(req.priority, deadline).await else {
            return fail_early(LlmError::Timeout(self.timeout));
        };
        if let Some(rate) = &self.rate {
            match rate.reserve(deadline) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return fail_early(LlmError::RateLimited),
            }
        }
        let temperature = prompt.temperature.unwrap_or(endpoint.temperature);
        let max_tokens = prompt.max_tokens.unwrap_or(endpoint.max_tokens);
        let mut retry = 0u32;
        loop {
            let mode = self.mode(endpoint);
            let sent = Instant::now();
            self.count(|s| *s.requests.entry(kind.as_str()).or_default() += 1);
            let slugs = self.slugs.load();
            if slugs.len() <= MAX_AGENT_LABELS
                && let Some(a) = req.agent.and_then(|a| slugs.get(a as usize))
            {
                metrics::counter!("hearth_llm_agent_requests_total", "agent" => a.clone())
                    .increment(1);
            }
            let attempt = tokio::time::timeout_at(
                deadline,
                self.attempt(endpoint, prompt, &rendered, mode, temperature, max_tokens),
            )
            .await;
            metrics::histogram!("hearth_llm_latency_seconds", "kind" => kind.as_str())
                .record(sent.elapsed().as_secs_f64());
            let outcome = match attempt {
                Err(_) => Attempt::Fail(LlmError::Timeout(self.timeout)),
                Ok(a) => a,
            };
            match outcome {
                Attempt::Done { content, usage } => {
                    let (pt, ct) =
                        usage.map_or((None, None), |u| (u.prompt_tokens, u.completion_tokens));
                    let spent = u64::from(pt.unwrap_or(0)) + u64::from(ct.unwrap_or(0));
                    if let Some(b) = &self.budget {
                        b.spend(day, spent);
                    }
                    self.count(|s| {
                        s.prompt_tokens += u64::from(pt.unwrap_or(0));
                        s.completion_tokens += u64::from(ct.unwrap_or(0));
                    });
                    metrics::counter!("hearth_llm_tokens_total", "direction" => "prompt")
                        .increment(u64::from(pt.unwrap_or(0)));
                    metrics::counter!("hearth_llm_tokens_total", "direction" => "completion")
                        .increment(u64::from(ct.unwrap_or(0)));
                    let checked = match parse::find_json(&content) {
                        None => Err(LlmError::BadOutput(format!(
                            "no JSON in {:?}",
                            snippet(&content)
                        ))),
                        Some(v) => match prompt.violation(&v) {
                            Some(why) => Err(LlmError::BadOutput(format!(
                                "the answer breaks the schema: {why}"
                            ))),
                            None => Ok(v),
                        },
                    };
                    self.record(
                        req,
                        endpoint,
                        &rendered,
                        sent,
                        Some(&content),
                        Some((pt, ct)),
                        checked.as_ref().err(),
                    );
                    let outcome = checked.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
                    metrics::counter!("hearth_llm_requests_total", "kind" => kind.as_str(), "outcome" => outcome)
                        .increment(1);
                    let v = checked?;
                    if let Some(cache) = &self.cache {
                        cache
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .put(key, v.clone());
                    }
                    self.count(|s| *s.answers.entry(kind.as_str()).or_default() += 1);
                    return Ok(v);
                }
                Attempt::Unsupported(e) => {
                    self.record(req, endpoint, &rendered, sent, None, None, Some(&e));
                    match mode.weaker() {
                        Some(weaker) => {
                            warn!(url = %endpoint.url, from = mode.as_str(), to = weaker.as_str(), error = %e,
                                "the model server refused this way of asking for JSON; asking another way from now on");
                            self.structured
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(endpoint.url.to_string(), weaker);
                        }
                        None => return Err(e),
                    }
                }
                Attempt::Retry(e, asked) => {
                    self.record(req, endpoint, &rendered, sent, None, None, Some(&e));
                    metrics::counter!("hearth_llm_requests_total", "kind" => kind.as_str(), "outcome" => e.outcome())
                        .increment(1);
                    let wait = backoff(retry, asked);
                    if retry >= self.max_retries || Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    debug!(kind = kind.as_str(), error = %e, ?wait, "model request failed; retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Attempt::Fail(e) => {
                    self.record(req, endpoint, &rendered, sent, None, None, Some(&e));
                    metrics::counter!("hearth_llm_requests_total", "kind" => kind.as_str(), "outcome" => e.outcome())
                        .increment(1);
                    return Err(e);
                }
            }
        }
    }

    fn mode(&self, endpoint: &Endpoint) -> Structured {
        self.structured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint.url.as_str())
            .copied()
            .unwrap_or(self.default_structured)
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        prompt: &prompts::Prompt,
        rendered: &Rendered,
        mode: Structured,
        temperature: f32,
        max_tokens: u32,
    ) -> Attempt {
        let messages = [
            Message {
                role: "system",
                content: &rendered.system,
            },
            Message {
                role: "user",
                content: &rendered.user,
            },
        ];
        let mut body = json!({
            "model": endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        });
        match mode {
            Structured::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": prompt.kind.as_str(),
                        "schema": prompt.schema,
                        "strict": false,
                    }
                });
            }
            Structured::JsonObject => body["response_format"] = json!({"type": "json_object"}),
            Structured::Text => {}
        }
        let mut http = self
            .http
            .post(endpoint.url.clone())
            .header("x-hearth-kind", prompt.kind.as_str())
            .json(&body);
        if let Some(key) = &endpoint.api_key {
            http = http.bearer_auth(key);
        }
        let resp = match http.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(LlmError::Connect(error_chain(&e)), None),
        };
        let status = resp.status();
        if !status.is_success() {
            let asked = retry_after(&resp);
            let text = resp.text().await.unwrap_or_default();
            let message = error_message(&text);
            let err = LlmError::Status {
                status: status.as_u16(),
                message: message.clone(),
            };
            let lower = message.to_lowercase();
            let about_format = ["response_format", "json_schema", "json schema", "grammar"]
                .iter()
                .any(|w| lower.contains(w));
            return if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                Attempt::Retry(err, asked)
            } else if (status == StatusCode::BAD_REQUEST
                || status == StatusCode::UNPROCESSABLE_ENTITY)
                && mode != Structured::Text
                && about_format
            {
                Attempt::Unsupported(err)
            } else {
                Attempt::Fail(err)
            };
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(LlmError::Connect(error_chain(&e)), None),
        };
        match serde_json::from_slice::<Completion>(&bytes) {
            Ok(c) => match c
                .choices
                .into_iter()
                .next()
                .and_then(|ch| ch.message.content)
            {
                Some(content) => Attempt::Done {
                    content,
                    usage: c.usage,
                },
                None => Attempt::Fail(LlmError::BadOutput(
                    "the completion has no choices[0].message.content".into(),
                )),
            },
            Err(e) => Attempt::Fail(LlmError::BadOutput(format!(
                "not a chat completion ({e}): {:?}",
                snippet(&String::from_utf8_lossy(&bytes))
            ))),
        }
    }

    fn count(&self, f: impl FnOnce(&mut LlmStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Logs one request, or a decision that failed before any was sent.
    #[expect(clippy::too_many_arguments, reason = "one record's fields")]
    fn record(
        &self,
        req: &Request,
        endpoint: &Endpoint,
        rendered: &Rendered,
        since: Instant,
        response: Option<&str>,
        tokens: Option<(Option<u32>, Option<u32>)>,
        error: Option<&LlmError>,
    ) {
        let Some(log) = &self.log else { return };
        let (pt, ct) = tokens.unwrap_or((None, None));
        let _ = log.send(CallRecord {
            agent: req.agent,
            kind: req.kind.as_str(),
            model: endpoint.model.clone(),
            prompt: format!("[system]\n{}\n\n[user]\n{}", rendered.system, rendered.user),
            response: response.map(str::to_owned),
            latency_ms: u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX),
            prompt_tokens: pt,
            completion_tokens: ct,
            error: error.map(ToString::to_string),
            game_time: req.now,
        });
    }
}

/// The cache key: the model and its temperature, the kind (its schema) and
/// the prompt's text.
fn cache_key(endpoint: &Endpoint, kind: Kind, rendered: &Rendered) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&endpoint.temperature.to_le_bytes());
    for part in [
        endpoint.url.as_str(),
        endpoint.model.as_str(),
        kind.as_str(),
        rendered.system.as_str(),
        rendered.user.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::agent::LlmSettings;

    fn own_model(url: &str) -> Option<LlmSettings> {
        Some(LlmSettings {
            base_url: Some(url.to_owned()),
            model: Some("m".to_owned()),
            ..LlmSettings::default()
        })
    }

    #[test]
    fn reloaded_agent_files_change_who_thinks_with_a_model() {
        let mut agents = hearth_content::synthetic::world(3, 1).agents;
        agents[0].file.llm = own_model("http://127.0.0.1:9/v1");
        let llm = Llm::new(
            &LlmConfig::default(),
            &agents,
            Prompts::load(None).expect("built in"),
        )
        .expect("valid")
        .expect("one agent has a model");
        assert!(llm.thinks(Some(0)));
        assert!(!llm.thinks(Some(1)));
        // agent 1 gets a model, and a fourth agent joins with one
        agents[1].file.llm = own_model("http://127.0.0.1:9/v1");
        let mut newcomer = agents[2].clone();
        newcomer.file.id = "newcomer".into();
        newcomer.file.llm = own_model("http://127.0.0.1:9/v1");
        agents.push(newcomer);
        llm.set_agents(&agents).expect("valid");
        assert!(llm.thinks(Some(1)));
        assert!(llm.thinks(Some(3)));
        assert!(!llm.thinks(Some(2)));
        // settings that cannot be used change nothing
        agents[2].file.llm = own_model("ftp://nowhere");
        assert!(llm.set_agents(&agents).is_err());
        assert!(!llm.thinks(Some(2)));
        assert!(llm.thinks(Some(3)));
    }
}
