//! The hub's core: what each subscribed client is sent when the world
//! ticks. It applies the world's view frames to the [`Mirror`], and for
//! every client with an area of interest encodes a `delta` (or, for a
//! client that fell behind, a fresh `snapshot`) once, and queues it on the
//! client's bounded outbound queue without ever waiting: a full queue marks
//! the client behind (it gets a snapshot when there is room again) and one
//! behind for too long is dropped with a reason. The world and the other
//! clients never wait on a slow one. No sockets here: the connection tasks
//! own those and read the queues. Touches the mirror, the agents'
//! definitions and map (read-only) and the queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_db::game_time;
use tokio::sync::mpsc;

use super::mirror::{Area, Interest, Mirror};
use super::protocol::{
    self, Delta, EntityKind, EntityRef, EntityState, RequestId, ServerMessage, Snapshot,
};
use crate::content::{AgentDef, WorldMap};
use crate::world::view::{AgentView, ViewFrame};

/// A client behind for longer than this is dropped.
pub const BEHIND_LIMIT: Duration = Duration::from_secs(10);

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
    /// Since when its queue has been full, if it is behind.
    behind_since: Option<Instant>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub deltas: u64,
    pub snapshots: u64,
    /// Messages not queued because a queue was full.
    pub dropped_messages: u64,
    pub resyncs: u64,
    pub disconnects: u64,
    pub bytes: u64,
}

/// The clients of one world and the mirror they are served from.
#[derive(Debug)]
pub struct HubCore {
    mirror: Mirror,
    defs: Arc<Vec<AgentDef>>,
    map: Arc<WorldMap>,
    clients: HashMap<u64, Client>,
    pub stats: HubStats,
}

