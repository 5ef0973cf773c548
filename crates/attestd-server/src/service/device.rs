//! DeviceAttestation: challenges and evidence. No principal: the evidence
//! signature, by the key enrolled for the unit, is the authentication.

use std::sync::Arc;

use attestd_core::appraisal::{appraise, EvidenceFacts};
use attestd_core::evidence::{check_deferred, check_not_ahead, Claims, DeferredPolicy, Evidence};
use attestd_core::ids::{object_id, Digest, Serial};
use attestd_core::keys::PublicKey;
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{
    AppraisalEntry, AuditNote, EvidenceCommit, EvidenceEntry, FirmwareEntry, StoreError,
    UnitContext,
};
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::convert;
use crate::verdict::{merged_svns, svn_pairs, unit_facts, verdict};

/// Prefix of evidence ids.
pub const EVIDENCE_ID_PREFIX: &str = "ev_";
/// How often a write is re-decided when the unit changes underneath it.
const MAX_ATTEMPTS: usize = 8;

/// The `attestd.v1.DeviceAttestation` service.
pub struct DeviceService {
    /// What every handler shares.
    pub app: Arc<App>,
}

impl DeviceService {
    async fn challenge(
        &self,
        req: pb::GetChallengeRequest,
    ) -> Result<pb::GetChallengeResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        app.serial_limit.take(serial.as_str(), app.clock.now_ms())?;
        // DEVICE_NOT_FOUND for a serial not enrolled, with nothing stored.
        let (nonce, expires_ms) = app
            .store
            .issue_challenge(serial.as_str(), app.clock.now_ms(), &app.nonce_policy())
            .await
            .map_err(|e| app.store_err(e))?;
        app.metrics.challenges_issued.inc();
        Ok(pb::GetChallengeResponse {
            nonce: nonce.to_vec(),
            expires_at: convert::timestamp_ms(expires_ms),
        })
    }

    async fn submit(
        &self,
        req: pb::SubmitEvidenceRequest,
    ) -> Result<pb::SubmitEvidenceResponse, Rejection> {
        let app = &self.app;
        // A write is on its way: a store that groups writes may wait for it.
        let announced = app.store.announce();
        let want_token = req.want_result_token;
        let (checked, unit) = check(app, req.evidence).await?;
        let checked = Arc::new(checked);
        let mut decided = decide(app, &checked, &unit).await?;
        drop(announced);
        for _ in 0..MAX_ATTEMPTS {
            let (commit, answer) = decided;
            match app.store.commit_evidence(commit).await {
                Ok(_) => {
                    app.metrics.evidence_accepted.inc();
                    tracing::debug!(serial = %checked.claims.serial, evidence_id = %checked.evidence_id, nonce_fresh = checked.nonce_fresh, "evidence accepted");
                    let appraisal = answer.as_ref().map(convert::appraisal);
                    let result_token = match (want_token, app.result_keys.get(), &appraisal) {
                        (true, Some(keys), Some(a)) => {
                            keys.appraisal_token(checked.claims.serial.as_str(), a, app.now_secs())
                        }
                        _ => String::new(),
                    };
                    return Ok(pb::SubmitEvidenceResponse {
                        evidence_id: checked.evidence_id.clone(),
                        appraisal,
                        result_token,
                    });
                }
                // The unit changed underneath: read it again, decide again.
                Err(StoreError::Conflict) => {
                    app.metrics.commit_conflicts.inc();
                    let serial = checked.claims.serial.as_str();
                    let unit = app
                        .store
                        .unit_context(serial)
                        .await
                        .map_err(|e| app.store_err(e))?
                        .ok_or_else(|| reject!(UnknownDevice, "serial {serial} is not enrolled"))?;
                    decided = decide(app, &checked, &unit).await?;
                }
                Err(e) => return Err(app.store_err(e)),
            }
        }
        Err(app.store_err(StoreError::Conflict))
    }
}

/// Evidence decoded, authenticated and fresh.
struct Checked {
    /// The claims (the signature is checked: the COSE structure is not kept).
    claims: Claims,
    raw: Vec<u8>,
    nonce_fresh: bool,
    evidence_id: String,
    now_ms: i64,
}

/// Decodes evidence under hard bounds, authenticates it with the unit's
/// enrolled key and checks its freshness by nonce; nothing is written but
/// the nonce's use. Returns it with the unit as read (with what appraising
/// it needs, read at once).
async fn check(app: &Arc<App>, raw: Vec<u8>) -> Result<(Checked, UnitContext), Rejection> {
    // Decode under hard bounds; nothing from it is trusted yet.
    let ev = Evidence::decode(&raw)?;
    let serial = ev.claims.serial.as_str().to_owned();
    let serial = serial.as_str();
    app.serial_limit.take(serial, app.clock.now_ms())?;
    let unit = app
        .store
        .unit_context(serial)
        .await
        .map_err(|e| app.store_err(e))?
        .ok_or_else(|| reject!(UnknownDevice, "serial {serial} is not enrolled"))?;
    let key = PublicKey::from_enrolled_spki_der(&unit.device.spki_der, "stored device key")?;
    let now_ms = app.clock.now_ms();
    // Verifying the signature is the costly part (~50-100 us), done here on
    // the request's thread: handing it to the blocking pool cost more than
    // it spared, a thread wake-up and two context switches per evidence
    // (measured: ~10% of the server's CPU per boot, BENCHMARKS.md).
    let verified = ev.verify(&key).map(|()| ev.claims);
    let claims = match verified {
        Ok(c) => c,
        Err(r) => {
            app.security.raise("device", serial, r.reason, now_ms);
            return Err(r);
        }
    };
    // Authenticated from here on. No evidence may claim to come from the
    // future, nonce or not: a far-future iat would otherwise be kept as
    // the unit's production time.
    if let Err(r) = check_not_ahead(&claims, app.clock.now(), app.limits.clock_skew_secs) {
        app.security.raise("device", serial, r.reason, now_ms);
        return Err(r);
    }
    let nonce_fresh = match &claims.nonce {
        Some(n) => {
            match app
                .store
                .consume_nonce(n, serial, now_ms, &app.nonce_policy())
                .await
            {
                Ok(()) => {}
                Err(StoreError::Rejected(r)) => {
                    app.security.raise("device", serial, r.reason, now_ms);
                    return Err(r);
                }
                Err(e) => return Err(app.store_err(e)),
            }
            true
        }
        None => false,
    };
    let evidence_id = object_id(EVIDENCE_ID_PREFIX, &Digest::of(&raw));
    Ok((
        Checked {
            claims,
            raw,
            nonce_fresh,
            evidence_id,
            now_ms,
        },
        unit,
    ))
}

