//! Key and envelope files. Keys are base64 text: PKCS#8 for private keys,
//! SubjectPublicKeyInfo DER for public keys. Envelopes use the standard DSSE
//! JSON form: `{"payloadType", "payload" (base64), "signatures": [{"keyid", "sig"}]}`.

use std::path::Path;

use anyhow::{bail, Context};
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::SigningKey;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

fn read_b64(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    B64.decode(text.trim())
        .with_context(|| format!("{} is not base64", path.display()))
}

/// A private key file of either algorithm.
pub fn read_private_key(path: &Path) -> anyhow::Result<SigningKey> {
    let der = read_b64(path)?;
    SigningKey::from_pkcs8(KeyAlg::Es256, &der)
        .or_else(|_| SigningKey::from_pkcs8(KeyAlg::Ed25519, &der))
        .map_err(|_| anyhow::anyhow!("{} is not an ES256 or Ed25519 PKCS#8 key", path.display()))
}

pub fn read_public_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_b64(path)
}

pub fn write_keypair(prefix: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let private = prefix.with_extension("pkcs8");
    std::fs::write(&private, B64.encode(key.pkcs8()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::write(
        prefix.with_extension("pub"),
        B64.encode(key.public_key().spki_der()),
    )?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JsonEnvelope {
    payload_type: String,
    payload: String,
    signatures: Vec<JsonSignature>,
}

pub fn read_envelope(path: &Path) -> anyhow::Result<pb::Envelope> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let e: JsonEnvelope = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a DSSE envelope", path.display()))?;
    if e.signatures.is_empty() {
        bail!("{} carries no signature", path.display());
    }
    Ok(pb::Envelope {
        payload: B64.decode(&e.payload).context("payload is not base64")?,
        payload_type: e.payload_type,
        signatures: e
            .signatures
            .into_iter()
            .map(|s| {
                Ok(pb::Signature {
                    sig: B64.decode(&s.sig).context("sig is not base64")?,
                    keyid: s.keyid,
                })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

pub fn write_envelope(path: &Path, env: &pb::Envelope) -> anyhow::Result<()> {
    let e = JsonEnvelope {
        payload_type: env.payload_type.clone(),
        payload: B64.encode(&env.payload),
        signatures: env
            .signatures
            .iter()
            .map(|s| JsonSignature {
                keyid: s.keyid.clone(),
                sig: B64.encode(&s.sig),
            })
            .collect(),
    };
    std::fs::write(path, serde_json::to_string_pretty(&e)? + "\n")?;
    Ok(())
}

/// One exported audit entry as a JSON line (hashes in lowercase hex).
pub fn audit_line(e: &pb::AuditEvent) -> String {
    serde_json::json!({
        "sequence": e.sequence, "at_ms": e.at_ms, "principal": e.principal, "action": e.action,
        "target": e.target, "reason": e.reason, "details": e.details,
        "prev_hash": attestd_client::core::ids::hex(&e.prev_hash),
        "hash": attestd_client::core::ids::hex(&e.hash),
    })
    .to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditLine {
    sequence: u64,
    at_ms: i64,
    principal: String,
    action: String,
    target: String,
    reason: String,
    details: String,
    prev_hash: String,
    hash: String,
}

/// Verifies an exported chain: every entry's hash, its link to the one
/// before, and consecutive sequence numbers. Fails naming the first bad line.
pub fn verify_audit(path: &Path, key: Option<&Path>, out: &crate::show::Out) -> anyhow::Result<()> {
    use attestd_client::core::audit::{verify_chain, verify_checkpoints, AuditEntry, GENESIS};
    use attestd_client::core::ids::Digest;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut entries = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: AuditLine = serde_json::from_str(line)
            .with_context(|| format!("line {}: not an audit entry", i + 1))?;
        let hash = |h: &str, what: &str| {
            Digest::from_hex(h)
                .map(|d| d.0)
                .with_context(|| format!("line {}: {what} is not a SHA-256 in hex", i + 1))
        };
        entries.push(AuditEntry {
            seq: l.sequence,
            at_ms: l.at_ms,
            principal: l.principal,
            action: l.action,
            target: l.target,
            reason: l.reason,
            details: l.details,
            prev_hash: hash(&l.prev_hash, "prev_hash")?,
            hash: hash(&l.hash, "hash")?,
        });
    }
    let Some(first) = entries.first() else {
        bail!("{} holds no audit entries", path.display());
    };
    // An export may start after the genesis: trust its first link, check the rest.
    let (start, start_seq) = if first.seq == 1 {
        (GENESIS, 0)
    } else {
        (first.prev_hash, first.seq - 1)
    };
    let head = match verify_chain(&entries, start, start_seq) {
        Ok(head) => head,
        Err(b) => bail!(
            "entry {} (line {}) does not verify: {}",
            b.seq,
            b.index + 1,
            b.why
        ),
    };
    let checkpoints = match key {
        None => String::new(),
        Some(k) => {
            let der = read_b64(k)?;
            let public = attestd_client::core::keys::PublicKey::from_spki_der(
                &der,
                attestd_client::core::Reason::FieldInvalid,
                "key",
            )
            .map_err(|e| anyhow::anyhow!(e.message))?;
            match verify_checkpoints(&entries, &public) {
                Ok(0) => bail!(
                    "no checkpoint in {} is signed by {}",
                    path.display(),
                    public.key_id()
                ),
                Ok(n) => format!(", {n} checkpoints signed by {}", public.key_id()),
                Err(b) => bail!(
                    "entry {} (line {}) does not verify: {}",
                    b.seq,
                    b.index + 1,
                    b.why
                ),
            }
        }
    };
    out.line(&format!(
        "ok: {} entries, sequence {} to {}, head {}{checkpoints}",
        entries.len(),
        first.seq,
        entries.last().map_or(0, |e| e.seq),
        attestd_client::core::ids::hex(&head)
    ));
    Ok(())
}
