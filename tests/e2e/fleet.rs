//! End-to-end: tenant isolation across every fleet view, and the change
//! stream: resumable from a cursor (also across a restart), bounded, and a
//! reader that does not keep up is told so while writers carry on.

use std::time::Duration;

use crate::common::fleet::*;
use crate::common::*;
use attestd_client::pb;
use attestd_client::Client;
use tonic::Code;

async fn watch(c: &Client, after: &str) -> tonic::Streaming<pb::DeviceChange> {
    c.fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: None,
            after_cursor: after.into(),
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next change, or None if nothing arrives within `wait`.
async fn next(
    s: &mut tonic::Streaming<pb::DeviceChange>,
    wait: Duration,
) -> Option<pb::DeviceChange> {
    match tokio::time::timeout(wait, s.message()).await {
        Ok(Ok(Some(c))) => Some(c),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => panic!("watch failed: {e:?}"),
        Err(_) => None,
    }
}

async fn quarantine(f: &Fleet, i: usize, on: bool) {
    f.admin
        .release()
        .set_quarantine(pb::SetQuarantineRequest {
            serial: f.units[i].serial.clone(),
            on,
            reason: "test".into(),
        })
        .await
        .unwrap();
}

async fn started() -> Fleet {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 4, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();
    for i in 0..4 {
        f.boot(i).await;
    }
    f
}

crate::both_backends!(a_hospital_sees_only_its_own_tenant);
async fn a_hospital_sees_only_its_own_tenant() {
    let f = started().await;
    f.assign(0, "st-mary", "ward-1").await;
    f.assign(1, "st-mary", "ward-2").await;
    f.assign(2, "county", "er").await;
    let hospital = f.server.client(Some(HOSPITAL_TOKEN)).await;
    let serial = |i: usize| f.units[i].serial.clone();

    let own = hospital
        .fleet()
        .get_device(pb::GetDeviceRequest { serial: serial(0) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.assignment.unwrap().site, "ward-1");
    for i in [2, 3] {
        let r = hospital
            .fleet()
            .get_device(pb::GetDeviceRequest { serial: serial(i) })
            .await;
        assert_rejected(r, Code::NotFound, "DEVICE_NOT_FOUND");
        let r = hospital
            .fleet()
            .list_device_history(pb::ListDeviceHistoryRequest {
                serial: serial(i),
                ..Default::default()
            })
            .await;
        assert_rejected(r, Code::NotFound, "DEVICE_NOT_FOUND");
    }
    let listed: Vec<String> = hospital
        .fleet()
        .list_devices(pb::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices
        .into_iter()
        .map(|d| d.serial)
        .collect();
    assert_eq!(listed, vec![serial(0), serial(1)]);
    let r = hospital
        .fleet()
        .list_devices(pb::ListDevicesRequest {
            filter: Some(pb::DeviceFilter {
                tenant: "county".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert_rejected(r, Code::PermissionDenied, "TENANT_FORBIDDEN");
    let s = hospital
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest {
            filter: None,
            group_by: pb::SummaryGroup::Site as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.total, 2);
    assert_eq!(
        s.groups.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
        ["ward-1", "ward-2"]
    );
    // The fleet-wide view sees all four.
    let all = f
        .auditor
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total, 4);

    // The watch stream carries only the hospital's units.
    let mut w = watch(&hospital, "").await;
    quarantine(&f, 2, true).await; // county
    quarantine(&f, 3, true).await; // unassigned
    quarantine(&f, 1, true).await; // st-mary
    let c = next(&mut w, Duration::from_secs(5))
        .await
        .expect("a change for st-mary");
    assert_eq!(c.serial, serial(1));
    assert_eq!(c.new_status, pb::DeviceStatus::Quarantined as i32);
    assert_eq!(c.tenant, "st-mary");
    assert!(
        next(&mut w, Duration::from_millis(500)).await.is_none(),
        "nothing of other tenants"
    );
    // The other units did change, as the auditor can see.
    f.wait_for(
        2,
        pb::DeviceStatus::Quarantined,
        None,
        Duration::from_secs(5),
    )
    .await;
}

crate::both_backends!(a_watch_resumes_from_its_cursor_also_after_a_restart);
async fn a_watch_resumes_from_its_cursor_also_after_a_restart() {
    let mut f = started().await;
    let mut w = watch(&f.auditor, "").await;
    quarantine(&f, 0, true).await;
    let a = next(&mut w, Duration::from_secs(5))
        .await
        .expect("change A");
    quarantine(&f, 1, true).await;
    let b = next(&mut w, Duration::from_secs(5))
        .await
        .expect("change B");
    assert_eq!(
        (a.serial.as_str(), b.serial.as_str()),
        (f.units[0].serial.as_str(), f.units[1].serial.as_str())
    );
    drop(w);
    quarantine(&f, 2, true).await;
    f.wait_for(
        2,
        pb::DeviceStatus::Quarantined,
        None,
        Duration::from_secs(5),
    )
    .await;

    // Reconnect after A: exactly B, then C, in order.
    let mut w = watch(&f.auditor, &a.cursor).await;
    let got_b = next(&mut w, Duration::from_secs(5)).await.expect("B again");
    let c = next(&mut w, Duration::from_secs(5)).await.expect("C");
    assert_eq!(got_b, b);
    assert_eq!(c.serial, f.units[2].serial);
    assert!(c.cursor.parse::<u64>().unwrap() > b.cursor.parse::<u64>().unwrap());
    assert!(next(&mut w, Duration::from_millis(300)).await.is_none());
    drop(w);

    // Killed and restarted: the feed is durable, and resumes where it was.
    f.server.kill9();
    f.server.restart();
    let admin = f.server.admin().await;
    f.admin = admin;
    f.auditor = f.server.client(Some(AUDITOR_TOKEN)).await;
    quarantine(&f, 3, true).await;
    let mut w = watch(&f.auditor, &c.cursor).await;
    let d = next(&mut w, Duration::from_secs(5))
        .await
        .expect("D after restart");
    assert_eq!(d.serial, f.units[3].serial);
    assert_eq!(d.old_status, pb::DeviceStatus::Trusted as i32);
    assert!(next(&mut w, Duration::from_millis(300)).await.is_none());
    // A cursor from before all retained changes cannot be honoured silently.
    let r = f
        .auditor
        .fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: None,
            after_cursor: "not-a-cursor".into(),
        })
        .await;
    assert_rejected(r.map(|_| ()), Code::InvalidArgument, "FIELD_INVALID");
}

crate::both_backends!(writers_carry_on_while_a_watcher_does_not_read_and_it_loses_nothing);
async fn writers_carry_on_while_a_watcher_does_not_read_and_it_loses_nothing() {
    let f = started().await;
    // Open a watch and do not read it while 1,500 changes happen (each
    // enrollment is one: a new unit, status UNKNOWN).
    let mut idle = watch(&f.auditor, "").await;
    let station = f.server.station("line1-prov").await;
    let rounds = 1500u64;
    let begin = std::time::Instant::now();
    for r in 0..rounds {
        let k = attestd_client::SigningKey::generate(attestd_client::core::keys::KeyAlg::Ed25519)
            .unwrap();
        provision(
            &station,
            "line1-prov",
            &f.prov_key,
            10_000 + r,
            &format!("BULK-{r:05}"),
            &k,
        )
        .await
        .unwrap();
    }
    eprintln!(
        "{rounds} enrollments in {:?} with an idle watcher",
        begin.elapsed()
    );
    // Now read: every change, in order, none lost, none twice.
    let mut last = 0u64;
    for r in 0..rounds {
        let c = next(&mut idle, Duration::from_secs(10))
            .await
            .expect("change");
        assert_eq!(c.serial, format!("BULK-{r:05}"));
        let cursor: u64 = c.cursor.parse().unwrap();
        assert!(cursor > last);
        last = cursor;
    }
}

crate::both_backends!(a_cursor_older_than_the_retention_is_refused);
async fn a_cursor_older_than_the_retention_is_refused() {
    let mut opts = Options::default();
    opts.limits.push(("change_feed_retention", "5".into()));
    let server = TestServer::start_with(opts);
    let admin = server.admin().await;
    let key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    // Each enrollment is a change (to UNKNOWN).
    for i in 0..20u64 {
        let k = attestd_client::SigningKey::generate(attestd_client::core::keys::KeyAlg::Ed25519)
            .unwrap();
        provision(&station, "line1-prov", &key, i + 1, &format!("U-{i}"), &k)
            .await
            .unwrap();
    }
    // The job trims the feed to the retention.
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = auditor
            .fleet()
            .watch_fleet(pb::WatchFleetRequest {
                filter: None,
                after_cursor: "1".into(),
            })
            .await;
        match r {
            Err(s) => {
                assert_eq!(
                    (s.code(), reason(&s).as_str()),
                    (Code::FailedPrecondition, "CURSOR_EXPIRED")
                );
                break;
            }
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the feed was never trimmed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