/// Appraises checked evidence against the unit as it is in `device` and
/// prepares its write and its answer.
async fn decide(
    app: &App,
    c: &Checked,
    unit: &UnitContext,
) -> Result<(EvidenceCommit, Option<AppraisalEntry>), Rejection> {
    let device = &unit.device;
    let serial = c.claims.serial.as_str();
    let now_ms = c.now_ms;
    let now = attestd_core::time::UnixTime(now_ms.div_euclid(1000));
    let (baseline_version, baseline) = app
        .baselines
        .version(app.store.as_ref(), &device.model, unit.active)
        .await?;
    let highest = device.has_bootcount.then_some(device.highest_bootcount);
    if !c.nonce_fresh {
        let max_age_secs = baseline
            .as_deref()
            .map_or(app.limits.deferred_max_age_secs, |b| {
                b.max_evidence_age_secs()
            });
        let policy = DeferredPolicy {
            clock_skew_secs: app.limits.clock_skew_secs,
            max_age_secs,
        };
        if let Err(r) = check_deferred(&c.claims, highest, now, policy) {
            app.security.raise("device", serial, r.reason, now_ms);
            return Err(r);
        }
    }
    let facts = unit_facts(app.store.as_ref(), device, &unit.stations).await?;
    let prior_svns = svn_pairs(&device.svns);
    let ev_facts = EvidenceFacts {
        claims: &c.claims,
        evidence_id: &c.evidence_id,
        nonce_fresh: c.nonce_fresh,
        received_at_ms: now_ms,
        prior_bootcount: highest,
        prior_svns: &prior_svns,
    };
    let appraisal = appraise(&ev_facts, &facts, baseline.as_deref(), now);
    let v = verdict(
        Some(&appraisal),
        Some(now_ms),
        &facts,
        baseline.as_deref(),
        device.quarantined,
        now_ms,
    );
    // The stored form of the verdict is also the answer: convert once.
    let answer = v.appraisal.clone();
    let entry = EvidenceEntry {
        evidence_id: c.evidence_id.clone(),
        serial: serial.to_owned(),
        bootcount: c.claims.bootcount,
        issued_at: c.claims.iat.0,
        received_at: now_ms,
        nonce_fresh: c.nonce_fresh,
        raw: c.raw.clone(),
        appraisal: v.appraisal.clone(),
        has_prior_bootcount: highest.is_some(),
        prior_bootcount: highest.unwrap_or(0),
        prior_svns: device.svns.clone(),
    };
    let audit = AuditNote::new(
        now_ms,
        &format!("device:{serial}"),
        "evidence.accept",
        serial,
    )
    .details(format!(
        "{}; bootcount {}; {}; tier {:?}",
        c.evidence_id,
        c.claims.bootcount,
        if c.nonce_fresh {
            "nonce-fresh"
        } else {
            "deferred"
        },
        appraisal.tier
    ));
    let commit = EvidenceCommit {
        entry,
        audit,
        spki_der: device.spki_der.clone(),
        expected_revision: device.revision,
        deferred: !c.nonce_fresh,
        expected_baseline: baseline_version,
        svns: merged_svns(&device.svns, &c.claims),
        firmware: c
            .claims
            .components
            .iter()
            .map(|x| FirmwareEntry {
                name: x.name.clone(),
                version: x.version.clone(),
                svn: x.svn,
                digest: x.digest.0.to_vec(),
            })
            .collect(),
        calibration_digest: c
            .claims
            .calibration
            .as_ref()
            .map(|x| x.digest.0.to_vec())
            .unwrap_or_default(),
        verdict: v,
    };
    Ok((commit, answer))
}

#[tonic::async_trait]
impl pb::device_attestation_server::DeviceAttestation for DeviceService {
    async fn get_challenge(
        &self,
        req: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        self.app
            .answer(req, async |app, r| {
                DeviceService { app: app.clone() }.challenge(r).await
            })
            .await
    }

    async fn submit_evidence(
        &self,
        req: Request<pb::SubmitEvidenceRequest>,
    ) -> Result<Response<pb::SubmitEvidenceResponse>, Status> {
        self.app
            .answer(req, async |_, r| self.submit(r).await)
            .await
    }
}
