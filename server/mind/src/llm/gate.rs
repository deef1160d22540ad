//! What keeps a world's model traffic fair and affordable: a concurrency gate
//! that lets waiting requests in by priority and then age (so 10k agents
//! queue instead of flooding the server, and a player's conversation goes
//! before a memory's rating), a requests-per-minute bucket, and a token
//! budget per game day. In-memory state only; touches nothing else.
//!
//! A waiting request's priority grows by [`AGING_PER_SECOND`] for every
//! second it has waited, so a steady stream of urgent requests cannot
//! starve the rest: a rating (40) that has waited 12 s goes before a fresh
//! line (150).
//!
//! Written by hand: tokio's semaphore admits in arrival order only, and the
//! rate-limit crates wait without a deadline or a priority; here every wait
//! is bounded by the caller's deadline and the queue is ordered by aged
//! priority.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Admits at most `limit` holders at once; the rest wait in a heap, highest
/// priority first, then oldest.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
}

/// Priority a waiting request gains per second waited.
pub const AGING_PER_SECOND: f64 = 10.0;

#[derive(Debug)]
struct GateState {
    free: usize,
    /// In arrival order.
    waiting: Vec<Waiter>,
    seq: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: u8,
    seq: u64,
    since: Instant,
    tx: oneshot::Sender<()>,
}

impl Waiter {
    /// Its priority with what it has gained by waiting.
    fn aged(&self, now: Instant) -> f64 {
        f64::from(self.priority) + now.duration_since(self.since).as_secs_f64() * AGING_PER_SECOND
    }
}

/// A place through the gate; the next waiter gets it when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A wait in the queue. If it is abandoned (the caller's deadline passed)
/// just as its turn came, the place is passed on rather than lost.
struct Waiting {
    rx: oneshot::Receiver<()>,
    gate: Arc<Gate>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.done && self.rx.try_recv().is_ok() {
            self.gate.release();
        }
    }
}

impl Gate {
    pub fn new(limit: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                free: limit.max(1),
                waiting: Vec::new(),
                seq: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // a panic while holding this lock cannot leave it inconsistent:
        // every update is a single field change
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a place, by `priority` (higher first) then age, until
    /// `deadline`; `None` when the deadline passed first.
    pub async fn acquire(self: &Arc<Self>, priority: u8, deadline: Instant) -> Option<Permit> {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                return Some(Permit { gate: self.clone() });
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            st.waiting.push(Waiter {
                priority,
                seq,
                since: Instant::now(),
                tx,
            });
            rx
        };
        let mut waiting = Waiting {
            rx,
            gate: self.clone(),
            done: false,
        };
        match tokio::time::timeout_at(deadline, &mut waiting.rx).await {
            Ok(Ok(())) => {
                waiting.done = true;
                Some(Permit { gate: self.clone() })
            }
            _ => None,
        }
    }

    /// Hands a freed place to the waiter with the highest aged priority
    /// (the oldest among equals) still waiting, or keeps it.
    fn release(&self) {
        let mut st = self.lock();
        let now = Instant::now();
        // those who gave up leave the queue
        st.waiting.retain(|w| !w.tx.is_closed());
        while !st.waiting.is_empty() {
            let best = st
                .waiting
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    a.aged(now)
                        .total_cmp(&b.aged(now))
                        .then_with(|| b.seq.cmp(&a.seq))
                })
                .map_or(0, |(i, _)| i);
            // keep arrival order for the rest
            let w = st.waiting.remove(best);
            if w.tx.send(()).is_ok() {
                return;
            }
        }
        st.free += 1;
    }

    /// Requests waiting for a place.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// A token bucket of `per_minute` requests whose burst is one second's
/// worth (at least one request), so a burst stays short.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn per_minute(n: u32) -> RateLimit {
        let per_second = f64::from(n.max(1)) / 60.0;
        let burst = per_second.max(1.0);
        RateLimit {
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Reserves one request and says how long to wait before sending it;
    /// `None` (nothing reserved) when that wait would end after `deadline`.
    pub fn reserve(&self, deadline: Instant) -> Option<Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *st;
        let refilled =
            (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
        let wait = if refilled >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - refilled) / self.per_second)
        };
        if now + wait > deadline {
            *st = (refilled, now);
            return None;
        }
        *st = (refilled - 1.0, now);
        Some(wait)
    }
}

