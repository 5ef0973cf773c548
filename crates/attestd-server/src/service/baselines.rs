//! Baselines: accepted only from a security-admin principal AND with valid
//! signatures from at least `t` of the `n` configured release keys, so a
//! compromised admin account alone cannot approve firmware.

use std::sync::Arc;

use attestd_core::baseline::{Baseline, BASELINE_TYPE};
use attestd_core::ids::Model;
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{AuditNote, BaselineEntry, SignatureEntry};
use tonic::{Request, Response, Status};

use crate::app::{page_token, App};
use crate::auth::Principal;
use crate::convert;
use crate::service::factory::envelope;

/// The `attestd.v1.Baselines` service.
pub struct BaselinesService {
    /// What every handler shares.
    pub app: Arc<App>,
}

impl BaselinesService {
    async fn publish(
        &self,
        caller: &Principal,
        req: pb::PublishBaselineRequest,
    ) -> Result<pb::PublishBaselineResponse, Rejection> {
        let app = &self.app;
        let answer = self.publish_now(&caller.name, req).await?;
        app.metrics.baselines_accepted.inc();
        app.work.notify_one();
        Ok(answer)
    }

    /// Verifies, parses and stores a baseline.
    async fn publish_now(
        &self,
        caller: &str,
        req: pb::PublishBaselineRequest,
    ) -> Result<pb::PublishBaselineResponse, Rejection> {
        let app = &self.app;
        let env = envelope(
            req.envelope
                .ok_or_else(|| reject!(FieldInvalid, "envelope: required"))?,
        );
        env.check_bounds()?;
        if env.payload_type != BASELINE_TYPE {
            return Err(reject!(
                UnknownPayloadType,
                "payload_type must be {BASELINE_TYPE}"
            ));
        }
        // Signatures before content: unsigned bytes are not even parsed.
        let signed = app.trust_root.verify(&env)?;
        let b = Baseline::parse(&env.payload)?;
        // Against the baseline active now: the usual predecessor.
        let (_, previous) = app
            .baselines
            .active(app.store.as_ref(), b.model.as_str())
            .await?;
        let urgent_digests = b
            .urgent_digests(previous.as_deref())
            .iter()
            .map(|d| d.to_hex())
            .collect();
        let entry = BaselineEntry {
            model: b.model.as_str().to_owned(),
            version: b.version,
            effective_at: b.effective_at.0,
            description: b.description.clone(),
            payload: env.payload,
            payload_type: env.payload_type,
            signatures: env
                .signatures
                .into_iter()
                .map(|s| SignatureEntry {
                    sig: s.sig,
                    keyid: s.keyid,
                })
                .collect(),
            published_at: app.clock.now_ms(),
            published_by: caller.to_owned(),
            urgent_digests,
        };
        let active = app
            .store
            .publish_baseline(
                entry,
                app.clock.now().0,
                &AuditNote::new(
                    app.clock.now_ms(),
                    caller,
                    "baseline.publish",
                    &format!("{} v{}", b.model, b.version),
                )
                .details(format!(
                    "{signed} release signatures; effective {}",
                    b.effective_at
                )),
            )
            .await
            .map_err(|e| app.store_err(e))?;
        tracing::info!(model = %b.model, version = b.version, signatures = signed, active, by = %caller, "baseline accepted");
        Ok(pb::PublishBaselineResponse {
            model: b.model.as_str().to_owned(),
            version: b.version,
            effective_at: convert::timestamp(b.effective_at.0),
            state: if active {
                pb::BaselineState::Active as i32
            } else {
                pb::BaselineState::Pending as i32
            },
        })
    }

    async fn get(&self, req: pb::GetBaselineRequest) -> Result<pb::Baseline, Rejection> {
        let app = &self.app;
        let model = Model::parse(&req.model, Reason::FieldInvalid, "model")?;
        let active = app
            .store
            .active_baseline_version(model.as_str())
            .await
            .map_err(|e| app.store_err(e))?;
        let version = match (req.version, active) {
            (0, Some(v)) => v,
            (0, None) => {
                return Err(reject!(
                    BaselineNotFound,
                    "model {model} has no active baseline"
                ))
            }
            (v, _) => v,
        };
        app.store
            .get_baseline(model.as_str(), version)
            .await
            .map_err(|e| app.store_err(e))?
            .map(|b| convert::baseline(b, active))
            .ok_or_else(|| {
                reject!(
                    BaselineNotFound,
                    "model {model} has no baseline version {version}"
                )
            })
    }

    async fn list(
        &self,
        req: pb::ListBaselinesRequest,
    ) -> Result<pb::ListBaselinesResponse, Rejection> {
        let app = &self.app;
        let model = Model::parse(&req.model, Reason::FieldInvalid, "model")?;
        let limit = app.page_size(req.page_size)?;
        let active = app
            .store
            .active_baseline_version(model.as_str())
            .await
            .map_err(|e| app.store_err(e))?;
        let page = app
            .store
            .list_baselines(model.as_str(), page_token(&req.page_token), limit)
            .await
            .map_err(|e| app.store_err(e))?;
        Ok(pb::ListBaselinesResponse {
            baselines: page
                .items
                .into_iter()
                .map(|b| convert::baseline(b, active))
                .collect(),
            next_page_token: page.next.unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl pb::baselines_server::Baselines for BaselinesService {
    async fn publish_baseline(
        &self,
        req: Request<pb::PublishBaselineRequest>,
    ) -> Result<Response<pb::PublishBaselineResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.publish(&caller, r).await)
            .await
    }

    async fn get_baseline(
        &self,
        req: Request<pb::GetBaselineRequest>,
    ) -> Result<Response<pb::Baseline>, Status> {
        self.app
            .answer(req, async |app, r| {
                BaselinesService { app: app.clone() }.get(r).await
            })
            .await
    }

    async fn list_baselines(
        &self,
        req: Request<pb::ListBaselinesRequest>,
    ) -> Result<Response<pb::ListBaselinesResponse>, Status> {
        self.app
            .answer(req, async |app, r| {
                BaselinesService { app: app.clone() }.list(r).await
            })
            .await
    }
}
