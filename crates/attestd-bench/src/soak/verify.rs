//! The checks after each restart, over everything since the soak began.
//!
//! 1. **Acknowledged writes are present.** Every write in the ledger is
//!    looked for where a user would look: a unit's evidence, records and
//!    release decisions in its history (ListDeviceHistory), the stations
//!    (ListStations), the baselines (ListBaselines), and a unit's
//!    quarantine and placement in GetDevice, which must be the last
//!    acknowledged action's (or, when the kill caught an action on the unit
//!    in flight, that one's). The cycle's own evidence and records are also
//!    fetched one by one (GetEvidence, GetRecord): the writes acknowledged
//!    just before a kill are the ones a lost flush would take.
//! 2. **The audit chain verifies**: the whole chain is exported
//!    (ExportAudit) and checked as `attestctl audit verify --key` checks it
//!    (every hash and link, no entry missing at either end, every
//!    checkpoint and the signed head under the audit key), and the entry
//!    the previous check ended at is still there with the same hash (a
//!    crash never rewrites or shortens what was already chained).
//! 3. **No entry without its change, no change without its entry**
//!    ([`super::agree`]).
//! 4. **Counters equal a recount** ([`super::counters`]), read while the
//!    fleet is still.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use attestd_client::core::audit::export::verify_export;
use attestd_client::core::keys::PublicKey;
use attestd_client::{pb, Client};
use serde::{Deserialize, Serialize};

use super::workload::{lock, Acked, Placement, UnitAdmin, Write};
use super::{agree, counters};
use crate::fleet::{serial, MODEL};

/// Where the previous check left the chain: its last entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChainMark {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// What one check found.
#[derive(Debug, Default, Serialize)]
pub(super) struct Findings {
    /// Acknowledged writes found missing for the first time.
    pub lost: u64,
    /// 1 when the chain failed to export or verify, or was rewritten.
    pub chain_failures: u64,
    /// Summary cells (a status count of the whole fleet, of a group or of a
    /// tenant) that differ from the recount.
    pub counter_mismatches: u64,
    /// Entries without their change, changes without their entry.
    pub audit_mismatches: u64,
    pub audit_entries: u64,
    pub units: u64,
    /// The first findings, in words.
    pub notes: Vec<String>,
}

impl Findings {
    pub(super) fn note(&mut self, s: String) {
        if self.notes.len() < 20 {
            self.notes.push(s);
        }
    }

    fn lost(&mut self, seen: &mut BTreeSet<String>, what: String) {
        if seen.insert(what.clone()) {
            self.lost += 1;
            self.note(format!("LOST: {what}"));
        }
    }

    pub(super) fn audit(&mut self, what: String) {
        self.audit_mismatches += 1;
        self.note(format!("AUDIT: {what}"));
    }
}

/// One entry of the exported chain (the export file's entry line).
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct Entry {
    pub sequence: u64,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub details: String,
    pub hash: String,
}

/// A unit's history, by id.
#[derive(Default)]
pub(super) struct History {
    pub evidence: BTreeSet<String>,
    /// Record id to kind.
    pub records: BTreeMap<String, i32>,
    pub decisions: BTreeSet<String>,
}

/// Everything a check reads, at rest (no load runs while it reads).
#[derive(Default)]
pub(super) struct Observed {
    pub devices: BTreeMap<String, pb::Device>,
    /// Of every unit listed or named by a write (none for a unit attestd
    /// does not know).
    pub histories: BTreeMap<String, History>,
    pub stations: BTreeSet<String>,
    pub baselines: BTreeSet<u64>,
}

/// Runs every check; `lost_before` keeps the writes already reported lost
/// (each is counted once), `mark` the chain's end at the previous check.
pub(super) async fn check(
    world: &super::workload::World,
    admin: &Client,
    audit_key: &PublicKey,
    cycle: u32,
    mark: &mut Option<ChainMark>,
    lost_before: &mut BTreeSet<String>,
) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    let entries = chain(admin, audit_key, mark, &mut f).await?;
    f.audit_entries = entries.as_ref().map_or(0, |e| e.len() as u64);
    let devices = match counters::read_still(admin).await? {
        Some(read) => {
            for m in counters::compare(&read) {
                f.counter_mismatches += 1;
                f.note(format!("COUNTERS: {m}"));
            }
            read.devices
        }
        None => {
            f.counter_mismatches += 1;
            f.note("COUNTERS: the fleet kept changing for a minute; not compared".into());
            BTreeMap::new()
        }
    };
    f.units = devices.len() as u64;
    let ledger = lock(&world.ledger).clone();
    // Histories of every unit listed and of every unit a write names.
    let mut serials: BTreeSet<String> = devices.keys().cloned().collect();
    for a in &ledger {
        if let Some(s) = write_serial(&a.write) {
            serials.insert(s.to_owned());
        }
    }
    let seen = Observed {
        histories: histories(admin, serials.into_iter().collect()).await?,
        devices,
        stations: stations(admin).await?,
        baselines: baselines(admin).await?,
    };
    present(&ledger, &mut lock(&world.admin), &seen, lost_before, &mut f);
    fetched(admin, &ledger, cycle, lost_before, &mut f).await;
    if let Some(entries) = entries {
        agree::check(&entries, &ledger, &seen, &mut f);
    }
    Ok(f)
}

