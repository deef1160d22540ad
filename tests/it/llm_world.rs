//! Agents that think with a language model, end to end: a real `hearth
//! serve` (real database, real HTTP and WebSocket) whose world endpoint is
//! the scripted OpenAI-compatible server of `hearth_tests::llm_server`.
//!
//! - With valid answers for every kind (each carrying a marker), the
//!   model's words end up where they belong: conversation lines in
//!   `messages`, each rating on the memory it was given for, insights
//!   citing the agent's own stored memories as reflections, the day's plan
//!   as a plan memory, the look back at midnight, an activity's steps in
//!   `agent_plans`; every call is in `llm_calls`, and every request has the
//!   kind's name, schema and the configured model.
//! - With a model that hangs, fails with 500, drops the connection or
//!   answers nonsense, the world keeps its tick rate and game clock, the
//!   rule-based mind speaks, remembers and plans every agent's day instead,
//!   and `llm_calls` carries the errors.
//! - A player spoken to by an agent hears the model's line; with the model
//!   hanging, the rule-based answer comes within about the model's timeout.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_tests::llm_server::{Reply, ScriptedLlm};
use hearth_tests::server::{Server, Ws, answer, next_json as next, send};
use hearth_tests::{TestDb, workspace_root};
use serde_json::{Value, json};
use tokio_postgres::Client;

/// The model the world is configured with.
const MODEL: &str = "village-7b";
/// Synthetic agents in each world: few, so the machine is not the limit.
const AGENTS: usize = 16;
/// Ticks per real second (serve's default).
const TICK_RATE: u32 = 10;
/// Every kind of request, as `assets/prompts/<kind>.toml` names it, with
/// the properties its schema requires.
const KINDS: [(&str, &[&str]); 8] = [
    ("importance", &["ratings"]),
    ("conversation", &["line", "end"]),
    ("focal_questions", &["questions"]),
    ("insights", &["insights"]),
    ("metacognition", &["reflection"]),
    ("day_plan", &["wake_up", "plan"]),
    ("decompose", &["steps"]),
    ("react", &["react"]),
];

/// `hearth serve` of `world` thinking with `llm`, with `extra` flags.
async fn start(db: &TestDb, llm: &ScriptedLlm, world: &str, extra: &[&str]) -> Server {
    Server::builder()
        .db(db)
        .world(world)
        .synthetic_agents(AGENTS)
        .args(["--llm-url".to_owned(), llm.base_url()])
        .args(["--llm-model", MODEL])
        .arg("--prompts")
        .arg(
            workspace_root()
                .join("assets/prompts")
                .display()
                .to_string(),
        )
        .args(["--tick-rate".to_owned(), TICK_RATE.to_string()])
        .args(["--flush-interval", "500ms"])
        .args(extra.iter().copied())
        .ready_within(Duration::from_secs(90))
        .start()
        .await
}

/// The user message of a chat request.
fn user_prompt(body: &Value) -> &str {
    body["messages"][1]["content"].as_str().unwrap_or("")
}

/// The numbers of the statements an insights prompt lists (`12. text`).
fn evidence_ids(prompt: &str) -> Vec<u64> {
    prompt
        .lines()
        .skip_while(|l| !l.starts_with("Statements from your memory"))
        .skip(1)
        .take_while(|l| !l.starts_with("What "))
        .filter_map(|l| l.split_once(". ")?.0.trim().parse().ok())
        .collect()
}

/// The memories an importance prompt lists (`3. Name (occupation): text`),
/// by number.
fn rated_memories(prompt: &str) -> Vec<(u64, &str)> {
    prompt
        .lines()
        .skip_while(|l| !l.starts_with("Memories:"))
        .skip(1)
        .filter_map(|l| {
            let (id, rest) = l.split_once(". ")?;
            Some((id.trim().parse().ok()?, rest.split_once(": ")?.1))
        })
        .collect()
}

