//! `hearth_content::validate` end to end on the fixtures in
//! `tests/fixtures/content/`: a valid map and agents that load, one broken
//! agent file per kind of problem (each located exactly), broken maps and
//! tilesets, and garbage that must give problems, never a panic.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::{Path, PathBuf};

use hearth_content::validate::{self, Problem, Report};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/content")
}

fn map_file() -> PathBuf {
    fixtures().join("map.tmj")
}

fn good() -> PathBuf {
    fixtures().join("good")
}

fn broken(name: &str) -> PathBuf {
    fixtures().join("broken").join(name)
}

/// Checks the good agents plus `file` against the map; returns the problems,
/// which must all be in `file`.
fn problems_of(file: &Path) -> Vec<Problem> {
    let report = validate::validate_paths(&[good(), file.to_owned()], &map_file());
    for p in &report.problems {
        assert_eq!(
            p.file,
            file,
            "only {} has problems:\n{report}",
            file.display()
        );
    }
    report.problems
}

/// The one problem of a broken fixture.
fn only_problem(name: &str) -> Problem {
    let problems = problems_of(&broken(name));
    assert_eq!(problems.len(), 1, "{name}: {problems:#?}");
    problems.into_iter().next().unwrap()
}

#[track_caller]
fn assert_at(p: &Problem, line: usize, column: usize, path: &str) {
    assert_eq!(
        (p.line, p.column, p.path.as_str()),
        (line, column, path),
        "{p}"
    );
}

#[track_caller]
fn assert_words(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "{text:?} should contain {w:?}");
    }
}

#[test]
fn the_good_content_loads() {
    let content = validate::load(&good(), &map_file()).unwrap_or_else(|r| panic!("{r}"));
    let ids: Vec<&str> = content.agents.iter().map(|a| a.file.id.as_str()).collect();
    assert_eq!(ids, ["ana", "mei", "tom"], "sorted by id");
    let map = &content.map;
    let mei = &content.agents[1];
    assert_eq!(mei.home, map.location_id("Mei's House").unwrap());
    assert_eq!(mei.start, mei.home);
    let sleep = &mei.schedule[0];
    assert_eq!(
        (sleep.days, sleep.start, sleep.end),
        (0x7f, 22 * 60, 5 * 60)
    );
    assert_eq!(sleep.priority, 9);
    assert_eq!(sleep.object.as_deref(), Some("bed"));
    assert_eq!(mei.schedule[1].days, 0b1_1111, "weekdays");
    assert_eq!(mei.schedule[2].days, 0b110_0000, "sat and sun");
    assert_eq!(
        mei.schedule[3].location,
        map.location_id("Tavern").unwrap(),
        "names are case-insensitive"
    );
    assert!(mei.schedule[3].flexible);
    assert_eq!(mei.schedule[2].priority, 5, "default priority");
    let ana = &content.agents[0];
    assert_eq!(
        (ana.schedule[0].start, ana.schedule[0].end),
        (23 * 60, 24 * 60),
        "24:00 ends a day"
    );
    assert_eq!(ana.start, map.location_id("Town Square").unwrap());
    let bakery = map.location(map.location_id("bakery").unwrap());
    assert!(bakery.object("oven").is_some());
    assert!(validate::validate_paths(&[good()], &map_file()).is_ok());
}

#[test]
fn a_misspelled_field_names_the_key_and_the_right_spelling() {
    let p = only_problem("misspelled_field.json");
    assert_at(&p, 6, 3, "$.ocupation");
    assert_words(&p.expected, &["known field"]);
    assert_eq!(p.found, "\"ocupation\"");
    assert_eq!(p.hint.as_deref(), Some("did you mean \"occupation\"?"));
}

#[test]
fn a_wrong_type_says_both_types() {
    let p = only_problem("wrong_type.json");
    assert_at(&p, 5, 10, "$.age");
    assert_eq!(p.expected, "an integer");
    assert_words(&p.found, &["\"forty\"", "string"]);
}

#[test]
fn an_importance_of_11_is_out_of_range() {
    let p = only_problem("importance_11.json");
    assert_at(&p, 18, 68, "$.memories[0].importance");
    assert_eq!(p.expected, "an integer from 1 to 10");
    assert_eq!(p.found, "11");
}

