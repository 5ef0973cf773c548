//! Station records (docs/formats.md §2.1, §2.2): the JSON payloads of DSSE
//! envelopes, parsed strictly (unknown fields rejected, errors name the field
//! path) and then checked into typed values.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Reason, Rejection};
use crate::evidence::Component;
use crate::ids::{is_object_id, Digest, Model, Serial, StationId};
use crate::json::{object, objects};
use crate::keys::{KeyAlg, PublicKey};
use crate::reject;
use crate::time::UnixTime;

/// Strict JSON: objects only, unknown and duplicate fields are errors, and the
/// error names the field path (`parameters[2].as_left: ...`).
pub use crate::json::parse_json;

pub const PROVISIONING_TYPE: &str = "application/vnd.attestd.provisioning.v1+json";
pub const CALIBRATION_TYPE: &str = "application/vnd.attestd.calibration.v1+json";

/// Prefix of record ids.
pub const RECORD_ID_PREFIX: &str = "rec_";
const MAX_TEXT: usize = 256;
const MAX_LIST: usize = 64;

/// The kinds of station record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Provisioning,
    Calibration,
}

impl RecordKind {
    pub fn from_payload_type(t: &str) -> Result<RecordKind, Rejection> {
        match t {
            PROVISIONING_TYPE => Ok(RecordKind::Provisioning),
            CALIBRATION_TYPE => Ok(RecordKind::Calibration),
            other => Err(reject!(
                UnknownPayloadType,
                "payload_type {:?} is not {PROVISIONING_TYPE} or {CALIBRATION_TYPE}",
                other.chars().take(100).collect::<String>()
            )),
        }
    }

    pub fn payload_type(self) -> &'static str {
        match self {
            RecordKind::Provisioning => PROVISIONING_TYPE,
            RecordKind::Calibration => CALIBRATION_TYPE,
        }
    }
}

// ---- JSON documents, exactly as stations write them -------------------------

/// `device_key` of a provisioning record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceKeyDoc {
    pub alg: String,
    /// Base64 SubjectPublicKeyInfo DER.
    pub spki_der: String,
}

/// One firmware entry of a provisioning record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareDoc {
    pub name: String,
    pub version: String,
    pub svn: u64,
    pub digest: String,
}

