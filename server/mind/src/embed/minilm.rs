//! all-MiniLM-L6-v2 run in process: candle's BERT on the model's safetensors,
//! the `tokenizers` crate on its tokenizer.json, mean pooling over the
//! attention mask, then L2 normalisation — the same steps as
//! sentence-transformers. Reads the model directory once at load; inference
//! runs on tokio's blocking pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, EmbedFuture, Embedder, l2_normalize};

/// The files [`MiniLmEmbedder::load`] reads from its directory.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// sentence-transformers/all-MiniLM-L6-v2, in process.
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
    batch_size: usize,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    dir: PathBuf,
    /// Where inference runs: one core fewer than the machine has (at least
    /// one), so the world's tick thread always has a core to itself. candle's
    /// matrix products use the rayon pool they are called in.
    pool: rayon::ThreadPool,
}

impl fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("dir", &self.inner.dir)
            .field("dim", &self.inner.dim)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl MiniLmEmbedder {
    /// The name stored per world.
    pub const MODEL: &'static str = "sentence-transformers/all-MiniLM-L6-v2";
    /// Output dimension (the model's hidden size).
    pub const DIM: usize = 384;
    /// Word pieces per text, [CLS] and [SEP] included; longer texts are cut
    /// (the model's `max_seq_length` in sentence_bert_config.json).
    pub const MAX_TOKENS: usize = 256;
    /// Texts per forward pass unless [`Self::with_batch_size`] says otherwise.
    pub const DEFAULT_BATCH: usize = 64;

    /// True when every file of [`MODEL_FILES`] is in `dir`.
    pub fn files_present(dir: &Path) -> bool {
        MODEL_FILES.iter().all(|f| dir.join(f).is_file())
    }

    /// Loads the model from `dir` (blocking: reads ~91 MB). Errors name the
    /// missing or broken file and how to fetch it again.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        for f in MODEL_FILES {
            let path = dir.join(f);
            if !path.is_file() {
                return Err(EmbedError::MissingModelFile { path });
            }
        }
        let config_path = dir.join("config.json");
        let config_text = read(&config_path)?;
        let config: Config =
            serde_json::from_slice(&config_text).map_err(|e| EmbedError::CorruptModel {
                path: config_path.clone(),
                reason: format!("not a BERT config: {e}"),
            })?;
        if config.hidden_size != Self::DIM {
            return Err(EmbedError::CorruptModel {
                path: config_path,
                reason: format!(
                    "hidden size {} is not all-MiniLM-L6-v2's {}",
                    config.hidden_size,
                    Self::DIM
                ),
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EmbedError::CorruptModel {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        // The shipped tokenizer.json pads every text to 128 and truncates at
        // 128; sentence-transformers uses 256 and pads to the batch's longest.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: Self::MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let device = Device::Cpu;
        let model = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .and_then(|vb| BertModel::load(vb, &config))
            .map_err(|e| EmbedError::CorruptModel {
                path: weights_path,
                reason: e.to_string(),
            })?;

        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hearth-embed-{i}"))
            .build()
            .map_err(|e| EmbedError::Inference(format!("cannot start inference threads: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                device,
                dim: config.hidden_size,
                dir: dir.to_path_buf(),
                pool,
            }),
            batch_size: Self::DEFAULT_BATCH,
        })
    }

    /// Texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Embeds on the calling thread. Use [`Embedder::embed`] from async code.
    ///
    /// Texts are batched longest first, as sentence-transformers does, so
    /// each batch pads little; the vectors come back in the caller's order.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let vectors = self.inner.pool.install(|| self.inner.embed_batch(batch))?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

impl Inner {
    fn embed_batch(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            if e.get_ids().len() != len {
                return Err(EmbedError::Tokenizer(
                    "the batch was not padded to one length".into(),
                ));
            }
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let pooled = self
            .forward(ids, mask, n, len)
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let mut vectors = pooled;
        for v in &mut vectors {
            if v.len() != self.dim || !l2_normalize(v) {
                return Err(EmbedError::Inference(format!(
                    "the model produced a vector of length {} that cannot be normalised",
                    v.len()
                )));
            }
        }
        Ok(vectors)
    }

    /// BERT, then the mean of the token vectors where the mask is 1.
    fn forward(
        &self,
        ids: Vec<u32>,
        mask: Vec<u32>,
        n: usize,
        len: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let input_ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let attention_mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let token_type_ids = input_ids.zeros_like()?;
        let hidden = self
            .model
            .forward(&input_ids, &token_type_ids, Some(&attention_mask))?; // (n, len, dim)
        let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        summed.broadcast_div(&counts)?.to_vec2::<f32>()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Embedder for MiniLmEmbedder {
    fn model(&self) -> &str {
        Self::MODEL
    }

    fn dim(&self) -> usize {
        self.inner.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let this = self.clone();
            let owned = texts.to_vec();
            // CPU-heavy (milliseconds per batch): keep it off the async workers.
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| EmbedError::Task("MiniLM embedding needs a tokio runtime".into()))?;
            handle
                .spawn_blocking(move || this.embed_blocking(&owned))
                .await
                .map_err(|e| EmbedError::Task(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_file_and_the_fix() {
        let dir =
            std::env::temp_dir().join(format!("hearth-minilm-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!MiniLmEmbedder::files_present(&dir));
        let err = MiniLmEmbedder::load(&dir).unwrap_err();
        match &err {
            EmbedError::MissingModelFile { path } => assert!(path.ends_with("model.safetensors")),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("docker/provision.sh"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir =
            std::env::temp_dir().join(format!("hearth-minilm-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in MODEL_FILES {
            std::fs::write(dir.join(f), b"not what you think").unwrap();
        }
        assert!(MiniLmEmbedder::files_present(&dir));
        let err = MiniLmEmbedder::load(&dir).unwrap_err();
        assert!(
            matches!(&err, EmbedError::CorruptModel { path, .. } if path.ends_with("config.json")),
            "{err}"
        );

        // a valid config but a broken tokenizer
        std::fs::write(
            dir.join("config.json"),
            r#"{"vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,
               "intermediate_size":1536,"hidden_act":"gelu","hidden_dropout_prob":0.1,
               "max_position_embeddings":512,"type_vocab_size":2,"initializer_range":0.02,
               "layer_norm_eps":1e-12,"pad_token_id":0}"#,
        )
        .unwrap();
        let err = MiniLmEmbedder::load(&dir).unwrap_err();
        assert!(
            matches!(&err, EmbedError::CorruptModel { path, .. } if path.ends_with("tokenizer.json")),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_hidden_size_is_refused() {
        let dir = std::env::temp_dir().join(format!("hearth-minilm-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in MODEL_FILES {
            std::fs::write(dir.join(f), b"{}").unwrap();
        }
        std::fs::write(
            dir.join("config.json"),
            r#"{"vocab_size":30522,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,
               "intermediate_size":3072,"hidden_act":"gelu","hidden_dropout_prob":0.1,
               "max_position_embeddings":512,"type_vocab_size":2,"initializer_range":0.02,
               "layer_norm_eps":1e-12,"pad_token_id":0}"#,
        )
        .unwrap();
        let err = MiniLmEmbedder::load(&dir).unwrap_err();
        assert!(err.to_string().contains("768"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
