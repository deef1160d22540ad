//! Finding the JSON in what a model said: the whole text, a fenced code
//! block, or the first object (or array) that parses inside prose ("Sure!
//! Here it is: {…} Hope that helps"). Pure; touches nothing.

use serde_json::Value;

/// How many candidate openings are tried before giving up.
const MAX_TRIES: usize = 32;

/// The first JSON object or array in `text`, if any.
pub fn find_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed)
        && (v.is_object() || v.is_array())
    {
        return Some(v);
    }
    // inside ```json … ``` fences
    if let Some(start) = trimmed.find("```") {
        let after = &trimmed[start + 3..];
        let body = after.split_once('\n').map_or(after, |(_, rest)| rest);
        if let Some(end) = body.find("```")
            && let Ok(v) = serde_json::from_str::<Value>(body[..end].trim())
            && (v.is_object() || v.is_array())
        {
            return Some(v);
        }
    }
    // the first `{` or `[` where a value parses (trailing text ignored)
    trimmed
        .char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .take(MAX_TRIES)
        .find_map(|(i, _)| {
            let mut values = serde_json::Deserializer::from_str(&trimmed[i..]).into_iter::<Value>();
            match values.next() {
                Some(Ok(v)) if v.is_object() || v.is_array() => Some(v),
                _ => None,
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_is_found_in_the_shapes_models_answer_with() {
        assert_eq!(find_json(r#" {"a": 1} "#), Some(json!({"a": 1})));
        assert_eq!(
            find_json("```json\n{\"a\": [1, 2]}\n```"),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(
            find_json("Sure! Here is the rating: {\"rating\": 7} Hope that helps {"),
            Some(json!({"rating": 7}))
        );
        assert_eq!(find_json("Ratings [3, 5] and more"), Some(json!([3, 5])));
        assert_eq!(
            find_json("{broken {\"ok\": true}"),
            Some(json!({"ok": true}))
        );
    }

    #[test]
    fn text_without_json_gives_none() {
        for text in ["", "seven", "{\"a\": ", "42", "\"just a string\"", "{{{{"] {
            assert_eq!(find_json(text), None, "{text:?}");
        }
    }
}
