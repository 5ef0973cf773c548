//! Baselines (docs/formats.md §2.3): reference values and appraisal policy for
//! one model, published by release engineering as a DSSE envelope that needs
//! signatures from at least `t` of the `n` configured release keys.

use serde::{Deserialize, Serialize};

use crate::dsse::{pae, Envelope};
use crate::error::{Reason, Rejection};
use crate::ids::{Digest, Model};
use crate::json::{object, objects};
use crate::keys::{PublicKey, SigEncoding};
use crate::record::parse_json;
use crate::reject;
use crate::time::UnixTime;

/// DSSE payload type of a baseline (docs/formats.md §2.3).
pub const BASELINE_TYPE: &str = "application/vnd.attestd.baseline.v1+json";
const MAX_LIST: usize = 64;

// ---- JSON, as release engineering writes it ---------------------------------

/// An approved build of a component (`firmware.components[].approved[]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApprovedDoc {
    /// The build's version text, e.g. `2.1.4`.
    pub version: String,
    /// The build's security version number.
    pub svn: u64,
    /// SHA-256 of the image, 64 lowercase hex characters.
    pub digest: String,
}

/// One firmware component the baseline governs (`firmware.components[]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComponentDoc {
    /// Matched against the names of the components the evidence reports.
    pub name: String,
    /// A lower reported svn is `FIRMWARE_ROLLBACK`.
    pub min_svn: u64,
    /// The approved builds (1..64): reported firmware is approved when both digest and svn match
    /// one.
    #[serde(deserialize_with = "objects")]
    pub approved: Vec<ApprovedDoc>,
}

/// A withdrawn build of any component (`firmware.revoked[]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RevokedDoc {
    /// SHA-256 of the withdrawn image, 64 lowercase hex characters.
    pub digest: String,
    /// Why it was withdrawn; shown in the `FIRMWARE_REVOKED` reason.
    pub reason: String,
}

/// `firmware` of a baseline: approved and withdrawn builds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareDoc {
    /// One entry per component (1..64), names unique.
    #[serde(deserialize_with = "objects")]
    pub components: Vec<ComponentDoc>,
    /// Withdrawn builds (0..64); absent means none.
    #[serde(default, deserialize_with = "objects")]
    pub revoked: Vec<RevokedDoc>,
}

/// Bounds on one calibration parameter (`calibration.parameters[]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundDoc {
    /// The parameter's name, as calibration records name it.
    pub name: String,
    /// Lowest accepted `as_left` value.
    pub min: f64,
    /// Highest accepted `as_left` value.
    pub max: f64,
}

/// `calibration` of a baseline: the calibration policy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPolicyDoc {
    /// Whether units must carry a matching, passed, in-date calibration.
    pub required: bool,
    /// Longest time between calibrations, in days (at least 1).
    pub max_interval_days: u32,
    /// Bounds on calibration results (0..64); absent means none.
    #[serde(default, deserialize_with = "objects")]
    pub parameters: Vec<BoundDoc>,
}

/// `security` of a baseline: the boot state required.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecurityDoc {
    /// If true, evidence with `secure_boot: false` is `SECURE_BOOT_DISABLED`.
    pub require_secure_boot: bool,
    /// Lowest accepted EAT debug status (0..4); a lower `dbgstat` is `DEBUG_ENABLED`.
    #[serde(deserialize_with = "dbgstat")]
    pub min_dbgstat: u8,
}

/// `min_dbgstat` is an EAT debug status, 0..4.
fn dbgstat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    // whole_number refuses anything above 4, so the cast cannot truncate.
    crate::json::whole_number(d, 0, 4).map(|n| n as u8)
}

/// `freshness` of a baseline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FreshnessDoc {
    /// Hours after which a unit without newer evidence is STALE (at least 1); also the window for
    /// deferred evidence.
    pub max_evidence_age_hours: u32,
    /// If true, deferred evidence (no nonce) is graded at most WARNING (`FRESHNESS_UNVERIFIED`).
    pub nonce_required: bool,
}

