//! Audit: read the chain, for auditors and security admins. Entries are
//! written by the store in the same transaction as each change; this
//! service only reads.

use std::pin::Pin;
use std::sync::Arc;

use attestd_core::Rejection;
use attestd_proto::v1 as pb;
use attestd_store::AuditRecord;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::app::App;

pub struct AuditService {
    pub app: Arc<App>,
}

fn event(r: AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        sequence: r.seq,
        at_ms: r.at_ms,
        principal: r.principal,
        action: r.action,
        target: r.target,
        reason: r.reason,
        details: r.details,
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// Entries read from the store at a time while filtering.
const SCAN_BATCH: usize = 512;
/// Entries one ListAuditEvents call examines at most.
const SCAN_BUDGET: usize = 20_000;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

impl AuditService {
    fn list(
        &self,
        req: pb::ListAuditEventsRequest,
    ) -> Result<pb::ListAuditEventsResponse, Rejection> {
        let app = &self.app;
        let limit = app.page_size(req.page_size)?;
        let keep = |r: &AuditRecord| {
            (req.principal.is_empty() || r.principal == req.principal)
                && (req.action.is_empty() || r.action == req.action)
                && (req.target.is_empty() || r.target == req.target)
        };
        let mut events = Vec::new();
        let mut after = req.after_sequence;
        let mut examined = 0;
        loop {
            let batch = app
                .store
                .audit_after(after, SCAN_BATCH)
                .map_err(|e| app.store_err(e))?;
            let exhausted = batch.len() < SCAN_BATCH;
            for r in batch {
                after = r.seq;
                examined += 1;
                if keep(&r) {
                    events.push(event(r));
                    if events.len() == limit {
                        break;
                    }
                }
            }
            if events.len() == limit || examined >= SCAN_BUDGET {
                // More may follow: continue after the last entry examined.
                return Ok(pb::ListAuditEventsResponse {
                    events,
                    next_after_sequence: after,
                });
            }
            if exhausted {
                return Ok(pb::ListAuditEventsResponse {
                    events,
                    next_after_sequence: 0,
                });
            }
        }
    }

    fn head(&self) -> Result<pb::AuditHead, Rejection> {
        let store = &self.app.store;
        let (sequence, hash) = store.audit_head().map_err(|e| self.app.store_err(e))?;
        let checkpoint = store
            .audit_last_checkpoint()
            .map_err(|e| self.app.store_err(e))?;
        Ok(pb::AuditHead {
            sequence,
            hash: hash.to_vec(),
            checkpoint: checkpoint.map(event),
        })
    }

    fn export(&self, req: pb::ExportAuditRequest) -> Result<EventStream, Rejection> {
        let app = self.app.clone();
        let up_to = match req.up_to_sequence {
            0 => app.store.audit_head().map_err(|e| app.store_err(e))?.0,
            n => n,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut after = req.after_sequence;
            while after < up_to {
                let batch = match app.store.audit_after(after, 512) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx
                            .send(Err(app.fail("ExportAudit", app.store_err(e))))
                            .await;
                        return;
                    }
                };
                if batch.is_empty() {
                    return;
                }
                for r in batch {
                    if r.seq > up_to {
                        return;
                    }
                    after = r.seq;
                    if tx.send(Ok(event(r))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        self.list(req.into_inner())
            .map(Response::new)
            .map_err(|r| self.app.fail("ListAuditEvents", r))
    }

    async fn get_audit_head(
        &self,
        _req: Request<pb::GetAuditHeadRequest>,
    ) -> Result<Response<pb::AuditHead>, Status> {
        self.head()
            .map(Response::new)
            .map_err(|r| self.app.fail("GetAuditHead", r))
    }

    type ExportAuditStream = EventStream;

    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.export(req.into_inner())
            .map(Response::new)
            .map_err(|r| self.app.fail("ExportAudit", r))
    }
}
