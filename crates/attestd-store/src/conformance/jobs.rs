//! The store's services to the server beside its data: challenge nonces,
//! job leases, pinned settings, write announcements, shutdown.

use std::sync::Arc;
use std::time::Duration;

use attestd_core::Reason;

use super::data::*;
use crate::*;

fn policy() -> crate::nonces::NoncePolicy {
    crate::nonces::NoncePolicy {
        lifetime_ms: 1_000,
        per_serial: 2,
        total: 10_000,
    }
}

fn refused(r: Result<()>) -> Reason {
    match r {
        Err(StoreError::Rejected(r)) => r.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A nonce is issued for one serial, used once, and refused once expired;
/// a nonce used by another serial stays usable by its own.
pub async fn a_nonce_is_used_once_by_its_serial(s: Arc<dyn Store>) {
    let s = &*s;
    let p = policy();
    let (n, expires) = s.issue_nonce("S1", 0, &p).await.unwrap();
    assert_eq!(expires, 1_000);
    assert_eq!(n.len(), crate::nonces::NONCE_LEN);
    assert_eq!(
        refused(s.consume_nonce(&n, "S2", 1, &p).await),
        Reason::NonceUnknown
    );
    s.consume_nonce(&n, "S1", 1, &p).await.unwrap();
    assert_eq!(
        refused(s.consume_nonce(&n, "S1", 2, &p).await),
        Reason::NonceReused
    );
    let (late, _) = s.issue_nonce("S1", 10, &p).await.unwrap();
    assert_eq!(
        refused(s.consume_nonce(&late, "S1", 1_011, &p).await),
        Reason::NonceExpired
    );
    assert_eq!(
        refused(s.consume_nonce(&[1, 2, 3], "S1", 0, &p).await),
        Reason::NonceUnknown
    );
    assert_eq!(
        refused(s.consume_nonce(&[7; 32], "S1", 0, &p).await),
        Reason::NonceUnknown,
        "never issued"
    );
}

/// Beyond `per_serial` outstanding nonces the oldest is evicted; nonces of
/// other serials are untouched; long expired ones are forgotten.
pub async fn outstanding_nonces_are_bounded_per_serial(s: Arc<dyn Store>) {
    let s = &*s;
    let p = policy();
    let (x, _) = s.issue_nonce("S1", 20, &p).await.unwrap();
    let (other, _) = s.issue_nonce("S9", 20, &p).await.unwrap();
    let (y, _) = s.issue_nonce("S1", 21, &p).await.unwrap();
    let (z, _) = s.issue_nonce("S1", 22, &p).await.unwrap();
    assert_eq!(
        refused(s.consume_nonce(&x, "S1", 23, &p).await),
        Reason::NonceUnknown,
        "the oldest of three was evicted"
    );
    s.consume_nonce(&z, "S1", 24, &p).await.unwrap();
    s.consume_nonce(&other, "S9", 24, &p).await.unwrap();
    // Recently expired: expired; long expired: unknown.
    assert_eq!(
        refused(s.consume_nonce(&y, "S1", 5_000, &p).await),
        Reason::NonceExpired
    );
    assert_eq!(
        refused(s.consume_nonce(&y, "S1", 70_000, &p).await),
        Reason::NonceUnknown
    );
}

/// A lease is held by whoever took it, renewed by its holder, and free for
/// another holder once it expired.
pub async fn a_lease_is_held_by_its_taker_until_it_expires(s: Arc<dyn Store>) {
    let s = &*s;
    assert!(s.lease("checkpoint", "a", 1_000, 0).await.unwrap());
    assert!(
        s.lease("checkpoint", "a", 1_000, 500).await.unwrap(),
        "renewed"
    );
    assert!(
        s.lease("trim", "b", 1_000, 600).await.unwrap(),
        "another job is another lease"
    );
    assert!(
        s.lease("checkpoint", "b", 1_000, 5_000).await.unwrap(),
        "expired, so free"
    );
    assert!(s.lease("checkpoint", "b", 1_000, 5_500).await.unwrap());
}

/// Pinning a setting answers the value pinned, the same every time.
pub async fn a_pinned_setting_answers_its_value(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(s.pin_setting("audit.key_id", "k1").await.unwrap(), "k1");
    assert_eq!(s.pin_setting("audit.key_id", "k1").await.unwrap(), "k1");
    assert_eq!(s.pin_setting("other", "x").await.unwrap(), "x");
    // Either pinned (the first value stays) or not pinned at all.
    let second = s.pin_setting("audit.key_id", "k2").await.unwrap();
    assert!(second == "k1" || second == "k2", "{second}");
    if second == "k1" {
        assert_eq!(s.pin_setting("audit.key_id", "k3").await.unwrap(), "k1");
    }
}

/// An announced write that never comes delays other writes boundedly: they
/// complete, and so does everything after the announcement is withdrawn.
pub async fn a_write_completes_while_another_is_announced(s: Arc<dyn Store>) {
    let s = &*s;
    let limit = Duration::from_secs(10);
    let announced = s.announce();
    let _also = s.announce();
    tokio::time::timeout(limit, line(s, "st-a"))
        .await
        .expect("a write while another is announced");
    tokio::time::timeout(limit, enroll(s, "st-a", 1, "U1", 1))
        .await
        .expect("a grouped write while another is announced");
    drop(announced);
    let d = device(s, "U1").await;
    tokio::time::timeout(limit, s.commit_evidence(evidence("U1", 1, &d, false)))
        .await
        .expect("a write after a withdrawal")
        .unwrap();
    assert_eq!(totals(s).await, (1, 1, 1, 1));
}

/// After `close`, writes fail with SHUTTING_DOWN (retryable elsewhere);
/// closing again returns.
pub async fn writes_after_close_fail_shutting_down(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    tokio::time::timeout(Duration::from_secs(10), s.close())
        .await
        .expect("close returns");
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 1, &d, false)).await),
        Reason::ShuttingDown
    );
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-a", 2, "U2", &key(2), None))
                .await
        ),
        Reason::ShuttingDown
    );
    assert_eq!(
        rejected(
            s.register_station(station("st-b"), &note("station.register"))
                .await
        ),
        Reason::ShuttingDown
    );
    let out = s
        .commit_batch(vec![Write::Evidence(evidence("U1", 2, &d, false))])
        .await;
    assert!(matches!(
        out.as_slice(),
        [Err(StoreError::Rejected(r))] if r.reason == Reason::ShuttingDown
    ));
    tokio::time::timeout(Duration::from_secs(10), s.close())
        .await
        .expect("closing twice returns");
}

