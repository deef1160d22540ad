//! A client's text frame to a checked message (or the error to send back),
//! and a server message to a frame. Pure data; touches nothing.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::*;

/// Reads a client's text frame of at most `max_bytes` into a checked
/// message, or the error to answer with (carrying the request `id` whenever
/// the frame had a readable one). Never panics.
pub fn decode(text: &str, max_bytes: usize) -> Result<ClientMessage, ProtocolError> {
    if text.len() > max_bytes {
        let id = recover_id(prefix(text, ID_SCAN_BYTES));
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!(
                "the frame has {} bytes, over the limit of {max_bytes}",
                text.len()
            ),
        )
        .with_id(id));
    }
    let members = parse_object(text).map_err(|e| e.with_id(recover_id(text)))?;
    let id = members
        .iter()
        .find(|(key, _)| key == "id")
        .and_then(|(_, value)| RequestId::of_json(value));
    let fail = |code, message: String| ProtocolError::new(code, message).with_id(id.clone());

    let mut kind = None;
    let mut body = Vec::with_capacity(members.len());
    for (key, value) in members {
        if key == "type" {
            kind = Some(value);
        } else {
            body.push((key, value));
        }
    }
    let kind = match kind {
        Some(Json::String(kind)) => kind,
        Some(other) => {
            return Err(fail(
                ErrorCode::BadRequest,
                format!(
                    "field `type`: expected a string naming the message, found {}",
                    describe(other.unexpected())
                ),
            ));
        }
        None => {
            return Err(fail(
                ErrorCode::BadRequest,
                "missing field `type`".to_owned(),
            ));
        }
    };
    let Some(message) = decode_body(&kind, Json::Object(body)) else {
        return Err(fail(ErrorCode::UnknownType, unknown_type(&kind)));
    };
    message
        .map_err(|e| e.to_string())
        .and_then(ClientMessage::checked)
        .map_err(|detail| fail(ErrorCode::BadRequest, format!("{kind}: {detail}")))
}

/// The frame of a server message.
pub fn encode(msg: &ServerMessage) -> String {
    match serde_json::to_string(msg) {
        Ok(text) => text,
        Err(e) => {
            // Unreachable with these types (string keys only); answer
            // something a client can read rather than nothing.
            tracing::error!(error = %e, kind = msg.type_name(), "a server message failed to encode");
            let error = ProtocolError::new(
                ErrorCode::Internal,
                format!("a `{}` message failed to encode", msg.type_name()),
            )
            .with_id(msg.id().cloned());
            serde_json::to_string(&ServerMessage::Error(error)).unwrap_or_else(|_| {
                r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_owned()
            })
        }
    }
}

pub(crate) fn unknown_type(kind: &str) -> String {
    let shown = quote(kind);
    if SERVER_TYPES.contains(&kind) {
        return format!("unknown message type {shown}: the server sends it, clients do not");
    }
    match closest(kind, CLIENT_TYPES) {
        Some(close) => format!("unknown message type {shown}; did you mean `{close}`?"),
        None => format!(
            "unknown message type {shown}; the types are {}",
            list(CLIENT_TYPES)
        ),
    }
}

/// The frame as an object, or `bad_json` (or `bad_request` for a duplicate
/// key), with line and column.
pub(crate) fn parse_object(text: &str) -> Result<Vec<(String, Json)>, ProtocolError> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(members)) => Ok(members),
        Ok(other) => {
            let (line, column) = first_token(text);
            Err(ProtocolError::new(
                ErrorCode::BadJson,
                format!(
                    "expected a JSON object, found {} at line {line} column {column}",
                    describe(other.unexpected())
                ),
            ))
        }
        // Only the tree's own check fails as data: a duplicate key.
        Err(e) if e.is_data() => Err(ProtocolError::new(ErrorCode::BadRequest, e.to_string())),
        Err(e) => Err(ProtocolError::new(
            ErrorCode::BadJson,
            format!("not valid JSON: {e}"),
        )),
    }
}

/// 1-based line and column (in characters) of the first non-blank character.
pub(crate) fn first_token(text: &str) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for c in text.chars() {
        match c {
            '\n' => {
                line += 1;
                column = 1;
            }
            ' ' | '\t' | '\r' => column += 1,
            _ => break,
        }
    }
    (line, column)
}

/// The longest prefix of `text` of at most `max` bytes.
/// The request id of a frame that is not decoded (one refused before
/// reading, such as a rate-limited command), read from its first KiB.
pub fn recover_request_id(text: &str) -> Option<RequestId> {
    recover_id(prefix(text, ID_SCAN_BYTES))
}

pub(crate) fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The request id of a frame that may be broken or cut: the last top-level
/// `id` read before the frame ends or stops being JSON, if it is valid.
pub(crate) fn recover_id(text: &str) -> Option<RequestId> {
    struct Scan<'a>(&'a mut Option<RequestId>);

    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(is_id) = map.next_key_seed(IsId)? {
                if is_id {
                    // The last `id` counts, as in `serde_json::Value`.
                    *self.0 = map.next_value::<MaybeId>()?.0;
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut json = serde_json::Deserializer::from_str(text);
    // Errors are expected: the frame is broken; what was read before stays.
    let _ = de::Deserializer::deserialize_map(&mut json, Scan(&mut found));
    found
}

/// Reads a key, telling whether it is `id`.
pub(crate) struct IsId;

impl<'de> DeserializeSeed<'de> for IsId {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsId {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "id")
    }
}

/// Any JSON value, read as a request id if it is a valid one.
pub(crate) struct MaybeId(Option<RequestId>);

impl<'de> Deserialize<'de> for MaybeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaybeIdVisitor)
    }
}

pub(crate) struct MaybeIdVisitor;

impl<'de> Visitor<'de> for MaybeIdVisitor {
    type Value = MaybeId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaybeId, E> {
        Ok(MaybeId(Some(RequestId::Number(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaybeId, E> {
        Ok(MaybeId(u64::try_from(v).ok().map(RequestId::Number)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeId, E> {
        Ok(MaybeId(RequestId::text(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeId, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(MaybeId(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeId, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(MaybeId(None))
    }
}
