//! `GET /ws`: one task per game client connection. It refuses a request
//! that does not offer the `hearth.v1.json` subprotocol (HTTP 400) or comes
//! when the server is full (503); after the upgrade it waits for `hello`,
//! checks the token (or admits an anonymous spectator where the world does),
//! says `welcome`, registers with the hub, then relays: frames read are
//! decoded (errors answered with `error` frames), rate-limited by a token
//! bucket and handed to the hub; what the hub queues is written in batches
//! (fed, then flushed once). It pings, closes idle connections, closes with
//! 1008 after repeated abuse, 1009 for a frame too large to read, and 1001
//! when the server shuts down. Touches its socket, the hub's channel and the
//! accounts (token checks).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hearth_db::game_time;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::auth::{self, Auth};
use super::dispatch::{Hub, HubMsg, Session};
use super::hub::Outbound;
use hearth_protocol::{
    self as protocol, ClientMessage, ErrorCode, Limits, ProtocolError, Role, ServerMessage, Welcome,
};

/// Limits of the WebSocket surface; every one is a `hearth serve` flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetLimits {
    /// Largest text frame answered with an error instead of read whole.
    pub max_message_bytes: usize,
    /// Commands per second per connection (token bucket refill)…
    pub commands_per_second: u32,
    /// …and the bucket's size.
    pub burst: u32,
    pub max_connections: usize,
    /// Messages waiting for a slow client before it is behind.
    pub queue: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub hello_timeout: Duration,
    /// Errors and rate-limit hits within [`ABUSE_WINDOW`] that close the
    /// connection with 1008.
    pub max_abuse: u32,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: protocol::DEFAULT_MAX_MESSAGE_BYTES,
            commands_per_second: 20,
            burst: 40,
            max_connections: 20_000,
            queue: 256,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            max_abuse: 50,
        }
    }
}

/// The window in which abuse is counted.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Frames larger than this many times the message limit are not read at
/// all: the connection is closed with 1009.
const UNREADABLE_FACTOR: usize = 4;
/// Bytes of each connection's read buffer.
const READ_BUFFER: usize = 8 * 1024;
/// Messages written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a closing connection waits for the client's own close frame.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// What `/ws` needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct WsState {
    pub hub: Hub,
    pub auth: Option<Auth>,
    pub world: String,
    /// Where the viewer fetches the map (`/maps/<file>`).
    pub map_url: String,
    pub tick_rate: u32,
    pub limits: NetLimits,
    /// Admit clients without a token as spectators when there are no
    /// accounts (no database).
    pub open_without_accounts: bool,
    pub connections: Arc<AtomicUsize>,
    /// Becomes `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// The `/ws` route's handler.
pub async fn upgrade(
    State(state): State<WsState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == protocol::SUBPROTOCOL);
    if !offered {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "offer the WebSocket subprotocol '{}' (Sec-WebSocket-Protocol); see docs/protocol.md\n",
                protocol::SUBPROTOCOL
            ),
        )
            .into_response();
    }
    let count = state.connections.fetch_add(1, Ordering::AcqRel);
    if count >= state.limits.max_connections {
        state.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::counter!("hearth_connections_refused_total").increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is full ({} connections); try again later\n",
                state.limits.max_connections
            ),
        )
            .into_response();
    }
    let guard = ConnectionGuard(state.connections.clone());
    let limit = state
        .limits
        .max_message_bytes
        .saturating_mul(UNREADABLE_FACTOR);
    // a small read buffer: tungstenite zero-fills it before every read,
    // which with the default 128 KiB was a quarter of the server's CPU with
    // 1k clients (BENCHMARKS.md, WebSocket fan-out)
    ws.protocols([protocol::SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            connection(socket, state).await;
        })
}

