//! The hub's core: what each subscribed client is sent when the world
//! ticks. It applies the world's view frames to the [`Mirror`] (agents, and
//! player characters after them), keeps who is speaking, and for every
//! client with an area of interest encodes a `delta` (or, for a client that
//! fell behind, a fresh `snapshot`) and the `event`s about entities it sees,
//! and queues them on the client's bounded outbound queue without ever
//! waiting: a full queue marks the client behind (it gets a snapshot when
//! there is room again) and one behind for too long is dropped with a
//! reason. The world and the other clients never wait on a slow one. A
//! changed entity carries only the fields that changed since that client
//! last heard of it. No sockets here: the connection tasks own those and
//! read the queues. Touches the mirror, the agents' definitions and map
//! (read-only) and the queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_db::game_time;
use tokio::sync::mpsc;

use super::mirror::{self, Area, Interest, Mirror};
use hearth_content::{AgentDef, WorldMap};
use hearth_protocol::{
    self as protocol, AgentRef, Delta, EntityKind, EntityRef, EntityState, Event, RequestId,
    ServerMessage, Snapshot,
};
use hearth_world::WorldEvent;
use hearth_world::view::{AgentView, ViewFrame};

/// A client behind for longer than this is dropped.
pub const BEHIND_LIMIT: Duration = Duration::from_secs(10);

/// Ticks a line stays in its speaker's `speech` (five seconds at 10 Hz).
pub const SPEECH_TICKS: u64 = 50;

/// Fresh snapshots one fan-out pass sends to clients that fell behind;
/// the others wait for a later pass. A snapshot of a busy area is tens of
/// KB to encode and send: without a budget, a pass that left many clients
/// behind resynced them all in the next one, which made that pass slower
/// still and left more behind (at 10k clients, 18,701 resyncs in 20 s and
/// 5 passes where there should have been 200).
pub const RESYNCS_PER_PASS: usize = 64;

/// How far around its character a player sees when it gives no area.
pub const FOLLOW_RADIUS: f32 = 16.0;

/// What a connection reads from its queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// An encoded frame to send.
    Text(Arc<str>),
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// Why a client was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It stayed behind longer than [`BEHIND_LIMIT`].
    TooSlow,
    /// Its connection is gone.
    Gone,
}

#[derive(Debug)]
struct Client {
    queue: mpsc::Sender<Outbound>,
    interest: Option<Interest>,
    /// The character whose surroundings it follows (a player without area).
    follow: Option<String>,
    /// Since when its queue has been full, if it is behind.
    behind_since: Option<Instant>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub deltas: u64,
    pub snapshots: u64,
    pub events: u64,
    /// Messages not queued because a queue was full.
    pub dropped_messages: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    pub bytes: u64,
    /// The deepest client queue after the last tick (messages waiting).
    pub deepest_queue: usize,
}

/// Agents that may join a running world (content reloaded with new agent
/// files) before a restart: their mirror indices come before the
/// characters'.
pub const AGENT_ROOM: u32 = 1024;

/// The clients of one world and the mirror they are served from.
#[derive(Debug)]
pub struct HubCore {
    mirror: Mirror,
    defs: Arc<Vec<AgentDef>>,
    map: Arc<WorldMap>,
    /// Mirror index of character slot 0: the number of agents the world
    /// started with, plus [`AGENT_ROOM`] for agents that join it later.
    base: u32,
    /// Characters that have been in the world, by mirror index, and their
    /// indices by name (whether they are there now is the mirror's to say).
    characters: HashMap<u32, String>,
    by_name: HashMap<String, u32>,
    /// Agents that left the world (their definitions stay, by index).
    gone: std::collections::HashSet<u32>,
    /// Who is speaking: mirror index → (line, tick it ends).
    speech: HashMap<u32, (String, u64)>,
    clients: HashMap<u64, Client>,
    pub stats: HubStats,
    /// When the world finished the tick being sent (Unix ms), stamped on
    /// snapshots and deltas as `at`.
    tick_at: Option<f64>,
}

