//! Embedders: turn texts into L2-normalised vectors for retrieval and lore.
//! Reads model files from disk and talks to an embedding server over HTTP;
//! never touches the ECS world or the database.
//!
//! Three implementations of [`Embedder`]:
//! - [`MiniLmEmbedder`]: sentence-transformers/all-MiniLM-L6-v2 (384
//!   dimensions) run in process with candle, from a local directory holding
//!   `model.safetensors`, `tokenizer.json` and `config.json` (fetched by
//!   `bash docker/provision.sh`). The default.
//! - [`HashedEmbedder`]: signed feature hashing of words and character
//!   trigrams (384 dimensions). Deterministic and instant, but it only matches
//!   shared words: a fallback for when the model files are missing.
//! - [`HttpEmbedder`]: any server speaking OpenAI's `POST /v1/embeddings`
//!   (Ollama, vLLM, llama.cpp's server, TEI, OpenAI), batched, with a timeout
//!   and retries.
//!
//! [`from_config`] picks one. Every embedder is cheap to share behind an
//! `Arc<dyn Embedder>`, and its futures never block an async worker (MiniLM
//! runs on tokio's blocking pool).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hearth_mind::embed::EmbedError> {
//! use std::path::Path;
//! use hearth_mind::embed::{EmbedConfig, from_config};
//!
//! let embedder = from_config(&EmbedConfig::default(), Path::new(".hearth"))?;
//! let vectors = embedder
//!     .embed(&["Maria baked bread at dawn".to_string()])
//!     .await?;
//! assert_eq!(vectors[0].len(), embedder.dim());
//! # Ok(())
//! # }
//! ```

mod hashed;
mod http;
mod minilm;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use hashed::HashedEmbedder;
pub use http::HttpEmbedder;
pub use minilm::MiniLmEmbedder;

/// What [`Embedder::embed`] returns: one vector per text, in order.
pub type EmbedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Something that turns texts into vectors of one fixed dimension.
pub trait Embedder: Send + Sync + fmt::Debug + 'static {
    /// Name stored per world (e.g. "sentence-transformers/all-MiniLM-L6-v2",
    /// "hearth-hashed-v1", or the HTTP model name).
    fn model(&self) -> &str;
    /// Length of every vector. An [`HttpEmbedder`] configured without
    /// `dimensions` answers 0 until its first reply tells it; use
    /// [`resolve_dim`] when the number is needed up front.
    fn dim(&self) -> usize;
    /// One L2-normalised vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
}

/// The dimension of `embedder`, asking the server with a one-word probe when
/// it is not known yet (an HTTP embedder configured without `dimensions`).
pub async fn resolve_dim(embedder: &dyn Embedder) -> Result<usize, EmbedError> {
    let known = embedder.dim();
    if known > 0 {
        return Ok(known);
    }
    let probe = [String::from("dimension probe")];
    let vectors = embedder.embed(&probe).await?;
    vectors
        .first()
        .map(Vec::len)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            EmbedError::BadResponse("the embedder returned no vector for a probe text".into())
        })
}

/// Why embedding failed. Messages say what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model file {} is missing; run `bash docker/provision.sh` to fetch all-MiniLM-L6-v2", path.display())]
    MissingModelFile { path: PathBuf },
    #[error("embedding model file {} is unusable: {reason}; delete the directory and run `bash docker/provision.sh` again", path.display())]
    CorruptModel { path: PathBuf, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model inference failed: {0}")]
    Inference(String),
    #[error("embedding server {url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("embedding server {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("cannot reach embedding server {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("embedding server gave an unusable answer: {0}")]
    BadResponse(String),
    #[error("embedding dimension mismatch: expected {expected}, got {found}")]
    DimensionMismatch { expected: usize, found: usize },
    #[error("invalid embeddings configuration: {0}")]
    Config(String),
    #[error("the embedding task stopped: {0}")]
    Task(String),
}

