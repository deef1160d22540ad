//! The HTTP surface of `hearth serve` over real connections: liveness,
//! readiness, Prometheus metrics, and the account routes (register, login,
//! logout, and their refusals), against a real database.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::time::{Duration, Instant};

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_tests::TestDb;
use serde_json::{Value, json};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn health_readiness_metrics_and_accounts() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let home = std::env::temp_dir().join(format!("hearth-http-test-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let cli = Cli::try_parse_from([
        "hearth",
        "--database-url",
        &url,
        "--home",
        home.to_str().unwrap(),
        "serve",
        "--listen",
        &listen,
        "--world",
        "web",
        "--synthetic-agents",
        "50",
        "--lore",
        "no-lore-here",
    ])
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        cli::run(cli, &mut Vec::new(), async {
            let _ = stopped.await;
        })
        .await
    });
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();

    // up, then ready once the world runs
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // metrics: the world's ticks are counted
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("hearth_tick_seconds"), "{text}");
    assert!(text.contains("hearth_agents 50"), "{text}");

    // accounts
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "ADA", "password": "another password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "the same name in another case is taken");
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "ada", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("v1."));
    assert_eq!(body["role"], "spectator");
    let r = http
        .post(format!("{base}/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(format!("{base}/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");

    // bad input: clear errors, never a crash
    let r = http
        .post(format!("{base}/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "bo", "password": "long enough pw", "admin": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");
    let r = http
        .post(format!("{base}/auth/register"))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "oversized bodies are refused");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still alive");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // stopped: the port is closed
    assert!(
        http.get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cli = Cli::try_parse_from([
        "hearth",
        "serve",
        "--no-db",
        "--listen",
        &addr,
        "--synthetic-agents",
        "10",
    ])
    .unwrap();
    let err = cli::run(cli, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot listen on"), "{err}");
    assert!(err.to_string().contains("--listen"), "{err}");
}
