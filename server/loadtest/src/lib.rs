//! `hearth loadtest`: real WebSocket clients speaking protocol v1 against a
//! running server (`--url`) or one started here on synthetic agents; each
//! subscribes to a random area and counts what it receives. Measures
//! delivery latency from each delta's `at` (when the world finished the
//! tick) to receipt, messages and bytes, resyncs, disconnects and errors by
//! kind; reads the server's tick times from its `/metrics`; shows a live
//! progress line and ends with a report and, given an SLO file, a verdict.
//! Touches the network, the SLO file, the terminal (progress), and, when it
//! starts the server itself, what `hearth serve --no-db` touches.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Latency histogram resolution and range: 0.5 ms buckets up to 30 s (an
/// overloaded server delays deltas by seconds; the percentiles should say
/// by how many).
const BUCKET_US: u64 = 500;
const BUCKETS: usize = 60_001;
/// How long a client may take to be welcomed.
const HANDSHAKE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("SLO file {file}: {message}")]
    Slo { file: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("the server started for the test failed: {0}")]
    Server(String),
    #[error("a worker process failed: {0}")]
    Worker(String),
    #[error("no client could connect to {url}: {reason}")]
    NoClient { url: String, reason: String },
}

/// What the load test does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `ws://HOST:PORT/ws` of a running server; `None`: start one here.
    pub url: Option<String>,
    /// The world the clients say hello to.
    pub world: String,
    /// Synthetic agents of the server started here.
    pub agents: usize,
    pub clients: usize,
    pub duration: Duration,
    /// Clients connect evenly over this long, at the start.
    pub ramp: Duration,
    pub seed: u64,
    /// Side of each client's square area, in tiles.
    pub area: u16,
    /// Of the server started here.
    pub tick_rate: u32,
    /// Players' actions (a walk or a line, alternately) per minute each.
    pub player_actions_per_minute: u32,
    /// Places players walk to (the map's location names); none: they only
    /// talk.
    pub places: Vec<String>,
    /// Worker processes the clients are spread over; 0 or 1: this one.
    pub procs: usize,
    /// RSS growth is measured from this long after the start; `None`: the
    /// ramp plus a tenth of the duration.
    pub warmup: Option<Duration>,
}

/// Who the clients are: anonymous spectators, spectators with a token, and
/// players (one token each).
#[derive(Debug, Clone, Default)]
pub struct Identities {
    pub spectator: Option<String>,
    pub players: Vec<String>,
}

/// Limits a run must keep (`--slo FILE`, TOML); a missing key is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub tick_p99_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
    pub max_errors: Option<u64>,
    pub max_disconnects: Option<u64>,
    pub max_resyncs: Option<u64>,
    /// Clients that must be connected at the end, as a fraction of those
    /// started (0..=1).
    pub min_connected: Option<f64>,
    /// Growth of the process's RSS from the end of the warm-up to the end
    /// of the run, in percent (soak runs; server started here only).
    pub max_rss_growth_percent: Option<f64>,
    /// The writer's lag behind the world, at most, in ms (a server with a
    /// database; at most the flush interval when it keeps up).
    pub max_flush_lag_ms: Option<f64>,
}

impl Slo {
    /// Reads an SLO file; unknown keys and bad values name the key.
    pub fn load(path: &Path) -> Result<Slo, LoadtestError> {
        let bad = |message: String| LoadtestError::Slo {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let slo: Slo = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (key, v) in [
            ("tick_p99_ms", slo.tick_p99_ms),
            ("delivery_p99_ms", slo.delivery_p99_ms),
            ("min_connected", slo.min_connected),
            ("max_rss_growth_percent", slo.max_rss_growth_percent),
            ("max_flush_lag_ms", slo.max_flush_lag_ms),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(bad(format!("`{key}` must be a number ≥ 0, not {v}")));
            }
        }
        if slo.min_connected.is_some_and(|v| v > 1.0) {
            return Err(bad("`min_connected` is a fraction, 0 to 1".into()));
        }
        Ok(slo)
    }

    /// The lines of the SLO the report misses (empty: met).
    pub fn verdict(&self, r: &Report) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(limit) = self.tick_p99_ms {
            match &r.tick_ms {
                Some(t) if t.p99 <= limit => {}
                Some(t) => out.push(format!("tick_p99_ms = {limit}: measured {:.2}", t.p99)),
                None => out.push(format!(
                    "tick_p99_ms = {limit}: the server's tick times could not be read"
                )),
            }
        }
        if let Some(limit) = self.delivery_p99_ms {
            match &r.delivery_ms {
                Some(d) if d.p99 <= limit => {}
                Some(d) => out.push(format!("delivery_p99_ms = {limit}: measured {:.2}", d.p99)),
                None => out.push(format!("delivery_p99_ms = {limit}: no delta was received")),
            }
        }
        let errors: u64 = r.errors.values().sum();
        for (key, limit, got) in [
            ("max_errors", self.max_errors, errors),
            ("max_disconnects", self.max_disconnects, r.disconnects),
            ("max_resyncs", self.max_resyncs, r.resyncs),
        ] {
            if let Some(limit) = limit
                && got > limit
            {
                out.push(format!("{key} = {limit}: measured {got}"));
            }
        }
        if let Some(limit) = self.max_rss_growth_percent {
            match r.rss_growth_percent {
                Some(g) if g <= limit => {}
                Some(g) => out.push(format!("max_rss_growth_percent = {limit}: measured {g:.1}")),
                None => out.push(format!(
                    "max_rss_growth_percent = {limit}: the server's RSS could not be read from its /metrics"
                )),
            }
        }
        if let Some(limit) = self.max_flush_lag_ms {
            match r.server.as_ref().and_then(|s| s.flush_lag_max_ms) {
                Some(l) if l <= limit => {}
                Some(l) => out.push(format!("max_flush_lag_ms = {limit}: measured {l:.0}")),
                None => out.push(format!(
                    "max_flush_lag_ms = {limit}: the server has no writer (no database)"
                )),
            }
        }
        if let Some(frac) = self.min_connected {
            let need = (frac * r.clients as f64).ceil() as usize;
            if r.connected_at_end < need {
                out.push(format!(
                    "min_connected = {frac}: {} of {} connected at the end",
                    r.connected_at_end, r.clients
                ));
            }
        }
        out
    }
}