/// The model's rating of a memory: 1 + its length in characters modulo
/// 10, so that a rating given to the wrong memory shows (the same as
/// `1 + char_length(content) % 10` in SQL).
fn rating_of(text: &str) -> u64 {
    1 + (text.chars().count() as u64 % 10)
}

/// A valid answer for every kind, each with a marker: lines
/// "MODEL-LINE n." (numbered, so no line repeats the prompt), ratings that
/// follow from each memory's text ([`rating_of`]), questions, insights
/// "MODEL-INSIGHT" citing the first statements of the prompt, a look back
/// "MODEL-LOOKBACK", "MODEL-PLAN" items, "MODEL-STEP" steps, and no
/// reactions.
fn valid_answer(kind: &str, body: &Value, lines: &AtomicU64) -> Reply {
    Reply::Json(match kind {
        "importance" => {
            let ratings: Vec<Value> = rated_memories(user_prompt(body))
                .into_iter()
                .map(|(id, text)| json!({"id": id, "rating": rating_of(text)}))
                .collect();
            json!({"ratings": ratings})
        }
        "conversation" => {
            let n = lines.fetch_add(1, Ordering::Relaxed) + 1;
            json!({"line": format!("MODEL-LINE {n}. Fine weather for it."), "end": false})
        }
        "focal_questions" => json!({"questions": [
            "What do I care about most?",
            "Who matters to me here?",
            "How are my days going?",
        ]}),
        "insights" => {
            let ids: Vec<u64> = evidence_ids(user_prompt(body))
                .into_iter()
                .take(3)
                .collect();
            json!({"insights": [
                {"insight": "MODEL-INSIGHT: my days here have a rhythm I like.", "evidence": ids},
            ]})
        }
        "metacognition" => json!({"reflection": "MODEL-LOOKBACK: a good day, on the whole."}),
        "day_plan" => json!({"wake_up": "06:30", "plan": [
            "07:00: MODEL-PLAN work at my trade",
            "12:00: MODEL-PLAN lunch with a friend",
            "18:00: MODEL-PLAN a walk in the evening",
        ]}),
        "decompose" => json!({"steps": [
            {"minutes": 10, "action": "MODEL-STEP get ready"},
            {"minutes": 15, "action": "MODEL-STEP get going"},
            {"minutes": 15, "action": "MODEL-STEP carry on"},
        ]}),
        "react" => json!({"react": false, "action": "", "minutes": 5}),
        other => return Reply::Status(404, format!("no answer for kind {other}")),
    })
}

/// Scripts `llm` to answer every kind validly (see [`valid_answer`]).
fn answer_validly(llm: &ScriptedLlm) {
    let lines = Arc::new(AtomicU64::new(0));
    llm.script_fn(move |kind, body| valid_answer(kind, body, &lines));
}

