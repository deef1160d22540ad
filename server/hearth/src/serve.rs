//! `hearth serve`: bring the database to the binary's schema, take the
//! world's lease (one process per world), open the world (registering its
//! agents and syncing its lore), resume it from its last checkpoint or
//! start it from the designer's files, run the simulation on its own thread
//! with the memory service and the write-behind pipeline beside it, and on
//! shutdown take a final checkpoint. It starts the hub, the HTTP and
//! WebSocket server and the content reloader, and hands each tick to its
//! consumers through a [`Fanout`]. Touches the database through
//! `hearth-db`, the world through its runner, memories through the memory
//! service.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_db::agents::{self, AgentRow};
use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::lease::{self, Lease, LeaseError};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::writer::{self as db_writer, WriterError, WriterOptions};
use hearth_db::{DbError, Migrations, Pool, worlds};
use tracing::{info, warn};

use crate::fanout::Fanout;
use crate::persist::{self as pipeline, SharedFeed};
use crate::simulate::Timing;
use hearth_content::{AgentDef, Content};
use hearth_mind::embed::{self, EmbedConfig, EmbedError};
use hearth_mind::lore_sync::{self, LoreSyncError};
use hearth_mind::service::{MemoryService, ServiceError, Store};
use hearth_mind::stream::{MemoryStream, StreamConfig};
use hearth_world::mind::{Mind, RuleMind};
use hearth_world::persist::PersistError;
use hearth_world::runner;
use hearth_world::{Command, Sim, SimConfig};

