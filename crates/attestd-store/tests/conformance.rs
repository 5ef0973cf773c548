//! The Store contract, written against `&dyn Store` so that every backend
//! (sled now, PostgreSQL later) runs the same checks.

use attestd_core::ids::{object_id, Digest};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_core::Reason;
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::*;

fn note(action: &str) -> AuditNote {
    AuditNote::new(7, "tester", action, "target")
}

fn key(seed: u8) -> PublicKey {
    // Ed25519 public keys are any 32 bytes for the store's purposes.
    PublicKey::from_raw(KeyAlg::Ed25519, &[seed; 32]).unwrap()
}

fn station(id: &str) -> StationEntry {
    StationEntry {
        station_id: id.into(),
        spki_der: key(200).spki_der().to_vec(),
        allowed_kinds: vec![1, 2],
        allowed_models: vec!["*".into()],
        ..StationEntry::default()
    }
}

fn provisioning(
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

fn evidence(serial: &str, bootcount: u64, dev: &DeviceEntry, deferred: bool) -> EvidenceCommit {
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
            status: STATUS_UNKNOWN,
            next_check_at: 0,
            calibration_due_at: 0,
            now_ms: 1,
        },
    }
}

fn baseline(model: &str, version: u64, effective_at: i64) -> BaselineEntry {
    BaselineEntry {
        model: model.into(),
        version,
        effective_at,
        payload: b"{}".to_vec(),
        ..BaselineEntry::default()
    }
}

fn revoke() -> Flag {
    Flag::Revoke {
        reason: "stolen".into(),
    }
}

fn quarantine(on: bool) -> Flag {
    Flag::Quarantine {
        on,
        reason: if on { "held".into() } else { String::new() },
    }
}

