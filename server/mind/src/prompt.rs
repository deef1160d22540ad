//! Prompt assembly: a pure function that turns an agent's identity, state,
//! relationships, retrieved memories and lore into the text sent to a
//! language model, within a token budget, keeping each memory's score terms
//! for debugging. Touches nothing: no I/O, no clock, no world.
//!
//! Sections, by priority (highest first): identity and task (always),
//! current state and plan, relationships, memories (highest total score
//! first), lore (highest score first). Content is added in that order while
//! it fits; once one item does not fit, it and everything of lower priority
//! is dropped, so lore goes before any memory and a weak memory before a
//! strong one. A memory, relationship, plan step or lore chunk is included
//! whole or not at all.
//!
//! ```
//! use hearth_mind::prompt::{assemble, PromptBudget, PromptInput};
//! let content = hearth_content::synthetic::world(1, 7);
//! let input = PromptInput {
//!     task: "What do you say next?",
//!     ..PromptInput::new(&content.agents[0], 0)
//! };
//! let prompt = assemble(&input, &PromptBudget::default());
//! assert!(prompt.tokens <= 2048);
//! assert!(prompt.user.ends_with("What do you say next?"));
//! ```

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::Serialize;
use tiktoken_rs::CoreBPE;

use crate::memory::{GameSeconds, Memory, MemoryKind};
use hearth_content::AgentDef;
use hearth_content::agent::BigFive;

const DAY: GameSeconds = 24 * 60 * 60;
/// Day names, Monday first (game day 0 is a Monday).
pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Why a memory was retrieved: each term of the retrieval score as it went
/// into the total (normalised, before or after weighting as the retrieval
/// reports them), shown by [`Prompt::explain`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ScoreTerms {
    pub recency: f32,
    pub importance: f32,
    pub relevance: f32,
    pub emotion: f32,
    pub total: f32,
}

/// What the agent thinks of someone, in a line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RelationshipSummary {
    /// Display name of the other agent or player character.
    pub name: String,
    /// "friend", "family", "rival"…
    pub kind: String,
    /// −100 (hatred) ..= 100 (love).
    pub affection: f32,
    /// 0 (none) ..= 100 (complete).
    pub trust: f32,
    /// A short free note, e.g. "owes me for the flour"; may be empty.
    pub note: String,
}

/// A lore chunk found for this prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoreSnippet {
    /// Heading trail, e.g. "Valley history > The flood".
    pub trail: String,
    pub text: String,
    /// Search score (higher is better); orders the snippets.
    pub score: f32,
}

impl From<&hearth_db::lore::LoreHit> for LoreSnippet {
    fn from(hit: &hearth_db::lore::LoreHit) -> Self {
        let (trail, body) = crate::lore::split_stored_text(&hit.text);
        let trail = if trail.is_empty() {
            hit.document_title.clone()
        } else {
            trail.to_owned()
        };
        LoreSnippet {
            trail,
            text: body.to_owned(),
            score: hit.score as f32,
        }
    }
}

/// Everything a prompt is made of; plain data the caller gathers.
#[derive(Debug, Clone)]
pub struct PromptInput<'a> {
    pub agent: &'a AgentDef,
    /// Game time now (seconds since Monday 00:00 of day 0).
    pub now: GameSeconds,
    /// What the agent is doing, e.g. "knead tomorrow's dough".
    pub activity: &'a str,
    /// Name of the map location it is at.
    pub location: &'a str,
    /// Needs and mood in words, e.g. "a little hungry, content".
    pub mood: &'a str,
    /// The remaining steps of the current plan, in order.
    pub plan: &'a [String],
    /// People the agent knows, most important first: dropped from the end.
    pub relationships: &'a [RelationshipSummary],
    /// Retrieved memories with their scores, in any order.
    pub memories: &'a [(&'a Memory, ScoreTerms)],
    /// Lore chunks found for the situation, in any order.
    pub lore: &'a [LoreSnippet],
    /// The request, last in the prompt: "What do you say next?"
    pub task: &'a str,
}

