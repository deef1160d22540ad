//! Embedders end to end: the real all-MiniLM-L6-v2 on a toy retrieval set
//! (against the hashed fallback), its known values and determinism; and the
//! HTTP embedder against a real OpenAI-style server on 127.0.0.1 (batching,
//! retries, errors, timeouts, dimensions).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use hearth_mind::embed::{
    EmbedConfig, EmbedError, Embedder, HashedEmbedder, HttpEmbedder, MiniLmEmbedder,
    default_model_dir, dot, from_config, resolve_dim,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------- MiniLM --

/// The model directory `bash docker/provision.sh` fills.
fn model_dir() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| hearth_tests::workspace_root().join(".hearth"));
    default_model_dir(&home)
}

fn minilm() -> MiniLmEmbedder {
    let dir = model_dir();
    assert!(
        MiniLmEmbedder::files_present(&dir),
        "all-MiniLM-L6-v2 is not in {}: run `bash docker/provision.sh` first (it fetches the model files)",
        dir.display()
    );
    MiniLmEmbedder::load(&dir).unwrap()
}

/// Village memories and, for each, a paraphrased query that shares few words
/// with it. Query i should retrieve memory i first.
const MEMORIES: [&str; 12] = [
    "Maria baked three loaves of rye bread before sunrise.",
    "Tom fixed the broken wheel of the miller's cart.",
    "A storm knocked down the old oak near the chapel.",
    "Elena sang folk songs at the tavern until midnight.",
    "The children chased a runaway goat across the market square.",
    "Jonas caught four trout in the river this afternoon.",
    "The blacksmith burned his hand on the forge.",
    "Grandma Rosa told the story of the great flood of her youth.",
    "The harvest festival will be held on Saturday in the meadow.",
    "Lina felt lonely after her best friend moved to the city.",
    "The village well has dried up since the drought began.",
    "Pedro paid the tax collector with his last silver coins.",
];

const QUERIES: [&str; 12] = [
    "Who was making food in the oven early in the morning?",
    "Someone repaired a damaged wagon.",
    "Bad weather toppled a big tree by the church.",
    "A woman performed music at the inn late into the night.",
    "Kids ran after an escaped animal in the marketplace.",
    "A man went fishing by the stream and had a good catch.",
    "The metalworker got injured at his workshop fire.",
    "An elderly woman recalled a disaster from when she was young.",
    "There is a celebration of the crops this weekend in the field.",
    "She is sad because her companion left for town.",
    "There is no more drinking water because it has not rained.",
    "A farmer gave his remaining money to the official.",
];