/// A flag decided on the snapshot `d`, giving the unit `status`.
fn flag(serial: &str, d: &DeviceEntry, f: Flag, status: i32, baseline: Option<u64>) -> FlagCommit {
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

fn decision(
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

fn totals(s: &dyn Store) -> (u64, u64, u64, u64) {
    let c = s.counts().unwrap();
    (c.stations, c.devices, c.records, c.evidence)
}

fn rejected(r: Result<impl std::fmt::Debug>) -> Reason {
    match r {
        Err(StoreError::Rejected(rej)) => rej.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn contract(s: &dyn Store) {
    s.register_station(station("st-a"), &note("station.register"))
        .unwrap();
    assert_eq!(
        rejected(s.register_station(station("st-a"), &note("station.register"))),
        Reason::StationExists
    );

    // Enrollment, idempotence, sequence.
    let k1 = key(1);
    let c = provisioning("st-a", 1, "U1", &k1, None);
    let first = s.commit_record(c.clone()).unwrap();
    assert!(matches!(first, RecordOutcome::Stored(_)));
    assert!(matches!(
        s.commit_record(c.clone()).unwrap(),
        RecordOutcome::Duplicate(_)
    ));
    assert_eq!(
        rejected(s.commit_record(provisioning("st-a", 1, "U2", &key(2), None))),
        Reason::SequenceRegressed
    );
    // One serial per key, one key per serial.
    assert_eq!(
        rejected(s.commit_record(provisioning("st-a", 2, "U2", &k1, None))),
        Reason::KeyInUse
    );
    assert_eq!(
        rejected(s.commit_record(provisioning("st-a", 2, "U1", &key(3), None))),
        Reason::SerialEnrolled
    );
    assert_eq!(
        rejected(s.commit_record(provisioning("st-zz", 2, "U9", &key(9), None))),
        Reason::UnknownStation
    );
    assert_eq!(totals(s), (1, 1, 1, 0));
    assert_eq!(
        s.counts().unwrap().by_status[STATUS_UNKNOWN as usize],
        1,
        "a new unit counts as UNKNOWN"
    );
    // The new record queued the unit for re-appraisal, and indexed it.
    assert_eq!(s.dirty_units(10).unwrap(), vec!["U1".to_string()]);

    // Evidence: revision check, deferred boot counter, duplicates.
    let dev = s.get_device("U1").unwrap().unwrap();
    assert_eq!(dev.provisioning_record_id, c.entry.record_id);
    let after = s.commit_evidence(evidence("U1", 5, &dev, false)).unwrap();
    assert_eq!((after.highest_bootcount, after.evidence_count), (5, 1));
    assert!(matches!(
        s.commit_evidence(evidence("U1", 6, &dev, false)),
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, true))),
        Reason::Replayed
    );
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, false))),
        Reason::Replayed
    );
    let lower = s.commit_evidence(evidence("U1", 3, &after, false)).unwrap();
    assert_eq!(
        lower.highest_bootcount, 5,
        "a lower nonce-fresh count does not lower the high-water mark"
    );
    let mut wrong_key = evidence("U1", 9, &lower, false);
    wrong_key.spki_der = key(7).spki_der().to_vec();
    assert_eq!(
        rejected(s.commit_evidence(wrong_key)),
        Reason::SignatureInvalid
    );

    // History: record then evidence, in order, paged.
    let p1 = s.list_history("U1", None, 2).unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(matches!(p1.items[0], HistoryItem::Record(_)));
    let p2 = s.list_history("U1", p1.next.as_deref(), 2).unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next, None);
    assert!(
        matches!(&p2.items[0], HistoryItem::Evidence(e) if e.bootcount == 3 && e.raw.is_empty())
    );
    assert!(
        s.list_history("U", None, 10).unwrap().items.is_empty(),
        "a prefix of a serial is another serial"
    );
    assert_eq!(
        rejected(s.list_history("U1", Some("garbage"), 2)),
        Reason::FieldInvalid
    );

    // A verdict moves the status counters and the due index.
    let d = s.get_device("U1").unwrap().unwrap();
    let v = UnitVerdict {
        appraisal: None,
        status: 1,
        next_check_at: 500,
        calibration_due_at: 0,
        now_ms: 9,
    };
    let commit = |d: &DeviceEntry, v: &UnitVerdict| ReappraisalCommit {
        serial: "U1".into(),
        expected_revision: d.revision,
        expected_baseline: None,
        verdict: v.clone(),
    };
    let d = s.commit_reappraisal(commit(&d, &v)).unwrap();
    assert!(
        s.dirty_units(10).unwrap().is_empty(),
        "re-appraisal clears the mark"
    );
    let c = s.counts().unwrap();
    assert_eq!(
        (c.by_status[1], c.by_status[STATUS_UNKNOWN as usize]),
        (1, 0)
    );
    assert!(s.due_units(499, 10).unwrap().is_empty());
    assert_eq!(s.due_units(500, 10).unwrap(), vec!["U1".to_string()]);
    let stale = d.clone();
    let d = s
        .commit_reappraisal(commit(
            &d,
            &UnitVerdict {
                next_check_at: 900,
                ..v.clone()
            },
        ))
        .unwrap();
    assert!(
        s.due_units(800, 10).unwrap().is_empty(),
        "the old due entry is gone"
    );
    assert!(matches!(
        s.commit_reappraisal(commit(&stale, &v)),
        Err(StoreError::Conflict)
    ));

    // Baselines: versions increase; activation now or later opens a sweep of the model.
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .unwrap());
    assert_eq!(s.active_baseline_version("PM-200").unwrap(), Some(1));
    assert_eq!(
        rejected(s.publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))),
        Reason::VersionNotIncreasing
    );
    assert!(!s
        .publish_baseline(baseline("PM-200", 2, 5000), 1000, &note("baseline"))
        .unwrap());
    assert_eq!(
        s.active_baseline_version("PM-200").unwrap(),
        Some(1),
        "pending until effective"
    );
    // The unit was decided on no baseline: that decision is now stale.
    assert!(matches!(
        s.commit_reappraisal(commit(&d, &v)),
        Err(StoreError::Conflict)
    ));
    let sweeps = s.sweeps().unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(
        (sweeps[0].kind, sweeps[0].key.as_str()),
        (SWEEP_MODEL, "PM-200")
    );
    assert_eq!(
        s.sweep_units(&sweeps[0], 10).unwrap(),
        vec!["U1".to_string()]
    );
    s.advance_sweep(&sweeps[0], None).unwrap();
    assert!(s.sweeps().unwrap().is_empty());
    assert!(s.activate_due_baselines(4999).unwrap().is_empty());
    assert_eq!(
        s.activate_due_baselines(5000).unwrap(),
        vec![("PM-200".to_string(), 2)]
    );
    assert_eq!(s.active_baseline_version("PM-200").unwrap(), Some(2));
    assert_eq!(s.sweeps().unwrap().len(), 1);
    let listed: Vec<u64> = s
        .list_baselines("PM-200", None, 10)
        .unwrap()
        .items
        .iter()
        .map(|b| b.version)
        .collect();
    assert_eq!(listed, vec![2, 1], "newest first");
    assert!(s
        .list_baselines("PM-20", None, 10)
        .unwrap()
        .items
        .is_empty());

    // Device revocation is written with the unit's verdict under it.
    let u1 = s.get_device("U1").unwrap().unwrap();
    let active = s.active_baseline_version(&u1.model).unwrap();
    let mut revocation = flag("U1", &u1, revoke(), 3, active);
    revocation.audit = note("device.revoke");
    let revoked = s.set_flag(revocation).unwrap();
    assert!(revoked.revoked && revoked.status == 3);
    assert_eq!(
        rejected(s.set_flag(flag("U404", &u1, revoke(), 3, None))),
        Reason::DeviceNotFound
    );

    // Revocation.
    let r = s
        .revoke_station("st-a", "leak", &note("station.revoke"))
        .unwrap();
    assert!(r.revoked && r.last_sequence == 1);
    assert_eq!(
        rejected(s.commit_record(provisioning("st-a", 3, "U3", &key(4), None))),
        Reason::StationRevoked
    );
    assert_eq!(
        rejected(s.revoke_station("nope", "x", &note("station.revoke"))),
        Reason::StationNotFound
    );
    let station_sweep = s
        .sweeps()
        .unwrap()
        .into_iter()
        .find(|w| w.kind == SWEEP_STATION)
        .expect("a station sweep");
    assert_eq!(
        s.sweep_units(&station_sweep, 10).unwrap(),
        vec!["U1".to_string()]
    );
    // Every change above left exactly one audit entry, in order, chained;
    // the refusals left none.
    let entries = s.audit_after(0, 1000).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "station.register",
            "record",
            "evidence",
            "evidence",
            "baseline",
            "baseline",
            "device.revoke",
            "station.revoke"
        ]
    );
    assert_eq!(s.audit_head().unwrap(), (8, verified_head(&entries)));
    s.flush().unwrap();
}

