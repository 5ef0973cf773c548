//! Factory: station records. The caller must be a station principal, the
//! record must name that station, and the DSSE signature must verify with
//! the key registered for it.

use std::sync::Arc;

use attestd_core::dsse;
use attestd_core::ids::Serial;
use attestd_core::keys::PublicKey;
use attestd_core::record::{record_id, Record, RecordKind};
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{
    AuditNote, Enrollment, RecordCommit, RecordEntry, RecordOutcome, SignatureEntry,
};
use tonic::{Request, Response, Status};

use crate::app::{page_token, App};
use crate::auth::Principal;
use crate::convert;
use crate::verdict::calibration_entry;
use attestd_core::appraisal::CalibrationFacts;

/// The `attestd.v1.Factory` service.
pub struct FactoryService {
    /// What every handler shares.
    pub app: Arc<App>,
}

/// The stored code of a record kind.
pub fn kind_code(k: RecordKind) -> i32 {
    attestd_store::codes::kind(k)
}

/// The API envelope as the core type.
pub fn envelope(pb: pb::Envelope) -> dsse::Envelope {
    dsse::Envelope {
        payload: pb.payload,
        payload_type: pb.payload_type,
        signatures: pb
            .signatures
            .into_iter()
            .map(|s| dsse::Signature {
                sig: s.sig,
                keyid: s.keyid,
            })
            .collect(),
    }
}

impl FactoryService {
    async fn submit(
        &self,
        caller: &Principal,
        req: pb::SubmitRecordRequest,
    ) -> Result<pb::SubmitRecordResponse, Rejection> {
        let app = &self.app;
        // A write is on its way: a store that groups writes may wait for it.
        let announced = app.store.announce();
        let commit = self.check(caller, req).await?;
        drop(announced);
        // Durable on return, a duplicate too (the store answers a duplicate
        // only once the original is durable).
        let outcome = app
            .store
            .commit_record(commit)
            .await
            .map_err(|e| app.store_err(e))?;
        // The unit's verdict follows its new record.
        app.work.notify_one();
        let (stored, duplicate) = match outcome {
            RecordOutcome::Stored(e) => {
                app.metrics.records_accepted.inc();
                (e, false)
            }
            RecordOutcome::Duplicate(e) => {
                app.metrics.records_duplicate.inc();
                (e, true)
            }
        };
        tracing::debug!(record_id = %stored.record_id, serial = %stored.serial, station = %stored.station_id, duplicate, "record accepted");
        Ok(pb::SubmitRecordResponse {
            record_id: stored.record_id,
            serial: stored.serial,
            kind: stored.kind,
            duplicate,
        })
    }

