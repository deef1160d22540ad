//! Hearth's network surface for game clients: the versioned WebSocket
//! protocol (`docs/protocol.md`) and the accounts behind it. Touches no
//! world state directly: it speaks to the world through its command channel
//! and reads what the world publishes.
//!
//! # Layout
//! - The wire format is the `hearth-protocol` crate: protocol v1's
//!   messages, their decoding (with the error codes clients see) and
//!   encoding.
//! - [`auth`]: passwords (argon2id), signed tokens with expiry and
//!   revocation, roles per world.
//! - [`http`]: the HTTP surface on the same address: health, readiness,
//!   metrics, accounts.
//! - [`hub`]: what each subscribed client is sent each tick, through
//!   bounded queues that never make the world wait (slow clients are
//!   resynced, then dropped).
//! - [`mirror`]: the hub's copy of what clients see, and areas of interest
//!   (snapshots, deltas, far agents at half rate) over it.
//! - [`dispatch`]: the hub task: frames from the world, requests from the
//!   connections, queries and agents' answers to players.
//! - [`minds`]: what the hub asks of agents' minds and of the reloader,
//!   as traits the binary implements (this crate never thinks).
//! - [`viewer`]: the browser viewer at `/` and the world's map files.
//! - [`ws`]: `GET /ws`, one task per connection: handshake, limits,
//!   batched writes, close codes.

pub mod auth;
pub mod dispatch;
pub mod http;
pub mod hub;
pub mod minds;
pub mod mirror;
pub mod viewer;
pub mod ws;