/// Verifies a whole chain from genesis; returns its head hash.
fn verified_head(entries: &[AuditRecord]) -> [u8; 32] {
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
            prev_hash: e.prev_hash.clone().try_into().unwrap(),
            hash: e.hash.clone().try_into().unwrap(),
        })
        .collect();
    attestd_core::audit::verify_chain(&chain, attestd_core::audit::GENESIS, 0).unwrap()
}

/// A batch gives each write the answer it would get alone, in order (a
/// write sees the ones before it), and a refused write leaves nothing.
fn batch_contract(s: &dyn Store) {
    s.register_station(station("st-a"), &note("station.register"))
        .unwrap();
    let out = s.commit_batch(vec![
        Write::Record(provisioning("st-a", 1, "U1", &key(1), None)),
        // The key of U1, already enrolled by the write before it.
        Write::Record(provisioning("st-a", 2, "U2", &key(1), None)),
        Write::Record(provisioning("st-a", 3, "U3", &key(3), None)),
        // Not above the sequence the write before it accepted.
        Write::Record(provisioning("st-a", 3, "U4", &key(4), None)),
    ]);
    assert_eq!(out.len(), 4);
    assert!(matches!(
        &out[0],
        Ok(Written::Record(RecordOutcome::Stored(_)))
    ));
    assert_eq!(refused(&out[1]), Reason::KeyInUse);
    assert!(matches!(
        &out[2],
        Ok(Written::Record(RecordOutcome::Stored(_)))
    ));
    assert_eq!(refused(&out[3]), Reason::SequenceRegressed);
    assert!(s.get_device("U2").unwrap().is_none());
    assert!(s.get_device("U4").unwrap().is_none());
    assert_eq!(totals(s), (1, 2, 2, 0));

    // Two pieces of evidence decided on the same snapshot: the second finds
    // the unit changed by the first.
    let u1 = s.get_device("U1").unwrap().unwrap();
    let u3 = s.get_device("U3").unwrap().unwrap();
    let out = s.commit_batch(vec![
        Write::Evidence(evidence("U1", 5, &u1, false)),
        Write::Evidence(evidence("U1", 6, &u1, false)),
        Write::Evidence(evidence("U3", 1, &u3, false)),
        // Decided after the evidence before it (later writes see earlier ones).
        Write::Decision(decision("rd_1", "U3", u3.revision + 1, None, vec![])),
    ]);
    assert!(matches!(&out[0], Ok(Written::Device(d)) if d.highest_bootcount == 5));
    assert!(matches!(out[1], Err(StoreError::Conflict)));
    assert!(matches!(&out[2], Ok(Written::Device(d)) if d.evidence_count == 1));
    assert!(matches!(out[3], Ok(Written::Done)));
    assert_eq!(totals(s), (1, 2, 2, 2));
    assert_eq!(s.get_device("U1").unwrap().unwrap().evidence_count, 1);
    assert!(matches!(
        s.list_history("U3", None, 10).unwrap().items.last(),
        Some(HistoryItem::Decision(d)) if d.decision_id == "rd_1"
    ));

    // One audit entry per applied write, none for the refused, chained.
    let entries = s.audit_after(0, 100).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "station.register",
            "record",
            "record",
            "evidence",
            "evidence",
            "release.decide"
        ]
    );
    assert_eq!(s.audit_head().unwrap(), (6, verified_head(&entries)));
    assert!(s.commit_batch(Vec::new()).is_empty());
}