/// The `[embeddings]` settings. All optional: with none, Hearth runs MiniLM
/// from `<HEARTH_HOME>/models/all-MiniLM-L6-v2`, or the hashed fallback when
/// those files are missing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// An OpenAI-compatible server (`http://127.0.0.1:11434` or
    /// `…/v1`); when set, embeddings come from it.
    pub base_url: Option<String>,
    /// The model name sent to the server (required with `base_url`).
    pub model: Option<String>,
    /// The environment variable holding the API key, sent as a Bearer token.
    pub api_key_env: Option<String>,
    /// The expected dimension; also sent as `dimensions` (for models that can
    /// shorten their vectors, such as OpenAI's text-embedding-3).
    pub dimensions: Option<usize>,
    /// Where MiniLM's files are (default `<HEARTH_HOME>/models/all-MiniLM-L6-v2`).
    pub model_dir: Option<PathBuf>,
    /// Per HTTP request: seconds as a number, or a string such as "500ms", "10s".
    #[serde(deserialize_with = "duration_from_secs_or_text")]
    pub timeout: Duration,
    /// Texts per model call or HTTP request.
    pub batch_size: usize,
    /// Retries after the first HTTP attempt, on connection errors, timeouts,
    /// 429 and 5xx (never on other 4xx).
    pub max_retries: u32,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: None,
            api_key_env: None,
            dimensions: None,
            model_dir: None,
            timeout: Duration::from_secs(10),
            batch_size: 64,
            max_retries: 3,
        }
    }
}

impl EmbedConfig {
    /// Rejects settings no embedder can run with.
    pub fn validate(&self) -> Result<(), EmbedError> {
        if self.batch_size == 0 {
            return Err(EmbedError::Config("batch_size must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(EmbedError::Config("timeout must be longer than 0".into()));
        }
        if self.dimensions == Some(0) {
            return Err(EmbedError::Config("dimensions must be at least 1".into()));
        }
        if self.base_url.is_none() {
            for (key, set) in [
                ("model", self.model.is_some()),
                ("api_key_env", self.api_key_env.is_some()),
                ("dimensions", self.dimensions.is_some()),
            ] {
                if set {
                    return Err(EmbedError::Config(format!(
                        "`{key}` only applies to an HTTP embedder; set `base_url` too, or remove `{key}`"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn duration_from_secs_or_text<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Secs(s) => Duration::try_from_secs_f64(s).map_err(|_| {
            serde::de::Error::custom(format!("timeout {s} is not a duration in seconds"))
        }),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "timeout {t:?} is not a duration (e.g. \"10s\", \"500ms\"): {e}"
            ))
        }),
    }
}

/// Where MiniLM's files live by default under `hearth_home`.
pub fn default_model_dir(hearth_home: &Path) -> PathBuf {
    hearth_home.join("models").join("all-MiniLM-L6-v2")
}

/// The embedder `cfg` asks for: HTTP when `base_url` is set; else MiniLM from
/// `model_dir` (or [`default_model_dir`]) when its files are there; else the
/// hashed fallback, with a warning. A `model_dir` set explicitly must hold
/// the model: its absence is an error, not a silent fallback.
pub fn from_config(cfg: &EmbedConfig, hearth_home: &Path) -> Result<Arc<dyn Embedder>, EmbedError> {
    cfg.validate()?;
    if cfg.base_url.is_some() {
        let http = HttpEmbedder::from_config(cfg)?;
        tracing::info!(
            model = http.model(),
            url = http.url(),
            "embeddings from an HTTP server"
        );
        return Ok(Arc::new(http));
    }
    let dir = cfg
        .model_dir
        .clone()
        .unwrap_or_else(|| default_model_dir(hearth_home));
    if cfg.model_dir.is_some() || MiniLmEmbedder::files_present(&dir) {
        let minilm = MiniLmEmbedder::load(&dir)?.with_batch_size(cfg.batch_size);
        tracing::info!(model = minilm.model(), dir = %dir.display(), "embeddings from MiniLM in process");
        return Ok(Arc::new(minilm));
    }
    tracing::warn!(
        dir = %dir.display(),
        "no embedding model files found: using the hashed embedder ({}), which only matches shared words, \
         so memory retrieval quality is poor; run `bash docker/provision.sh` to fetch all-MiniLM-L6-v2 \
         (into {}), or set `base_url` to an embedding server",
        HashedEmbedder::MODEL,
        dir.display()
    );
    Ok(Arc::new(HashedEmbedder::new()))
}

/// Scales `v` to unit length in place; returns false (leaving `v` as is)
/// when its norm is zero or not finite.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Dot product; the cosine similarity of two unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_matches_documented_defaults() {
        let cfg: EmbedConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, EmbedConfig::default());
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.batch_size, 64);
        assert_eq!(cfg.max_retries, 3);
    }

