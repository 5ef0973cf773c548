//! The server's settings: limits and principals. The binary reads them from
//! the configuration file (section names below) and flags.

use serde::Deserialize;

/// Limits of docs/api.md, all configurable.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request message (evidence is further capped at 16 KiB).
    pub max_request_bytes: usize,
    /// How long a challenge nonce stays valid.
    pub nonce_lifetime_ms: u64,
    /// Outstanding nonces per serial; the oldest is evicted beyond this.
    pub max_nonces_per_serial: usize,
    /// Outstanding nonces in total, across all serials.
    pub max_nonces_total: usize,
    /// How far ahead of the server's clock a timestamp may be.
    pub clock_skew_secs: i64,
    /// How old deferred evidence (no nonce) may be, until baselines set it.
    pub deferred_max_age_secs: i64,
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// Longest a group flush waits for write requests already under way
    /// (microseconds). A lone writer is never delayed.
    pub group_commit_max_wait_us: u64,
    /// Units re-appraised per round (committed as one group, one flush);
    /// rounds over the units of a withdrawn firmware digest take four times
    /// as many.
    pub reappraisal_batch: usize,
    /// How often the re-appraisal job looks for due work it was not told of
    /// (time passing), in milliseconds.
    pub reappraisal_interval_ms: u64,
    /// How old a unit's final attestation may be for the release gate.
    pub release_window_secs: i64,
    /// Serials in one CheckReleaseBatch.
    pub max_release_batch: usize,
    /// Status changes the change feed keeps for WatchFleet resumption.
    pub change_feed_retention: u64,
    /// How often a WatchFleet stream looks for new changes, in milliseconds.
    pub watch_poll_ms: u64,
    /// Changes a WatchFleet stream holds for a slow reader before telling it
    /// that it fell behind (the transport buffers more on top).
    pub watch_buffer: usize,
    /// How long a WatchFleet reader may leave its buffer full before it is
    /// told that it fell behind, in milliseconds.
    pub watch_lag_timeout_ms: u64,
    /// Unauthenticated calls (GetChallenge, SubmitEvidence) per peer address
    /// and minute; 0 disables.
    pub rate_per_peer_per_min: u32,
    /// Unauthenticated calls per claimed serial and minute; 0 disables.
    pub rate_per_serial_per_min: u32,
    /// How often the audit chain's head is signed (a checkpoint entry), in
    /// seconds; only when entries were added since the last one.
    pub checkpoint_interval_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024,
            nonce_lifetime_ms: 5 * 60 * 1000,
            max_nonces_per_serial: 4,
            max_nonces_total: 1_000_000,
            clock_skew_secs: 5 * 60,
            deferred_max_age_secs: 24 * 3600,
            default_page_size: 100,
            max_page_size: 1000,
            group_commit_max_wait_us: 2000,
            reappraisal_batch: 256,
            reappraisal_interval_ms: 500,
            release_window_secs: 72 * 3600,
            max_release_batch: 1000,
            change_feed_retention: 1_000_000,
            watch_poll_ms: 100,
            watch_buffer: 256,
            watch_lag_timeout_ms: 5000,
            rate_per_peer_per_min: 6000,
            rate_per_serial_per_min: 60,
            checkpoint_interval_secs: 60,
        }
    }
}

/// One principal of the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Who this is, for logs and (later) the audit trail.
    pub name: String,
    /// station, mes, hospital-it, security-admin or auditor.
    pub role: String,
    /// SHA-256 of the bearer token, 64 lowercase hex characters.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// SHA-256 fingerprint of the principal's client certificate (its DER),
    /// 64 hex characters (colons allowed). Needs TLS with client CAs.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// A subject-alternative-name URI of the principal's client
    /// certificate (e.g. `spiffe://factory.example/station/line-3`). Needs
    /// TLS with client CAs; the certificate must chain to one of them.
    #[serde(default)]
    pub cert_uri: Option<String>,
    /// Required for the station role: the station this principal speaks for.
    #[serde(default)]
    pub station_id: Option<String>,
    /// Required for the hospital-it role: the tenant whose units it sees.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The trust root for baselines: release keys and how many must sign.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    /// Signatures required from distinct keys (t of n).
    #[serde(default)]
    pub threshold: usize,
    /// Release public keys, base64 SubjectPublicKeyInfo DER (ES256 or Ed25519).
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Everything the services need besides the store.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub limits: Limits,
    pub principals: Vec<PrincipalConfig>,
    pub release: ReleaseConfig,
}

impl ReleaseConfig {
    /// Builds the trust root, refusing keys that do not parse, duplicates,
    /// and thresholds that cannot be met or would accept anything.
    pub fn trust_root(&self) -> Result<attestd_core::baseline::TrustRoot, String> {
        use base64::Engine as _;
        let mut keys: Vec<attestd_core::keys::PublicKey> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let der = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .map_err(|_| format!("release.keys[{i}]: not base64"))?;
            let key = attestd_core::keys::PublicKey::from_spki_der(
                &der,
                attestd_core::Reason::FieldInvalid,
                &format!("release.keys[{i}]"),
            )
            .map_err(|e| e.message)?;
            if keys.contains(&key) {
                return Err(format!("release.keys[{i}]: listed twice"));
            }
            keys.push(key);
        }
        if !keys.is_empty() && (self.threshold == 0 || self.threshold > keys.len()) {
            return Err(format!(
                "release.threshold must be between 1 and the number of keys ({}), got {}",
                keys.len(),
                self.threshold
            ));
        }
        Ok(attestd_core::baseline::TrustRoot {
            keys,
            threshold: self.threshold,
        })
    }
}