#[test]
fn a_bad_time_is_reported_once_in_words() {
    let p = only_problem("bad_time.json");
    assert_at(&p, 12, 15, "$.schedule[1].start");
    assert_words(&p.expected, &["start time", "HH:MM", "23:59"]);
    assert_eq!(p.found, "\"25:00\"");
}

#[test]
fn overlapping_entries_name_both_entries_even_across_midnight() {
    let p = only_problem("overlap.json");
    assert_at(&p, 12, 5, "$.schedule[1]");
    assert_words(&p.expected, &["not overlap", "flexible"]);
    // daily 22:00–06:00 runs from Sunday night into Monday morning
    assert_words(
        &p.found,
        &[
            "$.schedule[1]",
            "$.schedule[0]",
            "05:30–12:00",
            "22:00–06:00",
            "on mon from 05:30",
        ],
    );
}

#[test]
fn an_unknown_location_suggests_the_nearest_one() {
    let p = only_problem("unknown_location.json");
    assert_at(&p, 12, 72, "$.schedule[1].location");
    assert_eq!(p.expected, "a location on the map");
    assert_eq!(p.found, "\"Bakry\"");
    assert_eq!(p.hint.as_deref(), Some("did you mean \"Bakery\"?"));
    let path = broken("unknown_location.json");
    assert_eq!(
        p.to_string(),
        format!(
            "{}:12:72: $.schedule[1].location: expected a location on the map, found \"Bakry\" (did you mean \"Bakery\"?)",
            path.display()
        )
    );
}

#[test]
fn an_unknown_object_suggests_one_of_that_location() {
    let p = only_problem("unknown_object.json");
    assert_at(&p, 12, 92, "$.schedule[1].object");
    assert_words(&p.expected, &["object in \"Bakery\""]);
    assert_eq!(p.found, "\"ovn\"");
    assert_eq!(p.hint.as_deref(), Some("did you mean \"oven\"?"));
}

#[test]
fn an_unknown_relationship_target_suggests_an_agent() {
    let p = only_problem("unknown_target.json");
    assert_at(&p, 15, 16, "$.relationships[0].target");
    assert_words(&p.expected, &["id of an agent"]);
    assert_eq!(p.found, "\"meii\"");
    assert_eq!(p.hint.as_deref(), Some("did you mean \"mei\"?"));
}

#[test]
fn a_duplicate_id_is_reported_in_the_second_file_naming_the_first() {
    let p = only_problem("duplicate_id.json");
    assert_at(&p, 3, 9, "$.id");
    assert_words(&p.expected, &["id no other agent has"]);
    assert_words(&p.found, &["\"mei\"", "good/mei.json"]);
}

#[test]
fn invalid_json_is_located_by_serde() {
    let p = only_problem("trailing_comma.json");
    assert_at(&p, 19, 3, "$");
    assert_eq!(p.expected, "valid JSON");
    assert_words(&p.found, &["trailing comma"]);
}

#[test]
fn a_missing_required_field_points_at_the_enclosing_object() {
    let p = only_problem("missing_required.json");
    assert_at(&p, 1, 1, "$");
    assert_eq!(p.expected, "the required field \"goals\"");
    assert_words(&p.found, &["without it"]);
}

#[test]
fn a_start_location_needs_a_tile_to_stand_on() {
    let p = only_problem("blocked_start.json");
    assert_at(&p, 9, 21, "$.start_location");
    assert_words(&p.found, &["\"Cellar\"", "blocked"]);
}

#[test]
fn every_problem_of_every_file_comes_in_one_run() {
    let dir = fixtures().join("broken");
    let report = validate::validate_paths(&[good(), dir.clone()], &map_file());
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(report.file_count(), files, "{report}");
    assert_eq!(
        report.problems.len(),
        files,
        "one problem per broken file:\n{report}"
    );
    let text = report.to_string();
    assert!(
        text.ends_with(&format!("{files} problems in {files} files")),
        "{text}"
    );
    let err: Report = validate::load(&dir, &map_file()).unwrap_err();
    assert!(err.problems.len() >= files, "{err}");
}

