//! Audit exports: the `ExportAudit` stream written as the export file that
//! `docs/audit-format.md` specifies (range line, entry lines, signed-head
//! line), so attestctl, the tests and auditors' own tools write one format.

use attestd_core::audit::export::{entry_line, head_line, range_line, Range, SignedHead};
use attestd_core::audit::AuditEntry;
use attestd_proto::v1 as pb;
use tonic::Status;

use crate::Client;

/// An export file's text and how many entries it holds.
pub struct ExportFile {
    /// The export file, one JSON line per range, entry and signed head (docs/audit-format.md §4).
    pub text: String,
    /// How many entries it holds.
    pub entries: u64,
}

fn hash(h: &[u8], what: &str) -> Result<[u8; 32], Status> {
    <[u8; 32]>::try_from(h).map_err(|_| {
        Status::data_loss(format!(
            "the server sent a {what} of {} bytes, not 32",
            h.len()
        ))
    })
}

/// An entry as the core type.
pub fn entry(e: pb::AuditEvent) -> Result<AuditEntry, Status> {
    Ok(AuditEntry {
        prev_hash: hash(&e.prev_hash, "prev_hash")?,
        hash: hash(&e.hash, "hash")?,
        seq: e.sequence,
        at_ms: e.at_ms,
        principal: e.principal,
        action: e.action,
        target: e.target,
        reason: e.reason,
        details: e.details,
    })
}

/// Exports the entries after `after` up to `up_to` (0: the head) as an
/// export file; `progress` is called with the number of entries so far.
/// Fails when the stream is not range, entries, signed head (a stream cut
/// short is an error, not a shorter file).
pub async fn export_file(
    client: &Client,
    after: u64,
    up_to: u64,
    mut progress: impl FnMut(u64),
) -> Result<ExportFile, Status> {
    use pb::export_audit_item::Item;
    let mut stream = client
        .audit()
        .export_audit(pb::ExportAuditRequest {
            after_sequence: after,
            up_to_sequence: up_to,
        })
        .await?
        .into_inner();
    let mut text = String::new();
    let mut entries = 0u64;
    let mut ranged = false;
    let mut ended = false;
    let out_of_order = |what: &str| Status::data_loss(format!("the export stream sent {what}"));
    while let Some(i) = stream.message().await? {
        if ended {
            return Err(out_of_order("an item after its signed head"));
        }
        match i.item {
            Some(Item::Range(r)) if !ranged => {
                ranged = true;
                text.push_str(&range_line(&Range {
                    first: r.first_sequence,
                    last: r.last_sequence,
                    prev_hash: hash(&r.prev_hash, "prev_hash")?,
                }));
            }
            Some(Item::Event(e)) if ranged => {
                text.push_str(&entry_line(&entry(e)?));
                entries += 1;
                progress(entries);
            }
            Some(Item::Head(h)) if ranged => {
                ended = true;
                text.push_str(&head_line(&SignedHead {
                    seq: h.sequence,
                    hash: hash(&h.hash, "hash")?,
                    at_ms: h.at_ms,
                    key_id: h.key_id,
                    signature: h.signature,
                }));
            }
            _ => return Err(out_of_order("an item out of order (range, entries, head)")),
        }
        text.push('\n');
    }
    if !ended {
        return Err(Status::data_loss(
            "the export stream ended before its signed head: the export is incomplete",
        ));
    }
    Ok(ExportFile { text, entries })
}
