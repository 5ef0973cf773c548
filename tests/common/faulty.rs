//! A store that fails on demand, to show that failures fail closed.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use attestd_store::*;

/// Delegates to `inner`; while `failing` is set, every call fails as a
/// broken disk would.
pub struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub failing: AtomicBool,
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

macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.check()?;
            self.inner.$name($($arg),*)
        })*
    };
}

impl Store for FaultyStore {
    delegate! {
        fn register_station(&self, station: StationEntry, audit: &AuditNote) -> Result<StationEntry>;
        fn revoke_station(&self, station_id: &str, reason: &str, audit: &AuditNote) -> Result<StationEntry>;
        fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>>;
        fn list_stations(&self, after: Option<&str>, limit: usize) -> Result<Page<StationEntry>>;
        fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>>;
        fn commit_record(&self, commit: RecordCommit) -> Result<RecordOutcome>;
        fn get_record(&self, record_id: &str) -> Result<Option<RecordEntry>>;
        fn list_records(&self, serial: &str, after: Option<&str>, limit: usize) -> Result<Page<RecordEntry>>;
        fn set_flag(&self, commit: FlagCommit) -> Result<DeviceEntry>;
        fn commit_evidence(&self, commit: EvidenceCommit) -> Result<DeviceEntry>;
        fn commit_reappraisal(&self, commit: ReappraisalCommit) -> Result<DeviceEntry>;
        fn publish_baseline(&self, baseline: BaselineEntry, now_secs: i64, audit: &AuditNote) -> Result<bool>;
        fn get_baseline(&self, model: &str, version: u64) -> Result<Option<BaselineEntry>>;
        fn active_baseline_version(&self, model: &str) -> Result<Option<u64>>;
        fn list_baselines(&self, model: &str, after: Option<&str>, limit: usize) -> Result<Page<BaselineEntry>>;
        fn activate_due_baselines(&self, now_secs: i64) -> Result<Vec<(String, u64)>>;
        fn dirty_units(&self, limit: usize) -> Result<Vec<String>>;
        fn due_units(&self, now_secs: i64, limit: usize) -> Result<Vec<String>>;
        fn sweeps(&self) -> Result<Vec<SweepEntry>>;
        fn sweep_units(&self, sweep: &SweepEntry, limit: usize) -> Result<Vec<String>>;
        fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> Result<()>;
        fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>>;
        fn list_history(&self, serial: &str, after: Option<&str>, limit: usize) -> Result<Page<HistoryItem>>;
        fn assign_device(&self, serial: &str, a: &Assignment, audit: &AuditNote) -> Result<DeviceEntry>;
        fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry>;
        fn record_decision(&self, d: DecisionCommit) -> Result<()>;
        fn append_audit(&self, audit: &AuditNote) -> Result<()>;
        fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>>;
        fn audit_head(&self) -> Result<(u64, [u8; 32])>;
        fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>>;
        fn list_devices(&self, q: DeviceQuery<'_>) -> Result<Page<DeviceEntry>>;
        fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>>;
        fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>>;
        fn change_cursor(&self) -> Result<u64>;
        fn change_bounds(&self) -> Result<Option<(u64, u64)>>;
        fn trim_changes(&self, keep: u64, max: usize) -> Result<usize>;
        fn counts(&self) -> Result<Counts>;
        fn flush(&self) -> Result<()>;
    }
}
