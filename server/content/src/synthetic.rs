//! Synthetic content for load tests: procedurally generated agents (and a map
//! to hold them), deterministic for a seed. Pure data: no I/O here; it reads
//! only the [`WorldMap`] it is given and builds [`AgentDef`]s whose files are
//! valid [`AgentFile`]s, as a designer could have written them.
//!
//! - [`NameGenerator`]: given and family names from syllable tables.
//! - [`generate`]: `count` agents living on a map.
//! - [`world`]: a generated map sized for `count` agents, and the agents.
//!
//! [`generate`] spreads its work over scoped threads, one per core, in
//! fixed chunks with their own random streams, so the output never depends
//! on the machine.

use std::fmt::Write as _;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::agent::{
    AGENT_FORMAT_VERSION, AgentFile, BigFive, DaySet, Days, Goals, MemorySeed, RelationshipSeed,
    ScheduleEntry, Traits, Weekday,
};
use super::map::{Location, LocationId, Tile, WorldMap};
use super::{AgentDef, Content, ScheduleBlock};

/// Agents per location in [`world`].
pub const AGENTS_PER_LOCATION: usize = 25;
/// Fewest locations [`world`] generates.
pub const MIN_LOCATIONS: usize = 12;

/// Mixed into the seed for the name generator of [`generate`].
const NAME_SALT: u64 = 0x6e61_6d65_735f_7379;
/// Mixed into the seed for the map of [`world`].
const MAP_SALT: u64 = 0x6d61_705f_7379_6e74;

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// Letters in a given name and in a family name (within the promised 3–14).
const GIVEN_LEN: std::ops::RangeInclusive<usize> = 3..=9;
const FAMILY_LEN: std::ops::RangeInclusive<usize> = 4..=11;

/// Names never contain these (checked in lowercase, before capitalising).
const BLOCKED: &[&str] = &[
    "piss", "shit", "fuck", "cunt", "dick", "cock", "tits", "fag", "nig", "rape", "anus", "slut",
    "whor", "bitch", "turd", "porn", "sex", "nazi", "kkk",
];

/// One style of names: a word is onset, nucleus, then a few (medial,
/// nucleus) pairs, then an ending. Medials and endings start with a
/// consonant, so vowels and consonants alternate.
struct Flavour {
    /// Relative frequency among the flavours.
    weight: u32,
    onsets: &'static [&'static str],
    nuclei: &'static [&'static str],
    medials: &'static [&'static str],
    given_endings: &'static [&'static str],
    family_endings: &'static [&'static str],
    /// Whether given names may have two medial syllables.
    long_given: bool,
}

static FLAVOURS: [Flavour; 4] = [
    // homely: Talia Brennock, Edric Hollowell
    Flavour {
        weight: 45,
        onsets: &[
            "b", "br", "c", "d", "dr", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "r", "s",
            "st", "t", "th", "tr", "w", "",
        ],
        nuclei: &["a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "ia", "ea"],
        medials: &[
            "l", "n", "r", "nn", "ll", "rr", "d", "m", "v", "s", "th", "nd", "rl", "ck", "rd",
        ],
        given_endings: &[
            "", "", "", "n", "l", "s", "th", "ric", "na", "lin", "wen", "bert", "da", "ra",
        ],
        family_endings: &[
            "ck", "ll", "wick", "ley", "ton", "ford", "well", "mere", "by", "ridge", "wood",
            "field", "worth", "son", "ter", "more", "hill", "brook",
        ],
        long_given: false,
    },
    // southern: Marina Rossini, Lucia Varetti
    Flavour {
        weight: 20,
        onsets: &[
            "m", "l", "r", "c", "d", "f", "g", "p", "s", "v", "b", "t", "n", "",
        ],
        nuclei: &["a", "e", "i", "o", "u", "a", "o", "i", "ia", "io"],
        medials: &[
            "l", "r", "n", "s", "c", "t", "v", "nz", "ss", "rr", "ll", "tt", "nd", "rc",
        ],
        given_endings: &[
            "", "", "", "na", "no", "lo", "la", "ro", "ta", "to", "sa", "nio",
        ],
        family_endings: &[
            "lli", "ni", "ti", "zzi", "no", "ra", "nti", "rdi", "si", "tti", "ldi",
        ],
        long_given: false,
    },
    // northern: Sigrun Thorsvik, Halvar Ekberg
    Flavour {
        weight: 20,
        onsets: &[
            "k", "sk", "st", "g", "h", "r", "t", "th", "v", "br", "d", "s", "sv", "f", "", "",
        ],
        nuclei: &["a", "e", "i", "o", "u", "a", "e", "y"],
        medials: &[
            "r", "rn", "lv", "g", "k", "nn", "st", "rg", "ld", "lf", "dr", "rs",
        ],
        given_endings: &[
            "", "r", "n", "ld", "lf", "grim", "run", "rik", "dis", "mund", "gar",
        ],
        family_endings: &[
            "sen", "son", "holm", "vik", "berg", "strand", "gard", "dal", "rud", "lund", "by",
            "hus",
        ],
        long_given: false,
    },
    // sylvan: Elaria Thalwyn, Ysiel Vandir
    Flavour {
        weight: 15,
        onsets: &[
            "l", "el", "s", "n", "th", "f", "y", "m", "r", "v", "il", "", "",
        ],
        nuclei: &["a", "e", "i", "a", "e", "i", "ae", "ia", "y", "o"],
        medials: &["l", "n", "r", "th", "v", "s", "ll", "nd", "lv", "rw"],
        given_endings: &[
            "", "", "n", "l", "s", "th", "wyn", "riel", "ra", "lith", "ne", "dil",
        ],
        family_endings: &[
            "lore", "wyn", "thas", "driel", "mir", "leth", "las", "vaen", "ndir", "sel",
        ],
        long_given: true,
    },
];

/// A name generator built from syllable tables (the "naming system"): given
/// names and family names from onset/nucleus/coda tables in a few flavours
/// (homely, southern, northern, sylvan), deterministic for its seed, e.g.
/// "Talia Brennock". Every part is a capitalised run of 3–14 ASCII letters.
#[derive(Debug, Clone)]
pub struct NameGenerator {
    rng: ChaCha8Rng,
}

impl NameGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A given name: "Talia".
    pub fn given(&mut self) -> String {
        let flavour = self.flavour();
        let mut out = String::with_capacity(16);
        self.push_word(flavour, true, &mut out);
        out
    }

    /// A family name: "Brennock".
    pub fn family(&mut self) -> String {
        let flavour = self.flavour();
        let mut out = String::with_capacity(16);
        self.push_word(flavour, false, &mut out);
        out
    }

    /// A given name and a family name, usually of the same flavour: "Talia Brennock".
    pub fn full(&mut self) -> String {
        let mut out = String::with_capacity(32);
        self.push_full(None, &mut out);
        out
    }

    /// Appends a full name to `out`; with `family`, that family name instead
    /// of a new one.
    fn push_full(&mut self, family: Option<&str>, out: &mut String) {
        let flavour = self.flavour();
        self.push_word(flavour, true, out);
        out.push(' ');
        match family {
            Some(family) => out.push_str(family),
            None => {
                let flavour = if self.rng.random_bool(0.85) {
                    flavour
                } else {
                    self.flavour()
                };
                self.push_word(flavour, false, out);
            }
        }
    }

    fn flavour(&mut self) -> &'static Flavour {
        let total: u32 = FLAVOURS.iter().map(|f| f.weight).sum();
        let mut roll = self.rng.random_range(0..total);
        for f in &FLAVOURS {
            if roll < f.weight {
                return f;
            }
            roll -= f.weight;
        }
        &FLAVOURS[0]
    }

    /// Appends one capitalised word: 3–9 letters for a given name, 4–11
    /// for a family name.
    fn push_word(&mut self, f: &Flavour, given: bool, out: &mut String) {
        let start = out.len();
        let rng = &mut self.rng;
        let (endings, lengths) = if given {
            (f.given_endings, GIVEN_LEN)
        } else {
            (f.family_endings, FAMILY_LEN)
        };
        for _ in 0..16 {
            out.truncate(start);
            let onset = pick(rng, f.onsets);
            out.push_str(onset);
            out.push_str(pick(rng, f.nuclei));
            let roll = rng.random_range(0..100u8);
            let middles = match (given, roll) {
                (true, 0..30) | (false, 0..55) => 0,
                (true, 95..) if f.long_given => 2,
                _ => 1,
            };
            for _ in 0..middles {
                let mut medial = pick(rng, f.medials);
                if medial == onset {
                    // "Thathath": a second draw, which may differ
                    medial = pick(rng, f.medials);
                }
                out.push_str(medial);
                out.push_str(pick(rng, f.nuclei));
            }
            out.push_str(pick(rng, endings));
            let word = &out[start..];
            if lengths.contains(&word.len()) && !blocked(word) {
                if let Some(first) = out.get_mut(start..start + 1) {
                    first.make_ascii_uppercase();
                }
                return;
            }
        }
        // practically unreachable: sixteen draws all too short or too long
        out.truncate(start);
        out.push_str(if given { "Ash" } else { "Brook" });
    }
}

