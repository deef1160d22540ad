//! The protocol's unit tests: every example of `docs/protocol.md` decoded,
//! and the decoder fuzzed.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use super::*;

const MAX: usize = DEFAULT_MAX_MESSAGE_BYTES;
const SPEC: &str = include_str!("../../../docs/protocol.md");

fn ok(text: &str) -> ClientMessage {
    decode(text, MAX).unwrap_or_else(|e| panic!("{text} → {e}"))
}

fn err(text: &str) -> ProtocolError {
    match decode(text, MAX) {
        Ok(m) => panic!("{text} decoded as {m:?}"),
        Err(e) => e,
    }
}

/// An error of `code` whose message mentions every one of `words`.
#[track_caller]
fn assert_error(text: &str, code: ErrorCode, words: &[&str]) -> ProtocolError {
    let e = err(text);
    assert_eq!(e.code, code, "{text} → {e}");
    for word in words {
        assert!(e.message.contains(word), "{text} → {e}: no {word:?}");
    }
    e
}

/// The JSON examples of the specification: each value of its fenced
/// `json` blocks (which must all be JSON), and inline code that parses
/// as an object with a `type`. Original text, in document order.
fn spec_examples() -> Vec<String> {
    use pulldown_cmark::{CodeBlockKind, Event as Md, Parser, Tag, TagEnd};
    let mut examples = Vec::new();
    let mut block: Option<String> = None;
    for event in Parser::new(SPEC) {
        match event {
            Md::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == "json" => {
                block = Some(String::new());
            }
            Md::Text(text) => {
                if let Some(b) = &mut block {
                    b.push_str(&text);
                }
            }
            Md::End(TagEnd::CodeBlock) => {
                let Some(b) = block.take() else { continue };
                let mut stream = serde_json::Deserializer::from_str(&b).into_iter::<Value>();
                let mut start = 0;
                while let Some(value) = stream.next() {
                    if let Err(e) = value {
                        panic!("a json block of docs/protocol.md is not JSON: {e}\n{b}");
                    }
                    let end = stream.byte_offset();
                    examples.push(b[start..end].trim().to_owned());
                    start = end;
                }
            }
            Md::Code(code) if code.starts_with('{') => {
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&code)
                    && m.contains_key("type")
                {
                    examples.push(code.to_string());
                }
            }
            _ => {}
        }
    }
    examples
}

fn type_of(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap();
    value["type"].as_str().unwrap().to_owned()
}

fn client_examples() -> Vec<String> {
    spec_examples()
        .into_iter()
        .filter(|t| decode(t, MAX).is_ok())
        .collect()
}