/// Polls `probe` every 300 ms until it is `Ok`, for at most `within`; the
/// panic says what `probe` last reported missing.
async fn eventually<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(missing) => assert!(
                Instant::now() < deadline,
                "{what}: not within {} s: {missing}",
                within.as_secs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

// --- a. the model's answers end up in the world -----------------------------

/// Memories the model rates (every kind but reflections and look backs),
/// made since the world started (its seeds are the oldest).
const RATED: &str = "kind IN ('observation', 'conversation', 'plan') \
    AND created_game_time > (SELECT min(created_game_time) FROM agent_memories)";

/// What test a waits for, and what it has found so far.
#[derive(Debug, Default)]
struct Found {
    model_lines: i64,
    /// [`RATED`] memories with the model's rating, and (some of) those
    /// with another importance.
    rated: i64,
    misrated: Vec<(String, i16)>,
    insight: Option<(i64, String, Vec<i64>)>,
    day_plan: i64,
    steps: i64,
    look_back: i64,
}

impl Found {
    async fn probe(client: &Client) -> Self {
        let insight = client
            .query_opt(
                "SELECT agent_id, content, evidence_ids FROM agent_memories \
                 WHERE kind = 'reflection' AND content LIKE 'MODEL-INSIGHT%' \
                 AND cardinality(evidence_ids) > 0 LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2)));
        Self {
            model_lines: count(
                client,
                "SELECT count(*) FROM messages WHERE text LIKE 'MODEL-LINE %'",
            )
            .await,
            rated: count(
                client,
                &format!(
                    "SELECT count(*) FROM agent_memories \
                     WHERE {RATED} AND importance = 1 + char_length(content) % 10"
                ),
            )
            .await,
            misrated: client
                .query(
                    &format!(
                        "SELECT content, importance FROM agent_memories \
                         WHERE {RATED} AND importance <> 1 + char_length(content) % 10 LIMIT 20"
                    ),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            insight,
            day_plan: count(
                client,
                "SELECT count(*) FROM agent_memories \
                 WHERE kind = 'plan' AND content LIKE '%MODEL-PLAN%'",
            )
            .await,
            steps: count(
                client,
                "SELECT count(*) FROM agent_plans p, jsonb_array_elements(p.steps) s \
                 WHERE s->>'kind' = 'do' AND s->>'action' LIKE 'MODEL-STEP%'",
            )
            .await,
            look_back: count(
                client,
                "SELECT count(*) FROM agent_memories \
                 WHERE kind = 'metacognition' AND content LIKE 'MODEL-LOOKBACK%'",
            )
            .await,
        }
    }

    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.model_lines == 0 {
            missing.push("a MODEL-LINE in messages");
        }
        if self.rated == 0 {
            missing.push("a memory rated by the model");
        }
        if self.insight.is_none() {
            missing.push("a MODEL-INSIGHT reflection with evidence");
        }
        if self.day_plan == 0 {
            missing.push("a MODEL-PLAN plan memory");
        }
        if self.steps == 0 {
            missing.push("a MODEL-STEP step in agent_plans");
        }
        if self.look_back == 0 {
            missing.push("a MODEL-LOOKBACK look back at the day");
        }
        missing
    }
}

#[tokio::test]
async fn the_model_thinks_for_the_agents() {
    let started = Instant::now();
    let db = TestDb::migrated().await;
    let llm = ScriptedLlm::start().await;
    answer_validly(&llm);
    // a game hour a second: the village wakes at 06:00, works and talks,
    // and looks back on its day at midnight, 18 s in
    let server = start(&db, &llm, "llm-thinks", &["--time-scale", "60"]).await;
    let client = db.client().await;

    let found = eventually(
        Duration::from_secs(60),
        "the model's answers in the database",
        async || {
            let found = Found::probe(&client).await;
            let missing = found.missing();
            if missing.is_empty() {
                Ok(found)
            } else {
                Err(format!(
                    "missing {}; found {found:?}; requests {:?}",
                    missing.join(", "),
                    kinds_asked(&llm)
                ))
            }
        },
    )
    .await;
    eprintln!(
        "found after {:.1} s: {found:?}",
        started.elapsed().as_secs_f64()
    );
    // every memory the model rated has the model's rating for its own text
    assert!(
        found.misrated.is_empty(),
        "memories with another importance than the model gave ({} had it): {:?}",
        found.rated,
        found.misrated
    );

    // the insight cites memories of its own agent, all of them stored
    let (agent, insight, evidence) = found.insight.clone().unwrap();
    let cited = eventually(
        Duration::from_secs(10),
        "the insight's evidence stored",
        async || {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM agent_memories WHERE agent_id = $1 AND id = ANY($2)",
                    &[&agent, &evidence],
                )
                .await
                .unwrap()
                .get(0);
            if n == evidence.len() as i64 {
                Ok(n)
            } else {
                Err(format!(
                    "{n} of {evidence:?} stored for agent {agent} ({insight})"
                ))
            }
        },
    )
    .await;
    assert!(cited > 0);

    // every request had the configured model and its kind's name and schema
    let requests = llm.requests();
    let schemas: BTreeMap<&str, &[&str]> = KINDS.into_iter().collect();
    for r in &requests {
        let b = &r.body;
        let required = schemas
            .get(r.kind.as_str())
            .unwrap_or_else(|| panic!("an unknown kind {:?}: {b}", r.kind));
        assert_eq!(b["model"], MODEL, "{b}");
        assert_eq!(b["response_format"]["type"], "json_schema", "{b}");
        let schema = &b["response_format"]["json_schema"];
        assert_eq!(schema["name"], json!(r.kind), "{b}");
        assert_eq!(schema["schema"]["type"], "object", "{b}");
        assert_eq!(schema["schema"]["required"], json!(required), "{b}");
        assert_eq!(b["messages"][0]["role"], "system", "{b}");
        assert_eq!(b["messages"][1]["role"], "user", "{b}");
        assert!(!user_prompt(b).is_empty(), "{b}");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "x-hearth-kind" && v == &r.kind),
            "{:?}",
            r.headers
        );
    }
    let asked = kinds_asked(&llm);
    for (kind, _) in KINDS {
        assert!(asked.contains_key(kind), "no {kind} request: {asked:?}");
    }

    // and each kind asked is in the call log: prompt, answer, tokens, latency
    let logged = eventually(
        Duration::from_secs(10),
        "every kind asked in llm_calls",
        async || {
            let rows = client
                .query(
                    "SELECT kind, count(*) FROM llm_calls \
                     WHERE model = $1 AND error IS NULL AND response IS NOT NULL \
                     AND prompt LIKE '[system]%' AND prompt LIKE '%[user]%' \
                     AND prompt_tokens > 0 AND completion_tokens > 0 AND latency_ms >= 0 \
                     AND game_time IS NOT NULL \
                     GROUP BY kind",
                    &[&MODEL],
                )
                .await
                .unwrap();
            let logged: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let absent: Vec<&String> = asked.keys().filter(|k| !logged.contains_key(*k)).collect();
            if absent.is_empty() {
                Ok(logged)
            } else {
                Err(format!("{absent:?} not logged; logged {logged:?}"))
            }
        },
    )
    .await;
    // a logged response is what the model said
    let line: String = client
        .query_one(
            "SELECT response FROM llm_calls WHERE kind = 'conversation' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(line.contains("MODEL-LINE"), "{line}");
    // agents' own decisions name the agent; ratings are the world's
    let unnamed = count(
        &client,
        "SELECT count(*) FROM llm_calls WHERE agent_id IS NULL AND kind <> 'importance'",
    )
    .await;
    assert_eq!(unnamed, 0, "calls of agents' decisions without an agent");
    eprintln!("asked {asked:?}; logged {logged:?}");
    server.stop().await;
    eprintln!(
        "the_model_thinks_for_the_agents: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Requests received so far, by kind.
fn kinds_asked(llm: &ScriptedLlm) -> BTreeMap<String, usize> {
    let mut by_kind = BTreeMap::new();
    for r in llm.requests() {
        *by_kind.entry(r.kind).or_default() += 1;
    }
    by_kind
}

// --- b. a dead model never stalls the world ---------------------------------

/// A spectator of the whole map.
async fn spectate(server: &Server, world: &str) -> Ws {
    let mut ws = server.connect().await;
    send(
        &mut ws,
        &json!({"type": "hello", "id": "h", "world": world}),
    )
    .await;
    let welcome = answer(&mut ws, "h").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    send(
        &mut ws,
        &json!({"type": "subscribe", "id": "s", "area": {"x": 0, "y": 0, "w": 4096, "h": 4096}}),
    )
    .await;
    assert_eq!(answer(&mut ws, "s").await["type"], "snapshot");
    ws
}

/// Game seconds of a frame's `game_time` ("2001-01-01T06:32:06").
fn game_seconds(frame: &Value) -> i64 {
    let t = frame["game_time"].as_str().unwrap_or_default();
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("game_time {t:?}: {e}"))
        .and_utc()
        .timestamp()
}

/// The world's pace over `window` of real time, from the deltas a
/// spectator receives: (real seconds, ticks, game seconds) between the
/// first and the last delta.
async fn pace(ws: &mut Ws, window: Duration) -> (f64, u64, i64) {
    // what was queued before the window is not the window's
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(5), ws.next()).await {}
    let end = Instant::now() + window;
    let mut first: Option<(Instant, u64, i64)> = None;
    let mut last = None;
    while Instant::now() < end {
        let v = next(ws).await;
        if v["type"] == "delta" {
            let at = (
                Instant::now(),
                v["tick"].as_u64().unwrap(),
                game_seconds(&v),
            );
            first.get_or_insert(at);
            last = Some(at);
        }
    }
    let ((t0, k0, g0), (t1, k1, g1)) = (first.unwrap(), last.unwrap());
    ((t1 - t0).as_secs_f64(), k1 - k0, g1 - g0)
}

