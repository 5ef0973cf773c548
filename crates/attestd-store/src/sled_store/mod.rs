//! The embedded backend: sled, for a single node.
//!
//! [`engine`] holds the data and runs each domain write as one sled
//! transaction over all trees; [`commit`] groups writes so that one flush
//! (one fsync) makes many durable. [`SledStore`] puts both behind the async
//! contract: point reads run on the caller's thread (cheaper than a hop),
//! scans and writes on the blocking pool (sled blocks on its lock and on
//! cold pages), and a write returns only after its flush.
//!
//! One process only: sled locks its directory. Challenge nonces are kept in
//! memory ([`NonceCache`]): a restart makes every outstanding challenge
//! unknown, which is safe (the unit asks again).

pub(crate) mod commit;
pub(crate) mod engine;
pub mod format;
pub mod restore;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::nonces::{NonceCache, NoncePolicy, NONCE_LEN};
use crate::{
    Announcement, Assignment, AuditNote, AuditRecord, BaselineEntry, ChangeEntry, ConcessionEntry,
    Counts, DecisionCommit, DeviceEntry, DeviceQuery, EvidenceCommit, EvidenceEntry, FlagCommit,
    Group, HistoryItem, Page, ReappraisalCommit, RecordCommit, RecordEntry, RecordOutcome, Result,
    StationEntry, Store, StoreError, SummaryCount, SweepEntry, Write, WriteStats, Written,
};
use commit::Committer;
use engine::Engine;

