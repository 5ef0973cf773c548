//! Development mode (`attestd serve --dev`): everything a first session
//! needs, made locally in `<data_dir>/dev/` and printed at start-up:
//! tokens for a security admin, the `dev-station` station, an MES, hospital IT
//! of the tenant [`DEV_TENANT`] and an auditor (new at every start), the
//! station's key (registered in the store on first start)
//! and two release keys trusted with a threshold of 2, so that baselines can
//! be published. Files are written with mode 0600. Never use in production.

use std::fs;
use std::path::{Path, PathBuf};

use crate::auth::token_hash;
use crate::settings::{PrincipalConfig, ReleaseConfig};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_store::{AuditNote, StationEntry, Store};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// The station principal and registered station of dev mode.
pub const DEV_STATION: &str = "dev-station";

/// The tenant (hospital) of the dev kit's hospital-it principal: it sees only
/// the units assigned to this tenant.
pub const DEV_TENANT: &str = "dev-hospital";

/// Why the dev kit could not be made.
#[derive(Debug, thiserror::Error)]
#[error("dev mode: {0}")]
pub struct DevError(String);

fn err(e: impl std::fmt::Display) -> DevError {
    DevError(e.to_string())
}

type Result<T> = std::result::Result<T, DevError>;

/// What dev mode made: tokens, principals, release keys and the station's key.
pub struct DevKit {
    /// Where the files were written (`<data_dir>/dev`).
    pub dir: PathBuf,
    /// (role, token), also written to `<dir>/<role>.token`.
    pub tokens: Vec<(&'static str, String)>,
    /// The principals to configure, one per role.
    pub principals: Vec<PrincipalConfig>,
    /// The two release keys and their threshold.
    pub release: ReleaseConfig,
    /// The public key of the [`DEV_STATION`] station.
    pub station_key: PublicKey,
}

fn write_secret(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents.as_bytes())
        .map_err(|e| err(format!("writing {}: {e}", path.display())))
}

/// Writes a secret file readable by its owner only: created 0600 (never
/// readable by others, not even for a moment), written in full and synced
/// under a temporary name, then renamed into place, so a crash leaves the
/// old file or the new one, not half of one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Loads `<name>.pkcs8` (base64) or makes a new key; returns its public key
/// and writes `<name>.pub` (base64 SPKI) beside it.
fn key(dir: &Path, name: &str, alg: KeyAlg) -> Result<PublicKey> {
    let path = dir.join(format!("{name}.pkcs8"));
    let rng = SystemRandom::new();
    let pkcs8 = if path.exists() {
        let text = fs::read_to_string(&path).map_err(err)?;
        B64.decode(text.trim())
            .map_err(|_| err(format!("{} is not base64", path.display())))?
    } else {
        let doc = match alg {
            KeyAlg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            }
            KeyAlg::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| err("key generation failed"))?;
        write_secret(&path, &B64.encode(doc.as_ref()))?;
        doc.as_ref().to_vec()
    };
    let raw = match alg {
        KeyAlg::Es256 => {
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
                .map(|k| k.public_key().as_ref().to_vec())
        }
        KeyAlg::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map(|k| k.public_key().as_ref().to_vec()),
    }
    .map_err(|_| {
        err(format!(
            "{} is not a {} PKCS#8 key",
            path.display(),
            alg.as_str()
        ))
    })?;
    let public = PublicKey::from_raw(alg, &raw).map_err(|e| err(e.message))?;
    fs::write(
        dir.join(format!("{name}.pub")),
        B64.encode(public.spki_der()),
    )
    .map_err(err)?;
    Ok(public)
}

/// Makes (or reloads) the dev kit under `data_dir`.
pub fn prepare(data_dir: &Path) -> Result<DevKit> {
    let dir = data_dir.join("dev");
    fs::create_dir_all(&dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    let station_key = key(&dir, "station", KeyAlg::Es256)?;
    let r1 = key(&dir, "release-1", KeyAlg::Es256)?;
    let r2 = key(&dir, "release-2", KeyAlg::Ed25519)?;
    let mut tokens = Vec::new();
    let mut principals = Vec::new();
    // (token file, principal, role, station, tenant)
    for (role_name, principal, role, station, tenant) in [
        ("admin", "dev-admin", "security-admin", None, None),
        ("station", DEV_STATION, "station", Some(DEV_STATION), None),
        ("mes", "dev-mes", "mes", None, None),
        (
            "hospital-it",
            "dev-hospital-it",
            "hospital-it",
            None,
            Some(DEV_TENANT),
        ),
        ("auditor", "dev-auditor", "auditor", None, None),
    ] {
        let t = random_token()?;
        write_secret(&dir.join(format!("{role_name}.token")), &t)?;
        principals.push(PrincipalConfig {
            name: principal.into(),
            role: role.into(),
            token_sha256: Some(token_hash(&t)),
            cert_sha256: None,
            cert_uri: None,
            station_id: station.map(Into::into),
            tenant: tenant.map(Into::into),
        });
        tokens.push((role_name, t));
    }
    Ok(DevKit {
        dir,
        tokens,
        principals,
        release: ReleaseConfig {
            threshold: 2,
            keys: vec![B64.encode(r1.spki_der()), B64.encode(r2.spki_der())],
        },
        station_key,
    })
}

/// Registers `dev-station` (both record kinds, any model) if it is not yet.
pub async fn register_station(store: &dyn Store, key: &PublicKey, now_ms: i64) -> Result<()> {
    if store.get_station(DEV_STATION).await.map_err(err)?.is_some() {
        return Ok(());
    }
    store
        .register_station(
            StationEntry {
                station_id: DEV_STATION.into(),
                spki_der: key.spki_der().to_vec(),
                allowed_kinds: vec![1, 2],
                allowed_models: vec!["*".into()],
                registered_at: now_ms,
                ..StationEntry::default()
            },
            &AuditNote::new(now_ms, "attestd --dev", "station.register", DEV_STATION)
                .details("the dev kit's station".into()),
        )
        .await
        .map_err(err)?;
    Ok(())
}

/// A new bearer token: `atd_` and 64 hex characters of randomness.
pub fn random_token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| err("no randomness available"))?;
    Ok(format!("atd_{}", attestd_core::ids::hex(&b)))
}
