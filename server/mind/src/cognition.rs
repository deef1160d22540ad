//! Decisions asked of an agent's language model, each with the rule-based
//! mind behind it: the next line of an agent's conversation, an agent's
//! answer to a player's character, the day's plan, the steps of an
//! activity, and whether to react to something perceived. Builds each prompt's context from the
//! agent's file, the conversation and the memories retrieved for it, asks
//! the model (which never takes longer than its timeout), and turns the
//! answer into the decision; on any failure it says so (`None`) and the
//! caller lets the rule-based mind decide. Touches the model client and the
//! memory service's retrieval; never the world (answers go back to it as
//! commands).

use std::sync::Arc;

use arc_swap::ArcSwap;

use serde_json::{Value, json};
use tracing::debug;
use unicode_segmentation::UnicodeSegmentation;

use crate::llm::{Kind, Llm, Request, priority};
use crate::memory::GameSeconds;
use crate::memory::MemoryKind;
use crate::prompt::{WEEKDAYS, affection_word, agent_context, game_time_label};
use crate::service::WeakMemoryService;
use hearth_content::AgentDef;
use hearth_world::events::{Command, LineWanted, PlanWanted};

/// Memories recalled for a line.
const LINE_MEMORIES: usize = 5;
/// The longest line kept from a model.
const MAX_LINE_CHARS: usize = 500;

/// How an agent feels about someone, in words and numbers.
pub fn feeling(affection: f32, trust: f32) -> String {
    format!(
        "{}, affection {affection:.0} of 100, trust {trust:.0} of 100",
        affection_word(affection)
    )
}

/// Sentences kept of a model's line (small models ramble and repeat).
const MAX_LINE_SENTENCES: usize = 3;

/// A model's line, cleaned: quotes and a leading "Name:" taken off, cut to
/// [`MAX_LINE_SENTENCES`] sentences and [`MAX_LINE_CHARS`]; `None` when
/// fewer than two words are left (a bare "true" or "Line 35" is no line).
fn clean_line(text: &str, speaker: &AgentDef) -> Option<String> {
    let mut t = text.trim();
    for prefix in [
        speaker.file.name.as_str(),
        speaker.file.name.split_whitespace().next().unwrap_or(""),
    ] {
        if !prefix.is_empty()
            && let Some(rest) = t.strip_prefix(prefix)
            && let Some(rest) = rest.trim_start().strip_prefix(':')
        {
            t = rest.trim();
        }
    }
    let t = t
        .trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}')
        .trim();
    let words = t
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    if words < 2 {
        return None;
    }
    let kept: String = t
        .split_sentence_bounds()
        .take(MAX_LINE_SENTENCES)
        .collect::<String>();
    Some(kept.trim().chars().take(MAX_LINE_CHARS).collect())
}

/// Whether a model's line only repeats its prompt (small models echo a
/// heading, a placeholder or a line already said): such a line is not
/// used.
fn echoes(line: &str, prompt: Option<&crate::llm::Rendered>) -> bool {
    let placeholder = line.contains('<') && line.contains('>');
    let repeated = prompt.is_some_and(|p| {
        line.chars().count() >= 6 && (p.user.contains(line) || p.system.contains(line))
    });
    placeholder || repeated
}

/// Asks agents' models for their lines and answers.
#[derive(Debug, Clone)]
pub struct Thinker {
    llm: Arc<Llm>,
    /// Shared by every clone, so content reloaded into the world reaches the
    /// tasks already holding one.
    defs: Arc<ArcSwap<Vec<AgentDef>>>,
    /// The map's location names, by id.
    places: Arc<ArcSwap<Vec<String>>>,
    /// Weak: a line being made must not keep the memory service from
    /// finishing its writes at shutdown.
    memories: Option<WeakMemoryService>,
}

impl Thinker {
    pub fn new(
        llm: Arc<Llm>,
        defs: Arc<Vec<AgentDef>>,
        places: Vec<String>,
        memories: Option<WeakMemoryService>,
    ) -> Self {
        Self {
            llm,
            defs: Arc::new(ArcSwap::new(defs)),
            places: Arc::new(ArcSwap::from_pointee(places)),
            memories,
        }
    }

    /// The agents' definitions as the world has them now.
    pub fn defs(&self) -> Arc<Vec<AgentDef>> {
        self.defs.load_full()
    }

