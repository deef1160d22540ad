//! Checking agent files and compiling them into [`AgentDef`]s: the JSON
//! Schema of [`AgentFile`], the format version, times and overlaps, and the
//! references to the map and to other agents. The checks read the parsed JSON
//! (not the typed file), so one wrong type does not hide the other problems.
//! Reads the agent files it is given; nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::locate::{JsonPath, Seg};
use super::schema::Checker;
use super::{Problem, Source, hint_among, quote, read_json};
use crate::agent::{self, AGENT_FORMAT_VERSION, AgentFile, Days};
use crate::{AgentDef, DAY_MINUTES, ScheduleBlock, WorldMap, parse_clock};

const WEEK_MINUTES: u32 = 7 * DAY_MINUTES as u32;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Schedule times are checked with [`parse_clock`] (clearer words than the
/// schema's patterns), so their pattern errors are dropped.
fn skip_time_patterns(path: &JsonPath, kind: &ValidationErrorKind) -> bool {
    matches!(kind, ValidationErrorKind::Pattern { .. })
        && matches!(path.0.as_slice(), [Seg::Key(s), Seg::Index(_), Seg::Key(f)] if s == "schedule" && (f == "start" || f == "end"))
}

/// An agent file read and checked on its own.
struct Parsed {
    src: Source,
    /// The typed file, when it deserialized.
    file: Option<AgentFile>,
    /// Whether the checks of the file on its own found nothing.
    clean: bool,
}

impl Parsed {
    fn id(&self) -> Option<&str> {
        self.src.value.get("id").and_then(Value::as_str)
    }
}

/// Checks `files` (in order) against each other and `map` (skipping the map
/// checks without one); returns the agents that compiled, sorted by id.
pub(super) fn check_files(
    files: &[PathBuf],
    map: Option<&WorldMap>,
    out: &mut Vec<Problem>,
) -> Vec<AgentDef> {
    let checker = match Checker::new(agent::schema(), skip_time_patterns) {
        Ok(c) => c,
        Err(e) => {
            for f in files {
                out.push(Problem::whole_file(
                    f,
                    "the built-in agent schema to compile",
                    e.clone(),
                ));
            }
            return Vec::new();
        }
    };
    let parsed: Vec<Parsed> = files
        .iter()
        .filter_map(|f| parse(f, &checker, out))
        .collect();
    let ids: Vec<&str> = parsed.iter().filter_map(Parsed::id).collect();
    let mut first_file: HashMap<&str, &Path> = HashMap::new();
    let mut agents = Vec::new();
    for agent in &parsed {
        let before = out.len();
        if let Some(id) = agent.id() {
            match first_file.get(id) {
                Some(first) => out.push(agent.src.problem(
                    &JsonPath::root().at("id"),
                    "an id no other agent has",
                    format!(
                        "{}, already the id of the agent in {}",
                        quote(id),
                        first.display()
                    ),
                )),
                None => {
                    first_file.insert(id, &agent.src.file);
                }
            }
        }
        check_schedule(&agent.src, map, out);
        check_places(&agent.src, map, out);
        check_relationships(&agent.src, agent.id(), &ids, out);
        if agent.clean
            && out.len() == before
            && let (Some(file), Some(map)) = (&agent.file, map)
            && let Some(def) = compile(file, map)
        {
            agents.push(def);
        }
    }
    agents.sort_by(|a, b| a.file.id.cmp(&b.file.id));
    agents
}

/// Reads one file and checks what can be checked without the others.
fn parse(file: &Path, checker: &Checker, out: &mut Vec<Problem>) -> Option<Parsed> {
    let before = out.len();
    let src = read_json(file, "an agent file", out)?;
    let mut clean = checker.check(&src, out);
    if let Some(version) = src.value.get("version").filter(|v| v.is_number())
        && version.as_u64() != Some(u64::from(AGENT_FORMAT_VERSION))
    {
        out.push(
            src.problem(
                &JsonPath::root().at("version"),
                format!("{AGENT_FORMAT_VERSION} (the format this release reads)"),
                version.to_string(),
            )
            .hint(Some(
                "this file is for another release of Hearth".to_owned(),
            )),
        );
        clean = false;
    }
    let file = if clean {
        match serde_json::from_str::<AgentFile>(&src.text) {
            Ok(f) => Some(f),
            Err(e) => {
                out.push(src.serde_problem(&e, "an agent file"));
                None
            }
        }
    } else {
        None
    };
    Some(Parsed {
        src,
        file,
        clean: clean && out.len() == before,
    })
}

/// One schedule entry as far as it could be read.
struct Entry<'a> {
    index: usize,
    days: u8,
    start: u16,
    end: u16,
    activity: &'a str,
}

