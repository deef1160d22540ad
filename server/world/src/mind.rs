//! How agents decide: the [`Mind`] trait, asked by the systems for plans,
//! whether to talk, what to say and how a line lands, and [`RuleMind`], the
//! deterministic rule-based mind that needs no network. Later minds (memory
//! retrieval, language models) implement the same trait. A mind is pure: it
//! may not block or do I/O (asynchronous minds answer through the inbox).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::components::{Needs, Plan, PlanStatus, Relationship, Step};
use super::schedule::ActivityLabel;
use hearth_content::map::WorldMap;
use hearth_content::{AgentDef, LocationId, Tile};

/// What a mind may know of an agent at a moment.
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    pub idx: u32,
    pub def: &'a AgentDef,
    pub needs: Needs,
    /// What the agent is doing ("bake bread", "free time").
    pub activity: &'a str,
    pub location: Option<LocationId>,
}

/// The activity a plan is made for.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub activity: &'a str,
    pub location: LocationId,
    /// An object of the location to use, by name.
    pub object: Option<&'a str>,
    pub priority: u8,
    /// Game minute the activity ends.
    pub until: u64,
    pub plan_id: u64,
}

/// Where a conversation stands, for choosing the next line.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    /// Lines said so far (0 for the opening line).
    pub turn: u32,
    pub max_turns: u32,
    /// The speaker's relationship with the first listener, if any.
    pub relationship: Option<&'a Relationship>,
    /// Minute of the day, for greetings.
    pub minute_of_day: u16,
    pub location_name: Option<&'a str>,
}

/// What kind of memory a record is (the `kind` column of `agent_memories`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    Observation,
    Conversation,
    Reflection,
    Plan,
    Metacognition,
}

impl MemoryKind {
    pub const ALL: [MemoryKind; 5] = [
        MemoryKind::Observation,
        MemoryKind::Conversation,
        MemoryKind::Reflection,
        MemoryKind::Plan,
        MemoryKind::Metacognition,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Observation => "observation",
            MemoryKind::Conversation => "conversation",
            MemoryKind::Reflection => "reflection",
            MemoryKind::Plan => "plan",
            MemoryKind::Metacognition => "metacognition",
        }
    }

    /// The kind named `name`, as [`MemoryKind::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What the importance of a new memory is rated from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImportanceInput {
    pub kind: MemoryKind,
    /// The agent's (affection −100..=100, trust 0..=100) toward whom the
    /// memory is about, if anyone.
    pub bond: Option<(f32, f32)>,
    /// 1 for something new today, falling toward 0 with each repeat.
    pub novelty: f32,
    /// How strongly it was felt, 0..=1.
    pub intensity: f32,
}

/// The rule-based importance scale (1–10): a base by kind (a reflection or a
/// look back weighs more than a glimpse), plus up to 3 for how close the
/// agent is to whom it is about, 2 for novelty and 3 for feeling.
pub fn rule_importance(input: &ImportanceInput) -> u8 {
    let base = match input.kind {
        MemoryKind::Observation => 1.5,
        MemoryKind::Plan => 2.0,
        MemoryKind::Conversation => 3.0,
        MemoryKind::Metacognition => 4.0,
        MemoryKind::Reflection => 5.0,
    };
    let bond = input.bond.map_or(0.0, |(affection, trust)| {
        (affection.abs() / 100.0 * 0.6 + trust.clamp(0.0, 100.0) / 100.0 * 0.4) * 3.0
    });
    let score =
        base + bond + input.novelty.clamp(0.0, 1.0) * 2.0 + input.intensity.clamp(0.0, 1.0) * 3.0;
    if score.is_finite() {
        score.round().clamp(1.0, 10.0) as u8
    } else {
        1
    }
}

/// What an agent answering a player's character knows.
#[derive(Debug, Clone, Copy)]
pub struct AnswerContext<'a> {
    /// The character's name.
    pub speaker: &'a str,
    /// What the character said.
    pub heard: &'a str,
    /// What the agent is doing.
    pub activity: &'a str,
    /// The agent's memories retrieved for what was said, best first.
    pub memories: &'a [String],
    /// Varies the wording (same seed, same answer).
    pub seed: u64,
}