#[test]
fn every_example_of_the_spec_decodes() {
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    for text in spec_examples() {
        let kind = type_of(&text);
        let as_client = CLIENT_TYPES
            .contains(&kind.as_str())
            .then(|| decode(&text, MAX));
        let as_server = SERVER_TYPES
            .contains(&kind.as_str())
            .then(|| serde_json::from_str::<ServerMessage>(&text));
        match (as_client, as_server) {
            (Some(Ok(msg)), None | Some(Err(_))) => {
                let derived: ClientMessage = serde_json::from_str(&text).unwrap();
                assert_eq!(derived, msg, "serde's derive agrees with decode");
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(serde_json::to_value(msg.id()).unwrap(), value["id"]);
                assert_eq!(msg.type_name(), kind);
                client.insert(kind);
            }
            (None | Some(Err(_)), Some(Ok(msg))) => {
                let original: Value = serde_json::from_str(&text).unwrap();
                let encoded: Value = serde_json::from_str(&encode(&msg)).unwrap();
                assert_eq!(encoded, original, "encode gives the example back");
                assert_eq!(msg.type_name(), kind);
                server.insert(kind);
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(client, CLIENT_TYPES.iter().map(|t| t.to_string()).collect());
    assert_eq!(server, SERVER_TYPES.iter().map(|t| t.to_string()).collect());
}

#[test]
fn error_codes_are_those_of_the_spec() {
    let section = SPEC
        .split("\n## Errors")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let in_spec: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(in_spec, ours);
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn client_types_are_serdes_names() {
    for text in client_examples() {
        let msg = ok(&text);
        let encoded: Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(encoded["type"], msg.type_name());
        assert!(CLIENT_TYPES.contains(&msg.type_name()));
    }
}

#[test]
fn bad_json_says_where() {
    let e = assert_error(
        r#"{"type": "say" "id": 1}"#,
        ErrorCode::BadJson,
        &["line 1", "column 16"],
    );
    assert_eq!(e.id, None);
    assert_error("", ErrorCode::BadJson, &["EOF", "line 1"]);
    assert_error("{", ErrorCode::BadJson, &["line 1"]);
    assert_error(
        r#"{"type": "pause", "id": 1,}"#,
        ErrorCode::BadJson,
        &["line 1", "column 27"],
    );
    assert_error(
        "[1, 2]",
        ErrorCode::BadJson,
        &["expected a JSON object", "an array", "line 1 column 1"],
    );
    assert_error(
        "\n  \"pause\"",
        ErrorCode::BadJson,
        &["the string \"pause\"", "line 2 column 3"],
    );
    assert_error("null", ErrorCode::BadJson, &["found null"]);
    assert_error("{} {}", ErrorCode::BadJson, &["trailing characters"]);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_error(&deep, ErrorCode::BadJson, &["recursion limit"]);
    assert_error(
        r#"{"type": "set_time_scale", "id": 1, "scale": 1e999}"#,
        ErrorCode::BadJson,
        &["out of range"],
    );
}

#[test]
fn broken_frames_keep_their_id() {
    let e = err(r#"{"id": "r-1", "type": "say", "text": "unterminated"#);
    assert_eq!((e.code, e.id), (ErrorCode::BadJson, RequestId::text("r-1")));
    let e = err(r#"{"type": "say", "id": 12, "text": "hi",}"#);
    assert_eq!(e.id, Some(RequestId::Number(12)));
    let e = err(r#"{"id": [1, {"a": 2}], "type": "say", "id": 3, "#);
    assert_eq!(e.id, Some(RequestId::Number(3)), "the last id read");
    let e = err(r#"{"id": 3, "type": "say", "id": -3, "#);
    assert_eq!(e.id, None, "the last id counts, even invalid");
    let e = err(r#"{"type": "say", "text": "no id", "oops"#);
    assert_eq!(e.id, None);
}

#[test]
fn too_large_before_parsing() {
    let text = format!(
        r#"{{"type": "say", "id": 7, "text": "{}"}}"#,
        "a".repeat(100)
    );
    let e = decode(&text, 64).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert_eq!(e.id, Some(RequestId::Number(7)), "the id is still read");
    assert!(e.message.contains("64"), "{e}");
    assert!(decode(&text, text.len()).is_ok(), "the limit is inclusive");
    let e = decode(&"é".repeat(2000), 100).unwrap_err();
    assert_eq!((e.code, e.id), (ErrorCode::TooLarge, None));
}

#[test]
fn unknown_types_suggest_the_closest() {
    let e = assert_error(
        r#"{"type": "sya", "id": 1}"#,
        ErrorCode::UnknownType,
        &["\"sya\"", "did you mean `say`?"],
    );
    assert_eq!(e.id, Some(RequestId::Number(1)));
    assert_error(
        r#"{"type": "moveTo", "id": 1}"#,
        ErrorCode::UnknownType,
        &["`move_to`"],
    );
    assert_error(
        r#"{"type": "SetTimeScale", "id": 1}"#,
        ErrorCode::UnknownType,
        &["`set_time_scale`"],
    );
    assert_error(
        r#"{"type": "subscirbe", "id": 1}"#,
        ErrorCode::UnknownType,
        &["`subscribe`"],
    );
    assert_error(
        r#"{"type": "welcome", "id": 1}"#,
        ErrorCode::UnknownType,
        &["the server sends it"],
    );
    assert_error(
        r#"{"type": "dance", "id": 1}"#,
        ErrorCode::UnknownType,
        &["the types are", "`hello`", "`reload_content`"],
    );
    let long = format!(r#"{{"type": "{}", "id": 1}}"#, "x".repeat(5000));
    let e = assert_error(&long, ErrorCode::UnknownType, &["…"]);
    assert!(
        e.message.len() < 1000,
        "long input is not echoed: {}",
        e.message.len()
    );
}

#[test]
fn the_type_field_must_be_a_string() {
    let e = assert_error(
        r#"{"id": "x", "text": "hi"}"#,
        ErrorCode::BadRequest,
        &["missing field `type`"],
    );
    assert_eq!(e.id, RequestId::text("x"));
    assert_error(
        r#"{"type": 5, "id": 1}"#,
        ErrorCode::BadRequest,
        &["field `type`", "the number 5"],
    );
}

#[test]
fn bad_requests_name_the_field() {
    let e = assert_error(
        r#"{"type": "say", "id": 5}"#,
        ErrorCode::BadRequest,
        &["say:", "missing field `text`"],
    );
    assert_eq!(e.id, Some(RequestId::Number(5)));
    assert_error(
        r#"{"type": "say", "text": "hi"}"#,
        ErrorCode::BadRequest,
        &["missing field `id`"],
    );
    assert_error(
        r#"{"type": "say", "id": 5, "txt": "hi"}"#,
        ErrorCode::BadRequest,
        &["unknown field \"txt\"", "did you mean `text`?"],
    );
    assert_error(
        r#"{"type": "pause", "id": 5, "now": true}"#,
        ErrorCode::BadRequest,
        &["unknown field \"now\"", "the fields are `id`"],
    );
    assert_error(
        r#"{"type": "say", "id": 5, "text": 42}"#,
        ErrorCode::BadRequest,
        &["field `text`", "expected a string", "the number 42"],
    );
    assert_error(
        r#"{"type": "say", "id": 5, "text": "hi", "to": "mei"}"#,
        ErrorCode::BadRequest,
        &["field `to`", "entity id", "\"mei\""],
    );
    assert_error(
        r#"{"type": "agent_detail", "id": 5, "agent": "c:ada"}"#,
        ErrorCode::BadRequest,
        &["field `agent`", "an agent id"],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": "40", "h": 30}}"#,
        ErrorCode::BadRequest,
        &["field `area.w`", "expected a number", "\"40\""],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": [0, 0, 40, 30]}"#,
        ErrorCode::BadRequest,
        &["field `area`", "expected an object", "an array"],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4}}"#,
        ErrorCode::BadRequest,
        &["field `area`", "misses `h`"],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4, "h": 4, "r": 3}}"#,
        ErrorCode::BadRequest,
        &["field `area`", "not both"],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4, "h": 4, "d": 3}}"#,
        ErrorCode::BadRequest,
        &["field `area`", "unknown field \"d\""],
    );
    assert_error(
        r#"{"type": "subscribe", "id": 2, "area": {}}"#,
        ErrorCode::BadRequest,
        &["field `area`", "needs"],
    );
    assert_error(
        r#"{"type": "move_to", "id": 4, "x": 1, "y": 2, "location": "Market"}"#,
        ErrorCode::BadRequest,
        &["not both"],
    );
    assert_error(
        r#"{"type": "move_to", "id": 4}"#,
        ErrorCode::BadRequest,
        &["missing field `x` and `y`, or `location`"],
    );
    assert_error(
        r#"{"type": "move_to", "id": 4, "x": 1}"#,
        ErrorCode::BadRequest,
        &["missing field `y`"],
    );
    assert_error(
        r#"{"type": "move_to", "id": 4, "x": 1, "y": null}"#,
        ErrorCode::BadRequest,
        &["missing field `y`"],
    );
    assert_error(
        r#"{"type": "set_time_scale", "id": 1, "scale": 2.5}"#,
        ErrorCode::BadRequest,
        &["field `scale`", "an integer", "2.5"],
    );
    assert_error(
        r#"{"type": "set_time_scale", "id": 1, "scale": -1}"#,
        ErrorCode::BadRequest,
        &["field `scale`", "-1"],
    );
    assert_error(
        r#"{"type": "say", "id": 1, "text": "a", "text": "b"}"#,
        ErrorCode::BadRequest,
        &["duplicate field \"text\"", "line 1"],
    );
    let e = err(r#"{"type": "say", "id": 1, "text": "a", "text": "b"}"#);
    assert_eq!(e.id, Some(RequestId::Number(1)));
    assert_error(
        r#"{"type": "hello", "id": 1, "world": "valley", "token": 7}"#,
        ErrorCode::BadRequest,
        &["field `token`", "expected a string"],
    );
}

#[test]
fn invalid_ids_are_bad_requests_without_id() {
    let long = format!(r#"{{"type": "pause", "id": "{}"}}"#, "x".repeat(65));
    for text in [
        r#"{"type": "pause", "id": -1}"#,
        r#"{"type": "pause", "id": 1.5}"#,
        r#"{"type": "pause", "id": ""}"#,
        r#"{"type": "pause", "id": null}"#,
        r#"{"type": "pause", "id": {"n": 1}}"#,
        r#"{"type": "pause", "id": 18446744073709551616}"#,
        &long,
    ] {
        let e = assert_error(text, ErrorCode::BadRequest, &["field `id`", "request id"]);
        assert_eq!(e.id, None, "{text}");
    }
    let at_limit = format!(r#"{{"type": "pause", "id": "{}"}}"#, "é".repeat(64));
    assert_eq!(ok(&at_limit).id(), &RequestId::Text("é".repeat(64)));
}

#[test]
fn ranges_are_checked_after_parsing() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{"type": "say", "id": 1, "text": "   "}"#,
            &["field `text`", "1 to 500", "found 0"],
        ),
        (
            r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": "Bo", "k": 0}"#,
            &["field `k`", "from 1 to 50", "found 0"],
        ),
        (
            r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": "Bo", "k": 51}"#,
            &["field `k`", "found 51"],
        ),
        (
            r#"{"type": "set_time_scale", "id": 1, "scale": 0}"#,
            &["field `scale`", "from 1 to 60"],
        ),
        (
            r#"{"type": "set_time_scale", "id": 1, "scale": 61}"#,
            &["field `scale`", "found 61"],
        ),
        (
            r#"{"type": "set_time_scale", "id": 1, "scale": 5000000000}"#,
            &["field `scale`"],
        ),
        (
            r#"{"type": "subscribe", "id": 1, "area": {"x": 0, "y": 0, "w": -1, "h": 3}}"#,
            &["field `area.w`", "from 0 to 4096", "found -1"],
        ),
        (
            r#"{"type": "subscribe", "id": 1, "area": {"x": 0, "y": 0, "w": 5000, "h": 3}}"#,
            &["field `area.w`"],
        ),
        (
            r#"{"type": "subscribe", "id": 1, "area": {"cx": 0, "cy": 0, "r": 3000}}"#,
            &["field `area.r`", "from 0 to 2048"],
        ),
        (
            r#"{"type": "subscribe", "id": 1, "area": {"cx": 1e39, "cy": 0, "r": 3}}"#,
            &["field `area.cx`", "inf"],
        ),
        (
            r#"{"type": "move_to", "id": 1, "x": -1, "y": 2}"#,
            &["field `x`", "from 0 to 65536"],
        ),
        (
            r#"{"type": "move_to", "id": 1, "location": " "}"#,
            &["field `location`", "blank"],
        ),
        (
            r#"{"type": "interact", "id": 1, "object": ""}"#,
            &["field `object`", "blank"],
        ),
        (
            r#"{"type": "hello", "id": 1, "world": ""}"#,
            &["field `world`"],
        ),
        (
            r#"{"type": "hello", "id": 1, "world": "valley", "token": ""}"#,
            &["field `token`", "1 to 4096 bytes"],
        ),
    ];
    for (text, words) in cases {
        let e = assert_error(text, ErrorCode::BadRequest, words);
        assert_eq!(e.id, Some(RequestId::Number(1)), "{text}");
    }
    let long_say = json!({"type": "say", "id": 1, "text": "é".repeat(501)}).to_string();
    assert_error(&long_say, ErrorCode::BadRequest, &["found 501"]);
    let long_query =
        json!({"type": "agent_prompt", "id": 1, "agent": "a:mei", "query": "q".repeat(501)})
            .to_string();
    assert_error(
        &long_query,
        ErrorCode::BadRequest,
        &["field `query`", "0 to 500"],
    );
    let ok_say =
        json!({"type": "say", "id": 1, "text": format!("  {}\n", "é".repeat(500))}).to_string();
    let ClientMessage::Say(say) = ok(&ok_say) else {
        panic!()
    };
    assert_eq!(say.text, "é".repeat(500), "trimmed");
}

#[test]
fn messages_decode_to_their_fields() {
    assert_eq!(
        ok(r#"{"type": "move_to", "id": "m", "x": 20, "y": 11.5}"#),
        ClientMessage::MoveTo(MoveTo {
            id: RequestId::Text("m".into()),
            target: Destination::Tile { x: 20.0, y: 11.5 },
        })
    );
    assert_eq!(
        ok(r#"{"type": "say", "id": 5, "text": "  Hello Mei! ", "to": "a:mei"}"#),
        ClientMessage::Say(Say {
            id: RequestId::Number(5),
            text: "Hello Mei!".into(),
            to: Some(EntityRef::Agent("mei".into())),
        })
    );
    assert_eq!(
        ok(r#"{"type": "start_conversation", "id": 6, "with": "c:Ada.B-1"}"#),
        ClientMessage::StartConversation(StartConversation {
            id: RequestId::Number(6),
            with: EntityRef::Character("Ada.B-1".into()),
        })
    );
    let ClientMessage::AgentMemories(q) =
        ok(r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": ""}"#)
    else {
        panic!()
    };
    assert_eq!(
        (q.k, q.query.as_str(), q.agent.slug()),
        (DEFAULT_MEMORIES_K, "", "mei")
    );
    let ClientMessage::Subscribe(s) = ok(r#"{"type": "subscribe", "id": 2, "area": null}"#) else {
        panic!()
    };
    assert_eq!(s.area, None);
    let ClientMessage::Hello(h) =
        ok(r#"{"type": "hello", "id": 0, "world": "valley", "token": null}"#)
    else {
        panic!()
    };
    assert_eq!((h.id, h.token), (RequestId::Number(0), None));
}

#[test]
fn ids_are_echoed_exactly() {
    for id in [
        json!(0),
        json!(u64::MAX),
        json!("r-1"),
        json!("0"),
        json!(" spaced "),
    ] {
        let text = json!({"type": "pause", "id": id}).to_string();
        let msg = ok(&text);
        let answer = encode(&ServerMessage::Ok {
            id: msg.id().clone(),
        });
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer, json!({"type": "ok", "id": id}));
        let bad = json!({"type": "pause", "id": id, "extra": 1}).to_string();
        let error: ServerMessage = err(&bad).into();
        let error: Value = serde_json::from_str(&encode(&error)).unwrap();
        assert_eq!(error["id"], id);
        assert_eq!(error["code"], "bad_request");
    }
    let error = encode(&ProtocolError::new(ErrorCode::BadJson, "x").into());
    assert_eq!(error, r#"{"type":"error","code":"bad_json","message":"x"}"#);
}

#[test]
fn entity_refs_parse_and_print() {
    for (text, parsed) in [
        ("a:mei", Some(EntityRef::Agent("mei".into()))),
        ("a:0-bo_2", Some(EntityRef::Agent("0-bo_2".into()))),
        ("c:Ada", Some(EntityRef::Character("Ada".into()))),
        ("a:Mei", None),
        ("a:-mei", None),
        ("a:", None),
        ("c:", None),
        ("c:a b", None),
        ("x:mei", None),
        ("mei", None),
    ] {
        assert_eq!(text.parse::<EntityRef>().ok(), parsed, "{text}");
        if let Some(p) = parsed {
            assert_eq!(p.to_string(), text);
        }
    }
    assert!(format!("a:{}", "m".repeat(63)).parse::<EntityRef>().is_ok());
    assert!(
        format!("a:{}", "m".repeat(64))
            .parse::<EntityRef>()
            .is_err()
    );
    assert_eq!("a:mei".parse::<AgentRef>().unwrap().slug(), "mei");
    assert!("c:ada".parse::<AgentRef>().is_err());
}

#[test]
fn deltas_carry_what_changed_and_nulls() {
    let before = Entity {
        id: EntityRef::Character("ada".into()),
        name: "Ada".into(),
        x: 14.0,
        y: 8.0,
        facing: Facing::W,
        activity: None,
        location: Some("Bakery".into()),
        mood: None,
        speech: Some("Good morning!".into()),
    };
    assert_eq!(before.changes_since(&before), None);
    let mut after = before.clone();
    after.x = 14.5;
    after.speech = None;
    let change = after.changes_since(&before).unwrap();
    assert_eq!(
        serde_json::to_value(&change).unwrap(),
        json!({"id": "c:ada", "x": 14.5, "speech": null})
    );
    let back: EntityState =
        serde_json::from_value(json!({"id": "c:ada", "x": 14.5, "speech": null})).unwrap();
    assert_eq!(back, change);
    let full = serde_json::to_value(EntityState::from(before)).unwrap();
    assert_eq!(
        full,
        json!({"id": "c:ada", "kind": "character", "name": "Ada", "x": 14.0, "y": 8.0,
               "facing": "w", "activity": null, "location": "Bakery", "mood": null,
               "speech": "Good morning!"})
    );
}

#[test]
fn areas_contain_and_tell_far_from_near() {
    let rect = Area::Rect {
        x: 0.0,
        y: 0.0,
        w: 40.0,
        h: 30.0,
    };
    assert_eq!((rect.centre(), rect.radius()), ((20.0, 15.0), 25.0));
    assert!(rect.contains(40.0, 30.0) && !rect.contains(40.1, 0.0));
    assert!(!rect.is_far(20.0, 20.0) && rect.is_far(35.0, 15.0));
    let circle = Area::Circle {
        cx: 20.0,
        cy: 15.0,
        r: 12.0,
    };
    assert!(circle.contains(20.0, 27.0) && !circle.contains(30.0, 25.0));
    assert!(!circle.is_far(25.0, 15.0) && circle.is_far(27.0, 15.0));
}

#[test]
fn suggestions_are_close_or_nothing() {
    assert_eq!(closest("sya", CLIENT_TYPES), Some("say"));
    assert_eq!(
        closest("agent_memory", CLIENT_TYPES),
        Some("agent_memories")
    );
    assert_eq!(closest("reload", CLIENT_TYPES), None);
    assert_eq!(closest("zzz", CLIENT_TYPES), None);
    assert_eq!(closest("", CLIENT_TYPES), None);
    assert_eq!(snake_case("startConversation"), "start_conversation");
    assert_eq!(snake_case("MOVE-TO"), "move_to");
}

// -- Property tests ---------------------------------------------------

/// Every field name of the client messages, and a few of the server's.
const KEYS: &[&str] = &[
    "type", "id", "world", "token", "area", "x", "y", "w", "h", "cx", "cy", "r", "location",
    "text", "to", "with", "object", "agent", "query", "k", "scale", "tick",
];

/// Strings worth trying as values.
const WORDS: &[&str] = &[
    "hello",
    "say",
    "move_to",
    "subscribe",
    "agent_memories",
    "welcome",
    "sya",
    "a:mei",
    "c:ada",
    "a:",
    "c:a b",
    "Bakery",
    "",
    " ",
    "\u{0}",
    "é",
    "1",
    "-1",
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures print their minimal input; nothing is written next
        // to the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-100i64..100).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// An object with a `type` (known or not), maybe an `id`, and fields.
fn arb_message_like() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        prop::sample::select(CLIENT_TYPES).prop_map(Value::from),
        prop::sample::select(SERVER_TYPES).prop_map(Value::from),
        arb_json(),
    ];
    let id = prop_oneof![
        any::<u32>().prop_map(Value::from),
        "\\PC{0,70}".prop_map(Value::String),
        arb_json()
    ];
    (
        kind,
        prop::option::of(id),
        prop::collection::vec((arb_key(), arb_json()), 0..5),
    )
        .prop_map(|(kind, id, fields)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), kind);
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            m.extend(fields);
            Value::Object(m)
        })
}

fn arb_id() -> impl Strategy<Value = RequestId> {
    prop_oneof![
        any::<u64>().prop_map(RequestId::Number),
        "\\PC{1,64}".prop_map(RequestId::Text),
    ]
}

fn arb_entity() -> impl Strategy<Value = EntityRef> {
    prop_oneof![
        "[a-z0-9][a-z0-9_-]{0,20}".prop_map(EntityRef::Agent),
        "[A-Za-z0-9_.-]{1,20}".prop_map(EntityRef::Character),
    ]
}

fn arb_agent() -> impl Strategy<Value = AgentRef> {
    "[a-z0-9][a-z0-9_-]{0,20}".prop_map(|s| AgentRef::new(&s).unwrap())
}

/// Quarter tiles in `min..=max`: exact in f32 and in JSON.
fn tiles(min: i32, max: i32) -> impl Strategy<Value = f32> {
    (min * 4..=max * 4).prop_map(|q| q as f32 / 4.0)
}

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 '-]{0,30}"
}

/// Trimmed text of 1.. characters.
fn arb_text() -> impl Strategy<Value = String> {
    "\\PC{1,60}"
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("not blank", |s| !s.is_empty())
}

fn arb_client_message() -> impl Strategy<Value = ClientMessage> {
    let area =
        prop_oneof![
            (
                tiles(-500, 500),
                tiles(-500, 500),
                tiles(0, 4096),
                tiles(0, 4096)
            )
                .prop_map(|(x, y, w, h)| Area::Rect { x, y, w, h }),
            (tiles(-500, 500), tiles(-500, 500), tiles(0, 2048))
                .prop_map(|(cx, cy, r)| Area::Circle { cx, cy, r }),
        ];
    let target = prop_oneof![
        (tiles(0, 1000), tiles(0, 1000)).prop_map(|(x, y)| Destination::Tile { x, y }),
        arb_name().prop_map(Destination::Location),
    ];
    let request = || arb_id().prop_map(|id| Request { id });
    use ClientMessage as M;
    prop_oneof![
        (
            arb_id(),
            arb_name(),
            prop::option::of("[A-Za-z0-9._-]{1,80}")
        )
            .prop_map(|(id, world, token)| M::Hello(Hello { id, world, token })),
        (arb_id(), prop::option::of(area))
            .prop_map(|(id, area)| M::Subscribe(Subscribe { id, area })),
        request().prop_map(M::Unsubscribe),
        (arb_id(), target).prop_map(|(id, target)| M::MoveTo(MoveTo { id, target })),
        (arb_id(), arb_text(), prop::option::of(arb_entity()))
            .prop_map(|(id, text, to)| M::Say(Say { id, text, to })),
        (arb_id(), arb_entity())
            .prop_map(|(id, with)| M::StartConversation(StartConversation { id, with })),
        request().prop_map(M::EndConversation),
        (arb_id(), arb_name()).prop_map(|(id, object)| M::Interact(Interact { id, object })),
        (arb_id(), arb_agent()).prop_map(|(id, agent)| M::AgentDetail(AgentQuery { id, agent })),
        (arb_id(), arb_agent(), "\\PC{0,40}", 1..=MAX_MEMORIES_K).prop_map(
            |(id, agent, query, k)| M::AgentMemories(MemoriesQuery {
                id,
                agent,
                query,
                k
            })
        ),
        (arb_id(), arb_agent(), "\\PC{0,40}")
            .prop_map(|(id, agent, query)| M::AgentPrompt(PromptQuery { id, agent, query })),
        request().prop_map(M::Pause),
        request().prop_map(M::Resume),
        (arb_id(), TIME_SCALES).prop_map(|(id, scale)| M::SetTimeScale(SetTimeScale { id, scale })),
        request().prop_map(M::ReloadContent),
    ]
}

/// A change to a frame's text.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Delete(Index, Index),
    Insert(Index, char),
    Replace(Index, char),
    Duplicate(Index, Index),
}

fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec!['{', '}', '[', ']', '"', ':', ',', '\\', '0', '9', '-', '.', 'e', 'E', ' ', 'n', 't', 'u', '\u{0}', 'é']),
        1 => any::<char>(),
    ]
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<Index>(), arb_char()).prop_map(|(a, c)| Mutation::Insert(a, c)),
        (any::<Index>(), arb_char()).prop_map(|(a, c)| Mutation::Replace(a, c)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn mutate(text: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let len = chars.len();
    let at = |i: &Index, n: usize| if n == 0 { 0 } else { i.index(n) };
    match mutation {
        Mutation::Truncate(i) => chars.truncate(at(i, len + 1)),
        Mutation::Delete(a, b) => {
            let start = at(a, len + 1);
            let end = (start + at(b, 8)).min(len);
            chars.drain(start..end);
        }
        Mutation::Insert(i, c) => chars.insert(at(i, len + 1), *c),
        Mutation::Replace(i, c) => {
            if len > 0 {
                chars[i.index(len)] = *c;
            }
        }
        Mutation::Duplicate(a, b) => {
            let start = at(a, len + 1);
            let end = (start + at(b, 16)).min(len);
            let copy: Vec<char> = chars[start..end].to_vec();
            chars.splice(end..end, copy);
        }
    }
    chars.into_iter().collect()
}

/// A change to a frame's fields.
#[derive(Debug, Clone)]
enum Edit {
    Remove(Index),
    Set(String, Value),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Remove),
        (arb_key(), arb_json()).prop_map(|(k, v)| Edit::Set(k, v)),
    ]
}

