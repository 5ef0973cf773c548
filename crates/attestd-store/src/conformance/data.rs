//! What the clauses send and how they look: commits built the way the
//! server builds them, and views of a store to compare before and after.

use attestd_core::ids::{object_id, Digest};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_core::Reason;

use crate::*;

/// An audit note for `action`, by `tester` at a fixed time.
pub fn note(action: &str) -> AuditNote {
    AuditNote::new(7, "tester", action, "target")
}

/// A device key; distinct `n`, distinct keys.
pub fn key(n: u32) -> PublicKey {
    // Ed25519 public keys are any 32 bytes for the store's purposes.
    PublicKey::from_raw(KeyAlg::Ed25519, &Digest::of(&n.to_be_bytes()).0)
        .expect("32 bytes are an Ed25519 key")
}

/// A station allowed every model and both record kinds.
pub fn station(id: &str) -> StationEntry {
    StationEntry {
        station_id: id.into(),
        spki_der: key(u32::MAX).spki_der().to_vec(),
        allowed_kinds: vec![1, 2],
        allowed_models: vec!["*".into()],
        ..StationEntry::default()
    }
}

/// A provisioning record enrolling `serial` as a PM-200, hardware B.
pub fn provisioning(
    station: &str,
    seq: u64,
    serial: &str,
    k: &PublicKey,
    supersedes: Option<String>,
) -> RecordCommit {
    let id = object_id(
        "rec_",
        &Digest::of(format!("{station}/{seq}/{serial}/{}", k.key_id()).as_bytes()),
    );
    RecordCommit {
        audit: note("record"),
        entry: RecordEntry {
            record_id: id,
            kind: 1,
            serial: serial.into(),
            station_id: station.into(),
            sequence: seq,
            received_at: 1_000 + seq as i64,
            payload: b"{}".to_vec(),
            payload_type: "t".into(),
            ..RecordEntry::default()
        },
        enrollment: Some(Enrollment {
            model: "PM-200".into(),
            hw_version: "B".into(),
            spki_der: k.spki_der().to_vec(),
            key_id: k.key_id(),
            supersedes,
        }),
        calibration: None,
    }
}

/// A calibration record for an enrolled unit.
pub fn calibration(station: &str, seq: u64, serial: &str) -> RecordCommit {
    let id = object_id(
        "rec_",
        &Digest::of(format!("cal/{station}/{seq}/{serial}").as_bytes()),
    );
    RecordCommit {
        audit: note("record"),
        entry: RecordEntry {
            record_id: id.clone(),
            kind: 2,
            serial: serial.into(),
            station_id: station.into(),
            sequence: seq,
            payload: b"{}".to_vec(),
            payload_type: "t".into(),
            ..RecordEntry::default()
        },
        enrollment: None,
        calibration: Some(CalibrationFactsEntry {
            record_id: id,
            station_id: station.into(),
            passed: true,
            performed_at: 50,
            next_due_at: 5_000 + seq as i64,
            digest: vec![seq as u8; 32],
            ..CalibrationFactsEntry::default()
        }),
    }
}

/// Evidence decided on the snapshot `dev`, keeping the unit's status.
pub fn evidence(serial: &str, bootcount: u64, dev: &DeviceEntry, deferred: bool) -> EvidenceCommit {
    EvidenceCommit {
        audit: note("evidence"),
        entry: EvidenceEntry {
            evidence_id: object_id(
                "ev_",
                &Digest::of(format!("{serial}/{bootcount}/{deferred}").as_bytes()),
            ),
            serial: serial.into(),
            bootcount,
            raw: vec![1, 2, 3],
            ..EvidenceEntry::default()
        },
        spki_der: dev.spki_der.clone(),
        expected_revision: dev.revision,
        deferred,
        expected_baseline: None,
        svns: vec![],
        firmware: vec![],
        calibration_digest: vec![],
        verdict: UnitVerdict {
            appraisal: None,
            status: if dev.status == 0 {
                STATUS_UNKNOWN
            } else {
                dev.status
            },
            next_check_at: 0,
            calibration_due_at: 0,
            now_ms: 1,
        },
    }
}

/// The same evidence under another id.
pub fn with_id(mut c: EvidenceCommit, id: &str) -> EvidenceCommit {
    c.entry.evidence_id = id.into();
    c
}

/// The same evidence with another verdict.
pub fn with_verdict(mut c: EvidenceCommit, v: UnitVerdict) -> EvidenceCommit {
    c.verdict = v;
    c
}

