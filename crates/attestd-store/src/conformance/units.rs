//! A unit's verdict and what follows from it (counters, the status and due
//! indices), administrators' flags, release decisions, placement and
//! concessions.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// Whether a status listing has `serial`.
async fn in_status(s: &dyn Store, status: i32, serial: &str) -> bool {
    all_pages(
        s,
        DeviceQuery {
            filter: DeviceFilter {
                statuses: vec![status],
                ..DeviceFilter::default()
            },
            limit: 100,
            budget: 1000,
            ..DeviceQuery::default()
        },
        100,
    )
    .await
    .iter()
    .any(|x| x.serial == serial)
}

/// Every status change, by any write (re-appraisal, evidence, flag, a new
/// unit), moves `counts().by_status` and every summary counter with it.
pub async fn counters_follow_every_status_change(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    assert_counters_match_units(s).await;
    let d = s
        .commit_reappraisal(reappraisal(&d, verdict(1, 500, 9)))
        .await
        .unwrap();
    let c = s.counts().await.unwrap();
    assert_eq!(
        (c.by_status[1], c.by_status[STATUS_UNKNOWN as usize]),
        (1, 0)
    );
    assert_counters_match_units(s).await;
    let d = s
        .commit_evidence(with_verdict(
            evidence("U1", 1, &d, false),
            verdict(2, 0, 10),
        ))
        .await
        .unwrap();
    assert_eq!(s.counts().await.unwrap().by_status[..3], [0, 0, 1]);
    assert_counters_match_units(s).await;
    s.set_flag(flag("U1", &d, quarantine(true), 6, None))
        .await
        .unwrap();
    assert_eq!(s.counts().await.unwrap().by_status, [0, 0, 0, 0, 0, 0, 1]);
    assert_counters_match_units(s).await;
    enroll(s, "st-a", 2, "U2", 2).await;
    assert_eq!(s.counts().await.unwrap().by_status, [0, 0, 0, 0, 0, 1, 1]);
    assert_counters_match_units(s).await;
}

/// A re-appraisal clears the unit's re-appraisal mark whatever it decides,
/// except on a conflict; an unchanged verdict writes nothing else.
pub async fn a_reappraisal_clears_the_mark_unless_it_conflicts(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let stale = enroll(s, "st-a", 1, "U1", 1).await;
    assert_eq!(s.dirty_units(10).await.unwrap(), vec!["U1".to_string()]);
    let d = s
        .commit_reappraisal(reappraisal(&stale, verdict(1, 0, 9)))
        .await
        .unwrap();
    assert_eq!(d.status, 1);
    assert!(
        s.dirty_units(10).await.unwrap().is_empty(),
        "re-appraisal clears the mark"
    );
    assert!(matches!(
        s.list_history("U1", None, 10).await.unwrap().items.last(),
        Some(HistoryItem::Reappraisal(r)) if r.status == 1
    ));
    // A new record marks the unit again.
    s.commit_record(provisioning("st-a", 2, "U1", &key(1), None))
        .await
        .unwrap();
    assert_eq!(s.dirty_units(10).await.unwrap(), vec!["U1".to_string()]);
    assert!(conflict(
        &s.commit_reappraisal(reappraisal(&stale, verdict(2, 0, 9)))
            .await
    ));
    assert_eq!(
        s.dirty_units(10).await.unwrap(),
        vec!["U1".to_string()],
        "a conflict keeps the mark"
    );
    let current = device(s, "U1").await;
    let history = s.list_history("U1", None, 100).await.unwrap().items.len();
    let same = s
        .commit_reappraisal(reappraisal(&current, verdict(1, 0, 99)))
        .await
        .unwrap();
    assert_eq!(same, current, "an unchanged verdict is kept as it was");
    assert!(s.dirty_units(10).await.unwrap().is_empty());
    assert_eq!(
        s.list_history("U1", None, 100).await.unwrap().items.len(),
        history
    );
    assert_eq!(
        rejected(
            s.commit_reappraisal(ReappraisalCommit {
                serial: "U404".into(),
                ..reappraisal(&current, verdict(1, 0, 9))
            })
            .await
        ),
        Reason::DeviceNotFound
    );
}

