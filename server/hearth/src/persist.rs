//! The write-behind pipeline between the world and the database writer. On
//! the world's thread, a [`Feed`] gathers each tick's conversation events and
//! timing and, on ticks that took a snapshot, hands a [`Frame`] over a
//! bounded channel without ever waiting (a frame that finds the channel full
//! is held and merged with the next: agents coalesce, events are kept). On
//! the runtime, the converter task turns frames into `hearth-db` rows (off
//! the async threads: decoding 100k agents is CPU work) and sends them to
//! the writer, which commits each with its checkpoint. Touches the world's
//! snapshots and events (read-only) and the writer's handle; never the ECS
//! world itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_db::game_time;
use hearth_db::writer::{
    AgentStateRow, Batch, Checkpoint, ConversationRow, MessageRow, ParticipantRow, PlanRow,
    RelationshipRow, SimMetricsRow, Writer,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use hearth_content::{AgentDef, WorldMap};
use hearth_world::WorldEvent;
use hearth_world::components::{PlanStatus, Relationship, Step};
use hearth_world::conversation::Conversation;
use hearth_world::persist::{self, AgentSim, WorldSnapshot};
use hearth_world::runner::TickOutput;
use hearth_world::schedule::{ActivityLabel, activity_label};

/// Frames that may wait between the world and the converter.
const CHANNEL: usize = 4;
/// Longest text a message row takes (the column's limit).
const MAX_MESSAGE: usize = 4000;

/// What the rows are made with: the world's ids, definitions and map.
#[derive(Debug, Clone)]
pub struct Context {
    pub world_id: i64,
    /// Database id of each agent, by world index.
    pub agent_ids: Arc<Vec<i64>>,
    pub defs: Arc<Vec<AgentDef>>,
    pub map: Arc<WorldMap>,
}

/// A snapshot and what happened since the previous one.
#[derive(Debug, Clone)]
pub struct Frame {
    pub snapshot: WorldSnapshot,
    /// Conversation events, with the game second of their tick.
    pub events: Vec<(u64, WorldEvent)>,
    /// Tick durations since the previous frame, in microseconds.
    pub ticks_us: Vec<u32>,
    /// Content reloaded into the world since the previous frame: the rows
    /// of this frame on are made with it.
    pub content: Option<Arc<hearth_world::reload::Reloaded>>,
}

impl Frame {
    fn merge(&mut self, newer: Frame) {
        self.snapshot.merge(newer.snapshot);
        self.events.extend(newer.events);
        self.ticks_us.extend(newer.ticks_us);
        if newer.content.is_some() {
            self.content = newer.content;
        }
    }
}

/// The world thread's end of the pipeline.
#[derive(Debug)]
pub struct Feed {
    tx: mpsc::Sender<Frame>,
    events: Vec<(u64, WorldEvent)>,
    ticks_us: Vec<u32>,
    held: Option<Frame>,
    content: Option<Arc<hearth_world::reload::Reloaded>>,
}

impl Feed {
    /// Takes this tick's conversation events and timing, and its snapshot
    /// if it took one. Never blocks.
    pub fn tick(&mut self, out: &mut TickOutput) {
        for (_, e) in &out.events {
            if matches!(
                e,
                WorldEvent::ConversationStarted { .. }
                    | WorldEvent::Line { .. }
                    | WorldEvent::ConversationEnded { .. }
            ) {
                self.events.push((out.game_seconds, e.clone()));
            }
            if let WorldEvent::ContentReloaded(r) = e {
                self.content = Some(r.clone());
            }
        }
        self.ticks_us
            .push(u32::try_from(out.duration.as_micros()).unwrap_or(u32::MAX));
        if let Some(snapshot) = out.snapshot.take() {
            self.push(snapshot);
        }
    }

    /// Hands `snapshot` over with the events gathered so far.
    pub fn push(&mut self, snapshot: WorldSnapshot) {
        let frame = Frame {
            snapshot,
            events: std::mem::take(&mut self.events),
            ticks_us: std::mem::take(&mut self.ticks_us),
            content: self.content.take(),
        };
        let frame = match self.held.take() {
            Some(mut held) => {
                held.merge(frame);
                held
            }
            None => frame,
        };
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(f)) => {
                metrics::counter!("hearth_persist_frames_merged_total").increment(1);
                self.held = Some(f);
            }
            Err(mpsc::error::TrySendError::Closed(f)) => {
                // the pipeline has stopped (the world was lost to another
                // process): keep the frame so a final flush can report it
                self.held = Some(f);
            }
        }
    }

    /// Hands over what is held, waiting for room (at shutdown).
    pub async fn flush(&mut self) -> bool {
        match self.held.take() {
            Some(f) => self.tx.send(f).await.is_ok(),
            None => true,
        }
    }
}

