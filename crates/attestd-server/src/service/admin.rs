//! Admin: the stations whose records attestd accepts, the units'
//! revocation and placement, and backups (`service::backup`).

use std::sync::Arc;

use attestd_core::ids::{Model, Serial, StationId};
use attestd_core::keys::PublicKey;
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{
    Assignment, AuditNote, DeviceEntry, Flag, FlagCommit, StationEntry, StoreError,
};
use tonic::{Request, Response, Status};

use crate::app::{page_token, App};
use crate::auth::Principal;
use crate::checkpoint::CheckpointKey;
use crate::convert;
use crate::service::backup;
use crate::verdict::unit_verdict;

/// How often an administrator's flag is re-decided when the unit changes
/// underneath it.
const FLAG_ATTEMPTS: usize = 8;

/// Sets an administrator's flag on a unit together with the verdict the
/// unit has under it, in one atomic write: when this returns, every read
/// (the unit, its status index, the counters, the change feed) shows it.
pub async fn set_flag(
    app: &Arc<App>,
    serial: &Serial,
    flag: Flag,
    audit: AuditNote,
) -> Result<DeviceEntry, Rejection> {
    let store = app.store.as_ref();
    for _ in 0..FLAG_ATTEMPTS {
        let Some(d) = store
            .get_device(serial.as_str())
            .await
            .map_err(|e| app.store_err(e))?
        else {
            return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled"));
        };
        let mut flagged = d.clone();
        flag.apply(&mut flagged, audit.at_ms);
        let (verdict, r) =
            unit_verdict(store, &app.baselines, &flagged, app.clock.now_ms()).await?;
        let written = match store
            .set_flag(FlagCommit {
                serial: serial.as_str().to_owned(),
                flag: flag.clone(),
                expected_revision: d.revision,
                expected_baseline: r.baseline_version,
                verdict,
                audit: audit.clone(),
            })
            .await
        {
            Ok(d) => Some(d),
            Err(StoreError::Conflict) => {
                app.metrics.commit_conflicts.inc();
                None
            }
            Err(e) => return Err(app.store_err(e)),
        };
        if let Some(d) = written {
            return Ok(d);
        }
    }
    Err(app.store_err(StoreError::Conflict))
}

/// The `attestd.v1.Admin` service.
pub struct AdminService {
    /// What every handler shares.
    pub app: Arc<App>,
    /// Signs the checkpoint that ends a backup; none: backups are refused.
    pub key: Option<Arc<CheckpointKey>>,
}

const MAX_MODELS: usize = 64;

impl AdminService {
    async fn register(
        &self,
        caller: &Principal,
        req: pb::RegisterStationRequest,
    ) -> Result<pb::Station, Rejection> {
        let app = &self.app;
        let id = StationId::parse(&req.station_id, Reason::FieldInvalid, "station_id")?;
        let key = PublicKey::from_spki_der(&req.public_key, Reason::FieldInvalid, "public_key")?;
        if req.allowed_kinds.is_empty() {
            return Err(reject!(
                FieldInvalid,
                "allowed_kinds: at least one record kind is required"
            ));
        }
        let mut kinds = Vec::new();
        for (i, k) in req.allowed_kinds.iter().enumerate() {
            match pb::RecordKind::try_from(*k)
                .ok()
                .and_then(convert::stored_kind)
            {
                Some(stored) => {
                    if !kinds.contains(&stored) {
                        kinds.push(stored);
                    }
                }
                None => {
                    return Err(reject!(
                        FieldInvalid,
                        "allowed_kinds[{i}]: expected PROVISIONING or CALIBRATION"
                    ))
                }
            }
        }
        if req.allowed_models.is_empty() || req.allowed_models.len() > MAX_MODELS {
            return Err(reject!(
                FieldInvalid,
                "allowed_models: expected 1..{MAX_MODELS} models, or \"*\""
            ));
        }
        for (i, m) in req.allowed_models.iter().enumerate() {
            if m != "*" {
                Model::parse(m, Reason::FieldInvalid, &format!("allowed_models[{i}]"))?;
            }
        }
        let entry = StationEntry {
            station_id: id.as_str().to_owned(),
            spki_der: key.spki_der().to_vec(),
            allowed_kinds: kinds,
            allowed_models: req.allowed_models,
            allow_rekey: req.allow_rekey,
            registered_at: app.clock.now_ms(),
            ..StationEntry::default()
        };
        let note = AuditNote::new(
            app.clock.now_ms(),
            &caller.name,
            "station.register",
            id.as_str(),
        )
        .details(format!("key {}", key.key_id()));
        let stored = app
            .store
            .register_station(entry, &note)
            .await
            .map_err(|e| app.store_err(e))?;
        tracing::info!(station = %id, key_id = %key.key_id(), "station registered");
        Ok(convert::station(stored))
    }

