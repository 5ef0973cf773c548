//! Group commit for the sled backend: one flusher thread, many waiters.
//!
//! sled makes a transaction durable only at the next `flush`, and a flush
//! costs an fsync. So writes are grouped: the hot writes (evidence, station
//! records, re-appraisals, release decisions) are handed to the flusher,
//! which applies every write of the group with one transaction per
//! [`MAX_WRITES_PER_TRANSACTION`] and then flushes once; other writes are
//! applied by their caller and then wait for a flush that *began after*
//! them. Either way a caller returns only once its write is on disk: the
//! store's contract.
//!
//! Writers arriving during a flush share the next one. And when a flush is
//! due while other writes are announced but not yet submitted
//! ([`crate::Store::announce`]: requests still verifying), the flusher
//! lingers for them, at most `max_wait`: under load one flush then serves
//! many acknowledgements, while a lone writer is never delayed.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attestd_core::{Reason, Rejection};
use tokio::sync::oneshot;

use super::engine::Engine;
use crate::{Announcement, StoreError, Write, WriteStats, Written};

/// Answered with the flush's outcome: on failure, its cause.
type Waiter = oneshot::Sender<Result<(), String>>;
type Reply = oneshot::Sender<Vec<Result<Written, StoreError>>>;

#[derive(Default)]
struct State {
    waiters: Vec<Waiter>,
    /// Writes to apply before the next flush, each group with its reply.
    writes: Vec<(Vec<Write>, Reply)>,
    /// Writes announced that were not yet submitted.
    in_flight: usize,
    closing: bool,
    /// Set by the first failed flush, for good: see [`Committer::failure`].
    failed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    commits: AtomicU64,
    written: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the flusher. [`Committer::shutdown`] flushes once more and joins it.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(super) fn shutting_down() -> StoreError {
    StoreError::Rejected(Rejection::new(
        Reason::ShuttingDown,
        "the server is shutting down; retry",
    ))
}

fn failed(why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the store stopped taking writes ({why}); attestd must be restarted"
    ))
}

/// A write whose flush failed (`cause`: the I/O error), or whose answer
/// was lost with the flusher.
fn not_durable(cause: Option<&str>) -> StoreError {
    StoreError::Unavailable(match cause {
        Some(c) => format!("the write could not be made durable ({c}); retry"),
        None => "the write could not be made durable; retry".into(),
    })
}

/// Withdraws an announcement when dropped.
struct Announced(Arc<Shared>);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.wake.notify_one();
    }
}

impl Committer {
    /// Starts the flusher thread. `max_wait` bounds how long a flush waits
    /// for announced writes. Fails (`Unavailable`) if the system cannot
    /// start a thread.
    pub(crate) fn start(engine: Arc<Engine>, max_wait: Duration) -> Result<Committer, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            commits: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("attestd-flusher".into())
            .spawn(move || flusher(s, engine, max_wait))
            .map_err(|e| {
                StoreError::Unavailable(format!("the flusher thread could not start: {e}"))
            })?;
        Ok(Committer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn announce(&self) -> Announcement {
        self.shared.lock().in_flight += 1;
        Announcement::new(Box::new(Announced(self.shared.clone())))
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.shared.commits.load(Relaxed),
            writes: self.shared.written.load(Relaxed),
        }
    }

