//! The language-model client end to end: `hearth_mind::llm::Llm` against the
//! scripted OpenAI-compatible server on 127.0.0.1 (real HTTP). What a request
//! looks like for every kind, how failures fall back within the timeout
//! (retries, Retry-After, timeouts, bad answers), JSON found in prose, the
//! `json_schema` → `json_object` → text fallback, the cache, the token
//! budget and the call log, the priority queue at the concurrency cap, the
//! rate limit, and per-agent endpoints.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_content::AgentDef;
use hearth_content::agent::LlmSettings;
use hearth_content::synthetic;
use hearth_mind::llm::{CallRecord, Kind, Llm, LlmConfig, LlmError, Prompts, Request};
use hearth_tests::llm_server::{KIND_HEADER, Recorded, Reply, ScriptedLlm};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The model the world is configured with (the scripted server echoes it).
const MODEL: &str = "village-7b";

/// Game time of most requests: one hour into day 0.
const NOW: u64 = 3600;

/// Runs a test body, failing it if it takes longer than `secs`.
async fn within<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {secs} s"));
}

fn agents() -> Vec<AgentDef> {
    synthetic::world(3, 7).agents
}

/// The world's settings pointing at `server`.
fn config(server: &ScriptedLlm) -> LlmConfig {
    LlmConfig {
        base_url: Some(server.base_url()),
        model: Some(MODEL.into()),
        timeout: Duration::from_secs(5),
        ..LlmConfig::default()
    }
}

fn client(config: &LlmConfig) -> Llm {
    Llm::new(config, &agents(), Prompts::builtin().unwrap())
        .unwrap()
        .expect("a world with a base_url has a client")
}

/// An importance request for agent 0 rating one memory with this text.
fn importance(text: &str, priority: u8, now: u64) -> Request {
    Request {
        kind: Kind::Importance,
        agent: Some(0),
        priority,
        now,
        context: json!({
            "memories": [{"id": 1, "agent": "Ada", "occupation": "baker", "text": text}],
        }),
    }
}

/// A schema-valid importance answer.
fn rating(r: u8) -> Value {
    json!({"ratings": [{"id": 1, "rating": r}]})
}

/// For each kind: a context, a minimal schema-valid answer, and a piece of
/// the context the rendered user prompt must show.
fn cases() -> Vec<(Kind, Value, Value, &'static str)> {
    let agent = json!({"name": "Ada", "identity": "You are Ada, the village baker."});
    vec![
        (
            Kind::Importance,
            json!({"memories": [{"id": 1, "agent": "Ada", "occupation": "baker", "text": "the bakery caught fire"}]}),
            json!({"ratings": [{"id": 1, "rating": 9}]}),
            "1. Ada (baker): the bakery caught fire",
        ),
        (
            Kind::DayPlan,
            json!({"agent": agent, "weekday": "Tuesday", "day": 3, "schedule": [
                {"start": "07:00", "end": "12:00", "activity": "bake rye bread", "location": "the bakery"},
            ]}),
            json!({"wake_up": "06:30", "plan": ["07:00: bake rye bread"]}),
            "07:00 to 12:00: bake rye bread at the bakery",
        ),
        (
            Kind::Decompose,
            json!({"agent": agent, "activity": "sweep the floor", "location": "the bakery",
                   "start": "08:00", "end": "09:00", "minutes": 60}),
            json!({"steps": [{"minutes": 15, "action": "fetch the broom"}]}),
            "you will sweep the floor at the bakery",
        ),
        (
            Kind::React,
            json!({"agent": agent, "time": "10:00", "activity": "baking",
                   "observation": "smoke rising from the mill"}),
            json!({"react": false}),
            "You notice: smoke rising from the mill",
        ),
        (
            Kind::Conversation,
            json!({"agent": agent, "other": {"name": "Tom"}, "time": "09:00", "activity": "baking",
                   "dialogue": [{"speaker": "Tom", "text": "Lovely morning for bread."}]}),
            json!({"line": "It is, Tom.", "end": false}),
            "Tom: Lovely morning for bread.",
        ),
        (
            Kind::FocalQuestions,
            json!({"agent": agent, "memories": ["Tom fixed the cart wheel"], "count": 3}),
            json!({"questions": ["Who helps me most?"]}),
            "- Tom fixed the cart wheel",
        ),
        (
            Kind::Insights,
            json!({"agent": agent, "questions": ["Who helps me most?"],
                   "evidence": [{"id": 4, "text": "Tom fixed the cart wheel"}], "count": 2}),
            json!({"insights": [{"insight": "Tom is kind to me", "evidence": [4]}]}),
            "4. Tom fixed the cart wheel",
        ),
        (
            Kind::Metacognition,
            json!({"agent": agent, "day": 3, "goal": "open a second bakery",
                   "memories": ["sold forty loaves"]}),
            json!({"reflection": "A good day at the ovens."}),
            "Your main goal: open a second bakery.",
        ),
    ]
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// What the server's usage says about a request: its messages' characters / 4.
fn scripted_prompt_tokens(r: &Recorded) -> u32 {
    let chars: usize = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().chars().count())
        .sum();
    u32::try_from((chars / 4).max(1)).unwrap()
}

