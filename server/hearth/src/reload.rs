//! Content reloaded into a running world: the designer's files (agents, the
//! map, lore, prompt templates) are watched (`notify`), and on a change, on
//! SIGHUP (`hearth reload`) or on a `reload_content` request, read and
//! checked as a whole set. A valid set that differs from the world's is
//! applied without a restart: changed agent rows are written, lore is
//! re-chunked and re-embedded, templates are swapped, and the world takes
//! the new definitions and map between two ticks ([`Command::Reload`]). An
//! invalid set changes nothing; its problems go to the log and to connected
//! designers. Each outcome is also written to a status file beside the
//! server's pid file, which `hearth reload` reads. Touches the content
//! files (read-only), the world's command channel, the hub (events for
//! designers), the database through `hearth-db`, and its run files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_db::{DbError, Pool, agents};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use hearth_content::validate::{self, Problem};
use hearth_content::{AgentDef, Content, WorldMap};
use hearth_mind::embed::Embedder;
use hearth_mind::llm::{Llm, Prompts};
use hearth_net::dispatch::{Hub, HubMsg};
use hearth_net::minds::ReloadAsk;
use hearth_protocol::{self as protocol, ContentProblem};
use hearth_world::Command;
use hearth_world::reload::{self as world_reload, Reload};

/// Quiet time after the last file event before the content is read (an
/// editor's save is often several events: truncate, write, rename).
const SETTLE: Duration = Duration::from_millis(300);

/// Who asked for a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file watcher saw a change.
    Watch,
    /// SIGHUP (`hearth reload`).
    Signal,
    /// A `reload_content` request, by this user (none without accounts).
    Client(Option<String>),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Watch => f.write_str("file change"),
            Source::Signal => f.write_str("SIGHUP"),
            Source::Client(Some(u)) => write!(f, "reload_content by {u}"),
            Source::Client(None) => f.write_str("reload_content"),
        }
    }
}

/// A reload to do, answered on `reply` when done.
#[derive(Debug)]
pub struct Request {
    pub source: Source,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// How a reload went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The world took the new content.
    Applied {
        /// Slugs of the agents whose definition changed.
        changed: Vec<String>,
        /// Agents that joined the world.
        #[serde(default)]
        added: Vec<String>,
        /// Agents that left it (archived in the database).
        #[serde(default)]
        removed: Vec<String>,
        map: bool,
        lore: bool,
        prompts: bool,
        /// What changed but takes effect only at a restart.
        #[serde(default)]
        notes: Vec<String>,
    },
    /// The files say what the world already runs.
    Unchanged,
    /// The files have problems; the world goes on with the last good
    /// version.
    Invalid {
        problems: Vec<ContentProblem>,
        message: String,
    },
    /// The files are valid but cannot be applied to the running world.
    Refused { message: String },
}

impl Outcome {
    /// The outcome's name, as in the status file and the metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Invalid { .. } => "invalid",
            Outcome::Refused { .. } => "refused",
        }
    }

    /// The world runs what the files say.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied { .. } | Outcome::Unchanged)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Applied {
                changed,
                added,
                removed,
                map,
                lore,
                prompts,
                notes,
            } => {
                let mut parts = Vec::new();
                if !changed.is_empty() {
                    parts.push(format!("agents {}", changed.join(", ")));
                }
                if !added.is_empty() {
                    parts.push(format!("joined {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    parts.push(format!("left {}", removed.join(", ")));
                }
                for (on, what) in [(*map, "the map"), (*lore, "lore"), (*prompts, "prompts")] {
                    if on {
                        parts.push(what.to_owned());
                    }
                }
                if parts.is_empty() {
                    parts.push("nothing the world uses".to_owned());
                }
                write!(f, "reloaded: {}", parts.join("; "))?;
                for n in notes {
                    write!(f, "\nnote: {n}")?;
                }
                Ok(())
            }
            Outcome::Unchanged => f.write_str("unchanged: the world already runs these files"),
            Outcome::Invalid { message, .. } => {
                write!(
                    f,
                    "not reloaded; the world goes on with the last good version:\n{message}"
                )
            }
            Outcome::Refused { message } => {
                write!(
                    f,
                    "not reloaded; the world goes on with the last good version: {message}"
                )
            }
        }
    }
}

