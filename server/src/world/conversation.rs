//! Conversations: agents who meet may start one (the mind's chance by
//! personality and relationship, a cooldown per pair, never while asleep),
//! others standing close join it (group conversations), lines follow at a
//! steady pace from the mind, and it ends after the mind's number of turns.
//! Every start, line and end is an event; how each line lands is handed to
//! the relationship system as deltas. Touches `Talk`, the conversation list,
//! relation deltas, stats and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Position, Relationships, Talk};
use super::events::{Outbox, WorldEvent};
use super::mind::{AgentView, LineContext};
use super::perception::{SpatialGrid, TalkCandidates};
use super::relationship::{RelationDelta, RelationDeltas};
use super::rng::{Purpose, WorldRng};
use super::schedule::{EXHAUSTED, activity_label};
use super::{AgentIndex, Defs, MapRes, MindRes, SimConfig, Stats};
use crate::content::LocationId;

/// A conversation under way.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: u64,
    /// Agents, in speaking order.
    pub participants: Vec<u32>,
    pub location: Option<LocationId>,
    pub turns: u32,
    pub max_turns: u32,
    /// Tick of the next line.
    pub next_line: u64,
    /// Game minute it began.
    pub started: u64,
}

#[derive(Debug, Default, Resource)]
pub struct Conversations {
    pub active: Vec<Conversation>,
    pub next_id: u64,
}

type AgentData<'a> = (
    &'a AgentIdx,
    &'a Position,
    &'a Activity,
    &'a Needs,
    &'a mut Talk,
    &'a Relationships,
);

fn view<'a>(defs: &'a Defs, idx: u32, activity: &Activity, needs: &Needs) -> AgentView<'a> {
    let def = &defs.agents[idx as usize];
    AgentView {
        idx,
        def,
        needs: *needs,
        activity: activity_label(def, activity),
        location: Some(activity.location),
    }
}

/// Starts conversations among this tick's candidates.
#[allow(clippy::too_many_arguments)]
pub fn start_conversations(
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    defs: Res<Defs>,
    map: Res<MapRes>,
    mind: Res<MindRes>,
    config: Res<SimConfig>,
    index: Res<AgentIndex>,
    grid: Res<SpatialGrid>,
    candidates: Res<TalkCandidates>,
    mut conversations: ResMut<Conversations>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<AgentData<'_>>,
) {
    let now = clock.minutes();
    for &(a, b, _) in &candidates.0 {
        let (Ok(da), Ok(db)) = (
            agents.get(index.0[a as usize]),
            agents.get(index.0[b as usize]),
        ) else {
            continue;
        };
        let (ta, tb) = (da.4, db.4);
        if ta.conversation.is_some()
            || tb.conversation.is_some()
            || ta.cooling(b, now)
            || tb.cooling(a, now)
        {
            continue;
        }
        if da.3.sleeping || db.3.sleeping {
            continue;
        }
        let va = view(&defs, a, da.2, da.3);
        let vb = view(&defs, b, db.2, db.3);
        let chance = mind.0.talk_chance(&va, &vb, da.5.get(b));
        // candidates come once per perception round: the chance is per round
        if rng.unit(
            a,
            clock.tick.wrapping_mul(1 << 20) ^ u64::from(b),
            Purpose::Talk,
        ) >= chance
        {
            continue;
        }
        // others standing close and free join: a group conversation
        let (ax, ay) = (da.1.x, da.1.y);
        let mut participants = vec![a, b];
        let mut joiners: Vec<(f32, u32)> = Vec::new();
        grid.near(ax, ay, config.talk_radius, |s, d| {
            if s.free && s.idx != a && s.idx != b {
                joiners.push((d, s.idx));
            }
        });
        joiners.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for (_, j) in joiners {
            if participants.len() >= config.max_group {
                break;
            }
            if let Ok(dj) = agents.get(index.0[j as usize])
                && dj.4.conversation.is_none()
                && !dj.3.sleeping
                && !dj.4.cooling(a, now)
            {
                participants.push(j);
            }
        }
        let views: Vec<AgentView<'_>> = participants
            .iter()
            .filter_map(|p| {
                agents
                    .get(index.0[*p as usize])
                    .ok()
                    .map(|d| view(&defs, *p, d.2, d.3))
            })
            .collect();
        let mut stream = rng.stream(a, clock.tick, Purpose::Turns);
        let max_turns = mind
            .0
            .max_turns(&views, &mut stream)
            .clamp(2, config.max_turns);
        conversations.next_id += 1;
        let id = conversations.next_id;
        let location = map.0.location_at(da.1.tile());
        for p in &participants {
            if let Ok(mut d) = agents.get_mut(index.0[*p as usize]) {
                d.4.conversation = Some(id);
            }
        }
        stats.conversations_started += 1;
        if participants.len() > 2 {
            stats.group_conversations += 1;
        }
        outbox.push(
            clock.tick,
            WorldEvent::ConversationStarted {
                conversation: id,
                participants: participants.clone(),
                location,
            },
        );
        conversations.active.push(Conversation {
            id,
            participants,
            location,
            turns: 0,
            max_turns,
            next_line: clock.tick + 1,
            started: now,
        });
    }
}

