//! Tiled's JSON map format (`.tmj`, and external tilesets `.tsj`) as serde
//! types: the subset Hearth reads, in the names Tiled writes. Pure data.
//!
//! Written here rather than taken from a crate: the well-kept `tiled` crate
//! reads only the XML formats (TMX/TSX), and the JSON readers on crates.io are
//! unmaintained. Reference: Tiled's "JSON Map Format" documentation (1.10).

use base64::Engine;
use serde::Deserialize;

/// Tiled stores flip and rotation flags in a GID's top four bits.
pub const GID_FLAGS: u32 = 0xF000_0000;

#[derive(Debug, Clone, Deserialize)]
pub struct TiledMap {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub orientation: Option<String>,
    pub width: u32,
    pub height: u32,
    pub tilewidth: u32,
    pub tileheight: u32,
    #[serde(default)]
    pub infinite: bool,
    #[serde(default)]
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub tilesets: Vec<TilesetRef>,
    #[serde(default)]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Layer {
    #[serde(rename = "tilelayer")]
    Tiles(TileLayer),
    #[serde(rename = "objectgroup")]
    Objects(ObjectGroup),
    #[serde(rename = "group")]
    Group(GroupLayer),
    #[serde(rename = "imagelayer")]
    Image(IgnoredLayer),
}

#[derive(Debug, Clone, Deserialize)]
pub struct TileLayer {
    #[serde(default)]
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// GIDs as an array, or a base64 string (see `encoding`/`compression`).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Infinite maps store chunks instead of `data`.
    #[serde(default)]
    pub chunks: Option<serde_json::Value>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub compression: Option<String>,
    #[serde(default)]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObjectGroup {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub objects: Vec<Object>,
    #[serde(default)]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupLayer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IgnoredLayer {}

#[derive(Debug, Clone, Deserialize)]
pub struct Object {
    #[serde(default)]
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// The object's class. Tiled's JSON writes it as `type` (and 1.9 to 1.10
    /// maps as `class`); both are read.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub class: String,
    pub x: f64,
    pub y: f64,
    #[serde(default)]
    pub width: f64,
    #[serde(default)]
    pub height: f64,
    #[serde(default)]
    pub point: bool,
    #[serde(default)]
    pub properties: Vec<Property>,
}

impl Object {
    pub fn class(&self) -> &str {
        if self.kind.is_empty() {
            &self.class
        } else {
            &self.kind
        }
    }
}

/// A tileset, embedded in the map or referenced by `source`.
#[derive(Debug, Clone, Deserialize)]
pub struct TilesetRef {
    pub firstgid: u32,
    /// Path of an external tileset, relative to the map file.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(flatten)]
    pub embedded: Option<Tileset>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tileset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tilecount: u32,
    #[serde(default)]
    pub tiles: Vec<TileData>,
    #[serde(default)]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TileData {
    pub id: u32,
    #[serde(default)]
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Property {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// The value of a boolean property `name`, if set.
pub fn bool_property(props: &[Property], name: &str) -> Option<bool> {
    props
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_bool())
}

/// The value of a string property `name`, if set.
pub fn string_property<'a>(props: &'a [Property], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_str())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("tile data must be an array of numbers or a base64 string")]
    Shape,
    #[error("tile data is not valid base64: {0}")]
    Base64(String),
    #[error("tile data compression '{0}' is not supported (use none, zlib or gzip)")]
    Compression(String),
    #[error("tile data could not be decompressed: {0}")]
    Decompress(String),
    #[error("tile data has {found} tiles, expected {expected} (width × height)")]
    Length { expected: usize, found: usize },
}

impl TileLayer {
    /// The layer's GIDs, row by row, flip flags cleared.
    pub fn gids(&self) -> Result<Vec<u32>, DataError> {
        let expected = (self.width as usize) * (self.height as usize);
        let raw: Vec<u32> = match &self.data {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or(DataError::Shape)?,
            Some(serde_json::Value::String(text)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| DataError::Base64(e.to_string()))?;
                let bytes = match self.compression.as_deref().unwrap_or("") {
                    "" => bytes,
                    "zlib" => decompress(flate2::read::ZlibDecoder::new(&bytes[..]))?,
                    "gzip" => decompress(flate2::read::GzDecoder::new(&bytes[..]))?,
                    other => return Err(DataError::Compression(other.to_owned())),
                };
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            _ => return Err(DataError::Shape),
        };
        if raw.len() != expected {
            return Err(DataError::Length {
                expected,
                found: raw.len(),
            });
        }
        Ok(raw.into_iter().map(|g| g & !GID_FLAGS).collect())
    }
}

fn decompress(mut reader: impl std::io::Read) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .map_err(|e| DataError::Decompress(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn layer(data: serde_json::Value, compression: Option<&str>) -> TileLayer {
        TileLayer {
            name: "l".into(),
            width: 2,
            height: 2,
            data: Some(data),
            chunks: None,
            encoding: None,
            compression: compression.map(str::to_owned),
            properties: vec![],
        }
    }

    #[test]
    fn array_data_with_flip_flags() {
        let l = layer(serde_json::json!([1, 0, 0x8000_0002u32, 3]), None);
        assert_eq!(l.gids(), Ok(vec![1, 0, 2, 3]));
    }

    #[test]
    fn base64_plain_and_zlib() {
        let bytes: Vec<u8> = [5u32, 0, 7, 1]
            .iter()
            .flat_map(|g| g.to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(layer(b64.into(), None).gids(), Ok(vec![5, 0, 7, 1]));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&bytes).expect("write");
        let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().expect("finish"));
        assert_eq!(layer(b64.into(), Some("zlib")).gids(), Ok(vec![5, 0, 7, 1]));
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        assert_eq!(
            layer(serde_json::json!([1, 2]), None).gids(),
            Err(DataError::Length {
                expected: 4,
                found: 2
            })
        );
        assert_eq!(
            layer(serde_json::json!(["x", 1, 1, 1]), None).gids(),
            Err(DataError::Shape)
        );
        assert!(matches!(
            layer("!!!".into(), None).gids(),
            Err(DataError::Base64(_))
        ));
        assert!(matches!(
            layer("AAAA".into(), Some("zstd")).gids(),
            Err(DataError::Compression(_))
        ));
    }
}
