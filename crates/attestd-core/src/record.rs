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

/// DSSE payload type of a provisioning record (docs/formats.md §2.1).
pub const PROVISIONING_TYPE: &str = "application/vnd.attestd.provisioning.v1+json";
/// DSSE payload type of a calibration record (docs/formats.md §2.2).
pub const CALIBRATION_TYPE: &str = "application/vnd.attestd.calibration.v1+json";

/// Prefix of record ids.
pub const RECORD_ID_PREFIX: &str = "rec_";
const MAX_TEXT: usize = 256;
const MAX_LIST: usize = 64;

/// The kinds of station record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Enrolls a unit: binds its serial to a model, a hardware version and a device key.
    Provisioning,
    /// Says which calibration data set an authorised calibration wrote to an enrolled unit.
    Calibration,
}

impl RecordKind {
    /// The kind a DSSE `payload_type` names; any other type is `UNKNOWN_PAYLOAD_TYPE`.
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

    /// The DSSE `payload_type` of records of this kind.
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
    /// `ES256` (P-256) or `Ed25519` (`EdDSA` also accepted); must match the key.
    pub alg: String,
    /// Base64 SubjectPublicKeyInfo DER.
    pub spki_der: String,
}

/// One firmware entry of a provisioning record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareDoc {
    /// Component name, e.g. `bootloader`; unique within the record.
    pub name: String,
    /// The build's version text, e.g. `2.1.0`.
    pub version: String,
    /// Security version number of the build.
    pub svn: u64,
    /// SHA-256 of the image, 64 lowercase hex characters.
    pub digest: String,
}

/// `application/vnd.attestd.provisioning.v1+json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningDoc {
    /// The submitting station; must be the caller's own station.
    pub station_id: String,
    /// The station's record counter: strictly above the last one accepted from it.
    pub sequence: u64,
    /// When the unit was provisioned (RFC 3339, UTC).
    pub performed_at: String,
    /// Who operated the station.
    pub operator_id: String,
    /// The factory work order, if the station gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
    /// The unit being enrolled.
    pub serial: String,
    /// The unit's UDI, e.g. GS1 `(01)...(21)...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udi: Option<String>,
    /// The unit's model, e.g. `PM-200`; the evidence's `hwmodel` must equal it.
    pub model: String,
    /// The unit's hardware version, e.g. `B`; the evidence's `hwversion[0]` must equal it.
    pub hw_version: String,
    /// The public key the unit's evidence is signed with.
    #[serde(deserialize_with = "object")]
    pub device_key: DeviceKeyDoc,
    /// The firmware images installed at provisioning (may be empty).
    #[serde(deserialize_with = "objects")]
    pub firmware: Vec<FirmwareDoc>,
    /// The unit's current provisioning record id, when this record changes its key, model or
    /// hardware version (a re-key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

/// `procedure` of a calibration record: the procedure followed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcedureDoc {
    /// The procedure's id, e.g. `CP-SPO2-7`.
    pub id: String,
    /// The procedure's version.
    pub version: String,
}

/// One calibrated parameter of a calibration record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParameterDoc {
    /// Parameter name, e.g. `spo2_offset`; baselines bound parameters by this name.
    pub name: String,
    /// Unit of the values, e.g. `%` or `mmHg`.
    pub unit: String,
    /// Target value.
    pub nominal: f64,
    /// Lowest accepted value.
    pub tolerance_low: f64,
    /// Highest accepted value.
    pub tolerance_high: f64,
    /// Value measured before adjustment.
    pub as_found: f64,
    /// Value measured after adjustment; with `PASS` it must lie within the tolerance.
    pub as_left: f64,
}

/// A reference instrument used for a calibration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstrumentDoc {
    /// The instrument's id, e.g. `REF-ProSim8-4471`.
    pub id: String,
    /// The instrument's own calibration due date (RFC 3339, UTC).
    pub due_at: String,
}

/// `application/vnd.attestd.calibration.v1+json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationDoc {
    /// The submitting station; must be the caller's own station.
    pub station_id: String,
    /// The station's record counter: strictly above the last one accepted from it.
    pub sequence: u64,
    /// When the calibration was done (RFC 3339, UTC).
    pub performed_at: String,
    /// The technician.
    pub operator_id: String,
    /// The unit calibrated; it must be enrolled.
    pub serial: String,
    /// The station's own id of this calibration.
    pub calibration_id: String,
    /// The procedure followed.
    #[serde(deserialize_with = "object")]
    pub procedure: ProcedureDoc,
    /// `PASS` or `FAIL`.
    pub result: String,
    /// The calibrated parameters (may be empty).
    #[serde(deserialize_with = "objects")]
    pub parameters: Vec<ParameterDoc>,
    /// The reference instruments used (may be empty).
    #[serde(deserialize_with = "objects")]
    pub reference_instruments: Vec<InstrumentDoc>,
    /// SHA-256 of the calibration data set written to the unit (64 lowercase hex); the unit reports
    /// the same bytes in its `calibration` claim.
    pub calibration_digest: String,
    /// When the next calibration is due (RFC 3339, UTC).
    pub next_due_at: String,
    /// Free text naming what this record corrects (e.g. an earlier `calibration_id`); stored, not
    /// interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