fn problem_out(p: &Problem) -> ContentProblem {
    ContentProblem {
        file: p.file.display().to_string(),
        line: p.line,
        column: p.column,
        path: p.path.clone(),
        expected: p.expected.clone(),
        found: p.found.clone(),
        hint: p.hint.clone(),
    }
}

/// Where the content comes from.
#[derive(Debug, Clone)]
pub struct Paths {
    pub agents: PathBuf,
    pub map: PathBuf,
    pub lore: PathBuf,
    pub prompts: Option<PathBuf>,
}

impl Paths {
    /// The directories to watch, and whether below them too.
    pub fn watched(&self) -> Vec<(PathBuf, bool)> {
        let mut dirs = vec![(self.agents.clone(), false)];
        if let Some(d) = self.map.parent() {
            let d = if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            };
            dirs.push((d.to_path_buf(), false));
        }
        dirs.push((self.lore.clone(), true));
        if let Some(p) = &self.prompts {
            dirs.push((p.clone(), false));
        }
        dirs.retain(|(d, _)| d.is_dir());
        dirs.dedup();
        dirs
    }
}

/// The database side of a reload.
#[derive(Clone)]
pub struct Store {
    pub pool: Pool,
    pub world_id: i64,
    pub embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("world_id", &self.world_id)
            .finish_non_exhaustive()
    }
}

/// The server's run files: `<home>/run/<world>.pid` while it runs and
/// `<home>/run/<world>.reload.json`, the last reload's outcome.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub pid: PathBuf,
    pub status: PathBuf,
}

/// The last reload's outcome as `hearth reload` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Reloads since the server started (each reload request counts).
    pub seq: u64,
    /// Server's process id.
    pub pid: u32,
    pub source: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl RunFiles {
    pub fn new(home: &Path, world: &str) -> Self {
        let dir = home.join("run");
        Self {
            pid: dir.join(format!("{world}.pid")),
            status: dir.join(format!("{world}.reload.json")),
        }
    }

    /// Writes the pid file (and clears an old status).
    pub fn create(&self) -> std::io::Result<()> {
        if let Some(d) = self.pid.parent() {
            std::fs::create_dir_all(d)?;
        }
        let _ = std::fs::remove_file(&self.status);
        std::fs::write(&self.pid, format!("{}\n", std::process::id()))
    }

    /// Removes the pid file if it is still this process's.
    pub fn remove(&self) {
        if std::fs::read_to_string(&self.pid)
            .is_ok_and(|p| p.trim() == std::process::id().to_string())
        {
            let _ = std::fs::remove_file(&self.pid);
        }
    }

    /// The pid of the server, if its pid file is there.
    pub fn read_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }

    pub fn read_status(&self) -> Option<Status> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_status(&self, status: &Status) {
        let tmp = self.status.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(status).unwrap_or_default();
        // written whole then renamed: a reader never sees half a file
        if let Err(e) =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.status))
        {
            warn!(error = %e, path = %self.status.display(), "cannot write the reload status");
        }
    }
}

