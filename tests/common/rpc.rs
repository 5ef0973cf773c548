//! Calls any RPC of the API by its path with an empty request, for tests
//! that walk the authorization matrix.

use attestd_client::{pb, Client};

/// Calls `path` with an empty request; returns the status (Ok maps to OK).
pub(crate) async fn call(c: &Client, path: &str) -> tonic::Status {
    macro_rules! go {
        ($e:expr) => {
            match $e.await {
                Ok(_) => tonic::Status::ok(""),
                Err(s) => s,
            }
        };
    }
    match path {
        "/attestd.v1.DeviceAttestation/GetChallenge" => {
            go!(c.device().get_challenge(pb::GetChallengeRequest::default()))
        }
        "/attestd.v1.DeviceAttestation/SubmitEvidence" => go!(c
            .device()
            .submit_evidence(pb::SubmitEvidenceRequest::default())),
        "/attestd.v1.Factory/SubmitRecord" => go!(c
            .factory()
            .submit_record(pb::SubmitRecordRequest::default())),
        "/attestd.v1.Factory/GetRecord" => {
            go!(c.factory().get_record(pb::GetRecordRequest::default()))
        }
        "/attestd.v1.Factory/ListRecords" => {
            go!(c.factory().list_records(pb::ListRecordsRequest::default()))
        }
        "/attestd.v1.Admin/RegisterStation" => go!(c
            .admin()
            .register_station(pb::RegisterStationRequest::default())),
        "/attestd.v1.Admin/RevokeStation" => go!(c
            .admin()
            .revoke_station(pb::RevokeStationRequest::default())),
        "/attestd.v1.Admin/ListStations" => {
            go!(c.admin().list_stations(pb::ListStationsRequest::default()))
        }
        "/attestd.v1.Fleet/ListDeviceHistory" => go!(c
            .fleet()
            .list_device_history(pb::ListDeviceHistoryRequest::default())),
        "/attestd.v1.Fleet/GetEvidence" => {
            go!(c.fleet().get_evidence(pb::GetEvidenceRequest::default()))
        }
        "/attestd.v1.Admin/RevokeDevice" => {
            go!(c.admin().revoke_device(pb::RevokeDeviceRequest::default()))
        }
        "/attestd.v1.Baselines/PublishBaseline" => {
            go!(c
                .baselines()
                .publish_baseline(pb::PublishBaselineRequest::default()))
        }
        "/attestd.v1.Baselines/GetBaseline" => {
            go!(c
                .baselines()
                .get_baseline(pb::GetBaselineRequest::default()))
        }
        "/attestd.v1.Baselines/ListBaselines" => {
            go!(c
                .baselines()
                .list_baselines(pb::ListBaselinesRequest::default()))
        }
        "/attestd.v1.Fleet/GetDevice" => go!(c.fleet().get_device(pb::GetDeviceRequest::default())),
        "/attestd.v1.Admin/Backup" => go!(c.admin().backup(pb::BackupRequest::default())),
        "/attestd.v1.Admin/AssignDevice" => {
            go!(c.admin().assign_device(pb::AssignDeviceRequest::default()))
        }
        "/attestd.v1.Fleet/ListDevices" => {
            go!(c.fleet().list_devices(pb::ListDevicesRequest::default()))
        }
        "/attestd.v1.Fleet/GetFleetSummary" => {
            go!(c
                .fleet()
                .get_fleet_summary(pb::GetFleetSummaryRequest::default()))
        }
        "/attestd.v1.Fleet/WatchFleet" => {
            go!(c.fleet().watch_fleet(pb::WatchFleetRequest::default()))
        }
        "/attestd.v1.Release/CheckRelease" => {
            go!(c
                .release()
                .check_release(pb::CheckReleaseRequest::default()))
        }
        "/attestd.v1.Release/CheckReleaseBatch" => {
            go!(c
                .release()
                .check_release_batch(pb::CheckReleaseBatchRequest::default()))
        }
        "/attestd.v1.Release/SetQuarantine" => {
            go!(c
                .release()
                .set_quarantine(pb::SetQuarantineRequest::default()))
        }
        "/attestd.v1.Release/GrantConcession" => {
            go!(c
                .release()
                .grant_concession(pb::GrantConcessionRequest::default()))
        }
        "/attestd.v1.Release/GetResultKeys" => {
            go!(c
                .release()
                .get_result_keys(pb::GetResultKeysRequest::default()))
        }
        "/attestd.v1.Audit/ListAuditEvents" => {
            go!(c
                .audit()
                .list_audit_events(pb::ListAuditEventsRequest::default()))
        }
        "/attestd.v1.Audit/GetAuditHead" => {
            go!(c.audit().get_audit_head(pb::GetAuditHeadRequest::default()))
        }
        "/attestd.v1.Audit/ExportAudit" => {
            go!(c.audit().export_audit(pb::ExportAuditRequest::default()))
        }
        other => panic!("the matrix test does not know how to call {other}: add it here"),
    }
}
