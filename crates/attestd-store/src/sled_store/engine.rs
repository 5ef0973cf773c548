//! The embedded backend's engine: sled 0.34.7, synchronous. [`super::SledStore`]
//! puts it behind the async contract and groups its writes.
//!
//! Every domain write is one transaction over all trees, so a crash leaves
//! all of it or none of it (sled serializes transactions with one lock, so
//! closures stay short: decoding and deciding happen before, in the server).
//! A unit is always written through [`put_device`], which keeps every index,
//! counter and the change feed in step with the unit in that same write.
//!
//! Trees (see ARCHITECTURE.md for the full table): entities (`stations`,
//! `devices`, `records`, `evidence`, `baselines`), per-unit lists (`history`,
//! `record_index`), uniqueness (`keys`), re-appraisal work (`by_model`,
//! `by_station`, `dirty`, `due`, `sweeps`, `baseline_pending`), fleet views
//! (`by_status`, `by_tenant`, `summary`, `changes`) and `meta` counters.
//! Per-unit list orders come from `generate_id`, which is unique and
//! increasing, so they read back in acceptance order without a hot key.

use std::path::Path;

use attestd_core::{reject, Rejection};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::format;
use crate::plan;
use crate::{
    Assignment, BaselineEntry, ChangeEntry, ConcessionEntry, Counts, DecisionCommit, DeviceEntry,
    DeviceIndex, DeviceQuery, EvidenceCommit, EvidenceEntry, FlagCommit, Group, HistoryItem, Page,
    ReappraisalCommit, RecordCommit, RecordEntry, RecordOutcome, StationEntry, StoreError,
    SummaryCount, SweepEntry, Write, Written, SWEEP_DIGEST, SWEEP_MODEL, SWEEP_STATION,
};

const HISTORY_EVIDENCE: u8 = b'e';
const HISTORY_RECORD: u8 = b'r';
const HISTORY_REAPPRAISAL: u8 = b'a';
const HISTORY_DECISION: u8 = b'd';

const COUNT_STATIONS: &[u8] = b"count/stations";
const COUNT_DEVICES: &[u8] = b"count/devices";
const COUNT_RECORDS: &[u8] = b"count/records";
const COUNT_EVIDENCE: &[u8] = b"count/evidence";
const COUNT_BASELINES: &[u8] = b"count/baselines";
const SEQ_CHANGES: &[u8] = b"seq/changes";
pub(crate) const AUDIT_SEQ: &[u8] = b"audit/seq";
pub(crate) const AUDIT_HEAD: &[u8] = b"audit/head";
/// Counter that tells one opening of a sweep from the next.
const SWEEP_GENERATION: &[u8] = b"sweeps/generation";
/// Sequence number of the newest `audit.checkpoint` entry.
pub(crate) const AUDIT_LAST_CHECKPOINT: &[u8] = b"audit/last-checkpoint";

// Tree positions in `Engine::trees`.
const STATIONS: usize = 0;
const DEVICES: usize = 1;
const KEYS: usize = 2;
const RECORDS: usize = 3;
pub(crate) const RECORD_INDEX: usize = 4;
const EVIDENCE: usize = 5;
pub(crate) const HISTORY: usize = 6;
pub(crate) const META: usize = 7;
const BASELINES: usize = 8;
const BASELINE_ACTIVE: usize = 9;
const BASELINE_PENDING: usize = 10;
const BY_MODEL: usize = 11;
const BY_STATION: usize = 12;
const DIRTY: usize = 13;
const DUE: usize = 14;
const SWEEPS: usize = 15;
const BY_STATUS: usize = 16;
const BY_TENANT: usize = 17;
const SUMMARY: usize = 18;
const CHANGES: usize = 19;
pub(crate) const AUDIT: usize = 20;
const BY_DIGEST: usize = 21;
/// Every tree, in the order of the positions above (and of a backup's tables).
pub(crate) const TREE_NAMES: [&str; 22] = [
    "stations",
    "devices",
    "keys",
    "records",
    "record_index",
    "evidence",
    "history",
    "meta",
    "baselines",
    "baseline_active",
    "baseline_pending",
    "by_model",
    "by_station",
    "dirty",
    "due",
    "sweeps",
    "by_status",
    "by_tenant",
    "summary",
    "changes",
    "audit",
    "by_digest",
];

/// The sled database and its trees.
pub(crate) struct Engine {
    db: sled::Db,
    trees: Vec<Tree>,
    /// Every write to the trees holds this shared; a backup holds it
    /// exclusively while it appends its checkpoint and copies the trees, so
    /// the copy falls between two writes ([`Engine::snapshot`]). Reads do
    /// not take it.
    gate: std::sync::RwLock<()>,
    /// Added to sled's id generator for per-unit list orders: a restored
    /// database starts with a new generator, and its orders must stay above
    /// those it was restored with ([`super::format::ORDER_FLOOR`]).
    order_floor: u64,
}

/// Why a transaction closure stopped.
enum Abort {
    Rejected(Rejection),
    Conflict,
    Corrupt(String),
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Abort>>;

fn abort<T>(a: Abort) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(a))
}

fn rejected<T>(r: Rejection) -> TxResult<T> {
    abort(Abort::Rejected(r))
}

fn unavailable(e: sled::Error) -> StoreError {
    tracing::error!(error = %e, "storage error");
    StoreError::Unavailable(e.to_string())
}

fn map_tx_error(e: TransactionError<Abort>) -> StoreError {
    match e {
        TransactionError::Abort(Abort::Rejected(r)) => StoreError::Rejected(r),
        TransactionError::Abort(Abort::Conflict) => StoreError::Conflict,
        TransactionError::Abort(Abort::Corrupt(what)) => corrupt(&what),
        TransactionError::Storage(e) => unavailable(e),
    }
}

fn corrupt(what: &str) -> StoreError {
    tracing::error!(what, "stored value does not decode");
    StoreError::Unavailable(format!("stored {what} does not decode"))
}

fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> crate::Result<M> {
    M::decode(bytes).map_err(|_| corrupt(what))
}

fn tx_corrupt(what: &str) -> ConflictableTransactionError<Abort> {
    ConflictableTransactionError::Abort(Abort::Corrupt(what.to_owned()))
}

fn u64_of(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

/// The transaction's view of every tree. Writes go through [`Tx::w`], which
/// notes that the current operation wrote: a batch can then tell a refusal
/// that left nothing behind from one that did.
struct Tx<'a> {
    trees: &'a [TransactionalTree],
    wrote: std::cell::Cell<bool>,
}

