//! Where things are in a JSON text: byte offsets to 1-based line:column
//! (columns count characters), and JSON paths to the offsets of values and
//! keys. Pure functions over text already read; no I/O.
//!
//! The syntax tree comes from `jsonc-parser`, which gives every value and key
//! a byte range; this module keeps only those ranges, in an owned tree, so a
//! file's text and its index can be carried around together. It is only
//! built for text serde_json has already accepted (so the nesting is at most
//! serde_json's 128 levels and the recursion below is shallow).

use std::fmt;

use jsonc_parser::ast;
use jsonc_parser::common::Ranged;

/// One step of a JSON path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// A JSON path, printed JSONPath-like: `$.schedule[2].location`,
/// `$["$schema"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path with one more step.
    pub fn at(&self, seg: impl Into<Seg>) -> Self {
        let mut segs = self.0.clone();
        segs.push(seg.into());
        Self(segs)
    }

    /// Splits a JSON pointer ("/layers/2/name"), deciding between key and
    /// index by looking at the value it walks through (a key "0" stays a key).
    pub fn from_pointer(pointer: &str, root: Option<&serde_json::Value>) -> Self {
        let mut segs = Vec::new();
        let mut here = root;
        for raw in pointer.split('/').skip(1) {
            let token = raw.replace("~1", "/").replace("~0", "~");
            let seg = match (here, token.parse::<usize>()) {
                (Some(serde_json::Value::Array(_)), Ok(i)) => Seg::Index(i),
                (None, Ok(i)) if !token.starts_with('+') => Seg::Index(i),
                _ => Seg::Key(token),
            };
            here = match (&seg, here) {
                (Seg::Index(i), Some(v)) => v.get(*i),
                (Seg::Key(k), Some(v)) => v.get(k.as_str()),
                _ => None,
            };
            segs.push(seg);
        }
        Self(segs)
    }

    /// The value this path leads to inside `root`.
    pub fn lookup<'v>(&self, root: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0.iter().try_fold(root, |v, seg| match seg {
            Seg::Key(k) => v.as_object()?.get(k),
            Seg::Index(i) => v.as_array()?.get(*i),
        })
    }

    /// The last key of the path, if it ends in one.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k) if is_identifier(k) => write!(f, ".{k}")?,
                Seg::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
            }
        }
        Ok(())
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte offsets to 1-based line and character column.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// Line and column (both 1-based, the column in characters) of byte
    /// `offset`; an offset past the end or inside a character is clamped.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// The byte offset serde_json means by an error at `line`, `column`:
    /// serde_json counts the bytes of the line consumed so far, so the byte at
    /// fault is the last of them (column 0: the start of the line).
    pub fn serde_offset(&self, text: &str, line: usize, column: usize) -> usize {
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(text.len());
        (start + column.saturating_sub(1)).min(text.len())
    }
}

/// The byte ranges of every value (and key) in a JSON text.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    root: Node,
}

#[derive(Debug, Clone)]
struct Node {
    start: usize,
    end: usize,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar,
    Array(Vec<Node>),
    Object(Vec<Member>),
}

#[derive(Debug, Clone)]
struct Member {
    key: String,
    key_start: usize,
    value: Node,
}

/// Where a path was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Byte offset of the value (or of the deepest ancestor that exists).
    pub value: usize,
    /// Byte offset of the key naming the value, when it is an object member.
    pub key: Option<usize>,
    /// Whether the whole path exists.
    pub exact: bool,
}

impl Tree {
    /// Indexes `text`; `None` when it is not JSON jsonc-parser can read.
    pub fn parse(text: &str) -> Option<Self> {
        let parsed =
            jsonc_parser::parse_to_ast(text, &Default::default(), &Default::default()).ok()?;
        Some(Self {
            root: node(&parsed.value?),
        })
    }

    /// The value at `path`, or its deepest existing ancestor. For repeated
    /// keys the last one counts, as in serde_json.
    pub fn find(&self, path: &JsonPath) -> Found {
        let mut node = &self.root;
        let mut key = None;
        for seg in &path.0 {
            let next = match (seg, &node.kind) {
                (Seg::Key(k), Kind::Object(members)) => members
                    .iter()
                    .rev()
                    .find(|m| &m.key == k)
                    .map(|m| (&m.value, Some(m.key_start))),
                (Seg::Index(i), Kind::Array(items)) => items.get(*i).map(|n| (n, None)),
                _ => None,
            };
            match next {
                Some((n, k)) => {
                    node = n;
                    key = k;
                }
                None => {
                    return Found {
                        value: node.start,
                        key,
                        exact: false,
                    };
                }
            }
        }
        Found {
            value: node.start,
            key,
            exact: true,
        }
    }

