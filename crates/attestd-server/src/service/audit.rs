//! Audit: read the chain, for auditors and security admins. Entries are
//! written by the store in the same transaction as each change; this
//! service only reads (and signs the head at the end of an export).

use std::pin::Pin;
use std::sync::Arc;

use attestd_core::audit::export::Range;
use attestd_core::audit::GENESIS;
use attestd_core::{Reason, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::AuditRecord;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::checkpoint::CheckpointKey;

/// The `attestd.v1.Audit` service.
pub struct AuditService {
    /// What every handler shares.
    pub app: Arc<App>,
    /// Signs the head at the end of every export; none: exports end with an
    /// unsigned head (a verifier with a key refuses them).
    pub key: Option<Arc<CheckpointKey>>,
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

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportAuditItem, Status>> + Send>>;

fn item(i: pb::export_audit_item::Item) -> pb::ExportAuditItem {
    pb::ExportAuditItem { item: Some(i) }
}

/// A gap in the stored chain: the store is damaged.
fn missing(app: &App, seq: u64) -> Rejection {
    app.store_err(attestd_store::StoreError::Unavailable(format!(
        "audit entry {seq} is missing from the store"
    )))
}

/// A stored entry's hash; anything but 32 bytes is a damaged store.
fn hash32(app: &App, r: &AuditRecord) -> Result<[u8; 32], Rejection> {
    <[u8; 32]>::try_from(r.hash.as_slice()).map_err(|_| {
        app.store_err(attestd_store::StoreError::Unavailable(format!(
            "audit entry {} has a damaged hash ({} bytes)",
            r.seq,
            r.hash.len()
        )))
    })
}

impl AuditService {
    async fn list(
        app: &App,
        req: pb::ListAuditEventsRequest,
    ) -> Result<pb::ListAuditEventsResponse, Rejection> {
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
                .await
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

    async fn head(app: &App) -> Result<pb::AuditHead, Rejection> {
        let store = &app.store;
        let (sequence, hash) = store.audit_head().await.map_err(|e| app.store_err(e))?;
        let checkpoint = store
            .audit_last_checkpoint()
            .await
            .map_err(|e| app.store_err(e))?;
        Ok(pb::AuditHead {
            sequence,
            hash: hash.to_vec(),
            checkpoint: checkpoint.map(event),
        })
    }

    /// The range an export of `req` holds, checked against the chain now.
    async fn export_range(app: &App, req: &pb::ExportAuditRequest) -> Result<Range, Rejection> {
        let store = &app.store;
        let (head, _) = store.audit_head().await.map_err(|e| app.store_err(e))?;
        let after = req.after_sequence;
        if after > head {
            return Err(Rejection::new(
                Reason::FieldInvalid,
                format!("after_sequence {after} is beyond the head of the chain ({head})"),
            ));
        }
        let last = match req.up_to_sequence {
            0 => head,
            n => n.min(head),
        };
        if last < after {
            return Err(Rejection::new(
                Reason::FieldInvalid,
                format!("up_to_sequence {last} is before after_sequence {after}"),
            ));
        }
        let prev_hash = if after == 0 {
            GENESIS
        } else {
            let before = store
                .audit_after(after - 1, 1)
                .await
                .map_err(|e| app.store_err(e))?;
            match before.first() {
                Some(r) if r.seq == after => hash32(app, r)?,
                _ => return Err(missing(app, after)),
            }
        };
        Ok(Range {
            first: after + 1,
            last,
            prev_hash,
        })
    }

    /// The range, its entries, then the head at its end signed with the
    /// audit key. Entries are read in batches while streaming; the head
    /// signs the last entry actually sent.
    fn export(&self, range: Range) -> ExportStream {
        use pb::export_audit_item::Item;
        let app = self.app.clone();
        let key = self.key.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let header = pb::ExportRange {
                first_sequence: range.first,
                last_sequence: range.last,
                prev_hash: range.prev_hash.to_vec(),
            };
            if tx.send(Ok(item(Item::Range(header)))).await.is_err() {
                return;
            }
            let (mut after, mut hash) = (range.first - 1, range.prev_hash);
            while after < range.last {
                let batch = app
                    .store
                    .audit_after(after, SCAN_BATCH)
                    .await
                    .map_err(|e| app.store_err(e));
                let batch = match batch {
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => {
                        let _ = tx.send(Err(app.fail(missing(&app, after + 1)))).await;
                        return;
                    }
                    Err(r) => {
                        let _ = tx.send(Err(app.fail(r))).await;
                        return;
                    }
                };
                for r in batch {
                    if r.seq > range.last {
                        break;
                    }
                    // A gap or a damaged entry ends the stream without its
                    // head: the export is visibly incomplete.
                    let checked = if r.seq == after + 1 {
                        hash32(&app, &r)
                    } else {
                        Err(missing(&app, after + 1))
                    };
                    match checked {
                        Ok(h) => hash = h,
                        Err(e) => {
                            let _ = tx.send(Err(app.fail(e))).await;
                            return;
                        }
                    }
                    after = r.seq;
                    if tx.send(Ok(item(Item::Event(event(r))))).await.is_err() {
                        return;
                    }
                }
            }
            let at_ms = app.clock.now_ms();
            let head = match &key {
                Some(k) => k.sign_export_head(&range, after, hash, at_ms),
                None => attestd_core::audit::export::SignedHead {
                    seq: after,
                    hash,
                    at_ms,
                    key_id: String::new(),
                    signature: Vec::new(),
                },
            };
            let _ = tx
                .send(Ok(item(Item::Head(pb::SignedExportHead {
                    sequence: head.seq,
                    hash: head.hash.to_vec(),
                    at_ms: head.at_ms,
                    key_id: head.key_id,
                    signature: head.signature,
                }))))
                .await;
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        self.app
            .answer(req, async |app, r| AuditService::list(app, r).await)
            .await
    }

    async fn get_audit_head(
        &self,
        req: Request<pb::GetAuditHeadRequest>,
    ) -> Result<Response<pb::AuditHead>, Status> {
        self.app
            .answer(req, async |app, _| AuditService::head(app).await)
            .await
    }

    type ExportAuditStream = ExportStream;

    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let range = self
            .app
            .answer(req, async |app, r| {
                AuditService::export_range(app, &r).await
            })
            .await?;
        Ok(Response::new(self.export(range.into_inner())))
    }
}