/// p50, p99 and max, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the server's process used, from its `/metrics` (with `--procs 1`
/// and no `--url`, the clients share that process).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    pub rss_mb: f64,
    /// CPU time over wall time: 200 is both cores of two.
    pub cpu_percent: f64,
}

/// The server's side of a run, from its `/metrics`: counters' growth
/// between a scrape at the start and one at the end, the writer's lag
/// sampled every second. Writer fields are `None` without a database.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerSide {
    /// From the world finishing a tick to every subscriber's messages
    /// queued (the hub's fan-out), p50/p99/max.
    pub fanout_ms: Option<Percentiles>,
    /// How long a checkpoint (one write-behind flush) took, p50/p99/max.
    pub checkpoint_ms: Option<Percentiles>,
    /// Checkpoints committed during the run.
    pub checkpoints: Option<u64>,
    /// How often the world hands the writer a checkpoint.
    pub flush_interval_ms: Option<f64>,
    /// The writer's lag behind the world, at most.
    pub flush_lag_max_ms: Option<f64>,
    /// Rows written per second, all tables.
    pub rows_per_s: Option<f64>,
    /// Of them, memories.
    pub memories_per_s: Option<f64>,
    /// WebSocket messages and bytes the server received and sent.
    pub messages_in_per_s: Option<f64>,
    pub messages_out_per_s: Option<f64>,
    pub bytes_in_per_s: Option<f64>,
    pub bytes_out_per_s: Option<f64>,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub target: String,
    /// Agents of the server started here (unknown for `--url`).
    pub agents: Option<usize>,
    pub clients: usize,
    /// Of the clients, how many were players.
    pub players: usize,
    /// Processes the clients ran in.
    pub procs: usize,
    pub connected_at_end: usize,
    pub duration_s: f64,
    /// The server's tick time (its `/metrics`).
    pub tick_ms: Option<Percentiles>,
    /// Tick end → receipt of each delta.
    pub delivery_ms: Option<Percentiles>,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_per_s: f64,
    pub bytes_per_s: f64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub snapshots: u64,
    pub deltas: u64,
    pub events: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    /// By kind: `connect`, `handshake`, an error frame's code, `close_<code>`.
    pub errors: BTreeMap<String, u64>,
    /// The server's side (its `/metrics`).
    pub server: Option<ServerSide>,
    /// The server's process.
    pub process: Option<Usage>,
    /// The server's RSS (MB) every 10 s and at the end: (seconds since the
    /// start, MB).
    pub rss_mb_over_time: Vec<(u64, f64)>,
    /// RSS growth from the end of the warm-up (the ramp, plus a tenth of
    /// the duration) to the end, in percent.
    pub rss_growth_percent: Option<f64>,
    /// The SLO lines missed (empty when met or without an SLO).
    pub violations: Vec<String>,
}