/// Whether `word` contains one of [`BLOCKED`] (cheaper than `str::contains`
/// for many short needles).
fn blocked(word: &str) -> bool {
    let bytes = word.as_bytes();
    (0..bytes.len()).any(|i| {
        BLOCKED
            .iter()
            .any(|b| b.as_bytes()[0] == bytes[i] && bytes[i..].starts_with(b.as_bytes()))
    })
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, table: &[T]) -> T {
    table[rng.random_range(0..table.len())]
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// What a location is for, from its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Home,
    Shop,
    Workshop,
    Square,
    Tavern,
    Field,
    Other,
}

impl Kind {
    fn of(location: &Location) -> Self {
        let Some(kind) = location.kind.as_deref() else {
            return Kind::Other;
        };
        [
            ("home", Kind::Home),
            ("shop", Kind::Shop),
            ("workshop", Kind::Workshop),
            ("square", Kind::Square),
            ("tavern", Kind::Tavern),
            ("field", Kind::Field),
        ]
        .into_iter()
        .find(|(name, _)| kind.eq_ignore_ascii_case(name))
        .map_or(Kind::Other, |(_, k)| k)
    }

    fn is_social(self) -> bool {
        matches!(self, Kind::Tavern | Kind::Square)
    }

    fn job(self) -> &'static Job {
        &JOBS[self as usize]
    }

    fn leisure(self) -> &'static [&'static str] {
        match self {
            Kind::Home => &[
                "visit friends",
                "play cards with the neighbours",
                "help a neighbour with chores",
            ],
            Kind::Shop => &[
                "browse the shelves",
                "window-shop",
                "chat with the shopkeeper",
            ],
            Kind::Workshop => &[
                "watch the craftsmen at work",
                "tinker with an old project",
                "ask about a repair",
            ],
            Kind::Square => &[
                "stroll around the square",
                "watch the street performers",
                "chat with neighbours by the fountain",
                "browse the market stalls",
                "feed the pigeons",
            ],
            Kind::Tavern => &[
                "drink and swap stories",
                "play cards with the regulars",
                "listen to the fiddler",
                "share a pitcher with friends",
            ],
            Kind::Field => &[
                "walk along the fields",
                "pick wildflowers",
                "watch the sunset over the fields",
            ],
            Kind::Other => &["wander about", "sit and watch the world go by"],
        }
    }
}

/// A job, by the kind of its workplace. Work hours are minutes after
/// midnight, each jittered by up to an hour either way in 15-minute steps;
/// the agent wakes 30 to 60 minutes before work starts.
struct Job {
    occupation: &'static str,
    work: &'static [&'static str],
    primary: &'static [&'static str],
    secondary: &'static [&'static str],
    abilities: &'static [&'static str],
    work_start: u16,
    work_end: u16,
}

/// Indexed by `Kind as usize`.
static JOBS: [Job; 7] = [
    Job {
        occupation: "homemaker",
        work: &[
            "keep house",
            "mend clothes",
            "tend the kitchen garden",
            "bake for the week",
        ],
        primary: &[
            "Keep the household fed and happy",
            "Turn the house into the warmest home on the street",
        ],
        secondary: &[
            "Put up enough preserves for winter",
            "Fix the draughty window",
            "Grow prize-winning pumpkins",
        ],
        abilities: &["housekeeping", "preserving", "budgeting"],
        work_start: 480,
        work_end: 1050,
    },
    Job {
        occupation: "shopkeeper",
        work: &[
            "mind the counter",
            "stock the shelves",
            "serve customers",
            "count the till",
            "unpack deliveries",
        ],
        primary: &[
            "Keep the shop profitable through the lean season",
            "Save enough to open a second shop",
            "Become the most trusted merchant in town",
            "Pay off the debt on the shop",
        ],
        secondary: &[
            "Find a reliable supplier of spices",
            "Teach an apprentice the trade",
            "Repaint the shop sign",
            "Learn to read contracts properly",
        ],
        abilities: &[
            "bookkeeping",
            "haggling",
            "remembering faces",
            "appraising goods",
        ],
        work_start: 480,
        work_end: 1080,
    },
    Job {
        occupation: "craftsman",
        work: &[
            "work at the bench",
            "carve and plane timber",
            "repair broken tools",
            "finish a commissioned piece",
            "sharpen the chisels",
        ],
        primary: &[
            "Craft a masterpiece worthy of the guild",
            "Win the commission for the new town hall doors",
            "Train an apprentice to take over the workshop",
            "Build a reputation beyond the valley",
        ],
        secondary: &[
            "Buy a better lathe",
            "Find a source of seasoned oak",
            "Finish the cradle promised to a neighbour",
            "Keep the workshop free of accidents",
        ],
        abilities: &[
            "carpentry",
            "metalwork",
            "joinery",
            "tool repair",
            "pottery",
        ],
        work_start: 465,
        work_end: 1050,
    },
    Job {
        occupation: "street vendor",
        work: &[
            "sell from the stall",
            "call out the day's prices",
            "set up the stall",
            "chat up passers-by",
            "restock the cart",
        ],
        primary: &[
            "Earn enough to rent a proper shop",
            "Have the busiest stall on market day",
            "Support the family through the winter",
        ],
        secondary: &[
            "Learn the name of every regular",
            "Get a licence for a second stall",
            "Find a cheaper wholesaler",
            "Make the stall's awning waterproof",
        ],
        abilities: &["salesmanship", "a loud voice", "juggling", "quick sums"],
        work_start: 420,
        work_end: 1020,
    },
    Job {
        occupation: "tavern keeper",
        work: &[
            "pour drinks",
            "cook the stew",
            "wipe down the tables",
            "roll in new barrels",
            "keep the peace at the bar",
        ],
        primary: &[
            "Make the tavern the heart of the town",
            "Brew an ale people travel to taste",
            "Keep the tavern open through hard times",
        ],
        secondary: &[
            "Host a music night every week",
            "Hire a cook who can make pies",
            "Fix the leaking cellar roof",
            "Collect the debts of the regulars",
        ],
        abilities: &[
            "brewing",
            "breaking up fights",
            "remembering orders",
            "tapping casks",
        ],
        work_start: 540,
        work_end: 1170,
    },
    Job {
        occupation: "farmer",
        work: &[
            "plough the field",
            "sow seeds",
            "pull weeds",
            "mend the fences",
            "harvest what is ripe",
            "haul water",
        ],
        primary: &[
            "Bring in the best harvest in years",
            "Buy the neighbouring field",
            "Keep the farm in the family",
        ],
        secondary: &[
            "Dig a new irrigation ditch",
            "Breed a stronger plough horse",
            "Sell surplus grain at the market",
            "Plant an orchard",
        ],
        abilities: &[
            "farming",
            "animal husbandry",
            "reading the weather",
            "ploughing",
        ],
        work_start: 390,
        work_end: 1020,
    },
    Job {
        occupation: "labourer",
        work: &["run errands", "carry loads", "do odd jobs", "sweep up"],
        primary: &["Find steady work", "Save for a place of one's own"],
        secondary: &[
            "Learn a proper trade",
            "Mend the old boots",
            "Repay a friend's loan",
        ],
        abilities: &["hauling", "patience", "digging"],
        work_start: 480,
        work_end: 1050,
    },
];