    /// Checks a record and prepares its write.
    async fn check(
        &self,
        caller: &Principal,
        req: pb::SubmitRecordRequest,
    ) -> Result<RecordCommit, Rejection> {
        let app = &self.app;
        let env = envelope(
            req.envelope
                .ok_or_else(|| reject!(FieldInvalid, "envelope: required"))?,
        );
        env.check_bounds()?;
        let record = Record::parse(&env.payload_type, &env.payload)?;
        let sid = record.station_id();
        if caller.station_id.as_ref() != Some(sid) {
            return Err(reject!(
                StationNotAuthorized,
                "station_id: principal {} may only submit records of its own station",
                caller.name
            ));
        }
        let station = app
            .store
            .get_station(sid.as_str())
            .await
            .map_err(|e| app.store_err(e))?
            .ok_or_else(|| reject!(UnknownStation, "station {sid} is not registered"))?;
        let key = PublicKey::from_enrolled_spki_der(&station.spki_der, "stored station key")?;
        let now_ms = app.clock.now_ms();
        if !env.signed_by(&key) {
            app.security
                .raise("station", sid.as_str(), Reason::SignatureInvalid, now_ms);
            return Err(reject!(
                SignatureInvalid,
                "no signature verifies with the key registered for station {sid}"
            ));
        }
        if station.revoked {
            app.security
                .raise("station", sid.as_str(), Reason::StationRevoked, now_ms);
            return Err(reject!(StationRevoked, "station {sid} is revoked"));
        }
        let kind = record.kind();
        if !station.allowed_kinds.contains(&kind_code(kind)) {
            return Err(reject!(
                StationNotAuthorized,
                "station {sid} is not allowed to submit {} records",
                kind.payload_type()
            ));
        }
        let model = match &record {
            Record::Provisioning(p) => p.model.as_str().to_owned(),
            Record::Calibration(c) => {
                app.store
                    .get_device(c.serial.as_str())
                    .await
                    .map_err(|e| app.store_err(e))?
                    .ok_or_else(|| reject!(DeviceNotFound, "serial: {} is not enrolled", c.serial))?
                    .model
            }
        };
        attestd_store::rules::check_station_for_model(&station, &model)?;
        let now = app.clock.now();
        if record.performed_at() > now.plus_seconds(app.limits.clock_skew_secs) {
            return Err(reject!(
                ClockSkew,
                "performed_at: {} is in the future",
                record.performed_at()
            ));
        }
        let id = record_id(&env.payload_type, &env.payload);
        let enrollment = match &record {
            Record::Provisioning(p) => Some(Enrollment {
                model: p.model.as_str().to_owned(),
                hw_version: p.hw_version.clone(),
                spki_der: p.device_key.spki_der().to_vec(),
                key_id: p.device_key.key_id(),
                supersedes: p.supersedes.clone(),
            }),
            Record::Calibration(_) => None,
        };
        let calibration = match &record {
            Record::Calibration(c) => Some(calibration_entry(&CalibrationFacts::from_record(
                c, &id, now_ms,
            ))),
            Record::Provisioning(_) => None,
        };
        let audit = AuditNote::new(
            now_ms,
            &caller.name,
            match kind {
                RecordKind::Provisioning => "record.provisioning",
                RecordKind::Calibration => "record.calibration",
            },
            record.serial().as_str(),
        )
        .details(format!(
            "{id}; station {sid} sequence {}",
            record.sequence()
        ));
        let entry = RecordEntry {
            record_id: id.clone(),
            kind: kind_code(kind),
            serial: record.serial().as_str().to_owned(),
            station_id: sid.as_str().to_owned(),
            sequence: record.sequence(),
            performed_at: record.performed_at().0,
            received_at: now_ms,
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
        };
        Ok(RecordCommit {
            entry,
            enrollment,
            audit,
            calibration,
        })
    }

    async fn get(&self, req: pb::GetRecordRequest) -> Result<pb::StoredRecord, Rejection> {
        let app = &self.app;
        app.store
            .get_record(&req.record_id)
            .await
            .map_err(|e| app.store_err(e))?
            .map(convert::record)
            .ok_or_else(|| {
                reject!(
                    RecordNotFound,
                    "record_id: no record {}",
                    req.record_id.chars().take(80).collect::<String>()
                )
            })
    }

    async fn list(
        &self,
        req: pb::ListRecordsRequest,
    ) -> Result<pb::ListRecordsResponse, Rejection> {
        let app = &self.app;
        let serial = Serial::parse(&req.serial, Reason::FieldInvalid, "serial")?;
        let limit = app.page_size(req.page_size)?;
        let page = app
            .store
            .list_records(serial.as_str(), page_token(&req.page_token), limit)
            .await
            .map_err(|e| app.store_err(e))?;
        Ok(pb::ListRecordsResponse {
            records: page.items.into_iter().map(convert::record).collect(),
            next_page_token: page.next.unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl pb::factory_server::Factory for FactoryService {
    async fn submit_record(
        &self,
        req: Request<pb::SubmitRecordRequest>,
    ) -> Result<Response<pb::SubmitRecordResponse>, Status> {
        self.app
            .answer_as(req, async |caller, r| self.submit(&caller, r).await)
            .await
    }

    async fn get_record(
        &self,
        req: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::StoredRecord>, Status> {
        self.app
            .answer(req, async |app, r| {
                FactoryService { app: app.clone() }.get(r).await
            })
            .await
    }

    async fn list_records(
        &self,
        req: Request<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::ListRecordsResponse>, Status> {
        self.app
            .answer(req, async |app, r| {
                FactoryService { app: app.clone() }.list(r).await
            })
            .await
    }
}