fn edit(value: &mut Value, edit: &Edit) {
    let Value::Object(members) = value else {
        return;
    };
    match edit {
        Edit::Remove(i) => {
            if let Some(key) = (!members.is_empty())
                .then(|| members.keys().nth(i.index(members.len())).cloned())
                .flatten()
            {
                members.remove(&key);
            }
        }
        Edit::Set(key, v) => {
            members.insert(key.clone(), v.clone());
        }
    }
}

/// Valid messages (the spec's and generated ones), edited and mutated.
fn arb_mutated() -> impl Strategy<Value = String> {
    let examples: Vec<Value> = client_examples()
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let base = prop_oneof![
        prop::sample::select(examples),
        arb_client_message().prop_map(|m| serde_json::to_value(m).unwrap()),
    ];
    (
        base,
        prop::collection::vec(arb_edit(), 0..3),
        prop::collection::vec(arb_mutation(), 0..3),
    )
        .prop_map(|(mut value, edits, mutations)| {
            for e in &edits {
                edit(&mut value, e);
            }
            mutations
                .iter()
                .fold(value.to_string(), |text, m| mutate(&text, m))
        })
}

fn arb_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        1 => "[{}\\[\\]\":,0-9a-z_ .\\\\-]{0,80}",
        2 => arb_json().prop_map(|v| v.to_string()),
        2 => arb_message_like().prop_map(|v| v.to_string()),
        4 => arb_mutated(),
        1 => arb_client_message().prop_map(|m| serde_json::to_string(&m).unwrap()),
    ]
}