const PHYSICAL: &[&str] = &[
    "tall",
    "short",
    "broad-shouldered",
    "wiry",
    "stocky",
    "freckled",
    "weathered hands",
    "a crooked nose",
    "a booming laugh",
    "a bad knee",
    "sharp eyes",
    "soft-spoken",
    "a slight limp",
    "calloused palms",
    "a long braid",
    "a scar across the chin",
    "ruddy cheeks",
    "spectacles",
    "a missing tooth",
    "quick on their feet",
    "grey at the temples",
    "strong hands",
    "slender",
    "heavy-set",
    "sunburnt",
    "a gap-toothed smile",
    "ink-stained fingers",
    "bushy eyebrows",
];

const ABILITIES: &[&str] = &[
    "storytelling",
    "singing",
    "fishing",
    "herbalism",
    "reading and writing",
    "sewing",
    "cooking",
    "whittling",
    "dancing",
    "riding",
    "archery",
    "first aid",
    "chess",
    "gardening",
    "knot-tying",
    "bargaining",
    "animal care",
    "drawing",
    "playing the fiddle",
    "swimming",
];

/// Things to like or dislike (at most 64: picks are tracked in a bit mask).
const TOPICS: &[&str] = &[
    "fresh bread",
    "thunderstorms",
    "gossip",
    "card games",
    "old songs",
    "river fishing",
    "wildflowers",
    "honey cakes",
    "long walks",
    "chess",
    "dancing",
    "quiet mornings",
    "cats",
    "dogs",
    "horses",
    "poetry",
    "spiced wine",
    "festivals",
    "woodcarving",
    "stargazing",
    "gardening",
    "rain on the roof",
    "the smell of cedar",
    "riddles",
    "apple pie",
    "sea stories",
    "bright colours",
    "candlelight",
    "puppet shows",
    "hot baths",
    "snow",
    "herbal tea",
    "market days",
    "ghost stories",
    "loud music",
    "crowds",
    "early mornings",
    "cold soup",
    "mud",
    "wasps",
    "haggling",
    "sour beer",
];

/// (low, high) for openness, conscientiousness, extraversion, agreeableness, neuroticism.
const DISPOSITIONS: [(&str, &str); 5] = [
    (
        "Prefers the familiar and distrusts novelty.",
        "Endlessly curious about people, places and ideas.",
    ),
    (
        "Lives in the moment and lets chores pile up.",
        "Careful and dependable; finishes what they start.",
    ),
    (
        "Quiet and reserved, happiest in small company.",
        "Outgoing and talkative; draws energy from a crowd.",
    ),
    (
        "Blunt and competitive, slow to forgive.",
        "Warm and generous, quick to help a neighbour.",
    ),
    (
        "Calm under pressure; little rattles them.",
        "Anxious and easily stung by a harsh word.",
    ),
];

const ORIGINS: &[&str] = &[
    "grew up on a farm beyond the river",
    "was born above a bakery in this very town",
    "came to the valley as a child with a travelling troupe",
    "was raised by a grandmother who knew every herb by name",
    "arrived years ago after a hard winter in the mountains",
    "is the youngest of seven siblings",
    "spent a few restless years at sea before settling down",
    "was apprenticed young and left home at twelve",
];

/// A seed memory: `before`, then the agent's home, workplace, first like or
/// first dislike (by `fill`: 0 to 3), then `after`.
struct MemoryTemplate {
    before: &'static str,
    fill: Option<usize>,
    after: &'static str,
    tag: &'static str,
    /// Lowest and highest importance.
    importance: (u8, u8),
}

/// At most 8 (picks are tracked in a bit mask).
const MEMORIES: [MemoryTemplate; 6] = [
    MemoryTemplate {
        before: "Moved into ",
        fill: Some(0),
        after: " with little more than a bag of clothes.",
        tag: "home",
        importance: (4, 6),
    },
    MemoryTemplate {
        before: "My first day at ",
        fill: Some(1),
        after: ": nothing went to plan, but it got done.",
        tag: "work",
        importance: (3, 6),
    },
    MemoryTemplate {
        before: "Tasted ",
        fill: Some(2),
        after: " at the midsummer fair and never forgot it.",
        tag: "fair",
        importance: (2, 4),
    },
    MemoryTemplate {
        before: "Was caught in a storm on the road as a child and sheltered in a barn until dawn.",
        fill: None,
        after: "",
        tag: "childhood",
        importance: (5, 8),
    },
    MemoryTemplate {
        before: "Had a falling-out with a neighbour over ",
        fill: Some(3),
        after: "; it still stings.",
        tag: "conflict",
        importance: (4, 7),
    },
    MemoryTemplate {
        before: "Once got lost in the hills for a whole night and came back to a search party.",
        fill: None,
        after: "",
        tag: "adventure",
        importance: (5, 9),
    },
];

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

