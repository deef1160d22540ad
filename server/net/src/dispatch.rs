//! The hub task: one task per world that owns the [`HubCore`], takes the
//! world's view frames and events from a slot the world's thread fills
//! without ever waiting ([`Frames`]), and serves the connections' requests:
//! subscriptions, player commands (checked against what the hub sees, then
//! sent to the world as commands), queries (answered by the world or the
//! memory service on tasks of their own, so a slow answer holds up nobody),
//! and admin commands. When a player speaks to agents, each agent's answer
//! is made here off the world's thread: its memories retrieved for what was
//! said, then its mind's words, sent back to the world as
//! [`Command::Answer`]. Touches the hub core, the world's command channel,
//! the memory service (read-only) and the client queues.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::debug;

use super::hub::{HubCore, Outbound};
use crate::minds::{AnswerAsk, Minds, PromptAsk, ReloadAsk};
use hearth_content::{AgentDef, Tile};
use hearth_protocol::{
    self as protocol, AgentDetail, AgentRef, BigFive, ClientMessage, Destination, EntityRef,
    ErrorCode, PlanSummary, ProtocolError, Relation, RequestId, Role, ScheduleSlot, ServerMessage,
};
use hearth_world::players::{Inspection, Listener, PlayerCommand, Who};
use hearth_world::schedule::ActivityLabel;
use hearth_world::view::ViewFrame;
use hearth_world::{Command, WorldEvent};

/// Events waiting for the hub beyond which the oldest are dropped (the hub
/// fell far behind the world).
const MAX_PENDING_EVENTS: usize = 100_000;
/// How long a query waits for the world or the memory service.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many agents answer one line said to everyone near.
const MAX_ANSWERS: usize = 3;
/// How far a character may be from an agent to start a conversation.
const START_TALK_RADIUS: f32 = 4.0;
/// How far a character reaches to use an object.
const REACH: u16 = 2;

/// Who a connection speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub role: Role,
    /// The character it controls (players).
    pub character: Option<String>,
    pub user: Option<String>,
}

impl Session {
    fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Designer)
    }
}

/// What the world's thread left for the hub since it last looked.
#[derive(Debug, Default)]
struct Pending {
    frame: Option<ViewFrame>,
    events: Vec<(u64, WorldEvent)>,
    finished: Option<Instant>,
    dropped_events: u64,
}

/// The slot between the world's thread and the hub task: the world merges
/// into it and never waits (a lock held for a copy), the hub takes it.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    pending: Arc<Mutex<Pending>>,
    ready: Arc<Notify>,
}

/// Whether clients care about an event (perceptions, arrivals and the like
/// never leave the server).
fn for_clients(event: &WorldEvent) -> bool {
    !matches!(
        event,
        WorldEvent::Perceived { .. }
            | WorldEvent::Arrived { .. }
            | WorldEvent::ActivityChanged { .. }
            | WorldEvent::Woke { .. }
            | WorldEvent::FellAsleep { .. }
    )
}

impl Frames {
    /// Called by the world's thread after a tick; never blocks for long.
    pub fn push(&self, view: Option<ViewFrame>, events: &[(u64, WorldEvent)], finished: Instant) {
        let mut p = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(v) = view {
            match p.frame.as_mut() {
                Some(waiting) => waiting.merge(v),
                None => p.frame = Some(v),
            }
        }
        p.events
            .extend(events.iter().filter(|(_, e)| for_clients(e)).cloned());
        if p.events.len() > MAX_PENDING_EVENTS {
            let excess = p.events.len() - MAX_PENDING_EVENTS;
            p.events.drain(..excess);
            p.dropped_events += excess as u64;
        }
        p.finished = Some(finished);
        drop(p);
        self.ready.notify_one();
    }

    fn take(&self) -> Pending {
        let mut p = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::take(&mut *p)
    }
}

/// What connections tell the hub.
#[derive(Debug)]
pub enum HubMsg {
    Connect {
        client: u64,
        queue: mpsc::Sender<Outbound>,
        session: Session,
    },
    Disconnect {
        client: u64,
    },
    Request {
        client: u64,
        message: ClientMessage,
    },
    /// An event for every designer and admin connected (content reloaded,
    /// or content with problems).
    Staff(protocol::Event),
}