#[tokio::test]
async fn a_dead_model_never_stalls_the_world() {
    let started = Instant::now();
    const SCALE: i64 = 30;
    let db = TestDb::migrated().await;
    let llm = ScriptedLlm::start().await;
    let phases = [
        ("hangs", Reply::Hang, "no answer within"),
        (
            "fails with 500",
            Reply::Status(500, "scripted outage".into()),
            "HTTP 500",
        ),
        (
            "drops the connection",
            Reply::Close,
            "cannot reach the model",
        ),
        (
            "answers nonsense",
            Reply::Text("not json".into()),
            "unusable answer",
        ),
    ];
    for (kind, _) in KINDS {
        llm.script(kind, phases[0].1.clone());
    }
    let server = start(
        &db,
        &llm,
        "llm-dead",
        &["--time-scale", &SCALE.to_string(), "--llm-timeout", "1s"],
    )
    .await;
    let client = db.client().await;
    let mut ws = spectate(&server, "llm-dead").await;
    let memories_before = count(
        &client,
        "SELECT count(*) FROM agent_memories WHERE kind IN ('observation', 'conversation')",
    )
    .await;

    for (i, (name, reply, error)) in phases.iter().enumerate() {
        for (kind, _) in KINDS {
            llm.script(kind, reply.clone());
        }
        let since: i64 = count(&client, "SELECT coalesce(max(id), 0) FROM llm_calls").await;
        let (real, ticks, game) = pace(&mut ws, Duration::from_secs(4)).await;
        let want_ticks = real * f64::from(TICK_RATE);
        let want_game = real * (SCALE * 60) as f64;
        eprintln!(
            "the model {name}: {ticks} ticks and {game} game seconds in {real:.2} s \
             (full rate: {want_ticks:.0} and {want_game:.0})"
        );
        assert!(
            ticks as f64 >= 0.8 * want_ticks,
            "while the model {name}, the world ticked {ticks} times in {real:.2} s"
        );
        assert!(
            game as f64 >= 0.8 * want_game,
            "while the model {name}, the game clock advanced {game} s in {real:.2} s"
        );
        // the failures are logged with what went wrong
        let pattern = format!("{error}%");
        eventually(
            Duration::from_secs(10),
            &format!("llm_calls errors while the model {name}"),
            async || {
                let n: i64 = client
                    .query_one(
                        "SELECT count(*) FROM llm_calls \
                         WHERE id > $1 AND error LIKE $2",
                        &[&since, &pattern],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    Ok(())
                } else {
                    let recent = client
                        .query(
                            "SELECT kind, error FROM llm_calls WHERE id > $1 ORDER BY id DESC LIMIT 5",
                            &[&since],
                        )
                        .await
                        .unwrap();
                    let recent: Vec<(String, Option<String>)> =
                        recent.iter().map(|r| (r.get(0), r.get(1))).collect();
                    Err(format!("no error like {pattern:?} (phase {i}); latest {recent:?}"))
                }
            },
        )
        .await;
    }

    // the rule-based mind spoke and remembered all along
    let rule_lines = eventually(
        Duration::from_secs(20),
        "conversation lines from the rule-based mind",
        async || match count(&client, "SELECT count(*) FROM messages").await {
            0 => Err("no messages".to_owned()),
            n => Ok(n),
        },
    )
    .await;
    let model_lines = count(
        &client,
        "SELECT count(*) FROM messages WHERE text LIKE '%not json%' OR text LIKE 'MODEL-%'",
    )
    .await;
    assert_eq!(model_lines, 0, "a line from a dead model");
    let memories_after = count(
        &client,
        "SELECT count(*) FROM agent_memories WHERE kind IN ('observation', 'conversation')",
    )
    .await;
    assert!(
        memories_after > memories_before,
        "no new memories while the model was dead ({memories_before} before)"
    );
    let asked = kinds_asked(&llm);
    assert!(
        asked.contains_key("importance") && asked.contains_key("conversation"),
        "the dead model was asked: {asked:?}"
    );
    // each agent's day was planned all the same, from its schedule
    let days = eventually(Duration::from_secs(10), "day plans by rule", async || {
        let n = count(
            &client,
            "SELECT count(DISTINCT agent_id) FROM agent_memories \
                 WHERE kind = 'plan' AND content LIKE 'My plan for today:%'",
        )
        .await;
        if n == AGENTS as i64 {
            Ok(n)
        } else {
            Err(format!("{n} of {AGENTS} agents planned their day"))
        }
    })
    .await;
    assert_eq!(days, AGENTS as i64);
    let answered = count(
        &client,
        "SELECT count(*) FROM llm_calls WHERE error IS NULL",
    )
    .await;
    assert_eq!(answered, 0, "a dead model answered");
    eprintln!(
        "{rule_lines} lines and {} new memories by rule; requests {asked:?}",
        memories_after - memories_before
    );
    drop(ws);
    server.stop().await;
    eprintln!(
        "a_dead_model_never_stalls_the_world: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// --- c. a player is answered by the model ----------------------------------

/// The next line `agent` says to the character `c:ada`, and how long it took.
async fn speech_to_ada(ws: &mut Ws, agent: &str, within: Duration) -> (String, Duration) {
    let asked = Instant::now();
    loop {
        assert!(
            asked.elapsed() < within,
            "{agent} said nothing to ada within {within:?}"
        );
        let v = next(ws).await;
        if v["type"] == "event"
            && v["event"]["kind"] == "speech"
            && v["event"]["speaker"] == json!(agent)
            && v["event"]["to"] == json!(["c:ada"])
        {
            return (
                v["event"]["text"].as_str().unwrap().to_owned(),
                asked.elapsed(),
            );
        }
    }
}

/// Walks ada to the agent nearest her and begins a conversation with it;
/// returns the agent's id.
async fn talk_to_nearest_agent(ws: &mut Ws) -> String {
    let everywhere = json!({"x": 0, "y": 0, "w": 4096, "h": 4096});
    let deadline = Instant::now() + Duration::from_secs(30);
    let agent = loop {
        send(
            ws,
            &json!({"type": "subscribe", "id": "s", "area": everywhere}),
        )
        .await;
        let snap = answer(ws, "s").await;
        let entities = snap["entities"].as_array().unwrap().clone();
        if let Some(me) = entities.iter().find(|e| e["id"] == "c:ada") {
            let (mx, my) = (me["x"].as_f64().unwrap(), me["y"].as_f64().unwrap());
            let d = |e: &Value| {
                (e["x"].as_f64().unwrap() - mx).powi(2) + (e["y"].as_f64().unwrap() - my).powi(2)
            };
            break entities
                .iter()
                .filter(|e| e["kind"] == "agent")
                .min_by(|a, b| d(a).total_cmp(&d(b)))
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "the character never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for attempt in 0..120 {
        let id = format!("c{attempt}");
        send(
            ws,
            &json!({"type": "start_conversation", "id": id, "with": agent}),
        )
        .await;
        let a = answer(ws, &id).await;
        if a["type"] == "ok" {
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                let e = next(ws).await;
                if e["type"] == "event"
                    && e["event"]["kind"] == "conversation_started"
                    && e["event"]["participants"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("c:ada"))
                {
                    return agent;
                }
            }
            continue;
        }
        if a["code"] == "unavailable" {
            // talking with someone else: wait
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        assert_eq!(a["code"], "bad_request", "{a}");
        // too far: walk to where the agent is now
        let r = format!("r{attempt}");
        send(
            ws,
            &json!({"type": "subscribe", "id": r, "area": everywhere}),
        )
        .await;
        let snap = answer(ws, &r).await;
        let now = snap["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == json!(agent))
            .unwrap()
            .clone();
        let (x, y) = (
            now["x"].as_f64().unwrap().round(),
            now["y"].as_f64().unwrap().round(),
        );
        let mv = format!("m{attempt}");
        send(ws, &json!({"type": "move_to", "id": mv, "x": x, "y": y})).await;
        let a = answer(ws, &mv).await;
        assert!(a["type"] == "ok" || a["code"] == "bad_request", "{a}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    panic!("ada never began a conversation with {agent}");
}

#[tokio::test]
async fn a_player_is_answered_by_the_model() {
    let started = Instant::now();
    let db = TestDb::migrated().await;
    let llm = ScriptedLlm::start().await;
    answer_validly(&llm);
    let server = start(&db, &llm, "llm-player", &["--llm-timeout", "1s"]).await;
    hearth_net::auth::add_user(
        &db.client().await,
        hearth_net::auth::UserAdd {
            name: "ada".into(),
            role: "player".parse().unwrap(),
            world: "llm-player".into(),
            password: Some(hearth_net::auth::Password("correct horse battery".into())),
            email: None,
        },
    )
    .await
    .unwrap();
    let login: Value = reqwest::Client::new()
        .post(format!("{}/auth/login", server.http_url()))
        .json(&json!({"username": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap_or_else(|| panic!("{login}"));
    let mut ws = server.connect().await;
    send(
        &mut ws,
        &json!({"type": "hello", "id": "h", "world": "llm-player", "token": token}),
    )
    .await;
    let welcome = answer(&mut ws, "h").await;
    assert_eq!(welcome["role"], "player", "{welcome}");
    let agent = talk_to_nearest_agent(&mut ws).await;

    // the model's line comes back as the agent's speech
    send(
        &mut ws,
        &json!({"type": "say", "id": "hi", "text": "Hello there! What are you up to?", "to": agent}),
    )
    .await;
    assert_eq!(answer(&mut ws, "hi").await["type"], "ok");
    let (text, took) = speech_to_ada(&mut ws, &agent, Duration::from_secs(10)).await;
    eprintln!("the model answered in {took:?}: {text}");
    assert!(text.starts_with("MODEL-LINE "), "the model's line: {text}");
    let asked = llm
        .requests()
        .into_iter()
        .filter(|r| r.kind == "conversation" && user_prompt(&r.body).contains("a visitor"))
        .count();
    assert!(asked > 0, "the model was asked about the visitor");

    // a model that hangs: the rule-based answer, within about the timeout
    llm.script("conversation", Reply::Hang);
    send(
        &mut ws,
        &json!({"type": "say", "id": "again", "text": "And how is the bread today?", "to": agent}),
    )
    .await;
    assert_eq!(answer(&mut ws, "again").await["type"], "ok");
    let (text, took) = speech_to_ada(&mut ws, &agent, Duration::from_secs(10)).await;
    eprintln!("the rule-based mind answered in {took:?}: {text}");
    // (the rule-based mind may quote memories, the model's day plan among them)
    assert!(!text.contains("MODEL-LINE"), "not the model's: {text}");
    assert!(
        took < Duration::from_millis(2500),
        "the answer took {took:?} with a 1 s timeout"
    );
    drop(ws);
    server.stop().await;
    eprintln!(
        "a_player_is_answered_by_the_model: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
