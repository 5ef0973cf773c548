//! End-to-end: baselines and appraisal against the real binary. The tamper
//! story of the Appraisal issue, baseline refusals, and re-appraisal that
//! touches only the units an index says are affected.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use attestd_client::core::ids::Digest;
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration};
use attestd_client::SigningKey;
use common::fleet::*;
use common::*;
use tonic::Code;

crate::both_backends!(the_tamper_story);
async fn the_tamper_story() {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 50, 45..50).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    let published = f
        .publish(&v1, &[0, 2])
        .await
        .expect("2-of-3 signatures accepted");
    assert_eq!(published.state, pb::BaselineState::Active as i32);

    // Every unit boots and is TRUSTED.
    for i in 0..50 {
        let a = f.boot(i).await;
        assert_eq!(
            a.tier,
            pb::TrustTier::Affirming as i32,
            "unit {i}: {:?}",
            codes(&a)
        );
        assert_eq!(a.baseline_version, 1);
    }
    for i in 0..50 {
        assert_eq!(f.status(i).await, pb::DeviceStatus::Trusted, "unit {i}");
    }

    // Unit 7: calibration changed outside an authorised calibration.
    let a = f
        .boot_with(7, |c| {
            c.calibration.as_mut().unwrap().digest = d("tampered")
        })
        .await;
    assert!(
        codes(&a).contains(&"CALIBRATION_MISMATCH"),
        "{:?}",
        codes(&a)
    );
    assert_eq!(a.trust_vector.unwrap().configuration, -97);
    // Unit 8: an application build nobody approved.
    let a = f
        .boot_with(8, |c| c.components[1].digest = d("application 2.1.4-evil"))
        .await;
    assert!(
        codes(&a).contains(&"FIRMWARE_UNAPPROVED"),
        "{:?}",
        codes(&a)
    );
    // Unit 9: svn below min_svn.
    let a = f
        .boot_with(9, |c| {
            c.components[1].svn = 8;
            c.components[1].version = "2.0.9".into();
        })
        .await;
    assert!(codes(&a).contains(&"FIRMWARE_ROLLBACK"), "{:?}", codes(&a));
    // Unit 10: debug enabled.
    let a = f.boot_with(10, |c| c.dbgstat = 1).await;
    assert!(codes(&a).contains(&"DEBUG_ENABLED"), "{:?}", codes(&a));
    for (i, code) in [
        (7, "CALIBRATION_MISMATCH"),
        (8, "FIRMWARE_UNAPPROVED"),
        (9, "FIRMWARE_ROLLBACK"),
        (10, "DEBUG_ENABLED"),
    ] {
        let dev = f.get(i).await;
        assert_eq!(dev.status, pb::DeviceStatus::Untrusted as i32, "unit {i}");
        assert_eq!(
            dev.appraisal.unwrap().tier,
            pb::TrustTier::Contraindicated as i32
        );
        let _ = code;
    }

    // Baseline v2 revokes the application build units 20..=29 run: they turn
    // UNTRUSTED without booting, within 5 seconds; the others stay as they were.
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.4", 10)],
        &["2.1.3"],
        "2026-01-02T00:00:00Z".into(),
    );
    let started = Instant::now();
    f.publish(&v2, &[1, 2]).await.expect("v2 accepted");
    for i in 20..30 {
        let dev = f
            .wait_for(
                i,
                pb::DeviceStatus::Untrusted,
                Some("FIRMWARE_REVOKED"),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(dev.appraisal.unwrap().baseline_version, 2);
    }
    eprintln!(
        "ten units re-graded {:?} after v2 was published",
        started.elapsed()
    );
    // The others are re-appraised against v2 after them (the units on the
    // withdrawn build go first) and stay TRUSTED.
    for i in (0..50).filter(|i| !(7..=10).contains(i) && !(20..30).contains(i)) {
        let dev = f
            .wait_until(i, Duration::from_secs(5), |d| {
                d.appraisal
                    .as_ref()
                    .is_some_and(|a| a.baseline_version == 2)
            })
            .await;
        assert_eq!(dev.status, pb::DeviceStatus::Trusted as i32, "unit {i}");
    }
    for i in 7..=10 {
        assert_eq!(
            f.status(i).await,
            pb::DeviceStatus::Untrusted,
            "unit {i} stays untrusted"
        );
    }

    // The depot that calibrated units 45..=49 is revoked: their sourced_data
    // is contraindicated; nobody else's.
    f.admin
        .admin()
        .revoke_station(pb::RevokeStationRequest {
            station_id: "depot-cal".into(),
            reason: "compromised".into(),
        })
        .await
        .unwrap();
    for i in 45..50 {
        let dev = f
            .wait_for(
                i,
                pb::DeviceStatus::Untrusted,
                Some("STATION_REVOKED"),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(
            dev.appraisal.unwrap().trust_vector.unwrap().sourced_data,
            96
        );
    }
    assert_eq!(f.status(44).await, pb::DeviceStatus::Trusted);

    // A calibration whose due date passes: unit 40 gets a new calibration
    // (PASS, due in 2 hours) and boots with it; 3 hours later it is WARNING.
    let mut cal = calibration_doc("line1-cal", 1000, &f.units[40].serial, 0.02, "PASS");
    cal.performed_at = f.server_now().plus_seconds(-60).to_string();
    cal.next_due_at = f.server_now().plus_seconds(2 * 3600).to_string();
    f.server
        .station("line1-cal")
        .await
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_calibration(&cal, &f.cal_key)),
        })
        .await
        .unwrap();
    // The new record is not yet attested: a warning until the unit boots.
    f.wait_for(
        40,
        pb::DeviceStatus::Warning,
        Some("CALIBRATION_UNCONFIRMED"),
        Duration::from_secs(5),
    )
    .await;
    f.units[40].cal_digest = Digest::from_hex(&cal.calibration_digest);
    let a = f.boot(40).await;
    assert_eq!(a.tier, pb::TrustTier::Affirming as i32, "{:?}", codes(&a));
    f.server.advance_clock(3 * HOUR);
    f.wait_for(
        40,
        pb::DeviceStatus::Warning,
        Some("CALIBRATION_OVERDUE"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        f.status(39).await,
        pb::DeviceStatus::Trusted,
        "3 hours is not stale"
    );

    // A unit that stops reporting becomes STALE: everyone trusted reboots
    // except unit 41, then a day passes.
    for i in (0..45).filter(|i| ![7, 8, 9, 10, 40, 41].contains(i) && !(20..30).contains(i)) {
        let a = f.boot(i).await;
        assert_eq!(a.tier, pb::TrustTier::Affirming as i32, "unit {i}");
    }
    f.server.advance_clock(22 * HOUR);
    f.wait_for(41, pb::DeviceStatus::Stale, None, Duration::from_secs(5))
        .await;
    assert_eq!(
        f.status(42).await,
        pb::DeviceStatus::Trusted,
        "rebooted 22 hours ago"
    );
    let i = f.index(&f.units[0].serial.clone());
    assert_eq!(f.status(i).await, pb::DeviceStatus::Trusted);

    // A security admin revokes unit 42 (say its key leaked): UNTRUSTED at
    // once, without booting, and booting does not wash it clean.
    let r = f
        .admin
        .admin()
        .revoke_device(pb::RevokeDeviceRequest {
            serial: f.units[42].serial.clone(),
            reason: "key leaked".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.revoked);
    let dev = f
        .wait_for(
            42,
            pb::DeviceStatus::Untrusted,
            Some("DEVICE_REVOKED"),
            Duration::from_secs(5),
        )
        .await;
    assert!(dev.revoked);
    assert_eq!(
        dev.appraisal
            .unwrap()
            .trust_vector
            .unwrap()
            .instance_identity,
        96
    );
    let a = f.boot(42).await;
    assert!(codes(&a).contains(&"DEVICE_REVOKED"), "{:?}", codes(&a));
    assert_eq!(f.status(42).await, pb::DeviceStatus::Untrusted);
    assert_eq!(f.status(43).await, pb::DeviceStatus::Trusted);
}

crate::both_backends!(refused_baselines_change_no_unit);
async fn refused_baselines_change_no_unit() {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 3, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();
    for i in 0..3 {
        f.boot(i).await;
    }
    f.server.wait_idle().await;
    let before: Vec<pb::Device> = all_devices(&f).await;
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.4", 10)],
        &["2.1.4"],
        "2026-01-02T00:00:00Z".into(),
    );

    // One signature when two are required; the same key twice; a stranger's key.
    assert_rejected(
        f.publish(&v2, &[0]).await,
        Code::PermissionDenied,
        "THRESHOLD_NOT_MET",
    );
    assert_rejected(
        f.publish(&v2, &[1, 1]).await,
        Code::PermissionDenied,
        "THRESHOLD_NOT_MET",
    );
    let stranger = SigningKey::generate(KeyAlg::Es256).unwrap();
    let env = sign_baseline(&v2, &[&f.release[0], &stranger]);
    assert_rejected(
        f.admin
            .baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(env),
            })
            .await,
        Code::PermissionDenied,
        "THRESHOLD_NOT_MET",
    );
    // A version that does not increase.
    let again = baseline_doc(
        "PM-200",
        1,
        &[("2.1.4", 10)],
        &["2.1.4"],
        "2026-01-02T00:00:00Z".into(),
    );
    assert_rejected(
        f.publish(&again, &[0, 1]).await,
        Code::FailedPrecondition,
        "VERSION_NOT_INCREASING",
    );
    // An unknown JSON field, named.
    let mut v = serde_json::to_value(&v2).unwrap();
    v["security"]["require_secure_boot_please"] = serde_json::json!(true);
    let payload = serde_json::to_vec(&v).unwrap();
    let env = attestd_client::record::sign_envelope_multi(
        attestd_client::core::baseline::BASELINE_TYPE,
        payload,
        &[&f.release[0], &f.release[2]],
    );
    let msg = assert_rejected(
        f.admin
            .baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(env),
            })
            .await,
        Code::InvalidArgument,
        "MALFORMED_JSON",
    );
    assert!(
        msg.contains("security") && msg.contains("require_secure_boot_please"),
        "{msg}"
    );
    // Release signatures are not enough without a security-admin principal.
    let mes = f.server.client(Some(MES_TOKEN)).await;
    let env = sign_baseline(&v2, &[&f.release[0], &f.release[2]]);
    assert_rejected(
        mes.baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(env),
            })
            .await,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
    );

    // Nothing changed: same devices, same appraisals, same timestamps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all_devices(&f).await, before);
    let active = f
        .auditor
        .baselines()
        .get_baseline(pb::GetBaselineRequest {
            model: "PM-200".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.version, 1);
    let list = f
        .auditor
        .baselines()
        .list_baselines(pb::ListBaselinesRequest {
            model: "PM-200".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.baselines.len(), 1);
}

async fn all_devices(f: &Fleet) -> Vec<pb::Device> {
    let mut out = Vec::new();
    for i in 0..f.units.len() {
        out.push(f.get(i).await);
    }
    out
}

crate::both_backends!(
    reappraisal_touches_only_the_affected_model_and_future_baselines_activate_on_time
);
async fn reappraisal_touches_only_the_affected_model_and_future_baselines_activate_on_time() {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 6, 0..0).await;
    f.enroll("IP-900", 6, 0..0).await;
    for model in ["PM-200", "IP-900"] {
        f.publish(
            &baseline_doc(
                model,
                1,
                &[("2.1.3", 9), ("2.1.4", 10)],
                &[],
                "2026-01-01T00:00:00Z".into(),
            ),
            &[0, 1],
        )
        .await
        .unwrap();
    }
    for i in 0..f.units.len() {
        let a = f.boot(i).await;
        assert_eq!(
            a.tier,
            pb::TrustTier::Affirming as i32,
            "unit {i}: {:?}",
            codes(&a)
        );
    }
    let ip: Vec<usize> = (0..f.units.len())
        .filter(|i| f.units[*i].model == "IP-900")
        .collect();
    let mut before = Vec::new();
    for i in &ip {
        before.push(f.get(*i).await);
    }

    // PM-200 v2 revokes 2.1.4: every PM-200 unit is re-appraised and UNTRUSTED.
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.3", 9)],
        &["2.1.4"],
        "2026-01-02T00:00:00Z".into(),
    );
    f.publish(&v2, &[0, 2]).await.unwrap();
    for i in (0..f.units.len()).filter(|i| f.units[*i].model == "PM-200") {
        f.wait_for(
            i,
            pb::DeviceStatus::Untrusted,
            Some("FIRMWARE_REVOKED"),
            Duration::from_secs(5),
        )
        .await;
    }
    // IP-900 runs the same builds, but its baseline did not change: untouched.
    let mut after = Vec::new();
    for i in &ip {
        after.push(f.get(*i).await);
    }
    assert_eq!(after, before, "IP-900 units must not be re-appraised");

    // A baseline that takes effect later: pending now, active once its time comes.
    let later = f.server_now().plus_seconds(3600).to_string();
    let v3 = baseline_doc("PM-200", 3, &[("2.1.3", 9), ("2.1.4", 10)], &[], later);
    let r = f.publish(&v3, &[1, 2]).await.unwrap();
    assert_eq!(r.state, pb::BaselineState::Pending as i32);
    let got = f
        .auditor
        .baselines()
        .get_baseline(pb::GetBaselineRequest {
            model: "PM-200".into(),
            version: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state, pb::BaselineState::Pending as i32);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        f.status(0).await,
        pb::DeviceStatus::Untrusted,
        "v3 is not active yet"
    );
    f.server.advance_clock(2 * HOUR);
    for i in (0..f.units.len()).filter(|i| f.units[*i].model == "PM-200") {
        let dev = f
            .wait_for(i, pb::DeviceStatus::Trusted, None, Duration::from_secs(5))
            .await;
        assert_eq!(dev.appraisal.unwrap().baseline_version, 3);
    }
    let list = f
        .auditor
        .baselines()
        .list_baselines(pb::ListBaselinesRequest {
            model: "PM-200".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(u64, i32)> = list
        .baselines
        .iter()
        .map(|b| (b.version, b.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (3, pb::BaselineState::Active as i32),
            (2, pb::BaselineState::Superseded as i32),
            (1, pb::BaselineState::Superseded as i32)
        ]
    );
    // The IP-900 units are still exactly as they were.
    let mut still = Vec::new();
    for i in &ip {
        still.push(f.get(*i).await);
    }
    assert_eq!(still, before);
}
