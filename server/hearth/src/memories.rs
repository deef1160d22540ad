//! `hearth memories`: operator commands on a world's stored memories —
//! `query` ranks an agent's memories for a text exactly as retrieval does
//! (with `--explain`, every term), `prompt` assembles the prompt context an
//! agent would be given for it (memories and lore, with their scores), and
//! `reembed` re-embeds every memory and lore chunk with the configured
//! embedder, switching the world's model. Touches the database through
//! `hearth-db` and the embedder.

use std::io::Write;

use hearth_db::{DbError, Pool, agents, game_time, memories, worlds};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use hearth_content::AgentDef;
use hearth_mind::embed::{self, EmbedError, Embedder};
use hearth_mind::memory::{Memory, MemoryKind};
use hearth_mind::prompt::{
    self, LoreSnippet, PromptBudget, PromptInput, RelationshipSummary, ScoreTerms, game_time_label,
};
use hearth_mind::retrieval::{Query, RetrievalParams};

#[derive(Debug, thiserror::Error)]
pub enum MemoriesError {
    #[error("no world '{0}' in the database (a world is created by `hearth serve --world {0}`)")]
    NoWorld(String),
    #[error("no agent '{agent}' in world '{world}'")]
    NoAgent { world: String, agent: String },
    #[error(
        "world '{world}' was embedded with {stored} ({stored_dim} dimensions) but the configured \
         embedder is {configured} ({configured_dim}); pass the same embedder, or switch the world \
         with `hearth memories reembed --world {world}`"
    )]
    ModelMismatch {
        world: String,
        stored: String,
        stored_dim: i32,
        configured: String,
        configured_dim: usize,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("embedder: {0}")]
    Embed(#[from] EmbedError),
    #[error("lore: {0}")]
    Lore(#[from] hearth_mind::lore_sync::LoreSyncError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// What `hearth memories query` prints.
#[derive(Debug, Clone)]
pub struct QueryArgs {
    pub world: String,
    pub agent: String,
    pub text: String,
    pub k: usize,
    pub explain: bool,
}

async fn world(pool: &Pool, slug: &str) -> Result<worlds::World, MemoriesError> {
    let client = pool.get().await.map_err(DbError::from)?;
    worlds::get(&client, slug)
        .await?
        .ok_or_else(|| MemoriesError::NoWorld(slug.to_owned()))
}

/// Ranks the stored memories of one agent for a text and prints them, best
/// first: rank, total, kind, when, and the text; with `explain`, each
/// normalised term and the raw importance and similarity.
/// A ranked recall from the database: the world, the agent's "now", the
/// query's vector and the scored rows, best first.
struct Recall {
    world: worlds::World,
    /// Game seconds.
    now: u64,
    vector: Option<Vec<f32>>,
    rows: Vec<memories::ScoredRow>,
}

async fn recall(
    pool: &Pool,
    embedder: &dyn Embedder,
    args: &QueryArgs,
) -> Result<Recall, MemoriesError> {
    let w = world(pool, &args.world).await?;
    let dim = embed::resolve_dim(embedder).await?;
    if w.embedding_model != embedder.model() || usize::try_from(w.embedding_dim) != Ok(dim) {
        return Err(MemoriesError::ModelMismatch {
            world: w.slug,
            stored: w.embedding_model,
            stored_dim: w.embedding_dim,
            configured: embedder.model().to_owned(),
            configured_dim: dim,
        });
    }
    let client = pool.get().await.map_err(DbError::from)?;
    let agent_id = agents::id_of(&client, w.id, &args.agent)
        .await?
        .ok_or_else(|| MemoriesError::NoAgent {
            world: w.slug.clone(),
            agent: args.agent.clone(),
        })?;
    // "now" is the agent's latest moment on record, so recency reads as it
    // did in the running world
    let now = agents::last_memory_time(&client, agent_id)
        .await?
        .unwrap_or_else(|| game_time::to_timestamp(0));
    let vector = embedder.embed(std::slice::from_ref(&args.text)).await?;
    let params = RetrievalParams::default();
    let scoring = Query::new(&params, None, game_time::from_timestamp(now), args.k).db_scoring();
    let rows = memories::retrieve_exact(
        &client,
        agent_id,
        vector.first().map(Vec::as_slice),
        now,
        &scoring,
        args.k,
    )
    .await?;
    Ok(Recall {
        world: w,
        now: game_time::from_timestamp(now),
        vector: vector.into_iter().next(),
        rows,
    })
}

/// Ranks the stored memories of one agent for a text and prints them, best
/// first: rank, total, kind, when, and the text; with `explain`, each
/// normalised term and the raw importance and similarity.
pub async fn query(
    pool: &Pool,
    embedder: &dyn Embedder,
    args: &QueryArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), MemoriesError> {
    let Recall { now, rows, .. } = recall(pool, embedder, args).await?;
    let params = RetrievalParams::default();
    writeln!(
        out,
        "{} memories of {} for \"{}\" (now {}):",
        rows.len(),
        args.agent,
        args.text,
        game_time_label(now)
    )?;
    for (i, r) in rows.iter().enumerate() {
        writeln!(
            out,
            "{:>3}. {:.3}  #{} {} ({})  {}",
            i + 1,
            r.total,
            r.id,
            r.kind,
            game_time_label(game_time::from_timestamp(r.created_game_time)),
            r.content
        )?;
        if args.explain {
            writeln!(
                out,
                "       recency {:.3} × {}  importance {:.3} × {} (raw {})  relevance {:.3} × {} (cosine {})  emotion {:.3} × {}",
                r.recency,
                params.weights.recency,
                r.importance,
                params.weights.importance,
                r.raw_importance,
                r.relevance,
                params.weights.relevance,
                r.similarity
                    .map_or_else(|| "none".to_owned(), |s| format!("{s:.3}")),
                r.emotion,
                params.weights.emotion
            )?;
        }
    }
    Ok(())
}

/// Prints the prompt context agent `args.agent` would be given about
/// `args.text`: its identity from `def`, its relationships as its file sets
/// them, the top memories from the database and the best lore chunks, within
/// `max_tokens`; then a breakdown of what was included and dropped, with
/// every memory's scores.
pub async fn prompt(
    pool: &Pool,
    embedder: &dyn Embedder,
    args: &QueryArgs,
    def: &AgentDef,
    others: &[AgentDef],
    max_tokens: usize,
    out: &mut (dyn Write + Send),
) -> Result<(), MemoriesError> {
    let Recall {
        world: w,
        now,
        vector,
        rows,
    } = recall(pool, embedder, args).await?;
    let memories: Vec<(Memory, ScoreTerms)> = rows
        .iter()
        .map(|r| {
            let kind = MemoryKind::parse(&r.kind).unwrap_or(MemoryKind::Observation);
            let memory = Memory::new(
                u64::try_from(r.id).unwrap_or(0),
                kind,
                r.content.clone(),
                u8::try_from(r.raw_importance).unwrap_or(1),
                game_time::from_timestamp(r.created_game_time),
            );
            let terms = ScoreTerms {
                recency: r.recency as f32,
                importance: r.importance as f32,
                relevance: r.relevance as f32,
                emotion: r.emotion as f32,
                total: r.total as f32,
            };
            (memory, terms)
        })
        .collect();
    let borrowed: Vec<(&Memory, ScoreTerms)> = memories.iter().map(|(m, t)| (m, *t)).collect();
    let mut client = pool.get().await.map_err(DbError::from)?;
    let hits = hearth_db::lore::search_hybrid(
        &mut client,
        w.id,
        &args.text,
        vector.as_deref(),
        w.embedding_dim,
        5,
    )
    .await?;
    let lore: Vec<LoreSnippet> = hits.iter().map(LoreSnippet::from).collect();
    let relationships: Vec<RelationshipSummary> = def
        .file
        .relationships
        .iter()
        .map(|r| RelationshipSummary {
            name: others
                .iter()
                .find(|o| o.file.id == r.target)
                .map_or_else(|| r.target.clone(), |o| o.file.name.clone()),
            kind: r.kind.clone(),
            affection: r.affection,
            trust: r.trust,
            note: String::new(),
        })
        .collect();
    let task = format!("Someone says to you: \"{}\". What do you say?", args.text);
    let input = PromptInput {
        relationships: &relationships,
        memories: &borrowed,
        lore: &lore,
        task: &task,
        ..PromptInput::new(def, now)
    };
    let budget = PromptBudget {
        max_tokens,
        ..PromptBudget::default()
    };
    let p = prompt::assemble(&input, &budget);
    writeln!(
        out,
        "--- system ---\n{}\n--- user ---\n{}\n---",
        p.system, p.user
    )?;
    write!(out, "{}", p.explain())?;
    Ok(())
}

/// Re-embeds every memory and lore chunk of world `slug` with `embedder`.
/// When the embedder's model or dimension differs from the world's, the
/// world is switched first (its old vectors cleared in one transaction).
/// Returns (memories, lore chunks) embedded.
pub async fn reembed(
    pool: &Pool,
    embedder: &dyn Embedder,
    slug: &str,
    batch: usize,
) -> Result<(u64, u64), MemoriesError> {
    let w = world(pool, slug).await?;
    let dim = embed::resolve_dim(embedder).await?;
    let dim_i32 = i32::try_from(dim).unwrap_or(i32::MAX);
    let mut client = pool.get().await.map_err(DbError::from)?;
    if w.embedding_model != embedder.model() || w.embedding_dim != dim_i32 {
        info!(
            world = %w.slug,
            from = %w.embedding_model,
            from_dim = w.embedding_dim,
            to = embedder.model(),
            to_dim = dim,
            "switching the world's embedding model"
        );
        worlds::switch_model(&mut client, w.id, embedder.model(), dim_i32).await?;
    } else {
        hearth_db::lore::clear_embeddings(&client, w.id).await?;
    }
    let total = memories::count(&client, w.id).await?;
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} re-embedding [{bar:40}] {pos}/{len} memories, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let batch = batch.clamp(1, 4096);
    let mut after = None;
    let mut done = 0u64;
    loop {
        let page = memories::scan_for_reembed(&client, w.id, after, batch as i64).await?;
        let Some(&(a, i, _)) = page.last() else {
            break;
        };
        after = Some((a, i));
        let texts: Vec<String> = page.iter().map(|(_, _, t)| t.clone()).collect();
        let vectors = embedder.embed(&texts).await?;
        let rows: Vec<(i64, i64, Vec<f32>)> = page
            .into_iter()
            .zip(vectors)
            .map(|((a, i, _), v)| (a, i, v))
            .collect();
        done += memories::set_embeddings(&client, w.id, dim_i32, &rows).await?;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    let lore = hearth_mind::lore_sync::embed_pending(pool, w.id, embedder).await?;
    Ok((done, lore))
}