/// Tokens spent per game day, against a budget.
#[derive(Debug)]
pub struct Budget {
    per_day: u64,
    state: Mutex<(u64, u64)>,
}

impl Budget {
    pub fn per_game_day(tokens: u64) -> Budget {
        Budget {
            per_day: tokens,
            state: Mutex::new((0, 0)),
        }
    }

    /// Whether game day `day` has tokens left (a budget of 0 allows none).
    pub fn allows(&self, day: u64) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.per_day > 0 && (day > st.0 || st.1 < self.per_day)
    }

    /// Counts `tokens` spent on game day `day`. A late answer to a request
    /// of an earlier day counts against the current day (it never resets
    /// the count).
    pub fn spend(&self, day: u64, tokens: u64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if day > st.0 {
            *st = (day, 0);
        }
        st.1 = st.1.saturating_add(tokens);
    }

    /// (game day, tokens spent on it).
    pub fn spent(&self) -> (u64, u64) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_in_by_priority_then_age() {
        let gate = Gate::new(1);
        let far = Instant::now() + Duration::from_secs(10);
        let first = gate.acquire(0, far).await.expect("free place");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("low-old", 1u8), ("high", 9), ("low-new", 1), ("mid", 5)] {
            let (g, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = g.acquire(priority, far).await.expect("admitted");
                order.lock().expect("lock").push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(p);
            }));
            // queue them in this order
            while gate.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            *order.lock().expect("lock"),
            vec!["high", "mid", "low-old", "low-new"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_ages_a_low_priority_ahead_of_fresh_urgent_ones() {
        let gate = Gate::new(1);
        let far = Instant::now() + Duration::from_secs(60);
        let held = gate.acquire(0, far).await.expect("free place");
        let order = Arc::new(Mutex::new(Vec::new()));
        let (g, o) = (gate.clone(), order.clone());
        let rating = tokio::spawn(async move {
            let _p = g.acquire(40, far).await.expect("admitted");
            o.lock().expect("lock").push("rating");
        });
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        // 12 s later (40 + 120 > 150) a line arrives
        tokio::time::advance(Duration::from_secs(12)).await;
        let (g, o) = (gate.clone(), order.clone());
        let line = tokio::spawn(async move {
            let _p = g.acquire(150, far).await.expect("admitted");
            o.lock().expect("lock").push("line");
        });
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        rating.await.expect("rating");
        line.await.expect("line");
        assert_eq!(*order.lock().expect("lock"), vec!["rating", "line"]);
    }

    #[tokio::test]
    async fn a_waiter_past_its_deadline_leaves_and_loses_no_place() {
        let gate = Gate::new(1);
        let held = gate
            .acquire(0, Instant::now() + Duration::from_secs(1))
            .await
            .expect("free");
        let late = gate
            .acquire(9, Instant::now() + Duration::from_millis(20))
            .await;
        assert!(late.is_none());
        drop(held);
        // the place came back: two sequential acquisitions succeed at once
        let soon = Instant::now() + Duration::from_millis(50);
        let a = gate.acquire(0, soon).await.expect("place back");
        drop(a);
        assert!(gate.acquire(0, soon).await.is_some());
    }

    #[tokio::test]
    async fn the_rate_limit_spaces_requests_and_refuses_past_the_deadline() {
        let limit = RateLimit::per_minute(120); // 2 per second, burst 2
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(limit.reserve(far), Some(Duration::ZERO));
        assert_eq!(limit.reserve(far), Some(Duration::ZERO));
        let wait = limit.reserve(far).expect("within 5 s");
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
        assert_eq!(
            limit.reserve(Instant::now() + Duration::from_millis(10)),
            None
        );
    }

    #[test]
    fn the_budget_resets_each_game_day() {
        let b = Budget::per_game_day(100);
        assert!(b.allows(0));
        b.spend(0, 60);
        assert!(b.allows(0));
        b.spend(0, 60);
        assert!(!b.allows(0));
        assert!(b.allows(1));
        b.spend(1, 10);
        assert_eq!(b.spent(), (1, 10));
        // a late answer from day 0 neither resets day 1 nor is forgotten
        b.spend(0, 95);
        assert_eq!(b.spent(), (1, 105));
        assert!(!b.allows(1));
        let none = Budget::per_game_day(0);
        assert!(!none.allows(0) && !none.allows(5));
    }
}
