//! A WatchFleet reader that does not keep up is told so (ABORTED,
//! WATCH_LAGGED, with the cursor to resume from) instead of holding changes
//! without bound, and writers never wait for it. In process, so the stream
//! is held without the transport's own buffers in between.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::SigningKey;
use attestd_server::auth::{Principal, Role};
use attestd_server::service::fleet::FleetService;
use attestd_server::settings::Limits;
use attestd_store::sled_store::{SledConfig, SledStore};
use common::inproc::InProc;
use common::*;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SledStore::open(
            dir.path(),
            &SledConfig {
                cache_capacity: 8 << 20,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let limits = Limits {
        watch_buffer: 8,
        watch_poll_ms: 10,
        watch_lag_timeout_ms: 100,
        ..Limits::default()
    };
    let srv = InProc::start_with(store, Default::default(), now().0 * 1000, limits).await;
    let fleet = FleetService {
        app: srv.app.clone(),
    };
    let auditor = Principal {
        name: "auditor".into(),
        role: Role::Auditor,
        station_id: None,
        tenant: None,
    };
    let mut stream = fleet
        .watch(&auditor, pb::WatchFleetRequest::default())
        .await
        .expect("watch")
        .1;

    // 40 changes while nobody reads the stream; every write goes through.
    let admin = srv.client(Some(ADMIN_TOKEN)).await;
    let key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = srv.client(Some(station_token("line1-prov"))).await;
    for i in 0..40u64 {
        let k = SigningKey::generate(KeyAlg::Ed25519).unwrap();
        provision(
            &station,
            "line1-prov",
            &key,
            i + 1,
            &format!("U-{i:02}"),
            &k,
        )
        .await
        .expect("a write never waits");
    }
    // Longer than the reader's patience.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The reader gets what was buffered, then the notice.
    let mut got = Vec::new();
    let status = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(c))) => got.push(c),
            Ok(Some(Err(s))) => break s,
            Ok(None) => panic!("stream ended without a notice after {} changes", got.len()),
            Err(_) => panic!("no notice after {} changes", got.len()),
        }
    };
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(reason(&status), "WATCH_LAGGED");
    assert!(
        got.len() < 40 && !got.is_empty(),
        "{} changes before the notice",
        got.len()
    );
    let resume_from = got.last().unwrap().cursor.clone();
    assert!(
        status
            .message()
            .contains(&format!("resume from cursor {resume_from}")),
        "{}",
        status.message()
    );

    // Resuming from that cursor delivers the rest, in order (resuming again
    // if this reader, too, stalls on a loaded machine).
    let mut serials: Vec<String> = got.iter().map(|c| c.serial.clone()).collect();
    let mut cursor = resume_from;
    while serials.len() < 40 {
        let mut rest = fleet
            .watch(
                &auditor,
                pb::WatchFleetRequest {
                    filter: None,
                    after_cursor: cursor.clone(),
                },
            )
            .await
            .expect("resume")
            .1;
        while serials.len() < 40 {
            match tokio::time::timeout(std::time::Duration::from_secs(5), rest.next()).await {
                Ok(Some(Ok(c))) => {
                    cursor = c.cursor.clone();
                    serials.push(c.serial);
                }
                Ok(Some(Err(s))) if reason(&s) == "WATCH_LAGGED" => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let want: Vec<String> = (0..40).map(|i| format!("U-{i:02}")).collect();
    assert_eq!(serials, want);
    srv.stop().await;
}
