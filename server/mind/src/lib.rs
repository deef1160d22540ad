//! Cognition that is not the ECS: what agents remember ([`memory`]) and the
//! stream that turns the world's events into memories, reflections and
//! metacognition ([`stream`]), the embedders that turn text into vectors
//! ([`embed`]), scored recall ([`retrieval`]), world lore ([`lore`], kept in the database by [`lore_sync`]) and
//! prompt assembly ([`prompt`]); the service that runs the stream beside a
//! live world, embedding and storing what it makes ([`service`]); agents'
//! replies to players and the prompts designers inspect ([`reply`]). Nothing here touches the ECS world: it is
//! fed the world's events, and the async parts (embedding, database) run off
//! the world's thread.

pub mod cognition;
pub mod embed;
pub mod llm;
pub mod lore;
pub mod lore_sync;
pub mod memory;
pub mod openai;
pub mod prompt;
pub mod reply;
pub mod retrieval;
pub mod service;
pub mod stream;
