//! "Did you mean": the candidate a mistyped word most likely stands for,
//! by one rule everywhere the server suggests (agent files, maps,
//! configuration keys, protocol message types). Pure; touches nothing.
//!
//! Words are compared without case. A candidate is close when its
//! Damerau–Levenshtein distance (a transposition counts once) is within a
//! third of the longer length (at least 1), or when its Jaro–Winkler
//! similarity is at least 0.9 (long shared prefixes). The nearest close
//! candidate wins; equal distances go to the more similar. Words longer
//! than [`MAX_WORD_CHARS`] get no suggestion, so a hostile input costs
//! nothing.
//!
//! ```
//! use hearth_suggest::closest;
//! let places = ["Bakery", "Tavern", "Town Square"];
//! assert_eq!(closest("bakry", places), Some("Bakery"));
//! assert_eq!(closest("tavren", places), Some("Tavern"));
//! assert_eq!(closest("Forge", places), None);
//! ```

/// Longest word a suggestion is looked for, in characters.
pub const MAX_WORD_CHARS: usize = 64;

/// The candidate `word` most likely misspells, if one is close (an exact
/// match, ignoring case, always is).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.trim().to_lowercase();
    let length = word.chars().count();
    if length == 0 || length > MAX_WORD_CHARS {
        return None;
    }
    let mut best: Option<(usize, f64, &str)> = None;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        if lower == word {
            return Some(candidate);
        }
        let distance = strsim::damerau_levenshtein(&word, &lower);
        let similarity = strsim::jaro_winkler(&word, &lower);
        let limit = (length.max(lower.chars().count()) / 3).max(1);
        if distance > limit && similarity < 0.9 {
            continue;
        }
        if best.is_none_or(|(d, s, _)| distance < d || (distance == d && similarity > s)) {
            best = Some((distance, similarity, candidate));
        }
    }
    best.map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_found_and_far_ones_are_not() {
        let fields = ["home", "start_location", "schedule"];
        assert_eq!(closest("homee", fields), Some("home"));
        assert_eq!(closest("HOME", fields), Some("home"), "case is ignored");
        assert_eq!(closest("start_loc", fields), Some("start_location"));
        assert_eq!(
            closest("sched", fields),
            Some("schedule"),
            "a long shared prefix"
        );
        assert_eq!(closest("forge", fields), None);
        assert_eq!(closest("", fields), None);
        assert_eq!(closest(&"home".repeat(20), fields), None, "too long");
    }

    #[test]
    fn the_nearest_wins() {
        assert_eq!(closest("say", ["sya", "say"]), Some("say"));
        assert_eq!(closest("pase", ["pause", "parse"]), Some("pause"));
    }
}
