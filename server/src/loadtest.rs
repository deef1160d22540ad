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

/// Latency histogram resolution and range: 0.5 ms buckets up to 2 s.
const BUCKET_US: u64 = 500;
const BUCKETS: usize = 4_001;
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
                    "max_rss_growth_percent = {limit}: RSS is only measured for a server started here"
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

/// What the process running the test used (server and clients alike when
/// the server runs here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    pub rss_mb: f64,
    pub cpu_percent: f64,
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
    pub snapshots: u64,
    pub deltas: u64,
    pub events: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    /// By kind: `connect`, `handshake`, an error frame's code, `close_<code>`.
    pub errors: BTreeMap<String, u64>,
    pub process: Option<Usage>,
    /// The process's RSS (MB) every 10 s: (seconds since the start, MB);
    /// empty for a remote server.
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
                    "{} ({} players; {} connected at the end)",
                    self.clients, self.players, self.connected_at_end
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
            ("sent", format!("{} messages", self.messages_out)),
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
                    || "n/a (remote server)".to_owned(),
                    |u| format!("RSS {:.0} MB, CPU {:.0} %", u.rss_mb, u.cpu_percent),
                ),
            ),
            (
                "RSS after warm-up",
                self.rss_growth_percent
                    .map_or_else(|| "n/a".to_owned(), |g| format!("{g:+.1} %")),
            ),
        ];
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

/// A lock-free latency histogram (0.5 ms buckets up to 2 s, and the max).
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
}

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
    if let Ok(v) = crate::net::protocol::SUBPROTOCOL.parse() {
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
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        shared.error("handshake");
        return;
    }
    shared.sent.fetch_add(1, Ordering::Relaxed);
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
    if ws.send(Message::text(subscribe.to_string())).await.is_err() {
        shared.error("handshake");
        return;
    }
    shared.sent.fetch_add(1, Ordering::Relaxed);
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
            if ws.send(Message::text(action.to_string())).await.is_err() {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error("connection");
                break;
            }
            shared.sent.fetch_add(1, Ordering::Relaxed);
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

/// The server's tick times from its `/metrics` (the summary's 0.5, 0.99
/// and 1 quantiles of `hearth_tick_seconds`).
async fn tick_times(metrics_url: &str) -> Option<Percentiles> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    let q = |quantile: &str| -> Option<f64> {
        let key = format!("hearth_tick_seconds{{quantile=\"{quantile}\"}}");
        text.lines()
            .find(|l| l.starts_with(&key))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|s| s * 1000.0)
    };
    Some(Percentiles {
        p50: q("0.5")?,
        p99: q("0.99")?,
        max: q("1")?,
    })
}

/// This process's resident memory (MB) and CPU time (s), from /proc.
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
    Some((rss_kb / 1024.0, ticks / 100.0))
}

/// Runs the clients against `ws_url` (whose `/metrics` is `metrics_url`)
/// and reports. `progress` gets a line a second.
pub async fn drive(
    options: &LoadOptions,
    ws_url: &str,
    metrics_url: &str,
    map: (u16, u16),
    who: &Identities,
    mut progress: impl FnMut(&str),
) -> Result<Report, LoadtestError> {
    let shared = Arc::new(Shared::new());
    let started = Instant::now();
    let end = started + options.ramp + options.duration;
    let usage_before = process_usage();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let side = options.area.max(1);
    let (mw, mh) = (map.0.max(1), map.1.max(1));
    let mut tasks = Vec::with_capacity(options.clients);
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
    // the progress line, once a second, until the end; RSS every 10 s
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_messages = 0;
    let local = options.url.is_none();
    let warm = options.ramp + options.duration / 10;
    let mut rss: Vec<(u64, f64)> = Vec::new();
    let mut warm_rss = None;
    let mut seconds = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        if local {
            if seconds.is_multiple_of(10)
                && let Some((mb, _)) = process_usage()
            {
                rss.push((started.elapsed().as_secs(), (mb * 10.0).round() / 10.0));
            }
            if warm_rss.is_none() && started.elapsed() >= warm {
                warm_rss = process_usage().map(|(mb, _)| mb);
            }
        }
        seconds += 1;
        let messages = shared.messages.load(Ordering::Relaxed);
        let p99 = shared
            .window
            .percentiles(true)
            .map_or_else(|| "-".to_owned(), |p| format!("{:.1} ms", p.p99));
        progress(&format!(
            "{:>5.0} s  clients {:>6}  messages/s {:>8}  delivery p99 {}",
            started.elapsed().as_secs_f64(),
            shared.connected.load(Ordering::Relaxed),
            messages - last_messages,
            p99
        ));
        last_messages = messages;
    }
    let connected_at_end = shared.connected.load(Ordering::Relaxed);
    let tick_ms = tick_times(metrics_url).await;
    if let Ok(handles) = ramp.await {
        tasks.extend(handles);
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // rates over the time clients were meant to be connected
    let measured = (options.duration.as_secs_f64() + options.ramp.as_secs_f64() / 2.0).max(1e-3);
    let messages_in = shared.messages.load(Ordering::Relaxed);
    let bytes_in = shared.bytes.load(Ordering::Relaxed);
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if options.clients > 0 && messages_in == 0 {
        return Err(LoadtestError::NoClient {
            url: ws_url.to_owned(),
            reason: format!("errors: {errors:?}"),
        });
    }
    let end_usage = process_usage();
    let rss_growth_percent = match (warm_rss, end_usage) {
        (Some(w), Some((e, _))) if local && w > 0.0 => Some(((e - w) / w * 1000.0).round() / 10.0),
        _ => None,
    };
    if local && let Some((mb, _)) = end_usage {
        rss.push((started.elapsed().as_secs(), (mb * 10.0).round() / 10.0));
    }
    let process = match (usage_before, end_usage) {
        (Some((_, cpu0)), Some((rss, cpu1))) if options.url.is_none() => Some(Usage {
            rss_mb: (rss * 10.0).round() / 10.0,
            cpu_percent: ((cpu1 - cpu0) / elapsed * 100.0).round(),
        }),
        _ => None,
    };
    Ok(Report {
        target: ws_url.to_owned(),
        agents: options.url.is_none().then_some(options.agents),
        clients: options.clients,
        players: who.players.len().min(options.clients),
        connected_at_end,
        duration_s: (elapsed * 10.0).round() / 10.0,
        tick_ms,
        delivery_ms: shared.total.percentiles(false),
        messages_in,
        bytes_in,
        messages_per_s: (messages_in as f64 / measured).round(),
        bytes_per_s: (bytes_in as f64 / measured).round(),
        messages_out: shared.sent.load(Ordering::Relaxed),
        snapshots: shared.snapshots.load(Ordering::Relaxed),
        deltas: shared.deltas.load(Ordering::Relaxed),
        events: shared.events.load(Ordering::Relaxed),
        resyncs: shared.resyncs.load(Ordering::Relaxed),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        errors,
        process,
        rss_mb_over_time: rss,
        rss_growth_percent,
        violations: Vec::new(),
    })
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

    fn report() -> Report {
        Report {
            target: "ws://x/ws".into(),
            agents: Some(10),
            clients: 10,
            players: 0,
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
            snapshots: 10,
            deltas: 990,
            events: 0,
            resyncs: 0,
            disconnects: 1,
            errors: BTreeMap::from([("close_1013".to_owned(), 1)]),
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
            ..r
        };
        assert!(soak.verdict(&steady).is_empty());
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
