//! The HTTP surface of `hearth serve` over real connections: liveness,
//! readiness, Prometheus metrics, and the account routes (register, login,
//! logout, and their refusals), against a real database.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::time::Duration;

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_tests::TestDb;
use hearth_tests::server::Server;
use serde_json::{Value, json};

#[tokio::test]
async fn health_readiness_metrics_and_accounts() {
    let db = TestDb::migrated().await;
    // up, then ready once the world runs; in a process of its own, so that
    // /metrics is this server's alone (the recorder is one per process)
    let server = Server::builder()
        .db(&db)
        .world("web")
        .synthetic_agents(50)
        .process(env!("CARGO_BIN_EXE_hearth-cli"))
        .ready_within(Duration::from_secs(60))
        .start()
        .await;
    let base = server.http_url();
    let http = reqwest::Client::new();
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

    server.stop().await;
    // stopped: the port is closed
    assert!(
        http.get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err()
    );
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
