//! The conventions of OpenAI-compatible HTTP APIs that the embedder and the
//! language-model client share: endpoint URLs from a base URL, backoff with
//! jitter, `Retry-After`, and the server's own error message. Pure helpers;
//! touches nothing.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::RETRY_AFTER;

/// First backoff delay; doubled on every retry, then jittered.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// No single wait longer than this, even when the server asks for more.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How much of an error body is kept.
pub const MAX_ERROR_CHARS: usize = 500;

/// `…/v1/<path>` from a base URL given with or without `/v1` and trailing
/// slashes; the error names what is wrong with `base`.
pub fn endpoint(base: &str, path: &str) -> Result<Url, String> {
    let trimmed = base.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1") {
        format!("{trimmed}/{path}")
    } else {
        format!("{trimmed}/v1/{path}")
    };
    let url = Url::parse(&full).map_err(|e| format!("`base_url` {base:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "`base_url` {base:?} must use http or https, not {other}"
        )),
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half
/// random, so retrying clients spread out; at least what the server asked
/// for (Retry-After), never more than [`BACKOFF_CAP`].
pub fn backoff(retry: u32, asked: Option<Duration>) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(retry.min(16)))
        .min(BACKOFF_CAP);
    let jittered = exp.mul_f64(0.5 + 0.5 * rand::random_range(0.0..1.0));
    jittered.max(asked.unwrap_or_default()).min(BACKOFF_CAP)
}

pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The server's own words: OpenAI's `{"error":{"message":…}}`, TEI's and
/// Ollama's `{"error":"…"}`, else the body itself (cut short).
pub fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            e.get("message")
                .and_then(|m| m.as_str())
                .or_else(|| e.as_str())
                .map(str::to_owned)
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    if text.is_empty() {
        return "(no message)".into();
    }
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_stays_jittered_and_capped() {
        for retry in 0..6 {
            let exp = BACKOFF_BASE * 2u32.pow(retry);
            let d = backoff(retry, None);
            assert!(
                d >= exp.min(BACKOFF_CAP) / 2 && d <= exp.min(BACKOFF_CAP),
                "retry {retry}: {d:?}"
            );
        }
        let late = backoff(30, None);
        assert!(late <= BACKOFF_CAP && late >= BACKOFF_CAP / 2, "{late:?}");
        assert!(backoff(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(backoff(0, Some(Duration::from_secs(3600))), BACKOFF_CAP);
    }

    #[test]
    fn error_messages_are_taken_from_known_shapes() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad input","type":"invalid_request_error"}}"#),
            "bad input"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found","error_type":"Validation"}"#),
            "model not found"
        );
        assert_eq!(error_message("  plain text  "), "plain text");
        assert_eq!(error_message(""), "(no message)");
        let long = "x".repeat(2000);
        assert_eq!(error_message(&long).chars().count(), MAX_ERROR_CHARS + 1);
    }
}