/// The reason a write of a batch was refused.
fn refused(r: &Result<Written>) -> Reason {
    match r {
        Err(StoreError::Rejected(rej)) => rej.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn open_small(dir: &std::path::Path) -> SledStore {
    SledStore::open(
        dir,
        &SledConfig {
            cache_capacity: 8 << 20,
        },
    )
    .unwrap()
}

#[test]
fn a_batch_answers_each_write_as_alone_and_a_refused_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small(dir.path());
    batch_contract(&s);
    // And durably, as one: after reopening, the same state.
    s.flush().unwrap();
    drop(s);
    let s = open_small(dir.path());
    assert_eq!(totals(&s), (1, 2, 2, 2));
    assert_eq!(s.audit_head().unwrap().0, 6);
}

#[test]
fn sled_store_keeps_the_contract_and_its_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(
            dir.path(),
            &SledConfig {
                cache_capacity: 8 << 20,
            },
        )
        .unwrap();
        contract(&s);
    }
    let s = SledStore::open(
        dir.path(),
        &SledConfig {
            cache_capacity: 8 << 20,
        },
    )
    .unwrap();
    assert_eq!(totals(&s), (1, 1, 1, 2));
    assert_eq!(s.counts().unwrap().baselines, 2);
    assert!(s.get_station("st-a").unwrap().unwrap().revoked);
    assert_eq!(s.list_records("U1", None, 10).unwrap().items.len(), 1);
}

#[test]
fn opening_waits_briefly_for_a_closing_store_to_release_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SledConfig {
        cache_capacity: 8 << 20,
    };
    let first = SledStore::open(dir.path(), &cfg).unwrap();
    // Closed 200 ms later, while the second open is already waiting.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
    });
    let second = SledStore::open(dir.path(), &cfg);
    closer.join().unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

#[test]
fn a_sweep_reopened_during_a_round_is_not_closed_by_that_round() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(
        dir.path(),
        &SledConfig {
            cache_capacity: 8 << 20,
        },
    )
    .unwrap();
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .unwrap());
    let old = s.sweeps().unwrap().remove(0);
    // A newer baseline becomes active while a round of the first sweep is
    // under way; the round then finishes (nothing left at its cursor).
    assert!(s
        .publish_baseline(baseline("PM-200", 2, 100), 1000, &note("baseline"))
        .unwrap());
    s.advance_sweep(&old, None).unwrap();
    let open = s.sweeps().unwrap();
    assert_eq!(open.len(), 1, "the reopened sweep must survive");
    assert_ne!(open[0].generation, old.generation);
    assert_eq!(open[0].cursor, "");
    s.advance_sweep(&open[0], None).unwrap();
    assert!(s.sweeps().unwrap().is_empty());
}