/// A [`Feed`] shared by the world's thread (each tick) and the server (for
/// the final checkpoint, once the world has stopped).
pub type SharedFeed = Arc<Mutex<Feed>>;

/// What the converter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersistReport {
    pub frames: u64,
    pub agents: u64,
    pub messages: u64,
    /// Frames the writer could not take (it had stopped).
    pub undelivered: u64,
}

/// Starts the converter. `open` are the conversations under way in the
/// world it starts from (their rows exist already).
pub fn spawn(
    context: Context,
    writer: Writer,
    open: &[Conversation],
) -> (SharedFeed, JoinHandle<PersistReport>) {
    let (tx, mut rx) = mpsc::channel::<Frame>(CHANNEL);
    let feed = Arc::new(Mutex::new(Feed {
        tx,
        events: Vec::new(),
        ticks_us: Vec::new(),
        held: None,
        content: None,
    }));
    let mut conversations = Conversations::default();
    for c in open {
        conversations.open.insert(
            c.id,
            conversation_row(&context, c.id, &c.participants, c.location, c.started * 60),
        );
    }
    let mut context = Arc::new(context);
    let handle = tokio::spawn(async move {
        let mut report = PersistReport::default();
        let mut state = Some(conversations);
        while let Some(frame) = rx.recv().await {
            if let Some(r) = &frame.content {
                context = Arc::new(Context {
                    defs: r.agents.clone(),
                    map: r.map.clone(),
                    agent_ids: r
                        .agent_ids
                        .clone()
                        .unwrap_or_else(|| context.agent_ids.clone()),
                    ..(*context).clone()
                });
            }
            let ctx = context.clone();
            let Some(mut convs) = state.take() else {
                break;
            };
            let status = writer.status();
            let made = tokio::task::spawn_blocking(move || {
                let batch = to_batch(&ctx, &frame, &mut convs, status.last_flush_ms);
                (batch, convs, frame.snapshot.agents.len())
            })
            .await;
            let (mut batch, convs, agents) = match made {
                Ok(made) => made,
                Err(e) => {
                    warn!(error = %e, "building a write-behind batch failed");
                    break;
                }
            };
            state = Some(convs);
            if let Some(m) = batch.metrics.as_mut() {
                m.queue_depth = i32::try_from(status.queue_depth).unwrap_or(i32::MAX);
            }
            report.frames += 1;
            report.agents += agents as u64;
            report.messages += batch.messages.len() as u64;
            debug!(
                agents,
                states = batch.state_rows(),
                appended = batch.appended_rows(),
                "frame"
            );
            if writer.send(batch).await.is_err() {
                report.undelivered += 1;
                warn!("the writer has stopped; the world is no longer persisted");
                break;
            }
        }
        report
    });
    (feed, handle)
}

/// Conversations seen starting and not yet ended, as their rows.
#[derive(Debug, Default)]
struct Conversations {
    open: HashMap<u64, ConversationRow>,
}

fn ts(seconds: u64) -> chrono::NaiveDateTime {
    game_time::to_timestamp(seconds)
}

fn location_name(ctx: &Context, id: Option<hearth_content::LocationId>) -> Option<String> {
    id.and_then(|l| ctx.map.locations.get(l as usize))
        .map(|l| l.name.clone())
}

fn conversation_row(
    ctx: &Context,
    id: u64,
    participants: &[u32],
    location: Option<hearth_content::LocationId>,
    started: u64,
) -> ConversationRow {
    ConversationRow {
        world_id: ctx.world_id,
        id: id as i64,
        kind: if participants.len() > 2 {
            "group"
        } else {
            "direct"
        }
        .into(),
        location: location_name(ctx, location),
        topic: None,
        started: ts(started),
        ended: None,
    }
}