// ---- Checked records ----------------------------------------------------------

/// A provisioning record: enrolls a unit and binds its key.
#[derive(Clone, Debug, PartialEq)]
pub struct Provisioning {
    /// The station that signed the record.
    pub station_id: StationId,
    /// The station's record counter.
    pub sequence: u64,
    /// When the unit was provisioned, as the station states it.
    pub performed_at: UnixTime,
    /// Who operated the station.
    pub operator_id: String,
    /// The factory work order, if given.
    pub work_order: Option<String>,
    /// The unit enrolled.
    pub serial: Serial,
    /// The unit's UDI, if given.
    pub udi: Option<String>,
    /// The unit's model.
    pub model: Model,
    /// The unit's hardware version.
    pub hw_version: String,
    /// The key the unit's evidence must be signed with.
    pub device_key: PublicKey,
    /// The firmware installed at provisioning.
    pub firmware: Vec<Component>,
    /// The record id of the provisioning record this one replaces (a re-key).
    pub supersedes: Option<String>,
}

/// The outcome a calibration record states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationResult {
    /// The calibration passed.
    Pass,
    /// The calibration failed; appraisals report `CALIBRATION_FAILED`.
    Fail,
}

/// One checked parameter of a calibration record (see [`ParameterDoc`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    /// Parameter name; baselines bound parameters by it.
    pub name: String,
    /// Unit of the values.
    pub unit: String,
    /// Target value.
    pub nominal: f64,
    /// Lowest accepted value.
    pub tolerance_low: f64,
    /// Highest accepted value, not below `tolerance_low`.
    pub tolerance_high: f64,
    /// Value measured before adjustment.
    pub as_found: f64,
    /// Value measured after adjustment; the value appraisal checks against the baseline's bounds.
    pub as_left: f64,
}

/// A checked reference instrument of a calibration record.
#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    /// The instrument's id.
    pub id: String,
    /// The instrument's own calibration due date; before `performed_at` it is
    /// `CALIBRATION_REFERENCE_EXPIRED`.
    pub due_at: UnixTime,
}

/// A calibration record: sets the unit's expected calibration digest.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// The station that signed the record.
    pub station_id: StationId,
    /// The station's record counter.
    pub sequence: u64,
    /// When the calibration was done, as the station states it.
    pub performed_at: UnixTime,
    /// The technician.
    pub operator_id: String,
    /// The unit calibrated.
    pub serial: Serial,
    /// The station's own id of this calibration.
    pub calibration_id: String,
    /// The procedure's id.
    pub procedure_id: String,
    /// The procedure's version.
    pub procedure_version: String,
    /// Whether the calibration passed.
    pub result: CalibrationResult,
    /// The calibrated parameters.
    pub parameters: Vec<Parameter>,
    /// The reference instruments used.
    pub reference_instruments: Vec<Instrument>,
    /// SHA-256 of the calibration data set the unit must report.
    pub calibration_digest: Digest,
    /// When the next calibration is due.
    pub next_due_at: UnixTime,
    /// What this record corrects, as free text; not interpreted.
    pub supersedes: Option<String>,
}

/// A checked station record of either kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A provisioning record.
    Provisioning(Provisioning),
    /// A calibration record.
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

    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Provisioning(_) => RecordKind::Provisioning,
            Record::Calibration(_) => RecordKind::Calibration,
        }
    }

    /// The station that signed the record.
    pub fn station_id(&self) -> &StationId {
        match self {
            Record::Provisioning(p) => &p.station_id,
            Record::Calibration(c) => &c.station_id,
        }
    }

    /// The station's record counter.
    pub fn sequence(&self) -> u64 {
        match self {
            Record::Provisioning(p) => p.sequence,
            Record::Calibration(c) => c.sequence,
        }
    }

    /// The unit the record is about.
    pub fn serial(&self) -> &Serial {
        match self {
            Record::Provisioning(p) => &p.serial,
            Record::Calibration(c) => &c.serial,
        }
    }

    /// When the station says the work was done.
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