/// (queries whose own memory ranks first, mean reciprocal rank)
fn rank_quality(memories: &[Vec<f32>], queries: &[Vec<f32>]) -> (usize, f64) {
    let mut top1 = 0;
    let mut mrr = 0.0;
    for (i, q) in queries.iter().enumerate() {
        let own = dot(q, &memories[i]);
        let rank = 1 + memories.iter().filter(|m| dot(q, m) > own).count();
        if rank == 1 {
            top1 += 1;
        }
        mrr += 1.0 / rank as f64;
    }
    (top1, mrr / queries.len() as f64)
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn minilm_ranks_every_paraphrase_first_and_beats_hashing() {
    let model = minilm();
    let memories = strings(&MEMORIES);
    let queries = strings(&QUERIES);

    let m = model.embed(&memories).await.unwrap();
    let q = model.embed(&queries).await.unwrap();
    assert_eq!(m.len(), 12);
    assert!(
        m.iter()
            .chain(&q)
            .all(|v| v.len() == 384 && (dot(v, v) - 1.0).abs() < 1e-4)
    );
    let (minilm_top1, minilm_mrr) = rank_quality(&m, &q);

    let hashed = HashedEmbedder::new();
    let hm = hashed.embed(&memories).await.unwrap();
    let hq = hashed.embed(&queries).await.unwrap();
    let (hashed_top1, hashed_mrr) = rank_quality(&hm, &hq);

    eprintln!(
        "toy retrieval set: MiniLM {minilm_top1}/12 top-1 (MRR {minilm_mrr:.2}), \
         hashed {hashed_top1}/12 top-1 (MRR {hashed_mrr:.2})"
    );
    assert_eq!(
        minilm_top1, 12,
        "MiniLM should rank every paraphrase's memory first"
    );
    assert!(
        minilm_mrr > hashed_mrr && minilm_top1 > hashed_top1,
        "MiniLM ({minilm_top1}, {minilm_mrr:.2}) should beat hashing ({hashed_top1}, {hashed_mrr:.2})"
    );
}

#[tokio::test]
async fn minilm_matches_the_published_similarities() {
    // sentence-transformers' quick start (sbert.net, "Usage") prints these
    // cosine similarities for all-MiniLM-L6-v2, to four decimals.
    let model = minilm();
    let texts = strings(&[
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]);
    let v = model.embed(&texts).await.unwrap();
    let published = [((0, 1), 0.6660f32), ((0, 2), 0.1046), ((1, 2), 0.1411)];
    for ((a, b), want) in published {
        let got = dot(&v[a], &v[b]);
        eprintln!("cos({a},{b}) = {got:.4} (published {want:.4})");
        assert!(
            (got - want).abs() < 5e-4,
            "cos({a},{b}) = {got:.4}, published {want:.4}"
        );
    }
}

#[tokio::test]
async fn minilm_is_deterministic_bit_for_bit() {
    let texts = strings(&MEMORIES);
    let a = minilm().embed(&texts).await.unwrap();
    let b = minilm().embed(&texts).await.unwrap();
    let bits = |vs: &[Vec<f32>]| vs.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

#[tokio::test]
async fn minilm_batches_and_padding_do_not_change_meaning() {
    // one long and one short text in a batch (so the short one is padded)
    // against each alone: the attention mask must hide the padding.
    let model = minilm().with_batch_size(2);
    let texts = strings(&[
        "Hi.",
        "The miller's daughter walked the long road to the market every Tuesday, carrying eggs and cheese.",
        "Rain.",
    ]);
    let together = model.embed(&texts).await.unwrap();
    for (i, t) in texts.iter().enumerate() {
        let alone = model.embed(std::slice::from_ref(t)).await.unwrap();
        let cos = dot(&alone[0], &together[i]);
        assert!(
            cos > 0.9999,
            "text {i}: cosine {cos} between alone and batched"
        );
    }
}

#[tokio::test]
async fn minilm_truncates_long_texts_and_accepts_empty_ones() {
    let model = minilm();
    let head = "the river runs past the mill and the bakery ".repeat(40); // > 256 word pieces
    let texts = vec![
        format!("{head} and then a dragon burned the village"),
        format!("{head} and all was calm"),
        String::new(),
    ];
    let v = model.embed(&texts).await.unwrap();
    assert_eq!(v.len(), 3);
    assert!(
        v.iter()
            .all(|x| x.iter().all(|f| f.is_finite()) && (dot(x, x) - 1.0).abs() < 1e-4)
    );
    // past the 256-piece limit the endings are cut, so both texts embed alike
    assert!(dot(&v[0], &v[1]) > 0.99999, "{}", dot(&v[0], &v[1]));
}

#[tokio::test(flavor = "current_thread")]
async fn minilm_leaves_the_async_worker_free() {
    // On a one-thread runtime, a task that counts its turns only gets turns
    // while the embedding is awaited if the model runs elsewhere.
    let model = minilm();
    let turns = Arc::new(AtomicUsize::new(0));
    let counter = {
        let turns = turns.clone();
        tokio::spawn(async move {
            loop {
                turns.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::task::yield_now().await;
    let before = turns.load(Ordering::Relaxed);
    let texts = strings(&MEMORIES);
    model.embed(&texts).await.unwrap();
    let during = turns.load(Ordering::Relaxed) - before;
    counter.abort();
    assert!(
        during > 1,
        "the counting task got {during} turns while MiniLM ran"
    );
}

#[test]
fn from_config_prefers_minilm_when_its_files_exist() {
    let dir = model_dir();
    assert!(
        MiniLmEmbedder::files_present(&dir),
        "run `bash docker/provision.sh` first"
    );
    let home = dir.parent().and_then(|p| p.parent()).unwrap();
    let e = from_config(&EmbedConfig::default(), home).unwrap();
    assert_eq!(e.model(), "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(e.dim(), 384);
}

// ------------------------------------------------------------------ HTTP --

/// How the test server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// 200 with vectors of this dimension, in reverse index order.
    Ok(usize),
    /// This status (with an OpenAI-style error) for the first `n` requests, then `Ok(dim)`.
    FailFirst { status: u16, n: usize, dim: usize },
    /// 400 with an OpenAI-style error message.
    BadRequest,
    /// Answers only after this long.
    Slow(Duration),
}

#[derive(Clone)]
struct Server {
    mode: Mode,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Server {
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// A vector the test can predict: [len(text), 1, 0, …], so after
/// normalisation texts of different lengths point different ways.
fn fake_vector(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[0] = text.len() as f32;
    if dim > 1 {
        v[1] = 1.0;
    }
    v
}

async fn handler(
    State(s): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = {
        let mut r = s.requests.lock().unwrap();
        r.push((headers, body.clone()));
        r.len()
    };
    let ok = |dim: usize| {
        let input = body["input"].as_array().cloned().unwrap_or_default();
        let mut data: Vec<Value> = input
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_vector(t.as_str().unwrap_or(""), dim)}))
            .collect();
        data.reverse();
        (
            StatusCode::OK,
            Json(
                json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
            ),
        )
    };
    match s.mode {
        Mode::Ok(dim) => ok(dim),
        Mode::FailFirst {
            status, n: fails, ..
        } if n <= fails => (
            StatusCode::from_u16(status).unwrap(),
            Json(
                json!({"error": {"message": format!("temporary trouble #{n}"), "type": "server_error"}}),
            ),
        ),
        Mode::FailFirst { dim, .. } => ok(dim),
        Mode::BadRequest => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "input is too long for this model", "type": "invalid_request_error", "param": "input", "code": null}}),
            ),
        ),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            ok(4)
        }
    }
}