/// A location as the generator sees it, precomputed once per map.
struct Place<'m> {
    name: &'m str,
    kind: Kind,
    center: Tile,
    /// The object named "bed", if any.
    bed: Option<&'m str>,
    /// The first object, if any.
    object: Option<&'m str>,
}

/// Agent indices grouped by a location (their home, or their workplace).
struct Buckets {
    start: Vec<usize>,
    members: Vec<usize>,
}

impl Buckets {
    fn new(people: &[Person], key: impl Fn(&Person) -> LocationId, locations: usize) -> Self {
        let mut start = vec![0usize; locations + 1];
        for p in people {
            start[usize::from(key(p)) + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut next = start.clone();
        let mut members = vec![0usize; people.len()];
        for (agent, p) in people.iter().enumerate() {
            let k = usize::from(key(p));
            members[next[k]] = agent;
            next[k] += 1;
        }
        Self { start, members }
    }

    fn of(&self, key: LocationId) -> &[usize] {
        let k = usize::from(key);
        &self.members[self.start[k]..self.start[k + 1]]
    }
}

/// Agents generated from one random stream; the unit of parallel work.
const CHUNK: usize = 4096;

/// Who an agent is and where they live and work: decided first, in order,
/// since families form as agents move into homes one after another, and
/// read by every chunk for relationships.
struct Person {
    name: String,
    id: String,
    home: LocationId,
    work: LocationId,
}

/// `count` agents living on `map`, deterministic for `seed`, in id order.
///
/// Ids are "syn-000123-talia" (the number zero-padded to the same width for
/// every agent, so sorting by id is sorting by number). Homes are among the
/// map's "home" locations (any location if it has none); workplaces among
/// the others, and the job follows the workplace's kind. Each schedule covers
/// the whole week: sleep at home across midnight, breakfast, work on workdays
/// (usually Monday to Friday), a flexible day out on free days, lunch at a
/// tavern or square when the map has one, a flexible evening out, dinner at
/// home. Relationships point at housemates ("family" when they share a
/// family name, else "neighbor") and coworkers ("colleague", sometimes
/// "rival").
///
/// After names and homes, the work runs on up to one thread per core, in
/// fixed chunks with their own random streams: the result does not depend on
/// the number of threads. Returns no agents for a map without locations.
pub fn generate(map: &WorldMap, count: usize, seed: u64) -> Vec<AgentDef> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    generate_on(map, count, seed, threads)
}

/// [`generate`] on up to `threads` threads.
fn generate_on(map: &WorldMap, count: usize, seed: u64, threads: usize) -> Vec<AgentDef> {
    let located = map.locations.len().min(usize::from(LocationId::MAX) + 1);
    if located == 0 || count == 0 {
        return Vec::new();
    }
    let places: Vec<Place<'_>> = map.locations[..located]
        .iter()
        .map(|l| Place {
            name: &l.name,
            kind: Kind::of(l),
            center: l.rect.center(),
            bed: l.object("bed").map(|o| o.name.as_str()),
            object: l.objects.first().map(|o| o.name.as_str()),
        })
        .collect();
    let ids = || (0..located).map(|i| i as LocationId);
    let all: Vec<LocationId> = ids().collect();
    let with = |f: &dyn Fn(Kind) -> bool| -> Vec<LocationId> {
        let found: Vec<LocationId> = ids().filter(|&i| f(places[usize::from(i)].kind)).collect();
        if found.is_empty() { all.clone() } else { found }
    };
    let homes = with(&|k| k == Kind::Home);
    let workplaces = with(&|k| k != Kind::Home);
    let social: Vec<LocationId> = ids()
        .filter(|&i| places[usize::from(i)].kind.is_social())
        .collect();

    // 1. names, ids, homes and workplaces, in order
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut names = NameGenerator::new(seed ^ NAME_SALT);
    let width = id_width(count);
    let mut last_resident = vec![usize::MAX; located];
    let mut people: Vec<Person> = Vec::with_capacity(count);
    for number in 0..count {
        let home = pick(&mut rng, &homes);
        let work = near(
            &mut rng,
            &places,
            &workplaces,
            places[usize::from(home)].center,
            NEARBY_TRIES,
        );
        // a third of agents join the family of someone already living there
        let family = match last_resident[usize::from(home)] {
            usize::MAX => None,
            other if rng.random_bool(0.35) => people.get(other).and_then(|p| surname(&p.name)),
            _ => None,
        };
        let mut name = String::with_capacity(24);
        names.push_full(family, &mut name);
        let given = name.split_once(' ').map_or(name.as_str(), |(g, _)| g);
        let mut id = String::with_capacity(5 + width + given.len());
        let _ = write!(id, "syn-{number:0width$}-");
        id.extend(given.chars().map(|c| c.to_ascii_lowercase()));
        last_resident[usize::from(home)] = number;
        people.push(Person {
            name,
            id,
            home,
            work,
        });
    }

    // 2. everything else, chunk by chunk, each chunk on its own random stream
    let by_home = Buckets::new(&people, |p| p.home, located);
    let by_work = Buckets::new(&people, |p| p.work, located);
    let make = |range: std::ops::Range<usize>, out: &mut Vec<AgentDef>| {
        for start in range.clone().step_by(CHUNK) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(1 + (start / CHUNK) as u64);
            let mut g = Generator {
                rng,
                places: &places,
                all: &all,
                social: &social,
            };
            let end = (start + CHUNK).min(range.end);
            for (i, person) in (start..end).zip(&people[start..end]) {
                let mut agent = g.agent(person);
                let pools = [by_home.of(person.home), by_work.of(person.work)];
                agent.file.relationships = relationships(&mut g.rng, i, &people, pools);
                out.push(agent);
            }
        }
    };
    // whole chunks per thread; this thread does the first share
    let chunks = count.div_ceil(CHUNK);
    let threads = threads.clamp(1, chunks);
    let share = chunks.div_ceil(threads) * CHUNK;
    let mut agents = Vec::with_capacity(count);
    let make = &make;
    let rest: Vec<Vec<AgentDef>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|t| {
                s.spawn(move || {
                    let range = (t * share).min(count)..((t + 1) * share).min(count);
                    let mut out = Vec::with_capacity(range.len());
                    make(range, &mut out);
                    out
                })
            })
            .collect();
        make(0..share.min(count), &mut agents);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in rest {
        agents.extend(part);
    }
    agents
}

/// Digits of the number in ids: enough for `count - 1`, at least six.
fn id_width(count: usize) -> usize {
    let mut width = 1;
    let mut rest = count.saturating_sub(1) / 10;
    while rest > 0 {
        width += 1;
        rest /= 10;
    }
    width.max(6)
}

/// The family name in a full name (everything after the first space).
fn surname(name: &str) -> Option<&str> {
    name.split_once(' ').map(|(_, family)| family)
}

/// How many random candidates a workplace or haunt is the nearest of: people
/// mostly work and go out near home, which keeps walks (and path searches)
/// short on large maps.
const NEARBY_TRIES: usize = 24;

