//! The HTTP embedder: OpenAI's `POST /v1/embeddings`, spoken by Ollama, vLLM,
//! llama.cpp's server, TEI and OpenAI itself. Touches only the network:
//! batched requests with a timeout, retried with exponential backoff and
//! jitter on connection errors, timeouts, 429 and 5xx.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::{EmbedConfig, EmbedError, EmbedFuture, Embedder, l2_normalize};
use crate::openai::{self, backoff, error_chain, error_message, retry_after};

/// An OpenAI-compatible embedding server.
pub struct HttpEmbedder {
    client: Client,
    /// The full endpoint, `…/v1/embeddings`.
    url: Url,
    model: String,
    /// Sent as `dimensions` and checked on every answer.
    requested_dim: Option<usize>,
    /// The dimension every vector must have: the requested one, else learned
    /// from the first answer (0 until then).
    dim: AtomicUsize,
    api_key: Option<String>,
    timeout: Duration,
    batch_size: usize,
    max_retries: u32,
}

/// Written by hand so the API key never reaches a log.
impl fmt::Debug for HttpEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEmbedder")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("dim", &self.dim.load(Ordering::Relaxed))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("batch_size", &self.batch_size)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

/// What one attempt ended with, and whether to try again.
enum Attempt {
    Done(Vec<Vec<f32>>),
    Retry(EmbedError, Option<Duration>),
    Fail(EmbedError),
}

