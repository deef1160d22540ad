//! The memory service: runs every agent's memory stream on the async runtime,
//! fed each tick's events by the world's runner (the world never waits for
//! it); embeds new memories off the world's thread, in batches with one
//! request in flight; writes memories and then their embeddings to PostgreSQL
//! in order through one writer task when there is a database; and answers
//! retrieval queries. Rows go through the write-behind writer (shared with
//! the world's snapshots when the server runs one, else its own), which
//! commits them with the next checkpoint. Touches the stream, the embedder
//! and `hearth-db`'s memory tables and writer; never the ECS world.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hearth_db::memories::{self, MemoryRow};
use hearth_db::writer::{self as db_writer, Batch, WriterOptions};
use hearth_db::{DbError, Pool, game_time};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::embed::{EmbedError, Embedder};
use crate::llm::{Kind, Llm, Request, priority};
use crate::memory::{GameSeconds, Memory, MemoryKind};
use crate::prompt::agent_context;
use crate::retrieval::Scored;
use crate::stream::{MemoryStream, NewMemory, StreamStats};
use hearth_content::AgentDef;
use hearth_world::WorldEvent;
use hearth_world::mind::Mind;

/// Texts per embedding request.
const EMBED_BATCH: usize = 64;
/// Memories waiting for an embedding, at most; past it the oldest wait for
/// `hearth memories reembed` (they are stored and retrievable meanwhile).
const EMBED_QUEUE_MAX: usize = 200_000;
/// How often accepted memories are handed to the writer.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Memories per rating request.
const RATE_BATCH: usize = 16;
/// Rating requests in flight at once (the model client's gate caps the
/// world's requests as a whole).
const RATE_IN_FLIGHT: usize = 2;
/// Memories waiting for a rating, at most; past it the oldest keep the
/// rule-based rating, so a slow model delays no memory for long.
const RATE_QUEUE_MAX: usize = 2_000;
/// Memories shown for focal questions, and evidence per question.
const FOCAL_OVER: usize = 30;
const EVIDENCE_PER_QUESTION: usize = 8;

/// Where memories are kept: a world's rows in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pub pool: Pool,
    pub world_id: i64,
    pub dim: i32,
    /// The database id of each agent, by world index.
    pub agent_ids: Vec<i64>,
    /// The write-behind writer to hand rows to; without one the service
    /// starts its own (no lease) and stops it when it ends.
    pub writer: Option<db_writer::Writer>,
    /// How often new memories are handed to the writer (the world's flush
    /// interval; one second when `None`).
    pub flush_every: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no agent '{0}' in this world")]
    UnknownAgent(String),
    #[error("embedding the query: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the memory service has stopped")]
    Stopped,
}

/// Counts for logs and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStats {
    pub stream: StreamStats,
    pub embedded: u64,
    pub embed_failures: u64,
    /// Memories whose embedding was deferred because the queue was full.
    pub embed_deferred: u64,
    pub embed_queue: usize,
    pub written: u64,
    pub write_failures: u64,
}

enum Input {
    Tick {
        now: GameSeconds,
        events: Vec<(u64, WorldEvent)>,
    },
    Embedded {
        items: Vec<(u32, u64)>,
        vectors: Result<Vec<Vec<f32>>, EmbedError>,
    },
    Retrieve {
        agent: String,
        text: String,
        now: GameSeconds,
        k: usize,
        reply: oneshot::Sender<Result<Vec<(Scored, Memory)>, ServiceError>>,
    },
    /// A retrieval whose query has been embedded (or could not be).
    Ranked {
        agent: u32,
        query: Option<Vec<f32>>,
        now: GameSeconds,
        k: usize,
        reply: oneshot::Sender<Result<Vec<(Scored, Memory)>, ServiceError>>,
    },
    Stats(oneshot::Sender<ServiceStats>),
    /// The agent's newest memory of a kind.
    Latest {
        agent: String,
        kind: MemoryKind,
        reply: oneshot::Sender<Option<Memory>>,
    },
    /// Report every reflection made from now on to this channel.
    Watch(mpsc::UnboundedSender<Insight>),
    /// The wait after a failed embedding request is over.
    Wake,
    /// An agent that joined the world, with its latest memories in the
    /// database (none for a new one: it is seeded from its file).
    Joined {
        agent: u32,
        rows: Vec<MemoryRow>,
        now: GameSeconds,
    },
}

/// What a model job sends back to the service.
enum Done {
    /// Ratings of a batch, by position (`None`: keep the rule's).
    Rated {
        batch: u64,
        ratings: Option<Vec<Option<u8>>>,
    },
    /// A reflection's focal questions and their embeddings.
    Questions {
        agent: u32,
        now: GameSeconds,
        questions: Option<Vec<(String, Option<Vec<f32>>)>>,
    },
    /// A reflection's insights: (text, evidence ids).
    Insights {
        agent: u32,
        now: GameSeconds,
        insights: Option<Vec<(String, Vec<u64>)>>,
    },
    /// The model's wording of a look back.
    LookBack { key: u64, text: Option<String> },
}

