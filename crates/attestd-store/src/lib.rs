//! attestd's memory. The [`Store`] trait states what the server needs from
//! storage as domain operations, each one atomic and durable when it
//! returns; [`plan`] holds the rules of every write, neutral of the engine.
//! [`sled_store::SledStore`] is the embedded backend (one process); the
//! PostgreSQL backend (feature `postgres`) serves several replicas. Both
//! pass the same conformance suite (feature `conformance`).
//!
//! Durability contract: a write that returned `Ok` is on stable storage and
//! every later read, on any replica, sees it. How a backend gets there is
//! its own business: sled groups concurrent writes into one transaction
//! and one flush; PostgreSQL commits each call (or batch) itself.

#![forbid(unsafe_code)]

pub mod backup;
pub mod codes;
pub mod model;
pub mod nonces;
pub(crate) mod plan;
pub mod rules;
pub mod sled_store;

#[cfg(feature = "postgres")]
pub mod postgres;

/// The contract clause by clause, run on a backend by `conformance_tests!`.
#[cfg(feature = "conformance")]
pub mod conformance;

use attestd_core::Rejection;
pub use model::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A domain rule checked inside the atomic write refused it; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The unit changed between the caller's snapshot and its write; nothing
    /// was written. Re-read, decide again, retry.
    #[error("the unit changed concurrently")]
    Conflict,
    /// The storage failed (I/O, corruption). Retryable from the client's view.
    /// The message carries the cause with its whole error chain, rendered
    /// where the error leaves the backend (`postgres::error_chain`, sled's
    /// own text): one failed group commit answers every write of the group
    /// with it, and neither sled's nor tokio-postgres' errors can be cloned.
    /// The server logs it when it answers STORE_UNAVAILABLE.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored data is in a format (or schema) this binary does not use;
    /// it was left unchanged. The message says which binary can.
    #[error("{0}")]
    Incompatible(String),
}

/// The result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Who changed what: appended to the audit chain in the same transaction as
/// the change, so there is never a change without its entry or an entry
/// without its change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditNote {
    /// When the change was made, ms since the Unix epoch (the server's clock).
    pub at_ms: i64,
    /// Who made it: a principal's name, `device:<serial>` for evidence, `attestd` for the service's
    /// own entries.
    pub principal: String,
    /// What happened, e.g. `record.provisioning`, `release.decide`.
    pub action: String,
    /// On what: a serial, a station id, a model and version.
    pub target: String,
    /// The reason an operator gave, or empty.
    pub reason: String,
    /// Ids and facts a reader needs, or empty.
    pub details: String,
}

impl AuditNote {
    /// A note without reason or details.
    pub fn new(at_ms: i64, principal: &str, action: &str, target: &str) -> AuditNote {
        AuditNote {
            at_ms,
            principal: principal.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            ..AuditNote::default()
        }
    }

    /// The same note with the operator's reason.
    pub fn reason(mut self, r: &str) -> AuditNote {
        self.reason = r.to_owned();
        self
    }

    /// The same note with details.
    pub fn details(mut self, d: String) -> AuditNote {
        self.details = d;
        self
    }
}

/// What a provisioning record binds, checked and applied atomically with it.
#[derive(Clone, Debug)]
pub struct Enrollment {
    /// The model the record enrolls the unit as.
    pub model: String,
    /// The hardware version the record enrolls the unit as.
    pub hw_version: String,
    /// The device key (SPKI DER) the unit's evidence must be signed with.
    pub spki_der: Vec<u8>,
    /// `sha256:<hex>` of `spki_der`.
    pub key_id: String,
    /// Record id this provisioning record replaces (a re-key), if any.
    pub supersedes: Option<String>,
}

/// A verified station record to store.
#[derive(Clone, Debug)]
pub struct RecordCommit {
    /// The record as received, with its envelope.
    pub entry: RecordEntry,
    /// The audit entry appended with it.
    pub audit: AuditNote,
    /// Present for provisioning records.
    pub enrollment: Option<Enrollment>,
    /// Present for calibration records: what the record says, stored with
    /// the unit (`DeviceEntry::calibration_facts`).
    pub calibration: Option<CalibrationFactsEntry>,
}

