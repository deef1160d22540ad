//! Error codes and errors as clients see them. Pure data; touches nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::*;

/// What went wrong, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing, unknown, or of the wrong type or range.
    BadRequest,
    /// `type` names no message of this protocol.
    UnknownType,
    /// A message before `hello`, or a second `hello`.
    NotReady,
    /// The token is invalid, expired or revoked.
    Unauthorized,
    /// The role does not allow it.
    Forbidden,
    /// The agent, character, location or object does not exist.
    NotFound,
    /// The agent is outside what this client can see.
    NotVisible,
    /// More commands than the connection's budget.
    RateLimited,
    /// The frame exceeds `max_message_bytes`.
    TooLarge,
    /// The world is paused, reloading, or the mind is busy.
    Unavailable,
    /// A bug.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::BadJson,
        Self::BadRequest,
        Self::UnknownType,
        Self::NotReady,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::NotVisible,
        Self::RateLimited,
        Self::TooLarge,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::NotReady => "not_ready",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NotVisible => "not_visible",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `error` message: its code, what happened in words, and the id of the
/// request it answers when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id: None,
            code,
            message: message.into(),
        }
    }

    /// The same error, answering the request `id` (if known).
    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }
}
