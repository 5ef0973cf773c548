//! The audit chain: one chained entry per change, in the same write as the
//! change, none for a refusal.

use std::sync::Arc;

use attestd_core::audit::CHECKPOINT_ACTION;
use attestd_core::Reason;

use super::data::*;
use crate::*;

/// A walk through most writes, each change followed by refusals that must
/// leave nothing. Afterwards: 1 station (revoked), 1 unit (revoked), 1
/// record, 2 pieces of evidence, 2 baselines (PM-200 v2 active), and the
/// audit actions of [`SCENARIO_ACTIONS`]. Backends reuse it to check that
/// data survives a restart.
pub async fn scenario(s: &dyn Store) {
    s.register_station(station("st-a"), &note("station.register"))
        .await
        .unwrap();
    assert_eq!(
        rejected(
            s.register_station(station("st-a"), &note("station.register"))
                .await
        ),
        Reason::StationExists
    );
    let c = provisioning("st-a", 1, "U1", &key(1), None);
    s.commit_record(c.clone()).await.unwrap();
    s.commit_record(c).await.unwrap();
    for (bad, why) in [
        (
            provisioning("st-a", 1, "U2", &key(2), None),
            Reason::SequenceRegressed,
        ),
        (
            provisioning("st-a", 2, "U2", &key(1), None),
            Reason::KeyInUse,
        ),
        (
            provisioning("st-a", 2, "U1", &key(3), None),
            Reason::SerialEnrolled,
        ),
        (
            provisioning("st-zz", 2, "U9", &key(9), None),
            Reason::UnknownStation,
        ),
    ] {
        assert_eq!(rejected(s.commit_record(bad).await), why);
    }
    let dev = device(s, "U1").await;
    let after = s
        .commit_evidence(evidence("U1", 5, &dev, false))
        .await
        .unwrap();
    assert!(conflict(
        &s.commit_evidence(evidence("U1", 6, &dev, false)).await
    ));
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, true)).await),
        Reason::Replayed
    );
    assert_eq!(
        rejected(s.commit_evidence(evidence("U1", 5, &after, false)).await),
        Reason::Replayed
    );
    let lower = s
        .commit_evidence(evidence("U1", 3, &after, false))
        .await
        .unwrap();
    let mut wrong_key = evidence("U1", 9, &lower, false);
    wrong_key.spki_der = key(7).spki_der().to_vec();
    assert_eq!(
        rejected(s.commit_evidence(wrong_key).await),
        Reason::SignatureInvalid
    );
    // Re-appraisals change no audited state.
    let d = s
        .commit_reappraisal(reappraisal(&lower, verdict(1, 500, 9)))
        .await
        .unwrap();
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    assert_eq!(
        rejected(
            s.publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
                .await
        ),
        Reason::VersionNotIncreasing
    );
    assert!(!s
        .publish_baseline(baseline("PM-200", 2, 5000), 1000, &note("baseline"))
        .await
        .unwrap());
    assert!(conflict(
        &s.commit_reappraisal(reappraisal(&d, verdict(2, 0, 9)))
            .await
    ));
    let sweep = s.sweeps().await.unwrap().remove(0);
    s.advance_sweep(&sweep, None).await.unwrap();
    s.activate_due_baselines(5000).await.unwrap();
    let u1 = device(s, "U1").await;
    let active = s.active_baseline_version(&u1.model).await.unwrap();
    let mut revocation = flag("U1", &u1, revoke(), 3, active);
    revocation.audit = note("device.revoke");
    s.set_flag(revocation).await.unwrap();
    assert_eq!(
        rejected(s.set_flag(flag("U404", &u1, revoke(), 3, None)).await),
        Reason::DeviceNotFound
    );
    s.revoke_station("st-a", "leak", &note("station.revoke"))
        .await
        .unwrap();
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-a", 3, "U3", &key(4), None))
                .await
        ),
        Reason::StationRevoked
    );
    assert_eq!(
        rejected(s.revoke_station("nope", "x", &note("station.revoke")).await),
        Reason::StationNotFound
    );
}

/// The audit actions [`scenario`] leaves, in order.
pub const SCENARIO_ACTIONS: [&str; 8] = [
    "station.register",
    "record",
    "evidence",
    "evidence",
    "baseline",
    "baseline",
    "device.revoke",
    "station.revoke",
];

/// The chain read from the store verifies from genesis to the head the
/// store reports, and reads the same in pages.
pub async fn the_audit_chain_verifies(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(
        s.audit_head().await.unwrap(),
        (0, attestd_core::audit::GENESIS)
    );
    scenario(s).await;
    for i in 0..5 {
        s.append_audit(&AuditNote::new(100 + i, "tester", "test.append", "x").reason("r"))
            .await
            .unwrap();
    }
    let entries = s.audit_after(0, 1000).await.unwrap();
    let n = entries.len() as u64;
    assert_eq!(n, 13);
    assert_eq!(s.audit_head().await.unwrap(), (n, verified_head(&entries)));
    let last = entries.last().unwrap();
    assert_eq!(
        (
            last.at_ms,
            last.principal.as_str(),
            last.target.as_str(),
            last.reason.as_str()
        ),
        (104, "tester", "x", "r")
    );
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = s.audit_after(after, 4).await.unwrap();
        let Some(e) = page.last() else { break };
        after = e.seq;
        paged.extend(page);
    }
    assert_eq!(paged, entries);
    assert!(s.audit_after(n, 10).await.unwrap().is_empty());
}

/// Every change above left exactly one audit entry, in order; the refusals
/// (and the duplicate record) left none.
pub async fn every_change_leaves_one_audit_entry_and_a_refusal_none(s: Arc<dyn Store>) {
    let s = &*s;
    scenario(s).await;
    let entries = s.audit_after(0, 1000).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, SCENARIO_ACTIONS);
    assert_eq!(s.audit_head().await.unwrap(), (8, verified_head(&entries)));
}

/// The last checkpoint is the newest entry with the checkpoint action.
pub async fn the_last_checkpoint_is_the_newest_checkpoint_entry(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(s.audit_last_checkpoint().await.unwrap(), None);
    let checkpoint =
        |d: &str| AuditNote::new(5, "attestd", CHECKPOINT_ACTION, "audit").details(d.into());
    s.append_audit(&checkpoint("cp1")).await.unwrap();
    s.append_audit(&note("other")).await.unwrap();
    let cp = s
        .audit_last_checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!((cp.seq, cp.details.as_str()), (1, "cp1"));
    line(s, "st-a").await;
    s.append_audit(&checkpoint("cp2")).await.unwrap();
    s.append_audit(&note("other")).await.unwrap();
    let cp = s
        .audit_last_checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!((cp.seq, cp.details.as_str()), (4, "cp2"));
    assert_eq!(
        s.audit_after(3, 1).await.unwrap(),
        vec![cp],
        "the entry as the chain has it"
    );
}
