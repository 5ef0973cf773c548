//! Fleet: a unit's current verdict, its history and its raw evidence. A
//! hospital-it principal sees only units assigned to its tenant; assignment
//! arrives with the fleet views, so until then it sees none (fail closed).

use std::sync::Arc;

use attestd_core::ids::Serial;
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::HistoryItem;
use tonic::{Request, Response, Status};

use crate::app::{page_token, principal, App};
use crate::auth::{Principal, Role};
use crate::convert;

pub struct FleetService {
    pub app: Arc<App>,
}

impl FleetService {
    /// Refuses units the principal may not see, as if they did not exist.
    fn visible(&self, caller: &Principal, serial: &Serial) -> Result<(), Rejection> {
        let exists = self
            .app
            .store
            .get_device(serial.as_str())
            .map_err(|e| self.app.store_err(e))?
            .is_some();
        if !exists || caller.role == Role::HospitalIt {
            return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled"));
        }
        Ok(())
    }

    fn history(
        &self,
        caller: &Principal,
        req: pb::ListDeviceHistoryRequest,
    ) -> Result<pb::ListDeviceHistoryResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        self.visible(caller, &serial)?;
        let limit = app.page_size(req.page_size)?;
        let page = app
            .store
            .list_history(serial.as_str(), page_token(&req.page_token), limit)
            .map_err(|e| app.store_err(e))?;
        let entries = page
            .items
            .into_iter()
            .map(|item| pb::HistoryEntry {
                entry: Some(match item {
                    HistoryItem::Evidence(e) => {
                        pb::history_entry::Entry::Evidence(convert::evidence(e))
                    }
                    HistoryItem::Record(r) => pb::history_entry::Entry::Record(convert::record(r)),
                }),
            })
            .collect();
        Ok(pb::ListDeviceHistoryResponse {
            entries,
            next_page_token: page.next.unwrap_or_default(),
        })
    }

    fn device(
        &self,
        caller: &Principal,
        req: pb::GetDeviceRequest,
    ) -> Result<pb::Device, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        self.visible(caller, &serial)?;
        app.store
            .get_device(serial.as_str())
            .map_err(|e| app.store_err(e))?
            .map(convert::device)
            .ok_or_else(|| reject!(DeviceNotFound, "serial {serial} is not enrolled"))
    }

    fn evidence(&self, req: pb::GetEvidenceRequest) -> Result<pb::StoredEvidence, Rejection> {
        let app = &self.app;
        app.store
            .get_evidence(&req.evidence_id)
            .map_err(|e| app.store_err(e))?
            .map(convert::evidence)
            .ok_or_else(|| {
                reject!(
                    EvidenceNotFound,
                    "evidence_id: no evidence {}",
                    req.evidence_id.chars().take(80).collect::<String>()
                )
            })
    }
}

#[tonic::async_trait]
impl pb::fleet_server::Fleet for FleetService {
    async fn get_device(
        &self,
        req: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let run = || {
            let caller = principal(&req)?;
            self.device(&caller, req.get_ref().clone())
        };
        run()
            .map(Response::new)
            .map_err(|r| self.app.fail("GetDevice", r))
    }

    async fn list_device_history(
        &self,
        req: Request<pb::ListDeviceHistoryRequest>,
    ) -> Result<Response<pb::ListDeviceHistoryResponse>, Status> {
        let run = || {
            let caller = principal(&req)?;
            self.history(&caller, req.get_ref().clone())
        };
        run()
            .map(Response::new)
            .map_err(|r| self.app.fail("ListDeviceHistory", r))
    }

    async fn get_evidence(
        &self,
        req: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<pb::StoredEvidence>, Status> {
        self.evidence(req.into_inner())
            .map(Response::new)
            .map_err(|r| self.app.fail("GetEvidence", r))
    }
}