/// What `serve` runs, with the defaults of the demo world.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Slug of the world to open (created on first start).
    pub world: String,
    /// Display name used when the world is created.
    pub world_name: String,
    /// Apply pending migrations at start (else refuse to start with any).
    pub migrate: bool,
    pub pool_size: usize,
    /// Which embedder makes the world's vectors (its model and dimension are
    /// stored with the world).
    pub embed: EmbedConfig,
    /// Hearth's local state directory (the embedding model lives under it).
    pub home: PathBuf,
    /// World lore (Markdown and text), synced into the database at start.
    pub lore: PathBuf,
    /// How often the world's changes are committed (a checkpoint each).
    pub flush_interval: Duration,
    /// Memories per agent kept in process for retrieval (the rest are in
    /// PostgreSQL only).
    pub hot_window: usize,
    /// Appended rows (memories, messages) waiting to be written beyond which
    /// the server reports itself backlogged and holds new ones back.
    pub max_backlog: usize,
    /// Where the HTTP surface (and, with the hub, game clients) listen; port
    /// 0 picks a free port, which is logged.
    pub listen: std::net::SocketAddr,
    /// Limits of the game clients' connections.
    pub limits: hearth_net::ws::NetLimits,
    /// The world's Tiled map file, served under `/maps/` for the viewer
    /// (none for a generated world).
    pub map_file: Option<PathBuf>,
    /// The language model agents think with (none: the rule-based mind).
    pub llm: hearth_mind::llm::LlmConfig,
    /// Prompt templates overriding the built-in ones.
    pub prompts: Option<PathBuf>,
    /// The agent files' directory the world was loaded from, reloaded into
    /// the live world when they change (none for a generated world).
    pub agents_dir: Option<PathBuf>,
    /// Watch the content (agents, map, lore, prompts) and reload it into the
    /// live world on change; without it, content is reloaded on SIGHUP,
    /// `hearth reload` or `reload_content` only.
    pub watch: bool,
    /// Stop by itself once this much game time has passed.
    pub stop_after: Option<u64>,
    /// Where to write, at the end, a JSON report of what the agents' models
    /// did (calls per agent per game hour by kind, fallbacks, a sample of
    /// dialogue).
    pub llm_report: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            world: "valley".into(),
            world_name: "The Valley".into(),
            migrate: true,
            pool_size: 16,
            embed: EmbedConfig::default(),
            home: PathBuf::from(".hearth"),
            lore: PathBuf::from("assets/lore"),
            flush_interval: Duration::from_secs(1),
            hot_window: hearth_mind::retrieval::RetrievalParams::default().hot_window,
            max_backlog: 1_000_000,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7878)),
            limits: hearth_net::ws::NetLimits::default(),
            map_file: None,
            llm: hearth_mind::llm::LlmConfig::default(),
            prompts: None,
            agents_dir: None,
            watch: true,
            stop_after: None,
            llm_report: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{0} migration(s) pending and --no-migrate was given: run `hearth db migrate` first")]
    PendingMigrations(usize),
    #[error("cannot start the world thread: {0}")]
    WorldThread(std::io::Error),
    #[error("embedder: {0}")]
    Embed(#[from] EmbedError),
    #[error("memories: {0}")]
    Memories(#[from] ServiceError),
    #[error("lore: {0}")]
    Lore(#[from] LoreSyncError),
    #[error("language model: {0}")]
    Llm(#[from] hearth_mind::llm::LlmError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("cannot resume world '{world}' from its last checkpoint: {error}")]
    Resume { world: String, error: PersistError },
    #[error("write-behind writer: {0}")]
    Writer(#[from] WriterError),
    #[error("the write-behind writer stopped unexpectedly; the world is no longer persisted")]
    WriterStopped,
    #[error("cannot listen on {addr}: {error} (choose another with --listen, port 0 for any)")]
    Listen {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error("accounts: {0}")]
    Auth(#[from] hearth_net::auth::AuthError),
}

impl From<DbError> for ServeError {
    fn from(e: DbError) -> Self {
        ServeError::Check(CheckError::from(e))
    }
}

/// The database side of a running world.
struct Persisting {
    writer: db_writer::Writer,
    writer_task: tokio::task::JoinHandle<Result<db_writer::WriterReport, WriterError>>,
    feed: SharedFeed,
    converter: tokio::task::JoinHandle<pipeline::PersistReport>,
}

/// Runs the server until `shutdown` resolves. Without a database (`db` is
/// `None`, `--no-db`) the world runs and nothing is persisted.
pub async fn run(
    db: Option<(&DatabaseTarget, &Migrations)>,
    content: Content,
    sim_config: SimConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let embedder = embed::from_config(&options.embed, &options.home)?;
    let dim = embed::resolve_dim(embedder.as_ref()).await?;
    let mind: Arc<dyn Mind> = Arc::new(RuleMind);
    let stream = MemoryStream::new(
        {
            let mut config = StreamConfig {
                dim,
                ..StreamConfig::default()
            };
            config.retrieval.hot_window = options.hot_window.max(1);
            config
        },
        &content.agents,
        &content.map,
    );
    let defs = content.agents.clone();
    let tick_rate = u64::from(sim_config.tick_rate.max(1));
    let prompts = hearth_mind::llm::Prompts::load(options.prompts.as_deref())?;
    let llm = hearth_mind::llm::Llm::new(&options.llm, &defs, prompts)?;

    let (mut sim, store, persisting) = match db {
        Some((target, migrations)) => {
            let (pool, world, config) =
                open_database(target, migrations, &options, embedder.model(), dim).await?;
            // before anything is written: one process per world
            let lease =
                Lease::acquire(&config, world.id, &world.slug, &lease::this_process()).await?;
            let agent_ids = register_agents(&pool, world.id, &content.agents).await?;
            lore_sync::sync(&pool, world.id, &options.lore, embedder.clone()).await?;
            let saved = {
                let client = pool.get().await.map_err(DbError::from)?;
                db_writer::load_saved(&client, world.id).await?
            };
            let sim = match saved {
                Some(saved) => {
                    let tick = saved.checkpoint.tick;
                    let saved = pipeline::saved_from_db(saved);
                    let (sim, report) = Sim::restore(content, sim_config, mind.clone(), &saved)
                        .map_err(|error| ServeError::Resume {
                            world: world.slug.clone(),
                            error,
                        })?;
                    info!(
                        tick,
                        game_time = %sim.clock().label(),
                        restored = report.restored,
                        fresh = report.fresh,
                        dropped = report.dropped,
                        replanned = report.replanned,
                        "world resumed from its last checkpoint"
                    );
                    sim
                }
                None => {
                    info!("new world: starting from the designer's files");
                    Sim::with_mind(content, sim_config, mind.clone())
                }
            };
            let (writer, writer_task) = db_writer::spawn(
                pool.clone(),
                Some(lease),
                WriterOptions {
                    max_backlog: options.max_backlog,
                    ..WriterOptions::default()
                },
            );
            let open = sim
                .world()
                .resource::<hearth_world::conversation::Conversations>()
                .active
                .clone();
            let (feed, converter) = pipeline::spawn(
                pipeline::Context {
                    world_id: world.id,
                    agent_ids: Arc::new(agent_ids.clone()),
                    defs: sim.defs().clone(),
                    map: sim.map().clone(),
                },
                writer.clone(),
                &open,
            );
            // the recorder first, or the gauge is set on none
            let _ = hearth_net::http::metrics();
            metrics::gauge!("hearth_writer_flush_interval_seconds")
                .set(options.flush_interval.as_secs_f64());
            let store = Store {
                pool,
                world_id: world.id,
                dim: world.embedding_dim,
                agent_ids,
                writer: Some(writer.clone()),
                flush_every: Some(options.flush_interval),
            };
            (
                sim,
                Some(store),
                Some(Persisting {
                    writer,
                    writer_task,
                    feed,
                    converter,
                }),
            )
        }
        None => {
            info!("running without a database (--no-db): nothing will be persisted");
            (
                Sim::with_mind(content, sim_config, mind.clone()),
                None,
                None,
            )
        }
    };
    let pool = store.as_ref().map(|s| s.pool.clone());
    // the HTTP surface, up before the world starts: /healthz answers at once,
    // /readyz once the world runs
    hearth_net::http::metrics();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let auth = match &pool {
        Some(pool) => {
            let secret = std::env::var(hearth_net::auth::TOKEN_SECRET_ENV).ok();
            let key = hearth_net::auth::TokenKey::resolve(secret.as_deref(), &options.home)?;
            Some(hearth_net::auth::Auth::new(
                pool.clone(),
                key,
                hearth_net::auth::AuthSettings::default(),
            ))
        }
        None => None,
    };
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let ws_slot = Arc::new(std::sync::OnceLock::new());
    let (bound, http) = hearth_net::http::serve(
        options.listen,
        hearth_net::http::HttpState {
            ready: ready.clone(),
            pool: pool.clone(),
            auth: auth.clone(),
            world: options.world.clone(),
            ws: ws_slot.clone(),
            maps_dir: options
                .map_file
                .as_deref()
                .and_then(std::path::Path::parent)
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        std::path::Path::new(".")
                    } else {
                        d
                    }
                })
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
        },
        async move {
            let _ = http_stopped.await;
        },
    )
    .await
    .map_err(|error| ServeError::Listen {
        addr: options.listen,
        error,
    })?;
    info!(address = %bound, "listening (HTTP: /healthz /readyz /metrics /auth; game clients: /ws)");
    metrics::gauge!("hearth_agents").set(sim.agent_count() as f64);
    if persisting.is_some() {
        let every = (options.flush_interval.as_secs_f64() * tick_rate as f64).round() as u64;
        sim.persist_every(every.max(1));
    }
    info!(
        agents = sim.agent_count(),
        locations = sim.map().locations.len(),
        tick = sim.clock().tick,
        "world loaded"
    );
    let (calls_stop, calls_stopped) = tokio::sync::oneshot::channel::<()>();
    let llm: Option<Arc<hearth_mind::llm::Llm>> = llm.map(|l| {
        let (log, calls) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(log_calls(
            calls,
            persisting.as_ref().map(|p| p.writer.clone()),
            store.as_ref().map(|s| (s.world_id, s.agent_ids.clone())),
            options.flush_interval,
            calls_stopped,
        ));
        let thinking = (0..defs.len())
            .filter(|&i| l.thinks(Some(i as u32)))
            .count();
        info!(agents = thinking, timeout = ?l.timeout(), "agents think with a language model");
        Arc::new(l.with_log(log))
    });
    let reload_ids = store.as_ref().map(|s| Arc::new(s.agent_ids.clone()));
    let reload_store = store.as_ref().map(|s| crate::reload::Store {
        pool: s.pool.clone(),
        world_id: s.world_id,
        embedder: embedder.clone(),
    });
    let (memories, remembering) = MemoryService::start_with(
        stream,
        &defs,
        mind.clone(),
        embedder,
        store,
        sim.clock().seconds,
        llm.clone(),
    )
    .await?;
    // what agents' models are asked: lines, plans, reactions
    let thinker = llm.as_ref().map(|l| {
        let wait = (l.timeout() + Duration::from_secs(1)).as_secs_f64() * tick_rate as f64;
        sim.speak_through_models(
            (0..defs.len()).map(|i| l.thinks(Some(i as u32))).collect(),
            wait.ceil() as u64,
        );
        sim.plan_through_models((0..defs.len()).map(|i| l.thinks(Some(i as u32))).collect());
        hearth_mind::cognition::Thinker::new(
            l.clone(),
            sim.defs().clone(),
            sim.map().locations.iter().map(|l| l.name.clone()).collect(),
            Some(memories.downgrade()),
        )
    });
    // what agents' models are asked: lines, plans, reactions
    let (models, wanted) = match &thinker {
        Some(t) => {
            let (calls, wanted) = crate::think::ModelCalls::new(t.clone());
            (Some(calls), Some(wanted))
        }
        None => (None, None),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Duration, usize)>(1024);
    // what clients see: the world publishes its view each tick for the hub
    sim.publish_view();
    let hub_core = hearth_net::hub::HubCore::new(sim.defs().clone(), sim.map().clone());
    let talk_radius = sim.config().talk_radius;
    let time_scale = sim.clock().time_scale();
    let frames = hearth_net::dispatch::Frames::default();
    let game_now = Arc::new(std::sync::atomic::AtomicU64::new(sim.clock().seconds));
    let started_at = sim.clock().seconds;
    let started_tick = sim.clock().tick;
    let started_real = std::time::Instant::now();
    let dialogue = crate::fanout::SpokenLines::default();
    let (world_agents, world_map) = (sim.defs().clone(), sim.map().clone());
    let mut fanout = Fanout {
        clock: game_now.clone(),
        report: options.llm_report.as_ref().map(|_| dialogue.clone()),
        persistence: persisting.as_ref().map(|p| p.feed.clone()),
        models,
        hub: frames.clone(),
        memories: memories.clone(),
        timing: tx,
    };
    let world = runner::spawn(sim, move |out| fanout.tick(out)).map_err(ServeError::WorldThread)?;
    let reporter = tokio::spawn(report_ticks(rx));
    if let (Some(t), Some(wanted)) = (&thinker, wanted) {
        crate::think::spawn(wanted, t.clone(), world.sender());
    }
    // content reloads: from the watcher, SIGHUP and `reload_content`
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel::<crate::reload::Request>();
    let content_paths = match (&options.agents_dir, &options.map_file) {
        (Some(agents), Some(map)) => Some(crate::reload::Paths {
            agents: agents.clone(),
            map: map.clone(),
            lore: options.lore.clone(),
            prompts: options.prompts.clone(),
        }),
        _ => None,
    };
    let (ws_stop, ws_stopped) = tokio::sync::watch::channel(false);
    let hub_stop = {
        let mut stopped = ws_stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let (hub, hub_task) = hearth_net::dispatch::spawn(
        hub_core,
        hearth_net::dispatch::HubDeps {
            world: world.sender(),
            minds: std::sync::Arc::new(crate::minds::HubMinds::new(
                hearth_mind::reply::Replies::new(
                    Some(memories.clone()),
                    mind.clone(),
                    thinker.clone(),
                    world.sender(),
                ),
                Some(memories.clone()),
            )),
            talk_radius,
            time_scale,
            reload: content_paths
                .as_ref()
                .map(|_| crate::reload::for_clients(reload_tx.clone())),
        },
        frames,
        hub_stop,
    );
    crate::reload::on_hangup(reload_tx.clone());
    let run_files = crate::reload::RunFiles::new(&options.home, &options.world);
    if let Err(e) = run_files.create() {
        warn!(error = %e, path = %run_files.pid.display(), "cannot write the pid file; `hearth reload` will not find this server");
    }
    let mut _watcher = None;
    match content_paths {
        Some(paths) => {
            if options.watch {
                match crate::reload::watch(&paths, reload_tx.clone()) {
                    Ok(w) => _watcher = Some(w),
                    Err(e) => {
                        warn!(error = %e, "cannot watch the content; reload with SIGHUP, `hearth reload` or reload_content")
                    }
                }
            }
            let reloader = crate::reload::Reloader {
                paths,
                agents: world_agents,
                map: world_map,
                world: world.sender(),
                hub: hub.clone(),
                store: reload_store,
                llm: llm.clone(),
                files: run_files.clone(),
                agent_ids: reload_ids,
                gone: Default::default(),
                capacity: defs.len() + hearth_net::hub::AGENT_ROOM as usize,
            };
            tokio::spawn(reloader.run(reload_rx));
        }
        None => {
            let _ = (world_agents, world_map, reload_store, reload_ids);
            tokio::spawn(async move {
                let mut rx = reload_rx;
                while let Some(r) = rx.recv().await {
                    info!(source = %r.source, "nothing to reload: this world was generated, not loaded from content files");
                }
            });
        }
    }
    drop(reload_tx);
    let map_url = options
        .map_file
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| format!("/maps/{}", n.to_string_lossy()))
        .unwrap_or_default();
    let _ = ws_slot.set(hearth_net::ws::WsState {
        hub,
        auth,
        world: options.world.clone(),
        map_url,
        tick_rate: u32::try_from(tick_rate).unwrap_or(u32::MAX),
        limits: options.limits,
        open_without_accounts: pool.is_none(),
        connections: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        shutdown: ws_stopped,
    });
    ready.store(true, std::sync::atomic::Ordering::Release);
    let throttle = persisting
        .as_ref()
        .map(|p| tokio::spawn(throttle(p.writer.clone(), world.sender())));

    // run until asked to stop, or until the world is lost to another process
    let stop_after = options.stop_after;
    let clock = game_now.clone();
    let shutdown = async move {
        let Some(span) = stop_after else {
            return shutdown.await;
        };
        let by_itself = async {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            while clock.load(std::sync::atomic::Ordering::Relaxed) < started_at + span {
                every.tick().await;
            }
            info!(
                game_seconds = span,
                "the requested game time has passed; stopping"
            );
        };
        tokio::select! {
            () = shutdown => {}
            () = by_itself => {}
        }
    };
    let mut persisting = persisting;
    let mut lost = None;
    match persisting.as_mut() {
        Some(p) => {
            tokio::select! {
                () = shutdown => {}
                done = &mut p.writer_task => {
                    lost = Some(match done {
                        Ok(Err(e)) => ServeError::Writer(e),
                        Ok(Ok(_)) | Err(_) => ServeError::WriterStopped,
                    });
                }
            }
        }
        None => shutdown.await,
    }
    if let Some(t) = throttle {
        t.abort();
    }
    ready.store(false, std::sync::atomic::Ordering::Release);
    // game clients first: each gets a close frame (1001)
    let _ = ws_stop.send(true);
    // the call log hands over what it holds and lets go of the writer
    let _ = calls_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(1), hub_task).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    let sim = tokio::task::spawn_blocking(move || world.stop())
        .await
        .ok()
        .flatten();
    reporter.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    let mut final_tick = None;
    if let (Some(path), Some(llm), Some(sim)) = (&options.llm_report, &llm, &sim) {
        let spent = sim.clock().seconds.saturating_sub(started_at);
        let lines = dialogue.lock().map(|d| d.clone()).unwrap_or_default();
        let ran = (
            sim.clock().tick.saturating_sub(started_tick),
            started_real.elapsed(),
        );
        let report = llm_report(llm, sim, spent, ran, &lines);
        info!(
            calls_per_agent_hour = report["calls_per_agent_game_hour"].as_f64().unwrap_or(0.0),
            "language model report written to {}",
            path.display()
        );
        if let Err(e) = std::fs::write(path, format!("{report:#}\n")) {
            warn!(error = %e, path = %path.display(), "cannot write the language model report");
        }
    }
    if let Some(mut sim) = sim {
        info!(tick = sim.clock().tick, game_time = %sim.clock().label(), "world stopped");
        if let Some(p) = persisting.as_ref()
            && lost.is_none()
        {
            final_tick = Some(sim.clock().tick);
            let snapshot = sim.full_snapshot();
            // the world's thread is gone, and its handle on the feed with it
            let mut feed = match p.feed.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(s) = snapshot {
                feed.push(s);
            }
        }
    }
    // the world's feed is gone with its thread; the last handle ends the service
    drop(memories);
    match tokio::time::timeout_at(deadline, remembering).await {
        Ok(Ok(stats)) => info!(
            observations = stats.stream.observations,
            conversations = stats.stream.conversations,
            reflections = stats.stream.reflections,
            embedded = stats.embedded,
            "memories handed to the writer"
        ),
        Ok(Err(e)) => warn!(error = %e, "the memory service failed"),
        Err(_) => warn!("memories still being prepared at the deadline; stopping anyway"),
    }
    if let Some(p) = persisting {
        let Persisting {
            writer,
            writer_task,
            feed,
            converter,
        } = p;
        drop(writer);
        if lost.is_none() {
            // hand over what the feed holds, then close it
            let mut held = match Arc::try_unwrap(feed) {
                Ok(m) => Some(m.into_inner().unwrap_or_else(|p| p.into_inner())),
                Err(_) => None,
            };
            if let Some(f) = held.as_mut()
                && !matches!(tokio::time::timeout_at(deadline, f.flush()).await, Ok(true))
            {
                warn!("the final checkpoint could not be handed to the writer");
            }
            drop(held);
            let _ = tokio::time::timeout_at(deadline, converter).await;
            match tokio::time::timeout_at(deadline, writer_task).await {
                Ok(Ok(Ok(report))) => {
                    info!(
                        commits = report.commits,
                        rows = report.rows,
                        checkpoint = ?report.last_tick,
                        "final checkpoint written"
                    );
                    if report.last_tick.map(|t| t as u64) != final_tick {
                        warn!(final_tick, written = ?report.last_tick,
                            "the final checkpoint is not the world's last tick");
                    }
                }
                Ok(Ok(Err(e))) => lost = Some(ServeError::Writer(e)),
                Ok(Err(e)) => warn!(error = %e, "the writer task failed"),
                Err(_) => warn!(
                    "the writer did not finish within the shutdown deadline; \
                     the world resumes from its last committed checkpoint"
                ),
            }
        } else {
            converter.abort();
        }
    }
    if let Some(pool) = pool {
        pool.close();
    }
    run_files.remove();
    if let Some(e) = lost {
        return Err(e);
    }
    info!("stopped");
    Ok(())
}

/// What the agents' models did over `spent` game seconds.
fn llm_report(
    llm: &hearth_mind::llm::Llm,
    sim: &Sim,
    spent: u64,
    (ticks, real): (u64, Duration),
    lines: &[(u32, String)],
) -> serde_json::Value {
    let stats = llm.stats();
    let agents = (0..sim.agent_count())
        .filter(|&i| llm.thinks(Some(i as u32)))
        .count();
    let hours = spent as f64 / 3600.0;
    let per = |n: u64| {
        if agents == 0 || hours <= 0.0 {
            0.0
        } else {
            (n as f64 / agents as f64 / hours * 100.0).round() / 100.0
        }
    };
    let by_kind: serde_json::Map<String, serde_json::Value> = stats
        .asked
        .iter()
        .map(|(k, asked)| {
            let (asked, n) = (*asked, stats.requests.get(k).copied().unwrap_or(0));
            (
                (*k).to_owned(),
                serde_json::json!({
                    "requests": n,
                    "per_agent_game_hour": per(n),
                    "decisions": asked,
                    "decisions_per_agent_game_hour": per(asked),
                }),
            )
        })
        .collect();
    let (asked, answered, fell_back) = sim.model_lines();
    let (day_plans, steps_asked, steps_applied, reactions) = sim.model_plans();
    let defs = sim.defs();
    serde_json::json!({
        "agents_with_a_model": agents,
        "game_hours": (hours * 100.0).round() / 100.0,
        "requests": stats.total_requests(),
        "calls_per_agent_game_hour": per(stats.total_requests()),
        "decisions": stats.total_asked(),
        "decisions_per_agent_game_hour": per(stats.total_asked()),
        "by_kind": by_kind,
        "answers": stats.answers,
        "cached": stats.cached,
        "fallbacks": stats.failures,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "world": {
            "ticks": ticks,
            "real_seconds": (real.as_secs_f64() * 10.0).round() / 10.0,
            "ticks_per_second": (ticks as f64 / real.as_secs_f64().max(1e-9) * 100.0).round() / 100.0,
            "tick_rate": sim.config().tick_rate,
        },
        "lines": {"asked": asked, "from_model": answered, "by_rule_after_failure_or_timeout": fell_back},
        "plans": {"day_plans": day_plans, "steps_asked": steps_asked, "steps_applied": steps_applied, "reactions": reactions},
        "dialogue": lines.iter().map(|(s, t)| serde_json::json!({
            "speaker": defs.get(*s as usize).map_or("?", |d| d.file.name.as_str()),
            "text": t,
        })).collect::<Vec<_>>(),
    })
}

/// Writes the model calls' log (`llm_calls`) with the world's flushes until
/// `stop`; without a database the records are only counted.
async fn log_calls(
    mut calls: tokio::sync::mpsc::UnboundedReceiver<hearth_mind::llm::CallRecord>,
    writer: Option<db_writer::Writer>,
    world: Option<(i64, Vec<i64>)>,
    every: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut rows = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let clean = |s: &str| s.replace('\0', "\u{fffd}");
    loop {
        let (send, end) = tokio::select! {
            call = calls.recv() => match call {
                Some(c) => {
                    if let Some((world_id, ids)) = &world {
                        rows.push(hearth_db::writer::LlmCallRow {
                            world_id: *world_id,
                            agent_id: c.agent.and_then(|a| ids.get(a as usize).copied()),
                            kind: c.kind.to_owned(),
                            model: clean(&c.model),
                            prompt: clean(&c.prompt),
                            response: c.response.as_deref().map(clean),
                            latency_ms: i32::try_from(c.latency_ms).unwrap_or(i32::MAX),
                            prompt_tokens: c.prompt_tokens.and_then(|t| i32::try_from(t).ok()),
                            completion_tokens: c.completion_tokens.and_then(|t| i32::try_from(t).ok()),
                            error: c.error.as_deref().map(clean),
                            game_time: Some(hearth_db::game_time::to_timestamp(c.game_time)),
                        });
                    }
                    (rows.len() >= 1_000, false)
                }
                None => (true, true),
            },
            _ = tick.tick() => (true, false),
            _ = &mut stop => (true, true),
        };
        if send && !rows.is_empty() {
            let batch = hearth_db::writer::Batch {
                llm_calls: std::mem::take(&mut rows),
                ..hearth_db::writer::Batch::default()
            };
            if let Some(w) = &writer
                && w.send(batch).await.is_err()
            {
                warn!("the writer has stopped; model calls are no longer logged");
                return;
            }
        }
        if end {
            return;
        }
    }
}

/// Holds back new memories and messages while the writer is backlogged.
async fn throttle(writer: db_writer::Writer, world: std::sync::mpsc::Sender<Command>) {
    let mut on = false;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        let status = writer.status();
        metrics::gauge!("hearth_writer_lag_seconds").set(status.lag_ms / 1000.0);
        let backlogged = writer.backlogged();
        if backlogged != on {
            on = backlogged;
            if on {
                warn!(
                    pending = status.pending_appends,
                    limit = writer.max_backlog(),
                    "writer backlogged: holding back new memories and conversations"
                );
            } else {
                info!("writer caught up: memories and conversations resume");
            }
            if world.send(Command::Throttle(on)).is_err() {
                return;
            }
        }
    }
}