/// A reflection an agent just made: its index and the insight.
#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    pub agent: u32,
    pub text: String,
}

/// A handle on the running service; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryService {
    tx: mpsc::UnboundedSender<Input>,
}

/// A handle that does not keep the service running (the service ends when
/// the last [`MemoryService`] is dropped).
#[derive(Debug, Clone)]
pub struct WeakMemoryService {
    tx: mpsc::WeakUnboundedSender<Input>,
}

impl WeakMemoryService {
    /// The service, unless it has ended.
    pub fn upgrade(&self) -> Option<MemoryService> {
        self.tx.upgrade().map(|tx| MemoryService { tx })
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Tick { now, events } => write!(f, "Tick({now}, {} events)", events.len()),
            Input::Embedded { items, .. } => write!(f, "Embedded({})", items.len()),
            Input::Retrieve { agent, .. } => write!(f, "Retrieve({agent})"),
            Input::Ranked { agent, .. } => write!(f, "Ranked({agent})"),
            Input::Stats(_) => f.write_str("Stats"),
            Input::Latest { agent, .. } => write!(f, "Latest({agent})"),
            Input::Watch(_) => f.write_str("Watch"),
            Input::Wake => f.write_str("Wake"),
            Input::Joined { agent, rows, .. } => write!(f, "Joined({agent}, {})", rows.len()),
        }
    }
}

impl MemoryService {
    /// Starts the service. With a store, each agent's latest memories are
    /// loaded back into its window first and only agents with none get their
    /// seed memories; without one, every agent starts from its seeds.
    pub async fn start(
        stream: MemoryStream,
        defs: &[AgentDef],
        mind: Arc<dyn Mind>,
        embedder: Arc<dyn Embedder>,
        store: Option<Store>,
        now: GameSeconds,
    ) -> Result<(Self, JoinHandle<ServiceStats>), ServiceError> {
        Self::start_with(stream, defs, mind, embedder, store, now, None).await
    }

    /// [`MemoryService::start`] with a language model that rates new
    /// memories (in batches), draws reflections (focal questions, then
    /// insights citing their evidence) and words each day's look back, for
    /// the agents it thinks for; the rule-based mind's versions stand
    /// whenever it fails.
    pub async fn start_with(
        mut stream: MemoryStream,
        defs: &[AgentDef],
        mind: Arc<dyn Mind>,
        embedder: Arc<dyn Embedder>,
        store: Option<Store>,
        now: GameSeconds,
        llm: Option<Arc<Llm>>,
    ) -> Result<(Self, JoinHandle<ServiceStats>), ServiceError> {
        if let Some(llm) = &llm {
            stream.reflect_by_model(
                (0..defs.len())
                    .map(|i| llm.thinks(Some(i as u32)))
                    .collect(),
            );
        }
        let (fresh, unembedded) = match &store {
            Some(s) => {
                let client = s.pool.get().await.map_err(DbError::from)?;
                let window = stream.config().retrieval.hot_window as i64;
                let mut restored = 0usize;
                let mut unembedded = Vec::new();
                let mut unseeded = Vec::new();
                for (i, &agent_id) in s.agent_ids.iter().enumerate() {
                    let mut rows = memories::load_recent(&client, agent_id, window).await?;
                    if rows.is_empty() {
                        unseeded.push(i);
                        continue;
                    }
                    rows.reverse();
                    restored += rows.len();
                    for row in rows {
                        if let Some((memory, embedding)) = from_row(&row) {
                            if embedding.is_none() {
                                unembedded.push((i as u32, memory.id, memory.content.clone()));
                            }
                            stream.restore(i as u32, memory, embedding.as_deref());
                        }
                    }
                }
                let mut fresh = Vec::new();
                for &i in &unseeded {
                    if let Some(def) = defs.get(i) {
                        fresh.extend(stream.seed_agent(i as u32, def, mind.as_ref(), now));
                    }
                }
                info!(
                    restored,
                    unembedded = unembedded.len(),
                    seeded = fresh.len(),
                    "memories loaded"
                );
                (fresh, unembedded)
            }
            None => (stream.seed(defs, mind.as_ref(), now), Vec::new()),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = store.as_ref().map(|s| match &s.writer {
            Some(w) => Writer {
                handle: w.clone(),
                own: None,
            },
            None => {
                let (handle, task) =
                    db_writer::spawn(s.pool.clone(), None, WriterOptions::default());
                Writer {
                    handle,
                    own: Some(task),
                }
            }
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut task = Task {
            llm,
            defs: Arc::new(defs.to_vec()),
            done: done_tx,
            unrated: VecDeque::new(),
            rating: std::collections::HashMap::new(),
            next_batch: 0,
            drafts: std::collections::HashMap::new(),
            stream,
            mind,
            embedder,
            store,
            writer,
            tx: tx.downgrade(),
            to_write: Vec::new(),
            embeddings: Vec::new(),
            queue: unembedded.into(),
            in_flight: false,
            retry_at: None,
            backoff: Duration::from_millis(500),
            stats: ServiceStats::default(),
            watchers: Vec::new(),
        };
        // seeds keep the designer's (or the rule's) rating
        task.accept_now(fresh);
        let handle = tokio::spawn(task.run(rx, done_rx));
        Ok((Self { tx }, handle))
    }

    pub fn downgrade(&self) -> WeakMemoryService {
        WeakMemoryService {
            tx: self.tx.downgrade(),
        }
    }

    /// Hands one tick's events to the service; never blocks. `false` once the
    /// service has stopped.
    pub fn tick(&self, now: GameSeconds, events: Vec<(u64, WorldEvent)>) -> bool {
        self.tx.send(Input::Tick { now, events }).is_ok()
    }

    /// The top `k` memories of agent `slug` for `text` at game time `now`.
    pub async fn retrieve(
        &self,
        slug: &str,
        text: &str,
        now: GameSeconds,
        k: usize,
    ) -> Result<Vec<(Scored, Memory)>, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Retrieve {
                agent: slug.to_owned(),
                text: text.to_owned(),
                now,
                k,
                reply,
            })
            .map_err(|_| ServiceError::Stopped)?;
        rx.await.map_err(|_| ServiceError::Stopped)?
    }

    /// Reflections made from now on, as they are made (for the hub's
    /// `reflection` events). Never blocks the service: the channel is
    /// unbounded and a closed one is forgotten.
    pub fn watch_reflections(&self) -> mpsc::UnboundedReceiver<Insight> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Input::Watch(tx));
        rx
    }

    /// Agent `slug`'s newest memory of `kind` in its window, if any.
    pub async fn latest(
        &self,
        slug: &str,
        kind: MemoryKind,
    ) -> Result<Option<Memory>, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Latest {
                agent: slug.to_owned(),
                kind,
                reply,
            })
            .map_err(|_| ServiceError::Stopped)?;
        rx.await.map_err(|_| ServiceError::Stopped)
    }

    pub async fn stats(&self) -> Result<ServiceStats, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Stats(reply))
            .map_err(|_| ServiceError::Stopped)?;
        rx.await.map_err(|_| ServiceError::Stopped)
    }
}

