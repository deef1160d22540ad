//! A scripted OpenAI-compatible chat server for end-to-end tests: real HTTP on
//! 127.0.0.1 (an ephemeral port), no files, no outside network.
//!
//! Every request to `POST /v1/chat/completions` is recorded and answered by a
//! [`Reply`] chosen by the request's *kind*: `response_format.json_schema.name`
//! when present, else the `x-hearth-kind` header, else `"unknown"`. For each
//! request the first of these that exists answers:
//!
//! 1. the next reply queued with [`ScriptedLlm::script_once`] for the kind;
//! 2. the standing reply set with [`ScriptedLlm::script`] for the kind;
//! 3. the closure set with [`ScriptedLlm::script_fn`];
//! 4. otherwise 404 with the message `no script for kind X`.
//!
//! `GET /v1/models` lists one model, `scripted`. Errors have OpenAI's shape,
//! `{"error":{"message","type","param","code"}}`.
//!
//! Connections are served by hand through hyper, each on its own task, so that
//! [`Reply::Hang`] holds only its own connection and [`Reply::Close`] can drop
//! the TCP connection without writing a response.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// The header naming a request's kind when it has no JSON schema name.
pub const KIND_HEADER: &str = "x-hearth-kind";

/// The one model `GET /v1/models` lists.
pub const MODEL_ID: &str = "scripted";

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this value serialised as the message content.
    Json(Value),
    /// 200 with this exact content text (e.g. prose around JSON, or broken JSON).
    Text(String),
    /// Never answers (holds the connection open until the client gives up).
    Hang,
    /// This HTTP status with an OpenAI-style error body carrying this message.
    Status(u16, String),
    /// 429 with `Retry-After: secs`.
    TooMany {
        /// The value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// 200 whose body is not JSON at all.
    Malformed,
    /// Accepts the request, then closes the connection without any response.
    Close,
    /// Answers with the inner reply after a delay.
    Delayed(Duration, Box<Reply>),
}

/// One request the server received, recorded before it was answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request's kind (see the module docs).
    pub kind: String,
    /// The request body; a JSON string holding the raw text when it was not JSON.
    pub body: Value,
    /// The request headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// When the request arrived.
    pub at: Instant,
}

/// A closure choosing the reply for a request no other script covers.
type ScriptFn = dyn Fn(&str, &Value) -> Reply + Send + Sync;

/// The scripts and the record, shared by the handle and every connection.
#[derive(Default)]
struct Scripts {
    /// Replies used once each, first in first out, per kind.
    once: HashMap<String, VecDeque<Reply>>,
    /// The reply for every request of a kind with nothing queued.
    standing: HashMap<String, Reply>,
    /// The fallback for kinds with neither; an `Arc` so it is called outside the lock.
    by_fn: Option<Arc<ScriptFn>>,
    /// Every request received, in order.
    requests: Vec<Recorded>,
}

impl Scripts {
    /// The reply for one request of `kind`, consuming a queued one.
    fn choose(&mut self, kind: &str) -> Chosen {
        if let Some(reply) = self.once.get_mut(kind).and_then(VecDeque::pop_front) {
            return Chosen::Reply(reply);
        }
        if let Some(reply) = self.standing.get(kind) {
            return Chosen::Reply(reply.clone());
        }
        match &self.by_fn {
            Some(f) => Chosen::ByFn(Arc::clone(f)),
            None => Chosen::Reply(Reply::Status(404, format!("no script for kind {kind}"))),
        }
    }
}

/// What [`Scripts::choose`] found: a reply, or a closure to call without the lock held.
enum Chosen {
    Reply(Reply),
    ByFn(Arc<ScriptFn>),
}

/// State shared by the handle and the server.
struct Shared {
    /// A std mutex: it is never held across an `.await`, and the handle's
    /// methods are synchronous.
    scripts: Mutex<Scripts>,
    /// The number in the next completion id, `chatcmpl-N`.
    next_id: AtomicU64,
}

impl Shared {
    /// The scripts, even if a test panicked while holding them.
    fn lock(&self) -> MutexGuard<'_, Scripts> {
        self.scripts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running scripted chat server; dropping it shuts the server down and drops
/// every open connection.
pub struct ScriptedLlm {
    base_url: String,
    shared: Arc<Shared>,
    /// The accept loop; its connections live in a `JoinSet` it owns, so
    /// aborting it aborts them too.
    server: JoinHandle<()>,
}

impl fmt::Debug for ScriptedLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scripts = self.shared.lock();
        f.debug_struct("ScriptedLlm")
            .field("base_url", &self.base_url)
            .field("standing", &scripts.standing.keys().collect::<Vec<_>>())
            .field("has_script_fn", &scripts.by_fn.is_some())
            .field("requests", &scripts.requests.len())
            .finish_non_exhaustive()
    }
}

