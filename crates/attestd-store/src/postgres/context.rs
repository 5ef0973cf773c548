//! [`crate::Store::unit_context`] read for many units at once.
//!
//! Every evidence and every release check starts with a unit's context (the
//! unit, its model's active version and the stations behind it). Read one
//! unit at a time, that read was the one statement a boot did not share
//! with other boots: a round trip, an executor start and a transaction of
//! its own per boot, on both sides of the connection. Here a read joins a
//! queue and wakes a reader task, which takes the whole queue (up to
//! [`MAX_BATCH`] serials) and reads it with one statement, then answers
//! each caller. [`READERS`] tasks share the queue, so a slow statement
//! does not hold up the reads queued behind it.
//!
//! Read-your-writes holds as for a single read: a reader takes a caller's
//! serial only after the caller queued it, so the statement, and its
//! snapshot, starts after every write the caller has seen acknowledged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{oneshot, Notify};
use tokio_postgres::Row;

use super::queue::Queue;

use super::read::{db, decode, prep};
use super::store::count;
use super::Pool;
use crate::{DeviceEntry, Result, StationEntry, StoreError, UnitContext};

/// Serials read by one statement at most.
pub(super) const MAX_BATCH: usize = 256;
/// Reader tasks (statements in flight at once) per store, each with a
/// connection of its own beside the store's pool
/// (`super::config::connect_readers`: generic plans).
pub(super) const READERS: usize = 2;

/// The units named, each with its model's active version and the bodies of
/// the registered stations linked to it (`unit_stations` holds exactly the
/// stations behind a unit). A serial not enrolled has no row.
pub(super) const UNIT_CONTEXTS: &str = "SELECT d.serial, d.body, (SELECT a.version FROM \
     baseline_active a WHERE a.model = d.model), ARRAY(SELECT s.body FROM unit_stations us \
     JOIN stations s ON s.station_id = us.station_id WHERE us.serial = d.serial) \
     FROM devices d WHERE d.serial = ANY($1::text[])";

type Answer = Result<Option<UnitContext>>;

/// The queue of one store's context reads and its reader tasks.
pub(super) struct Contexts {
    pool: Pool,
    queue: Queue<String, Answer>,
    /// Statements run so far (for tests).
    statements: AtomicU64,
}

impl Contexts {
    /// The queue and its readers (on the current runtime), which end when
    /// it is dropped.
    pub(super) fn start(pool: Pool) -> Arc<Contexts> {
        let c = Arc::new(Contexts {
            pool,
            queue: Queue::new(),
            statements: AtomicU64::new(0),
        });
        for _ in 0..READERS {
            tokio::spawn(reader(Arc::downgrade(&c), c.queue.wake()));
        }
        c
    }

    /// The context of `serial`, read with those of the units queued with it.
    pub(super) async fn read(&self, serial: &str) -> Answer {
        let answer = self.queue.push_all([serial.to_owned()]).pop();
        match answer {
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store stopped before this read was answered".into(),
                ))
            }),
            None => Err(super::store::unexpected()),
        }
    }

    /// Reads one batch and answers each caller.
    async fn answer(&self, batch: Vec<(String, oneshot::Sender<Answer>)>) {
        let mut wanted: HashMap<String, Vec<oneshot::Sender<Answer>>> = HashMap::new();
        for (serial, tx) in batch {
            wanted.entry(serial).or_default().push(tx);
        }
        let serials: Vec<&str> = wanted.keys().map(String::as_str).collect();
        match self.rows(&serials).await {
            Ok(rows) => {
                let mut found: HashMap<String, Answer> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    let serial: String = row.get(0);
                    found.insert(serial, context(row).map(Some));
                }
                for (serial, senders) in wanted {
                    let answer = found.remove(&serial).unwrap_or(Ok(None));
                    send_all(senders, &answer);
                }
            }
            Err(e) => {
                let failed = Err(e);
                for senders in wanted.into_values() {
                    send_all(senders, &failed);
                }
            }
        }
    }

    /// The readers' connections, for tests that look at their sessions.
    #[cfg(test)]
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Statements run so far.
    #[cfg(test)]
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    async fn rows(&self, serials: &[&str]) -> Result<Vec<Row>> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let c = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(super::write::pool_message(&e)))?;
        let s = prep(&c, UNIT_CONTEXTS).await?;
        c.query(&s, &[&serials]).await.map_err(db("reading units"))
    }
}

impl Drop for Contexts {
    fn drop(&mut self) {
        // Each reader wakes, finds the queue gone and ends.
        let wake = self.queue.wake();
        for _ in 0..READERS {
            wake.notify_one();
        }
    }
}

/// Answers every caller that asked for one serial. The answer is cloned:
/// a failure is rendered once (errors cannot be cloned) and given to each.
fn send_all(senders: Vec<oneshot::Sender<Answer>>, answer: &Answer) {
    for tx in senders {
        let a = match answer {
            Ok(c) => Ok(c.clone()),
            Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m.clone())),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        };
        // The caller may have gone.
        let _ = tx.send(a);
    }
}

/// One row of [`UNIT_CONTEXTS`] as a unit's context.
fn context(row: &Row) -> Result<UnitContext> {
    let device: DeviceEntry = decode(row.get::<_, &[u8]>(1), "device")?;
    let active = row.get::<_, Option<i64>>(2).map(count);
    let behind = crate::rules::stations_behind(&device);
    let mut stations = Vec::with_capacity(behind.len());
    for b in row.get::<_, Vec<&[u8]>>(3) {
        let st: StationEntry = decode(b, "station")?;
        if behind.contains(&st.station_id.as_str()) {
            stations.push(st);
        }
    }
    Ok(UnitContext {
        device,
        active,
        stations,
    })
}

/// Reads queued contexts, batch after batch, whenever woken.
async fn reader(contexts: Weak<Contexts>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(c) = contexts.upgrade() else {
            return;
        };
        loop {
            let batch = c.queue.take(MAX_BATCH);
            if batch.is_empty() {
                break;
            }
            c.answer(batch).await;
        }
    }
}