impl<'a> PromptInput<'a> {
    /// An input with only the agent and the time; fill the rest with struct
    /// update syntax.
    pub fn new(agent: &'a AgentDef, now: GameSeconds) -> Self {
        Self {
            agent,
            now,
            activity: "",
            location: "",
            mood: "",
            plan: &[],
            relationships: &[],
            memories: &[],
            lore: &[],
            task: "",
        }
    }
}

/// How tokens are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TokenCounter {
    /// OpenAI's `cl100k_base` BPE (its tables ship inside `tiktoken-rs`,
    /// nothing is downloaded). Other models' tokenizers differ by some
    /// percent on English prose: keep a margin under their context.
    #[default]
    Cl100k,
    /// No tokenizer: the larger of characters / 4 and words × 4 / 3, an
    /// over-estimate for English prose.
    Estimate,
}

impl TokenCounter {
    /// Tokens in `text`.
    pub fn count(self, text: &str) -> usize {
        match self {
            TokenCounter::Cl100k => match cl100k() {
                Some(bpe) => bpe.encode_ordinary(text).len(),
                None => estimate(text),
            },
            TokenCounter::Estimate => estimate(text),
        }
    }
}

fn estimate(text: &str) -> usize {
    let chars = text.chars().count().div_ceil(4);
    let words = (text.split_whitespace().count() * 4).div_ceil(3);
    chars.max(words)
}

/// The `cl100k_base` tables, parsed once (about 100k entries).
fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| match tiktoken_rs::cl100k_base() {
        Ok(bpe) => Some(bpe),
        Err(e) => {
            tracing::warn!(error = %e, "cl100k_base tokenizer unavailable; estimating tokens");
            None
        }
    })
    .as_ref()
}

/// The token budget of a prompt (system and user text together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptBudget {
    pub max_tokens: usize,
    pub counter: TokenCounter,
}

impl Default for PromptBudget {
    /// 2,048 tokens counted with `cl100k_base`: room for the answer in a
    /// 4k-context model, and a quarter of SmolLM2's 8k.
    fn default() -> Self {
        Self {
            max_tokens: 2048,
            counter: TokenCounter::Cl100k,
        }
    }
}

/// The parts of a prompt, in priority order (highest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SectionKind {
    /// Who the agent is: the system message. Always included.
    Identity,
    /// The request, last in the user message. Always included.
    Task,
    /// Time, place, activity, mood and plan.
    State,
    Relationships,
    Memories,
    Lore,
}

impl SectionKind {
    /// The heading of the section in the user message.
    pub fn heading(self) -> &'static str {
        match self {
            SectionKind::Identity => "Who you are",
            SectionKind::Task => "Task",
            SectionKind::State => "## Now",
            SectionKind::Relationships => "## People you know",
            SectionKind::Memories => "## What you remember",
            SectionKind::Lore => "## What you know of the world",
        }
    }
}

/// One section of an assembled prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    pub kind: SectionKind,
    /// The section's text as it appears in the prompt (empty when nothing of
    /// it fitted).
    pub text: String,
    /// Tokens of `text`.
    pub tokens: usize,
    /// Items (memories, people, plan steps, lore chunks) included…
    pub included: usize,
    /// …and left out for the budget.
    pub dropped: usize,
}

/// An assembled prompt: the two chat messages and how they were filled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompt {
    /// The system message: the agent's identity.
    pub system: String,
    /// The user message: state, people, memories, lore, then the task.
    pub user: String,
    /// Every section in priority order, even those left empty.
    pub sections: Vec<Section>,
    /// Ids and scores of the memories in the prompt, best first.
    pub included_memories: Vec<(u64, ScoreTerms)>,
    /// Memories left out for the budget.
    pub dropped_memories: usize,
    /// Tokens of `system` plus `user`.
    pub tokens: usize,
    /// The budget it was assembled for.
    pub max_tokens: usize,
}