/// Settings of the sled backend.
#[derive(Clone, Debug)]
pub struct SledConfig {
    /// Bytes of page cache; sled's default is 1 GiB, too much to leave implicit.
    pub cache_capacity: u64,
    /// Longest a group flush waits for announced writes.
    pub group_commit_max_wait: Duration,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity: 256 * 1024 * 1024,
            group_commit_max_wait: Duration::from_micros(2000),
        }
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    engine: Arc<Engine>,
    committer: Arc<Committer>,
    /// Outstanding challenges, in memory (one process), made at first use
    /// with the server's policy.
    nonces: OnceLock<NonceCache>,
    /// Writes outside the group committer hold this shared while they run;
    /// `close` takes it exclusively (waiting for them) and marks it closed,
    /// so no write is applied after a caller was told SHUTTING_DOWN.
    writers: tokio::sync::RwLock<bool>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir` and starts its flusher.
    pub fn open(dir: &Path, cfg: &SledConfig) -> Result<SledStore> {
        let engine = Arc::new(Engine::open(dir, cfg)?);
        let committer = Arc::new(Committer::start(engine.clone(), cfg.group_commit_max_wait)?);
        Ok(SledStore {
            engine,
            committer,
            nonces: OnceLock::new(),
            writers: tokio::sync::RwLock::new(false),
        })
    }

    /// Runs a point read (one key, or a short prefix of a small tree) on
    /// the caller's thread. A hop to the blocking pool costs more than such
    /// a read from sled's page cache: measured, three hops per fleet
    /// summary halved its rate. Scans and writes go to the pool ([`run`]).
    ///
    /// Such a read never waits, so a task looping over point reads would
    /// never give its worker thread back and could starve the tasks whose
    /// writes it waits for (seen: two readers polling `audit_head` on a
    /// 2-core runtime held both workers). Each read therefore spends a unit
    /// of tokio's cooperative budget, which yields once the task has used
    /// its share.
    ///
    /// [`run`]: SledStore::run
    async fn point<T>(&self, f: impl FnOnce(&Engine) -> Result<T>) -> Result<T> {
        tokio::task::coop::consume_budget().await;
        f(&self.engine)
    }

    /// Runs `f` on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
    {
        let e = self.engine.clone();
        match tokio::task::spawn_blocking(move || f(&e)).await {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(error = %err, "a store call failed on the blocking pool");
                Err(StoreError::Unavailable(
                    "the store failed while serving this call; retry".into(),
                ))
            }
        }
    }

    /// Runs a write on the blocking pool and returns once it is durable.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
    {
        let closed = self.writers.read().await;
        if *closed {
            return Err(commit::shutting_down());
        }
        let out = self.run(f).await?;
        self.committer.durable().await?;
        drop(closed);
        Ok(out)
    }

    /// Like [`SledStore::write`], but waits for a flush only when `changed`
    /// says the call wrote something (periodic upkeep that usually finds
    /// nothing to do must not flush an idle database).
    async fn write_if<T, F>(&self, f: F, changed: impl Fn(&T) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T> + Send + 'static,
    {
        let closed = self.writers.read().await;
        if *closed {
            return Err(commit::shutting_down());
        }
        let out = self.run(f).await?;
        if changed(&out) {
            self.committer.durable().await?;
        }
        drop(closed);
        Ok(out)
    }

    /// Submits one hot write to the group committer.
    async fn grouped(&self, w: Write) -> Result<Written> {
        self.committer
            .commit(vec![w])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no answer for this write".into())))
    }
}

fn unexpected() -> StoreError {
    StoreError::Unavailable("the store answered a write with the wrong kind of result".into())
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn register_station(
        &self,
        station: StationEntry,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        let audit = audit.clone();
        self.write(move |e| e.register_station(station, &audit))
            .await
    }

    async fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        let (id, reason, audit) = (station_id.to_owned(), reason.to_owned(), audit.clone());
        self.write(move |e| e.revoke_station(&id, &reason, &audit))
            .await
    }

    async fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>> {
        self.point(|e| e.get_station(station_id)).await
    }

    async fn list_stations(&self, after: Option<&str>, limit: usize) -> Result<Page<StationEntry>> {
        let after = after.map(str::to_owned);
        self.run(move |e| e.list_stations(after.as_deref(), limit))
            .await
    }

    async fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>> {
        self.point(|e| e.get_device(serial)).await
    }

    async fn commit_record(&self, commit: RecordCommit) -> Result<RecordOutcome> {
        match self.grouped(Write::Record(commit)).await? {
            Written::Record(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn get_record(&self, record_id: &str) -> Result<Option<RecordEntry>> {
        self.point(|e| e.get_record(record_id)).await
    }

    async fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RecordEntry>> {
        let (serial, after) = (serial.to_owned(), after.map(str::to_owned));
        self.run(move |e| e.list_records(&serial, after.as_deref(), limit))
            .await
    }

    async fn set_flag(&self, commit: FlagCommit) -> Result<DeviceEntry> {
        self.write(move |e| e.set_flag(commit)).await
    }

    async fn commit_evidence(&self, commit: EvidenceCommit) -> Result<DeviceEntry> {
        match self.grouped(Write::Evidence(commit)).await? {
            Written::Device(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    async fn commit_reappraisal(&self, commit: ReappraisalCommit) -> Result<DeviceEntry> {
        match self.grouped(Write::Reappraisal(commit)).await? {
            Written::Device(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    async fn publish_baseline(
        &self,
        baseline: BaselineEntry,
        now_secs: i64,
        audit: &AuditNote,
    ) -> Result<bool> {
        let audit = audit.clone();
        self.write(move |e| e.publish_baseline(baseline, now_secs, &audit))
            .await
    }

    async fn get_baseline(&self, model: &str, version: u64) -> Result<Option<BaselineEntry>> {
        self.point(|e| e.get_baseline(model, version)).await
    }

    async fn active_baseline_version(&self, model: &str) -> Result<Option<u64>> {
        self.point(|e| e.active_baseline_version(model)).await
    }

    async fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BaselineEntry>> {
        let (model, after) = (model.to_owned(), after.map(str::to_owned));
        self.run(move |e| e.list_baselines(&model, after.as_deref(), limit))
            .await
    }

    async fn activate_due_baselines(&self, now_secs: i64) -> Result<Vec<(String, u64)>> {
        self.write(move |e| e.activate_due_baselines(now_secs))
            .await
    }

    async fn dirty_units(&self, limit: usize) -> Result<Vec<String>> {
        self.run(move |e| e.dirty_units(limit)).await
    }

    async fn due_units(&self, now_secs: i64, limit: usize) -> Result<Vec<String>> {
        self.run(move |e| e.due_units(now_secs, limit)).await
    }

    async fn sweeps(&self) -> Result<Vec<SweepEntry>> {
        self.run(|e| e.sweeps()).await
    }

    async fn sweep_units(&self, sweep: &SweepEntry, limit: usize) -> Result<Vec<String>> {
        let sweep = sweep.clone();
        self.run(move |e| e.sweep_units(&sweep, limit)).await
    }

    async fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> Result<()> {
        let (sweep, cursor) = (sweep.clone(), cursor.map(str::to_owned));
        self.write(move |e| e.advance_sweep(&sweep, cursor.as_deref()))
            .await
    }

    async fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>> {
        self.point(|e| e.get_evidence(evidence_id)).await
    }

    async fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HistoryItem>> {
        let (serial, after) = (serial.to_owned(), after.map(str::to_owned));
        self.run(move |e| e.list_history(&serial, after.as_deref(), limit))
            .await
    }

    async fn assign_device(
        &self,
        serial: &str,
        a: &Assignment,
        audit: &AuditNote,
    ) -> Result<DeviceEntry> {
        let (serial, a, audit) = (serial.to_owned(), a.clone(), audit.clone());
        self.write(move |e| e.assign_device(&serial, &a, &audit))
            .await
    }

    async fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry> {
        let audit = audit.clone();
        self.write(move |e| e.grant_concession(c, &audit)).await
    }

    async fn record_decision(&self, d: DecisionCommit) -> Result<()> {
        self.grouped(Write::Decision(d)).await.map(|_| ())
    }

    async fn append_audit(&self, audit: &AuditNote) -> Result<()> {
        let audit = audit.clone();
        self.write(move |e| e.append_audit(&audit)).await
    }

    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.run(move |e| e.audit_after(after, limit)).await
    }

    async fn audit_head(&self) -> Result<(u64, [u8; 32])> {
        self.point(|e| e.audit_head()).await
    }

    async fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>> {
        self.point(|e| e.audit_last_checkpoint()).await
    }

    async fn list_devices(&self, q: DeviceQuery) -> Result<Page<DeviceEntry>> {
        self.run(move |e| e.list_devices(q)).await
    }

    async fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>> {
        self.point(|e| e.summary(group, tenant)).await
    }

    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
        self.run(move |e| e.changes_after(after, limit)).await
    }

    async fn change_cursor(&self) -> Result<u64> {
        self.point(|e| e.change_cursor()).await
    }

    async fn change_bounds(&self) -> Result<Option<(u64, u64)>> {
        self.point(|e| e.change_bounds()).await
    }

    async fn trim_changes(&self, keep: u64, max: usize) -> Result<usize> {
        self.write_if(move |e| e.trim_changes(keep, max), |n| *n > 0)
            .await
    }

    async fn counts(&self) -> Result<Counts> {
        self.point(|e| e.counts()).await
    }

    async fn commit_batch(&self, writes: Vec<Write>) -> Vec<Result<Written>> {
        self.committer.commit(writes).await
    }

    async fn issue_nonce(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &NoncePolicy,
    ) -> Result<([u8; NONCE_LEN], i64)> {
        let cache = self.nonces.get_or_init(|| NonceCache::with_policy(policy));
        Ok(cache.issue(serial, now_ms)?)
    }

    async fn consume_nonce(
        &self,
        nonce: &[u8],
        serial: &str,
        now_ms: i64,
        policy: &NoncePolicy,
    ) -> Result<()> {
        let cache = self.nonces.get_or_init(|| NonceCache::with_policy(policy));
        Ok(cache.consume(nonce, serial, now_ms)?)
    }

    async fn backup(
        &self,
        note: &AuditNote,
        seal: crate::backup::Seal,
    ) -> Result<crate::backup::Snapshot> {
        let closed = self.writers.read().await;
        if *closed {
            return Err(commit::shutting_down());
        }
        let note = note.clone();
        let out = self.run(move |e| e.snapshot(&note, &seal)).await;
        drop(closed);
        out
    }

    fn announce(&self) -> Announcement {
        self.committer.announce()
    }

    fn write_stats(&self) -> WriteStats {
        self.committer.stats()
    }

    fn failure(&self) -> Option<String> {
        self.committer.failure()
    }

    fn backend(&self) -> &'static str {
        "sled"
    }

    async fn close(&self) {
        // Writes under way finish (and are flushed) first; later ones are
        // refused before they touch the engine.
        *self.writers.write().await = true;
        // The committer's last flush, then the engine's own.
        let (c, e) = (self.committer.clone(), self.engine.clone());
        let _ = tokio::task::spawn_blocking(move || {
            c.shutdown();
            e.flush()
        })
        .await;
    }
}
