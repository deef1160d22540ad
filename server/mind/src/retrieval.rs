//! Scored recall of memories, as in Generative Agents (Park et al., 2023) but
//! with recency decaying by game time since last access (GA's code decays by
//! rank, which is not what the paper says). Pure: no I/O, touches nothing but
//! the values it is given and its own [`HotMemories`].
//!
//! # The score
//! For a query at game time `now`, every candidate memory gets four raw terms:
//!
//! | term | raw value |
//! | --- | --- |
//! | recency | `decay_per_hour ^ hours`, `hours` = game hours since its last access (0 if in the future) |
//! | importance | its importance, 1 ..= 10 |
//! | relevance | cosine similarity of its embedding to the query's embedding |
//! | emotion | `intensity × (1 − |valence − target_valence| / 2)` |
//!
//! Each term is min-max normalised over the candidates, `(x − min) / (max −
//! min)`, or 0.5 for every candidate when all raw values are equal; then
//! `total = Σ weight × normalised term`. The top `k` by total are returned,
//! ties going to the newer memory (higher id).
//!
//! **Memories without a similarity.** A memory whose embedding has not
//! arrived yet (or is a zero vector, or has another dimension than the query)
//! has no relevance: it is left out of the relevance min/max and its
//! normalised relevance is 0, so it competes on recency, importance and
//! emotion only. A query without an embedding gives every memory relevance 0.
//!
//! The PostgreSQL path (`hearth_db::memories::retrieve_exact`) computes the
//! same formula in SQL; the tests check both rank the same data alike.
//!
//! ```
//! use hearth_mind::retrieval::{Candidate, Query, RetrievalParams, rank};
//!
//! let params = RetrievalParams::default();
//! let hour = 3_600;
//! let memories = [
//!     // id, created, last accessed, importance, similarity, valence, intensity
//!     Candidate { id: 1, created: 0, last_accessed: 0, importance: 9, similarity: Some(0.9), valence: 0.0, intensity: 0.0 },
//!     Candidate { id: 2, created: 5 * hour, last_accessed: 5 * hour, importance: 2, similarity: Some(0.1), valence: 0.0, intensity: 0.0 },
//! ];
//! let top = rank(&memories, &Query::new(&params, None, 6 * hour, 1));
//! assert_eq!(top[0].id, 1); // important and relevant beats recent
//! ```

use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::memory::{GameSeconds, Memory};

/// Accumulator lanes of [`dot`]: rustc does not reorder float sums, so the
/// loop keeps this many independent partial sums for the compiler to map
/// onto SIMD registers (16 = two AVX or four SSE registers).
const LANES: usize = 16;

/// The weight of each normalised term in the total. Defaults are those of
/// GA's code: recency 0.5, relevance 3, importance 2; emotion off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub recency: f64,
    pub relevance: f64,
    pub importance: f64,
    /// Emotional match with the query's target valence; 0 turns it off.
    pub emotion: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            recency: 0.5,
            relevance: 3.0,
            importance: 2.0,
            emotion: 0.0,
        }
    }
}

/// Retrieval settings, with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalParams {
    pub weights: Weights,
    /// Recency multiplier per game hour since last access, in (0, 1]:
    /// 0.995 halves a memory's raw recency in about 138 game hours.
    pub decay_per_hour: f64,
    /// Memories retrieved per focal question when reflecting (GA: 30).
    pub k_reflection: usize,
    /// Memories retrieved for a conversation turn: fewer, prompts are short.
    pub k_conversation: usize,
    /// Memories per agent kept in process ([`HotMemories`]); older ones are
    /// in PostgreSQL only. Costs `hot_window × dim × 4` bytes per agent at
    /// most (10,000 × 384 dims ≈ 15 MB).
    pub hot_window: usize,
}

impl Default for RetrievalParams {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            decay_per_hour: 0.995,
            k_reflection: 30,
            k_conversation: 8,
            hot_window: 10_000,
        }
    }
}

/// A retrieval setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("retrieval setting {field}: {problem}")]
pub struct ParamsError {
    pub field: &'static str,
    pub problem: String,
}