impl HttpEmbedder {
    /// Builds the client from `cfg` (`base_url` and `model` required). Reads
    /// the API key from the environment variable named by `api_key_env` now,
    /// so a missing key is reported at start, not at the first memory.
    pub fn from_config(cfg: &EmbedConfig) -> Result<Self, EmbedError> {
        let base = cfg
            .base_url
            .as_deref()
            .ok_or_else(|| EmbedError::Config("the HTTP embedder needs `base_url`".into()))?;
        let model = cfg
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                EmbedError::Config(format!(
                    "`base_url` is {base}: set `model` to the embedding model's name too"
                ))
            })?;
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                EmbedError::Config(format!(
                    "`api_key_env` names {var}, which is not set (or not UTF-8)"
                ))
            })?),
        };
        if cfg.batch_size == 0 {
            return Err(EmbedError::Config("batch_size must be at least 1".into()));
        }
        let client = Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: endpoint(base)?,
            model,
            requested_dim: cfg.dimensions,
            dim: AtomicUsize::new(cfg.dimensions.unwrap_or(0)),
            api_key,
            timeout: cfg.timeout,
            batch_size: cfg.batch_size,
            max_retries: cfg.max_retries,
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            out.extend(self.embed_batch(chunk).await?);
        }
        Ok(out)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut retry = 0u32;
        loop {
            match self.attempt(texts).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, _) if retry >= self.max_retries => return Err(e),
                Attempt::Retry(e, asked) => {
                    let wait = backoff(retry, asked);
                    tracing::warn!(error = %e, retry = retry + 1, of = self.max_retries, ?wait, "embedding request failed; retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Attempt {
        let body = Request {
            model: &self.model,
            input: texts,
            dimensions: self.requested_dim,
        };
        let mut req = self.client.post(self.url.clone()).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_error(e),
        };
        let status = resp.status();
        if !status.is_success() {
            let asked = retry_after(&resp);
            let text = resp.text().await.unwrap_or_default();
            let err = EmbedError::Status {
                url: self.url.to_string(),
                status: status.as_u16(),
                message: error_message(&text),
            };
            return if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                Attempt::Retry(err, asked)
            } else {
                Attempt::Fail(err)
            };
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport_error(e),
        };
        match serde_json::from_slice::<Response>(&bytes) {
            Ok(r) => match self.check(r, texts.len()) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fail(e),
            },
            Err(e) => Attempt::Fail(EmbedError::BadResponse(format!(
                "expected {{\"data\":[{{\"index\":…,\"embedding\":[…]}}]}}: {e}"
            ))),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> Attempt {
        let url = self.url.to_string();
        if e.is_timeout() {
            Attempt::Retry(
                EmbedError::Timeout {
                    url,
                    after: self.timeout,
                },
                None,
            )
        } else if e.is_connect() || e.is_request() || e.is_body() {
            Attempt::Retry(
                EmbedError::Connect {
                    url,
                    reason: error_chain(&e),
                },
                None,
            )
        } else {
            Attempt::Fail(EmbedError::Connect {
                url,
                reason: error_chain(&e),
            })
        }
    }

    /// Orders by `index`, checks one vector per text, one dimension, finite
    /// values, and normalises.
    fn check(&self, mut r: Response, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        if r.data.len() != n {
            return Err(EmbedError::BadResponse(format!(
                "{} texts sent, {} embeddings returned",
                n,
                r.data.len()
            )));
        }
        r.data.sort_by_key(|d| d.index);
        if r.data.iter().enumerate().any(|(i, d)| d.index != i) {
            return Err(EmbedError::BadResponse(format!(
                "indices are not 0..{n}, each once"
            )));
        }
        let mut out = Vec::with_capacity(n);
        for d in r.data {
            let found = d.embedding.len();
            let expected =
                match self
                    .dim
                    .compare_exchange(0, found, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => found, // the first answer fixes the dimension
                    Err(known) => known,
                };
            if found != expected || found == 0 {
                return Err(EmbedError::DimensionMismatch { expected, found });
            }
            let mut v = d.embedding;
            if !l2_normalize(&mut v) {
                return Err(EmbedError::BadResponse(format!(
                    "embedding {} is all zeros or not finite",
                    out.len()
                )));
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl Embedder for HttpEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dim(&self) -> usize {
        self.dim.load(Ordering::Acquire)
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(self.embed_all(texts))
    }
}

/// `…/v1/embeddings` from a base URL given with or without `/v1`.
fn endpoint(base: &str) -> Result<Url, EmbedError> {
    openai::endpoint(base, "embeddings").map_err(EmbedError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_accepts_base_with_or_without_v1() {
        for base in [
            "http://127.0.0.1:11434",
            "http://127.0.0.1:11434/",
            "http://127.0.0.1:11434/v1",
            "http://127.0.0.1:11434/v1/",
        ] {
            assert_eq!(
                endpoint(base).unwrap().as_str(),
                "http://127.0.0.1:11434/v1/embeddings",
                "{base}"
            );
        }
        assert_eq!(
            endpoint("https://api.example.test/openai/v1")
                .unwrap()
                .as_str(),
            "https://api.example.test/openai/v1/embeddings"
        );
        assert!(matches!(endpoint("not a url"), Err(EmbedError::Config(_))));
        assert!(matches!(
            endpoint("ftp://host/v1"),
            Err(EmbedError::Config(_))
        ));
    }

    fn embedder(dimensions: Option<usize>) -> HttpEmbedder {
        HttpEmbedder::from_config(&EmbedConfig {
            base_url: Some("http://127.0.0.1:9".into()),
            model: Some("m".into()),
            dimensions,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn responses_are_ordered_checked_and_normalised() {
        let e = embedder(Some(2));
        let r = Response {
            data: vec![
                Datum {
                    index: 1,
                    embedding: vec![0.0, 2.0],
                },
                Datum {
                    index: 0,
                    embedding: vec![3.0, 4.0],
                },
            ],
        };
        let v = e.check(r, 2).unwrap();
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);

        let short = Response {
            data: vec![Datum {
                index: 0,
                embedding: vec![1.0, 0.0, 0.0],
            }],
        };
        assert!(matches!(
            e.check(short, 1),
            Err(EmbedError::DimensionMismatch {
                expected: 2,
                found: 3
            })
        ));
        let missing = Response {
            data: vec![Datum {
                index: 0,
                embedding: vec![1.0, 0.0],
            }],
        };
        assert!(matches!(
            e.check(missing, 2),
            Err(EmbedError::BadResponse(_))
        ));
        let dup = Response {
            data: vec![
                Datum {
                    index: 0,
                    embedding: vec![1.0, 0.0],
                },
                Datum {
                    index: 0,
                    embedding: vec![1.0, 0.0],
                },
            ],
        };
        assert!(matches!(e.check(dup, 2), Err(EmbedError::BadResponse(_))));
        let zero = Response {
            data: vec![Datum {
                index: 0,
                embedding: vec![0.0, 0.0],
            }],
        };
        assert!(matches!(e.check(zero, 1), Err(EmbedError::BadResponse(_))));
    }

    #[test]
    fn dimension_is_learned_from_the_first_answer_then_enforced() {
        let e = embedder(None);
        assert_eq!(e.dim(), 0);
        let r = Response {
            data: vec![Datum {
                index: 0,
                embedding: vec![1.0, 0.0, 0.0],
            }],
        };
        e.check(r, 1).unwrap();
        assert_eq!(e.dim(), 3);
        let r = Response {
            data: vec![Datum {
                index: 0,
                embedding: vec![1.0, 0.0],
            }],
        };
        assert!(matches!(
            e.check(r, 1),
            Err(EmbedError::DimensionMismatch {
                expected: 3,
                found: 2
            })
        ));
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        // CARGO_PKG_NAME is set by cargo for every test process
        let e = HttpEmbedder::from_config(&EmbedConfig {
            base_url: Some("http://127.0.0.1:9".into()),
            model: Some("m".into()),
            api_key_env: Some("CARGO_PKG_NAME".into()),
            ..Default::default()
        })
        .unwrap();
        let shown = format!("{e:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(env!("CARGO_PKG_NAME")), "{shown}");
    }

    #[test]
    fn missing_api_key_variable_is_a_config_error() {
        let err = HttpEmbedder::from_config(&EmbedConfig {
            base_url: Some("http://127.0.0.1:9".into()),
            model: Some("m".into()),
            api_key_env: Some("HEARTH_TEST_SURELY_UNSET_KEY_VAR".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("HEARTH_TEST_SURELY_UNSET_KEY_VAR"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_retried_then_reported() {
        // port 9 (discard) on loopback: nothing listens there on test machines
        let e = HttpEmbedder::from_config(&EmbedConfig {
            base_url: Some("http://127.0.0.1:9".into()),
            model: Some("m".into()),
            max_retries: 1,
            ..Default::default()
        })
        .unwrap();
        let err = e.embed(&["x".to_string()]).await.unwrap_err();
        assert!(
            matches!(err, EmbedError::Connect { .. } | EmbedError::Timeout { .. }),
            "{err}"
        );
    }
}
