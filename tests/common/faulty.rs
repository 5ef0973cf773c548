//! A store that fails on demand, to show that failures fail closed.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use attestd_store::*;

/// Delegates to `inner`; while `failing` is set, every call fails as a
/// broken disk would.
pub(crate) struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub failing: AtomicBool,
    pub hold: Arc<Hold>,
    /// What `failure` reports (a store that cannot write until restarted).
    pub fatal: Mutex<Option<String>>,
}

/// Ways to hold a caller inside the store, to make races happen on purpose.
#[derive(Default)]
pub(crate) struct Hold {
    /// The next `get_evidence` call reports on the first channel, then waits
    /// for a message on the second.
    evidence_once: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// While true, every `get_device` call waits (counted in `held`).
    devices: (Mutex<bool>, Condvar),
    pub held: AtomicUsize,
}

impl Hold {
    /// Arms the next `get_evidence`: returns (it is held, let it go).
    pub(crate) fn next_evidence_read(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        *self.evidence_once.lock().unwrap() = Some((held_tx, go_rx));
        (held_rx, go_tx)
    }

    /// Holds (`true`) or lets go (`false`) every `get_device` call.
    pub(crate) fn device_reads(&self, on: bool) {
        *self.devices.0.lock().unwrap() = on;
        self.devices.1.notify_all();
    }

    fn on_evidence(&self) {
        let armed = self.evidence_once.lock().unwrap().take();
        if let Some((held, go)) = armed {
            let _ = held.send(());
            let _ = go.recv();
        }
    }

    fn on_device(&self) {
        let mut on = self.devices.0.lock().unwrap();
        if *on {
            self.held.fetch_add(1, Ordering::SeqCst);
            while *on {
                on = self.devices.1.wait(on).unwrap();
            }
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl FaultyStore {
    pub(crate) fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
            hold: Arc::default(),
            fatal: Mutex::new(None),
        }
    }
}

impl FaultyStore {
    fn check(&self) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected failure".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>> {
        // The hold blocks its thread: not one of the runtime's.
        let h = self.hold.clone();
        let _ = tokio::task::spawn_blocking(move || h.on_device()).await;
        self.check()?;
        self.inner.get_device(serial).await
    }

    async fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>> {
        let h = self.hold.clone();
        let _ = tokio::task::spawn_blocking(move || h.on_evidence()).await;
        self.check()?;
        self.inner.get_evidence(evidence_id).await
    }

    async fn commit_batch(&self, writes: Vec<Write>) -> Vec<Result<Written>> {
        if self.failing.load(Ordering::SeqCst) {
            return writes
                .iter()
                .map(|_| Err(StoreError::Unavailable("injected failure".into())))
                .collect();
        }
        self.inner.commit_batch(writes).await
    }

    async fn issue_nonce(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &nonces::NoncePolicy,
    ) -> Result<([u8; nonces::NONCE_LEN], i64)> {
        self.check()?;
        self.inner.issue_nonce(serial, now_ms, policy).await
    }

    async fn consume_nonce(
        &self,
        nonce: &[u8],
        serial: &str,
        now_ms: i64,
        policy: &nonces::NoncePolicy,
    ) -> Result<()> {
        self.check()?;
        self.inner
            .consume_nonce(nonce, serial, now_ms, policy)
            .await
    }

    fn announce(&self) -> Announcement {
        self.inner.announce()
    }

    fn write_stats(&self) -> WriteStats {
        self.inner.write_stats()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn register_station(
        &self,
        station: StationEntry,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        self.check()?;
        self.inner.register_station(station, audit).await
    }

    async fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        self.check()?;
        self.inner.revoke_station(station_id, reason, audit).await
    }

    async fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>> {
        self.check()?;
        self.inner.get_station(station_id).await
    }

    async fn list_stations(&self, after: Option<&str>, limit: usize) -> Result<Page<StationEntry>> {
        self.check()?;
        self.inner.list_stations(after, limit).await
    }

    async fn commit_record(&self, commit: RecordCommit) -> Result<RecordOutcome> {
        self.check()?;
        self.inner.commit_record(commit).await
    }

    async fn get_record(&self, record_id: &str) -> Result<Option<RecordEntry>> {
        self.check()?;
        self.inner.get_record(record_id).await
    }

    async fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RecordEntry>> {
        self.check()?;
        self.inner.list_records(serial, after, limit).await
    }

