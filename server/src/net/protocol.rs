//! Protocol v1 of game clients (`docs/protocol.md`): being written.