/// Counts a connection until it ends.
struct ConnectionGuard(Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection ended, for its close frame.
struct Closing(u16, String);

/// Counts errors and rate-limit hits in a sliding window.
#[derive(Debug)]
struct Abuse {
    hits: std::collections::VecDeque<Instant>,
    max: u32,
}

impl Abuse {
    /// Notes one; `true` when the connection has had enough.
    fn hit(&mut self, now: Instant) -> bool {
        self.hits.push_back(now);
        while self
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) > ABUSE_WINDOW)
        {
            self.hits.pop_front();
        }
        self.hits.len() >= self.max as usize
    }
}

/// A token bucket: `rate` tokens a second, at most `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst.max(1)),
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

async fn send_text(sink: &mut Sink, msg: &ServerMessage) -> bool {
    let text = protocol::encode(msg);
    metrics::counter!("hearth_bytes_out_total").increment(text.len() as u64);
    metrics::counter!("hearth_messages_out_total").increment(1);
    sink.send(Message::Text(text.into())).await.is_ok()
}

/// Sends a close frame, then reads (and drops) what the client still sends
/// until its own close frame, for at most [`CLOSE_DRAIN`]. Dropping a socket
/// with unread data makes the kernel reset the connection, and a reset can
/// discard the close frame before the client reads it (a flooding client
/// would never learn why it was cut off).
async fn close(sink: &mut Sink, stream: &mut Stream, code: u16, reason: &str) {
    let sent = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
    if sent.is_ok() {
        let drain = async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
    }
    let _ = sink.close().await;
}

fn error_frame(e: ProtocolError) -> ServerMessage {
    ServerMessage::Error(e)
}

async fn connection(socket: WebSocket, state: WsState) {
    let (mut sink, mut stream) = socket.split();
    let limits = state.limits;
    let mut abuse = Abuse {
        hits: std::collections::VecDeque::new(),
        max: limits.max_abuse,
    };
    // hello first
    let deadline = tokio::time::Instant::now() + limits.hello_timeout;
    let (hello_id, session) = loop {
        let frame = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                close(
                    &mut sink,
                    &mut stream,
                    1008,
                    "no hello within the time allowed",
                )
                .await;
                return;
            }
            Ok(None | Some(Err(_))) => return,
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                let e = ProtocolError::new(
                    ErrorCode::BadRequest,
                    "binary frames are not part of this protocol; send JSON text frames",
                );
                if !send_text(&mut sink, &error_frame(e)).await {
                    return;
                }
                continue;
            }
        };
        metrics::counter!("hearth_messages_in_total").increment(1);
        metrics::counter!("hearth_bytes_in_total").increment(text.len() as u64);
        let hello = match protocol::decode(&text, limits.max_message_bytes) {
            Ok(ClientMessage::Hello(h)) => h,
            Ok(other) => {
                let e = ProtocolError::new(
                    ErrorCode::NotReady,
                    format!("say hello before {}", other.type_name()),
                )
                .with_id(Some(other.id().clone()));
                if !send_text(&mut sink, &error_frame(e)).await {
                    return;
                }
                if abuse.hit(Instant::now()) {
                    close(&mut sink, &mut stream, 1008, "too many errors").await;
                    return;
                }
                continue;
            }
            Err(e) => {
                if !send_text(&mut sink, &error_frame(e)).await {
                    return;
                }
                if abuse.hit(Instant::now()) {
                    close(&mut sink, &mut stream, 1008, "too many errors").await;
                    return;
                }
                continue;
            }
        };
        match admit(&state, &hello).await {
            Ok(session) => break (hello.id, session),
            Err(e) => {
                // a refused hello ends the connection: there is nothing else to do on it
                let reason = e.message.chars().take(100).collect::<String>();
                let _ = send_text(&mut sink, &error_frame(e)).await;
                close(&mut sink, &mut stream, 1008, &reason).await;
                return;
            }
        }
    };
    let client = state.hub.next_client();
    let welcome = ServerMessage::Welcome(Welcome {
        id: hello_id,
        session: format!("c-{client:x}"),
        world: state.world.clone(),
        role: session.role,
        character: session.character.clone(),
        map: state.map_url.clone(),
        tick_rate: state.tick_rate,
        time_scale: state.hub.time_scale(),
        game_time: game_time::to_timestamp(state.hub.game_seconds()),
        limits: Limits {
            max_message_bytes: limits.max_message_bytes,
            commands_per_second: limits.commands_per_second,
        },
    });
    if !send_text(&mut sink, &welcome).await {
        return;
    }
    let (queue, mut outbound) = mpsc::channel::<Outbound>(limits.queue.max(2));
    if !state.hub.send(HubMsg::Connect {
        client,
        queue,
        session: session.clone(),
    }) {
        close(&mut sink, &mut stream, 1001, "the server is shutting down").await;
        return;
    }
    debug!(client, role = ?session.role, user = ?session.user, "client connected");
    let closing = relay(
        &state,
        client,
        &mut sink,
        &mut stream,
        &mut outbound,
        &mut abuse,
    )
    .await;
    state.hub.send(HubMsg::Disconnect { client });
    if let Some(Closing(code, reason)) = closing {
        debug!(client, code, reason = %reason, "closing");
        close(&mut sink, &mut stream, code, &reason).await;
    }
}

