//! The Store contract, written against `&dyn Store` so that every backend
//! (sled now, PostgreSQL later) runs the same checks.

use attestd_core::ids::{object_id, Digest};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_core::Reason;
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::*;

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
    }
}

fn evidence(serial: &str, bootcount: u64, dev: &DeviceEntry, deferred: bool) -> EvidenceCommit {
    EvidenceCommit {
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
    }
}

fn rejected(r: Result<impl std::fmt::Debug>) -> Reason {
    match r {
        Err(StoreError::Rejected(rej)) => rej.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn contract(s: &dyn Store) {
    s.register_station(station("st-a")).unwrap();
    assert_eq!(
        rejected(s.register_station(station("st-a"))),
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
    assert_eq!(
        s.counts().unwrap(),
        Counts {
            stations: 1,
            devices: 1,
            records: 1,
            evidence: 0
        }
    );

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

    // Revocation.
    let r = s.revoke_station("st-a", "leak", 7).unwrap();
    assert!(r.revoked && r.last_sequence == 1);
    assert_eq!(
        rejected(s.commit_record(provisioning("st-a", 3, "U3", &key(4), None))),
        Reason::StationRevoked
    );
    assert_eq!(
        rejected(s.revoke_station("nope", "x", 1)),
        Reason::StationNotFound
    );
    s.flush().unwrap();
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
    assert_eq!(
        s.counts().unwrap(),
        Counts {
            stations: 1,
            devices: 1,
            records: 1,
            evidence: 2
        }
    );
    assert!(s.get_station("st-a").unwrap().unwrap().revoked);
    assert_eq!(s.list_records("U1", None, 10).unwrap().items.len(), 1);
}
