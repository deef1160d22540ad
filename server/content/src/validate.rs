//! Reading and checking content: agent files and a Tiled map, checked
//! together, every problem reported at once with its file, line and column,
//! its JSON path, what was expected and what was found, and a "did you mean"
//! where one helps. Produces the compiled [`Content`]. Touches the file system
//! only to read content files (and the directories holding them); never
//! panics on any input.
//!
//! Submodules: `locate` (offsets, lines, paths), `schema` (JSON Schema errors
//! in words), `agents` (agent files), `mapfile` (Tiled maps and tilesets).

mod agents;
mod locate;
mod mapfile;
mod schema;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Content;
use locate::{JsonPath, LineIndex, Tree};

pub use mapfile::map_schema;

/// One thing wrong with the content, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// JSONPath-like: `$.schedule[2].location`.
    pub path: String,
    pub expected: String,
    pub found: String,
    /// A suggestion: `did you mean "Bakery"?`.
    pub hint: Option<String>,
}

impl Problem {
    fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// A problem with the file as a whole (it cannot be read, or is of the
    /// wrong kind): line 1, column 1, path `$`.
    fn whole_file(file: &Path, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: 1,
            column: 1,
            path: "$".to_owned(),
            expected: expected.into(),
            found: found.into(),
            hint: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: expected {}, found {}",
            self.file.display(),
            self.line,
            self.column,
            self.path,
            self.expected,
            self.found
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every problem of a run, grouped by file and in text order within a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems, *.files_checked))]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Content files (agent files and maps) that were checked.
    pub files_checked: usize,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// How many files have problems.
    pub fn file_count(&self) -> usize {
        self.problems
            .iter()
            .map(|p| &p.file)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Files in the order they were `checked` (others, such as tilesets,
    /// after them in the order their problems came), text order within a file.
    fn new(mut problems: Vec<Problem>, checked: &[PathBuf]) -> Self {
        let mut order: Vec<PathBuf> = checked.to_vec();
        for p in &problems {
            if !order.contains(&p.file) {
                order.push(p.file.clone());
            }
        }
        let rank = |file: &Path| order.iter().position(|f| f == file);
        let mut keyed: Vec<_> = problems
            .drain(..)
            .map(|p| ((rank(&p.file), p.line, p.column), p))
            .collect();
        keyed.sort_by_key(|k| k.0);
        problems = keyed.into_iter().map(|(_, p)| p).collect();
        problems.dedup();
        let files_checked = checked
            .iter()
            .filter(|f| (has_extension(f, "json") || has_extension(f, "tmj")) && f.is_file())
            .count();
        Self {
            problems,
            files_checked,
        }
    }
}

fn render(problems: &[Problem], files_checked: usize) -> String {
    if problems.is_empty() {
        return format!(
            "no problems in {files_checked} file{}",
            if files_checked == 1 { "" } else { "s" }
        );
    }
    let report = Report {
        problems: problems.to_vec(),
        files_checked,
    };
    let mut text = String::new();
    for p in problems {
        text.push_str(&p.to_string());
        text.push('\n');
    }
    let (n, m) = (problems.len(), report.file_count());
    text.push_str(&format!(
        "{n} problem{} in {m} file{}",
        if n == 1 { "" } else { "s" },
        if m == 1 { "" } else { "s" }
    ));
    text
}

/// Loads and checks the agents in `agents_dir` (*.json, sorted by file name)
/// against the map file.
pub fn load(agents_dir: &Path, map_file: &Path) -> Result<Content, Report> {
    let mut problems = Vec::new();
    let files = list_dir(agents_dir, &mut problems);
    let map = mapfile::load(map_file, &mut problems);
    let agent_files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| has_extension(f, "json"))
        .collect();
    let agents = agents::check_files(&agent_files, map.as_ref(), &mut problems);
    let mut checked = vec![map_file.to_owned(), agents_dir.to_owned()];
    checked.extend(agent_files);
    match map {
        Some(map) if problems.is_empty() => Ok(Content { map, agents }),
        None if problems.is_empty() => Err(Report::new(
            vec![Problem::whole_file(
                map_file,
                "a Tiled map",
                "a map that could not be built",
            )],
            &checked,
        )),
        _ => Err(Report::new(problems, &checked)),
    }
}

