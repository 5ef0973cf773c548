//! The audit chain against the store, both ways: no entry without its
//! change, no change (and no acknowledged write) without its entry.
//!
//! Each entry names what it changed. `evidence.accept`, `record.*` and
//! `release.decide` entries carry an id (the first word of their details)
//! that must be in the target unit's history; `baseline.publish` names a
//! version that must be listed, `station.register` a station that must be
//! listed. Quarantine and placement overwrite a unit's state, so for them
//! the *last* such entry of each unit must describe the state the unit
//! shows now (a unit never quarantined shows no quarantine, one never
//! placed no placement). An id chained twice is a write applied twice.
//! Entries that change nothing else (checkpoints, the periodic summaries
//! of refused requests) are checked by the chain verification alone; an
//! action the soak does not know is reported, so that a new kind of write
//! cannot slip past it.

use std::collections::{HashMap, HashSet};

use attestd_client::pb;

use super::verify::{quarantine_of, Entry, Findings, History, Observed};
use super::workload::{Acked, Placement, Write};
use crate::fleet::MODEL;

/// The chain's entries by what they name.
#[derive(Default)]
struct Index<'e> {
    /// Evidence, record and decision ids: (action, target, times chained).
    ids: HashMap<&'e str, (&'e str, &'e str, u32)>,
    /// The last quarantine entry of each unit: on, reason.
    quarantine: HashMap<&'e str, (bool, &'e str)>,
    /// (serial, action, reason) of every quarantine entry.
    quarantine_actions: HashSet<(&'e str, &'e str, &'e str)>,
    /// The last placement entry of each unit (its details).
    placement: HashMap<&'e str, &'e str>,
    /// (serial, details) of every placement entry.
    placement_actions: HashSet<(&'e str, &'e str)>,
    baselines: HashSet<u64>,
    stations: HashSet<&'e str>,
}

impl<'e> Index<'e> {
    fn id(&mut self, id: &'e str, action: &'e str, target: &'e str) {
        let n = self.ids.get(id).map_or(0, |v| v.2);
        self.ids.insert(id, (action, target, n + 1));
    }

    fn chained(&self, id: &str, serial: &str, action: &str) -> bool {
        self.ids
            .get(id)
            .is_some_and(|(a, t, _)| *t == serial && *a == action)
    }
}

fn record_action(kind: i32) -> &'static str {
    if kind == pb::RecordKind::Provisioning as i32 {
        "record.provisioning"
    } else {
        "record.calibration"
    }
}

