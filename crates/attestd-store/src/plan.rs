//! The rules of every domain write, neutral of the storage engine.
//!
//! A backend reads what a write depends on (the unit, the station, the
//! model's active baseline, whether the id is already stored), calls the
//! `admit_*` function here, and applies the plan it returns inside one
//! transaction. The plan says what changes: the unit before and after, and
//! through [`unit_delta`] every index, counter and change-feed entry that
//! follows from that change. So the station sequence, the re-key rules, one
//! key per unit, boot-counter replay and the upkeep of derived state are
//! decided once, here, and proved once, by the conformance suite that runs
//! on every backend; backends only read and apply.

use std::borrow::Cow;

use attestd_core::{reject, Rejection};

use crate::{
    AuditNote, BaselineEntry, ChangeEntry, DecisionCommit, DeviceEntry, Enrollment, EvidenceCommit,
    FlagCommit, Group, ReappraisalCommit, ReappraisalEntry, RecordCommit, RecordEntry,
    RecordOutcome, StationEntry, UnitVerdict, STATUS_UNKNOWN, SWEEP_DIGEST, SWEEP_MODEL,
};

/// Why a write was not applied; nothing was written.
#[derive(Debug)]
pub enum Refusal {
    /// A domain rule refused it.
    Rejected(Rejection),
    /// What the caller decided on changed: re-read, decide again.
    Conflict,
    /// Stored data is damaged (names what).
    Damaged(String),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Refusal {
        Refusal::Rejected(r)
    }
}

impl From<Refusal> for crate::StoreError {
    fn from(r: Refusal) -> crate::StoreError {
        match r {
            Refusal::Rejected(r) => crate::StoreError::Rejected(r),
            Refusal::Conflict => crate::StoreError::Conflict,
            Refusal::Damaged(what) => {
                crate::StoreError::Unavailable(format!("stored data is damaged: {what}"))
            }
        }
    }
}

pub(crate) type Admit<T> = std::result::Result<T, Refusal>;

/// One summary counter: which group, the group's key, the tenant, the status.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SummaryKey {
    pub group: Group,
    pub key: String,
    pub tenant: String,
    pub status: i32,
}

/// The firmware a unit reports as one group key: "name=version" pairs, sorted.
pub(crate) fn firmware_key(d: &DeviceEntry) -> String {
    let mut parts: Vec<String> = d
        .firmware
        .iter()
        .map(|f| format!("{}={}", f.name, f.version))
        .collect();
    parts.sort();
    parts.join(",")
}

/// The counters a unit is counted in (none before its first status).
pub(crate) fn summary_keys(d: &DeviceEntry) -> Vec<SummaryKey> {
    if d.status == 0 {
        return Vec::new();
    }
    let k = |group, key: String| SummaryKey {
        group,
        key,
        tenant: d.tenant.clone(),
        status: d.status,
    };
    vec![
        k(Group::All, String::new()),
        k(Group::Model, d.model.clone()),
        k(Group::Site, d.site.clone()),
        k(Group::Firmware, firmware_key(d)),
    ]
}