/// The result of [`Store::commit_record`].
#[derive(Clone, Debug, PartialEq)]
pub enum RecordOutcome {
    /// Newly stored.
    Stored(RecordEntry),
    /// The identical record was already stored; nothing was written.
    Duplicate(RecordEntry),
}

/// Sweep kinds: which index a re-appraisal sweep walks.
pub const SWEEP_MODEL: i32 = 1;
/// Units whose provisioning or latest calibration record comes from one station.
pub const SWEEP_STATION: i32 = 2;
/// Units reporting one firmware digest (hex): run before the others, so the
/// units a revocation hits turn first.
pub const SWEEP_DIGEST: i32 = 3;

/// Stored status of a freshly enrolled unit (UNKNOWN, [`codes::status`]).
pub const STATUS_UNKNOWN: i32 = codes::status(attestd_core::appraisal::Status::Unknown);

/// A unit's verdict, decided on a snapshot of the unit.
#[derive(Clone, Debug, Default)]
pub struct UnitVerdict {
    /// The appraisal of the unit's latest evidence, if it has any.
    pub appraisal: Option<AppraisalEntry>,
    /// Stored status ([`codes::status`]).
    pub status: i32,
    /// When time alone next changes the verdict (seconds); 0 for never.
    pub next_check_at: i64,
    /// When calibration falls due under the active baseline (seconds; 0 unknown).
    pub calibration_due_at: i64,
    /// The decision's time, for `status_changed_at`.
    pub now_ms: i64,
}

/// Where a unit is placed: a tenant (hospital), site, department, asset tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The tenant (hospital); empty when unassigned.
    pub tenant: String,
    /// The site within the tenant.
    pub site: String,
    /// The department within the site.
    pub department: String,
    /// The hospital's asset tag.
    pub asset_tag: String,
}

/// Which units a listing or a watch wants: every field set must match (an
/// empty field matches anything). Data, not code, so that a backend can
/// push it into its own query language; [`DeviceFilter::matches`] states
/// the meaning every backend must keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Status codes, any of them.
    pub statuses: Vec<i32>,
    /// The unit's model.
    pub model: String,
    /// The unit's hardware version.
    pub hw_version: String,
    /// The unit's tenant.
    pub tenant: String,
    /// The unit's site.
    pub site: String,
    /// The unit's department.
    pub department: String,
    /// A firmware digest the unit reports.
    pub firmware_digest: Option<[u8; 32]>,
    /// A firmware version the unit reports (any component).
    pub firmware_version: String,
    /// Calibration due (known) before this time (seconds).
    pub calibration_due_before: Option<i64>,
    /// Last evidence (known) before / after this time (ms).
    pub last_seen_before_ms: Option<i64>,
    /// Last evidence (known) after this time (ms).
    pub last_seen_after_ms: Option<i64>,
}

impl DeviceFilter {
    /// Whether a unit matches.
    pub fn matches(&self, d: &DeviceEntry) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&d.status))
            && (self.model.is_empty() || d.model == self.model)
            && (self.hw_version.is_empty() || d.hw_version == self.hw_version)
            && (self.tenant.is_empty() || d.tenant == self.tenant)
            && (self.site.is_empty() || d.site == self.site)
            && (self.department.is_empty() || d.department == self.department)
            && self
                .firmware_digest
                .is_none_or(|want| d.firmware.iter().any(|f| f.digest == want))
            && (self.firmware_version.is_empty()
                || d.firmware
                    .iter()
                    .any(|f| f.version == self.firmware_version))
            && self
                .calibration_due_before
                .is_none_or(|t| d.calibration_due_at != 0 && d.calibration_due_at < t)
            && self
                .last_seen_before_ms
                .is_none_or(|t| d.last_seen != 0 && d.last_seen < t)
            && self.last_seen_after_ms.is_none_or(|t| d.last_seen > t)
    }

    /// Whether a status change belongs to a watch of this filter. A change
    /// carries only status, model, tenant and site.
    pub fn admits(&self, c: &ChangeEntry) -> bool {
        (self.statuses.is_empty()
            || self.statuses.contains(&c.new_status)
            || self.statuses.contains(&c.old_status))
            && (self.model.is_empty() || c.model == self.model)
            && (self.tenant.is_empty() || c.tenant == self.tenant)
            && (self.site.is_empty() || c.site == self.site)
    }

    /// The index that narrows a scan most: statuses, then tenant, then model.
    pub fn index(&self) -> DeviceIndex {
        if !self.statuses.is_empty() {
            let mut s = self.statuses.clone();
            s.sort_unstable();
            s.dedup();
            DeviceIndex::Status(s)
        } else if !self.tenant.is_empty() {
            DeviceIndex::Tenant(self.tenant.clone())
        } else if !self.model.is_empty() {
            DeviceIndex::Model(self.model.clone())
        } else {
            DeviceIndex::All
        }
    }
}