impl ScriptedLlm {
    /// Starts a server on `127.0.0.1` at an ephemeral port.
    ///
    /// # Panics
    /// When no local port can be bound (see [`ScriptedLlm::try_start`]).
    pub async fn start() -> ScriptedLlm {
        Self::try_start()
            .await
            .unwrap_or_else(|e| panic!("scripted LLM server: cannot bind 127.0.0.1:0: {e}"))
    }

    /// Starts a server on `127.0.0.1` at an ephemeral port, or says why it could not.
    pub async fn try_start() -> io::Result<ScriptedLlm> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            scripts: Mutex::new(Scripts::default()),
            next_id: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .fallback(unknown_route)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(accept_loop(listener, router));
        tracing::debug!(%addr, "scripted LLM server listening");
        Ok(ScriptedLlm {
            base_url: format!("http://{addr}/v1"),
            shared,
            server,
        })
    }

    /// The base URL clients are configured with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The reply for every request of `kind` from now on (replaces the previous).
    pub fn script(&self, kind: &str, reply: Reply) {
        self.shared.lock().standing.insert(kind.to_owned(), reply);
    }

    /// A reply used once for the next request of `kind`, before the standing
    /// one (first in, first out, per kind).
    pub fn script_once(&self, kind: &str, reply: Reply) {
        self.shared
            .lock()
            .once
            .entry(kind.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Scripts by a closure `f(kind, &body)`, used for requests whose kind has
    /// neither a queued nor a standing reply (replaces the previous closure).
    /// Without one, such requests get 404 with `no script for kind X`.
    pub fn script_fn(&self, f: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) {
        self.shared.lock().by_fn = Some(Arc::new(f));
    }

    /// Every chat request received, in order, including ones that hung or
    /// were closed.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// How many chat requests of `kind` were received.
    pub fn count(&self, kind: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.kind == kind)
            .count()
    }

    /// Forgets the requests received so far (scripts stay).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accepts connections until aborted, serving each on its own task.
async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, rather than spin.
                    tracing::warn!(error = %e, "scripted LLM server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Lets a handler end its connection without a response: the connection task
/// drops the connection (and with it the socket) when notified.
#[derive(Clone)]
struct Hangup(Arc<Notify>);

/// Serves one HTTP/1 connection until it ends or a handler hangs up.
async fn serve_connection(stream: TcpStream, router: Router) {
    let hangup = Arc::new(Notify::new());
    let service = TowerToHyperService::new(router.layer(Extension(Hangup(Arc::clone(&hangup)))));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = connection => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "scripted LLM server: connection ended with an error");
            }
        }
        () = hangup.notified() => {
            tracing::debug!("scripted LLM server: closing a connection without a response");
        }
    }
}

/// `POST /v1/chat/completions`.
async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    Extension(hangup): Extension<Hangup>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let at = Instant::now();
    let parsed = serde_json::from_slice::<Value>(&raw);
    let body = match &parsed {
        Ok(body) => body.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&raw).into_owned()),
    };
    let kind = kind_of(&body, &headers);
    let recorded = Recorded {
        kind: kind.clone(),
        body: body.clone(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        at,
    };
    shared.lock().requests.push(recorded);
    tracing::debug!(%kind, "scripted LLM server: chat request");

    if parsed.is_err() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
        );
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error_response(StatusCode::BAD_REQUEST, "'messages' is a required property");
    };
    let prompt_chars = messages
        .iter()
        .map(|m| m.get("content").map_or(0, content_chars))
        .sum();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(MODEL_ID)
        .to_owned();

    let chosen = shared.lock().choose(&kind);
    let reply = match chosen {
        Chosen::Reply(reply) => reply,
        Chosen::ByFn(f) => f(&kind, &body),
    };
    answer(&shared, &hangup, &model, prompt_chars, reply).await
}

/// The kind of a request: its JSON schema's name, else the kind header, else "unknown".
fn kind_of(body: &Value, headers: &HeaderMap) -> String {
    body.pointer("/response_format/json_schema/name")
        .and_then(Value::as_str)
        .or_else(|| headers.get(KIND_HEADER).and_then(|v| v.to_str().ok()))
        .unwrap_or("unknown")
        .to_owned()
}

