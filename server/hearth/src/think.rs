//! What the world wants of agents' language models, asked off the world's
//! thread: the world's tick hands its `LineWanted`/`PlanWanted` events and
//! what agents notice and do to [`ModelCalls`] (never waiting), and a task
//! asks each model on a task of its own and sends the answers back to the
//! world as commands. Touches the tick's events, the agents' models and the
//! world's command channel.

use std::sync::mpsc::Sender;

use hearth_mind::cognition::Thinker;
use hearth_world::runner::TickOutput;
use hearth_world::schedule::ActivityLabel;
use hearth_world::{Command, WorldEvent};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The models' part of each tick (see [`crate::fanout`]).
#[derive(Debug)]
pub struct ModelCalls {
    thinker: Thinker,
    wants: UnboundedSender<(u64, Want)>,
}

/// What [`ModelCalls`] collects, for [`spawn`] once the world runs.
#[derive(Debug)]
pub struct Wanted(UnboundedReceiver<(u64, Want)>);

impl ModelCalls {
    pub fn new(thinker: Thinker) -> (Self, Wanted) {
        let (wants, wanted) = unbounded_channel();
        (Self { thinker, wants }, Wanted(wanted))
    }

    /// Takes the tick's wants out of its events (they concern nobody else)
    /// and passes on what agents notice and do; hands reloaded content to
    /// the models.
    pub fn tick(&self, out: &mut TickOutput) {
        for (_, e) in &out.events {
            if let WorldEvent::ContentReloaded(r) = e {
                self.thinker.set_content(r.agents.clone(), &r.map);
            }
        }
        let now = out.game_seconds;
        out.events.retain(|(_, e)| match e {
            WorldEvent::LineWanted(w) => {
                let _ = self.wants.send((now, Want::Line((**w).clone())));
                false
            }
            WorldEvent::PlanWanted(w) => {
                let _ = self.wants.send((now, Want::Plan((**w).clone())));
                false
            }
            WorldEvent::Perceived {
                agent,
                other,
                activity,
                ..
            } => {
                let _ = self.wants.send((
                    now,
                    Want::Seen {
                        agent: *agent,
                        other: *other,
                        activity: activity.clone(),
                    },
                ));
                true
            }
            WorldEvent::ActivityChanged {
                agent, activity, ..
            } => {
                let _ = self.wants.send((
                    now,
                    Want::Doing {
                        agent: *agent,
                        activity: activity.clone(),
                    },
                ));
                true
            }
            _ => true,
        });
    }
}

/// Starts asking the models what `wanted` collects, answering `world`.
pub fn spawn(wanted: Wanted, thinker: Thinker, world: Sender<Command>) {
    tokio::spawn(answer_wants(wanted.0, thinker, world));
}

/// What the world wants of agents' models, or what they need to know.
#[derive(Debug)]
pub(crate) enum Want {
    Line(hearth_world::events::LineWanted),
    Plan(hearth_world::events::PlanWanted),
    /// `agent` noticed `other` doing `activity`.
    Seen {
        agent: u32,
        other: u32,
        activity: String,
    },
    /// `agent` is now doing `activity`.
    Doing {
        agent: u32,
        activity: String,
    },
}

/// Game seconds between two reactions of one agent.
const REACT_COOLDOWN: u64 = 3_600;

/// Asks agents' models what the world wants (each on a task of its own)
/// and hands the answers (or failures) back to the world. Reactions are
/// asked at most once per agent per game hour, about something the agent
/// has not asked about that day, never about someone idle or asleep.
async fn answer_wants(
    mut wanted: UnboundedReceiver<(u64, Want)>,
    thinker: Thinker,
    world: Sender<Command>,
) {
    let mut doing: std::collections::HashMap<u32, String> = Default::default();
    let mut last_react: std::collections::HashMap<u32, u64> = Default::default();
    let mut asked: std::collections::HashSet<(u32, u32, String, u64)> = Default::default();
    while let Some((now, want)) = wanted.recv().await {
        let (t, w) = (thinker.clone(), world.clone());
        match want {
            Want::Line(line) => {
                tokio::spawn(async move {
                    let answer = t.line(&line, now).await;
                    let _ = w.send(answer);
                });
            }
            Want::Plan(plan) => {
                tokio::spawn(async move {
                    if let Some(answer) = t.plan(&plan, now).await {
                        let _ = w.send(answer);
                    }
                });
            }
            Want::Doing { agent, activity } => {
                doing.insert(agent, activity);
            }
            Want::Seen {
                agent,
                other,
                activity,
            } => {
                if !thinker.llm().thinks(Some(agent))
                    || hearth_world::schedule::is_sleep(&activity)
                    || ActivityLabel::parse(&activity).is_unoccupied()
                    || last_react
                        .get(&agent)
                        .is_some_and(|&at| now < at + REACT_COOLDOWN)
                {
                    continue;
                }
                let day = now / 86_400;
                if !asked.insert((agent, other, activity.clone(), day)) {
                    continue;
                }
                if asked.len() > 100_000 {
                    asked.retain(|k| k.3 == day);
                }
                last_react.insert(agent, now);
                let own = doing
                    .get(&agent)
                    .cloned()
                    .unwrap_or_else(|| "my day".to_owned());
                let name = thinker
                    .defs()
                    .get(other as usize)
                    .map_or_else(|| "someone".to_owned(), |d| d.file.name.clone());
                tokio::spawn(async move {
                    let seen = format!("{name} is busy with: {activity}.");
                    if let Some((action, minutes)) = t.react(agent, &own, &seen, now).await {
                        let _ = w.send(Command::React {
                            agent,
                            action,
                            minutes,
                        });
                    }
                });
            }
        }
    }
}
