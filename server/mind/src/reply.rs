//! Agents' replies to players and what a designer sees of an agent's
//! prompt, made off the world's thread: an answering agent recalls
//! memories for what was said, asks the world how it feels about the
//! speaker, then its model (when it has one) or its rule-based mind finds
//! the words. Touches the memory service (read-only), the agents' models
//! and the world's command channel (asks only); never the world's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::warn;

use crate::cognition::{PlayerLine, Thinker};
use crate::memory::{GameSeconds, Memory};
use crate::prompt::{self, PromptBudget, PromptInput, RelationshipSummary, ScoreTerms};
use crate::retrieval::Scored;
use crate::service::{MemoryService, ServiceError};
use hearth_content::AgentDef;
use hearth_world::mind::{AnswerContext, Mind};
use hearth_world::players::{Inspection, Who};
use hearth_world::{Command, Reply};

/// How long recall waits for the memory service.
const RECALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an answering agent waits to learn how it feels about the
/// speaker before answering as to a stranger.
const TIE_TIMEOUT: Duration = Duration::from_millis(500);
/// Memories an answering agent recalls.
const ANSWER_MEMORIES: usize = 3;
/// Lines of a player's talk kept for the next prompt.
const DIALOGUE_LINES: usize = 8;

/// The latest lines between each agent and character, for the agent's
/// model: (agent, character) → (speaker name, text), oldest first.
type Dialogues = Arc<Mutex<HashMap<(u32, String), Vec<(String, String)>>>>;

/// One agent's answer to a character, to be made.
#[derive(Debug, Clone)]
pub struct Answer {
    pub agent: u32,
    pub def: AgentDef,
    pub character: String,
    pub heard: String,
    /// What the agent is doing ("bake bread", "free time").
    pub activity: String,
    /// The rule-based mind's seed for this answer.
    pub seed: u64,
    pub now: GameSeconds,
}

/// Everything replies are made from; cheap to clone.
#[derive(Clone)]
pub struct Replies {
    memories: Option<MemoryService>,
    mind: Arc<dyn Mind>,
    thinker: Option<Thinker>,
    world: std::sync::mpsc::Sender<Command>,
    dialogues: Dialogues,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("memories", &self.memories.is_some())
            .field("thinker", &self.thinker.is_some())
            .finish_non_exhaustive()
    }
}

impl Replies {
    pub fn new(
        memories: Option<MemoryService>,
        mind: Arc<dyn Mind>,
        thinker: Option<Thinker>,
        world: std::sync::mpsc::Sender<Command>,
    ) -> Self {
        Self {
            memories,
            mind,
            thinker,
            world,
            dialogues: Dialogues::default(),
        }
    }

    /// Whether this world keeps memories (recall and prompts need them).
    pub fn keeps_memories(&self) -> bool {
        self.memories.is_some()
    }

    /// The `k` memories of agent `slug` that best match `query` at `now`.
    pub async fn recall(
        &self,
        slug: &str,
        query: &str,
        now: GameSeconds,
        k: usize,
    ) -> Result<Vec<(Scored, Memory)>, RecallError> {
        let memories = self.memories.clone().ok_or(RecallError::NoMemories)?;
        Ok(memories.retrieve(slug, query, now, k).await?)
    }

    /// The answer, and whether the agent's model ends the talk with it.
    /// The future holds what it needs, not `self`; the memory service is
    /// let go of before the model is asked, so a slow model never holds it
    /// open at shutdown.
    pub fn answer(
        &self,
        job: Answer,
    ) -> impl std::future::Future<Output = (String, bool)> + Send + 'static {
        let memories = self.memories.clone();
        let mind = self.mind.clone();
        let thinker = self.thinker.clone();
        let world = self.world.clone();
        let dialogues = self.dialogues.clone();
        async move {
            let recalled = recall_for(&job, memories).await;
            let key = (job.agent, job.character.clone());
            if let Some(t) = thinker {
                let tie = tie(&job, &world).await;
                let earlier: Vec<(String, String)> = dialogues
                    .lock()
                    .map(|d| d.get(&key).cloned().unwrap_or_default())
                    .unwrap_or_default();
                let line = PlayerLine {
                    character: &job.character,
                    heard: &job.heard,
                    activity: &job.activity,
                    location: None,
                    memories: &recalled,
                    dialogue: &earlier,
                    tie,
                };
                if let Some((text, end)) = t.answer(job.agent, &line, job.now).await {
                    if let Ok(mut d) = dialogues.lock() {
                        let lines = d.entry(key).or_default();
                        lines.push((job.character.clone(), job.heard.clone()));
                        lines.push((job.def.file.name.clone(), text.clone()));
                        let excess = lines.len().saturating_sub(DIALOGUE_LINES);
                        lines.drain(..excess);
                    }
                    return (text, end);
                }
            }
            let text = mind.answer(
                &job.def,
                &AnswerContext {
                    speaker: &job.character,
                    heard: &job.heard,
                    activity: &job.activity,
                    memories: &recalled,
                    seed: job.seed,
                },
            );
            (text, false)
        }
    }
}

