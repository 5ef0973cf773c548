//! End-to-end: a station enrolls units, the units prove their state, and
//! what they prove is stored and listed.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::SigningKey;
use common::*;

crate::both_backends!(station_enrolls_es256_and_ed25519_units_which_boot_and_are_listed);
async fn station_enrolls_es256_and_ed25519_units_which_boot_and_are_listed() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let device = server.client(None).await;
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;

    for (i, alg) in [KeyAlg::Es256, KeyAlg::Ed25519].into_iter().enumerate() {
        let serial = format!("PM200-00000{i}");
        let dkey = SigningKey::generate(alg).unwrap();
        let rec = provision(
            &station,
            "line1-prov",
            &st_key,
            10 + i as u64,
            &serial,
            &dkey,
        )
        .await
        .expect("provisioning accepted");
        assert_eq!(rec.serial, serial);
        assert_eq!(rec.kind, pb::RecordKind::Provisioning as i32);
        assert!(rec.record_id.starts_with("rec_"));
        assert!(!rec.duplicate);

        let resp = boot(&device, &serial, &dkey, 1)
            .await
            .expect("evidence accepted");
        assert!(resp.evidence_id.starts_with("ev_"), "{}", resp.evidence_id);
        let a = resp.appraisal.expect("appraisal");
        // Honest until baselines exist: identity affirmed, nothing to grade against.
        assert_eq!(a.tier, pb::TrustTier::None as i32);
        assert_eq!(a.trust_vector.unwrap().instance_identity, 2);
        assert_eq!(
            a.reasons
                .iter()
                .map(|r| r.code.as_str())
                .collect::<Vec<_>>(),
            ["NO_BASELINE"]
        );
        assert_eq!(a.provisioning_record_id, rec.record_id);
        assert_eq!(a.evidence_id, resp.evidence_id);

        // Listed for its serial: the record, then the evidence.
        let h = history(&auditor, &serial).await;
        assert_eq!(h.len(), 2, "{h:?}");
        match &h[0].entry {
            Some(pb::history_entry::Entry::Record(r)) => assert_eq!(r.record_id, rec.record_id),
            other => panic!("expected the record first, got {other:?}"),
        }
        match &h[1].entry {
            Some(pb::history_entry::Entry::Evidence(e)) => {
                assert_eq!(e.evidence_id, resp.evidence_id);
                assert!(e.nonce_fresh);
                assert_eq!(e.bootcount, 1);
            }
            other => panic!("expected the evidence second, got {other:?}"),
        }
        // The raw bytes are kept for re-verification.
        let stored = auditor
            .fleet()
            .get_evidence(pb::GetEvidenceRequest {
                evidence_id: resp.evidence_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let decoded = attestd_client::core::evidence::Evidence::decode(&stored.cose_sign1).unwrap();
        decoded
            .verify(dkey.public_key())
            .expect("stored evidence re-verifies");

        let recs = auditor
            .factory()
            .list_records(pb::ListRecordsRequest {
                serial: serial.clone(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(recs.records.len(), 1);
        let env = recs.records[0].envelope.clone().unwrap();
        assert!(
            env.payload.starts_with(b"{"),
            "envelope returned as received"
        );
    }
    assert_eq!(server.stored(), (1, 2, 2, 2));
}

crate::both_backends!(identical_record_twice_is_one_record_with_one_id);
async fn identical_record_twice_is_one_record_with_one_id() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let dkey = SigningKey::generate(KeyAlg::Es256).unwrap();
    let doc = provisioning_doc("line1-prov", 1, "PM200-000123", "PM-200", &dkey);
    let env = attestd_client::record::sign_provisioning(&doc, &st_key);
    let first = station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(env.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let second = station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(env),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.record_id, second.record_id);
    assert!(!first.duplicate);
    assert!(second.duplicate);
    // Re-signed (ECDSA signatures differ) but the same content: still the same record.
    let resigned = attestd_client::record::sign_provisioning(&doc, &st_key);
    let third = station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(resigned),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.record_id, first.record_id);
    let recs = admin
        .factory()
        .list_records(pb::ListRecordsRequest {
            serial: "PM200-000123".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recs.records.len(), 1);
    assert_eq!(server.stored().2, 1);
}
