//! Signed checkpoints of the audit chain. The service key (Ed25519) is made
//! at first start (file mode 0600) or supplied by configuration; at every
//! interval in which the chain grew, its head is signed and the signature is
//! appended to the chain itself (action `audit.checkpoint`), so an exported
//! chain carries its checkpoints and `attestctl audit verify --key` checks
//! them with the service's public key (written beside the private key).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use attestd_core::audit::export::{signed_head_message, Range, SignedHead};
use attestd_core::audit::{checkpoint_message, Checkpoint, CHECKPOINT_ACTION};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_store::AuditNote;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::sync::watch;

use crate::app::App;

/// The key that signs checkpoints.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    /// The public half, to verify checkpoints and signed export heads with.
    pub public: PublicKey,
}

/// The base64 PKCS#8 document in `path`, bounded (a key file is small).
fn read_pkcs8(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    if size > 4096 {
        return Err(format!("{shown}: {size} bytes, not an audit key file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    B64.decode(text.trim())
        .map_err(|_| format!("{shown} is not base64"))
}

impl CheckpointKey {
    /// Loads the PKCS#8 key at `path` (base64), or makes one there (0600)
    /// with its public key (base64 SPKI) in `<path>.pub`.
    pub fn load_or_create(path: &Path) -> Result<CheckpointKey, String> {
        let pkcs8 = if path.exists() {
            read_pkcs8(path)?
        } else {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| "key generation failed".to_string())?;
            crate::dev::write_private(path, B64.encode(doc.as_ref()).as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            doc.as_ref().to_vec()
        };
        let key = Self::from_pkcs8(path, &pkcs8)?;
        let public = &key.public;
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        std::fs::write(&pub_path, B64.encode(public.spki_der()))
            .map_err(|e| format!("writing the public key: {e}"))?;
        Ok(key)
    }

    /// Loads the key at `path` without making one or writing anything
    /// (`attestd check-config`).
    pub fn load(path: &Path) -> Result<CheckpointKey, String> {
        Self::from_pkcs8(path, &read_pkcs8(path)?)
    }

    fn from_pkcs8(path: &Path, pkcs8: &[u8]) -> Result<CheckpointKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| format!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref())
            .map_err(|e| e.message)?;
        Ok(CheckpointKey { pair, public })
    }

    /// A signed checkpoint of the head `seq`/`hash`.
    pub fn sign(&self, seq: u64, hash: [u8; 32], at_ms: i64) -> Checkpoint {
        let signature = self
            .pair
            .sign(&checkpoint_message(seq, &hash, at_ms))
            .as_ref()
            .to_vec();
        Checkpoint {
            seq,
            hash,
            at_ms,
            key_id: self.public.key_id(),
            signature,
        }
    }

    /// The signed head that ends an export of `range`: the head `seq`/`hash`
    /// at its end (same key and algorithm as checkpoints, another message).
    pub fn sign_export_head(
        &self,
        range: &Range,
        seq: u64,
        hash: [u8; 32],
        at_ms: i64,
    ) -> SignedHead {
        let signature = self
            .pair
            .sign(&signed_head_message(range, seq, &hash, at_ms))
            .as_ref()
            .to_vec();
        SignedHead {
            seq,
            hash,
            at_ms,
            key_id: self.public.key_id(),
            signature,
        }
    }
}

/// Appends a checkpoint if the chain grew since the last one; returns
/// whether it did.
pub async fn checkpoint_once(
    app: &App,
    key: &CheckpointKey,
    last: &mut u64,
) -> Result<bool, attestd_core::Rejection> {
    let (seq, hash) = app.store.audit_head().await.map_err(|e| app.store_err(e))?;
    if seq == 0 || seq == *last {
        return Ok(false);
    }
    // The head may be a checkpoint already: one a backup appended, or
    // another replica's.
    let newest = app
        .store
        .audit_last_checkpoint()
        .await
        .map_err(|e| app.store_err(e))?;
    if newest.is_some_and(|c| c.seq == seq) {
        *last = seq;
        return Ok(false);
    }
    let now_ms = app.clock.now_ms();
    let c = key.sign(seq, hash, now_ms);
    let note = AuditNote::new(now_ms, "attestd", CHECKPOINT_ACTION, &format!("head {seq}"))
        .details(c.details());
    app.store
        .append_audit(&note)
        .await
        .map_err(|e| app.store_err(e))?;
    // The checkpoint entry itself is the new head; the next one is due only
    // when something else is added.
    *last = seq + 1;
    Ok(true)
}

/// Signs the head every `checkpoint_interval_secs` until `shutdown`.
pub async fn run(app: Arc<App>, key: Arc<CheckpointKey>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_secs(app.limits.checkpoint_interval_secs.max(1));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        // One replica signs: the holder of the lease (kept across rounds,
        // so checkpoints keep their rhythm).
        let ttl_ms = (interval.as_millis() as i64 * 3).max(3_000);
        if !app.holds("audit.checkpoint", ttl_ms).await {
            continue;
        }
        match checkpoint_once(&app, &key, &mut last).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(reason = e.reason.as_str(), message = %e.message, "audit checkpoint failed")
            }
        }
    }
}