/// The index a device listing walks ([`DeviceFilter::index`]); its order is
/// the listing's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceIndex {
    /// Every unit, by serial.
    All,
    /// Units with one of these status codes, by (status, serial).
    Status(Vec<i32>),
    /// One tenant's units, by serial.
    Tenant(String),
    /// One model's units, by serial.
    Model(String),
}

/// A bounded device listing: units matching `filter`, in the order of
/// `filter.index()`.
#[derive(Clone, Debug, Default)]
pub struct DeviceQuery {
    /// Which units to return.
    pub filter: DeviceFilter,
    /// The page token of the previous page.
    pub after: Option<String>,
    /// Units to return at most.
    pub limit: usize,
    /// Units to examine at most (a page may come back short, with a token
    /// to continue).
    pub budget: usize,
}

/// How a summary groups its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// One count per status over the whole fleet (or tenant).
    All,
    /// Counts per model.
    Model,
    /// Counts per site.
    Site,
    /// Counts per reported firmware (`name=version` pairs joined by `,`).
    Firmware,
}

/// One summary counter: (group key, status code, units).
pub type SummaryCount = (String, i32, u64);

/// Verified evidence to store, with the unit revision it was decided on.
#[derive(Clone, Debug)]
pub struct EvidenceCommit {
    /// The evidence with its appraisal and raw bytes.
    pub entry: EvidenceEntry,
    /// The audit entry appended with it.
    pub audit: AuditNote,
    /// The key that verified the evidence; must still be the enrolled one.
    pub spki_der: Vec<u8>,
    /// `DeviceEntry::revision` of the snapshot the decision used.
    pub expected_revision: u64,
    /// Deferred evidence: the boot counter must exceed every accepted one.
    pub deferred: bool,
    /// The active baseline version of the unit's model the decision used.
    pub expected_baseline: Option<u64>,
    /// Highest svn per component after this evidence.
    pub svns: Vec<SvnEntry>,
    /// What the evidence reports: firmware and calibration digest.
    pub firmware: Vec<FirmwareEntry>,
    /// The calibration data set digest the evidence reports (empty if none).
    pub calibration_digest: Vec<u8>,
    /// The unit's new verdict.
    pub verdict: UnitVerdict,
}

/// A new verdict for a unit without new evidence (re-appraisal).
#[derive(Clone, Debug)]
pub struct ReappraisalCommit {
    /// The unit re-appraised.
    pub serial: String,
    /// `DeviceEntry::revision` of the snapshot the verdict was decided on.
    pub expected_revision: u64,
    /// The active baseline version of the unit's model the verdict used.
    pub expected_baseline: Option<u64>,
    /// The unit's new verdict.
    pub verdict: UnitVerdict,
}

/// One entry of a unit's history.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryItem {
    /// Evidence without its raw bytes.
    Evidence(EvidenceEntry),
    /// A station record.
    Record(RecordEntry),
    /// A verdict reached without new evidence.
    Reappraisal(ReappraisalEntry),
    /// A release decision.
    Decision(ReleaseDecisionEntry),
}

/// Totals kept in the same atomic writes as the things they count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Registered stations.
    pub stations: u64,
    /// Enrolled units.
    pub devices: u64,
    /// Stored station records.
    pub records: u64,
    /// Accepted evidence.
    pub evidence: u64,
    /// Published baselines.
    pub baselines: u64,
    /// Units per stored status code ([`codes::status`]; 0 unused).
    pub by_status: [u64; 7],
}