/// Of `tries` random locations of `pool`, the nearest to `from`.
fn near(
    rng: &mut ChaCha8Rng,
    places: &[Place<'_>],
    pool: &[LocationId],
    from: Tile,
    tries: usize,
) -> LocationId {
    let mut best = pick(rng, pool);
    let mut best_distance = places[usize::from(best)].center.distance(from);
    for _ in 1..tries {
        let other = pick(rng, pool);
        let d = places[usize::from(other)].center.distance(from);
        if d < best_distance {
            (best, best_distance) = (other, d);
        }
    }
    best
}

/// 0–3 relationships of agent `me` towards housemates (`pools[0]`) and
/// coworkers (`pools[1]`).
fn relationships(
    rng: &mut ChaCha8Rng,
    me: usize,
    people: &[Person],
    pools: [&[usize]; 2],
) -> Vec<RelationshipSeed> {
    let n = rng.random_range(0..=3usize);
    let mut out = Vec::with_capacity(n);
    let mut targets = [usize::MAX; 3];
    let family_of = |i: usize| people.get(i).and_then(|p| surname(&p.name));
    for slot in 0..n {
        for _attempt in 0..4 {
            let housemate = rng.random_bool(0.5);
            let pool = pools[usize::from(!housemate)];
            if pool.len() < 2 {
                continue;
            }
            let other = pick(rng, pool);
            if other == me || targets.contains(&other) {
                continue;
            }
            targets[slot] = other;
            let kind = if housemate {
                if family_of(me) == family_of(other) {
                    "family"
                } else {
                    "neighbor"
                }
            } else if rng.random_bool(0.1) {
                "rival"
            } else {
                "colleague"
            };
            let (affection, trust) = match kind {
                "family" => (20..=90, 40..=95),
                "neighbor" => (-20..=60, 10..=70),
                "rival" => (-70..=-10, 0..=30),
                _ => (-10..=70, 20..=80),
            };
            out.push(RelationshipSeed {
                target: people[other].id.clone(),
                kind: kind.to_owned(),
                affection: rng.random_range(affection) as f32,
                trust: rng.random_range(trust) as f32,
            });
            break;
        }
    }
    out
}

struct Generator<'a, 'm> {
    rng: ChaCha8Rng,
    places: &'a [Place<'m>],
    all: &'a [LocationId],
    social: &'a [LocationId],
}

/// The day of one agent, in minutes after midnight. Always
/// `wake < work_start < lunch < lunch_end < work_end < evening_end < sleep`;
/// sleep runs to the next day's `wake`.
struct Routine {
    wake: u16,
    work_start: u16,
    lunch: u16,
    lunch_end: u16,
    work_end: u16,
    evening_end: u16,
    sleep: u16,
}

impl Generator<'_, '_> {
    fn near(&mut self, pool: &[LocationId], from: Tile, tries: usize) -> LocationId {
        near(&mut self.rng, self.places, pool, from, tries)
    }

    /// Somewhere to spend free time: usually a tavern or square near `from`,
    /// sometimes anywhere.
    fn outing(&mut self, from: Tile, social_odds: f64) -> LocationId {
        if !self.social.is_empty() && self.rng.random_bool(social_odds) {
            self.near(self.social, from, NEARBY_TRIES)
        } else {
            pick(&mut self.rng, self.all)
        }
    }

    /// `minutes` give or take an hour, in 15-minute steps.
    fn jitter(&mut self, minutes: u16) -> u16 {
        minutes - 60 + 15 * self.rng.random_range(0..=8u16)
    }

    /// The agent of `person`, but for relationships.
    fn agent(&mut self, person: &Person) -> AgentDef {
        let places = self.places;
        let (home, work) = (person.home, person.work);
        let (home_place, work_place) = (&places[usize::from(home)], &places[usize::from(work)]);
        let job = work_place.kind.job();
        let (name, id) = (person.name.clone(), person.id.clone());
        let given = name.split_once(' ').map_or(name.as_str(), |(g, _)| g);

        let age = self.rng.random_range(16..=85u32);
        let mut trait_of = || {
            // the mean of two uniform draws: most people are middling
            let x = (self.rng.random::<f32>() + self.rng.random::<f32>()) / 2.0;
            (x * 100.0).round() / 100.0
        };
        let personality = BigFive {
            openness: trait_of(),
            conscientiousness: trait_of(),
            extraversion: trait_of(),
            agreeableness: trait_of(),
            neuroticism: trait_of(),
        };

        let n = self.rng.random_range(1..=3);
        let physical = self.distinct(PHYSICAL, n, &mut 0);
        let mut abilities = Vec::with_capacity(3);
        abilities.push(pick(&mut self.rng, job.abilities).to_owned());
        for _ in 0..self.rng.random_range(0..=2) {
            let a = pick(&mut self.rng, ABILITIES);
            if !abilities.iter().any(|b| b == a) {
                abilities.push(a.to_owned());
            }
        }
        let mut used = 0u64;
        let n = self.rng.random_range(1..=3);
        let likes = self.distinct(TOPICS, n, &mut used);
        let n = self.rng.random_range(1..=2);
        let dislikes = self.distinct(TOPICS, n, &mut used);

        let primary = pick(&mut self.rng, job.primary).to_owned();
        let n = self.rng.random_range(0..=2);
        let secondary = self.distinct(job.secondary, n, &mut 0);

        let (schedule, blocks) = self.schedule(home, work, job);

        let constitution = constitution(&personality);
        let origin = pick(&mut self.rng, ORIGINS);
        let (occupation, work_name, home_name) = (job.occupation, work_place.name, home_place.name);
        let ability = first(&abilities, "patience");
        let (like, dislike) = (first(&likes, "company"), first(&dislikes, "noise"));
        let mut age_text = [0u8; 2];
        let age_text = decimal(age, &mut age_text);
        let background = concat(&[
            given,
            " ",
            origin,
            ". Now ",
            age_text,
            ", ",
            given,
            " works as a ",
            occupation,
            " at ",
            work_name,
            " and lives at ",
            home_name,
            ". Friends know ",
            given,
            " for ",
            ability,
            " and a fondness for ",
            like,
            ".",
        ]);
        let memories = self.memories([home_name, work_name, like, dislike]);

        let file = AgentFile {
            schema: None,
            version: AGENT_FORMAT_VERSION,
            id,
            name,
            age,
            occupation: occupation.to_owned(),
            constitution,
            background,
            traits: Traits {
                personality,
                physical,
                abilities,
            },
            likes,
            dislikes,
            goals: Goals { primary, secondary },
            home: home_name.to_owned(),
            start_location: home_name.to_owned(),
            schedule,
            relationships: Vec::new(),
            memories,
            llm: None,
        };
        AgentDef {
            file,
            home,
            start: home,
            schedule: blocks,
        }
    }