/// A handle on the hub task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: mpsc::UnboundedSender<HubMsg>,
    next: Arc<AtomicU64>,
    /// Game minutes per real second, as last set.
    time_scale: Arc<std::sync::atomic::AtomicU32>,
    /// The world's game seconds at the last frame.
    game_seconds: Arc<AtomicU64>,
}

impl Hub {
    /// A new connection's id.
    pub fn next_client(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// `false` once the hub has stopped.
    pub fn send(&self, msg: HubMsg) -> bool {
        self.tx.send(msg).is_ok()
    }

    pub fn time_scale(&self) -> u32 {
        self.time_scale.load(Ordering::Relaxed)
    }

    pub fn game_seconds(&self) -> u64 {
        self.game_seconds.load(Ordering::Relaxed)
    }
}

/// What the hub task needs besides its core.
pub struct HubDeps {
    pub world: std::sync::mpsc::Sender<Command>,
    /// Agents' answers, recall and prompts.
    pub minds: Arc<dyn Minds>,
    /// Talking distance (the world's `talk_radius`).
    pub talk_radius: f32,
    pub time_scale: u32,
    /// The content reloader (`reload_content`), when the world was loaded
    /// from files.
    pub reload: Option<mpsc::UnboundedSender<ReloadAsk>>,
}

impl std::fmt::Debug for HubDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubDeps").finish_non_exhaustive()
    }
}

/// Starts the hub task, fed through `frames`; it runs until `shutdown`
/// resolves, then closes every connection with 1001.
pub fn spawn(
    core: HubCore,
    deps: HubDeps,
    frames: Frames,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Hub, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hub = Hub {
        tx,
        next: Arc::new(AtomicU64::new(1)),
        time_scale: Arc::new(std::sync::atomic::AtomicU32::new(deps.time_scale)),
        game_seconds: Arc::new(AtomicU64::new(0)),
    };
    let task = Task {
        core,
        deps,
        sessions: HashMap::new(),
        talks: HashMap::new(),
        busy: std::collections::HashSet::new(),
        hub: hub.clone(),
        seed: 0,
    };
    let handle = tokio::spawn(task.run(rx, frames, shutdown));
    (hub, handle)
}

struct Task {
    core: HubCore,
    deps: HubDeps,
    sessions: HashMap<u64, Session>,
    /// Player conversations under way: character → agent.
    talks: HashMap<String, u32>,
    /// Agents in a conversation (with agents or a character).
    busy: std::collections::HashSet<u32>,
    hub: Hub,
    seed: u64,
}

/// Asks the world what agent `agent` is doing, planning and feeling; it
/// answers during its next tick. `None` when the world has stopped.
fn inspect(
    world: &std::sync::mpsc::Sender<Command>,
    agent: u32,
) -> Option<oneshot::Receiver<hearth_world::players::Inspection>> {
    let (tx, rx) = oneshot::channel();
    let reply = hearth_world::Reply::new(move |inspection| {
        let _ = tx.send(inspection);
    });
    world.send(Command::Inspect { agent, reply }).ok()?;
    Some(rx)
}

/// Queues an answer made on a task of its own for its client (dropped if
/// the client has gone or its queue is full: it will ask again).
fn deliver(queue: Option<&mpsc::Sender<Outbound>>, answer: &ServerMessage) {
    if let Some(q) = queue {
        let _ = q.try_send(Outbound::Text(protocol::encode(answer).into()));
    }
}

fn error(id: &RequestId, code: ErrorCode, message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(code, message).with_id(Some(id.clone()))
}