/// The firmware digests a unit last reported, in hex, sorted, without repeats.
pub(crate) fn firmware_digests(d: &DeviceEntry) -> Vec<String> {
    let mut out: Vec<String> = d
        .firmware
        .iter()
        .map(|f| attestd_core::ids::hex(&f.digest))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A value before and after a change, when it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Moved<T> {
    pub old: T,
    pub new: T,
}

fn moved<T: PartialEq + Clone>(old: T, new: T) -> Option<Moved<T>> {
    (old != new).then_some(Moved { old, new })
}

/// Everything derived from a unit that a write of the unit changes. Empty
/// strings and zeros mean "not indexed" (no status yet, no tenant, no due time).
#[derive(Clone, Debug, Default)]
pub(crate) struct UnitDelta {
    /// Counters to change, each by +1 or -1.
    pub summary: Vec<(SummaryKey, i64)>,
    pub status: Option<Moved<i32>>,
    pub tenant: Option<Moved<String>>,
    pub model: Option<Moved<String>>,
    pub digests_removed: Vec<String>,
    pub digests_added: Vec<String>,
    pub due: Option<Moved<i64>>,
    /// The change-feed entry of a status change; its `seq` is 0, assigned by
    /// the backend in commit order.
    pub change: Option<ChangeEntry>,
}

/// What a write of `new` (over `old`, absent for a new unit) changes beside
/// the unit itself.
pub(crate) fn unit_delta(old: Option<&DeviceEntry>, new: &DeviceEntry) -> UnitDelta {
    let old_keys = old.map(summary_keys).unwrap_or_default();
    let new_keys = summary_keys(new);
    let mut summary: Vec<(SummaryKey, i64)> = old_keys
        .iter()
        .filter(|k| !new_keys.contains(k))
        .map(|k| (k.clone(), -1))
        .collect();
    summary.extend(
        new_keys
            .iter()
            .filter(|k| !old_keys.contains(k))
            .map(|k| (k.clone(), 1)),
    );
    let old_digests = old.map(firmware_digests).unwrap_or_default();
    let new_digests = firmware_digests(new);
    let old_status = old.map_or(0, |o| o.status);
    let change = (old_status != new.status).then(|| ChangeEntry {
        seq: 0,
        serial: new.serial.clone(),
        old_status,
        new_status: new.status,
        at: new.status_changed_at,
        model: new.model.clone(),
        tenant: new.tenant.clone(),
        site: new.site.clone(),
        reasons: new
            .appraisal
            .as_ref()
            .map(|a| a.findings.iter().map(|f| f.code.clone()).collect())
            .unwrap_or_default(),
    });
    UnitDelta {
        summary,
        status: moved(old_status, new.status),
        tenant: moved(
            old.map_or(String::new(), |o| o.tenant.clone()),
            new.tenant.clone(),
        ),
        model: moved(
            old.map_or(String::new(), |o| o.model.clone()),
            new.model.clone(),
        ),
        digests_removed: old_digests
            .iter()
            .filter(|d| !new_digests.contains(d))
            .cloned()
            .collect(),
        digests_added: new_digests
            .iter()
            .filter(|d| !old_digests.contains(d))
            .cloned()
            .collect(),
        due: moved(old.map_or(0, |o| o.next_check_at), new.next_check_at),
        change,
    }
}

/// Applies a verdict to a unit (status, due time, appraisal).
pub(crate) fn apply_verdict(d: &mut DeviceEntry, v: &UnitVerdict) {
    if d.status != v.status {
        d.status = v.status;
        d.status_changed_at = v.now_ms;
    }
    d.next_check_at = v.next_check_at;
    d.calibration_due_at = v.calibration_due_at;
    if v.appraisal.is_some() {
        d.appraisal = v.appraisal.clone();
    }
}

/// Whether two states of a unit carry the same verdict, ignoring when the
/// appraisal was computed.
pub(crate) fn same_verdict(a: &DeviceEntry, b: &DeviceEntry) -> bool {
    let strip = |d: &DeviceEntry| {
        d.appraisal.clone().map(|mut x| {
            x.appraised_at = 0;
            x
        })
    };
    a.status == b.status
        && a.next_check_at == b.next_check_at
        && a.calibration_due_at == b.calibration_due_at
        && strip(a) == strip(b)
}

/// The unit a decision was made on must still be the stored one.
fn check_current(
    d: &DeviceEntry,
    active: Option<u64>,
    expected_revision: u64,
    expected_baseline: Option<u64>,
) -> Admit<()> {
    if d.revision != expected_revision || active != expected_baseline {
        return Err(Refusal::Conflict);
    }
    Ok(())
}

/// A unit write: the unit before and after.
#[derive(Clone, Debug)]
pub(crate) struct UnitWrite {
    pub old: Option<DeviceEntry>,
    pub new: DeviceEntry,
}

impl UnitWrite {
    pub(crate) fn delta(&self) -> UnitDelta {
        unit_delta(self.old.as_ref(), &self.new)
    }
}

/// Verified evidence, admitted: `device` is the unit (read with the
/// model's `active` baseline), `known` whether the evidence id is stored.
pub(crate) fn admit_evidence(
    device: Option<&DeviceEntry>,
    active: Option<u64>,
    known: bool,
    c: &EvidenceCommit,
) -> Admit<UnitWrite> {
    let entry = &c.entry;
    let serial = entry.serial.as_str();
    let Some(old) = device else {
        return Err(reject!(UnknownDevice, "serial {serial} is not enrolled").into());
    };
    if old.spki_der != c.spki_der {
        return Err(reject!(
            SignatureInvalid,
            "the key enrolled for {serial} changed while the evidence was checked"
        )
        .into());
    }
    check_current(old, active, c.expected_revision, c.expected_baseline)?;
    if known {
        return Err(reject!(Replayed, "this evidence was already accepted").into());
    }
    if c.deferred && old.has_bootcount && entry.bootcount <= old.highest_bootcount {
        return Err(reject!(
            Replayed,
            "deferred evidence: bootcount {} is not above the highest accepted ({})",
            entry.bootcount,
            old.highest_bootcount
        )
        .into());
    }
    let mut d = old.clone();
    if !d.has_bootcount || entry.bootcount > d.highest_bootcount {
        d.highest_bootcount = entry.bootcount;
        d.has_bootcount = true;
    }
    d.svns = c.svns.clone();
    d.firmware = c.firmware.clone();
    d.calibration_digest = c.calibration_digest.clone();
    d.evidence_count += 1;
    d.last_evidence_id = entry.evidence_id.clone();
    d.last_seen = entry.received_at;
    apply_verdict(&mut d, &c.verdict);
    d.revision += 1;
    Ok(UnitWrite {
        old: Some(old.clone()),
        new: d,
    })
}

/// A re-appraisal, admitted. The unit's re-appraisal mark is cleared in
/// every outcome but a conflict (a unit gone stays gone). `Ok(None)`: the
/// verdict is unchanged, nothing else is written.
pub(crate) fn admit_reappraisal(
    device: Option<&DeviceEntry>,
    active: Option<u64>,
    c: &ReappraisalCommit,
) -> Admit<Option<(UnitWrite, ReappraisalEntry)>> {
    let serial = c.serial.as_str();
    let Some(old) = device else {
        return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled").into());
    };
    check_current(old, active, c.expected_revision, c.expected_baseline)?;
    let mut d = old.clone();
    apply_verdict(&mut d, &c.verdict);
    if same_verdict(old, &d) {
        // Nothing a reader could see changed: keep the verdict (and when it
        // was reached) as it was.
        return Ok(None);
    }
    d.revision += 1;
    let h = ReappraisalEntry {
        appraisal: d.appraisal.clone(),
        status: d.status,
        at: c.verdict.now_ms,
    };
    Ok(Some((
        UnitWrite {
            old: Some(old.clone()),
            new: d,
        },
        h,
    )))
}

/// An administrator's flag, admitted; the history entry is present when the
/// verdict changed.
pub(crate) fn admit_flag(
    device: Option<&DeviceEntry>,
    active: Option<u64>,
    c: &FlagCommit,
) -> Admit<(UnitWrite, Option<ReappraisalEntry>)> {
    let serial = c.serial.as_str();
    let Some(old) = device else {
        return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled").into());
    };
    check_current(old, active, c.expected_revision, c.expected_baseline)?;
    let mut d = old.clone();
    c.flag.apply(&mut d, c.audit.at_ms);
    apply_verdict(&mut d, &c.verdict);
    d.revision += 1;
    let h = (!same_verdict(old, &d)).then(|| ReappraisalEntry {
        appraisal: d.appraisal.clone(),
        status: d.status,
        at: c.verdict.now_ms,
    });
    Ok((
        UnitWrite {
            old: Some(old.clone()),
            new: d,
        },
        h,
    ))
}

/// A release decision, admitted: `revoked` are the stations behind the
/// unit's records that are revoked now (any order).
pub(crate) fn admit_decision(
    device: Option<&DeviceEntry>,
    active: Option<u64>,
    mut revoked: Vec<String>,
    c: &DecisionCommit,
) -> Admit<()> {
    let Some(d) = device else {
        return Err(Refusal::Conflict);
    };
    check_current(d, active, c.expected_revision, c.expected_baseline)?;
    revoked.sort();
    revoked.dedup();
    if revoked != c.expected_revoked_stations {
        return Err(Refusal::Conflict);
    }
    Ok(())
}

/// What storing a station record changes.
#[derive(Clone, Debug)]
pub(crate) struct RecordPlan<'a> {
    /// The unit before and after (a new unit has no `old`).
    pub unit: UnitWrite,
    /// The station with its new last sequence.
    pub station: StationEntry,
    /// The audit entry (provisioning that changes a unit's identity says so).
    pub audit: Cow<'a, AuditNote>,
    /// Key ids to drop from and add to the key index (a re-key, a new unit).
    pub key_removed: Option<String>,
    pub key_added: Option<String>,
    /// Stations the unit no longer relies on, and the one it now does.
    pub stations_unlinked: Vec<String>,
    pub station_linked: String,
}