impl RetrievalParams {
    /// Checks every setting; the scoring itself never panics on bad values,
    /// but a NaN weight or a decay of 0 would make nonsense rankings.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let w = &self.weights;
        for (field, value) in [
            ("weights.recency", w.recency),
            ("weights.relevance", w.relevance),
            ("weights.importance", w.importance),
            ("weights.emotion", w.emotion),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ParamsError {
                    field,
                    problem: format!("{value} is not a number ≥ 0"),
                });
            }
        }
        if !(self.decay_per_hour > 0.0 && self.decay_per_hour <= 1.0) {
            return Err(ParamsError {
                field: "decay_per_hour",
                problem: format!("{} is not in (0, 1]", self.decay_per_hour),
            });
        }
        for (field, value) in [
            ("k_reflection", self.k_reflection),
            ("k_conversation", self.k_conversation),
            ("hot_window", self.hot_window),
        ] {
            if value == 0 {
                return Err(ParamsError {
                    field,
                    problem: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// What to retrieve: the query's embedding, when, how many, and how to score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query<'a> {
    /// `None`: relevance plays no part (e.g. the embedder is down).
    pub embedding: Option<&'a [f32]>,
    pub now: GameSeconds,
    pub k: usize,
    pub weights: Weights,
    pub decay_per_hour: f64,
    /// The valence the emotion term favours (e.g. the agent's mood), -1 ..= 1.
    pub target_valence: f32,
}

impl<'a> Query<'a> {
    /// A query scored with `params`, with a neutral target valence.
    pub fn new(
        params: &RetrievalParams,
        embedding: Option<&'a [f32]>,
        now: GameSeconds,
        k: usize,
    ) -> Self {
        Self {
            embedding,
            now,
            k,
            weights: params.weights,
            decay_per_hour: params.decay_per_hour,
            target_valence: 0.0,
        }
    }

    /// The same query favouring memories felt like `valence`.
    pub fn with_target_valence(self, valence: f32) -> Self {
        Self {
            target_valence: valence,
            ..self
        }
    }

    /// The same scoring for the PostgreSQL path
    /// (`hearth_db::memories::retrieve_exact`).
    pub fn db_scoring(&self) -> hearth_db::Scoring {
        hearth_db::Scoring {
            recency: self.weights.recency,
            importance: self.weights.importance,
            relevance: self.weights.relevance,
            emotion: self.weights.emotion,
            decay_per_hour: self.decay_per_hour,
            target_valence: f64::from(self.target_valence),
        }
    }
}

/// One memory as the scoring sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: u64,
    /// Carried for callers that explain rankings; the score does not use it.
    pub created: GameSeconds,
    pub last_accessed: GameSeconds,
    /// 1 ..= 10.
    pub importance: u8,
    /// Cosine similarity to the query; `None` without an embedding.
    pub similarity: Option<f32>,
    pub valence: f32,
    pub intensity: f32,
}

/// A retrieved memory: its id, each normalised term (0 ..= 1) and the
/// weighted total, for `--explain` and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    pub id: u64,
    pub recency: f64,
    pub importance: f64,
    pub relevance: f64,
    pub emotion: f64,
    pub total: f64,
}

/// Running min and max of one raw term.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: f64,
    max: f64,
}

impl Bounds {
    const EMPTY: Bounds = Bounds {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn add(&mut self, x: f64) {
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Min-max normalisation; all equal → 0.5.
    fn normalise(&self, x: f64) -> f64 {
        if self.max == self.min {
            0.5
        } else {
            (x - self.min) / (self.max - self.min)
        }
    }

    /// The same normalisation as `x · scale + offset`, for the ranking pass:
    /// a multiplication instead of a division per term (the results differ
    /// by at most an ulp; reported terms use [`Bounds::normalise`]).
    fn affine(&self) -> (f64, f64) {
        if self.max == self.min {
            (0.0, 0.5)
        } else {
            let scale = 1.0 / (self.max - self.min);
            (scale, -self.min * scale)
        }
    }
}

/// A candidate's place in the ranking: higher total first, then higher id.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    total: f64,
    id: u64,
    index: usize,
}

impl Ranked {
    /// `Less` when `self` ranks before `other`.
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .total
            .total_cmp(&self.total)
            .then(other.id.cmp(&self.id))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.order(other).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Ordered so that the worst-ranked is the greatest: the top of a
/// `BinaryHeap` of the best k is the one to drop next.
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order(other)
    }
}

/// The raw terms of one candidate (relevance is the candidate's similarity).
fn raw_recency(c: &Candidate, now: GameSeconds, ln_decay: f64) -> f64 {
    let hours = now.saturating_sub(c.last_accessed) as f64 / 3600.0;
    (hours * ln_decay).exp()
}