/// A verdict: status, next check (seconds), decided at `now_ms`.
pub fn verdict(status: i32, next_check_at: i64, now_ms: i64) -> UnitVerdict {
    UnitVerdict {
        appraisal: None,
        status,
        next_check_at,
        calibration_due_at: 0,
        now_ms,
    }
}

/// A re-appraisal decided on the snapshot `d`, under no baseline.
pub fn reappraisal(d: &DeviceEntry, v: UnitVerdict) -> ReappraisalCommit {
    ReappraisalCommit {
        serial: d.serial.clone(),
        expected_revision: d.revision,
        expected_baseline: None,
        verdict: v,
    }
}

/// A published baseline of `model` with an empty policy.
pub fn baseline(model: &str, version: u64, effective_at: i64) -> BaselineEntry {
    BaselineEntry {
        model: model.into(),
        version,
        effective_at,
        payload: b"{}".to_vec(),
        ..BaselineEntry::default()
    }
}

/// Revocation, with a reason.
pub fn revoke() -> Flag {
    Flag::Revoke {
        reason: "stolen".into(),
    }
}

/// Quarantine on or off.
pub fn quarantine(on: bool) -> Flag {
    Flag::Quarantine {
        on,
        reason: if on { "held".into() } else { String::new() },
    }
}

/// A flag decided on the snapshot `d`, giving the unit `status`.
pub fn flag(
    serial: &str,
    d: &DeviceEntry,
    f: Flag,
    status: i32,
    baseline: Option<u64>,
) -> FlagCommit {
    FlagCommit {
        serial: serial.into(),
        flag: f,
        expected_revision: d.revision,
        expected_baseline: baseline,
        verdict: UnitVerdict {
            status,
            now_ms: 9_000,
            ..UnitVerdict::default()
        },
        audit: note("device.flag"),
    }
}

/// A release decision of `serial`, decided on `revision`, `baseline` and the stations revoked then.
pub fn decision(
    id: &str,
    serial: &str,
    revision: u64,
    baseline: Option<u64>,
    revoked_stations: Vec<String>,
) -> DecisionCommit {
    DecisionCommit {
        entry: ReleaseDecisionEntry {
            decision_id: id.into(),
            serial: serial.into(),
            decision: 1,
            ..ReleaseDecisionEntry::default()
        },
        audit: note("release.decide"),
        expected_revision: revision,
        expected_baseline: baseline,
        expected_revoked_stations: revoked_stations,
    }
}

/// Registers station `id` (every model, re-key allowed).
pub async fn line(s: &dyn Store, id: &str) {
    let mut st = station(id);
    st.allow_rekey = true;
    s.register_station(st, &note("station.register"))
        .await
        .expect("registering a station");
}

/// Enrolls `serial` with key `k` through `station` at `seq`; the unit.
pub async fn enroll(s: &dyn Store, station: &str, seq: u64, serial: &str, k: u32) -> DeviceEntry {
    match s
        .commit_record(provisioning(station, seq, serial, &key(k), None))
        .await
    {
        Ok(RecordOutcome::Stored(_)) => device(s, serial).await,
        other => panic!("enrolling {serial}: {other:?}"),
    }
}

/// The unit, which must exist.
pub async fn device(s: &dyn Store, serial: &str) -> DeviceEntry {
    s.get_device(serial)
        .await
        .expect("reading a unit")
        .unwrap_or_else(|| panic!("unit {serial} is not stored"))
}

/// (stations, devices, records, evidence).
pub async fn totals(s: &dyn Store) -> (u64, u64, u64, u64) {
    let c = s.counts().await.expect("counts");
    (c.stations, c.devices, c.records, c.evidence)
}

/// The reason of a rejection.
pub fn rejected<T: std::fmt::Debug>(r: Result<T>) -> Reason {
    match r {
        Err(StoreError::Rejected(rej)) => rej.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Whether `r` is a conflict.
pub fn conflict<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(StoreError::Conflict))
}

/// The reason a write of a batch was refused.
pub fn refused(r: &Result<Written>) -> Reason {
    match r {
        Err(StoreError::Rejected(rej)) => rej.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Everything a reader can see of a unit and of the fleet views: equal
/// before and after a write means the write left nothing.
pub async fn snapshot(s: &dyn Store, serial: &str) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.get_device(serial).await.expect("device"),
        s.list_history(serial, None, 1000).await.expect("history"),
        s.list_records(serial, None, 1000).await.expect("records"),
        s.counts().await.expect("counts"),
        s.audit_head().await.expect("audit head"),
        s.change_cursor().await.expect("change cursor"),
        s.list_stations(None, 1000).await.expect("stations"),
        s.sweeps().await.expect("sweeps"),
        s.dirty_units(1000).await.expect("dirty units"),
        s.due_units(i64::MAX, 1000).await.expect("due units"),
        s.summary(Group::Firmware, None).await.expect("summary"),
    )
}

