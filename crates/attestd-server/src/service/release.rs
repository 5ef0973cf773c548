//! Release: the gate MES asks before a unit ships, quarantine and
//! concessions. A decision is computed from the unit's stored evidence
//! appraised *now* against the active baseline, stored in the unit's
//! history with the ids it rests on, and made durable before it is answered.
//! Any error is an error, never RELEASE.

use std::sync::Arc;

use attestd_core::ids::{hex, Serial};
use attestd_core::release::{decide, waivable, GateInput, NOT_ENROLLED};
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::codes;
use attestd_store::{
    AuditNote, ConcessionEntry, DecisionCommit, Flag, GateReasonEntry, ReleaseDecisionEntry,
    StoreError, Write,
};
use ring::rand::{SecureRandom, SystemRandom};
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::auth::Principal;
use crate::convert;
use crate::service::admin::set_flag;
use crate::verdict::{redecide_with, Redecided};

/// The `attestd.v1.Release` service.
pub struct ReleaseService {
    /// What every handler shares.
    pub app: Arc<App>,
}

const RELEASE: i32 = codes::decision(codes::Decision::Release);
const HOLD: i32 = codes::decision(codes::Decision::Hold);

/// A random id with `prefix`.
fn random_id(prefix: &str) -> Result<String, Rejection> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| reject!(StoreUnavailable, "no randomness available; retry"))?;
    Ok(format!("{prefix}{}", hex(&b)))
}

/// The audit note of a release decision.
fn decision_note(d: &ReleaseDecisionEntry) -> AuditNote {
    let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
    AuditNote::new(d.decided_at, &d.decided_for, "release.decide", &d.serial).details(format!(
        "{} {}; reasons [{}]; evidence {}; baseline v{}{}",
        d.decision_id,
        if d.decision == RELEASE {
            "RELEASE"
        } else {
            "HOLD"
        },
        codes.join(","),
        d.evidence_id,
        d.baseline_version,
        if d.under_concession {
            format!("; under concession {}", d.concession_id)
        } else {
            String::new()
        }
    ))
}

/// A decision, and whether it must be stored.
enum Decided {
    /// The serial is not enrolled: HOLD, answered without storing (a caller
    /// asking about made-up serials must not grow storage); counted per
    /// principal into the audit chain's periodic summary instead.
    NotEnrolled(ReleaseDecisionEntry),
    /// A decision about an enrolled unit, stored before it is answered.
    Unit(DecisionCommit),
}

/// Decides for one serial from what is stored now; the caller stores it.
async fn decide_one(app: &App, caller: &str, serial: &str) -> Result<Decided, Rejection> {
    let store = app.store.as_ref();
    let serial = Serial::parse(serial, Reason::FieldInvalid, "serial")?;
    let now_ms = app.clock.now_ms();
    let mut entry = ReleaseDecisionEntry {
        serial: serial.as_str().to_owned(),
        decided_at: now_ms,
        decided_for: caller.to_owned(),
        ..Default::default()
    };
    // The unit with its active baseline version and stations, in one read
    // where the store can.
    let Some(ctx) = store
        .unit_context(serial.as_str())
        .await
        .map_err(|e| app.store_err(e))?
    else {
        // Not stored, so it has no decision id.
        entry.decision = HOLD;
        entry.reasons = vec![GateReasonEntry {
            code: NOT_ENROLLED.into(),
            detail: "no provisioning record enrolls this serial".into(),
            waived: false,
        }];
        return Ok(Decided::NotEnrolled(entry));
    };
    entry.decision_id = random_id("rd_")?;
    let Redecided {
        baseline_version: version,
        facts,
        evidence,
        appraisal,
        ..
    } = redecide_with(
        store,
        &app.baselines,
        &ctx.device,
        ctx.active,
        &ctx.stations,
        now_ms,
    )
    .await?;
    let d = ctx.device;
    // When the unit's records arrived: kept with the unit, else read.
    let mut latest_record_ms = 0;
    let kept = [
        d.provisioning_received_at,
        facts.calibration.as_ref().map_or(0, |c| c.received_at_ms),
    ];
    for (id, kept) in [&d.provisioning_record_id, &d.calibration_record_id]
        .into_iter()
        .zip(kept)
    {
        if id.is_empty() {
            continue;
        }
        if kept != 0 {
            latest_record_ms = latest_record_ms.max(kept);
            continue;
        }
        let r = store
            .get_record(id)
            .await
            .map_err(|e| app.store_err(e))?
            .ok_or_else(|| reject!(StoreUnavailable, "record {id} is missing"))?;
        latest_record_ms = latest_record_ms.max(r.received_at);
    }
    let concession = d.concession.as_ref();
    let gate = decide(&GateInput {
        enrolled: true,
        quarantined: d.quarantined,
        appraisal: appraisal.as_ref(),
        evidence_nonce_fresh: evidence.as_ref().is_some_and(|e| e.nonce_fresh),
        evidence_received_ms: evidence.as_ref().map_or(0, |e| e.received_at),
        latest_record_received_ms: latest_record_ms,
        now_ms,
        release_window_secs: app.limits.release_window_secs,
        concession: concession.map(|c| (c.concession_id.as_str(), c.waived_codes.as_slice())),
        provisioning_station_id: &d.provisioning_station_id,
    });
    entry.decision = if gate.release { RELEASE } else { HOLD };
    entry.reasons = gate
        .reasons
        .into_iter()
        .map(|r| GateReasonEntry {
            code: r.code,
            detail: r.detail,
            waived: r.waived,
        })
        .collect();
    entry.baseline_version = version.unwrap_or(0);
    entry.evidence_id = d.last_evidence_id.clone();
    entry.provisioning_record_id = d.provisioning_record_id.clone();
    entry.calibration_record_id = d.calibration_record_id.clone();
    entry.under_concession = gate.concession_id.is_some();
    entry.concession_id = gate.concession_id.unwrap_or_default();
    let mut revoked = facts.revoked_stations;
    revoked.sort();
    Ok(Decided::Unit(DecisionCommit {
        audit: decision_note(&entry),
        entry,
        expected_revision: d.revision,
        expected_baseline: version,
        expected_revoked_stations: revoked,
    }))
}

