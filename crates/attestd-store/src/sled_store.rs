//! The embedded backend: sled 0.34.7.
//!
//! Trees: `stations` (id), `devices` (serial), `keys` (key id -> serial),
//! `records` (record id), `record_index` (serial 0x00 order -> record id),
//! `evidence` (evidence id), `history` (serial 0x00 order -> kind byte + id),
//! `meta` (counters), `baselines` (model 0x00 version), `baseline_active`
//! (model -> version), `baseline_pending` (effective_at, model 0x00 version),
//! `by_model` / `by_station` (key 0x00 serial: the re-appraisal indices),
//! `dirty` (serial), `due` (time, serial), `sweeps`. Every domain write is one
//! multi-tree transaction, so a crash leaves all of it or none of it. Orders
//! come from `generate_id`, which is unique and increasing, so per-unit lists
//! come back in the order writes were accepted without a hot counter key.

use std::path::Path;

use attestd_core::{reject, Rejection};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use crate::{
    BaselineEntry, Counts, DeviceEntry, EvidenceCommit, EvidenceEntry, HistoryItem, Page,
    ReappraisalCommit, RecordCommit, RecordEntry, RecordOutcome, StationEntry, Store, StoreError,
    SweepEntry, UnitVerdict, STATUS_UNKNOWN, SWEEP_MODEL, SWEEP_STATION,
};

const HISTORY_EVIDENCE: u8 = b'e';
const HISTORY_RECORD: u8 = b'r';

const COUNT_STATIONS: &[u8] = b"count/stations";
const COUNT_DEVICES: &[u8] = b"count/devices";
const COUNT_RECORDS: &[u8] = b"count/records";
const COUNT_EVIDENCE: &[u8] = b"count/evidence";
const COUNT_BASELINES: &[u8] = b"count/baselines";

fn status_key(status: i32) -> Vec<u8> {
    format!("status/{status}").into_bytes()
}

/// Settings of the sled backend.
#[derive(Clone, Debug)]
pub struct SledConfig {
    /// Bytes of page cache; sled's default is 1 GiB, too much to leave implicit.
    pub cache_capacity: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity: 256 * 1024 * 1024,
        }
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    stations: Tree,
    devices: Tree,
    keys: Tree,
    records: Tree,
    record_index: Tree,
    evidence: Tree,
    history: Tree,
    meta: Tree,
    baselines: Tree,
    baseline_active: Tree,
    baseline_pending: Tree,
    by_model: Tree,
    by_station: Tree,
    dirty: Tree,
    due: Tree,
    sweeps: Tree,
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

fn tx_decode<M: Message + Default>(bytes: &[u8], what: &str) -> TxResult<M> {
    M::decode(bytes)
        .map_err(|_| ConflictableTransactionError::Abort(Abort::Corrupt(what.to_owned())))
}

fn tx_get<M: Message + Default>(
    t: &TransactionalTree,
    key: &[u8],
    what: &str,
) -> TxResult<Option<M>> {
    match t.get(key)? {
        Some(v) => tx_decode(&v, what).map(Some),
        None => Ok(None),
    }
}

fn add(meta: &TransactionalTree, key: &[u8], delta: i64) -> TxResult<()> {
    let n = match meta.get(key)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
        None => 0,
    };
    meta.insert(key, &n.saturating_add_signed(delta).to_be_bytes())?;
    Ok(())
}

fn bump(meta: &TransactionalTree, key: &[u8]) -> TxResult<()> {
    add(meta, key, 1)
}

/// `key 0x00 serial`: an entry of a re-appraisal index.
fn pair_key(key: &str, serial: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + serial.len() + 1);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
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

/// Applies a new verdict to `d`, keeping the status counters and the due
/// index in step. Call inside a transaction that writes `d` afterwards.
fn apply_verdict(
    d: &mut DeviceEntry,
    v: &UnitVerdict,
    meta: &TransactionalTree,
    due: &TransactionalTree,
) -> TxResult<()> {
    if d.status != v.status {
        if d.status != 0 {
            add(meta, &status_key(d.status), -1)?;
        }
        add(meta, &status_key(v.status), 1)?;
        d.status = v.status;
        d.status_changed_at = v.now_ms;
    }
    if d.next_check_at != v.next_check_at {
        if d.next_check_at != 0 {
            due.remove(due_key(d.next_check_at, &d.serial))?;
        }
        if v.next_check_at != 0 {
            due.insert(due_key(v.next_check_at, &d.serial), &[])?;
        }
        d.next_check_at = v.next_check_at;
    }
    if v.appraisal.is_some() {
        d.appraisal = v.appraisal.clone();
    }
    Ok(())
}