#[test]
fn an_unknown_location_in_a_schema_broken_file_is_still_reported() {
    let dir = scratch("combined");
    let text = std::fs::read_to_string(broken("unknown_location.json"))
        .unwrap()
        .replace("\"age\": 40", "\"age\": -1")
        .replace("\"start\": \"22:00\"", "\"start\": \"24:00\"")
        .replace("\"occupation\"", "\"ocupation\"");
    let file = dir.join("combined.json");
    std::fs::write(&file, text).unwrap();
    let report = validate::validate_paths(&[good(), file], &map_file());
    let paths: Vec<&str> = report.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.age",
            "$.ocupation",
            "$.schedule[0].start",
            "$.schedule[1].location"
        ],
        "{report}"
    );
    assert_words(&report.problems[2].hint.clone().unwrap(), &["may only end"]);
}

#[test]
fn map_problems_are_located_in_the_map_file() {
    let maps = fixtures().join("maps");
    let stray = maps.join("stray_object.tmj");
    let report = validate::validate_paths(&[good(), stray.clone()], &map_file());
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.file, stray);
    assert_at(p, 246, 5, "$.layers[2].objects[12]");
    assert_words(
        p.hint.as_deref().unwrap(),
        &["\"bench\"", "not inside any location"],
    );

    let bad = maps.join("bad_structure.tmj");
    let report = validate::validate_paths(std::slice::from_ref(&bad), &map_file());
    let found: Vec<(usize, usize, &str)> = report
        .problems
        .iter()
        .map(|p| (p.line, p.column, p.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [(4, 11, "$.width"), (65, 12, "$.layers[2].type")],
        "{report}"
    );
    assert_eq!(report.problems[0].expected, "an integer");
    assert_eq!(
        report.problems[1].hint.as_deref(),
        Some("did you mean \"objectgroup\"?")
    );
}

#[test]
fn external_tilesets_are_read_relative_to_the_map() {
    let maps = fixtures().join("maps");
    let content =
        validate::load(&good(), &maps.join("external.tmj")).unwrap_or_else(|r| panic!("{r}"));
    let bakery = content
        .map
        .location(content.map.location_id("Bakery").unwrap());
    assert_eq!(
        bakery.walkable.len(),
        4 * 3 + 1,
        "walls from the external tileset's collides tiles and the door"
    );

    let xml = maps.join("xml_tileset.tmj");
    let report = validate::validate_paths(&[good(), xml.clone()], &map_file());
    assert_eq!(report.problems.len(), 1, "{report}");
    let p = &report.problems[0];
    assert_eq!(p.file, xml);
    assert_eq!(p.path, "$.tilesets[0].source");
    assert_words(&p.expected, &["JSON tileset", ".tsj"]);
    assert_words(&p.found, &["village.tsx", "XML"]);
    assert_words(p.hint.as_deref().unwrap(), &["save it as a JSON tileset"]);
}

#[test]
fn missing_files_and_other_kinds_are_problems() {
    let report = validate::validate_paths(&[fixtures().join("nope.json")], &map_file());
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_words(&report.problems[0].found, &["no such file"]);
    let report = validate::validate_paths(&[good()], &fixtures().join("nope.tmj"));
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].file, fixtures().join("nope.tmj"));
    let err = validate::load(&fixtures().join("no-such-dir"), &map_file()).unwrap_err();
    assert_words(&err.problems[0].expected, &["directory"]);
}

#[test]
fn the_map_schema_describes_the_subset_hearth_reads() {
    let schema = validate::map_schema();
    let required = schema["required"].as_array().unwrap();
    assert!(required.iter().any(|r| r == "tilewidth"));
    assert!(schema["$defs"]["object"]["properties"]["x"].is_object());
}

