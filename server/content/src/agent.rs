//! The agent file format (version 1): one JSON file per agent, written by
//! designers, as serde types with a JSON Schema (`hearth schema agent`).
//! Pure data: no I/O here. These types mirror the file exactly; checks that
//! need more than the file's shape (times, cross-references) live in
//! `content::validate`, which turns a file into an [`AgentDef`](super::AgentDef).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version this binary reads and writes.
pub const AGENT_FORMAT_VERSION: u32 = 1;

/// One agent of the world, as a designer writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Hearth agent")]
pub struct AgentFile {
    /// Path or URL of this schema, for editors' autocompletion. Ignored by Hearth.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Format version of this file. This release reads version 1.
    pub version: u32,
    /// Stable identifier: lowercase letters, digits, '-' and '_'. Other files
    /// refer to the agent by it, and it never changes once the world has run.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$"))]
    pub id: String,
    /// Display name.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[schemars(range(min = 0, max = 10000))]
    pub age: u32,
    /// What the agent does for a living (or "retired", "student"…).
    #[serde(default)]
    pub occupation: String,
    /// Lasting disposition in a sentence or two: how they hold up, what they are made of.
    #[serde(default)]
    pub constitution: String,
    /// Life story, in prose. The mind quotes it in prompts.
    #[serde(default)]
    pub background: String,
    #[serde(default)]
    pub traits: Traits,
    #[serde(default)]
    pub likes: Vec<String>,
    #[serde(default)]
    pub dislikes: Vec<String>,
    pub goals: Goals,
    /// Name of the map location the agent lives at (it sleeps there).
    pub home: String,
    /// Name of the map location the agent starts in.
    pub start_location: String,
    /// The agent's routine. Entries may not overlap unless one is flexible.
    #[serde(default)]
    pub schedule: Vec<ScheduleEntry>,
    /// How the agent feels about others at the start.
    #[serde(default)]
    pub relationships: Vec<RelationshipSeed>,
    /// Memories the agent starts with.
    #[serde(default)]
    pub memories: Vec<MemorySeed>,
    /// Model settings for this agent, overriding the world's. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Traits {
    #[serde(default)]
    pub personality: BigFive,
    /// Physical traits: "tall", "strong hands", "bad knee"…
    #[serde(default)]
    pub physical: Vec<String>,
    /// Skills: "baking", "carpentry", "storytelling"…
    #[serde(default)]
    pub abilities: Vec<String>,
}

/// Personality on the Big Five, each from 0 (low) to 1 (high).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BigFive {
    #[schemars(range(min = 0.0, max = 1.0))]
    pub openness: f32,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub conscientiousness: f32,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub extraversion: f32,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub agreeableness: f32,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub neuroticism: f32,
}

impl Default for BigFive {
    fn default() -> Self {
        Self {
            openness: 0.5,
            conscientiousness: 0.5,
            extraversion: 0.5,
            agreeableness: 0.5,
            neuroticism: 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Goals {
    #[schemars(length(min = 1))]
    pub primary: String,
    #[serde(default)]
    pub secondary: Vec<String>,
}

/// Which days an entry applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Days {
    /// "daily", "weekdays" (Monday to Friday) or "weekends".
    Named(DaySet),
    /// A list of days.
    List(Vec<Weekday>),
}

impl Default for Days {
    fn default() -> Self {
        Days::Named(DaySet::Daily)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DaySet {
    Daily,
    Weekdays,
    Weekends,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// 0 for Monday .. 6 for Sunday.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Days {
    /// A bit per weekday, Monday = bit 0.
    pub fn mask(&self) -> u8 {
        match self {
            Days::Named(DaySet::Daily) => 0b111_1111,
            Days::Named(DaySet::Weekdays) => 0b001_1111,
            Days::Named(DaySet::Weekends) => 0b110_0000,
            Days::List(days) => days.iter().fold(0, |m, d| m | (1 << d.index())),
        }
    }
}

/// One block of the routine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Days this entry applies to; every day when omitted.
    #[serde(default)]
    pub days: Days,
    /// Start time, "HH:MM" (24-hour).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End time, "HH:MM"; "24:00" is midnight at the end of the day. An end
    /// earlier than the start crosses midnight ("22:00" to "06:00").
    #[schemars(regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub end: String,
    /// What the agent does: "bake bread", "sleep", "drink at the tavern".
    #[schemars(length(min = 1, max = 200))]
    pub activity: String,
    /// Name of the map location where it happens.
    pub location: String,
    /// Name of an object inside that location to use ("oven", "bed"). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// 1 (could skip) to 10 (never skips). Higher wins when entries compete.
    #[serde(default = "default_priority")]
    #[schemars(range(min = 1, max = 10))]
    pub priority: u8,
    /// A flexible entry may shift or be interrupted and may overlap others.
    #[serde(default)]
    pub flexible: bool,
}

fn default_priority() -> u8 {
    5
}

/// How the agent feels about another agent at the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationshipSeed {
    /// The other agent's `id`.
    pub target: String,
    /// "friend", "family", "rival", "colleague", "neighbor", "partner"…
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[a-z][a-z_-]{0,39}$"))]
    pub kind: String,
    /// −100 (hatred) to 100 (love).
    #[schemars(range(min = -100.0, max = 100.0))]
    pub affection: f32,
    /// 0 (none) to 100 (complete).
    #[schemars(range(min = 0.0, max = 100.0))]
    pub trust: f32,
}

/// A memory the agent starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySeed {
    #[schemars(length(min = 1, max = 8000))]
    pub content: String,
    /// 1 (mundane) to 10 (life-changing); the mind rates it when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub importance: Option<u8>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Per-agent model settings; every field overrides the world's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Base URL of an OpenAI-compatible API, e.g. "http://127.0.0.1:11434/v1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
}

/// The JSON Schema of agent files, as `hearth schema agent` prints it.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AgentFile)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_masks() {
        assert_eq!(Days::default().mask(), 0x7f);
        assert_eq!(Days::Named(DaySet::Weekends).mask(), 0b110_0000);
        assert_eq!(Days::List(vec![Weekday::Mon, Weekday::Wed]).mask(), 0b101);
    }

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let text = r#"{"version": 1, "id": "mei", "name": "Mei", "age": 30,
            "goals": {"primary": "bake"}, "home": "Bakery", "start_location": "Bakery",
            "schedule": [{"start": "06:00", "end": "14:00", "activity": "bake", "location": "Bakery"}]}"#;
        let f: AgentFile = serde_json::from_str(text).expect("parses");
        assert_eq!(f.schedule[0].priority, 5);
        assert_eq!(f.schedule[0].days, Days::Named(DaySet::Daily));
        assert_eq!(f.traits.personality, BigFive::default());
    }

    #[test]
    fn the_schema_forbids_unknown_fields_and_names_required_ones() {
        let s = schema();
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
        let required = s["required"].as_array().expect("required");
        for field in [
            "version",
            "id",
            "name",
            "age",
            "goals",
            "home",
            "start_location",
        ] {
            assert!(required.contains(&serde_json::json!(field)), "{field}");
        }
    }
}