    async fn set_flag(&self, commit: FlagCommit) -> Result<DeviceEntry> {
        self.check()?;
        self.inner.set_flag(commit).await
    }

    async fn commit_evidence(&self, commit: EvidenceCommit) -> Result<DeviceEntry> {
        self.check()?;
        self.inner.commit_evidence(commit).await
    }

    async fn commit_reappraisal(&self, commit: ReappraisalCommit) -> Result<DeviceEntry> {
        self.check()?;
        self.inner.commit_reappraisal(commit).await
    }

    async fn publish_baseline(
        &self,
        baseline: BaselineEntry,
        now_secs: i64,
        audit: &AuditNote,
    ) -> Result<bool> {
        self.check()?;
        self.inner.publish_baseline(baseline, now_secs, audit).await
    }

    async fn get_baseline(&self, model: &str, version: u64) -> Result<Option<BaselineEntry>> {
        self.check()?;
        self.inner.get_baseline(model, version).await
    }

    async fn active_baseline_version(&self, model: &str) -> Result<Option<u64>> {
        self.check()?;
        self.inner.active_baseline_version(model).await
    }

    async fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BaselineEntry>> {
        self.check()?;
        self.inner.list_baselines(model, after, limit).await
    }

    async fn activate_due_baselines(&self, now_secs: i64) -> Result<Vec<(String, u64)>> {
        self.check()?;
        self.inner.activate_due_baselines(now_secs).await
    }

    async fn dirty_units(&self, limit: usize) -> Result<Vec<String>> {
        self.check()?;
        self.inner.dirty_units(limit).await
    }

    async fn due_units(&self, now_secs: i64, limit: usize) -> Result<Vec<String>> {
        self.check()?;
        self.inner.due_units(now_secs, limit).await
    }

    async fn sweeps(&self) -> Result<Vec<SweepEntry>> {
        self.check()?;
        self.inner.sweeps().await
    }

    async fn sweep_units(&self, sweep: &SweepEntry, limit: usize) -> Result<Vec<String>> {
        self.check()?;
        self.inner.sweep_units(sweep, limit).await
    }

    async fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> Result<()> {
        self.check()?;
        self.inner.advance_sweep(sweep, cursor).await
    }

    async fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HistoryItem>> {
        self.check()?;
        self.inner.list_history(serial, after, limit).await
    }

    async fn assign_device(
        &self,
        serial: &str,
        a: &Assignment,
        audit: &AuditNote,
    ) -> Result<DeviceEntry> {
        self.check()?;
        self.inner.assign_device(serial, a, audit).await
    }

    async fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry> {
        self.check()?;
        self.inner.grant_concession(c, audit).await
    }

    async fn record_decision(&self, d: DecisionCommit) -> Result<()> {
        self.check()?;
        self.inner.record_decision(d).await
    }

    async fn append_audit(&self, audit: &AuditNote) -> Result<()> {
        self.check()?;
        self.inner.append_audit(audit).await
    }

    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.check()?;
        self.inner.audit_after(after, limit).await
    }

    async fn audit_head(&self) -> Result<(u64, [u8; 32])> {
        self.check()?;
        self.inner.audit_head().await
    }

    async fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>> {
        self.check()?;
        self.inner.audit_last_checkpoint().await
    }

    async fn list_devices(&self, q: DeviceQuery) -> Result<Page<DeviceEntry>> {
        self.check()?;
        self.inner.list_devices(q).await
    }

    async fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>> {
        self.check()?;
        self.inner.summary(group, tenant).await
    }

    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
        self.check()?;
        self.inner.changes_after(after, limit).await
    }

    fn failure(&self) -> Option<String> {
        self.fatal.lock().unwrap().clone()
    }

    async fn probe(&self) -> Result<()> {
        self.check()?;
        self.inner.probe().await
    }

    async fn change_cursor(&self) -> Result<u64> {
        self.check()?;
        self.inner.change_cursor().await
    }

    async fn change_bounds(&self) -> Result<Option<(u64, u64)>> {
        self.check()?;
        self.inner.change_bounds().await
    }

    async fn trim_changes(&self, keep: u64, max: usize) -> Result<usize> {
        self.check()?;
        self.inner.trim_changes(keep, max).await
    }

    async fn counts(&self) -> Result<Counts> {
        self.check()?;
        self.inner.counts().await
    }
}