/// A unit is due exactly from its next check on, and moves with it.
pub async fn the_due_index_follows_the_next_check(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    assert!(s.due_units(i64::MAX, 10).await.unwrap().is_empty());
    let v = verdict(1, 500, 9);
    let d = s
        .commit_reappraisal(reappraisal(&d, v.clone()))
        .await
        .unwrap();
    assert!(s.due_units(499, 10).await.unwrap().is_empty());
    assert_eq!(s.due_units(500, 10).await.unwrap(), vec!["U1".to_string()]);
    let d = s
        .commit_reappraisal(reappraisal(&d, verdict(1, 900, 9)))
        .await
        .unwrap();
    assert!(
        s.due_units(800, 10).await.unwrap().is_empty(),
        "the old due entry is gone"
    );
    assert_eq!(s.due_units(900, 10).await.unwrap(), vec!["U1".to_string()]);
    let d2 = enroll(s, "st-a", 2, "U2", 2).await;
    s.commit_reappraisal(reappraisal(&d2, verdict(1, 100, 9)))
        .await
        .unwrap();
    assert_eq!(s.due_units(100, 10).await.unwrap(), vec!["U2".to_string()]);
    let mut due = s.due_units(1000, 10).await.unwrap();
    due.sort();
    assert_eq!(due, ["U1", "U2"]);
    assert_eq!(s.due_units(1000, 1).await.unwrap().len(), 1, "limit");
    s.commit_reappraisal(reappraisal(&d, verdict(1, 0, 9)))
        .await
        .unwrap();
    assert_eq!(
        s.due_units(i64::MAX, 10).await.unwrap(),
        vec!["U2".to_string()],
        "0 is never"
    );
}

/// A flag and the status under it are one write: unit, status index,
/// counters and change feed move together; every status change is fed; a
/// flag decided on a stale snapshot conflicts and changes nothing.
pub async fn a_flag_and_its_verdict_are_one_write(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "fl").await;
    let d = enroll(s, "fl", 1, "F1", 60).await;
    assert_eq!(d.status, STATUS_UNKNOWN);
    let cursor = s.change_cursor().await.unwrap();
    let held = s.counts().await.unwrap().by_status[6];
    let on = s
        .set_flag(flag("F1", &d, quarantine(true), 6, None))
        .await
        .unwrap();
    assert!(on.quarantined && on.status == 6);
    assert_eq!(on.quarantine_reason, "held");
    assert_eq!(device(s, "F1").await, on);
    assert!(in_status(s, 6, "F1").await && !in_status(s, STATUS_UNKNOWN, "F1").await);
    assert_eq!(s.counts().await.unwrap().by_status[6], held + 1);
    let before = snapshot(s, "F1").await;
    assert!(conflict(
        &s.set_flag(flag("F1", &d, quarantine(false), STATUS_UNKNOWN, None))
            .await
    ));
    assert_eq!(
        snapshot(s, "F1").await,
        before,
        "a conflict changes nothing"
    );
    let off = s
        .set_flag(flag("F1", &on, quarantine(false), STATUS_UNKNOWN, None))
        .await
        .unwrap();
    assert!(!off.quarantined && off.status == STATUS_UNKNOWN);
    assert!(!in_status(s, 6, "F1").await && in_status(s, STATUS_UNKNOWN, "F1").await);
    assert_eq!(s.counts().await.unwrap().by_status[6], held);
    let fed: Vec<(i32, i32)> = changes(s, cursor)
        .await
        .into_iter()
        .filter(|c| c.0 == "F1")
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(fed, vec![(STATUS_UNKNOWN, 6), (6, STATUS_UNKNOWN)]);
    assert_eq!(s.change_cursor().await.unwrap(), cursor + 2);
    assert_eq!(
        rejected(
            s.set_flag(flag("F404", &off, quarantine(true), 6, None))
                .await
        ),
        Reason::DeviceNotFound
    );
}

