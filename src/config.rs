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
pub(crate) struct FileConfig {
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
pub(crate) struct ResultsConfig {
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub retired_public_keys: Vec<String>,
}

/// `[store]`: `backend = "sled"` (default) or `backend = "postgres"` with
/// `url` (or `url_file`), `pool_size`, `ca_file`, `connect_timeout_secs`.
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum StoreConfig {
    #[default]
    Sled,
    Postgres(PgSettings),
}

/// The PostgreSQL settings, kept as the store crate reads them. The URL
/// (which may hold a password) is either `url` itself or read from the file
/// `url_file` names (a mounted Kubernetes Secret, a systemd credential), so
/// that the configuration file can be world-readable.
pub(crate) struct PgSettings(pub attestd_store::postgres::PgConfig);

/// A URL file larger than this is refused unread.
const MAX_URL_FILE: u64 = 64 * 1024;

impl<'de> Deserialize<'de> for PgSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        if let Some(file) = table.remove("url_file") {
            let Some(path) = file.as_str() else {
                return Err(D::Error::custom("url_file must be a path (a string)"));
            };
            if table.contains_key("url") {
                return Err(D::Error::custom(
                    "[store] has both url and url_file: give one",
                ));
            }
            let url = read_url_file(Path::new(path)).map_err(D::Error::custom)?;
            table.insert("url".into(), toml::Value::String(url));
        }
        toml::Value::Table(table)
            .try_into()
            .map(PgSettings)
            .map_err(|e| D::Error::custom(e.message()))
    }
}

/// The database URL from `path`, without the line break a file usually
/// ends with.
fn read_url_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("url_file {shown}: {e}"))?
        .len();
    if len > MAX_URL_FILE {
        return Err(format!(
            "url_file {shown}: {len} bytes is too large for a URL"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("url_file {shown}: {e}"))?;
    let url = text.trim_end_matches(['\n', '\r']);
    if url.trim().is_empty() {
        return Err(format!("url_file {shown} is empty"));
    }
    if url.contains(['\n', '\r']) {
        return Err(format!("url_file {shown} holds more than one line"));
    }
    Ok(url.to_owned())
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("PgSettings { .. }")
    }
}

/// Settings for end-to-end tests only. Never set them in production.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestingConfig {
    /// A file holding a clock offset in milliseconds, read at every clock
    /// reading, so tests can move time forward without sleeping.
    pub clock_offset_file: Option<PathBuf>,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The settings the server runs with, after every override.
#[derive(Debug)]
pub(crate) struct Resolved {
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

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub(crate) const DEFAULT_DEV_DATA_DIR: &str = "attestd-data";
pub(crate) const DEFAULT_CACHE_MB: u64 = 256;

/// How the listener may run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Tls,
    /// Plaintext on a loopback address.
    PlaintextLoopback,
    /// Plaintext on a network address, by explicit override.
    PlaintextOverride,
}

/// Plaintext gRPC only on loopback, unless the configuration says
/// `insecure_plaintext = true`: bearer tokens must not cross a network in
/// the clear by accident.
pub(crate) fn check_listen(
    addr: SocketAddr,
    tls: bool,
    insecure: bool,
) -> anyhow::Result<Transport> {
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

    fn store_of(toml_text: &str) -> Result<StoreConfig, String> {
        toml::from_str::<FileConfig>(toml_text)
            .map(|c| c.store)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_database_url_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        let url = "postgres://attestd:s3cret@db.internal:5432/attestd";
        std::fs::write(&file, format!("{url}\n")).unwrap();
        let store = store_of(&format!(
            "[store]\nbackend = \"postgres\"\nurl_file = {:?}\npool_size = 3\n",
            file.display().to_string()
        ))
        .unwrap();
        let StoreConfig::Postgres(pg) = store else {
            panic!("not postgres")
        };
        assert_eq!(pg.0.url, url, "read without its line break");
        assert_eq!(pg.0.pool_size, 3, "the other settings still apply");
        assert_eq!(format!("{pg:?}"), "PgSettings { .. }", "never printed");

        // Both, neither readable, empty, two lines, unknown keys.
        let path = format!("{:?}", file.display().to_string());
        let err = store_of(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://x\"\nurl_file = {path}\n"
        ))
        .unwrap_err();
        assert!(err.contains("both url and url_file"), "{err}");
        let missing = dir.path().join("missing").display().to_string();
        let err = store_of(&format!(
            "[store]\nbackend = \"postgres\"\nurl_file = {missing:?}\n"
        ))
        .unwrap_err();
        assert!(err.contains(&missing), "{err}");
        for (content, says) in [("\n", "is empty"), ("a\nb\n", "more than one line")] {
            std::fs::write(&file, content).unwrap();
            let err = store_of(&format!(
                "[store]\nbackend = \"postgres\"\nurl_file = {path}\n"
            ))
            .unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        std::fs::write(&file, url).unwrap();
        let err = store_of(&format!(
            "[store]\nbackend = \"postgres\"\nurl_file = {path}\npool = 3\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("pool"),
            "unknown keys are still refused: {err}"
        );
        let err = store_of("[store]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(err.contains("url"), "{err}");
    }
}
