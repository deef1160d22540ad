//! The hub's view of agents' minds ([`hearth_net::minds::Minds`]),
//! answered by `hearth-mind`'s [`Replies`]: the glue between the network
//! layer, which never thinks, and the minds, which never speak the wire
//! format. Touches nothing itself.

use hearth_db::game_time;
use hearth_mind::reply::{self, Answer, Replies};
use hearth_mind::service::MemoryService;
use hearth_net::minds::{AnswerAsk, Minds, PromptAsk, Reflected, Thought};
use hearth_protocol::ScoredMemory;
use tokio::sync::mpsc;

/// Memories recalled for a designer's `agent_prompt`.
const PROMPT_MEMORIES: usize = 10;

/// [`Replies`] as the hub asks for them.
#[derive(Debug)]
pub struct HubMinds {
    replies: Replies,
    /// For `reflection` events.
    memories: Option<MemoryService>,
}

impl HubMinds {
    pub fn new(replies: Replies, memories: Option<MemoryService>) -> Self {
        Self { replies, memories }
    }
}

impl Minds for HubMinds {
    fn keeps_memories(&self) -> bool {
        self.replies.keeps_memories()
    }

    fn answer(&self, ask: AnswerAsk) -> Thought<(String, bool)> {
        let AnswerAsk {
            agent,
            def,
            character,
            heard,
            activity,
            seed,
            now,
        } = ask;
        Box::pin(self.replies.answer(Answer {
            agent,
            def,
            character,
            heard,
            activity,
            seed,
            now,
        }))
    }

    fn memories(
        &self,
        slug: String,
        query: String,
        now: u64,
        k: usize,
    ) -> Thought<Result<Vec<ScoredMemory>, String>> {
        let replies = self.replies.clone();
        Box::pin(async move {
            let found = replies
                .recall(&slug, &query, now, k)
                .await
                .map_err(|e| e.to_string())?;
            Ok(found
                .into_iter()
                .map(|(s, m)| ScoredMemory {
                    id: m.id,
                    kind: m.kind.as_str().to_owned(),
                    content: m.content,
                    created: game_time::to_timestamp(m.created),
                    importance: m.importance,
                    score: s.total as f32,
                    recency: s.recency as f32,
                    importance_score: s.importance as f32,
                    relevance: s.relevance as f32,
                    emotion: (s.emotion != 0.0).then_some(s.emotion as f32),
                })
                .collect())
        })
    }

    fn prompt(&self, ask: PromptAsk) -> Thought<Result<(String, u32), String>> {
        let replies = self.replies.clone();
        Box::pin(async move {
            let found = replies
                .recall(&ask.def.file.id, &ask.query, ask.now, PROMPT_MEMORIES)
                .await
                .map_err(|e| e.to_string())?;
            let (prompt, tokens) = reply::inspection_prompt(
                &ask.def,
                &ask.inspection,
                &ask.names,
                &ask.location,
                &found,
                &ask.query,
                ask.now,
            );
            Ok((prompt, u32::try_from(tokens).unwrap_or(u32::MAX)))
        })
    }

    fn watch_reflections(&self) -> Option<mpsc::UnboundedReceiver<Reflected>> {
        let mut insights = self.memories.as_ref()?.watch_reflections();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(i) = insights.recv().await {
                let reflected = Reflected {
                    agent: i.agent,
                    text: i.text,
                };
                if tx.send(reflected).is_err() {
                    break;
                }
            }
        });
        Some(rx)
    }
}