fn raw_emotion(c: &Candidate, target: f64) -> f64 {
    f64::from(c.intensity) * (1.0 - (f64::from(c.valence) - target).abs() / 2.0)
}

/// The top `query.k` of `candidates` by the retrieval score (see the module
/// docs), best first, ties to the higher id. Uses the query's time, weights,
/// decay and target valence; relevance comes from each candidate's
/// `similarity` (the query's embedding is not read here). A decay outside
/// (0, ∞) is taken as 1 (no decay) rather than producing NaN.
pub fn rank(candidates: &[Candidate], query: &Query<'_>) -> Vec<Scored> {
    let k = query.k.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let decay = query.decay_per_hour;
    let ln_decay = if decay > 0.0 && decay.is_finite() {
        decay.ln()
    } else {
        0.0
    };
    let target = f64::from(query.target_valence.clamp(-1.0, 1.0));

    let (mut rec, mut imp, mut rel, mut emo) =
        (Bounds::EMPTY, Bounds::EMPTY, Bounds::EMPTY, Bounds::EMPTY);
    let mut recency = Vec::with_capacity(candidates.len());
    for c in candidates {
        let r = raw_recency(c, query.now, ln_decay);
        recency.push(r);
        rec.add(r);
        imp.add(f64::from(c.importance));
        if let Some(s) = c.similarity {
            rel.add(f64::from(s));
        }
        emo.add(raw_emotion(c, target));
    }

    let w = query.weights;
    let terms = |i: usize| -> Scored {
        let c = &candidates[i];
        let recency = rec.normalise(recency[i]);
        let importance = imp.normalise(f64::from(c.importance));
        let relevance = c.similarity.map_or(0.0, |s| rel.normalise(f64::from(s)));
        let emotion = emo.normalise(raw_emotion(c, target));
        Scored {
            id: c.id,
            recency,
            importance,
            relevance,
            emotion,
            total: w.recency * recency
                + w.importance * importance
                + w.relevance * relevance
                + w.emotion * emotion,
        }
    };

    // The best k by a running heap whose top is the worst kept: most
    // candidates are rejected by one comparison.
    let (rec_s, rec_o) = rec.affine();
    let (imp_s, imp_o) = imp.affine();
    let (rel_s, rel_o) = rel.affine();
    let (emo_s, emo_o) = emo.affine();
    let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    for (index, (c, &r)) in candidates.iter().zip(&recency).enumerate() {
        let relevance = c.similarity.map_or(0.0, |s| f64::from(s) * rel_s + rel_o);
        let total = w.recency * (r * rec_s + rec_o)
            + w.importance * (f64::from(c.importance) * imp_s + imp_o)
            + w.relevance * relevance
            + w.emotion * (raw_emotion(c, target) * emo_s + emo_o);
        let ranked = Ranked {
            total,
            id: c.id,
            index,
        };
        if best.len() < k {
            best.push(ranked);
        } else if best.peek().is_some_and(|worst| ranked < *worst) {
            best.pop();
            best.push(ranked);
        }
    }
    best.into_sorted_vec()
        .into_iter()
        .map(|r| terms(r.index))
        .collect()
}

/// Dot product of two vectors (over the shorter length), written with
/// [`LANES`] independent accumulators so that it vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..n].as_chunks::<LANES>();
    let (b_chunks, b_tail) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Cosine similarity from a dot product and the two squared norms; `None`
/// when either vector is zero. Computed as pgvector computes it.
fn cosine(dot: f32, norm_sq_a: f32, norm_sq_b: f32) -> Option<f32> {
    let denom = (f64::from(norm_sq_a) * f64::from(norm_sq_b)).sqrt();
    if denom > 0.0 && denom.is_finite() {
        Some((f64::from(dot) / denom).clamp(-1.0, 1.0) as f32)
    } else {
        None
    }
}

