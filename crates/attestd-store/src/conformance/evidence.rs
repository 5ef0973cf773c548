//! Evidence: stored only on the state it was decided on, once, with the
//! enrolled key, and never replaying a boot counter when deferred.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// Station st-a and unit U1 (key 1) enrolled through it; the unit.
async fn enrolled(s: &dyn Store) -> DeviceEntry {
    line(s, "st-a").await;
    enroll(s, "st-a", 1, "U1", 1).await
}

/// Every write decided on a snapshot the unit has left (evidence,
/// re-appraisal, flag, release decision, alone or in a batch) is a conflict
/// and writes nothing.
pub async fn a_stale_revision_conflicts_and_writes_nothing(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    assert_eq!((after.highest_bootcount, after.evidence_count), (5, 1));
    assert!(after.revision > dev.revision);
    let before = snapshot(s, "U1").await;
    let stale = evidence("U1", 6, &dev, false);
    let stale_id = stale.entry.evidence_id.clone();
    assert!(conflict(&s.commit_evidence(stale.clone()).await));
    assert!(conflict(
        &s.commit_reappraisal(reappraisal(&dev, verdict(1, 0, 5)))
            .await
    ));
    assert!(conflict(
        &s.set_flag(flag("U1", &dev, quarantine(true), 6, None))
            .await
    ));
    assert!(conflict(
        &s.record_decision(decision("rd_1", "U1", dev.revision, None, vec![]))
            .await
    ));
    let out = s.commit_batch(vec![Write::Evidence(stale)]).await;
    assert!(matches!(out.as_slice(), [Err(StoreError::Conflict)]));
    assert_eq!(snapshot(s, "U1").await, before, "a conflict writes nothing");
    assert_eq!(s.get_evidence(&stale_id).await.unwrap(), None);
}

/// Deferred evidence must carry a boot counter above every one accepted.
pub async fn deferred_evidence_needs_a_higher_bootcount(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    let before = snapshot(s, "U1").await;
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, true)).await),
        Reason::Replayed
    );
    assert_eq!(
        rejected(
            s.commit_evidence(with_id(evidence("U1", 4, &after, true), "ev_lower"))
                .await
        ),
        Reason::Replayed
    );
    assert_eq!(snapshot(s, "U1").await, before, "a replay writes nothing");
    let higher = s
        .commit_evidence(evidence("U1", 6, &after, true))
        .await
        .unwrap();
    assert_eq!((higher.highest_bootcount, higher.evidence_count), (6, 2));
    // The first evidence of a unit may be deferred: nothing to be above yet.
    let fresh = enroll(s, "st-a", 2, "U2", 2).await;
    let first = s
        .commit_evidence(evidence("U2", 0, &fresh, true))
        .await
        .unwrap();
    assert!(first.has_bootcount && first.highest_bootcount == 0);
}

/// The same evidence (by id) is accepted once.
pub async fn the_same_evidence_is_stored_once(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    let before = snapshot(s, "U1").await;
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, false)).await),
        Reason::Replayed
    );
    assert_eq!(snapshot(s, "U1").await, before);
    assert_eq!(s.counts().await.unwrap().evidence, 1);
}

/// Nonce-fresh evidence with a lower boot counter (a counter reset) is
/// accepted, but does not lower the high-water mark.
pub async fn a_lower_bootcount_keeps_the_high_water_mark(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    let lower = s
        .commit_evidence(evidence("U1", 3, &after, false))
        .await
        .unwrap();
    assert_eq!(
        lower.highest_bootcount, 5,
        "a lower nonce-fresh count does not lower the high-water mark"
    );
    assert_eq!(lower.evidence_count, 2);
    assert_eq!(device(s, "U1").await, lower);
    assert_eq!(totals(s).await, (1, 1, 1, 2));
}

/// Evidence is stored only under the key enrolled now, for an enrolled unit.
pub async fn evidence_needs_the_enrolled_key(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let before = snapshot(s, "U1").await;
    let mut wrong_key = evidence("U1", 9, &dev, false);
    wrong_key.spki_der = key(7).spki_der().to_vec();
    assert_eq!(
        rejected(s.commit_evidence(wrong_key).await),
        Reason::SignatureInvalid
    );
    assert_eq!(
        rejected(s.commit_evidence(evidence("U404", 9, &dev, false)).await),
        Reason::UnknownDevice
    );
    assert_eq!(snapshot(s, "U1").await, before);
    assert!(s.get_device("U404").await.unwrap().is_none());
}

/// Stored evidence reads back whole (raw bytes included), and the unit
/// carries what it reported.
pub async fn evidence_reads_back_whole(s: Arc<dyn Store>) {
    let s = &*s;
    let dev = enrolled(s).await;
    let mut c = evidence("U1", 5, &dev, false);
    c.entry.received_at = 4_242;
    c.entry.issued_at = 4_200;
    c.entry.nonce_fresh = true;
    c.svns = vec![SvnEntry {
        name: "os".into(),
        svn: 3,
    }];
    c.firmware = vec![FirmwareEntry {
        name: "os".into(),
        version: "1.2".into(),
        svn: 3,
        digest: vec![9; 32],
    }];
    c.calibration_digest = vec![8; 32];
    let d = s.commit_evidence(c.clone()).await.unwrap();
    assert_eq!(d.svns, c.svns);
    assert_eq!(d.firmware, c.firmware);
    assert_eq!(d.calibration_digest, c.calibration_digest);
    assert_eq!(d.last_evidence_id, c.entry.evidence_id);
    assert_eq!(d.last_seen, 4_242);
    assert_eq!(device(s, "U1").await, d);
    assert_eq!(
        s.get_evidence(&c.entry.evidence_id).await.unwrap(),
        Some(c.entry)
    );
    assert_eq!(s.get_evidence("ev_nope").await.unwrap(), None);
    assert_eq!(s.counts().await.unwrap().evidence, 1);
}