/// Checks any mix of files and directories: directories contribute their
/// *.json agent files and *.tmj maps; files are agent files (.json) or maps
/// (.tmj). If no map is among `paths`, `default_map` is used for the
/// cross-references. Agent ids must be unique across all files.
pub fn validate_paths(paths: &[PathBuf], default_map: &Path) -> Report {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    // every path in the order given, directories followed by their files
    let mut checked: Vec<PathBuf> = Vec::new();
    for path in paths {
        let (files, explicit) = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => (list_dir(path, &mut problems), false),
            Ok(_) => (vec![path.clone()], true),
            Err(e) => {
                problems.push(Problem::whole_file(
                    path,
                    "a file or directory to check",
                    io_error(&e),
                ));
                continue;
            }
        };
        if !explicit {
            checked.push(path.clone());
        }
        for file in files {
            let kind_known = has_extension(&file, "json") || has_extension(&file, "tmj");
            if explicit && !kind_known {
                problems.push(Problem::whole_file(
                    &file,
                    "an agent file (.json) or a Tiled map (.tmj)",
                    "a file of another kind",
                ));
            } else if kind_known
                && seen.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone()))
            {
                checked.push(file);
            }
        }
    }
    let agent_files: Vec<PathBuf> = checked
        .iter()
        .filter(|f| has_extension(f, "json") && f.is_file())
        .cloned()
        .collect();
    let mut map_files: Vec<PathBuf> = checked
        .iter()
        .filter(|f| has_extension(f, "tmj") && f.is_file())
        .cloned()
        .collect();
    if map_files.is_empty() {
        map_files.push(default_map.to_owned());
        checked.insert(0, default_map.to_owned());
    }
    // the first map is the world's; any others are checked on their own
    let maps: Vec<_> = map_files
        .iter()
        .map(|f| mapfile::load(f, &mut problems))
        .collect();
    let map = maps.into_iter().next().flatten();
    agents::check_files(&agent_files, map.as_ref(), &mut problems);
    Report::new(problems, &checked)
}

/// The files of `dir`, sorted by name (entries that are not files skipped).
fn list_dir(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::whole_file(
                dir,
                "a readable directory",
                io_error(&e),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "nothing there (no such file or directory)".to_owned(),
        std::io::ErrorKind::PermissionDenied => {
            "a file that may not be read (permission denied)".to_owned()
        }
        _ => format!("an error reading it ({e})"),
    }
}

/// A JSON file read and indexed: its text, where each value is, and the
/// parsed value.
#[derive(Debug)]
struct Source {
    file: PathBuf,
    text: String,
    lines: LineIndex,
    tree: Option<Tree>,
    value: Value,
}

impl Source {
    fn position(&self, offset: usize) -> (usize, usize) {
        self.lines.position(&self.text, offset)
    }

    fn make(
        &self,
        path: &JsonPath,
        offset: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.position(offset);
        Problem {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            expected: expected.into(),
            found: found.into(),
            hint: None,
        }
    }

