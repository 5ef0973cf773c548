//! The configuration file (TOML) and its overrides. Precedence, highest
//! first: command-line flags, environment variables (ATTESTD_*), the file,
//! built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use attestd_server::settings::{Limits, PrincipalConfig, ReleaseConfig};
use attestd_server::tls::TlsFiles;
use serde::Deserialize;

/// The file's shape. Unknown keys are errors: a misspelt limit must not be
/// silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub cache_capacity_mb: Option<u64>,
    /// The Ed25519 key (base64 PKCS#8) that signs audit checkpoints; made at
    /// first start if missing. Default: `<data_dir>/audit-key.pkcs8`.
    pub audit_key_file: Option<PathBuf>,
    /// Serve plaintext gRPC on a non-loopback address. Bearer tokens then
    /// cross the network in the clear; logged loudly at every start.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// TLS for the gRPC listener (certificate, key, client CAs).
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub principals: Vec<PrincipalConfig>,
    /// Release keys and threshold for baselines.
    #[serde(default)]
    pub release: ReleaseConfig,
    #[serde(default)]
    pub testing: TestingConfig,
    /// Where attestd keeps its data: sled in `data_dir` (the default, one
    /// node) or a PostgreSQL database several replicas share.
    #[serde(default)]
    pub store: StoreConfig,
    /// The key that signs result tokens (EAR) and the keys it replaced.
    #[serde(default)]
    pub results: ResultsConfig,
    /// OpenTelemetry trace export (off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub telemetry: crate::logging::TelemetryConfig,
}

/// `[results]`: `key_file` (base64 PKCS#8, ES256 or Ed25519; made at first
/// start, ES256, if missing; default `<data_dir>/result-key.pkcs8`) and
/// `retired_public_keys` (base64 SPKI of earlier keys, still published so
/// their tokens keep verifying).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub retired_public_keys: Vec<String>,
}

/// `[store]`: `backend = "sled"` (default) or `backend = "postgres"` with
/// `url`, `pool_size`, `ca_file`, `connect_timeout_secs`.
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    #[default]
    Sled,
    Postgres(PgSettings),
}

/// The PostgreSQL settings, kept as the store crate reads them.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PgSettings(pub attestd_store::postgres::PgConfig);

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("PgSettings { .. }")
    }
}

/// Settings for end-to-end tests only. Never set them in production.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// A file holding a clock offset in milliseconds, read at every clock
    /// reading, so tests can move time forward without sleeping.
    pub clock_offset_file: Option<PathBuf>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The settings the server runs with, after every override.
#[derive(Debug)]
pub struct Resolved {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub cache_capacity_mb: u64,
    pub limits: Limits,
    pub principals: Vec<PrincipalConfig>,
    pub release: ReleaseConfig,
    pub clock_offset_file: Option<PathBuf>,
    pub audit_key_file: PathBuf,
    pub tls: Option<TlsFiles>,
    pub insecure_plaintext: bool,
    pub store: StoreConfig,
    pub result_key_file: PathBuf,
    pub retired_result_keys: Vec<String>,
    pub telemetry: crate::logging::TelemetryConfig,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_DEV_DATA_DIR: &str = "attestd-data";
pub const DEFAULT_CACHE_MB: u64 = 256;

/// How the listener may run.
#[derive(Debug, PartialEq, Eq)]
pub enum Transport {
    Tls,
    /// Plaintext on a loopback address.
    PlaintextLoopback,
    /// Plaintext on a network address, by explicit override.
    PlaintextOverride,
}

/// Plaintext gRPC only on loopback, unless the configuration says
/// `insecure_plaintext = true`: bearer tokens must not cross a network in
/// the clear by accident.
pub fn check_listen(addr: SocketAddr, tls: bool, insecure: bool) -> anyhow::Result<Transport> {
    Ok(match (tls, addr.ip().is_loopback(), insecure) {
        (true, _, _) => Transport::Tls,
        (false, true, _) => Transport::PlaintextLoopback,
        (false, false, true) => Transport::PlaintextOverride,
        (false, false, false) => bail!(
            "refusing to serve plaintext gRPC on {addr}: configure [tls] (cert_file, key_file), \
             listen on loopback (127.0.0.1 or ::1), or set insecure_plaintext = true"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_for_loopback_unless_overridden() {
        let net: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let lo6: SocketAddr = "[::1]:50051".parse().unwrap();
        let err = check_listen(net, false, false).unwrap_err().to_string();
        assert!(err.contains("refusing to serve plaintext"), "{err}");
        assert_eq!(
            check_listen(net, false, true).unwrap(),
            Transport::PlaintextOverride
        );
        assert_eq!(check_listen(net, true, false).unwrap(), Transport::Tls);
        assert_eq!(
            check_listen(lo, false, false).unwrap(),
            Transport::PlaintextLoopback
        );
        assert_eq!(
            check_listen(lo6, false, false).unwrap(),
            Transport::PlaintextLoopback
        );
        assert_eq!(check_listen(lo, true, false).unwrap(), Transport::Tls);
    }
}
