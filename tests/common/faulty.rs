//! A store that fails on demand, to show that failures fail closed.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use attestd_store::*;

/// Delegates to `inner`; while `failing` is set, every call fails as a
/// broken disk would.
pub struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub failing: AtomicBool,
    pub hold: Hold,
}

/// Ways to hold a caller inside the store, to make races happen on purpose.
#[derive(Default)]
pub struct Hold {
    /// The next `get_evidence` call reports on the first channel, then waits
    /// for a message on the second.
    evidence_once: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// While true, every `get_device` call waits (counted in `held`).
    devices: (Mutex<bool>, Condvar),
    pub held: AtomicUsize,
}

impl Hold {
    /// Arms the next `get_evidence`: returns (it is held, let it go).
    pub fn next_evidence_read(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        *self.evidence_once.lock().unwrap() = Some((held_tx, go_rx));
        (held_rx, go_tx)
    }

    /// Holds (`true`) or lets go (`false`) every `get_device` call.
    pub fn device_reads(&self, on: bool) {
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
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
            hold: Hold::default(),
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

macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.check()?;
            self.inner.$name($($arg),*)
        })*
    };
}

impl Store for FaultyStore {
    fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>> {
        self.hold.on_device();
        self.check()?;
        self.inner.get_device(serial)
    }

    fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>> {
        self.hold.on_evidence();
        self.check()?;
        self.inner.get_evidence(evidence_id)
    }

    delegate! {
        fn register_station(&self, station: StationEntry, audit: &AuditNote) -> Result<StationEntry>;
        fn revoke_station(&self, station_id: &str, reason: &str, audit: &AuditNote) -> Result<StationEntry>;
        fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>>;
        fn list_stations(&self, after: Option<&str>, limit: usize) -> Result<Page<StationEntry>>;
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
        fn list_history(&self, serial: &str, after: Option<&str>, limit: usize) -> Result<Page<HistoryItem>>;
        fn assign_device(&self, serial: &str, a: &Assignment, audit: &AuditNote) -> Result<DeviceEntry>;
        fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry>;
        fn record_decision(&self, d: DecisionCommit) -> Result<()>;
        fn append_audit(&self, audit: &AuditNote) -> Result<()>;
        fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>>;
        fn audit_head(&self) -> Result<(u64, [u8; 32])>;
        fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>>;
        fn list_devices(&self, q: DeviceQuery) -> Result<Page<DeviceEntry>>;
        fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>>;
        fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>>;
        fn change_cursor(&self) -> Result<u64>;
        fn change_bounds(&self) -> Result<Option<(u64, u64)>>;
        fn trim_changes(&self, keep: u64, max: usize) -> Result<usize>;
        fn counts(&self) -> Result<Counts>;
        fn flush(&self) -> Result<()>;
    }
}
