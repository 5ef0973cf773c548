//! End-to-end: calibration records, re-keying a repaired unit, station
//! revocation and listing.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_client::core::keys::KeyAlg;
use attestd_client::core::record::CalibrationDoc;
use attestd_client::pb;
use attestd_client::record::{sign_calibration, sign_provisioning};
use attestd_client::{Client, SigningKey};
use common::*;
use tonic::Code;

async fn submit_cal(
    c: &Client,
    doc: &CalibrationDoc,
    key: &SigningKey,
) -> Result<pb::SubmitRecordResponse, tonic::Status> {
    c.factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_calibration(doc, key)),
        })
        .await
        .map(|r| r.into_inner())
}

async fn records(c: &Client, serial: &str) -> Vec<pb::StoredRecord> {
    c.factory()
        .list_records(pb::ListRecordsRequest {
            serial: serial.into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_records_follow_the_rules() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let prov_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let cal_key = register_station(
        &admin,
        "line1-cal",
        &[pb::RecordKind::Calibration],
        &["PM-200"],
    )
    .await;
    let prov = server.station("line1-prov").await;
    let cal = server.station("line1-cal").await;
    let unit = SigningKey::generate(KeyAlg::Es256).unwrap();
    let p = provision(&prov, "line1-prov", &prov_key, 1, "PM200-000001", &unit)
        .await
        .unwrap();

    let c = submit_cal(
        &cal,
        &calibration_doc("line1-cal", 1, "PM200-000001", 0.04, "PASS"),
        &cal_key,
    )
    .await
    .expect("calibration accepted");
    assert_eq!(c.kind, pb::RecordKind::Calibration as i32);
    let recs = records(&admin, "PM200-000001").await;
    assert_eq!(
        recs.iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(),
        vec![p.record_id, c.record_id.clone()]
    );
    assert_eq!(recs[1].station_id, "line1-cal");
    // GetRecord returns the envelope as received.
    let got = admin
        .factory()
        .get_record(pb::GetRecordRequest {
            record_id: c.record_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.envelope.unwrap().payload,
        recs[1].envelope.clone().unwrap().payload
    );
    assert_rejected(
        admin
            .factory()
            .get_record(pb::GetRecordRequest {
                record_id: "rec_nope".into(),
            })
            .await,
        Code::NotFound,
        "RECORD_NOT_FOUND",
    );

    // The unit's evidence is appraised with the calibration record it now has.
    let ev = boot(&server.client(None).await, "PM200-000001", &unit, 1)
        .await
        .unwrap();
    assert_eq!(ev.appraisal.unwrap().calibration_record_id, c.record_id);

    let before = server.stored();
    // PASS with as_left outside its own tolerance is inconsistent.
    let msg = assert_rejected(
        submit_cal(
            &cal,
            &calibration_doc("line1-cal", 2, "PM200-000001", 0.9, "PASS"),
            &cal_key,
        )
        .await,
        Code::InvalidArgument,
        "FIELD_INVALID",
    );
    assert!(msg.starts_with("parameters[0].as_left"), "{msg}");
    // Calibration of a unit nobody enrolled.
    assert_rejected(
        submit_cal(
            &cal,
            &calibration_doc("line1-cal", 2, "PM200-999999", 0.0, "PASS"),
            &cal_key,
        )
        .await,
        Code::NotFound,
        "DEVICE_NOT_FOUND",
    );
    // A provisioning-only station may not calibrate.
    assert_rejected(
        submit_cal(
            &prov,
            &calibration_doc("line1-prov", 2, "PM200-000001", 0.0, "PASS"),
            &prov_key,
        )
        .await,
        Code::PermissionDenied,
        "STATION_NOT_AUTHORIZED",
    );
    assert_eq!(server.stored(), before);
    // A FAIL result is a fact worth recording, out-of-tolerance values and all.
    submit_cal(
        &cal,
        &calibration_doc("line1-cal", 2, "PM200-000001", 0.9, "FAIL"),
        &cal_key,
    )
    .await
    .expect("FAIL recorded");
    assert_eq!(records(&admin, "PM200-000001").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repaired_unit_is_rekeyed_only_by_a_station_allowed_to() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let prov_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let depot_key = SigningKey::generate(KeyAlg::Ed25519).unwrap();
    admin
        .admin()
        .register_station(pb::RegisterStationRequest {
            station_id: "line2-prov".into(),
            public_key: depot_key.public_key().spki_der().to_vec(),
            allowed_kinds: vec![pb::RecordKind::Provisioning as i32],
            allowed_models: vec!["*".into()],
            allow_rekey: true,
        })
        .await
        .unwrap();
    let prov = server.station("line1-prov").await;
    let depot = server.station("line2-prov").await;
    let device = server.client(None).await;
    let old = SigningKey::generate(KeyAlg::Es256).unwrap();
    let first = provision(&prov, "line1-prov", &prov_key, 1, "PM200-000001", &old)
        .await
        .unwrap();
    boot(&device, "PM200-000001", &old, 1).await.unwrap();

    let new = SigningKey::generate(KeyAlg::Es256).unwrap();
    let rekey = |station: &str, seq: u64, supersedes: Option<String>| {
        let mut d = provisioning_doc(station, seq, "PM200-000001", "PM-200", &new);
        d.supersedes = supersedes;
        d
    };
    // Not allowed to re-key, even naming the right record.
    let d = rekey("line1-prov", 2, Some(first.record_id.clone()));
    assert_rejected(
        prov.factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(sign_provisioning(&d, &prov_key)),
            })
            .await,
        Code::AlreadyExists,
        "SERIAL_ENROLLED",
    );
    // Allowed, but naming no record or the wrong one.
    for sup in [
        None,
        Some("rec_00000000000000000000000000000000".to_string()),
    ] {
        let d = rekey("line2-prov", 1, sup);
        assert_rejected(
            depot
                .factory()
                .submit_record(pb::SubmitRecordRequest {
                    envelope: Some(sign_provisioning(&d, &depot_key)),
                })
                .await,
            Code::AlreadyExists,
            "SERIAL_ENROLLED",
        );
    }
    // Allowed and naming the current provisioning record.
    let d = rekey("line2-prov", 1, Some(first.record_id.clone()));
    depot
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&d, &depot_key)),
        })
        .await
        .expect("re-key accepted");
    // The old key no longer speaks for the unit; the new one does.
    assert_rejected(
        boot(&device, "PM200-000001", &old, 2).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
    );
    boot(&device, "PM200-000001", &new, 2)
        .await
        .expect("new key boots");
    // The old key is free again (a replacement board may carry it elsewhere).
    provision(&prov, "line1-prov", &prov_key, 3, "PM200-000002", &old)
        .await
        .expect("old key reusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_stations_are_refused_and_listed() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let prov_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    register_station(
        &admin,
        "line1-cal",
        &[pb::RecordKind::Calibration],
        &["PM-200"],
    )
    .await;
    register_station(
        &admin,
        "line2-prov",
        &[pb::RecordKind::Provisioning],
        &["*"],
    )
    .await;
    let prov = server.station("line1-prov").await;
    let unit = SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(&prov, "line1-prov", &prov_key, 1, "PM200-000001", &unit)
        .await
        .unwrap();

    // Registering an id twice is refused.
    let dup = admin
        .admin()
        .register_station(pb::RegisterStationRequest {
            station_id: "line1-prov".into(),
            public_key: unit.public_key().spki_der().to_vec(),
            allowed_kinds: vec![pb::RecordKind::Provisioning as i32],
            allowed_models: vec!["*".into()],
            allow_rekey: false,
        })
        .await;
    assert_rejected(dup, Code::AlreadyExists, "STATION_EXISTS");
    // A malformed key is refused with the field named.
    let msg = assert_rejected(
        admin
            .admin()
            .register_station(pb::RegisterStationRequest {
                station_id: "line9".into(),
                public_key: vec![1, 2, 3],
                allowed_kinds: vec![pb::RecordKind::Provisioning as i32],
                allowed_models: vec!["*".into()],
                allow_rekey: false,
            })
            .await,
        Code::InvalidArgument,
        "FIELD_INVALID",
    );
    assert!(msg.starts_with("public_key"), "{msg}");

    let revoked = admin
        .admin()
        .revoke_station(pb::RevokeStationRequest {
            station_id: "line1-prov".into(),
            reason: "key leaked".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked);
    assert_rejected(
        admin
            .admin()
            .revoke_station(pb::RevokeStationRequest {
                station_id: "nope".into(),
                reason: "x".into(),
            })
            .await,
        Code::NotFound,
        "STATION_NOT_FOUND",
    );
    let unit2 = SigningKey::generate(KeyAlg::Es256).unwrap();
    let before = server.stored();
    assert_rejected(
        provision(&prov, "line1-prov", &prov_key, 2, "PM200-000002", &unit2).await,
        Code::PermissionDenied,
        "STATION_REVOKED",
    );
    assert_eq!(server.stored(), before);

    // Listing pages through all three, in id order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .admin()
            .list_stations(pb::ListStationsRequest {
                page_size: 1,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.stations.len() <= 1);
        seen.extend(page.stations);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<&str> = seen.iter().map(|s| s.station_id.as_str()).collect();
    assert_eq!(ids, ["line1-cal", "line1-prov", "line2-prov"]);
    let l1 = &seen[1];
    assert!(l1.revoked && l1.revoked_reason == "key leaked" && l1.last_sequence == 1);
    assert!(!seen[0].revoked);
}
