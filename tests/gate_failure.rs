//! The gate fails closed: with the store failing, no unit is ever released;
//! CheckRelease answers UNAVAILABLE and a batch holds every unit.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use attestd_client::pb;
use common::trusted::trusted;
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_release_when_the_store_fails() {
    let b = trusted(1, Default::default()).await;
    let (store, admin, mes) = (b.store.clone(), &b.admin, &b.mes);
    let ok = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-1".into(),
            ..Default::default()
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
            ..Default::default()
        })
        .await;
    assert_rejected(r, Code::Unavailable, "STORE_UNAVAILABLE");
    let batch = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec!["PM200-1".into(), "PM200-2".into()],
            ..Default::default()
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
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.decision, pb::Decision::Release as i32);
    b.srv.stop().await;
}
