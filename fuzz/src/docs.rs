//! Writing checked records and baselines back as the JSON documents stations
//! and release engineering send. The library checks documents into typed
//! values but has no way back (the SDK writes documents, not checked
//! values), so the targets carry this inverse: a checked value written back
//! must parse to the same value.

use attestd_core::baseline::{
    ApprovedDoc, Baseline, BaselineDoc, BoundDoc, CalibrationPolicyDoc, ComponentDoc,
    FirmwareDoc as BaselineFirmwareDoc, FreshnessDoc, RevokedDoc, SecurityDoc,
};
use attestd_core::record::{
    Calibration, CalibrationDoc, CalibrationResult, DeviceKeyDoc, FirmwareDoc, InstrumentDoc,
    ParameterDoc, ProcedureDoc, Provisioning, ProvisioningDoc,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

pub fn provisioning_doc(p: &Provisioning) -> ProvisioningDoc {
    ProvisioningDoc {
        station_id: p.station_id.to_string(),
        sequence: p.sequence,
        performed_at: p.performed_at.to_string(),
        operator_id: p.operator_id.clone(),
        work_order: p.work_order.clone(),
        serial: p.serial.to_string(),
        udi: p.udi.clone(),
        model: p.model.to_string(),
        hw_version: p.hw_version.clone(),
        device_key: DeviceKeyDoc {
            alg: p.device_key.alg().as_str().to_owned(),
            spki_der: B64.encode(p.device_key.spki_der()),
        },
        firmware: p
            .firmware
            .iter()
            .map(|c| FirmwareDoc {
                name: c.name.clone(),
                version: c.version.clone(),
                svn: c.svn,
                digest: c.digest.to_hex(),
            })
            .collect(),
        supersedes: p.supersedes.clone(),
    }
}

pub fn calibration_doc(c: &Calibration) -> CalibrationDoc {
    CalibrationDoc {
        station_id: c.station_id.to_string(),
        sequence: c.sequence,
        performed_at: c.performed_at.to_string(),
        operator_id: c.operator_id.clone(),
        serial: c.serial.to_string(),
        calibration_id: c.calibration_id.clone(),
        procedure: ProcedureDoc {
            id: c.procedure_id.clone(),
            version: c.procedure_version.clone(),
        },
        result: match c.result {
            CalibrationResult::Pass => "PASS",
            CalibrationResult::Fail => "FAIL",
        }
        .to_owned(),
        parameters: c
            .parameters
            .iter()
            .map(|p| ParameterDoc {
                name: p.name.clone(),
                unit: p.unit.clone(),
                nominal: p.nominal,
                tolerance_low: p.tolerance_low,
                tolerance_high: p.tolerance_high,
                as_found: p.as_found,
                as_left: p.as_left,
            })
            .collect(),
        reference_instruments: c
            .reference_instruments
            .iter()
            .map(|i| InstrumentDoc {
                id: i.id.clone(),
                due_at: i.due_at.to_string(),
            })
            .collect(),
        calibration_digest: c.calibration_digest.to_hex(),
        next_due_at: c.next_due_at.to_string(),
        supersedes: c.supersedes.clone(),
    }
}

pub fn baseline_doc(b: &Baseline) -> BaselineDoc {
    BaselineDoc {
        model: b.model.to_string(),
        hw_versions: b.hw_versions.clone(),
        version: b.version,
        effective_at: b.effective_at.to_string(),
        description: b.description.clone(),
        firmware: BaselineFirmwareDoc {
            components: b
                .components
                .iter()
                .map(|c| ComponentDoc {
                    name: c.name.clone(),
                    min_svn: c.min_svn,
                    approved: c
                        .approved
                        .iter()
                        .map(|a| ApprovedDoc {
                            version: a.version.clone(),
                            svn: a.svn,
                            digest: a.digest.to_hex(),
                        })
                        .collect(),
                })
                .collect(),
            revoked: b
                .revoked
                .iter()
                .map(|(d, why)| RevokedDoc {
                    digest: d.to_hex(),
                    reason: why.clone(),
                })
                .collect(),
        },
        calibration: CalibrationPolicyDoc {
            required: b.calibration_required,
            max_interval_days: b.max_interval_days,
            parameters: b
                .parameters
                .iter()
                .map(|p| BoundDoc {
                    name: p.name.clone(),
                    min: p.min,
                    max: p.max,
                })
                .collect(),
        },
        security: SecurityDoc {
            require_secure_boot: b.require_secure_boot,
            min_dbgstat: b.min_dbgstat,
        },
        freshness: FreshnessDoc {
            max_evidence_age_hours: b.max_evidence_age_hours,
            nonce_required: b.nonce_required,
        },
    }
}

/// Whether `s` is record text as docs/formats.md §2 defines it: 1..256
/// bytes, no control characters.
pub fn is_record_text(s: &str) -> bool {
    (1..=256).contains(&s.len()) && !s.chars().any(char::is_control)
}