/// Checks a hello: the world, then the token (or an anonymous spectator).
async fn admit(state: &WsState, hello: &protocol::Hello) -> Result<Session, ProtocolError> {
    let id = Some(hello.id.clone());
    if hello.world != state.world {
        return Err(ProtocolError::new(
            ErrorCode::NotFound,
            format!(
                "this server runs world '{}', not '{}'",
                state.world, hello.world
            ),
        )
        .with_id(id));
    }
    let refuse = |e: auth::AuthError| {
        let code = match e.code() {
            "forbidden" => ErrorCode::Forbidden,
            "internal" => ErrorCode::Internal,
            "bad_request" => ErrorCode::NotFound,
            _ => ErrorCode::Unauthorized,
        };
        ProtocolError::new(code, e.client_message()).with_id(id.clone())
    };
    match (&state.auth, &hello.token) {
        (Some(a), Some(token)) => {
            let who = a.verify(token, &state.world).await.map_err(refuse)?;
            let role = wire_role(who.role);
            info!(user = %who.username, role = role_label(role), "client logged in");
            Ok(Session {
                role,
                character: (role == Role::Player).then(|| who.username.clone()),
                user: Some(who.username),
            })
        }
        (Some(a), None) => {
            let role = a.anonymous(&state.world).await.map_err(refuse)?;
            Ok(Session {
                role: wire_role(role),
                character: None,
                user: None,
            })
        }
        (None, Some(_)) => Err(ProtocolError::new(
            ErrorCode::Unauthorized,
            "this server runs without accounts (--no-db); connect without a token",
        )
        .with_id(id)),
        (None, None) if state.open_without_accounts => Ok(Session {
            role: Role::Spectator,
            character: None,
            user: None,
        }),
        (None, None) => Err(ProtocolError::new(
            ErrorCode::Unauthorized,
            "this world admits no anonymous spectators; log in",
        )
        .with_id(id)),
    }
}

fn wire_role(role: auth::Role) -> Role {
    match role {
        auth::Role::Admin => Role::Admin,
        auth::Role::Designer => Role::Designer,
        auth::Role::Player => Role::Player,
        auth::Role::Spectator => Role::Spectator,
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Designer => "designer",
        Role::Player => "player",
        Role::Spectator => "spectator",
    }
}