/// A challenge is issued to an enrolled unit only: an unknown serial is
/// refused `DEVICE_NOT_FOUND`; an enrolled unit's nonce is used once.
pub async fn a_challenge_is_issued_to_an_enrolled_unit_only(s: Arc<dyn Store>) {
    let s = &*s;
    let p = policy();
    match s.issue_challenge("U1", 0, &p).await {
        Err(StoreError::Rejected(r)) => assert_eq!(r.reason, Reason::DeviceNotFound),
        other => panic!("a challenge for a unit not enrolled: {other:?}"),
    }
    line(s, "F1").await;
    enroll(s, "F1", 1, "U1", 1).await;
    let (n, expires) = s.issue_challenge("U1", 0, &p).await.unwrap();
    assert_eq!(expires, 1_000);
    s.consume_nonce(&n, "U1", 1, &p).await.unwrap();
    assert_eq!(
        refused(s.consume_nonce(&n, "U1", 2, &p).await),
        Reason::NonceReused
    );
}

/// The unit context is the unit, its model's active baseline version and
/// the stations behind it, as the single reads answer them; a station
/// revoked shows revoked; a serial not enrolled has none.
pub async fn the_unit_context_is_what_the_single_reads_say(s: Arc<dyn Store>) {
    let s = &*s;
    assert!(s.unit_context("U1").await.unwrap().is_none());
    line(s, "F1").await;
    line(s, "C1").await;
    line(s, "C2").await;
    let d = enroll(s, "F1", 1, "U1", 1).await;
    let ctx = s
        .unit_context("U1")
        .await
        .unwrap()
        .expect("an enrolled unit");
    assert_eq!(ctx.device, d);
    assert_eq!(ctx.active, None);
    let ids = |c: &UnitContext| {
        let mut v: Vec<(String, bool)> = c
            .stations
            .iter()
            .map(|st| (st.station_id.clone(), st.revoked))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&ctx), [("F1".to_owned(), false)]);
    // Calibrated by C1, then by C2: C1 is no longer behind the unit.
    for (st, seq) in [("C1", 1), ("C2", 1)] {
        match s.commit_record(calibration(st, seq, "U1")).await {
            Ok(RecordOutcome::Stored(_)) => {}
            other => panic!("calibrating: {other:?}"),
        }
    }
    s.publish_baseline(baseline(&d.model, 1, 0), 1_000, &note("baseline"))
        .await
        .unwrap();
    s.revoke_station("C2", "test", &note("station.revoke"))
        .await
        .unwrap();
    let ctx = s
        .unit_context("U1")
        .await
        .unwrap()
        .expect("an enrolled unit");
    assert_eq!(ctx.device, device(s, "U1").await);
    assert_eq!(ctx.active, Some(1));
    assert_eq!(
        ctx.active,
        s.active_baseline_version(&d.model).await.unwrap()
    );
    assert_eq!(
        ids(&ctx),
        [("C2".to_owned(), true), ("F1".to_owned(), false)]
    );
}