    /// `n` different entries of `table` not yet in `used` (bit per index;
    /// tables longer than 64 are only drawn from their first 64 entries).
    fn distinct(&mut self, table: &[&str], n: usize, used: &mut u64) -> Vec<String> {
        let len = table.len().min(64);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut i = self.rng.random_range(0..len);
            // on a collision, the next free entry (there is one while picks are few)
            for _ in 0..len {
                if *used & (1 << i) == 0 {
                    break;
                }
                i = (i + 1) % len;
            }
            if *used & (1 << i) != 0 {
                break;
            }
            *used |= 1 << i;
            out.push(table[i].to_owned());
        }
        out
    }

    fn routine(&mut self, job: &Job) -> Routine {
        let work_start = self.jitter(job.work_start);
        let wake = work_start - 15 * self.rng.random_range(2..=4u16);
        let lunch = 12 * 60 + 15 * self.rng.random_range(0..=4u16);
        let lunch_end = lunch + 15 * self.rng.random_range(3..=4u16);
        let work_end = self.jitter(job.work_end);
        let sleep = 21 * 60 + 30 + 15 * self.rng.random_range(0..=9u16);
        let evening_end = (work_end + 15 * self.rng.random_range(6..=12u16)).min(sleep - 30);
        Routine {
            wake,
            work_start,
            lunch,
            lunch_end,
            work_end,
            evening_end,
            sleep,
        }
    }

    /// The week of an agent: eight entries, in the order of the day.
    fn schedule(
        &mut self,
        home: LocationId,
        work: LocationId,
        job: &Job,
    ) -> (Vec<ScheduleEntry>, Vec<ScheduleBlock>) {
        let places = self.places;
        let r = self.routine(job);
        let (home_place, work_place) = (&places[usize::from(home)], &places[usize::from(work)]);

        // one agent in seven takes a weekday off instead of working it
        let (workdays, free_days) = if self.rng.random_bool(1.0 / 7.0) {
            let off = Weekday::ALL[self.rng.random_range(0..5)];
            let work_list = Weekday::ALL[..5]
                .iter()
                .copied()
                .filter(|&d| d != off)
                .collect();
            (
                Days::List(work_list),
                Days::List(vec![off, Weekday::Sat, Weekday::Sun]),
            )
        } else {
            (Days::Named(DaySet::Weekdays), Days::Named(DaySet::Weekends))
        };
        let daily = Days::Named(DaySet::Daily);

        let lunch_at = if self.social.is_empty() {
            work
        } else {
            self.near(self.social, work_place.center, NEARBY_TRIES)
        };
        let lunch_place = &places[usize::from(lunch_at)];
        let (lunch_activity, lunch_object) = if lunch_place.kind.is_social() {
            ("have lunch", lunch_place.object)
        } else {
            ("eat a packed lunch", None)
        };
        let work_object = if work_place.kind == Kind::Home {
            None
        } else {
            work_place.object
        };
        let day_out = self.outing(home_place.center, 0.5);
        let evening_out = self.outing(home_place.center, 0.75);
        let (work_am, work_pm) = (pick(&mut self.rng, job.work), pick(&mut self.rng, job.work));
        let leisure = |g: &mut Self, at: LocationId| {
            if at == home {
                "potter about at home"
            } else {
                pick(&mut g.rng, places[usize::from(at)].kind.leisure())
            }
        };
        let (day, evening) = (leisure(self, day_out), leisure(self, evening_out));

        // free days: out all day, lunch (which is not flexible) included
        let plan: [Slot<'_>; 8] = [
            (
                &daily,
                r.wake,
                r.work_start,
                "have breakfast",
                home,
                None,
                5,
                false,
            ),
            (
                &workdays,
                r.work_start,
                r.lunch,
                work_am,
                work,
                work_object,
                7,
                false,
            ),
            (
                &free_days,
                r.work_start,
                r.work_end,
                day,
                day_out,
                None,
                3,
                true,
            ),
            (
                &daily,
                r.lunch,
                r.lunch_end,
                lunch_activity,
                lunch_at,
                lunch_object,
                5,
                false,
            ),
            (
                &workdays,
                r.lunch_end,
                r.work_end,
                work_pm,
                work,
                work_object,
                7,
                false,
            ),
            (
                &daily,
                r.work_end,
                r.evening_end,
                evening,
                evening_out,
                None,
                3,
                true,
            ),
            (
                &daily,
                r.evening_end,
                r.sleep,
                "have dinner and unwind",
                home,
                None,
                5,
                false,
            ),
            (
                &daily,
                r.sleep,
                r.wake,
                "sleep",
                home,
                home_place.bed,
                9,
                false,
            ),
        ];
        compile(places, &plan)
    }

    /// 0–2 memories from [`MEMORIES`].
    fn memories(&mut self, fills: [&str; 4]) -> Vec<MemorySeed> {
        let n = self.rng.random_range(0..=2);
        let mut memories = Vec::with_capacity(n);
        let mut used = 0u8;
        while memories.len() < n {
            let which = self.rng.random_range(0..MEMORIES.len());
            if used & (1 << which) != 0 {
                continue;
            }
            used |= 1 << which;
            let m = &MEMORIES[which];
            let fill = m.fill.map_or("", |i| fills[i]);
            memories.push(MemorySeed {
                content: concat(&[m.before, fill, m.after]),
                importance: Some(self.rng.random_range(m.importance.0..=m.importance.1)),
                tags: vec![m.tag.to_owned()],
            });
        }
        memories
    }
}

/// The first of `v`, or `or`.
fn first<'a>(v: &'a [String], or: &'a str) -> &'a str {
    v.first().map_or(or, String::as_str)
}

/// The pieces, joined, in one allocation.
fn concat(pieces: &[&str]) -> String {
    let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        out.push_str(p);
    }
    out
}

/// `n` (below 100) in decimal, written into `buf`.
fn decimal(n: u32, buf: &mut [u8; 2]) -> &str {
    let n = n.min(99) as u8;
    *buf = [b'0' + n / 10, b'0' + n % 10];
    let digits = if n < 10 { &buf[1..] } else { &buf[..] };
    std::str::from_utf8(digits).unwrap_or("?")
}

/// Two sentences from the agent's two most pronounced Big Five traits.
fn constitution(p: &BigFive) -> String {
    let scores = [
        p.openness,
        p.conscientiousness,
        p.extraversion,
        p.agreeableness,
        p.neuroticism,
    ];
    let strength = |i: usize| (scores[i] - 0.5).abs();
    let mut first = 0;
    for i in 1..5 {
        if strength(i) > strength(first) {
            first = i;
        }
    }
    let mut second = usize::from(first == 0);
    for i in 0..5 {
        if i != first && strength(i) > strength(second) {
            second = i;
        }
    }
    let phrase = |i: usize| {
        if scores[i] >= 0.5 {
            DISPOSITIONS[i].1
        } else {
            DISPOSITIONS[i].0
        }
    };
    concat(&[phrase(first), " ", phrase(second)])
}

/// One schedule entry before it is written out: days, start, end, activity,
/// location, object, priority, flexible.
type Slot<'s> = (
    &'s Days,
    u16,
    u16,
    &'s str,
    LocationId,
    Option<&'s str>,
    u8,
    bool,
);