/// Revocation is written with the unit's verdict under it, and stays.
pub async fn a_revoked_unit_stays_revoked(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let u1 = enroll(s, "st-a", 1, "U1", 1).await;
    let active = s.active_baseline_version(&u1.model).await.unwrap();
    let mut revocation = flag("U1", &u1, revoke(), 3, active);
    revocation.audit = note("device.revoke");
    let revoked = s.set_flag(revocation).await.unwrap();
    assert!(revoked.revoked && revoked.status == 3);
    assert_eq!(revoked.revoked_reason, "stolen");
    assert_eq!(last_audit(s).await.action, "device.revoke");
    assert_eq!(
        rejected(s.set_flag(flag("U404", &u1, revoke(), 3, None)).await),
        Reason::DeviceNotFound
    );
    let again = s
        .set_flag(flag(
            "U1",
            &revoked,
            Flag::Revoke {
                reason: "other".into(),
            },
            3,
            None,
        ))
        .await
        .unwrap();
    assert!(again.revoked);
    assert_eq!(again.revoked_reason, "stolen", "the first reason stays");
    let lifted = s
        .set_flag(flag("U1", &again, quarantine(false), 3, None))
        .await
        .unwrap();
    assert!(lifted.revoked, "lifting a quarantine does not un-revoke");
    assert_eq!(s.counts().await.unwrap().by_status[3], 1);
}

/// A release decision is stored only on the state it was decided on: the
/// unit's revision, its model's baseline, the revoked stations behind it.
pub async fn a_decision_is_stored_only_on_the_state_it_rested_on(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "dc").await;
    let d = enroll(s, "dc", 1, "D1", 50).await;
    let before = snapshot(s, "D1").await;
    for c in [
        decision("rd_a", "D1", d.revision + 1, None, vec![]),
        decision("rd_b", "D1", d.revision, Some(1), vec![]),
        decision("rd_c", "D1", d.revision, None, vec!["dc".into()]),
        decision("rd_d", "NOPE", 0, None, vec![]),
    ] {
        let id = c.entry.decision_id.clone();
        assert!(conflict(&s.record_decision(c).await), "{id} must conflict");
    }
    assert_eq!(snapshot(s, "D1").await, before, "a conflict stores nothing");
    let n = s.list_history("D1", None, 100).await.unwrap().items.len();
    s.record_decision(decision("rd_e", "D1", d.revision, None, vec![]))
        .await
        .unwrap();
    let history = s.list_history("D1", None, 100).await.unwrap().items;
    assert_eq!(history.len(), n + 1);
    assert!(matches!(
        history.last(),
        Some(HistoryItem::Decision(x)) if x.decision_id == "rd_e" && x.decision == 1
    ));
    assert_eq!(last_audit(s).await.action, "release.decide");
    assert_eq!(
        device(s, "D1").await.revision,
        d.revision,
        "a decision does not change the unit"
    );
}

/// After a flag or a station revocation, the old decision no longer holds;
/// decided again on the new state, it is stored.
pub async fn a_decision_after_a_flag_or_a_station_revocation_is_decided_again(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "dc").await;
    let d = enroll(s, "dc", 1, "D1", 50).await;
    s.set_flag(flag("D1", &d, quarantine(true), 6, None))
        .await
        .unwrap();
    assert!(conflict(
        &s.record_decision(decision("rd_f", "D1", d.revision, None, vec![]))
            .await
    ));
    let d = device(s, "D1").await;
    s.revoke_station("dc", "gone", &note("station.revoke"))
        .await
        .unwrap();
    assert!(conflict(
        &s.record_decision(decision("rd_g", "D1", d.revision, None, vec![]))
            .await
    ));
    s.record_decision(decision("rd_h", "D1", d.revision, None, vec!["dc".into()]))
        .await
        .unwrap();
    let decided: Vec<String> = s
        .list_history("D1", None, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|h| match h {
            HistoryItem::Decision(x) => Some(x.decision_id),
            _ => None,
        })
        .collect();
    assert_eq!(decided, ["rd_h"]);
}

