//! What a caller is told is what is stored, whatever runs at the same time:
//! the release gate never answers RELEASE on a state already replaced, an
//! acknowledged admin action is what every later read shows, a read's
//! change-feed cursor lets a watch continue without a gap, and refusals of
//! bad input are counted, limited and leave nothing behind. These run an
//! in-process server on a store that can hold a caller at a chosen point.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_core::Reason;
use attestd_server::settings::Limits;
use common::inproc::InProc;
use common::trusted::{publish, trusted, Bench, PROV};
use common::*;
use tokio_stream::StreamExt;
use tonic::Code;

fn codes(d: &pb::ReleaseDecision) -> Vec<String> {
    d.reasons.iter().map(|r| r.code.clone()).collect()
}

/// Holds a CheckRelease after it read the unit and before it stores its
/// decision, acknowledges `action` meanwhile, then lets it go: the answer
/// must be HOLD with `want`, never RELEASE decided on the replaced state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_never_releases_on_a_state_replaced_while_it_decided() {
    let b = trusted(3, Limits::default()).await;
    for (i, want) in ["DEVICE_REVOKED", "QUARANTINED", "FIRMWARE_REVOKED"]
        .into_iter()
        .enumerate()
    {
        let serial = b.units[i].0.clone();
        let (held, go) = b.store.hold.next_evidence_read();
        let mes = b.mes.clone();
        let s = serial.clone();
        let gate = tokio::spawn(async move {
            mes.release()
                .check_release(pb::CheckReleaseRequest {
                    serial: s,
                    ..Default::default()
                })
                .await
        });
        // The gate has read the unit and is reading its evidence.
        tokio::task::spawn_blocking(move || held.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the gate reached the store");
        match want {
            "DEVICE_REVOKED" => {
                b.admin
                    .admin()
                    .revoke_device(pb::RevokeDeviceRequest {
                        serial: serial.clone(),
                        reason: "stolen from the line".into(),
                    })
                    .await
                    .unwrap();
            }
            "QUARANTINED" => {
                b.admin
                    .release()
                    .set_quarantine(pb::SetQuarantineRequest {
                        serial: serial.clone(),
                        on: true,
                        reason: "held for inspection".into(),
                    })
                    .await
                    .unwrap();
            }
            _ => publish(&b.admin, &b.release_key, 2, true).await,
        }
        go.send(()).unwrap();
        let d = gate.await.unwrap().unwrap().into_inner();
        assert_eq!(
            d.decision,
            pb::Decision::Hold as i32,
            "{want}: {:?}",
            d.reasons
        );
        assert!(
            codes(&d).contains(&want.to_string()),
            "{want}: {:?}",
            codes(&d)
        );
        // And what was stored is that HOLD.
        let stored = history(&b.admin, &serial).await;
        let last = stored.iter().rev().find_map(|e| match &e.entry {
            Some(pb::history_entry::Entry::ReleaseDecision(x)) => Some(x.clone()),
            _ => None,
        });
        assert_eq!(last.map(|x| x.decision), Some(pb::Decision::Hold as i32));
    }
    // The batch decides again too.
    let serial = b.units[2].0.clone();
    let (held, go) = b.store.hold.next_evidence_read();
    let mes = b.mes.clone();
    let s = serial.clone();
    let gate = tokio::spawn(async move {
        mes.release()
            .check_release_batch(pb::CheckReleaseBatchRequest {
                serials: vec![s],
                ..Default::default()
            })
            .await
    });
    tokio::task::spawn_blocking(move || held.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the batch reached the store");
    b.admin
        .release()
        .set_quarantine(pb::SetQuarantineRequest {
            serial: serial.clone(),
            on: true,
            reason: "held".into(),
        })
        .await
        .unwrap();
    go.send(()).unwrap();
    let r = gate.await.unwrap().unwrap().into_inner();
    assert_eq!(r.results[0].decision, pb::Decision::Hold as i32);
    assert!(codes(&r.results[0]).contains(&"QUARANTINED".to_string()));
    b.srv.stop().await;
}

/// Many reads at once, each checked against what an admin action just
/// acknowledged.
async fn all_agree(b: &Bench, serial: &str, status: pb::DeviceStatus) {
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..48 {
        let c = b.admin.clone();
        let serial = serial.to_owned();
        reads.spawn(async move {
            match i % 3 {
                0 => {
                    let d = c
                        .fleet()
                        .get_device(pb::GetDeviceRequest { serial })
                        .await
                        .unwrap()
                        .into_inner();
                    d.status == status as i32
                }
                1 => {
                    let page = c
                        .fleet()
                        .list_devices(pb::ListDevicesRequest {
                            filter: Some(pb::DeviceFilter {
                                statuses: vec![status as i32],
                                ..Default::default()
                            }),
                            page_size: 100,
                            page_token: String::new(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    page.devices.iter().any(|d| d.serial == serial)
                }
                _ => {
                    let s = c
                        .fleet()
                        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
                        .await
                        .unwrap()
                        .into_inner();
                    s.counts
                        .iter()
                        .any(|x| x.status == status as i32 && x.count >= 1)
                }
            }
        });
    }
    let mut n = 0;
    while let Some(ok) = reads.join_next().await {
        assert!(
            ok.unwrap(),
            "a read disagreed with the acknowledged {status:?}"
        );
        n += 1;
    }
    assert_eq!(n, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_admin_action_is_what_every_read_shows() {
    // The re-appraisal job does not run by itself here: whatever the reads
    // show was written by the action itself.
    let b = trusted(1, Limits::default()).await;
    let serial = b.units[0].0.clone();
    let mut watch = b
        .admin
        .fleet()
        .watch_fleet(pb::WatchFleetRequest::default())
        .await
        .unwrap()
        .into_inner();
    let q = |on: bool| pb::SetQuarantineRequest {
        serial: serial.clone(),
        on,
        reason: if on {
            "inspection".into()
        } else {
            String::new()
        },
    };
    b.admin.release().set_quarantine(q(true)).await.unwrap();
    all_agree(&b, &serial, pb::DeviceStatus::Quarantined).await;
    let d = b.device(&serial).await;
    assert!(d.quarantined);
    b.admin.release().set_quarantine(q(false)).await.unwrap();
    all_agree(&b, &serial, pb::DeviceStatus::Trusted).await;
    // On and off quickly: the watcher sees both changes.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let c = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a change")
            .unwrap()
            .unwrap();
        seen.push((c.old_status, c.new_status));
    }
    use pb::DeviceStatus::{Quarantined, Trusted, Untrusted};
    assert_eq!(
        seen,
        vec![
            (Trusted as i32, Quarantined as i32),
            (Quarantined as i32, Trusted as i32)
        ]
    );
    b.admin
        .admin()
        .revoke_device(pb::RevokeDeviceRequest {
            serial: serial.clone(),
            reason: "stolen".into(),
        })
        .await
        .unwrap();
    all_agree(&b, &serial, Untrusted).await;
    let d = b.device(&serial).await;
    assert!(d.revoked);
    let codes: Vec<_> = d
        .appraisal
        .unwrap()
        .reasons
        .into_iter()
        .map(|r| r.code)
        .collect();
    assert!(codes.contains(&"DEVICE_REVOKED".to_string()), "{codes:?}");
    // An open watch holds the server's graceful stop.
    drop(watch);
    b.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_reads_cursor_gets_exactly_the_changes_after_it() {
    let b = trusted(3, Limits::default()).await;
    let list = b
        .admin
        .fleet()
        .list_devices(pb::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.devices.len(), 3);
    let summary = b
        .admin
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!list.cursor.is_empty());
    assert_eq!(summary.cursor, list.cursor, "nothing changed between them");
    // Changes after the read, before the watch starts.
    for (serial, on) in [
        (&b.units[0].0, true),
        (&b.units[1].0, true),
        (&b.units[0].0, false),
    ] {
        b.admin
            .release()
            .set_quarantine(pb::SetQuarantineRequest {
                serial: serial.clone(),
                on,
                reason: "x".into(),
            })
            .await
            .unwrap();
    }
    let resp = b
        .admin
        .fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: None,
            after_cursor: list.cursor.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.metadata()
            .get("attestd-cursor")
            .unwrap()
            .to_str()
            .unwrap(),
        list.cursor,
        "the watch says where it starts"
    );
    let mut watch = resp.into_inner();
    let mut got = Vec::new();
    for _ in 0..3 {
        let c = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a change")
            .unwrap()
            .unwrap();
        got.push((c.serial, c.new_status));
    }
    use pb::DeviceStatus::{Quarantined, Trusted};
    assert_eq!(
        got,
        vec![
            (b.units[0].0.clone(), Quarantined as i32),
            (b.units[1].0.clone(), Quarantined as i32),
            (b.units[0].0.clone(), Trusted as i32),
        ]
    );
    // And nothing more: the read had everything before.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), watch.next())
            .await
            .is_err(),
        "a change the read already showed was delivered again"
    );
    // A watch cannot filter on what a change does not carry: refused, not
    // silently ignored.
    let refused = b
        .admin
        .fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: Some(pb::DeviceFilter {
                firmware_version: "2.1.4".into(),
                ..Default::default()
            }),
            after_cursor: String::new(),
        })
        .await;
    assert_rejected(refused, Code::InvalidArgument, "FIELD_INVALID");
    // A watch "from now" says which cursor now is.
    let now_resp = b
        .admin
        .fleet()
        .watch_fleet(pb::WatchFleetRequest::default())
        .await
        .unwrap();
    let now_cursor: u64 = now_resp
        .metadata()
        .get("attestd-cursor")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(now_cursor, list.cursor.parse::<u64>().unwrap() + 3);
    drop((watch, now_resp));
    b.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_checks_of_unknown_serials_store_nothing_and_are_summarized() {
    let b = trusted(1, Limits::default()).await;
    let before = b.srv.app.store.audit_head().await.unwrap();
    for i in 0..50 {
        let d = b.check(&format!("MADEUP-{i}")).await;
        assert_eq!(d.decision, pb::Decision::Hold as i32);
        assert_eq!(codes(&d), vec!["NOT_ENROLLED".to_string()]);
    }
    let r = b
        .mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec!["MADEUP-X".into(), b.units[0].0.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(codes(&r.results[0]), vec!["NOT_ENROLLED".to_string()]);
    assert_eq!(r.results[1].decision, pb::Decision::Release as i32);
    // One audit entry: the known unit's decision; none per made-up serial.
    let after = b.srv.app.store.audit_head().await.unwrap();
    assert_eq!(after.0, before.0 + 1);
    assert!(b
        .srv
        .app
        .store
        .list_history("MADEUP-1", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    // Attributable all the same: counted per principal for the summary.
    assert_eq!(
        b.srv.app.unknown_serials.drain(),
        vec![("principal mes".to_string(), 51)]
    );
    b.srv.stop().await;
}

/// Messages that are not the method's protobuf: field 1 as a varint where
/// SubmitEvidence expects bytes, and a non-UTF-8 string in SubmitRecord.
#[derive(Clone, PartialEq, prost::Message)]
struct Varint1 {
    #[prost(uint64, tag = "1")]
    x: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawEnvelope {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    payload_type: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawRecordRequest {
    #[prost(message, optional, tag = "1")]
    envelope: Option<RawEnvelope>,
}

async fn raw_call<M: prost::Message + Default + Send + Sync + 'static>(
    srv: &InProc,
    path: &'static str,
    msg: M,
    token: Option<&str>,
) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", srv.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    grpc.unary::<M, pb::SubmitEvidenceResponse, _>(
        req,
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument_counted_and_limited() {
    let limits = Limits {
        rate_per_peer_per_min: 4,
        ..Limits::default()
    };
    let b = trusted(0, limits).await;
    let app = b.srv.app.clone();
    let counted = || app.metrics.rejected(Reason::MalformedMessage);
    // Exactly the bytes 08 01.
    assert_eq!(
        prost::Message::encode_to_vec(&Varint1 { x: 1 }),
        vec![0x08, 0x01]
    );
    let st = raw_call(
        &b.srv,
        "/attestd.v1.DeviceAttestation/SubmitEvidence",
        Varint1 { x: 1 },
        None,
    )
    .await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert_eq!(reason(&st), "MALFORMED_MESSAGE");
    assert!(st.message().contains("SubmitEvidence"), "{}", st.message());
    assert_eq!(counted(), 1);
    let st = raw_call(
        &b.srv,
        "/attestd.v1.Factory/SubmitRecord",
        RawRecordRequest {
            envelope: Some(RawEnvelope {
                payload: b"{}".to_vec(),
                payload_type: vec![0xff, 0xfe, 0x41],
            }),
        },
        Some(station_token(PROV)),
    )
    .await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert_eq!(reason(&st), "MALFORMED_MESSAGE");
    assert_eq!(counted(), 2);
    // Malformed device calls spend the peer's allowance like any other:
    // with 4 a minute, three more malformed ones leave nothing for a
    // well-formed challenge.
    for _ in 0..3 {
        raw_call(
            &b.srv,
            "/attestd.v1.DeviceAttestation/SubmitEvidence",
            Varint1 { x: 1 },
            None,
        )
        .await;
    }
    let st = b
        .srv
        .client(None)
        .await
        .device()
        .get_challenge(pb::GetChallengeRequest {
            serial: "PM200-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert_eq!(reason(&st), "RATE_LIMITED");
    b.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_fresh_evidence_from_the_future_is_refused() {
    let b = trusted(1, Limits::default()).await;
    let (serial, key) = &b.units[0];
    let device = b.srv.client(None).await;
    let before = history(&b.admin, serial).await.len();
    let mut c = claims(serial, 2);
    c.nonce = Some(challenge(&device, serial).await);
    c.iat = attestd_client::core::time::UnixTime(now().0 + 100 * 365 * 86_400);
    let r = submit(&device, sign_evidence(&c, key)).await;
    assert_rejected(r, Code::FailedPrecondition, "CLOCK_SKEW");
    assert_eq!(history(&b.admin, serial).await.len(), before);
    b.srv.stop().await;
}

/// With both runtime threads' worth of requests stuck in the store, the
/// server still answers a call that does not need it: store work runs on
/// the blocking pool, not on the threads that move requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_the_store_do_not_stall_the_runtime() {
    let b = trusted(1, Limits::default()).await;
    let serial = b.units[0].0.clone();
    b.store.hold.device_reads(true);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let c = b.admin.clone();
        let s = serial.clone();
        stuck.push(tokio::spawn(async move {
            c.fleet()
                .get_device(pb::GetDeviceRequest { serial: s })
                .await
        }));
    }
    // Wait (on this thread, not the runtime's) until both are held.
    let store = b.store.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.hold.held.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reads never reached the store"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let them go after the health check answers, or after 20 s at most.
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, s) = (answered.clone(), store.clone());
    let releaser = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !a.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let released_early = !a.load(Ordering::SeqCst);
        s.hold.device_reads(false);
        released_early
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", b.srv.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    let still_held = store.hold.held.load(Ordering::SeqCst) == 2;
    answered.store(true, Ordering::SeqCst);
    let released_without_answer = releaser.join().unwrap();
    assert!(
        still_held && !released_without_answer,
        "the health check waited for the store"
    );
    for t in stuck {
        assert_eq!(
            t.await.unwrap().unwrap().into_inner().serial,
            serial,
            "the held reads finish once let go"
        );
    }
    b.srv.stop().await;
}
