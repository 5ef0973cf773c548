//! A fleet fixture for end-to-end tests that need baselines: release keys,
//! stations, units that are provisioned, calibrated and booted, and helpers
//! to wait for the re-appraisal job.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use attestd_client::core::baseline::BaselineDoc;
use attestd_client::core::evidence::{CalibrationClaim, Claims, Component};
use attestd_client::core::ids::Digest;
use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration};
use attestd_client::{Client, SigningKey};
use base64::Engine as _;

use super::*;

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

pub(crate) fn app_digest(version: &str) -> Digest {
    attestd_client::sample::application_digest(version)
}

pub(crate) struct Unit {
    pub serial: String,
    pub model: String,
    pub key: SigningKey,
    /// (version, svn) of the application it runs.
    pub app: (&'static str, u64),
    pub cal_digest: Option<Digest>,
    pub bootcount: u64,
}

pub(crate) struct Fleet {
    pub server: TestServer,
    pub admin: Client,
    pub device: Client,
    pub auditor: Client,
    pub release: Vec<SigningKey>,
    pub prov_key: SigningKey,
    pub cal_key: SigningKey,
    pub depot_key: SigningKey,
    pub units: Vec<Unit>,
    pub seq: u64,
}

impl Unit {
    /// The claims of a normal boot: its model, application build and
    /// calibration, answering `nonce`.
    pub(crate) fn claims(&self, bootcount: u64, nonce: Vec<u8>) -> Claims {
        let mut c = claims(&self.serial, bootcount);
        c.hwmodel = self.model.clone();
        c.nonce = Some(nonce);
        c.components.push(Component {
            name: "application".into(),
            version: self.app.0.into(),
            svn: self.app.1,
            digest: app_digest(self.app.0),
        });
        c.components[0].digest = d("bootloader 2.1.0");
        c.calibration = self.cal_digest.map(|digest| CalibrationClaim {
            id: "CAL".into(),
            digest,
        });
        c
    }
}

pub(crate) fn baseline_doc(
    model: &str,
    version: u64,
    approved_apps: &[(&str, u64)],
    revoked: &[&str],
    effective_at: String,
) -> BaselineDoc {
    attestd_client::sample::baseline(model, version, approved_apps, revoked, &effective_at)
}

impl Fleet {
    pub(crate) async fn start() -> Fleet {
        Fleet::start_on(Options::default()).await
    }

    /// A fleet on a server started with `opts` (release keys, test clock
    /// and a quick re-appraisal are added).
    pub(crate) async fn start_on(opts: Options) -> Fleet {
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
        let mut limits = opts.limits.clone();
        limits.push(("reappraisal_interval_ms", "100".into()));
        let server = TestServer::start_with(Options {
            release: Some((2, keys)),
            test_clock: true,
            limits,
            ..opts
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
    pub(crate) fn server_now(&self) -> attestd_client::core::time::UnixTime {
        now().plus_seconds(self.server.clock_offset().as_secs() as i64)
    }

    /// Provisions and calibrates `n` units of `model`; calibration by the
    /// depot for the indices in `depot`, by line1-cal otherwise.
    pub(crate) async fn enroll(&mut self, model: &str, n: usize, depot: std::ops::Range<usize>) {
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

    pub(crate) async fn publish(
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

    /// Assigns unit `i` to `tenant` at `site` (department "icu", asset tag
    /// `TAG-<i>`).
    pub(crate) async fn assign(&self, i: usize, tenant: &str, site: &str) {
        self.admin
            .admin()
            .assign_device(pb::AssignDeviceRequest {
                serial: self.units[i].serial.clone(),
                tenant: tenant.into(),
                site: site.into(),
                department: "icu".into(),
                asset_tag: format!("TAG-{i}"),
            })
            .await
            .unwrap();
    }

    pub(crate) fn index(&self, serial: &str) -> usize {
        self.units.iter().position(|u| u.serial == serial).unwrap()
    }

    /// Boots unit `i` with its normal claims, changed by `tweak`.
    pub(crate) async fn boot_with(
        &mut self,
        i: usize,
        tweak: impl FnOnce(&mut Claims),
    ) -> pb::Appraisal {
        let u = &mut self.units[i];
        u.bootcount += 1;
        let nonce = challenge(&self.device, &u.serial).await;
        let mut c = u.claims(u.bootcount, nonce);
        tweak(&mut c);
        let r = submit(&self.device, sign_evidence(&c, &u.key))
            .await
            .expect("evidence accepted");
        r.appraisal.unwrap()
    }

    pub(crate) async fn boot(&mut self, i: usize) -> pb::Appraisal {
        self.boot_with(i, |_| {}).await
    }

    pub(crate) async fn get(&self, i: usize) -> pb::Device {
        self.auditor
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: self.units[i].serial.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn status(&self, i: usize) -> pb::DeviceStatus {
        pb::DeviceStatus::try_from(self.get(i).await.status).unwrap()
    }

    /// Waits until unit `i` has `status` and (if given) `code` among its reasons.
    pub(crate) async fn wait_for(
        &self,
        i: usize,
        status: pb::DeviceStatus,
        code: Option<&str>,
        within: Duration,
    ) -> pb::Device {
        self.wait_until(i, within, |dev| {
            let has_code = code.is_none_or(|c| {
                dev.appraisal
                    .as_ref()
                    .is_some_and(|a| a.reasons.iter().any(|r| r.code == c))
            });
            dev.status == status as i32 && has_code
        })
        .await
    }

    /// Polls unit `i` until `ok` holds; fails the test after `within`.
    pub(crate) async fn wait_until(
        &self,
        i: usize,
        within: Duration,
        ok: impl Fn(&pb::Device) -> bool,
    ) -> pb::Device {
        let deadline = Instant::now() + within;
        loop {
            let dev = self.get(i).await;
            if ok(&dev) {
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

pub(crate) fn codes(a: &pb::Appraisal) -> Vec<&str> {
    a.reasons.iter().map(|r| r.code.as_str()).collect()
}