impl HubCore {
    pub fn new(defs: Arc<Vec<AgentDef>>, map: Arc<WorldMap>) -> Self {
        Self {
            mirror: Mirror::new(map.width, map.height),
            base: defs.len() as u32 + AGENT_ROOM,
            defs,
            map,
            characters: HashMap::new(),
            by_name: HashMap::new(),
            gone: std::collections::HashSet::new(),
            speech: HashMap::new(),
            clients: HashMap::new(),
            stats: HubStats::default(),
            tick_at: None,
        }
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    pub fn map(&self) -> &Arc<WorldMap> {
        &self.map
    }

    pub fn defs(&self) -> &Arc<Vec<AgentDef>> {
        &self.defs
    }

    /// Takes the world's reloaded content (its agents at their indices, new
    /// ones after them, on a map of any size; `changed` names the
    /// agents whose definition changed): names, activities and locations
    /// are resolved from it from now on. When a name, an activity label or
    /// a location name that clients hold changed, every subscribed client
    /// gets a fresh snapshot (spread over passes like any resync); agents
    /// that join or leave reach them as deltas.
    pub fn set_content(&mut self, defs: Arc<Vec<AgentDef>>, map: Arc<WorldMap>, changed: &[u32]) {
        let resized = (self.map.width, self.map.height) != (map.width, map.height);
        if resized {
            self.mirror.resize(map.width, map.height);
        }
        let renamed = |i: &u32| match (self.defs.get(*i as usize), defs.get(*i as usize)) {
            (Some(a), Some(b)) => {
                a.file.name != b.file.name
                    || !a
                        .schedule
                        .iter()
                        .map(|x| &x.activity)
                        .eq(b.schedule.iter().map(|x| &x.activity))
            }
            _ => false,
        };
        let places_renamed = !self
            .map
            .locations
            .iter()
            .map(|l| &l.name)
            .eq(map.locations.iter().map(|l| &l.name));
        let seen_differently = resized || places_renamed || changed.iter().any(renamed);
        self.defs = defs;
        self.map = map;
        if !seen_differently {
            return;
        }
        let now = Instant::now();
        for c in self.clients.values_mut() {
            if c.interest.is_some() {
                c.behind_since.get_or_insert(now);
            }
        }
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The agent's index, by slug (none for an agent that left the world).
    pub fn agent(&self, slug: &str) -> Option<u32> {
        self.defs
            .iter()
            .position(|d| d.file.id == slug)
            .map(|i| i as u32)
            .filter(|i| !self.gone.contains(i))
    }

    /// Where an entity is now, if it is in the world.
    pub fn position(&self, entity: &EntityRef) -> Option<(f32, f32)> {
        let idx = match entity {
            EntityRef::Agent(slug) => self.agent(slug)?,
            EntityRef::Character(name) => *self.by_name.get(name)?,
        };
        self.mirror.get(idx).map(|v| (v.x, v.y))
    }

    /// Whether `client` sees `idx` (it is in its area).
    pub fn sees(&self, client: u64, entity: &EntityRef) -> bool {
        let idx = match entity {
            EntityRef::Agent(slug) => self.agent(slug),
            EntityRef::Character(name) => self.by_name.get(name).copied(),
        };
        let Some(idx) = idx else {
            return false;
        };
        self.clients
            .get(&client)
            .and_then(|c| c.interest.as_ref())
            .is_some_and(|i| i.sees(idx))
    }

    /// A new connection, which reads `queue`'s other end.
    pub fn connect(&mut self, client: u64, queue: mpsc::Sender<Outbound>) {
        self.clients.insert(
            client,
            Client {
                queue,
                interest: None,
                follow: None,
                behind_since: None,
            },
        );
    }

    pub fn disconnect(&mut self, client: u64) {
        self.clients.remove(&client);
    }

    /// Queues `msg` for `client` (an answer to one of its requests).
    pub fn send(&mut self, client: u64, msg: &ServerMessage) {
        let text: Arc<str> = protocol::encode(msg).into();
        if let Some(c) = self.clients.get_mut(&client)
            && c.queue.try_send(Outbound::Text(text)).is_err()
        {
            self.stats.dropped_messages += 1;
            c.behind_since.get_or_insert_with(Instant::now);
        }
    }

    /// The queue of `client`, for answers sent later by another task.
    pub fn queue(&self, client: u64) -> Option<mpsc::Sender<Outbound>> {
        self.clients.get(&client).map(|c| c.queue.clone())
    }

    fn entity_ref(&self, idx: u32) -> Option<EntityRef> {
        if idx < self.base {
            self.defs
                .get(idx as usize)
                .map(|d| EntityRef::Agent(d.file.id.clone()))
        } else {
            self.characters
                .get(&idx)
                .map(|n| EntityRef::Character(n.clone()))
        }
    }

    fn speech_of(&self, idx: u32) -> Option<String> {
        self.speech.get(&idx).map(|(line, _)| line.clone())
    }

    /// The entity of mirror index `idx` as clients see it (full state).
    fn entity(&self, idx: u32) -> Option<EntityState> {
        let view = self.mirror.get(idx)?;
        let id = self.entity_ref(idx)?;
        let (kind, name) = match &id {
            EntityRef::Agent(_) => (
                EntityKind::Agent,
                self.defs.get(idx as usize)?.file.name.clone(),
            ),
            EntityRef::Character(n) => (EntityKind::Character, n.clone()),
        };
        Some(EntityState {
            kind: Some(kind),
            name: Some(name),
            ..self.fields(idx, view, id, None)
        })
    }

    /// The fields of `idx` that changed after `since` (all when `None`).
    fn fields(&self, idx: u32, view: &AgentView, id: EntityRef, since: Option<u64>) -> EntityState {
        let news = |f: usize| since.is_none_or(|s| self.mirror.changed_after(idx, f, s));
        let agent = self.defs.get(idx as usize).filter(|_| idx < self.base);
        let location = || {
            self.map
                .locations
                .get(view.location as usize)
                .map(|l| l.name.clone())
        };
        EntityState {
            x: news(mirror::POSITION).then_some(view.x),
            y: news(mirror::POSITION).then_some(view.y),
            facing: news(mirror::FACING).then(|| wire_facing(view.facing)),
            activity: news(mirror::ACTIVITY)
                .then(|| agent.map(|def| view.activity(def).to_owned())),
            location: news(mirror::LOCATION).then(location),
            mood: news(mirror::MOOD).then(|| agent.map(|_| view.mood)),
            speech: news(mirror::SPEECH).then(|| self.speech_of(idx)),
            ..EntityState::id_only(id)
        }
    }

    fn snapshot_of(&self, interest: &mut Interest, id: Option<RequestId>) -> ServerMessage {
        let entities = interest
            .snapshot(&self.mirror)
            .into_iter()
            .filter_map(|i| self.entity(i))
            .collect();
        ServerMessage::Snapshot(Snapshot {
            id,
            tick: self.mirror.tick,
            game_time: game_time::to_timestamp(self.mirror.game_seconds),
            at: self.tick_at,
            entities,
        })
    }

    /// The area around character `name`, if it is in the world.
    fn around(&self, name: &str) -> Option<Area> {
        let idx = self.by_name.get(name)?;
        let v = self.mirror.get(*idx)?;
        Some(Area::Circle {
            cx: v.x,
            cy: v.y,
            r: FOLLOW_RADIUS,
        })
    }

    /// Subscribes `client` to `area`, or to the surroundings of character
    /// `follow`; queues the snapshot (answering `id`).
    pub fn subscribe(
        &mut self,
        client: u64,
        area: Option<Area>,
        follow: Option<String>,
        id: Option<RequestId>,
    ) {
        let area = area
            .or_else(|| follow.as_deref().and_then(|n| self.around(n)))
            .unwrap_or(Area::Circle {
                cx: 0.0,
                cy: 0.0,
                r: 0.0,
            });
        let mut interest = Interest::new(area);
        let msg = self.snapshot_of(&mut interest, id);
        let text: Arc<str> = protocol::encode(&msg).into();
        self.stats.snapshots += 1;
        self.stats.bytes += text.len() as u64;
        if let Some(c) = self.clients.get_mut(&client) {
            c.interest = Some(interest);
            c.follow = follow;
            if c.queue.try_send(Outbound::Text(text)).is_err() {
                self.stats.dropped_messages += 1;
                c.behind_since.get_or_insert_with(Instant::now);
            }
        }
    }

    pub fn unsubscribe(&mut self, client: u64) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.interest = None;
            c.follow = None;
        }
    }

