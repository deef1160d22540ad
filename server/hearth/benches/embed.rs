//! Embedding throughput: all-MiniLM-L6-v2 in process against the hashed
//! fallback (the baseline, measured in the same run), on one batch of 64
//! short village sentences.
//!
//! `cargo bench -p hearth --bench embed` (criterion). Needs the model files
//! (`bash docker/provision.sh`); without them only the hashed embedder is
//! measured, with a warning. The ratio is what BENCHMARKS.md records.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hearth_mind::embed::{HashedEmbedder, MiniLmEmbedder, default_model_dir};

const SUBJECTS: [&str; 8] = [
    "Maria",
    "Tom",
    "Elena",
    "Jonas",
    "the baker",
    "Grandma Rosa",
    "the children",
    "Pedro",
];
const DEEDS: [&str; 8] = [
    "baked rye bread before sunrise",
    "fixed the wheel of the miller's cart",
    "sang folk songs at the tavern",
    "caught trout in the river",
    "argued about the price of flour",
    "told the story of the great flood",
    "chased a goat across the square",
    "paid the tax collector in silver",
];

fn batch() -> Vec<String> {
    SUBJECTS
        .iter()
        .flat_map(|s| DEEDS.iter().map(move |d| format!("{s} {d}.")))
        .collect()
}

fn model_dir() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.hearth"));
    default_model_dir(&home)
}

fn bench(c: &mut Criterion) {
    let texts = batch();
    let mut group = c.benchmark_group("embed_64");
    group.throughput(Throughput::Elements(texts.len() as u64));

    let hashed = HashedEmbedder::new();
    group.bench_function("hashed", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| hashed.embed_one(black_box(t)))
                .collect::<Vec<_>>()
        })
    });

    match MiniLmEmbedder::load(&model_dir()) {
        Ok(minilm) => {
            let minilm = minilm.with_batch_size(texts.len());
            group.sample_size(20);
            group.bench_function("minilm", |b| {
                b.iter(|| minilm.embed_blocking(black_box(&texts)))
            });
        }
        Err(e) => eprintln!("warning: MiniLM not measured: {e}"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