/// The rows of one frame.
fn to_batch(
    ctx: &Context,
    frame: &Frame,
    conversations: &mut Conversations,
    last_flush_ms: f64,
) -> Batch {
    let mut batch = Batch::default();
    let tick = frame.snapshot.tick as i64;
    for dirty in &frame.snapshot.agents {
        let Some(&agent_id) = ctx.agent_ids.get(dirty.idx as usize) else {
            continue;
        };
        let Some(def) = ctx.defs.get(dirty.idx as usize) else {
            continue;
        };
        let agent = match persist::decode_agent(&dirty.sim) {
            Ok(a) => a,
            Err(e) => {
                warn!(agent = %def.file.id, error = %e, "cannot read an agent's snapshot");
                continue;
            }
        };
        batch.agent_states.insert(
            agent_id,
            state_row(ctx, def, agent_id, &agent, tick, dirty.sim.clone()),
        );
        if dirty.plan {
            batch
                .plans
                .insert(agent_id, plan_row(ctx, agent_id, &agent, tick));
        }
        if let Some(relationships) = &dirty.relationships {
            for r in relationships {
                let Some(&target) = ctx.agent_ids.get(r.target as usize) else {
                    continue;
                };
                if target == agent_id {
                    continue;
                }
                batch.relationships.insert(
                    (agent_id, target),
                    RelationshipRow {
                        world_id: ctx.world_id,
                        agent_id,
                        target_agent_id: target,
                        kind: relationship_kind(&r.kind),
                        affection: finite(r.affection).clamp(-100.0, 100.0),
                        trust: finite(r.trust).clamp(0.0, 100.0),
                        interaction_count: i32::try_from(r.interactions).unwrap_or(i32::MAX),
                        last_interaction: r.last_interaction.map(|m| ts(m * 60)),
                        summary: String::new(),
                        updated_tick: tick,
                    },
                );
            }
        }
    }
    for (seconds, event) in &frame.events {
        match event {
            WorldEvent::ConversationStarted {
                conversation,
                participants,
                location,
            } => {
                let row = conversation_row(ctx, *conversation, participants, *location, *seconds);
                for &p in participants {
                    if let Some(&agent_id) = ctx.agent_ids.get(p as usize) {
                        batch.participants.insert(
                            (*conversation as i64, agent_id),
                            ParticipantRow {
                                world_id: ctx.world_id,
                                conversation_id: *conversation as i64,
                                agent_id,
                                joined: ts(*seconds),
                                left: None,
                            },
                        );
                    }
                }
                batch
                    .conversations
                    .insert(*conversation as i64, row.clone());
                conversations.open.insert(*conversation, row);
            }
            WorldEvent::Line {
                conversation,
                turn,
                speaker,
                text,
            } => {
                let mut text: String = text.chars().take(MAX_MESSAGE).collect();
                if text.trim().is_empty() {
                    text = "…".into();
                }
                if !conversations.open.contains_key(conversation)
                    && !batch.conversations.contains_key(&(*conversation as i64))
                {
                    // a line of a conversation this process never saw begin
                    let row = conversation_row(ctx, *conversation, &[], None, *seconds);
                    conversations.open.insert(*conversation, row.clone());
                    batch.conversations.insert(*conversation as i64, row);
                }
                batch.messages.push(MessageRow {
                    world_id: ctx.world_id,
                    conversation_id: *conversation as i64,
                    seq: i32::try_from(*turn).unwrap_or(i32::MAX),
                    speaker_agent_id: ctx.agent_ids.get(*speaker as usize).copied(),
                    speaker_character_id: None,
                    text,
                    emotional_tone: None,
                    game_time: ts(*seconds),
                });
            }
            WorldEvent::ConversationEnded {
                conversation,
                participants,
                ..
            } => {
                let mut row = conversations.open.remove(conversation).unwrap_or_else(|| {
                    conversation_row(ctx, *conversation, participants, None, *seconds)
                });
                row.ended = Some(ts(*seconds).max(row.started));
                let started = row.started;
                batch.conversations.insert(*conversation as i64, row);
                for &p in participants {
                    if let Some(&agent_id) = ctx.agent_ids.get(p as usize) {
                        let key = (*conversation as i64, agent_id);
                        let joined = batch.participants.get(&key).map_or(started, |r| r.joined);
                        batch.participants.insert(
                            key,
                            ParticipantRow {
                                world_id: ctx.world_id,
                                conversation_id: *conversation as i64,
                                agent_id,
                                joined,
                                left: Some(ts(*seconds).max(joined)),
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let mut ticks = frame.ticks_us.clone();
    ticks.sort_unstable();
    let pick = |q: f64| -> f32 {
        if ticks.is_empty() {
            return 0.0;
        }
        let i = ((ticks.len() - 1) as f64 * q).round() as usize;
        ticks[i] as f32 / 1000.0
    };
    batch.checkpoint = Some(Checkpoint {
        world_id: ctx.world_id,
        tick,
        game_time: ts(frame.snapshot.game_seconds),
        state: Some(frame.snapshot.world.clone()),
    });
    batch.metrics = Some(SimMetricsRow {
        agents: i32::try_from(ctx.agent_ids.len()).unwrap_or(i32::MAX),
        tick_ms_p50: pick(0.5),
        tick_ms_p99: pick(0.99),
        tick_ms_max: pick(1.0),
        flush_ms: Some(last_flush_ms as f32),
        rows_flushed: i32::try_from(batch.state_rows() + batch.appended_rows()).unwrap_or(i32::MAX),
        queue_depth: 0,
    });
    batch
}

fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

/// A relationship kind as the column takes it (`^[a-z][a-z_-]{0,39}$`).
fn relationship_kind(kind: &str) -> String {
    let k: String = kind
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if k.starts_with(|c: char| c.is_ascii_lowercase()) {
        k
    } else {
        "acquaintance".into()
    }
}

fn state_row(
    ctx: &Context,
    def: &AgentDef,
    agent_id: i64,
    a: &AgentSim,
    tick: i64,
    sim: Vec<u8>,
) -> AgentStateRow {
    let target_location = match a.plan.step() {
        Some(Step::GoTo { location, .. }) => location_name(ctx, Some(*location)),
        _ => None,
    };
    AgentStateRow {
        agent_id,
        world_id: ctx.world_id,
        x: finite(a.position.x),
        y: finite(a.position.y),
        facing: a.facing.as_str().into(),
        action: activity_label(def, &a.activity).to_owned(),
        action_started_at: Some(ts(a.activity.since * 60)),
        action_target: target_location,
        target: a.movement.goal.map(|t| (f32::from(t.x), f32::from(t.y))),
        location_name: location_name(ctx, Some(a.activity.location)),
        energy: finite(a.needs.energy).clamp(0.0, 1.0),
        mood: finite(a.needs.mood).clamp(-1.0, 1.0),
        emotional_state: json!({ "mood": finite(a.needs.mood), "arousal": finite(a.needs.arousal) }),
        physical_state: json!({ "sleeping": a.needs.sleeping, "energy": finite(a.needs.energy) }),
        cognitive_load: finite(a.needs.cognitive_load).clamp(0.0, 1.0),
        updated_tick: tick,
        sim: Some(sim),
    }
}

fn plan_row(ctx: &Context, agent_id: i64, a: &AgentSim, tick: i64) -> PlanRow {
    let p = &a.plan;
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| match s {
            Step::GoTo { location, tile } => json!({
                "kind": "go_to",
                "location": location_name(ctx, Some(*location)),
                "x": tile.x,
                "y": tile.y,
            }),
            Step::Perform { until } => json!({
                "kind": "perform",
                "until": ts(until * 60).format("%Y-%m-%d %H:%M").to_string(),
            }),
            Step::Do { until, action } => json!({
                "kind": "do",
                "action": action,
                "until": ts(until * 60).format("%Y-%m-%d %H:%M").to_string(),
            }),
        })
        .collect();
    let mut goal: String = p.goal.chars().take(1000).collect();
    if goal.trim().is_empty() {
        goal = ActivityLabel::Idle.as_str().into();
    }
    PlanRow {
        world_id: ctx.world_id,
        agent_id,
        // plan ids start at 0 in the world; the column's start at 1
        id: p.id as i64 + 1,
        goal,
        steps: Value::Array(steps),
        current_step: i32::try_from(p.current).unwrap_or(i32::MAX),
        status: match p.status {
            PlanStatus::Active => "active",
            PlanStatus::Done => "done",
            PlanStatus::Abandoned => "abandoned",
        }
        .into(),
        priority: i16::from(p.priority.clamp(1, 10)),
        deadline: Some(ts(p.deadline * 60)),
        created_game_time: ts(a.activity.since * 60),
        updated_tick: tick,
    }
}

/// What the database holds of a world, as the simulation resumes from it.
pub fn saved_from_db(saved: hearth_db::writer::SavedWorld) -> hearth_world::Saved {
    let mut relationships: HashMap<String, Vec<(String, Relationship)>> = HashMap::new();
    for r in saved.relationships {
        relationships.entry(r.agent).or_default().push((
            r.target,
            Relationship {
                target: 0,
                kind: r.kind,
                affection: r.affection,
                trust: r.trust,
                interactions: u32::try_from(r.interaction_count).unwrap_or(0),
                last_interaction: r
                    .last_interaction
                    .map(|t| game_time::from_timestamp(t) / 60),
            },
        ));
    }
    hearth_world::Saved {
        world: saved.checkpoint.state.unwrap_or_default(),
        agents: saved.agents.into_iter().collect(),
        relationships,
    }
}

/// An agent file as the `agents` row it is registered as.
pub fn agent_row(def: &AgentDef) -> hearth_db::agents::AgentRow {
    let f = &def.file;
    hearth_db::agents::AgentRow {
        slug: f.id.clone(),
        name: f.name.clone(),
        definition: serde_json::to_value(f).unwrap_or_default(),
        age: i32::try_from(f.age).ok(),
        constitution: f.constitution.clone(),
        background: f.background.clone(),
        traits: serde_json::to_value(&f.traits).unwrap_or_default(),
        likes: f.likes.clone(),
        dislikes: f.dislikes.clone(),
        primary_goal: Some(f.goals.primary.clone()),
        secondary_goals: f.goals.secondary.clone(),
        home_location: Some(f.home.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::synthetic;
    use hearth_world::{Sim, SimConfig};

    fn context(sim: &Sim) -> Context {
        Context {
            world_id: 1,
            agent_ids: Arc::new((0..sim.agent_count() as i64).map(|i| 100 + i).collect()),
            defs: sim.defs().clone(),
            map: sim.map().clone(),
        }
    }

    #[test]
    fn frames_become_rows_with_a_checkpoint() {
        let mut sim = Sim::new(synthetic::world(40, 5), SimConfig::default());
        sim.persist_every(10);
        let ctx = context(&sim);
        let mut convs = Conversations::default();
        let mut events = Vec::new();
        let mut frames = Vec::new();
        for _ in 0..3000 {
            sim.step();
            let seconds = sim.clock().seconds;
            events.extend(sim.drain_events().into_iter().map(|(_, e)| (seconds, e)));
            if let Some(s) = sim.take_snapshot() {
                frames.push(Frame {
                    snapshot: s,
                    events: std::mem::take(&mut events),
                    ticks_us: vec![100, 200, 300],
                    content: None,
                });
            }
        }
        assert_eq!(frames.len(), 301, "the first, then one every 10 ticks");
        assert!(frames[0].snapshot.full);
        assert_eq!(frames[0].snapshot.agents.len(), 40);
        let mut lines = 0;
        let mut seen_conversation = false;
        for f in &frames {
            let batch = to_batch(&ctx, f, &mut convs, 1.0);
            let cp = batch.checkpoint.as_ref().expect("checkpoint");
            assert_eq!(cp.tick, f.snapshot.tick as i64);
            assert_eq!(batch.agent_states.len(), f.snapshot.agents.len());
            for m in &batch.messages {
                assert!(
                    batch.conversations.contains_key(&m.conversation_id)
                        || convs.open.contains_key(&(m.conversation_id as u64))
                        || seen_conversation
                );
            }
            seen_conversation |= !batch.conversations.is_empty();
            lines += batch.messages.len();
            for s in batch.agent_states.values() {
                assert!((0.0..=1.0).contains(&s.energy));
                assert!(s.sim.is_some());
            }
            for p in batch.plans.values() {
                assert!(p.id > 0 && (1..=10).contains(&p.priority));
            }
        }
        let after = events
            .iter()
            .filter(|(_, e)| matches!(e, WorldEvent::Line { .. }))
            .count();
        assert_eq!(
            (lines + after) as u64,
            sim.stats().lines,
            "every line becomes a message"
        );
    }

    #[test]
    fn relationship_kinds_fit_the_column() {
        assert_eq!(relationship_kind("friend"), "friend");
        assert_eq!(relationship_kind("Old Friend"), "old_friend");
        assert_eq!(relationship_kind("42"), "acquaintance");
        assert_eq!(relationship_kind(""), "acquaintance");
    }
}