/// `application/vnd.attestd.provisioning.v1+json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningDoc {
    pub station_id: String,
    pub sequence: u64,
    pub performed_at: String,
    pub operator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
    pub serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udi: Option<String>,
    pub model: String,
    pub hw_version: String,
    #[serde(deserialize_with = "object")]
    pub device_key: DeviceKeyDoc,
    #[serde(deserialize_with = "objects")]
    pub firmware: Vec<FirmwareDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcedureDoc {
    pub id: String,
    pub version: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParameterDoc {
    pub name: String,
    pub unit: String,
    pub nominal: f64,
    pub tolerance_low: f64,
    pub tolerance_high: f64,
    pub as_found: f64,
    pub as_left: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstrumentDoc {
    pub id: String,
    pub due_at: String,
}

/// `application/vnd.attestd.calibration.v1+json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationDoc {
    pub station_id: String,
    pub sequence: u64,
    pub performed_at: String,
    pub operator_id: String,
    pub serial: String,
    pub calibration_id: String,
    #[serde(deserialize_with = "object")]
    pub procedure: ProcedureDoc,
    pub result: String,
    #[serde(deserialize_with = "objects")]
    pub parameters: Vec<ParameterDoc>,
    #[serde(deserialize_with = "objects")]
    pub reference_instruments: Vec<InstrumentDoc>,
    pub calibration_digest: String,
    pub next_due_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

// ---- Checked records ----------------------------------------------------------

/// A provisioning record: enrolls a unit and binds its key.
#[derive(Clone, Debug, PartialEq)]
pub struct Provisioning {
    pub station_id: StationId,
    pub sequence: u64,
    pub performed_at: UnixTime,
    pub operator_id: String,
    pub work_order: Option<String>,
    pub serial: Serial,
    pub udi: Option<String>,
    pub model: Model,
    pub hw_version: String,
    pub device_key: PublicKey,
    pub firmware: Vec<Component>,
    /// The record id of the provisioning record this one replaces (a re-key).
    pub supersedes: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationResult {
    Pass,
    Fail,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub unit: String,
    pub nominal: f64,
    pub tolerance_low: f64,
    pub tolerance_high: f64,
    pub as_found: f64,
    pub as_left: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    pub id: String,
    pub due_at: UnixTime,
}

/// A calibration record: sets the unit's expected calibration digest.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub station_id: StationId,
    pub sequence: u64,
    pub performed_at: UnixTime,
    pub operator_id: String,
    pub serial: Serial,
    pub calibration_id: String,
    pub procedure_id: String,
    pub procedure_version: String,
    pub result: CalibrationResult,
    pub parameters: Vec<Parameter>,
    pub reference_instruments: Vec<Instrument>,
    pub calibration_digest: Digest,
    pub next_due_at: UnixTime,
    pub supersedes: Option<String>,
}

/// A checked station record of either kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Provisioning(Provisioning),
    Calibration(Calibration),
}

impl Record {
    /// Parses and checks a payload of the given type.
    pub fn parse(payload_type: &str, payload: &[u8]) -> Result<Record, Rejection> {
        match RecordKind::from_payload_type(payload_type)? {
            RecordKind::Provisioning => Ok(Record::Provisioning(check_provisioning(parse_json(
                payload,
            )?)?)),
            RecordKind::Calibration => Ok(Record::Calibration(check_calibration(parse_json(
                payload,
            )?)?)),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Provisioning(_) => RecordKind::Provisioning,
            Record::Calibration(_) => RecordKind::Calibration,
        }
    }

    pub fn station_id(&self) -> &StationId {
        match self {
            Record::Provisioning(p) => &p.station_id,
            Record::Calibration(c) => &c.station_id,
        }
    }

    pub fn sequence(&self) -> u64 {
        match self {
            Record::Provisioning(p) => p.sequence,
            Record::Calibration(c) => c.sequence,
        }
    }

    pub fn serial(&self) -> &Serial {
        match self {
            Record::Provisioning(p) => &p.serial,
            Record::Calibration(c) => &c.serial,
        }
    }

    pub fn performed_at(&self) -> UnixTime {
        match self {
            Record::Provisioning(p) => p.performed_at,
            Record::Calibration(c) => c.performed_at,
        }
    }
}

/// The id of a record: derived from what was signed (type and payload), so
/// the identical record always gets the same id.
pub fn record_id(payload_type: &str, payload: &[u8]) -> String {
    crate::ids::object_id(
        RECORD_ID_PREFIX,
        &Digest::of(&crate::dsse::pae(payload_type, payload)),
    )
}

fn field(path: &str, msg: impl std::fmt::Display) -> Rejection {
    reject!(FieldInvalid, "{path}: {msg}")
}

fn text(path: &str, s: &str) -> Result<String, Rejection> {
    if s.is_empty() {
        return Err(field(path, "must not be empty"));
    }
    if s.len() > MAX_TEXT {
        return Err(field(path, format!("longer than {MAX_TEXT} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(field(path, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

fn opt_text(path: &str, s: &Option<String>) -> Result<Option<String>, Rejection> {
    s.as_deref().map(|s| text(path, s)).transpose()
}

fn timestamp(path: &str, s: &str) -> Result<UnixTime, Rejection> {
    UnixTime::parse_rfc3339(s).ok_or_else(|| {
        field(
            path,
            "expected an RFC 3339 UTC timestamp like 2026-11-28T09:14:03Z",
        )
    })
}

fn digest(path: &str, s: &str) -> Result<Digest, Rejection> {
    Digest::from_hex(s).ok_or_else(|| field(path, "expected 64 lowercase hex characters"))
}

fn list_len<T>(path: &str, v: &[T], min: usize) -> Result<(), Rejection> {
    if v.len() < min || v.len() > MAX_LIST {
        return Err(field(
            path,
            format!("expected {min}..{MAX_LIST} entries, got {}", v.len()),
        ));
    }
    Ok(())
}

fn check_provisioning(d: ProvisioningDoc) -> Result<Provisioning, Rejection> {
    let alg = KeyAlg::parse(&d.device_key.alg)
        .ok_or_else(|| field("device_key.alg", "expected ES256 or Ed25519"))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(&d.device_key.spki_der)
        .map_err(|_| field("device_key.spki_der", "expected base64"))?;
    let device_key = PublicKey::from_spki_der(&der, Reason::FieldInvalid, "device_key.spki_der")?;
    if device_key.alg() != alg {
        return Err(field(
            "device_key.alg",
            format!(
                "says {} but the key is {}",
                alg.as_str(),
                device_key.alg().as_str()
            ),
        ));
    }
    list_len("firmware", &d.firmware, 0)?;
    let mut firmware: Vec<Component> = Vec::with_capacity(d.firmware.len());
    for (i, f) in d.firmware.iter().enumerate() {
        let c = Component {
            name: text(&format!("firmware[{i}].name"), &f.name)?,
            version: text(&format!("firmware[{i}].version"), &f.version)?,
            svn: f.svn,
            digest: digest(&format!("firmware[{i}].digest"), &f.digest)?,
        };
        if firmware.iter().any(|o| o.name == c.name) {
            return Err(field(
                &format!("firmware[{i}].name"),
                format!("\"{}\" listed twice", c.name),
            ));
        }
        firmware.push(c);
    }
    if let Some(s) = &d.supersedes {
        if !is_object_id(RECORD_ID_PREFIX, s) {
            return Err(field(
                "supersedes",
                "expected a record id (rec_ and 32 hex characters)",
            ));
        }
    }
    Ok(Provisioning {
        station_id: StationId::parse(&d.station_id, Reason::FieldInvalid, "station_id")?,
        sequence: d.sequence,
        performed_at: timestamp("performed_at", &d.performed_at)?,
        operator_id: text("operator_id", &d.operator_id)?,
        work_order: opt_text("work_order", &d.work_order)?,
        serial: Serial::parse(&d.serial, Reason::FieldInvalid, "serial")?,
        udi: opt_text("udi", &d.udi)?,
        model: Model::parse(&d.model, Reason::FieldInvalid, "model")?,
        hw_version: text("hw_version", &d.hw_version)?,
        device_key,
        firmware,
        supersedes: d.supersedes,
    })
}

fn check_calibration(d: CalibrationDoc) -> Result<Calibration, Rejection> {
    let result = match d.result.as_str() {
        "PASS" => CalibrationResult::Pass,
        "FAIL" => CalibrationResult::Fail,
        _ => return Err(field("result", "expected PASS or FAIL")),
    };
    list_len("parameters", &d.parameters, 0)?;
    let mut parameters: Vec<Parameter> = Vec::with_capacity(d.parameters.len());
    for (i, p) in d.parameters.iter().enumerate() {
        let path = format!("parameters[{i}]");
        let name = text(&format!("{path}.name"), &p.name)?;
        if parameters.iter().any(|o| o.name == name) {
            return Err(field(
                &format!("{path}.name"),
                format!("\"{name}\" listed twice"),
            ));
        }
        if p.tolerance_low > p.tolerance_high {
            return Err(field(
                &format!("{path}.tolerance_low"),
                "is above tolerance_high",
            ));
        }
        if result == CalibrationResult::Pass
            && !(p.tolerance_low..=p.tolerance_high).contains(&p.as_left)
        {
            return Err(field(
                &format!("{path}.as_left"),
                format!(
                    "{} lies outside its tolerance [{}, {}] but result is PASS",
                    p.as_left, p.tolerance_low, p.tolerance_high
                ),
            ));
        }
        parameters.push(Parameter {
            name,
            unit: text(&format!("{path}.unit"), &p.unit)?,
            nominal: p.nominal,
            tolerance_low: p.tolerance_low,
            tolerance_high: p.tolerance_high,
            as_found: p.as_found,
            as_left: p.as_left,
        });
    }
    list_len("reference_instruments", &d.reference_instruments, 0)?;
    let reference_instruments = d
        .reference_instruments
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(Instrument {
                id: text(&format!("reference_instruments[{i}].id"), &r.id)?,
                due_at: timestamp(&format!("reference_instruments[{i}].due_at"), &r.due_at)?,
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    Ok(Calibration {
        station_id: StationId::parse(&d.station_id, Reason::FieldInvalid, "station_id")?,
        sequence: d.sequence,
        performed_at: timestamp("performed_at", &d.performed_at)?,
        operator_id: text("operator_id", &d.operator_id)?,
        serial: Serial::parse(&d.serial, Reason::FieldInvalid, "serial")?,
        calibration_id: text("calibration_id", &d.calibration_id)?,
        procedure_id: text("procedure.id", &d.procedure.id)?,
        procedure_version: text("procedure.version", &d.procedure.version)?,
        result,
        parameters,
        reference_instruments,
        calibration_digest: digest("calibration_digest", &d.calibration_digest)?,
        next_due_at: timestamp("next_due_at", &d.next_due_at)?,
        supersedes: opt_text("supersedes", &d.supersedes)?,
    })
}