/// How often the gate decides again when what a decision rested on changed
/// before it was stored.
const DECIDE_ATTEMPTS: usize = 8;

/// Decides for `serials` and stores every decision about an enrolled unit
/// before answering any; a decision whose unit, baseline or stations
/// changed before it was stored is decided again (up to
/// [`DECIDE_ATTEMPTS`] rounds). Per serial, the decision or why it could
/// not be decided; `Err` when decisions could not be stored.
async fn decide_and_store(
    app: &Arc<App>,
    caller: &str,
    serials: Vec<String>,
) -> Result<Vec<Result<pb::ReleaseDecision, Rejection>>, Rejection> {
    let serials = Arc::new(serials);
    let mut results: Vec<Option<Result<pb::ReleaseDecision, Rejection>>> =
        (0..serials.len()).map(|_| None).collect();
    let mut open: Vec<usize> = (0..serials.len()).collect();
    for _ in 0..DECIDE_ATTEMPTS {
        if open.is_empty() {
            break;
        }
        let announced = app.store.announce();
        let mut decided = Vec::with_capacity(open.len());
        for i in std::mem::take(&mut open) {
            decided.push((i, decide_one(app, caller, &serials[i]).await));
        }
        drop(announced);
        let mut writes = Vec::new();
        let mut answers = Vec::new();
        for (i, d) in decided {
            match d {
                Ok(Decided::NotEnrolled(entry)) => {
                    app.unknown_serials.note(&format!("principal {caller}"));
                    results[i] = Some(Ok(convert::decision(entry)));
                }
                Ok(Decided::Unit(c)) => {
                    answers.push((i, convert::decision(c.entry.clone())));
                    writes.push(Write::Decision(c));
                }
                Err(r) => results[i] = Some(Err(r)),
            }
        }
        if writes.is_empty() {
            break;
        }
        let stored = app.store.commit_batch(writes).await;
        for ((i, answer), r) in answers.into_iter().zip(stored) {
            match r {
                Ok(_) => results[i] = Some(Ok(answer)),
                // The unit, its baseline or a station changed meanwhile.
                Err(StoreError::Conflict) => {
                    app.metrics.commit_conflicts.inc();
                    open.push(i);
                }
                Err(e) => return Err(app.store_err(e)),
            }
        }
    }
    if !open.is_empty() {
        return Err(app.store_err(StoreError::Conflict));
    }
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(reject!(StoreUnavailable, "no decision was reached; retry")))
        })
        .collect())
}

impl ReleaseService {
    /// Adds the decision's result token, if a result key is set.
    fn sign(&self, d: &mut pb::ReleaseDecision) {
        if let Some(keys) = self.app.result_keys.get() {
            d.result_token = keys.decision_token(d, self.app.now_secs());
        }
    }

    async fn check(
        &self,
        caller: &Principal,
        req: pb::CheckReleaseRequest,
    ) -> Result<pb::ReleaseDecision, Rejection> {
        let req_token = req.want_result_token;
        let mut one = decide_and_store(&self.app, &caller.name, vec![req.serial]).await?;
        let d = one
            .pop()
            .unwrap_or_else(|| Err(reject!(StoreUnavailable, "no decision was reached; retry")))?;
        tracing::debug!(serial = %d.serial, decision = d.decision, by = %caller.name, "release decision");
        let mut d = d;
        if req_token {
            self.sign(&mut d);
        }
        Ok(d)
    }

