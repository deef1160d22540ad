//! The WebSocket fan-out of issue 6: Hearth's hub serving M real WebSocket
//! clients (1k, 5k and 10k by default) against a bare tokio-tungstenite
//! broadcast server measured in the same run, with the same clients, the
//! same tick rate and frames of the same size as Hearth's deltas.
//!
//! - **Hearth** runs in process (`hearth::cli::run` of `hearth serve --no-db
//!   --synthetic-agents N --tick-rate 10 --max-connections 20000`), started
//!   afresh for every run so each run begins at the same game time. Each
//!   client connects to `/ws` offering `hearth.v1.json`, says `hello` to
//!   "valley" (an anonymous spectator) and subscribes to a random 32×32-tile
//!   rectangle of the synthetic map (`rect`) or to the whole map (`map`, the
//!   worst case: every client gets every change).
//! - **The baseline** is what a bare broadcast costs: one task per
//!   connection reading a bounded channel (the same 256 messages as
//!   Hearth's client queue), fed with `try_send` by one loop ticking at the
//!   same rate, each frame `{"type":"delta","tick":N,"pad":"…"}` padded to
//!   the mean size of the deltas Hearth's clients received in Hearth's run
//!   with the fewest clients, for the same area (a Hearth that falls behind
//!   merges ticks and sends bigger deltas), one shared buffer for every
//!   client (no per-client encoding).
//!   It answers `hello` and `subscribe` so the clients are the same code.
//!
//! Server and clients share the process and its cores; each has a runtime
//! of its own (threads `fanout-server` and `fanout-client`), so the CPU of
//! each side is read from `/proc/self/task` (the world's thread counts as
//! the server's). The clients read with a 16 KiB buffer (tungstenite
//! zero-fills its read buffer before every read; its default 128 KiB would
//! make the measuring side heavier than it need be); the baseline server
//! keeps tungstenite's default, as Hearth's `/ws` does.
//!
//! After every client has its snapshot and a warm-up, frames are logged for
//! the measurement window. Reported over the window: deltas and bytes
//! received per second (bytes: every text frame's payload); ticks seen (of
//! those the server should have sent); per tick, the delivery spread (from
//! the first client receiving that tick's delta to the last); the delivery
//! latency above the run's fastest delivery (both servers tick on a fixed
//! schedule, so a delta of tick k received at t is `t − k·period` late, less
//! the least such value of the whole run, connection phase included, when
//! the first clients are served by an idle server: the queueing and
//! scheduling delay, not counting the unloaded cost of one tick, a fraction
//! of a millisecond); each client's inter-arrival gaps (its p99; the median
//! client and the worst); errors, closes by the server, resyncs (snapshots
//! not asked for); and Hearth's own counters from `/metrics` (the hub's
//! fan-out time, queue-full drops, resyncs, disconnects).
//!
//! ```sh
//! cargo bench -p hearth-tests --bench fanout
//! FANOUT_CLIENTS=1000 FANOUT_AREAS=rect cargo bench -p hearth-tests --bench fanout
//! ```
//!
//! Settings, as flags after `--` or from the environment: `FANOUT_CLIENTS`
//! (`1000,5000,10000`), `FANOUT_AREAS` (`rect,map`), `FANOUT_AGENTS` (1000),
//! `FANOUT_SECONDS` (10), `FANOUT_WARMUP` (2 s), `FANOUT_TICK_RATE` (10),
//! `FANOUT_BASELINE_READ_BUFFER` (131072 bytes), `FANOUT_FRAME_BYTES` (the
//! baseline's frame size, instead of the measured one).
//!
//! 10k clients need about 20,500 file descriptors (both ends of every
//! connection are in this process): the bench raises its own limit with
//! `prlimit` when it may (CAP_SYS_RESOURCE), or run it under `ulimit -n
//! 65536`; a count that does not fit is replaced by the largest that does,
//! and the report says so. BENCHMARKS.md records the figures.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hearth_tests::server::Server;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The subprotocol Hearth requires.
const SUBPROTOCOL: &str = "hearth.v1.json";
/// Side of the subscribed rectangle, in tiles.
const RECT: u16 = 32;
/// Hearth's default outbound queue per client, used by the baseline too.
const QUEUE: usize = 256;
/// Messages the baseline writes before one flush (Hearth's `WRITE_BATCH`).
const WRITE_BATCH: usize = 64;
/// Handshakes (connect, hello, subscribe) under way at once.
const CONNECTING: usize = 128;
/// Longest a client's handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Frames are logged from this long before the window, so that a tick
/// whose first delivery falls in the window has all its deliveries.
const GRACE: Duration = Duration::from_secs(1);
/// File descriptors kept for everything but the connections.
const SPARE_FDS: u64 = 512;
/// The clients' read buffer: tungstenite zero-fills its read buffer up to
/// this size before every read, so the default 128 KiB would make the
/// measuring clients needlessly heavy (the same clients measure both
/// servers).
const CLIENT_READ_BUFFER: usize = 16 * 1024;
const CLIENT_THREADS: &str = "fanout-client";
const SERVER_THREADS: &str = "fanout-server";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
enum AreaKind {
    /// A random 32×32-tile rectangle per client.
    Rect,
    /// The whole map.
    Map,
}

