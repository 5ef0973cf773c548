//! Stations and their records: registration, revocation, per-station
//! sequence, idempotence, one key per unit.

use std::sync::Arc;

use attestd_core::audit::GENESIS;
use attestd_core::Reason;

use super::data::*;
use crate::*;

/// A station id is registered once; a second registration is refused and
/// leaves nothing.
pub async fn a_station_is_registered_once(s: Arc<dyn Store>) {
    let s = &*s;
    let st = s
        .register_station(station("st-a"), &note("station.register"))
        .await
        .unwrap();
    assert_eq!(st, station("st-a"));
    let mut other = station("st-a");
    other.allowed_models = vec!["IP-100".into()];
    assert_eq!(
        rejected(s.register_station(other, &note("station.register")).await),
        Reason::StationExists
    );
    assert_eq!(s.get_station("st-a").await.unwrap(), Some(station("st-a")));
    assert_eq!(s.get_station("st-b").await.unwrap(), None);
    assert_eq!(s.counts().await.unwrap().stations, 1);
    assert_eq!(actions(s).await, ["station.register"]);
}

/// A record from a station nobody registered is refused and leaves nothing.
pub async fn a_record_needs_a_registered_station(s: Arc<dyn Store>) {
    let s = &*s;
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-zz", 2, "U9", &key(9), None))
                .await
        ),
        Reason::UnknownStation
    );
    assert_eq!(totals(s).await, (0, 0, 0, 0));
    assert!(s.get_device("U9").await.unwrap().is_none());
    assert_eq!(s.audit_head().await.unwrap(), (0, GENESIS));
    assert_eq!(s.change_cursor().await.unwrap(), 0);
}

/// The identical record sent again is answered as stored (idempotence),
/// even after the station's sequence moved on, and writes nothing.
pub async fn a_duplicate_record_is_answered_as_stored(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let c = provisioning("st-a", 1, "U1", &key(1), None);
    let first = s.commit_record(c.clone()).await.unwrap();
    assert_eq!(first, RecordOutcome::Stored(c.entry.clone()));
    let before = snapshot(s, "U1").await;
    assert_eq!(
        s.commit_record(c.clone()).await.unwrap(),
        RecordOutcome::Duplicate(c.entry.clone())
    );
    assert_eq!(
        snapshot(s, "U1").await,
        before,
        "a duplicate writes nothing"
    );
    s.commit_record(provisioning("st-a", 2, "U2", &key(2), None))
        .await
        .unwrap();
    assert!(matches!(
        s.commit_record(c.clone()).await.unwrap(),
        RecordOutcome::Duplicate(_)
    ));
    assert_eq!(totals(s).await, (1, 2, 2, 0));
}

/// Each station's record sequence strictly increases (gaps allowed); each
/// station has its own.
pub async fn station_sequence_must_increase(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    line(s, "st-b").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-a", 1, "X1", &key(2), None))
                .await
        ),
        Reason::SequenceRegressed
    );
    enroll(s, "st-a", 5, "U2", 3).await;
    for seq in [3, 5] {
        assert_eq!(
            rejected(
                s.commit_record(provisioning("st-a", seq, "X2", &key(4), None))
                    .await
            ),
            Reason::SequenceRegressed,
            "sequence {seq} after 5"
        );
    }
    enroll(s, "st-b", 1, "U3", 5).await;
    assert!(s.get_device("X1").await.unwrap().is_none());
    assert!(s.get_device("X2").await.unwrap().is_none());
    let a = s.get_station("st-a").await.unwrap().unwrap();
    assert!(a.has_sequence);
    assert_eq!(a.last_sequence, 5);
    assert_eq!(
        s.get_station("st-b").await.unwrap().unwrap().last_sequence,
        1
    );
    assert_eq!(totals(s).await, (2, 3, 3, 0));
}

