//! Gathering what appraisal needs about a unit (its records, the stations
//! behind them, the active baseline of its model) and turning an appraisal
//! into the unit's stored verdict. Shared by evidence submission and the
//! re-appraisal job, so both decide the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attestd_core::appraisal::{
    self, Appraisal, CalibrationFacts, EvidenceFacts, Status, UnitFacts,
};
use attestd_core::baseline::Baseline;
use attestd_core::evidence::{Claims, Evidence};
use attestd_core::ids::Digest;
use attestd_core::record::{CalibrationResult, Record};
use attestd_core::time::UnixTime;
use attestd_core::{reject, Rejection};
use attestd_store::{
    CalibrationFactsEntry, CalibrationParameterEntry, DeviceEntry, EvidenceEntry, InstrumentEntry,
    StationEntry, Store, SvnEntry, UnitVerdict,
};

use crate::convert;
use crate::status::store_rejection;

/// Parsed baselines by (model, version). Baselines are immutable, so entries
/// never go stale; the map is bounded by the number of published versions.
#[derive(Default)]
pub struct BaselineCache {
    map: Mutex<HashMap<(String, u64), Arc<Baseline>>>,
}

/// The active baseline of a model: its version (for the commit's check) and
/// the parsed baseline.
pub type Active = (Option<u64>, Option<Arc<Baseline>>);

impl BaselineCache {
    /// The active baseline of `model`, parsed once per version.
    pub async fn active(&self, store: &dyn Store, model: &str) -> Result<Active, Rejection> {
        let version = store
            .active_baseline_version(model)
            .await
            .map_err(store_rejection)?;
        self.version(store, model, version).await
    }

    /// Baseline `version` of `model` (the active one as the caller read
    /// it), parsed once per version.
    pub async fn version(
        &self,
        store: &dyn Store,
        model: &str,
        version: Option<u64>,
    ) -> Result<Active, Rejection> {
        let Some(version) = version else {
            return Ok((None, None));
        };
        let key = (model.to_owned(), version);
        if let Some(b) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok((Some(version), Some(b.clone())));
        }
        let entry = store
            .get_baseline(model, version)
            .await
            .map_err(store_rejection)?
            .ok_or_else(|| {
                reject!(
                    StoreUnavailable,
                    "active baseline {model} v{version} is missing"
                )
            })?;
        let b = Arc::new(Baseline::parse(&entry.payload).map_err(|e| {
            reject!(
                StoreUnavailable,
                "stored baseline {model} v{version} does not parse: {e}"
            )
        })?);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, b.clone());
        Ok((Some(version), Some(b)))
    }
}

/// The stored form of a calibration record's facts (kept with the unit).
pub fn calibration_entry(c: &CalibrationFacts) -> CalibrationFactsEntry {
    CalibrationFactsEntry {
        record_id: c.record_id.clone(),
        station_id: c.station_id.clone(),
        passed: c.result == CalibrationResult::Pass,
        performed_at: c.performed_at.0,
        received_at_ms: c.received_at_ms,
        next_due_at: c.next_due_at.0,
        digest: c.digest.0.to_vec(),
        parameters: c
            .parameters
            .iter()
            .map(|(name, as_left)| CalibrationParameterEntry {
                name: name.clone(),
                as_left: *as_left,
            })
            .collect(),
        instruments: c
            .instruments
            .iter()
            .map(|(id, due)| InstrumentEntry {
                id: id.clone(),
                due_at: due.0,
            })
            .collect(),
    }
}

/// The facts back from their stored form; `None` if the digest is damaged.
pub fn calibration_facts(e: &CalibrationFactsEntry) -> Option<CalibrationFacts> {
    Some(CalibrationFacts {
        record_id: e.record_id.clone(),
        station_id: e.station_id.clone(),
        result: if e.passed {
            CalibrationResult::Pass
        } else {
            CalibrationResult::Fail
        },
        performed_at: UnixTime(e.performed_at),
        received_at_ms: e.received_at_ms,
        next_due_at: UnixTime(e.next_due_at),
        digest: Digest::from_slice(&e.digest)?,
        parameters: e
            .parameters
            .iter()
            .map(|p| (p.name.clone(), p.as_left))
            .collect(),
        instruments: e
            .instruments
            .iter()
            .map(|i| (i.id.clone(), UnixTime(i.due_at)))
            .collect(),
    })
}

