//! Checking a Tiled JSON map (`.tmj`) and its external JSON tilesets
//! (`.tsj`) and building the [`WorldMap`]: the JSON Schema of the subset
//! Hearth reads ([`map_schema`]), then serde into [`tiled`] types, then
//! [`WorldMap::from_tiled`]'s own checks, each problem placed in its file.
//! Reads the map file and the tileset files it names; nothing else.

use std::path::Path;

use serde_json::{Value, json};

use super::locate::JsonPath;
use super::schema::{Checker, describe_value};
use super::{Problem, Source, has_extension, quote, read_json};
use crate::map::{MAX_SIDE, WorldMap};
use crate::tiled::{self, TiledMap};

/// Largest GID a tile can have: Tiled keeps flags in the top four bits.
const MAX_GID: u32 = !tiled::GID_FLAGS;

/// The JSON Schema of the part of a Tiled JSON map Hearth reads (Tiled
/// writes more; other fields are allowed and ignored).
pub fn map_schema() -> Value {
    let u32_max = u32::MAX;
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://hearth.dev/schema/tiled-map.json",
        "title": "Tiled map (the subset Hearth reads)",
        "description": "A Tiled JSON map (.tmj): orthogonal, finite. Tile layers named `collision` (or with the bool property `collision`) block tiles; rectangles of class `location` are the places schedules name; points or rectangles of class `object` are the objects inside them.",
        "type": "object",
        "required": ["width", "height", "tilewidth", "tileheight"],
        "properties": {
            "type": {"description": "\"map\"", "type": ["string", "null"]},
            "orientation": {"description": "Only \"orthogonal\" is supported.", "type": ["string", "null"]},
            "width": {"description": "Width in tiles.", "type": "integer", "minimum": 1, "maximum": MAX_SIDE},
            "height": {"description": "Height in tiles.", "type": "integer", "minimum": 1, "maximum": MAX_SIDE},
            "tilewidth": {"description": "Tile width in pixels.", "type": "integer", "minimum": 1, "maximum": u32_max},
            "tileheight": {"description": "Tile height in pixels.", "type": "integer", "minimum": 1, "maximum": u32_max},
            "infinite": {"description": "Must be false.", "type": "boolean"},
            "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
            "tilesets": {"type": "array", "items": {"$ref": "#/$defs/tilesetRef"}},
            "properties": {"$ref": "#/$defs/properties"}
        },
        "$defs": {
            "u32": {"type": "integer", "minimum": 0, "maximum": u32_max},
            "string": {"type": "string"},
            "layer": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["tilelayer", "objectgroup", "group", "imagelayer"]}
                },
                "allOf": [
                    {"if": {"properties": {"type": {"const": "tilelayer"}}}, "then": {"$ref": "#/$defs/tileLayer"}},
                    {"if": {"properties": {"type": {"const": "objectgroup"}}}, "then": {"$ref": "#/$defs/objectGroup"}},
                    {"if": {"properties": {"type": {"const": "group"}}}, "then": {"$ref": "#/$defs/groupLayer"}}
                ]
            },
            "tileLayer": {
                "type": "object",
                "required": ["width", "height"],
                "properties": {
                    "name": {"$ref": "#/$defs/string"},
                    "width": {"$ref": "#/$defs/u32"},
                    "height": {"$ref": "#/$defs/u32"},
                    "data": {"description": "GIDs row by row: an array of numbers, or a base64 string (see encoding, compression)."},
                    "chunks": {},
                    "encoding": {"type": ["string", "null"]},
                    "compression": {"type": ["string", "null"], "description": "\"\", \"zlib\" or \"gzip\""},
                    "properties": {"$ref": "#/$defs/properties"}
                }
            },
            "objectGroup": {
                "type": "object",
                "properties": {
                    "name": {"$ref": "#/$defs/string"},
                    "objects": {"type": "array", "items": {"$ref": "#/$defs/object"}},
                    "properties": {"$ref": "#/$defs/properties"}
                }
            },
            "groupLayer": {
                "type": "object",
                "properties": {
                    "name": {"$ref": "#/$defs/string"},
                    "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}}
                }
            },
            "object": {
                "type": "object",
                "required": ["x", "y"],
                "properties": {
                    "id": {"$ref": "#/$defs/u32"},
                    "name": {"$ref": "#/$defs/string"},
                    "type": {"description": "The class: \"location\" or \"object\".", "type": "string"},
                    "class": {"type": "string"},
                    "x": {"type": "number"},
                    "y": {"type": "number"},
                    "width": {"type": "number"},
                    "height": {"type": "number"},
                    "point": {"type": "boolean"},
                    "properties": {"$ref": "#/$defs/properties"}
                }
            },
            "tilesetRef": {
                "type": "object",
                "required": ["firstgid"],
                "properties": {
                    "firstgid": {"type": "integer", "minimum": 1, "maximum": MAX_GID},
                    "source": {"description": "An external JSON tileset (.tsj), relative to the map.", "type": ["string", "null"]}
                },
                "allOf": [{"$ref": "#/$defs/tileset"}]
            },
            "tileset": {
                "type": "object",
                "properties": {
                    "name": {"$ref": "#/$defs/string"},
                    "tilecount": {"$ref": "#/$defs/u32"},
                    "tiles": {"type": "array", "items": {"$ref": "#/$defs/tile"}},
                    "properties": {"$ref": "#/$defs/properties"}
                }
            },
            "tile": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": {"type": "integer", "minimum": 0, "maximum": MAX_GID},
                    "properties": {"$ref": "#/$defs/properties"}
                }
            },
            "properties": {"type": "array", "items": {"$ref": "#/$defs/property"}},
            "property": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                    "value": {}
                }
            }
        }
    })
}