impl Prompt {
    /// Whether identity and task alone already exceed the budget (they are
    /// never dropped, so the prompt is then larger than asked).
    pub fn over_budget(&self) -> bool {
        self.tokens > self.max_tokens
    }

    /// A human-readable account of the prompt: tokens per section, what was
    /// dropped, and each included memory's score terms.
    pub fn explain(&self) -> String {
        let mut out = format!("prompt: {} of {} tokens\n", self.tokens, self.max_tokens);
        for s in &self.sections {
            let _ = writeln!(
                out,
                "  {:<14} {:>5} tokens  {:>3} included  {:>3} dropped",
                format!("{:?}", s.kind),
                s.tokens,
                s.included,
                s.dropped
            );
        }
        if !self.included_memories.is_empty() {
            let _ = writeln!(
                out,
                "  memory     total  recency  importance  relevance  emotion"
            );
        }
        for (id, t) in &self.included_memories {
            let _ = writeln!(
                out,
                "  #{id:<8} {:>6.3}  {:>7.3}  {:>10.3}  {:>9.3}  {:>7.3}",
                t.total, t.recency, t.importance, t.relevance, t.emotion
            );
        }
        out
    }
}

/// "Day 2, 07:15": game time as memories show it (days from 0, 24-hour clock).
///
/// ```
/// use hearth_mind::prompt::game_time_label;
/// assert_eq!(game_time_label(2 * 86_400 + 7 * 3_600 + 15 * 60 + 59), "Day 2, 07:15");
/// ```
pub fn game_time_label(t: GameSeconds) -> String {
    let day = t / DAY;
    let secs = t % DAY;
    format!("Day {day}, {:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// Builds the prompt for `input` within `budget` (see the module docs for
/// the priorities). Deterministic: the same input and budget always give the
/// same prompt.
pub fn assemble(input: &PromptInput<'_>, budget: &PromptBudget) -> Prompt {
    let counter = budget.counter;
    let system = identity(input.agent);
    let task = input.task.trim().to_owned();

    // items of each optional section, in the order they are given up last-first
    let mut memories: Vec<&(&Memory, ScoreTerms)> = input.memories.iter().collect();
    memories.sort_by(|a, b| {
        b.1.total
            .total_cmp(&a.1.total)
            .then(b.0.created.cmp(&a.0.created))
            .then(a.0.id.cmp(&b.0.id))
    });
    let mut lore: Vec<&LoreSnippet> = input.lore.iter().collect();
    lore.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.trail.cmp(&b.trail))
            .then(a.text.cmp(&b.text))
    });
    let optional = vec![
        (SectionKind::State, state_items(input)),
        (
            SectionKind::Relationships,
            input.relationships.iter().map(relationship_line).collect(),
        ),
        (
            SectionKind::Memories,
            memories.iter().map(|(m, _)| memory_line(m)).collect(),
        ),
        (
            SectionKind::Lore,
            lore.iter().map(|l| lore_line(l)).collect(),
        ),
    ];

    // greedy fill by priority, with per-piece counts
    let fixed = counter.count(&system) + counter.count(&task);
    let mut used = fixed;
    let mut included: Vec<usize> = vec![0; optional.len()];
    let mut full = false;
    for (i, (kind, items)) in optional.iter().enumerate() {
        for item in items {
            if full {
                break;
            }
            let mut cost = counter.count(&format!("{item}\n"));
            if included[i] == 0 {
                cost += counter.count(&format!("{}\n\n\n", kind.heading()));
            }
            if used + cost <= budget.max_tokens {
                used += cost;
                included[i] += 1;
            } else {
                full = true;
            }
        }
    }

    // the counts are per piece; recount the whole and give back what joining
    // pieces may have cost, lowest priority first
    let mut user = render_user(&optional, &included, &task);
    let mut tokens = counter.count(&system) + counter.count(&user);
    while tokens > budget.max_tokens {
        let Some(last) = included.iter().rposition(|n| *n > 0) else {
            break;
        };
        included[last] -= 1;
        user = render_user(&optional, &included, &task);
        tokens = counter.count(&system) + counter.count(&user);
    }

    let mut sections = vec![
        Section {
            kind: SectionKind::Identity,
            tokens: counter.count(&system),
            text: system.clone(),
            included: 1,
            dropped: 0,
        },
        Section {
            kind: SectionKind::Task,
            tokens: counter.count(&task),
            text: task.clone(),
            included: 1,
            dropped: 0,
        },
    ];
    for ((kind, items), n) in optional.iter().zip(&included) {
        let text = section_text(*kind, &items[..*n]);
        sections.push(Section {
            kind: *kind,
            tokens: counter.count(&text),
            text,
            included: *n,
            dropped: items.len() - n,
        });
    }
    let kept_memories = included[2];
    Prompt {
        system,
        user,
        sections,
        included_memories: memories[..kept_memories]
            .iter()
            .map(|(m, t)| (m.id, *t))
            .collect(),
        dropped_memories: memories.len() - kept_memories,
        tokens,
        max_tokens: budget.max_tokens,
    }
}

