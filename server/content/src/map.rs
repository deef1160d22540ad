//! The world's map as the simulation sees it: a walkable grid and named
//! locations (areas) holding named objects. Built from a Tiled JSON map
//! ([`WorldMap::from_tiled`]) or generated for synthetic worlds
//! ([`WorldMap::generate`]). Pure data and arithmetic: no I/O here.
//!
//! # How a Tiled map is read
//! - **Walls**: a tile is blocked when a tile layer named `collision` (any
//!   case), or a tile layer with the boolean property `collision = true`, has a
//!   tile there; or when any tile layer places a tile whose tileset tile has
//!   the boolean property `collides = true`.
//! - **Locations**: rectangle objects of class `location` (Tiled's "Class",
//!   written `type` in JSON), or any rectangle in an object layer named
//!   `locations`. The object's name is the location's name, which schedules
//!   refer to. An optional string property `kind` ("home", "shop", "outdoors"…)
//!   is kept for the mind.
//! - **Objects**: point or rectangle objects of class `object`, or any object
//!   in an object layer named `objects`: "forge", "counter", "bed". Each belongs
//!   to the location whose rectangle holds its centre.
//! - Orthogonal, finite maps only; positions are in tiles (pixels divided by
//!   the tile size).

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::tiled::{self, Layer, TiledMap};

/// A tile coordinate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub struct Tile {
    pub x: u16,
    pub y: u16,
}

impl Tile {
    pub const fn new(x: u16, y: u16) -> Self {
        Self { x, y }
    }

    /// Chebyshev distance (8-way moves).
    pub fn distance(self, other: Tile) -> u16 {
        self.x.abs_diff(other.x).max(self.y.abs_diff(other.y))
    }
}

/// A rectangle of tiles: `x..x+w`, `y..y+h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TileRect {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
}

impl TileRect {
    pub fn contains(&self, t: Tile) -> bool {
        t.x >= self.x && t.y >= self.y && t.x < self.x + self.w && t.y < self.y + self.h
    }

    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (self.y..self.y + self.h)
            .flat_map(move |y| (self.x..self.x + self.w).map(move |x| Tile::new(x, y)))
    }

    pub fn center(&self) -> Tile {
        Tile::new(self.x + self.w / 2, self.y + self.h / 2)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapObject {
    pub name: String,
    pub tile: Tile,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    pub name: String,
    /// "home", "shop", "outdoors"… when the map says so.
    pub kind: Option<String>,
    pub rect: TileRect,
    pub objects: Vec<MapObject>,
    /// The walkable tiles of the area, row by row.
    pub walkable: Vec<Tile>,
}

impl Location {
    pub fn object(&self, name: &str) -> Option<&MapObject> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }
}

/// Index of a location in [`WorldMap::locations`].
pub type LocationId = u16;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldMap {
    pub width: u16,
    pub height: u16,
    /// `true` where an agent may stand, row by row.
    #[serde(skip)]
    walkable: Vec<bool>,
    pub locations: Vec<Location>,
    #[serde(skip)]
    by_name: HashMap<String, LocationId>,
}

/// Something in a Tiled map that Hearth cannot use, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MapProblem {
    /// JSON pointer into the map file ("/layers/2/objects/0/name").
    pub pointer: String,
    pub message: String,
}