impl AreaKind {
    fn label(self) -> &'static str {
        match self {
            AreaKind::Rect => "32×32",
            AreaKind::Map => "map",
        }
    }
}

/// WebSocket fan-out: Hearth's hub against a bare broadcast.
#[derive(Debug, Parser)]
struct Args {
    /// Client counts, one run of each server per count and area.
    #[arg(
        long,
        env = "FANOUT_CLIENTS",
        value_delimiter = ',',
        default_value = "1000,5000,10000"
    )]
    clients: Vec<usize>,
    /// Areas the clients subscribe to.
    #[arg(
        long,
        env = "FANOUT_AREAS",
        value_delimiter = ',',
        default_value = "rect,map"
    )]
    areas: Vec<AreaKind>,
    /// Synthetic agents in Hearth's world.
    #[arg(long, env = "FANOUT_AGENTS", default_value_t = 1000)]
    agents: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, env = "FANOUT_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Wait after the last client has its snapshot, in seconds.
    #[arg(long, env = "FANOUT_WARMUP", default_value_t = 2)]
    warmup: u64,
    #[arg(long, env = "FANOUT_TICK_RATE", default_value_t = 10)]
    tick_rate: u32,
    /// The baseline server's read buffer per connection, in bytes:
    /// tungstenite's default, which Hearth's `/ws` (axum) uses too.
    /// tungstenite zero-fills this much before every read attempt.
    #[arg(long, env = "FANOUT_BASELINE_READ_BUFFER", default_value_t = 128 * 1024)]
    baseline_read_buffer: usize,
    /// The baseline's frame size, in bytes (default: the mean size of
    /// Hearth's deltas in its run with the fewest clients, per area).
    #[arg(long, env = "FANOUT_FRAME_BYTES")]
    frame_bytes: Option<usize>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let largest = args.clients.iter().copied().max().unwrap_or(0) as u64;
    let fds = raise_fd_limit(2 * largest + SPARE_FDS);
    let server = runtime(SERVER_THREADS);
    let clients = runtime(CLIENT_THREADS);
    let report = clients.block_on(run_all(&args, server.handle().clone(), fds));
    let mut out = std::io::stdout().lock();
    out.write_all(report.as_bytes()).expect("write the report");
    drop(clients);
    server.shutdown_timeout(Duration::from_secs(5));
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The soft and hard limits on open files.
fn fd_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..].split_whitespace();
    let mut value = || -> Option<u64> {
        match v.next()? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    };
    Some((value()?, value()?))
}

/// Raises this process's limit on open files to `need` when it is lower
/// (`prlimit` on itself: the workspace's `nix` has no `resource` feature
/// and the lints forbid `unsafe`); returns the limit in force.
fn raise_fd_limit(need: u64) -> u64 {
    let Some((soft, hard)) = fd_limits() else {
        return u64::MAX;
    };
    if soft >= need {
        return soft;
    }
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={need}:{}", need.max(hard)))
        .status();
    let now = fd_limits().map_or(soft, |(s, _)| s);
    eprintln!(
        "open files: {soft} (hard {hard}), {need} needed; prlimit: {}; now {now}",
        match status {
            Ok(s) if s.success() => "ok".to_owned(),
            Ok(s) => format!("{s}"),
            Err(e) => e.to_string(),
        }
    );
    now
}