/// The characters of a message's content: a string, or text parts.
fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(text) => text.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(|text| text.chars().count())
            .sum(),
        _ => 0,
    }
}

/// Tokens as a rough count: four characters each, at least one.
fn tokens(chars: usize) -> usize {
    (chars / 4).max(1)
}

/// Carries out a reply (after any delays).
async fn answer(
    shared: &Shared,
    hangup: &Hangup,
    model: &str,
    prompt_chars: usize,
    mut reply: Reply,
) -> Response {
    loop {
        match reply {
            Reply::Delayed(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Json(value) => {
                return completion(shared, model, prompt_chars, value.to_string());
            }
            Reply::Text(text) => return completion(shared, model, prompt_chars, text),
            Reply::Hang => return std::future::pending().await,
            Reply::Status(status, message) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error_response(status, &message);
            }
            Reply::TooMany { retry_after_secs } => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit reached (scripted). Please try again later.",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return response;
            }
            Reply::Malformed => {
                return (
                    StatusCode::OK,
                    [(CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body><h1>502 Bad Gateway</h1> (scripted)</body></html>",
                )
                    .into_response();
            }
            Reply::Close => {
                hangup.0.notify_one();
                // The connection task drops this future with the connection.
                return std::future::pending().await;
            }
        }
    }
}

/// A successful chat completion whose message content is `content`.
fn completion(shared: &Shared, model: &str, prompt_chars: usize, content: String) -> Response {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prompt_tokens = tokens(prompt_chars);
    let completion_tokens = tokens(content.chars().count());
    Json(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

/// An error in OpenAI's shape, its type named after the status.
fn error_response(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    let body = json!({
        "error": {"message": message, "type": kind, "param": null, "code": null},
    });
    (status, Json(body)).into_response()
}

/// `GET /v1/models`.
async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "hearth-tests"}],
    }))
}

