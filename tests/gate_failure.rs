//! The gate fails closed: with the store failing, no unit is ever released;
//! CheckRelease answers UNAVAILABLE and a batch holds every unit.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use attestd_client::core::baseline::BaselineDoc;
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration};
use attestd_client::SigningKey;
use attestd_server::settings::ReleaseConfig;
use attestd_store::sled_store::{SledConfig, SledStore};
use base64::Engine as _;
use common::faulty::FaultyStore;
use common::inproc::InProc;
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_release_when_the_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sled = Arc::new(
        SledStore::open(
            dir.path(),
            &SledConfig {
                cache_capacity: 8 << 20,
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
    let srv = InProc::start(store.clone(), release, now().0 * 1000).await;
    let admin = srv.client(Some(ADMIN_TOKEN)).await;
    let mes = srv.client(Some(MES_TOKEN)).await;
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
    let unit = SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(
        &srv.client(Some(station_token("line1-prov"))).await,
        "line1-prov",
        &prov_key,
        1,
        "PM200-1",
        &unit,
    )
    .await
    .unwrap();
    let cal = calibration_doc("line1-cal", 1, "PM200-1", 0.0, "PASS");
    srv.client(Some(station_token("line1-cal")))
        .await
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_calibration(&cal, &cal_key)),
        })
        .await
        .unwrap();
    // A baseline that approves exactly what the unit runs.
    let mut doc: BaselineDoc = common::fleet::baseline_doc(
        "PM-200",
        1,
        &[("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    doc.firmware.components.retain(|c| c.name == "bootloader");
    doc.calibration.parameters.clear();
    admin
        .baselines()
        .publish_baseline(pb::PublishBaselineRequest {
            envelope: Some(sign_baseline(&doc, &[&release_key])),
        })
        .await
        .unwrap();
    srv.settle().await;
    // The unit attests after its records.
    srv.clock.advance_ms(1000);
    let mut c = claims("PM200-1", 1);
    c.nonce = Some(challenge(&srv.client(None).await, "PM200-1").await);
    c.calibration = Some(attestd_client::core::evidence::CalibrationClaim {
        id: "CAL".into(),
        digest: attestd_client::core::ids::Digest::from_hex(&cal.calibration_digest).unwrap(),
    });
    c.components[0].digest = attestd_client::core::ids::Digest::of(b"bootloader 2.1.0");
    submit(
        &srv.client(None).await,
        attestd_client::evidence::sign_evidence(&c, &unit),
    )
    .await
    .unwrap();
    let ok = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.decision,
        pb::Decision::Release as i32,
        "{:?}",
        ok.reasons
    );

    // The disk goes away.
    store.failing.store(true, Ordering::SeqCst);
    let r = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-1".into(),
        })
        .await;
    assert_rejected(r, Code::Unavailable, "STORE_UNAVAILABLE");
    let batch = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec!["PM200-1".into(), "PM200-2".into()],
        })
        .await;
    // Either the whole call fails or every unit is held: never a release.
    if let Ok(b) = batch {
        let b = b.into_inner();
        assert_eq!(b.results.len(), 2);
        for d in &b.results {
            assert_eq!(d.decision, pb::Decision::Hold as i32, "{d:?}");
            assert_eq!(d.reasons[0].code, "STORE_UNAVAILABLE");
        }
    }
    // Reads fail closed too: no status is invented.
    let dev = admin
        .fleet()
        .get_device(pb::GetDeviceRequest {
            serial: "PM200-1".into(),
        })
        .await;
    assert_rejected(dev, Code::Unavailable, "STORE_UNAVAILABLE");

    // Back: released again.
    store.failing.store(false, Ordering::SeqCst);
    let ok = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.decision, pb::Decision::Release as i32);
    srv.stop().await;
}
