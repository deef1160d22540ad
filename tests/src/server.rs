//! `hearth serve` in process for end-to-end tests and benches: started
//! through [`hearth::cli::run`] with the flags a test names, on a free port
//! of 127.0.0.1 and a fresh `--home`, and handed over once `/readyz`
//! answers 200; stopped by [`Server::stop`], which waits for the server's
//! own result.
//!
//! ```ignore
//! let db = TestDb::migrated().await;
//! let server = Server::builder()
//!     .db(&db)
//!     .world("valley")
//!     .synthetic_agents(20)
//!     .args(["--time-scale", "30"])
//!     .start()
//!     .await;
//! let metrics = reqwest::get(format!("{}/metrics", server.http_url())).await?;
//! server.stop().await;
//! ```
//!
//! Without [`ServerBuilder::db`] the server runs with `--no-db`. Unless
//! [`ServerBuilder::lore`] names a directory, the world has no lore (tests
//! run from `tests/`, where the default `assets/lore` is not). Dropping a
//! [`Server`] without stopping it tells it to shut down all the same (its
//! stop channel closes), without waiting.
//!
//! [`ServerBuilder::process`] runs the real binary instead, as a process
//! of its own, for a test that reads what is the process's rather than the
//! server's: the metrics recorder behind `/metrics` is one per process, and
//! every in-process server of the test binary counts into it.
//!
//! Game clients connect with [`Server::connect`] (protocol v1's
//! subprotocol, checked) and talk through [`send`], [`next_json`] and
//! [`answer`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hearth::cli::{self, Cli, CliError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

use crate::TestDb;

/// How long [`ServerBuilder::start`] waits for `/readyz` unless told.
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long [`Server::stop`] waits for the server to finish.
pub const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Numbers the homes of the servers this process starts.
static HOMES: AtomicU32 = AtomicU32::new(0);

/// A TCP port of 127.0.0.1 free a moment ago (bound, then let go).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
    listener.local_addr().expect("its address").port()
}

/// What to start: the flags of `hearth [global] serve [flags]`.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    database_url: Option<String>,
    home: Option<PathBuf>,
    world: Option<String>,
    synthetic_agents: Option<usize>,
    lore: String,
    args: Vec<String>,
    runtime: Option<Handle>,
    process: Option<PathBuf>,
    ready_within: Duration,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            database_url: None,
            home: None,
            world: None,
            synthetic_agents: None,
            lore: "no-lore-here".into(),
            args: Vec::new(),
            runtime: None,
            process: None,
            ready_within: READY_WITHIN,
        }
    }
}

impl ServerBuilder {
    /// Persists to this test database (`--database-url`); without it,
    /// `--no-db`.
    pub fn db(mut self, db: &TestDb) -> Self {
        self.database_url = Some(db.url());
        self
    }

    /// `--home` (default: a fresh directory under the system's temporary
    /// directory, removed by [`Server::stop`]): the token key and any
    /// embedding model live there; without a model the hashed embedder
    /// starts at once.
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// `--world` (default: serve's own, `valley`).
    pub fn world(mut self, slug: &str) -> Self {
        self.world = Some(slug.to_owned());
        self
    }

    /// `--synthetic-agents N`: a generated world instead of the content.
    pub fn synthetic_agents(mut self, n: usize) -> Self {
        self.synthetic_agents = Some(n);
        self
    }

    /// `--lore DIR` (default: a directory that does not exist, so no lore).
    pub fn lore(mut self, dir: impl AsRef<Path>) -> Self {
        self.lore = dir.as_ref().display().to_string();
        self
    }

    /// One more flag (or value) of `serve`, after the others.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More flags of `serve`, after the others.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the server on this runtime rather than the caller's (a bench
    /// keeps the server's threads apart from its clients').
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Runs the server as a process of its own, the `hearth` binary at `exe`
    /// (a test passes `env!("CARGO_BIN_EXE_hearth-cli")`), with the same
    /// flags, environment and working directory; its log goes to
    /// `server.log` in its home. For a test that reads `/metrics`, whose
    /// recorder is one per process. [`ServerBuilder::runtime`] does not
    /// apply.
    pub fn process(mut self, exe: impl Into<PathBuf>) -> Self {
        self.process = Some(exe.into());
        self
    }

    /// How long to wait for `/readyz` (default [`READY_WITHIN`]).
    pub fn ready_within(mut self, wait: Duration) -> Self {
        self.ready_within = wait;
        self
    }

    /// Starts `hearth serve` and waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When the flags do not parse, the server ends while starting (the
    /// message carries its error), or it is not ready in time.
    pub async fn start(self) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let (home, own_home) = match self.home {
            Some(h) => (h, false),
            None => {
                let n = HOMES.fetch_add(1, Ordering::Relaxed);
                let dir =
                    std::env::temp_dir().join(format!("hearth-test-{}-{n}", std::process::id()));
                (dir, true)
            }
        };
        std::fs::create_dir_all(&home)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        let mut argv: Vec<String> = vec!["hearth".into()];
        if let Some(url) = &self.database_url {
            argv.extend(["--database-url".into(), url.clone()]);
        }
        argv.extend(["--home".into(), home.display().to_string()]);
        argv.extend(["serve".into(), "--listen".into(), addr.clone()]);
        if self.database_url.is_none() {
            argv.push("--no-db".into());
        }
        if let Some(world) = &self.world {
            argv.extend(["--world".into(), world.clone()]);
        }
        if let Some(n) = self.synthetic_agents {
            argv.extend(["--synthetic-agents".into(), n.to_string()]);
        }
        argv.extend(["--lore".into(), self.lore.clone()]);
        argv.extend(self.args.iter().cloned());
        let cli = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("serve's flags {:?}: {e}", &argv[1..]));
        if let Some(exe) = &self.process {
            let log_path = home.join("server.log");
            let log = std::fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
            let child = tokio::process::Command::new(exe)
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
            let mut server = Server {
                addr,
                home,
                own_home,
                stop: None,
                task: None,
                child: Some(child),
            };
            server.wait_ready(self.ready_within).await;
            return server;
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let run = async move {
            cli::run(cli, &mut Vec::new(), async {
                // a dropped sender stops the server too
                let _ = stopped.await;
            })
            .await
        };
        let task = match &self.runtime {
            Some(handle) => handle.spawn(run),
            None => tokio::spawn(run),
        };
        let mut server = Server {
            addr,
            home,
            own_home,
            stop: Some(stop),
            task: Some(task),
            child: None,
        };
        server.wait_ready(self.ready_within).await;
        server
    }
}