/// `application/vnd.attestd.baseline.v1+json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaselineDoc {
    /// The model this baseline governs.
    pub model: String,
    /// The hardware versions it covers (1..64); a unit of another is `NO_BASELINE`.
    pub hw_versions: Vec<String>,
    /// Version number (at least 1), above every version published for the model before.
    pub version: u64,
    /// When it becomes active (RFC 3339, UTC).
    pub effective_at: String,
    /// Free text (at most 1024 bytes); may be empty.
    #[serde(default)]
    pub description: String,
    /// Approved and withdrawn firmware.
    #[serde(deserialize_with = "object")]
    pub firmware: FirmwareDoc,
    /// The calibration policy.
    #[serde(deserialize_with = "object")]
    pub calibration: CalibrationPolicyDoc,
    /// The boot state required.
    #[serde(deserialize_with = "object")]
    pub security: SecurityDoc,
    /// How fresh evidence must be.
    #[serde(deserialize_with = "object")]
    pub freshness: FreshnessDoc,
}

// ---- Checked baseline -----------------------------------------------------------

/// An approved build of a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    /// The build's version text.
    pub version: String,
    /// The build's security version number.
    pub svn: u64,
    /// SHA-256 of the image.
    pub digest: Digest,
}

/// What the baseline requires of one firmware component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentPolicy {
    /// The component's name.
    pub name: String,
    /// Lowest accepted svn; below it is `FIRMWARE_ROLLBACK`.
    pub min_svn: u64,
    /// The approved builds.
    pub approved: Vec<Approved>,
}

/// Bounds on one calibration parameter's `as_left` value.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    /// The parameter's name.
    pub name: String,
    /// Lowest accepted value.
    pub min: f64,
    /// Highest accepted value, not below `min`.
    pub max: f64,
}

/// A checked baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// The model this baseline governs.
    pub model: Model,
    /// The hardware versions it covers.
    pub hw_versions: Vec<String>,
    /// Version number, increasing per model.
    pub version: u64,
    /// When it becomes (or became) active.
    pub effective_at: UnixTime,
    /// Free text; may be empty.
    pub description: String,
    /// Sorted by name.
    pub components: Vec<ComponentPolicy>,
    /// Revoked digests with their reasons.
    pub revoked: Vec<(Digest, String)>,
    /// Whether units must carry a matching, passed, in-date calibration.
    pub calibration_required: bool,
    /// Longest time between calibrations, in days.
    pub max_interval_days: u32,
    /// Bounds on calibration results, by parameter name.
    pub parameters: Vec<Bound>,
    /// Whether secure boot must be on.
    pub require_secure_boot: bool,
    /// Lowest accepted EAT debug status.
    pub min_dbgstat: u8,
    /// Hours after which a unit without newer evidence is STALE.
    pub max_evidence_age_hours: u32,
    /// Whether deferred evidence is graded at most WARNING.
    pub nonce_required: bool,
}

impl Baseline {
    /// Parses and checks a baseline payload.
    pub fn parse(payload: &[u8]) -> Result<Baseline, Rejection> {
        check(parse_json(payload)?)
    }

    /// Whether this baseline covers a unit of `model` with hardware version `hw_version`.
    pub fn covers(&self, model: &str, hw_version: &str) -> bool {
        self.model.as_str() == model && self.hw_versions.iter().any(|h| h == hw_version)
    }

    /// Digests whose standing this baseline changes against `previous`
    /// (revoked or approved in one and not the other; without a previous
    /// baseline, the revoked ones): their units most likely change verdict.
    /// A hint for ordering work; the whole model is re-appraised anyway.
    pub fn urgent_digests(&self, previous: Option<&Baseline>) -> Vec<Digest> {
        let approved = |b: &Baseline| -> Vec<Digest> {
            b.components
                .iter()
                .flat_map(|c| c.approved.iter().map(|a| a.digest))
                .collect()
        };
        let revoked = |b: &Baseline| -> Vec<Digest> { b.revoked.iter().map(|(d, _)| *d).collect() };
        let mut out = revoked(self);
        if let Some(p) = previous {
            let changed = |a: Vec<Digest>, b: Vec<Digest>| -> Vec<Digest> {
                let only_a = a.iter().filter(|d| !b.contains(d));
                let only_b = b.iter().filter(|d| !a.contains(d));
                only_a.chain(only_b).copied().collect()
            };
            out = changed(revoked(self), revoked(p));
            out.extend(changed(approved(self), approved(p)));
        }
        out.sort_by_key(|d| d.0);
        out.dedup();
        out
    }