fn time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn check_schedule(src: &Source, map: Option<&WorldMap>, out: &mut Vec<Problem>) {
    let Some(entries) = src.value.get("schedule").and_then(Value::as_array) else {
        return;
    };
    let mut fixed = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        let at = JsonPath::root().at("schedule").at(index);
        let start = clock(src, e, &at, "start", out);
        let end = clock(src, e, &at, "end", out);
        if let (Some(start), Some(end)) = (start, end) {
            if start == end {
                out.push(
                    src.problem(
                        &at.at("end"),
                        "an end time other than the start",
                        format!("{}, the start time too", quote(&time(end))),
                    )
                    .hint(Some(
                        "an entry lasting all day runs from \"00:00\" to \"24:00\"".to_owned(),
                    )),
                );
            } else if !e.get("flexible").and_then(Value::as_bool).unwrap_or(false) {
                let days = match e.get("days") {
                    None => Some(Days::default().mask()),
                    Some(d) => serde_json::from_value::<Days>(d.clone())
                        .ok()
                        .map(|d| d.mask()),
                };
                if let Some(days) = days {
                    let activity = e
                        .get("activity")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    fixed.push(Entry {
                        index,
                        days,
                        start,
                        end,
                        activity,
                    });
                }
            }
        }
        if let Some(map) = map
            && let Some(name) = e.get("location").and_then(Value::as_str)
            && let Some(loc) = known_location(src, map, &at.at("location"), name, out)
            && let Some(object) = e.get("object").and_then(Value::as_str)
        {
            let loc = map.location(loc);
            if loc.object(object).is_none() {
                let names: Vec<&str> = loc.objects.iter().map(|o| o.name.as_str()).collect();
                let hint = if names.is_empty() {
                    Some(format!("{} has no objects", quote(&loc.name)))
                } else {
                    hint_among(
                        object,
                        &names,
                        &format!("the objects in {}", quote(&loc.name)),
                    )
                };
                out.push(
                    src.problem(
                        &at.at("object"),
                        format!("an object in {}", quote(&loc.name)),
                        quote(object),
                    )
                    .hint(hint),
                );
            }
        }
    }
    for (j, b) in fixed.iter().enumerate() {
        if let Some(a) = fixed[..j].iter().find(|a| first_overlap(a, b).is_some()) {
            let minute = first_overlap(a, b).unwrap_or_default();
            let (day, at) = (
                minute / u32::from(DAY_MINUTES),
                minute % u32::from(DAY_MINUTES),
            );
            let (pa, pb) = (
                JsonPath::root().at("schedule").at(a.index),
                JsonPath::root().at("schedule").at(b.index),
            );
            out.push(
                src.problem(
                    &pb,
                    "entries that do not overlap (unless one is \"flexible\": true)",
                    format!(
                        "{pb} ({}–{} {}) overlapping {pa} ({}–{} {}) on {} from {}",
                        time(b.start),
                        time(b.end),
                        quote(b.activity),
                        time(a.start),
                        time(a.end),
                        quote(a.activity),
                        DAY_NAMES.get(day as usize).copied().unwrap_or("?"),
                        time(at as u16)
                    ),
                )
                .hint(Some(
                    "change the times, or make one of them \"flexible\": true".to_owned(),
                )),
            );
        }
    }
}

