//! A second provisioning record may not move a unit to another model or
//! hardware version silently, nor come from a station of another model;
//! the explicit path (supersedes, a re-key station) is applied and audited.

use std::sync::Arc;

use attestd_core::Reason;

use super::data::*;
use crate::*;

/// Stations of the PM-200 line and the IP-100 line (both may re-key), one
/// allowed for both lines (may not), and R1 enrolled as a PM-200 by the
/// first; the unit.
async fn lines(s: &dyn Store) -> DeviceEntry {
    let mut pm = station("pm-line");
    pm.allowed_models = vec!["PM-200".into()];
    pm.allow_rekey = true;
    let mut ip = station("ip-line");
    ip.allowed_models = vec!["IP-100".into()];
    ip.allow_rekey = true;
    let mut both = station("both-lines");
    both.allowed_models = vec!["PM-200".into(), "IP-100".into()];
    for st in [pm, ip, both] {
        s.register_station(st, &note("s")).await.unwrap();
    }
    s.commit_record(provisioning("pm-line", 1, "R1", &key(40), None))
        .await
        .unwrap();
    device(s, "R1").await
}

/// A station of another model cannot take a unit over, not even with the
/// unit's own public key and `supersedes`, nor send it a calibration.
pub async fn a_station_of_another_model_cannot_reprovision_a_unit(s: Arc<dyn Store>) {
    let s = &*s;
    let first = lines(s).await;
    let before = snapshot(s, "R1").await;
    let mut attack = provisioning(
        "ip-line",
        1,
        "R1",
        &key(40),
        Some(first.provisioning_record_id.clone()),
    );
    attack.enrollment.as_mut().unwrap().model = "IP-100".into();
    assert_eq!(
        rejected(s.commit_record(attack).await),
        Reason::StationNotAuthorized
    );
    let mut cal = provisioning("ip-line", 2, "R1", &key(40), None);
    cal.enrollment = None;
    cal.entry.kind = 2;
    assert_eq!(
        rejected(s.commit_record(cal).await),
        Reason::StationNotAuthorized
    );
    assert_eq!(snapshot(s, "R1").await, before, "a refusal leaves nothing");
}

/// Changing an enrolled unit's model or hardware version needs
/// `supersedes` from a station allowed to re-key; repeating its identity
/// does not.
pub async fn changing_model_or_hardware_needs_supersedes_from_a_rekey_station(s: Arc<dyn Store>) {
    let s = &*s;
    let first = lines(s).await;
    let before = snapshot(s, "R1").await;
    // Allowed for both models, but not to re-key.
    let mut change = provisioning(
        "both-lines",
        1,
        "R1",
        &key(40),
        Some(first.provisioning_record_id.clone()),
    );
    change.enrollment.as_mut().unwrap().model = "IP-100".into();
    assert_eq!(
        rejected(s.commit_record(change).await),
        Reason::SerialEnrolled
    );
    // Allowed to re-key, but without naming the record it replaces.
    let mut hw = provisioning("pm-line", 2, "R1", &key(40), None);
    hw.enrollment.as_mut().unwrap().hw_version = "C".into();
    assert_eq!(rejected(s.commit_record(hw).await), Reason::SerialEnrolled);
    assert_eq!(snapshot(s, "R1").await, before, "a refusal leaves nothing");
    // The same identity again (a depot repair) is a plain re-provisioning.
    let same = provisioning("both-lines", 2, "R1", &key(40), None);
    s.commit_record(same.clone()).await.unwrap();
    let after = device(s, "R1").await;
    assert_eq!(
        (after.model.as_str(), after.hw_version.as_str()),
        ("PM-200", "B")
    );
    assert_eq!(after.provisioning_record_id, same.entry.record_id);
    assert_eq!(after.provisioning_station_id, "both-lines");
}

/// The explicit path is applied, and its audit entry says what changed.
pub async fn an_explicit_reprovisioning_is_applied_and_audited(s: Arc<dyn Store>) {
    let s = &*s;
    let first = lines(s).await;
    let mut ok = provisioning(
        "pm-line",
        3,
        "R1",
        &key(40),
        Some(first.provisioning_record_id.clone()),
    );
    ok.enrollment.as_mut().unwrap().hw_version = "C".into();
    s.commit_record(ok.clone()).await.unwrap();
    let after = device(s, "R1").await;
    assert_eq!(
        (after.model.as_str(), after.hw_version.as_str()),
        ("PM-200", "C")
    );
    assert_eq!(after.provisioning_record_id, ok.entry.record_id);
    let last = last_audit(s).await;
    assert_eq!(last.action, "record");
    assert!(
        last.details.ends_with("changes hw_version B -> C"),
        "{}",
        last.details
    );
    assert_eq!(totals(s).await, (3, 1, 2, 0));
}

/// A re-key frees the old key for another unit, takes the new one, and
/// moves the unit's link from the old station to the new one.
pub async fn a_rekey_moves_the_key_index_and_the_station_link(s: Arc<dyn Store>) {
    let s = &*s;
    let first = lines(s).await;
    line(s, "rekey-line").await;
    s.commit_record(provisioning(
        "rekey-line",
        1,
        "R1",
        &key(41),
        Some(first.provisioning_record_id.clone()),
    ))
    .await
    .unwrap();
    let d = device(s, "R1").await;
    assert_eq!(d.spki_der, key(41).spki_der());
    assert_eq!(d.provisioning_station_id, "rekey-line");
    assert!(
        last_audit(s).await.details.contains("re-keys the unit"),
        "the audit entry says so"
    );
    assert_eq!(
        rejected(
            s.commit_record(provisioning("pm-line", 2, "R2", &key(41), None))
                .await
        ),
        Reason::KeyInUse
    );
    enroll(s, "pm-line", 3, "R2", 40).await;
    s.revoke_station("pm-line", "leak", &note("station.revoke"))
        .await
        .unwrap();
    let sweep = s
        .sweeps()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.kind == SWEEP_STATION)
        .expect("a station sweep");
    assert_eq!(
        s.sweep_units(&sweep, 10).await.unwrap(),
        vec!["R2".to_string()],
        "R1 no longer relies on pm-line"
    );
}