/// The rule-based answer: a greeting when greeted, what the agent remembers
/// that bears on what was said (its best retrieved memory), what it is
/// doing, and a warmer word from an outgoing agent.
pub fn rule_answer(agent: &AgentDef, ctx: &AnswerContext<'_>) -> String {
    let heard = ctx.heard.to_lowercase();
    let words: Vec<&str> = heard
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let greeted = words.iter().any(|w| {
        [
            "hello",
            "hi",
            "hey",
            "morning",
            "evening",
            "greetings",
            "howdy",
        ]
        .contains(w)
    });
    let asked = heard.contains('?');
    let mut parts: Vec<String> = Vec::new();
    if greeted {
        parts.push(format!("Hello, {}!", ctx.speaker));
    }
    // the first sentence of the best memory, briefly
    let recalled = ctx.memories.iter().find(|m| !m.is_empty()).map(|m| {
        let first = m.split_inclusive(['.', '!', '?']).next().unwrap_or(m);
        let short: String = first.chars().take(160).collect();
        short.trim_end_matches(['.', ' ']).to_owned()
    });
    match (recalled, asked) {
        (Some(m), true) => parts.push(format!("As far as I know: {m}.")),
        (Some(m), false) => {
            let lead = ["That reminds me", "I was just thinking", "You know"];
            parts.push(format!("{}: {m}.", lead[(ctx.seed % 3) as usize]));
        }
        (None, true) => parts.push("I'm not sure, to be honest.".to_owned()),
        (None, false) => {}
    }
    if ActivityLabel::parse(ctx.activity) == ActivityLabel::FreeTime {
        parts.push("I have a little free time right now.".to_owned());
    } else {
        parts.push(format!(
            "Right now I'm busy: {}.",
            ctx.activity.trim_end_matches('.')
        ));
    }
    let p = &agent.file.traits.personality;
    if p.extraversion >= 0.6 {
        parts.push("Always good to have someone to talk to!".to_owned());
    } else if p.agreeableness < 0.35 {
        parts.push("Now, if you don't mind…".to_owned());
    }
    let text = parts.join(" ");
    text.chars().take(500).collect()
}