/// The service's state, owned by its task.
struct Task {
    llm: Option<Arc<Llm>>,
    defs: Arc<Vec<AgentDef>>,
    /// Where model jobs send their results.
    done: mpsc::UnboundedSender<Done>,
    /// New memories waiting for the model's rating.
    unrated: VecDeque<NewMemory>,
    /// Batches being rated, by batch number.
    rating: std::collections::HashMap<u64, Vec<NewMemory>>,
    next_batch: u64,
    /// Looks back being worded by the model: the rule's draft, by key.
    drafts: std::collections::HashMap<u64, NewMemory>,
    stream: MemoryStream,
    mind: Arc<dyn Mind>,
    embedder: Arc<dyn Embedder>,
    store: Option<Store>,
    writer: Option<Writer>,
    /// For the requests the task starts to answer on; weak, so the task ends
    /// when the last handle is dropped.
    tx: mpsc::WeakUnboundedSender<Input>,
    /// Accepted memories not yet handed to the writer.
    to_write: Vec<MemoryRow>,
    /// Embeddings not yet handed to the writer: (agent id, memory id, vector).
    embeddings: Vec<(i64, i64, Vec<f32>)>,
    /// Memories waiting for an embedding: (agent, id, text).
    queue: VecDeque<(u32, u64, String)>,
    in_flight: bool,
    /// After a failed request, no new one before this.
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
    stats: ServiceStats,
    /// Who hears of reflections.
    watchers: Vec<mpsc::UnboundedSender<Insight>>,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Input>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) -> ServiceStats {
        let every = self
            .store
            .as_ref()
            .and_then(|s| s.flush_every)
            .unwrap_or(FLUSH_EVERY);
        let mut flush = tokio::time::interval(every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.handle(input).await,
                    // every handle dropped: the world has stopped
                    None => break,
                },
                Some(d) = done.recv() => self.finished(d),
                _ = flush.tick() => self.flush().await,
            }
            self.embed_next();
            self.rate_next();
        }
        // the world has stopped: what the model has not rated or worded
        // yet keeps the rule's version; nothing accepted is lost
        let waiting: Vec<NewMemory> = self
            .unrated
            .drain(..)
            .chain(self.rating.drain().flat_map(|(_, b)| b))
            .chain(self.drafts.drain().map(|(_, d)| d))
            .collect();
        self.accept_now(waiting);
        self.flush().await;
        if let Some(writer) = self.writer.take() {
            let (written, failures) = writer.finish().await;
            self.stats.written = written;
            self.stats.write_failures = failures;
        }
        self.stats.stream = self.stream.stats();
        self.stats
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Tick { now, events } => {
                for (_, e) in &events {
                    if let WorldEvent::ContentReloaded(r) = e {
                        self.reloaded(r, now);
                    }
                }
                let made = self.stream.ingest(now, &events, self.mind.as_ref());
                self.accept(made);
                for agent in self.stream.take_due_reflections() {
                    self.ask_questions(agent, now);
                }
            }
            Input::Joined {
                agent,
                mut rows,
                now,
            } => {
                if rows.is_empty() {
                    self.seed_one(agent, now);
                } else {
                    rows.reverse();
                    for row in rows {
                        if let Some((memory, embedding)) = from_row(&row) {
                            if embedding.is_none() {
                                self.queue
                                    .push_back((agent, memory.id, memory.content.clone()));
                            }
                            self.stream.restore(agent, memory, embedding.as_deref());
                        }
                    }
                }
            }
            Input::Embedded { items, vectors } => {
                self.in_flight = false;
                match vectors {
                    Ok(vectors) => {
                        self.backoff = Duration::from_millis(500);
                        for ((agent, id), v) in items.into_iter().zip(vectors) {
                            self.stream.set_embedding(agent, id, &v);
                            self.stats.embedded += 1;
                            if let Some(s) = &self.store
                                && let Some(&agent_id) = s.agent_ids.get(agent as usize)
                            {
                                self.embeddings.push((agent_id, id as i64, v));
                            }
                        }
                    }
                    Err(e) => {
                        self.stats.embed_failures += 1;
                        warn!(error = %e, retry_in_ms = self.backoff.as_millis() as u64,
                            "embedding failed; memories stay retrievable by recency and importance");
                        // put them back, in order, and wait before asking again
                        for (agent, id) in items.into_iter().rev() {
                            if let Some(m) = self.stream.memory(agent, id) {
                                self.queue.push_front((agent, id, m.content.clone()));
                            }
                        }
                        self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            Input::Retrieve {
                agent,
                text,
                now,
                k,
                reply,
            } => self.retrieve(&agent, text, now, k, reply),
            Input::Ranked {
                agent,
                query,
                now,
                k,
                reply,
            } => {
                let _ = reply.send(Ok(self.stream.retrieve(agent, query.as_deref(), now, k)));
            }
            Input::Wake => self.in_flight = false,
            Input::Latest { agent, kind, reply } => {
                let found = self.stream.agent(&agent).and_then(|a| {
                    self.stream
                        .memories(a)
                        .filter(|m| m.kind == kind)
                        .max_by_key(|m| m.id)
                        .cloned()
                });
                let _ = reply.send(found);
            }
            Input::Watch(tx) => self.watchers.push(tx),
            Input::Stats(reply) => {
                let mut stats = self.stats;
                stats.stream = self.stream.stats();
                stats.embed_queue = self.queue.len();
                if let Some(w) = &self.writer {
                    stats.written = w.handle.status().memories;
                }
                let _ = reply.send(stats);
            }
        }
    }

    /// Embeds the query on its own task (the service goes on meanwhile) and
    /// ranks when it is back; if the embedder fails, ranks by recency and
    /// importance alone rather than failing the caller.
    fn retrieve(
        &mut self,
        slug: &str,
        text: String,
        now: GameSeconds,
        k: usize,
        reply: oneshot::Sender<Result<Vec<(Scored, Memory)>, ServiceError>>,
    ) {
        let Some(agent) = self.stream.agent(slug) else {
            let _ = reply.send(Err(ServiceError::UnknownAgent(slug.to_owned())));
            return;
        };
        if text.trim().is_empty() {
            // nothing to be relevant to: rank by recency and importance
            // (relevance 0 for all) rather than by the embedding of ""
            let _ = reply.send(Ok(self.stream.retrieve(agent, None, now, k)));
            return;
        }
        let Some(tx) = self.tx.upgrade() else {
            let _ = reply.send(Err(ServiceError::Stopped));
            return;
        };
        let embedder = self.embedder.clone();
        tokio::spawn(async move {
            let query = match embedder.embed(std::slice::from_ref(&text)).await {
                Ok(mut v) if v.len() == 1 => v.pop(),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "embedding a query failed; ranking by recency and importance");
                    None
                }
            };
            let _ = tx.send(Input::Ranked {
                agent,
                query,
                now,
                k,
                reply,
            });
        });
    }

    /// Takes content reloaded into the world: new definitions, windows for
    /// agents that joined (seeded from their files unless they were here
    /// before and remember), and their database ids.
    fn reloaded(&mut self, r: &hearth_world::reload::Reloaded, now: GameSeconds) {
        self.defs = r.agents.clone();
        self.stream.set_content(&r.agents, &r.map);
        if let Some(llm) = &self.llm {
            self.stream.reflect_by_model(
                (0..r.agents.len())
                    .map(|i| llm.thinks(Some(i as u32)))
                    .collect(),
            );
        }
        if let (Some(store), Some(ids)) = (self.store.as_mut(), r.agent_ids.as_ref()) {
            store.agent_ids = ids.to_vec();
        }
        for &agent in &r.added {
            if self.stream.memories(agent).next().is_some() {
                // back after leaving while the server ran: it remembers
                continue;
            }
            let found = self
                .store
                .as_ref()
                .and_then(|s| Some((s.pool.clone(), *s.agent_ids.get(agent as usize)?)));
            let Some((pool, agent_id)) = found else {
                self.seed_one(agent, now);
                continue;
            };
            // it may have lived here before: its memories are in the database
            let window = self.stream.config().retrieval.hot_window as i64;
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let rows = match pool.get().await {
                    Ok(client) => memories::load_recent(&client, agent_id, window)
                        .await
                        .unwrap_or_else(|e| {
                            warn!(agent_id, error = %e, "cannot load a returning agent's memories");
                            Vec::new()
                        }),
                    Err(e) => {
                        warn!(agent_id, error = %e, "cannot load a returning agent's memories");
                        Vec::new()
                    }
                };
                if let Some(tx) = tx.upgrade() {
                    let _ = tx.send(Input::Joined { agent, rows, now });
                }
            });
        }
    }

    /// Agent `agent`'s seed memories, from its file.
    fn seed_one(&mut self, agent: u32, now: GameSeconds) {
        let Some(def) = self.defs.get(agent as usize).cloned() else {
            return;
        };
        let made = self.stream.seed_agent(agent, &def, self.mind.as_ref(), now);
        self.accept_now(made);
    }

    /// Takes new memories: those of agents with a model go to it first
    /// (a rating, or a look back's wording), the rest are accepted now.
    fn accept(&mut self, made: Vec<NewMemory>) {
        let Some(llm) = self.llm.clone() else {
            self.accept_now(made);
            return;
        };
        let mut now = Vec::new();
        for m in made {
            if !llm.thinks(Some(m.agent)) {
                now.push(m);
            } else if m.memory.kind == MemoryKind::Metacognition {
                self.word_look_back(&llm, m);
            } else if m.memory.kind == MemoryKind::Reflection {
                now.push(m);
            } else {
                self.unrated.push_back(m);
            }
        }
        while self.unrated.len() > RATE_QUEUE_MAX {
            if let Some(m) = self.unrated.pop_front() {
                now.push(m);
            }
        }
        self.accept_now(now);
    }

    /// Starts rating requests while fewer than [`RATE_IN_FLIGHT`] are out.
    fn rate_next(&mut self) {
        let Some(llm) = self.llm.clone() else { return };
        while self.rating.len() < RATE_IN_FLIGHT && !self.unrated.is_empty() {
            // across agents on the world's endpoint, else one agent's own
            let first = self.unrated[0].agent;
            let shared = llm.thinks(None);
            let mut batch = Vec::new();
            let mut rest = VecDeque::new();
            while let Some(m) = self.unrated.pop_front() {
                if batch.len() < RATE_BATCH && (shared || m.agent == first) {
                    batch.push(m);
                } else {
                    rest.push_back(m);
                }
            }
            self.unrated = rest;
            let items: Vec<serde_json::Value> = batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let def = self.defs.get(m.agent as usize);
                    serde_json::json!({
                        "id": i + 1,
                        "agent": def.map_or("someone", |d| d.file.name.as_str()),
                        "occupation": def.map_or("", |d| d.file.occupation.as_str()),
                        "text": m.memory.content,
                    })
                })
                .collect();
            let n = batch.len();
            let now = batch.iter().map(|m| m.memory.created).max().unwrap_or(0);
            let key = self.next_batch;
            self.next_batch += 1;
            self.rating.insert(key, batch);
            let (llm, done) = (llm.clone(), self.done.clone());
            let request = Request {
                kind: Kind::Importance,
                agent: (!shared).then_some(first),
                priority: priority::IMPORTANCE,
                now,
                context: serde_json::json!({ "memories": items }),
            };
            tokio::spawn(async move {
                let ratings = llm.ask(request).await.ok().map(|v| {
                    let mut out = vec![None; n];
                    for r in v["ratings"].as_array().into_iter().flatten() {
                        let id = r["id"].as_u64().unwrap_or(0) as usize;
                        let rating = r["rating"].as_u64().unwrap_or(0);
                        if (1..=n).contains(&id) && (1..=10).contains(&rating) {
                            out[id - 1] = Some(rating as u8);
                        }
                    }
                    out
                });
                let _ = done.send(Done::Rated {
                    batch: key,
                    ratings,
                });
            });
        }
    }

    /// Asks the model to word a look back; the rule's draft stands until
    /// (and unless) it answers.
    fn word_look_back(&mut self, llm: &Arc<Llm>, draft: NewMemory) {
        let Some(def) = self.defs.get(draft.agent as usize) else {
            self.accept_now(vec![draft]);
            return;
        };
        let memories: Vec<String> = draft
            .memory
            .evidence
            .iter()
            .filter_map(|&id| self.stream.memory(draft.agent, id))
            .map(|m| m.content.clone())
            .collect();
        let day = draft.memory.created / 86_400;
        let request = Request {
            kind: Kind::Metacognition,
            agent: Some(draft.agent),
            priority: priority::REFLECT,
            now: draft.memory.created,
            context: serde_json::json!({
                "agent": agent_context(def),
                "day": day,
                "goal": def.file.goals.primary,
                "memories": memories,
                "draft": draft.memory.content,
            }),
        };
        let key = self.next_batch;
        self.next_batch += 1;
        self.drafts.insert(key, draft);
        let (llm, done) = (llm.clone(), self.done.clone());
        tokio::spawn(async move {
            let text = llm
                .ask(request)
                .await
                .ok()
                .and_then(|v| v["reflection"].as_str().map(|t| t.trim().to_owned()))
                .filter(|t| !t.is_empty());
            let _ = done.send(Done::LookBack { key, text });
        });
    }

    /// The first step of a model's reflection: focal questions over the
    /// agent's latest memories, each embedded for its evidence.
    fn ask_questions(&mut self, agent: u32, now: GameSeconds) {
        let (Some(llm), Some(def)) = (self.llm.clone(), self.defs.get(agent as usize)) else {
            return;
        };
        let latest: Vec<String> = self
            .stream
            .latest(agent, FOCAL_OVER)
            .into_iter()
            .rev()
            .map(|m| m.content)
            .collect();
        let count = self.stream.config().focal_questions;
        let request = Request {
            kind: Kind::FocalQuestions,
            agent: Some(agent),
            priority: priority::REFLECT,
            now,
            context: serde_json::json!({
                "agent": agent_context(def),
                "memories": latest,
                "count": count,
            }),
        };
        let (embedder, done) = (self.embedder.clone(), self.done.clone());
        tokio::spawn(async move {
            let questions: Option<Vec<String>> = llm.ask(request).await.ok().map(|v| {
                v["questions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|q| q.as_str())
                    .map(|q| q.trim().to_owned())
                    .filter(|q| !q.is_empty())
                    .take(count.max(1))
                    .collect()
            });
            let questions = match questions.filter(|q| !q.is_empty()) {
                None => None,
                Some(qs) => {
                    let vectors = embedder
                        .embed(&qs)
                        .await
                        .ok()
                        .filter(|v| v.len() == qs.len());
                    Some(match vectors {
                        Some(v) => qs.into_iter().zip(v.into_iter().map(Some)).collect(),
                        None => qs.into_iter().map(|q| (q, None)).collect(),
                    })
                }
            };
            let _ = done.send(Done::Questions {
                agent,
                now,
                questions,
            });
        });
    }

    /// What a model job sent back.
    fn finished(&mut self, done: Done) {
        match done {
            Done::Rated { batch, ratings } => {
                let Some(items) = self.rating.remove(&batch) else {
                    return;
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, mut m) in items.into_iter().enumerate() {
                    if let Some(r) = ratings.as_ref().and_then(|r| r.get(i).copied().flatten()) {
                        m.memory.importance = r;
                        self.stream
                            .revise(m.agent, m.memory.id, |mm| mm.importance = r);
                    }
                    out.push(m);
                }
                self.accept_now(out);
            }
            Done::LookBack { key, text } => {
                let Some(mut draft) = self.drafts.remove(&key) else {
                    return;
                };
                if let Some(text) = text {
                    draft.memory.content = text.clone();
                    self.stream
                        .revise(draft.agent, draft.memory.id, |m| m.content = text);
                }
                self.accept_now(vec![draft]);
            }
            Done::Questions {
                agent,
                now,
                questions,
            } => {
                let Some(questions) = questions else {
                    let made = self.stream.reflect_by_rule(agent, now, self.mind.as_ref());
                    self.accept_now(made);
                    return;
                };
                self.ask_insights(agent, now, questions);
            }
            Done::Insights {
                agent,
                now,
                insights,
            } => {
                let made: Vec<NewMemory> = match insights {
                    Some(list) => list
                        .iter()
                        .filter_map(|(text, evidence)| {
                            self.stream
                                .add_insight(agent, text, evidence, now, self.mind.as_ref())
                        })
                        .collect(),
                    None => Vec::new(),
                };
                if made.is_empty() {
                    let made = self.stream.reflect_by_rule(agent, now, self.mind.as_ref());
                    self.accept_now(made);
                } else {
                    self.accept_now(made);
                }
            }
        }
    }

    /// The second step: evidence for each question from the agent's
    /// memories, then insights citing it.
    fn ask_insights(
        &mut self,
        agent: u32,
        now: GameSeconds,
        questions: Vec<(String, Option<Vec<f32>>)>,
    ) {
        let (Some(llm), Some(def)) = (self.llm.clone(), self.defs.get(agent as usize)) else {
            return;
        };
        let mut evidence: Vec<(u64, String)> = Vec::new();
        for (_, vector) in &questions {
            for (_, m) in self
                .stream
                .retrieve(agent, vector.as_deref(), now, EVIDENCE_PER_QUESTION)
            {
                if m.kind != MemoryKind::Metacognition
                    && !evidence.iter().any(|(id, _)| *id == m.id)
                {
                    evidence.push((m.id, m.content));
                }
            }
        }
        evidence.sort_by_key(|(id, _)| *id);
        let request = Request {
            kind: Kind::Insights,
            agent: Some(agent),
            priority: priority::REFLECT,
            now,
            context: serde_json::json!({
                "agent": agent_context(def),
                "questions": questions.iter().map(|(q, _)| q).collect::<Vec<_>>(),
                "evidence": evidence.iter().map(|(id, text)| serde_json::json!({"id": id, "text": text})).collect::<Vec<_>>(),
                "count": 5,
            }),
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            let insights = llm.ask(request).await.ok().map(|v| {
                v["insights"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(5)
                    .filter_map(|i| {
                        let text = i["insight"].as_str()?.trim().to_owned();
                        let ids: Vec<u64> = i["evidence"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(serde_json::Value::as_u64)
                            .collect();
                        Some((text, ids))
                    })
                    .collect()
            });
            let _ = done.send(Done::Insights {
                agent,
                now,
                insights,
            });
        });
    }

    /// Queues new memories for embedding and for the writer.
    fn accept_now(&mut self, made: Vec<NewMemory>) {
        for m in made {
            if m.memory.kind == MemoryKind::Reflection && !self.watchers.is_empty() {
                let insight = Insight {
                    agent: m.agent,
                    text: m.memory.content.clone(),
                };
                self.watchers.retain(|w| w.send(insight.clone()).is_ok());
            }
            if self.queue.len() >= EMBED_QUEUE_MAX {
                self.queue.pop_front();
                self.stats.embed_deferred += 1;
            }
            self.queue
                .push_back((m.agent, m.memory.id, m.memory.content.clone()));
            if let Some(s) = &self.store
                && let Some(row) = to_row(s, &self.stream, m.agent, &m.memory)
            {
                self.to_write.push(row);
            }
        }
    }

    /// Starts the next embedding request if none is in flight.
    fn embed_next(&mut self) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        if let Some(at) = self.retry_at.take()
            && tokio::time::Instant::now() < at
        {
            // back off after a failure: wake the loop when the wait is over
            let Some(tx) = self.tx.upgrade() else {
                return;
            };
            self.in_flight = true;
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = tx.send(Input::Wake);
            });
            return;
        }
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let n = self.queue.len().min(EMBED_BATCH);
        let batch: Vec<(u32, u64, String)> = self.queue.drain(..n).collect();
        let items: Vec<(u32, u64)> = batch.iter().map(|(a, i, _)| (*a, *i)).collect();
        let texts: Vec<String> = batch.into_iter().map(|(_, _, t)| t).collect();
        let embedder = self.embedder.clone();
        self.in_flight = true;
        tokio::spawn(async move {
            let vectors = embedder.embed(&texts).await.and_then(|v| {
                if v.len() == texts.len() {
                    Ok(v)
                } else {
                    Err(EmbedError::BadResponse(format!(
                        "{} vectors for {} texts",
                        v.len(),
                        texts.len()
                    )))
                }
            });
            let _ = tx.send(Input::Embedded { items, vectors });
        });
    }

    /// Hands what was accepted to the writer: new rows, then the embeddings
    /// (the writer applies them in that order, so a row exists before its
    /// vector is set). Waits for room in the writer's channel, which it
    /// drains continuously.
    async fn flush(&mut self) {
        let Some(writer) = &self.writer else {
            self.to_write.clear();
            self.embeddings.clear();
            return;
        };
        if self.to_write.is_empty() && self.embeddings.is_empty() {
            return;
        }
        let batch = Batch {
            memories: std::mem::take(&mut self.to_write),
            embeddings: std::mem::take(&mut self.embeddings),
            ..Batch::default()
        };
        if let Err(lost) = writer.handle.send(batch).await {
            self.stats.write_failures += 1;
            warn!(
                memories = lost.memories.len(),
                "the writer has stopped; these memories stay in memory only"
            );
        }
    }
}