/// One serial per key and one key per serial; a refusal consumes nothing
/// (not even the station's sequence number).
pub async fn one_key_per_unit(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-a", 2, "U2", &key(1), None))
                .await
        ),
        Reason::KeyInUse
    );
    assert_eq!(
        rejected(
            s.commit_record(provisioning("st-a", 2, "U1", &key(3), None))
                .await
        ),
        Reason::SerialEnrolled
    );
    assert_eq!(totals(s).await, (1, 1, 1, 0));
    assert!(s.get_device("U2").await.unwrap().is_none());
    assert_eq!(device(s, "U1").await.spki_der, key(1).spki_der());
    enroll(s, "st-a", 2, "U2", 2).await;
    assert_eq!(totals(s).await, (1, 2, 2, 0));
}

/// A newly enrolled unit is UNKNOWN, counted and listed as such, fed as a
/// status change, and queued for appraisal.
pub async fn an_enrolled_unit_is_unknown_and_queued_for_appraisal(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    let c = provisioning("st-a", 1, "U1", &key(1), None);
    s.commit_record(c.clone()).await.unwrap();
    let dev = device(s, "U1").await;
    assert_eq!(dev.provisioning_record_id, c.entry.record_id);
    assert_eq!(dev.provisioning_station_id, "st-a");
    assert_eq!(
        (dev.model.as_str(), dev.hw_version.as_str()),
        ("PM-200", "B")
    );
    assert_eq!(dev.spki_der, key(1).spki_der());
    assert_eq!(dev.status, STATUS_UNKNOWN);
    assert_eq!(dev.enrolled_at, c.entry.received_at);
    assert!(!dev.has_bootcount && dev.evidence_count == 0);
    assert_eq!(
        s.counts().await.unwrap().by_status[STATUS_UNKNOWN as usize],
        1,
        "a new unit counts as UNKNOWN"
    );
    assert_eq!(s.dirty_units(10).await.unwrap(), vec!["U1".to_string()]);
    let listed = all_pages(
        s,
        DeviceQuery {
            filter: DeviceFilter {
                statuses: vec![STATUS_UNKNOWN],
                ..DeviceFilter::default()
            },
            limit: 10,
            budget: 10,
            ..DeviceQuery::default()
        },
        10,
    )
    .await;
    assert_eq!(listed, vec![dev]);
    assert_eq!(
        changes(s, 0).await,
        vec![("U1".to_string(), 0, STATUS_UNKNOWN)]
    );
}

/// A calibration record is stored with what it says, marks the unit for
/// re-appraisal, and needs an enrolled unit.
pub async fn a_calibration_record_is_kept_with_the_unit(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    line(s, "cal").await;
    let d = enroll(s, "st-a", 1, "U1", 1).await;
    s.commit_reappraisal(reappraisal(&d, verdict(1, 0, 5)))
        .await
        .unwrap();
    assert!(s.dirty_units(10).await.unwrap().is_empty());
    let c = calibration("cal", 1, "U1");
    assert_eq!(
        s.commit_record(c.clone()).await.unwrap(),
        RecordOutcome::Stored(c.entry.clone())
    );
    let d = device(s, "U1").await;
    assert_eq!(d.calibration_record_id, c.entry.record_id);
    assert_eq!(d.calibration_station_id, "cal");
    assert_eq!(d.calibration_facts, c.calibration);
    assert_eq!(
        d.provisioning_station_id, "st-a",
        "the provisioning link stays"
    );
    assert_eq!(s.dirty_units(10).await.unwrap(), vec!["U1".to_string()]);
    assert_eq!(
        rejected(s.commit_record(calibration("cal", 2, "U404")).await),
        Reason::DeviceNotFound
    );
    assert!(s.get_device("U404").await.unwrap().is_none());
    assert_eq!(totals(s).await, (2, 1, 2, 0));
}

/// A revoked station signs nothing more; revoking is idempotent (the first
/// reason stays, no second audit entry) and needs a known station.
pub async fn a_revoked_station_signs_no_more_records(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    let r = s
        .revoke_station("st-a", "leak", &note("station.revoke"))
        .await
        .unwrap();
    assert!(r.revoked && r.last_sequence == 1);
    assert_eq!(r.revoked_reason, "leak");
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
    let head = s.audit_head().await.unwrap();
    let again = s
        .revoke_station("st-a", "other", &note("station.revoke"))
        .await
        .unwrap();
    assert!(again.revoked);
    assert_eq!(again.revoked_reason, "leak");
    assert_eq!(s.audit_head().await.unwrap(), head);
    assert!(s.get_station("st-a").await.unwrap().unwrap().revoked);
    assert!(s.get_device("U3").await.unwrap().is_none());
}