/// The user message of a recorded request.
fn user_prompt(r: &Recorded) -> &str {
    r.body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<CallRecord>) -> Vec<CallRecord> {
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_sends_a_well_formed_request() {
    within(30, async {
        let server = ScriptedLlm::start().await;
        let cfg = config(&server);
        let llm = client(&cfg);
        let prompts = llm.prompts();
        for (kind, context, answer, shown) in cases() {
            let prompt = prompts.get(kind).unwrap();
            assert_eq!(
                prompt.violation(&answer),
                None,
                "{kind:?}: the test's answer must satisfy the schema"
            );
            server.script(kind.as_str(), Reply::Json(answer.clone()));
            let got = llm
                .ask(Request {
                    kind,
                    agent: Some(0),
                    priority: 100,
                    now: NOW,
                    context,
                })
                .await
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(got, answer, "{kind:?}");

            assert_eq!(server.count(kind.as_str()), 1, "{kind:?}");
            let sent = server
                .requests()
                .into_iter()
                .find(|r| r.kind == kind.as_str())
                .unwrap();
            let body = &sent.body;
            assert_eq!(body["model"], MODEL, "{kind:?}");
            let messages = body["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 2, "{kind:?}");
            assert_eq!(messages[0]["role"], "system", "{kind:?}");
            assert_eq!(messages[1]["role"], "user", "{kind:?}");
            let system = messages[0]["content"].as_str().unwrap();
            assert!(!system.is_empty(), "{kind:?}");
            if kind != Kind::Importance {
                assert!(
                    system.contains("You are Ada, the village baker."),
                    "{kind:?}: {system}"
                );
            }
            let user = user_prompt(&sent);
            assert!(user.contains(shown), "{kind:?}: {shown:?} not in {user}");

            let temperature = prompt.temperature.unwrap_or(cfg.temperature);
            let sent_temperature = body["temperature"].as_f64().unwrap();
            assert!(
                (sent_temperature - f64::from(temperature)).abs() < 1e-6,
                "{kind:?}: {sent_temperature} vs {temperature}"
            );
            assert_eq!(
                body["max_tokens"].as_u64(),
                Some(u64::from(prompt.max_tokens.unwrap_or(cfg.max_tokens))),
                "{kind:?}"
            );
            assert_eq!(body["response_format"]["type"], "json_schema", "{kind:?}");
            assert_eq!(
                body["response_format"]["json_schema"]["name"],
                kind.as_str(),
                "{kind:?}"
            );
            assert_eq!(
                body["response_format"]["json_schema"]["schema"], prompt.schema,
                "{kind:?}"
            );
            assert_eq!(header(&sent, KIND_HEADER), Some(kind.as_str()), "{kind:?}");
            assert_eq!(
                header(&sent, "content-type"),
                Some("application/json"),
                "{kind:?}"
            );
        }
        assert_eq!(server.requests().len(), Kind::ALL.len());
        let stats = llm.stats();
        assert_eq!(stats.total_requests(), Kind::ALL.len() as u64);
        assert_eq!(stats.cached, 0);
        assert!(stats.failures.is_empty(), "{stats:?}");
        assert!(stats.prompt_tokens > 0 && stats.completion_tokens > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_fall_back_within_the_timeout() {
    within(60, async {
        let timeout = Duration::from_secs(2);
        let cases: Vec<(&str, Reply, &str)> = vec![
            ("hang", Reply::Hang, "timeout"),
            ("500", Reply::Status(500, "the GPU caught fire".into()), "http_error"),
            (
                "429",
                Reply::TooMany {
                    retry_after_secs: 1,
                },
                "http_error",
            ),
            ("malformed", Reply::Malformed, "bad_output"),
            ("prose", Reply::Text("no json here".into()), "bad_output"),
            ("schema", Reply::Json(rating(42)), "bad_output"),
            ("close", Reply::Close, "connect_error"),
        ];
        for (name, reply, outcome) in cases {
            let server = ScriptedLlm::start().await;
            server.script("importance", reply);
            let llm = client(&LlmConfig {
                timeout,
                max_retries: 2,
                ..config(&server)
            });
            let started = Instant::now();
            let err = llm
                .ask(importance("a neighbour walked by", 40, NOW))
                .await
                .expect_err(name);
            let elapsed = started.elapsed();
            assert_eq!(err.outcome(), outcome, "{name}: {err}");
            assert!(
                elapsed <= timeout + Duration::from_secs(1),
                "{name}: took {elapsed:?}"
            );
            let sent = server.requests();
            match name {
                "hang" => {
                    assert!(matches!(err, LlmError::Timeout(t) if t == timeout), "{err:?}");
                    // the whole timeout was waited for, once
                    assert!(elapsed >= timeout - Duration::from_millis(100), "{elapsed:?}");
                    assert_eq!(sent.len(), 1);
                }
                "500" => {
                    assert!(
                        matches!(&err, LlmError::Status { status: 500, message } if message == "the GPU caught fire"),
                        "{err:?}"
                    );
                    // the first try and max_retries retries (backoff 0.1–0.6 s in all)
                    assert_eq!(sent.len(), 3, "{name}");
                }
                "429" => {
                    assert!(matches!(err, LlmError::Status { status: 429, .. }), "{err:?}");
                    // Retry-After: 1 is honoured for the first retry; the second
                    // would wait another second, past the 2 s deadline, so the
                    // client gives up at once rather than sleep into it.
                    assert_eq!(sent.len(), 2, "{name}");
                    let gap = sent[1].at.duration_since(sent[0].at);
                    assert!(gap >= Duration::from_millis(950), "{name}: retried after {gap:?}");
                    assert!(elapsed < timeout, "{name}: gave up after {elapsed:?}");
                }
                "malformed" => {
                    assert!(
                        matches!(&err, LlmError::BadOutput(m) if m.contains("not a chat completion")),
                        "{err:?}"
                    );
                    assert_eq!(sent.len(), 1, "a bad answer is not retried");
                }
                "prose" => {
                    assert!(
                        matches!(&err, LlmError::BadOutput(m) if m.contains("no JSON")),
                        "{err:?}"
                    );
                    assert_eq!(sent.len(), 1);
                }
                "schema" => {
                    assert!(
                        matches!(&err, LlmError::BadOutput(m) if m.contains("schema")),
                        "{err:?}"
                    );
                    assert_eq!(sent.len(), 1);
                }
                "close" => {
                    assert!(matches!(err, LlmError::Connect(_)), "{err:?}");
                    assert_eq!(sent.len(), 3, "{name}: connection errors are retried");
                }
                _ => unreachable!(),
            }
            let stats = llm.stats();
            assert_eq!(stats.failures.get("importance"), Some(&1), "{name}");
            assert_eq!(stats.answers.get("importance"), None, "{name}");
            assert_eq!(
                stats.requests.get("importance").copied(),
                Some(sent.len() as u64),
                "{name}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_in_prose_is_found() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script(
            "importance",
            Reply::Text(r#"Sure! {"ratings":[{"id":1,"rating":7}]} hope that helps"#.into()),
        );
        let llm = client(&config(&server));
        let got = llm
            .ask(importance("Tom fixed the cart", 40, NOW))
            .await
            .unwrap();
        assert_eq!(got, rating(7));
        assert_eq!(got["ratings"][0]["rating"], 7);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_json_schema_is_asked_with_json_object_then_text() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script_fn(|_, body| match body.pointer("/response_format/type") {
            Some(t) if t == "json_schema" => {
                Reply::Status(400, "response_format json_schema is not supported".into())
            }
            Some(_) => Reply::Status(
                400,
                "Invalid value for response_format: only 'text' is allowed".into(),
            ),
            None => Reply::Text(r#"Here you go: {"ratings": [{"id": 1, "rating": 3}]}"#.into()),
        });
        let llm = client(&config(&server));
        let got = llm
            .ask(importance("the miller waved", 40, NOW))
            .await
            .unwrap();
        assert_eq!(got, rating(3));
        let modes: Vec<Option<String>> = server
            .requests()
            .iter()
            .map(|r| {
                r.body
                    .pointer("/response_format/type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(
            modes,
            [Some("json_schema".into()), Some("json_object".into()), None]
        );
        // the text-mode request still names its kind in the header
        assert!(
            server
                .requests()
                .iter()
                .all(|r| header(r, KIND_HEADER) == Some("importance"))
        );

        // remembered: the next decision goes straight to text
        server.clear_requests();
        let got = llm
            .ask(importance("the well ran dry", 40, NOW))
            .await
            .unwrap();
        assert_eq!(got, rating(3));
        let sent = server.requests();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].body.get("response_format").is_none(),
            "{:?}",
            sent[0].body
        );
        assert!(llm.stats().failures.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_by_prompt() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script("importance", Reply::Json(rating(5)));
        let llm = client(&config(&server));
        let first = llm.ask(importance("a cat slept", 40, NOW)).await.unwrap();
        // the same prompt later in the game, at another priority: still cached
        let second = llm
            .ask(importance("a cat slept", 200, NOW + 60))
            .await
            .unwrap();
        assert_eq!((first, second), (rating(5), rating(5)));
        assert_eq!(server.count("importance"), 1);
        let stats = llm.stats();
        assert_eq!(stats.cached, 1);
        assert_eq!(stats.requests.get("importance"), Some(&1));
        assert_eq!(stats.answers.get("importance"), Some(&2));

        server.script("importance", Reply::Json(rating(8)));
        let other = llm.ask(importance("a dog barked", 40, NOW)).await.unwrap();
        assert_eq!(other, rating(8));
        assert_eq!(server.count("importance"), 2);
        assert_eq!(llm.stats().cached, 1);

        // with no cache every ask is sent
        let uncached = client(&LlmConfig {
            cache_entries: 0,
            ..config(&server)
        });
        uncached
            .ask(importance("a cat slept", 40, NOW))
            .await
            .unwrap();
        uncached
            .ask(importance("a cat slept", 40, NOW))
            .await
            .unwrap();
        assert_eq!(server.count("importance"), 4);
        assert_eq!(uncached.stats().cached, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_and_the_log() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script("importance", Reply::Json(rating(6)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let llm = client(&LlmConfig {
            tokens_per_game_day: Some(10),
            ..config(&server)
        })
        .with_log(tx);

        // the first request of the day is sent; its usage (the system prompt
        // alone is ~100 tokens) spends the day's 10 tokens
        let first = llm
            .ask(importance("the baker sang", 40, NOW))
            .await
            .unwrap();
        assert_eq!(first, rating(6));
        // another prompt (not a cache hit) the same game day is refused unsent
        let refused = llm
            .ask(importance("the smith sneezed", 40, NOW + 600))
            .await
            .expect_err("over budget");
        assert!(matches!(refused, LlmError::Budget(0)), "{refused:?}");
        assert_eq!(refused.outcome(), "budget");
        assert_eq!(server.count("importance"), 1);
        // the next game day has a fresh budget
        let next_day = llm
            .ask(importance("the smith sneezed", 40, NOW + 86_400))
            .await
            .unwrap();
        assert_eq!(next_day, rating(6));
        let sent = server.requests();
        assert_eq!(sent.len(), 2);

        let log = drain(&mut rx);
        assert_eq!(log.len(), 3, "{log:#?}");
        let answered: Vec<&CallRecord> = log.iter().filter(|r| r.response.is_some()).collect();
        assert_eq!(answered.len(), sent.len(), "one record per HTTP request");
        for (record, request) in answered.iter().zip(&sent) {
            assert_eq!(record.kind, "importance");
            assert_eq!(record.agent, Some(0));
            assert_eq!(record.model, MODEL);
            assert!(record.prompt.starts_with("[system]\n"), "{}", record.prompt);
            assert!(record.prompt.contains("\n\n[user]\n"), "{}", record.prompt);
            assert!(
                record.prompt.contains(user_prompt(request)),
                "the logged prompt holds what was sent"
            );
            assert_eq!(
                serde_json::from_str::<Value>(record.response.as_deref().unwrap()).unwrap(),
                rating(6)
            );
            assert_eq!(record.error, None);
            assert_eq!(record.prompt_tokens, Some(scripted_prompt_tokens(request)));
            assert!(record.completion_tokens.is_some_and(|t| t > 0));
        }
        assert_eq!((log[0].game_time, log[2].game_time), (NOW, NOW + 86_400));
        assert!(log[0].prompt.contains("the baker sang"));
        assert!(log[2].prompt.contains("the smith sneezed"));

        let refusal = &log[1];
        assert_eq!(refusal.game_time, NOW + 600);
        assert!(refusal.prompt.contains("the smith sneezed"));
        assert_eq!(refusal.response, None);
        assert_eq!(
            (refusal.prompt_tokens, refusal.completion_tokens),
            (None, None)
        );
        let error = refusal.error.as_deref().unwrap();
        assert!(
            error.contains("budget") && error.contains("day 0"),
            "{error}"
        );

        let stats = llm.stats();
        let logged_prompt: u64 = log
            .iter()
            .filter_map(|r| r.prompt_tokens)
            .map(u64::from)
            .sum();
        assert_eq!(stats.prompt_tokens, logged_prompt);
        assert_eq!(stats.failures.get("importance"), Some(&1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queue_by_priority_at_the_concurrency_cap() {
    within(30, async {
        let server = ScriptedLlm::start().await;
        server.script_once(
            "importance",
            Reply::Delayed(
                Duration::from_millis(1500),
                Box::new(Reply::Json(rating(1))),
            ),
        );
        server.script("importance", Reply::Json(rating(2)));
        let llm = Arc::new(client(&LlmConfig {
            max_concurrent: 1,
            timeout: Duration::from_secs(15),
            ..config(&server)
        }));
        let first = tokio::spawn({
            let llm = Arc::clone(&llm);
            async move { llm.ask(importance("first", 0, NOW)).await }
        });
        // the first holds the only place until its slow answer comes
        while server.count("importance") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut queued = Vec::new();
        for priority in [10u8, 200, 40, 150, 100, 60] {
            let llm = Arc::clone(&llm);
            queued.push(tokio::spawn(async move {
                llm.ask(importance(&format!("priority {priority}"), priority, NOW))
                    .await
            }));
            // so each is waiting before the next arrives
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(
            server.count("importance"),
            1,
            "nothing passes the gate while the first is in flight"
        );
        assert_eq!(first.await.unwrap().unwrap(), rating(1));
        for q in queued {
            assert_eq!(q.await.unwrap().unwrap(), rating(2));
        }
        let order: Vec<String> = server
            .requests()
            .iter()
            .map(|r| {
                let user = user_prompt(r);
                let at = user.find(": ").unwrap() + 2;
                user[at..].lines().next().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            order,
            [
                "first",
                "priority 200",
                "priority 150",
                "priority 100",
                "priority 60",
                "priority 40",
                "priority 10"
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit() {
    within(30, async {
        let server = ScriptedLlm::start().await;
        server.script("importance", Reply::Json(rating(4)));

        // 60 a minute is one a second with a burst of one: three decisions
        // in a row are spaced a second apart, and all are answered
        let llm = client(&LlmConfig {
            requests_per_minute: Some(60),
            timeout: Duration::from_secs(5),
            ..config(&server)
        });
        let started = Instant::now();
        for i in 0..3 {
            let got = llm
                .ask(importance(&format!("event {i}"), 40, NOW))
                .await
                .unwrap();
            assert_eq!(got, rating(4));
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        let sent = server.requests();
        assert_eq!(sent.len(), 3);
        for pair in sent.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at);
            assert!(gap >= Duration::from_millis(900), "{gap:?}");
        }

        // with a timeout shorter than the wait for the next token, the
        // decision is refused at once and nothing is sent
        server.clear_requests();
        let hurried = client(&LlmConfig {
            requests_per_minute: Some(60),
            timeout: Duration::from_millis(500),
            ..config(&server)
        });
        hurried.ask(importance("a", 40, NOW)).await.unwrap();
        let started = Instant::now();
        let err = hurried
            .ask(importance("b", 40, NOW))
            .await
            .expect_err("over the rate");
        assert!(matches!(err, LlmError::RateLimited), "{err:?}");
        assert_eq!(err.outcome(), "rate_limited");
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "refused without waiting: {:?}",
            started.elapsed()
        );
        assert_eq!(server.requests().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_agent_settings_override_the_world() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script("importance", Reply::Json(rating(2)));
        let mut defs = agents();
        defs[1].file.llm = Some(LlmSettings {
            model: Some("special".into()),
            ..LlmSettings::default()
        });
        let llm = Llm::new(&config(&server), &defs, Prompts::builtin().unwrap())
            .unwrap()
            .unwrap();
        assert!(llm.thinks(None) && llm.thinks(Some(0)) && llm.thinks(Some(1)));
        for (agent, text) in [(Some(0), "zero"), (Some(1), "one"), (None, "world")] {
            let got = llm
                .ask(Request {
                    agent,
                    ..importance(text, 40, NOW)
                })
                .await
                .unwrap();
            assert_eq!(got, rating(2));
        }
        let models: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.body["model"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(models, [MODEL, "special", MODEL]);

        // no world endpoint and no agent settings: no client at all
        let none = Llm::new(
            &LlmConfig::default(),
            &agents(),
            Prompts::builtin().unwrap(),
        )
        .unwrap();
        assert!(none.is_none());

        // no world endpoint, one agent with its own: only that agent thinks
        // with a model; the others get NoModel without a request
        let mut defs = agents();
        defs[2].file.llm = Some(LlmSettings {
            base_url: Some(server.base_url()),
            model: Some("own".into()),
            ..LlmSettings::default()
        });
        let only = Llm::new(&LlmConfig::default(), &defs, Prompts::builtin().unwrap())
            .unwrap()
            .expect("one agent has a model");
        assert!(only.thinks(Some(2)));
        assert!(!only.thinks(Some(0)) && !only.thinks(None));
        server.clear_requests();
        let err = only
            .ask(importance("nobody asks", 40, NOW))
            .await
            .expect_err("agent 0 has no model");
        assert!(matches!(err, LlmError::NoModel), "{err:?}");
        assert_eq!(err.outcome(), "no_model");
        only.ask(Request {
            agent: Some(2),
            ..importance("somebody asks", 40, NOW)
        })
        .await
        .unwrap();
        let sent = server.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].body["model"], "own");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_token_budget_refuses_every_day() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        server.script("importance", Reply::Json(rating(6)));
        let llm = client(&LlmConfig {
            tokens_per_game_day: Some(0),
            ..config(&server)
        });
        for (i, day) in [0u64, 1, 2].into_iter().enumerate() {
            let got = llm
                .ask(importance(&format!("event {i}"), 40, NOW + day * 86_400))
                .await;
            assert!(
                matches!(got, Err(LlmError::Budget(d)) if d == day),
                "day {day}: a zero budget allows nothing, got {got:?}"
            );
        }
        assert_eq!(server.count("importance"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_from_yesterday_does_not_refill_today() {
    within(20, async {
        let server = ScriptedLlm::start().await;
        // the first request (yesterday's) is answered late
        server.script_once(
            "importance",
            Reply::Delayed(Duration::from_millis(800), Box::new(Reply::Json(rating(1)))),
        );
        server.script("importance", Reply::Json(rating(2)));
        let llm = Arc::new(client(&LlmConfig {
            tokens_per_game_day: Some(10),
            ..config(&server)
        }));
        let yesterday = tokio::spawn({
            let llm = Arc::clone(&llm);
            async move { llm.ask(importance("late last night", 40, NOW)).await }
        });
        while server.count("importance") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let today = NOW + 86_400;
        // today's first request spends today's budget…
        assert_eq!(
            llm.ask(importance("this morning", 40, today))
                .await
                .unwrap(),
            rating(2)
        );
        let err = llm
            .ask(importance("this noon", 40, today))
            .await
            .expect_err("today's budget is spent");
        assert!(matches!(err, LlmError::Budget(1)), "{err:?}");
        // …and yesterday's late answer must not give it back
        assert_eq!(yesterday.await.unwrap().unwrap(), rating(1));
        let err = llm
            .ask(importance("this evening", 40, today))
            .await
            .expect_err("today's budget is still spent");
        assert!(matches!(err, LlmError::Budget(1)), "{err:?}");
        assert_eq!(server.count("importance"), 2);
    })
    .await;
}