fn active_version(active: &TransactionalTree, model: &str) -> TxResult<Option<u64>> {
    Ok(active
        .get(model.as_bytes())?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

/// Opens a sweep of `kind` over `key` (restarting one already open).
fn open_sweep(sweeps: &TransactionalTree, kind: i32, key: &str, reason: &str) -> TxResult<()> {
    let s = SweepEntry {
        kind,
        key: key.to_owned(),
        cursor: String::new(),
        reason: reason.to_owned(),
    };
    sweeps.insert(sweep_key(kind, key), s.encode_to_vec())?;
    Ok(())
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

/// Page tokens are the decimal order of the last item returned.
fn parse_order(token: &str) -> crate::Result<u64> {
    token.parse().map_err(|_| {
        StoreError::Rejected(reject!(
            FieldInvalid,
            "page_token: not a token this server issued"
        ))
    })
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Start-up work is bounded:
    /// nothing here walks a tree.
    pub fn open(dir: &Path, cfg: &SledConfig) -> crate::Result<SledStore> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(unavailable)?;
        let t = |name: &str| db.open_tree(name).map_err(unavailable);
        Ok(SledStore {
            stations: t("stations")?,
            devices: t("devices")?,
            keys: t("keys")?,
            records: t("records")?,
            record_index: t("record_index")?,
            evidence: t("evidence")?,
            history: t("history")?,
            meta: t("meta")?,
            baselines: t("baselines")?,
            baseline_active: t("baseline_active")?,
            baseline_pending: t("baseline_pending")?,
            by_model: t("by_model")?,
            by_station: t("by_station")?,
            dirty: t("dirty")?,
            due: t("due")?,
            sweeps: t("sweeps")?,
            db,
        })
    }

    fn next_order(&self) -> crate::Result<u64> {
        self.db.generate_id().map_err(unavailable)
    }

    fn read<M: Message + Default>(
        &self,
        tree: &Tree,
        key: &[u8],
        what: &str,
    ) -> crate::Result<Option<M>> {
        match tree.get(key).map_err(unavailable)? {
            Some(v) => decode(&v, what).map(Some),
            None => Ok(None),
        }
    }

    /// Scans `index` under `serial` after the order in `after`, resolving each
    /// entry with `resolve`; returns up to `limit` items.
    fn scan_serial<T>(
        &self,
        index: &Tree,
        serial: &str,
        after: Option<&str>,
        limit: usize,
        mut resolve: impl FnMut(&[u8]) -> crate::Result<Option<T>>,
    ) -> crate::Result<Page<T>> {
        let prefix = serial_prefix(serial);
        let start = match after {
            Some(tok) => indexed_key(serial, parse_order(tok)?.saturating_add(1)),
            None => prefix.clone(),
        };
        let mut items = Vec::new();
        let mut next = None;
        for kv in index.range(start..) {
            let (k, v) = kv.map_err(unavailable)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if items.len() == limit {
                break;
            }
            if let Some(item) = resolve(&v)? {
                items.push(item);
            }
            let order_bytes: [u8; 8] = k[prefix.len()..]
                .try_into()
                .map_err(|_| corrupt("index key"))?;
            next = Some(u64::from_be_bytes(order_bytes));
        }
        // Only hand out a token when something follows.
        let next = match next {
            Some(o) if items.len() == limit => {
                let more = index
                    .range(indexed_key(serial, o.saturating_add(1))..)
                    .next()
                    .transpose()
                    .map_err(unavailable)?
                    .is_some_and(|(k, _)| k.starts_with(&prefix));
                more.then(|| o.to_string())
            }
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn count(&self, key: &[u8]) -> crate::Result<u64> {
        Ok(match self.meta.get(key).map_err(unavailable)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("counter"))?),
            None => 0,
        })
    }
}

impl Store for SledStore {
    fn register_station(&self, station: StationEntry) -> crate::Result<StationEntry> {
        let key = station.station_id.clone();
        (&self.stations, &self.meta)
            .transaction(|(stations, meta)| {
                if stations.get(key.as_bytes())?.is_some() {
                    return abort(Abort::Rejected(reject!(
                        StationExists,
                        "station {key} is already registered"
                    )));
                }
                stations.insert(key.as_bytes(), station.encode_to_vec())?;
                bump(meta, COUNT_STATIONS)?;
                Ok(())
            })
            .map_err(map_tx_error)?;
        Ok(station)
    }

    fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        at: i64,
    ) -> crate::Result<StationEntry> {
        (&self.stations, &self.sweeps)
            .transaction(|(stations, sweeps)| {
                let Some(mut s) =
                    tx_get::<StationEntry>(stations, station_id.as_bytes(), "station")?
                else {
                    return abort(Abort::Rejected(reject!(
                        StationNotFound,
                        "station {station_id} is not registered"
                    )));
                };
                if !s.revoked {
                    s.revoked = true;
                    s.revoked_reason = reason.to_owned();
                    s.revoked_at = at;
                    stations.insert(station_id.as_bytes(), s.encode_to_vec())?;
                    // Every unit relying on its records is re-appraised.
                    open_sweep(sweeps, SWEEP_STATION, station_id, "station revoked")?;
                }
                Ok(s)
            })
            .map_err(map_tx_error)
    }

    fn get_station(&self, station_id: &str) -> crate::Result<Option<StationEntry>> {
        self.read(&self.stations, station_id.as_bytes(), "station")
    }

    fn list_stations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<StationEntry>> {
        let iter = match after {
            // Station ids never contain 0x00, so id + 0x00 is the next key after id.
            Some(a) => self.stations.range(serial_prefix(a)..),
            None => self.stations.iter(),
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

    fn get_device(&self, serial: &str) -> crate::Result<Option<DeviceEntry>> {
        self.read(&self.devices, serial.as_bytes(), "device")
    }

    fn commit_record(&self, commit: RecordCommit) -> crate::Result<RecordOutcome> {
        let order = self.next_order()?;
        let entry = &commit.entry;
        let trees = (
            &self.stations,
            &self.devices,
            &self.keys,
            &self.records,
            &self.record_index,
            &self.history,
            &self.meta,
            &self.by_model,
            &self.by_station,
            &self.dirty,
        );
        trees
            .transaction(
                |(stations, devices, keys, records, record_index, history, meta, by_model, by_station, dirty)| {
                    if let Some(existing) = tx_get::<RecordEntry>(records, entry.record_id.as_bytes(), "record")? {
                        return Ok(RecordOutcome::Duplicate(existing));
                    }
                    let sid = entry.station_id.as_str();
                    let Some(mut station) = tx_get::<StationEntry>(stations, sid.as_bytes(), "station")? else {
                        return abort(Abort::Rejected(reject!(UnknownStation, "station {sid} is not registered")));
                    };
                    if station.revoked {
                        return abort(Abort::Rejected(reject!(StationRevoked, "station {sid} is revoked")));
                    }
                    if station.has_sequence && entry.sequence <= station.last_sequence {
                        return abort(Abort::Rejected(reject!(
                            SequenceRegressed,
                            "sequence {} of station {sid} is not above its last accepted sequence {}",
                            entry.sequence,
                            station.last_sequence
                        )));
                    }
                    let serial = entry.serial.as_str();
                    let existing = tx_get::<DeviceEntry>(devices, serial.as_bytes(), "device")?;
                    let mut device = match (&commit.enrollment, existing) {
                        (Some(en), existing) => {
                            if let Some(owner) = keys.get(en.key_id.as_bytes())? {
                                if owner.as_ref() != serial.as_bytes() {
                                    return abort(Abort::Rejected(reject!(
                                        KeyInUse,
                                        "device_key: this key is already enrolled for another unit"
                                    )));
                                }
                            }
                            let mut d = match existing {
                                None => {
                                    bump(meta, COUNT_DEVICES)?;
                                    add(meta, &status_key(STATUS_UNKNOWN), 1)?;
                                    DeviceEntry {
                                        serial: serial.to_owned(),
                                        enrolled_at: entry.received_at,
                                        status: STATUS_UNKNOWN,
                                        status_changed_at: entry.received_at,
                                        ..DeviceEntry::default()
                                    }
                                }
                                Some(d) if d.spki_der == en.spki_der => d,
                                Some(d) => {
                                    let rekey_ok = station.allow_rekey
                                        && en.supersedes.as_deref() == Some(d.provisioning_record_id.as_str());
                                    if !rekey_ok {
                                        return abort(Abort::Rejected(reject!(
                                            SerialEnrolled,
                                            "serial {serial} is enrolled with another key; a re-key needs \
                                             \"supersedes\": \"{}\" from a station allowed to re-key",
                                            d.provisioning_record_id
                                        )));
                                    }
                                    let old_kid = attestd_core::keys::PublicKey::from_spki_der(
                                        &d.spki_der,
                                        attestd_core::Reason::FieldInvalid,
                                        "stored key",
                                    )
                                    .map(|k| k.key_id())
                                    .map_err(|_| ConflictableTransactionError::Abort(Abort::Corrupt("device key".into())))?;
                                    keys.remove(old_kid.as_bytes())?;
                                    d
                                }
                            };
                            if !d.model.is_empty() && d.model != en.model {
                                by_model.remove(pair_key(&d.model, serial))?;
                            }
                            by_model.insert(pair_key(&en.model, serial), &[])?;
                            keys.insert(en.key_id.as_bytes(), serial.as_bytes())?;
                            let old_station = std::mem::take(&mut d.provisioning_station_id);
                            d.provisioning_station_id = sid.to_owned();
                            unlink_station(by_station, &old_station, &d, serial)?;
                            d.with_enrollment(en, &entry.record_id)
                        }
                        (None, Some(mut d)) => {
                            d.calibration_record_id = entry.record_id.clone();
                            let old_station = std::mem::take(&mut d.calibration_station_id);
                            d.calibration_station_id = sid.to_owned();
                            unlink_station(by_station, &old_station, &d, serial)?;
                            d
                        }
                        (None, None) => {
                            return abort(Abort::Rejected(reject!(
                                DeviceNotFound,
                                "serial {serial} is not enrolled"
                            )));
                        }
                    };
                    by_station.insert(pair_key(sid, serial), &[])?;
                    // The unit's verdict must follow its new record.
                    dirty.insert(serial.as_bytes(), &[])?;
                    device.revision += 1;
                    devices.insert(serial.as_bytes(), device.encode_to_vec())?;
                    station.last_sequence = entry.sequence;
                    station.has_sequence = true;
                    stations.insert(sid.as_bytes(), station.encode_to_vec())?;
                    records.insert(entry.record_id.as_bytes(), entry.encode_to_vec())?;
                    record_index.insert(indexed_key(serial, order), entry.record_id.as_bytes())?;
                    let mut h = vec![HISTORY_RECORD];
                    h.extend_from_slice(entry.record_id.as_bytes());
                    history.insert(indexed_key(serial, order), h)?;
                    bump(meta, COUNT_RECORDS)?;
                    Ok(RecordOutcome::Stored(entry.clone()))
                },
            )
            .map_err(map_tx_error)
    }

    fn get_record(&self, record_id: &str) -> crate::Result<Option<RecordEntry>> {
        self.read(&self.records, record_id.as_bytes(), "record")
    }

    fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<RecordEntry>> {
        self.scan_serial(&self.record_index, serial, after, limit, |id| {
            self.read(&self.records, id, "record")
        })
    }

    fn revoke_device(&self, serial: &str, reason: &str, at: i64) -> crate::Result<DeviceEntry> {
        (&self.devices, &self.dirty)
            .transaction(|(devices, dirty)| {
                let Some(mut d) = tx_get::<DeviceEntry>(devices, serial.as_bytes(), "device")?
                else {
                    return abort(Abort::Rejected(reject!(
                        DeviceNotFound,
                        "serial {serial} is not enrolled"
                    )));
                };
                if !d.revoked {
                    d.revoked = true;
                    d.revoked_reason = reason.to_owned();
                    d.status_changed_at = at;
                    d.revision += 1;
                    devices.insert(serial.as_bytes(), d.encode_to_vec())?;
                    dirty.insert(serial.as_bytes(), &[])?;
                }
                Ok(d)
            })
            .map_err(map_tx_error)
    }

    fn commit_evidence(&self, commit: EvidenceCommit) -> crate::Result<DeviceEntry> {
        let order = self.next_order()?;
        let entry = &commit.entry;
        let serial = entry.serial.as_str();
        (
            &self.devices,
            &self.evidence,
            &self.history,
            &self.meta,
            &self.due,
            &self.baseline_active,
        )
            .transaction(|(devices, evidence, history, meta, due, active)| {
                let Some(mut d) = tx_get::<DeviceEntry>(devices, serial.as_bytes(), "device")?
                else {
                    return abort(Abort::Rejected(reject!(
                        UnknownDevice,
                        "serial {serial} is not enrolled"
                    )));
                };
                if d.spki_der != commit.spki_der {
                    return abort(Abort::Rejected(reject!(
                        SignatureInvalid,
                        "the key enrolled for {serial} changed while the evidence was checked"
                    )));
                }
                if d.revision != commit.expected_revision
                    || active_version(active, &d.model)? != commit.expected_baseline
                {
                    return abort(Abort::Conflict);
                }
                if evidence.get(entry.evidence_id.as_bytes())?.is_some() {
                    return abort(Abort::Rejected(reject!(
                        Replayed,
                        "this evidence was already accepted"
                    )));
                }
                if commit.deferred && d.has_bootcount && entry.bootcount <= d.highest_bootcount {
                    return abort(Abort::Rejected(reject!(
                        Replayed,
                        "deferred evidence: bootcount {} is not above the highest accepted ({})",
                        entry.bootcount,
                        d.highest_bootcount
                    )));
                }
                if !d.has_bootcount || entry.bootcount > d.highest_bootcount {
                    d.highest_bootcount = entry.bootcount;
                    d.has_bootcount = true;
                }
                d.svns = commit.svns.clone();
                d.firmware = commit.firmware.clone();
                d.calibration_digest = commit.calibration_digest.clone();
                d.evidence_count += 1;
                d.last_evidence_id = entry.evidence_id.clone();
                d.last_seen = entry.received_at;
                apply_verdict(&mut d, &commit.verdict, meta, due)?;
                d.revision += 1;
                devices.insert(serial.as_bytes(), d.encode_to_vec())?;
                evidence.insert(entry.evidence_id.as_bytes(), entry.encode_to_vec())?;
                let mut h = vec![HISTORY_EVIDENCE];
                h.extend_from_slice(entry.evidence_id.as_bytes());
                history.insert(indexed_key(serial, order), h)?;
                bump(meta, COUNT_EVIDENCE)?;
                Ok(d)
            })
            .map_err(map_tx_error)
    }

    fn commit_reappraisal(&self, commit: ReappraisalCommit) -> crate::Result<DeviceEntry> {
        let serial = commit.serial.as_str();
        (
            &self.devices,
            &self.meta,
            &self.due,
            &self.baseline_active,
            &self.dirty,
        )
            .transaction(|(devices, meta, due, active, dirty)| {
                let Some(mut d) = tx_get::<DeviceEntry>(devices, serial.as_bytes(), "device")?
                else {
                    dirty.remove(serial.as_bytes())?;
                    return abort(Abort::Rejected(reject!(
                        DeviceNotFound,
                        "serial {serial} is not enrolled"
                    )));
                };
                if d.revision != commit.expected_revision
                    || active_version(active, &d.model)? != commit.expected_baseline
                {
                    return abort(Abort::Conflict);
                }
                apply_verdict(&mut d, &commit.verdict, meta, due)?;
                d.revision += 1;
                devices.insert(serial.as_bytes(), d.encode_to_vec())?;
                dirty.remove(serial.as_bytes())?;
                Ok(d)
            })
            .map_err(map_tx_error)
    }

    fn publish_baseline(&self, b: BaselineEntry, now_secs: i64) -> crate::Result<bool> {
        let model = b.model.clone();
        (
            &self.baselines,
            &self.baseline_active,
            &self.baseline_pending,
            &self.sweeps,
            &self.meta,
        )
            .transaction(|(baselines, active, pending, sweeps, meta)| {
                let latest_key = [b"latest/".as_slice(), model.as_bytes()].concat();
                let latest = meta
                    .get(&latest_key)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map(u64::from_be_bytes);
                if let Some(l) = latest {
                    if b.version <= l {
                        return abort(Abort::Rejected(reject!(
                            VersionNotIncreasing,
                            "version: {} is not above the latest published version {l} of {model}",
                            b.version
                        )));
                    }
                }
                meta.insert(latest_key, &b.version.to_be_bytes())?;
                baselines.insert(baseline_key(&model, b.version), b.encode_to_vec())?;
                bump(meta, COUNT_BASELINES)?;
                if b.effective_at <= now_secs {
                    activate(active, sweeps, &model, b.version)?;
                    Ok(true)
                } else {
                    let mut k = (b.effective_at.max(0) as u64).to_be_bytes().to_vec();
                    k.extend_from_slice(&baseline_key(&model, b.version));
                    pending.insert(k, &[])?;
                    Ok(false)
                }
            })
            .map_err(map_tx_error)
    }

    fn get_baseline(&self, model: &str, version: u64) -> crate::Result<Option<BaselineEntry>> {
        self.read(&self.baselines, &baseline_key(model, version), "baseline")
    }

    fn active_baseline_version(&self, model: &str) -> crate::Result<Option<u64>> {
        Ok(self
            .baseline_active
            .get(model.as_bytes())
            .map_err(unavailable)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<BaselineEntry>> {
        let prefix = serial_prefix(model);
        let end = match after {
            Some(tok) => baseline_key(model, parse_order(tok)?),
            None => {
                let mut e = prefix.clone();
                e.extend_from_slice(&[0xff; 8]);
                e.push(0);
                e
            }
        };
        let mut items: Vec<BaselineEntry> = Vec::new();
        let mut more = false;
        for kv in self.baselines.range(prefix.clone()..end).rev() {
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

    fn activate_due_baselines(&self, now_secs: i64) -> crate::Result<Vec<(String, u64)>> {
        let end = ((now_secs.max(0) as u64) + 1).to_be_bytes();
        let due: Vec<sled::IVec> = self
            .baseline_pending
            .range(..end.as_slice())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let mut activated = Vec::new();
        for k in due {
            let rest = &k[8..];
            let Some(sep) = rest.iter().position(|b| *b == 0) else {
                return Err(corrupt("pending baseline key"));
            };
            let model = String::from_utf8(rest[..sep].to_vec())
                .map_err(|_| corrupt("pending baseline key"))?;
            let version = u64::from_be_bytes(
                rest[sep + 1..]
                    .try_into()
                    .map_err(|_| corrupt("pending baseline key"))?,
            );
            (&self.baseline_pending, &self.baseline_active, &self.sweeps)
                .transaction(|(pending, active, sweeps)| {
                    pending.remove(&k)?;
                    activate(active, sweeps, &model, version)?;
                    Ok(())
                })
                .map_err(map_tx_error)?;
            activated.push((model, version));
        }
        Ok(activated)
    }

    fn dirty_units(&self, limit: usize) -> crate::Result<Vec<String>> {
        self.dirty
            .iter()
            .keys()
            .take(limit)
            .map(|k| {
                let k = k.map_err(unavailable)?;
                String::from_utf8(k.to_vec()).map_err(|_| corrupt("dirty key"))
            })
            .collect()
    }

    fn due_units(&self, now_secs: i64, limit: usize) -> crate::Result<Vec<String>> {
        let end = ((now_secs.max(0) as u64) + 1).to_be_bytes();
        self.due
            .range(..end.as_slice())
            .keys()
            .take(limit)
            .map(|k| {
                let k = k.map_err(unavailable)?;
                String::from_utf8(k[8..].to_vec()).map_err(|_| corrupt("due key"))
            })
            .collect()
    }

    fn sweeps(&self) -> crate::Result<Vec<SweepEntry>> {
        self.sweeps
            .iter()
            .values()
            .map(|v| decode(&v.map_err(unavailable)?, "sweep"))
            .collect()
    }

    fn sweep_units(&self, sweep: &SweepEntry, limit: usize) -> crate::Result<Vec<String>> {
        let index = match sweep.kind {
            SWEEP_MODEL => &self.by_model,
            SWEEP_STATION => &self.by_station,
            _ => return Err(corrupt("sweep kind")),
        };
        let prefix = serial_prefix(&sweep.key);
        let start = if sweep.cursor.is_empty() {
            prefix.clone()
        } else {
            // Serials never contain 0x00: cursor + 0x00 is the next key.
            let mut k = pair_key(&sweep.key, &sweep.cursor);
            k.push(0);
            k
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

    fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> crate::Result<()> {
        let key = sweep_key(sweep.kind, &sweep.key);
        self.sweeps
            .transaction(|sweeps| {
                // A sweep restarted meanwhile (new cursor "") must not be closed.
                let Some(current) = tx_get::<SweepEntry>(sweeps, &key, "sweep")? else {
                    return Ok(());
                };
                if current.cursor != sweep.cursor {
                    return Ok(());
                }
                match cursor {
                    Some(c) => {
                        let mut next = current;
                        next.cursor = c.to_owned();
                        sweeps.insert(key.as_slice(), next.encode_to_vec())?;
                    }
                    None => {
                        sweeps.remove(key.as_slice())?;
                    }
                }
                Ok(())
            })
            .map_err(map_tx_error)
    }

    fn counts(&self) -> crate::Result<Counts> {
        let mut by_status = [0u64; 7];
        for (i, n) in by_status.iter_mut().enumerate().skip(1) {
            *n = self.count(&status_key(i as i32))?;
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

    fn get_evidence(&self, evidence_id: &str) -> crate::Result<Option<EvidenceEntry>> {
        self.read(&self.evidence, evidence_id.as_bytes(), "evidence")
    }

    fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Page<HistoryItem>> {
        self.scan_serial(&self.history, serial, after, limit, |v| {
            let (kind, id) = v.split_first().ok_or_else(|| corrupt("history entry"))?;
            Ok(match *kind {
                HISTORY_EVIDENCE => self
                    .read::<EvidenceEntry>(&self.evidence, id, "evidence")?
                    .map(|mut e| {
                        e.raw = Vec::new();
                        HistoryItem::Evidence(e)
                    }),
                HISTORY_RECORD => self
                    .read(&self.records, id, "record")?
                    .map(HistoryItem::Record),
                _ => return Err(corrupt("history entry")),
            })
        })
    }

    fn flush(&self) -> crate::Result<()> {
        self.db.flush().map(|_| ()).map_err(unavailable)
    }
}

/// Makes `version` the model's active baseline unless a newer one already
/// is, and queues a sweep of the model's units.
fn activate(
    active: &TransactionalTree,
    sweeps: &TransactionalTree,
    model: &str,
    version: u64,
) -> TxResult<()> {
    if active_version(active, model)?.is_some_and(|v| v >= version) {
        return Ok(());
    }
    active.insert(model.as_bytes(), &version.to_be_bytes())?;
    open_sweep(
        sweeps,
        SWEEP_MODEL,
        model,
        &format!("baseline {model} v{version} active"),
    )
}

/// Removes `serial` from `station`'s index unless the unit still relies on
/// that station through its other record.
fn unlink_station(
    by_station: &TransactionalTree,
    station: &str,
    d: &DeviceEntry,
    serial: &str,
) -> TxResult<()> {
    if !station.is_empty()
        && station != d.provisioning_station_id
        && station != d.calibration_station_id
    {
        by_station.remove(pair_key(station, serial))?;
    }
    Ok(())
}

impl DeviceEntry {
    fn with_enrollment(mut self, en: &crate::Enrollment, record_id: &str) -> DeviceEntry {
        self.model = en.model.clone();
        self.hw_version = en.hw_version.clone();
        self.spki_der = en.spki_der.clone();
        self.provisioning_record_id = record_id.to_owned();
        self
    }
}
