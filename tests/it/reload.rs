//! Content reloaded into a running world, end to end. With a database and
//! a designer connected over a real WebSocket: an agent file edited under
//! the running server takes effect in `agent_detail` (and the agent's row)
//! while the agent keeps its memories; a broken file sends a
//! `content_error` event naming file, line and column while the world
//! keeps ticking, and fixing it applies it; a wall drawn on the map's
//! collision layer is applied; new lore is chunked into the
//! database; a new agent file brings an agent into the world (registered,
//! seeded) and removing it takes the agent out (archived). As separate
//! processes:
//! `hearth reload` signals a running `hearth serve` and prints the outcome
//! (exit 1 for a broken file), and SIGTERM stops the server with close
//! frames to its clients and exit 0 within 10 s.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_tests::server::{Server, Ws, answer, next_json as next, send};
use hearth_tests::{TestDb, workspace_root};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A copy of the demo world's agents and map, for a test to edit.
struct Content {
    dir: PathBuf,
}

impl Content {
    fn copy(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hearth-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = workspace_root();
        for sub in ["agents", "maps", "lore"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (from, to) in [
            ("agents", "agents"),
            ("assets/maps", "maps"),
            ("assets/lore", "lore"),
        ] {
            for f in std::fs::read_dir(root.join(from)).unwrap() {
                let f = f.unwrap().path();
                if f.is_file() {
                    std::fs::copy(&f, dir.join(to).join(f.file_name().unwrap())).unwrap();
                }
            }
        }
        Self { dir }
    }

    fn agents(&self) -> PathBuf {
        self.dir.join("agents")
    }

    fn map(&self) -> PathBuf {
        self.dir.join("maps/valley.tmj")
    }

    fn agent(&self, slug: &str) -> PathBuf {
        self.agents().join(format!("{slug}.json"))
    }

    /// Rewrites an agent file with `edit` applied to its text.
    fn edit(&self, slug: &str, edit: impl FnOnce(String) -> String) {
        let path = self.agent(slug);
        let text = std::fs::read_to_string(&path).unwrap();
        let new = edit(text.clone());
        assert_ne!(new, text, "the edit changes the file");
        std::fs::write(&path, new).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--agents".into(),
            self.agents().display().to_string(),
            "--map".into(),
            self.map().display().to_string(),
        ]
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next `event` of `kind`, skipping everything else (30 s at most).
async fn event(ws: &mut Ws, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no {kind} event within 30 s");
        let v = next(ws).await;
        if v["type"] == "event" && v["event"]["kind"] == kind {
            return v["event"].clone();
        }
    }
}

/// A designer's token for `world` on the server at `http` (the user is
/// made first).
async fn designer_token(db: &TestDb, http: &str, world: &str) -> String {
    let client = db.client().await;
    hearth_net::auth::add_user(
        &client,
        hearth_net::auth::UserAdd {
            name: "dora".into(),
            role: "designer".parse().unwrap(),
            world: world.into(),
            password: Some(hearth_net::auth::Password("correct horse battery".into())),
            email: None,
        },
    )
    .await
    .unwrap();
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/auth/login"))
        .json(&json!({"username": "dora", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_owned()
}

async fn designer(db: &TestDb, server: &Server, world: &str) -> Ws {
    let token = designer_token(db, &server.http_url(), world).await;
    let mut ws = server.connect().await;
    send(
        &mut ws,
        &json!({"type": "hello", "id": "h", "world": world, "token": token}),
    )
    .await;
    let welcome = answer(&mut ws, "h").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

async fn detail(ws: &mut Ws, id: &str) -> Value {
    send(
        ws,
        &json!({"type": "agent_detail", "id": id, "agent": "a:ivo"}),
    )
    .await;
    let d = answer(ws, id).await;
    assert_eq!(d["type"], "agent_detail", "{d}");
    d["agent"].clone()
}

/// Ivo's memories as the designer sees them: (id, text).
async fn memories(ws: &mut Ws, id: &str) -> Vec<(i64, String)> {
    send(
        ws,
        &json!({"type": "agent_memories", "id": id, "agent": "a:ivo", "query": "workshop", "k": 50}),
    )
    .await;
    let m = answer(ws, id).await;
    assert_eq!(m["type"], "agent_memories", "{m}");
    m["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["text"]
                    .as_str()
                    .or(m["content"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// Whether agent `slug` of world `reload` is archived.
async fn archived(db: &TestDb, slug: &str) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT a.archived_at IS NOT NULL FROM agents a JOIN worlds w ON w.id = a.world_id \
             WHERE w.slug = 'reload' AND a.slug = $1",
            &[&slug],
        )
        .await
        .unwrap()
        .get(0)
}

async fn ticks(server: &Server) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("hearth_ticks_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_edited_agent_takes_effect_live_and_keeps_its_memories() {
    let db = TestDb::migrated().await;
    let content = Content::copy("live");
    // in a process of its own: the ticks and reloads counted in /metrics
    // are then this server's alone (the recorder is one per process)
    let server = Server::builder()
        .db(&db)
        .world("reload")
        .lore(content.dir.join("lore"))
        .args(content.args())
        .args(["--time-scale", "30"])
        .process(env!("CARGO_BIN_EXE_hearth-cli"))
        .start()
        .await;
    let mut ws = designer(&db, &server, "reload").await;

    let before = detail(&mut ws, "d1").await;
    assert_eq!(before["occupation"], "carpenter", "{before}");
    let remembered = memories(&mut ws, "m1").await;
    assert!(!remembered.is_empty(), "Ivo starts with his seed memories");

    // the designer edits Ivo's file while the world runs
    content.edit("ivo", |t| {
        t.replace(
            "\"occupation\": \"carpenter\"",
            "\"occupation\": \"shipwright\"",
        )
        .replace("\"openness\": 0.6", "\"openness\": 0.9")
    });
    let reloaded = event(&mut ws, "content_reloaded").await;
    assert_eq!(reloaded["changed"], json!(["a:ivo"]), "{reloaded}");
    assert_eq!(reloaded["map"], false);

    let after = detail(&mut ws, "d2").await;
    assert_eq!(after["occupation"], "shipwright", "{after}");
    assert!((after["traits"]["openness"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(after["name"], before["name"]);
    // the agent is the same one: every memory it had is still there
    let kept = memories(&mut ws, "m2").await;
    for m in &remembered {
        assert!(kept.contains(m), "memory {m:?} survived the reload");
    }
    // and its row says what the file says now
    let row: String = db
        .client()
        .await
        .query_one(
            "SELECT a.definition->>'occupation' FROM agents a JOIN worlds w ON w.id = a.world_id \
             WHERE w.slug = 'reload' AND a.slug = 'ivo'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(row, "shipwright");

    // a broken file: an error event naming where, and the world goes on
    content.edit("ivo", |t| t.replace("\"age\": 29", "\"age\": \"old\""));
    let error = event(&mut ws, "content_error").await;
    let problems = error["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{error}");
    let p = &problems[0];
    assert!(p["file"].as_str().unwrap().ends_with("ivo.json"), "{p}");
    assert_eq!(p["line"], 6, "{p}");
    assert!(p["column"].as_u64().unwrap() > 1, "{p}");
    assert_eq!(p["path"], "$.age", "{p}");
    assert!(
        error["message"].as_str().unwrap().contains("ivo.json:6:"),
        "{error}"
    );
    let t0 = ticks(&server).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(ticks(&server).await > t0, "the world keeps ticking");
    let metrics = reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hearth_content_reloads_total{outcome=\"invalid\"}"),
        "reloads are counted by outcome"
    );
    let still = detail(&mut ws, "d3").await;
    assert_eq!(
        still["occupation"], "shipwright",
        "the last good version runs"
    );
    assert_eq!(still["age"], 29);

    // the same through reload_content: refused with the problem
    send(&mut ws, &json!({"type": "reload_content", "id": "r1"})).await;
    let r = answer(&mut ws, "r1").await;
    assert_eq!(r["type"], "error", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("ivo.json:6:"),
        "{r}"
    );

    // fixed: applied
    content.edit("ivo", |t| t.replace("\"age\": \"old\"", "\"age\": 30"));
    let fixed = event(&mut ws, "content_reloaded").await;
    assert_eq!(fixed["changed"], json!(["a:ivo"]), "{fixed}");
    assert_eq!(detail(&mut ws, "d4").await["age"], 30);
    send(&mut ws, &json!({"type": "reload_content", "id": "r2"})).await;
    assert_eq!(answer(&mut ws, "r2").await["type"], "ok");

    // the map: a tile of open ground becomes a wall
    let map_path = content.map();
    let mut tmj: Value =
        serde_json::from_str(&std::fs::read_to_string(&map_path).unwrap()).unwrap();
    let collision = tmj["layers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["name"] == "collision")
        .unwrap();
    let data = collision["data"].as_array_mut().unwrap();
    let wall = data.iter().find(|v| v.as_u64() != Some(0)).unwrap().clone();
    let open = data.iter().position(|v| v.as_u64() == Some(0)).unwrap();
    data[open] = wall;
    std::fs::write(&map_path, serde_json::to_string(&tmj).unwrap()).unwrap();
    let mapped = event(&mut ws, "content_reloaded").await;
    assert_eq!(mapped["map"], true, "{mapped}");
    assert_eq!(mapped["changed"], json!([]), "{mapped}");

    // new lore: chunked into the database while the world runs
    std::fs::write(
        content.dir.join("lore/flood.md"),
        "# The Flood\n\nIn the spring of the great flood the river rose over the mill race \
         and the whole valley rowed to the chapel on the hill.\n",
    )
    .unwrap();
    let lore = event(&mut ws, "content_reloaded").await;
    assert_eq!(lore["lore"], true, "{lore}");
    assert_eq!(lore["changed"], json!([]), "{lore}");
    let chunks: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM lore_chunks c JOIN lore_documents d ON d.id = c.document_id \
             JOIN worlds w ON w.id = d.world_id \
             WHERE w.slug = 'reload' AND d.path LIKE '%flood.md' AND c.text LIKE '%great flood%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(chunks, 1, "the new document is chunked");

    // a new agent file: the agent joins the world, registered in the database
    std::fs::copy(content.agent("ivo"), content.agent("ivy")).unwrap();
    content.edit("ivy", |t| {
        t.replace("\"id\": \"ivo\"", "\"id\": \"ivy\"")
            .replace("\"name\": \"Ivo Petrov\"", "\"name\": \"Ivy Petrova\"")
    });
    let joined = event(&mut ws, "content_reloaded").await;
    assert_eq!(joined["added"], json!(["a:ivy"]), "{joined}");
    send(
        &mut ws,
        &json!({"type": "agent_detail", "id": "i1", "agent": "a:ivy"}),
    )
    .await;
    let ivy = answer(&mut ws, "i1").await;
    assert_eq!(ivy["agent"]["name"], "Ivy Petrova", "{ivy}");
    assert!(!archived(&db, "ivy").await, "ivy is registered and present");
    // her seed memories are hers from the start
    send(
        &mut ws,
        &json!({"type": "agent_memories", "id": "i2", "agent": "a:ivy", "query": "workshop", "k": 5}),
    )
    .await;
    let seeded = answer(&mut ws, "i2").await;
    assert!(
        !seeded["memories"].as_array().unwrap().is_empty(),
        "{seeded}"
    );

    // the file removed: the agent leaves, archived, not deleted
    std::fs::remove_file(content.agent("ivy")).unwrap();
    let left = event(&mut ws, "content_reloaded").await;
    assert_eq!(left["removed"], json!(["a:ivy"]), "{left}");
    send(
        &mut ws,
        &json!({"type": "agent_detail", "id": "i3", "agent": "a:ivy"}),
    )
    .await;
    let gone = answer(&mut ws, "i3").await;
    assert_eq!(gone["type"], "error", "{gone}");
    assert!(archived(&db, "ivy").await, "ivy is archived");
    server.stop().await;
}

fn hearth(home: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn hearth_reload_and_sigterm_against_a_running_server() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let db = TestDb::migrated().await;
    let content = Content::copy("cli");
    let home = content.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = hearth_tests::server::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .arg("--home")
        .arg(&home)
        .args(["--database-url", &db.url()])
        .args([
            "serve", "--world", "cli", "--listen", &addr, "--lore", "none",
        ])
        // one checkpoint at the start, then only the final one
        .args(["--flush-interval", "1h", "--time-scale", "30"])
        .args(content.args())
        .arg("--no-watch")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // nothing changed: said so, exit 0
    let out = hearth(&home, &["reload", "--world", "cli"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("unchanged"), "{text}");

    // without watching, a change waits for `hearth reload`
    content.edit("ivo", |t| {
        t.replace(
            "\"occupation\": \"carpenter\"",
            "\"occupation\": \"cooper\"",
        )
    });
    let out = hearth(&home, &["reload", "--world", "cli"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("reloaded: agents ivo"), "{text}");

    // a broken file: exit 1, the problem on stdout with file:line:col
    content.edit("ivo", |t| {
        t.replace("\"home\": \"Okafor House\"", "\"home\": \"Okafor Hous\"")
    });
    let out = hearth(&home, &["reload", "--world", "cli"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text.contains("ivo.json:"), "{text}");
    assert!(text.contains("$.home"), "{text}");
    assert!(
        text.contains("Okafor House"),
        "a hint names the place: {text}"
    );

    // a world nobody serves here: a clear error, exit 2
    let out = hearth(&home, &["reload", "--world", "nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server for world 'nowhere'"),
        "{out:?}"
    );

    // SIGTERM: a final checkpoint, clients get 1001, the process exits 0
    // within 10 s
    let token = designer_token(&db, &format!("http://{addr}"), "cli").await;
    let (mut ws, _) = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            hearth_protocol::SUBPROTOCOL.parse().unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.unwrap()
    };
    send(
        &mut ws,
        &json!({"type": "hello", "id": "h", "world": "cli", "token": token}),
    )
    .await;
    assert_eq!(answer(&mut ws, "h").await["type"], "welcome");
    send(
        &mut ws,
        &json!({"type": "subscribe", "id": "s", "area": {"x": 0, "y": 0, "w": 200, "h": 200}}),
    )
    .await;
    // the world ticks on past its first checkpoint
    let mut seen = 0;
    while seen < 40 {
        let v = next(&mut ws).await;
        if let Some(t) = v["tick"].as_u64() {
            seen = seen.max(t);
        }
    }
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    let asked = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Ok(Message::Close(c)) = frame {
            code = c.map(|c| u16::from(c.code));
            break;
        }
    }
    assert_eq!(
        code,
        Some(1001),
        "a close frame saying the server goes away"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit 0: {status:?}");
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert!(
        !home.join("run/cli.pid").exists(),
        "the pid file is removed at exit"
    );
    let (checkpoints, last): (i64, i64) = {
        let row = db
            .client()
            .await
            .query_one(
                "SELECT count(*), max(c.tick) FROM world_checkpoints c JOIN worlds w ON w.id = c.world_id \
                 WHERE w.slug = 'cli'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        checkpoints >= 2,
        "the start's and the final one: {checkpoints}"
    );
    assert!(
        last >= i64::try_from(seen).unwrap(),
        "the final checkpoint (tick {last}) is at or past the last tick a client saw ({seen})"
    );
}