fn section_text(kind: SectionKind, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("{}\n{}", kind.heading(), items.join("\n"))
}

fn render_user(optional: &[(SectionKind, Vec<String>)], included: &[usize], task: &str) -> String {
    let mut parts: Vec<String> = optional
        .iter()
        .zip(included)
        .map(|((kind, items), n)| section_text(*kind, &items[..*n]))
        .filter(|s| !s.is_empty())
        .collect();
    if !task.is_empty() {
        parts.push(task.to_owned());
    }
    parts.join("\n\n")
}

/// The system message: who the agent is, from its file.
pub fn identity(agent: &AgentDef) -> String {
    let f = &agent.file;
    let mut out = format!("You are {}, {}", f.name.trim(), f.age);
    if !f.occupation.trim().is_empty() {
        let _ = write!(out, ", {}", f.occupation.trim());
    }
    out.push('.');
    if !f.home.trim().is_empty() {
        let _ = write!(out, " You live at {}.", f.home.trim());
    }
    let mut line = |label: &str, text: &str| {
        let text = text.trim();
        if !text.is_empty() {
            let _ = write!(out, "\n{label}: {text}");
        }
    };
    line("Constitution", &f.constitution);
    line("Background", &f.background);
    line("Personality", &personality(&f.traits.personality));
    line("Physical", &f.traits.physical.join("; "));
    line("Abilities", &f.traits.abilities.join("; "));
    line("Likes", &f.likes.join("; "));
    line("Dislikes", &f.dislikes.join("; "));
    line("Main goal", &f.goals.primary);
    line("Other goals", &f.goals.secondary.join("; "));
    let _ = write!(
        out,
        "\nStay in character as {}: speak in the first person, from what you know and remember, briefly.",
        f.name.trim()
    );
    out
}

