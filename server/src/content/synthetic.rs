//! Synthetic agents.