    /// The reason a digest was withdrawn, if this baseline withdraws it.
    pub fn revoked_reason(&self, d: &Digest) -> Option<&str> {
        self.revoked
            .iter()
            .find(|(r, _)| r == d)
            .map(|(_, why)| why.as_str())
    }

    /// Evidence older than this is stale.
    pub fn max_evidence_age_secs(&self) -> i64 {
        self.max_evidence_age_hours as i64 * 3600
    }
}

fn field(path: &str, msg: impl std::fmt::Display) -> Rejection {
    reject!(FieldInvalid, "{path}: {msg}")
}

fn text(path: &str, s: &str) -> Result<String, Rejection> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(field(
            path,
            "expected 1..256 characters without control characters",
        ));
    }
    Ok(s.to_owned())
}

fn digest(path: &str, s: &str) -> Result<Digest, Rejection> {
    Digest::from_hex(s).ok_or_else(|| field(path, "expected 64 lowercase hex characters"))
}

fn bounded<T>(path: &str, v: &[T], min: usize) -> Result<(), Rejection> {
    if v.len() < min || v.len() > MAX_LIST {
        return Err(field(
            path,
            format!("expected {min}..{MAX_LIST} entries, got {}", v.len()),
        ));
    }
    Ok(())
}

fn check(d: BaselineDoc) -> Result<Baseline, Rejection> {
    let model = Model::parse(&d.model, Reason::FieldInvalid, "model")?;
    bounded("hw_versions", &d.hw_versions, 1)?;
    let hw_versions = d
        .hw_versions
        .iter()
        .enumerate()
        .map(|(i, h)| text(&format!("hw_versions[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    if d.version == 0 {
        return Err(field("version", "must be at least 1"));
    }
    let effective_at = UnixTime::parse_rfc3339(&d.effective_at)
        .ok_or_else(|| field("effective_at", "expected an RFC 3339 UTC timestamp"))?;
    if d.description.len() > 1024 {
        return Err(field("description", "longer than 1024 bytes"));
    }
    bounded("firmware.components", &d.firmware.components, 1)?;
    let mut components: Vec<ComponentPolicy> = Vec::new();
    for (i, c) in d.firmware.components.iter().enumerate() {
        let path = format!("firmware.components[{i}]");
        let name = text(&format!("{path}.name"), &c.name)?;
        if components.iter().any(|o| o.name == name) {
            return Err(field(
                &format!("{path}.name"),
                format!("\"{name}\" listed twice"),
            ));
        }
        bounded(&format!("{path}.approved"), &c.approved, 1)?;
        let approved = c
            .approved
            .iter()
            .enumerate()
            .map(|(j, a)| {
                Ok(Approved {
                    version: text(&format!("{path}.approved[{j}].version"), &a.version)?,
                    svn: a.svn,
                    digest: digest(&format!("{path}.approved[{j}].digest"), &a.digest)?,
                })
            })
            .collect::<Result<Vec<_>, Rejection>>()?;
        components.push(ComponentPolicy {
            name,
            min_svn: c.min_svn,
            approved,
        });
    }
    components.sort_by(|a, b| a.name.cmp(&b.name));
    bounded("firmware.revoked", &d.firmware.revoked, 0)?;
    let revoked = d
        .firmware
        .revoked
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok((
                digest(&format!("firmware.revoked[{i}].digest"), &r.digest)?,
                text(&format!("firmware.revoked[{i}].reason"), &r.reason)?,
            ))
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    if d.calibration.max_interval_days == 0 {
        return Err(field("calibration.max_interval_days", "must be at least 1"));
    }
    bounded("calibration.parameters", &d.calibration.parameters, 0)?;
    let mut parameters: Vec<Bound> = Vec::new();
    for (i, p) in d.calibration.parameters.iter().enumerate() {
        let path = format!("calibration.parameters[{i}]");
        let name = text(&format!("{path}.name"), &p.name)?;
        if parameters.iter().any(|o| o.name == name) {
            return Err(field(
                &format!("{path}.name"),
                format!("\"{name}\" listed twice"),
            ));
        }
        if p.min > p.max {
            return Err(field(&format!("{path}.min"), "is above max"));
        }
        parameters.push(Bound {
            name,
            min: p.min,
            max: p.max,
        });
    }
    if d.security.min_dbgstat > 4 {
        return Err(field("security.min_dbgstat", "expected 0..4"));
    }
    if d.freshness.max_evidence_age_hours == 0 {
        return Err(field(
            "freshness.max_evidence_age_hours",
            "must be at least 1",
        ));
    }
    Ok(Baseline {
        model,
        hw_versions,
        version: d.version,
        effective_at,
        description: d.description,
        components,
        revoked,
        calibration_required: d.calibration.required,
        max_interval_days: d.calibration.max_interval_days,
        parameters,
        require_secure_boot: d.security.require_secure_boot,
        min_dbgstat: d.security.min_dbgstat,
        max_evidence_age_hours: d.freshness.max_evidence_age_hours,
        nonce_required: d.freshness.nonce_required,
    })
}

/// The release keys and how many of them must sign a baseline.
#[derive(Clone, Debug)]
pub struct TrustRoot {
    /// The configured release keys (`[release] keys`).
    pub keys: Vec<PublicKey>,
    /// How many distinct release keys must sign a baseline (`t` of `n`).
    pub threshold: usize,
}

impl TrustRoot {
    /// Counts the distinct release keys with a valid signature over the
    /// envelope and refuses fewer than the threshold. A key signing twice
    /// counts once; signatures by unknown keys count for nothing.
    pub fn verify(&self, env: &Envelope) -> Result<usize, Rejection> {
        if self.threshold == 0 || self.keys.is_empty() {
            return Err(reject!(
                ThresholdNotMet,
                "no release keys are configured: baselines cannot be accepted"
            ));
        }
        let msg = pae(&env.payload_type, &env.payload);
        let signed = self
            .keys
            .iter()
            .filter(|k| {
                env.signatures
                    .iter()
                    .any(|s| k.verify(&msg, &s.sig, SigEncoding::Der))
            })
            .count();
        if signed < self.threshold {
            return Err(reject!(
                ThresholdNotMet,
                "{signed} valid release signature(s); {} of {} required",
                self.threshold,
                self.keys.len()
            ));
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Model;
    use crate::Reason;

    fn baseline(approved: &[&str], revoked: &[&str]) -> Baseline {
        Baseline {
            model: Model::parse("PM-200", Reason::FieldInvalid, "model").unwrap(),
            hw_versions: vec!["B".into()],
            version: 1,
            effective_at: UnixTime(0),
            description: String::new(),
            components: vec![ComponentPolicy {
                name: "application".into(),
                min_svn: 0,
                approved: approved
                    .iter()
                    .map(|v| Approved {
                        version: (*v).into(),
                        svn: 1,
                        digest: Digest::of(v.as_bytes()),
                    })
                    .collect(),
            }],
            revoked: revoked
                .iter()
                .map(|v| (Digest::of(v.as_bytes()), "withdrawn".into()))
                .collect(),
            calibration_required: false,
            max_interval_days: 0,
            parameters: vec![],
            require_secure_boot: false,
            min_dbgstat: 0,
            max_evidence_age_hours: 24,
            nonce_required: false,
        }
    }

    fn digests(names: &[&str]) -> Vec<Digest> {
        let mut v: Vec<Digest> = names.iter().map(|n| Digest::of(n.as_bytes())).collect();
        v.sort_by_key(|d| d.0);
        v
    }

    #[test]
    fn urgent_digests_are_those_whose_standing_changed() {
        let v1 = baseline(&["2.1.3", "2.1.4"], &[]);
        // Withdrawing 2.1.3: revoked now, approved no longer.
        let v2 = baseline(&["2.1.4"], &["2.1.3"]);
        assert_eq!(v2.urgent_digests(Some(&v1)), digests(&["2.1.3"]));
        // Approving it again: both changes undone, the same digest.
        let v3 = baseline(&["2.1.3", "2.1.4"], &[]);
        assert_eq!(v3.urgent_digests(Some(&v2)), digests(&["2.1.3"]));
        // A new build approved: its units may turn from unapproved.
        let v4 = baseline(&["2.1.3", "2.1.4", "2.1.5"], &[]);
        assert_eq!(v4.urgent_digests(Some(&v3)), digests(&["2.1.5"]));
        // Nothing changed: nothing urgent.
        assert!(v4.urgent_digests(Some(&v4)).is_empty());
        // The first baseline of a model: its revoked digests.
        assert_eq!(v2.urgent_digests(None), digests(&["2.1.3"]));
    }
}
