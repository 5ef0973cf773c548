//! An in-process server with a fleet of trusted units: provisioned,
//! calibrated and booted under a baseline that approves them, each
//! released. Its store can fail or hold a caller on demand (`faulty`).

#![allow(dead_code)]

use std::sync::Arc;

use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration};
use attestd_client::{Client, SigningKey};
use attestd_server::settings::{Limits, ReleaseConfig};
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::Store;
use base64::Engine as _;

use super::faulty::FaultyStore;
use super::inproc::InProc;
use super::*;

pub(crate) struct Bench {
    pub srv: InProc,
    pub store: Arc<FaultyStore>,
    _dir: tempfile::TempDir,
    pub release_key: SigningKey,
    pub admin: Client,
    pub mes: Client,
    /// (serial, device key) of PM200-1, PM200-2, ...
    pub units: Vec<(String, SigningKey)>,
}

pub(crate) const PROV: &str = "line1-prov";
pub(crate) const CAL: &str = "line1-cal";

/// A server with `n` units PM200-1.. that are provisioned, calibrated,
/// booted under a baseline that approves them, and released.
pub(crate) async fn trusted(n: usize, limits: Limits) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(
        SledStore::open(
            dir.path(),
            &SledConfig {
                cache_capacity: 8 << 20,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let store = Arc::new(FaultyStore::new(sled));
    let release_key = SigningKey::generate(KeyAlg::Es256).unwrap();
    let release = ReleaseConfig {
        threshold: 1,
        keys: vec![
            base64::engine::general_purpose::STANDARD.encode(release_key.public_key().spki_der())
        ],
    };
    let srv = InProc::start_with(store.clone(), release, now().0 * 1000, limits).await;
    let admin = srv.client(Some(ADMIN_TOKEN)).await;
    let mes = srv.client(Some(MES_TOKEN)).await;
    let prov_key =
        register_station(&admin, PROV, &[pb::RecordKind::Provisioning], &["PM-200"]).await;
    let cal_key = register_station(&admin, CAL, &[pb::RecordKind::Calibration], &["PM-200"]).await;
    publish(&admin, &release_key, 1, false).await;
    let prov = srv.client(Some(station_token(PROV))).await;
    let cal = srv.client(Some(station_token(CAL))).await;
    let mut units = Vec::new();
    for i in 1..=n {
        let serial = format!("PM200-{i}");
        let key = SigningKey::generate(KeyAlg::Es256).unwrap();
        provision(&prov, PROV, &prov_key, i as u64, &serial, &key)
            .await
            .unwrap();
        let doc = calibration_doc(CAL, i as u64, &serial, 0.0, "PASS");
        cal.factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(sign_calibration(&doc, &cal_key)),
            })
            .await
            .unwrap();
        units.push((serial, key));
    }
    srv.settle().await;
    srv.clock.advance_ms(1000);
    let device = srv.client(None).await;
    for (i, (serial, key)) in units.iter().enumerate() {
        let mut c = claims(serial, 1);
        c.nonce = Some(challenge(&device, serial).await);
        c.calibration = Some(attestd_client::core::evidence::CalibrationClaim {
            id: "CAL".into(),
            digest: attestd_client::core::ids::Digest::from_hex(
                &calibration_doc(CAL, i as u64 + 1, serial, 0.0, "PASS").calibration_digest,
            )
            .unwrap(),
        });
        c.components[0].digest = attestd_client::core::ids::Digest::of(b"bootloader 2.1.0");
        submit(&device, sign_evidence(&c, key)).await.unwrap();
    }
    let b = Bench {
        srv,
        store,
        _dir: dir,
        release_key,
        admin,
        mes,
        units,
    };
    for (serial, _) in &b.units {
        let d = b.check(serial).await;
        assert_eq!(d.decision, pb::Decision::Release as i32, "{:?}", d.reasons);
        assert_eq!(
            b.device(serial).await.status,
            pb::DeviceStatus::Trusted as i32
        );
    }
    b
}

/// Publishes baseline `version` of PM-200 approving the units' bootloader,
/// or withdrawing its build when `withdraw`.
pub(crate) async fn publish(admin: &Client, key: &SigningKey, version: u64, withdraw: bool) {
    let mut doc = super::fleet::baseline_doc(
        "PM-200",
        version,
        &[("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    doc.firmware.components.retain(|c| c.name == "bootloader");
    if withdraw {
        doc.firmware
            .revoked
            .push(attestd_client::core::baseline::RevokedDoc {
                digest: attestd_client::core::ids::Digest::of(b"bootloader 2.1.0").to_hex(),
                reason: "bootloader 2.1.0 withdrawn".into(),
            });
    }
    doc.calibration.parameters.clear();
    admin
        .baselines()
        .publish_baseline(pb::PublishBaselineRequest {
            envelope: Some(sign_baseline(&doc, &[key])),
        })
        .await
        .unwrap();
}

impl Bench {
    pub(crate) async fn check(&self, serial: &str) -> pb::ReleaseDecision {
        self.mes
            .release()
            .check_release(pb::CheckReleaseRequest {
                serial: serial.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn device(&self, serial: &str) -> pb::Device {
        self.admin
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: serial.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}