impl Report {
    /// The report as a readable table.
    pub fn table(&self) -> String {
        let p = |x: &Option<Percentiles>| {
            x.map_or_else(
                || "n/a".to_owned(),
                |p| format!("p50 {:.2} / p99 {:.2} / max {:.2} ms", p.p50, p.p99, p.max),
            )
        };
        let mut rows = vec![
            ("target", self.target.clone()),
            (
                "agents",
                self.agents.map_or_else(|| "n/a".into(), |a| a.to_string()),
            ),
            (
                "clients",
                format!(
                    "{} ({} players, in {} process{}; {} connected at the end)",
                    self.clients,
                    self.players,
                    self.procs,
                    if self.procs == 1 { "" } else { "es" },
                    self.connected_at_end
                ),
            ),
            ("duration", format!("{:.1} s", self.duration_s)),
            ("tick time", p(&self.tick_ms)),
            ("delivery latency", p(&self.delivery_ms)),
            (
                "received",
                format!(
                    "{} messages ({:.0}/s), {:.1} MB ({:.2} MB/s)",
                    self.messages_in,
                    self.messages_per_s,
                    self.bytes_in as f64 / 1e6,
                    self.bytes_per_s / 1e6
                ),
            ),
            (
                "by type",
                format!(
                    "{} snapshots, {} deltas, {} events",
                    self.snapshots, self.deltas, self.events
                ),
            ),
            (
                "sent",
                format!(
                    "{} messages, {:.2} MB",
                    self.messages_out,
                    self.bytes_out as f64 / 1e6
                ),
            ),
            (
                "resyncs / disconnects",
                format!("{} / {}", self.resyncs, self.disconnects),
            ),
            (
                "errors",
                if self.errors.is_empty() {
                    "none".to_owned()
                } else {
                    self.errors
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            (
                "process",
                self.process.map_or_else(
                    || "n/a".to_owned(),
                    |u| format!("RSS {:.0} MB, CPU {:.0} %", u.rss_mb, u.cpu_percent),
                ),
            ),
            (
                "RSS after warm-up",
                self.rss_growth_percent
                    .map_or_else(|| "n/a".to_owned(), |g| format!("{g:+.1} %")),
            ),
        ];
        if let Some(s) = &self.server {
            let rate = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
            rows.push((
                "server in / out",
                format!(
                    "{}/{} messages/s, {}/{} bytes/s",
                    rate(s.messages_in_per_s),
                    rate(s.messages_out_per_s),
                    rate(s.bytes_in_per_s),
                    rate(s.bytes_out_per_s)
                ),
            ));
            rows.push(("fan-out time", p(&s.fanout_ms)));
            if s.flush_interval_ms.is_some() {
                rows.push(("checkpoint time", p(&s.checkpoint_ms)));
                rows.push((
                    "checkpoints",
                    format!(
                        "{} every {} ms, lag at most {} ms",
                        s.checkpoints.unwrap_or(0),
                        rate(s.flush_interval_ms),
                        rate(s.flush_lag_max_ms)
                    ),
                ));
                rows.push((
                    "flushed",
                    format!(
                        "{} rows/s, {} memories/s",
                        rate(s.rows_per_s),
                        rate(s.memories_per_s)
                    ),
                ));
            }
        }
        rows.push((
            "SLO",
            if self.violations.is_empty() {
                "met (or none given)".to_owned()
            } else {
                format!("MISSED: {}", self.violations.join("; "))
            },
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// Counters every client adds to; read live by the progress line.
#[derive(Debug)]
struct Shared {
    connected: AtomicUsize,
    messages: AtomicU64,
    bytes: AtomicU64,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    snapshots: AtomicU64,
    deltas: AtomicU64,
    events: AtomicU64,
    resyncs: AtomicU64,
    disconnects: AtomicU64,
    /// Delivery latency, whole run and the current progress window.
    total: Histogram,
    window: Histogram,
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            connected: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            deltas: AtomicU64::new(0),
            events: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            total: Histogram::new(),
            window: Histogram::new(),
            errors: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn error(&self, kind: impl Into<String>) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *e.entry(kind.into()).or_default() += 1;
    }
}

/// A lock-free latency histogram (0.5 ms buckets up to 30 s, and the max).
/// By hand because it is shared by thousands of client tasks recording at
/// 10 Hz each: atomics, no lock, no allocation per sample.
#[derive(Debug)]
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        let b = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The percentiles so far (bucket upper bounds), optionally emptying it.
    fn percentiles(&self, reset: bool) -> Option<Percentiles> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                if reset {
                    b.swap(0, Ordering::Relaxed)
                } else {
                    b.load(Ordering::Relaxed)
                }
            })
            .collect();
        let max = if reset {
            self.max_us.swap(0, Ordering::Relaxed)
        } else {
            self.max_us.load(Ordering::Relaxed)
        };
        percentiles_of(&counts, max)
    }

    /// The non-empty buckets, as (bucket, count), and the max (µs).
    fn sparse(&self) -> (Vec<(u32, u64)>, u64) {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let n = b.load(Ordering::Relaxed);
                (n > 0).then_some((i as u32, n))
            })
            .collect();
        (buckets, self.max_us.load(Ordering::Relaxed))
    }
}

/// p50, p99 and max of bucket counts (upper bounds, the max exact).
fn percentiles_of(counts: &[u64], max: u64) -> Option<Percentiles> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_US).min(max.max(BUCKET_US)) as f64 / 1000.0;
            }
        }
        max as f64 / 1000.0
    };
    Some(Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: max as f64 / 1000.0,
    })
}

/// What one process's clients counted; summed over the processes of a run
/// (`--procs`), which send theirs to the parent as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub connected_at_end: usize,
    pub messages: u64,
    pub bytes: u64,
    pub sent: u64,
    pub bytes_sent: u64,
    pub snapshots: u64,
    pub deltas: u64,
    pub events: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    pub errors: BTreeMap<String, u64>,
    /// Delivery latency: (0.5 ms bucket, count) of the non-empty buckets.
    pub latency: Vec<(u32, u64)>,
    pub latency_max_us: u64,
}

impl Tally {
    /// Adds another process's tally to this one.
    pub fn add(&mut self, other: Tally) {
        self.connected_at_end += other.connected_at_end;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.sent += other.sent;
        self.bytes_sent += other.bytes_sent;
        self.snapshots += other.snapshots;
        self.deltas += other.deltas;
        self.events += other.events;
        self.resyncs += other.resyncs;
        self.disconnects += other.disconnects;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        let mut merged: BTreeMap<u32, u64> = self.latency.drain(..).collect();
        for (b, n) in other.latency {
            *merged.entry(b).or_default() += n;
        }
        self.latency = merged.into_iter().collect();
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
    }

    /// Delivery latency percentiles over every sample.
    pub fn delivery(&self) -> Option<Percentiles> {
        let mut counts = vec![0u64; BUCKETS];
        for &(b, n) in &self.latency {
            counts[(b as usize).min(BUCKETS - 1)] += n;
        }
        percentiles_of(&counts, self.latency_max_us)
    }
}

/// One second of a run, as the progress line shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub connected: usize,
    /// Received so far.
    pub messages: u64,
    /// Delivery p99 over the last second.
    pub p99_ms: Option<f64>,
}

/// A line a worker process of `--procs` writes on its standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    Second(Second),
    Tally(Tally),
}

/// What a worker process is given by its parent, as JSON in
/// [`BRIEF_ENV`]: the tokens of its clients and the places players walk to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Brief {
    pub spectator: Option<String>,
    pub players: Vec<String>,
    pub places: Vec<String>,
}