async fn run_all(args: &Args, server: Handle, fds: u64) -> String {
    let map = hearth_content::synthetic::world(args.agents, 1).map;
    let (width, height) = (map.width, map.height);
    eprintln!(
        "fanout: {} synthetic agents on a {width}×{height}-tile map, {} Hz, window {} s",
        args.agents, args.tick_rate, args.seconds
    );
    let mut rows: Vec<(Run, Run)> = Vec::new();
    let mut notes = Vec::new();
    // the baseline's frames: the mean size of Hearth's deltas in its run
    // with the fewest clients, per area (a Hearth that falls behind merges
    // ticks, and its deltas grow with the backlog, not with the world)
    let mut frame_bytes: HashMap<AreaKind, usize> = HashMap::new();
    let mut sizes = args.clients.clone();
    sizes.sort_unstable();
    sizes.dedup();
    for asked in sizes {
        let mut m = asked;
        if 2 * m as u64 + SPARE_FDS > fds {
            m = (fds.saturating_sub(SPARE_FDS) / 2 / 100 * 100) as usize;
            let why = format!(
                "{asked} clients do not fit: both ends of every connection are in this process, \
                 about {} open files, and the limit is {fds}; ran {m} instead",
                2 * asked as u64 + SPARE_FDS
            );
            eprintln!("{why}");
            notes.push(why);
            if m == 0 {
                continue;
            }
        }
        for &area in &args.areas {
            let subscribes = subscriptions(m, area, width, height);
            eprintln!("--- {m} clients, area {}: Hearth", area.label());
            let hearth = Hearth::start(args, server.clone()).await;
            let h = measure(
                "hearth",
                &hearth.ws_url(),
                Some(hearth.metrics_url()),
                &subscribes,
                area,
                args,
            )
            .await;
            hearth.stop().await;
            eprintln!("{}", h.summary());
            let frame_len = args.frame_bytes.unwrap_or_else(|| {
                *frame_bytes.entry(area).or_insert_with(|| {
                    if h.mean_delta_bytes >= 1.0 {
                        h.mean_delta_bytes.round() as usize
                    } else {
                        1024
                    }
                })
            });
            eprintln!(
                "--- {m} clients, area {}: baseline, {frame_len}-byte frames",
                area.label()
            );
            let base = Baseline::start(&server, frame_len, args).await;
            let mut b = measure("baseline", &base.url(), None, &subscribes, area, args).await;
            b.server_dropped = Some(base.stop().await);
            b.frame_bytes = frame_len;
            eprintln!("{}", b.summary());
            rows.push((h, b));
        }
    }
    report(args, width, height, &rows, &notes)
}

/// One `subscribe` frame per client.
fn subscriptions(m: usize, area: AreaKind, width: u16, height: u16) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(6);
    (0..m)
        .map(|_| {
            let area = match area {
                AreaKind::Map => json!({"x": 0, "y": 0, "w": width, "h": height}),
                AreaKind::Rect => json!({
                    "x": rng.random_range(0..=width.saturating_sub(RECT)),
                    "y": rng.random_range(0..=height.saturating_sub(RECT)),
                    "w": RECT,
                    "h": RECT,
                }),
            };
            json!({"type": "subscribe", "id": 2, "area": area}).to_string()
        })
        .collect()
}

/// Hearth in process (`hearth_tests::server`), on the server's runtime.
struct Hearth {
    server: Server,
}

impl Hearth {
    async fn start(args: &Args, server: Handle) -> Self {
        let server = Server::builder()
            .runtime(server)
            .synthetic_agents(args.agents)
            .args(["--tick-rate".to_owned(), args.tick_rate.to_string()])
            .args(["--max-connections", "20000"])
            .start()
            .await;
        Self { server }
    }

    fn ws_url(&self) -> String {
        self.server.ws_url()
    }

    fn metrics_url(&self) -> String {
        format!("{}/metrics", self.server.http_url())
    }

    async fn stop(self) {
        if let Err(e) = self.server.try_stop().await {
            eprintln!("{e}");
        }
    }
}

