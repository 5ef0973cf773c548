//! The change feed: one entry per status change, numbered without gaps in
//! commit order, trimmed from the oldest end.

use std::sync::Arc;

use super::data::*;
use crate::*;

/// Status changes of two units by every kind of write, and writes that
/// change no status; the changes expected, in order.
async fn some_changes(s: &dyn Store) -> Vec<(String, i32, i32)> {
    line(s, "st-a").await;
    let u1 = enroll(s, "st-a", 1, "U1", 1).await;
    let u2 = enroll(s, "st-a", 2, "U2", 2).await;
    let u1 = s
        .commit_reappraisal(reappraisal(&u1, verdict(1, 0, 100)))
        .await
        .unwrap();
    s.set_flag(flag("U2", &u2, quarantine(true), 6, None))
        .await
        .unwrap();
    // No status change: a new due time, a placement, evidence keeping it.
    let u1 = s
        .commit_reappraisal(reappraisal(&u1, verdict(1, 700, 101)))
        .await
        .unwrap();
    s.assign_device(
        "U2",
        &Assignment {
            tenant: "h1".into(),
            site: "north".into(),
            ..Assignment::default()
        },
        &note("device.assign"),
    )
    .await
    .unwrap();
    let u1 = s
        .commit_evidence(evidence("U1", 1, &u1, false))
        .await
        .unwrap();
    let mut c = evidence("U1", 2, &u1, false);
    c.verdict = UnitVerdict {
        appraisal: Some(AppraisalEntry {
            findings: vec![FindingEntry {
                code: "FIRMWARE_REVOKED".into(),
                ..FindingEntry::default()
            }],
            ..AppraisalEntry::default()
        }),
        ..verdict(2, 0, 200)
    };
    let u1 = s.commit_evidence(c).await.unwrap();
    s.set_flag(flag("U1", &u1, revoke(), 3, None))
        .await
        .unwrap();
    let u2 = device(s, "U2").await;
    s.set_flag(flag("U2", &u2, quarantine(false), STATUS_UNKNOWN, None))
        .await
        .unwrap();
    [
        ("U1", 0, STATUS_UNKNOWN),
        ("U2", 0, STATUS_UNKNOWN),
        ("U1", STATUS_UNKNOWN, 1),
        ("U2", STATUS_UNKNOWN, 6),
        ("U1", 1, 2),
        ("U1", 2, 3),
        ("U2", 6, STATUS_UNKNOWN),
    ]
    .into_iter()
    .map(|(s, a, b)| (s.to_string(), a, b))
    .collect()
}

/// Every status change, and nothing else, is fed once, numbered 1, 2, ...
/// in commit order, with what a watcher filters on; the cursor is the
/// newest number; any page size reads the same feed.
pub async fn the_change_feed_is_gapless_and_ordered(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(s.change_cursor().await.unwrap(), 0);
    assert_eq!(s.change_bounds().await.unwrap(), None);
    assert!(s.changes_after(0, 10).await.unwrap().is_empty());
    let want = some_changes(s).await;
    let n = want.len() as u64;
    let feed = s.changes_after(0, 100).await.unwrap();
    let seqs: Vec<u64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<u64>>());
    assert_eq!(changes(s, 0).await, want);
    assert_eq!(s.change_cursor().await.unwrap(), n);
    assert_eq!(s.change_bounds().await.unwrap(), Some((1, n)));
    // What a watcher filters on: model, tenant, site as written, the reasons.
    let revoked_fw = &feed[4];
    assert_eq!(revoked_fw.model, "PM-200");
    assert_eq!(revoked_fw.reasons, ["FIRMWARE_REVOKED"]);
    assert_eq!(revoked_fw.at, 200);
    let back = &feed[6];
    assert_eq!((back.tenant.as_str(), back.site.as_str()), ("h1", "north"));
    assert_eq!(back.at, device(s, "U2").await.status_changed_at);
    for after in 0..=n {
        for limit in [1, 2, 3] {
            let page: Vec<u64> = s
                .changes_after(after, limit)
                .await
                .unwrap()
                .iter()
                .map(|c| c.seq)
                .collect();
            let end = (after + limit as u64).min(n);
            assert_eq!(page, (after + 1..=end).collect::<Vec<u64>>());
        }
    }
}

/// Trimming drops the oldest changes beyond `keep`, at most `max` a call;
/// numbers are never reused and the cursor does not move.
pub async fn trim_changes_keeps_the_newest(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(s.trim_changes(0, 10).await.unwrap(), 0, "an empty feed");
    let n = some_changes(s).await.len() as u64;
    assert_eq!(n, 7);
    assert_eq!(s.trim_changes(10, 100).await.unwrap(), 0);
    assert_eq!(s.trim_changes(3, 2).await.unwrap(), 2, "at most max");
    assert_eq!(s.change_bounds().await.unwrap(), Some((3, 7)));
    assert_eq!(s.trim_changes(3, 100).await.unwrap(), 2);
    assert_eq!(s.change_bounds().await.unwrap(), Some((5, 7)));
    let seqs: Vec<u64> = s
        .changes_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert_eq!(s.change_cursor().await.unwrap(), 7);
    assert_eq!(s.trim_changes(0, 100).await.unwrap(), 3);
    assert_eq!(s.change_bounds().await.unwrap(), None);
    assert_eq!(s.change_cursor().await.unwrap(), 7);
    assert!(s.changes_after(0, 100).await.unwrap().is_empty());
    let d = device(s, "U2").await;
    s.set_flag(flag("U2", &d, quarantine(true), 6, None))
        .await
        .unwrap();
    let next = s.changes_after(0, 100).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].seq, 8, "numbers are never reused");
    assert_eq!(s.change_bounds().await.unwrap(), Some((8, 8)));
}