/// What [`admit_record`] decided.
#[derive(Clone, Debug)]
pub(crate) enum RecordAdmission<'a> {
    /// The identical record is stored already; write nothing.
    Duplicate(RecordEntry),
    Store(Box<RecordPlan<'a>>),
}

impl RecordAdmission<'_> {
    pub(crate) fn outcome(&self, entry: &RecordEntry) -> RecordOutcome {
        match self {
            RecordAdmission::Duplicate(e) => RecordOutcome::Duplicate(e.clone()),
            RecordAdmission::Store(_) => RecordOutcome::Stored(entry.clone()),
        }
    }
}

/// A verified station record, admitted. The backend reads: the record by
/// id (`existing`), the station, the unit, and which unit holds the
/// enrolled key (`key_owner`, provisioning only).
pub(crate) fn admit_record<'a>(
    existing: Option<RecordEntry>,
    station: Option<StationEntry>,
    device: Option<&DeviceEntry>,
    key_owner: Option<&str>,
    c: &'a RecordCommit,
) -> Admit<RecordAdmission<'a>> {
    if let Some(e) = existing {
        return Ok(RecordAdmission::Duplicate(e));
    }
    let entry = &c.entry;
    let sid = entry.station_id.as_str();
    let Some(mut station) = station else {
        return Err(reject!(UnknownStation, "station {sid} is not registered").into());
    };
    if station.revoked {
        return Err(reject!(StationRevoked, "station {sid} is revoked").into());
    }
    if station.has_sequence && entry.sequence <= station.last_sequence {
        return Err(reject!(
            SequenceRegressed,
            "sequence {} of station {sid} is not above its last accepted sequence {}",
            entry.sequence,
            station.last_sequence
        )
        .into());
    }
    let serial = entry.serial.as_str();
    let mut audit = Cow::Borrowed(&c.audit);
    let mut key_removed = None;
    let mut key_added = None;
    let mut unlinked = Vec::new();
    let d = match (&c.enrollment, device) {
        (Some(en), old) => {
            if key_owner.is_some_and(|o| o != serial) {
                return Err(reject!(
                    KeyInUse,
                    "device_key: this key is already enrolled for another unit"
                )
                .into());
            }
            let mut d = match old {
                None => {
                    crate::rules::check_station_for_model(&station, &en.model)?;
                    DeviceEntry {
                        serial: serial.to_owned(),
                        enrolled_at: entry.received_at,
                        status: STATUS_UNKNOWN,
                        status_changed_at: entry.received_at,
                        ..DeviceEntry::default()
                    }
                }
                Some(d) => {
                    let change = crate::rules::admit_reprovisioning(&station, d, en)?;
                    if change.changes_identity() {
                        let mut note = c.audit.clone();
                        note.details = format!("{}; {}", note.details, change.describe());
                        audit = Cow::Owned(note);
                    }
                    if change.rekey {
                        key_removed = Some(stored_key_id(d)?);
                    }
                    d.clone()
                }
            };
            key_added = Some(en.key_id.clone());
            let previous = std::mem::replace(&mut d.provisioning_station_id, sid.to_owned());
            unlinked.extend(unlink(&previous, &d));
            enroll(&mut d, en, entry);
            d
        }
        (None, Some(d)) => {
            crate::rules::check_station_for_unit(&station, d)?;
            let mut d = d.clone();
            d.calibration_record_id = entry.record_id.clone();
            d.calibration_facts = c.calibration.clone();
            let previous = std::mem::replace(&mut d.calibration_station_id, sid.to_owned());
            unlinked.extend(unlink(&previous, &d));
            d
        }
        (None, None) => {
            return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled").into());
        }
    };
    let mut d = d;
    d.revision += 1;
    station.last_sequence = entry.sequence;
    station.has_sequence = true;
    Ok(RecordAdmission::Store(Box::new(RecordPlan {
        unit: UnitWrite {
            old: device.cloned(),
            new: d,
        },
        station,
        audit,
        key_removed,
        key_added,
        stations_unlinked: unlinked,
        station_linked: sid.to_owned(),
    })))
}

