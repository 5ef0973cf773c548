//! A queue of requests waiting for a task that serves them in batches:
//! write groups ([`super::commit`]) and context reads ([`super::context`]).
//! A caller pushes its request with the sender of its answer and wakes the
//! task; the task takes up to a batch's worth, oldest first, whenever woken.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

/// Requests of type `R` waiting for answers of type `A`.
pub(super) struct Queue<R, A> {
    items: Mutex<Vec<(R, oneshot::Sender<A>)>>,
    /// Wakes a serving task (a wake-up while all are busy is kept, not lost).
    wake: Arc<Notify>,
}

impl<R, A> Queue<R, A> {
    pub(super) fn new() -> Queue<R, A> {
        Queue {
            items: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// What a serving task waits on.
    pub(super) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Queues `requests` together, in order, and wakes a serving task;
    /// returns where each answer will come.
    pub(super) fn push_all(
        &self,
        requests: impl IntoIterator<Item = R>,
    ) -> Vec<oneshot::Receiver<A>> {
        let mut q = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let mut answers = Vec::new();
        for r in requests {
            let (tx, rx) = oneshot::channel();
            q.push((r, tx));
            answers.push(rx);
        }
        drop(q);
        self.wake.notify_one();
        answers
    }

    /// Up to `max` queued requests, oldest first.
    pub(super) fn take(&self, max: usize) -> Vec<(R, oneshot::Sender<A>)> {
        let mut q = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}