/// The marked traits of a Big Five profile in words ("curious, reserved");
/// middling ones are left out.
fn personality(p: &BigFive) -> String {
    let traits = [
        (p.openness, "curious", "conventional"),
        (p.conscientiousness, "disciplined", "easygoing"),
        (p.extraversion, "outgoing", "reserved"),
        (p.agreeableness, "warm", "blunt"),
        (p.neuroticism, "anxious", "calm"),
    ];
    traits
        .iter()
        .filter_map(|(v, high, low)| {
            if *v >= 0.7 {
                Some(*high)
            } else if *v <= 0.3 {
                Some(*low)
            } else {
                None
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state section's items: where and when, then one per plan step.
fn state_items(input: &PromptInput<'_>) -> Vec<String> {
    let weekday = WEEKDAYS[usize::try_from(input.now / DAY % 7).unwrap_or(0)];
    let mut now = format!("It is {weekday}, {}.", game_time_label(input.now));
    let location = input.location.trim();
    let activity = input.activity.trim();
    match (location.is_empty(), activity.is_empty()) {
        (false, false) => {
            let _ = write!(now, " You are at {location}: {activity}.");
        }
        (false, true) => {
            let _ = write!(now, " You are at {location}.");
        }
        (true, false) => {
            let _ = write!(now, " You are busy: {activity}.");
        }
        (true, true) => {}
    }
    if !input.mood.trim().is_empty() {
        let _ = write!(
            now,
            "\nHow you feel: {}.",
            input.mood.trim().trim_end_matches('.')
        );
    }
    let mut items = vec![now];
    let steps: Vec<&str> = input
        .plan
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    for (i, step) in steps.iter().enumerate() {
        items.push(if i == 0 {
            format!("Your plan:\n- {step}")
        } else {
            format!("- {step}")
        });
    }
    items
}

pub fn affection_word(affection: f32) -> &'static str {
    match affection {
        a if a >= 60.0 => "close",
        a if a >= 25.0 => "friendly",
        a if a > -25.0 => "neutral",
        a if a > -60.0 => "cool",
        _ => "hostile",
    }
}

fn relationship_line(r: &RelationshipSummary) -> String {
    let mut line = format!("- {}", r.name.trim());
    if !r.kind.trim().is_empty() {
        let _ = write!(line, " ({})", r.kind.trim());
    }
    let _ = write!(
        line,
        ": {}, affection {:.0}, trust {:.0}",
        affection_word(r.affection),
        r.affection,
        r.trust
    );
    if !r.note.trim().is_empty() {
        let _ = write!(line, ". {}", r.note.trim());
    }
    line
}

fn memory_line(m: &Memory) -> String {
    let mut context = game_time_label(m.created);
    if let Some(place) = m
        .location
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let _ = write!(context, ", {place}");
    }
    if m.kind != MemoryKind::Observation {
        let _ = write!(context, ", {}", m.kind.as_str());
    }
    format!("- [{context}] {}", m.content.trim())
}

fn lore_line(l: &LoreSnippet) -> String {
    let text = l.text.trim();
    if l.trail.trim().is_empty() {
        format!("- {text}")
    } else {
        format!("- {}: {text}", l.trail.trim())
    }
}

/// The `agent` object every prompt is filled in with.
pub fn agent_context(def: &AgentDef) -> serde_json::Value {
    serde_json::json!({
        "id": def.file.id,
        "name": def.file.name,
        "first_name": def.file.name.split_whitespace().next().unwrap_or(&def.file.name),
        "occupation": def.file.occupation,
        "identity": identity(def),
        "goal": def.file.goals.primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_world::testkit;

    fn mei() -> AgentDef {
        let mut d = testkit::def("mei", "Keep the bakery warm", vec![]);
        d.file.name = "Mei Lin".into();
        d.file.age = 41;
        d.file.occupation = "baker".into();
        d.file.home = "Lin Cottage".into();
        d.file.background = "Came to the valley twelve years ago.".into();
        d.file.likes = vec!["quiet mornings".into()];
        d.file.traits.personality.conscientiousness = 0.9;
        d.file.traits.personality.neuroticism = 0.2;
        d
    }

    fn memory(id: u64, content: &str, created: GameSeconds) -> Memory {
        Memory::new(id, MemoryKind::Observation, content, 5, created)
    }

    fn terms(total: f32) -> ScoreTerms {
        ScoreTerms {
            recency: total / 4.0,
            importance: total / 4.0,
            relevance: total / 2.0,
            emotion: 0.0,
            total,
        }
    }

    struct Fixture {
        agent: AgentDef,
        plan: Vec<String>,
        people: Vec<RelationshipSummary>,
        memories: Vec<Memory>,
        scores: Vec<f32>,
        lore: Vec<LoreSnippet>,
    }

    impl Fixture {
        fn new() -> Self {
            let memories: Vec<Memory> = (1..=20)
                .map(|i| {
                    memory(
                        i,
                        &format!("Memory number {i}: Jonah brought flour and we talked about the harvest fair and the weather over the river."),
                        i * 3600,
                    )
                })
                .collect();
            // scores not in id order: 17 (1.9), 14 (1.8), 11 (1.7) … are best
            let scores = (1..=20u64).map(|i| ((i * 7) % 20) as f32 / 10.0).collect();
            Fixture {
                agent: mei(),
                plan: vec!["bake bread".into(), "sell bread".into()],
                people: vec![
                    RelationshipSummary {
                        name: "Jonah Brook".into(),
                        kind: "colleague".into(),
                        affection: 60.0,
                        trust: 80.0,
                        note: "never late".into(),
                    },
                    RelationshipSummary {
                        name: "Bram Okafor".into(),
                        kind: "neighbor".into(),
                        affection: 35.0,
                        trust: 65.0,
                        note: String::new(),
                    },
                ],
                memories,
                scores,
                lore: (0..5)
                    .map(|i| LoreSnippet {
                        trail: format!("Valley > Part {i}"),
                        text: "The river flooded the mill in the old days and the valley rebuilt it together, stone by stone.".into(),
                        score: i as f32,
                    })
                    .collect(),
            }
        }

        fn assemble(&self, max_tokens: usize) -> Prompt {
            let scored: Vec<(&Memory, ScoreTerms)> = self
                .memories
                .iter()
                .zip(&self.scores)
                .map(|(m, s)| (m, terms(*s)))
                .collect();
            let input = PromptInput {
                activity: "sell bread and serve breakfast",
                location: "Bakery",
                mood: "a little tired, content",
                plan: &self.plan,
                relationships: &self.people,
                memories: &scored,
                lore: &self.lore,
                task: "Jonah says good morning. What do you say next?",
                ..PromptInput::new(&self.agent, 2 * DAY + 7 * 3600 + 15 * 60)
            };
            assemble(
                &input,
                &PromptBudget {
                    max_tokens,
                    counter: TokenCounter::Cl100k,
                },
            )
        }
    }

    fn section(p: &Prompt, kind: SectionKind) -> &Section {
        p.sections.iter().find(|s| s.kind == kind).expect("section")
    }

    #[test]
    fn a_large_budget_includes_everything_in_order() {
        let f = Fixture::new();
        let p = f.assemble(100_000);
        assert_eq!(p.dropped_memories, 0);
        assert_eq!(p.included_memories.len(), 20);
        assert!(
            p.system
                .starts_with("You are Mei Lin, 41, baker. You live at Lin Cottage.")
        );
        assert!(
            p.system.contains("Personality: disciplined, calm"),
            "{}",
            p.system
        );
        assert!(
            p.user
                .contains("It is Wednesday, Day 2, 07:15. You are at Bakery")
        );
        assert!(
            p.user
                .contains("- Jonah Brook (colleague): close, affection 60, trust 80. never late")
        );
        assert!(p.user.contains("- [Day 0, 07:00] Memory number 7:"));
        assert!(p.user.ends_with("What do you say next?"));
        let at = |s: &str| p.user.find(s).expect(s);
        assert!(at("## Now") < at("## People") && at("## People") < at("## What you remember"));
        assert!(at("## What you remember") < at("## What you know of the world"));
        assert!(at("## What you know of the world") < at("What do you say next?"));
        assert_eq!(
            p.tokens,
            TokenCounter::Cl100k.count(&p.system) + TokenCounter::Cl100k.count(&p.user)
        );
    }

    #[test]
    fn memories_are_ordered_by_score() {
        let f = Fixture::new();
        let p = f.assemble(100_000);
        let totals: Vec<f32> = p.included_memories.iter().map(|(_, t)| t.total).collect();
        assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
        // the text follows the same order
        let positions: Vec<usize> = p
            .included_memories
            .iter()
            .map(|(id, _)| {
                p.user
                    .find(&format!("Memory number {id}:"))
                    .expect("in text")
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.included_memories[0], (17, terms(1.9)));
    }

    #[test]
    fn equal_scores_put_the_newer_memory_first() {
        let agent = mei();
        let (old, new) = (memory(1, "old news", 60), memory(2, "new news", 120));
        let scored = [(&old, terms(1.0)), (&new, terms(1.0))];
        let input = PromptInput {
            memories: &scored,
            ..PromptInput::new(&agent, 600)
        };
        let p = assemble(&input, &PromptBudget::default());
        let ids: Vec<u64> = p.included_memories.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [2, 1]);
    }

    #[test]
    fn the_budget_is_respected_and_low_priority_goes_first() {
        let f = Fixture::new();
        let everything = f.assemble(100_000).tokens;
        let mut saw_partial_memories = false;
        for max in (150..everything).step_by(37) {
            let p = f.assemble(max);
            assert!(p.tokens <= max, "{} > {max}", p.tokens);
            let state = section(&p, SectionKind::State);
            let people = section(&p, SectionKind::Relationships);
            let mems = section(&p, SectionKind::Memories);
            let lore = section(&p, SectionKind::Lore);
            // a lower-priority section has content only if every higher one is complete
            if people.included > 0 {
                assert_eq!(state.dropped, 0, "budget {max}");
            }
            if mems.included > 0 {
                assert_eq!(people.dropped, 0, "budget {max}");
            }
            if lore.included > 0 {
                assert_eq!(mems.dropped, 0, "budget {max}");
            }
            assert_eq!(mems.included + mems.dropped, 20);
            assert_eq!(p.dropped_memories, mems.dropped);
            assert_eq!(lore.included + lore.dropped, 5);
            if mems.included > 0 && mems.dropped > 0 {
                saw_partial_memories = true;
                // the kept memories are the best ones, whole
                let best = f.assemble(100_000).included_memories;
                assert_eq!(p.included_memories[..], best[..mems.included]);
                for (id, _) in &best[mems.included..] {
                    assert!(!p.user.contains(&format!("Memory number {id}:")));
                }
                for (id, _) in &p.included_memories {
                    let m = &f.memories[usize::try_from(*id).expect("id") - 1];
                    assert!(p.user.contains(&m.content));
                }
            }
        }
        assert!(saw_partial_memories, "some budget cut through the memories");
    }

    #[test]
    fn identity_and_task_are_always_there() {
        let f = Fixture::new();
        let p = f.assemble(10);
        assert!(p.over_budget());
        assert!(p.system.contains("Mei Lin"));
        assert_eq!(p.user, "Jonah says good morning. What do you say next?");
        assert_eq!(p.dropped_memories, 20);
        assert!(p.included_memories.is_empty());
    }

    #[test]
    fn assembly_is_deterministic() {
        let f = Fixture::new();
        for max in [300, 700, 100_000] {
            assert_eq!(f.assemble(max), f.assemble(max));
        }
    }

    #[test]
    fn explain_lists_sections_and_scores() {
        let f = Fixture::new();
        let text = f.assemble(100_000).explain();
        assert!(text.contains("Memories"));
        assert!(text.contains("#7 "), "{text}");
    }

    #[test]
    fn counters_count() {
        assert_eq!(TokenCounter::Cl100k.count("hello world"), 2);
        assert_eq!(TokenCounter::Estimate.count("hello world"), 3);
        assert_eq!(TokenCounter::Estimate.count(""), 0);
    }

    #[test]
    fn lore_hits_become_snippets() {
        let hit = hearth_db::lore::LoreHit {
            chunk_id: 1,
            document_path: "history.md".into(),
            document_title: "Valley history".into(),
            ordinal: 0,
            text: "Valley history > The flood\n\nThe river rose.".into(),
            text_rank: None,
            text_position: None,
            vector_distance: Some(0.1),
            vector_position: Some(1),
            score: 0.5,
        };
        let s = LoreSnippet::from(&hit);
        assert_eq!(s.trail, "Valley history > The flood");
        assert_eq!(s.text, "The river rose.");
    }
}