/// What the reloader works with.
pub struct Reloader {
    pub paths: Paths,
    /// What the world runs now.
    pub agents: Arc<Vec<AgentDef>>,
    pub map: Arc<WorldMap>,
    pub world: std::sync::mpsc::Sender<Command>,
    pub hub: Hub,
    pub store: Option<Store>,
    pub llm: Option<Arc<Llm>>,
    pub files: RunFiles,
    /// Database id of every agent by index (persisted worlds).
    pub agent_ids: Option<Arc<Vec<i64>>>,
    /// Indices of agents that left the world.
    pub gone: std::collections::HashSet<u32>,
    /// Most agents (present or gone) the world can hold before a restart.
    pub capacity: usize,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("paths", &self.paths)
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

/// Fingerprint of every file under `dir` (names and contents): equal
/// fingerprints, same files.
fn fingerprint(dir: &Path) -> u64 {
    if !dir.is_dir() {
        return 0;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(&std::fs::read(&f).unwrap_or_default());
    }
    h.digest()
}

impl Reloader {
    /// Serves reload requests until every sender is gone.
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let lore = self.paths.lore.clone();
        let prompts = self.paths.prompts.clone();
        let (mut lore_print, mut prompts_print) = tokio::task::spawn_blocking(move || {
            (
                fingerprint(&lore),
                prompts.as_deref().map_or(0, fingerprint),
            )
        })
        .await
        .unwrap_or((0, 0));
        let mut seq = 0;
        while let Some(request) = requests.recv().await {
            // requests that came meanwhile are answered by this one reload
            let mut replies: Vec<oneshot::Sender<Outcome>> = request.reply.into_iter().collect();
            while let Ok(more) = requests.try_recv() {
                replies.extend(more.reply);
            }
            seq += 1;
            let started = std::time::Instant::now();
            let outcome = self.reload(&mut lore_print, &mut prompts_print).await;
            metrics::histogram!("hearth_content_reload_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("hearth_content_reloads_total", "outcome" => outcome.kind())
                .increment(1);
            match &outcome {
                Outcome::Applied { .. } => info!(source = %request.source, "{outcome}"),
                Outcome::Unchanged => {
                    tracing::debug!(source = %request.source, "content unchanged")
                }
                Outcome::Invalid { problems, .. } => {
                    for p in problems {
                        warn!(
                            file = %p.file,
                            line = p.line,
                            column = p.column,
                            path = %p.path,
                            expected = %p.expected,
                            found = %p.found,
                            "content problem; the world goes on with the last good version"
                        );
                    }
                    self.tell_staff(protocol::Event::ContentError {
                        problems: problems.clone(),
                        message: outcome.to_string(),
                    });
                }
                Outcome::Refused { message } => {
                    warn!(source = %request.source, "content not reloaded: {message}");
                    self.tell_staff(protocol::Event::ContentError {
                        problems: Vec::new(),
                        message: outcome.to_string(),
                    });
                }
            }
            self.files.write_status(&Status {
                seq,
                pid: std::process::id(),
                source: request.source.to_string(),
                outcome: outcome.clone(),
            });
            for r in replies {
                let _ = r.send(outcome.clone());
            }
        }
    }

    fn tell_staff(&self, event: protocol::Event) {
        self.hub.send(HubMsg::Staff(event));
    }