fn problem(pointer: impl Into<String>, message: impl Into<String>) -> MapProblem {
    MapProblem {
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// Largest side Hearth accepts, in tiles.
pub const MAX_SIDE: u32 = 4096;

impl WorldMap {
    /// Builds the map from Tiled data; `tilesets` are the external tilesets
    /// already loaded, in the order of `map.tilesets` (`None` for embedded).
    /// Returns every problem found, not just the first.
    pub fn from_tiled(
        map: &TiledMap,
        external: &[Option<tiled::Tileset>],
    ) -> Result<Self, Vec<MapProblem>> {
        let mut problems = Vec::new();
        if map.kind.as_deref().is_some_and(|k| k != "map") {
            problems.push(problem(
                "/type",
                "expected \"map\" (is this a tileset file?)",
            ));
        }
        if map
            .orientation
            .as_deref()
            .is_some_and(|o| o != "orthogonal")
        {
            problems.push(problem(
                "/orientation",
                "only orthogonal maps are supported",
            ));
        }
        if map.infinite {
            problems.push(problem(
                "/infinite",
                "infinite maps are not supported: give the map a fixed size (Map > Map Properties)",
            ));
        }
        if map.width == 0 || map.height == 0 || map.width > MAX_SIDE || map.height > MAX_SIDE {
            problems.push(problem(
                "/width",
                format!(
                    "map size must be 1..={MAX_SIDE} tiles a side, found {}×{}",
                    map.width, map.height
                ),
            ));
        }
        if map.tilewidth == 0 || map.tileheight == 0 {
            problems.push(problem("/tilewidth", "tile size must be positive"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (w, h) = (map.width as u16, map.height as u16);

        // gid -> collides, from every tileset's tile properties
        let mut colliding: Vec<u32> = Vec::new();
        for (i, ts) in map.tilesets.iter().enumerate() {
            let data = ts
                .embedded
                .as_ref()
                .filter(|_| ts.source.is_none())
                .or(external.get(i).and_then(Option::as_ref));
            if let Some(data) = data {
                colliding.extend(
                    data.tiles
                        .iter()
                        .filter(|t| tiled::bool_property(&t.properties, "collides") == Some(true))
                        .map(|t| ts.firstgid + t.id),
                );
            }
        }

        let mut walkable = vec![true; w as usize * h as usize];
        let mut rects: Vec<(String, Option<String>, TileRect, String)> = Vec::new();
        let mut objects: Vec<(String, Tile, String)> = Vec::new();
        let ctx = Ctx {
            tw: map.tilewidth as f64,
            th: map.tileheight as f64,
            w,
            h,
            colliding: &colliding,
        };
        walk_layers(
            &map.layers,
            "/layers",
            &ctx,
            &mut walkable,
            &mut rects,
            &mut objects,
            &mut problems,
        );

        let mut locations: Vec<Location> = Vec::new();
        let mut by_name = HashMap::new();
        for (name, kind, rect, pointer) in rects {
            if by_name.contains_key(&name.to_lowercase()) {
                problems.push(problem(
                    format!("{pointer}/name"),
                    format!("two locations are named \"{name}\""),
                ));
                continue;
            }
            let tiles = walkable_in(&walkable, w, &rect);
            by_name.insert(name.to_lowercase(), locations.len() as LocationId);
            locations.push(Location {
                name,
                kind,
                rect,
                objects: Vec::new(),
                walkable: tiles,
            });
        }
        for (name, tile, pointer) in objects {
            match locations.iter_mut().find(|l| l.rect.contains(tile)) {
                Some(loc) => loc.objects.push(MapObject { name, tile }),
                None => problems.push(problem(
                    pointer,
                    format!("object \"{name}\" is not inside any location"),
                )),
            }
        }
        if locations.is_empty() {
            problems.push(problem(
                "/layers",
                "the map has no locations: add rectangle objects of class \"location\"",
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                width: w,
                height: h,
                walkable,
                locations,
                by_name,
            })
        } else {
            Err(problems)
        }
    }

    pub fn is_walkable(&self, t: Tile) -> bool {
        t.x < self.width
            && t.y < self.height
            && self.walkable[t.y as usize * self.width as usize + t.x as usize]
    }

    /// Marks a tile blocked or free (map edits, tests).
    pub fn set_walkable(&mut self, t: Tile, walkable: bool) {
        if t.x < self.width && t.y < self.height {
            self.walkable[t.y as usize * self.width as usize + t.x as usize] = walkable;
            for loc in &mut self.locations {
                if loc.rect.contains(t) {
                    loc.walkable = walkable_in(&self.walkable, self.width, &loc.rect);
                }
            }
        }
    }

    /// The location named `name` (case-insensitive).
    pub fn location_id(&self, name: &str) -> Option<LocationId> {
        self.by_name.get(&name.to_lowercase()).copied()
    }

    pub fn location(&self, id: LocationId) -> &Location {
        &self.locations[id as usize]
    }

    /// The location holding tile `t`, if any.
    pub fn location_at(&self, t: Tile) -> Option<LocationId> {
        self.locations
            .iter()
            .position(|l| l.rect.contains(t))
            .map(|i| i as LocationId)
    }

    /// A map of `width × height` tiles with `count` rectangular locations
    /// (homes, shops, squares) separated by streets, deterministic for `seed`.
    /// Used for synthetic worlds larger than the demo map.
    pub fn generate(width: u16, height: u16, count: usize, seed: u64) -> Self {
        let (width, height) = (width.max(16), height.max(16));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut walkable = vec![true; width as usize * height as usize];
        // a block grid: buildings of up to 6×5 tiles on a 9×8 pitch, streets between
        let (pitch_x, pitch_y) = (9u16, 8u16);
        let cols = (width - 2) / pitch_x;
        let rows = (height - 2) / pitch_y;
        let mut locations = Vec::new();
        let mut by_name = HashMap::new();
        let kinds = [
            "home", "home", "home", "shop", "workshop", "square", "tavern", "field",
        ];
        'outer: for r in 0..rows {
            for c in 0..cols {
                if locations.len() >= count.max(1) {
                    break 'outer;
                }
                let x = 1 + c * pitch_x;
                let y = 1 + r * pitch_y;
                let rect = TileRect { x, y, w: 6, h: 5 };
                let kind = kinds[rng.random_range(0..kinds.len())];
                // walls around the building with a door in the bottom wall, except open squares/fields
                if kind != "square" && kind != "field" {
                    for t in rect.tiles() {
                        let edge = t.x == rect.x
                            || t.y == rect.y
                            || t.x == rect.x + rect.w - 1
                            || t.y == rect.y + rect.h - 1;
                        if edge {
                            walkable[t.y as usize * width as usize + t.x as usize] = false;
                        }
                    }
                    let door = Tile::new(rect.x + rect.w / 2, rect.y + rect.h - 1);
                    walkable[door.y as usize * width as usize + door.x as usize] = true;
                }
                let name = format!("{kind} {}", locations.len() + 1);
                let inner = Tile::new(rect.x + 2, rect.y + 2);
                let objects = vec![MapObject {
                    name: match kind {
                        "home" => "bed",
                        "shop" => "counter",
                        "workshop" => "bench",
                        "tavern" => "bar",
                        "field" => "furrow",
                        _ => "fountain",
                    }
                    .to_owned(),
                    tile: inner,
                }];
                let tiles = walkable_in(&walkable, width, &rect);
                by_name.insert(name.to_lowercase(), locations.len() as LocationId);
                locations.push(Location {
                    name,
                    kind: Some(kind.to_owned()),
                    rect,
                    objects,
                    walkable: tiles,
                });
            }
        }
        Self {
            width,
            height,
            walkable,
            locations,
            by_name,
        }
    }
}

/// The walkable tiles of `rect`, row by row, in a grid `width` tiles wide.
fn walkable_in(walkable: &[bool], width: u16, rect: &TileRect) -> Vec<Tile> {
    rect.tiles()
        .filter(|t| walkable[t.y as usize * width as usize + t.x as usize])
        .collect()
}

struct Ctx<'a> {
    tw: f64,
    th: f64,
    w: u16,
    h: u16,
    colliding: &'a [u32],
}

fn walk_layers(
    layers: &[Layer],
    pointer: &str,
    ctx: &Ctx<'_>,
    walkable: &mut [bool],
    rects: &mut Vec<(String, Option<String>, TileRect, String)>,
    objects: &mut Vec<(String, Tile, String)>,
    problems: &mut Vec<MapProblem>,
) {
    for (i, layer) in layers.iter().enumerate() {
        let here = format!("{pointer}/{i}");
        match layer {
            Layer::Tiles(t) => {
                if t.width != ctx.w as u32 || t.height != ctx.h as u32 {
                    problems.push(problem(
                        &here,
                        format!(
                            "layer \"{}\" is {}×{}, the map is {}×{}",
                            t.name, t.width, t.height, ctx.w, ctx.h
                        ),
                    ));
                    continue;
                }
                let gids = match t.gids() {
                    Ok(g) => g,
                    Err(e) => {
                        problems.push(problem(format!("{here}/data"), e.to_string()));
                        continue;
                    }
                };
                let is_collision = t.name.eq_ignore_ascii_case("collision")
                    || tiled::bool_property(&t.properties, "collision") == Some(true);
                for (idx, gid) in gids.iter().enumerate() {
                    if *gid != 0 && (is_collision || ctx.colliding.contains(gid)) {
                        walkable[idx] = false;
                    }
                }
            }
            Layer::Objects(group) => {
                let layer_is_locations = group.name.eq_ignore_ascii_case("locations");
                let layer_is_objects = group.name.eq_ignore_ascii_case("objects");
                for (j, o) in group.objects.iter().enumerate() {
                    let at = format!("{here}/objects/{j}");
                    let class = o.class();
                    let is_location = class.eq_ignore_ascii_case("location")
                        || (layer_is_locations && class.is_empty() && !o.point);
                    let is_object = class.eq_ignore_ascii_case("object")
                        || (layer_is_objects && class.is_empty());
                    if !is_location && !is_object {
                        continue;
                    }
                    if o.name.trim().is_empty() {
                        problems.push(problem(
                            format!("{at}/name"),
                            "a location or object needs a name",
                        ));
                        continue;
                    }
                    let x0 = (o.x / ctx.tw).floor();
                    let y0 = (o.y / ctx.th).floor();
                    if x0 < 0.0 || y0 < 0.0 || x0 >= ctx.w as f64 || y0 >= ctx.h as f64 {
                        problems.push(problem(&at, format!("\"{}\" lies outside the map", o.name)));
                        continue;
                    }
                    if is_location {
                        let x1 = ((o.x + o.width) / ctx.tw).ceil().min(ctx.w as f64);
                        let y1 = ((o.y + o.height) / ctx.th).ceil().min(ctx.h as f64);
                        if o.point || x1 <= x0 || y1 <= y0 {
                            problems.push(problem(
                                &at,
                                format!("location \"{}\" must be a rectangle", o.name),
                            ));
                            continue;
                        }
                        let rect = TileRect {
                            x: x0 as u16,
                            y: y0 as u16,
                            w: (x1 - x0) as u16,
                            h: (y1 - y0) as u16,
                        };
                        let kind = tiled::string_property(&o.properties, "kind").map(str::to_owned);
                        rects.push((o.name.trim().to_owned(), kind, rect, at));
                    } else {
                        let cx = ((o.x + o.width / 2.0) / ctx.tw)
                            .floor()
                            .clamp(0.0, ctx.w as f64 - 1.0);
                        let cy = ((o.y + o.height / 2.0) / ctx.th)
                            .floor()
                            .clamp(0.0, ctx.h as f64 - 1.0);
                        objects.push((
                            o.name.trim().to_owned(),
                            Tile::new(cx as u16, cy as u16),
                            at,
                        ));
                    }
                }
            }
            Layer::Group(g) => walk_layers(
                &g.layers,
                &format!("{here}/layers"),
                ctx,
                walkable,
                rects,
                objects,
                problems,
            ),
            Layer::Image(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TiledMap {
        serde_json::from_value(serde_json::json!({
            "type": "map", "orientation": "orthogonal", "width": 4, "height": 3,
            "tilewidth": 16, "tileheight": 16, "infinite": false,
            "tilesets": [{"firstgid": 1, "name": "t", "tilecount": 2,
                           "tiles": [{"id": 1, "properties": [{"name": "collides", "type": "bool", "value": true}]}]}],
            "layers": [
                {"type": "tilelayer", "name": "ground", "width": 4, "height": 3,
                 "data": [1, 1, 1, 2,  1, 1, 1, 1,  1, 1, 1, 1]},
                {"type": "tilelayer", "name": "Collision", "width": 4, "height": 3,
                 "data": [0, 0, 0, 0,  0, 9, 0, 0,  0, 0, 0, 0]},
                {"type": "objectgroup", "name": "places", "objects": [
                    {"id": 1, "name": "Bakery", "type": "location", "x": 0, "y": 0, "width": 32, "height": 48,
                     "properties": [{"name": "kind", "type": "string", "value": "shop"}]},
                    {"id": 2, "name": "oven", "type": "object", "x": 8, "y": 24, "point": true}
                ]}
            ]
        }))
        .expect("valid tiled json")
    }

    #[test]
    fn collisions_locations_and_objects() {
        let m = WorldMap::from_tiled(&tiny(), &[None]).expect("valid map");
        assert!(!m.is_walkable(Tile::new(3, 0)), "tile with collides=true");
        assert!(!m.is_walkable(Tile::new(1, 1)), "collision layer");
        assert!(m.is_walkable(Tile::new(0, 0)));
        assert!(!m.is_walkable(Tile::new(4, 0)), "outside the map");
        let id = m.location_id("bakery").expect("case-insensitive");
        let loc = m.location(id);
        assert_eq!(
            loc.rect,
            TileRect {
                x: 0,
                y: 0,
                w: 2,
                h: 3
            }
        );
        assert_eq!(loc.kind.as_deref(), Some("shop"));
        assert_eq!(loc.object("Oven").map(|o| o.tile), Some(Tile::new(0, 1)));
        assert_eq!(loc.walkable.len(), 5, "one of six tiles is a wall");
        assert_eq!(m.location_at(Tile::new(1, 2)), Some(id));
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let mut t = tiny();
        if let Layer::Objects(g) = &mut t.layers[2] {
            g.objects[1].x = 60.0; // oven outside the bakery
            let mut dup = g.objects[0].clone();
            dup.id = 3;
            g.objects.push(dup);
        }
        t.infinite = false;
        let problems = WorldMap::from_tiled(&t, &[None]).expect_err("problems");
        let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert!(
            pointers.contains(&"/layers/2/objects/2/name"),
            "{problems:?}"
        );
        assert!(pointers.contains(&"/layers/2/objects/1"), "{problems:?}");
    }

    #[test]
    fn generated_maps_are_deterministic_and_connected_by_doors() {
        let a = WorldMap::generate(100, 60, 40, 7);
        let b = WorldMap::generate(100, 60, 40, 7);
        assert_eq!(a, b);
        assert!(a.locations.len() >= 30);
        for loc in &a.locations {
            assert!(!loc.walkable.is_empty(), "{}", loc.name);
            assert!(loc.object(&loc.objects[0].name).is_some());
        }
    }
}
