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
pub(crate) fn read_private_key(path: &Path) -> anyhow::Result<SigningKey> {
    let der = read_b64(path)?;
    SigningKey::from_pkcs8(KeyAlg::Es256, &der)
        .or_else(|_| SigningKey::from_pkcs8(KeyAlg::Ed25519, &der))
        .map_err(|_| anyhow::anyhow!("{} is not an ES256 or Ed25519 PKCS#8 key", path.display()))
}

pub(crate) fn read_public_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_b64(path)
}

pub(crate) fn write_keypair(prefix: &Path, key: &SigningKey) -> anyhow::Result<()> {
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

pub(crate) fn read_envelope(path: &Path) -> anyhow::Result<pb::Envelope> {
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

pub(crate) fn write_envelope(path: &Path, env: &pb::Envelope) -> anyhow::Result<()> {
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

/// Verifies an export file (docs/audit-format.md): its range line, every
/// entry's hash and link, that no entry is missing at either end, and with
/// `key` the signed head and the checkpoints. Without a key it fails unless
/// `no_key`: only the key proves the export was not cut. The file is read
/// line by line with bounded lines.
pub(crate) fn verify_audit(
    path: &Path,
    key: Option<&Path>,
    no_key: bool,
    out: &crate::show::Out,
) -> anyhow::Result<()> {
    use attestd_client::core::audit::export::{ExportVerifier, MAX_ENTRIES, MAX_LINE_BYTES};
    use std::io::BufRead as _;
    let public = match key {
        None => None,
        Some(k) => Some(
            attestd_client::core::keys::PublicKey::from_spki_der(
                &read_b64(k)?,
                attestd_client::core::Reason::FieldInvalid,
                "key",
            )
            .map_err(|e| anyhow::anyhow!("{}: {}", k.display(), e.message))?,
        ),
    };
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut verifier = ExportVerifier::new(public.as_ref());
    let mut buf = Vec::new();
    let mut lines = 0u64;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 2)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        lines += 1;
        if lines > MAX_ENTRIES + 2 {
            bail!(
                "{}: more than {MAX_ENTRIES} entries; not an audit export",
                path.display()
            );
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|_| anyhow::anyhow!("{}: line {lines} is not UTF-8", path.display()))?;
        verifier
            .line(text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let v = verifier
        .finish()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let range = format!(
        "{} entries, sequence {} to {}, head {}",
        v.range.last + 1 - v.range.first,
        v.range.first,
        v.range.last,
        attestd_client::core::ids::hex(&v.head)
    );
    if let Some(k) = public.as_ref().filter(|_| v.signature_checked) {
        out.line(&format!(
            "ok: {range}, head and {} checkpoints signed by {}",
            v.checkpoints,
            k.key_id()
        ))?;
        return Ok(());
    }
    if !no_key {
        bail!(
            "{}: the chain and its stated range ({range}) are consistent, but only the \
             service key proves that entries are not missing at the end: pass --key \
             <audit-key.pkcs8.pub> (or --no-key to accept an unproven end)",
            path.display()
        );
    }
    out.line(&format!(
        "ok without key: {range}; the signed head ({}) and {} checkpoints were NOT \
         checked, so entries may be missing at the end",
        if v.key_id.is_empty() {
            "unsigned"
        } else {
            &v.key_id
        },
        v.checkpoints
    ))?;
    Ok(())
}