    async fn reload(&mut self, lore_print: &mut u64, prompts_print: &mut u64) -> Outcome {
        let paths = self.paths.clone();
        let read = tokio::task::spawn_blocking(move || {
            let content = validate::load(&paths.agents, &paths.map);
            let lore = fingerprint(&paths.lore);
            let prompts = paths
                .prompts
                .as_deref()
                .map(|d| (fingerprint(d), Prompts::load(Some(d))));
            (content, lore, prompts)
        })
        .await;
        let Ok((content, lore_now, prompts_now)) = read else {
            return Outcome::Refused {
                message: "reading the content failed".into(),
            };
        };
        let content = match content {
            Ok(c) => c,
            Err(report) => {
                return Outcome::Invalid {
                    problems: report.problems.iter().map(problem_out).collect(),
                    message: report.to_string(),
                };
            }
        };
        let new_prompts = match prompts_now {
            Some((print, Ok(p))) if print != *prompts_print => Some((print, p)),
            Some((_, Err(e))) => {
                return Outcome::Invalid {
                    problems: Vec::new(),
                    message: e.to_string(),
                };
            }
            _ => None,
        };
        let next = match self.order(content) {
            Ok(x) => x,
            Err(message) => return Outcome::Refused { message },
        };
        let Next {
            agents,
            map,
            changed,
            added,
            removed,
        } = next;
        let map_changed = *map != *self.map;
        let lore_changed = lore_now != *lore_print;
        if changed.is_empty()
            && added.is_empty()
            && removed.is_empty()
            && !map_changed
            && !lore_changed
            && new_prompts.is_none()
        {
            return Outcome::Unchanged;
        }
        let mut notes = Vec::new();
        // agents' model settings: resolved again, or noted when the world
        // was started without any model
        let thinking = match &self.llm {
            Some(llm) => {
                if let Err(e) = llm.set_agents(&agents) {
                    return Outcome::Invalid {
                        problems: Vec::new(),
                        message: e.to_string(),
                    };
                }
                Some(
                    (0..agents.len())
                        .map(|i| llm.thinks(Some(i as u32)))
                        .collect::<Vec<bool>>(),
                )
            }
            None => {
                for &i in changed.iter().chain(&added) {
                    let (new, old) = (&agents[i as usize], self.agents.get(i as usize));
                    if new.file.llm.is_some() && old.is_none_or(|o| o.file.llm != new.file.llm) {
                        notes.push(format!(
                            "the model settings of '{}' take effect at the next restart: \
                             this server started without a language model",
                            new.file.id
                        ));
                    }
                }
                None
            }
        };
        let slug = |i: &u32| agents[*i as usize].file.id.clone();
        let mut agent_ids = self.agent_ids.clone();
        if let Some(store) = &self.store {
            let rows: Vec<agents::AgentRow> = changed
                .iter()
                .chain(&added)
                .map(|&i| crate::persist::agent_row(&agents[i as usize]))
                .collect();
            let leaving: Vec<String> = removed.iter().map(slug).collect();
            let written = async {
                let client = store.pool.get().await.map_err(DbError::from)?;
                let ids = agents::upsert(&client, store.world_id, &rows).await?;
                agents::archive(&client, store.world_id, &leaving).await?;
                Ok::<_, DbError>(ids)
            }
            .await;
            let ids = match written {
                Ok(ids) => ids,
                Err(e) => {
                    return Outcome::Refused {
                        message: format!("the agents could not be written to the database: {e}"),
                    };
                }
            };
            if let Some(known) = &agent_ids {
                let mut all = known.to_vec();
                for a in agents.iter().skip(all.len()) {
                    match ids.get(&a.file.id) {
                        Some(&id) => all.push(id),
                        None => {
                            return Outcome::Refused {
                                message: format!("agent '{}' was not registered", a.file.id),
                            };
                        }
                    }
                }
                agent_ids = Some(Arc::new(all));
            }
            if lore_changed
                && let Err(e) = hearth_mind::lore_sync::sync(
                    &store.pool,
                    store.world_id,
                    &self.paths.lore,
                    store.embedder.clone(),
                )
                .await
            {
                return Outcome::Invalid {
                    problems: Vec::new(),
                    message: e.to_string(),
                };
            }
        }
        let prompts_changed = new_prompts.is_some();
        if let Some((print, p)) = new_prompts {
            if let Some(llm) = &self.llm {
                llm.set_prompts(p);
            }
            *prompts_print = print;
        }
        *lore_print = lore_now;
        let reload = Reload {
            agents: agents.clone(),
            map: map.clone(),
            changed: changed.clone(),
            map_changed,
            removed: removed.clone(),
            thinking,
            agent_ids: agent_ids.clone(),
            lore: lore_changed,
            prompts: prompts_changed,
        };
        if self.world.send(Command::Reload(Box::new(reload))).is_err() {
            return Outcome::Refused {
                message: "the world has stopped".into(),
            };
        }
        let outcome = Outcome::Applied {
            changed: changed.iter().map(slug).collect(),
            added: added.iter().map(slug).collect(),
            removed: removed.iter().map(slug).collect(),
            map: map_changed,
            lore: lore_changed,
            prompts: prompts_changed,
            notes,
        };
        for i in &removed {
            self.gone.insert(*i);
        }
        for i in &added {
            self.gone.remove(i);
        }
        metrics::gauge!("hearth_agents").set((agents.len() - self.gone.len()) as f64);
        self.agents = agents;
        self.map = map;
        self.agent_ids = agent_ids;
        outcome
    }