/// Starts a server on 127.0.0.1:0 and returns it with its base URL.
async fn serve(mode: Mode) -> (Server, String) {
    let server = Server {
        mode,
        requests: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/embeddings", post(handler))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, format!("http://{addr}"))
}

fn http(base_url: &str, f: impl FnOnce(&mut EmbedConfig)) -> HttpEmbedder {
    let mut cfg = EmbedConfig {
        base_url: Some(base_url.to_string()),
        model: Some("nomic-embed-text".into()),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    f(&mut cfg);
    HttpEmbedder::from_config(&cfg).unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| "x".repeat(i + 1)).collect()
}

#[tokio::test]
async fn http_batches_orders_and_normalises() {
    let (server, url) = serve(Mode::Ok(3)).await;
    // base URL given with /v1 and a trailing slash; the key comes from an
    // environment variable cargo sets for every test process
    let e = http(&format!("{url}/v1/"), |c| {
        c.batch_size = 4;
        c.api_key_env = Some("CARGO_PKG_NAME".into());
    });
    assert_eq!(
        e.dim(),
        0,
        "no dimension configured: unknown until the first answer"
    );
    let input = texts(10);
    let v = e.embed(&input).await.unwrap();

    assert_eq!(server.count(), 3, "10 texts in batches of 4");
    let sizes: Vec<usize> = server
        .bodies()
        .iter()
        .map(|b| b["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    let first = &server.bodies()[0];
    assert_eq!(first["model"], "nomic-embed-text");
    assert!(
        first.get("dimensions").is_none(),
        "dimensions is only sent when configured"
    );
    let auth = server.requests.lock().unwrap()[0]
        .0
        .get("authorization")
        .cloned()
        .unwrap();
    assert_eq!(auth, "Bearer hearth-tests");

    assert_eq!(v.len(), 10);
    assert_eq!(e.dim(), 3);
    for (i, (t, got)) in input.iter().zip(&v).enumerate() {
        let mut want = fake_vector(t, 3);
        let norm = dot(&want, &want).sqrt();
        want.iter_mut().for_each(|x| *x /= norm);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "text {i}: {got:?} vs {want:?}"
        );
    }
    assert_eq!(resolve_dim(&e).await.unwrap(), 3);
}

#[tokio::test]
async fn http_retries_a_server_error_then_succeeds() {
    let (server, url) = serve(Mode::FailFirst {
        status: 500,
        n: 1,
        dim: 4,
    })
    .await;
    let e = http(&url, |_| {});
    let v = e.embed(&texts(2)).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(server.count(), 2, "one 500, then one success");
}

#[tokio::test]
async fn http_retries_429_and_gives_up_after_max_retries() {
    let (server, url) = serve(Mode::FailFirst {
        status: 429,
        n: 100,
        dim: 4,
    })
    .await;
    let e = http(&url, |c| c.max_retries = 2);
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert_eq!(server.count(), 3, "first attempt + 2 retries");
    match err {
        EmbedError::Status {
            status, message, ..
        } => {
            assert_eq!(status, 429);
            assert_eq!(message, "temporary trouble #3");
        }
        other => panic!("expected a 429 status error, got {other}"),
    }
}

#[tokio::test]
async fn http_does_not_retry_a_client_error_and_shows_its_message() {
    let (server, url) = serve(Mode::BadRequest).await;
    let e = http(&url, |_| {});
    let err = e.embed(&texts(3)).await.unwrap_err();
    assert_eq!(server.count(), 1, "4xx is not retried");
    assert!(
        matches!(err, EmbedError::Status { status: 400, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("input is too long for this model"),
        "{err}"
    );
}

#[tokio::test]
async fn http_times_out_on_a_slow_server() {
    let (server, url) = serve(Mode::Slow(Duration::from_secs(60))).await;
    let e = http(&url, |c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 1;
    });
    let input = texts(1);
    // the guard only keeps a broken timeout from hanging the suite
    let result = tokio::time::timeout(Duration::from_secs(30), e.embed(&input)).await;
    let err = result
        .expect("the embedder's own timeout should have fired")
        .unwrap_err();
    assert!(
        matches!(err, EmbedError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{err}"
    );
    assert_eq!(server.count(), 2, "a timeout is retried");
}

#[tokio::test]
async fn http_rejects_a_wrong_dimension() {
    let (server, url) = serve(Mode::Ok(5)).await;
    let e = http(&url, |c| c.dimensions = Some(8));
    assert_eq!(e.dim(), 8);
    let err = e.embed(&texts(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::DimensionMismatch {
                expected: 8,
                found: 5
            }
        ),
        "{err}"
    );
    assert_eq!(
        server.bodies()[0]["dimensions"],
        8,
        "the configured dimension is sent"
    );
    assert_eq!(server.count(), 1, "a wrong answer is not retried");
}

#[tokio::test]
async fn http_reports_an_unreachable_server() {
    // bind then drop: the port is closed
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let e = http(&format!("http://127.0.0.1:{port}"), |c| c.max_retries = 1);
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(matches!(err, EmbedError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
