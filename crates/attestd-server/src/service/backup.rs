//! `Admin.Backup`: a consistent copy of the store, sealed in the audit
//! chain, streamed as the bytes of a backup file
//! (`attestd_store::backup`). The store makes the copy
//! ([`attestd_store::Store::backup`]: writes wait meanwhile, reads go on);
//! this module says who asked, signs the checkpoint that ends the copy, and
//! streams the file after the writes are going again, so a slow client
//! never holds them up.

use std::io::{self, BufWriter, Write};
use std::pin::Pin;
use std::sync::Arc;

use attestd_core::audit::CHECKPOINT_ACTION;
use attestd_core::{reject, Rejection};
use attestd_proto::v1 as pb;
use attestd_store::backup::{encode, Seal};
use attestd_store::AuditNote;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use crate::app::App;
use crate::auth::Principal;
use crate::checkpoint::CheckpointKey;

/// The stream `Admin.Backup` answers with.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

/// Bytes per message: far below gRPC's default 4 MiB message limit.
const CHUNK: usize = 256 * 1024;

/// The audit action of a backup.
pub const BACKUP_ACTION: &str = "store.backup";

/// Hands the file to the stream in [`CHUNK`]s; fails once the client is gone.
struct Chunks(mpsc::Sender<Result<pb::BackupChunk, Status>>);

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK);
        self.0
            .blocking_send(Ok(pb::BackupChunk {
                data: buf[..n].to_vec(),
            }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Takes the copy, then streams it. Refused without an audit key (the copy
/// ends with a checkpoint signed by it) and by stores backed up with their
/// own tools.
pub async fn start(
    app: &Arc<App>,
    key: Option<&Arc<CheckpointKey>>,
    caller: &Principal,
) -> Result<BackupStream, Rejection> {
    let Some(key) = key.cloned() else {
        return Err(reject!(
            BackupUnsupported,
            "this server has no audit key: a backup ends with a checkpoint signed by it"
        ));
    };
    let note = AuditNote::new(app.clock.now_ms(), &caller.name, BACKUP_ACTION, "store").details(
        "a consistent copy of the store, ending with the checkpoint after this entry".into(),
    );
    let clock = app.clock.clone();
    let seal: Seal = Box::new(move |seq, hash| {
        let at_ms = clock.now_ms();
        let c = key.sign(seq, hash, at_ms);
        AuditNote::new(at_ms, "attestd", CHECKPOINT_ACTION, &format!("head {seq}"))
            .details(c.details())
    });
    let snapshot = app
        .store
        .backup(&note, seal)
        .await
        .map_err(|e| app.store_err(e))?;
    let h = &snapshot.header;
    tracing::info!(
        principal = %caller.name,
        audit_seq = h.audit_seq,
        entries = h.entries,
        writes_paused_us = h.writes_paused_us,
        "backup copy taken; streaming it"
    );
    let (tx, rx) = mpsc::channel(8);
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let mut out = BufWriter::with_capacity(CHUNK, Chunks(tx));
        match encode(&snapshot, &mut out).and_then(|n| out.flush().map(|()| n)) {
            Ok(bytes) => tracing::info!(bytes, "backup sent"),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                tracing::warn!("the backup client went away before the end of the file")
            }
            Err(e) => {
                let r = reject!(StoreUnavailable, "the backup could not be encoded: {e}");
                let _ = errors.blocking_send(Err(app.fail(r)));
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
