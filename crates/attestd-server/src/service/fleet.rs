//! Fleet: what hospital IT, MES, security and auditors see of the units.
//! A hospital-it principal sees only its tenant's units, in every RPC here:
//! other units answer NOT_FOUND, as if they did not exist.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use attestd_core::ids::{Digest, Model, Serial};
use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::{DeviceEntry, DeviceFilter, DeviceQuery, Group, HistoryItem, StoreError};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::app::{page_token, App};
use crate::auth::{Principal, Role};
use crate::convert;

/// The `attestd.v1.Fleet` service.
pub struct FleetService {
    /// What every handler shares.
    pub app: Arc<App>,
}

/// The tenant a principal is confined to, if any.
pub fn tenant_scope(caller: &Principal) -> Option<&str> {
    match caller.role {
        Role::HospitalIt => Some(caller.tenant.as_deref().unwrap_or("\u{0}no tenant")),
        _ => None,
    }
}

/// Whether the caller may see `d`.
pub fn visible(caller: &Principal, d: &DeviceEntry) -> bool {
    tenant_scope(caller).is_none_or(|t| d.tenant == t)
}

fn ms(t: &attestd_proto::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add((t.nanos / 1_000_000) as i64)
}

/// Checks a [`pb::DeviceFilter`] and applies the caller's tenant scope: the
/// filter as the store takes it.
pub fn checked_filter(
    f: Option<pb::DeviceFilter>,
    caller: &Principal,
) -> Result<DeviceFilter, Rejection> {
    let f = f.unwrap_or_default();
    let mut statuses = Vec::new();
    for (i, s) in f.statuses.iter().enumerate() {
        match pb::DeviceStatus::try_from(*s)
            .ok()
            .and_then(convert::stored_status)
        {
            Some(stored) => statuses.push(stored),
            None => {
                return Err(reject!(
                    FieldInvalid,
                    "filter.statuses[{i}]: not a device status"
                ));
            }
        }
    }
    if !f.model.is_empty() {
        Model::parse(&f.model, Reason::FieldInvalid, "filter.model")?;
    }
    let firmware_digest = match f.firmware_digest.as_str() {
        "" => None,
        h => Some(Digest::from_hex(h).ok_or_else(|| {
            reject!(
                FieldInvalid,
                "filter.firmware_digest: expected 64 lowercase hex characters"
            )
        })?),
    };
    let mut tenant = f.tenant;
    if let Some(own) = tenant_scope(caller) {
        if !tenant.is_empty() && tenant != own {
            return Err(reject!(
                TenantForbidden,
                "filter.tenant: a hospital-it principal sees only its own tenant"
            ));
        }
        tenant = own.to_owned();
    }
    Ok(DeviceFilter {
        statuses,
        model: f.model,
        hw_version: f.hw_version,
        tenant,
        site: f.site,
        department: f.department,
        firmware_digest: firmware_digest.map(|d| d.0),
        firmware_version: f.firmware_version,
        calibration_due_before: f.calibration_due_before.as_ref().map(|t| t.seconds),
        last_seen_before_ms: f.last_seen_before.as_ref().map(ms),
        last_seen_after_ms: f.last_seen_after.as_ref().map(ms),
    })
}

/// Tries of [`at_cursor`] before it settles for the cursor read first.
const CURSOR_TRIES: usize = 4;

/// Runs `read` and returns the change-feed cursor it reflects, so that a
/// watch from that cursor continues exactly where the read ended. The read
/// runs between two readings of the cursor; when both are equal no status
/// change was committed meanwhile (a change and its feed entry are one
/// atomic write, and a store's reads see a write whole or not at all), so
/// the read shows exactly the changes up to the cursor. Under a steady
/// stream of changes it settles, after a few tries, for the cursor read
/// before: every change up to it is shown, and a watch from it may repeat
/// a change the read already shows but never misses one.
async fn at_cursor<T, E, Fut>(
    store: &dyn attestd_store::Store,
    mut read: impl FnMut() -> Fut,
) -> Result<(T, u64), E>
where
    E: From<StoreError>,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        let before = store.change_cursor().await?;
        let out = read().await?;
        tries += 1;
        if store.change_cursor().await? == before || tries == CURSOR_TRIES {
            return Ok((out, before));
        }
    }
}