/// The file's entries and their compiled blocks, from the same slots.
fn compile(places: &[Place<'_>], plan: &[Slot<'_>]) -> (Vec<ScheduleEntry>, Vec<ScheduleBlock>) {
    let mut entries = Vec::with_capacity(plan.len());
    let mut blocks = Vec::with_capacity(plan.len());
    for &(days, start, end, activity, location, object, priority, flexible) in plan {
        entries.push(ScheduleEntry {
            days: days.clone(),
            start: clock(start),
            end: clock(end),
            activity: activity.to_owned(),
            location: places[usize::from(location)].name.to_owned(),
            object: object.map(str::to_owned),
            priority,
            flexible,
        });
        blocks.push(ScheduleBlock {
            days: days.mask(),
            start,
            end,
            activity: activity.to_owned(),
            location,
            object: object.map(str::to_owned),
            priority,
            flexible,
        });
    }
    (entries, blocks)
}

/// "HH:MM" for minutes after midnight (1440 is "24:00").
fn clock(minutes: u16) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    let mut out = String::with_capacity(5);
    for d in [h / 10, h % 10, 10, m / 10, m % 10] {
        out.push(if d == 10 {
            ':'
        } else {
            char::from(b'0' + d as u8)
        });
    }
    out
}

/// A map big enough for `count` agents (about [`AGENTS_PER_LOCATION`] per
/// location, at least [`MIN_LOCATIONS`], at most one per [`LocationId`]) from
/// [`WorldMap::generate`] on a near-square grid, and `generate(&map, count,
/// seed)`. The map's seed is derived from `seed`.
pub fn world(count: usize, seed: u64) -> Content {
    let locations = count
        .div_ceil(AGENTS_PER_LOCATION)
        .clamp(MIN_LOCATIONS, usize::from(LocationId::MAX));
    // WorldMap::generate lays buildings on a 9×8-tile pitch inside a one-tile border
    let mut cols = locations.isqrt();
    if cols * cols < locations {
        cols += 1;
    }
    let rows = locations.div_ceil(cols);
    let side = |cells: usize, pitch: usize| u16::try_from(2 + cells * pitch).unwrap_or(u16::MAX);
    let map = WorldMap::generate(side(cols, 9), side(rows, 8), locations, seed ^ MAP_SALT);
    let agents = generate(&map, count, seed);
    Content { map, agents }
}

#[cfg(test)]
mod tests {
    use super::super::parse_clock;
    use super::*;

    fn sample() -> Content {
        world(2_000, 42)
    }

    /// What `content::validate` makes of an entry: the block it compiles to.
    fn parsed(map: &WorldMap, e: &ScheduleEntry) -> ScheduleBlock {
        ScheduleBlock {
            days: e.days.mask(),
            start: parse_clock(&e.start, false).expect("start parses"),
            end: parse_clock(&e.end, true).expect("end parses"),
            activity: e.activity.clone(),
            location: map.location_id(&e.location).expect("location exists"),
            object: e.object.clone(),
            priority: e.priority,
            flexible: e.flexible,
        }
    }

    #[test]
    fn names_are_deterministic_and_look_like_names() {
        let mut a = NameGenerator::new(7);
        let mut b = NameGenerator::new(7);
        let names: Vec<String> = (0..2_000).map(|_| a.full()).collect();
        assert_eq!(names, (0..2_000).map(|_| b.full()).collect::<Vec<_>>());
        assert_ne!(
            names[..20],
            (0..20)
                .map(|_| NameGenerator::new(8).full())
                .collect::<Vec<_>>()[..]
        );
        let mut parts: Vec<String> = names
            .iter()
            .flat_map(|n| n.split(' ').map(str::to_owned))
            .collect();
        parts.extend((0..500).map(|_| a.given()));
        parts.extend((0..500).map(|_| a.family()));
        for part in &parts {
            let mut chars = part.chars();
            assert!(
                chars.next().is_some_and(|c| c.is_ascii_uppercase()),
                "{part}"
            );
            assert!(chars.all(|c| c.is_ascii_lowercase()), "{part}");
            assert!((3..=14).contains(&part.len()), "{part}");
            let lower = part.to_lowercase();
            assert!(!BLOCKED.iter().any(|b| lower.contains(b)), "{part}");
            assert!(!blocked(&lower), "{part}");
        }
        for n in &names {
            assert_eq!(n.split(' ').count(), 2, "{n}");
        }
        assert!(blocked("crapissa") && blocked("sex") && !blocked("brennock"));
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert!(
            distinct.len() > 1_900,
            "names should rarely repeat: {}",
            distinct.len()
        );
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let a = sample();
        assert_eq!(a, sample());
        let b = world(2_000, 43);
        assert_ne!(a.agents, b.agents);
        assert_ne!(generate(&a.map, 50, 1), generate(&a.map, 50, 2));
        assert_eq!(generate(&a.map, 50, 1), generate(&a.map, 50, 1));
    }

    #[test]
    fn the_number_of_threads_does_not_change_the_agents() {
        let map = WorldMap::generate(100, 60, 40, 3);
        let count = 3 * CHUNK + 5;
        let one = generate_on(&map, count, 11, 1);
        assert_eq!(one.len(), count);
        assert_eq!(one, generate_on(&map, count, 11, 3));
        assert_eq!(one, generate_on(&map, count, 11, 64));
    }