    #[test]
    fn timeout_accepts_seconds_and_text() {
        let a: EmbedConfig = serde_json::from_str(r#"{"timeout": 2.5}"#).unwrap();
        assert_eq!(a.timeout, Duration::from_millis(2500));
        let b: EmbedConfig = serde_json::from_str(r#"{"timeout": "750ms"}"#).unwrap();
        assert_eq!(b.timeout, Duration::from_millis(750));
        let err = serde_json::from_str::<EmbedConfig>(r#"{"timeout": "soon"}"#).unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        assert!(serde_json::from_str::<EmbedConfig>(r#"{"timeout": -1}"#).is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<EmbedConfig>(r#"{"base_ur": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("base_ur"), "{err}");
    }

    #[test]
    fn invalid_configs_are_errors_not_panics() {
        let zero_batch = EmbedConfig {
            batch_size: 0,
            ..Default::default()
        };
        assert!(matches!(
            from_config(&zero_batch, Path::new("/nonexistent")),
            Err(EmbedError::Config(_))
        ));
        let model_without_url = EmbedConfig {
            model: Some("nomic-embed-text".into()),
            ..Default::default()
        };
        let err = from_config(&model_without_url, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("base_url"), "{err}");
        let url_without_model = EmbedConfig {
            base_url: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        assert!(matches!(
            from_config(&url_without_model, Path::new("/nonexistent")),
            Err(EmbedError::Config(_))
        ));
    }

    #[test]
    fn falls_back_to_hashed_without_model_files() {
        let home = Path::new("/nonexistent/hearth-home");
        let e = from_config(&EmbedConfig::default(), home).unwrap();
        assert_eq!(e.model(), HashedEmbedder::MODEL);
        assert_eq!(e.dim(), 384);
    }

    #[test]
    fn explicit_model_dir_without_files_is_an_error() {
        let cfg = EmbedConfig {
            model_dir: Some("/nonexistent/minilm".into()),
            ..Default::default()
        };
        let err = from_config(&cfg, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, EmbedError::MissingModelFile { .. }), "{err}");
        assert!(err.to_string().contains("docker/provision.sh"), "{err}");
    }

    #[test]
    fn http_config_builds_an_http_embedder() {
        let cfg = EmbedConfig {
            base_url: Some("http://127.0.0.1:11434".into()),
            model: Some("nomic-embed-text".into()),
            dimensions: Some(768),
            ..Default::default()
        };
        let e = from_config(&cfg, Path::new("/nonexistent")).unwrap();
        assert_eq!(e.model(), "nomic-embed-text");
        assert_eq!(e.dim(), 768);
    }

    #[test]
    fn normalize_is_zero_safe() {
        let mut v = vec![3.0, 4.0];
        assert!(l2_normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 4];
        assert!(!l2_normalize(&mut z));
        assert!(z.iter().all(|x| *x == 0.0));
        let mut bad = vec![f32::NAN, 1.0];
        assert!(!l2_normalize(&mut bad));
    }

    #[tokio::test]
    async fn resolve_dim_uses_the_known_dimension() {
        let e = HashedEmbedder::new();
        assert_eq!(resolve_dim(&e).await.unwrap(), 384);
    }
}
