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
use super::events::{LineWanted, Outbox, WorldEvent};
use super::mind::{AgentView, LineContext};
use super::perception::{SpatialGrid, TalkCandidates};
use super::relationship::{RelationDelta, RelationDeltas};
use super::rng::{Purpose, WorldRng};
use super::schedule::{EXHAUSTED, activity_label};
use super::{AgentIndex, Defs, MapRes, MindRes, SimConfig, Stats};
use hearth_content::LocationId;

/// A conversation under way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Lines said by agents' models: which agents speak through one, the lines
/// asked for (each with the tick after which the rule-based mind speaks
/// instead), the answers not yet used, and each conversation's recent lines
/// for the next prompt. Not saved with checkpoints: after a restart the
/// next line is simply asked for again.
#[derive(Debug, Default, Resource)]
pub struct ModelLines {
    /// By agent index: whether its lines come from a model.
    pub thinking: Vec<bool>,
    /// Ticks a conversation waits for a line before the rule-based mind
    /// speaks (the model's timeout and a margin).
    pub wait_ticks: u64,
    /// By conversation: (turn, speaker, tick after which to stop waiting).
    pending: std::collections::HashMap<u64, (u32, u32, u64)>,
    /// By conversation: (turn, speaker, text, end).
    ready: std::collections::HashMap<u64, (u32, u32, Option<String>, bool)>,
    transcripts: std::collections::HashMap<u64, Vec<(u32, String)>>,
    /// Lines asked of models, answered by them, and said by the rule-based
    /// mind because no usable answer came in time.
    pub asked: u64,
    pub answered: u64,
    pub fell_back: u64,
}

/// Lines of a conversation kept for the next prompt.
const TRANSCRIPT_LINES: usize = 12;

impl ModelLines {
    /// An answer from a model (or its failure, `text: None`).
    pub fn answer(
        &mut self,
        conversation: u64,
        turn: u32,
        speaker: u32,
        text: Option<String>,
        end: bool,
    ) {
        if self
            .pending
            .get(&conversation)
            .is_some_and(|&(t, s, _)| t == turn && s == speaker)
        {
            self.ready.insert(conversation, (turn, speaker, text, end));
        }
    }

    fn thinks(&self, agent: u32) -> bool {
        self.thinking.get(agent as usize).copied().unwrap_or(false)
    }

    fn said(&mut self, conversation: u64, speaker: u32, text: &str) {
        let t = self.transcripts.entry(conversation).or_default();
        if t.len() >= TRANSCRIPT_LINES {
            t.remove(0);
        }
        t.push((speaker, text.to_owned()));
    }

    fn forget(&mut self, conversation: u64) {
        self.pending.remove(&conversation);
        self.ready.remove(&conversation);
        self.transcripts.remove(&conversation);
    }
}