/// What the unit's records and the stations behind them say, with those
/// stations already read (`Store::unit_context`,
/// `attestd_store::read_stations_behind`; an absent one counts as not
/// revoked).
pub async fn unit_facts(
    store: &dyn Store,
    d: &DeviceEntry,
    stations: &[StationEntry],
) -> Result<UnitFacts, Rejection> {
    let kept = d
        .calibration_facts
        .as_ref()
        .filter(|f| f.record_id == d.calibration_record_id)
        .and_then(calibration_facts);
    let calibration = if d.calibration_record_id.is_empty() {
        None
    } else if kept.is_some() {
        kept
    } else {
        let r = store
            .get_record(&d.calibration_record_id)
            .await
            .map_err(store_rejection)?
            .ok_or_else(|| {
                reject!(
                    StoreUnavailable,
                    "calibration record {} is missing",
                    d.calibration_record_id
                )
            })?;
        match Record::parse(&r.payload_type, &r.payload) {
            Ok(Record::Calibration(c)) => Some(CalibrationFacts::from_record(
                &c,
                &r.record_id,
                r.received_at,
            )),
            _ => {
                return Err(reject!(
                    StoreUnavailable,
                    "stored record {} is not a calibration record",
                    r.record_id
                ))
            }
        }
    };
    let mut revoked_stations = Vec::new();
    for sid in attestd_store::rules::stations_behind(d) {
        if stations.iter().any(|s| s.station_id == sid && s.revoked) {
            revoked_stations.push(sid.to_owned());
        }
    }
    Ok(UnitFacts {
        model: d.model.clone(),
        hw_version: d.hw_version.clone(),
        provisioning_record_id: d.provisioning_record_id.clone(),
        provisioning_station_id: d.provisioning_station_id.clone(),
        revoked: d.revoked,
        calibration,
        revoked_stations,
    })
}

/// The stored code of a status.
pub fn status_code(s: Status) -> i32 {
    attestd_store::codes::status(s)
}

/// The stored verdict for an appraisal (or none) at `now`.
pub fn verdict(
    appraisal: Option<&Appraisal>,
    last_evidence_ms: Option<i64>,
    facts: &UnitFacts,
    baseline: Option<&Baseline>,
    quarantined: bool,
    now_ms: i64,
) -> UnitVerdict {
    let now = UnixTime(now_ms.div_euclid(1000));
    let baseline = baseline.filter(|b| b.covers(&facts.model, &facts.hw_version));
    let status = appraisal::status(
        appraisal,
        last_evidence_ms,
        baseline,
        quarantined,
        facts.revoked,
        now,
    );
    let next = appraisal::next_check(facts, baseline, last_evidence_ms, now);
    let calibration_due = match (baseline, &facts.calibration) {
        (Some(b), Some(rec)) => appraisal::calibration_due(rec, b).0,
        _ => 0,
    };
    UnitVerdict {
        appraisal: appraisal.map(convert::appraisal_entry),
        status: status_code(status),
        next_check_at: next.map_or(0, |t| t.0),
        calibration_due_at: calibration_due,
        now_ms,
    }
}

/// History entries as appraisal takes them.
pub fn svn_pairs(svns: &[SvnEntry]) -> Vec<(String, u64)> {
    svns.iter().map(|s| (s.name.clone(), s.svn)).collect()
}

