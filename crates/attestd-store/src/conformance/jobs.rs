//! The store's services to the server beside its data: challenge nonces,
//! job leases, pinned settings, write announcements, shutdown.

use std::sync::Arc;
use std::time::Duration;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// A challenge nonce is accepted once, until it expires.
pub async fn a_nonce_is_used_once(s: Arc<dyn Store>) {
    let s = &*s;
    assert!(s.use_nonce(b"n1", 1_000, 0).await.unwrap());
    assert!(!s.use_nonce(b"n1", 1_000, 10).await.unwrap());
    assert!(
        !s.use_nonce(b"n1", 5_000, 999).await.unwrap(),
        "a later expiry does not make it new"
    );
    assert!(s.use_nonce(b"n2", 1_000, 10).await.unwrap());
    assert!(
        s.use_nonce(b"n", 1_000, 10).await.unwrap(),
        "a prefix is another nonce"
    );
    assert!(s.use_nonce(&[0u8; 32], 1_000, 10).await.unwrap());
    assert!(!s.use_nonce(&[0u8; 32], 1_000, 10).await.unwrap());
}

/// However many nonces pass through (a store may forget expired ones), a
/// nonce not yet expired is never accepted twice.
pub async fn a_nonce_is_remembered_until_it_expires(s: Arc<dyn Store>) {
    let s = &*s;
    let nonce = |i: u32| format!("nonce-{i}").into_bytes();
    for i in 0..1500 {
        assert!(s
            .use_nonce(&nonce(i), 10_000 + i64::from(i), 0)
            .await
            .unwrap());
    }
    // Later, many new nonces (room for a store to drop the expired ones).
    for i in 1500..3000 {
        assert!(s.use_nonce(&nonce(i), 20_000, 11_000).await.unwrap());
    }
    for i in (1001..1500).step_by(7) {
        assert!(
            !s.use_nonce(&nonce(i), 20_000, 11_000).await.unwrap(),
            "nonce {i} expires at {} and was used again at 11000",
            10_000 + i
        );
    }
    for i in (1500..3000).step_by(11) {
        assert!(!s.use_nonce(&nonce(i), 20_000, 19_999).await.unwrap());
    }
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
