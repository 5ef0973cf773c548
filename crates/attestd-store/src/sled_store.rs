//! The embedded backend: sled 0.34.7.
//!
//! Trees: `stations` (id), `devices` (serial), `keys` (key id -> serial),
//! `records` (record id), `record_index` (serial 0x00 order -> record id),
//! `evidence` (evidence id), `history` (serial 0x00 order -> kind byte + id),
//! `meta` (counters). Every domain write is one multi-tree transaction, so a
//! crash leaves all of it or none of it. Orders come from `generate_id`,
//! which is unique and increasing, so per-unit lists come back in the order
//! writes were accepted without a hot counter key.

use std::path::Path;

use attestd_core::{reject, Rejection};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use crate::{
    Counts, DeviceEntry, EvidenceCommit, EvidenceEntry, HistoryItem, Page, RecordCommit,
    RecordEntry, RecordOutcome, StationEntry, Store, StoreError,
};

const HISTORY_EVIDENCE: u8 = b'e';
const HISTORY_RECORD: u8 = b'r';

const COUNT_STATIONS: &[u8] = b"count/stations";
const COUNT_DEVICES: &[u8] = b"count/devices";
const COUNT_RECORDS: &[u8] = b"count/records";
const COUNT_EVIDENCE: &[u8] = b"count/evidence";

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

fn bump(meta: &TransactionalTree, key: &[u8]) -> TxResult<()> {
    let n = match meta.get(key)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
        None => 0,
    };
    meta.insert(key, &(n + 1).to_be_bytes())?;
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
        self.stations
            .transaction(|stations| {
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
        );
        trees
            .transaction(|(stations, devices, keys, records, record_index, history, meta)| {
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
                let device = match (&commit.enrollment, existing) {
                    (Some(en), existing) => {
                        if let Some(owner) = keys.get(en.key_id.as_bytes())? {
                            if owner.as_ref() != serial.as_bytes() {
                                return abort(Abort::Rejected(reject!(
                                    KeyInUse,
                                    "device_key: this key is already enrolled for another unit"
                                )));
                            }
                        }
                        match existing {
                            None => {
                                bump(meta, COUNT_DEVICES)?;
                                DeviceEntry {
                                    serial: serial.to_owned(),
                                    enrolled_at: entry.received_at,
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
                        }
                        .with_enrollment(en, &entry.record_id)
                    }
                    (None, Some(mut d)) => {
                        d.calibration_record_id = entry.record_id.clone();
                        d
                    }
                    (None, None) => {
                        return abort(Abort::Rejected(reject!(
                            DeviceNotFound,
                            "serial {serial} is not enrolled"
                        )));
                    }
                };
                if let Some(en) = &commit.enrollment {
                    keys.insert(en.key_id.as_bytes(), serial.as_bytes())?;
                }
                let mut device = device;
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
            })
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

    fn commit_evidence(&self, commit: EvidenceCommit) -> crate::Result<DeviceEntry> {
        let order = self.next_order()?;
        let entry = &commit.entry;
        let serial = entry.serial.as_str();
        (&self.devices, &self.evidence, &self.history, &self.meta)
            .transaction(|(devices, evidence, history, meta)| {
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
                if d.revision != commit.expected_revision {
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
                d.evidence_count += 1;
                d.last_evidence_id = entry.evidence_id.clone();
                d.last_seen = entry.received_at;
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

    fn counts(&self) -> crate::Result<Counts> {
        Ok(Counts {
            stations: self.count(COUNT_STATIONS)?,
            devices: self.count(COUNT_DEVICES)?,
            records: self.count(COUNT_RECORDS)?,
            evidence: self.count(COUNT_EVIDENCE)?,
        })
    }

    fn flush(&self) -> crate::Result<()> {
        self.db.flush().map(|_| ()).map_err(unavailable)
    }
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