/// Placing a unit moves it in the tenant index and the tenant's counters.
pub async fn an_assignment_moves_the_unit_between_tenants(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    enroll(s, "st-a", 2, "U2", 2).await;
    let tenant = |t: &str| DeviceQuery {
        filter: DeviceFilter {
            tenant: t.into(),
            ..DeviceFilter::default()
        },
        limit: 10,
        budget: 10,
        ..DeviceQuery::default()
    };
    let serials =
        |v: Vec<DeviceEntry>| -> Vec<String> { v.into_iter().map(|d| d.serial).collect() };
    let a = Assignment {
        tenant: "h1".into(),
        site: "s1".into(),
        department: "icu".into(),
        asset_tag: "A-1".into(),
    };
    let placed = s
        .assign_device("U1", &a, &note("device.assign"))
        .await
        .unwrap();
    assert_eq!(
        (
            placed.tenant.as_str(),
            placed.site.as_str(),
            placed.department.as_str(),
            placed.asset_tag.as_str()
        ),
        ("h1", "s1", "icu", "A-1")
    );
    assert!(placed.revision > d.revision);
    assert_eq!(device(s, "U1").await, placed);
    assert_eq!(last_audit(s).await.action, "device.assign");
    assert_eq!(serials(all_pages(s, tenant("h1"), 10).await), ["U1"]);
    assert_eq!(
        s.summary(Group::Site, Some("h1")).await.unwrap(),
        vec![("s1".to_string(), STATUS_UNKNOWN, 1)]
    );
    let b = Assignment {
        tenant: "h2".into(),
        site: "s2".into(),
        ..Assignment::default()
    };
    s.assign_device("U1", &b, &note("device.assign"))
        .await
        .unwrap();
    assert!(all_pages(s, tenant("h1"), 10).await.is_empty());
    assert_eq!(serials(all_pages(s, tenant("h2"), 10).await), ["U1"]);
    assert!(s.summary(Group::Site, Some("h1")).await.unwrap().is_empty());
    assert_eq!(
        s.summary(Group::Site, Some("h2")).await.unwrap(),
        vec![("s2".to_string(), STATUS_UNKNOWN, 1)]
    );
    assert_eq!(
        s.summary(Group::All, None).await.unwrap(),
        vec![(String::new(), STATUS_UNKNOWN, 2)]
    );
    assert_counters_match_units(s).await;
    assert_eq!(
        rejected(s.assign_device("U404", &a, &note("device.assign")).await),
        Reason::DeviceNotFound
    );
}

/// A concession is kept with the unit (a later one replaces it) and, like
/// any change of the unit, makes decisions on the old state stale.
pub async fn a_concession_is_kept_with_the_unit(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    let c1 = ConcessionEntry {
        concession_id: "cn_1".into(),
        serial: "U1".into(),
        waived_codes: vec!["CALIBRATION_DUE".into()],
        justification: "field repair".into(),
        ..ConcessionEntry::default()
    };
    let granted = s
        .grant_concession(c1.clone(), &note("concession.grant"))
        .await
        .unwrap();
    assert_eq!(granted.concession, Some(c1));
    assert_eq!(last_audit(s).await.action, "concession.grant");
    assert!(conflict(
        &s.record_decision(decision("rd_1", "U1", d.revision, None, vec![]))
            .await
    ));
    let c2 = ConcessionEntry {
        concession_id: "cn_2".into(),
        serial: "U1".into(),
        ..ConcessionEntry::default()
    };
    s.grant_concession(c2.clone(), &note("concession.grant"))
        .await
        .unwrap();
    assert_eq!(device(s, "U1").await.concession, Some(c2));
    assert_eq!(
        rejected(
            s.grant_concession(
                ConcessionEntry {
                    serial: "U404".into(),
                    ..ConcessionEntry::default()
                },
                &note("concession.grant")
            )
            .await
        ),
        Reason::DeviceNotFound
    );
}