fn ok(id: &RequestId) -> ServerMessage {
    ServerMessage::Ok { id: id.clone() }
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<HubMsg>,
        frames: Frames,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut insights = self.deps.minds.watch_reflections();
        let clients = metrics::gauge!("hearth_clients");
        let fanout = metrics::histogram!("hearth_hub_fanout_seconds");
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                Some(insight) = async {
                    match insights.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(agent) = self.core.agent_ref(insight.agent) {
                        self.core.agent_event(
                            insight.agent,
                            protocol::Event::Reflection { agent, text: insight.text },
                        );
                    }
                }
                () = frames.ready.notified() => {
                    let pending = frames.take();
                    if pending.dropped_events > 0 {
                        metrics::counter!("hearth_hub_events_dropped_total")
                            .increment(pending.dropped_events);
                    }
                    self.tick(pending, &fanout);
                    clients.set(self.core.clients() as f64);
                }
            }
        }
        // the server is going away: every connection is told so
        for client in self.sessions.keys().copied().collect::<Vec<_>>() {
            if let Some(q) = self.core.queue(client) {
                let _ = q.try_send(Outbound::Close(1001, "the server is shutting down".into()));
            }
        }
    }

    fn tick(&mut self, pending: Pending, fanout: &metrics::Histogram) {
        let Some(frame) = pending.frame else {
            return;
        };
        self.hub
            .game_seconds
            .store(frame.game_seconds, Ordering::Relaxed);
        for (_, e) in &pending.events {
            match e {
                WorldEvent::PlayerTalkStarted {
                    character, agent, ..
                } => {
                    self.talks.insert(character.clone(), *agent);
                    self.busy.insert(*agent);
                }
                WorldEvent::PlayerTalkEnded {
                    character, agent, ..
                } => {
                    self.talks.remove(character);
                    self.busy.remove(agent);
                }
                WorldEvent::ConversationStarted { participants, .. } => {
                    self.busy.extend(participants.iter().copied());
                }
                WorldEvent::ConversationEnded { participants, .. } => {
                    for p in participants {
                        self.busy.remove(p);
                    }
                }
                WorldEvent::PlayerSaid {
                    character,
                    text,
                    agents,
                    ..
                } => self.answer(character, text, agents),
                WorldEvent::ContentReloaded(r) => {
                    self.core
                        .set_content(r.agents.clone(), r.map.clone(), &r.changed);
                    self.handle(HubMsg::Staff(protocol::Event::ContentReloaded {
                        changed: agent_refs(&r.agents, &r.changed),
                        added: agent_refs(&r.agents, &r.added),
                        removed: agent_refs(&r.agents, &r.removed),
                        rescheduled: agent_refs(&r.agents, &r.rescheduled),
                        repathed: agent_refs(&r.agents, &r.repathed),
                        map: r.map_changed,
                        lore: r.lore,
                        prompts: r.prompts,
                    }));
                }
                _ => {}
            }
        }
        if let Some(finished) = pending.finished {
            // the tick's end on the wall clock: now, less how long ago it was
            let ago = finished.elapsed();
            if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                self.core
                    .set_tick_time(since.saturating_sub(ago).as_secs_f64() * 1000.0);
            }
        }
        let before = self.core.stats;
        let dropped = self.core.tick(&frame, &pending.events, Instant::now());
        if let Some(finished) = pending.finished {
            fanout.record(finished.elapsed().as_secs_f64());
        }
        let after = self.core.stats;
        metrics::counter!("hearth_messages_out_total").increment(
            (after.deltas + after.snapshots + after.events)
                .saturating_sub(before.deltas + before.snapshots + before.events),
        );
        metrics::counter!("hearth_bytes_out_total").increment(after.bytes - before.bytes);
        metrics::counter!("hearth_hub_dropped_messages_total")
            .increment(after.dropped_messages - before.dropped_messages);
        metrics::counter!("hearth_hub_resyncs_total").increment(after.resyncs - before.resyncs);
        metrics::gauge!("hearth_client_queue_deepest").set(after.deepest_queue as f64);
        for (client, why) in dropped {
            debug!(client, ?why, "client dropped by the hub");
            metrics::counter!("hearth_hub_disconnects_total").increment(1);
            self.forget(client);
        }
    }

    /// Agents that heard a character answer it, off the world's thread.
    fn answer(&mut self, character: &str, text: &str, agents: &[u32]) {
        let near = self
            .core
            .position(&EntityRef::Character(character.to_owned()));
        let mut listeners: Vec<(f32, u32)> = agents
            .iter()
            .filter_map(|&a| {
                let def = self.core.defs().get(a as usize)?;
                let (x, y) = self.core.position(&EntityRef::Agent(def.file.id.clone()))?;
                let d = near.map_or(0.0, |(cx, cy)| (x - cx).powi(2) + (y - cy).powi(2));
                Some((d, a))
            })
            .collect();
        listeners.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, agent) in listeners.into_iter().take(MAX_ANSWERS) {
            let Some(def) = self.core.defs().get(agent as usize).cloned() else {
                continue;
            };
            let activity = self.core.mirror().get(agent).map_or_else(
                || ActivityLabel::FreeTime.as_str().to_owned(),
                |v| v.activity(&def).to_owned(),
            );
            self.seed = self.seed.wrapping_add(1);
            let ask = AnswerAsk {
                agent,
                def,
                character: character.to_owned(),
                heard: text.to_owned(),
                activity,
                seed: self.seed,
                now: self.hub.game_seconds(),
            };
            let (character, heard) = (ask.character.clone(), ask.heard.clone());
            let reply = self.deps.minds.answer(ask);
            let world = self.deps.world.clone();
            tokio::spawn(async move {
                let (text, end) = reply.await;
                let _ = world.send(Command::Answer {
                    agent,
                    character: character.clone(),
                    heard,
                    text,
                });
                if end {
                    let _ = world.send(Command::Player(PlayerCommand::EndTalk { name: character }));
                }
            });
        }
    }

    fn forget(&mut self, client: u64) {
        self.core.disconnect(client);
        if let Some(session) = self.sessions.remove(&client)
            && let Some(name) = session.character
            && !self
                .sessions
                .values()
                .any(|s| s.character.as_deref() == Some(&name))
        {
            // the player's last connection is gone: its character leaves
            let _ = self
                .deps
                .world
                .send(Command::Player(PlayerCommand::Leave { name }));
        }
    }

    fn handle(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Connect {
                client,
                queue,
                session,
            } => {
                self.core.connect(client, queue);
                if let Some(name) = &session.character {
                    let _ = self
                        .deps
                        .world
                        .send(Command::Player(PlayerCommand::Join { name: name.clone() }));
                }
                self.sessions.insert(client, session);
            }
            HubMsg::Disconnect { client } => self.forget(client),
            HubMsg::Staff(event) => {
                let msg = ServerMessage::Event {
                    tick: self.core.mirror().tick,
                    event,
                };
                let staff: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.is_staff())
                    .map(|(&c, _)| c)
                    .collect();
                for client in staff {
                    self.core.send(client, &msg);
                }
            }
            HubMsg::Request { client, message } => {
                let Some(session) = self.sessions.get(&client).cloned() else {
                    return;
                };
                let id = message.id().clone();
                let kind = message.type_name();
                metrics::counter!("hearth_requests_total", "type" => kind).increment(1);
                if let Some(answer) = self.request(client, &session, message) {
                    if let ServerMessage::Error(e) = &answer {
                        debug!(client, kind, code = %e.code, "request refused");
                    }
                    self.core.send(client, &answer);
                }
                let _ = id;
            }
        }
    }

    /// Answers a request now, or `None` when a task answers it later.
    fn request(
        &mut self,
        client: u64,
        session: &Session,
        message: ClientMessage,
    ) -> Option<ServerMessage> {
        let player = |id: &RequestId| -> Result<String, ProtocolError> {
            match (&session.role, &session.character) {
                (Role::Player, Some(name)) => Ok(name.clone()),
                (role, _) => Err(error(
                    id,
                    ErrorCode::Forbidden,
                    format!(
                        "{} cannot act in the world; log in as a player",
                        role_name(*role)
                    ),
                )),
            }
        };
        let staff = |id: &RequestId, what: &str| -> Result<(), ProtocolError> {
            if session.is_staff() {
                Ok(())
            } else {
                Err(error(
                    id,
                    ErrorCode::Forbidden,
                    format!(
                        "{what} needs the designer or admin role; this connection is a {}",
                        role_name(session.role)
                    ),
                ))
            }
        };
        let result: Result<Option<ServerMessage>, ProtocolError> = match message {
            ClientMessage::Hello(m) => Err(error(
                &m.id,
                ErrorCode::NotReady,
                "hello was already said on this connection",
            )),
            ClientMessage::Subscribe(m) => {
                let follow = session.character.clone().filter(|_| m.area.is_none());
                if m.area.is_none() && follow.is_none() {
                    Err(error(
                        &m.id,
                        ErrorCode::BadRequest,
                        "subscribe: field `area` is required (only players may leave it out, to follow their character)",
                    ))
                } else {
                    let area = m.area.map(to_area);
                    self.core.subscribe(client, area, follow, Some(m.id));
                    Ok(None)
                }
            }
            ClientMessage::Unsubscribe(m) => {
                self.core.unsubscribe(client);
                Ok(Some(ok(&m.id)))
            }
            ClientMessage::MoveTo(m) => player(&m.id).and_then(|name| {
                let tile = self.destination(&m.id, &m.target)?;
                self.command(&m.id, Command::Player(PlayerCommand::MoveTo { name, to: tile }))
            }),
            ClientMessage::Say(m) => player(&m.id).and_then(|name| {
                let to = match &m.to {
                    None => None,
                    Some(target) => {
                        let partner = match target {
                            EntityRef::Agent(slug) => {
                                self.core.agent(slug).is_some_and(|a| self.talks.get(&name) == Some(&a))
                            }
                            EntityRef::Character(_) => false,
                        };
                        if !partner {
                            self.near(&m.id, &name, target, self.deps.talk_radius)?;
                        }
                        Some(match target {
                            EntityRef::Agent(slug) => {
                                Listener::Agent(self.core.agent(slug).unwrap_or(u32::MAX))
                            }
                            EntityRef::Character(c) => Listener::Character(c.clone()),
                        })
                    }
                };
                self.command(
                    &m.id,
                    Command::Player(PlayerCommand::Say {
                        name,
                        text: m.text,
                        to,
                    }),
                )
            }),
            ClientMessage::StartConversation(m) => player(&m.id).and_then(|name| {
                let EntityRef::Agent(slug) = &m.with else {
                    return Err(error(
                        &m.id,
                        ErrorCode::BadRequest,
                        "start_conversation: conversations are held with agents; speak to a character with say and `to`",
                    ));
                };
                if let Some(a) = self.talks.get(&name) {
                    let other = self.core.defs().get(*a as usize).map_or("someone", |d| d.file.name.as_str());
                    return Err(error(
                        &m.id,
                        ErrorCode::BadRequest,
                        format!("start_conversation: already talking with {other}; end_conversation first"),
                    ));
                }
                self.near(&m.id, &name, &m.with, START_TALK_RADIUS)?;
                let agent = self.core.agent(slug).unwrap_or(u32::MAX);
                if self.busy.contains(&agent) {
                    return Err(error(
                        &m.id,
                        ErrorCode::Unavailable,
                        format!("start_conversation: {} is in a conversation; try again later", m.with),
                    ));
                }
                self.command(&m.id, Command::Player(PlayerCommand::StartTalk { name, agent }))
            }),
            ClientMessage::EndConversation(m) => player(&m.id).and_then(|name| {
                if !self.talks.contains_key(&name) {
                    return Err(error(
                        &m.id,
                        ErrorCode::BadRequest,
                        "end_conversation: no conversation under way",
                    ));
                }
                self.command(&m.id, Command::Player(PlayerCommand::EndTalk { name }))
            }),
            ClientMessage::Interact(m) => player(&m.id).and_then(|name| {
                let here = self
                    .core
                    .position(&EntityRef::Character(name.clone()))
                    .map(|(x, y)| Tile::new(x.round() as u16, y.round() as u16));
                let found = here.and_then(|here| {
                    self.core.map().locations.iter().flat_map(|l| &l.objects).find(|o| {
                        o.name.eq_ignore_ascii_case(&m.object) && o.tile.distance(here) <= REACH
                    })
                });
                if found.is_none() {
                    return Err(error(
                        &m.id,
                        ErrorCode::NotFound,
                        format!("interact: no object '{}' within reach ({REACH} tiles)", m.object),
                    ));
                }
                self.command(
                    &m.id,
                    Command::Player(PlayerCommand::Interact {
                        name,
                        object: m.object,
                    }),
                )
            }),
            ClientMessage::AgentDetail(m) => self.agent_detail(client, session, m.id, &m.agent),
            ClientMessage::AgentMemories(m) => staff(&m.id, "agent_memories").and_then(|()| {
                self.agent_memories(client, m.id, &m.agent, m.query, m.k as usize)
            }),
            ClientMessage::AgentPrompt(m) => staff(&m.id, "agent_prompt")
                .and_then(|()| self.agent_prompt(client, m.id, &m.agent, m.query)),
            ClientMessage::Pause(m) => {
                staff(&m.id, "pause").and_then(|()| self.command(&m.id, Command::Pause))
            }
            ClientMessage::Resume(m) => {
                staff(&m.id, "resume").and_then(|()| self.command(&m.id, Command::Resume))
            }
            ClientMessage::SetTimeScale(m) => staff(&m.id, "set_time_scale").and_then(|()| {
                let answer = self.command(&m.id, Command::SetTimeScale(m.scale))?;
                self.hub.time_scale.store(m.scale, Ordering::Relaxed);
                Ok(answer)
            }),
            ClientMessage::ReloadContent(m) => staff(&m.id, "reload_content").and_then(|()| {
                let Some(reload) = self.deps.reload.clone() else {
                    return Err(error(
                        &m.id,
                        ErrorCode::Unavailable,
                        "reload_content: this world was generated, not loaded from content files",
                    ));
                };
                let (reply, outcome) = oneshot::channel();
                let request = ReloadAsk {
                    user: session.user.clone(),
                    reply,
                };
                if reload.send(request).is_err() {
                    return Err(error(&m.id, ErrorCode::Unavailable, "reload_content: the server is stopping"));
                }
                let queue = self.core.queue(client);
                let id = m.id;
                tokio::spawn(async move {
                    let answer = match outcome.await {
                        Ok(Ok(())) => ok(&id),
                        Ok(Err(problems)) => ServerMessage::Error(error(
                            &id,
                            ErrorCode::BadRequest,
                            format!("reload_content: {problems}"),
                        )),
                        Err(_) => ServerMessage::Error(error(
                            &id,
                            ErrorCode::Unavailable,
                            "reload_content: the server is stopping",
                        )),
                    };
                    deliver(queue.as_ref(), &answer);
                });
                Ok(None)
            }),
        };
        match result {
            Ok(answer) => answer,
            Err(e) => Some(ServerMessage::Error(e)),
        }
    }

    fn command(
        &self,
        id: &RequestId,
        command: Command,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        if self.deps.world.send(command).is_ok() {
            Ok(Some(ok(id)))
        } else {
            Err(error(id, ErrorCode::Unavailable, "the world has stopped"))
        }
    }

    /// Checks that `target` exists and is within `radius` of character `name`.
    fn near(
        &self,
        id: &RequestId,
        name: &str,
        target: &EntityRef,
        radius: f32,
    ) -> Result<(), ProtocolError> {
        let Some((tx, ty)) = self.core.position(target) else {
            return Err(error(
                id,
                ErrorCode::NotFound,
                format!("no {target} in this world"),
            ));
        };
        let Some((cx, cy)) = self.core.position(&EntityRef::Character(name.to_owned())) else {
            return Err(error(
                id,
                ErrorCode::Unavailable,
                "your character is entering the world; try again in a moment",
            ));
        };
        let d = ((tx - cx).powi(2) + (ty - cy).powi(2)).sqrt();
        if d > radius {
            return Err(error(
                id,
                ErrorCode::BadRequest,
                format!(
                    "{target} is {d:.1} tiles away; come within {radius} tiles first (move_to)"
                ),
            ));
        }
        Ok(())
    }

    fn destination(&self, id: &RequestId, target: &Destination) -> Result<Tile, ProtocolError> {
        let map = self.core.map();
        match target {
            Destination::Tile { x, y } => {
                let (tx, ty) = (x.round(), y.round());
                let inside = tx < f32::from(map.width) && ty < f32::from(map.height);
                let tile = Tile::new(tx as u16, ty as u16);
                if inside && map.is_walkable(tile) {
                    Ok(tile)
                } else {
                    Err(error(
                        id,
                        ErrorCode::BadRequest,
                        format!(
                            "move_to: ({x}, {y}) is not a walkable tile of the {}×{} map",
                            map.width, map.height
                        ),
                    ))
                }
            }
            Destination::Location(name) => {
                let Some(l) = map.location_id(name) else {
                    return Err(error(
                        id,
                        ErrorCode::NotFound,
                        format!("move_to: no location '{name}' on this map"),
                    ));
                };
                let loc = map.location(l);
                Ok(if loc.walkable.is_empty() {
                    loc.rect.center()
                } else {
                    loc.walkable[loc.walkable.len() / 2]
                })
            }
        }
    }

    fn agent_index(&self, id: &RequestId, agent: &AgentRef) -> Result<u32, ProtocolError> {
        self.core.agent(agent.slug()).ok_or_else(|| {
            error(
                id,
                ErrorCode::NotFound,
                format!("no agent '{agent}' in this world"),
            )
        })
    }

    fn agent_detail(
        &mut self,
        client: u64,
        session: &Session,
        id: RequestId,
        agent: &AgentRef,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        let idx = self.agent_index(&id, agent)?;
        let entity = EntityRef::Agent(agent.slug().to_owned());
        if !session.is_staff() && !self.core.sees(client, &entity) {
            return Err(error(
                &id,
                ErrorCode::NotVisible,
                format!("{agent} is outside your subscribed area"),
            ));
        }
        let Some(def) = self.core.defs().get(idx as usize).cloned() else {
            return Err(error(
                &id,
                ErrorCode::NotFound,
                format!("no agent '{agent}'"),
            ));
        };
        let Some(rx) = inspect(&self.deps.world, idx) else {
            return Err(error(&id, ErrorCode::Unavailable, "the world has stopped"));
        };
        let queue = self.core.queue(client);
        let names = self.core.defs().clone();
        let map = self.core.map().clone();
        let aref = agent.clone();
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(QUERY_TIMEOUT, rx).await {
                Ok(Ok(inspection)) => ServerMessage::AgentDetail {
                    id,
                    agent: detail(aref, &def, &inspection, &names, &map),
                },
                _ => error(
                    &id,
                    ErrorCode::Unavailable,
                    "the world did not answer in time; try again",
                )
                .into(),
            };
            deliver(queue.as_ref(), &answer);
        });
        Ok(None)
    }

    fn agent_memories(
        &mut self,
        client: u64,
        id: RequestId,
        agent: &AgentRef,
        query: String,
        k: usize,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        self.agent_index(&id, agent)?;
        self.keeps_memories(&id)?;
        let queue = self.core.queue(client);
        let found =
            self.deps
                .minds
                .memories(agent.slug().to_owned(), query, self.hub.game_seconds(), k);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(QUERY_TIMEOUT, found).await {
                Ok(Ok(memories)) => ServerMessage::AgentMemories { id, memories },
                Ok(Err(e)) => {
                    error(&id, ErrorCode::Internal, format!("agent_memories: {e}")).into()
                }
                Err(_) => error(&id, ErrorCode::Unavailable, "memories are busy; try again").into(),
            };
            deliver(queue.as_ref(), &answer);
        });
        Ok(None)
    }

    fn keeps_memories(&self, id: &RequestId) -> Result<(), ProtocolError> {
        if self.deps.minds.keeps_memories() {
            Ok(())
        } else {
            Err(error(
                id,
                ErrorCode::Unavailable,
                "this server keeps no memories",
            ))
        }
    }

    fn agent_prompt(
        &mut self,
        client: u64,
        id: RequestId,
        agent: &AgentRef,
        query: String,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        let idx = self.agent_index(&id, agent)?;
        self.keeps_memories(&id)?;
        let Some(def) = self.core.defs().get(idx as usize).cloned() else {
            return Err(error(
                &id,
                ErrorCode::NotFound,
                format!("no agent '{agent}'"),
            ));
        };
        let Some(rx) = inspect(&self.deps.world, idx) else {
            return Err(error(&id, ErrorCode::Unavailable, "the world has stopped"));
        };
        let queue = self.core.queue(client);
        let names = self.core.defs().clone();
        let map = self.core.map().clone();
        let location = self
            .core
            .mirror()
            .get(idx)
            .and_then(|v| map.locations.get(v.location as usize))
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let now = self.hub.game_seconds();
        let minds = self.deps.minds.clone();
        tokio::spawn(async move {
            let work = async {
                let inspection = rx.await.ok()?;
                let ask = PromptAsk {
                    def,
                    inspection,
                    names,
                    location,
                    query,
                    now,
                };
                minds.prompt(ask).await.ok()
            };
            let answer = match tokio::time::timeout(QUERY_TIMEOUT, work).await {
                Ok(Some((prompt, tokens))) => ServerMessage::AgentPrompt { id, prompt, tokens },
                _ => error(
                    &id,
                    ErrorCode::Unavailable,
                    "the world or memories did not answer in time; try again",
                )
                .into(),
            };
            deliver(queue.as_ref(), &answer);
        });
        Ok(None)
    }
}