/// A page of results and the key to continue after, if there is more.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The results of this page.
    pub items: Vec<T>,
    /// The page token to continue after; `None` on the last page.
    pub next: Option<String>,
}

/// A release decision to store, with what it rested on. The store refuses
/// it with [`StoreError::Conflict`] when the unit, its model's active
/// baseline or the revocation of a station behind its records changed
/// since the decision read them; the gate then decides again. So a RELEASE
/// is never stored (or answered) on a state already replaced.
#[derive(Clone, Debug)]
pub struct DecisionCommit {
    /// The decision as the gate made it.
    pub entry: ReleaseDecisionEntry,
    /// The audit entry (`release.decide`) appended with it.
    pub audit: AuditNote,
    /// `DeviceEntry::revision` of the snapshot the decision used.
    pub expected_revision: u64,
    /// The active baseline version of the unit's model the decision used.
    pub expected_baseline: Option<u64>,
    /// The stations behind the unit's records that were revoked when it
    /// was decided (sorted).
    pub expected_revoked_stations: Vec<String>,
}

/// A flag an administrator sets on a unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flag {
    /// Hold (`on`) or release a unit, whatever its evidence says.
    Quarantine {
        /// Hold (true) or lift the hold (false).
        on: bool,
        /// Why; kept while the hold lasts.
        reason: String,
    },
    /// Revoke a unit for good (idempotent).
    Revoke {
        /// Why; kept with the unit.
        reason: String,
    },
}

impl Flag {
    /// Applies the flag to a unit's state (`at_ms`: when it was set).
    pub fn apply(&self, d: &mut DeviceEntry, at_ms: i64) {
        match self {
            Flag::Quarantine { on, reason } => {
                d.quarantined = *on;
                d.quarantine_reason = if *on { reason.clone() } else { String::new() };
            }
            Flag::Revoke { reason } => {
                if !d.revoked {
                    d.revoked = true;
                    d.revoked_reason = reason.clone();
                    d.status_changed_at = d.status_changed_at.max(at_ms);
                }
            }
        }
    }
}

/// An administrator's flag and the verdict the unit has with it, written
/// together: the status, its index, the counters and the change feed change
/// in the same atomic write as the flag, so the acknowledged action is what
/// every later read sees. Refused with [`StoreError::Conflict`] if the unit
/// or its model's active baseline changed since the verdict was decided.
#[derive(Clone, Debug)]
pub struct FlagCommit {
    /// The unit flagged.
    pub serial: String,
    /// The flag to set.
    pub flag: Flag,
    /// `DeviceEntry::revision` of the snapshot the verdict was decided on.
    pub expected_revision: u64,
    /// The active baseline version of the unit's model the verdict used.
    pub expected_baseline: Option<u64>,
    /// The verdict of the unit with the flag applied.
    pub verdict: UnitVerdict,
    /// The audit entry appended with it.
    pub audit: AuditNote,
}

/// One write of a [`Store::commit_batch`].
// Moved a few times per request, never stored: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Write {
    /// Verified evidence.
    Evidence(EvidenceCommit),
    /// A re-appraised verdict.
    Reappraisal(ReappraisalCommit),
    /// A station record.
    Record(RecordCommit),
    /// A release decision.
    Decision(DecisionCommit),
}

/// What a write of a batch returned.
// Moved a few times per request, never stored: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Written {
    /// The unit as written (evidence, re-appraisal).
    Device(DeviceEntry),
    /// The record was stored, or was already.
    Record(RecordOutcome),
    /// A release decision was appended.
    Done,
}

/// Applies one write of a batch through its own method.
pub async fn commit_alone<S: Store + ?Sized>(store: &S, w: Write) -> Result<Written> {
    Ok(match w {
        Write::Evidence(c) => Written::Device(store.commit_evidence(c).await?),
        Write::Reappraisal(c) => Written::Device(store.commit_reappraisal(c).await?),
        Write::Record(c) => Written::Record(store.commit_record(c).await?),
        Write::Decision(d) => {
            store.record_decision(d).await?;
            Written::Done
        }
    })
}