    /// Applies the world's frame (and who spoke during it), queues each
    /// subscribed client's delta, then the events about what it sees;
    /// returns the clients dropped for being too slow or gone.
    /// Stamps what goes out from now on with the time the world finished
    /// its tick (Unix milliseconds).
    pub fn set_tick_time(&mut self, unix_ms: f64) {
        self.tick_at = Some(unix_ms);
    }

    pub fn tick(
        &mut self,
        frame: &ViewFrame,
        events: &[(u64, WorldEvent)],
        now: Instant,
    ) -> Vec<(u64, Dropped)> {
        let tick = frame.tick;
        self.mirror.apply(frame);
        if !self.gone.is_empty() {
            for a in &frame.agents {
                self.gone.remove(&a.idx);
            }
        }
        for &idx in &frame.agents_gone {
            // an agent whose file was removed: clients that saw it are told
            self.mirror.remove(idx);
            self.speech.remove(&idx);
            self.gone.insert(idx);
        }
        for &slot in &frame.gone {
            let idx = self.base + slot;
            // the name stays known (its slot is its own for good), so the
            // clients that saw it are told who left
            self.mirror.remove(idx);
            self.speech.remove(&idx);
        }
        for c in &frame.characters {
            let idx = self.base + c.slot;
            self.characters.insert(idx, c.name.clone());
            self.by_name.insert(c.name.clone(), idx);
            self.mirror.put(
                AgentView {
                    idx,
                    x: c.x,
                    y: c.y,
                    facing: c.facing,
                    block: u16::MAX,
                    reason: 0,
                    location: c.location.unwrap_or(u16::MAX),
                    mood: 0.0,
                },
                tick,
            );
        }
        // lines said this tick, and lines whose time is over
        let ended: Vec<u32> = self
            .speech
            .iter()
            .filter(|(_, (_, until))| *until <= tick)
            .map(|(&i, _)| i)
            .collect();
        for idx in ended {
            self.speech.remove(&idx);
            self.mirror.touch(idx, mirror::SPEECH, tick);
        }
        for (_, event) in events {
            let said = match event {
                WorldEvent::Line { speaker, text, .. } => Some((*speaker, text)),
                WorldEvent::AgentAnswered { agent, text, .. } => Some((*agent, text)),
                WorldEvent::PlayerSaid {
                    character, text, ..
                } => self.by_name.get(character).map(|&i| (i, text)),
                _ => None,
            };
            if let Some((idx, text)) = said {
                self.speech.insert(idx, (text.clone(), tick + SPEECH_TICKS));
                self.mirror.touch(idx, mirror::SPEECH, tick);
            }
        }
        let game_time = game_time::to_timestamp(self.mirror.game_seconds);
        let events: Vec<(Vec<u32>, Arc<str>)> = events
            .iter()
            .filter_map(|(_, e)| self.event(e))
            .map(|(about, event)| {
                let msg = ServerMessage::Event { tick, event };
                (about, protocol::encode(&msg).into())
            })
            .collect();
        let about = About::new(&events);
        let mut matched = Vec::new();
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        let mut dropped = Vec::new();
        let mut deepest = 0;
        let mut resyncs_left = RESYNCS_PER_PASS;
        for id in ids {
            let Some(mut client) = self.clients.remove(&id) else {
                continue;
            };
            let Some(mut interest) = client.interest.take() else {
                self.clients.insert(id, client);
                continue;
            };
            if let Some(area) = client.follow.as_deref().and_then(|n| self.around(n)) {
                interest.move_to(area);
            }
            let mut out: Vec<Arc<str>> = Vec::new();
            match client.behind_since {
                // behind, with room, but this pass's snapshots are spent: it
                // reads, so it is not the one too slow; its turn comes
                Some(_) if client.queue.capacity() > 0 && resyncs_left == 0 => {
                    client.behind_since = Some(now);
                }
                // behind: a fresh snapshot once there is room, not the deltas it missed
                Some(_) if client.queue.capacity() > 0 => {
                    resyncs_left -= 1;
                    self.stats.resyncs += 1;
                    self.stats.snapshots += 1;
                    out.push(protocol::encode(&self.snapshot_of(&mut interest, None)).into());
                }
                Some(_) => {}
                None => {
                    let d = interest.delta(&self.mirror);
                    if !d.is_empty() {
                        self.stats.deltas += 1;
                        out.push(protocol::encode(&self.delta_message(&d, game_time)).into());
                    }
                }
            }
            if client.behind_since.is_none() {
                about.seen_by(&interest, &mut matched);
                for &e in &matched {
                    self.stats.events += 1;
                    out.push(events[e as usize].1.clone());
                }
            }
            let mut keep = true;
            for text in out {
                let len = text.len() as u64;
                match client.queue.try_send(Outbound::Text(text)) {
                    Ok(()) => {
                        self.stats.bytes += len;
                        client.behind_since = None;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.stats.dropped_messages += 1;
                        client.behind_since.get_or_insert(now);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        keep = false;
                        dropped.push((id, Dropped::Gone));
                        break;
                    }
                }
            }
            if keep
                && let Some(since) = client.behind_since
                && now.saturating_duration_since(since) > BEHIND_LIMIT
            {
                keep = false;
                self.stats.disconnects += 1;
                // the close goes through the queue's reserve when there is one
                let _ = client.queue.try_send(Outbound::Close(
                    1013,
                    "too far behind the world; reconnect".into(),
                ));
                dropped.push((id, Dropped::TooSlow));
            }
            if keep {
                deepest = deepest.max(client.queue.max_capacity() - client.queue.capacity());
                client.interest = Some(interest);
                self.clients.insert(id, client);
            }
        }
        self.stats.deepest_queue = deepest;
        dropped
    }