/// A running `hearth serve`.
#[derive(Debug)]
pub struct Server {
    addr: String,
    home: PathBuf,
    /// Whether the home was made for this server (and is removed with it).
    own_home: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), CliError>>>,
    /// The server's process, when it runs in one of its own.
    child: Option<tokio::process::Child>,
}

/// Why a server did not stop cleanly.
#[derive(Debug)]
pub enum StopError {
    /// `hearth serve` returned this error.
    Failed(CliError),
    /// Its task panicked or was cancelled.
    Panicked(JoinError),
    /// Its process (see [`ServerBuilder::process`]) exited unsuccessfully.
    Exited(ExitStatus),
    /// It was still running after [`STOP_WITHIN`].
    TimedOut,
}

impl fmt::Display for StopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopError::Failed(e) => write!(f, "hearth serve ended with an error: {e}"),
            StopError::Panicked(e) => write!(f, "hearth serve panicked: {e}"),
            StopError::Exited(status) => write!(f, "hearth serve exited with {status}"),
            StopError::TimedOut => write!(
                f,
                "hearth serve did not stop within {} s",
                STOP_WITHIN.as_secs()
            ),
        }
    }
}

impl std::error::Error for StopError {}

impl Server {
    /// What to start; see [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The game clients' `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The server's `--home`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    async fn wait_ready(&mut self, within: Duration) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let url = format!("{}/readyz", self.http_url());
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let outcome = match self.task.take() {
                    Some(task) => match task.await {
                        Ok(Ok(())) => "it returned Ok".to_owned(),
                        Ok(Err(e)) => format!("{e}"),
                        Err(e) => format!("it panicked: {e}"),
                    },
                    None => String::new(),
                };
                panic!("hearth serve ended while starting: {outcome}");
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "hearth serve ended while starting: it exited with {status}; its log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hearth serve on {} was not ready within {} s{}",
                self.addr,
                within.as_secs(),
                if self.child.is_some() {
                    format!("; its log:\n{}", self.log_tail())
                } else {
                    String::new()
                }
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of a server process's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.home.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Tells the server to shut down (a process gets SIGTERM) and waits for
    /// it (at most [`STOP_WITHIN`]); its own home is removed afterwards.
    pub async fn try_stop(mut self) -> Result<(), StopError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let outcome = match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(StopError::Exited(status)),
                Ok(Err(_)) | Err(_) => {
                    let _ = child.kill().await;
                    Err(StopError::TimedOut)
                }
            };
            if self.own_home && outcome.is_ok() {
                let _ = std::fs::remove_dir_all(&self.home);
            }
            return outcome;
        }
        let outcome = match self.task.take() {
            None => Ok(()),
            Some(task) => match tokio::time::timeout(STOP_WITHIN, task).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(StopError::Failed(e)),
                Ok(Err(e)) => Err(StopError::Panicked(e)),
                Err(_) => Err(StopError::TimedOut),
            },
        };
        if self.own_home && outcome.is_ok() {
            let _ = std::fs::remove_dir_all(&self.home);
        }
        outcome
    }

    /// [`Server::try_stop`], asserting that the server stopped cleanly.
    ///
    /// # Panics
    /// When it did not (the message says how).
    pub async fn stop(self) {
        let addr = self.addr.clone();
        if let Err(e) = self.try_stop().await {
            panic!("stopping the server on {addr}: {e}");
        }
    }
}

/// A server process dropped without [`Server::stop`] is told to shut down
/// all the same, without waiting, as an in-process one is.
impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            terminate(child);
        }
    }
}

/// Sends SIGTERM to a server process still running.
fn terminate(child: &tokio::process::Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// A game client's WebSocket connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Server {
    /// A game client connected to `/ws` with protocol v1's subprotocol,
    /// which the server must accept.
    pub async fn connect(&self) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = self
            .ws_url()
            .into_client_request()
            .expect("a WebSocket URL");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            hearth_protocol::SUBPROTOCOL
                .parse()
                .expect("a header value"),
        );
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("the server accepts the connection");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(hearth_protocol::SUBPROTOCOL)
        );
        ws
    }
}

/// Sends `v` as a text frame.
pub async fn send(ws: &mut Ws, v: &serde_json::Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        v.to_string().into(),
    ))
    .await
    .expect("the frame is sent");
}

/// The answer to request `id`, skipping pushes (30 s at most).
pub async fn answer(ws: &mut Ws, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no answer to {id} within 30 s");
        let v = next_json(ws).await;
        if v["id"] == serde_json::json!(id) {
            return v;
        }
    }
}

/// The next text frame as JSON (10 s at most); panics on a close.
pub async fn next_json(ws: &mut Ws) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .expect("a frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}