fn enroll(d: &mut DeviceEntry, en: &Enrollment, entry: &RecordEntry) {
    d.model = en.model.clone();
    d.hw_version = en.hw_version.clone();
    d.spki_der = en.spki_der.clone();
    d.provisioning_record_id = entry.record_id.clone();
    d.provisioning_received_at = entry.received_at;
}

/// The key id of a unit's enrolled key.
fn stored_key_id(d: &DeviceEntry) -> Admit<String> {
    attestd_core::keys::PublicKey::from_spki_der(
        &d.spki_der,
        attestd_core::Reason::FieldInvalid,
        "stored key",
    )
    .map(|k| k.key_id())
    .map_err(|_| Refusal::Damaged(format!("device key of {}", d.serial)))
}

/// `station` when the unit no longer relies on it through either record.
fn unlink(station: &str, d: &DeviceEntry) -> Option<String> {
    (!station.is_empty()
        && station != d.provisioning_station_id
        && station != d.calibration_station_id)
        .then(|| station.to_owned())
}

/// A baseline, admitted for publication: versions strictly increase per
/// model (`latest`: the highest published). Returns whether it is active
/// now (otherwise it activates at its `effective_at`).
pub(crate) fn admit_baseline(latest: Option<u64>, b: &BaselineEntry, now_secs: i64) -> Admit<bool> {
    if let Some(l) = latest {
        if b.version <= l {
            return Err(reject!(
                VersionNotIncreasing,
                "version: {} is not above the latest published version {l} of {}",
                b.version,
                b.model
            )
            .into());
        }
    }
    Ok(b.effective_at <= now_secs)
}

