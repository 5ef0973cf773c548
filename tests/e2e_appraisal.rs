//! End-to-end: baselines and appraisal against the real binary. The tamper
//! story of the Appraisal issue, baseline refusals, and re-appraisal that
//! touches only the units an index says are affected.

mod common;

use std::time::{Duration, Instant};

use attestd_client::core::baseline::{
    ApprovedDoc, BaselineDoc, BoundDoc, CalibrationPolicyDoc, ComponentDoc, FirmwareDoc,
    FreshnessDoc, RevokedDoc, SecurityDoc,
};
use attestd_client::core::evidence::{CalibrationClaim, Claims, Component};
use attestd_client::core::ids::Digest;
use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration};
use attestd_client::{Client, SigningKey};
use base64::Engine as _;
use common::*;
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

fn app_digest(version: &str) -> Digest {
    d(&format!("application {version}"))
}

struct Unit {
    serial: String,
    model: String,
    key: SigningKey,
    /// (version, svn) of the application it runs.
    app: (&'static str, u64),
    cal_digest: Option<Digest>,
    bootcount: u64,
}

struct Fleet {
    server: TestServer,
    admin: Client,
    device: Client,
    auditor: Client,
    release: Vec<SigningKey>,
    prov_key: SigningKey,
    cal_key: SigningKey,
    depot_key: SigningKey,
    units: Vec<Unit>,
    seq: u64,
}

fn baseline_doc(
    model: &str,
    version: u64,
    approved_apps: &[(&str, u64)],
    revoked: &[&str],
    effective_at: String,
) -> BaselineDoc {
    BaselineDoc {
        model: model.into(),
        hw_versions: vec!["A".into(), "B".into()],
        version,
        effective_at,
        description: format!("{model} v{version}"),
        firmware: FirmwareDoc {
            components: vec![
                ComponentDoc {
                    name: "bootloader".into(),
                    min_svn: 4,
                    approved: vec![ApprovedDoc {
                        version: "2.1.0".into(),
                        svn: 4,
                        digest: d("bootloader 2.1.0").to_hex(),
                    }],
                },
                ComponentDoc {
                    name: "application".into(),
                    min_svn: 9,
                    approved: approved_apps
                        .iter()
                        .map(|(v, svn)| ApprovedDoc {
                            version: v.to_string(),
                            svn: *svn,
                            digest: app_digest(v).to_hex(),
                        })
                        .collect(),
                },
            ],
            revoked: revoked
                .iter()
                .map(|v| RevokedDoc {
                    digest: app_digest(v).to_hex(),
                    reason: format!("CVE-2026-{v}"),
                })
                .collect(),
        },
        calibration: CalibrationPolicyDoc {
            required: true,
            max_interval_days: 365,
            parameters: vec![BoundDoc {
                name: "spo2_offset".into(),
                min: -0.5,
                max: 0.5,
            }],
        },
        security: SecurityDoc {
            require_secure_boot: true,
            min_dbgstat: 3,
        },
        freshness: FreshnessDoc {
            max_evidence_age_hours: 24,
            nonce_required: true,
        },
    }
}

impl Fleet {
    async fn start() -> Fleet {
        let release: Vec<SigningKey> = (0..3)
            .map(|i| {
                SigningKey::generate(if i == 1 {
                    KeyAlg::Ed25519
                } else {
                    KeyAlg::Es256
                })
                .unwrap()
            })
            .collect();
        let keys = release
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k.public_key().spki_der()))
            .collect();
        let server = TestServer::start_with(Options {
            release: Some((2, keys)),
            test_clock: true,
            limits: vec![("reappraisal_interval_ms", "100".into())],
        });
        let admin = server.admin().await;
        let models = &["PM-200", "IP-900"];
        let prov_key = register_station(
            &admin,
            "line1-prov",
            &[pb::RecordKind::Provisioning],
            models,
        )
        .await;
        let cal_key =
            register_station(&admin, "line1-cal", &[pb::RecordKind::Calibration], models).await;
        let depot_key =
            register_station(&admin, "depot-cal", &[pb::RecordKind::Calibration], models).await;
        Fleet {
            device: server.client(None).await,
            auditor: server.client(Some(AUDITOR_TOKEN)).await,
            server,
            admin,
            release,
            prov_key,
            cal_key,
            depot_key,
            units: Vec::new(),
            seq: 0,
        }
    }

    /// Now on the server's clock, as RFC 3339.
    fn server_now(&self) -> attestd_client::core::time::UnixTime {
        now().plus_seconds(self.server.clock_offset().as_secs() as i64)
    }

    /// Provisions and calibrates `n` units of `model`; calibration by the
    /// depot for the indices in `depot`, by line1-cal otherwise.
    async fn enroll(&mut self, model: &str, n: usize, depot: std::ops::Range<usize>) {
        let prov = self.server.station("line1-prov").await;
        for i in 0..n {
            let serial = format!("{}-{i:05}", model.replace('-', ""));
            let key = SigningKey::generate(KeyAlg::Es256).unwrap();
            self.seq += 1;
            let mut doc = provisioning_doc("line1-prov", self.seq, &serial, model, &key);
            doc.firmware.clear();
            prov.factory()
                .submit_record(pb::SubmitRecordRequest {
                    envelope: Some(attestd_client::record::sign_provisioning(
                        &doc,
                        &self.prov_key,
                    )),
                })
                .await
                .expect("provisioning");
            let (station, skey) = if depot.contains(&i) {
                ("depot-cal", &self.depot_key)
            } else {
                ("line1-cal", &self.cal_key)
            };
            self.seq += 1;
            let cal = calibration_doc(station, self.seq, &serial, 0.04, "PASS");
            self.server
                .station(station)
                .await
                .factory()
                .submit_record(pb::SubmitRecordRequest {
                    envelope: Some(sign_calibration(&cal, skey)),
                })
                .await
                .expect("calibration");
            let cal_digest = Digest::from_hex(&cal.calibration_digest);
            // Units 20..=29 run the older application build.
            let app = if (20..30).contains(&i) {
                ("2.1.3", 9)
            } else {
                ("2.1.4", 10)
            };
            self.units.push(Unit {
                serial,
                model: model.into(),
                key,
                app,
                cal_digest,
                bootcount: 0,
            });
        }
    }

    async fn publish(
        &self,
        doc: &BaselineDoc,
        signers: &[usize],
    ) -> Result<pb::PublishBaselineResponse, tonic::Status> {
        let keys: Vec<&SigningKey> = signers.iter().map(|i| &self.release[*i]).collect();
        self.admin
            .baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(sign_baseline(doc, &keys)),
            })
            .await
            .map(|r| r.into_inner())
    }

    fn index(&self, serial: &str) -> usize {
        self.units.iter().position(|u| u.serial == serial).unwrap()
    }

    /// Boots unit `i` with its normal claims, changed by `tweak`.
    async fn boot_with(&mut self, i: usize, tweak: impl FnOnce(&mut Claims)) -> pb::Appraisal {
        let u = &mut self.units[i];
        u.bootcount += 1;
        let nonce = challenge(&self.device, &u.serial).await;
        let mut c = claims(&u.serial, u.bootcount);
        c.hwmodel = u.model.clone();
        c.nonce = Some(nonce);
        c.components.push(Component {
            name: "application".into(),
            version: u.app.0.into(),
            svn: u.app.1,
            digest: app_digest(u.app.0),
        });
        c.components[0].digest = d("bootloader 2.1.0");
        c.calibration = u.cal_digest.map(|digest| CalibrationClaim {
            id: "CAL".into(),
            digest,
        });
        tweak(&mut c);
        let r = submit(&self.device, sign_evidence(&c, &u.key))
            .await
            .expect("evidence accepted");
        r.appraisal.unwrap()
    }

    async fn boot(&mut self, i: usize) -> pb::Appraisal {
        self.boot_with(i, |_| {}).await
    }

    async fn get(&self, i: usize) -> pb::Device {
        self.auditor
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: self.units[i].serial.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn status(&self, i: usize) -> pb::DeviceStatus {
        pb::DeviceStatus::try_from(self.get(i).await.status).unwrap()
    }

    /// Waits until unit `i` has `status` and (if given) `code` among its reasons.
    async fn wait_for(
        &self,
        i: usize,
        status: pb::DeviceStatus,
        code: Option<&str>,
        within: Duration,
    ) -> pb::Device {
        let deadline = Instant::now() + within;
        loop {
            let dev = self.get(i).await;
            let has_code = code.is_none_or(|c| {
                dev.appraisal
                    .as_ref()
                    .is_some_and(|a| a.reasons.iter().any(|r| r.code == c))
            });
            if dev.status == status as i32 && has_code {
                return dev;
            }
            assert!(
                Instant::now() < deadline,
                "unit {i} still {:?} after {within:?}: {:?}",
                pb::DeviceStatus::try_from(dev.status),
                dev.appraisal
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn codes(a: &pb::Appraisal) -> Vec<&str> {
    a.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    for i in (0..50).filter(|i| !(7..=10).contains(i) && !(20..30).contains(i)) {
        let dev = f
            .wait_for(i, pb::DeviceStatus::Trusted, None, Duration::from_secs(5))
            .await;
        assert_eq!(
            dev.appraisal.unwrap().baseline_version,
            2,
            "unit {i} re-appraised against v2"
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