/// One agent's most recent memories, in process, for retrieval without a
/// database round trip: at most `window` memories, the oldest pushed evicted
/// first. Embeddings live in one contiguous row-major `Vec<f32>` (`dim`
/// floats per slot) scanned by [`dot`]; the fields the score reads live in
/// parallel columns, so a query walks memory linearly.
#[derive(Debug, Clone)]
pub struct HotMemories {
    dim: usize,
    window: usize,
    /// The slot the next push overwrites once the window is full (the oldest).
    oldest: usize,
    slot_of: HashMap<u64, usize>,
    records: Vec<Memory>,
    ids: Vec<u64>,
    created: Vec<GameSeconds>,
    last_accessed: Vec<GameSeconds>,
    importance: Vec<u8>,
    valence: Vec<f32>,
    intensity: Vec<f32>,
    /// Squared L2 norm of each slot's embedding; `None` until it arrives.
    norm_sq: Vec<Option<f32>>,
    embeddings: Vec<f32>,
    /// Reused by every query, to avoid allocating per retrieval.
    scratch: Vec<Candidate>,
}

impl HotMemories {
    /// An empty store for embeddings of `dim` dimensions, keeping at most
    /// `window` memories (at least 1).
    pub fn new(dim: usize, window: usize) -> Self {
        Self {
            dim,
            window: window.max(1),
            oldest: 0,
            slot_of: HashMap::new(),
            records: Vec::new(),
            ids: Vec::new(),
            created: Vec::new(),
            last_accessed: Vec::new(),
            importance: Vec::new(),
            valence: Vec::new(),
            intensity: Vec::new(),
            norm_sq: Vec::new(),
            embeddings: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds `memory` (without an embedding yet) and returns the id of the
    /// memory evicted to make room, if any. Pushing an id already held
    /// replaces its record and keeps its embedding. When warming from the
    /// database, push oldest first, so the oldest are the ones evicted.
    pub fn push(&mut self, memory: &Memory) -> Option<u64> {
        if let Some(&slot) = self.slot_of.get(&memory.id) {
            self.write_slot(slot, memory);
            return None;
        }
        if self.records.len() < self.window {
            let slot = self.records.len();
            self.records.push(memory.clone());
            self.ids.push(memory.id);
            self.created.push(memory.created);
            self.last_accessed.push(memory.last_accessed);
            self.importance.push(memory.importance);
            self.valence.push(memory.valence);
            self.intensity.push(memory.intensity);
            self.norm_sq.push(None);
            self.embeddings
                .resize(self.embeddings.len() + self.dim, 0.0);
            self.slot_of.insert(memory.id, slot);
            return None;
        }
        let slot = self.oldest;
        self.oldest = (self.oldest + 1) % self.window;
        let evicted = self.records[slot].id;
        self.slot_of.remove(&evicted);
        self.slot_of.insert(memory.id, slot);
        self.write_slot(slot, memory);
        self.norm_sq[slot] = None;
        Some(evicted)
    }

    fn write_slot(&mut self, slot: usize, memory: &Memory) {
        self.records[slot] = memory.clone();
        self.ids[slot] = memory.id;
        self.created[slot] = memory.created;
        self.last_accessed[slot] = memory.last_accessed;
        self.importance[slot] = memory.importance;
        self.valence[slot] = memory.valence;
        self.intensity[slot] = memory.intensity;
    }

    /// Stores the embedding of memory `id`. `false` (and nothing stored) when
    /// the memory is not held (evicted, never pushed) or `embedding` does not
    /// have [`HotMemories::dim`] dimensions.
    pub fn set_embedding(&mut self, id: u64, embedding: &[f32]) -> bool {
        let Some(&slot) = self.slot_of.get(&id) else {
            return false;
        };
        if embedding.len() != self.dim {
            warn!(
                id,
                got = embedding.len(),
                dim = self.dim,
                "embedding of the wrong dimension ignored"
            );
            return false;
        }
        self.embeddings[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(embedding);
        self.norm_sq[slot] = Some(dot(embedding, embedding));
        true
    }

    /// The memory `id`, if held (its `last_accessed` kept up to date).
    pub fn get(&self, id: u64) -> Option<&Memory> {
        self.slot_of.get(&id).map(|&slot| &self.records[slot])
    }

    /// The embedding of memory `id`, if held and embedded.
    pub fn embedding(&self, id: u64) -> Option<&[f32]> {
        let slot = *self.slot_of.get(&id)?;
        self.norm_sq[slot]?;
        Some(&self.embeddings[slot * self.dim..(slot + 1) * self.dim])
    }

    /// The held memories in slot order (not time order).
    pub fn iter(&self) -> impl Iterator<Item = &Memory> {
        self.records.iter()
    }

    /// The top `query.k` held memories by the retrieval score (see [`rank`]),
    /// best first; each retrieved memory's last access becomes `query.now`.
    /// A query embedding of another dimension is ignored (relevance 0).
    pub fn retrieve(&mut self, query: &Query<'_>) -> Vec<Scored> {
        let q = query.embedding.filter(|q| {
            let fits = q.len() == self.dim;
            if !fits {
                warn!(
                    got = q.len(),
                    dim = self.dim,
                    "query embedding of the wrong dimension: relevance ignored"
                );
            }
            fits
        });
        let q_norm_sq = q.map(|q| dot(q, q));
        self.scratch.clear();
        let columns = self
            .ids
            .iter()
            .zip(&self.created)
            .zip(&self.last_accessed)
            .zip(&self.importance)
            .zip(&self.valence)
            .zip(&self.intensity)
            .zip(&self.norm_sq);
        let dim = self.dim;
        for (slot, ((((((&id, &created), &last), &imp), &val), &int), &norm)) in columns.enumerate()
        {
            let row = self
                .embeddings
                .get(slot * dim..(slot + 1) * dim)
                .unwrap_or_default();
            let similarity = match (q, q_norm_sq, norm) {
                (Some(q), Some(qn), Some(n)) => cosine(dot(q, row), qn, n),
                _ => None,
            };
            self.scratch.push(Candidate {
                id,
                created,
                last_accessed: last,
                importance: imp,
                similarity,
                valence: val,
                intensity: int,
            });
        }
        let top = rank(&self.scratch, query);
        for s in &top {
            if let Some(&slot) = self.slot_of.get(&s.id) {
                let at = self.last_accessed[slot].max(query.now);
                self.last_accessed[slot] = at;
                self.records[slot].last_accessed = at;
            }
        }
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKind;

    const HOUR: GameSeconds = 3_600;

    fn candidate(
        id: u64,
        last_accessed: GameSeconds,
        importance: u8,
        sim: Option<f32>,
    ) -> Candidate {
        Candidate {
            id,
            created: 0,
            last_accessed,
            importance,
            similarity: sim,
            valence: 0.0,
            intensity: 0.0,
        }
    }

    fn query(now: GameSeconds, k: usize) -> Query<'static> {
        Query::new(&RetrievalParams::default(), None, now, k)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn memory(id: u64, at: GameSeconds, importance: u8) -> Memory {
        Memory::new(
            id,
            MemoryKind::Observation,
            format!("memory {id}"),
            importance,
            at,
        )
    }

    /// The fixed table, ranked by hand from the formula (default weights:
    /// recency 0.5, importance 2, relevance 3; decay 0.995 per game hour;
    /// now = 10 h; query embedding [1, 0]):
    ///
    /// | id | last access | imp | embedding | raw recency | raw sim |
    /// | 1 | 0 h (10 h ago) | 8 | [1, 0] | 0.995^10 = 0.951110130 | 1.0 |
    /// | 2 | 8 h (2 h ago) | 2 | [0.6, 0.8] | 0.995^2 = 0.990025 | 0.6 |
    /// | 3 | 10 h (now) | 5 | [0, 1] | 1 | 0.0 |
    /// | 4 | 9 h (1 h ago) | 10 | none yet | 0.995 | — |
    ///
    /// recency: min 0.951110130, max 1, range 0.048889870
    ///   1: 0; 2: 0.038914870 / 0.048889870 = 0.795970002; 3: 1;
    ///   4: 0.043889870 / 0.048889870 = 0.897729324
    /// importance: min 2, max 10 → 1: 0.75; 2: 0; 3: 0.375; 4: 1
    /// relevance over the embedded (1, 2, 3): min 0, max 1 → 1, 0.6, 0; 4: 0
    /// totals: 1: 0.5·0 + 2·0.75 + 3·1 = 4.5
    ///         2: 0.5·0.795970002 + 0 + 3·0.6 = 2.197985001
    ///         3: 0.5·1 + 2·0.375 + 0 = 1.25
    ///         4: 0.5·0.897729324 + 2·1 + 0 = 2.448864662
    /// ranking: 1, 4, 2, 3.
    #[test]
    fn ranks_a_fixed_table_as_computed_by_hand() {
        let mut hot = HotMemories::new(2, 10);
        for (id, at, imp) in [
            (1, 0, 8),
            (2, 8 * HOUR, 2),
            (3, 10 * HOUR, 5),
            (4, 9 * HOUR, 10),
        ] {
            hot.push(&memory(id, at, imp));
        }
        assert!(hot.set_embedding(1, &[1.0, 0.0]));
        assert!(hot.set_embedding(2, &[0.6, 0.8]));
        assert!(hot.set_embedding(3, &[0.0, 1.0]));
        let q = [1.0, 0.0];
        let top = hot.retrieve(&Query::new(
            &RetrievalParams::default(),
            Some(&q),
            10 * HOUR,
            4,
        ));
        let ids: Vec<u64> = top.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 4, 2, 3]);
        let expected = [
            (0.0, 0.75, 1.0, 4.5),
            (0.897729324, 1.0, 0.0, 2.448864662),
            (0.795970002, 0.0, 0.6, 2.197985001),
            (1.0, 0.375, 0.0, 1.25),
        ];
        for (s, (rec, imp, rel, total)) in top.iter().zip(expected) {
            assert!((s.recency - rec).abs() < 1e-6, "{s:?}");
            assert!((s.importance - imp).abs() < 1e-9, "{s:?}");
            assert!((s.relevance - rel).abs() < 1e-6, "{s:?}");
            assert!((s.total - total).abs() < 1e-6, "{s:?}");
            assert_eq!(s.emotion, 0.5, "emotion: all equal (no feelings)");
        }
    }

    #[test]
    fn recency_decays_with_time_not_rank() {
        // same order of last access, different spacing in time
        let near = [
            candidate(1, 100 * HOUR, 5, None),
            candidate(2, 99 * HOUR, 5, None),
            candidate(3, 0, 5, None),
        ];
        let far = [
            candidate(1, 100 * HOUR, 5, None),
            candidate(2, HOUR, 5, None),
            candidate(3, 0, 5, None),
        ];
        let recency_of_2 = |c: &[Candidate]| {
            rank(c, &query(100 * HOUR, 3))
                .into_iter()
                .find(|s| s.id == 2)
                .map(|s| s.recency)
                .unwrap_or(f64::NAN)
        };
        // (0.995^1 − 0.995^100) / (1 − 0.995^100) = 0.987317034
        assert!((recency_of_2(&near) - 0.987317034).abs() < 1e-6);
        // (0.995^99 − 0.995^100) / (1 − 0.995^100) = 0.007721573
        assert!((recency_of_2(&far) - 0.007721573).abs() < 1e-6);
        // a rank-based recency would give the middle memory the same value in both
    }

    #[test]
    fn recency_is_measured_from_the_last_access_not_creation() {
        let mut old_but_used = candidate(1, 50 * HOUR, 5, None);
        old_but_used.created = 0;
        let mut new_unused = candidate(2, 10 * HOUR, 5, None);
        new_unused.created = 10 * HOUR;
        let top = rank(&[old_but_used, new_unused], &query(60 * HOUR, 1));
        assert_eq!(top[0].id, 1);
    }

    #[test]
    fn all_equal_terms_normalise_to_one_half() {
        let table: Vec<Candidate> = (1..=4)
            .map(|id| candidate(id, 5 * HOUR, 6, Some(0.3)))
            .collect();
        let top = rank(&table, &query(9 * HOUR, 4));
        for s in &top {
            assert_eq!(
                (s.recency, s.importance, s.relevance, s.emotion),
                (0.5, 0.5, 0.5, 0.5)
            );
            assert!(close(s.total, 0.5 * 0.5 + 3.0 * 0.5 + 2.0 * 0.5));
        }
        // a tie goes to the newer memory
        assert_eq!(top.iter().map(|s| s.id).collect::<Vec<_>>(), [4, 3, 2, 1]);
    }

    #[test]
    fn unembedded_memories_compete_on_recency_and_importance_only() {
        let table = [
            candidate(1, 0, 5, Some(0.2)),
            candidate(2, 0, 5, Some(0.4)),
            // not embedded, but far more important than the others
            candidate(3, 0, 10, None),
        ];
        let top = rank(&table, &query(HOUR, 3));
        let by_id = |id| top.iter().find(|s| s.id == id).copied();
        // relevance min/max come from the embedded memories only
        assert_eq!(by_id(1).map(|s| s.relevance), Some(0.0));
        assert_eq!(by_id(2).map(|s| s.relevance), Some(1.0));
        assert_eq!(by_id(3).map(|s| s.relevance), Some(0.0));
        // recency all 0.5; totals 1: 0.25 + 2·0 + 3·0 = 0.25,
        // 2: 0.25 + 2·0 + 3·1 = 3.25, 3: 0.25 + 2·1 + 3·0 = 2.25
        assert_eq!(top.iter().map(|s| s.id).collect::<Vec<_>>(), [2, 3, 1]);

        // without a query embedding nobody has relevance
        let none: Vec<Candidate> = table
            .iter()
            .map(|c| Candidate {
                similarity: None,
                ..*c
            })
            .collect();
        let top = rank(&none, &query(HOUR, 3));
        assert!(top.iter().all(|s| s.relevance == 0.0));
        assert_eq!(top[0].id, 3, "importance decides");
    }

    #[test]
    fn a_zero_vector_has_no_similarity() {
        let mut hot = HotMemories::new(3, 4);
        hot.push(&memory(1, 0, 5));
        hot.push(&memory(2, 0, 5));
        assert!(hot.set_embedding(1, &[0.0, 0.0, 0.0]));
        assert!(hot.set_embedding(2, &[0.0, 1.0, 0.0]));
        let q = [0.0, 1.0, 0.0];
        let top = hot.retrieve(&Query::new(&RetrievalParams::default(), Some(&q), HOUR, 2));
        assert_eq!(top[0].id, 2);
        assert_eq!(top[0].relevance, 0.5, "the only similarity: all equal");
        assert_eq!(top[1].relevance, 0.0);
    }

    #[test]
    fn emotion_favours_intense_memories_near_the_target_valence() {
        let mut joyful = candidate(1, 0, 5, None);
        (joyful.valence, joyful.intensity) = (0.9, 1.0);
        let mut painful = candidate(2, 0, 5, None);
        (painful.valence, painful.intensity) = (-0.9, 1.0);
        let mut flat = candidate(3, 0, 5, None);
        (flat.valence, flat.intensity) = (0.9, 0.1);
        let params = RetrievalParams {
            weights: Weights {
                emotion: 1.0,
                ..Weights::default()
            },
            ..RetrievalParams::default()
        };
        let table = [joyful, painful, flat];
        let happy = Query::new(&params, None, HOUR, 3).with_target_valence(1.0);
        let ids: Vec<u64> = rank(&table, &happy).iter().map(|s| s.id).collect();
        // raw: 1: 1·(1 − 0.05) = 0.95; 2: 1·(1 − 0.95) = 0.05; 3: 0.1·0.95 = 0.095
        assert_eq!(ids, [1, 3, 2]);
        let sad = happy.with_target_valence(-1.0);
        assert_eq!(rank(&table, &sad)[0].id, 2);
    }

    #[test]
    fn retrieval_marks_what_it_returns_as_accessed() {
        let mut hot = HotMemories::new(2, 10);
        for id in 1..=5 {
            hot.push(&memory(id, 0, id as u8));
        }
        let top = hot.retrieve(&query(30 * HOUR, 2));
        assert_eq!(top.iter().map(|s| s.id).collect::<Vec<_>>(), [5, 4]);
        for id in 1..=5 {
            let expected = if id >= 4 { 30 * HOUR } else { 0 };
            assert_eq!(hot.get(id).map(|m| m.last_accessed), Some(expected), "{id}");
        }
        // retrieving at an earlier time never moves the clock back
        hot.retrieve(&query(HOUR, 5));
        assert_eq!(hot.get(5).map(|m| m.last_accessed), Some(30 * HOUR));
    }

    #[test]
    fn the_oldest_memory_is_evicted_past_the_window() {
        let mut hot = HotMemories::new(2, 3);
        for id in 1..=3 {
            assert_eq!(hot.push(&memory(id, id * HOUR, 5)), None);
            assert!(hot.set_embedding(id, &[id as f32, 1.0]));
        }
        assert_eq!(hot.push(&memory(4, 4 * HOUR, 5)), Some(1));
        assert_eq!(hot.push(&memory(5, 5 * HOUR, 5)), Some(2));
        assert_eq!(hot.len(), 3);
        assert!(hot.get(1).is_none() && hot.get(2).is_none());
        assert!(!hot.set_embedding(1, &[1.0, 0.0]), "evicted");
        // the slot's old vector is not inherited by its new memory
        assert_eq!(hot.embedding(4), None);
        assert_eq!(hot.embedding(3), Some(&[3.0, 1.0][..]));
        assert!(hot.set_embedding(4, &[4.0, 1.0]));
        let ids: Vec<u64> = hot
            .retrieve(&query(6 * HOUR, 10))
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [5, 4, 3]);
        // pushing a held id replaces the record and keeps its vector
        hot.push(&Memory {
            content: "edited".into(),
            ..memory(4, 4 * HOUR, 9)
        });
        assert_eq!(hot.get(4).map(|m| m.content.as_str()), Some("edited"));
        assert!(hot.embedding(4).is_some());
        assert_eq!(hot.len(), 3);
    }

    #[test]
    fn wrong_dimensions_are_refused_not_panicked_on() {
        let mut hot = HotMemories::new(3, 2);
        hot.push(&memory(1, 0, 5));
        assert!(!hot.set_embedding(1, &[1.0, 0.0]));
        let q = [1.0, 0.0];
        let top = hot.retrieve(&Query::new(&RetrievalParams::default(), Some(&q), HOUR, 1));
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].relevance, 0.0);
        let mut zero = HotMemories::new(0, 0);
        zero.push(&memory(1, 0, 5));
        assert_eq!(zero.retrieve(&query(HOUR, 1)).len(), 1);
        assert!(rank(&[], &query(HOUR, 3)).is_empty());
    }

    #[test]
    fn the_hot_store_ranks_as_the_pure_function_does() {
        let mut hot = HotMemories::new(4, 100);
        let q = [0.5, -0.5, 0.5, 0.5];
        let mut table = Vec::new();
        for id in 1..=40u64 {
            let m = Memory {
                valence: (id as f32 / 20.0) - 1.0,
                intensity: (id % 7) as f32 / 7.0,
                ..memory(id, id * 1_000, (id % 10 + 1) as u8)
            };
            hot.push(&m);
            let e = [id as f32, (id % 3) as f32, 1.0, -(id as f32) / 10.0];
            let sim = if id % 5 == 0 {
                None
            } else {
                hot.set_embedding(id, &e);
                cosine(dot(&q, &e), dot(&q, &q), dot(&e, &e))
            };
            table.push(Candidate {
                id,
                created: m.created,
                last_accessed: m.last_accessed,
                importance: m.importance,
                similarity: sim,
                valence: m.valence,
                intensity: m.intensity,
            });
        }
        let params = RetrievalParams {
            weights: Weights {
                emotion: 0.7,
                ..Weights::default()
            },
            ..RetrievalParams::default()
        };
        let query = Query::new(&params, Some(&q), 50_000, 12).with_target_valence(0.3);
        assert_eq!(hot.retrieve(&query), rank(&table, &query));
    }

    #[test]
    fn the_lane_dot_product_agrees_with_the_plain_one() {
        for n in [0, 1, 15, 16, 17, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - plain).abs() <= 1e-4 * (1.0 + plain.abs()),
                "{n}"
            );
        }
    }

    #[test]
    fn params_have_documented_defaults_and_are_validated() {
        let p = RetrievalParams::default();
        assert_eq!(
            (
                p.weights.recency,
                p.weights.relevance,
                p.weights.importance,
                p.weights.emotion
            ),
            (0.5, 3.0, 2.0, 0.0)
        );
        assert_eq!(
            (
                p.decay_per_hour,
                p.k_reflection,
                p.k_conversation,
                p.hot_window
            ),
            (0.995, 30, 8, 10_000)
        );
        assert_eq!(p.validate(), Ok(()));
        let partial: RetrievalParams =
            serde_json::from_str(r#"{"weights": {"emotion": 1.5}, "k_conversation": 5}"#)
                .expect("a partial configuration parses");
        assert_eq!(
            (
                partial.weights.emotion,
                partial.weights.relevance,
                partial.k_conversation
            ),
            (1.5, 3.0, 5)
        );
        assert!(serde_json::from_str::<RetrievalParams>(r#"{"decay": 0.9}"#).is_err());
        let bad = RetrievalParams {
            decay_per_hour: 0.0,
            ..p
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("decay_per_hour"));
        let nan = RetrievalParams {
            weights: Weights {
                recency: f64::NAN,
                ..Weights::default()
            },
            ..p
        };
        assert!(nan.validate().is_err());
        // scoring with a bad decay does not produce NaN
        let q = Query {
            decay_per_hour: 0.0,
            ..query(HOUR, 1)
        };
        assert!(
            rank(&[candidate(1, 0, 5, None)], &q)
                .iter()
                .all(|s| s.total.is_finite())
        );
    }
}
