//! Group commit: one flusher thread, many waiters.
//!
//! A write request takes a [`Pending`] ticket when it starts, writes (an
//! atomic store transaction), then calls [`Pending::durable`] and answers
//! only when it resolves. The flusher takes every waiter registered so far,
//! *then* flushes, then wakes them: a waiter registered after its write, so
//! the flush that wakes it began after that write (design invariant 1).
//!
//! Writers arriving during a flush share the next one. And when a flush is
//! due while other write requests are still on their way (tickets taken but
//! not yet waiting), the flusher lingers for them, at most `max_wait`: under
//! load one flush then serves many acknowledgements, while a lone writer is
//! never delayed.
//!
//! The hot writes (evidence, station records, re-appraisals, release
//! decisions) go further: [`Pending::commit`] hands the write itself to the
//! flusher, which applies every write of the group with one
//! [`Store::commit_batch`] (one transaction in sled) before the flush. Each
//! write keeps its own checks and its own answer; one transaction and one
//! lock per group instead of per request is what makes a boot storm cheap.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attestd_core::{Reason, Rejection};
use attestd_store::{Store, StoreError, Write, Written};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

type Waiter = oneshot::Sender<Result<(), ()>>;
type Reply = oneshot::Sender<Vec<Result<Written, StoreError>>>;