/// The highest svn per component after accepting `claims`.
pub fn merged_svns(prior: &[SvnEntry], claims: &Claims) -> Vec<SvnEntry> {
    let mut out: Vec<SvnEntry> = prior.to_vec();
    for c in &claims.components {
        match out.iter_mut().find(|s| s.name == c.name) {
            Some(s) => s.svn = s.svn.max(c.svn),
            None => out.push(SvnEntry {
                name: c.name.clone(),
                svn: c.svn,
            }),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A unit re-decided now from what is stored: the active baseline of its
/// model, its facts, its last evidence and that evidence's appraisal.
pub struct Redecided {
    /// The version of the model's active baseline, if any.
    pub baseline_version: Option<u64>,
    /// The active baseline, parsed.
    pub baseline: Option<Arc<Baseline>>,
    /// What the unit's records and flags say now.
    pub facts: UnitFacts,
    /// The unit's last evidence, if it has any.
    pub evidence: Option<EvidenceEntry>,
    /// That evidence appraised now.
    pub appraisal: Option<Appraisal>,
}

/// Re-decides unit `d` at `now_ms` (re-appraisal and the release gate).
/// Evidence the unit names but the store lacks is an error, never "no
/// evidence": a damaged store must not turn into a different verdict.
pub async fn redecide(
    store: &dyn Store,
    baselines: &BaselineCache,
    d: &DeviceEntry,
    now_ms: i64,
) -> Result<Redecided, Rejection> {
    let active = store
        .active_baseline_version(&d.model)
        .await
        .map_err(store_rejection)?;
    let stations = attestd_store::read_stations_behind(store, d)
        .await
        .map_err(store_rejection)?;
    redecide_with(store, baselines, d, active, &stations, now_ms).await
}

/// [`redecide`] with the model's active version and the stations behind
/// the unit already read (`Store::unit_context`).
pub async fn redecide_with(
    store: &dyn Store,
    baselines: &BaselineCache,
    d: &DeviceEntry,
    active: Option<u64>,
    stations: &[StationEntry],
    now_ms: i64,
) -> Result<Redecided, Rejection> {
    let (baseline_version, baseline) = baselines.version(store, &d.model, active).await?;
    let facts = unit_facts(store, d, stations).await?;
    let evidence = if d.last_evidence_id.is_empty() {
        None
    } else {
        Some(
            store
                .get_evidence(&d.last_evidence_id)
                .await
                .map_err(store_rejection)?
                .ok_or_else(|| {
                    reject!(
                        StoreUnavailable,
                        "evidence {} named by unit {} is missing",
                        d.last_evidence_id,
                        d.serial
                    )
                })?,
        )
    };
    let appraisal = match &evidence {
        Some(e) => Some(reappraise_evidence(e, &facts, baseline.as_deref(), now_ms)?),
        None => None,
    };
    Ok(Redecided {
        baseline_version,
        baseline,
        facts,
        evidence,
        appraisal,
    })
}

/// The verdict unit `d` has now, from what is stored, with what it rests
/// on (re-appraisal, administrators' flags, the release gate).
pub async fn unit_verdict(
    store: &dyn Store,
    baselines: &BaselineCache,
    d: &DeviceEntry,
    now_ms: i64,
) -> Result<(UnitVerdict, Redecided), Rejection> {
    let r = redecide(store, baselines, d, now_ms).await?;
    let v = verdict(
        r.appraisal.as_ref(),
        r.evidence.as_ref().map(|e| e.received_at),
        &r.facts,
        r.baseline.as_deref(),
        d.quarantined,
        now_ms,
    );
    Ok((v, r))
}

/// Re-appraises stored evidence: decodes its bytes again (they were verified
/// when accepted) and appraises them with the unit's history of that time.
fn reappraise_evidence(
    e: &EvidenceEntry,
    facts: &UnitFacts,
    baseline: Option<&Baseline>,
    now_ms: i64,
) -> Result<Appraisal, Rejection> {
    let ev = Evidence::decode(&e.raw).map_err(|r| {
        reject!(
            StoreUnavailable,
            "stored evidence {} does not decode: {r}",
            e.evidence_id
        )
    })?;
    let prior_svns = svn_pairs(&e.prior_svns);
    let facts_ev = EvidenceFacts {
        claims: &ev.claims,
        evidence_id: &e.evidence_id,
        nonce_fresh: e.nonce_fresh,
        received_at_ms: e.received_at,
        prior_bootcount: e.has_prior_bootcount.then_some(e.prior_bootcount),
        prior_svns: &prior_svns,
    };
    Ok(appraisal::appraise(
        &facts_ev,
        facts,
        baseline,
        UnixTime(now_ms.div_euclid(1000)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_facts_survive_their_stored_form() {
        let facts = CalibrationFacts {
            record_id: "rec_1".into(),
            station_id: "cal-1".into(),
            result: CalibrationResult::Fail,
            performed_at: UnixTime(1_700_000_000),
            received_at_ms: 1_700_000_000_123,
            next_due_at: UnixTime(1_730_000_000),
            digest: Digest::of(b"data set"),
            parameters: vec![("spo2_offset".into(), -0.25), ("gain".into(), 1.5)],
            instruments: vec![("REF-9".into(), UnixTime(1_710_000_000))],
        };
        let stored = calibration_entry(&facts);
        assert_eq!(calibration_facts(&stored), Some(facts.clone()));
        let pass = CalibrationFacts {
            result: CalibrationResult::Pass,
            ..facts
        };
        assert_eq!(calibration_facts(&calibration_entry(&pass)), Some(pass));
        // A damaged digest is not silently taken: the record is read instead.
        let mut damaged = stored;
        damaged.digest.pop();
        assert_eq!(calibration_facts(&damaged), None);
    }

    #[tokio::test]
    async fn a_unit_naming_evidence_the_store_lacks_is_not_redecided_as_never_attested() {
        let dir = tempfile::tempdir().unwrap();
        let store = attestd_store::sled_store::SledStore::open(
            dir.path(),
            &attestd_store::sled_store::SledConfig {
                cache_capacity: 8 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        let cache = BaselineCache::default();
        let mut d = DeviceEntry {
            serial: "U1".into(),
            model: "PM-200".into(),
            ..DeviceEntry::default()
        };
        let fresh = redecide(&store, &cache, &d, 1_000).await.unwrap();
        assert!(fresh.evidence.is_none() && fresh.appraisal.is_none());
        d.last_evidence_id = "ev_00000000000000000000000000000000".into();
        let e = redecide(&store, &cache, &d, 1_000)
            .await
            .err()
            .expect("missing evidence is an error");
        assert_eq!(e.reason, attestd_core::Reason::StoreUnavailable);
        assert!(e.message.contains("ev_00000000000000000000000000000000"));
    }
}