    async fn check_batch(
        &self,
        caller: &Principal,
        req: pb::CheckReleaseBatchRequest,
    ) -> Result<pb::CheckReleaseBatchResponse, Rejection> {
        let max = self.app.limits.max_release_batch;
        if req.serials.is_empty() || req.serials.len() > max {
            return Err(reject!(
                FieldInvalid,
                "serials: expected 1..{max} serials, got {}",
                req.serials.len()
            ));
        }
        let decided = decide_and_store(&self.app, &caller.name, req.serials.clone()).await?;
        let results = decided
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                // A unit that cannot be decided is held, never released.
                d.unwrap_or_else(|r| pb::ReleaseDecision {
                    serial: req.serials[i].chars().take(64).collect(),
                    decision: HOLD,
                    reasons: vec![pb::GateReason {
                        code: r.reason.as_str().into(),
                        detail: format!("serials[{i}]: {}", r.message),
                        waived: false,
                    }],
                    ..Default::default()
                })
            })
            .collect::<Vec<_>>();
        let mut results = results;
        if req.want_result_token {
            for d in &mut results {
                self.sign(d);
            }
        }
        Ok(pb::CheckReleaseBatchResponse { results })
    }

    async fn quarantine(
        &self,
        caller: &Principal,
        req: pb::SetQuarantineRequest,
    ) -> Result<pb::SetQuarantineResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        if req.on && (req.reason.trim().is_empty() || req.reason.len() > 1024) {
            return Err(reject!(
                FieldInvalid,
                "reason: required to quarantine, at most 1024 bytes"
            ));
        }
        let audit = AuditNote::new(
            app.clock.now_ms(),
            &caller.name,
            if req.on {
                "device.quarantine"
            } else {
                "device.unquarantine"
            },
            serial.as_str(),
        )
        .reason(&req.reason);
        let flag = Flag::Quarantine {
            on: req.on,
            reason: req.reason,
        };
        let d = set_flag(app, &serial, flag, audit).await?;
        tracing::warn!(serial = %serial, on = d.quarantined, status = d.status, "quarantine set");
        Ok(pb::SetQuarantineResponse {
            serial: d.serial,
            quarantined: d.quarantined,
            reason: d.quarantine_reason,
        })
    }

    async fn concession(
        &self,
        caller: &Principal,
        req: pb::GrantConcessionRequest,
    ) -> Result<pb::Concession, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        if req.waived_codes.is_empty() || req.waived_codes.len() > 32 {
            return Err(reject!(
                FieldInvalid,
                "waived_codes: expected 1..32 reason codes"
            ));
        }
        for (i, c) in req.waived_codes.iter().enumerate() {
            if !waivable(c) {
                return Err(reject!(
                    FieldInvalid,
                    "waived_codes[{i}]: {} cannot be waived (identity codes and unverified units never can)",
                    c.chars().take(64).collect::<String>()
                ));
            }
        }
        for (name, v) in [
            ("justification", &req.justification),
            ("meaning", &req.meaning),
        ] {
            if v.trim().is_empty() || v.len() > 2048 {
                return Err(reject!(
                    FieldInvalid,
                    "{name}: required, at most 2048 bytes"
                ));
            }
        }
        let c = ConcessionEntry {
            concession_id: random_id("con_")?,
            serial: serial.as_str().to_owned(),
            waived_codes: req.waived_codes,
            justification: req.justification,
            meaning: req.meaning,
            granted_by: caller.name.clone(),
            granted_at: app.clock.now_ms(),
        };
        let note = AuditNote::new(
            c.granted_at,
            &caller.name,
            "concession.grant",
            serial.as_str(),
        )
        .reason(&c.justification)
        .details(format!(
            "{}; waives {}; meaning: {}",
            c.concession_id,
            c.waived_codes.join(","),
            c.meaning
        ));
        let stored = c.clone();
        app.store
            .grant_concession(stored, &note)
            .await
            .map_err(|e| app.store_err(e))?;
        tracing::warn!(serial = %serial, concession = %c.concession_id, by = %caller.name, "concession granted");
        Ok(pb::Concession {
            concession_id: c.concession_id,
            serial: c.serial,
            waived_codes: c.waived_codes,
            justification: c.justification,
            meaning: c.meaning,
            granted_by: c.granted_by,
            granted_at: convert::timestamp_ms(c.granted_at),
        })
    }
}

#[tonic::async_trait]
impl pb::release_server::Release for ReleaseService {
    async fn check_release(
        &self,
        req: Request<pb::CheckReleaseRequest>,
    ) -> Result<Response<pb::ReleaseDecision>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.check(&caller, r).await)
            .await
    }

    async fn check_release_batch(
        &self,
        req: Request<pb::CheckReleaseBatchRequest>,
    ) -> Result<Response<pb::CheckReleaseBatchResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.check_batch(&caller, r).await)
            .await
    }

    async fn set_quarantine(
        &self,
        req: Request<pb::SetQuarantineRequest>,
    ) -> Result<Response<pb::SetQuarantineResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.quarantine(&caller, r).await)
            .await
    }

    async fn get_result_keys(
        &self,
        _req: Request<pb::GetResultKeysRequest>,
    ) -> Result<Response<pb::ResultKeys>, Status> {
        let jwks_json = match self.app.result_keys.get() {
            Some(k) => k.jwks_json(),
            None => r#"{"keys":[]}"#.to_owned(),
        };
        Ok(Response::new(pb::ResultKeys { jwks_json }))
    }

    async fn grant_concession(
        &self,
        req: Request<pb::GrantConcessionRequest>,
    ) -> Result<Response<pb::Concession>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.concession(&caller, r).await)
            .await
    }
}