/// The time `field` of an entry; a problem when it is a string that is no time.
fn clock(
    src: &Source,
    entry: &Value,
    at: &JsonPath,
    field: &str,
    out: &mut Vec<Problem>,
) -> Option<u16> {
    let text = entry.get(field)?.as_str()?;
    let is_end = field == "end";
    if let Some(minutes) = parse_clock(text, is_end) {
        return Some(minutes);
    }
    let (expected, hint) = if is_end {
        (
            "an end time \"HH:MM\" from \"00:00\" to \"24:00\"",
            "24-hour clock with two digits each, such as \"06:30\"; an end before the start crosses midnight",
        )
    } else if text == "24:00" {
        (
            "a start time \"HH:MM\" from \"00:00\" to \"23:59\"",
            "\"24:00\" may only end an entry: start at \"00:00\"",
        )
    } else {
        (
            "a start time \"HH:MM\" from \"00:00\" to \"23:59\"",
            "24-hour clock with two digits each, such as \"06:30\"",
        )
    };
    out.push(
        src.problem(&at.at(field), expected, quote(text))
            .hint(Some(hint.to_owned())),
    );
    None
}

/// The minutes of the week a block covers, as half-open ranges.
fn week_ranges(days: u8, start: u16, end: u16) -> Vec<(u32, u32)> {
    let mut ranges = Vec::new();
    for d in 0..7u32 {
        if days & (1 << d) == 0 {
            continue;
        }
        let s = d * u32::from(DAY_MINUTES) + u32::from(start);
        let e = if start < end {
            d * u32::from(DAY_MINUTES) + u32::from(end)
        } else {
            (d + 1) * u32::from(DAY_MINUTES) + u32::from(end)
        };
        if e <= WEEK_MINUTES {
            ranges.push((s, e));
        } else {
            // Sunday night into Monday morning
            ranges.push((s, WEEK_MINUTES));
            ranges.push((0, e - WEEK_MINUTES));
        }
    }
    ranges
}

/// The first minute of the week (Monday 00:00 = 0) both entries cover.
fn first_overlap(a: &Entry<'_>, b: &Entry<'_>) -> Option<u32> {
    let (ra, rb) = (
        week_ranges(a.days, a.start, a.end),
        week_ranges(b.days, b.start, b.end),
    );
    ra.iter()
        .flat_map(|x| rb.iter().map(move |y| (x.0.max(y.0), x.1.min(y.1))))
        .filter(|(s, e)| s < e)
        .map(|(s, _)| s)
        .min()
}

/// The location named `name`; a problem when the map has none.
fn known_location(
    src: &Source,
    map: &WorldMap,
    at: &JsonPath,
    name: &str,
    out: &mut Vec<Problem>,
) -> Option<u16> {
    if let Some(id) = map.location_id(name.trim()) {
        return Some(id);
    }
    let names: Vec<&str> = map.locations.iter().map(|l| l.name.as_str()).collect();
    out.push(
        src.problem(at, "a location on the map", quote(name))
            .hint(hint_among(name, &names, "the map's locations")),
    );
    None
}

fn check_places(src: &Source, map: Option<&WorldMap>, out: &mut Vec<Problem>) {
    let Some(map) = map else {
        return;
    };
    if let Some(home) = src.value.get("home").and_then(Value::as_str) {
        known_location(src, map, &JsonPath::root().at("home"), home, out);
    }
    if let Some(start) = src.value.get("start_location").and_then(Value::as_str) {
        let at = JsonPath::root().at("start_location");
        if let Some(id) = known_location(src, map, &at, start, out) {
            let loc = map.location(id);
            if loc.walkable.is_empty() {
                out.push(
                    src.problem(&at, "a location with a tile to stand on", format!("{}, whose tiles are all blocked", quote(start)))
                        .hint(Some("clear a tile of the collision layer inside it, or start the agent elsewhere".to_owned())),
                );
            }
        }
    }
}