/// A write on its way, announced to the store by [`Store::announce`] before
/// the work that leads to it (verifying, appraising). A backend that groups
/// writes may wait for announced ones, boundedly, before it commits what it
/// holds; dropping the announcement (the write was refused, or is being
/// submitted) withdraws it. Backends that do not group ignore it.
pub struct Announcement(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl Announcement {
    /// An announcement no backend listens to.
    pub fn none() -> Announcement {
        Announcement(None)
    }

    /// An announcement that runs `withdraw` when dropped.
    pub fn new(guard: Box<dyn Send + Sync>) -> Announcement {
        Announcement(Some(guard))
    }
}

/// A unit with what appraising it reads besides the unit
/// ([`Store::unit_context`]).
#[derive(Clone, Debug)]
pub struct UnitContext {
    /// The unit.
    pub device: DeviceEntry,
    /// Its model's active baseline version, if any.
    pub active: Option<u64>,
    /// The registered stations among those behind the unit
    /// ([`rules::stations_behind`]), in any order.
    pub stations: Vec<StationEntry>,
}

/// What a backend reports of its write path (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Commits to stable storage (flushes, transactions).
    pub commits: u64,
    /// Writes those commits made durable.
    pub writes: u64,
}

/// Storage as the server needs it. Every `commit_*`/`register_*`/`revoke_*`
/// method is one atomic write that either applies whole or not at all, and
/// is durable when it returns `Ok`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds a station; refuses an id already registered.
    async fn register_station(
        &self,
        station: StationEntry,
        audit: &AuditNote,
    ) -> Result<StationEntry>;
    /// Marks a station revoked (idempotent); NOT_FOUND if unknown.
    async fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        audit: &AuditNote,
    ) -> Result<StationEntry>;
    /// A registered station, if any.
    async fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>>;
    /// Stations in id order, after `after`.
    async fn list_stations(&self, after: Option<&str>, limit: usize) -> Result<Page<StationEntry>>;

    /// An enrolled unit, if any.
    async fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>>;

    /// An enrolled unit with its model's active baseline version and the
    /// stations behind it, as appraising evidence reads them; `None` if the
    /// serial is not enrolled. A backend on a database answers it in one
    /// round trip; by default, one read after another.
    async fn unit_context(&self, serial: &str) -> Result<Option<UnitContext>> {
        let Some(device) = self.get_device(serial).await? else {
            return Ok(None);
        };
        let active = self.active_baseline_version(&device.model).await?;
        let stations = read_stations_behind(self, &device).await?;
        Ok(Some(UnitContext {
            device,
            active,
            stations,
        }))
    }

    /// Stores a record, enforcing per-station sequence, idempotence and, for
    /// provisioning, one key per serial and one serial per key.
    async fn commit_record(&self, commit: RecordCommit) -> Result<RecordOutcome>;
    /// A stored record, if any.
    async fn get_record(&self, record_id: &str) -> Result<Option<RecordEntry>>;
    /// A unit's records in the order they were accepted.
    async fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RecordEntry>>;

    /// Sets an administrator's flag (quarantine, revocation) together with
    /// the unit's verdict under it; NOT_FOUND if unknown.
    async fn set_flag(&self, commit: FlagCommit) -> Result<DeviceEntry>;

    /// Stores evidence and the unit's new verdict, if the unit is still at
    /// `expected_revision`, the model's active baseline is still the one
    /// decided on, and (deferred) the boot counter still increases.
    async fn commit_evidence(&self, commit: EvidenceCommit) -> Result<DeviceEntry>;

    /// Stores a re-appraised verdict under the same conditions, and clears
    /// the unit's re-appraisal mark.
    async fn commit_reappraisal(&self, commit: ReappraisalCommit) -> Result<DeviceEntry>;

    /// Stores a baseline whose signatures were verified. Versions strictly
    /// increase per model. Returns whether it is active now (otherwise it
    /// activates at its `effective_at`); activation queues a sweep of the model.
    async fn publish_baseline(
        &self,
        baseline: BaselineEntry,
        now_secs: i64,
        audit: &AuditNote,
    ) -> Result<bool>;
    /// One baseline of a model, if published.
    async fn get_baseline(&self, model: &str, version: u64) -> Result<Option<BaselineEntry>>;
    /// The version of a model's active baseline, if one is active.
    async fn active_baseline_version(&self, model: &str) -> Result<Option<u64>>;
    /// A model's baselines, newest first.
    async fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BaselineEntry>>;
    /// Activates pending baselines whose time has come; returns (model, version).
    async fn activate_due_baselines(&self, now_secs: i64) -> Result<Vec<(String, u64)>>;

    /// Units marked for re-appraisal (a record arrived, a revocation).
    async fn dirty_units(&self, limit: usize) -> Result<Vec<String>>;
    /// Units whose next time-based check is at or before `now_secs`.
    async fn due_units(&self, now_secs: i64, limit: usize) -> Result<Vec<String>>;
    /// Open re-appraisal sweeps.
    async fn sweeps(&self) -> Result<Vec<SweepEntry>>;
    /// The next units of a sweep after its cursor.
    async fn sweep_units(&self, sweep: &SweepEntry, limit: usize) -> Result<Vec<String>>;
    /// Moves a sweep's cursor, or closes it (`None`).
    async fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> Result<()>;
    /// Stored evidence with its raw bytes, if any.
    async fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>>;
    /// A unit's evidence and records in the order they were accepted.
    async fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HistoryItem>>;

    /// Places a unit with a tenant, site, department and asset tag.
    async fn assign_device(
        &self,
        serial: &str,
        a: &Assignment,
        audit: &AuditNote,
    ) -> Result<DeviceEntry>;
    /// Stores a unit's concession (replacing an earlier one).
    async fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry>;
    /// Appends a release decision to the unit's history, if what it rested
    /// on is still current (see [`DecisionCommit`]).
    async fn record_decision(&self, d: DecisionCommit) -> Result<()>;

    /// Appends an entry that records no other change (a signed checkpoint).
    async fn append_audit(&self, audit: &AuditNote) -> Result<()>;
    /// Audit entries after sequence `after`, oldest first.
    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// The last sequence and hash of the chain (0 and the genesis hash when empty).
    async fn audit_head(&self) -> Result<(u64, [u8; 32])>;
    /// The newest signed checkpoint entry (`audit.checkpoint`), if any.
    async fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>>;

    /// Units matching a query, in index order; the page token is opaque.
    async fn list_devices(&self, q: DeviceQuery) -> Result<Page<DeviceEntry>>;
    /// Counters by (group key, status), for one tenant or all.
    async fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>>;
    /// Status changes after `after` (a change sequence), oldest first.
    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEntry>>;
    /// The change-feed cursor now: the sequence of the newest change ever
    /// written (0 before the first). A read that saw the same cursor before
    /// and after reflects exactly the changes up to it.
    async fn change_cursor(&self) -> Result<u64>;
    /// The oldest and newest change sequences kept, if any.
    async fn change_bounds(&self) -> Result<Option<(u64, u64)>>;
    /// Drops the oldest changes so that at most `keep` remain; returns how many went.
    async fn trim_changes(&self, keep: u64, max: usize) -> Result<usize>;

    /// The totals ([`Counts`]).
    async fn counts(&self) -> Result<Counts>;

    /// Applies several writes, in order, each with the same checks and the
    /// same result as its own method; a write refused leaves nothing and
    /// does not stop the others. Each `Ok` is durable on return. A backend
    /// may apply them as one transaction (cheaper); by default, one at a time.
    async fn commit_batch(&self, writes: Vec<Write>) -> Vec<Result<Written>> {
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(commit_alone(self, w).await);
        }
        out
    }

    /// Issues a challenge nonce for `serial` under `policy` (the oldest
    /// outstanding one of the serial is evicted beyond `per_serial`);
    /// returns it and when it expires (ms).
    async fn issue_nonce(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &nonces::NoncePolicy,
    ) -> Result<([u8; nonces::NONCE_LEN], i64)>;

    /// Issues a challenge nonce (as [`Store::issue_nonce`]) for an enrolled
    /// unit only: refused with `DEVICE_NOT_FOUND` if `serial` is not
    /// enrolled, and then nothing is stored. A backend on a database checks
    /// and stores in one statement; by default, a read and then the issue.
    async fn issue_challenge(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &nonces::NoncePolicy,
    ) -> Result<([u8; nonces::NONCE_LEN], i64)> {
        if self.get_device(serial).await?.is_none() {
            return Err(StoreError::Rejected(not_enrolled(serial)));
        }
        self.issue_nonce(serial, now_ms, policy).await
    }

    /// Uses a nonce for `serial`, once, on any replica: refused with
    /// NONCE_UNKNOWN (never issued, issued to another serial, evicted, or
    /// expired longer than the grace ago), NONCE_REUSED or NONCE_EXPIRED.
    /// A nonce refused for another serial stays usable by its own.
    async fn consume_nonce(
        &self,
        nonce: &[u8],
        serial: &str,
        now_ms: i64,
        policy: &nonces::NoncePolicy,
    ) -> Result<()>;

    /// Takes or renews the lease on a background job for `holder` until
    /// `now_ms + ttl_ms`: `true` if `holder` holds it now. Jobs that must
    /// run once across replicas (re-appraisal with baseline activation and
    /// feed trimming, audit checkpoints) run only while their lease is
    /// held; refusal summaries count each replica's own refusals and run
    /// everywhere. A backend
    /// with one process holds every lease.
    async fn lease(&self, job: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> Result<bool> {
        let _ = (job, holder, ttl_ms, now_ms);
        Ok(true)
    }

    /// Pins a setting every replica must share (the audit key id): stores
    /// `value` if the setting is unset and returns the stored value, which
    /// the caller compares with its own. A backend with one process pins
    /// nothing and returns `value`.
    async fn pin_setting(&self, key: &str, value: &str) -> Result<String> {
        let _ = key;
        Ok(value.to_owned())
    }

    /// Takes a consistent copy of the whole store for a backup: appends
    /// `note` (who asked) to the audit chain, then the checkpoint `seal`
    /// makes of the head after it, and copies the state that ends with that
    /// checkpoint, durable on the store before the copy is returned. Writes
    /// wait meanwhile (the copy falls between two of them); reads go on.
    /// A backend whose backups are made with its own tools refuses with
    /// `BACKUP_UNSUPPORTED`, saying which.
    async fn backup(&self, note: &AuditNote, seal: backup::Seal) -> Result<backup::Snapshot> {
        let _ = (note, seal);
        Err(StoreError::Rejected(Rejection::new(
            attestd_core::Reason::BackupUnsupported,
            "this store is not backed up through attestd",
        )))
    }

    /// Announces a write on its way (see [`Announcement`]).
    fn announce(&self) -> Announcement {
        Announcement::none()
    }

    /// What the write path did so far.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }

    /// Whether the store can serve: answers a small read, and `Err` when
    /// it cannot (unreachable) or can read but not write (a database in
    /// read-only mode). Health follows it.
    async fn probe(&self) -> Result<()> {
        self.change_cursor().await.map(|_| ())
    }

    /// Why this store can no longer write until the process restarts, if
    /// that happened (sled after an I/O error). The server stops with an
    /// error when it sees one. A store whose failures pass (a database that
    /// comes back) returns `None` and fails calls meanwhile.
    fn failure(&self) -> Option<String> {
        None
    }

    /// The backend's name ("sled", "postgres"), for the build-info metric.
    fn backend(&self) -> &'static str {
        "unknown"
    }

    /// Waits for what is in flight and stops taking writes (shutdown).
    /// Later writes fail with `SHUTTING_DOWN`.
    async fn close(&self) {}
}

/// The refusal of a challenge for a serial that is not enrolled.
pub fn not_enrolled(serial: &str) -> Rejection {
    attestd_core::reject!(DeviceNotFound, "serial {serial} is not enrolled")
}

/// The registered stations behind `unit` ([`rules::stations_behind`]), one
/// read each; an unregistered one is left out.
pub async fn read_stations_behind<S: Store + ?Sized>(
    store: &S,
    unit: &DeviceEntry,
) -> Result<Vec<StationEntry>> {
    let mut stations = Vec::new();
    for sid in rules::stations_behind(unit) {
        if let Some(st) = store.get_station(sid).await? {
            stations.push(st);
        }
    }
    Ok(stations)
}