impl HubCore {
    pub fn new(defs: Arc<Vec<AgentDef>>, map: Arc<WorldMap>) -> Self {
        Self {
            mirror: Mirror::new(map.width, map.height),
            defs,
            map,
            clients: HashMap::new(),
            stats: HubStats::default(),
        }
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// A new connection, which reads `queue`'s other end.
    pub fn connect(&mut self, client: u64, queue: mpsc::Sender<Outbound>) {
        self.clients.insert(
            client,
            Client {
                queue,
                interest: None,
                behind_since: None,
            },
        );
    }

    pub fn disconnect(&mut self, client: u64) {
        self.clients.remove(&client);
    }

    /// The entity of agent `idx` as clients see it (full state).
    fn entity(&self, view: &AgentView) -> Option<EntityState> {
        let def = self.defs.get(view.idx as usize)?;
        let id = EntityRef::Agent(def.file.id.clone());
        Some(EntityState {
            kind: Some(EntityKind::Agent),
            name: Some(def.file.name.clone()),
            ..self.changed(view, def, id)
        })
    }

    /// The agent's changing fields (for a delta's `changed`).
    fn changed(&self, view: &AgentView, def: &AgentDef, id: EntityRef) -> EntityState {
        EntityState {
            x: Some(view.x),
            y: Some(view.y),
            facing: Some(view.facing.into()),
            activity: Some(Some(view.activity(def).to_owned())),
            location: Some(
                self.map
                    .locations
                    .get(view.location as usize)
                    .map(|l| l.name.clone()),
            ),
            mood: Some(Some(view.mood)),
            ..EntityState::id_only(id)
        }
    }

    fn snapshot_of(&self, interest: &mut Interest, id: Option<RequestId>) -> ServerMessage {
        let entities = interest
            .snapshot(&self.mirror)
            .into_iter()
            .filter_map(|i| self.mirror.get(i).and_then(|v| self.entity(v)))
            .collect();
        ServerMessage::Snapshot(Snapshot {
            id,
            tick: self.mirror.tick,
            game_time: game_time::to_timestamp(self.mirror.game_seconds),
            entities,
        })
    }

    /// Subscribes `client` to `area`; queues the snapshot (answering `id`).
    pub fn subscribe(&mut self, client: u64, area: Area, id: Option<RequestId>) {
        let mut interest = Interest::new(area);
        let msg = self.snapshot_of(&mut interest, id);
        let text: Arc<str> = protocol::encode(&msg).into();
        self.stats.snapshots += 1;
        self.stats.bytes += text.len() as u64;
        if let Some(c) = self.clients.get_mut(&client) {
            c.interest = Some(interest);
            if c.queue.try_send(Outbound::Text(text)).is_err() {
                self.stats.dropped_messages += 1;
                c.behind_since.get_or_insert_with(Instant::now);
            }
        }
    }

    pub fn unsubscribe(&mut self, client: u64) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.interest = None;
        }
    }

    /// Applies the world's frame and queues each subscribed client's delta;
    /// returns the clients dropped for being too slow or gone.
    pub fn tick(&mut self, frame: &ViewFrame, now: Instant) -> Vec<(u64, Dropped)> {
        self.mirror.apply(frame);
        let game_time = game_time::to_timestamp(self.mirror.game_seconds);
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        let mut dropped = Vec::new();
        for id in ids {
            let Some(mut client) = self.clients.remove(&id) else {
                continue;
            };
            let Some(mut interest) = client.interest.take() else {
                self.clients.insert(id, client);
                continue;
            };
            let msg = match client.behind_since {
                // behind: a fresh snapshot once there is room, not the deltas it missed
                Some(_) if client.queue.capacity() > 0 => {
                    self.stats.resyncs += 1;
                    self.stats.snapshots += 1;
                    Some(self.snapshot_of(&mut interest, None))
                }
                Some(_) => None,
                None => {
                    let d = interest.delta(&self.mirror);
                    if d.is_empty() {
                        None
                    } else {
                        self.stats.deltas += 1;
                        Some(self.delta_message(&d, game_time))
                    }
                }
            };
            let mut keep = true;
            if let Some(msg) = msg {
                let text: Arc<str> = protocol::encode(&msg).into();
                let len = text.len() as u64;
                match client.queue.try_send(Outbound::Text(text)) {
                    Ok(()) => {
                        self.stats.bytes += len;
                        client.behind_since = None;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.stats.dropped_messages += 1;
                        client.behind_since.get_or_insert(now);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        keep = false;
                        dropped.push((id, Dropped::Gone));
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
                client.interest = Some(interest);
                self.clients.insert(id, client);
            }
        }
        dropped
    }

    fn delta_message(
        &self,
        d: &super::mirror::Delta,
        game_time: chrono::NaiveDateTime,
    ) -> ServerMessage {
        let changed = d
            .changed
            .iter()
            .filter_map(|&i| {
                let v = self.mirror.get(i)?;
                let def = self.defs.get(i as usize)?;
                Some(self.changed(v, def, EntityRef::Agent(def.file.id.clone())))
            })
            .collect();
        let entered = d
            .entered
            .iter()
            .filter_map(|&i| self.mirror.get(i).and_then(|v| self.entity(v)))
            .collect();
        let left = d
            .left
            .iter()
            .filter_map(|&i| {
                self.defs
                    .get(i as usize)
                    .map(|def| EntityRef::Agent(def.file.id.clone()))
            })
            .collect();
        ServerMessage::Delta(Delta {
            tick: self.mirror.tick,
            game_time,
            changed,
            entered,
            left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::synthetic;
    use crate::world::{Sim, SimConfig};

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
        hub.tick(&sim.take_view().expect("frame"), Instant::now());
        let (tx, mut rx) = mpsc::channel(64);
        hub.connect(1, tx);
        hub.subscribe(1, everywhere(), protocol::RequestId::text("s1"));
        let ServerMessage::Snapshot(s) = decode(rx.try_recv().expect("snapshot")) else {
            panic!("a snapshot first");
        };
        assert_eq!(s.entities.len(), 100);
        assert!(s.entities.iter().all(|e| e.name.is_some() && e.x.is_some()));
        let mut deltas = 0;
        for _ in 0..30 {
            sim.step();
            hub.tick(&sim.take_view().expect("frame"), Instant::now());
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
        hub.tick(&sim.take_view().expect("frame"), Instant::now());
        let (slow_tx, mut slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(1024);
        hub.connect(1, slow_tx);
        hub.connect(2, fast_tx);
        hub.subscribe(1, everywhere(), None);
        hub.subscribe(2, everywhere(), None);
        let start = Instant::now();
        // the slow one never reads for 5 (simulated) seconds
        for i in 0..50 {
            sim.step();
            let dropped = hub.tick(
                &sim.take_view().expect("frame"),
                start + Duration::from_millis(100 * i),
            );
            assert!(dropped.is_empty());
        }
        assert!(hub.stats.dropped_messages > 0);
        let fast: Vec<_> = std::iter::from_fn(|| fast_rx.try_recv().ok()).collect();
        // every agent is far from the centre of this huge area: a delta every
        // other tick, and never a resync
        assert!(fast.len() >= 24, "the fast client kept up: {}", fast.len());
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
}