    /// The new content with the world's agents at their indices (an agent
    /// that left keeps its place and last definition; new ones after the
    /// others, in file order), or why it cannot be applied to the running
    /// world.
    fn order(&self, content: Content) -> Result<Next, String> {
        let Content { map, agents: files } = content;
        let mut by_slug: std::collections::HashMap<&str, &AgentDef> =
            files.iter().map(|a| (a.file.id.as_str(), a)).collect();
        let mut ordered = Vec::with_capacity(files.len().max(self.agents.len()));
        let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, a) in self.agents.iter().enumerate() {
            let i = i as u32;
            let here = !self.gone.contains(&i);
            match by_slug.remove(a.file.id.as_str()) {
                Some(new) => {
                    if !here {
                        added.push(i);
                    } else if new != a {
                        changed.push(i);
                    }
                    ordered.push(new.clone());
                }
                None => {
                    if here {
                        removed.push(i);
                    }
                    ordered.push(a.clone());
                }
            }
        }
        for a in &files {
            if by_slug.contains_key(a.file.id.as_str()) {
                added.push(ordered.len() as u32);
                ordered.push(a.clone());
            }
        }
        if ordered.len() > self.capacity {
            return Err(format!(
                "{} agents would have been in this world since it started, and a running world \
                 takes at most {}: restart the server to add more",
                ordered.len(),
                self.capacity
            ));
        }
        let reload = Reload {
            agents: Arc::new(ordered),
            map: Arc::new(map),
            changed: Vec::new(),
            map_changed: false,
            removed: removed.clone(),
            thinking: None,
            agent_ids: None,
            lore: false,
            prompts: false,
        };
        world_reload::check(&self.agents, &reload).map_err(|e| e.to_string())?;
        Ok(Next {
            agents: reload.agents,
            map: reload.map,
            changed,
            added,
            removed,
        })
    }
}

/// The content a reload applies, in the world's agent order.
struct Next {
    agents: Arc<Vec<AgentDef>>,
    map: Arc<WorldMap>,
    /// Indices of agents whose definition changed.
    changed: Vec<u32>,
    /// Indices of agents that join (new, or back).
    added: Vec<u32>,
    /// Indices of agents that leave.
    removed: Vec<u32>,
}

/// Watches the content's directories and asks for a reload once changes
/// settle. The returned watcher must be kept: dropping it stops watching.
pub fn watch(
    paths: &Paths,
    requests: mpsc::UnboundedSender<Request>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (seen, mut changes) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && matches!(
                e.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
        {
            let _ = seen.send(());
        }
    })?;
    for (dir, below) in paths.watched() {
        let mode = if below {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(&dir, mode)?;
        info!(dir = %dir.display(), "watching content for changes");
    }
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // wait for the changes to settle
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let request = Request {
                source: Source::Watch,
                reply: None,
            };
            if requests.send(request).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

/// Asks a reload of every SIGHUP until the requests' receiver is gone. The
/// handler is in place when this returns (SIGHUP would otherwise end the
/// process), so call it before the pid file is written.
pub fn on_hangup(requests: mpsc::UnboundedSender<Request>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload with reload_content");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: reloading the content");
            let request = Request {
                source: Source::Signal,
                reply: None,
            };
            if requests.send(request).is_err() {
                return;
            }
        }
    });
}

/// Why `hearth reload` could not reload.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "no server for world '{world}' is running here (no pid file at {}); start one with `hearth serve`",
        path.display()
    )]
    NotRunning { world: String, path: PathBuf },
    #[error("the server of world '{world}' (pid {pid}) is gone; its pid file {} is stale", path.display())]
    Stale {
        world: String,
        pid: u32,
        path: PathBuf,
    },
    #[error("cannot signal the server (pid {pid}): {error}")]
    Signal { pid: u32, error: nix::Error },
    #[error("the server (pid {pid}) did not report a reload within {waited:?}")]
    NoAnswer { pid: u32, waited: Duration },
}

