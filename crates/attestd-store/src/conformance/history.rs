//! A unit's history: everything that happened to it, in the order it was
//! accepted, a page at a time.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// The kind of each history item, for comparing orders.
fn kinds(items: &[HistoryItem]) -> Vec<&'static str> {
    items
        .iter()
        .map(|h| match h {
            HistoryItem::Evidence(_) => "evidence",
            HistoryItem::Record(_) => "record",
            HistoryItem::Reappraisal(_) => "reappraisal",
            HistoryItem::Decision(_) => "decision",
        })
        .collect()
}

/// Records, evidence (without raw bytes), re-appraisals, decisions and
/// verdict-changing flags read back in acceptance order, and any page size
/// gives the same sequence.
pub async fn history_is_in_acceptance_order_and_pages(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let dev = enroll(s, "st-a", 1, "U1", 1).await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    s.commit_evidence(evidence("U1", 3, &after, false))
        .await
        .unwrap();
    let p1 = s.list_history("U1", None, 2).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(matches!(p1.items[0], HistoryItem::Record(_)));
    let p2 = s.list_history("U1", p1.next.as_deref(), 2).await.unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next, None);
    assert!(
        matches!(&p2.items[0], HistoryItem::Evidence(e) if e.bootcount == 3 && e.raw.is_empty())
    );
    let d = device(s, "U1").await;
    let d = s
        .commit_reappraisal(reappraisal(&d, verdict(1, 0, 20)))
        .await
        .unwrap();
    s.record_decision(decision("rd_1", "U1", d.revision, None, vec![]))
        .await
        .unwrap();
    s.set_flag(flag("U1", &d, quarantine(true), 6, None))
        .await
        .unwrap();
    let all = s.list_history("U1", None, 100).await.unwrap();
    assert_eq!(all.next, None);
    assert_eq!(
        kinds(&all.items),
        [
            "record",
            "evidence",
            "evidence",
            "reappraisal",
            "decision",
            "reappraisal"
        ]
    );
    assert!(matches!(&all.items[3], HistoryItem::Reappraisal(r) if r.status == 1 && r.at == 20));
    assert!(matches!(&all.items[5], HistoryItem::Reappraisal(r) if r.status == 6));
    for limit in 1..=7 {
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10 {
            let page = s.list_history("U1", after.as_deref(), limit).await.unwrap();
            assert!(page.items.len() <= limit);
            paged.extend(page.items);
            after = page.next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(after, None, "pages of {limit} end");
        assert_eq!(paged, all.items, "pages of {limit}");
    }
}

/// One serial's lists never show another's, even one it is a prefix of.
pub async fn a_serial_prefix_is_another_serial(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    let d10 = enroll(s, "st-a", 2, "U10", 2).await;
    s.commit_evidence(evidence("U10", 1, &d10, false))
        .await
        .unwrap();
    assert!(
        s.list_history("U", None, 10)
            .await
            .unwrap()
            .items
            .is_empty(),
        "a prefix of a serial is another serial"
    );
    assert!(s
        .list_records("U", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        kinds(&s.list_history("U1", None, 10).await.unwrap().items),
        ["record"]
    );
    assert_eq!(s.list_records("U1", None, 10).await.unwrap().items.len(), 1);
}

/// A page token the store did not issue is refused as FIELD_INVALID.
pub async fn a_page_token_not_issued_is_refused(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    s.publish_baseline(baseline("PM-200", 1, 0), 10, &note("baseline"))
        .await
        .unwrap();
    assert_eq!(
        rejected(s.list_history("U1", Some("garbage"), 2).await),
        Reason::FieldInvalid
    );
    assert_eq!(
        rejected(s.list_records("U1", Some("garbage"), 2).await),
        Reason::FieldInvalid
    );
    assert_eq!(
        rejected(s.list_baselines("PM-200", Some("garbage"), 2).await),
        Reason::FieldInvalid
    );
    assert_eq!(
        rejected(
            s.list_devices(DeviceQuery {
                after: Some("garbage".into()),
                limit: 10,
                budget: 10,
                ..DeviceQuery::default()
            })
            .await
        ),
        Reason::FieldInvalid
    );
}