    /// A problem at the value at `path` (or its deepest existing ancestor).
    fn problem(
        &self,
        path: &JsonPath,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Problem {
        let offset = self.tree.as_ref().map_or(0, |t| t.find(path).value);
        self.make(path, offset, expected, found)
    }

    /// A problem at the key naming the value at `path`.
    fn problem_at_key(
        &self,
        path: &JsonPath,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Problem {
        let offset = self.tree.as_ref().map_or(0, |t| {
            let f = t.find(path);
            f.key.filter(|_| f.exact).unwrap_or(f.value)
        });
        self.make(path, offset, expected, found)
    }

    /// A deserialization error from serde_json, at the value it concerns.
    fn serde_problem(&self, e: &serde_json::Error, what: &str) -> Problem {
        let offset = self.lines.serde_offset(&self.text, e.line(), e.column());
        let path = self
            .tree
            .as_ref()
            .map(|t| t.path_at(offset))
            .unwrap_or_default();
        let (expected, found) = serde_words(&strip_position(&e.to_string()), what);
        self.problem(&path, expected, found)
    }
}

/// Reads `file` as JSON; `what` names the kind of file ("an agent file").
/// Problems reading or parsing it go to `out`.
fn read_json(file: &Path, what: &str, out: &mut Vec<Problem>) -> Option<Source> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            out.push(Problem::whole_file(
                file,
                format!("{what} to read"),
                io_error(&e),
            ));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..good]).into_owned();
            let (line, column) = LineIndex::new(&prefix).position(&prefix, good);
            out.push(Problem {
                line,
                column,
                ..Problem::whole_file(
                    file,
                    "UTF-8 text",
                    format!("the byte 0x{:02x}, which is not UTF-8", bytes[good]),
                )
            });
            return None;
        }
    };
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    };
    let lines = LineIndex::new(&text);
    if text.trim().is_empty() {
        out.push(Problem::whole_file(
            file,
            format!("{what} (JSON)"),
            "an empty file",
        ));
        return None;
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let offset = lines.serde_offset(&text, e.line(), e.column());
            let (line, column) = lines.position(&text, offset);
            let message = strip_position(&e.to_string());
            let (found, hint) = syntax_words(&message);
            out.push(Problem {
                line,
                column,
                ..Problem::whole_file(file, "valid JSON", found).hint(hint)
            });
            return None;
        }
    };
    let tree = Tree::parse(&text);
    Some(Source {
        file: file.to_owned(),
        text,
        lines,
        tree,
        value,
    })
}

/// serde_json's message without its " at line L column C".
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A JSON syntax error in words, with a hint for the common ones.
fn syntax_words(message: &str) -> (String, Option<String>) {
    match message {
        "trailing comma" => (
            "a trailing comma".to_owned(),
            Some("JSON allows no comma after the last item".to_owned()),
        ),
        "recursion limit exceeded" => ("values nested more than 128 deep".to_owned(), None),
        "key must be a string" => (
            "a key without double quotes".to_owned(),
            Some("JSON keys are written in double quotes".to_owned()),
        ),
        m if m.starts_with("EOF while parsing") => (
            format!("the end of the file{}", &m["EOF".len()..]),
            Some("is a closing bracket missing?".to_owned()),
        ),
        "trailing characters" => ("more text after the end of the JSON value".to_owned(), None),
        "number out of range" => ("a number too large to represent".to_owned(), None),
        "expected ident" => (
            "a word that is not true, false or null".to_owned(),
            Some("strings are written in double quotes".to_owned()),
        ),
        m if m.starts_with("expected ") => (
            format!(
                "something else where JSON needs {}",
                &m["expected ".len()..]
            ),
            None,
        ),
        m => (m.to_owned(), None),
    }
}

/// A serde data error ("invalid type: string \"x\", expected u32") as
/// (expected, found).
fn serde_words(message: &str, what: &str) -> (String, String) {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return (serde_expected(expected), serde_found(found));
        }
    }
    if let Some(rest) = message
        .strip_prefix("unknown variant ")
        .or_else(|| message.strip_prefix("unknown field "))
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return (expected.to_owned(), found.to_owned());
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return (
            format!("the required field {field}"),
            "an object without it".to_owned(),
        );
    }
    if let Some(field) = message.strip_prefix("duplicate field ") {
        return (
            "each field once".to_owned(),
            format!("{field} more than once"),
        );
    }
    (what.to_owned(), message.to_owned())
}

/// serde's name of a type in designers' words.
fn serde_expected(expected: &str) -> String {
    let whole = |max: u64| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => whole(u8::MAX.into()),
        "u16" => whole(u16::MAX.into()),
        "u32" => whole(u32::MAX.into()),
        "u64" => whole(u64::MAX),
        "f32" | "f64" => "a number".to_owned(),
        "a string" | "a boolean" => expected.to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "an object".to_owned(),
        other => other.to_owned(),
    }
}