/// `hearth reload`: signals the server running world `world` from `home`
/// and waits up to `wait` for the outcome it reports.
pub async fn request(home: &Path, world: &str, wait: Duration) -> Result<Outcome, ReloadError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let files = RunFiles::new(home, world);
    let pid = files.read_pid().ok_or_else(|| ReloadError::NotRunning {
        world: world.to_owned(),
        path: files.pid.clone(),
    })?;
    let target = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    // a pid file left by a killed server may name another program by now
    let other_program = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| !String::from_utf8_lossy(&c).contains("hearth"));
    if other_program || kill(target, None).is_err() {
        return Err(ReloadError::Stale {
            world: world.to_owned(),
            pid,
            path: files.pid.clone(),
        });
    }
    let before = files
        .read_status()
        .filter(|s| s.pid == pid)
        .map_or(0, |s| s.seq);
    kill(target, Signal::SIGHUP).map_err(|error| ReloadError::Signal { pid, error })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(s) = files.read_status()
            && s.pid == pid
            && s.seq > before
        {
            return Ok(s.outcome);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ReloadError::NoAnswer { pid, waited: wait });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The hub's `reload_content` requests as reload requests, their outcome
/// sent back as the hub reads it (`Err` with the problems).
pub fn for_clients(reload: mpsc::UnboundedSender<Request>) -> mpsc::UnboundedSender<ReloadAsk> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ReloadAsk>();
    tokio::spawn(async move {
        while let Some(ask) = rx.recv().await {
            let (reply, outcome) = oneshot::channel();
            let request = Request {
                source: Source::Client(ask.user),
                reply: Some(reply),
            };
            if reload.send(request).is_err() {
                // the reloader has stopped; dropping `ask.reply` says so
                break;
            }
            let answer = ask.reply;
            tokio::spawn(async move {
                if let Ok(o) = outcome.await {
                    let _ = answer.send(if o.is_ok() {
                        Ok(())
                    } else {
                        Err(o.to_string())
                    });
                }
            });
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_round_trips_and_says_why() {
        let dir = std::env::temp_dir().join(format!("hearth-reload-{}", std::process::id()));
        let files = RunFiles::new(&dir, "valley");
        files.create().expect("pid file");
        assert_eq!(files.read_pid(), Some(std::process::id()));
        let status = Status {
            seq: 3,
            pid: 42,
            source: "SIGHUP".into(),
            outcome: Outcome::Invalid {
                problems: vec![ContentProblem {
                    file: "agents/ivo.json".into(),
                    line: 4,
                    column: 12,
                    path: "$.age".into(),
                    expected: "an integer".into(),
                    found: "\"old\"".into(),
                    hint: None,
                }],
                message: "agents/ivo.json:4:12: $.age: expected an integer, found \"old\"".into(),
            },
        };
        files.write_status(&status);
        assert_eq!(files.read_status(), Some(status.clone()));
        assert!(!status.outcome.is_ok());
        assert!(status.outcome.to_string().contains("agents/ivo.json:4:12"));
        files.remove();
        assert_eq!(files.read_pid(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outcomes_say_what_changed() {
        let o = Outcome::Applied {
            changed: vec!["ivo".into()],
            added: Vec::new(),
            removed: Vec::new(),
            map: true,
            lore: false,
            prompts: false,
            notes: vec!["x".into()],
        };
        assert!(o.is_ok());
        assert_eq!(o.to_string(), "reloaded: agents ivo; the map\nnote: x");
        assert!(Outcome::Unchanged.is_ok());
        assert!(
            !Outcome::Refused {
                message: "m".into()
            }
            .is_ok()
        );
    }

    #[test]
    fn watched_directories_are_the_ones_that_exist() {
        let paths = Paths {
            agents: PathBuf::from("/nonexistent/agents"),
            map: PathBuf::from("/nonexistent/maps/valley.tmj"),
            lore: std::env::temp_dir(),
            prompts: None,
        };
        assert_eq!(paths.watched(), vec![(std::env::temp_dir(), true)]);
    }
}