    /// Queues `event` (made outside the world's ticks, such as a
    /// reflection) for the clients that see agent `agent`.
    pub fn agent_event(&mut self, agent: u32, event: Event) {
        let msg = ServerMessage::Event {
            tick: self.mirror.tick,
            event,
        };
        let text: Arc<str> = protocol::encode(&msg).into();
        for c in self.clients.values_mut() {
            if c.behind_since.is_some() || !c.interest.as_ref().is_some_and(|i| i.sees(agent)) {
                continue;
            }
            match c.queue.try_send(Outbound::Text(text.clone())) {
                Ok(()) => {
                    self.stats.events += 1;
                    self.stats.bytes += text.len() as u64;
                }
                Err(_) => {
                    self.stats.dropped_messages += 1;
                    c.behind_since.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// The agent's protocol id.
    pub fn agent_ref(&self, idx: u32) -> Option<AgentRef> {
        let def = self.defs.get(idx as usize)?;
        AgentRef::new(&def.file.id)
    }

    fn character_ref(&self, name: &str) -> EntityRef {
        EntityRef::Character(name.to_owned())
    }

    /// A world event as clients see it, with the entities it is about.
    fn event(&self, event: &WorldEvent) -> Option<(Vec<u32>, Event)> {
        let agent = |i: u32| self.entity_ref(i).filter(|_| i < self.base);
        let character_idx = |n: &str| self.by_name.get(n).copied();
        Some(match event {
            WorldEvent::Line {
                conversation,
                speaker,
                text,
                ..
            } => (
                vec![*speaker],
                Event::Speech {
                    speaker: agent(*speaker)?,
                    to: Vec::new(),
                    conversation: Some(*conversation),
                    text: text.clone(),
                },
            ),
            WorldEvent::ConversationStarted {
                conversation,
                participants,
                location,
            } => (
                participants.clone(),
                Event::ConversationStarted {
                    conversation: *conversation,
                    participants: participants.iter().filter_map(|&p| agent(p)).collect(),
                    location: location.and_then(|l| {
                        self.map
                            .locations
                            .get(usize::from(l))
                            .map(|l| l.name.clone())
                    }),
                },
            ),
            WorldEvent::ConversationEnded {
                conversation,
                participants,
                ..
            } => (
                participants.clone(),
                Event::ConversationEnded {
                    conversation: *conversation,
                    participants: participants.iter().filter_map(|&p| agent(p)).collect(),
                },
            ),
            WorldEvent::RelationshipChanged {
                agent: a,
                other,
                affection,
                trust,
            } => (
                vec![*a, *other],
                Event::Relationship {
                    agent: self.agent_ref(*a)?,
                    other: agent(*other)?,
                    affection: *affection,
                    trust: *trust,
                },
            ),
            WorldEvent::PlanChanged { agent: a, goal, .. } => (
                vec![*a],
                Event::Plan {
                    agent: self.agent_ref(*a)?,
                    goal: goal.clone(),
                },
            ),
            WorldEvent::PlayerSaid {
                character,
                text,
                agents,
                to_character,
                conversation,
            } => {
                let mut about: Vec<u32> = agents.clone();
                about.extend(character_idx(character));
                let mut to: Vec<EntityRef> = agents.iter().filter_map(|&a| agent(a)).collect();
                to.extend(to_character.iter().map(|n| self.character_ref(n)));
                (
                    about,
                    Event::Speech {
                        speaker: self.character_ref(character),
                        to,
                        conversation: *conversation,
                        text: text.clone(),
                    },
                )
            }
            WorldEvent::AgentAnswered {
                agent: a,
                character,
                text,
                conversation,
                ..
            } => {
                let mut about = vec![*a];
                about.extend(character_idx(character));
                (
                    about,
                    Event::Speech {
                        speaker: agent(*a)?,
                        to: vec![self.character_ref(character)],
                        conversation: *conversation,
                        text: text.clone(),
                    },
                )
            }
            WorldEvent::PlayerTalkStarted {
                conversation,
                character,
                agent: a,
                location,
            } => {
                let mut about = vec![*a];
                about.extend(character_idx(character));
                (
                    about,
                    Event::ConversationStarted {
                        conversation: *conversation,
                        participants: vec![self.character_ref(character), agent(*a)?],
                        location: location.and_then(|l| {
                            self.map
                                .locations
                                .get(usize::from(l))
                                .map(|l| l.name.clone())
                        }),
                    },
                )
            }
            WorldEvent::PlayerTalkEnded {
                conversation,
                character,
                agent: a,
            } => {
                let mut about = vec![*a];
                about.extend(character_idx(character));
                (
                    about,
                    Event::ConversationEnded {
                        conversation: *conversation,
                        participants: vec![self.character_ref(character), agent(*a)?],
                    },
                )
            }
            WorldEvent::CharacterTieChanged {
                agent: a,
                character,
                affection,
                trust,
            } => {
                let mut about = vec![*a];
                about.extend(character_idx(character));
                (
                    about,
                    Event::Relationship {
                        agent: self.agent_ref(*a)?,
                        other: self.character_ref(character),
                        affection: *affection,
                        trust: *trust,
                    },
                )
            }
            WorldEvent::ActivityChanged { .. }
            | WorldEvent::Arrived { .. }
            | WorldEvent::Perceived { .. }
            | WorldEvent::Woke { .. }
            | WorldEvent::FellAsleep { .. }
            | WorldEvent::Interacted { .. }
            | WorldEvent::LineWanted(_)
            | WorldEvent::PlanWanted(_)
            | WorldEvent::DayPlanned { .. }
            | WorldEvent::ContentReloaded(_) => return None,
        })
    }

    fn delta_message(
        &self,
        d: &super::mirror::Delta,
        game_time: chrono::NaiveDateTime,
    ) -> ServerMessage {
        let changed = d
            .changed
            .iter()
            .filter_map(|&(i, since)| {
                let v = self.mirror.get(i)?;
                let id = self.entity_ref(i)?;
                Some(self.fields(i, v, id, Some(since)))
            })
            .filter(EntityState::has_changes)
            .collect();
        let entered = d.entered.iter().filter_map(|&i| self.entity(i)).collect();
        let left = d.left.iter().filter_map(|&i| self.entity_ref(i)).collect();
        ServerMessage::Delta(Delta {
            tick: self.mirror.tick,
            game_time,
            at: self.tick_at,
            changed,
            entered,
            left,
        })
    }
}

/// A tick's events by the entities they are about, sorted, so that each
/// client finds its events from whichever is shorter: the events, or the
/// entities it sees. Merged ticks of a busy world carry thousands of events;
/// testing every one against every client made a fan-out pass cost
/// clients × events, and a slow pass merged yet more ticks into the next.
struct About {
    /// (entity, event index), sorted.
    pairs: Vec<(u32, u32)>,
}

impl About {
    fn new(events: &[(Vec<u32>, Arc<str>)]) -> Self {
        let mut pairs: Vec<(u32, u32)> = events
            .iter()
            .enumerate()
            .flat_map(|(e, (about, _))| about.iter().map(move |&i| (i, e as u32)))
            .collect();
        pairs.sort_unstable();
        Self { pairs }
    }

    /// The events about anyone `interest` sees, in order, each once.
    fn seen_by(&self, interest: &Interest, out: &mut Vec<u32>) {
        out.clear();
        if self.pairs.is_empty() {
            return;
        }
        let visible = interest.visible();
        if self.pairs.len() <= visible.len() {
            out.extend(
                self.pairs
                    .iter()
                    .filter(|(i, _)| interest.sees(*i))
                    .map(|&(_, e)| e),
            );
        } else {
            for &i in visible {
                let from = self.pairs.partition_point(|&(j, _)| j < i);
                out.extend(
                    self.pairs[from..]
                        .iter()
                        .take_while(|&&(j, _)| j == i)
                        .map(|&(_, e)| e),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// The world's facing as the wire names it (the protocol knows nothing of
/// the world's types).
fn wire_facing(facing: hearth_world::components::Facing) -> protocol::Facing {
    use hearth_world::components::Facing as F;
    match facing {
        F::N => protocol::Facing::N,
        F::Ne => protocol::Facing::Ne,
        F::E => protocol::Facing::E,
        F::Se => protocol::Facing::Se,
        F::S => protocol::Facing::S,
        F::Sw => protocol::Facing::Sw,
        F::W => protocol::Facing::W,
        F::Nw => protocol::Facing::Nw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::synthetic;
    use hearth_world::{Sim, SimConfig};

    fn world(n: usize) -> (Sim, HubCore) {
        let mut sim = Sim::new(synthetic::world(n, 9), SimConfig::default());
        sim.publish_view();
        let hub = HubCore::new(sim.defs().clone(), sim.map().clone());
        (sim, hub)
    }

    fn everywhere() -> Area {
        Area::Rect {
            x: 0.0,
            y: 0.0,
            w: 4000.0,
            h: 4000.0,
        }
    }

    fn decode(o: Outbound) -> ServerMessage {
        match o {
            Outbound::Text(t) => serde_json::from_str(&t).expect("a server message"),
            Outbound::Close(code, why) => panic!("closed {code}: {why}"),
        }
    }

    #[test]
    fn a_subscriber_gets_a_snapshot_then_deltas() {
        let (mut sim, mut hub) = world(100);
        sim.step();
        hub.tick(&sim.take_view().expect("frame"), &[], Instant::now());
        let (tx, mut rx) = mpsc::channel(64);
        hub.connect(1, tx);
        hub.subscribe(1, Some(everywhere()), None, protocol::RequestId::text("s1"));
        let ServerMessage::Snapshot(s) = decode(rx.try_recv().expect("snapshot")) else {
            panic!("a snapshot first");
        };
        assert_eq!(s.entities.len(), 100);
        assert!(s.entities.iter().all(|e| e.name.is_some() && e.x.is_some()));
        let mut deltas = 0;
        for _ in 0..30 {
            sim.step();
            hub.tick(&sim.take_view().expect("frame"), &[], Instant::now());
            while let Ok(o) = rx.try_recv() {
                let ServerMessage::Delta(d) = decode(o) else {
                    panic!("deltas after the snapshot");
                };
                assert!(d.changed.len() < 100, "only what changed");
                deltas += 1;
            }
        }
        assert!(deltas > 0);
        assert_eq!(hub.stats.resyncs, 0);
    }

    #[test]
    fn a_slow_client_is_resynced_then_dropped_and_others_never_notice() {
        let (mut sim, mut hub) = world(100);
        sim.step();
        hub.tick(&sim.take_view().expect("frame"), &[], Instant::now());
        let (slow_tx, mut slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(1024);
        hub.connect(1, slow_tx);
        hub.connect(2, fast_tx);
        hub.subscribe(1, Some(everywhere()), None, None);
        hub.subscribe(2, Some(everywhere()), None, None);
        let start = Instant::now();
        // the slow one never reads for 5 (simulated) seconds
        for i in 0..50 {
            sim.step();
            let dropped = hub.tick(
                &sim.take_view().expect("frame"),
                &[],
                start + Duration::from_millis(100 * i),
            );
            assert!(dropped.is_empty());
        }
        assert!(hub.stats.dropped_messages > 0);
        let fast: Vec<_> = std::iter::from_fn(|| fast_rx.try_recv().ok()).collect();
        // every agent is far from the centre of this huge area: a delta on
        // even ticks when something visible changed, and never a resync
        assert!(fast.len() >= 10, "the fast client kept up: {}", fast.len());
        assert!(
            fast.into_iter()
                .skip(1)
                .all(|o| matches!(decode(o), ServerMessage::Delta(_)))
        );
        // it reads again: the next message is a fresh snapshot, not stale deltas
        while slow_rx.try_recv().is_ok() {}
        sim.step();
        hub.tick(
            &sim.take_view().expect("frame"),
            &[],
            start + Duration::from_secs(5),
        );
        assert!(matches!(
            decode(slow_rx.try_recv().expect("resync")),
            ServerMessage::Snapshot(_)
        ));
        assert_eq!(hub.stats.resyncs, 1);
        // and stays behind for longer than the limit: dropped with 1013
        let mut gone = Vec::new();
        for i in 0..200 {
            sim.step();
            gone = hub.tick(
                &sim.take_view().expect("frame"),
                &[],
                start + Duration::from_secs(6) + Duration::from_millis(100 * i),
            );
            if !gone.is_empty() {
                break;
            }
        }
        assert_eq!(gone, vec![(1, Dropped::TooSlow)]);
        assert_eq!(hub.clients(), 1);
        let last = std::iter::from_fn(|| slow_rx.try_recv().ok()).last();
        assert!(
            matches!(
                last,
                Some(Outbound::Close(1013, _)) | Some(Outbound::Text(_)) | None
            ),
            "{last:?}"
        );
    }

    #[test]
    fn reloaded_content_resyncs_clients_only_when_what_they_hold_changed() {
        let (mut sim, mut hub) = world(10);
        sim.step();
        hub.tick(&sim.take_view().expect("frame"), &[], Instant::now());
        let (tx, _rx) = mpsc::channel(64);
        hub.connect(1, tx);
        hub.subscribe(1, Some(everywhere()), None, None);
        let behind = |hub: &HubCore| hub.clients[&1].behind_since.is_some();
        let map = sim.map().clone();
        // a goal is not something clients hold
        let mut defs = (**sim.defs()).clone();
        defs[2].file.goals.primary = "another goal".into();
        hub.set_content(Arc::new(defs.clone()), map.clone(), &[2]);
        assert!(!behind(&hub), "no snapshot for a changed goal");
        assert_eq!(hub.defs()[2].file.goals.primary, "another goal");
        // a name is
        defs[2].file.name = "Someone Else".into();
        hub.set_content(Arc::new(defs), map, &[2]);
        assert!(behind(&hub), "a fresh snapshot for a changed name");
    }

    #[test]
    fn resyncs_are_spread_over_passes_by_a_budget() {
        let (mut sim, mut hub) = world(50);
        sim.step();
        hub.tick(&sim.take_view().expect("frame"), &[], Instant::now());
        let n = RESYNCS_PER_PASS as u64 + 10;
        let mut queues = Vec::new();
        for id in 0..n {
            let (tx, rx) = mpsc::channel(1);
            hub.connect(id, tx);
            hub.subscribe(id, Some(everywhere()), None, None);
            queues.push(rx);
        }
        // every queue is full with its snapshot: a pass leaves all behind
        let start = Instant::now();
        for i in 0..3 {
            sim.step();
            hub.tick(
                &sim.take_view().expect("frame"),
                &[],
                start + Duration::from_millis(100 * i),
            );
        }
        for q in &mut queues {
            while q.try_recv().is_ok() {}
        }
        let snapshots = |queues: &mut Vec<mpsc::Receiver<Outbound>>| {
            let mut n = 0;
            for q in queues.iter_mut() {
                if q.try_recv()
                    .is_ok_and(|o| matches!(decode(o), ServerMessage::Snapshot(_)))
                {
                    n += 1;
                }
            }
            n
        };
        // all read again: one pass resyncs the budget's worth, the next the rest
        sim.step();
        hub.tick(
            &sim.take_view().expect("frame"),
            &[],
            start + Duration::from_secs(1),
        );
        assert_eq!(snapshots(&mut queues), RESYNCS_PER_PASS);
        sim.step();
        let dropped = hub.tick(
            &sim.take_view().expect("frame"),
            &[],
            start + Duration::from_secs(1),
        );
        assert!(dropped.is_empty());
        assert_eq!(snapshots(&mut queues), 10);
        assert_eq!(hub.stats.resyncs, n);
        // the ones that waited were not counted as slow: nobody is dropped
        // even well past the limit since they fell behind
        for q in &mut queues {
            while q.try_recv().is_ok() {}
        }
        assert_eq!(hub.clients(), n as usize);
    }

    #[test]
    fn a_client_gets_the_events_about_whom_it_sees_in_order_each_once() {
        let mut mirror = Mirror::new(64, 64);
        for (idx, x) in [(1u32, 2.0f32), (3, 4.0), (5, 40.0), (7, 6.0)] {
            mirror.put(
                AgentView {
                    idx,
                    x,
                    y: 2.0,
                    facing: hearth_world::components::Facing::S,
                    block: u16::MAX,
                    reason: 0,
                    location: 0,
                    mood: 0.0,
                },
                1,
            );
        }
        let mut interest = Interest::new(Area::Rect {
            x: 0.0,
            y: 0.0,
            w: 16.0,
            h: 16.0,
        });
        interest.snapshot(&mirror);
        assert_eq!(interest.visible(), &[1, 3, 7]);
        let text: Arc<str> = Arc::from("e");
        let naive = |events: &[(Vec<u32>, Arc<str>)]| -> Vec<u32> {
            (0..events.len() as u32)
                .filter(|&e| events[e as usize].0.iter().any(|&i| interest.sees(i)))
                .collect()
        };
        // fewer events than visible entities, and more: both ways agree
        // with testing every event, keep the order and give each once
        let few = vec![(vec![5, 3], text.clone()), (vec![9], text.clone())];
        let many: Vec<(Vec<u32>, Arc<str>)> = (0..40u32)
            .map(|e| (vec![e % 9, (e * 7) % 9], text.clone()))
            .collect();
        let mut out = Vec::new();
        for events in [few, many, Vec::new()] {
            About::new(&events).seen_by(&interest, &mut out);
            assert_eq!(out, naive(&events));
        }
        assert!(out.is_empty());
        let both = vec![(vec![1, 3, 7], text.clone())];
        About::new(&both).seen_by(&interest, &mut out);
        assert_eq!(out, vec![0], "an event about three seen agents, once");
    }

    #[test]
    fn characters_appear_speak_and_leave_with_only_their_changes() {
        use hearth_world::Command;
        use hearth_world::players::PlayerCommand;
        let (mut sim, mut hub) = world(20);
        let step = |sim: &mut Sim, hub: &mut HubCore| {
            sim.step();
            let events = sim.drain_events();
            hub.tick(&sim.take_view().expect("frame"), &events, Instant::now());
        };
        step(&mut sim, &mut hub);
        sim.send(Command::Player(PlayerCommand::Join { name: "ada".into() }));
        step(&mut sim, &mut hub);
        let (tx, mut rx) = mpsc::channel(256);
        hub.connect(1, tx);
        hub.subscribe(1, Some(everywhere()), None, None);
        let ServerMessage::Snapshot(s) = decode(rx.try_recv().expect("snapshot")) else {
            panic!("a snapshot");
        };
        let ada = s
            .entities
            .iter()
            .find(|e| e.id == EntityRef::Character("ada".into()))
            .expect("the character is in the snapshot");
        assert_eq!(ada.kind, Some(EntityKind::Character));
        assert_eq!(ada.activity, Some(None), "characters have no activity");
        sim.send(Command::Player(PlayerCommand::Say {
            name: "ada".into(),
            text: "Hi all".into(),
            to: None,
        }));
        // far from the centre of this huge area: reported on an even tick
        step(&mut sim, &mut hub);
        step(&mut sim, &mut hub);
        let got: Vec<ServerMessage> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(decode)
            .collect();
        let change = got
            .iter()
            .find_map(|m| match m {
                ServerMessage::Delta(d) => d
                    .changed
                    .iter()
                    .find(|c| c.id == EntityRef::Character("ada".into()))
                    .cloned(),
                _ => None,
            })
            .expect("her speech is a change");
        assert_eq!(change.speech, Some(Some("Hi all".into())));
        assert_eq!(change.x, None, "she did not move: no position");
        assert!(got.iter().any(|m| matches!(m,
            ServerMessage::Event { event: Event::Speech { speaker, .. }, .. }
                if *speaker == EntityRef::Character("ada".into()))));
        sim.send(Command::Player(PlayerCommand::Leave { name: "ada".into() }));
        step(&mut sim, &mut hub);
        let left = std::iter::from_fn(|| rx.try_recv().ok())
            .map(decode)
            .any(|m| {
                matches!(m, ServerMessage::Delta(d)
                if d.left.contains(&EntityRef::Character("ada".into())))
            });
        assert!(left, "clients are told she left");
    }
}