/// The environment variable a worker's [`Brief`] is passed in (tokens stay
/// off the command line, where `ps` would show them).
pub const BRIEF_ENV: &str = "HEARTH_LOADTEST_BRIEF";

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The fields of a server message the test reads.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    at: Option<f64>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
}

/// What one client is.
#[derive(Debug, Clone)]
enum Role {
    /// Watches this area (x, y, w, h).
    Spectator(u16, u16, u16, u16),
    /// Follows its character, walks to `places` and talks, `every` apart.
    Player {
        every: Duration,
        places: Arc<Vec<String>>,
        seed: u64,
    },
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one JSON message and counts it; false when the connection failed.
async fn send(ws: &mut Socket, shared: &Shared, message: &serde_json::Value) -> bool {
    let text = message.to_string();
    let len = text.len() as u64;
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    shared.sent.fetch_add(1, Ordering::Relaxed);
    shared.bytes_sent.fetch_add(len, Ordering::Relaxed);
    true
}

/// One client's life: connect, hello, subscribe, then count (and, for a
/// player, act) until the end.
async fn client(
    url: String,
    world: String,
    token: Option<String>,
    role: Role,
    end: Instant,
    shared: Arc<Shared>,
) {
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(_) => {
            shared.error("connect");
            return;
        }
    };
    if let Ok(v) = hearth_protocol::SUBPROTOCOL.parse() {
        request.headers_mut().insert("Sec-WebSocket-Protocol", v);
    }
    let mut ws =
        match tokio::time::timeout(HANDSHAKE, tokio_tungstenite::connect_async(request)).await {
            Ok(Ok((ws, _))) => ws,
            _ => {
                shared.error("connect");
                return;
            }
        };
    let mut hello = serde_json::json!({"type": "hello", "id": 1, "world": world});
    if let Some(t) = token {
        hello["token"] = serde_json::Value::String(t);
    }
    if !send(&mut ws, &shared, &hello).await {
        shared.error("handshake");
        return;
    }
    // wait for the welcome
    let welcomed = tokio::time::timeout(HANDSHAKE, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && let Ok(i) = serde_json::from_str::<Incoming>(&t)
            {
                return i.kind == "welcome";
            }
        }
        false
    })
    .await;
    if !matches!(welcomed, Ok(true)) {
        shared.error("handshake");
        return;
    }
    let subscribe = match &role {
        Role::Spectator(x, y, w, h) => {
            serde_json::json!({"type": "subscribe", "id": 2, "area": {"x": x, "y": y, "w": w, "h": h}})
        }
        Role::Player { .. } => serde_json::json!({"type": "subscribe", "id": 2}),
    };
    if !send(&mut ws, &shared, &subscribe).await {
        shared.error("handshake");
        return;
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut snapshots = 0u64;
    // whether the client is still connected when the run ends
    let mut stayed = false;
    let (mut next_act, mut acts, mut rng) = match &role {
        Role::Player { every, seed, .. } => (
            Instant::now() + *every,
            0u64,
            rand_chacha::ChaCha8Rng::seed_from_u64(*seed),
        ),
        Role::Spectator(..) => (end, 0, rand_chacha::ChaCha8Rng::seed_from_u64(0)),
    };
    loop {
        if let Role::Player { every, places, .. } = &role
            && Instant::now() >= next_act
        {
            next_act += *every;
            acts += 1;
            let id = 100 + acts;
            let action = if acts % 2 == 1 && !places.is_empty() {
                let place = &places[rng.random_range(0..places.len())];
                serde_json::json!({"type": "move_to", "id": id, "location": place})
            } else {
                serde_json::json!({"type": "say", "id": id, "text": "Hello, everyone! How is the day going?"})
            };
            if !send(&mut ws, &shared, &action).await {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error("connection");
                break;
            }
        }
        let wake = next_act.min(end);
        let next = tokio::time::timeout_at(wake.into(), ws.next()).await;
        let message = match next {
            Err(_) if Instant::now() < end => continue, // time to act
            Err(_) => {
                // the run is over
                stayed = true;
                break;
            }
            Ok(None) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error("closed");
                break;
            }
            Ok(Some(Err(_))) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error("connection");
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        match message {
            Message::Text(t) => {
                let received = unix_ms();
                shared.messages.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                let Ok(i) = serde_json::from_str::<Incoming>(&t) else {
                    shared.error("unparseable");
                    continue;
                };
                match i.kind.as_str() {
                    "delta" => {
                        shared.deltas.fetch_add(1, Ordering::Relaxed);
                        if let Some(at) = i.at {
                            let us = ((received - at).max(0.0) * 1000.0) as u64;
                            shared.total.record(us);
                            shared.window.record(us);
                        }
                    }
                    "snapshot" => {
                        shared.snapshots.fetch_add(1, Ordering::Relaxed);
                        snapshots += 1;
                        if i.id.is_none() && snapshots > 1 {
                            shared.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    "error" => shared.error(i.code.unwrap_or_else(|| "error".into())),
                    _ => {
                        shared.events.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Message::Close(frame) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                let code = frame.map_or(1005, |f| u16::from(f.code));
                shared.error(format!("close_{code}"));
                break;
            }
            Message::Binary(b) => {
                shared.messages.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    if !stayed {
        shared.connected.fetch_sub(1, Ordering::Relaxed);
    }
    let _ = ws.close(None).await;
}

/// One scrape of the server's `/metrics` (Prometheus text): each series's
/// value by its full name, labels included.
#[derive(Debug, Clone, Default)]
struct Scrape(Vec<(String, f64)>);

impl Scrape {
    async fn get(http: &reqwest::Client, url: &str) -> Option<Scrape> {
        let response = http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(Scrape::parse(&response.text().await.ok()?))
    }

    fn parse(text: &str) -> Scrape {
        Scrape(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.trim().to_owned(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sum of the series named `name`, whatever their labels.
    fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for (series, v) in &self.0 {
            let base = series.split('{').next().unwrap_or(series);
            if base == name {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// p50 / p99 / max in ms of a summary in seconds (its 0.5, 0.99 and 1
    /// quantiles).
    fn quantiles(&self, name: &str) -> Option<Percentiles> {
        let q = |quantile: &str| {
            let key = format!("{name}{{quantile=\"{quantile}\"}}");
            self.0
                .iter()
                .find(|(series, _)| *series == key)
                .map(|(_, v)| v * 1000.0)
                .filter(|v| v.is_finite())
        };
        Some(Percentiles {
            p50: q("0.5")?,
            p99: q("0.99")?,
            max: q("1")?,
        })
    }
}

/// What watching the server's `/metrics` once a second saw.
#[derive(Debug, Default)]
struct Watched {
    lag_max_ms: Option<f64>,
    rss: Vec<(u64, f64)>,
    warm_rss: Option<f64>,
}

fn rss_mb(s: &Scrape) -> Option<f64> {
    s.sum("process_resident_memory_bytes")
        .map(|b| (b / 1_048_576.0 * 10.0).round() / 10.0)
}

/// Scrapes `metrics_url` every second until `end`: the writer's lag, and
/// the server's RSS every 10 s and at the end of the warm-up.
async fn watch_server(
    metrics_url: String,
    started: Instant,
    end: Instant,
    warm: Instant,
) -> Watched {
    let mut seen = Watched::default();
    let http = reqwest::Client::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut seconds = 0u64;
    while Instant::now() < end {
        every.tick().await;
        let Some(scrape) = Scrape::get(&http, &metrics_url).await else {
            continue;
        };
        if let Some(lag) = scrape.sum("hearth_writer_lag_seconds") {
            let ms = lag * 1000.0;
            seen.lag_max_ms = Some(seen.lag_max_ms.map_or(ms, |m: f64| m.max(ms)));
        }
        if let Some(mb) = rss_mb(&scrape) {
            if seconds.is_multiple_of(10) {
                seen.rss.push((started.elapsed().as_secs(), mb));
            }
            if seen.warm_rss.is_none() && Instant::now() >= warm {
                seen.warm_rss = Some(mb);
            }
        }
        seconds += 1;
    }
    seen
}

/// Runs this process's clients against `ws_url` until the run's end;
/// `each_second` gets the progress once a second.
pub async fn clients(
    options: &LoadOptions,
    ws_url: &str,
    map: (u16, u16),
    who: &Identities,
    mut each_second: impl FnMut(Second),
) -> Tally {
    let shared = Arc::new(Shared::new());
    let started = Instant::now();
    let end = started + options.ramp + options.duration;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let side = options.area.max(1);
    let (mw, mh) = (map.0.max(1), map.1.max(1));
    let every = if options.clients > 1 {
        options.ramp / options.clients as u32
    } else {
        Duration::ZERO
    };
    let ramp = {
        let shared = shared.clone();
        let url = ws_url.to_owned();
        let world = options.world.clone();
        let n = options.clients;
        let players = who.players.len().min(n);
        let places = Arc::new(options.places.clone());
        let act_every =
            Duration::from_secs_f64(60.0 / f64::from(options.player_actions_per_minute.max(1)));
        // players first, then spectators
        let clients: Vec<(Option<String>, Role)> = (0..n)
            .map(|i| {
                if i < players {
                    (
                        Some(who.players[i].clone()),
                        Role::Player {
                            every: act_every,
                            places: places.clone(),
                            seed: options.seed.wrapping_add(i as u64),
                        },
                    )
                } else {
                    let w = side.min(mw);
                    let h = side.min(mh);
                    let x = rng.random_range(0..=mw - w);
                    let y = rng.random_range(0..=mh - h);
                    (who.spectator.clone(), Role::Spectator(x, y, w, h))
                }
            })
            .collect();
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(n);
            for (i, (token, role)) in clients.into_iter().enumerate() {
                if i > 0 && !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
                out.push(tokio::spawn(client(
                    url.clone(),
                    world.clone(),
                    token,
                    role,
                    end,
                    shared.clone(),
                )));
            }
            out
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < end {
        tick.tick().await;
        each_second(Second {
            connected: shared.connected.load(Ordering::Relaxed),
            messages: shared.messages.load(Ordering::Relaxed),
            p99_ms: shared.window.percentiles(true).map(|p| p.p99),
        });
    }
    let connected_at_end = shared.connected.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    if let Ok(handles) = ramp.await {
        tasks.extend(handles);
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let (latency, latency_max_us) = shared.total.sparse();
    Tally {
        connected_at_end,
        messages: shared.messages.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        sent: shared.sent.load(Ordering::Relaxed),
        bytes_sent: shared.bytes_sent.load(Ordering::Relaxed),
        snapshots: shared.snapshots.load(Ordering::Relaxed),
        deltas: shared.deltas.load(Ordering::Relaxed),
        events: shared.events.load(Ordering::Relaxed),
        resyncs: shared.resyncs.load(Ordering::Relaxed),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        errors: shared
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        latency,
        latency_max_us,
    }
}

/// Splits `n` into `parts` near-equal shares, larger first.
fn shares(n: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| n / parts + usize::from(i < n % parts))
        .collect()
}

/// Runs the clients in `options.procs` worker processes (this binary's
/// hidden `loadtest --worker`), each given its share of the clients and
/// tokens; shows their summed progress and returns their summed tallies.
async fn workers(
    options: &LoadOptions,
    ws_url: &str,
    map: (u16, u16),
    who: &Identities,
    mut each_second: impl FnMut(Second),
) -> Result<Tally, LoadtestError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let exe = std::env::current_exe().map_err(|e| {
        LoadtestError::Usage(format!("cannot find this program to run workers: {e}"))
    })?;
    let end = Instant::now() + options.ramp + options.duration;
    let clients = shares(options.clients, options.procs);
    let players = shares(who.players.len().min(options.clients), options.procs);
    let latest = Arc::new(std::sync::Mutex::new(vec![
        Second::default();
        clients.len()
    ]));
    let mut handles = Vec::new();
    let mut first_player = 0;
    for (i, (&n, &p)) in clients.iter().zip(&players).enumerate() {
        if n == 0 {
            continue;
        }
        let brief = Brief {
            spectator: who.spectator.clone(),
            players: who.players[first_player..first_player + p].to_vec(),
            places: options.places.clone(),
        };
        first_player += p;
        let brief =
            serde_json::to_string(&brief).map_err(|e| LoadtestError::Usage(e.to_string()))?;
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("loadtest")
            .arg("--worker")
            .args(["--url", ws_url, "--world", &options.world])
            .args(["--clients", &n.to_string()])
            .args(["--duration", &format!("{}ms", options.duration.as_millis())])
            .args(["--ramp", &format!("{}ms", options.ramp.as_millis())])
            .args([
                "--seed",
                &options.seed.wrapping_add(i as u64 * 7919).to_string(),
            ])
            .args(["--area", &options.area.to_string()])
            .args(["--map-size", &format!("{}x{}", map.0, map.1)])
            .args([
                "--player-actions-per-minute",
                &options.player_actions_per_minute.to_string(),
            ])
            .env(BRIEF_ENV, brief)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| LoadtestError::Worker(format!("cannot start worker {i}: {e}")))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(LoadtestError::Worker(format!("worker {i} has no output")));
        };
        let latest = latest.clone();
        handles.push(tokio::spawn(async move {
            let errors = tokio::spawn(async move {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text).await;
                text
            });
            let mut lines = BufReader::new(stdout).lines();
            let mut tally = None;
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(WorkerLine::Second(s)) => {
                        latest.lock().unwrap_or_else(|p| p.into_inner())[i] = s;
                    }
                    Ok(WorkerLine::Tally(t)) => tally = Some(t),
                    Err(_) => {}
                }
            }
            let status = child.wait().await;
            let stderr = errors.await.unwrap_or_default();
            tally.ok_or_else(|| {
                let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
                format!("worker {i} ended without a tally ({status:?}): {tail}")
            })
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < end {
        tick.tick().await;
        let all = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        each_second(Second {
            connected: all.iter().map(|s| s.connected).sum(),
            messages: all.iter().map(|s| s.messages).sum(),
            p99_ms: all.iter().filter_map(|s| s.p99_ms).reduce(f64::max),
        });
    }
    let mut total = Tally::default();
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(60), h).await {
            Ok(Ok(Ok(t))) => total.add(t),
            Ok(Ok(Err(why))) => return Err(LoadtestError::Worker(why)),
            Ok(Err(e)) => {
                return Err(LoadtestError::Worker(format!("its reader failed: {e}")));
            }
            Err(_) => {
                return Err(LoadtestError::Worker(
                    "one did not end within 60 s of the run".into(),
                ));
            }
        }
    }
    Ok(total)
}

/// Runs the clients against `ws_url` (whose `/metrics` is `metrics_url`),
/// here or in worker processes, and reports. `progress` gets a line a
/// second.
pub async fn drive(
    options: &LoadOptions,
    ws_url: &str,
    metrics_url: &str,
    map: (u16, u16),
    who: &Identities,
    mut progress: impl FnMut(&str),
) -> Result<Report, LoadtestError> {
    let started = Instant::now();
    let end = started + options.ramp + options.duration;
    let warm = started
        + options
            .warmup
            .unwrap_or(options.ramp + options.duration / 10)
            .min(options.ramp + options.duration);
    let http = reqwest::Client::new();
    let before = Scrape::get(&http, metrics_url).await;
    let watch = tokio::spawn(watch_server(metrics_url.to_owned(), started, end, warm));
    let mut last = 0;
    let line = |s: Second| {
        let p99 = s
            .p99_ms
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1} ms"));
        let rate = s.messages.saturating_sub(last);
        last = s.messages;
        progress(&format!(
            "{:>5.0} s  clients {:>6}  messages/s {:>8}  delivery p99 {}",
            started.elapsed().as_secs_f64(),
            s.connected,
            rate,
            p99
        ));
    };
    let tally = if options.procs > 1 {
        workers(options, ws_url, map, who, line).await?
    } else {
        clients(options, ws_url, map, who, line).await
    };
    let after = Scrape::get(&http, metrics_url).await;
    let watched = watch.await.unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    if options.clients > 0 && tally.messages == 0 {
        return Err(LoadtestError::NoClient {
            url: ws_url.to_owned(),
            reason: format!("errors: {:?}", tally.errors),
        });
    }
    // client rates over the time clients were meant to be connected
    let measured = (options.duration.as_secs_f64() + options.ramp.as_secs_f64() / 2.0).max(1e-3);
    let mut report = Report {
        target: ws_url.to_owned(),
        agents: options.url.is_none().then_some(options.agents),
        clients: options.clients,
        players: who.players.len().min(options.clients),
        procs: options.procs.max(1),
        connected_at_end: tally.connected_at_end,
        duration_s: (elapsed * 10.0).round() / 10.0,
        tick_ms: after
            .as_ref()
            .and_then(|a| a.quantiles("hearth_tick_seconds")),
        delivery_ms: tally.delivery(),
        messages_in: tally.messages,
        bytes_in: tally.bytes,
        messages_per_s: (tally.messages as f64 / measured).round(),
        bytes_per_s: (tally.bytes as f64 / measured).round(),
        messages_out: tally.sent,
        bytes_out: tally.bytes_sent,
        snapshots: tally.snapshots,
        deltas: tally.deltas,
        events: tally.events,
        resyncs: tally.resyncs,
        disconnects: tally.disconnects,
        errors: tally.errors,
        server: None,
        process: None,
        rss_mb_over_time: watched.rss,
        rss_growth_percent: None,
        violations: Vec::new(),
    };
    if let (Some(a), Some(b)) = (&before, &after) {
        // the server's side, from its counters' growth between the scrapes
        let secs = elapsed.max(1e-3);
        let rate = |name: &str| {
            let grew = b.sum(name)? - a.sum(name).unwrap_or(0.0);
            Some((grew.max(0.0) / secs * 10.0).round() / 10.0)
        };
        let writing = b.sum("hearth_writer_flush_interval_seconds").is_some();
        report.server = Some(ServerSide {
            fanout_ms: b.quantiles("hearth_hub_fanout_seconds"),
            checkpoint_ms: b.quantiles("hearth_writer_flush_seconds"),
            checkpoints: writing.then(|| {
                (b.sum("hearth_writer_commits_total").unwrap_or(0.0)
                    - a.sum("hearth_writer_commits_total").unwrap_or(0.0))
                .max(0.0) as u64
            }),
            flush_interval_ms: b
                .sum("hearth_writer_flush_interval_seconds")
                .map(|s| s * 1000.0),
            flush_lag_max_ms: if writing { watched.lag_max_ms } else { None },
            rows_per_s: if writing {
                rate("hearth_writer_rows_total")
            } else {
                None
            },
            memories_per_s: if writing {
                rate("hearth_writer_memories_total")
            } else {
                None
            },
            messages_in_per_s: rate("hearth_messages_in_total"),
            messages_out_per_s: rate("hearth_messages_out_total"),
            bytes_in_per_s: rate("hearth_bytes_in_total"),
            bytes_out_per_s: rate("hearth_bytes_out_total"),
        });
        if let (Some(rss), Some(cpu0), Some(cpu1)) = (
            rss_mb(b),
            a.sum("process_cpu_seconds_total"),
            b.sum("process_cpu_seconds_total"),
        ) {
            report.process = Some(Usage {
                rss_mb: rss,
                cpu_percent: ((cpu1 - cpu0) / secs * 100.0).round(),
            });
            report
                .rss_mb_over_time
                .push((started.elapsed().as_secs(), rss));
            report.rss_growth_percent = watched
                .warm_rss
                .filter(|w| *w > 0.0)
                .map(|w| ((rss - w) / w * 1000.0).round() / 10.0);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_gives_bucketed_percentiles_and_the_exact_max() {
        let h = Histogram::new();
        assert_eq!(h.percentiles(false), None);
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        let p = h.percentiles(true).expect("samples");
        assert!((p.p50 - 50.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99 - 99.0).abs() <= 0.5, "{p:?}");
        assert_eq!(p.max, 100.0);
        assert_eq!(h.percentiles(false), None, "emptied");
        h.record(10_000_000); // past the last bucket
        assert_eq!(h.percentiles(false).map(|p| p.max), Some(10_000.0));
    }

    #[test]
    fn tallies_of_several_processes_add_up_and_merge_their_latencies() {
        let one = Histogram::new();
        let two = Histogram::new();
        for ms in 1..=50u64 {
            one.record(ms * 1000);
        }
        for ms in 51..=100u64 {
            two.record(ms * 1000);
        }
        let tally = |h: &Histogram, errors: &[(&str, u64)]| {
            let (latency, latency_max_us) = h.sparse();
            Tally {
                connected_at_end: 5,
                messages: 100,
                deltas: 50,
                errors: errors.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
                latency,
                latency_max_us,
                ..Tally::default()
            }
        };
        let mut total = tally(&one, &[("closed", 1)]);
        total.add(tally(&two, &[("closed", 2), ("connect", 1)]));
        assert_eq!(total.connected_at_end, 10);
        assert_eq!(total.messages, 200);
        assert_eq!(total.deltas, 100);
        assert_eq!(
            total.errors,
            BTreeMap::from([("closed".to_owned(), 3), ("connect".to_owned(), 1)])
        );
        let p = total.delivery().expect("samples");
        assert!((p.p50 - 50.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99 - 99.0).abs() <= 0.5, "{p:?}");
        assert_eq!(p.max, 100.0);
        // the same as one histogram holding every sample
        for ms in 51..=100u64 {
            one.record(ms * 1000);
        }
        assert_eq!(one.percentiles(false), Some(p));
        assert_eq!(Tally::default().delivery(), None);
        // a worker's line survives the trip through JSON
        let line = WorkerLine::Tally(total.clone());
        let text = serde_json::to_string(&line).expect("json");
        assert_eq!(serde_json::from_str::<WorkerLine>(&text).ok(), Some(line));
    }

    #[test]
    fn clients_are_shared_out_evenly() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(shares(0, 1), vec![0]);
        assert_eq!(shares(7, 0), vec![7]);
    }

    #[test]
    fn a_scrape_sums_series_and_reads_summaries() {
        let s = Scrape::parse(
            "# TYPE hearth_tick_seconds summary\n\
             hearth_tick_seconds{quantile=\"0.5\"} 0.001\n\
             hearth_tick_seconds{quantile=\"0.99\"} 0.004\n\
             hearth_tick_seconds{quantile=\"1\"} 0.02\n\
             hearth_tick_seconds_sum 3.5\n\
             hearth_messages_out_total{type=\"delta\"} 10\n\
             hearth_messages_out_total{type=\"snapshot\"} 5\n\
             hearth_writer_lag_seconds 0.25\n\
             garbage line without a number x\n",
        );
        assert_eq!(s.sum("hearth_messages_out_total"), Some(15.0));
        assert_eq!(s.sum("hearth_writer_lag_seconds"), Some(0.25));
        assert_eq!(s.sum("hearth_tick_seconds_sum"), Some(3.5));
        assert_eq!(s.sum("hearth_writer_rows_total"), None);
        assert_eq!(
            s.quantiles("hearth_tick_seconds"),
            Some(Percentiles {
                p50: 1.0,
                p99: 4.0,
                max: 20.0
            })
        );
        assert_eq!(s.quantiles("hearth_writer_flush_seconds"), None);
    }

    fn report() -> Report {
        Report {
            target: "ws://x/ws".into(),
            agents: Some(10),
            clients: 10,
            players: 0,
            procs: 1,
            connected_at_end: 9,
            duration_s: 10.0,
            tick_ms: Some(Percentiles {
                p50: 1.0,
                p99: 3.0,
                max: 9.0,
            }),
            delivery_ms: Some(Percentiles {
                p50: 2.0,
                p99: 40.0,
                max: 80.0,
            }),
            messages_in: 1000,
            bytes_in: 100_000,
            messages_per_s: 100.0,
            bytes_per_s: 10_000.0,
            messages_out: 20,
            bytes_out: 2000,
            snapshots: 10,
            deltas: 990,
            events: 0,
            resyncs: 0,
            disconnects: 1,
            errors: BTreeMap::from([("close_1013".to_owned(), 1)]),
            server: None,
            process: None,
            rss_mb_over_time: Vec::new(),
            rss_growth_percent: None,
            violations: Vec::new(),
        }
    }

    #[test]
    fn the_verdict_names_each_missed_line() {
        let r = report();
        let met = Slo {
            tick_p99_ms: Some(20.0),
            delivery_p99_ms: Some(50.0),
            max_errors: Some(1),
            min_connected: Some(0.9),
            ..Slo::default()
        };
        assert!(met.verdict(&r).is_empty(), "{:?}", met.verdict(&r));
        let missed = Slo {
            tick_p99_ms: Some(2.0),
            delivery_p99_ms: Some(0.001),
            max_errors: Some(0),
            max_disconnects: Some(0),
            min_connected: Some(1.0),
            ..Slo::default()
        };
        let v = missed.verdict(&r);
        assert_eq!(v.len(), 5, "{v:?}");
        assert!(v[0].starts_with("tick_p99_ms = 2: measured 3.00"), "{v:?}");
        assert!(r.table().contains("delivery latency"));
        let soak = Slo {
            max_rss_growth_percent: Some(5.0),
            ..Slo::default()
        };
        assert_eq!(soak.verdict(&r).len(), 1, "no RSS measured: missed");
        let grown = Report {
            rss_growth_percent: Some(7.5),
            ..r.clone()
        };
        assert_eq!(
            soak.verdict(&grown),
            vec!["max_rss_growth_percent = 5: measured 7.5".to_owned()]
        );
        let steady = Report {
            rss_growth_percent: Some(1.0),
            ..r.clone()
        };
        assert!(soak.verdict(&steady).is_empty());
        // the writer's lag: missed, met, and unmeasurable without a writer
        let lag = Slo {
            max_flush_lag_ms: Some(1000.0),
            ..Slo::default()
        };
        let writer = |lag: f64| Report {
            server: Some(ServerSide {
                fanout_ms: None,
                checkpoint_ms: None,
                checkpoints: Some(10),
                flush_interval_ms: Some(1000.0),
                flush_lag_max_ms: Some(lag),
                rows_per_s: Some(100.0),
                memories_per_s: Some(10.0),
                messages_in_per_s: Some(1.0),
                messages_out_per_s: Some(100.0),
                bytes_in_per_s: Some(10.0),
                bytes_out_per_s: Some(1000.0),
            }),
            ..r.clone()
        };
        assert_eq!(
            lag.verdict(&writer(1500.0)),
            vec!["max_flush_lag_ms = 1000: measured 1500".to_owned()]
        );
        assert!(lag.verdict(&writer(400.0)).is_empty());
        assert!(writer(400.0).table().contains("lag at most 400 ms"));
        assert_eq!(lag.verdict(&r).len(), 1, "no writer: missed");
    }

    #[test]
    fn slo_files_are_checked_key_by_key() {
        let dir = std::env::temp_dir().join(format!("hearth-slo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "tick_p99_ms = 20\ndelivery_p99_ms = 50\nmax_errors = 0\n",
        )
        .expect("write");
        let slo = Slo::load(&good).expect("loads");
        assert_eq!((slo.tick_p99_ms, slo.max_errors), (Some(20.0), Some(0)));
        let unknown = dir.join("unknown.toml");
        std::fs::write(&unknown, "tick_p99 = 20\n").expect("write");
        let e = Slo::load(&unknown).expect_err("unknown key");
        assert!(e.to_string().contains("tick_p99"), "{e}");
        let negative = dir.join("negative.toml");
        std::fs::write(&negative, "delivery_p99_ms = -1\n").expect("write");
        let e = Slo::load(&negative).expect_err("negative");
        assert!(e.to_string().contains("delivery_p99_ms"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