    /// The path of the innermost value whose text holds byte `offset`.
    pub fn path_at(&self, offset: usize) -> JsonPath {
        let mut segs = Vec::new();
        let mut node = &self.root;
        loop {
            let inner = match &node.kind {
                Kind::Scalar => None,
                Kind::Array(items) => items
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.holds(offset))
                    .map(|(i, n)| (Seg::Index(i), n)),
                Kind::Object(members) => members
                    .iter()
                    .find(|m| {
                        m.value.holds(offset) || (m.key_start <= offset && offset < m.value.start)
                    })
                    .map(|m| (Seg::Key(m.key.clone()), &m.value)),
            };
            match inner {
                Some((seg, n)) => {
                    segs.push(seg);
                    node = n;
                }
                None => return JsonPath(segs),
            }
        }
    }
}

impl Node {
    fn holds(&self, offset: usize) -> bool {
        self.start <= offset && offset < self.end
    }
}

fn node(value: &ast::Value<'_>) -> Node {
    let range = value.range();
    let kind = match value {
        ast::Value::Array(a) => Kind::Array(a.elements.iter().map(node).collect()),
        ast::Value::Object(o) => Kind::Object(
            o.properties
                .iter()
                .map(|p| Member {
                    key: p.name.as_str().to_owned(),
                    key_start: p.name.range().start,
                    value: node(&p.value),
                })
                .collect(),
        ),
        _ => Kind::Scalar,
    };
    Node {
        start: range.start,
        end: range.end,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n  \"name\": \"Mei\",\n  \"café\": {\"é\": [1, 2, {\"x\": true}]},\n  \"$schema\": null\n}\n";

    fn pos(path: &JsonPath) -> (usize, usize) {
        let tree = Tree::parse(TEXT).expect("json");
        let found = tree.find(path);
        LineIndex::new(TEXT).position(TEXT, found.value)
    }

    #[test]
    fn paths_print_jsonpath_like() {
        let p = JsonPath::root().at("schedule").at(2).at("location");
        assert_eq!(p.to_string(), "$.schedule[2].location");
        assert_eq!(JsonPath::root().at("$schema").to_string(), "$[\"$schema\"]");
        assert_eq!(JsonPath::root().to_string(), "$");
    }

    #[test]
    fn values_and_keys_are_located_in_characters() {
        assert_eq!(pos(&JsonPath::root()), (1, 1));
        assert_eq!(pos(&JsonPath::root().at("name")), (2, 11));
        // "é" is two bytes: columns count characters
        let p = JsonPath::root().at("café").at("é").at(2).at("x");
        assert_eq!(pos(&p), (3, 30));
        let tree = Tree::parse(TEXT).expect("json");
        let found = tree.find(&JsonPath::root().at("café").at("é"));
        assert_eq!(
            LineIndex::new(TEXT).position(TEXT, found.key.expect("key")),
            (3, 12)
        );
        assert!(found.exact);
    }

    #[test]
    fn a_missing_path_falls_back_to_its_deepest_ancestor() {
        let tree = Tree::parse(TEXT).expect("json");
        let found = tree.find(&JsonPath::root().at("café").at("nope").at(3));
        assert!(!found.exact);
        assert_eq!(LineIndex::new(TEXT).position(TEXT, found.value), (3, 11));
    }

    #[test]
    fn offsets_map_back_to_paths() {
        let tree = Tree::parse(TEXT).expect("json");
        let offset = TEXT.find("true").expect("true");
        assert_eq!(tree.path_at(offset).to_string(), "$[\"café\"][\"é\"][2].x");
        assert_eq!(tree.path_at(0).to_string(), "$");
    }

    #[test]
    fn pointers_become_paths() {
        let v = serde_json::json!({"layers": [{"0": {"name": "x"}}]});
        let p = JsonPath::from_pointer("/layers/0/0/name", Some(&v));
        assert_eq!(p.to_string(), "$.layers[0][\"0\"].name");
        assert_eq!(p.lookup(&v), Some(&serde_json::json!("x")));
        assert_eq!(JsonPath::from_pointer("", Some(&v)).to_string(), "$");
        assert_eq!(
            JsonPath::from_pointer("/a~1b", None).to_string(),
            "$[\"a/b\"]"
        );
    }

    #[test]
    fn serde_positions_and_clamping() {
        let text = "[1,\n 2,]";
        let idx = LineIndex::new(text);
        // serde_json reports the trailing comma at line 2 column 4 (the `]`)
        let off = idx.serde_offset(text, 2, 4);
        assert_eq!(&text[off..off + 1], "]");
        assert_eq!(idx.position(text, off), (2, 4));
        assert_eq!(idx.position(text, 999), (2, 5));
        assert_eq!(idx.position("é", 1), (1, 1), "inside a character");
        assert_eq!(LineIndex::new("").position("", 0), (1, 1));
    }
}