    /// Takes content reloaded into the world (the same agents, in the same
    /// order), for every clone of this thinker.
    pub fn set_content(&self, defs: Arc<Vec<AgentDef>>, map: &hearth_content::WorldMap) {
        self.defs.store(defs);
        self.places.store(Arc::new(
            map.locations.iter().map(|l| l.name.clone()).collect(),
        ));
    }

    pub fn llm(&self) -> &Arc<Llm> {
        &self.llm
    }

    /// Recalls `agent`'s top memories for `query`; none when the service is
    /// absent or slow (retrieval is bounded by the model's own deadline).
    async fn recall(
        &self,
        agent: &AgentDef,
        query: &str,
        now: GameSeconds,
        k: usize,
    ) -> Vec<String> {
        let Some(m) = self.memories.as_ref().and_then(WeakMemoryService::upgrade) else {
            return Vec::new();
        };
        let wait = self.llm.timeout() / 4;
        match tokio::time::timeout(wait, m.retrieve(&agent.file.id, query, now, k)).await {
            Ok(Ok(found)) => found.into_iter().map(|(_, m)| m.content).collect(),
            Ok(Err(e)) => {
                debug!(agent = %agent.file.id, error = %e, "no memories for a line");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// The next line of a conversation, as the command that hands it to the
    /// world (with `text: None` when the model gave nothing usable).
    pub async fn line(&self, wanted: &LineWanted, now: GameSeconds) -> Command {
        let defs = self.defs.load_full();
        let failed = Command::Line {
            conversation: wanted.conversation,
            turn: wanted.turn,
            speaker: wanted.speaker,
            text: None,
            end: false,
        };
        let Some(speaker) = defs.get(wanted.speaker as usize) else {
            return failed;
        };
        let others: Vec<&AgentDef> = wanted
            .listeners
            .iter()
            .filter_map(|&l| defs.get(l as usize))
            .collect();
        let Some(first) = others.first() else {
            return failed;
        };
        let name_of = |i: u32| {
            defs.get(i as usize)
                .map_or_else(|| "someone".to_owned(), |d| d.file.name.clone())
        };
        let topic = wanted.transcript.last().map_or_else(
            || first.file.name.clone(),
            |(_, t)| format!("{} {t}", first.file.name),
        );
        let memories = self.recall(speaker, &topic, now, LINE_MEMORIES).await;
        let names: Vec<&str> = others.iter().map(|d| d.file.name.as_str()).collect();
        let context = json!({
            "agent": agent_context(speaker),
            "other": {
                "name": names.join(" and "),
                "who": if others.len() == 1 { first.file.occupation.clone() } else { String::new() },
            },
            "relationship": wanted.relationship.map(|(a, t)| feeling(a, t)),
            "memories": memories,
            "location": wanted.location,
            "time": game_time_label(now),
            "activity": wanted.activity,
            "dialogue": wanted.transcript.iter().map(|(s, t)| json!({"speaker": name_of(*s), "text": t})).collect::<Vec<_>>(),
            "turn": wanted.turn,
            "max_turns": wanted.max_turns,
        });
        let prompt = self.llm.prompts().render(Kind::Conversation, &context).ok();
        let answer = self
            .llm
            .ask(Request {
                kind: Kind::Conversation,
                agent: Some(wanted.speaker),
                priority: priority::LINE,
                now,
                context,
            })
            .await;
        match answer {
            Ok(v) => match v["line"]
                .as_str()
                .and_then(|l| clean_line(l, speaker))
                .filter(|l| !echoes(l, prompt.as_ref()))
            {
                Some(text) => Command::Line {
                    conversation: wanted.conversation,
                    turn: wanted.turn,
                    speaker: wanted.speaker,
                    text: Some(text),
                    end: v["end"].as_bool().unwrap_or(false),
                },
                None => failed,
            },
            Err(_) => failed,
        }
    }

    /// What `agent` says back to a player's character, and whether it
    /// wants to end the talk; `None` when its model gave nothing usable.
    pub async fn answer(
        &self,
        agent: u32,
        reply: &PlayerLine<'_>,
        now: GameSeconds,
    ) -> Option<(String, bool)> {
        let defs = self.defs.load_full();
        let def = defs.get(agent as usize)?;
        if !self.llm.thinks(Some(agent)) {
            return None;
        }
        let mut dialogue: Vec<Value> = reply
            .dialogue
            .iter()
            .map(|(s, t)| json!({"speaker": s, "text": t}))
            .collect();
        dialogue.push(json!({"speaker": reply.character, "text": reply.heard}));
        let context = json!({
            "agent": agent_context(def),
            "other": {"name": reply.character, "who": "a visitor"},
            "relationship": reply.tie.map(|(a, t)| feeling(a, t)),
            "memories": reply.memories,
            "location": reply.location,
            "time": game_time_label(now),
            "activity": reply.activity,
            "dialogue": dialogue,
            "turn": reply.dialogue.len() + 1,
            "max_turns": 0,
        });
        let prompt = self.llm.prompts().render(Kind::Conversation, &context).ok();
        let v = self
            .llm
            .ask(Request {
                kind: Kind::Conversation,
                agent: Some(agent),
                priority: priority::PLAYER,
                now,
                context,
            })
            .await
            .ok()?;
        let text = clean_line(v["line"].as_str()?, def).filter(|l| !echoes(l, prompt.as_ref()))?;
        Some((text, v["end"].as_bool().unwrap_or(false)))
    }
}

/// "HH:MM" of a game minute.
fn clock_label(minute: u64) -> String {
    let m = minute % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl Thinker {
    /// Answers a plan the world wants: the day's plan (the schedule's own
    /// items when the model fails, so the day is planned either way) or an
    /// activity's steps (none when the model fails: the agent simply goes
    /// on with its activity).
    pub async fn plan(&self, wanted: &PlanWanted, now: GameSeconds) -> Option<Command> {
        let defs = self.defs.load_full();
        match wanted {
            PlanWanted::Day { agent, day } => Some(self.day_plan(*agent, *day, now).await),
            PlanWanted::Steps {
                agent,
                plan,
                activity,
                location,
                objects,
                from,
                to,
                day_plan,
            } => {
                let def = defs.get(*agent as usize)?;
                let context = json!({
                    "agent": agent_context(def),
                    "activity": activity,
                    "location": location,
                    "objects": objects,
                    "start": clock_label(*from),
                    "end": clock_label(*to),
                    "minutes": to.saturating_sub(*from),
                    "day_plan": day_plan,
                });
                let steps: Vec<(u32, String)> = match self
                    .llm
                    .ask(Request {
                        kind: Kind::Decompose,
                        agent: Some(*agent),
                        priority: priority::PLAN,
                        now,
                        context,
                    })
                    .await
                {
                    Ok(v) => v["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| {
                            let minutes = u32::try_from(s["minutes"].as_u64()?).ok()?;
                            let action = s["action"].as_str()?.trim();
                            (!action.is_empty())
                                .then(|| (minutes.clamp(1, 60), action.chars().take(200).collect()))
                        })
                        .take(48)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                Some(Command::Steps {
                    agent: *agent,
                    plan: *plan,
                    from: *from,
                    steps,
                })
            }
        }
    }

    async fn day_plan(&self, agent: u32, day: u64, now: GameSeconds) -> Command {
        let defs = self.defs.load_full();
        let places = self.places.load_full();
        let Some(def) = defs.get(agent as usize) else {
            return Command::DayPlan {
                agent,
                day,
                wake: String::new(),
                items: Vec::new(),
            };
        };
        let weekday = (day % 7) as usize;
        let today: Vec<&hearth_content::ScheduleBlock> = def
            .schedule
            .iter()
            .filter(|b| b.days & (1 << weekday) != 0)
            .collect();
        let schedule: Vec<Value> = today
            .iter()
            .map(|b| {
                json!({
                    "start": clock_label(u64::from(b.start)),
                    "end": clock_label(u64::from(b.end)),
                    "activity": b.activity,
                    "location": places.get(b.location as usize).map_or("", String::as_str),
                })
            })
            .collect();
        let yesterday = match self.memories.as_ref().and_then(WeakMemoryService::upgrade) {
            Some(m) => tokio::time::timeout(
                self.llm.timeout() / 4,
                m.latest(&def.file.id, MemoryKind::Metacognition),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .map(|m| m.content),
            None => None,
        };
        let context = json!({
            "agent": agent_context(def),
            "weekday": WEEKDAYS[weekday],
            "day": day + 1,
            "yesterday": yesterday,
            "schedule": schedule,
        });
        let answer = self
            .llm
            .ask(Request {
                kind: Kind::DayPlan,
                agent: Some(agent),
                priority: priority::PLAN,
                now,
                context,
            })
            .await;
        let from_model = answer.ok().and_then(|v| {
            let wake = v["wake_up"].as_str()?.trim().to_owned();
            let items: Vec<String> = v["plan"]
                .as_array()?
                .iter()
                .filter_map(|i| i.as_str().map(str::trim))
                .filter(|i| !i.is_empty())
                .take(8)
                .map(|i| i.chars().take(200).collect())
                .collect();
            (!items.is_empty()).then_some((wake, items))
        });
        let (wake, items) = from_model.unwrap_or_else(|| {
            // the rule-based day: the schedule itself
            let wake = today
                .iter()
                .find(|b| !hearth_world::schedule::is_sleep(&b.activity))
                .map_or_else(|| "07:00".to_owned(), |b| clock_label(u64::from(b.start)));
            let items = today
                .iter()
                .filter(|b| !hearth_world::schedule::is_sleep(&b.activity))
                .map(|b| format!("{}: {}", clock_label(u64::from(b.start)), b.activity))
                .collect();
            (wake, items)
        });
        Command::DayPlan {
            agent,
            day,
            wake,
            items,
        }
    }

    /// Whether `agent`, busy with `activity`, changes course on noticing
    /// `observation`: `Some((action, minutes))` when it does.
    pub async fn react(
        &self,
        agent: u32,
        activity: &str,
        observation: &str,
        now: GameSeconds,
    ) -> Option<(String, u32)> {
        let defs = self.defs.load_full();
        let def = defs.get(agent as usize)?;
        let context = json!({
            "agent": agent_context(def),
            "time": game_time_label(now),
            "activity": activity,
            "observation": observation,
        });
        let v = self
            .llm
            .ask(Request {
                kind: Kind::React,
                agent: Some(agent),
                priority: priority::REACT,
                now,
                context,
            })
            .await
            .ok()?;
        if !v["react"].as_bool().unwrap_or(false) {
            return None;
        }
        let action: String = v["action"].as_str()?.trim().chars().take(200).collect();
        if action.is_empty() {
            return None;
        }
        let minutes = v["minutes"].as_u64().map_or(10, |m| m.clamp(5, 60)) as u32;
        Some((action, minutes))
    }
}

/// What a player's character said to an agent, and what the agent knows.
#[derive(Debug, Clone, Copy)]
pub struct PlayerLine<'a> {
    pub character: &'a str,
    pub heard: &'a str,
    pub activity: &'a str,
    pub location: Option<&'a str>,
    pub memories: &'a [String],
    /// Earlier lines of this talk: (speaker name, text), oldest first.
    pub dialogue: &'a [(String, String)],
    /// The agent's (affection, trust) toward the character.
    pub tie: Option<(f32, f32)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::synthetic;

    #[test]
    fn lines_are_cleaned_of_names_and_quotes() {
        let content = synthetic::world(1, 3);
        let def = &content.agents[0];
        let first = def
            .file
            .name
            .split_whitespace()
            .next()
            .expect("a name")
            .to_owned();
        assert_eq!(
            clean_line(&format!("{first}: \"Good morning!\""), def).as_deref(),
            Some("Good morning!")
        );
        assert_eq!(clean_line("  \"\" ", def), None);
        assert_eq!(clean_line("true", def), None);
        assert_eq!(clean_line("Line 35", def), None);
        assert_eq!(
            clean_line("One. Two here. Three now! Four? Five.", def).as_deref(),
            Some("One. Two here. Three now!")
        );
        let prompt = crate::llm::Rendered {
            system: "You are Ada.".into(),
            user: "The conversation so far:\nBo: Hello there".into(),
        };
        assert!(echoes("The conversation so far:", Some(&prompt)));
        assert!(echoes("<what you say>", None));
        assert!(!echoes("Hello to you too, Bo.", Some(&prompt)));
        assert_eq!(
            clean_line(&"word ".repeat(200), def).map(|l| l.len()),
            Some(MAX_LINE_CHARS)
        );
    }
}