pub trait Mind: Send + Sync + 'static {
    /// What `agent` says back to a player's character; called off the
    /// world's thread with the agent's retrieved memories.
    fn answer(&self, agent: &AgentDef, context: &AnswerContext<'_>) -> String {
        rule_answer(agent, context)
    }

    /// How important a new memory is, 1 (mundane) ..= 10 (life-changing).
    /// The rule-based scale unless a mind knows better.
    fn importance(&self, input: &ImportanceInput) -> u8 {
        rule_importance(input)
    }

    /// The plan that carries out an activity.
    fn plan(
        &self,
        agent: &AgentView<'_>,
        request: &PlanRequest<'_>,
        map: &WorldMap,
        rng: &mut ChaCha8Rng,
    ) -> Plan;

    /// The chance, in `[0, 1]`, that `a` opens a conversation with `b` now.
    fn talk_chance(
        &self,
        a: &AgentView<'_>,
        b: &AgentView<'_>,
        relationship: Option<&Relationship>,
    ) -> f32;

    /// The most lines a conversation among `participants` will have.
    fn max_turns(&self, participants: &[AgentView<'_>], rng: &mut ChaCha8Rng) -> u32;

    /// The speaker's next line.
    fn line(
        &self,
        speaker: &AgentView<'_>,
        listeners: &[AgentView<'_>],
        context: &LineContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> String;

    /// How hearing a line from `speaker` changes `listener`'s affection and
    /// trust towards them: `(affection delta, trust delta)`.
    fn reaction(
        &self,
        listener: &AgentView<'_>,
        speaker: &AgentView<'_>,
        relationship: Option<&Relationship>,
        rng: &mut ChaCha8Rng,
    ) -> (f32, f32);
}

/// The deterministic, template-based mind: plans are "walk there, do it";
/// lines come from templates filled with the agent's traits, likes, goals,
/// activity and relationship.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleMind;

impl RuleMind {
    /// A tile of `location` to stand on: the named object's tile, else a
    /// walkable tile chosen at random.
    fn spot(
        map: &WorldMap,
        location: LocationId,
        object: Option<&str>,
        rng: &mut ChaCha8Rng,
    ) -> Tile {
        let loc = map.location(location);
        if let Some(obj) = object.and_then(|o| loc.object(o))
            && map.is_walkable(obj.tile)
        {
            return obj.tile;
        }
        if loc.walkable.is_empty() {
            return loc.rect.center();
        }
        loc.walkable[rng.random_range(0..loc.walkable.len())]
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [String]) -> Option<&'a str> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())].as_str())
}

fn first_name(def: &AgentDef) -> &str {
    def.file
        .name
        .split_whitespace()
        .next()
        .unwrap_or(&def.file.name)
}

impl Mind for RuleMind {
    fn plan(
        &self,
        _agent: &AgentView<'_>,
        request: &PlanRequest<'_>,
        map: &WorldMap,
        rng: &mut ChaCha8Rng,
    ) -> Plan {
        let tile = Self::spot(map, request.location, request.object, rng);
        Plan {
            id: request.plan_id,
            goal: request.activity.to_owned(),
            steps: vec![
                Step::GoTo {
                    location: request.location,
                    tile,
                },
                Step::Perform {
                    until: request.until,
                },
            ],
            current: 0,
            status: PlanStatus::Active,
            priority: request.priority,
            deadline: request.until,
        }
    }

    fn talk_chance(
        &self,
        a: &AgentView<'_>,
        b: &AgentView<'_>,
        relationship: Option<&Relationship>,
    ) -> f32 {
        if a.needs.sleeping || b.needs.sleeping {
            return 0.0;
        }
        let p = &a.def.file.traits.personality;
        // extraverts and the agreeable open conversations; friends more than strangers
        // per perception round (a game minute): an extravert among friends opens
        // a conversation within a few minutes, a shy stranger rarely does
        let base = 0.02 + 0.12 * p.extraversion + 0.04 * p.agreeableness;
        let warmth = relationship.map_or(0.0, |r| r.affection / 100.0);
        let tiredness = (0.4 - a.needs.energy).max(0.0);
        let load = a.needs.cognitive_load * 0.5;
        (base * (1.0 + 0.8 * warmth) - tiredness - load).clamp(0.0, 0.95)
    }

    fn max_turns(&self, participants: &[AgentView<'_>], rng: &mut ChaCha8Rng) -> u32 {
        let talkative: f32 = participants
            .iter()
            .map(|v| v.def.file.traits.personality.extraversion)
            .sum::<f32>()
            / participants.len().max(1) as f32;
        let n = participants.len() as u32;
        (2 + (talkative * 6.0) as u32 + rng.random_range(0..3)).max(n) + n / 2
    }

    fn line(
        &self,
        speaker: &AgentView<'_>,
        listeners: &[AgentView<'_>],
        context: &LineContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> String {
        let me = &speaker.def.file;
        let them = listeners.first().map_or("everyone", |l| first_name(l.def));
        let names = if listeners.len() > 1 {
            "everyone"
        } else {
            them
        };
        let fond = context.relationship.is_some_and(|r| r.affection > 30.0);
        let cold = context.relationship.is_some_and(|r| r.affection < -20.0);
        if context.turn == 0 {
            let greeting = match context.minute_of_day {
                0..=659 => "Good morning",
                660..=1019 => "Good afternoon",
                _ => "Good evening",
            };
            return if cold {
                format!("{names}.")
            } else if fond {
                format!("{greeting}, {names}! Always good to see you.")
            } else {
                let place = context
                    .location_name
                    .map(|l| format!(" at the {l}"))
                    .unwrap_or_default();
                format!("{greeting}, {names}. Busy day{place}?")
            };
        }
        if context.turn + 1 >= context.max_turns {
            return format!(
                "Well, I should get back to {}. See you around, {names}.",
                speaker.activity
            );
        }
        let agreeable = me.traits.personality.agreeableness;
        match rng.random_range(0..6) {
            0 => format!("I've been at {} since this morning.", speaker.activity),
            1 => match pick(rng, &me.likes) {
                Some(like) => format!("Have you tried {like}? I can't get enough of it."),
                None => "It's been a quiet day, hasn't it?".to_owned(),
            },
            2 => match pick(rng, &me.dislikes) {
                Some(d) if agreeable < 0.5 => format!("Honestly, {d} gets on my nerves."),
                Some(d) => format!("I try to be patient, but {d} is hard for me."),
                None => "Nothing much bothers me these days.".to_owned(),
            },
            3 => format!(
                "Someday I want to {}.",
                me.goals.primary.trim_end_matches('.').to_lowercase()
            ),
            4 if agreeable >= 0.5 => format!("That sounds lovely, {them}."),
            4 => format!("Hm. If you say so, {them}."),
            _ => match pick(rng, &me.traits.abilities) {
                Some(skill) => format!("If you ever need help with {skill}, just ask."),
                None => format!("How have you been, {them}?"),
            },
        }
    }

    fn reaction(
        &self,
        listener: &AgentView<'_>,
        speaker: &AgentView<'_>,
        relationship: Option<&Relationship>,
        rng: &mut ChaCha8Rng,
    ) -> (f32, f32) {
        let l = &listener.def.file.traits.personality;
        let s = &speaker.def.file.traits.personality;
        // warm listeners warm up; agreeable speakers are liked; neurotic listeners are touchy
        let warmth = 0.6 * l.agreeableness + 0.4 * s.agreeableness - 0.45 * l.neuroticism;
        let mood = listener.needs.mood * 0.5;
        let noise: f32 = rng.random_range(-0.5..0.5);
        let affection = (warmth + mood + noise) * 1.5;
        let familiarity = relationship.map_or(0.0, |r| r.trust / 200.0);
        let trust = 0.3 + 0.4 * l.agreeableness - 0.2 * l.neuroticism + familiarity * 0.2;
        (affection.clamp(-3.0, 3.0), trust.clamp(-1.0, 1.5))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use hearth_content::agent::{AgentFile, BigFive, Goals, Traits};

    fn def(name: &str, extraversion: f32) -> AgentDef {
        AgentDef {
            file: AgentFile {
                schema: None,
                version: 1,
                id: name.to_lowercase(),
                name: name.into(),
                age: 30,
                occupation: String::new(),
                constitution: String::new(),
                background: String::new(),
                traits: Traits {
                    personality: BigFive {
                        extraversion,
                        ..BigFive::default()
                    },
                    physical: vec![],
                    abilities: vec!["baking".into()],
                },
                likes: vec!["rye bread".into()],
                dislikes: vec!["gossip".into()],
                goals: Goals {
                    primary: "Open a second bakery".into(),
                    secondary: vec![],
                },
                home: "Home".into(),
                start_location: "Home".into(),
                schedule: vec![],
                relationships: vec![],
                memories: vec![],
                llm: None,
            },
            home: 0,
            start: 0,
            schedule: vec![],
        }
    }

    fn view(def: &AgentDef) -> AgentView<'_> {
        AgentView {
            idx: 0,
            def,
            needs: Needs::default(),
            activity: "baking",
            location: Some(0),
        }
    }

    #[test]
    fn extraverts_talk_more_and_sleepers_not_at_all() {
        let shy = def("Ada", 0.1);
        let chatty = def("Bo", 0.9);
        let m = RuleMind;
        assert!(
            m.talk_chance(&view(&chatty), &view(&shy), None)
                > m.talk_chance(&view(&shy), &view(&chatty), None)
        );
        let mut asleep = view(&shy);
        asleep.needs.sleeping = true;
        assert_eq!(m.talk_chance(&view(&chatty), &asleep, None), 0.0);
    }

    #[test]
    fn lines_open_and_close_and_are_deterministic() {
        let a = def("Ada Lovelace", 0.5);
        let b = def("Bo", 0.5);
        let m = RuleMind;
        let ctx = LineContext {
            turn: 0,
            max_turns: 4,
            relationship: None,
            minute_of_day: 8 * 60,
            location_name: Some("Bakery"),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let opening = m.line(&view(&a), &[view(&b)], &ctx, &mut rng);
        assert_eq!(opening, "Good morning, Bo. Busy day at the Bakery?");
        let closing = m.line(
            &view(&a),
            &[view(&b)],
            &LineContext { turn: 3, ..ctx },
            &mut rng,
        );
        assert!(
            closing.starts_with("Well, I should get back to baking"),
            "{closing}"
        );
        let mid1 = m.line(
            &view(&a),
            &[view(&b)],
            &LineContext { turn: 1, ..ctx },
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        let mid2 = m.line(
            &view(&a),
            &[view(&b)],
            &LineContext { turn: 1, ..ctx },
            &mut ChaCha8Rng::seed_from_u64(9),
        );
        assert_eq!(mid1, mid2);
    }

    #[test]
    fn reactions_stay_small() {
        let a = def("Ada", 0.5);
        let m = RuleMind;
        for seed in 0..200 {
            let (da, dt) = m.reaction(
                &view(&a),
                &view(&a),
                None,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert!((-3.0..=3.0).contains(&da) && (-1.0..=1.5).contains(&dt));
        }
    }

    #[test]
    fn answers_greet_recall_and_say_what_the_agent_does() {
        let mei = def("Mei", 0.8);
        let memories = vec![
            "Bo was at Bakery: buy bread. He paid in coins.".to_owned(),
            "older".to_owned(),
        ];
        let ctx = AnswerContext {
            speaker: "ada",
            heard: "Hello Mei! Where is Bo?",
            activity: "bake the day's bread",
            memories: &memories,
            seed: 1,
        };
        let a = rule_answer(&mei, &ctx);
        assert!(a.starts_with("Hello, ada!"), "{a}");
        assert!(
            a.contains("As far as I know: Bo was at Bakery: buy bread"),
            "{a}"
        );
        assert!(!a.contains("coins"), "only the first sentence: {a}");
        assert!(a.contains("busy: bake the day's bread"), "{a}");
        assert!(a.contains("someone to talk to"), "an outgoing agent: {a}");
        // no greeting, no memory, free time; same seed, same words
        let quiet = def("Kai", 0.2);
        let ctx = AnswerContext {
            heard: "nice weather",
            activity: "free time",
            memories: &[],
            ..ctx
        };
        let a = rule_answer(&quiet, &ctx);
        assert_eq!(a, "I have a little free time right now.");
        assert_eq!(a, RuleMind.answer(&quiet, &ctx));
        // a long line stays within the protocol's 500 characters
        let long = vec!["x".repeat(2000)];
        let ctx = AnswerContext {
            memories: &long,
            ..ctx
        };
        assert!(rule_answer(&quiet, &ctx).chars().count() <= 500);
    }
}
