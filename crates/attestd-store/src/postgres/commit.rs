//! The write gate, the write statistics and group commit.
//!
//! Every writer holds the head lock until its `COMMIT` returns, fsync
//! included, so unbatched writes go at most one fsync at a time across all
//! replicas. [`Committer::grouped`] lets one replica's concurrent writes
//! share a transaction: a write joins a queue and wakes the store's flusher
//! task, which takes the queue (up to [`MAX_GROUP`] writes), commits it as
//! one batch ([`super::write::run`], a savepoint per write) and answers
//! each, until the queue is empty. An idle store commits a write at once;
//! a busy one commits together the writes that arrived during the last
//! commit. Challenge nonces go through a second queue and flusher of
//! their own (no head lock). Callers only wait for their answer, so one
//! that gives up takes neither its write nor the others' with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{oneshot, Notify, RwLock, RwLockReadGuard};

use super::queue::Queue;

use super::write::{self, Answer, Op};
use super::Pool;
use crate::{Result, StoreError, Write, WriteStats, Written};

/// Writes committed together at most: bounds a transaction's length (the
/// head lock is held that long) and its savepoints.
pub(super) const MAX_GROUP: usize = 64;

type Waiting = (Op, oneshot::Sender<Result<Answer>>);

/// Runs write transactions for one store.
pub(super) struct Committer {
    pool: Pool,
    /// Set by `close`; writers hold it shared while they run.
    closed: RwLock<bool>,
    commits: AtomicU64,
    writes: AtomicU64,
    /// Two lanes, each with its own flusher: writes under the head lock,
    /// and challenge nonces, which need no order with other writes. On one
    /// lane, nonces would wait for the head lock that every replica's
    /// writes queue on (measured with three replicas: the boot rate fell
    /// by half).
    lanes: [Queue<Op, Result<Answer>>; 2],
}

/// The lane of an op: 0 for writes under the head lock, 1 for nonces.
fn lane_of(op: &Op) -> usize {
    usize::from(!write::needs_head(op))
}

impl Committer {
    /// A committer and its flusher task (on the current runtime), which
    /// ends when the committer is dropped.
    pub(super) fn start(pool: Pool) -> Arc<Committer> {
        let c = Arc::new(Committer {
            pool,
            closed: RwLock::new(false),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            lanes: [Queue::new(), Queue::new()],
        });
        for (i, lane) in c.lanes.iter().enumerate() {
            tokio::spawn(flusher(Arc::downgrade(&c), i, lane.wake()));
        }
        c
    }

    /// Admission of a write: `Err(SHUTTING_DOWN)` once closed; otherwise a
    /// guard that `close` waits for.
    pub(super) async fn gate(&self) -> Result<RwLockReadGuard<'_, bool>> {
        let g = self.closed.read().await;
        if *g {
            return Err(shutting_down());
        }
        Ok(g)
    }

    /// Applies `ops` in one transaction, now.
    pub(super) async fn write(&self, ops: Vec<Op>) -> Vec<Result<Answer>> {
        let _open = match self.gate().await {
            Ok(g) => g,
            Err(_) => return ops.iter().map(|_| Err(shutting_down())).collect(),
        };
        let out = write::run(&self.pool, &ops).await;
        if out.committed {
            self.commits.fetch_add(1, Ordering::Relaxed);
            let ok = out.answers.iter().filter(|a| a.is_ok()).count();
            self.writes.fetch_add(ok as u64, Ordering::Relaxed);
        }
        out.answers
    }

    /// Applies one write, in a transaction shared with the writes that
    /// arrive while another transaction of this store is in flight.
    pub(super) async fn grouped(&self, w: Write) -> Result<Written> {
        match self.grouped_op(Op::Write(w)).await? {
            Answer::Written(w) => Ok(w),
            _ => Err(super::store::unexpected()),
        }
    }

    /// Applies one op in a shared transaction (see [`Committer::grouped`]).
    pub(super) async fn grouped_op(&self, op: Op) -> Result<Answer> {
        self.grouped_ops(vec![op])
            .await
            .pop()
            .unwrap_or_else(|| Err(super::store::unexpected()))
    }

    /// Applies ops in shared transactions, queued together in this order
    /// (so a lane's group takes them in order, up to [`MAX_GROUP`] at a
    /// time, with whatever other writes are queued); answers each as if
    /// alone.
    pub(super) async fn grouped_ops(&self, ops: Vec<Op>) -> Vec<Result<Answer>> {
        let mut by_lane: [Vec<(usize, Op)>; 2] = [Vec::new(), Vec::new()];
        let n = ops.len();
        for (i, op) in ops.into_iter().enumerate() {
            by_lane[lane_of(&op)].push((i, op));
        }
        let mut waiting = Vec::with_capacity(n);
        for (lane, ops) in by_lane.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            let (at, ops): (Vec<usize>, Vec<Op>) = ops.into_iter().unzip();
            waiting.extend(at.into_iter().zip(self.lanes[lane].push_all(ops)));
        }
        waiting.sort_by_key(|(i, _)| *i);
        let mut answers = Vec::with_capacity(n);
        for (_, rx) in waiting {
            answers.push(rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store stopped before this write was committed".into(),
                ))
            }));
        }
        answers
    }

    /// Up to [`MAX_GROUP`] queued ops of a lane, oldest first.
    fn take(&self, lane: usize) -> Vec<Waiting> {
        self.lanes[lane].take(MAX_GROUP)
    }

    /// Commits one group and answers its writes.
    async fn commit_group(&self, group: Vec<Waiting>) {
        let (ops, senders): (Vec<Op>, Vec<_>) = group.into_iter().unzip();
        let answers = self.write(ops).await;
        for (s, a) in senders.into_iter().zip(answers) {
            // The caller may have gone; its write stands.
            let _ = s.send(a);
        }
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    /// Waits for the writes in flight and refuses later ones.
    pub(super) async fn close(&self) {
        *self.closed.write().await = true;
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // The flusher wakes, finds the committer gone and ends.
        for lane in &self.lanes {
            lane.wake().notify_one();
        }
    }
}

/// Commits queued writes, group after group, whenever woken.
async fn flusher(committer: Weak<Committer>, lane: usize, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(c) = committer.upgrade() else {
            return;
        };
        loop {
            let group = c.take(lane);
            if group.is_empty() {
                break;
            }
            c.commit_group(group).await;
        }
    }
}

pub(super) fn shutting_down() -> StoreError {
    StoreError::Rejected(attestd_core::reject!(
        ShuttingDown,
        "the server is shutting down; retry"
    ))
}