/// The schema of an external tileset file: the map schema's `tileset`.
fn tileset_schema() -> Value {
    let mut schema = map_schema();
    if let Some(obj) = schema.as_object_mut() {
        obj.retain(|k, _| k == "$schema" || k == "$defs");
        obj.insert("$ref".to_owned(), json!("#/$defs/tileset"));
    }
    schema
}

fn no_skip(_: &JsonPath, _: &jsonschema::error::ValidationErrorKind) -> bool {
    false
}

/// Reads and checks the map; problems go to `out`. Returns the map when it
/// could be built (possibly without an external tileset that had problems,
/// which are then in `out`), for checking the agents against it.
pub(super) fn load(file: &Path, out: &mut Vec<Problem>) -> Option<WorldMap> {
    let src = read_json(file, "a Tiled map (.tmj)", out)?;
    let checker = match Checker::new(map_schema(), no_skip) {
        Ok(c) => c,
        Err(e) => {
            out.push(Problem::whole_file(
                file,
                "the built-in map schema to compile",
                e,
            ));
            return None;
        }
    };
    if !checker.check(&src, out) {
        return None;
    }
    let map: TiledMap = match serde_json::from_str(&src.text) {
        Ok(m) => m,
        Err(e) => {
            out.push(src.serde_problem(&e, "a Tiled map"));
            return None;
        }
    };
    let dir = file.parent().unwrap_or(Path::new(""));
    let external: Vec<Option<tiled::Tileset>> = map
        .tilesets
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            ts.source
                .as_deref()
                .and_then(|source| load_tileset(&src, dir, i, source, out))
        })
        .collect();
    match WorldMap::from_tiled(&map, &external) {
        Ok(world) => Some(world),
        Err(problems) => {
            for p in problems {
                let path = JsonPath::from_pointer(&p.pointer, Some(&src.value));
                let found = path
                    .lookup(&src.value)
                    .map_or_else(|| "nothing".to_owned(), describe_value);
                let problem = match p.message.strip_prefix("expected ") {
                    Some(expected) => src.problem(&path, expected, found),
                    None => src
                        .problem(&path, "a map Hearth can read", found)
                        .hint(Some(p.message)),
                };
                out.push(problem);
            }
            None
        }
    }
}

/// Reads the external tileset `source` of `tilesets[index]`.
fn load_tileset(
    map: &Source,
    dir: &Path,
    index: usize,
    source: &str,
    out: &mut Vec<Problem>,
) -> Option<tiled::Tileset> {
    let at = JsonPath::root().at("tilesets").at(index).at("source");
    let file = dir.join(source);
    let xml = has_extension(&file, "tsx")
        || has_extension(&file, "xml")
        || std::fs::read(&file)
            .is_ok_and(|b| b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<'));
    if xml {
        out.push(
            map.problem(&at, "a JSON tileset (.tsj)", format!("{}, an XML tileset", quote(source))).hint(Some(
                "Hearth reads JSON only: open the tileset in Tiled, save it as a JSON tileset (.tsj) with File > Save As, and point `source` at the .tsj (or embed the tileset in the map)"
                    .to_owned(),
            )),
        );
        return None;
    }
    if !file.is_file() {
        out.push(map.problem(
            &at,
            "a tileset file, relative to the map",
            format!(
                "{}, which is not a file ({})",
                quote(source),
                file.display()
            ),
        ));
        return None;
    }
    let src = read_json(&file, "a Tiled tileset (.tsj)", out)?;
    let checker = match Checker::new(tileset_schema(), no_skip) {
        Ok(c) => c,
        Err(e) => {
            out.push(Problem::whole_file(
                &file,
                "the built-in tileset schema to compile",
                e,
            ));
            return None;
        }
    };
    if !checker.check(&src, out) {
        return None;
    }
    match serde_json::from_str(&src.text) {
        Ok(ts) => Some(ts),
        Err(e) => {
            out.push(src.serde_problem(&e, "a Tiled tileset"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemas_compile() {
        assert!(jsonschema::validator_for(&map_schema()).is_ok());
        assert!(jsonschema::validator_for(&tileset_schema()).is_ok());
    }

    #[test]
    fn the_schema_checks_layers_by_type() {
        let v = jsonschema::validator_for(&map_schema()).expect("schema");
        let map = json!({"width": 2, "height": 2, "tilewidth": 16, "tileheight": 16,
            "layers": [{"type": "objectgroup", "objects": [{"name": "x", "x": "1", "y": 0}]},
                       {"type": "tilelayr"}]});
        let paths: Vec<String> = v
            .iter_errors(&map)
            .map(|e| e.instance_path().to_string())
            .collect();
        assert!(
            paths.contains(&"/layers/0/objects/0/x".to_owned()),
            "{paths:?}"
        );
        assert!(paths.contains(&"/layers/1/type".to_owned()), "{paths:?}");
    }
}