    #[test]
    fn ids_are_unique_sorted_slugs_numbered_in_order() {
        let c = sample();
        assert_eq!(c.agents.len(), 2_000);
        let slug = |s: &str| {
            s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        for (i, a) in c.agents.iter().enumerate() {
            assert!(slug(&a.file.id), "{}", a.file.id);
            let given = a
                .file
                .name
                .split(' ')
                .next()
                .expect("given name")
                .to_lowercase();
            assert_eq!(a.file.id, format!("syn-{i:06}-{given}"));
        }
        assert!(
            c.agents.windows(2).all(|w| w[0].file.id < w[1].file.id),
            "sorted and unique"
        );
        // wider numbers when needed
        assert_eq!(
            (id_width(0), id_width(1_000_000), id_width(1_000_001)),
            (6, 6, 7)
        );
        assert_eq!(id_width(usize::MAX), usize::MAX.to_string().len());
    }

    #[test]
    fn schedules_cover_every_minute_of_the_week_without_overlap() {
        let c = sample();
        for (i, a) in c.agents.iter().enumerate() {
            // boundaries are on quarter hours (checked below); every minute for some agents
            let step = if i < 200 { 1 } else { 15 };
            for weekday in 0..7u8 {
                for minute in (0..super::super::DAY_MINUTES).step_by(step) {
                    let covering = a.schedule.iter().filter(|b| b.covers(weekday, minute));
                    let (mut any, mut fixed) = (0, 0);
                    for b in covering {
                        any += 1;
                        fixed += usize::from(!b.flexible);
                    }
                    assert!(
                        any >= 1,
                        "{} has nothing on day {weekday} at {minute}",
                        a.file.id
                    );
                    assert!(
                        fixed <= 1,
                        "{} overlaps on day {weekday} at {minute}",
                        a.file.id
                    );
                }
            }
            let sleep = a
                .schedule
                .iter()
                .find(|b| b.activity == "sleep")
                .expect("sleeps");
            assert!(sleep.start > sleep.end, "sleep crosses midnight");
            assert_eq!(sleep.location, a.home);
            assert_eq!(
                sleep.object.as_deref(),
                Some("bed"),
                "generated homes have beds"
            );
            assert!(
                a.schedule
                    .iter()
                    .all(|b| b.start % 15 == 0 && b.end % 15 == 0)
            );
        }
    }

    #[test]
    fn entries_compile_to_their_blocks_at_existing_locations_and_objects() {
        let c = sample();
        for a in &c.agents {
            let f = &a.file;
            assert_eq!(f.schedule.len(), a.schedule.len());
            for (e, b) in f.schedule.iter().zip(&a.schedule) {
                assert_eq!(&parsed(&c.map, e), b, "{}", f.id);
                let loc = c.map.location(b.location);
                assert_eq!(loc.name, e.location);
                if let Some(o) = &b.object {
                    assert!(loc.object(o).is_some(), "{o} in {}", loc.name);
                }
                assert!((1..=10).contains(&b.priority));
                assert!(!e.activity.is_empty() && e.activity.len() <= 200);
            }
            assert_eq!(c.map.location_id(&f.home), Some(a.home));
            assert_eq!(c.map.location_id(&f.start_location), Some(a.start));
            assert_eq!(c.map.location(a.home).kind.as_deref(), Some("home"));
        }
    }

    #[test]
    fn files_are_valid_and_round_trip_through_json() {
        let c = sample();
        let schema = crate::agent::schema();
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let ids: std::collections::HashSet<&str> =
            c.agents.iter().map(|a| a.file.id.as_str()).collect();
        for a in &c.agents {
            let f = &a.file;
            let value = serde_json::to_value(f).expect("serialises");
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", f.id);
            let text = serde_json::to_string(f).expect("serialises");
            let back: AgentFile = serde_json::from_str(&text).expect("parses");
            assert_eq!(&back, f);
            for (e, b) in back.schedule.iter().zip(&a.schedule) {
                assert_eq!(&parsed(&c.map, e), b);
            }

            assert_eq!(f.version, AGENT_FORMAT_VERSION);
            assert!((16..=85).contains(&f.age));
            assert!(!f.occupation.is_empty() && !f.goals.primary.is_empty());
            assert!(f.goals.secondary.len() <= 2);
            assert!((1..=3).contains(&f.traits.physical.len()));
            assert!((1..=3).contains(&f.traits.abilities.len()));
            assert!((1..=3).contains(&f.likes.len()) && (1..=2).contains(&f.dislikes.len()));
            assert!(f.likes.iter().all(|l| !f.dislikes.contains(l)));
            let p = f.traits.personality;
            for x in [
                p.openness,
                p.conscientiousness,
                p.extraversion,
                p.agreeableness,
                p.neuroticism,
            ] {
                assert!((0.0..=1.0).contains(&x));
            }
            assert!(f.relationships.len() <= 3 && f.memories.len() <= 2);
            for r in &f.relationships {
                assert!(ids.contains(r.target.as_str()) && r.target != f.id);
                assert!(["family", "neighbor", "colleague", "rival"].contains(&r.kind.as_str()));
                assert!(
                    (-100.0..=100.0).contains(&r.affection) && (0.0..=100.0).contains(&r.trust)
                );
            }
        }
    }

    #[test]
    fn jobs_follow_workplaces_and_relationships_follow_homes_and_work() {
        let c = sample();
        let by_id: std::collections::HashMap<&str, &AgentDef> =
            c.agents.iter().map(|a| (a.file.id.as_str(), a)).collect();
        let mut occupations = std::collections::HashSet::new();
        let (mut family, mut colleagues) = (0, 0);
        for a in &c.agents {
            let work = a.schedule.iter().find(|b| b.priority == 7).expect("works");
            let kind = c
                .map
                .location(work.location)
                .kind
                .as_deref()
                .expect("generated kinds");
            let expected = match kind {
                "shop" => "shopkeeper",
                "workshop" => "craftsman",
                "tavern" => "tavern keeper",
                "field" => "farmer",
                "square" => "street vendor",
                other => panic!("works at a {other}"),
            };
            assert_eq!(a.file.occupation, expected);
            occupations.insert(expected);
            for r in &a.file.relationships {
                let other = by_id[r.target.as_str()];
                let other_work = other
                    .schedule
                    .iter()
                    .find(|b| b.priority == 7)
                    .expect("works");
                match r.kind.as_str() {
                    "family" | "neighbor" => assert_eq!(other.home, a.home),
                    _ => assert_eq!(other_work.location, work.location),
                }
                family += usize::from(r.kind == "family");
                colleagues += usize::from(r.kind == "colleague");
            }
        }
        assert_eq!(occupations.len(), 5);
        assert!(family > 0 && colleagues > 0);
    }

    #[test]
    fn maps_without_homes_or_social_places_still_work() {
        for kind in ["field", "home", "outdoors"] {
            let mut map = WorldMap::generate(40, 30, 12, 5);
            for loc in &mut map.locations {
                loc.kind = Some(kind.to_owned());
            }
            let agents = generate(&map, 40, 9);
            assert_eq!(agents.len(), 40);
            let expected = match kind {
                "field" => "farmer",
                "home" => "homemaker",
                _ => "labourer",
            };
            assert!(
                agents.iter().all(|a| a.file.occupation == expected),
                "{kind}"
            );
            check_schedules(&map, &agents);
        }
        let empty = generate(&WorldMap::generate(40, 30, 12, 5), 0, 1);
        assert!(empty.is_empty());
    }

    fn check_schedules(map: &WorldMap, agents: &[AgentDef]) {
        for a in agents {
            for weekday in 0..7u8 {
                for minute in (0..super::super::DAY_MINUTES).step_by(5) {
                    assert!(a.schedule.iter().any(|b| b.covers(weekday, minute)));
                }
            }
            for (e, b) in a.file.schedule.iter().zip(&a.schedule) {
                assert_eq!(&parsed(map, e), b);
            }
        }
    }

    #[test]
    fn job_hours_leave_room_for_every_block() {
        for job in &JOBS {
            let (start_min, start_max) = (job.work_start - 60, job.work_start + 60);
            let (end_min, end_max) = (job.work_end - 60, job.work_end + 60);
            assert!(
                start_min >= 60 + 15,
                "{}: wakes after midnight",
                job.occupation
            );
            assert!(
                start_max < 12 * 60,
                "{}: work starts before lunch",
                job.occupation
            );
            assert!(
                14 * 60 < end_min,
                "{}: work resumes after lunch",
                job.occupation
            );
            assert!(
                end_max < 21 * 60,
                "{}: an evening out before dinner",
                job.occupation
            );
            assert!(
                !job.occupation.starts_with(['a', 'e', 'i', 'o', 'u']),
                "\"a {}\"",
                job.occupation
            );
        }
    }

    #[test]
    fn worlds_are_sized_for_their_agents() {
        let small = world(10, 1);
        assert!(small.map.locations.len() >= MIN_LOCATIONS);
        assert_eq!(small.agents.len(), 10);
        let big = world(10_000, 1);
        assert_eq!(big.map.locations.len(), 400);
    }

    #[test]
    fn a_hundred_thousand_agents() {
        assert_eq!(world(100_000, 1).agents.len(), 100_000);
    }
}