    /// Applies `writes` in order in the next group; one answer per write,
    /// each `Ok` durable.
    pub(crate) async fn commit(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let n = writes.len();
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.closing {
                return (0..n).map(|_| Err(shutting_down())).collect();
            }
            if let Some(f) = &st.failed {
                return (0..n).map(|_| Err(failed(f))).collect();
            }
            st.writes.push((writes, tx));
        }
        self.shared.wake.notify_one();
        match rx.await {
            Ok(r) if r.len() == n => r,
            _ => (0..n).map(|_| Err(not_durable(None))).collect(),
        }
    }

    /// Resolves once a flush that began after this call has completed: a
    /// write applied before the call is then durable.
    pub(crate) async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.closing {
                return Err(shutting_down());
            }
            if let Some(f) = &st.failed {
                return Err(failed(f));
            }
            st.waiters.push(tx);
        }
        self.shared.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(()),
            // The write happened but may not be on disk: fail the request.
            Ok(Err(cause)) => Err(not_durable(Some(&cause))),
            Err(_) => Err(not_durable(None)),
        }
    }

    /// Why writes stopped for good, if they did. A failed flush (an I/O
    /// error: a full disk, a failing device) leaves sled's memory ahead of
    /// its files, and sled keeps failing until it is reopened, even once
    /// space is back. So the first failure refuses every later write, and
    /// the server, seeing it, stops with an error for its supervisor to
    /// restart it.
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// Serves every waiter registered so far with a final flush and stops
    /// the flusher. Later writes fail with SHUTTING_DOWN.
    pub(crate) fn shutdown(&self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn flusher(shared: Arc<Shared>, engine: Arc<Engine>, max_wait: Duration) {
    loop {
        let (batch, writes, closing) = {
            let mut st = shared.lock();
            while st.waiters.is_empty() && st.writes.is_empty() && !st.closing {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            // Linger, boundedly, for writes already under way.
            let deadline = Instant::now() + max_wait;
            while st.in_flight > 0 && !st.closing {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = shared
                    .wake
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            (
                std::mem::take(&mut st.waiters),
                std::mem::take(&mut st.writes),
                st.closing,
            )
        };
        flush_group(&shared, &engine, batch, writes);
        if closing {
            // Anyone who registered while the last flush ran gets served too.
            let (late, late_writes) = {
                let mut st = shared.lock();
                (
                    std::mem::take(&mut st.waiters),
                    std::mem::take(&mut st.writes),
                )
            };
            if !late.is_empty() || !late_writes.is_empty() {
                flush_group(&shared, &engine, late, late_writes);
            }
            return;
        }
    }
}

/// Applies a group's writes, flushes (even with nothing to apply: the
/// waiters' own writes are in it), and answers everyone.
fn flush_group(
    shared: &Shared,
    engine: &Engine,
    waiters: Vec<Waiter>,
    writes: Vec<(Vec<Write>, Reply)>,
) {
    let applied = apply(engine, writes);
    let result = engine.flush().map(|_| ()).map_err(|e| e.to_string());
    shared.commits.fetch_add(1, Relaxed);
    if let Err(e) = &result {
        tracing::error!(error = %e, waiters = waiters.len(), "group flush failed");
        shared
            .lock()
            .failed
            .get_or_insert_with(|| format!("a flush to disk failed: {e}"));
    } else {
        let n = waiters.len() + applied.iter().map(|(r, _)| r.len()).sum::<usize>();
        shared.written.fetch_add(n as u64, Relaxed);
    }
    answer(waiters, applied, result.err().as_deref());
}

type Applied = Vec<(Vec<Result<Written, StoreError>>, Reply)>;

/// Writes per transaction at most. sled holds its global lock for a whole
/// transaction, reads included, so a re-appraisal round of a thousand units
/// in one transaction stalled every query behind it for seconds once the
/// fleet outgrew the cache; a boot storm's groups are smaller than this.
pub(crate) const MAX_WRITES_PER_TRANSACTION: usize = 64;

/// Applies the group's writes in batches; each caller keeps its answers. A
/// panic in the engine fails these writes instead of stopping the committer.
fn apply(engine: &Engine, groups: Vec<(Vec<Write>, Reply)>) -> Applied {
    if groups.is_empty() {
        return Vec::new();
    }
    let sizes: Vec<usize> = groups.iter().map(|(w, _)| w.len()).collect();
    let mut all = Vec::with_capacity(sizes.iter().sum());
    let mut replies = Vec::with_capacity(groups.len());
    for (w, r) in groups {
        all.extend(w);
        replies.push(r);
    }
    let n = all.len();
    let mut results = Vec::with_capacity(n);
    let mut rest = all.into_iter();
    while results.len() < n {
        let chunk: Vec<Write> = rest.by_ref().take(MAX_WRITES_PER_TRANSACTION).collect();
        let size = chunk.len();
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.commit_batch(chunk)));
        match out {
            Ok(r) if r.len() == size => results.extend(r),
            _ => {
                tracing::error!(writes = size, "a commit batch failed without an answer");
                results.extend((0..size).map(|_| {
                    Err(StoreError::Unavailable(
                        "the store failed while applying this write; it may not be stored; retry"
                            .into(),
                    ))
                }));
            }
        }
    }
    let mut results = results.into_iter();
    sizes
        .into_iter()
        .zip(replies)
        .map(|(n, r)| (results.by_ref().take(n).collect(), r))
        .collect()
}

/// Wakes the waiters and answers the writes once the flush is done: a write
/// applied but not flushed is not acknowledged.
/// Answers a group: `failure` is the cause of a failed flush, if it failed;
/// every write then fails with it.
fn answer(waiters: Vec<Waiter>, applied: Applied, failure: Option<&str>) {
    for w in waiters {
        let _ = w.send(match failure {
            None => Ok(()),
            Some(c) => Err(c.to_owned()),
        });
    }
    for (results, reply) in applied {
        let results = results
            .into_iter()
            .map(|r| match r {
                Ok(_) if failure.is_some() => Err(not_durable(failure)),
                other => other,
            })
            .collect();
        let _ = reply.send(results);
    }
}