fn write_serial(w: &Write) -> Option<&str> {
    match w {
        Write::Record { serial, .. }
        | Write::Evidence { serial, .. }
        | Write::Decision { serial, .. }
        | Write::Quarantine { serial, .. }
        | Write::Assign { serial, .. } => Some(serial),
        Write::Station { .. } | Write::Baseline { .. } => None,
    }
}

/// Exports and verifies the whole chain; its entries when it verified.
async fn chain(
    admin: &Client,
    key: &PublicKey,
    mark: &mut Option<ChainMark>,
    f: &mut Findings,
) -> anyhow::Result<Option<Vec<Entry>>> {
    let fail = |f: &mut Findings, why: String| {
        f.chain_failures = 1;
        f.note(format!("CHAIN: {why}"));
    };
    let export = match attestd_client::audit::export_file(admin, 0, 0, |_| {}).await {
        Ok(e) => e,
        Err(s) => {
            fail(f, format!("export failed: {:?} {}", s.code(), s.message()));
            return Ok(None);
        }
    };
    let verified = match verify_export(&export.text, Some(key)) {
        Ok(v) => v,
        Err(e) => {
            fail(f, format!("does not verify: {e}"));
            return Ok(None);
        }
    };
    if !verified.signature_checked || verified.range.first != 1 {
        fail(f, "the export is not the whole chain, signed".into());
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(export.entries as usize);
    for line in export.text.lines() {
        if line.starts_with("{\"sequence\"") {
            entries.push(serde_json::from_str::<Entry>(line)?);
        }
    }
    anyhow::ensure!(
        entries.len() as u64 == export.entries,
        "parsed {} entries of the {} exported",
        entries.len(),
        export.entries
    );
    if let Some(m) = *mark {
        if !still_there(&entries, m) {
            fail(
                f,
                format!(
                    "entry {} (the end of the previous check) is missing or changed: the chain \
                     was shortened or rewritten ({} entries now)",
                    m.seq,
                    entries.len()
                ),
            );
        }
    }
    *mark = Some(ChainMark {
        seq: verified.range.last,
        hash: verified.head,
    });
    Ok(Some(entries))
}

/// Whether the entry a previous check ended at is still entry `m.seq`
/// with the same hash (the whole chain verifies from the genesis, so the
/// entries before it are then unchanged too).
fn still_there(entries: &[Entry], m: ChainMark) -> bool {
    m.seq
        .checked_sub(1)
        .and_then(|i| entries.get(i as usize))
        .is_some_and(|e| e.sequence == m.seq && e.hash == attestd_client::core::ids::hex(&m.hash))
}

/// The histories of `serials`, eight units at a time; a unit attestd does
/// not know has none.
async fn histories(
    admin: &Client,
    serials: Vec<String>,
) -> anyhow::Result<BTreeMap<String, History>> {
    const AT_ONCE: usize = 8;
    let serials = Arc::new(serials);
    let mut tasks = Vec::new();
    for k in 0..AT_ONCE {
        let (c, serials) = (admin.clone(), serials.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for s in serials.iter().skip(k).step_by(AT_ONCE) {
                out.push((s.clone(), history(&c, s).await?));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        for (s, h) in t.await?? {
            if let Some(h) = h {
                all.insert(s, h);
            }
        }
    }
    Ok(all)
}

async fn history(c: &Client, serial: &str) -> anyhow::Result<Option<History>> {
    use pb::history_entry::Entry as E;
    let mut h = History::default();
    let mut token = String::new();
    loop {
        let page = match c
            .fleet()
            .list_device_history(pb::ListDeviceHistoryRequest {
                serial: serial.to_owned(),
                page_size: 1000,
                page_token: token,
            })
            .await
        {
            Ok(p) => p.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(s.into()),
        };
        for e in page.entries {
            match e.entry {
                Some(E::Evidence(ev)) => {
                    h.evidence.insert(ev.evidence_id);
                }
                Some(E::Record(r)) => {
                    h.records.insert(r.record_id, r.kind);
                }
                Some(E::ReleaseDecision(d)) => {
                    h.decisions.insert(d.decision_id);
                }
                Some(E::Reappraisal(_)) | None => {}
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(Some(h));
        }
        token = page.next_page_token;
    }
}

async fn stations(admin: &Client) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = admin
            .admin()
            .list_stations(pb::ListStationsRequest {
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        out.extend(page.stations.into_iter().map(|s| s.station_id));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

async fn baselines(admin: &Client) -> anyhow::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = admin
            .baselines()
            .list_baselines(pb::ListBaselinesRequest {
                model: MODEL.into(),
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        out.extend(page.baselines.into_iter().map(|b| b.version));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// A unit's quarantine as the soak compares it: on, and the reason when on.
pub(super) fn quarantine_of(d: &pb::Device) -> (bool, String) {
    if d.quarantined {
        (true, d.quarantine_reason.clone())
    } else {
        (false, String::new())
    }
}

/// Check 1: every acknowledged write is present in what attestd shows
/// (`seen`), and each unit's quarantine and placement is the one
/// `expected`; a write found missing is counted once (`lost_before`).
/// Expectations are then settled to what the units show, which is durable
/// from now on (the action the kill caught in flight is decided).
fn present(
    ledger: &[Acked],
    expected: &mut BTreeMap<u64, UnitAdmin>,
    seen: &Observed,
    lost_before: &mut BTreeSet<String>,
    f: &mut Findings,
) {
    let empty = History::default();
    let history = |s: &str| seen.histories.get(s).unwrap_or(&empty);
    for a in ledger {
        let missing = match &a.write {
            Write::Station { id } => (!seen.stations.contains(id)).then(|| format!("station {id}")),
            Write::Baseline { version } => {
                (!seen.baselines.contains(version)).then(|| format!("baseline {MODEL} v{version}"))
            }
            Write::Record {
                serial,
                record_id,
                kind,
            } => (history(serial).records.get(record_id) != Some(&(*kind as i32)))
                .then(|| format!("{kind:?} record {record_id} of {serial}")),
            Write::Evidence {
                serial,
                evidence_id,
            } => (!history(serial).evidence.contains(evidence_id))
                .then(|| format!("evidence {evidence_id} of {serial}")),
            Write::Decision {
                serial,
                decision_id,
            } => (!history(serial).decisions.contains(decision_id))
                .then(|| format!("release decision {decision_id} of {serial}")),
            // Overwritten by later actions: checked through the state below.
            Write::Quarantine { .. } | Write::Assign { .. } => None,
        };
        if let Some(what) = missing {
            f.lost(
                lost_before,
                format!("{what} (acknowledged in cycle {})", a.cycle),
            );
        }
    }
    for (i, ua) in expected.iter_mut() {
        let sn = serial(*i);
        let Some(d) = seen.devices.get(&sn) else {
            f.lost(lost_before, format!("unit {sn}, which the admin acted on"));
            continue;
        };
        let q = quarantine_of(d);
        if !ua.quarantine.allows(&q) {
            f.lost(
                lost_before,
                format!(
                    "quarantine of {sn}: acknowledged {:?}, the unit shows {q:?}",
                    ua.quarantine.known
                ),
            );
        }
        ua.quarantine.settle(q);
        let p = Placement::of(d);
        if !ua.placement.allows(&p) {
            f.lost(
                lost_before,
                format!(
                    "placement of {sn}: acknowledged {}, the unit shows {}",
                    ua.placement.known.details(),
                    p.details()
                ),
            );
        }
        ua.placement.settle(p);
    }
}

/// The evidence and records acknowledged in `cycle`, fetched one by one as
/// stored (GetEvidence, GetRecord): the writes acknowledged just before a
/// kill are the ones a lost flush would take.
async fn fetched(
    admin: &Client,
    ledger: &[Acked],
    cycle: u32,
    lost_before: &mut BTreeSet<String>,
    f: &mut Findings,
) {
    for a in ledger.iter().filter(|a| a.cycle == cycle) {
        let missing = match &a.write {
            Write::Evidence {
                serial,
                evidence_id,
            } => {
                let r = admin
                    .fleet()
                    .get_evidence(pb::GetEvidenceRequest {
                        evidence_id: evidence_id.clone(),
                    })
                    .await;
                match r {
                    Ok(e)
                        if e.get_ref().serial == *serial && !e.get_ref().cose_sign1.is_empty() =>
                    {
                        None
                    }
                    Ok(_) => Some(format!(
                        "evidence {evidence_id} of {serial} (GetEvidence: another unit's, or empty)"
                    )),
                    Err(s) => Some(format!(
                        "evidence {evidence_id} of {serial} (GetEvidence: {:?})",
                        s.code()
                    )),
                }
            }
            Write::Record {
                serial, record_id, ..
            } => {
                let r = admin
                    .factory()
                    .get_record(pb::GetRecordRequest {
                        record_id: record_id.clone(),
                    })
                    .await;
                match r {
                    Ok(r) if r.get_ref().serial == *serial && r.get_ref().envelope.is_some() => {
                        None
                    }
                    Ok(_) => Some(format!(
                        "record {record_id} of {serial} (GetRecord: another unit's, or no envelope)"
                    )),
                    Err(s) => Some(format!(
                        "record {record_id} of {serial} (GetRecord: {:?})",
                        s.code()
                    )),
                }
            }
            _ => None,
        };
        if let Some(what) = missing {
            f.lost(
                lost_before,
                format!("{what} (acknowledged in cycle {cycle})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::workload::Expect;

    fn evidence(id: &str) -> Acked {
        Acked {
            cycle: 3,
            write: Write::Evidence {
                serial: serial(0),
                evidence_id: id.into(),
            },
        }
    }

    fn seen_with(evidence: &[&str], quarantined: bool) -> Observed {
        let mut seen = Observed::default();
        seen.devices.insert(
            serial(0),
            pb::Device {
                serial: serial(0),
                quarantined,
                quarantine_reason: if quarantined {
                    "r".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
        );
        seen.histories.insert(
            serial(0),
            History {
                evidence: evidence.iter().map(|e| e.to_string()).collect(),
                ..Default::default()
            },
        );
        seen
    }

    #[test]
    fn an_acknowledged_write_missing_is_lost_and_counted_once() {
        let ledger = [evidence("E1"), evidence("E2")];
        let seen = seen_with(&["E1"], false);
        let mut lost = BTreeSet::new();
        let mut f = Findings::default();
        present(&ledger, &mut BTreeMap::new(), &seen, &mut lost, &mut f);
        assert_eq!(f.lost, 1, "{:#?}", f.notes);
        assert!(
            f.notes[0].contains("evidence E2 of BN000000000"),
            "{:#?}",
            f.notes
        );
        // Still missing at the next check: not counted again.
        let mut f = Findings::default();
        present(&ledger, &mut BTreeMap::new(), &seen, &mut lost, &mut f);
        assert_eq!(f.lost, 0);
    }

    #[test]
    fn a_unit_must_show_its_last_acknowledged_quarantine() {
        let seen = seen_with(&[], false);
        let mut expected = BTreeMap::from([(
            0,
            UnitAdmin {
                quarantine: Expect {
                    known: (true, "r".to_owned()),
                    maybe: None,
                },
                ..Default::default()
            },
        )]);
        let mut f = Findings::default();
        present(&[], &mut expected, &seen, &mut BTreeSet::new(), &mut f);
        assert_eq!(f.lost, 1, "{:#?}", f.notes);
        // Settled to what the unit shows.
        assert_eq!(expected[&0].quarantine.known, (false, String::new()));
    }

    #[test]
    fn an_action_the_kill_caught_in_flight_may_go_either_way() {
        for shows in [false, true] {
            let seen = seen_with(&[], shows);
            let mut expected = BTreeMap::from([(
                0,
                UnitAdmin {
                    quarantine: Expect {
                        known: (false, String::new()),
                        maybe: Some((true, "r".to_owned())),
                    },
                    ..Default::default()
                },
            )]);
            let mut f = Findings::default();
            present(&[], &mut expected, &seen, &mut BTreeSet::new(), &mut f);
            assert_eq!(f.lost, 0, "{:#?}", f.notes);
            assert_eq!(expected[&0].quarantine.known.0, shows);
            assert!(expected[&0].quarantine.maybe.is_none());
        }
    }

    #[test]
    fn the_chain_must_keep_the_entry_a_check_ended_at() {
        let e = |seq: u64, hash: &str| Entry {
            sequence: seq,
            hash: hash.into(),
            ..Default::default()
        };
        let h = [7u8; 32];
        let hex = attestd_client::core::ids::hex(&h);
        let mark = ChainMark { seq: 2, hash: h };
        assert!(still_there(&[e(1, "a"), e(2, &hex), e(3, "c")], mark));
        assert!(!still_there(&[e(1, "a"), e(2, "other")], mark));
        assert!(!still_there(&[e(1, "a")], mark), "shortened");
    }
}
