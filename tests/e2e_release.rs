//! End-to-end: the release gate for MES. One test per gate code, appraisal
//! codes passing through, concessions (identity codes never waived), the
//! same question twice, decisions in the unit's history, and batches.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use attestd_client::pb;
use attestd_client::record::sign_calibration;
use attestd_client::Client;
use common::fleet::*;
use common::*;
use tonic::Code;

async fn check(mes: &Client, serial: &str) -> pb::ReleaseDecision {
    mes.release()
        .check_release(pb::CheckReleaseRequest {
            serial: serial.into(),
            ..Default::default()
        })
        .await
        .expect("a decision")
        .into_inner()
}

fn codes(d: &pb::ReleaseDecision) -> Vec<&str> {
    d.reasons.iter().map(|r| r.code.as_str()).collect()
}

fn released(d: &pb::ReleaseDecision) -> bool {
    d.decision == pb::Decision::Release as i32
}

crate::both_backends!(the_gate_holds_for_every_reason_and_releases_verified_units);
async fn the_gate_holds_for_every_reason_and_releases_verified_units() {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 6, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();
    let mes = f.server.client(Some(MES_TOKEN)).await;
    let serials: Vec<String> = f.units.iter().map(|u| u.serial.clone()).collect();
    let serial = |i: usize| serials[i].clone();

    // NOT_ENROLLED: nobody provisioned this serial.
    let d = check(&mes, "PM200-99999").await;
    assert!(!released(&d));
    assert_eq!(codes(&d), ["NOT_ENROLLED"]);

    // NO_FINAL_ATTESTATION: enrolled and calibrated, never booted.
    let d = check(&mes, &serial(0)).await;
    assert_eq!(codes(&d), ["NO_FINAL_ATTESTATION"]);

    // A verified unit is released, with the ids the decision rests on.
    f.boot(1).await;
    let d = check(&mes, &serial(1)).await;
    assert!(released(&d), "{:?}", d.reasons);
    let dev = f.get(1).await;
    assert_eq!(d.evidence_id, dev.last_evidence_id);
    assert_eq!(d.baseline_version, 1);
    assert_eq!(d.provisioning_record_id, dev.provisioning_record_id);
    assert_eq!(d.calibration_record_id, dev.calibration_record_id);
    assert_eq!(d.decided_for, "mes");
    assert!(!d.under_concession && d.concession_id.is_empty());
    // Asked again with nothing changed: the same answer.
    let again = check(&mes, &serial(1)).await;
    assert_eq!(
        (again.decision, &again.reasons, &again.evidence_id),
        (d.decision, &d.reasons, &d.evidence_id)
    );
    assert_ne!(again.decision_id, d.decision_id);

    // A new calibration record: held until the unit attests again after it.
    let mut cal = calibration_doc("line1-cal", 500, &serial(1), 0.01, "PASS");
    cal.performed_at = f.server_now().plus_seconds(-10).to_string();
    f.server
        .station("line1-cal")
        .await
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_calibration(&cal, &f.cal_key)),
        })
        .await
        .unwrap();
    let d = check(&mes, &serial(1)).await;
    assert_eq!(
        codes(&d),
        ["CALIBRATION_UNCONFIRMED", "NO_FINAL_ATTESTATION"]
    );
    f.units[1].cal_digest = attestd_client::core::ids::Digest::from_hex(&cal.calibration_digest);
    f.boot(1).await;
    assert!(released(&check(&mes, &serial(1)).await));

    // QUARANTINED, and released again when the hold is lifted.
    f.boot(2).await;
    let q = |on: bool| pb::SetQuarantineRequest {
        serial: serial(2),
        on,
        reason: "returned from the field".into(),
    };
    f.admin.release().set_quarantine(q(true)).await.unwrap();
    assert_eq!(codes(&check(&mes, &serial(2)).await), ["QUARANTINED"]);
    f.wait_for(
        2,
        pb::DeviceStatus::Quarantined,
        None,
        Duration::from_secs(5),
    )
    .await;
    f.admin.release().set_quarantine(q(false)).await.unwrap();
    assert!(released(&check(&mes, &serial(2)).await));

    // Appraisal codes pass through: debug enabled.
    f.boot_with(3, |c| c.dbgstat = 0).await;
    assert_eq!(codes(&check(&mes, &serial(3)).await), ["DEBUG_ENABLED"]);

    // A concession waives a named code ("approved under concession").
    f.units[4].app = ("2.1.3", 9);
    f.boot(4).await;
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.4", 10)],
        &["2.1.3"],
        "2026-01-02T00:00:00Z".into(),
    );
    f.publish(&v2, &[1, 2]).await.unwrap();
    let d = check(&mes, &serial(4)).await;
    assert_eq!(codes(&d), ["FIRMWARE_REVOKED"]);
    assert_eq!(d.baseline_version, 2);
    let c = f
        .admin
        .release()
        .grant_concession(pb::GrantConcessionRequest {
            serial: serial(4),
            waived_codes: vec!["FIRMWARE_REVOKED".into()],
            justification: "field-safety notice FSN-12 allows 2.1.3 until 2027-01".into(),
            meaning: "approved under concession per CAPA-123".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let d = check(&mes, &serial(4)).await;
    assert!(released(&d));
    assert!(d.under_concession);
    assert_eq!(d.concession_id, c.concession_id);
    assert!(d.reasons.iter().all(|r| r.waived));
    // A concession never waives an identity code.
    let msg = assert_rejected(
        f.admin
            .release()
            .grant_concession(pb::GrantConcessionRequest {
                serial: serial(3),
                waived_codes: vec!["DEBUG_ENABLED".into(), "DEVICE_REVOKED".into()],
                justification: "x".into(),
                meaning: "y".into(),
            })
            .await,
        Code::InvalidArgument,
        "FIELD_INVALID",
    );
    assert!(msg.contains("waived_codes[1]"), "{msg}");
    f.admin
        .admin()
        .revoke_device(pb::RevokeDeviceRequest {
            serial: serial(4),
            reason: "cloned".into(),
        })
        .await
        .unwrap();
    let d = check(&mes, &serial(4)).await;
    assert!(
        !released(&d),
        "a revoked unit is never released, concession or not"
    );
    assert!(codes(&d).contains(&"DEVICE_REVOKED"), "{:?}", codes(&d));

    // Decisions are in the unit's history, with their ids.
    let h = history(&f.auditor, &serial(1)).await;
    let decisions: Vec<pb::ReleaseDecision> = h
        .into_iter()
        .filter_map(|e| match e.entry {
            Some(pb::history_entry::Entry::ReleaseDecision(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(decisions.len(), 4);
    assert!(decisions
        .iter()
        .all(|d| d.decision_id.starts_with("rd_") && !d.evidence_id.is_empty()));

    // A pallet at once: one decision per serial, in order.
    let batch = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec![serial(1), serial(3), "NOPE-1".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, bool)> = batch
        .results
        .iter()
        .map(|d| (d.serial.clone(), released(d)))
        .collect();
    assert_eq!(
        got,
        vec![
            (serial(1), true),
            (serial(3), false),
            ("NOPE-1".into(), false)
        ]
    );
    assert_rejected(
        mes.release()
            .check_release_batch(pb::CheckReleaseBatchRequest {
                serials: vec!["X".into(); 1001],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "FIELD_INVALID",
    );

    // EVIDENCE_TOO_OLD: 73 hours after the last boot (the window is 72).
    f.server.advance_clock(73 * HOUR);
    let d = check(&mes, &serial(1)).await;
    assert!(codes(&d).contains(&"EVIDENCE_TOO_OLD"), "{:?}", codes(&d));
    assert!(!released(&d));
    // Only MES asks the gate.
    assert_rejected(
        f.admin
            .release()
            .check_release(pb::CheckReleaseRequest {
                serial: serial(1),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
    );
}