/// Every page of a listing, concatenated; panics past `max_pages`.
pub async fn all_pages(s: &dyn Store, mut q: DeviceQuery, max_pages: usize) -> Vec<DeviceEntry> {
    let mut out = Vec::new();
    for _ in 0..max_pages {
        let page = s.list_devices(q.clone()).await.expect("list_devices");
        assert!(
            page.items.len() <= q.limit.min(q.budget),
            "a page of {} units for limit {} and budget {}",
            page.items.len(),
            q.limit,
            q.budget
        );
        out.extend(page.items);
        match page.next {
            Some(next) => q.after = Some(next),
            None => return out,
        }
    }
    panic!("list_devices did not end within {max_pages} pages");
}

/// Every unit of the store.
pub async fn all_devices(s: &dyn Store) -> Vec<DeviceEntry> {
    all_pages(
        s,
        DeviceQuery {
            limit: 100,
            budget: 100,
            ..DeviceQuery::default()
        },
        1000,
    )
    .await
}

/// Units per status code, counted from the units themselves.
pub fn recount(devices: &[DeviceEntry]) -> [u64; 7] {
    let mut out = [0u64; 7];
    for d in devices {
        out[d.status as usize] += 1;
    }
    out
}

/// What [`Store::summary`] must answer, counted from the units themselves.
pub fn expected_summary(
    devices: &[DeviceEntry],
    group: Group,
    tenant: Option<&str>,
) -> Vec<SummaryCount> {
    let mut out: Vec<SummaryCount> = Vec::new();
    for d in devices {
        if d.status == 0 || tenant.is_some_and(|t| t != d.tenant) {
            continue;
        }
        let key = match group {
            Group::All => String::new(),
            Group::Model => d.model.clone(),
            Group::Site => d.site.clone(),
            Group::Firmware => plan::firmware_key(d),
        };
        match out
            .iter_mut()
            .find(|(k, st, _)| *k == key && *st == d.status)
        {
            Some(e) => e.2 += 1,
            None => out.push((key, d.status, 1)),
        }
    }
    out.sort();
    out
}

/// Checks that the counters (`counts().by_status`, every summary) equal a
/// recount of the units.
pub async fn assert_counters_match_units(s: &dyn Store) {
    let devices = all_devices(s).await;
    let c = s.counts().await.expect("counts");
    assert_eq!(c.by_status, recount(&devices), "counts().by_status");
    assert_eq!(c.devices, devices.len() as u64, "counts().devices");
    for g in [Group::All, Group::Model, Group::Site, Group::Firmware] {
        assert_eq!(
            s.summary(g, None).await.expect("summary"),
            expected_summary(&devices, g, None),
            "summary by {g:?}"
        );
    }
}

/// Verifies a whole chain from genesis; returns its head hash.
pub fn verified_head(entries: &[AuditRecord]) -> [u8; 32] {
    let chain: Vec<attestd_core::audit::AuditEntry> = entries
        .iter()
        .map(|e| attestd_core::audit::AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            principal: e.principal.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            reason: e.reason.clone(),
            details: e.details.clone(),
            prev_hash: e.prev_hash.clone().try_into().expect("32-byte prev_hash"),
            hash: e.hash.clone().try_into().expect("32-byte hash"),
        })
        .collect();
    match attestd_core::audit::verify_chain(&chain, attestd_core::audit::GENESIS, 0) {
        Ok(head) => head,
        Err(b) => panic!("the audit chain breaks at {b:?}"),
    }
}

/// The audit actions from the first entry on.
pub async fn actions(s: &dyn Store) -> Vec<String> {
    s.audit_after(0, 10_000)
        .await
        .expect("audit entries")
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The newest audit entry.
pub async fn last_audit(s: &dyn Store) -> AuditRecord {
    let (seq, _) = s.audit_head().await.expect("audit head");
    assert!(seq > 0, "the audit chain is empty");
    s.audit_after(seq - 1, 1)
        .await
        .expect("audit entries")
        .pop()
        .expect("the head entry")
}

/// The (serial, old status, new status) of each change after `after`.
pub async fn changes(s: &dyn Store, after: u64) -> Vec<(String, i32, i32)> {
    s.changes_after(after, 100_000)
        .await
        .expect("changes")
        .into_iter()
        .map(|c| (c.serial, c.old_status, c.new_status))
        .collect()
}
