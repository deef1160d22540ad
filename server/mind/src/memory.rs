//! The memory record every agent keeps: what it perceived, said, planned or
//! concluded, with importance, feeling and links. Plain data, shared by the
//! world's memory stream, retrieval, prompts and persistence; touches nothing.

use serde::{Deserialize, Serialize};

/// Game seconds since the world's epoch (Monday 00:00 of day 0), as kept by
/// the world's `GameClock`.
pub type GameSeconds = u64;

pub use hearth_world::mind::MemoryKind;

/// One memory of one agent. Ids are assigned by the agent's stream, from 1,
/// and never reused; the embedding lives beside the record (see
/// [`crate::retrieval::HotMemories`]) because it arrives later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub id: u64,
    pub kind: MemoryKind,
    pub content: String,
    /// 1 (mundane) ..= 10 (life-changing).
    pub importance: u8,
    /// -1 (painful) ..= 1 (joyful).
    pub valence: f32,
    /// 0 (flat) ..= 1 (overwhelming).
    pub intensity: f32,
    pub tags: Vec<String>,
    /// Other agents the memory is about, by slug.
    pub related_agents: Vec<String>,
    /// Player characters the memory is about, by id.
    pub related_characters: Vec<i64>,
    /// Name of the map location where it happened.
    pub location: Option<String>,
    pub created: GameSeconds,
    pub last_accessed: GameSeconds,
    /// 0 for what was perceived; 1 + the deepest evidence for reflections.
    pub depth: u8,
    /// Ids of the memories a reflection was drawn from.
    pub evidence: Vec<u64>,
}

impl Memory {
    /// A depth-0 memory created (and last accessed) at `now`, with no feeling,
    /// tags or links; fill the rest with struct update syntax.
    pub fn new(
        id: u64,
        kind: MemoryKind,
        content: impl Into<String>,
        importance: u8,
        now: GameSeconds,
    ) -> Self {
        Self {
            id,
            kind,
            content: content.into(),
            importance: importance.clamp(1, 10),
            valence: 0.0,
            intensity: 0.0,
            tags: Vec::new(),
            related_agents: Vec::new(),
            related_characters: Vec::new(),
            location: None,
            created: now,
            last_accessed: now,
            depth: 0,
            evidence: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in MemoryKind::ALL {
            assert_eq!(MemoryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MemoryKind::parse("dream"), None);
    }

    #[test]
    fn importance_is_clamped_to_the_scale() {
        assert_eq!(
            Memory::new(1, MemoryKind::Observation, "x", 0, 0).importance,
            1
        );
        assert_eq!(
            Memory::new(1, MemoryKind::Observation, "x", 42, 0).importance,
            10
        );
    }
}