fn check_relationships(src: &Source, own: Option<&str>, ids: &[&str], out: &mut Vec<Problem>) {
    let Some(relationships) = src.value.get("relationships").and_then(Value::as_array) else {
        return;
    };
    let known: HashSet<&str> = ids.iter().copied().collect();
    let mut sorted: Vec<&str> = known
        .iter()
        .copied()
        .filter(|id| Some(*id) != own)
        .collect();
    sorted.sort_unstable();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in relationships.iter().enumerate() {
        let Some(target) = r.get("target").and_then(Value::as_str) else {
            continue;
        };
        let at = JsonPath::root().at("relationships").at(i).at("target");
        if Some(target) == own {
            out.push(src.problem(
                &at,
                "another agent's id",
                format!("{}, this agent's own id", quote(target)),
            ));
        } else if !known.contains(target) {
            out.push(
                src.problem(&at, "the id of an agent", quote(target))
                    .hint(hint_among(target, &sorted, "the agents")),
            );
        } else if let Some(first) = seen.get(target) {
            out.push(src.problem(
                &at,
                "one relationship per agent",
                format!(
                    "{} again ($.relationships[{first}] is about it too)",
                    quote(target)
                ),
            ));
        } else {
            seen.insert(target, i);
        }
    }
}

/// The compiled agent; `None` only if something checked above was missed.
fn compile(file: &AgentFile, map: &WorldMap) -> Option<AgentDef> {
    let schedule = file
        .schedule
        .iter()
        .map(|e| {
            Some(ScheduleBlock {
                days: e.days.mask(),
                start: parse_clock(&e.start, false)?,
                end: parse_clock(&e.end, true)?,
                activity: e.activity.clone(),
                location: map.location_id(e.location.trim())?,
                object: e.object.clone(),
                priority: e.priority,
                flexible: e.flexible,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(AgentDef {
        file: file.clone(),
        home: map.location_id(file.home.trim())?,
        start: map.location_id(file.start_location.trim())?,
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(days: u8, start: &str, end: &str) -> Entry<'static> {
        Entry {
            index: 0,
            days,
            start: parse_clock(start, false).expect("start"),
            end: parse_clock(end, true).expect("end"),
            activity: "x",
        }
    }

    const DAILY: u8 = 0x7f;
    const MON: u8 = 1;
    const TUE: u8 = 2;
    const SUN: u8 = 1 << 6;

    #[test]
    fn same_day_overlaps() {
        assert_eq!(
            first_overlap(
                &entry(DAILY, "09:00", "12:00"),
                &entry(DAILY, "11:00", "13:00")
            ),
            Some(11 * 60)
        );
        assert_eq!(
            first_overlap(
                &entry(DAILY, "09:00", "12:00"),
                &entry(DAILY, "12:00", "13:00")
            ),
            None,
            "touching is fine"
        );
        assert_eq!(
            first_overlap(&entry(MON, "09:00", "12:00"), &entry(TUE, "09:00", "12:00")),
            None,
            "different days"
        );
        assert_eq!(
            first_overlap(
                &entry(DAILY, "00:00", "24:00"),
                &entry(SUN, "23:00", "24:00")
            ),
            Some(6 * 1440 + 23 * 60)
        );
    }

    #[test]
    fn overlaps_across_midnight() {
        let night = entry(MON, "22:00", "06:00"); // Monday night to Tuesday morning
        assert_eq!(
            first_overlap(&night, &entry(TUE, "05:00", "07:00")),
            Some(1440 + 5 * 60)
        );
        assert_eq!(
            first_overlap(&night, &entry(MON, "05:00", "07:00")),
            None,
            "Monday morning is before the night"
        );
        assert_eq!(
            first_overlap(&night, &entry(MON, "23:30", "24:00")),
            Some(23 * 60 + 30)
        );
        // Sunday night runs into Monday morning of the same week's Monday
        let sunday_night = entry(SUN, "22:00", "06:00");
        assert_eq!(
            first_overlap(&sunday_night, &entry(MON, "05:00", "07:00")),
            Some(5 * 60)
        );
        assert_eq!(
            first_overlap(
                &entry(DAILY, "22:00", "06:00"),
                &entry(DAILY, "06:00", "22:00")
            ),
            None
        );
    }

    #[test]
    fn week_ranges_wrap_at_the_end_of_the_week() {
        assert_eq!(
            week_ranges(SUN, 22 * 60, 60),
            vec![(6 * 1440 + 22 * 60, 7 * 1440), (0, 60)]
        );
        assert_eq!(week_ranges(0, 0, 60), vec![]);
    }
}
