//! Several attestd replicas on one PostgreSQL database: a challenge from
//! one replica is accepted by another, once; a baseline published through
//! one re-grades units seen through the others; a watcher on one sees the
//! changes of all, in order and without gaps, and resumes on another; the
//! audit chain stays one chain under concurrent writers on every replica.
//!
//! Needs the PostgreSQL of `ATTESTD_TEST_PG_URL` (default the local one):
//! each test makes its own database and drops it.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use common::fleet::*;
use common::replicas::Replicas;
use common::*;
use tokio_stream::StreamExt;

/// Provisions a PM-200 unit `serial` with a new key through `client`.
async fn provision_with(
    client: &attestd_client::Client,
    station: &str,
    sequence: u64,
    serial: &str,
    station_key: &attestd_client::SigningKey,
) {
    let unit = attestd_client::SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(client, station, station_key, sequence, serial, &unit)
        .await
        .unwrap_or_else(|e| panic!("provisioning {serial}: {e}"));
}

async fn status_on(server: &TestServer, serial: &str) -> pb::Device {
    server
        .client(Some(AUDITOR_TOKEN))
        .await
        .fleet()
        .get_device(pb::GetDeviceRequest {
            serial: serial.into(),
        })
        .await
        .expect("get device")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_one_replica_is_accepted_by_another_and_only_once() {
    let r = Replicas::start(3).await;
    let serial = "PM-R0001";
    let admin = r.replica(0).admin().await;
    let st_key = register_station(&admin, "rep-a", &[pb::RecordKind::Provisioning], &["*"]).await;
    let key = attestd_client::SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(
        &r.replica(0).station("rep-a").await,
        "rep-a",
        &st_key,
        1,
        serial,
        &key,
    )
    .await
    .expect("provisioning");
    let one = r.replica(0).client(None).await;
    let two = r.replica(1).client(None).await;
    let three = r.replica(2).client(None).await;
    let mut c = claims(serial, 1);
    c.nonce = Some(challenge(&one, serial).await);
    let token = sign_evidence(&c, &key);
    submit(&two, token.clone())
        .await
        .expect("a challenge of replica 1 is accepted by replica 2");
    assert_rejected(
        submit(&three, token).await,
        tonic::Code::FailedPrecondition,
        "NONCE_REUSED",
    );
    // And a nonce of replica 3 used on replica 1.
    let mut c = claims(serial, 2);
    c.nonce = Some(challenge(&three, serial).await);
    submit(&one, sign_evidence(&c, &key))
        .await
        .expect("a challenge of replica 3 is accepted by replica 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_published_through_one_replica_regrades_units_seen_through_all() {
    let mut r = Replicas::start(3).await;
    let f = &mut r.fleet;
    f.enroll("PM-200", 30, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 2]).await.expect("v1");
    for i in 0..30 {
        f.boot(i).await;
    }
    // v2 withdraws the build units 20..=29 run, published through replica 1.
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.4", 10)],
        &["2.1.3"],
        "2026-01-02T00:00:00Z".into(),
    );
    let started = Instant::now();
    f.publish(&v2, &[1, 2]).await.expect("v2");
    let serials: Vec<String> = (20..30).map(|i| r.fleet.units[i].serial.clone()).collect();
    for replica in [1, 2] {
        for serial in &serials {
            loop {
                let d = status_on(r.replica(replica), serial).await;
                if d.status == pb::DeviceStatus::Untrusted as i32 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{serial} not re-graded within 5 s, seen through replica {}: {:?}",
                    replica + 1,
                    pb::DeviceStatus::try_from(d.status)
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    eprintln!(
        "ten units re-graded {:?} after v2 was published",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_the_changes_of_every_replica_in_order_and_resumes_on_another() {
    let r = Replicas::start(3).await;
    let watcher = r.replica(1).client(Some(AUDITOR_TOKEN)).await;
    let resp = watcher
        .fleet()
        .watch_fleet(pb::WatchFleetRequest::default())
        .await
        .expect("watch");
    let mut watch = resp.into_inner();
    // Each replica enrolls units: one status change (to UNKNOWN) per unit,
    // concurrently on all three.
    let per = 8;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let station = ["rep-a", "rep-b", "rep-c"][i].to_owned();
        let admin = r.replica(i).admin().await;
        let key = register_station(&admin, &station, &[pb::RecordKind::Provisioning], &["*"]).await;
        let client = r.replica(i).station(&station).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..per {
                let serial = format!("R{i}-{n:03}");
                provision_with(&client, &station, n as u64 + 1, &serial, &key).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = 3 * per;
    let mut seen = Vec::new();
    while seen.len() < total {
        let c = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a change within 10 s")
            .expect("stream open")
            .expect("change");
        seen.push(c);
    }
    let cursors: Vec<u64> = seen.iter().map(|c| c.cursor.parse().unwrap()).collect();
    let first = cursors[0];
    assert_eq!(
        cursors,
        (first..first + total as u64).collect::<Vec<_>>(),
        "gapless, in commit order"
    );
    let serials: BTreeSet<&str> = seen.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(
        serials.len(),
        total,
        "one change per unit, from every replica"
    );
    // Resume from the middle on replica 1: exactly the later changes.
    let mid = cursors[total / 2 - 1];
    let resumed = r
        .replica(0)
        .client(Some(AUDITOR_TOKEN))
        .await
        .fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: None,
            after_cursor: mid.to_string(),
        })
        .await
        .expect("resume")
        .into_inner();
    let later: Vec<String> = resumed
        .take(total - total / 2)
        .map(|c| c.expect("change").serial)
        .collect()
        .await;
    let expected: Vec<String> = seen[total / 2..].iter().map(|c| c.serial.clone()).collect();
    assert_eq!(later, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_stays_one_chain_under_writers_on_every_replica() {
    let r = Replicas::start(3).await;
    let before = audit_entries(&r.replica(0).client(Some(AUDITOR_TOKEN)).await)
        .await
        .len();
    let per = 6;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let station = ["rep-a", "rep-b", "rep-c"][i].to_owned();
        let admin = r.replica(i).admin().await;
        let key = register_station(&admin, &station, &[pb::RecordKind::Provisioning], &["*"]).await;
        let client = r.replica(i).station(&station).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..per {
                let serial = format!("A{i}-{n:03}");
                provision_with(&client, &station, n as u64 + 1, &serial, &key).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // An export from each replica verifies with the one key (sequence,
    // links and the signed head) and holds every change once.
    let key = r.audit_key();
    for i in 0..3 {
        let auditor = r.replica(i).client(Some(AUDITOR_TOKEN)).await;
        let file = attestd_client::audit::export_file(&auditor, 0, 0, |_| {})
            .await
            .expect("export");
        attestd_client::core::audit::export::verify_export(&file.text, Some(&key))
            .unwrap_or_else(|e| panic!("the export of replica {} verifies: {e}", i + 1));
        let entries = audit_entries(&auditor).await;
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
        let provisioned = entries
            .iter()
            .filter(|e| e.action == "record.provisioning")
            .count();
        assert_eq!(
            provisioned,
            3 * per,
            "one entry per change, seen through replica {}",
            i + 1
        );
        assert!(entries.len() >= before + 3 * per + 3);
    }
}