/// The row of a memory, with the related agents as database ids.
fn to_row(store: &Store, stream: &MemoryStream, agent: u32, m: &Memory) -> Option<MemoryRow> {
    let agent_id = *store.agent_ids.get(agent as usize)?;
    let related = m
        .related_agents
        .iter()
        .filter_map(|slug| stream.agent(slug))
        .filter_map(|i| store.agent_ids.get(i as usize).copied())
        .collect();
    Some(MemoryRow {
        world_id: store.world_id,
        agent_id,
        id: m.id as i64,
        kind: m.kind.as_str().to_owned(),
        content: m.content.clone(),
        importance: i16::from(m.importance),
        emotional_valence: m.valence,
        emotional_intensity: m.intensity,
        tags: m.tags.clone(),
        related_agent_ids: related,
        related_character_ids: m.related_characters.clone(),
        location: m.location.clone(),
        created_game_time: game_time::to_timestamp(m.created),
        last_accessed_game_time: game_time::to_timestamp(m.last_accessed.max(m.created)),
        depth: i16::from(m.depth),
        evidence_ids: m.evidence.iter().map(|&e| e as i64).collect(),
        embedding: None,
    })
}

/// A stored row back as a memory (related agents are left out: the window
/// keeps slugs, the row ids) and its embedding. `None` for a kind this
/// version does not know.
fn from_row(row: &MemoryRow) -> Option<(Memory, Option<Vec<f32>>)> {
    let kind = MemoryKind::parse(&row.kind)?;
    let memory = Memory {
        valence: row.emotional_valence,
        intensity: row.emotional_intensity,
        tags: row.tags.clone(),
        related_characters: row.related_character_ids.clone(),
        location: row.location.clone(),
        last_accessed: game_time::from_timestamp(row.last_accessed_game_time),
        depth: u8::try_from(row.depth).unwrap_or(0),
        evidence: row.evidence_ids.iter().map(|&e| e as u64).collect(),
        ..Memory::new(
            u64::try_from(row.id).ok()?,
            kind,
            row.content.clone(),
            u8::try_from(row.importance).unwrap_or(1),
            game_time::from_timestamp(row.created_game_time),
        )
    };
    Some((memory, row.embedding.clone()))
}

