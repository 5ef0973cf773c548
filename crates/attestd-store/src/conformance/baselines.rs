//! Baselines (versions, activation now or when due) and the re-appraisal
//! sweeps an activation opens.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// Units U1..=Un of PM-200, enrolled through station st-a.
async fn fleet_of(s: &dyn Store, n: u32) {
    line(s, "st-a").await;
    for i in 1..=n {
        enroll(s, "st-a", u64::from(i), &format!("U{i}"), i).await;
    }
}

/// Versions strictly increase per model, past the latest published (even
/// one still pending); a refusal leaves nothing.
pub async fn baseline_versions_must_increase(s: Arc<dyn Store>) {
    let s = &*s;
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
        .publish_baseline(baseline("PM-200", 3, 5000), 1000, &note("baseline"))
        .await
        .unwrap());
    assert_eq!(
        rejected(
            s.publish_baseline(baseline("PM-200", 2, 100), 1000, &note("baseline"))
                .await
        ),
        Reason::VersionNotIncreasing,
        "below the latest published, though pending"
    );
    // Another model counts its own versions.
    assert!(s
        .publish_baseline(baseline("IP-100", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    assert_eq!(s.counts().await.unwrap().baselines, 3);
    assert_eq!(
        s.get_baseline("PM-200", 1).await.unwrap(),
        Some(baseline("PM-200", 1, 100))
    );
    assert_eq!(s.get_baseline("PM-200", 2).await.unwrap(), None);
    assert_eq!(actions(s).await, ["baseline", "baseline", "baseline"]);
}

/// A baseline is active at once if its time has come, otherwise when
/// `activate_due_baselines` reaches its time (once).
pub async fn a_baseline_activates_now_or_when_due(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(s.active_baseline_version("PM-200").await.unwrap(), None);
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    assert_eq!(s.active_baseline_version("PM-200").await.unwrap(), Some(1));
    assert!(!s
        .publish_baseline(baseline("PM-200", 2, 5000), 1000, &note("baseline"))
        .await
        .unwrap());
    assert_eq!(
        s.active_baseline_version("PM-200").await.unwrap(),
        Some(1),
        "pending until effective"
    );
    assert!(s.activate_due_baselines(4999).await.unwrap().is_empty());
    assert_eq!(
        s.activate_due_baselines(5000).await.unwrap(),
        vec![("PM-200".to_string(), 2)]
    );
    assert_eq!(s.active_baseline_version("PM-200").await.unwrap(), Some(2));
    assert!(
        s.activate_due_baselines(9000).await.unwrap().is_empty(),
        "activated once"
    );
    assert_eq!(s.active_baseline_version("IP-100").await.unwrap(), None);
}

/// A verdict decided under the previous active baseline is stale once a
/// new one is active: every write resting on it conflicts.
pub async fn a_new_active_baseline_makes_older_decisions_stale(s: Arc<dyn Store>) {
    let s = &*s;
    fleet_of(s, 1).await;
    let d = device(s, "U1").await;
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    // The unit was decided on no baseline: that decision is now stale.
    assert!(conflict(
        &s.commit_reappraisal(reappraisal(&d, verdict(1, 0, 9)))
            .await
    ));
    assert!(conflict(
        &s.commit_evidence(evidence("U1", 1, &d, false)).await
    ));
    assert!(conflict(
        &s.set_flag(flag("U1", &d, quarantine(true), 6, None)).await
    ));
    assert!(conflict(
        &s.record_decision(decision("rd_1", "U1", d.revision, None, vec![]))
            .await
    ));
    // Decided on the new one, it is stored.
    let mut c = evidence("U1", 1, &d, false);
    c.expected_baseline = Some(1);
    assert_eq!(s.commit_evidence(c).await.unwrap().evidence_count, 1);
    // A pending baseline changes nothing yet.
    assert!(!s
        .publish_baseline(baseline("PM-200", 2, 5000), 1000, &note("baseline"))
        .await
        .unwrap());
    let d = device(s, "U1").await;
    let mut r = reappraisal(&d, verdict(1, 0, 9));
    r.expected_baseline = Some(1);
    s.commit_reappraisal(r).await.unwrap();
}

/// Activating a baseline (now or when due) opens one sweep over the
/// model's units; closing the sweep removes it.
pub async fn activation_opens_a_sweep_of_the_model(s: Arc<dyn Store>) {
    let s = &*s;
    fleet_of(s, 2).await;
    let mut other = provisioning("st-a", 10, "X1", &key(10), None);
    other.enrollment.as_mut().unwrap().model = "IP-100".into();
    s.commit_record(other).await.unwrap();
    assert!(s.sweeps().await.unwrap().is_empty());
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    let sweeps = s.sweeps().await.unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(
        (sweeps[0].kind, sweeps[0].key.as_str()),
        (SWEEP_MODEL, "PM-200")
    );
    assert_eq!(sweeps[0].cursor, "");
    assert_eq!(
        s.sweep_units(&sweeps[0], 10).await.unwrap(),
        vec!["U1".to_string(), "U2".to_string()]
    );
    s.advance_sweep(&sweeps[0], None).await.unwrap();
    assert!(s.sweeps().await.unwrap().is_empty());
    assert!(!s
        .publish_baseline(baseline("PM-200", 2, 5000), 1000, &note("baseline"))
        .await
        .unwrap());
    assert!(
        s.sweeps().await.unwrap().is_empty(),
        "a pending baseline sweeps nothing"
    );
    s.activate_due_baselines(5000).await.unwrap();
    let sweeps = s.sweeps().await.unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].key, "PM-200");
}