/// A sweep to open: kind, key, why.
pub(crate) type SweepOpen = (i32, String, String);

/// What activating `version` of a model changes: `None` when the active
/// version is already that or newer; otherwise the sweeps to open (units
/// reporting a revoked digest first, then the whole model).
pub(crate) fn activation(
    model: &str,
    version: u64,
    active: Option<u64>,
    baseline: Option<&BaselineEntry>,
) -> Option<Vec<SweepOpen>> {
    if active.is_some_and(|v| v >= version) {
        return None;
    }
    let reason = format!("baseline {model} v{version} active");
    let mut out: Vec<SweepOpen> = baseline
        .iter()
        .flat_map(|b| &b.urgent_digests)
        .map(|d| (SWEEP_DIGEST, d.clone(), reason.clone()))
        .collect();
    out.push((SWEEP_MODEL, model.to_owned(), reason));
    Some(out)
}

/// The audit entry that follows `prev` (the head's hash) at `seq`.
pub(crate) fn audit_entry(seq: u64, prev: &[u8; 32], note: &AuditNote) -> crate::AuditRecord {
    let hash = attestd_core::audit::entry_hash(
        prev,
        seq,
        note.at_ms,
        &note.principal,
        &note.action,
        &note.target,
        &note.reason,
        &note.details,
    );
    crate::AuditRecord {
        seq,
        at_ms: note.at_ms,
        principal: note.principal.clone(),
        action: note.action.clone(),
        target: note.target.clone(),
        reason: note.reason.clone(),
        details: note.details.clone(),
        prev_hash: prev.to_vec(),
        hash: hash.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FirmwareEntry;

    fn unit(status: i32, tenant: &str, fw: &[(&str, &str, u8)]) -> DeviceEntry {
        DeviceEntry {
            serial: "SN1".into(),
            model: "m".into(),
            status,
            tenant: tenant.into(),
            firmware: fw
                .iter()
                .map(|(n, v, d)| FirmwareEntry {
                    name: (*n).into(),
                    version: (*v).into(),
                    digest: vec![*d; 32],
                    ..FirmwareEntry::default()
                })
                .collect(),
            ..DeviceEntry::default()
        }
    }

    #[test]
    fn a_new_unit_without_status_is_counted_nowhere() {
        let d = unit(0, "", &[]);
        let delta = unit_delta(None, &d);
        assert!(delta.summary.is_empty());
        assert!(delta.change.is_none());
        assert_eq!(delta.model, moved(String::new(), "m".to_string()));
    }

    #[test]
    fn a_status_change_moves_every_counter_and_writes_one_change() {
        let a = unit(5, "h1", &[("os", "1", 1)]);
        let b = unit(1, "h1", &[("os", "1", 1)]);
        let delta = unit_delta(Some(&a), &b);
        assert_eq!(delta.summary.len(), 8);
        assert_eq!(delta.summary.iter().map(|(_, n)| n).sum::<i64>(), 0);
        let c = delta.change.expect("a change entry");
        assert_eq!((c.old_status, c.new_status, c.seq), (5, 1, 0));
        assert!(delta.digests_added.is_empty() && delta.digests_removed.is_empty());
    }

    #[test]
    fn new_firmware_moves_the_firmware_counter_and_the_digest_index_only() {
        let a = unit(1, "h1", &[("os", "1", 1)]);
        let b = unit(1, "h1", &[("os", "2", 2)]);
        let delta = unit_delta(Some(&a), &b);
        let groups: Vec<Group> = delta.summary.iter().map(|(k, _)| k.group).collect();
        assert_eq!(groups, vec![Group::Firmware, Group::Firmware]);
        assert_eq!(
            delta.digests_removed,
            vec![attestd_core::ids::hex(&[1; 32])]
        );
        assert_eq!(delta.digests_added, vec![attestd_core::ids::hex(&[2; 32])]);
        assert!(delta.change.is_none() && delta.status.is_none());
    }

    #[test]
    fn a_baseline_already_active_or_older_activates_nothing() {
        assert!(activation("m", 2, Some(2), None).is_none());
        assert!(activation("m", 1, Some(2), None).is_none());
        let sweeps = activation("m", 3, Some(2), None).expect("activates");
        assert_eq!(sweeps.len(), 1);
        assert_eq!(sweeps[0].0, SWEEP_MODEL);
    }
}