impl Tx<'_> {
    /// A tree, for reading.
    fn t(&self, i: usize) -> &TransactionalTree {
        &self.trees[i]
    }

    /// A tree, for writing.
    fn w(&self, i: usize) -> &TransactionalTree {
        self.wrote.set(true);
        &self.trees[i]
    }

    fn get<M: Message + Default>(
        &self,
        tree: usize,
        key: &[u8],
        what: &str,
    ) -> TxResult<Option<M>> {
        match self.t(tree).get(key)? {
            Some(v) => M::decode(v.as_ref())
                .map(Some)
                .map_err(|_| tx_corrupt(what)),
            None => Ok(None),
        }
    }

    fn put<M: Message>(&self, tree: usize, key: impl AsRef<[u8]>, value: &M) -> TxResult<()> {
        self.w(tree).insert(key.as_ref(), value.encode_to_vec())?;
        Ok(())
    }

    fn device(&self, serial: &str) -> TxResult<Option<DeviceEntry>> {
        self.get(DEVICES, serial.as_bytes(), "device")
    }

    fn add(&self, tree: usize, key: &[u8], delta: i64) -> TxResult<u64> {
        let n = match self.t(tree).get(key)? {
            Some(v) => u64_of(&v).unwrap_or(0),
            None => 0,
        };
        let next = n.saturating_add_signed(delta);
        if next == 0 && tree == SUMMARY {
            self.w(tree).remove(key)?;
        } else {
            self.w(tree).insert(key, &next.to_be_bytes())?;
        }
        Ok(next)
    }

    fn bump(&self, key: &[u8]) -> TxResult<u64> {
        self.add(META, key, 1)
    }

    fn active_version(&self, model: &str) -> TxResult<Option<u64>> {
        Ok(self
            .t(BASELINE_ACTIVE)
            .get(model.as_bytes())?
            .and_then(|v| u64_of(&v)))
    }

    fn mark_dirty(&self, serial: &str) -> TxResult<()> {
        self.w(DIRTY).insert(serial.as_bytes(), &[])?;
        Ok(())
    }

    /// Opens a sweep of `kind` over `key` (restarting one already open).
    fn open_sweep(&self, kind: i32, key: &str, reason: &str) -> TxResult<()> {
        let s = SweepEntry {
            kind,
            key: key.to_owned(),
            cursor: String::new(),
            reason: reason.to_owned(),
            generation: self.bump(SWEEP_GENERATION)?,
        };
        self.put(SWEEPS, sweep_key(kind, key), &s)
    }

    /// Makes `version` the model's active baseline unless a newer one
    /// already is, and queues the sweeps it calls for ([`plan::activation`]).
    fn activate(&self, model: &str, version: u64) -> TxResult<()> {
        let entry: Option<BaselineEntry> =
            self.get(BASELINES, &baseline_key(model, version), "baseline")?;
        let Some(sweeps) =
            plan::activation(model, version, self.active_version(model)?, entry.as_ref())
        else {
            return Ok(());
        };
        self.w(BASELINE_ACTIVE)
            .insert(model.as_bytes(), &version.to_be_bytes())?;
        for (kind, key, reason) in sweeps {
            self.open_sweep(kind, &key, &reason)?;
        }
        Ok(())
    }

    /// Appends one entry to the audit chain, after the current head.
    fn audit(&self, note: &crate::AuditNote) -> TxResult<()> {
        let seq = self.bump(AUDIT_SEQ)?;
        let prev: [u8; 32] = match self.t(META).get(AUDIT_HEAD)? {
            Some(v) => <[u8; 32]>::try_from(v.as_ref()).map_err(|_| tx_corrupt("audit head"))?,
            None => attestd_core::audit::GENESIS,
        };
        let rec = plan::audit_entry(seq, &prev, note);
        self.put(AUDIT, seq.to_be_bytes(), &rec)?;
        self.w(META).insert(AUDIT_HEAD, rec.hash.as_slice())?;
        if note.action == attestd_core::audit::CHECKPOINT_ACTION {
            self.w(META)
                .insert(AUDIT_LAST_CHECKPOINT, &seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// Appends to a unit's history: the kind byte and `body`.
    fn history(&self, serial: &str, order: u64, kind: u8, body: &[u8]) -> TxResult<()> {
        let mut h = Vec::with_capacity(body.len() + 1);
        h.push(kind);
        h.extend_from_slice(body);
        self.w(HISTORY).insert(indexed_key(serial, order), h)?;
        Ok(())
    }
}

/// Writes a unit and keeps everything derived from it in step
/// ([`plan::unit_delta`]): the status, tenant, model and digest indices,
/// the summary counters, the due index and the change feed. Every write of
/// a unit goes through here, inside the transaction that changes it.
fn put_device(t: &Tx<'_>, w: &plan::UnitWrite) -> TxResult<()> {
    let new = &w.new;
    let serial = new.serial.as_str();
    let delta = w.delta();
    for (k, n) in &delta.summary {
        t.add(SUMMARY, &summary_key(k), *n)?;
    }
    if let Some(m) = &delta.status {
        if m.old != 0 {
            t.w(BY_STATUS).remove(status_key(m.old, serial))?;
        }
        if m.new != 0 {
            t.w(BY_STATUS).insert(status_key(m.new, serial), &[])?;
        }
    }
    if let Some(m) = &delta.tenant {
        if !m.old.is_empty() {
            t.w(BY_TENANT).remove(len_key(&m.old, serial))?;
        }
        if !m.new.is_empty() {
            t.w(BY_TENANT).insert(len_key(&m.new, serial), &[])?;
        }
    }
    if let Some(m) = &delta.model {
        if !m.old.is_empty() {
            t.w(BY_MODEL).remove(pair_key(&m.old, serial))?;
        }
        if !m.new.is_empty() {
            t.w(BY_MODEL).insert(pair_key(&m.new, serial), &[])?;
        }
    }
    for d in &delta.digests_removed {
        t.w(BY_DIGEST).remove(pair_key(d, serial))?;
    }
    for d in &delta.digests_added {
        t.w(BY_DIGEST).insert(pair_key(d, serial), &[])?;
    }
    if let Some(m) = &delta.due {
        if m.old != 0 {
            t.w(DUE).remove(due_key(m.old, serial))?;
        }
        if m.new != 0 {
            t.w(DUE).insert(due_key(m.new, serial), &[])?;
        }
    }
    if let Some(mut change) = delta.change {
        change.seq = t.bump(SEQ_CHANGES)?;
        t.put(CHANGES, change.seq.to_be_bytes(), &change)?;
    }
    t.put(DEVICES, serial.as_bytes(), new)
}

/// A refusal of the plan, as the transaction's abort.
fn refused<T>(r: plan::Refusal) -> TxResult<T> {
    match r {
        plan::Refusal::Rejected(r) => rejected(r),
        plan::Refusal::Conflict => abort(Abort::Conflict),
        plan::Refusal::Damaged(what) => Err(tx_corrupt(&what)),
    }
}

/// The unit of `serial` and its model's active baseline version.
fn unit_view(t: &Tx<'_>, serial: &str) -> TxResult<(Option<DeviceEntry>, Option<u64>)> {
    let d = t.device(serial)?;
    let active = match &d {
        Some(d) => t.active_version(&d.model)?,
        None => None,
    };
    Ok((d, active))
}

/// Stores verified evidence and the unit's new verdict (see [`crate::Store::commit_evidence`]).
fn evidence_tx(t: &Tx<'_>, c: &EvidenceCommit, order: u64) -> TxResult<DeviceEntry> {
    let entry = &c.entry;
    let (d, active) = unit_view(t, &entry.serial)?;
    let known = t.t(EVIDENCE).get(entry.evidence_id.as_bytes())?.is_some();
    let w = plan::admit_evidence(d.as_ref(), active, known, c).or_else(refused)?;
    put_device(t, &w)?;
    t.put(EVIDENCE, entry.evidence_id.as_bytes(), entry)?;
    t.history(
        &entry.serial,
        order,
        HISTORY_EVIDENCE,
        entry.evidence_id.as_bytes(),
    )?;
    t.bump(COUNT_EVIDENCE)?;
    t.audit(&c.audit)?;
    Ok(w.new)
}

/// Stores a re-appraised verdict (see [`crate::Store::commit_reappraisal`]).
fn reappraisal_tx(t: &Tx<'_>, c: &ReappraisalCommit, order: u64) -> TxResult<DeviceEntry> {
    let serial = c.serial.as_str();
    let (d, active) = unit_view(t, serial)?;
    match plan::admit_reappraisal(d.as_ref(), active, c) {
        Err(plan::Refusal::Conflict) => abort(Abort::Conflict),
        Err(r) => {
            t.w(DIRTY).remove(serial.as_bytes())?;
            refused(r)
        }
        Ok(None) => {
            t.w(DIRTY).remove(serial.as_bytes())?;
            d.ok_or_else(|| tx_corrupt("device"))
        }
        Ok(Some((w, h))) => {
            t.w(DIRTY).remove(serial.as_bytes())?;
            put_device(t, &w)?;
            t.history(serial, order, HISTORY_REAPPRAISAL, &h.encode_to_vec())?;
            Ok(w.new)
        }
    }
}

/// Stores a station record (see [`crate::Store::commit_record`]).
fn record_tx(t: &Tx<'_>, c: &RecordCommit, order: u64) -> TxResult<RecordOutcome> {
    let entry = &c.entry;
    let sid = entry.station_id.as_str();
    let serial = entry.serial.as_str();
    let existing = t.get::<RecordEntry>(RECORDS, entry.record_id.as_bytes(), "record")?;
    let station = t.get::<StationEntry>(STATIONS, sid.as_bytes(), "station")?;
    let device = t.device(serial)?;
    let owner = match &c.enrollment {
        Some(en) => match t.t(KEYS).get(en.key_id.as_bytes())? {
            Some(o) => Some(String::from_utf8(o.to_vec()).map_err(|_| tx_corrupt("key index"))?),
            None => None,
        },
        None => None,
    };
    let admission = plan::admit_record(existing, station, device.as_ref(), owner.as_deref(), c)
        .or_else(refused)?;
    let outcome = admission.outcome(entry);
    let plan::RecordAdmission::Store(p) = admission else {
        return Ok(outcome);
    };
    if p.unit.old.is_none() {
        t.bump(COUNT_DEVICES)?;
    }
    if let Some(k) = &p.key_removed {
        t.w(KEYS).remove(k.as_bytes())?;
    }
    if let Some(k) = &p.key_added {
        t.w(KEYS).insert(k.as_bytes(), serial.as_bytes())?;
    }
    for s in &p.stations_unlinked {
        t.w(BY_STATION).remove(pair_key(s, serial))?;
    }
    t.w(BY_STATION)
        .insert(pair_key(&p.station_linked, serial), &[])?;
    // The unit's verdict must follow its new record.
    t.mark_dirty(serial)?;
    put_device(t, &p.unit)?;
    t.put(STATIONS, sid.as_bytes(), &p.station)?;
    t.put(RECORDS, entry.record_id.as_bytes(), entry)?;
    t.w(RECORD_INDEX)
        .insert(indexed_key(serial, order), entry.record_id.as_bytes())?;
    t.history(serial, order, HISTORY_RECORD, entry.record_id.as_bytes())?;
    t.bump(COUNT_RECORDS)?;
    t.audit(&p.audit)?;
    Ok(outcome)
}

/// Appends a release decision to the unit's history, with its audit entry,
/// if what the decision rested on is still current (see
/// [`crate::DecisionCommit`]); otherwise a conflict: decide again.
fn decision_tx(t: &Tx<'_>, c: &DecisionCommit, order: u64) -> TxResult<()> {
    let serial = c.entry.serial.as_str();
    let (d, active) = unit_view(t, serial)?;
    let mut revoked = Vec::new();
    for sid in d.iter().flat_map(crate::rules::stations_behind) {
        if t.get::<StationEntry>(STATIONS, sid.as_bytes(), "station")?
            .is_some_and(|s| s.revoked)
        {
            revoked.push(sid.to_owned());
        }
    }
    plan::admit_decision(d.as_ref(), active, revoked, c).or_else(refused)?;
    t.history(serial, order, HISTORY_DECISION, &c.entry.encode_to_vec())?;
    t.audit(&c.audit)
}

/// Sets an administrator's flag with the unit's verdict under it (see
/// [`crate::Store::set_flag`]).
fn flag_tx(t: &Tx<'_>, c: &FlagCommit, order: u64) -> TxResult<DeviceEntry> {
    let (d, active) = unit_view(t, &c.serial)?;
    let (w, h) = plan::admit_flag(d.as_ref(), active, c).or_else(refused)?;
    put_device(t, &w)?;
    if let Some(h) = h {
        t.history(&c.serial, order, HISTORY_REAPPRAISAL, &h.encode_to_vec())?;
    }
    t.audit(&c.audit)?;
    Ok(w.new)
}

/// One write of a batch.
fn apply_write(t: &Tx<'_>, w: &Write, order: u64) -> TxResult<Written> {
    Ok(match w {
        Write::Evidence(c) => Written::Device(evidence_tx(t, c, order)?),
        Write::Reappraisal(c) => Written::Device(reappraisal_tx(t, c, order)?),
        Write::Record(c) => Written::Record(record_tx(t, c, order)?),
        Write::Decision(d) => {
            decision_tx(t, d, order)?;
            Written::Done
        }
    })
}

fn group_byte(g: Group) -> u8 {
    match g {
        Group::All => b'a',
        Group::Model => b'm',
        Group::Site => b's',
        Group::Firmware => b'f',
    }
}

/// Summary counter key: group, len-prefixed key, len-prefixed tenant, status.
fn summary_key(k: &plan::SummaryKey) -> Vec<u8> {
    let mut out = vec![group_byte(k.group)];
    push_len(&mut out, &k.key);
    push_len(&mut out, &k.tenant);
    out.push(k.status as u8);
    out
}

fn push_len(k: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u16::MAX as usize);
    k.extend_from_slice(&(len as u16).to_be_bytes());
    k.extend_from_slice(&s.as_bytes()[..len]);
}

fn read_len(k: &[u8]) -> Option<(String, &[u8])> {
    let len = u16::from_be_bytes(k.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(k.get(2..2 + len)?).ok()?.to_owned();
    Some((s, &k[2 + len..]))
}

/// `status serial`: the status index.
fn status_key(status: i32, serial: &str) -> Vec<u8> {
    let mut k = vec![status as u8];
    k.extend_from_slice(serial.as_bytes());
    k
}

/// `len-prefixed key, serial`: the tenant index.
fn len_key(key: &str, serial: &str) -> Vec<u8> {
    let mut k = Vec::new();
    push_len(&mut k, key);
    k.extend_from_slice(serial.as_bytes());
    k
}

/// `serial 0x00 order` (big-endian, so keys sort by order).
fn indexed_key(serial: &str, order: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(serial.len() + 9);
    k.extend_from_slice(serial.as_bytes());
    k.push(0);
    k.extend_from_slice(&order.to_be_bytes());
    k
}

fn serial_prefix(serial: &str) -> Vec<u8> {
    let mut k = serial.as_bytes().to_vec();
    k.push(0);
    k
}

/// `key 0x00 serial`: an entry of a re-appraisal index.
fn pair_key(key: &str, serial: &str) -> Vec<u8> {
    let mut k = serial_prefix(key);
    k.extend_from_slice(serial.as_bytes());
    k
}

/// `time (big-endian) serial`: an entry of the due index.
fn due_key(at: i64, serial: &str) -> Vec<u8> {
    let mut k = (at.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(serial.as_bytes());
    k
}

fn baseline_key(model: &str, version: u64) -> Vec<u8> {
    let mut k = serial_prefix(model);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn sweep_key(kind: i32, key: &str) -> Vec<u8> {
    let mut k = vec![kind as u8];
    k.extend_from_slice(key.as_bytes());
    k
}

/// Page tokens of per-unit lists are the decimal order of the last item.
fn parse_order(token: &str) -> crate::Result<u64> {
    token.parse().map_err(|_| bad_token())
}

fn bad_token() -> StoreError {
    StoreError::Rejected(reject!(
        FieldInvalid,
        "page_token: not a token this server issued"
    ))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The key just after `k` in byte order.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut v = k.to_vec();
    v.push(0);
    v
}

impl Engine {
    /// Opens (or creates) the database in `dir`. Start-up work is bounded:
    /// nothing here walks a tree.
    pub(crate) fn open(dir: &Path, cfg: &super::SledConfig) -> crate::Result<Engine> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity)
            .mode(sled::Mode::HighThroughput);
        // sled releases its file lock from a background thread after the
        // last handle is dropped (spacejam/sled#1234), so opening right after
        // a close in the same process, or right after a killed process, can
        // find the lock still held for a moment. Wait for it, briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled reports it as ErrorKind::Other with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().starts_with("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        // Before any tree is opened (opening creates it): a database in a
        // format this binary does not know is left untouched.
        let found = format::check(&db, dir)?;
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n).map_err(unavailable))
            .collect::<crate::Result<Vec<_>>>()?;
        match found {
            format::Found::New | format::Found::Unrecorded => {
                if found == format::Found::Unrecorded {
                    tracing::info!(
                        format = format::STORE_FORMAT,
                        dir = %dir.display(),
                        "recording the store format of a database written before formats were recorded"
                    );
                }
                trees[META]
                    .insert(format::FORMAT_KEY, &format::STORE_FORMAT.to_be_bytes())
                    .map_err(unavailable)?;
                db.flush().map_err(unavailable)?;
            }
            // Migrations from older formats go here, one step at a time.
            format::Found::At(_) => {}
        }
        let order_floor = format::read_u64(&trees[META], format::ORDER_FLOOR, "order floor")?;
        Ok(Engine {
            db,
            trees,
            gate: std::sync::RwLock::new(()),
            order_floor,
        })
    }

    /// Holds off [`Engine::snapshot`] while a write runs.
    fn write_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    fn tree(&self, i: usize) -> &Tree {
        &self.trees[i]
    }

    /// Runs `f` as one transaction over every tree.
    fn tx<A>(&self, f: impl Fn(&Tx<'_>) -> TxResult<A>) -> crate::Result<A> {
        let _writing = self.write_gate();
        self.tx_ungated(f)
    }

    /// [`Engine::tx`] for a caller that holds the gate already.
    fn tx_ungated<A>(&self, f: impl Fn(&Tx<'_>) -> TxResult<A>) -> crate::Result<A> {
        <[Tree] as Transactional<Abort>>::transaction(&self.trees[..], |view| {
            f(&Tx {
                trees: view,
                wrote: std::cell::Cell::new(false),
            })
        })
        .map_err(map_tx_error)
    }

    fn next_order(&self) -> crate::Result<u64> {
        let id = self.db.generate_id().map_err(unavailable)?;
        Ok(self.order_floor.saturating_add(id))
    }

    fn read<M: Message + Default>(
        &self,
        tree: usize,
        key: &[u8],
        what: &str,
    ) -> crate::Result<Option<M>> {
        match self.tree(tree).get(key).map_err(unavailable)? {
            Some(v) => decode(&v, what).map(Some),
            None => Ok(None),
        }
    }

    /// Scans `index` under `serial` after the order in `after`, resolving each
    /// entry with `resolve`; returns up to `limit` items.
    fn scan_serial<T>(
        &self,
        index: usize,
        serial: &str,
        after: Option<&str>,
        limit: usize,
        mut resolve: impl FnMut(&[u8]) -> crate::Result<Option<T>>,
    ) -> crate::Result<Page<T>> {
        let index = self.tree(index);
        let prefix = serial_prefix(serial);
        let start = match after {
            Some(tok) => indexed_key(serial, parse_order(tok)?.saturating_add(1)),
            None => prefix.clone(),
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for kv in index.range(start..) {
            let (k, v) = kv.map_err(unavailable)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            if let Some(item) = resolve(&v)? {
                items.push(item);
            }
            last = Some(u64_of(&k[prefix.len()..]).ok_or_else(|| corrupt("index key"))?);
        }
        let next = if more {
            last.map(|o| o.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    fn count(&self, key: &[u8]) -> crate::Result<u64> {
        Ok(match self.tree(META).get(key).map_err(unavailable)? {
            Some(v) => u64_of(&v).ok_or_else(|| corrupt("counter"))?,
            None => 0,
        })
    }

    /// Changes a unit with `f` (which sees the current entry) and writes it
    /// through `put_device`.
    fn update_device(
        &self,
        serial: &str,
        audit: &crate::AuditNote,
        f: impl Fn(&Tx<'_>, &mut DeviceEntry) -> TxResult<()>,
    ) -> crate::Result<DeviceEntry> {
        self.tx(|t| {
            let Some(old) = t.device(serial)? else {
                return rejected(reject!(DeviceNotFound, "serial {serial} is not enrolled"));
            };
            let mut d = old.clone();
            f(t, &mut d)?;
            d.revision += 1;
            let w = plan::UnitWrite {
                old: Some(old),
                new: d,
            };
            put_device(t, &w)?;
            t.audit(audit)?;
            Ok(w.new)
        })
    }
}

/// The contract's operations, synchronous; see [`crate::Store`] for each.
impl Engine {
    pub(crate) fn register_station(
        &self,
        station: StationEntry,
        audit: &crate::AuditNote,
    ) -> crate::Result<StationEntry> {
        let key = station.station_id.clone();
        self.tx(|t| {
            if t.t(STATIONS).get(key.as_bytes())?.is_some() {
                return rejected(reject!(
                    StationExists,
                    "station {key} is already registered"
                ));
            }
            t.put(STATIONS, key.as_bytes(), &station)?;
            t.bump(COUNT_STATIONS)?;
            t.audit(audit)
        })?;
        Ok(station)
    }

    pub(crate) fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        audit: &crate::AuditNote,
    ) -> crate::Result<StationEntry> {
        let at = audit.at_ms;
        self.tx(|t| {
            let Some(mut s) = t.get::<StationEntry>(STATIONS, station_id.as_bytes(), "station")?
            else {
                return rejected(reject!(
                    StationNotFound,
                    "station {station_id} is not registered"
                ));
            };
            if !s.revoked {
                s.revoked = true;
                s.revoked_reason = reason.to_owned();
                s.revoked_at = at;
                t.put(STATIONS, station_id.as_bytes(), &s)?;
                // Every unit relying on its records is re-appraised.
                t.open_sweep(SWEEP_STATION, station_id, "station revoked")?;
                t.audit(audit)?;
            }
            Ok(s)
        })
    }

    pub(crate) fn get_station(&self, station_id: &str) -> crate::Result<Option<StationEntry>> {
        self.read(STATIONS, station_id.as_bytes(), "station")
    }

    pub(crate) fn list_stations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<StationEntry>> {
        let iter = match after {
            Some(a) => self.tree(STATIONS).range(successor(a.as_bytes())..),
            None => self.tree(STATIONS).iter(),
        };
        let mut items = Vec::new();
        let mut more = false;
        for kv in iter {
            let (_, v) = kv.map_err(unavailable)?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(decode::<StationEntry>(&v, "station")?);
        }
        let next = if more {
            items.last().map(|s| s.station_id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) fn get_device(&self, serial: &str) -> crate::Result<Option<DeviceEntry>> {
        self.read(DEVICES, serial.as_bytes(), "device")
    }

    pub(crate) fn commit_record(&self, commit: RecordCommit) -> crate::Result<RecordOutcome> {
        let order = self.next_order()?;
        self.tx(|t| record_tx(t, &commit, order))
    }

    pub(crate) fn get_record(&self, record_id: &str) -> crate::Result<Option<RecordEntry>> {
        self.read(RECORDS, record_id.as_bytes(), "record")
    }

    pub(crate) fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<RecordEntry>> {
        self.scan_serial(RECORD_INDEX, serial, after, limit, |id| {
            self.read(RECORDS, id, "record")
        })
    }

    pub(crate) fn set_flag(&self, commit: FlagCommit) -> crate::Result<DeviceEntry> {
        let order = self.next_order()?;
        self.tx(|t| flag_tx(t, &commit, order))
    }

    pub(crate) fn commit_evidence(&self, commit: EvidenceCommit) -> crate::Result<DeviceEntry> {
        let order = self.next_order()?;
        self.tx(|t| evidence_tx(t, &commit, order))
    }

    pub(crate) fn commit_reappraisal(
        &self,
        commit: ReappraisalCommit,
    ) -> crate::Result<DeviceEntry> {
        let order = self.next_order()?;
        self.tx(|t| reappraisal_tx(t, &commit, order))
    }

    pub(crate) fn publish_baseline(
        &self,
        b: BaselineEntry,
        now_secs: i64,
        audit: &crate::AuditNote,
    ) -> crate::Result<bool> {
        let model = b.model.clone();
        self.tx(|t| {
            let latest_key = [b"latest/".as_slice(), model.as_bytes()].concat();
            let latest = t.t(META).get(&latest_key)?.and_then(|v| u64_of(&v));
            let active_now = plan::admit_baseline(latest, &b, now_secs).or_else(refused)?;
            t.w(META).insert(latest_key, &b.version.to_be_bytes())?;
            t.put(BASELINES, baseline_key(&model, b.version), &b)?;
            t.bump(COUNT_BASELINES)?;
            t.audit(audit)?;
            if active_now {
                t.activate(&model, b.version)?;
                Ok(true)
            } else {
                let mut k = (b.effective_at.max(0) as u64).to_be_bytes().to_vec();
                k.extend_from_slice(&baseline_key(&model, b.version));
                t.w(BASELINE_PENDING).insert(k, &[])?;
                Ok(false)
            }
        })
    }

    pub(crate) fn get_baseline(
        &self,
        model: &str,
        version: u64,
    ) -> crate::Result<Option<BaselineEntry>> {
        self.read(BASELINES, &baseline_key(model, version), "baseline")
    }

    pub(crate) fn active_baseline_version(&self, model: &str) -> crate::Result<Option<u64>> {
        Ok(self
            .tree(BASELINE_ACTIVE)
            .get(model.as_bytes())
            .map_err(unavailable)?
            .and_then(|v| u64_of(&v)))
    }

    pub(crate) fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<BaselineEntry>> {
        let prefix = serial_prefix(model);
        let end = match after {
            Some(tok) => baseline_key(model, parse_order(tok)?),
            None => baseline_key(model, u64::MAX)
                .into_iter()
                .chain([0])
                .collect(),
        };
        let mut items: Vec<BaselineEntry> = Vec::new();
        let mut more = false;
        for kv in self.tree(BASELINES).range(prefix..end).rev() {
            let (_, v) = kv.map_err(unavailable)?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(decode(&v, "baseline")?);
        }
        let next = if more {
            items.last().map(|b| b.version.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) fn activate_due_baselines(
        &self,
        now_secs: i64,
    ) -> crate::Result<Vec<(String, u64)>> {
        let end = ((now_secs.max(0) as u64) + 1).to_be_bytes();
        let due: Vec<sled::IVec> = self
            .tree(BASELINE_PENDING)
            .range(..end.as_slice())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let mut activated = Vec::new();
        for k in due {
            let rest = k.get(8..).ok_or_else(|| corrupt("pending baseline key"))?;
            let sep = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| corrupt("pending baseline key"))?;
            let model = String::from_utf8(rest[..sep].to_vec())
                .map_err(|_| corrupt("pending baseline key"))?;
            let version =
                u64_of(&rest[sep + 1..]).ok_or_else(|| corrupt("pending baseline key"))?;
            self.tx(|t| {
                t.w(BASELINE_PENDING).remove(&k)?;
                t.activate(&model, version)
            })?;
            activated.push((model, version));
        }
        Ok(activated)
    }

    pub(crate) fn dirty_units(&self, limit: usize) -> crate::Result<Vec<String>> {
        self.tree(DIRTY)
            .iter()
            .keys()
            .take(limit)
            .map(|k| {
                String::from_utf8(k.map_err(unavailable)?.to_vec())
                    .map_err(|_| corrupt("dirty key"))
            })
            .collect()
    }

    pub(crate) fn due_units(&self, now_secs: i64, limit: usize) -> crate::Result<Vec<String>> {
        let end = ((now_secs.max(0) as u64) + 1).to_be_bytes();
        self.tree(DUE)
            .range(..end.as_slice())
            .keys()
            .take(limit)
            .map(|k| {
                let k = k.map_err(unavailable)?;
                let serial = k.get(8..).ok_or_else(|| corrupt("due key"))?;
                String::from_utf8(serial.to_vec()).map_err(|_| corrupt("due key"))
            })
            .collect()
    }

    pub(crate) fn sweeps(&self) -> crate::Result<Vec<SweepEntry>> {
        self.tree(SWEEPS)
            .iter()
            .values()
            .map(|v| decode(&v.map_err(unavailable)?, "sweep"))
            .collect()
    }

    pub(crate) fn sweep_units(
        &self,
        sweep: &SweepEntry,
        limit: usize,
    ) -> crate::Result<Vec<String>> {
        let index = match sweep.kind {
            SWEEP_MODEL => self.tree(BY_MODEL),
            SWEEP_STATION => self.tree(BY_STATION),
            SWEEP_DIGEST => self.tree(BY_DIGEST),
            _ => return Err(corrupt("sweep kind")),
        };
        let prefix = serial_prefix(&sweep.key);
        let start = if sweep.cursor.is_empty() {
            prefix.clone()
        } else {
            successor(&pair_key(&sweep.key, &sweep.cursor))
        };
        let mut out = Vec::new();
        for k in index.range(start..).keys() {
            let k = k.map_err(unavailable)?;
            if !k.starts_with(&prefix) || out.len() == limit {
                break;
            }
            out.push(
                String::from_utf8(k[prefix.len()..].to_vec()).map_err(|_| corrupt("index key"))?,
            );
        }
        Ok(out)
    }

    pub(crate) fn advance_sweep(
        &self,
        sweep: &SweepEntry,
        cursor: Option<&str>,
    ) -> crate::Result<()> {
        let key = sweep_key(sweep.kind, &sweep.key);
        self.tx(|t| {
            // A sweep reopened meanwhile (a newer baseline, another station
            // revocation) starts over: this round must neither advance nor
            // close it, even if it is still at the same cursor.
            let Some(mut current) = t.get::<SweepEntry>(SWEEPS, &key, "sweep")? else {
                return Ok(());
            };
            if current.generation != sweep.generation || current.cursor != sweep.cursor {
                return Ok(());
            }
            match cursor {
                Some(c) => {
                    current.cursor = c.to_owned();
                    t.put(SWEEPS, &key, &current)?;
                }
                None => {
                    t.w(SWEEPS).remove(key.as_slice())?;
                }
            }
            Ok(())
        })
    }

    pub(crate) fn assign_device(
        &self,
        serial: &str,
        a: &Assignment,
        audit: &crate::AuditNote,
    ) -> crate::Result<DeviceEntry> {
        self.update_device(serial, audit, |_, d| {
            d.tenant = a.tenant.clone();
            d.site = a.site.clone();
            d.department = a.department.clone();
            d.asset_tag = a.asset_tag.clone();
            Ok(())
        })
    }

    pub(crate) fn grant_concession(
        &self,
        c: ConcessionEntry,
        audit: &crate::AuditNote,
    ) -> crate::Result<DeviceEntry> {
        self.update_device(&c.serial.clone(), audit, |_, d| {
            d.concession = Some(c.clone());
            Ok(())
        })
    }

    pub(crate) fn record_decision(&self, dec: DecisionCommit) -> crate::Result<()> {
        let order = self.next_order()?;
        self.tx(|t| decision_tx(t, &dec, order))
    }

    pub(crate) fn commit_batch(&self, writes: Vec<Write>) -> Vec<crate::Result<Written>> {
        if writes.len() <= 1 {
            return writes.into_iter().map(|w| self.commit_one(w)).collect();
        }
        let orders = match writes
            .iter()
            .map(|_| self.next_order())
            .collect::<crate::Result<Vec<u64>>>()
        {
            Ok(o) => o,
            Err(_) => return writes.into_iter().map(|w| self.commit_one(w)).collect(),
        };
        let writing = self.write_gate();
        let all = <[Tree] as Transactional<Abort>>::transaction(&self.trees[..], |view| {
            let t = Tx {
                trees: view,
                wrote: std::cell::Cell::new(false),
            };
            let mut out = Vec::with_capacity(writes.len());
            for (w, order) in writes.iter().zip(&orders) {
                t.wrote.set(false);
                match apply_write(&t, w, *order) {
                    Ok(x) => out.push(Ok(x)),
                    // Refused before writing anything: the others go on.
                    Err(ConflictableTransactionError::Abort(
                        a @ (Abort::Rejected(_) | Abort::Conflict),
                    )) if !t.wrote.get() => out.push(Err(a)),
                    // Refused after writing, or broken: the batch is undone
                    // and each write runs alone below.
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        // Each write below takes the gate again on its own.
        drop(writing);
        match all {
            Ok(out) => out
                .into_iter()
                .map(|r| r.map_err(|a| map_tx_error(TransactionError::Abort(a))))
                .collect(),
            Err(_) => writes.into_iter().map(|w| self.commit_one(w)).collect(),
        }
    }

    pub(crate) fn append_audit(&self, audit: &crate::AuditNote) -> crate::Result<()> {
        self.tx(|t| t.audit(audit))
    }

    pub(crate) fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> crate::Result<Vec<crate::AuditRecord>> {
        self.tree(AUDIT)
            .range(after.saturating_add(1).to_be_bytes()..)
            .values()
            .take(limit)
            .map(|v| decode(&v.map_err(unavailable)?, "audit entry"))
            .collect()
    }

    pub(crate) fn audit_head(&self) -> crate::Result<(u64, [u8; 32])> {
        // The newest sequence, then the entry stored at it, which holds its
        // own hash and never changes: a consistent pair without a
        // transaction. (Two keys read apart would pair one entry's sequence
        // with the next one's hash; and a read-only sled transaction pins
        // the log, which deadlocked against sled's IO threads under the
        // conformance suite's concurrent appends.) An append being applied
        // may show its sequence before its entry: read again.
        for _ in 0..1000 {
            let seq = self.count(AUDIT_SEQ)?;
            if seq == 0 {
                return Ok((0, attestd_core::audit::GENESIS));
            }
            if let Some(r) =
                self.read::<crate::AuditRecord>(AUDIT, &seq.to_be_bytes(), "audit entry")?
            {
                let hash = <[u8; 32]>::try_from(r.hash.as_slice())
                    .map_err(|_| corrupt("audit entry hash"))?;
                return Ok((seq, hash));
            }
            std::thread::yield_now();
        }
        Err(corrupt("audit head: no entry at the newest sequence"))
    }

    pub(crate) fn audit_last_checkpoint(&self) -> crate::Result<Option<crate::AuditRecord>> {
        let Some(seq) = self
            .tree(META)
            .get(AUDIT_LAST_CHECKPOINT)
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let seq = <[u8; 8]>::try_from(seq.as_ref()).map_err(|_| corrupt("last checkpoint"))?;
        match self.tree(AUDIT).get(seq).map_err(unavailable)? {
            Some(v) => decode(&v, "audit entry").map(Some),
            None => Err(corrupt("last checkpoint entry")),
        }
    }

    pub(crate) fn list_devices(&self, q: DeviceQuery) -> crate::Result<Page<DeviceEntry>> {
        // Each index keeps (prefix, key) pairs; the serial is the key's tail.
        let (tree, prefixes): (&Tree, Vec<Vec<u8>>) = match &q.filter.index() {
            DeviceIndex::All => (self.tree(DEVICES), vec![Vec::new()]),
            DeviceIndex::Status(set) => (
                self.tree(BY_STATUS),
                set.iter().map(|s| vec![*s as u8]).collect(),
            ),
            DeviceIndex::Tenant(tenant) => {
                let mut p = Vec::new();
                push_len(&mut p, tenant);
                (self.tree(BY_TENANT), vec![p])
            }
            DeviceIndex::Model(model) => (self.tree(BY_MODEL), vec![serial_prefix(model)]),
        };
        let after = match &q.after {
            Some(tok) => Some(unhex(tok).ok_or_else(bad_token)?),
            None => None,
        };
        let mut items = Vec::new();
        let mut examined = 0;
        let mut last: Option<Vec<u8>> = None;
        for prefix in &prefixes {
            let start = match &after {
                Some(a) if a.starts_with(prefix) => successor(a),
                Some(a) if a.as_slice() > prefix.as_slice() => continue,
                _ => prefix.clone(),
            };
            for k in tree.range(start..).keys() {
                let k = k.map_err(unavailable)?;
                if !k.starts_with(prefix) {
                    break;
                }
                if items.len() == q.limit || examined == q.budget {
                    let next = last.map(|l| attestd_core::ids::hex(&l));
                    return Ok(Page { items, next });
                }
                examined += 1;
                let serial = &k[prefix.len()..];
                if let Some(d) = self.read::<DeviceEntry>(DEVICES, serial, "device")? {
                    if q.filter.matches(&d) {
                        items.push(d);
                    }
                }
                last = Some(k.to_vec());
            }
        }
        Ok(Page { items, next: None })
    }

    pub(crate) fn summary(
        &self,
        group: Group,
        tenant: Option<&str>,
    ) -> crate::Result<Vec<SummaryCount>> {
        let mut out: Vec<SummaryCount> = Vec::new();
        for kv in self.tree(SUMMARY).scan_prefix([group_byte(group)]) {
            let (k, v) = kv.map_err(unavailable)?;
            let (key, rest) = read_len(&k[1..]).ok_or_else(|| corrupt("summary key"))?;
            let (t, rest) = read_len(rest).ok_or_else(|| corrupt("summary key"))?;
            let status = *rest.first().ok_or_else(|| corrupt("summary key"))? as i32;
            if tenant.is_some_and(|want| want != t) {
                continue;
            }
            let n = u64_of(&v).ok_or_else(|| corrupt("summary counter"))?;
            match out
                .iter_mut()
                .find(|(k2, s2, _)| *k2 == key && *s2 == status)
            {
                Some(e) => e.2 += n,
                None => out.push((key, status, n)),
            }
        }
        out.sort();
        Ok(out)
    }

    pub(crate) fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> crate::Result<Vec<ChangeEntry>> {
        self.tree(CHANGES)
            .range(after.saturating_add(1).to_be_bytes()..)
            .values()
            .take(limit)
            .map(|v| decode(&v.map_err(unavailable)?, "change"))
            .collect()
    }

    pub(crate) fn change_cursor(&self) -> crate::Result<u64> {
        self.count(SEQ_CHANGES)
    }

    pub(crate) fn change_bounds(&self) -> crate::Result<Option<(u64, u64)>> {
        let first = self.tree(CHANGES).first().map_err(unavailable)?;
        let last = self.tree(CHANGES).last().map_err(unavailable)?;
        Ok(match (first, last) {
            (Some((a, _)), Some((b, _))) => Some((
                u64_of(&a).ok_or_else(|| corrupt("change key"))?,
                u64_of(&b).ok_or_else(|| corrupt("change key"))?,
            )),
            _ => None,
        })
    }

    pub(crate) fn trim_changes(&self, keep: u64, max: usize) -> crate::Result<usize> {
        let Some((first, last)) = self.change_bounds()? else {
            return Ok(0);
        };
        let kept = last - first + 1;
        if kept <= keep {
            return Ok(0);
        }
        let cut = (kept - keep).min(max as u64);
        let mut batch = sled::Batch::default();
        for seq in first..first + cut {
            batch.remove(&seq.to_be_bytes());
        }
        let _writing = self.write_gate();
        self.tree(CHANGES).apply_batch(batch).map_err(unavailable)?;
        Ok(cut as usize)
    }

    pub(crate) fn counts(&self) -> crate::Result<Counts> {
        let mut by_status = [0u64; 7];
        for (_, status, n) in self.summary(Group::All, None)? {
            if let Some(slot) = by_status.get_mut(status as usize) {
                *slot += n;
            }
        }
        Ok(Counts {
            stations: self.count(COUNT_STATIONS)?,
            devices: self.count(COUNT_DEVICES)?,
            records: self.count(COUNT_RECORDS)?,
            evidence: self.count(COUNT_EVIDENCE)?,
            baselines: self.count(COUNT_BASELINES)?,
            by_status,
        })
    }

    pub(crate) fn get_evidence(&self, evidence_id: &str) -> crate::Result<Option<EvidenceEntry>> {
        self.read(EVIDENCE, evidence_id.as_bytes(), "evidence")
    }

    pub(crate) fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<HistoryItem>> {
        self.scan_serial(HISTORY, serial, after, limit, |v| {
            let (kind, body) = v.split_first().ok_or_else(|| corrupt("history entry"))?;
            Ok(match *kind {
                HISTORY_EVIDENCE => {
                    self.read::<EvidenceEntry>(EVIDENCE, body, "evidence")?
                        .map(|mut e| {
                            e.raw = Vec::new();
                            HistoryItem::Evidence(e)
                        })
                }
                HISTORY_RECORD => self.read(RECORDS, body, "record")?.map(HistoryItem::Record),
                HISTORY_REAPPRAISAL => {
                    Some(HistoryItem::Reappraisal(decode(body, "re-appraisal")?))
                }
                HISTORY_DECISION => Some(HistoryItem::Decision(decode(body, "release decision")?)),
                _ => return Err(corrupt("history entry")),
            })
        })
    }

    /// Applies one write of a batch through its own method.
    pub(crate) fn commit_one(&self, w: Write) -> crate::Result<Written> {
        Ok(match w {
            Write::Evidence(c) => Written::Device(self.commit_evidence(c)?),
            Write::Reappraisal(c) => Written::Device(self.commit_reappraisal(c)?),
            Write::Record(c) => Written::Record(self.commit_record(c)?),
            Write::Decision(d) => {
                self.record_decision(d)?;
                Written::Done
            }
        })
    }

    /// Makes every write that returned before this call durable.
    pub(crate) fn flush(&self) -> crate::Result<()> {
        self.db.flush().map(|_| ()).map_err(unavailable)
    }

    /// A consistent copy of every tree for a backup (see
    /// [`crate::Store::backup`]). Holds the write gate exclusively: writes
    /// in progress finish first, later ones wait until the copy is made.
    /// Under it, one transaction appends `note` and the checkpoint `seal`
    /// signs of the head after it; a flush makes both durable (with every
    /// write applied before), so the copy never holds what a crash could
    /// still take from the database; then every tree is copied. Copying
    /// takes references to sled's buffers, not copies of the bytes, so the
    /// pause is short; reads go on throughout.
    pub(crate) fn snapshot(
        &self,
        note: &crate::AuditNote,
        seal: &crate::backup::Seal,
    ) -> crate::Result<crate::backup::Snapshot> {
        use attestd_core::audit::{Checkpoint, CHECKPOINT_ACTION};
        let asked = std::time::Instant::now();
        let paused = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let checkpoint = self.tx_ungated(|t| {
            t.audit(note)?;
            let seq = t
                .t(META)
                .get(AUDIT_SEQ)?
                .and_then(|v| u64_of(&v))
                .ok_or_else(|| tx_corrupt("audit sequence"))?;
            let head = t
                .t(META)
                .get(AUDIT_HEAD)?
                .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
                .ok_or_else(|| tx_corrupt("audit head"))?;
            let c = seal(seq, head);
            if c.action != CHECKPOINT_ACTION {
                return Err(tx_corrupt("backup seal (not a checkpoint)"));
            }
            t.audit(&c)?;
            Ok(c)
        })?;
        self.flush()?;
        let (audit_seq, audit_hash) = self.audit_head()?;
        let mut tables = Vec::with_capacity(TREE_NAMES.len());
        let mut entries = 0u64;
        for (name, tree) in TREE_NAMES.iter().zip(&self.trees) {
            let copied = tree
                .iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            entries += copied.len() as u64;
            tables.push(crate::backup::Table {
                name: (*name).to_owned(),
                entries: copied,
            });
        }
        drop(paused);
        let writes_paused = asked.elapsed();
        Ok(crate::backup::Snapshot {
            header: crate::backup::Header {
                store: "sled".into(),
                store_format: format::STORE_FORMAT,
                created_at_ms: checkpoint.at_ms,
                audit_seq,
                audit_hash,
                checkpoint_key: Checkpoint::parse(&checkpoint.details)
                    .map(|c| c.key_id)
                    .unwrap_or_default(),
                tables: tables.len() as u64,
                entries,
                writes_paused_us: u64::try_from(writes_paused.as_micros()).unwrap_or(u64::MAX),
            },
            tables,
        })
    }
}