/// A baseline naming urgent (revoked) firmware digests opens, beside the
/// model's sweep, one over the units reporting each digest.
pub async fn a_revoked_digest_opens_a_sweep_of_the_units_reporting_it(s: Arc<dyn Store>) {
    let s = &*s;
    fleet_of(s, 3).await;
    let bad = vec![0xbb; 32];
    for (serial, digest) in [("U1", bad.clone()), ("U2", vec![0x11; 32])] {
        let d = device(s, serial).await;
        let mut c = evidence(serial, 1, &d, false);
        c.firmware = vec![FirmwareEntry {
            name: "os".into(),
            version: "1".into(),
            svn: 1,
            digest,
        }];
        s.commit_evidence(c).await.unwrap();
    }
    let mut b = baseline("PM-200", 1, 0);
    b.urgent_digests = vec![attestd_core::ids::hex(&bad)];
    assert!(s.publish_baseline(b, 10, &note("baseline")).await.unwrap());
    let sweeps = s.sweeps().await.unwrap();
    let digest = sweeps
        .iter()
        .find(|w| w.kind == SWEEP_DIGEST)
        .expect("a digest sweep");
    assert_eq!(digest.key, attestd_core::ids::hex(&bad));
    assert_eq!(
        s.sweep_units(digest, 10).await.unwrap(),
        vec!["U1".to_string()]
    );
    let model = sweeps
        .iter()
        .find(|w| w.kind == SWEEP_MODEL)
        .expect("a model sweep");
    assert_eq!(s.sweep_units(model, 10).await.unwrap().len(), 3);
    assert_eq!(sweeps.len(), 2);
}

/// A sweep hands out its units after its cursor, a page at a time; a round
/// holding an old cursor moves nothing.
pub async fn a_sweep_advances_by_its_cursor(s: Arc<dyn Store>) {
    let s = &*s;
    fleet_of(s, 3).await;
    s.publish_baseline(baseline("PM-200", 1, 0), 10, &note("baseline"))
        .await
        .unwrap();
    let first = s.sweeps().await.unwrap().remove(0);
    assert_eq!(
        s.sweep_units(&first, 2).await.unwrap(),
        vec!["U1".to_string(), "U2".to_string()]
    );
    s.advance_sweep(&first, Some("U2")).await.unwrap();
    let moved = s.sweeps().await.unwrap().remove(0);
    assert_eq!(moved.cursor, "U2");
    assert_eq!(moved.generation, first.generation);
    assert_eq!(
        s.sweep_units(&moved, 2).await.unwrap(),
        vec!["U3".to_string()]
    );
    // The first round's view is stale: closing through it does nothing.
    s.advance_sweep(&first, None).await.unwrap();
    assert_eq!(s.sweeps().await.unwrap(), vec![moved.clone()]);
    s.advance_sweep(&moved, None).await.unwrap();
    assert!(s.sweeps().await.unwrap().is_empty());
}

/// A sweep reopened (a newer baseline) while a round of it is under way is
/// not closed by that round: it starts over.
pub async fn a_sweep_reopened_during_a_round_is_not_closed_by_it(s: Arc<dyn Store>) {
    let s = &*s;
    assert!(s
        .publish_baseline(baseline("PM-200", 1, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    let old = s.sweeps().await.unwrap().remove(0);
    // A newer baseline becomes active while a round of the first sweep is
    // under way; the round then finishes (nothing left at its cursor).
    assert!(s
        .publish_baseline(baseline("PM-200", 2, 100), 1000, &note("baseline"))
        .await
        .unwrap());
    s.advance_sweep(&old, None).await.unwrap();
    let open = s.sweeps().await.unwrap();
    assert_eq!(open.len(), 1, "the reopened sweep must survive");
    assert_ne!(open[0].generation, old.generation);
    assert_eq!(open[0].cursor, "");
    s.advance_sweep(&open[0], None).await.unwrap();
    assert!(s.sweeps().await.unwrap().is_empty());
}

/// A model's baselines list newest first, a page at a time, and only that
/// model's (not one it is a prefix of).
pub async fn baselines_list_newest_first_and_page(s: Arc<dyn Store>) {
    let s = &*s;
    for v in 1..=3 {
        s.publish_baseline(baseline("PM-200", v, 100), 1000, &note("baseline"))
            .await
            .unwrap();
    }
    s.publish_baseline(baseline("PM-2000", 9, 100), 1000, &note("baseline"))
        .await
        .unwrap();
    let versions =
        |p: &Page<BaselineEntry>| -> Vec<u64> { p.items.iter().map(|b| b.version).collect() };
    let all = s.list_baselines("PM-200", None, 10).await.unwrap();
    assert_eq!(versions(&all), vec![3, 2, 1], "newest first");
    assert_eq!(all.next, None);
    let p1 = s.list_baselines("PM-200", None, 2).await.unwrap();
    assert_eq!(versions(&p1), vec![3, 2]);
    let p2 = s
        .list_baselines("PM-200", p1.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(versions(&p2), vec![1]);
    assert_eq!(p2.next, None);
    assert!(s
        .list_baselines("PM-20", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(all.items[0], baseline("PM-200", 3, 100));
}