/// Why memories could not be recalled.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("this server keeps no memories")]
    NoMemories,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Asks the world what agent `agent` is doing, planning and feeling; it
/// answers during its next tick. `None` when the world has stopped.
pub fn inspect(
    world: &std::sync::mpsc::Sender<Command>,
    agent: u32,
) -> Option<oneshot::Receiver<Inspection>> {
    let (tx, rx) = oneshot::channel();
    let reply = Reply::new(move |inspection| {
        let _ = tx.send(inspection);
    });
    world.send(Command::Inspect { agent, reply }).ok()?;
    Some(rx)
}

/// How the agent feels about the character (affection, trust), asked of
/// the world; `None` for a stranger or when the world is slow.
async fn tie(job: &Answer, world: &std::sync::mpsc::Sender<Command>) -> Option<(f32, f32)> {
    let rx = inspect(world, job.agent)?;
    let inspection = tokio::time::timeout(TIE_TIMEOUT, rx).await.ok()?.ok()?;
    inspection
        .relationships
        .into_iter()
        .find_map(|r| match r.with {
            Who::Character(name) if name == job.character => Some((r.affection, r.trust)),
            _ => None,
        })
}

async fn recall_for(job: &Answer, memories: Option<MemoryService>) -> Vec<String> {
    let Some(m) = memories else {
        return Vec::new();
    };
    match tokio::time::timeout(
        RECALL_TIMEOUT,
        m.retrieve(&job.def.file.id, &job.heard, job.now, ANSWER_MEMORIES),
    )
    .await
    {
        Ok(Ok(found)) => found.into_iter().map(|(_, m)| m.content).collect(),
        Ok(Err(e)) => {
            warn!(agent = %job.def.file.id, error = %e, "no memories for an answer");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// What an agent's model would be asked now, for `query` (what someone
/// says to it; empty for "what next"): the agent as the world inspected
/// it, at `location`, with the memories `found` for the query. Returns the
/// prompt as text and its size in tokens.
pub fn inspection_prompt(
    def: &AgentDef,
    inspection: &Inspection,
    names: &[AgentDef],
    location: &str,
    found: &[(Scored, Memory)],
    query: &str,
    now: GameSeconds,
) -> (String, usize) {
    let terms: Vec<ScoreTerms> = found
        .iter()
        .map(|(s, _)| ScoreTerms {
            recency: s.recency as f32,
            importance: s.importance as f32,
            relevance: s.relevance as f32,
            emotion: s.emotion as f32,
            total: s.total as f32,
        })
        .collect();
    let recalled: Vec<(&Memory, ScoreTerms)> = found.iter().map(|(_, m)| m).zip(terms).collect();
    let relationships: Vec<RelationshipSummary> = inspection
        .relationships
        .iter()
        .map(|r| RelationshipSummary {
            name: match &r.with {
                Who::Agent(a) => names
                    .get(*a as usize)
                    .map_or_else(|| format!("agent {a}"), |d| d.file.name.clone()),
                Who::Character(c) => c.clone(),
            },
            kind: r.kind.clone(),
            affection: r.affection,
            trust: r.trust,
            note: String::new(),
        })
        .collect();
    let plan: Vec<String> = inspection
        .plan
        .as_ref()
        .map(|(_, steps, current)| steps.iter().skip(*current).cloned().collect())
        .unwrap_or_default();
    let task = if query.is_empty() {
        "What do you do next?".to_owned()
    } else {
        format!("Someone says to you: \"{query}\". What do you say?")
    };
    let input = PromptInput {
        activity: &inspection.activity,
        location,
        plan: &plan,
        relationships: &relationships,
        memories: &recalled,
        task: &task,
        ..PromptInput::new(def, now)
    };
    let p = prompt::assemble(&input, &PromptBudget::default());
    let tokens: usize = p.sections.iter().map(|s| s.tokens).sum();
    (
        format!("--- system ---\n{}\n--- user ---\n{}", p.system, p.user),
        tokens,
    )
}