/// Revoking a station opens a sweep over exactly the units that rely on
/// its records, provisioning or calibration.
pub async fn revoking_a_station_sweeps_the_units_behind_it(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    line(s, "st-b").await;
    line(s, "cal").await;
    enroll(s, "st-a", 1, "U1", 1).await;
    enroll(s, "st-b", 1, "U2", 2).await;
    enroll(s, "st-a", 2, "U3", 3).await;
    s.commit_record(calibration("cal", 1, "U2")).await.unwrap();
    assert!(s.sweeps().await.unwrap().is_empty());
    s.revoke_station("st-a", "leak", &note("station.revoke"))
        .await
        .unwrap();
    let sweeps = s.sweeps().await.unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(
        (sweeps[0].kind, sweeps[0].key.as_str()),
        (SWEEP_STATION, "st-a")
    );
    assert_eq!(
        s.sweep_units(&sweeps[0], 10).await.unwrap(),
        vec!["U1".to_string(), "U3".to_string()]
    );
    s.advance_sweep(&sweeps[0], None).await.unwrap();
    s.revoke_station("cal", "leak", &note("station.revoke"))
        .await
        .unwrap();
    let sweeps = s.sweeps().await.unwrap();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].key, "cal");
    assert_eq!(
        s.sweep_units(&sweeps[0], 10).await.unwrap(),
        vec!["U2".to_string()]
    );
}

/// Stations list in id order, a page at a time.
pub async fn stations_list_in_id_order_and_page(s: Arc<dyn Store>) {
    let s = &*s;
    for id in ["st-c", "st-a", "st-b"] {
        line(s, id).await;
    }
    let ids = |p: &Page<StationEntry>| -> Vec<String> {
        p.items.iter().map(|x| x.station_id.clone()).collect()
    };
    let p1 = s.list_stations(None, 2).await.unwrap();
    assert_eq!(ids(&p1), ["st-a", "st-b"]);
    assert!(p1.next.is_some());
    let p2 = s.list_stations(p1.next.as_deref(), 2).await.unwrap();
    assert_eq!(ids(&p2), ["st-c"]);
    assert_eq!(p2.next, None);
    let after_a = s.list_stations(Some("st-a"), 10).await.unwrap();
    assert_eq!(ids(&after_a), ["st-b", "st-c"]);
    assert_eq!(after_a.next, None);
}

/// Records read back whole, by id and per unit in acceptance order.
pub async fn records_read_back_in_acceptance_order(s: Arc<dyn Store>) {
    let s = &*s;
    line(s, "st-a").await;
    line(s, "cal").await;
    let p = provisioning("st-a", 1, "U1", &key(1), None);
    s.commit_record(p.clone()).await.unwrap();
    let c1 = calibration("cal", 1, "U1");
    let c2 = calibration("cal", 2, "U1");
    s.commit_record(c1.clone()).await.unwrap();
    s.commit_record(c2.clone()).await.unwrap();
    for c in [&p, &c1, &c2] {
        assert_eq!(
            s.get_record(&c.entry.record_id).await.unwrap().as_ref(),
            Some(&c.entry)
        );
    }
    assert_eq!(s.get_record("rec_nope").await.unwrap(), None);
    let all = s.list_records("U1", None, 10).await.unwrap();
    assert_eq!(all.items, vec![p.entry, c1.entry, c2.entry.clone()]);
    assert_eq!(all.next, None);
    let first = s.list_records("U1", None, 2).await.unwrap();
    assert_eq!(first.items, all.items[..2]);
    let rest = s
        .list_records("U1", first.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.items, vec![c2.entry]);
    assert_eq!(rest.next, None);
    assert!(s
        .list_records("U", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}