/// Everything a reader can see of a unit and the fleet views.
fn snapshot(s: &dyn Store, serial: &str) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.get_device(serial).unwrap(),
        s.list_history(serial, None, 100).unwrap(),
        s.list_records(serial, None, 100).unwrap(),
        s.counts().unwrap(),
        s.audit_head().unwrap(),
        s.change_cursor().unwrap(),
        s.list_stations(None, 100).unwrap(),
    )
}

/// A second provisioning record may not move a unit to another model or
/// hardware version silently, nor come from a station of another model.
fn reprovisioning_contract(s: &dyn Store) {
    let mut pm = station("pm-line");
    pm.allowed_models = vec!["PM-200".into()];
    pm.allow_rekey = true;
    let mut ip = station("ip-line");
    ip.allowed_models = vec!["IP-100".into()];
    ip.allow_rekey = true;
    let mut both = station("both-lines");
    both.allowed_models = vec!["PM-200".into(), "IP-100".into()];
    s.register_station(pm, &note("s")).unwrap();
    s.register_station(ip, &note("s")).unwrap();
    s.register_station(both, &note("s")).unwrap();
    let k = key(40);
    s.commit_record(provisioning("pm-line", 1, "R1", &k, None))
        .unwrap();
    let first = s.get_device("R1").unwrap().unwrap();
    let before = snapshot(s, "R1");

    // The attack: a station of IP-100 only, the unit's own public key.
    let mut attack = provisioning(
        "ip-line",
        1,
        "R1",
        &k,
        Some(first.provisioning_record_id.clone()),
    );
    attack.enrollment.as_mut().unwrap().model = "IP-100".into();
    assert_eq!(
        rejected(s.commit_record(attack)),
        Reason::StationNotAuthorized
    );
    // A calibration record from it is refused too.
    let mut cal = provisioning("ip-line", 2, "R1", &k, None);
    cal.enrollment = None;
    cal.entry.kind = 2;
    assert_eq!(rejected(s.commit_record(cal)), Reason::StationNotAuthorized);
    // A station allowed for both, without the explicit path.
    let mut change = provisioning("both-lines", 1, "R1", &k, None);
    change.enrollment.as_mut().unwrap().model = "IP-100".into();
    assert_eq!(rejected(s.commit_record(change)), Reason::SerialEnrolled);
    let mut hw = provisioning("pm-line", 2, "R1", &k, None);
    hw.enrollment.as_mut().unwrap().hw_version = "C".into();
    assert_eq!(rejected(s.commit_record(hw)), Reason::SerialEnrolled);
    assert_eq!(snapshot(s, "R1"), before, "a refusal leaves nothing");

    // The explicit path: supersedes, from a station allowed to re-key and
    // for both models; the audit entry says what changed.
    let mut ok = provisioning(
        "pm-line",
        3,
        "R1",
        &k,
        Some(first.provisioning_record_id.clone()),
    );
    ok.enrollment.as_mut().unwrap().hw_version = "C".into();
    s.commit_record(ok).unwrap();
    let after = s.get_device("R1").unwrap().unwrap();
    assert_eq!(
        (after.model.as_str(), after.hw_version.as_str()),
        ("PM-200", "C")
    );
    let (seq, _) = s.audit_head().unwrap();
    let last = s.audit_after(seq - 1, 1).unwrap().remove(0);
    assert!(
        last.details.ends_with("changes hw_version B -> C"),
        "{}",
        last.details
    );
}

