//! Cognition that is not the ECS: what agents remember ([`memory`]), the
//! embedders that turn text into vectors ([`embed`]), scored recall
//! ([`retrieval`]), world lore ([`lore`]) and prompt assembly ([`prompt`]).
//! Nothing here touches the ECS world; the world's systems call these pure
//! functions, and the async parts (embedding, database) run off its thread.

pub mod embed;
pub mod lore;
pub mod memory;
pub mod prompt;
pub mod retrieval;