/// Relays frames both ways until the connection ends; returns the close to
/// send, if the server is the one closing.
async fn relay(
    state: &WsState,
    client: u64,
    sink: &mut Sink,
    stream: &mut Stream,
    outbound: &mut mpsc::Receiver<Outbound>,
    abuse: &mut Abuse,
) -> Option<Closing> {
    let limits = state.limits;
    let mut bucket = Bucket::new(limits.commands_per_second, limits.burst, Instant::now());
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut shutdown = state.shutdown.clone();
    if *shutdown.borrow() {
        return Some(Closing(1001, "the server is shutting down".into()));
    }
    loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    None => return None,
                    Some(Err(e)) => {
                        // tungstenite refuses a frame over its limit before reading it
                        let text = e.to_string();
                        if text.contains("too long") || text.contains("Space limit") || text.contains("size") {
                            return Some(Closing(1009, format!(
                                "frame over {} bytes", limits.max_message_bytes
                            )));
                        }
                        return None;
                    }
                    Some(Ok(frame)) => frame,
                };
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Close(_) => return None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        let e = ProtocolError::new(
                            ErrorCode::BadRequest,
                            "binary frames are not part of this protocol; send JSON text frames",
                        );
                        if !send_text(sink, &error_frame(e)).await {
                            return None;
                        }
                        if abuse.hit(Instant::now()) {
                            return Some(Closing(1008, "too many errors".into()));
                        }
                        continue;
                    }
                };
                metrics::counter!("hearth_messages_in_total").increment(1);
                metrics::counter!("hearth_bytes_in_total").increment(text.len() as u64);
                let now = Instant::now();
                let answer = if !bucket.take(now) {
                    metrics::counter!("hearth_rate_limited_total").increment(1);
                    Some(ProtocolError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "over {} commands per second; slow down",
                            limits.commands_per_second
                        ),
                    ).with_id(protocol::recover_request_id(&text)))
                } else {
                    match protocol::decode(&text, limits.max_message_bytes) {
                        Ok(message) => {
                            if !state.hub.send(HubMsg::Request { client, message }) {
                                return Some(Closing(1001, "the server is shutting down".into()));
                            }
                            None
                        }
                        Err(e) => Some(e),
                    }
                };
                if let Some(e) = answer {
                    metrics::counter!("hearth_protocol_errors_total", "code" => e.code.as_str())
                        .increment(1);
                    if !send_text(sink, &error_frame(e)).await {
                        return None;
                    }
                    if abuse.hit(now) {
                        return Some(Closing(1008, "too many errors or commands; goodbye".into()));
                    }
                }
            }
            out = outbound.recv() => {
                let Some(out) = out else {
                    // the hub let go of this client
                    return Some(Closing(1011, "the hub dropped this connection".into()));
                };
                let mut next = Some(out);
                let mut written = 0;
                while let Some(o) = next.take() {
                    match o {
                        Outbound::Text(text) => {
                            if sink.feed(Message::Text(text.as_ref().into())).await.is_err() {
                                return None;
                            }
                        }
                        Outbound::Close(code, reason) => {
                            let _ = sink.flush().await;
                            return Some(Closing(code, reason));
                        }
                    }
                    written += 1;
                    if written < WRITE_BATCH {
                        next = outbound.try_recv().ok();
                    }
                }
                if sink.flush().await.is_err() {
                    return None;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    return Some(Closing(1000, format!(
                        "idle for {} s", limits.idle_timeout.as_secs()
                    )));
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return None;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Some(Closing(1001, "the server is shutting down".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20, 40, t0);
        let burst = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(burst, 40);
        // one second later: twenty more
        let t1 = t0 + Duration::from_secs(1);
        let more = (0..100).filter(|_| b.take(t1)).count();
        assert_eq!(more, 20);
    }

    #[test]
    fn abuse_is_counted_in_a_sliding_window() {
        let t0 = Instant::now();
        let mut a = Abuse {
            hits: Default::default(),
            max: 5,
        };
        for i in 0..4 {
            assert!(!a.hit(t0 + Duration::from_secs(i * 3)));
        }
        // the first hits fell out of the window
        assert!(!a.hit(t0 + Duration::from_secs(14)));
        for _ in 0..3 {
            a.hit(t0 + Duration::from_secs(15));
        }
        assert!(a.hit(t0 + Duration::from_secs(15)));
    }
}