/// Any other route: 404 as OpenAI words it.
async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {})", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Runs a test body with a deadline, so a broken server fails instead of hanging.
    async fn within<T>(body: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), body)
            .await
            .expect("test took longer than 20 s")
    }

    fn request(kind: Option<&str>, content: &str) -> Value {
        let mut body = json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are a test."},
                {"role": "user", "content": content},
            ],
            "temperature": 0.2,
            "max_tokens": 64,
            "seed": 7,
        });
        if let Some(name) = kind {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": name, "schema": {"type": "object"}, "strict": true},
            });
        }
        body
    }

    async fn post_chat(
        client: &reqwest::Client,
        llm: &ScriptedLlm,
        body: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        client
            .post(format!("{}/chat/completions", llm.base_url()))
            .json(body)
            .send()
            .await
    }

    fn content_of(completion: &Value) -> &str {
        completion["choices"][0]["message"]["content"]
            .as_str()
            .expect("a string content")
    }

    #[tokio::test]
    async fn json_reply_round_trips_with_usage() {
        within(async {
            let llm = ScriptedLlm::start().await;
            assert!(llm.base_url().starts_with("http://127.0.0.1:"));
            assert!(llm.base_url().ends_with("/v1"));
            llm.script("plan", Reply::Json(json!({"goal": "eat", "steps": [1, 2]})));
            let client = reqwest::Client::new();
            // "You are a test." is 15 chars, the user content 25: 40 / 4 = 10.
            let response = post_chat(&client, &llm, &request(Some("plan"), &"x".repeat(25)))
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200);
            let completion: Value = response.json().await.expect("JSON");
            assert_eq!(completion["id"], "chatcmpl-1");
            assert_eq!(completion["object"], "chat.completion");
            assert_eq!(completion["model"], "gpt-test");
            assert!(completion["created"].as_u64().expect("a number") > 1_600_000_000);
            assert_eq!(completion["choices"][0]["index"], 0);
            assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
            assert_eq!(completion["choices"][0]["finish_reason"], "stop");
            let content = content_of(&completion);
            let parsed: Value = serde_json::from_str(content).expect("content is JSON");
            assert_eq!(parsed, json!({"goal": "eat", "steps": [1, 2]}));
            let completion_tokens = (content.chars().count() / 4).max(1);
            assert_eq!(
                completion["usage"],
                json!({
                    "prompt_tokens": 10,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 10 + completion_tokens,
                })
            );

            let models: Value = client
                .get(format!("{}/models", llm.base_url()))
                .send()
                .await
                .expect("an answer")
                .json()
                .await
                .expect("JSON");
            assert_eq!(models["object"], "list");
            assert_eq!(models["data"][0]["id"], "scripted");
            assert_eq!(models["data"][0]["object"], "model");

            let recorded = llm.requests();
            assert_eq!(recorded.len(), 1);
            assert_eq!(recorded[0].kind, "plan");
            assert_eq!(recorded[0].body["seed"], 7);
            assert!(
                recorded[0]
                    .headers
                    .iter()
                    .any(|(name, value)| name == "content-type" && value == "application/json")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn kind_comes_from_schema_name_then_header() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script("speech", Reply::Text("Hello there.".into()));
            llm.script("mood", Reply::Text("from schema".into()));
            let client = reqwest::Client::new();

            let by_header: Value = client
                .post(format!("{}/chat/completions", llm.base_url()))
                .header(KIND_HEADER, "speech")
                .json(&request(None, "hi"))
                .send()
                .await
                .expect("an answer")
                .json()
                .await
                .expect("JSON");
            assert_eq!(content_of(&by_header), "Hello there.");

            // The schema name wins over the header.
            let by_schema: Value = client
                .post(format!("{}/chat/completions", llm.base_url()))
                .header(KIND_HEADER, "speech")
                .json(&request(Some("mood"), "hi"))
                .send()
                .await
                .expect("an answer")
                .json()
                .await
                .expect("JSON");
            assert_eq!(content_of(&by_schema), "from schema");

            let unscripted = post_chat(&client, &llm, &request(None, "hi"))
                .await
                .expect("an answer");
            assert_eq!(unscripted.status(), 404);
            let error: Value = unscripted.json().await.expect("JSON");
            assert_eq!(error["error"]["message"], "no script for kind unknown");
            assert!(error["error"]["type"].is_string());
            assert!(error["error"]["param"].is_null());
            assert!(error["error"]["code"].is_null());

            assert_eq!(llm.count("speech"), 1);
            assert_eq!(llm.count("mood"), 1);
            assert_eq!(llm.count("unknown"), 1);
            let kinds: Vec<String> = llm.requests().into_iter().map(|r| r.kind).collect();
            assert_eq!(kinds, ["speech", "mood", "unknown"]);
            llm.clear_requests();
            assert!(llm.requests().is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn once_replies_come_before_the_standing_one_then_the_closure() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script("k", Reply::Text("standing".into()));
            llm.script_once("k", Reply::Text("first".into()));
            llm.script_once(
                "k",
                Reply::Delayed(
                    Duration::from_millis(20),
                    Box::new(Reply::Text("second".into())),
                ),
            );
            llm.script_fn(|kind, body| {
                Reply::Text(format!("fn {kind} {}", body["messages"][1]["content"]))
            });
            let client = reqwest::Client::new();
            let mut contents = Vec::new();
            for kind in ["k", "k", "k", "k", "other"] {
                let completion: Value = post_chat(&client, &llm, &request(Some(kind), "q"))
                    .await
                    .expect("an answer")
                    .json()
                    .await
                    .expect("JSON");
                contents.push(content_of(&completion).to_owned());
            }
            assert_eq!(
                contents,
                ["first", "second", "standing", "standing", "fn other \"q\""]
            );
        })
        .await;
    }

    #[tokio::test]
    async fn errors_carry_status_and_retry_after() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script(
                "busy",
                Reply::TooMany {
                    retry_after_secs: 3,
                },
            );
            llm.script("broken", Reply::Status(503, "overloaded".into()));
            let client = reqwest::Client::new();

            let busy = post_chat(&client, &llm, &request(Some("busy"), "q"))
                .await
                .expect("an answer");
            assert_eq!(busy.status(), 429);
            assert_eq!(
                busy.headers().get("retry-after").map(HeaderValue::as_bytes),
                Some(&b"3"[..])
            );
            let error: Value = busy.json().await.expect("JSON");
            assert!(error["error"]["message"].is_string());

            let broken = post_chat(&client, &llm, &request(Some("broken"), "q"))
                .await
                .expect("an answer");
            assert_eq!(broken.status(), 503);
            let error: Value = broken.json().await.expect("JSON");
            assert_eq!(error["error"]["message"], "overloaded");
            assert_eq!(error["error"]["type"], "server_error");
        })
        .await;
    }

    #[tokio::test]
    async fn malformed_body_is_not_json() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script("k", Reply::Malformed);
            let client = reqwest::Client::new();
            let response = post_chat(&client, &llm, &request(Some("k"), "q"))
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200);
            let text = response.text().await.expect("a body");
            assert!(!text.is_empty());
            assert!(serde_json::from_str::<Value>(&text).is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn close_gives_the_client_a_connection_error() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script_once("k", Reply::Close);
            llm.script("k", Reply::Text("after".into()));
            let client = reqwest::Client::new();
            let error = post_chat(&client, &llm, &request(Some("k"), "q"))
                .await
                .expect_err("no response");
            assert!(!error.is_timeout(), "{error:?}");
            assert!(error.status().is_none(), "{error:?}");
            // The request was received and recorded, and the server goes on.
            assert_eq!(llm.count("k"), 1);

            // On the wire: not a byte comes back before the connection ends.
            llm.script_once("k", Reply::Close);
            let addr = llm.base_url().replace("http://", "").replace("/v1", "");
            let mut stream = TcpStream::connect(addr).await.expect("a connection");
            let body = request(Some("k"), "q").to_string();
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.expect("sent");
            stream.write_all(body.as_bytes()).await.expect("sent");
            let mut received = Vec::new();
            // A clean end (Ok) or a reset (Err) both mean "closed"; either way nothing came.
            let _ = stream.read_to_end(&mut received).await;
            assert!(
                received.is_empty(),
                "{}",
                String::from_utf8_lossy(&received)
            );
            assert_eq!(llm.count("k"), 2);

            let completion: Value = post_chat(&client, &llm, &request(Some("k"), "q"))
                .await
                .expect("an answer")
                .json()
                .await
                .expect("JSON");
            assert_eq!(content_of(&completion), "after");
        })
        .await;
    }

    #[tokio::test]
    async fn hang_times_out_while_another_request_is_answered() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script("stuck", Reply::Hang);
            llm.script("fine", Reply::Text("ok".into()));
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(300))
                .build()
                .expect("a client");
            let (stuck_body, fine_body) = (request(Some("stuck"), "q"), request(Some("fine"), "q"));
            let started = Instant::now();
            let (stuck, fine) = tokio::join!(post_chat(&client, &llm, &stuck_body), async {
                // Sent while the first one hangs.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let answer = post_chat(&client, &llm, &fine_body).await;
                (answer, started.elapsed())
            },);
            let error = stuck.expect_err("the hung request times out");
            assert!(error.is_timeout(), "{error:?}");
            let (answer, answered_after) = fine;
            let completion: Value = answer.expect("an answer").json().await.expect("JSON");
            assert_eq!(content_of(&completion), "ok");
            assert!(
                answered_after < Duration::from_millis(300),
                "{answered_after:?}"
            );
            assert_eq!(llm.count("stuck"), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn drop_shuts_the_server_and_its_connections_down() {
        within(async {
            let llm = ScriptedLlm::start().await;
            llm.script("stuck", Reply::Hang);
            let url = format!("{}/chat/completions", llm.base_url());
            let client = reqwest::Client::new();
            let body = request(Some("stuck"), "q");
            let hung = tokio::spawn({
                let (client, url) = (client.clone(), url.clone());
                async move { client.post(url).json(&body).send().await }
            });
            while llm.count("stuck") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(llm);
            let error = hung
                .await
                .expect("joined")
                .expect_err("the connection was dropped");
            assert!(!error.is_timeout(), "{error:?}");
            let refused = client.post(url).json(&request(None, "q")).send().await;
            assert!(refused.is_err(), "{refused:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn bad_requests_are_rejected_and_recorded() {
        within(async {
            let llm = ScriptedLlm::start().await;
            let client = reqwest::Client::new();
            let response = client
                .post(format!("{}/chat/completions", llm.base_url()))
                .header(KIND_HEADER, "k")
                .body("{not json")
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status(), 400);
            let error: Value = response.json().await.expect("JSON");
            assert_eq!(error["error"]["type"], "invalid_request_error");
            let recorded = llm.requests();
            assert_eq!(recorded.len(), 1);
            assert_eq!(recorded[0].kind, "k");
            assert_eq!(recorded[0].body, json!("{not json"));

            let missing = client
                .get(format!("{}/embeddings", llm.base_url()))
                .send()
                .await
                .expect("an answer");
            assert_eq!(missing.status(), 404);
        })
        .await;
    }
}