/// Registers the world's agents (inserted or updated from their files) and
/// returns their database ids in world order.
async fn register_agents(
    pool: &Pool,
    world_id: i64,
    defs: &[AgentDef],
) -> Result<Vec<i64>, ServeError> {
    let rows: Vec<AgentRow> = defs.iter().map(pipeline::agent_row).collect();
    let client = pool.get().await.map_err(DbError::from)?;
    let ids = agents::upsert(&client, world_id, &rows).await?;
    let keep: Vec<String> = defs.iter().map(|d| d.file.id.clone()).collect();
    let archived = agents::archive_missing(&client, world_id, &keep).await?;
    if archived > 0 {
        info!(archived, "agents whose files are gone were archived");
    }
    defs.iter()
        .map(|d| {
            ids.get(&d.file.id).copied().ok_or_else(|| {
                DbError::InvalidValue(format!("agent '{}' was not registered", d.file.id)).into()
            })
        })
        .collect()
}

/// Logs a summary of the world's ticks every ten seconds.
async fn report_ticks(mut rx: tokio::sync::mpsc::Receiver<(u64, Duration, usize)>) {
    let mut durations: Vec<u64> = Vec::new();
    let mut events = 0usize;
    let mut last = tokio::time::Instant::now();
    let tick_seconds = metrics::histogram!("hearth_tick_seconds");
    let ticks = metrics::counter!("hearth_ticks_total");
    let events_total = metrics::counter!("hearth_world_events_total");
    while let Some((tick, duration, count)) = rx.recv().await {
        tick_seconds.record(duration.as_secs_f64());
        ticks.increment(1);
        events_total.increment(count as u64);
        durations.push(duration.as_micros() as u64);
        events += count;
        if last.elapsed() >= Duration::from_secs(10) {
            let t = Timing::of(&mut durations);
            info!(
                tick,
                ticks = durations.len(),
                p50_us = t.p50,
                p99_us = t.p99,
                max_us = t.max,
                events,
                "world"
            );
            durations.clear();
            events = 0;
            last = tokio::time::Instant::now();
        }
    }
}

