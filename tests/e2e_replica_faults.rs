//! Replicas under faults, with writers on every replica: one replica killed
//! with SIGKILL, and the database itself stopped as in a crash and started
//! again. What a user would notice: the surviving replicas keep answering;
//! no acknowledged write is lost; the release gate never answers RELEASE
//! while it cannot read; health says NOT_SERVING while the database is gone
//! and SERVING once it is back, without restarting attestd; the audit chain
//! verifies with the one key and holds one entry per acknowledged change.
//!
//! The SIGKILL test uses a database of the shared PostgreSQL
//! (`ATTESTD_TEST_PG_URL`); the outage test starts a PostgreSQL of its own
//! ([`common::private_pg`]), since it stops it.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestd_client::{pb, SigningKey};
use common::fleet::*;
use common::load::*;
use common::private_pg::PrivatePg;
use common::replicas::Replicas;
use common::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// Failed calls each worker meets while the database is down (about a
/// second of outage at the workers' pace).
const OUTAGE_CALLS: usize = 20;

/// Limits of every replica: the load comes from one address and goes to
/// few serials, which the default rate limits would (rightly) refuse.
fn limits() -> Vec<(&'static str, String)> {
    vec![
        ("rate_per_peer_per_min", "100000000".into()),
        ("rate_per_serial_per_min", "100000000".into()),
    ]
}

