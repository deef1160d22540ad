//! The hashed fallback embedder: signed feature hashing of words and
//! character trigrams into 384 dimensions. Pure computation, touches nothing.
//!
//! It only sees shared words and spellings, not meaning ("bread" and "loaf"
//! are unrelated to it), so it is used only when no model is available.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{EmbedFuture, Embedder, l2_normalize};

/// Seed of the feature hash. Fixed forever: changing it (or the features)
/// changes every vector, which needs a new [`HashedEmbedder::MODEL`] name so
/// worlds embedded with the old one are re-embedded rather than mixed.
const SEED: u64 = 0x6865_6172_7468_0001;

/// Weight of one character trigram relative to one whole word: trigrams catch
/// shared stems ("baking" / "baker") but should not outvote whole words.
const TRIGRAM_WEIGHT: f32 = 0.5;

/// Deterministic bag-of-features embedder (XXH3-64 with a fixed seed, which
/// gives the same vectors on every platform and every run, unlike std's
/// randomly seeded `DefaultHasher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedEmbedder {
    dim: usize,
}

impl HashedEmbedder {
    /// The name stored per world. Bump the version if the features change.
    pub const MODEL: &'static str = "hearth-hashed-v1";
    /// Dimensions, the same as MiniLM's so a world can switch by re-embedding.
    pub const DIM: usize = 384;

    pub fn new() -> Self {
        Self { dim: Self::DIM }
    }

    /// The unit vector of one text. A text with no letters or digits gets the
    /// vector of a fixed "empty" feature, so no vector is ever zero or NaN.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let lower = text.to_lowercase();
        let mut any = false;
        for word in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            any = true;
            self.add(&mut v, b'w', word.as_bytes(), 1.0);
            // trigrams of the word with boundary marks: "bread" → " br", "bre", …, "ad "
            let chars: Vec<char> = std::iter::once(' ')
                .chain(word.chars())
                .chain(std::iter::once(' '))
                .collect();
            for tri in chars.windows(3) {
                let s: String = tri.iter().collect();
                self.add(&mut v, b't', s.as_bytes(), TRIGRAM_WEIGHT);
            }
        }
        if !any || !l2_normalize(&mut v) {
            v.fill(0.0);
            self.add(&mut v, b'e', b"", 1.0);
            l2_normalize(&mut v);
        }
        v
    }

    /// Adds `weight` with a hashed sign at the hashed index of feature
    /// `kind:bytes` (the kind keeps the word "the" apart from the trigram "the").
    fn add(&self, v: &mut [f32], kind: u8, bytes: &[u8], weight: f32) {
        let mut key = Vec::with_capacity(bytes.len() + 1);
        key.push(kind);
        key.extend_from_slice(bytes);
        let h = xxh3_64_with_seed(&key, SEED);
        // low bits pick the slot, the top bit the sign (independent bits of one hash)
        let slot = (h % self.dim as u64) as usize;
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        if let Some(x) = v.get_mut(slot) {
            *x += sign * weight;
        }
    }
}

impl Default for HashedEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl Embedder for HashedEmbedder {
    fn model(&self) -> &str {
        Self::MODEL
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        // microseconds per text: not worth a trip to the blocking pool
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_one(t)).collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::dot;

    fn norm(v: &[f32]) -> f32 {
        dot(v, v).sqrt()
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let e = HashedEmbedder::new();
        let a = e.embed_one("Maria baked bread at dawn");
        assert_eq!(a.len(), 384);
        assert!((norm(&a) - 1.0).abs() < 1e-5);
        assert_eq!(
            a,
            HashedEmbedder::new().embed_one("Maria baked bread at dawn")
        );
    }

    #[test]
    fn known_value_pins_the_hash() {
        // If this changes, HashedEmbedder::MODEL must get a new version: worlds
        // store vectors made by the old function.
        let v = HashedEmbedder::new().embed_one("bread");
        let nonzero: Vec<(usize, f32)> = v
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, x)| *x != 0.0)
            .collect();
        // the word (weight 1) and its five trigrams (" br", "bre", "rea", "ead",
        // "ad ", weight 1/2), normalised by sqrt(1 + 5/4) = 1.5
        let (w, t) = (1.0 / 1.5, 0.5 / 1.5);
        let want = [(89, t), (134, -t), (236, t), (290, w), (372, -t), (378, -t)];
        assert_eq!(nonzero.len(), want.len(), "{nonzero:?}");
        for ((slot, x), (ws, wx)) in nonzero.iter().zip(want) {
            assert_eq!(*slot, ws);
            assert!((x - wx).abs() < 1e-6, "slot {slot}: {x} vs {wx}");
        }
        let again = HashedEmbedder::new().embed_one("BREAD!");
        assert_eq!(v, again, "case and punctuation are ignored");
    }

    #[test]
    fn empty_and_symbol_only_texts_are_unit_vectors() {
        let e = HashedEmbedder::new();
        for text in ["", "   ", "?!…"] {
            let v = e.embed_one(text);
            assert!(v.iter().all(|x| x.is_finite()));
            assert!((norm(&v) - 1.0).abs() < 1e-5, "{text:?}");
        }
    }

    #[test]
    fn shared_words_score_higher_than_unrelated_text() {
        let e = HashedEmbedder::new();
        let a = e.embed_one("the baker sells bread in the square");
        let b = e.embed_one("bread sold by the baker");
        let c = e.embed_one("a storm flooded the river meadow");
        assert!(
            dot(&a, &b) > dot(&a, &c) + 0.1,
            "{} vs {}",
            dot(&a, &b),
            dot(&a, &c)
        );
    }

    #[test]
    fn stems_overlap_through_trigrams() {
        let e = HashedEmbedder::new();
        let a = e.embed_one("baking");
        let b = e.embed_one("baker");
        let c = e.embed_one("river");
        assert!(dot(&a, &b) > dot(&a, &c));
    }

    #[tokio::test]
    async fn embed_keeps_order() {
        let e = HashedEmbedder::new();
        let texts = vec!["one".to_string(), "two".to_string(), String::new()];
        let out = e.embed(&texts).await.unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1], e.embed_one("two"));
    }
}