/// A fresh directory under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-validate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn garbage_gives_problems_not_panics() {
    let dir = scratch("garbage");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = |n: usize, printable: bool| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"{}[]\",:01e-.tfnul \n\"ab\\";
                if printable {
                    alphabet[(seed % alphabet.len() as u64) as usize]
                } else {
                    (seed >> 24) as u8
                }
            })
            .collect()
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let mut inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("blank", b"  \n\t ".to_vec()),
        ("bytes", random(4096, false)),
        ("nul", vec![0; 64]),
        ("deep", deep(10_000)),
        ("deep_objects", format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes()),
        ("deep_unclosed", "[".repeat(100_000).into_bytes()),
        ("deep_in_field", format!("{{\"version\": 1, \"likes\": {}}}", String::from_utf8(deep(10_000)).unwrap()).into_bytes()),
        ("huge_number", b"{\"version\": 1e999}".to_vec()),
        ("huge_ints", b"{\"version\": 99999999999999999999999, \"age\": 123456789012345678901234567890, \"id\": \"x\"}".to_vec()),
        ("negative", b"{\"version\": -1, \"age\": -5, \"schedule\": [{\"start\": \"-1:00\", \"end\": \"\"}]}".to_vec()),
        ("wrong_shapes", b"{\"schedule\": {}, \"relationships\": 3, \"traits\": [], \"goals\": null, \"days\": []}".to_vec()),
        ("bad_days", b"{\"schedule\": [{\"days\": [\"mon\", \"funday\", 3], \"start\": \"24:00\", \"end\": \"24:00\"}]}".to_vec()),
        ("array", b"[1, 2, 3]".to_vec()),
        ("string", b"\"hello\"".to_vec()),
        ("bom", b"\xef\xbb\xbf{}".to_vec()),
        ("half_utf8", b"{\"name\": \"\xc3\"}".to_vec()),
        ("lone_surrogate", b"{\"name\": \"\\ud800\"}".to_vec()),
        ("duplicate_keys", b"{\"version\": 1, \"version\": 1}".to_vec()),
    ];
    for i in 0..20 {
        inputs.push(("printable", random(200 + i * 37, true)));
    }
    for (i, (name, bytes)) in inputs.iter().enumerate() {
        for ext in ["json", "tmj"] {
            let file = dir.join(format!("{i:02}-{name}.{ext}"));
            std::fs::write(&file, bytes).unwrap();
            let report = validate::validate_paths(std::slice::from_ref(&file), &map_file());
            assert!(!report.is_ok(), "{name}.{ext} passed");
            for p in &report.problems {
                assert!(p.line >= 1 && p.column >= 1, "{p}");
                assert!(p.path.starts_with('$'), "{p}");
            }
            let _ = report.to_string();
        }
    }
    // garbage maps used as the world's map for good agents
    let huge_map = br#"{"width": 4096, "height": 4096, "tilewidth": 1e300, "tileheight": 16, "tilesets": [{"firstgid": 4294967295, "tiles": [{"id": 4294967295}]}], "layers": [{"type": "group", "layers": [{"type": "objectgroup", "objects": [{"x": -1e308, "y": 1e308, "name": "a", "type": "location", "width": 1e308}]}]}]}"#;
    let file = dir.join("huge.tmj");
    std::fs::write(&file, huge_map).unwrap();
    let report = validate::validate_paths(&[good()], &file);
    assert!(!report.is_ok());
    assert!(validate::load(&good(), &file).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_only_serde_catches_is_located_too() {
    let dir = scratch("serde");
    for name in ["ana.json", "tom.json"] {
        std::fs::copy(good().join(name), dir.join(name)).unwrap();
    }
    let mei = std::fs::read_to_string(good().join("mei.json")).unwrap();
    let file = dir.join("mei.json");
    // JSON Schema counts 34.0 as an integer; serde's u32 does not
    std::fs::write(&file, mei.replace("\"age\": 34", "\"age\": 34.0")).unwrap();
    let report = validate::validate_paths(std::slice::from_ref(&dir), &map_file());
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_at(&report.problems[0], 5, 10, "$.age");
    assert_words(&report.problems[0].expected, &["whole number"]);
    assert_words(&report.problems[0].found, &["34.0", "decimal point"]);
    // a repeated key: serde_json's Value keeps the last, the typed file refuses it
    std::fs::write(
        &file,
        mei.replace("\"age\": 34,", "\"age\": 34, \"age\": 35,"),
    )
    .unwrap();
    let report = validate::validate_paths(std::slice::from_ref(&dir), &map_file());
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].expected, "each field once", "{report}");
    assert_eq!(report.problems[0].line, 5, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn committed_schemas_match_the_code() {
    let root = hearth_tests::workspace_root();
    for (file, schema) in [
        (
            "assets/schema/agent.schema.json",
            hearth_content::agent::schema(),
        ),
        (
            "assets/schema/map.schema.json",
            hearth_content::validate::map_schema(),
        ),
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let committed: serde_json::Value = serde_json::from_str(&text).expect(file);
        assert_eq!(
            committed,
            schema,
            "{file} is stale: run `cargo run -p hearth -- schema {}` > {file}",
            if file.contains("agent") {
                "agent"
            } else {
                "map"
            }
        );
    }
}