/// A release decision is stored only on the state it was decided on.
fn decision_contract(s: &dyn Store) {
    s.register_station(station("dc"), &note("s")).unwrap();
    s.commit_record(provisioning("dc", 1, "D1", &key(50), None))
        .unwrap();
    let d = s.get_device("D1").unwrap().unwrap();
    let history = |s: &dyn Store| s.list_history("D1", None, 100).unwrap().items.len();
    let n = history(s);
    // A stale revision, another baseline, a station revoked meanwhile.
    for c in [
        decision("rd_a", "D1", d.revision + 1, None, vec![]),
        decision("rd_b", "D1", d.revision, Some(1), vec![]),
        decision("rd_c", "D1", d.revision, None, vec!["dc".into()]),
        decision("rd_d", "NOPE", 0, None, vec![]),
    ] {
        assert!(matches!(s.record_decision(c), Err(StoreError::Conflict)));
    }
    assert_eq!(history(s), n, "a conflict stores nothing");
    s.record_decision(decision("rd_e", "D1", d.revision, None, vec![]))
        .unwrap();
    assert_eq!(history(s), n + 1);
    // After a quarantine the old snapshot no longer holds.
    s.set_flag(flag("D1", &d, quarantine(true), 6, None))
        .unwrap();
    assert!(matches!(
        s.record_decision(decision("rd_f", "D1", d.revision, None, vec![])),
        Err(StoreError::Conflict)
    ));
    let d = s.get_device("D1").unwrap().unwrap();
    s.revoke_station("dc", "gone", &note("station.revoke"))
        .unwrap();
    assert!(matches!(
        s.record_decision(decision("rd_g", "D1", d.revision, None, vec![])),
        Err(StoreError::Conflict)
    ));
    s.record_decision(decision("rd_h", "D1", d.revision, None, vec!["dc".into()]))
        .unwrap();
}

/// A flag and the status under it are one write: unit, status index,
/// counters and change feed move together; every status change is fed.
fn flag_contract(s: &dyn Store) {
    s.register_station(station("fl"), &note("s")).unwrap();
    s.commit_record(provisioning("fl", 1, "F1", &key(60), None))
        .unwrap();
    let d = s.get_device("F1").unwrap().unwrap();
    assert_eq!(d.status, STATUS_UNKNOWN);
    let cursor = s.change_cursor().unwrap();
    let held = s.counts().unwrap().by_status[6];
    let on = s
        .set_flag(flag("F1", &d, quarantine(true), 6, None))
        .unwrap();
    assert!(on.quarantined && on.status == 6);
    let in_status = |s: &dyn Store, status: i32| {
        s.list_devices(DeviceQuery {
            filter: DeviceFilter {
                statuses: vec![status],
                ..DeviceFilter::default()
            },
            after: None,
            limit: 100,
            budget: 1000,
        })
        .unwrap()
        .items
        .iter()
        .any(|x| x.serial == "F1")
    };
    assert!(in_status(s, 6) && !in_status(s, STATUS_UNKNOWN));
    assert_eq!(s.counts().unwrap().by_status[6], held + 1);
    // A stale snapshot conflicts and changes nothing.
    assert!(matches!(
        s.set_flag(flag("F1", &d, quarantine(false), STATUS_UNKNOWN, None)),
        Err(StoreError::Conflict)
    ));
    let off = s
        .set_flag(flag("F1", &on, quarantine(false), STATUS_UNKNOWN, None))
        .unwrap();
    assert!(!off.quarantined && off.status == STATUS_UNKNOWN);
    assert!(!in_status(s, 6) && in_status(s, STATUS_UNKNOWN));
    assert_eq!(s.counts().unwrap().by_status[6], held);
    // On and off: two changes in the feed, and the cursor is the newest.
    let changes: Vec<(i32, i32)> = s
        .changes_after(cursor, 10)
        .unwrap()
        .iter()
        .filter(|c| c.serial == "F1")
        .map(|c| (c.old_status, c.new_status))
        .collect();
    assert_eq!(changes, vec![(STATUS_UNKNOWN, 6), (6, STATUS_UNKNOWN)]);
    assert_eq!(s.change_cursor().unwrap(), cursor + 2);
}

#[test]
fn reprovisioning_decisions_and_flags_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small(dir.path());
    reprovisioning_contract(&s);
    decision_contract(&s);
    flag_contract(&s);
}

/// The head a reader gets is always one the chain has, while writers append:
/// sequence and hash belong to the same entry.
#[test]
fn the_audit_head_is_consistent_under_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_small(dir.path()));
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..1500 {
                s.append_audit(&AuditNote::new(i, "tester", "test.append", "x"))
                    .unwrap();
            }
        })
    };
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        let (seq, hash) = s.audit_head().unwrap();
        if seq > 0 {
            let entry = s.audit_after(seq - 1, 1).unwrap().remove(0);
            assert_eq!(entry.seq, seq);
            assert_eq!(
                entry.hash,
                hash.to_vec(),
                "head {seq} pairs another entry's hash"
            );
            checked += 1;
        }
    }
    writer.join().unwrap();
    assert!(checked > 0);
}