/// Adds to `f` every disagreement between `entries` (the verified chain),
/// what the store shows (`seen`) and the acknowledged writes (`ledger`).
pub(super) fn check(entries: &[Entry], ledger: &[Acked], seen: &Observed, f: &mut Findings) {
    let mut ix = Index::default();
    let empty = History::default();
    let history = |s: &str| seen.histories.get(s).unwrap_or(&empty);
    // Entry -> change.
    for e in entries {
        let (action, target) = (e.action.as_str(), e.target.as_str());
        let first_word = |sep: &str| e.details.split(sep).next().unwrap_or("");
        let present = match action {
            "evidence.accept" => {
                let id = first_word("; ");
                ix.id(id, action, target);
                history(target).evidence.contains(id)
            }
            "record.provisioning" | "record.calibration" => {
                let id = first_word("; ");
                ix.id(id, action, target);
                history(target)
                    .records
                    .get(id)
                    .is_some_and(|k| record_action(*k) == action)
            }
            "release.decide" => {
                let id = first_word(" ");
                ix.id(id, action, target);
                history(target).decisions.contains(id)
            }
            "device.quarantine" | "device.unquarantine" => {
                ix.quarantine
                    .insert(target, (action == "device.quarantine", &e.reason));
                ix.quarantine_actions.insert((target, action, &e.reason));
                // Whether the unit shows the last one: below.
                seen.devices.contains_key(target)
            }
            "device.assign" => {
                ix.placement.insert(target, &e.details);
                ix.placement_actions.insert((target, &e.details));
                seen.devices.contains_key(target)
            }
            "baseline.publish" => {
                let v = target
                    .strip_prefix(&format!("{MODEL} v"))
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(v) = v {
                    ix.baselines.insert(v);
                }
                v.is_some_and(|v| seen.baselines.contains(&v))
            }
            "station.register" => {
                ix.stations.insert(target);
                seen.stations.contains(target)
            }
            "audit.checkpoint" | "release.unknown_serials" | "auth.failures" => true,
            other => {
                f.audit(format!(
                    "entry {}: action {other:?} is not one the soak can check",
                    e.sequence
                ));
                true
            }
        };
        if !present {
            f.audit(format!(
                "entry {} ({action} {target}: {}) has no change behind it",
                e.sequence, e.details
            ));
        }
    }
    for (id, (action, target, n)) in &ix.ids {
        if *n > 1 {
            f.audit(format!("{action} {id} of {target} is chained {n} times"));
        }
    }
    // Change -> entry.
    for (sn, h) in &seen.histories {
        for id in &h.evidence {
            if !ix.chained(id, sn, "evidence.accept") {
                f.audit(format!(
                    "evidence {id} of {sn} has no evidence.accept entry"
                ));
            }
        }
        for (id, kind) in &h.records {
            let action = record_action(*kind);
            if !ix.chained(id, sn, action) {
                f.audit(format!("record {id} of {sn} has no {action} entry"));
            }
        }
        for id in &h.decisions {
            if !ix.chained(id, sn, "release.decide") {
                f.audit(format!(
                    "release decision {id} of {sn} has no release.decide entry"
                ));
            }
        }
    }
    for v in &seen.baselines {
        if !ix.baselines.contains(v) {
            f.audit(format!(
                "baseline {MODEL} v{v} has no baseline.publish entry"
            ));
        }
    }
    for s in &seen.stations {
        if !ix.stations.contains(s.as_str()) {
            f.audit(format!("station {s} has no station.register entry"));
        }
    }
    // Each unit's quarantine and placement are its last entry's.
    let unplaced = Placement::default().details();
    for (sn, d) in &seen.devices {
        let (on, reason) = ix
            .quarantine
            .get(sn.as_str())
            .copied()
            .unwrap_or((false, ""));
        let want = (on, if on { reason.to_owned() } else { String::new() });
        if quarantine_of(d) != want {
            f.audit(format!(
                "{sn} shows quarantine {:?} but its last quarantine entry says {want:?}",
                quarantine_of(d)
            ));
        }
        let last = ix
            .placement
            .get(sn.as_str())
            .copied()
            .unwrap_or(unplaced.as_str());
        let shows = Placement::of(d).details();
        if shows != last {
            f.audit(format!(
                "{sn} shows placement {shows} but its last device.assign entry says {last}"
            ));
        }
    }
    // Acknowledged write -> its own entry.
    for a in ledger {
        let has = match &a.write {
            Write::Station { id } => ix.stations.contains(id.as_str()),
            Write::Baseline { version } => ix.baselines.contains(version),
            Write::Record {
                serial,
                record_id,
                kind,
            } => ix.chained(record_id, serial, record_action(*kind as i32)),
            Write::Evidence {
                serial,
                evidence_id,
            } => ix.chained(evidence_id, serial, "evidence.accept"),
            Write::Decision {
                serial,
                decision_id,
            } => ix.chained(decision_id, serial, "release.decide"),
            Write::Quarantine { serial, on, reason } => ix.quarantine_actions.contains(&(
                serial.as_str(),
                if *on {
                    "device.quarantine"
                } else {
                    "device.unquarantine"
                },
                reason.as_str(),
            )),
            Write::Assign { serial, assignment } => ix
                .placement_actions
                .contains(&(serial.as_str(), assignment.details().as_str())),
        };
        if !has {
            f.audit(format!(
                "acknowledged {} {:?} (cycle {}) has no audit entry",
                a.write.kind(),
                a.write,
                a.cycle
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, action: &str, target: &str, reason: &str, details: &str) -> Entry {
        Entry {
            sequence: seq,
            action: action.into(),
            target: target.into(),
            reason: reason.into(),
            details: details.into(),
            hash: String::new(),
        }
    }

    fn acked(write: Write) -> Acked {
        Acked { cycle: 1, write }
    }

    fn placed() -> Placement {
        Placement {
            tenant: "st-mary".into(),
            site: "north".into(),
            department: "icu".into(),
            asset_tag: "soak-1-7".into(),
        }
    }

    /// Unit U1 enrolled (record R1), booted (evidence E1), decided (D1),
    /// quarantined and placed, station S1, baseline 1: stored, chained and
    /// acknowledged alike.
    fn consistent() -> (Vec<Entry>, Vec<Acked>, Observed) {
        let p = placed();
        let entries = vec![
            entry(1, "station.register", "S1", "", "key sha256:00"),
            entry(
                2,
                "baseline.publish",
                "PM-200 v1",
                "",
                "1 release signatures",
            ),
            entry(
                3,
                "record.provisioning",
                "U1",
                "",
                "R1; station S1 sequence 1",
            ),
            entry(
                4,
                "evidence.accept",
                "U1",
                "",
                "E1; bootcount 9; nonce-fresh; tier Affirming",
            ),
            entry(
                5,
                "release.decide",
                "U1",
                "",
                "D1 HOLD; reasons [X]; evidence E1; baseline v1",
            ),
            entry(6, "device.quarantine", "U1", "why", ""),
            entry(7, "device.assign", "U1", "", &p.details()),
            entry(8, "audit.checkpoint", "head 7", "", "head 7 ..."),
        ];
        let ledger = vec![
            acked(Write::Station { id: "S1".into() }),
            acked(Write::Baseline { version: 1 }),
            acked(Write::Record {
                serial: "U1".into(),
                record_id: "R1".into(),
                kind: pb::RecordKind::Provisioning,
            }),
            acked(Write::Evidence {
                serial: "U1".into(),
                evidence_id: "E1".into(),
            }),
            acked(Write::Decision {
                serial: "U1".into(),
                decision_id: "D1".into(),
            }),
            acked(Write::Quarantine {
                serial: "U1".into(),
                on: true,
                reason: "why".into(),
            }),
            acked(Write::Assign {
                serial: "U1".into(),
                assignment: p.clone(),
            }),
        ];
        let mut seen = Observed::default();
        seen.stations.insert("S1".into());
        seen.baselines.insert(1);
        seen.devices.insert(
            "U1".into(),
            pb::Device {
                serial: "U1".into(),
                quarantined: true,
                quarantine_reason: "why".into(),
                assignment: Some(pb::Assignment {
                    tenant: p.tenant,
                    site: p.site,
                    department: p.department,
                    asset_tag: p.asset_tag,
                }),
                ..Default::default()
            },
        );
        let h = History {
            evidence: ["E1".to_owned()].into(),
            records: [("R1".to_owned(), pb::RecordKind::Provisioning as i32)].into(),
            decisions: ["D1".to_owned()].into(),
        };
        seen.histories.insert("U1".into(), h);
        (entries, ledger, seen)
    }

    fn run(entries: &[Entry], ledger: &[Acked], seen: &Observed) -> Findings {
        let mut f = Findings::default();
        check(entries, ledger, seen, &mut f);
        f
    }

    #[test]
    fn chain_store_and_acknowledgements_that_agree_pass() {
        let (e, l, s) = consistent();
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 0, "{:#?}", f.notes);
    }

    #[test]
    fn an_entry_whose_evidence_is_not_stored_is_found() {
        let (e, l, mut s) = consistent();
        s.histories.get_mut("U1").unwrap().evidence.clear();
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 1, "{:#?}", f.notes);
        assert!(
            f.notes[0].contains("entry 4 (evidence.accept U1"),
            "{:#?}",
            f.notes
        );
    }

    #[test]
    fn stored_changes_without_their_entry_are_found() {
        let (mut e, l, s) = consistent();
        // The evidence, the decision and the baseline lose their entries:
        // each stored change without one, and each acknowledged write.
        e.retain(|x| !matches!(x.sequence, 2 | 4 | 5));
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 6, "{:#?}", f.notes);
        assert!(f
            .notes
            .iter()
            .any(|n| n.contains("evidence E1 of U1 has no evidence.accept entry")));
        assert!(f
            .notes
            .iter()
            .any(|n| n.contains("baseline PM-200 v1 has no baseline.publish entry")));
    }

    #[test]
    fn a_write_chained_twice_is_found() {
        let (mut e, l, s) = consistent();
        let again = Entry {
            sequence: 9,
            ..e[3].clone()
        };
        e.push(again);
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 1, "{:#?}", f.notes);
        assert!(f.notes[0].contains("chained 2 times"), "{:#?}", f.notes);
    }

    #[test]
    fn a_unit_must_show_its_last_quarantine_and_placement_entries() {
        let (mut e, l, s) = consistent();
        // The chain says the unit was released and unplaced afterwards, but
        // the unit still shows both: two entries without their change.
        e.push(entry(9, "device.unquarantine", "U1", "done", ""));
        e.push(entry(
            10,
            "device.assign",
            "U1",
            "",
            &Placement::default().details(),
        ));
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 2, "{:#?}", f.notes);
        // And a unit that shows a quarantine no entry explains.
        let (mut e, l, s) = consistent();
        e.retain(|x| x.action != "device.quarantine");
        let f = run(&e, &l, &s);
        // The state without an entry, and the acknowledged action without it.
        assert_eq!(f.audit_mismatches, 2, "{:#?}", f.notes);
    }

    #[test]
    fn an_action_the_soak_cannot_check_is_reported() {
        let (mut e, l, s) = consistent();
        e.push(entry(9, "device.revoke", "U1", "stolen", ""));
        let f = run(&e, &l, &s);
        assert_eq!(f.audit_mismatches, 1, "{:#?}", f.notes);
    }
}