/// What to do about a conversation's due line when models speak.
enum Due {
    /// Ask the model and wait.
    Ask,
    Wait,
    /// Say this (the model's line, or `None`: the rule-based mind's), and
    /// whether the model wants to end here.
    Say(Option<String>, bool),
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
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
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
    let mut joiners: Vec<(f32, u32)> = Vec::new();
    let mut views: Vec<AgentView<'_>> = Vec::new();
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
        joiners.clear();
        grid.near(ax, ay, config.talk_radius, |s, d| {
            if s.free && s.idx != a && s.idx != b {
                joiners.push((d, s.idx));
            }
        });
        joiners.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for &(_, j) in &joiners {
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
        views.clear();
        views.extend(participants.iter().filter_map(|p| {
            agents
                .get(index.0[*p as usize])
                .ok()
                .map(|d| view(&defs, *p, d.2, d.3))
        }));
        let mut stream = rng.stream(a, clock.tick, Purpose::Turns);
        let max_turns = mind
            .0
            .max_turns(&views, &mut stream)
            .clamp(2, config.max_turns.max(2));
        conversations.next_id += 1;
        let id = conversations.next_id;
        let location = grid.location_at(&map.0, da.1.tile());
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
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
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
    mut lines: ResMut<ModelLines>,
    mut agents: Query<AgentData<'_>>,
) {
    let now = clock.minutes();
    let mut ended: Vec<usize> = Vec::new();
    // buffers for every line of the tick (no allocation per line)
    let mut views: Vec<AgentView<'_>> = Vec::new();
    let mut listeners: Vec<AgentView<'_>> = Vec::new();
    for (ci, conv) in conversations.active.iter_mut().enumerate() {
        if clock.tick < conv.next_line {
            continue;
        }
        let n = conv.participants.len();
        let speaker = conv.participants[conv.turns as usize % n];
        views.clear();
        views.extend(conv.participants.iter().filter_map(|p| {
            agents
                .get(index.0[*p as usize])
                .ok()
                .map(|d| view(&defs, *p, d.2, d.3))
        }));
        if views.len() != n {
            ended.push(ci);
            continue;
        }
        let speaker_view = views[conv.turns as usize % n];
        listeners.clear();
        listeners.extend(views.iter().filter(|v| v.idx != speaker).copied());
        let relationship = agents
            .get(index.0[speaker as usize])
            .ok()
            .and_then(|d| d.5.get(listeners[0].idx));
        let context = LineContext {
            turn: conv.turns,
            max_turns: conv.max_turns,
            relationship,
            minute_of_day: clock.minute_of_day(),
            location_name: conv.location.map(|l| map.0.location(l).name.as_str()),
        };
        let due = if lines.thinks(speaker) {
            match (lines.ready.remove(&conv.id), lines.pending.get(&conv.id)) {
                (Some((turn, who, text, end)), _) if turn == conv.turns && who == speaker => {
                    lines.pending.remove(&conv.id);
                    if text.is_some() {
                        lines.answered += 1;
                    } else {
                        lines.fell_back += 1;
                    }
                    Due::Say(text, end)
                }
                (_, Some(&(turn, who, until))) if turn == conv.turns && who == speaker => {
                    if clock.tick < until {
                        Due::Wait
                    } else {
                        lines.pending.remove(&conv.id);
                        lines.fell_back += 1;
                        Due::Say(None, false)
                    }
                }
                _ => Due::Ask,
            }
        } else {
            Due::Say(None, false)
        };
        let (model_text, model_end) = match due {
            Due::Wait => continue,
            Due::Ask => {
                lines.asked += 1;
                let until = clock.tick + lines.wait_ticks.max(1);
                lines.pending.insert(conv.id, (conv.turns, speaker, until));
                let activity = agents
                    .get(index.0[speaker as usize])
                    .map(|d| activity_label(&defs.agents[speaker as usize], d.2).to_owned())
                    .unwrap_or_default();
                outbox.push(
                    clock.tick,
                    WorldEvent::LineWanted(Box::new(LineWanted {
                        conversation: conv.id,
                        turn: conv.turns,
                        max_turns: conv.max_turns,
                        speaker,
                        listeners: listeners.iter().map(|l| l.idx).collect(),
                        transcript: lines.transcripts.get(&conv.id).cloned().unwrap_or_default(),
                        location: context.location_name.map(str::to_owned),
                        activity,
                        relationship: relationship.map(|r| (r.affection, r.trust)),
                    })),
                );
                continue;
            }
            Due::Say(text, end) => (text, end),
        };
        let mut stream = rng.stream(speaker, clock.tick, Purpose::Line);
        let text = match model_text {
            Some(t) => t,
            None => mind
                .0
                .line(&speaker_view, &listeners, &context, &mut stream),
        };
        if !lines.thinking.is_empty() {
            lines.said(conv.id, speaker, &text);
        }
        stats.lines += 1;
        outbox.push(
            clock.tick,
            WorldEvent::Line {
                conversation: conv.id,
                turn: conv.turns,
                speaker,
                text,
            },
        );
        for listener in &listeners {
            let rel = agents
                .get(index.0[listener.idx as usize])
                .ok()
                .and_then(|d| d.5.get(speaker));
            let (affection, trust) = mind.0.reaction(listener, &speaker_view, rel, &mut stream);
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
        // a model may end it, once both sides have spoken
        let model_ends = model_end && conv.turns >= 2;
        if conv.turns >= conv.max_turns || someone_spent || model_ends {
            ended.push(ci);
        }
    }
    for ci in ended.into_iter().rev() {
        let conv = conversations.active.swap_remove(ci);
        lines.forget(conv.id);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::components::{Plan, Relationship};
    use crate::mind::{Mind, PlanRequest, RuleMind};
    use crate::perception::index_positions;
    use crate::testkit::{self, events, tick};
    use hearth_content::{AgentDef, WorldMap};

    /// The rule-based mind with a fixed chance to talk and a fixed length.
    #[derive(Debug)]
    struct FixedMind {
        chance: f32,
        turns: u32,
    }

    impl Mind for FixedMind {
        fn plan(
            &self,
            agent: &AgentView<'_>,
            request: &PlanRequest<'_>,
            map: &WorldMap,
            rng: &mut ChaCha8Rng,
        ) -> Plan {
            RuleMind.plan(agent, request, map, rng)
        }

        fn talk_chance(
            &self,
            _a: &AgentView<'_>,
            _b: &AgentView<'_>,
            _relationship: Option<&Relationship>,
        ) -> f32 {
            self.chance
        }

        fn max_turns(&self, _participants: &[AgentView<'_>], _rng: &mut ChaCha8Rng) -> u32 {
            self.turns
        }

        fn line(
            &self,
            speaker: &AgentView<'_>,
            listeners: &[AgentView<'_>],
            context: &LineContext<'_>,
            rng: &mut ChaCha8Rng,
        ) -> String {
            RuleMind.line(speaker, listeners, context, rng)
        }

        fn reaction(
            &self,
            listener: &AgentView<'_>,
            speaker: &AgentView<'_>,
            relationship: Option<&Relationship>,
            rng: &mut ChaCha8Rng,
        ) -> (f32, f32) {
            RuleMind.reaction(listener, speaker, relationship, rng)
        }
    }

    fn def(id: &str) -> AgentDef {
        let mut d = testkit::def(id, "Talk to everyone", testkit::working(&["bake"]));
        d.file.likes = vec!["rye bread".into()];
        d
    }

    /// A world at 07:00 with a free agent at each position.
    fn setup(mind: FixedMind, config: SimConfig, at: &[(f32, f32)]) -> (World, Vec<Entity>) {
        let mut world = World::new();
        let clock = GameClock::new(config.tick_rate, config.game_minutes_per_second, 7 * 60);
        let now = clock.minutes();
        world.insert_resource(clock);
        world.insert_resource(WorldRng::new(9));
        world.insert_resource(Defs {
            agents: Arc::new((0..at.len()).map(|i| def(&format!("a{i}"))).collect()),
        });
        world.insert_resource(MapRes(Arc::new(WorldMap::generate(40, 30, 6, 1))));
        world.insert_resource(MindRes(Arc::new(mind)));
        world.insert_resource(config);
        world.insert_resource(SpatialGrid::default());
        world.insert_resource(TalkCandidates::default());
        world.insert_resource(Conversations::default());
        world.insert_resource(ModelLines::default());
        world.insert_resource(RelationDeltas::default());
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        let agents: Vec<Entity> = at
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                world
                    .spawn(testkit::agent(
                        i as u32,
                        x,
                        y,
                        testkit::at_work(now),
                        Needs::default(),
                    ))
                    .id()
            })
            .collect();
        world.insert_resource(AgentIndex(agents.clone()));
        (world, agents)
    }

    fn chance(chance: f32) -> FixedMind {
        FixedMind { chance, turns: 6 }
    }

    /// `index_positions` (for joiners) then `start_conversations`.
    fn starting() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems((index_positions, start_conversations).chain());
        schedule
    }

    fn advancing() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems(advance_conversations);
        schedule
    }

    fn candidates(world: &mut World, pairs: &[(u32, u32)]) {
        world.resource_mut::<TalkCandidates>().0 =
            pairs.iter().map(|&(a, b)| (a, b, 2.0)).collect();
    }

    fn talk(world: &World, e: Entity) -> Talk {
        world.get::<Talk>(e).expect("talk").clone()
    }

    fn in_conversation(world: &World, agents: &[Entity]) -> Vec<Option<u64>> {
        agents
            .iter()
            .map(|e| talk(world, *e).conversation)
            .collect()
    }

    #[test]
    fn two_willing_agents_close_together_start_talking() {
        let (mut world, agents) = setup(
            chance(1.0),
            SimConfig::default(),
            &[(10.0, 7.0), (12.0, 7.0)],
        );
        candidates(&mut world, &[(0, 1)]);
        let mut schedule = starting();
        schedule.run(&mut world);
        assert_eq!(in_conversation(&world, &agents), vec![Some(1), Some(1)]);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::ConversationStarted {
                conversation: 1,
                participants: vec![0, 1],
                location: None,
            }]
        );
        let active = world.resource::<Conversations>().active.clone();
        assert_eq!(active.len(), 1);
        let c = &active[0];
        assert_eq!((c.id, c.turns, c.max_turns), (1, 0, 6));
        assert_eq!(c.participants, vec![0, 1]);
        assert_eq!(c.next_line, 1, "the first line comes on the next tick");
        assert_eq!(c.started, 7 * 60);
        assert_eq!(world.resource::<Stats>().conversations_started, 1);
        assert_eq!(world.resource::<Stats>().group_conversations, 0);
        // already talking: the same candidates start nothing more
        tick(&mut world, &mut schedule);
        assert_eq!(world.resource::<Conversations>().active.len(), 1);
        assert!(events(&mut world).is_empty());
    }

    #[test]
    fn unwilling_agents_never_talk() {
        let (mut world, agents) = setup(
            chance(0.0),
            SimConfig::default(),
            &[(10.0, 7.0), (11.0, 7.0)],
        );
        let mut schedule = starting();
        for _ in 0..200 {
            candidates(&mut world, &[(0, 1)]);
            tick(&mut world, &mut schedule);
        }
        assert_eq!(in_conversation(&world, &agents), vec![None, None]);
        assert!(world.resource::<Conversations>().active.is_empty());
        assert!(events(&mut world).is_empty());
    }

    #[test]
    fn free_agents_within_reach_join_the_conversation() {
        let (mut world, agents) = setup(
            chance(1.0),
            SimConfig::default(),
            &[
                (10.0, 7.0),
                (12.0, 7.0),
                (9.0, 7.0),  // 2: free, 1 tile from 0: joins
                (8.0, 7.0),  // 3: asleep, 2 tiles from 0
                (10.0, 8.0), // 4: already talking, 1 tile from 0
                (14.0, 7.0), // 5: 2 tiles from 1 but 4 from 0
                (10.0, 9.0), // 6: free, 2 tiles from 0: joins after 2
            ],
        );
        world.get_mut::<Needs>(agents[3]).expect("needs").sleeping = true;
        world.get_mut::<Talk>(agents[4]).expect("talk").conversation = Some(40);
        world.resource_mut::<Conversations>().next_id = 40;
        candidates(&mut world, &[(0, 1)]);
        starting().run(&mut world);
        let active = world.resource::<Conversations>().active.clone();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].participants, vec![0, 1, 2, 6]);
        assert_eq!(active[0].id, 41);
        assert_eq!(
            in_conversation(&world, &agents),
            vec![Some(41), Some(41), Some(41), None, Some(40), None, Some(41)]
        );
        assert_eq!(world.resource::<Stats>().group_conversations, 1);
    }

    #[test]
    fn groups_are_capped_nearest_first() {
        let (mut world, _) = setup(
            chance(1.0),
            SimConfig {
                max_group: 3,
                ..SimConfig::default()
            },
            // 3 is nearer to 0 than 2 is, but comes later in the grid's order
            &[(10.0, 7.0), (12.0, 7.0), (10.0, 5.0), (10.0, 8.0)],
        );
        candidates(&mut world, &[(0, 1)]);
        starting().run(&mut world);
        let active = &world.resource::<Conversations>().active;
        assert_eq!(active[0].participants, vec![0, 1, 3]);
    }

    #[test]
    fn a_max_turns_setting_below_two_does_not_panic() {
        // regression: `clamp(2, max_turns)` panicked when max_turns < 2
        for max_turns in [0, 1] {
            let (mut world, _) = setup(
                FixedMind {
                    chance: 1.0,
                    turns: 5,
                },
                SimConfig {
                    max_turns,
                    ..SimConfig::default()
                },
                &[(10.0, 7.0), (11.0, 7.0)],
            );
            candidates(&mut world, &[(0, 1)]);
            starting().run(&mut world);
            assert_eq!(world.resource::<Conversations>().active[0].max_turns, 2);
        }
    }

    #[test]
    fn the_minds_length_is_clamped() {
        for (turns, expected) in [(0, 2), (5, 5), (100, 12)] {
            let (mut world, _) = setup(
                FixedMind { chance: 1.0, turns },
                SimConfig::default(),
                &[(10.0, 7.0), (11.0, 7.0)],
            );
            candidates(&mut world, &[(0, 1)]);
            starting().run(&mut world);
            assert_eq!(
                world.resource::<Conversations>().active[0].max_turns,
                expected
            );
        }
    }

    #[test]
    fn sleepers_and_pairs_cooling_down_do_not_start() {
        let at = [(10.0, 7.0), (11.0, 7.0)];
        let (mut world, agents) = setup(chance(1.0), SimConfig::default(), &at);
        world.get_mut::<Needs>(agents[1]).expect("needs").sleeping = true;
        candidates(&mut world, &[(0, 1)]);
        starting().run(&mut world);
        assert!(world.resource::<Conversations>().active.is_empty());

        let now = 7 * 60;
        // either side's cooldown holds the pair back until it is over
        for side in 0..2 {
            let (mut world, agents) = setup(chance(1.0), SimConfig::default(), &at);
            world
                .get_mut::<Talk>(agents[side])
                .expect("talk")
                .cooldowns
                .push((1 - side as u32, now + 2));
            let mut schedule = starting();
            candidates(&mut world, &[(0, 1)]);
            schedule.run(&mut world);
            assert!(
                world.resource::<Conversations>().active.is_empty(),
                "side {side}"
            );
            world.resource_mut::<GameClock>().seconds = (now + 2) * 60;
            schedule.run(&mut world);
            assert_eq!(
                world.resource::<Conversations>().active.len(),
                1,
                "side {side}"
            );
            assert_eq!(in_conversation(&world, &agents), vec![Some(1), Some(1)]);
        }
        // a cooldown with someone else does not matter
        let (mut world, agents) = setup(chance(1.0), SimConfig::default(), &at);
        world
            .get_mut::<Talk>(agents[0])
            .expect("talk")
            .cooldowns
            .push((7, now + 60));
        candidates(&mut world, &[(0, 1)]);
        starting().run(&mut world);
        assert_eq!(world.resource::<Conversations>().active.len(), 1);
    }

    /// A world where agents `0..n` are in conversation 7 of `max_turns`,
    /// whose first line is due on tick 1.
    fn talking(n: usize, max_turns: u32) -> (World, Vec<Entity>) {
        let at: Vec<(f32, f32)> = (0..n).map(|i| (10.0 + i as f32, 7.0)).collect();
        let (mut world, agents) = setup(chance(0.0), SimConfig::default(), &at);
        for e in &agents {
            world.get_mut::<Talk>(*e).expect("talk").conversation = Some(7);
        }
        world
            .resource_mut::<Conversations>()
            .active
            .push(Conversation {
                id: 7,
                participants: (0..n as u32).collect(),
                location: Some(2),
                turns: 0,
                max_turns,
                next_line: 1,
                started: 7 * 60,
            });
        world.resource_mut::<Conversations>().next_id = 7;
        (world, agents)
    }

    /// Ticks until tick `last`, collecting (tick, speaker) of each line and
    /// the events in order.
    fn run_until(world: &mut World, last: u64) -> (Vec<(u64, u32)>, Vec<WorldEvent>) {
        let mut schedule = advancing();
        let mut lines = Vec::new();
        let mut all = Vec::new();
        while world.resource::<GameClock>().tick < last {
            tick(world, &mut schedule);
            let t = world.resource::<GameClock>().tick;
            for e in events(world) {
                if let WorldEvent::Line { speaker, .. } = e {
                    lines.push((t, speaker));
                }
                all.push(e);
            }
        }
        (lines, all)
    }

    #[test]
    fn lines_from_models_are_asked_for_waited_for_and_replaced_when_late() {
        let (mut world, _agents) = talking(2, 6);
        {
            let mut lines = world.resource_mut::<ModelLines>();
            lines.thinking = vec![true, true];
            lines.wait_ticks = 5;
        }
        // tick 1: the first line is asked for, nothing is said
        let (said, events) = run_until(&mut world, 1);
        assert!(said.is_empty(), "{events:?}");
        let Some(WorldEvent::LineWanted(w)) = events.first() else {
            panic!("a line wanted: {events:?}");
        };
        assert_eq!(
            (w.conversation, w.turn, w.speaker, w.listeners.clone()),
            (7, 0, 0, vec![1])
        );
        assert!(w.transcript.is_empty());
        // waiting: no line, no second request
        let (said, events) = run_until(&mut world, 3);
        assert!(said.is_empty() && events.is_empty(), "{events:?}");
        // the model's answer is said on the next tick
        world.resource_mut::<ModelLines>().answer(
            7,
            0,
            0,
            Some("The oven is hot today.".into()),
            false,
        );
        let (said, events) = run_until(&mut world, 4);
        assert_eq!(said, vec![(4, 0)]);
        assert!(
            matches!(&events[0], WorldEvent::Line { text, .. } if text == "The oven is hot today.")
        );
        // the next speaker's model never answers: after 5 ticks of waiting
        // the rule-based mind speaks
        let (said, events) = run_until(&mut world, 14);
        assert!(said.is_empty());
        let Some(WorldEvent::LineWanted(w)) = events.first() else {
            panic!("the second line wanted: {events:?}");
        };
        assert_eq!((w.turn, w.speaker), (1, 1));
        assert_eq!(w.transcript, vec![(0, "The oven is hot today.".to_owned())]);
        let (said, _) = run_until(&mut world, 20);
        assert_eq!(said, vec![(19, 1)], "said by rule after the wait");
        // a stale answer (an earlier turn) is ignored
        world
            .resource_mut::<ModelLines>()
            .answer(7, 1, 1, Some("too late".into()), false);
        let lines = world.resource::<ModelLines>();
        assert_eq!((lines.asked, lines.answered, lines.fell_back), (2, 1, 1));
    }

    #[test]
    fn a_model_may_end_the_conversation_once_both_have_spoken() {
        let (mut world, _agents) = talking(2, 10);
        {
            let mut lines = world.resource_mut::<ModelLines>();
            lines.thinking = vec![true, true];
            lines.wait_ticks = 50;
        }
        let mut ended_at = None;
        for turn in 0..3u32 {
            let next = world.resource::<GameClock>().tick + 1;
            run_until(&mut world, next);
            let speaker = turn % 2;
            world.resource_mut::<ModelLines>().answer(
                7,
                turn,
                speaker,
                Some(format!("line {turn}")),
                true,
            );
            let t = world.resource::<GameClock>().tick;
            let (_, events) = run_until(&mut world, t + 12);
            if events
                .iter()
                .any(|e| matches!(e, WorldEvent::ConversationEnded { .. }))
            {
                ended_at = Some(turn);
                break;
            }
        }
        assert_eq!(
            ended_at,
            Some(1),
            "the first line cannot end it; the second does"
        );
    }

    #[test]
    fn lines_alternate_at_their_pace_and_the_conversation_ends() {
        let (mut world, agents) = talking(2, 4);
        let (lines, events) = run_until(&mut world, 30);
        assert_eq!(lines, vec![(1, 0), (11, 1), (21, 0)]);
        assert_eq!(in_conversation(&world, &agents), vec![Some(7), Some(7)]);
        // each line: the listener's reaction to the speaker
        let deltas = world.resource::<RelationDeltas>().0.clone();
        let pairs: Vec<(u32, u32, bool)> = deltas
            .iter()
            .map(|d| (d.from, d.to, d.interaction))
            .collect();
        assert_eq!(pairs, vec![(1, 0, false), (0, 1, false), (1, 0, false)]);
        assert!(
            deltas
                .iter()
                .all(|d| d.affection.abs() <= 3.0 && d.trust.abs() <= 1.5)
        );
        let Some(WorldEvent::Line {
            conversation, text, ..
        }) = events.first()
        else {
            panic!("a line first: {events:?}");
        };
        assert_eq!(*conversation, 7);
        assert!(text.starts_with("Good morning, a1."), "{text}");
        world.resource_mut::<RelationDeltas>().0.clear();

        // the fourth line is the last
        let (lines, events) = run_until(&mut world, 45);
        assert_eq!(lines, vec![(31, 1)]);
        assert!(text_of_last_line(&events).starts_with("Well, I should get back to bake"));
        assert_eq!(
            events.last(),
            Some(&WorldEvent::ConversationEnded {
                conversation: 7,
                participants: vec![0, 1],
                turns: 4,
            })
        );
        assert!(world.resource::<Conversations>().active.is_empty());
        let now = world.resource::<GameClock>().minutes();
        assert_eq!(now, 7 * 60 + 4, "tick 45 is in minute 4");
        let end = 7 * 60 + 3; // tick 31
        let cooldown = u64::from(SimConfig::default().pair_cooldown_minutes);
        for (i, e) in agents.iter().enumerate() {
            let t = talk(&world, *e);
            assert_eq!(t.conversation, None);
            assert_eq!(t.count, 1);
            assert_eq!(t.cooldowns, vec![(1 - i as u32, end + cooldown)]);
        }
        let pairs: Vec<(u32, u32, bool)> = world
            .resource::<RelationDeltas>()
            .0
            .iter()
            .map(|d| (d.from, d.to, d.interaction))
            .collect();
        assert_eq!(pairs, vec![(0, 1, false), (0, 1, true), (1, 0, true)]);
        let stats = world.resource::<Stats>();
        assert_eq!((stats.lines, stats.conversations_ended), (4, 1));
    }

    fn text_of_last_line(events: &[WorldEvent]) -> &str {
        events
            .iter()
            .rev()
            .find_map(|e| match e {
                WorldEvent::Line { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .expect("a line")
    }

    #[test]
    fn a_group_takes_turns_and_every_pair_counts_the_interaction() {
        let (mut world, agents) = talking(3, 5);
        let (lines, events) = run_until(&mut world, 60);
        assert_eq!(lines, vec![(1, 0), (11, 1), (21, 2), (31, 0), (41, 1)]);
        assert!(matches!(
            events.last(),
            Some(WorldEvent::ConversationEnded { turns: 5, .. })
        ));
        let deltas = world.resource::<RelationDeltas>().0.clone();
        let (reactions, interactions): (Vec<&RelationDelta>, Vec<&RelationDelta>) =
            deltas.iter().partition(|d| !d.interaction);
        // two listeners a line
        assert_eq!(reactions.len(), 10);
        assert!(reactions[..2].iter().all(|d| d.to == 0 && d.from != 0));
        let pairs: BTreeSet<(u32, u32)> = interactions.iter().map(|d| (d.from, d.to)).collect();
        let expected: BTreeSet<(u32, u32)> =
            [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)].into();
        assert_eq!(interactions.len(), 6);
        assert_eq!(pairs, expected);
        for e in &agents {
            let t = talk(&world, *e);
            assert_eq!((t.conversation, t.count, t.cooldowns.len()), (None, 1, 2));
        }
    }

    #[test]
    fn an_exhausted_participant_ends_the_conversation_after_the_line() {
        let (mut world, agents) = talking(2, 10);
        world.get_mut::<Needs>(agents[1]).expect("needs").energy = EXHAUSTED / 2.0;
        let (lines, events) = run_until(&mut world, 20);
        assert_eq!(lines, vec![(1, 0)]);
        assert!(events.contains(&WorldEvent::ConversationEnded {
            conversation: 7,
            participants: vec![0, 1],
            turns: 1,
        }));
        assert_eq!(in_conversation(&world, &agents), vec![None, None]);
    }

    #[test]
    fn ending_one_conversation_leaves_the_others_going() {
        let (mut world, agents) = talking(4, 1);
        // 0 and 1 say one line; 3 and 2 (speaking in that order) say three
        world.resource_mut::<Conversations>().active[0].participants = vec![0, 1];
        world
            .resource_mut::<Conversations>()
            .active
            .push(Conversation {
                id: 8,
                participants: vec![3, 2],
                location: None,
                turns: 0,
                max_turns: 3,
                next_line: 1,
                started: 7 * 60,
            });
        let more = &agents[2..];
        for e in more {
            world.get_mut::<Talk>(*e).expect("talk").conversation = Some(8);
        }
        let agents = &agents[..2];
        let (lines, _) = run_until(&mut world, 2);
        assert_eq!(lines, vec![(1, 0), (1, 3)]);
        let active = world.resource::<Conversations>().active.clone();
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].id, active[0].turns), (8, 1));
        assert_eq!(talk(&world, more[0]).conversation, Some(8));
        assert_eq!(in_conversation(&world, agents), vec![None, None]);
        let (lines, _) = run_until(&mut world, 30);
        assert_eq!(lines, vec![(11, 2), (21, 3)]);
        assert!(world.resource::<Conversations>().active.is_empty());
    }
}