/// Says the next line of every conversation whose turn has come, and ends
/// those that are over.
#[allow(clippy::too_many_arguments)]
pub fn advance_conversations(
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    defs: Res<Defs>,
    map: Res<MapRes>,
    mind: Res<MindRes>,
    config: Res<SimConfig>,
    index: Res<AgentIndex>,
    mut conversations: ResMut<Conversations>,
    mut deltas: ResMut<RelationDeltas>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<AgentData<'_>>,
) {
    let now = clock.minutes();
    let mut ended: Vec<usize> = Vec::new();
    for (ci, conv) in conversations.active.iter_mut().enumerate() {
        if clock.tick < conv.next_line {
            continue;
        }
        let n = conv.participants.len();
        let speaker = conv.participants[conv.turns as usize % n];
        let views: Vec<AgentView<'_>> = conv
            .participants
            .iter()
            .filter_map(|p| {
                agents
                    .get(index.0[*p as usize])
                    .ok()
                    .map(|d| view(&defs, *p, d.2, d.3))
            })
            .collect();
        if views.len() != n {
            ended.push(ci);
            continue;
        }
        let speaker_view = views[conv.turns as usize % n];
        let listeners: Vec<AgentView<'_>> =
            views.iter().filter(|v| v.idx != speaker).copied().collect();
        let relationship = agents
            .get(index.0[speaker as usize])
            .ok()
            .and_then(|d| d.5.get(listeners[0].idx).cloned());
        let context = LineContext {
            turn: conv.turns,
            max_turns: conv.max_turns,
            relationship: relationship.as_ref(),
            minute_of_day: clock.minute_of_day(),
            location_name: conv.location.map(|l| map.0.location(l).name.as_str()),
        };
        let mut stream = rng.stream(speaker, clock.tick, Purpose::Line);
        let text = mind
            .0
            .line(&speaker_view, &listeners, &context, &mut stream);
        stats.lines += 1;
        outbox.push(
            clock.tick,
            WorldEvent::Line {
                conversation: conv.id,
                speaker,
                text,
            },
        );
        for listener in &listeners {
            let rel = agents
                .get(index.0[listener.idx as usize])
                .ok()
                .and_then(|d| d.5.get(speaker).cloned());
            let (affection, trust) =
                mind.0
                    .reaction(listener, &speaker_view, rel.as_ref(), &mut stream);
            deltas.0.push(RelationDelta {
                from: listener.idx,
                to: speaker,
                affection,
                trust,
                interaction: false,
            });
        }
        conv.turns += 1;
        conv.next_line = clock.tick + u64::from(config.ticks_per_line.max(1));
        let someone_spent = views
            .iter()
            .any(|v| v.needs.sleeping || v.needs.energy < EXHAUSTED);
        if conv.turns >= conv.max_turns || someone_spent {
            ended.push(ci);
        }
    }
    for ci in ended.into_iter().rev() {
        let conv = conversations.active.swap_remove(ci);
        for &p in &conv.participants {
            if let Ok(mut d) = agents.get_mut(index.0[p as usize]) {
                let talk = &mut d.4;
                talk.conversation = None;
                talk.count += 1;
                talk.cooldowns.retain(|(_, until)| *until > now);
                for &q in &conv.participants {
                    if q != p {
                        talk.cooldowns
                            .push((q, now + u64::from(config.pair_cooldown_minutes)));
                        deltas.0.push(RelationDelta {
                            from: p,
                            to: q,
                            affection: 0.0,
                            trust: 0.0,
                            interaction: true,
                        });
                    }
                }
            }
        }
        stats.conversations_ended += 1;
        outbox.push(
            clock.tick,
            WorldEvent::ConversationEnded {
                conversation: conv.id,
                participants: conv.participants,
                turns: conv.turns,
            },
        );
    }
    // keep speaking order stable regardless of swap_remove
    conversations.active.sort_by_key(|c| c.id);
}