#[derive(Default)]
struct State {
    waiters: Vec<Waiter>,
    /// Writes to apply before the next flush, each group with its reply.
    writes: Vec<(Vec<Write>, Reply)>,
    /// Write requests under way that have not yet asked to be made durable.
    in_flight: usize,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Handle to the flusher. Dropping the last handle does not stop it; call
/// [`GroupCommit::shutdown`] to flush once more and join it.
#[derive(Clone)]
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl GroupCommit {
    /// Starts the flusher thread for `store`. `max_wait` bounds how long a
    /// flush waits for write requests already under way.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>, max_wait: Duration) -> GroupCommit {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("attestd-flusher".into())
            .spawn(move || flusher(s, store, metrics, max_wait))
            .expect("spawning the flusher thread");
        GroupCommit {
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    /// Announces a write request. Take it before the work that leads to the
    /// write; dropping it without [`Pending::durable`] (a rejection) is fine.
    pub fn begin(&self) -> Pending {
        self.lock().in_flight += 1;
        Pending {
            shared: self.shared.clone(),
            open: true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A write request under way; see [`GroupCommit::begin`].
pub struct Pending {
    shared: Arc<Shared>,
    open: bool,
}

impl Pending {
    /// Resolves once a flush that began after this call has completed.
    pub async fn durable(mut self) -> Result<(), Rejection> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight -= 1;
            self.open = false;
            if st.closing {
                return Err(Rejection::new(
                    Reason::ShuttingDown,
                    "the server is shutting down; retry",
                ));
            }
            st.waiters.push(tx);
        }
        self.shared.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(()),
            // The write happened but may not be on disk: fail the request.
            _ => Err(not_durable()),
        }
    }

    /// Applies `write` in the next group and resolves once it is durable:
    /// `Ok` only for a write applied and flushed. A refusal or a conflict
    /// comes back as the store's error; nothing of that write was stored.
    pub async fn commit(self, write: Write) -> Result<Written, StoreError> {
        match self.commit_all(vec![write]).await?.pop() {
            Some(r) => r,
            None => Err(StoreError::Unavailable(
                "the group committer gave no answer for this write; retry".into(),
            )),
        }
    }

    /// Applies `writes` in order in the next group; one answer per write,
    /// each `Ok` durable. `Err` when the group could not be made durable.
    pub async fn commit_all(
        mut self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight -= 1;
            self.open = false;
            if st.closing {
                return Err(StoreError::Rejected(Rejection::new(
                    Reason::ShuttingDown,
                    "the server is shutting down; retry",
                )));
            }
            st.writes.push((writes, tx));
        }
        self.shared.wake.notify_one();
        rx.await
            .map_err(|_| StoreError::Unavailable("the write could not be made durable".into()))
    }
}

fn not_durable() -> Rejection {
    Rejection::new(
        Reason::StoreUnavailable,
        "the write could not be made durable; retry",
    )
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.open {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight -= 1;
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

impl GroupCommit {
    /// Serves every waiter registered so far with a final flush and stops
    /// the flusher. Later calls to `durable` fail with SHUTTING_DOWN.
    pub fn shutdown(&self) {
        self.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn flusher(shared: Arc<Shared>, store: Arc<dyn Store>, metrics: Arc<Metrics>, max_wait: Duration) {
    loop {
        let (batch, writes, closing) = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
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
        let applied = apply(store.as_ref(), writes);
        // Flush even with no waiters when closing: it is the last one.
        let result = store.flush();
        metrics.flushes.fetch_add(1, Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = batch.len(), "group flush failed");
        } else {
            let n = batch.len() + applied.iter().map(|(r, _)| r.len()).sum::<usize>();
            metrics.flushed_writes.fetch_add(n as u64, Relaxed);
        }
        answer(batch, applied, result.is_ok());
        if closing {
            // Anyone who registered while the last flush ran gets served too.
            let (late, late_writes) = {
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                (
                    std::mem::take(&mut st.waiters),
                    std::mem::take(&mut st.writes),
                )
            };
            if !late.is_empty() || !late_writes.is_empty() {
                let applied = apply(store.as_ref(), late_writes);
                let ok = store.flush().is_ok();
                metrics.flushes.fetch_add(1, Relaxed);
                answer(late, applied, ok);
            }
            return;
        }
    }
}

type Applied = Vec<(Vec<Result<Written, StoreError>>, Reply)>;

/// Writes per transaction at most. sled holds its global lock for a whole
/// transaction, reads included, so a re-appraisal round of a thousand units
/// in one transaction stalled every query behind it for seconds once the
/// fleet outgrew the cache; a boot storm's groups are smaller than this.
const MAX_WRITES_PER_TRANSACTION: usize = 64;

/// Applies the group's writes in batches; each caller keeps its answers. A
/// panic in the store fails these writes instead of stopping the committer.
fn apply(store: &dyn Store, groups: Vec<(Vec<Write>, Reply)>) -> Applied {
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
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.commit_batch(chunk)));
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
fn answer(waiters: Vec<Waiter>, applied: Applied, flushed: bool) {
    for w in waiters {
        let _ = w.send(if flushed { Ok(()) } else { Err(()) });
    }
    for (results, reply) in applied {
        let results = results
            .into_iter()
            .map(|r| match r {
                Ok(_) if !flushed => Err(StoreError::Unavailable(
                    "the write could not be made durable".into(),
                )),
                other => other,
            })
            .collect();
        let _ = reply.send(results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestd_store::sled_store::{SledConfig, SledStore};
    use attestd_store::{
        AuditNote, DecisionCommit, Enrollment, RecordCommit, RecordEntry, ReleaseDecisionEntry,
        StationEntry,
    };

    #[tokio::test]
    async fn a_large_group_is_applied_in_several_transactions_answering_each_write_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SledStore::open(
                dir.path(),
                &SledConfig {
                    cache_capacity: 8 << 20,
                },
            )
            .unwrap(),
        );
        let gc = GroupCommit::start(
            store.clone(),
            Arc::new(Metrics::default()),
            Duration::from_micros(200),
        );
        // One enrolled unit (decisions are about enrolled units).
        store
            .register_station(
                StationEntry {
                    station_id: "st".into(),
                    allowed_models: vec!["*".into()],
                    ..StationEntry::default()
                },
                &AuditNote::new(1, "admin", "station.register", "st"),
            )
            .unwrap();
        store
            .commit_record(RecordCommit {
                entry: RecordEntry {
                    record_id: "rec_1".into(),
                    serial: "U1".into(),
                    station_id: "st".into(),
                    sequence: 1,
                    ..RecordEntry::default()
                },
                audit: AuditNote::new(1, "station", "record.provisioning", "U1"),
                enrollment: Some(Enrollment {
                    model: "PM-200".into(),
                    hw_version: "1".into(),
                    spki_der: vec![1],
                    key_id: "sha256:01".into(),
                    supersedes: None,
                }),
                calibration: None,
            })
            .unwrap();
        let revision = store.get_device("U1").unwrap().unwrap().revision;
        let before = store.audit_head().unwrap().0;
        let n = MAX_WRITES_PER_TRANSACTION * 2 + 5;
        let writes = (0..n)
            .map(|i| {
                Write::Decision(DecisionCommit {
                    entry: ReleaseDecisionEntry {
                        decision_id: format!("rd_{i}"),
                        serial: "U1".into(),
                        ..ReleaseDecisionEntry::default()
                    },
                    audit: AuditNote::new(1, "mes", "release.decide", &format!("rd_{i}")),
                    expected_revision: revision,
                    expected_baseline: None,
                    expected_revoked_stations: Vec::new(),
                })
            })
            .collect();
        let answers = gc.begin().commit_all(writes).await.unwrap();
        assert_eq!(answers.len(), n);
        assert!(answers.iter().all(|a| matches!(a, Ok(Written::Done))));
        // Every decision is stored, in the order given, each with its entry.
        let audit = store.audit_after(before, 1000).unwrap();
        let targets: Vec<String> = audit.into_iter().map(|e| e.target).collect();
        let expected: Vec<String> = (0..n).map(|i| format!("rd_{i}")).collect();
        assert_eq!(targets, expected);
        gc.shutdown();
    }
}