/// Health of service "" as the replica reports it; `None` when it does not
/// answer within 5 s.
async fn health(server: &TestServer) -> Option<ServingStatus> {
    let ask = async {
        let channel = server.client(None).await.channel();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()
            .and_then(|r| ServingStatus::try_from(r.into_inner().status).ok())
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

/// Registers `station` (provisioning, any model) through replica `i`.
async fn station(r: &Replicas, i: usize, station: &str) -> Arc<SigningKey> {
    let admin = r.replica(i).admin().await;
    Arc::new(register_station(&admin, station, &[pb::RecordKind::Provisioning], &["*"]).await)
}

/// The last audit sequence number, seen through replica `i`.
async fn audit_seq(r: &Replicas, i: usize) -> u64 {
    let auditor = r.replica(i).client(Some(AUDITOR_TOKEN)).await;
    audit_entries(&auditor).await.last().map_or(0, |e| e.seq)
}

/// Every acknowledged write of `calls` is readable through each replica of
/// `via`: evidence by id and in its unit's history, records in the unit's
/// record list, release decisions in the unit's history.
async fn assert_readable(r: &Replicas, via: &[usize], calls: &[Call]) {
    let evidence = acked(calls, Kind::Boot);
    let records = acked(calls, Kind::Record);
    let decisions = acked(calls, Kind::Release);
    let group = |v: &[(String, String)]| {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (serial, id) in v {
            by.entry(serial.clone()).or_default().push(id.clone());
        }
        by
    };
    for &i in via {
        let auditor = r.replica(i).client(Some(AUDITOR_TOKEN)).await;
        let shown = i + 1;
        for (serial, id) in &evidence {
            let e = auditor
                .fleet()
                .get_evidence(pb::GetEvidenceRequest {
                    evidence_id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| {
                    panic!("acknowledged evidence {id} of {serial}, through replica {shown}: {e}")
                })
                .into_inner();
            assert_eq!(&e.serial, serial, "evidence {id}");
            assert!(!e.cose_sign1.is_empty(), "evidence {id}");
        }
        for (serial, ids) in group(&evidence) {
            let have = evidence_ids(&auditor, &serial).await;
            for id in ids {
                assert!(
                    have.contains(&id),
                    "evidence {id} missing in the history of {serial}, through replica {shown}"
                );
            }
        }
        for (serial, ids) in group(&records) {
            let listed: Vec<String> = auditor
                .factory()
                .list_records(pb::ListRecordsRequest {
                    serial: serial.clone(),
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .unwrap_or_else(|e| panic!("records of {serial}, through replica {shown}: {e}"))
                .into_inner()
                .records
                .into_iter()
                .map(|r| r.record_id)
                .collect();
            assert_eq!(
                listed, ids,
                "the acknowledged record of {serial}, through replica {shown}"
            );
        }
        for (serial, ids) in group(&decisions) {
            let have: Vec<String> = history(&auditor, &serial)
                .await
                .into_iter()
                .filter_map(|e| match e.entry {
                    Some(pb::history_entry::Entry::ReleaseDecision(d)) => Some(d.decision_id),
                    _ => None,
                })
                .collect();
            for id in ids {
                assert!(
                    have.contains(&id),
                    "release decision {id} missing in the history of {serial}, through \
                     replica {shown}"
                );
            }
        }
    }
    eprintln!(
        "readable through replicas {:?}: {} evidence, {} records, {} decisions",
        via.iter().map(|i| i + 1).collect::<Vec<_>>(),
        evidence.len(),
        records.len(),
        decisions.len()
    );
}

/// The export of replica `i` verifies with the one key and is gapless; after
/// `after_seq`, each acknowledged change of `calls` has exactly one entry,
/// and the only other changes of the load are those of calls that failed
/// while the store could still have committed them (at most what each
/// could have stored).
async fn assert_audit(r: &Replicas, i: usize, after_seq: u64, calls: &[Call]) {
    let auditor = r.replica(i).client(Some(AUDITOR_TOKEN)).await;
    let file = attestd_client::audit::export_file(&auditor, 0, 0, |_| {})
        .await
        .expect("export");
    attestd_client::core::audit::export::verify_export(&file.text, Some(&r.audit_key()))
        .unwrap_or_else(|e| panic!("the export of replica {} verifies: {e}", i + 1));
    let entries = audit_entries(&auditor).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
    for kind in [Kind::Boot, Kind::Record, Kind::Release] {
        if !calls.iter().any(|c| c.kind == kind) {
            continue;
        }
        // Details start with the id of what was stored: "<id>; ..." or "<id> ...".
        let mut logged: BTreeMap<&str, usize> = BTreeMap::new();
        for e in entries
            .iter()
            .filter(|e| e.seq > after_seq && e.action == kind.action())
        {
            let id = e.details.split([';', ' ']).next().unwrap_or_default();
            *logged.entry(id).or_default() += 1;
        }
        let acked = acked(calls, kind);
        for (serial, id) in &acked {
            assert_eq!(
                logged.remove(id.as_str()),
                Some(1),
                "one {} entry for {id} of {serial}",
                kind.action()
            );
        }
        // A call that failed after its transaction reached the database
        // may have committed it: the answer was lost, not the write.
        let unanswered: usize = calls
            .iter()
            .filter(|c| c.kind == kind && c.outcome.is_err() && !c.within(Phase::Down))
            .map(|c| c.writes)
            .sum();
        assert!(
            logged.values().all(|n| *n == 1) && logged.len() <= unanswered,
            "{} entries of {kind:?} changes nobody was told about, at most {unanswered} \
             expected from the calls that failed: {logged:?}",
            logged.len()
        );
        eprintln!(
            "audit: {} {} entries for {} acknowledged, {} of unanswered calls",
            acked.len() + logged.len(),
            kind.action(),
            acked.len(),
            logged.len()
        );
    }
}

/// Enrolls and calibrates `boot + release` units and publishes a baseline
/// that approves them. Units `0..boot` are for the load to boot; units
/// `boot..` are booted once now, so the gate can release them.
async fn fleet_for_load(r: &mut Replicas, boot: usize, release: usize) -> Vec<Arc<Unit>> {
    let f = &mut r.fleet;
    f.enroll("PM-200", boot + release, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.expect("baseline v1");
    for i in boot..boot + release {
        f.boot(i).await;
    }
    std::mem::take(&mut f.units)
        .into_iter()
        .map(Arc::new)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_write() {
    let t0 = Instant::now();
    let mut r = Replicas::start_with(3, None, limits()).await;
    let units = fleet_for_load(&mut r, 6, 3).await;
    let release: Vec<String> = units[6..].iter().map(|u| u.serial.clone()).collect();
    let stations = ["rep-a", "rep-b", "rep-c"];
    let mut keys = Vec::new();
    for (i, s) in stations.iter().enumerate() {
        keys.push(station(&r, i, s).await);
    }
    let after_seq = audit_seq(&r, 0).await;
    eprintln!("{:>6.2?}: three replicas and the fleet ready", t0.elapsed());

    // Three workers per replica: boots, station records, release checks.
    let mut load = Load::new(t0);
    for i in 0..3 {
        let server = r.replica(i);
        load.spawn(
            i,
            Job::Boot {
                device: server.client(None).await,
                units: units[2 * i..2 * i + 2].to_vec(),
            },
        );
        load.spawn(
            i,
            Job::Record {
                client: server.station(stations[i]).await,
                station: stations[i].into(),
                key: keys[i].clone(),
                prefix: format!("K{i}"),
            },
        );
        load.spawn(
            i,
            Job::Release {
                mes: server.client(Some(MES_TOKEN)).await,
                serials: release.clone(),
            },
        );
    }
    let all = load.workers_on(&[0, 1, 2]);
    let survivors = load.workers_on(&[0, 2]);
    load.wait_acked(&all, Phase::Before, 10).await;

    // Replica 2 dies mid-load.
    load.set(Phase::Faulting);
    load.halt(1);
    r.replica_mut(1).kill9();
    load.set(Phase::Down);
    load.wait_acked(&survivors, Phase::Down, 10).await;
    let calls = load.finish().await;

    // Only the calls that were in flight to replica 2 failed.
    let failed: Vec<&Call> = calls.iter().filter(|c| c.outcome.is_err()).collect();
    for c in &failed {
        assert!(
            c.replica == 1 && c.to >= Phase::Faulting,
            "a call that should have succeeded failed: {c:?}"
        );
    }
    assert!(
        failed.len() <= 3,
        "one call in flight per worker: {failed:?}"
    );
    assert!(
        calls.iter().any(|c| c.replica == 1 && c.outcome.is_ok()),
        "replica 2 took part in the load"
    );
    assert!(
        calls.iter().any(|c| c.released()),
        "the gate released verified units under load"
    );

    assert_readable(&r, &[0, 2], &calls).await;
    assert_audit(&r, 0, after_seq, &calls).await;
    eprintln!("{:>6.2?}: done", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_under_load_and_started_again() {
    let t0 = Instant::now();
    // Declared first, so it is stopped after the replicas.
    let mut pg = PrivatePg::start();
    let mut r = Replicas::start_with(2, Some(pg.url()), limits()).await;
    let units = fleet_for_load(&mut r, 4, 2).await;
    let release: Vec<String> = units[4..].iter().map(|u| u.serial.clone()).collect();
    let after_seq = audit_seq(&r, 0).await;
    eprintln!(
        "{:>6.2?}: private PostgreSQL, two replicas, fleet ready",
        t0.elapsed()
    );

    // Two workers per replica: boots, and MES asking the gate.
    let mut load = Load::new(t0);
    for i in 0..2 {
        let server = r.replica(i);
        load.spawn(
            i,
            Job::Boot {
                device: server.client(None).await,
                units: units[2 * i..2 * i + 2].to_vec(),
            },
        );
        load.spawn(
            i,
            Job::Release {
                mes: server.client(Some(MES_TOKEN)).await,
                serials: release.clone(),
            },
        );
    }
    let all = load.workers_on(&[0, 1]);
    load.wait_acked(&all, Phase::Before, 5).await;

    // The database stops as in a crash.
    load.set(Phase::Faulting);
    tokio::task::block_in_place(|| pg.stop_immediate());
    load.set(Phase::Down);
    for i in 0..2 {
        let took = poll(&format!("replica {} NOT_SERVING", i + 1), || async {
            health(r.replica(i)).await == Some(ServingStatus::NotServing)
        })
        .await;
        eprintln!("replica {}: NOT_SERVING {took:.2?} after the stop", i + 1);
        // Probed every second, with 3 s to answer.
        assert!(
            took < Duration::from_secs(10),
            "replica {}: NOT_SERVING only {took:.2?} after the stop",
            i + 1
        );
    }
    // Every worker has met the outage a few times.
    poll("calls of every worker during the outage", || async {
        let calls = load.calls.lock().unwrap();
        all.iter().all(|w| {
            calls
                .iter()
                .filter(|c| c.worker == *w && c.within(Phase::Down))
                .count()
                >= OUTAGE_CALLS
        })
    })
    .await;

    // Started again: the same processes serve again, health follows.
    load.set(Phase::Restarting);
    tokio::task::block_in_place(|| pg.start_again());
    load.set(Phase::After);
    let back = Instant::now();
    load.wait_acked(&all, Phase::After, 1).await;
    eprintln!(
        "every worker served again {:.2?} after the start",
        back.elapsed()
    );
    for i in 0..2 {
        let took = poll(&format!("replica {} SERVING", i + 1), || async {
            health(r.replica(i)).await == Some(ServingStatus::Serving)
        })
        .await;
        eprintln!("replica {}: SERVING {took:.2?} later", i + 1);
    }
    load.wait_acked(&all, Phase::After, 5).await;
    let calls = load.finish().await;

    // Before the stop, every call succeeded, and the gate released.
    for c in calls.iter().filter(|c| c.within(Phase::Before)) {
        assert!(c.outcome.is_ok(), "failed before the outage: {c:?}");
    }
    assert!(
        calls
            .iter()
            .any(|c| c.within(Phase::Before) && c.released()),
        "the gate released verified units before the outage"
    );
    // While the database was down: UNAVAILABLE with STORE_UNAVAILABLE,
    // promptly (a batch may instead hold every unit, for that reason);
    // nothing stored, no RELEASE.
    for c in calls.iter().filter(|c| c.within(Phase::Down)) {
        match &c.outcome {
            Ok(answers) => assert!(
                answers.iter().all(Answer::held_unavailable),
                "answered while the database was down: {c:?}"
            ),
            Err(s) => assert_eq!(
                (s.code(), reason(s).as_str()),
                (Code::Unavailable, "STORE_UNAVAILABLE"),
                "{c:?}"
            ),
        }
        assert!(
            c.took < Duration::from_secs(10),
            "a call during the outage should fail promptly: {c:?}"
        );
    }
    // Once it accepted connections again, every call succeeded.
    for c in calls.iter().filter(|c| c.from == Phase::After) {
        assert!(
            c.outcome.is_ok(),
            "failed after the database was back: {c:?}"
        );
    }
    assert!(
        calls.iter().any(|c| c.from == Phase::After && c.released()),
        "the gate releases again"
    );

    assert_readable(&r, &[0, 1], &calls).await;
    assert_audit(&r, 0, after_seq, &calls).await;
    eprintln!("{:>6.2?}: done", t0.elapsed());
}