/// serde's description of a value ("floating point `34.0`") in designers' words.
fn serde_found(found: &str) -> String {
    let literal = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`').to_owned())
    };
    if let Some(n) = literal("floating point ") {
        format!("{n} (a number written with a decimal point)")
    } else if let Some(n) = literal("integer ") {
        n
    } else if let Some(b) = literal("boolean ") {
        b
    } else {
        match found {
            "sequence" => "an array".to_owned(),
            "map" => "an object".to_owned(),
            other => other.to_owned(),
        }
    }
}

/// `text` in double quotes, JSON-escaped, cut to 60 characters.
fn quote(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    let mut quoted = Value::String(cut).to_string();
    if text.chars().count() > 60 {
        quoted.insert(quoted.len() - 1, '…');
    }
    quoted
}

/// `did you mean "x"?` for the closest candidate, if one is close.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    hearth_suggest::closest(word, candidates).map(|c| format!("did you mean {}?", quote(c)))
}

/// A did-you-mean, or else the list of what there is (when short).
fn hint_among(word: &str, candidates: &[&str], noun: &str) -> Option<String> {
    did_you_mean(word, candidates.iter().copied()).or_else(|| match candidates.len() {
        0 => None,
        1..=12 => Some(format!(
            "{noun}: {}",
            schema::list(&candidates.iter().map(|c| quote(c)).collect::<Vec<_>>(), 12)
                .replace(" or ", " and ")
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let places = ["Bakery", "Tavern", "Town Square", "Mei's House"];
        assert_eq!(hearth_suggest::closest("Bakry", places), Some("Bakery"));
        assert_eq!(hearth_suggest::closest("bakery", places), Some("Bakery"));
        assert_eq!(
            hearth_suggest::closest("tavren", places),
            Some("Tavern"),
            "transposition"
        );
        assert_eq!(
            hearth_suggest::closest("town squar", places),
            Some("Town Square")
        );
        assert_eq!(hearth_suggest::closest("Forge", places), None);
        assert_eq!(hearth_suggest::closest("", places), None);
        let fields = ["home", "start_location", "name", "age"];
        assert_eq!(hearth_suggest::closest("homee", fields), Some("home"));
        assert_eq!(
            hearth_suggest::closest("start_loc", fields),
            Some("start_location"),
            "long common prefix"
        );
        assert_eq!(hearth_suggest::closest("xyz", fields), None);
        assert_eq!(
            did_you_mean("Bakry", places).as_deref(),
            Some("did you mean \"Bakery\"?")
        );
    }

    #[test]
    fn hints_list_the_choices_when_nothing_is_close() {
        assert_eq!(
            hint_among("zzz", &["a", "b"], "the objects here").as_deref(),
            Some("the objects here: \"a\" and \"b\"")
        );
        assert_eq!(hint_among("zzz", &[], "x"), None);
    }

    #[test]
    fn problems_and_reports_print_one_line_each() {
        let p = Problem {
            file: PathBuf::from("agents/mei.json"),
            line: 14,
            column: 19,
            path: "$.schedule[2].location".into(),
            expected: "a location on the map".into(),
            found: "\"Bakry\"".into(),
            hint: Some("did you mean \"Bakery\"?".into()),
        };
        assert_eq!(
            p.to_string(),
            "agents/mei.json:14:19: $.schedule[2].location: expected a location on the map, found \"Bakry\" (did you mean \"Bakery\"?)"
        );
        let report = Report::new(
            vec![
                Problem {
                    file: "b.json".into(),
                    ..p.clone()
                },
                p.clone(),
                Problem { line: 2, ..p },
            ],
            &[],
        );
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("b.json:14:19"),
            "files in the order they came"
        );
        assert!(
            lines[1].starts_with("agents/mei.json:2:19"),
            "text order within a file"
        );
        assert_eq!(lines[3], "3 problems in 2 files");
        assert!(!report.is_ok());
        assert_eq!(Report::default().to_string(), "no problems in 0 files");
    }

    #[test]
    fn serde_messages_split_into_expected_and_found() {
        assert_eq!(
            serde_words("invalid type: floating point `30.5`, expected u32", "x"),
            (
                "a whole number from 0 to 4294967295".to_owned(),
                "30.5 (a number written with a decimal point)".to_owned()
            )
        );
        assert_eq!(
            serde_words("duplicate field `age`", "x").1,
            "`age` more than once"
        );
        assert_eq!(
            serde_words("something odd", "an agent file"),
            ("an agent file".to_owned(), "something odd".to_owned())
        );
        assert_eq!(
            strip_position("trailing comma at line 3 column 4"),
            "trailing comma"
        );
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(&"x".repeat(70)).chars().count(), 63);
    }
}
