//! Protocol v1 of the game clients' WebSocket, as `docs/protocol.md`
//! specifies it: the messages each way, the error codes clients see, and the
//! decoding of a client's text frame into a checked [`ClientMessage`] (or the
//! [`ProtocolError`] to send back instead). Pure data: touches no world
//! state, no socket and no clock; [`decode`] never panics on any input.
//!
//! # Layout
//! One file per concern, re-exported flat: `ids` (request ids, references,
//! areas), `client`, `server`, `error`, `codec` (decode and encode) and
//! `tree` (the JSON tree the decoder reads).
//! - [`decode`] and [`encode`]: a client's frame to a [`ClientMessage`]; a
//!   [`ServerMessage`] to a frame.
//! - [`ClientMessage`]: what clients send, one body struct per `type`.
//!   Every field is checked before a message is returned: unknown, missing,
//!   wrongly typed and out-of-range fields are `bad_request`s naming the
//!   field (and the range).
//! - [`ServerMessage`]: what the server sends; plain data the hub fills
//!   ([`Entity`] keeps a full entity and computes its delta).
//! - [`ErrorCode`] and [`ProtocolError`]: errors as clients see them.
//!
//! [`decode`] first reads the frame into an ordered JSON tree (duplicate keys
//! are refused, so a typo never passes silently), recovers the request `id`
//! (so that every error to a request can carry it, even when the rest of the
//! frame is broken), dispatches on `type`, and deserializes the body through
//! a deserializer that tracks the field being read, to name it in errors.
//! `ClientMessage` also derives `Deserialize`, and `ServerMessage` derives
//! both ways, so Rust test clients can speak the protocol with `serde_json`.
//!
//! # Testing
//! The unit tests decode every example of `docs/protocol.md` and run a
//! property test (arbitrary strings, arbitrary JSON, mutated valid messages)
//! with a few hundred cases. The same property with one million cases is
//! `#[ignore]`d; run it in release (about 30 s once built) with
//!
//! ```text
//! cargo test -p hearth-protocol --release --lib tests::fuzz_decoder_one_million -- --ignored
//! ```

mod client;
mod codec;
mod error;
mod ids;
mod server;
#[cfg(test)]
mod tests;
mod tree;

pub use client::*;
pub use codec::*;
pub use error::*;
pub use ids::*;
pub use server::*;
use tree::*;

/// The protocol's version.
pub const VERSION: u32 = 1;
/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "hearth.v1.json";
/// Default of the `max message size` limit, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest string request `id`, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Largest `w` and `h` of a subscribed rectangle, in tiles (a circle's `r`
/// is at most half of it).
pub const MAX_AREA_SIZE: f32 = 4096.0;
/// Largest coordinate a client may name, in tiles (areas may start at
/// negative coordinates down to its opposite; `move_to` targets may not).
pub const MAX_COORDINATE: f32 = 65_536.0;
/// Longest `say` text, in characters, after trimming.
pub const MAX_SAY_CHARS: usize = 500;
/// Longest `query` of `agent_memories` and `agent_prompt`, in characters.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most memories `agent_memories` may ask for.
pub const MAX_MEMORIES_K: u32 = 50;
/// Memories `agent_memories` returns when it gives no `k` (as the
/// `hearth memories query` command does).
pub const DEFAULT_MEMORIES_K: u32 = 10;
/// Allowed `set_time_scale` scales: game minutes per real second.
pub const TIME_SCALES: std::ops::RangeInclusive<u32> = 1..=60;
/// Longest world, location or object name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest `hello` token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Bytes of an oversized frame scanned for its request `id`.
const ID_SCAN_BYTES: usize = 1024;
/// Longest piece of client input quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 40;
/// Longest detail of a `bad_request` message.
const MAX_DETAIL_CHARS: usize = 400;