/// The protocol's ids of the agents at `idx` (those with a valid slug).
pub fn agent_refs(agents: &[AgentDef], idx: &[u32]) -> Vec<AgentRef> {
    idx.iter()
        .filter_map(|&i| agents.get(i as usize))
        .filter_map(|d| AgentRef::new(&d.file.id))
        .collect()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Designer => "designer",
        Role::Player => "player",
        Role::Spectator => "spectator",
    }
}

fn to_area(area: protocol::Area) -> super::mirror::Area {
    match area {
        protocol::Area::Rect { x, y, w, h } => super::mirror::Area::Rect { x, y, w, h },
        protocol::Area::Circle { cx, cy, r } => super::mirror::Area::Circle { cx, cy, r },
    }
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// An agent's detail, from its file and the world's inspection.
fn detail(
    id: AgentRef,
    def: &AgentDef,
    inspection: &Inspection,
    names: &[AgentDef],
    map: &hearth_content::WorldMap,
) -> AgentDetail {
    let f = &def.file;
    let p = &f.traits.personality;
    AgentDetail {
        id,
        name: f.name.clone(),
        age: f.age,
        traits: BigFive {
            openness: p.openness,
            conscientiousness: p.conscientiousness,
            extraversion: p.extraversion,
            agreeableness: p.agreeableness,
            neuroticism: p.neuroticism,
        },
        occupation: f.occupation.clone(),
        activity: Some(inspection.activity.clone()),
        plan: inspection
            .plan
            .as_ref()
            .map(|(goal, steps, current)| PlanSummary {
                goal: goal.clone(),
                steps: steps.clone(),
                current: *current,
            }),
        schedule: def
            .schedule
            .iter()
            .map(|b| ScheduleSlot {
                start: clock(b.start),
                end: clock(b.end),
                activity: b.activity.clone(),
                location: map
                    .locations
                    .get(usize::from(b.location))
                    .map(|l| l.name.clone()),
            })
            .collect(),
        relationships: inspection
            .relationships
            .iter()
            .filter_map(|r| {
                let with = match &r.with {
                    Who::Agent(a) => EntityRef::Agent(names.get(*a as usize)?.file.id.clone()),
                    Who::Character(c) => EntityRef::Character(c.clone()),
                };
                Some(Relation {
                    with,
                    kind: r.kind.clone(),
                    affection: r.affection,
                    trust: r.trust,
                })
            })
            .collect(),
    }
}
