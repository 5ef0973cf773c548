//! A batch gives each write the answer it would get alone, in order (a
//! write sees the ones before it), and a refused write leaves nothing.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// Four records in one batch: two stored, one refused for a key the write
/// before it enrolled, one for a sequence the write before it used.
async fn records_batch(s: &dyn Store) -> Vec<Result<Written>> {
    s.register_station(station("st-a"), &note("station.register"))
        .await
        .unwrap();
    s.commit_batch(vec![
        Write::Record(provisioning("st-a", 1, "U1", &key(1), None)),
        // The key of U1, already enrolled by the write before it.
        Write::Record(provisioning("st-a", 2, "U2", &key(1), None)),
        Write::Record(provisioning("st-a", 3, "U3", &key(3), None)),
        // Not above the sequence the write before it accepted.
        Write::Record(provisioning("st-a", 3, "U4", &key(4), None)),
    ])
    .await
}

/// After [`records_batch`]: two pieces of evidence decided on the same
/// snapshot of U1 (the second conflicts), evidence for U3 and a decision
/// resting on the unit as that evidence left it.
async fn evidence_batch(s: &dyn Store) -> Vec<Result<Written>> {
    let u1 = device(s, "U1").await;
    let u3 = device(s, "U3").await;
    s.commit_batch(vec![
        Write::Evidence(evidence("U1", 5, &u1, false)),
        Write::Evidence(evidence("U1", 6, &u1, false)),
        Write::Evidence(evidence("U3", 1, &u3, false)),
        // Decided after the evidence before it (later writes see earlier ones).
        Write::Decision(decision("rd_1", "U3", u3.revision + 1, None, vec![])),
    ])
    .await
}

/// Both batches; what backends check after a restart: totals (1, 2, 2, 2)
/// and six audit entries.
pub async fn scenario(s: &dyn Store) {
    records_batch(s).await;
    evidence_batch(s).await;
}

/// Each write of a batch is answered as it would be alone; the refused
/// ones leave nothing.
pub async fn a_batch_answers_each_write_as_alone(s: Arc<dyn Store>) {
    let s = &*s;
    let out = records_batch(s).await;
    assert_eq!(out.len(), 4);
    assert!(matches!(
        &out[0],
        Ok(Written::Record(RecordOutcome::Stored(_)))
    ));
    assert_eq!(refused(&out[1]), Reason::KeyInUse);
    assert!(matches!(
        &out[2],
        Ok(Written::Record(RecordOutcome::Stored(_)))
    ));
    assert_eq!(refused(&out[3]), Reason::SequenceRegressed);
    assert!(s.get_device("U2").await.unwrap().is_none());
    assert!(s.get_device("U4").await.unwrap().is_none());
    assert_eq!(totals(s).await, (1, 2, 2, 0));
    // The same record again in a batch is a duplicate, as alone.
    let again = s
        .commit_batch(vec![Write::Record(provisioning(
            "st-a",
            1,
            "U1",
            &key(1),
            None,
        ))])
        .await;
    assert!(matches!(
        again.as_slice(),
        [Ok(Written::Record(RecordOutcome::Duplicate(_)))]
    ));
    assert_eq!(totals(s).await, (1, 2, 2, 0));
}

/// Later writes of a batch see the earlier ones: a second write on the
/// same snapshot conflicts, a decision on the state just written is stored.
pub async fn a_batch_sees_the_writes_before_it(s: Arc<dyn Store>) {
    let s = &*s;
    records_batch(s).await;
    let out = evidence_batch(s).await;
    assert_eq!(out.len(), 4);
    assert!(matches!(&out[0], Ok(Written::Device(d)) if d.highest_bootcount == 5));
    assert!(matches!(out[1], Err(StoreError::Conflict)));
    assert!(matches!(&out[2], Ok(Written::Device(d)) if d.evidence_count == 1));
    assert!(matches!(out[3], Ok(Written::Done)));
    assert_eq!(totals(s).await, (1, 2, 2, 2));
    assert_eq!(device(s, "U1").await.evidence_count, 1);
    assert!(matches!(
        s.list_history("U3", None, 10).await.unwrap().items.last(),
        Some(HistoryItem::Decision(d)) if d.decision_id == "rd_1"
    ));
    // The answers are what a read sees.
    if let Ok(Written::Device(d)) = &out[2] {
        assert_eq!(&device(s, "U3").await, d);
    }
}

/// One chained audit entry per applied write, none for the refused; an
/// empty batch answers nothing.
pub async fn a_batch_leaves_one_audit_entry_per_applied_write(s: Arc<dyn Store>) {
    let s = &*s;
    scenario(s).await;
    let entries = s.audit_after(0, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "station.register",
            "record",
            "record",
            "evidence",
            "evidence",
            "release.decide"
        ]
    );
    assert_eq!(s.audit_head().await.unwrap(), (6, verified_head(&entries)));
    assert!(s.commit_batch(Vec::new()).await.is_empty());
    assert_eq!(s.audit_head().await.unwrap().0, 6);
}
