//! DeviceAttestation: challenges and evidence. No principal: the evidence
//! signature, by the key enrolled for the unit, is the authentication.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use attestd_core::appraisal::{appraise, UnitContext};
use attestd_core::evidence::{check_deferred, DeferredPolicy, Evidence};
use attestd_core::ids::{object_id, Digest, Serial};
use attestd_core::keys::PublicKey;
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{EvidenceCommit, EvidenceEntry, StoreError};
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::convert;

/// Prefix of evidence ids.
pub const EVIDENCE_ID_PREFIX: &str = "ev_";
/// How often a write is re-decided when the unit changes underneath it.
const MAX_ATTEMPTS: usize = 8;

pub struct DeviceService {
    pub app: Arc<App>,
}

impl DeviceService {
    async fn challenge(
        &self,
        req: pb::GetChallengeRequest,
    ) -> Result<pb::GetChallengeResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        if app
            .store
            .get_device(serial.as_str())
            .map_err(|e| app.store_err(e))?
            .is_none()
        {
            return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled"));
        }
        let (nonce, expires_ms) = app.nonces.issue(serial.as_str(), app.clock.now_ms())?;
        app.metrics.challenges_issued.fetch_add(1, Relaxed);
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
        let pending = app.commit.begin();
        let raw = req.evidence;
        // Decode under hard bounds; nothing from it is trusted yet.
        let ev = Evidence::decode(&raw)?;
        let serial = ev.claims.serial.as_str();
        let device = app
            .store
            .get_device(serial)
            .map_err(|e| app.store_err(e))?
            .ok_or_else(|| reject!(UnknownDevice, "serial {serial} is not enrolled"))?;
        let key = PublicKey::from_spki_der(
            &device.spki_der,
            Reason::StoreUnavailable,
            "stored device key",
        )?;
        let now_ms = app.clock.now_ms();
        if let Err(r) = ev.verify(&key) {
            app.security.raise("device", serial, r.reason, now_ms);
            return Err(r);
        }
        // Authenticated from here on.
        let now = app.clock.now();
        let nonce_fresh = match &ev.claims.nonce {
            Some(n) => {
                if let Err(r) = app.nonces.consume(n, serial, now_ms) {
                    app.security.raise("device", serial, r.reason, now_ms);
                    return Err(r);
                }
                true
            }
            None => false,
        };
        let evidence_id = object_id(EVIDENCE_ID_PREFIX, &Digest::of(&raw));
        let policy = DeferredPolicy {
            clock_skew_secs: app.limits.clock_skew_secs,
            max_age_secs: app.limits.deferred_max_age_secs,
        };
        let mut device = device;
        for _ in 0..MAX_ATTEMPTS {
            let highest = device.has_bootcount.then_some(device.highest_bootcount);
            if !nonce_fresh {
                if let Err(r) = check_deferred(&ev.claims, highest, now, policy) {
                    app.security.raise("device", serial, r.reason, now_ms);
                    return Err(r);
                }
            }
            let ctx = UnitContext {
                model: &device.model,
                hw_version: &device.hw_version,
                provisioning_record_id: &device.provisioning_record_id,
                calibration_record_id: &device.calibration_record_id,
                highest_bootcount: highest,
            };
            let appraisal = appraise(&ev.claims, nonce_fresh, &ctx, &evidence_id, now);
            let entry = EvidenceEntry {
                evidence_id: evidence_id.clone(),
                serial: serial.to_owned(),
                bootcount: ev.claims.bootcount,
                issued_at: ev.claims.iat.0,
                received_at: now_ms,
                nonce_fresh,
                raw: raw.clone(),
                appraisal: Some(convert::appraisal_entry(&appraisal)),
            };
            let commit = EvidenceCommit {
                entry,
                spki_der: device.spki_der.clone(),
                expected_revision: device.revision,
                deferred: !nonce_fresh,
            };
            match app.store.commit_evidence(commit) {
                Ok(_) => {
                    pending.durable().await?;
                    app.metrics.evidence_accepted.fetch_add(1, Relaxed);
                    tracing::info!(serial, evidence_id = %evidence_id, nonce_fresh, "evidence accepted");
                    return Ok(pb::SubmitEvidenceResponse {
                        evidence_id,
                        appraisal: Some(convert::appraisal(&convert::appraisal_entry(&appraisal))),
                    });
                }
                Err(StoreError::Conflict) => {
                    app.metrics.commit_conflicts.fetch_add(1, Relaxed);
                    device = app
                        .store
                        .get_device(serial)
                        .map_err(|e| app.store_err(e))?
                        .ok_or_else(|| reject!(UnknownDevice, "serial {serial} is not enrolled"))?;
                }
                Err(e) => return Err(app.store_err(e)),
            }
        }
        Err(app.store_err(StoreError::Conflict))
    }
}

#[tonic::async_trait]
impl pb::device_attestation_server::DeviceAttestation for DeviceService {
    async fn get_challenge(
        &self,
        req: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        self.challenge(req.into_inner())
            .await
            .map(Response::new)
            .map_err(|r| self.app.fail("GetChallenge", r))
    }

    async fn submit_evidence(
        &self,
        req: Request<pb::SubmitEvidenceRequest>,
    ) -> Result<Response<pb::SubmitEvidenceResponse>, Status> {
        self.submit(req.into_inner())
            .await
            .map(Response::new)
            .map_err(|r| self.app.fail("SubmitEvidence", r))
    }
}
