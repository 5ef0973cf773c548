//! Sample documents for tests, demos and simulators: a unit whose firmware
//! is a bootloader (2.1.0, svn 4) and an application, and a baseline that
//! approves it. Digests are SHA-256 of readable names, so any tool can
//! recompute them.

use attestd_core::baseline::{
    ApprovedDoc, BaselineDoc, BoundDoc, CalibrationPolicyDoc, ComponentDoc, FirmwareDoc,
    FreshnessDoc, RevokedDoc, SecurityDoc,
};
use attestd_core::ids::Digest;

/// The sample bootloader image's digest.
pub fn bootloader_digest() -> Digest {
    Digest::of(b"bootloader 2.1.0")
}

/// The sample application image's digest for `version`.
pub fn application_digest(version: &str) -> Digest {
    Digest::of(format!("application {version}").as_bytes())
}

/// A baseline for `model` (hardware A and B): bootloader 2.1.0 (min svn 4),
/// the application builds `approved` ((version, svn); min svn 9), `revoked`
/// application versions withdrawn, calibration required with `spo2_offset`
/// in [-0.5, 0.5] within 365 days, secure boot, `dbgstat >= 3`, evidence at
/// most 24 h old and nonce-fresh.
pub fn baseline(
    model: &str,
    version: u64,
    approved: &[(&str, u64)],
    revoked: &[&str],
    effective_at: &str,
) -> BaselineDoc {
    BaselineDoc {
        model: model.into(),
        hw_versions: vec!["A".into(), "B".into()],
        version,
        effective_at: effective_at.into(),
        description: format!("{model} v{version}"),
        firmware: FirmwareDoc {
            components: vec![
                ComponentDoc {
                    name: "bootloader".into(),
                    min_svn: 4,
                    approved: vec![ApprovedDoc {
                        version: "2.1.0".into(),
                        svn: 4,
                        digest: bootloader_digest().to_hex(),
                    }],
                },
                ComponentDoc {
                    name: "application".into(),
                    min_svn: 9,
                    approved: approved
                        .iter()
                        .map(|(v, svn)| ApprovedDoc {
                            version: v.to_string(),
                            svn: *svn,
                            digest: application_digest(v).to_hex(),
                        })
                        .collect(),
                },
            ],
            revoked: revoked
                .iter()
                .map(|v| RevokedDoc {
                    digest: application_digest(v).to_hex(),
                    reason: format!("application {v} withdrawn (CVE-2026-0001)"),
                })
                .collect(),
        },
        calibration: CalibrationPolicyDoc {
            required: true,
            max_interval_days: 365,
            parameters: vec![BoundDoc {
                name: "spo2_offset".into(),
                min: -0.5,
                max: 0.5,
            }],
        },
        security: SecurityDoc {
            require_secure_boot: true,
            min_dbgstat: 3,
        },
        freshness: FreshnessDoc {
            max_evidence_age_hours: 24,
            nonce_required: true,
        },
    }
}

/// A provisioning record for `serial` (hardware B, the sample bootloader,
/// `device_key` enrolled), performed two minutes before `now`.
pub fn provisioning_doc(
    station_id: &str,
    sequence: u64,
    serial: &str,
    model: &str,
    device_key: &crate::SigningKey,
    now: attestd_core::time::UnixTime,
) -> attestd_core::record::ProvisioningDoc {
    use attestd_core::record::{DeviceKeyDoc, FirmwareDoc, ProvisioningDoc};
    ProvisioningDoc {
        station_id: station_id.into(),
        sequence,
        performed_at: now.plus_seconds(-120).to_string(),
        operator_id: "op-sample".into(),
        work_order: None,
        serial: serial.into(),
        udi: None,
        model: model.into(),
        hw_version: "B".into(),
        device_key: DeviceKeyDoc {
            alg: device_key.alg().as_str().into(),
            spki_der: crate::record::spki_base64(device_key),
        },
        firmware: vec![FirmwareDoc {
            name: "bootloader".into(),
            version: "2.1.0".into(),
            svn: 4,
            digest: bootloader_digest().to_hex(),
        }],
        supersedes: None,
    }
}

/// The digest of the sample calibration data set of `serial`.
pub fn calibration_digest(serial: &str) -> Digest {
    Digest::of(format!("calibration of {serial}").as_bytes())
}

/// A passing calibration of `serial` (`spo2_offset` left at 0.04, inside
/// the sample baseline's bounds; data set [`calibration_digest`]),
/// performed a minute before `now`, next due in 300 days.
pub fn calibration_doc(
    station_id: &str,
    sequence: u64,
    serial: &str,
    now: attestd_core::time::UnixTime,
) -> attestd_core::record::CalibrationDoc {
    use attestd_core::record::{CalibrationDoc, InstrumentDoc, ParameterDoc, ProcedureDoc};
    CalibrationDoc {
        station_id: station_id.into(),
        sequence,
        performed_at: now.plus_seconds(-60).to_string(),
        operator_id: "tech-sample".into(),
        serial: serial.into(),
        calibration_id: format!("CAL-{serial}-1"),
        procedure: ProcedureDoc {
            id: "CP-SPO2-7".into(),
            version: "3".into(),
        },
        result: "PASS".into(),
        parameters: vec![ParameterDoc {
            name: "spo2_offset".into(),
            unit: "%".into(),
            nominal: 0.0,
            tolerance_low: -0.5,
            tolerance_high: 0.5,
            as_found: 0.31,
            as_left: 0.04,
        }],
        reference_instruments: vec![InstrumentDoc {
            id: "REF-ProSim8-4471".into(),
            due_at: now.plus_seconds(200 * 86_400).to_string(),
        }],
        calibration_digest: calibration_digest(serial).to_hex(),
        next_due_at: now.plus_seconds(300 * 86_400).to_string(),
        supersedes: None,
    }
}
