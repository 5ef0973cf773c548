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
    /// Page size of a list call that asks for 0.
    pub default_page_size: usize,
    /// Largest page size a list call may ask for.
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
    /// After SIGTERM: how long in-flight calls may take to finish before
    /// the server stops anyway, in seconds. Keep it below the supervisor's
    /// stop timeout (systemd TimeoutStopSec, Kubernetes
    /// terminationGracePeriodSeconds).
    pub drain_timeout_secs: u64,
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
            drain_timeout_secs: 20,
        }
    }
}

impl Limits {
    /// Refuses values outside what the server can work with: zero pages,
    /// buffers or intervals, and waits or sizes so large they are surely a
    /// mistake (a 1,000-second commit linger). The bounds are in the
    /// messages and in deploy/attestd.example.toml.
    pub fn check(&self) -> Result<(), String> {
        fn within<T: PartialOrd + std::fmt::Display>(
            name: &str,
            v: T,
            lo: T,
            hi: T,
            unit: &str,
        ) -> Result<(), String> {
            if v < lo || v > hi {
                return Err(format!(
                    "limits.{name} = {v} is out of range: it must be between {lo} and {hi}{unit}"
                ));
            }
            Ok(())
        }
        let l = self;
        within(
            "max_request_bytes",
            l.max_request_bytes,
            1024,
            16 << 20,
            " bytes",
        )?;
        within(
            "nonce_lifetime_ms",
            l.nonce_lifetime_ms,
            100,
            3_600_000,
            " ms",
        )?;
        within("max_nonces_per_serial", l.max_nonces_per_serial, 1, 64, "")?;
        within("max_nonces_total", l.max_nonces_total, 1, 100_000_000, "")?;
        within("clock_skew_secs", l.clock_skew_secs, 0, 86_400, " s")?;
        within(
            "deferred_max_age_secs",
            l.deferred_max_age_secs,
            0,
            31_536_000,
            " s",
        )?;
        within("max_page_size", l.max_page_size, 1, 10_000, "")?;
        within(
            "default_page_size",
            l.default_page_size,
            1,
            l.max_page_size,
            " (max_page_size)",
        )?;
        within(
            "group_commit_max_wait_us",
            l.group_commit_max_wait_us,
            0,
            100_000,
            " us",
        )?;
        within("reappraisal_batch", l.reappraisal_batch, 1, 100_000, "")?;
        within(
            "reappraisal_interval_ms",
            l.reappraisal_interval_ms,
            10,
            60_000,
            " ms",
        )?;
        within(
            "release_window_secs",
            l.release_window_secs,
            1,
            31_536_000,
            " s",
        )?;
        within("max_release_batch", l.max_release_batch, 1, 100_000, "")?;
        within(
            "change_feed_retention",
            l.change_feed_retention,
            1,
            1_000_000_000,
            "",
        )?;
        within("watch_poll_ms", l.watch_poll_ms, 10, 60_000, " ms")?;
        within("watch_buffer", l.watch_buffer, 1, 65_536, "")?;
        within(
            "watch_lag_timeout_ms",
            l.watch_lag_timeout_ms,
            10,
            600_000,
            " ms",
        )?;
        within(
            "checkpoint_interval_secs",
            l.checkpoint_interval_secs,
            1,
            86_400,
            " s",
        )?;
        within("drain_timeout_secs", l.drain_timeout_secs, 1, 3_600, " s")?;
        Ok(())
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
    /// The `[limits]` section.
    pub limits: Limits,
    /// Who may call, and with which role.
    pub principals: Vec<PrincipalConfig>,
    /// The release keys that sign baselines, and their threshold.
    pub release: ReleaseConfig,
}

impl Settings {
    /// Every check of the settings that needs neither the store nor a
    /// port: limits, principals (roles, credentials, duplicates), whether
    /// certificate principals have TLS with client CAs (`client_certs`),
    /// and the release keys. What it built comes back with warnings:
    /// settings that start but leave part of attestd unable to work.
    pub fn check(&self, client_certs: bool) -> Result<CheckedSettings, String> {
        self.limits.check()?;
        let auth = crate::auth::Authenticator::for_listener(&self.principals, client_certs)?;
        let trust_root = self.release.trust_root()?;
        let mut warnings = Vec::new();
        if trust_root.keys.is_empty() {
            warnings.push(
                "NO RELEASE KEYS: [release] lists no keys, so no baseline can be published; \
                 every unit stays UNKNOWN and the release gate never answers RELEASE"
                    .to_owned(),
            );
        }
        if self.principals.is_empty() {
            warnings.push(
                "no principals: only devices can call (no station, MES, hospital IT, \
                 security admin or auditor is configured)"
                    .to_owned(),
            );
        }
        Ok(CheckedSettings {
            auth,
            trust_root,
            warnings,
        })
    }
}

/// What [`Settings::check`] built from the settings.
pub struct CheckedSettings {
    /// The principals' credentials, checked.
    pub auth: crate::auth::Authenticator,
    /// The release keys and threshold, checked.
    pub trust_root: attestd_core::baseline::TrustRoot,
    /// Settings that start but leave part of attestd unable to work.
    pub warnings: Vec<String>,
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
