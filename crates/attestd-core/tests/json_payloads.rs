//! The JSON payloads of station records and baselines (formats.md §2) as a
//! station or release engineer writes them: objects only at every level,
//! numbers read exactly as written, and error messages in the format's terms.

use attestd_core::baseline::Baseline;
use attestd_core::record::{Record, CALIBRATION_TYPE, PROVISIONING_TYPE};

const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn provisioning() -> String {
    format!(
        r#"{{"station_id":"line3-prov-01","sequence":1042,"performed_at":"2026-11-28T09:14:03Z",
        "operator_id":"op-1187","work_order":"WO-2026-3312","serial":"PM200-000123",
        "udi":"(01)00812345678901(21)PM200-000123","model":"PM-200","hw_version":"B",
        "device_key":{{"alg":"Ed25519","spki_der":"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}},
        "firmware":[{{"name":"bootloader","version":"2.1.0","svn":4,"digest":"{DIGEST}"}}]}}"#
    )
}

fn calibration() -> String {
    format!(
        r#"{{"station_id":"depot-cal-02","sequence":77,"performed_at":"2026-11-28T10:02:00Z",
        "operator_id":"tech-5521","serial":"PM200-000123","calibration_id":"CAL-PM200-000123-0003",
        "procedure":{{"id":"CP-SPO2-7","version":"3"}},"result":"PASS",
        "parameters":[{{"name":"spo2_offset","unit":"%","nominal":0.0,"tolerance_low":-0.5,
          "tolerance_high":0.5,"as_found":0.31,"as_left":0.04}}],
        "reference_instruments":[{{"id":"REF-ProSim8-4471","due_at":"2027-03-01T00:00:00Z"}}],
        "calibration_digest":"{DIGEST}","next_due_at":"2027-11-28T00:00:00Z",
        "supersedes":"CAL-PM200-000123-0002"}}"#
    )
}

fn baseline() -> String {
    format!(
        r#"{{"model":"PM-200","hw_versions":["A","B"],"version":7,"effective_at":"2026-12-01T00:00:00Z",
        "description":"test","firmware":{{"components":[
          {{"name":"bootloader","min_svn":4,"approved":[{{"version":"2.1.0","svn":4,"digest":"{DIGEST}"}}]}}],
          "revoked":[{{"digest":"{DIGEST}","reason":"CVE-2026-0001"}}]}},
        "calibration":{{"required":true,"max_interval_days":365,
          "parameters":[{{"name":"spo2_offset","min":-0.5,"max":0.5}}]}},
        "security":{{"require_secure_boot":true,"min_dbgstat":3}},
        "freshness":{{"max_evidence_age_hours":24,"nonce_required":true}}}}"#
    )
}

fn calibration_record(
    json: &str,
) -> Result<attestd_core::record::Calibration, attestd_core::Rejection> {
    match Record::parse(CALIBRATION_TYPE, json.as_bytes())? {
        Record::Calibration(c) => Ok(c),
        other => panic!("not a calibration record: {other:?}"),
    }
}

#[test]
fn the_examples_parse() {
    assert!(Record::parse(PROVISIONING_TYPE, provisioning().as_bytes()).is_ok());
    assert!(calibration_record(&calibration()).is_ok());
    assert!(Baseline::parse(baseline().as_bytes()).is_ok());
}

/// This literal has more digits than an f64 holds; its correctly rounded
/// value is the f64 also written `0.439196452601227`. serde_json's default
/// (fast, not correctly rounded) parser reads it one unit in the last place
/// higher, so `as_left` equal to `tolerance_high` was read as above it and a
/// correct PASS record was refused. `float_roundtrip` reads it exactly.
const LONG: &str = "0.4391964526012270523";
const SHORT: &str = "0.439196452601227";

#[test]
fn numbers_are_read_exactly_as_written() {
    let exact: f64 = LONG.parse().unwrap();
    assert_eq!(exact, SHORT.parse::<f64>().unwrap());

    let doc = calibration()
        .replace(
            "\"tolerance_high\":0.5",
            &format!("\"tolerance_high\":{SHORT}"),
        )
        .replace("\"as_left\":0.04", &format!("\"as_left\":{LONG}"))
        .replace("\"as_found\":0.31", &format!("\"as_found\":{LONG}"));
    let c = calibration_record(&doc).expect("as_left equals tolerance_high: a PASS");
    assert_eq!(c.parameters[0].as_left.to_bits(), exact.to_bits());
    assert_eq!(c.parameters[0].as_found.to_bits(), exact.to_bits());

    let doc = baseline().replace("\"max\":0.5", &format!("\"max\":{LONG}"));
    let b = Baseline::parse(doc.as_bytes()).unwrap();
    assert_eq!(b.parameters[0].max.to_bits(), exact.to_bits());
}