/// The bare broadcast server.
struct Baseline {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Baseline {
    async fn start(server: &Handle, frame_len: usize, args: &Args) -> Self {
        let listener = server
            .spawn(TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind task")
            .expect("a listener");
        let addr = listener.local_addr().expect("its address");
        let (stop, stopped) = watch::channel(false);
        let period = Duration::from_secs_f64(1.0 / f64::from(args.tick_rate.max(1)));
        let task = server.spawn(broadcast(
            listener,
            frame_len,
            period,
            args.baseline_read_buffer,
            stopped,
        ));
        Self { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops it; returns the frames it dropped on full queues.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

/// A delta-like frame of `len` bytes for `tick`.
fn padded(tick: u32, len: usize) -> String {
    let mut s = format!(r#"{{"type":"delta","tick":{tick},"pad":""#);
    let pad = len.saturating_sub(s.len() + 2);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// The baseline's accept loop and broadcast loop; returns the frames
/// dropped because a client's queue was full.
async fn broadcast(
    listener: TcpListener,
    frame_len: usize,
    period: Duration,
    read_buffer: usize,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let queues: Arc<Mutex<Vec<mpsc::Sender<Utf8Bytes>>>> = Arc::default();
    let tick = Arc::new(AtomicU32::new(0));
    let mut every = tokio::time::interval(period);
    let mut dropped = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(baseline_connection(
                        stream,
                        queues.clone(),
                        tick.clone(),
                        read_buffer,
                    ));
                }
            }
            _ = every.tick() => {
                let now = tick.fetch_add(1, Ordering::Relaxed) + 1;
                let frame = Utf8Bytes::from(padded(now, frame_len));
                let mut queues = queues.lock().expect("the queues");
                queues.retain(|q| match q.try_send(frame.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += 1;
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
        }
    }
    // every connection sees its queue closed and ends
    queues.lock().expect("the queues").clear();
    dropped
}

#[expect(
    clippy::result_large_err,
    reason = "the signature tungstenite's handshake callback requires"
)]
fn offer_subprotocol(_: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

/// One baseline connection: `hello` → `welcome`, `subscribe` → `snapshot`,
/// then whatever the broadcast queues, written in batches.
async fn baseline_connection(
    stream: TcpStream,
    queues: Arc<Mutex<Vec<mpsc::Sender<Utf8Bytes>>>>,
    tick: Arc<AtomicU32>,
    read_buffer: usize,
) {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, offer_subprotocol, Some(config))
            .await
    else {
        return;
    };
    let mut queue = loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => return,
        };
        // written by hand with `type` first, as Hearth writes (serde_json sorts keys)
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let id = &v["id"];
        let answer = match v["type"].as_str() {
            Some("hello") => format!(r#"{{"type":"welcome","id":{id},"role":"spectator"}}"#),
            Some("subscribe") => {
                let (tx, rx) = mpsc::channel(QUEUE);
                queues.lock().expect("the queues").push(tx);
                let now = tick.load(Ordering::Relaxed);
                let snapshot =
                    format!(r#"{{"type":"snapshot","id":{id},"tick":{now},"entities":[]}}"#);
                if ws.send(Message::Text(snapshot.into())).await.is_err() {
                    return;
                }
                break rx;
            }
            _ => format!(r#"{{"type":"error","id":{id},"code":"unknown_type"}}"#),
        };
        if ws.send(Message::Text(answer.into())).await.is_err() {
            return;
        }
    };
    let (mut sink, mut incoming) = ws.split();
    loop {
        tokio::select! {
            out = queue.recv() => {
                let Some(first) = out else {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                };
                let mut next = Some(first);
                let mut written = 0;
                while let Some(frame) = next.take() {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                    written += 1;
                    if written < WRITE_BATCH {
                        next = queue.try_recv().ok();
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delta,
    Event,
    Snapshot,
    Other,
}

/// One text frame received: when (µs after the run's epoch), its tick, its
/// type and its length.
#[derive(Debug, Clone, Copy)]
struct Frame {
    t: u32,
    tick: u32,
    kind: Kind,
    len: u32,
}

/// How a connection ended before the run did.
#[derive(Debug)]
enum End {
    Closed(u16, String),
    Error(String),
    Eof,
}

#[derive(Debug, Default)]
struct ClientLog {
    handshake_error: Option<String>,
    ended: Option<End>,
    frames: Vec<Frame>,
    snapshot_bytes: usize,
}

/// What the clients of one run share.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// Frames are logged from this many µs after `epoch` (never, until set).
    record_from: AtomicU64,
    ready: AtomicUsize,
    failed: AtomicUsize,
    game_time: OnceLock<String>,
    /// The tick period, in µs.
    period_us: f64,
    /// The least `t − tick·period` of any delta of the run, the window or
    /// before it (the first clients are served by an idle server): zero
    /// latency.
    fastest: AtomicI64,
}

impl Shared {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The type and tick of a server frame, read from its first bytes: Hearth
/// writes `{"type":"delta","tick":N,…` (the baseline too).
fn classify(text: &str) -> (Kind, u32) {
    let head = &text.as_bytes()[..text.len().min(96)];
    let kind = if head.starts_with(br#"{"type":"delta""#) {
        Kind::Delta
    } else if head.starts_with(br#"{"type":"event""#) {
        Kind::Event
    } else if head.starts_with(br#"{"type":"snapshot""#) {
        Kind::Snapshot
    } else {
        Kind::Other
    };
    let key = br#""tick":"#;
    let tick = head
        .windows(key.len())
        .position(|w| w == key)
        .map_or(0, |at| {
            head[at + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u32, |n, &b| {
                    n.wrapping_mul(10).wrapping_add(u32::from(b - b'0'))
                })
        });
    (kind, tick)
}

async fn next_json(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| format!("bad JSON: {e}"));
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!(
                    "closed {}",
                    c.map_or_else(String::new, |c| format!(
                        "{} {}",
                        u16::from(c.code),
                        c.reason
                    ))
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

/// Connects, says hello, subscribes and reads the snapshot.
async fn handshake(
    url: &str,
    subscribe: &str,
    shared: &Shared,
    log: &mut ClientLog,
) -> Result<Ws, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let hello = json!({"type": "hello", "id": 1, "world": "valley"}).to_string();
    ws.send(Message::Text(hello.into()))
        .await
        .map_err(|e| e.to_string())?;
    let welcome = next_json(&mut ws).await?;
    if welcome["type"] != "welcome" {
        return Err(format!("hello answered with {welcome}"));
    }
    if let Some(t) = welcome["game_time"].as_str() {
        let _ = shared.game_time.set(t.to_owned());
    }
    ws.send(Message::Text(subscribe.into()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let Some(frame) = ws.next().await else {
            return Err("closed before the snapshot".into());
        };
        match frame.map_err(|e| e.to_string())? {
            Message::Text(t) => match classify(&t).0 {
                Kind::Snapshot => {
                    log.snapshot_bytes = t.len();
                    return Ok(ws);
                }
                Kind::Other => return Err(format!("subscribe answered with {t}")),
                Kind::Delta | Kind::Event => {}
            },
            Message::Close(c) => return Err(format!("closed: {c:?}")),
            _ => {}
        }
    }
}

async fn client(
    url: String,
    subscribe: String,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let permit = gate.acquire_owned().await;
    let shook = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&url, &subscribe, &shared, &mut log),
    )
    .await;
    drop(permit);
    let mut ws = match shook {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            log.handshake_error = Some(e);
            shared.failed.fetch_add(1, Ordering::AcqRel);
            return log;
        }
        Err(_) => {
            log.handshake_error = Some("handshake timed out".into());
            shared.failed.fetch_add(1, Ordering::AcqRel);
            return log;
        }
    };
    shared.ready.fetch_add(1, Ordering::AcqRel);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = ws.next() => {
                let now = shared.micros(Instant::now());
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        let (kind, tick) = classify(&t);
                        if kind == Kind::Delta {
                            shared.fastest.fetch_min(
                                now as i64 - (f64::from(tick) * shared.period_us) as i64,
                                Ordering::Relaxed,
                            );
                        }
                        if now >= shared.record_from.load(Ordering::Relaxed) {
                            log.frames.push(Frame {
                                t: now as u32,
                                tick,
                                kind,
                                len: t.len() as u32,
                            });
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        log.ended = Some(c.map_or(End::Closed(1005, String::new()), |c| {
                            End::Closed(u16::from(c.code), c.reason.to_string())
                        }));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        log.ended = Some(End::Error(e.to_string()));
                        break;
                    }
                    None => {
                        log.ended = Some(End::Eof);
                        break;
                    }
                }
            }
        }
    }
    if log.ended.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    log
}

/// CPU seconds of this process's threads, by thread id, with their names.
fn thread_cpu() -> HashMap<u32, (String, f64)> {
    // USER_HZ: 100 on every Linux this runs on
    const TICKS: f64 = 100.0;
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // after the name: state is field 0, utime 11, stime 12
        out.insert(
            tid,
            (comm.trim().to_owned(), (ticks(11) + ticks(12)) / TICKS),
        );
    }
    out
}

/// CPU seconds spent between two readings by the server's threads and by
/// the clients' (with the main thread, which only waits).
fn cpu_split(
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
) -> (f64, f64) {
    let main = std::process::id();
    let (mut server, mut clients) = (0.0, 0.0);
    for (tid, (name, secs)) in after {
        let spent = secs - before.get(tid).map_or(0.0, |b| b.1);
        if name == CLIENT_THREADS || *tid == main {
            clients += spent;
        } else {
            server += spent;
        }
    }
    (server, clients)
}

/// The sum of the samples of `name` (no labels) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| *k == name)
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: Option<&str>) -> String {
    let Some(url) = url else {
        return String::new();
    };
    match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Hearth's counters over the window.
#[derive(Debug, Clone, Copy, Default)]
struct HubCounters {
    fanout_mean_ms: f64,
    fanouts: f64,
    dropped_messages: f64,
    resyncs: f64,
    disconnects: f64,
    events_dropped: f64,
    /// The deepest client queue seen (sampled once a second).
    deepest_queue: f64,
}

impl HubCounters {
    fn between(before: &str, after: &str) -> Self {
        let d = |name: &str| metric(after, name) - metric(before, name);
        let fanouts = d("hearth_hub_fanout_seconds_count");
        Self {
            fanout_mean_ms: if fanouts > 0.0 {
                d("hearth_hub_fanout_seconds_sum") / fanouts * 1e3
            } else {
                f64::NAN
            },
            fanouts,
            dropped_messages: d("hearth_hub_dropped_messages_total"),
            resyncs: d("hearth_hub_resyncs_total"),
            disconnects: d("hearth_hub_disconnects_total"),
            events_dropped: d("hearth_hub_events_dropped_total"),
            deepest_queue: metric(after, "hearth_client_queue_deepest"),
        }
    }
}

/// One server's run with M clients.
#[derive(Debug, Default)]
struct Run {
    server: &'static str,
    area: &'static str,
    clients: usize,
    connected: usize,
    connect_secs: f64,
    handshake_errors: BTreeMap<String, usize>,
    seconds: f64,
    deltas_per_s: f64,
    events_per_s: f64,
    bytes_per_s: f64,
    mean_delta_bytes: f64,
    mean_snapshot_bytes: f64,
    ticks_seen: usize,
    ticks_expected: usize,
    /// Mean share of the connected clients that got each tick seen.
    coverage: f64,
    spread_ms: [f64; 3],
    latency_ms: [f64; 3],
    /// The median client's p99 gap, the worst client's, the longest gap.
    gap_ms: [f64; 3],
    server_cpu: f64,
    client_cpu: f64,
    closes: BTreeMap<u16, usize>,
    close_reasons: BTreeMap<String, usize>,
    read_errors: BTreeMap<String, usize>,
    eofs: usize,
    resyncs: usize,
    game_time: String,
    hub: Option<HubCounters>,
    server_dropped: Option<u64>,
    /// The baseline's frame size.
    frame_bytes: usize,
}

/// The value at quantile `q` of sorted samples (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// Connects M clients, waits for their snapshots and the warm-up, logs the
/// window and reduces the logs.
async fn measure(
    server: &'static str,
    url: &str,
    metrics_url: Option<String>,
    subscribes: &[String],
    area: AreaKind,
    args: &Args,
) -> Run {
    let m = subscribes.len();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        record_from: AtomicU64::new(u64::MAX),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        game_time: OnceLock::new(),
        period_us: 1e6 / f64::from(args.tick_rate.max(1)),
        fastest: AtomicI64::new(i64::MAX),
    });
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = subscribes
        .iter()
        .map(|s| {
            tokio::spawn(client(
                url.to_owned(),
                s.clone(),
                shared.clone(),
                gate.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120 + m as u64 / 50);
    let mut last_report = started;
    while shared.ready.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire) < m
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {} connected, {} failed after {:.0} s",
                shared.ready.load(Ordering::Acquire),
                shared.failed.load(Ordering::Acquire),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let warm = Instant::now() + Duration::from_secs(args.warmup);
    let window_start = warm.max(Instant::now() + GRACE);
    let window_end = window_start + Duration::from_secs(args.seconds);
    shared
        .record_from
        .store(shared.micros(window_start - GRACE), Ordering::Release);
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_before = thread_cpu();
    let metrics_before = scrape(metrics_url.as_deref()).await;
    // the deepest client queue, sampled once a second
    let mut deepest: f64 = 0.0;
    loop {
        let next = (Instant::now() + Duration::from_secs(1)).min(window_end);
        tokio::time::sleep_until(next.into()).await;
        if next >= window_end {
            break;
        }
        if metrics_url.is_some() {
            let text = scrape(metrics_url.as_deref()).await;
            deepest = deepest.max(metric(&text, "hearth_client_queue_deepest"));
        }
    }
    let cpu_after = thread_cpu();
    let metrics_after = scrape(metrics_url.as_deref()).await;
    // the last ticks of the window get their stragglers
    tokio::time::sleep(GRACE).await;
    let _ = stop.send(true);
    let mut logs = Vec::with_capacity(m);
    for t in tasks {
        logs.push(t.await.unwrap_or_default());
    }
    let (server_cpu, client_cpu) = cpu_split(&cpu_before, &cpu_after);
    let seconds = (window_end - window_start).as_secs_f64();
    let mut run = reduce(
        &logs,
        shared.micros(window_start),
        shared.micros(window_end),
        shared.period_us,
        shared.fastest.load(Ordering::Acquire),
    );
    run.server = server;
    run.area = area.label();
    run.clients = m;
    run.connect_secs = connect_secs;
    run.seconds = seconds;
    run.ticks_expected = (seconds * f64::from(args.tick_rate)).round() as usize;
    run.server_cpu = server_cpu / seconds * 100.0;
    run.client_cpu = client_cpu / seconds * 100.0;
    run.game_time = shared.game_time.get().cloned().unwrap_or_default();
    if metrics_url.is_some() {
        let mut hub = HubCounters::between(&metrics_before, &metrics_after);
        hub.deepest_queue = hub.deepest_queue.max(deepest);
        run.hub = Some(hub);
    }
    run
}

/// The figures of one run from its clients' logs; the window is
/// `[start, end)` in µs after the epoch.
fn reduce(logs: &[ClientLog], start: u64, end: u64, period_us: f64, fastest: i64) -> Run {
    let mut run = Run::default();
    let within = |t: u32| (start..end).contains(&u64::from(t));
    let seconds = (end - start) as f64 / 1e6;
    // per tick: first and last delivery, and how many
    let mut ticks: HashMap<u32, (u32, u32, usize)> = HashMap::new();
    let mut deltas = 0usize;
    let mut delta_bytes = 0u64;
    let mut events = 0usize;
    let mut bytes = 0u64;
    let mut lateness: Vec<i64> = Vec::new();
    let mut client_p99: Vec<u64> = Vec::new();
    let mut longest_gap = 0u64;
    let mut snapshot_bytes = 0usize;
    for log in logs {
        if let Some(e) = &log.handshake_error {
            // one entry per kind of error, not per port number
            let kind: String = e.chars().take(60).collect();
            *run.handshake_errors.entry(kind).or_default() += 1;
            continue;
        }
        run.connected += 1;
        snapshot_bytes += log.snapshot_bytes;
        match &log.ended {
            Some(End::Closed(code, reason)) => {
                *run.closes.entry(*code).or_default() += 1;
                *run.close_reasons.entry(reason.clone()).or_default() += 1;
            }
            Some(End::Error(e)) => *run.read_errors.entry(e.clone()).or_default() += 1,
            Some(End::Eof) => run.eofs += 1,
            None => {}
        }
        let mut gaps: Vec<u64> = Vec::new();
        let mut last: Option<u32> = None;
        for f in &log.frames {
            if f.kind == Kind::Delta {
                let slot = ticks.entry(f.tick).or_insert((f.t, f.t, 0));
                slot.0 = slot.0.min(f.t);
                slot.1 = slot.1.max(f.t);
                slot.2 += 1;
            }
            if !within(f.t) {
                continue;
            }
            bytes += u64::from(f.len);
            match f.kind {
                Kind::Delta => {
                    deltas += 1;
                    delta_bytes += u64::from(f.len);
                    lateness.push(i64::from(f.t) - (f64::from(f.tick) * period_us) as i64);
                    if let Some(l) = last {
                        gaps.push(u64::from(f.t - l));
                    }
                    last = Some(f.t);
                }
                Kind::Event => events += 1,
                Kind::Snapshot => run.resyncs += 1,
                Kind::Other => {}
            }
        }
        gaps.sort_unstable();
        if let Some(&g) = gaps.last() {
            longest_gap = longest_gap.max(g);
            client_p99.push(quantile(&gaps, 0.99));
        }
    }
    run.deltas_per_s = deltas as f64 / seconds;
    run.events_per_s = events as f64 / seconds;
    run.bytes_per_s = bytes as f64 / seconds;
    run.mean_delta_bytes = if deltas > 0 {
        delta_bytes as f64 / deltas as f64
    } else {
        0.0
    };
    run.mean_snapshot_bytes = if run.connected > 0 {
        snapshot_bytes as f64 / run.connected as f64
    } else {
        0.0
    };
    let seen: Vec<(u32, u32, usize)> = ticks
        .into_values()
        .filter(|&(first, _, _)| within(first))
        .collect();
    run.ticks_seen = seen.len();
    run.coverage = if seen.is_empty() || run.connected == 0 {
        0.0
    } else {
        seen.iter().map(|s| s.2).sum::<usize>() as f64 / (seen.len() * run.connected) as f64
    };
    let mut spread: Vec<u64> = seen.iter().map(|&(a, b, _)| u64::from(b - a)).collect();
    spread.sort_unstable();
    run.spread_ms = [0.5, 0.99, 1.0].map(|q| ms(quantile(&spread, q)));
    let fastest = lateness.iter().copied().min().unwrap_or(0).min(fastest);
    let mut late: Vec<u64> = lateness.iter().map(|&l| (l - fastest) as u64).collect();
    late.sort_unstable();
    run.latency_ms = [0.5, 0.99, 1.0].map(|q| ms(quantile(&late, q)));
    client_p99.sort_unstable();
    run.gap_ms = [
        ms(quantile(&client_p99, 0.5)),
        ms(client_p99.last().copied().unwrap_or(0)),
        ms(longest_gap),
    ];
    run
}

impl Run {
    fn errors(&self) -> String {
        let mut s = String::new();
        let failed: usize = self.handshake_errors.values().sum();
        if failed > 0 {
            let _ = write!(s, "{failed} refused; ");
        }
        for (code, n) in &self.closes {
            let _ = write!(s, "{n}× close {code}; ");
        }
        let errors: usize = self.read_errors.values().sum();
        if errors > 0 {
            let _ = write!(s, "{errors} read errors; ");
        }
        if self.eofs > 0 {
            let _ = write!(s, "{} EOF; ", self.eofs);
        }
        if self.resyncs > 0 {
            let _ = write!(s, "{} resyncs; ", self.resyncs);
        }
        if let Some(d) = self.server_dropped.filter(|&d| d > 0) {
            let _ = write!(s, "{d} frames dropped on full queues; ");
        }
        if s.is_empty() {
            "none".into()
        } else {
            s.trim_end_matches("; ").to_owned()
        }
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "  {}: {}/{} connected in {:.1} s, {:.0} deltas/s ({:.0} B mean), {:.0} events/s, {:.1} MB/s, \
             ticks {}/{}, coverage {:.2}, spread {:.1}/{:.1}/{:.1} ms, latency {:.1}/{:.1}/{:.1} ms, \
             gap p99 {:.0}/{:.0} ms (longest {:.0}), CPU server {:.0}% clients {:.0}%, {}",
            self.server,
            self.connected,
            self.clients,
            self.connect_secs,
            self.deltas_per_s,
            self.mean_delta_bytes,
            self.events_per_s,
            self.bytes_per_s / 1e6,
            self.ticks_seen,
            self.ticks_expected,
            self.coverage,
            self.spread_ms[0],
            self.spread_ms[1],
            self.spread_ms[2],
            self.latency_ms[0],
            self.latency_ms[1],
            self.latency_ms[2],
            self.gap_ms[0],
            self.gap_ms[1],
            self.gap_ms[2],
            self.server_cpu,
            self.client_cpu,
            self.errors(),
        );
        if let Some(h) = &self.hub {
            let _ = write!(
                s,
                "\n  hub: {:.0} fan-outs, mean {:.2} ms, {:.0} queue-full drops, {:.0} resyncs, \
                 {:.0} disconnects, {:.0} events dropped, deepest queue {:.0}; \
                 game time at start {}",
                h.fanouts,
                h.fanout_mean_ms,
                h.dropped_messages,
                h.resyncs,
                h.disconnects,
                h.events_dropped,
                h.deepest_queue,
                self.game_time
            );
        }
        if let Some(d) = self.server_dropped {
            let _ = write!(s, "\n  baseline: {d} frames dropped on full queues");
        }
        for (e, n) in self.handshake_errors.iter().take(3) {
            let _ = write!(s, "\n  handshake error ×{n}: {e}");
        }
        for (e, n) in self.read_errors.iter().take(3) {
            let _ = write!(s, "\n  read error ×{n}: {e}");
        }
        for (r, n) in self.close_reasons.iter().take(3) {
            let _ = write!(s, "\n  close reason ×{n}: {r}");
        }
        s
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn report(args: &Args, width: u16, height: u16, rows: &[(Run, Run)], notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nWebSocket fan-out: {} synthetic agents on a {width}×{height}-tile map, {} Hz, \
         {} s window after a {} s warm-up\n",
        args.agents, args.tick_rate, args.seconds, args.warmup
    );
    let _ = writeln!(
        s,
        "| clients | area | server | connect | deltas/s | events/s | MB/s | delta B | ticks seen | \
         spread p50/p99/max ms | latency p50/p99/max ms | gap p99 median/worst ms | \
         CPU server/clients | errors, closes |"
    );
    let _ = writeln!(s, "|{}", " --- |".repeat(14));
    for (h, b) in rows {
        for r in [h, b] {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}/{} in {:.0} s | {:.0} | {:.0} | {:.1} | {:.0} | {}/{} | \
                 {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} | {:.0}% / {:.0}% | {} |",
                r.clients,
                r.area,
                r.server,
                r.connected,
                r.clients,
                r.connect_secs,
                r.deltas_per_s,
                r.events_per_s,
                r.bytes_per_s / 1e6,
                r.mean_delta_bytes,
                r.ticks_seen,
                r.ticks_expected,
                r.spread_ms[0],
                r.spread_ms[1],
                r.spread_ms[2],
                r.latency_ms[0],
                r.latency_ms[1],
                r.latency_ms[2],
                r.gap_ms[0],
                r.gap_ms[1],
                r.server_cpu,
                r.client_cpu,
                r.errors(),
            );
        }
    }
    let _ = writeln!(s, "\nHearth / baseline:\n");
    let _ = writeln!(
        s,
        "| clients | area | deltas/s | bytes/s | spread p99 | latency p50 | latency p99 | \
         worst gap p99 | server CPU |"
    );
    let _ = writeln!(s, "|{}", " --- |".repeat(9));
    for (h, b) in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            h.clients,
            h.area,
            ratio(h.deltas_per_s, b.deltas_per_s),
            ratio(h.bytes_per_s, b.bytes_per_s),
            ratio(h.spread_ms[1], b.spread_ms[1]),
            ratio(h.latency_ms[0], b.latency_ms[0]),
            ratio(h.latency_ms[1], b.latency_ms[1]),
            ratio(h.gap_ms[1], b.gap_ms[1]),
            ratio(h.server_cpu, b.server_cpu),
        );
    }
    let _ = writeln!(s, "\nHearth's hub over the window (from /metrics):\n");
    let _ = writeln!(
        s,
        "| clients | area | fan-outs | fan-out mean ms | deepest queue | queue-full drops | \
         resyncs | disconnects | coverage | snapshot B |"
    );
    let _ = writeln!(s, "|{}", " --- |".repeat(10));
    for (h, _) in rows {
        let c = h.hub.unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} |",
            h.clients,
            h.area,
            c.fanouts,
            c.fanout_mean_ms,
            c.deepest_queue,
            c.dropped_messages,
            c.resyncs,
            c.disconnects,
            h.coverage,
            h.mean_snapshot_bytes,
        );
    }
    for note in notes {
        let _ = writeln!(s, "\n{note}");
    }
    s
}