/// The writer the service hands rows to, and its task when the service
/// started it.
#[derive(Debug)]
struct Writer {
    handle: db_writer::Writer,
    own: Option<JoinHandle<Result<db_writer::WriterReport, db_writer::WriterError>>>,
}

impl Writer {
    /// Lets go of the writer (waiting for its own one to commit and stop);
    /// (memories written, batches that failed).
    async fn finish(self) -> (u64, u64) {
        let status = self.handle.status();
        drop(self.handle);
        match self.own {
            Some(task) => match task.await {
                Ok(Ok(report)) => (report.memories, 0),
                Ok(Err(e)) => {
                    warn!(error = %e, "memory writer stopped");
                    (status.memories, 1)
                }
                Err(_) => (status.memories, 1),
            },
            None => (status.memories, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{EmbedFuture, HashedEmbedder};
    use crate::stream::StreamConfig;
    use hearth_content::synthetic;
    use hearth_world::mind::RuleMind;

    /// Embeds every text, even an empty one, as words do: the hashed
    /// embedder's vector of a fixed sentence.
    #[derive(Debug)]
    struct Everything(Vec<f32>);

    impl Embedder for Everything {
        fn model(&self) -> &str {
            "everything"
        }
        fn dim(&self) -> usize {
            self.0.len()
        }
        fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
            let v = vec![self.0.clone(); texts.len()];
            Box::pin(async move { Ok(v) })
        }
    }

    #[tokio::test]
    async fn an_empty_query_ranks_without_relevance() {
        let content = synthetic::world(3, 2);
        let stream = MemoryStream::new(StreamConfig::default(), &content.agents, &content.map);
        let (service, task) = MemoryService::start(
            stream,
            &content.agents,
            Arc::new(RuleMind),
            Arc::new(Everything(HashedEmbedder::new().embed_one("bread at dawn"))),
            None,
            0,
        )
        .await
        .expect("starts");
        let slug = content.agents[0].file.id.clone();
        // wait for the seed memories' embeddings
        for _ in 0..100 {
            if service.stats().await.expect("stats").embed_queue == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let worded = service
            .retrieve(&slug, "bread", 3600, 10)
            .await
            .expect("retrieves");
        assert!(!worded.is_empty());
        assert!(worded.iter().any(|(s, _)| s.relevance > 0.0), "{worded:?}");
        let empty = service
            .retrieve(&slug, "  ", 3600, 10)
            .await
            .expect("retrieves");
        assert_eq!(empty.len(), worded.len());
        assert!(empty.iter().all(|(s, _)| s.relevance == 0.0), "{empty:?}");
        drop(service);
        task.await.expect("the service ends");
    }
}