/// Connects, migrates (or checks that nothing is pending) and opens the
/// world's row.
async fn open_database(
    target: &DatabaseTarget,
    migrations: &Migrations,
    options: &ServeOptions,
    embedding_model: &str,
    embedding_dim: usize,
) -> Result<(Pool, worlds::World, tokio_postgres::Config), ServeError> {
    let config = target.config().await?;
    let description = connect::describe(&config);
    info!(database = %description, "connecting");
    let mut client = connect::connect(&config)
        .await
        .map_err(|e| check::connect_error(&description, &e))?;

    if options.migrate {
        let applied = migrate::migrate(&mut client, migrations, None).await?;
        info!(
            applied = applied.len(),
            version = migrations.latest(),
            "database schema up to date"
        );
    } else {
        let rows = migrate::status(&client, migrations).await?;
        if let Some(problem) = migrate::problem(&rows, migrations.latest()) {
            return Err(DbError::from(problem).into());
        }
        let pending = rows
            .iter()
            .filter(|r| r.state == MigrationState::Pending)
            .count();
        if pending > 0 {
            return Err(ServeError::PendingMigrations(pending));
        }
    }
    drop(client);

    let pool = connect::pool(config.clone(), options.pool_size)?;
    let world = {
        let client = pool.get().await.map_err(DbError::from)?;
        worlds::ensure(
            &client,
            &options.world,
            &options.world_name,
            embedding_model,
            i32::try_from(embedding_dim).unwrap_or(i32::MAX),
        )
        .await?
    };
    info!(
        world = %world.slug,
        id = world.id,
        embedding_model = %world.embedding_model,
        embedding_dim = world.embedding_dim,
        "world open; serving until SIGINT or SIGTERM"
    );
    Ok((pool, world, config))
}
