//! What the hub asks of agents' minds and of the content reloader, as
//! traits and plain requests: the network layer never thinks and never
//! reloads. The binary's wiring implements them over `hearth-mind` and its
//! reloader. Touches nothing.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use hearth_content::AgentDef;
use hearth_protocol::ScoredMemory;
use hearth_world::players::Inspection;

/// A reply being made, on whatever task awaits it.
pub type Thought<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An agent's answer to a character who spoke to it.
#[derive(Debug, Clone)]
pub struct AnswerAsk {
    pub agent: u32,
    pub def: AgentDef,
    pub character: String,
    pub heard: String,
    /// What the agent is doing ("bake bread", "free time").
    pub activity: String,
    /// A seed for the rule-based mind, new for each answer.
    pub seed: u64,
    /// Game seconds now.
    pub now: u64,
}

/// The prompt an agent's model would be asked now (`agent_prompt`).
#[derive(Debug, Clone)]
pub struct PromptAsk {
    pub def: AgentDef,
    /// What the world says the agent is doing, planning and feeling.
    pub inspection: Inspection,
    /// Every agent, for naming whom its relationships are with.
    pub names: std::sync::Arc<Vec<AgentDef>>,
    /// Where the agent is, by name (empty when nowhere).
    pub location: String,
    /// What someone says to it; empty for "what do you do next".
    pub query: String,
    pub now: u64,
}

/// What the hub needs of the agents' minds. Every method returns at once
/// with a future that owns what it needs, so the hub task never waits.
pub trait Minds: Send + Sync + 'static {
    /// Whether the world keeps memories (`agent_memories`, `agent_prompt`).
    fn keeps_memories(&self) -> bool;
    /// The agent's line, and whether it ends the talk.
    fn answer(&self, ask: AnswerAsk) -> Thought<(String, bool)>;
    /// Agent `slug`'s `k` best memories for `query`, scored term by term.
    fn memories(
        &self,
        slug: String,
        query: String,
        now: u64,
        k: usize,
    ) -> Thought<Result<Vec<ScoredMemory>, String>>;
    /// The prompt as text and its size in tokens.
    fn prompt(&self, ask: PromptAsk) -> Thought<Result<(String, u32), String>>;
    /// Reflections made from now on, as they are made (`reflection`
    /// events); `None` when the world keeps no memories.
    fn watch_reflections(&self) -> Option<mpsc::UnboundedReceiver<Reflected>>;
}

/// A reflection an agent just made.
#[derive(Debug, Clone, PartialEq)]
pub struct Reflected {
    pub agent: u32,
    pub text: String,
}

/// A `reload_content` from a client: who asked, and where the outcome goes
/// (`Err` with the problems, as designers read them).
#[derive(Debug)]
pub struct ReloadAsk {
    pub user: Option<String>,
    pub reply: oneshot::Sender<Result<(), String>>,
}