/// A stream of changes, ending with an error status if the reader lags.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::DeviceChange, Status>> + Send>>;

impl FleetService {
    /// The unit, if it exists and the caller may see it.
    async fn device_for(
        &self,
        caller: &Principal,
        serial: &str,
    ) -> Result<(Serial, DeviceEntry), Rejection> {
        let serial = Serial::parse(serial, Reason::FieldInvalid, "serial")?;
        match self
            .app
            .store
            .get_device(serial.as_str())
            .await
            .map_err(|e| self.app.store_err(e))?
        {
            Some(d) if visible(caller, &d) => Ok((serial, d)),
            _ => Err(reject!(DeviceNotFound, "serial {serial} is not enrolled")),
        }
    }

    async fn history(
        &self,
        caller: &Principal,
        req: pb::ListDeviceHistoryRequest,
    ) -> Result<pb::ListDeviceHistoryResponse, Rejection> {
        let app = &self.app;
        let (serial, _) = self.device_for(caller, &req.serial).await?;
        let limit = app.page_size(req.page_size)?;
        let page = app
            .store
            .list_history(serial.as_str(), page_token(&req.page_token), limit)
            .await
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
                    HistoryItem::Reappraisal(r) => {
                        pb::history_entry::Entry::Reappraisal(convert::reappraisal(r))
                    }
                    HistoryItem::Decision(d) => {
                        pb::history_entry::Entry::ReleaseDecision(convert::decision(d))
                    }
                }),
            })
            .collect();
        Ok(pb::ListDeviceHistoryResponse {
            entries,
            next_page_token: page.next.unwrap_or_default(),
        })
    }

    async fn device(
        &self,
        caller: &Principal,
        req: pb::GetDeviceRequest,
    ) -> Result<pb::Device, Rejection> {
        self.device_for(caller, &req.serial)
            .await
            .map(|(_, d)| convert::device(d))
    }

    async fn list(
        &self,
        caller: &Principal,
        req: pb::ListDevicesRequest,
    ) -> Result<pb::ListDevicesResponse, Rejection> {
        let app = &self.app;
        let filter = checked_filter(req.filter, caller)?;
        let limit = app.page_size(req.page_size)?;
        let query = DeviceQuery {
            filter,
            after: page_token(&req.page_token).map(str::to_owned),
            limit,
            budget: limit.saturating_mul(10).max(1000),
        };
        let (page, cursor) =
            at_cursor(app.store.as_ref(), || app.store.list_devices(query.clone()))
                .await
                .map_err(|e| app.store_err(e))?;
        Ok(pb::ListDevicesResponse {
            devices: page.items.into_iter().map(convert::device).collect(),
            next_page_token: page.next.unwrap_or_default(),
            cursor: cursor.to_string(),
        })
    }

    async fn summary(
        &self,
        caller: &Principal,
        req: pb::GetFleetSummaryRequest,
    ) -> Result<pb::FleetSummary, Rejection> {
        let app = &self.app;
        let f = req.filter.clone().unwrap_or_default();
        if !f.statuses.is_empty()
            || !f.hw_version.is_empty()
            || !f.site.is_empty()
            || !f.department.is_empty()
            || !f.firmware_digest.is_empty()
            || !f.firmware_version.is_empty()
            || f.calibration_due_before.is_some()
            || f.last_seen_before.is_some()
            || f.last_seen_after.is_some()
        {
            return Err(reject!(
                FieldInvalid,
                "filter: a summary filters by tenant and model only (use ListDevices for the rest)"
            ));
        }
        let filter = checked_filter(req.filter, caller)?;
        let group = match pb::SummaryGroup::try_from(req.group_by) {
            Ok(pb::SummaryGroup::Unspecified) => None,
            Ok(pb::SummaryGroup::Model) => Some(Group::Model),
            Ok(pb::SummaryGroup::Site) => Some(Group::Site),
            Ok(pb::SummaryGroup::Firmware) => Some(Group::Firmware),
            Err(_) => return Err(reject!(FieldInvalid, "group_by: not a summary group")),
        };
        let tenant = (!filter.tenant.is_empty()).then_some(filter.tenant.as_str());
        // The counters to read, and the model to keep of them.
        let (read_group, model) = match (group, filter.model.as_str()) {
            (None, "") => (Group::All, None),
            (Some(Group::Model), "") => (Group::Model, None),
            (None | Some(Group::Model), m) => (Group::Model, Some(m)),
            (Some(g), "") => (g, None),
            (Some(_), _) => {
                return Err(reject!(
                    FieldInvalid,
                    "filter.model: a summary filtered by model can only be grouped by model"
                ))
            }
        };
        let (counts, cursor) =
            at_cursor(app.store.as_ref(), || app.store.summary(read_group, tenant))
                .await
                .map_err(|e| app.store_err(e))?;
        let counts: Vec<_> = counts
            .into_iter()
            .filter(|(k, _, _)| model.is_none_or(|m| k == m))
            .collect();
        let mut summary = convert::summary(&counts, group.is_some());
        summary.cursor = cursor.to_string();
        Ok(summary)
    }

    /// The change stream of WatchFleet (public for in-process tests).
    pub async fn watch(
        &self,
        caller: &Principal,
        req: pb::WatchFleetRequest,
    ) -> Result<(u64, ChangeStream), Rejection> {
        let app = self.app.clone();
        // A change carries status, model, tenant and site: a filter on
        // anything else cannot be applied to it, so it is refused rather
        // than silently ignored.
        let f = req.filter.clone().unwrap_or_default();
        for (name, set) in [
            ("hw_version", !f.hw_version.is_empty()),
            ("department", !f.department.is_empty()),
            ("firmware_digest", !f.firmware_digest.is_empty()),
            ("firmware_version", !f.firmware_version.is_empty()),
            ("calibration_due_before", f.calibration_due_before.is_some()),
            ("last_seen_before", f.last_seen_before.is_some()),
            ("last_seen_after", f.last_seen_after.is_some()),
        ] {
            if set {
                return Err(reject!(
                    FieldInvalid,
                    "filter.{name}: a watch filters by statuses, model, tenant and site only"
                ));
            }
        }
        let filter = checked_filter(req.filter, caller)?;
        let bounds = app
            .store
            .change_bounds()
            .await
            .map_err(|e| app.store_err(e))?;
        let mut cursor = match req.after_cursor.as_str() {
            "" => app
                .store
                .change_cursor()
                .await
                .map_err(|e| app.store_err(e))?,
            c => c.parse::<u64>().map_err(|_| {
                reject!(
                    FieldInvalid,
                    "after_cursor: not a cursor this server issued"
                )
            })?,
        };
        if let Some((first, _)) = bounds {
            if cursor + 1 < first {
                return Err(reject!(
                    CursorExpired,
                    "after_cursor: changes up to {} are no longer kept; read the fleet again and watch from now",
                    first - 1
                ));
            }
        }
        let start = cursor;
        let buffer = app.limits.watch_buffer.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::DeviceChange, Status>>(buffer);
        let poll = Duration::from_millis(app.limits.watch_poll_ms.max(10));
        let patience = Duration::from_millis(app.limits.watch_lag_timeout_ms.max(1));
        // The stream reads the change feed on its own: writers never wait for
        // it. A reader that leaves the buffer full for longer than `patience`
        // is told it fell behind (after the changes already buffered) and
        // resumes from its cursor.
        let mut draining = app.draining.subscribe();
        // The server is stopping: the caller is told to reconnect (to this
        // server once it is back, or to another replica) from its cursor.
        let reconnect = |app: &App, cursor: u64| {
            app.fail(reject!(
                ShuttingDown,
                "the server is shutting down; reconnect and resume after cursor {cursor}"
            ))
        };
        tokio::spawn(async move {
            loop {
                if *draining.borrow() {
                    let _ = tx.send(Err(reconnect(&app, cursor))).await;
                    return;
                }
                let read = app
                    .store
                    .changes_after(cursor, buffer)
                    .await
                    .map_err(|e| app.store_err(e));
                let batch = match read {
                    Ok(b) => b,
                    Err(r) => {
                        let _ = tx.send(Err(app.fail(r))).await;
                        return;
                    }
                };
                if batch.first().is_some_and(|c| c.seq > cursor + 1) {
                    // Trimmed under the reader's feet: it fell behind the retention.
                    let r = reject!(WatchLagged, "fell behind the change feed's retention after cursor {cursor}; read the fleet again and watch from now");
                    let _ = tx.send(Err(app.fail(r))).await;
                    return;
                }
                let idle = batch.is_empty();
                for c in batch {
                    if !filter.admits(&c) {
                        cursor = c.seq;
                        continue;
                    }
                    let sent = tokio::select! {
                        sent = tokio::time::timeout(patience, tx.send(Ok(convert::change(c.clone())))) => sent,
                        () = async { let _ = draining.wait_for(|d| *d).await; } => {
                            // A full buffer is waited for as long as a
                            // slow reader is (within the drain deadline).
                            let status = Err(reconnect(&app, cursor));
                            let _ = tokio::time::timeout(patience, tx.send(status)).await;
                            return;
                        }
                    };
                    match sent {
                        Ok(Ok(())) => cursor = c.seq,
                        // The reader went away.
                        Ok(Err(_)) => return,
                        Err(_) => {
                            let r = reject!(
                                WatchLagged,
                                "the reader fell behind; resume from cursor {cursor}"
                            );
                            let _ = tx.send(Err(app.fail(r))).await;
                            return;
                        }
                    }
                }
                if idle {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {}
                        _ = draining.wait_for(|d| *d) => {}
                    }
                }
            }
        });
        Ok((
            start,
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)),
        ))
    }

    async fn evidence(&self, req: pb::GetEvidenceRequest) -> Result<pb::StoredEvidence, Rejection> {
        let app = &self.app;
        app.store
            .get_evidence(&req.evidence_id)
            .await
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

/// Answers a call with its authenticated caller: `$call` is the handler
/// method; a refusal is counted, logged and turned into its status.
macro_rules! with_caller {
    ($svc:expr, $req:expr, $call:ident) => {
        $svc.app
            .answer_as($req, async |caller, r| $svc.$call(&caller, r).await)
            .await
    };
}

/// The metadata key of the change-feed cursor a watch starts after.
pub const CURSOR_HEADER: &str = "attestd-cursor";

#[tonic::async_trait]
impl pb::fleet_server::Fleet for FleetService {
    async fn get_device(
        &self,
        req: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        with_caller!(self, req, device)
    }

    async fn list_devices(
        &self,
        req: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        with_caller!(self, req, list)
    }

    async fn get_fleet_summary(
        &self,
        req: Request<pb::GetFleetSummaryRequest>,
    ) -> Result<Response<pb::FleetSummary>, Status> {
        with_caller!(self, req, summary)
    }

    type WatchFleetStream = ChangeStream;

    async fn watch_fleet(
        &self,
        req: Request<pb::WatchFleetRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let (cursor, stream) = with_caller!(self, req, watch)?.into_inner();
        let mut resp = Response::new(stream);
        if let Ok(v) = cursor.to_string().parse() {
            resp.metadata_mut().insert(CURSOR_HEADER, v);
        }
        Ok(resp)
    }

    async fn list_device_history(
        &self,
        req: Request<pb::ListDeviceHistoryRequest>,
    ) -> Result<Response<pb::ListDeviceHistoryResponse>, Status> {
        with_caller!(self, req, history)
    }

    async fn get_evidence(
        &self,
        req: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<pb::StoredEvidence>, Status> {
        self.app
            .answer(req, async |app, r| {
                FleetService { app: app.clone() }.evidence(r).await
            })
            .await
    }
}
