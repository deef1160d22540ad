//! The HTTP surface of `hearth serve`, on the same address as the game
//! clients' WebSocket: liveness (`/healthz`), readiness (`/readyz`: the
//! database answers and the world is loaded), Prometheus metrics
//! (`/metrics`) and accounts (`/auth/register`, `/auth/login`,
//! `/auth/logout`; `docs/protocol.md`). Touches the database only through
//! [`Auth`] and a readiness probe, the metrics recorder, and the socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth_db::Pool;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use super::auth::{Auth, AuthError};

/// Largest request body the account routes read.
const MAX_BODY: usize = 16 * 1024;

/// The process's metrics recorder, installed on first use (once per
/// process: tests start several servers in one).
pub fn metrics() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                warn!(error = %e, "cannot install the metrics recorder; /metrics is empty");
                None
            }
        })
        .as_ref()
}

/// What the routes need.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Set once the world is loaded.
    pub ready: Arc<AtomicBool>,
    pub pool: Option<Pool>,
    pub auth: Option<Auth>,
    /// The world this server runs (logins get their role in it).
    pub world: String,
    /// Game clients' `/ws`, set once the world runs (503 until then).
    pub ws: Arc<OnceLock<super::ws::WsState>>,
    /// The world map's directory, served under `/maps/` for the viewer
    /// (empty: no map, a generated world).
    pub maps_dir: std::path::PathBuf,
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    let maps_dir = state.maps_dir.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/ws", get(ws_upgrade))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .merge(super::viewer::router(maps_dir))
}

/// Binds `addr` (port 0 picks a free one) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "the HTTP server stopped with an error");
        }
    });
    Ok((bound, task))
}

async fn ws_upgrade(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    match state.ws.get() {
        Some(ws_state) => super::ws::upgrade(State(ws_state.clone()), headers, ws).await,
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the world is loading; try again\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "world not loaded\n").into_response();
    }
    if let Some(pool) = &state.pool {
        match tokio::time::timeout(Duration::from_secs(2), hearth_db::connect::ping(pool)).await {
            Ok(Ok(())) => {}
            _ => {
                return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response();
            }
        }
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics_text() -> Response {
    if let Some((rss_bytes, cpu_seconds)) = process_usage() {
        metrics::gauge!("process_resident_memory_bytes").set(rss_bytes);
        metrics::gauge!("process_cpu_seconds_total").set(cpu_seconds);
    }
    let body = metrics().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// This process's resident memory (bytes) and CPU time (seconds), from
/// `/proc` (Linux; `None` elsewhere). Read at each scrape, under the names
/// Prometheus's own clients use.
fn process_usage() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux
    Some((rss_kb * 1024.0, ticks / 100.0))
}

/// An error as the account routes answer it: `{"code", "message"}`.
fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn auth_error(e: &AuthError) -> Response {
    let code = e.code();
    let status = match code {
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "bad_request" => match e {
            AuthError::UsernameTaken(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        },
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        warn!(error = %e, "account request failed");
    }
    refuse(status, code, e.client_message())
}

fn no_accounts() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "this server runs without a database: there are no accounts".into(),
    )
}

/// The JSON body, or what is wrong with it (for a `bad_request`).
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the request body: {e}"))
}

fn bad_body(why: String) -> Response {
    refuse(StatusCode::BAD_REQUEST, "bad_request", why)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn register(State(state): State<HttpState>, bytes: axum::body::Bytes) -> Response {
    let Some(auth) = &state.auth else {
        return no_accounts();
    };
    let req: RegisterBody = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_body(why),
    };
    match auth
        .register(&req.username, &req.password, req.email.as_deref())
        .await
    {
        Ok(user) => (StatusCode::CREATED, Json(json!({ "user": user }))).into_response(),
        Err(e) => auth_error(&e),
    }
}

async fn login(State(state): State<HttpState>, bytes: axum::body::Bytes) -> Response {
    let Some(auth) = &state.auth else {
        return no_accounts();
    };
    let req: LoginBody = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_body(why),
    };
    match auth.login(&req.username, &req.password, &state.world).await {
        Ok(outcome) => Json(json!({
            "token": outcome.token,
            "expires_at": outcome.expires_at,
            "role": outcome.role,
            "user": outcome.user,
        }))
        .into_response(),
        Err(e) => auth_error(&e),
    }
}

async fn logout(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let Some(auth) = &state.auth else {
        return no_accounts();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an `Authorization: Bearer <token>` header is required".into(),
        );
    };
    match auth.logout(token).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => auth_error(&e),
    }
}