/// The request id `serde_json` sees in a frame, if valid.
fn id_in(text: &str) -> Option<RequestId> {
    let Ok(Value::Object(members)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    match members.get("id")? {
        Value::Number(n) => n.as_u64().map(RequestId::Number),
        Value::String(s) => RequestId::text(s),
        _ => None,
    }
}

/// What `decode` promises for any frame.
fn check_frame(text: &str) -> Result<(), TestCaseError> {
    let id = id_in(text);
    match decode(text, MAX) {
        Ok(msg) => {
            prop_assert_eq!(Some(msg.id()), id.as_ref());
            let again = serde_json::to_string(&msg).unwrap();
            prop_assert_eq!(
                decode(&again, MAX),
                Ok(msg.clone()),
                "re-encoded: {}",
                again
            );
            let derived: ClientMessage = serde_json::from_str(&again).unwrap();
            prop_assert_eq!(derived, msg);
        }
        Err(e) => {
            prop_assert!(
                matches!(
                    e.code,
                    ErrorCode::BadJson | ErrorCode::BadRequest | ErrorCode::UnknownType
                ),
                "{e}"
            );
            prop_assert!(!e.message.is_empty());
            prop_assert!(
                e.message.chars().count() <= 700,
                "long message: {}",
                e.message
            );
            if serde_json::from_str::<Value>(text).is_ok() {
                prop_assert_eq!(&e.id, &id, "{}", e);
            }
            let frame = encode(&e.clone().into());
            prop_assert_eq!(
                serde_json::from_str::<ServerMessage>(&frame).unwrap(),
                ServerMessage::Error(e)
            );
        }
    }
    Ok(())
}

/// The fuzzer is not vacuous: its frames reach every outcome of `decode`.
#[test]
fn frames_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_frame();
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let frame = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = match decode(&frame, MAX) {
            Ok(msg) => msg.type_name(),
            Err(e) => e.code.as_str(),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    for outcome in CLIENT_TYPES
        .iter()
        .chain(&["bad_json", "bad_request", "unknown_type"])
    {
        assert!(
            outcomes.contains_key(outcome),
            "{outcome} never reached: {outcomes:?}"
        );
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn decode_never_panics(frame in arb_frame()) {
        check_frame(&frame)?;
    }

    #[test]
    fn valid_messages_round_trip(msg in arb_client_message()) {
        let text = serde_json::to_string(&msg).unwrap();
        prop_assert_eq!(decode(&text, MAX), Ok(msg));
    }
}

proptest! {
    #![proptest_config(config(1_000_000))]

    /// The long run (see the module docs for the command).
    #[test]
    #[ignore = "one million cases: run in release, on demand"]
    fn fuzz_decoder_one_million(frame in arb_frame()) {
        check_frame(&frame)?;
    }
}