    async fn revoke(
        &self,
        caller: &Principal,
        req: pb::RevokeStationRequest,
    ) -> Result<pb::Station, Rejection> {
        let app = &self.app;
        let id = StationId::parse(&req.station_id, Reason::FieldInvalid, "station_id")?;
        if req.reason.trim().is_empty() || req.reason.len() > 1024 {
            return Err(reject!(
                FieldInvalid,
                "reason: required, at most 1024 bytes"
            ));
        }
        let note = AuditNote::new(
            app.clock.now_ms(),
            &caller.name,
            "station.revoke",
            id.as_str(),
        )
        .reason(&req.reason);
        let s = app
            .store
            .revoke_station(id.as_str(), &req.reason, &note)
            .await
            .map_err(|e| app.store_err(e))?;
        // Units relying on its records are re-appraised.
        app.work.notify_one();
        tracing::warn!(station = %id, "station revoked");
        Ok(convert::station(s))
    }

    async fn revoke_device(
        &self,
        caller: &Principal,
        req: pb::RevokeDeviceRequest,
    ) -> Result<pb::RevokeDeviceResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        if req.reason.trim().is_empty() || req.reason.len() > 1024 {
            return Err(reject!(
                FieldInvalid,
                "reason: required, at most 1024 bytes"
            ));
        }
        let audit = AuditNote::new(
            app.clock.now_ms(),
            &caller.name,
            "device.revoke",
            serial.as_str(),
        )
        .reason(&req.reason);
        let flag = Flag::Revoke { reason: req.reason };
        let d = set_flag(app, &serial, flag, audit).await?;
        tracing::warn!(serial = %serial, status = d.status, "device revoked");
        Ok(pb::RevokeDeviceResponse {
            serial: d.serial,
            revoked: d.revoked,
            reason: d.revoked_reason,
        })
    }

    async fn assign(
        &self,
        caller: &Principal,
        req: pb::AssignDeviceRequest,
    ) -> Result<pb::AssignDeviceResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        for (name, v) in [
            ("tenant", &req.tenant),
            ("site", &req.site),
            ("department", &req.department),
            ("asset_tag", &req.asset_tag),
        ] {
            if v.len() > 128 || v.chars().any(char::is_control) {
                return Err(reject!(
                    FieldInvalid,
                    "{name}: at most 128 bytes, no control characters"
                ));
            }
        }
        if req.tenant.is_empty() && !(req.site.is_empty() && req.department.is_empty()) {
            return Err(reject!(
                FieldInvalid,
                "tenant: required to assign a site or department"
            ));
        }
        let a = Assignment {
            tenant: req.tenant,
            site: req.site,
            department: req.department,
            asset_tag: req.asset_tag,
        };
        let note = AuditNote::new(
            app.clock.now_ms(),
            &caller.name,
            "device.assign",
            serial.as_str(),
        )
        .details(format!(
            "tenant {:?} site {:?} department {:?} asset {:?}",
            a.tenant, a.site, a.department, a.asset_tag
        ));
        let d = app
            .store
            .assign_device(serial.as_str(), &a, &note)
            .await
            .map_err(|e| app.store_err(e))?;
        tracing::info!(serial = %serial, tenant = %d.tenant, site = %d.site, "device assigned");
        Ok(pb::AssignDeviceResponse {
            serial: d.serial,
            tenant: d.tenant,
            site: d.site,
            department: d.department,
            asset_tag: d.asset_tag,
        })
    }

    async fn list(
        app: &Arc<App>,
        req: pb::ListStationsRequest,
    ) -> Result<pb::ListStationsResponse, Rejection> {
        let limit = app.page_size(req.page_size)?;
        let page = app
            .store
            .list_stations(page_token(&req.page_token), limit)
            .await
            .map_err(|e| app.store_err(e))?;
        Ok(pb::ListStationsResponse {
            stations: page.items.into_iter().map(convert::station).collect(),
            next_page_token: page.next.unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn register_station(
        &self,
        req: Request<pb::RegisterStationRequest>,
    ) -> Result<Response<pb::Station>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.register(&caller, r).await)
            .await
    }

    async fn revoke_station(
        &self,
        req: Request<pb::RevokeStationRequest>,
    ) -> Result<Response<pb::Station>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.revoke(&caller, r).await)
            .await
    }

    async fn revoke_device(
        &self,
        req: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.revoke_device(&caller, r).await)
            .await
    }

    async fn assign_device(
        &self,
        req: Request<pb::AssignDeviceRequest>,
    ) -> Result<Response<pb::AssignDeviceResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.assign(&caller, r).await)
            .await
    }

    async fn list_stations(
        &self,
        req: Request<pb::ListStationsRequest>,
    ) -> Result<Response<pb::ListStationsResponse>, Status> {
        self.app
            .answer(req, async |app, r| AdminService::list(app, r).await)
            .await
    }

    type BackupStream = backup::BackupStream;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<backup::BackupStream>, Status> {
        self.app
            .answer_as(req, async |caller, _| {
                backup::start(&self.app, self.key.as_ref(), &caller).await
            })
            .await
    }
}
