//! The JSON payloads of station records and baselines (docs/formats.md §2) as a
//! station or release engineer writes them: objects only at every level,
//! numbers read exactly as written, and error messages in the format's terms.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::baseline::Baseline;
use attestd_core::record::{Record, CALIBRATION_TYPE, PROVISIONING_TYPE};
use attestd_core::{Reason, Rejection};
use serde_json::Value;

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

fn calibration_record(json: &str) -> Result<attestd_core::record::Calibration, Rejection> {
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

type Parser = fn(&[u8]) -> Result<(), Rejection>;

/// The three kinds of payload, each with a parser.
fn documents() -> Vec<(&'static str, String, Parser)> {
    vec![
        ("provisioning", provisioning(), |b| {
            Record::parse(PROVISIONING_TYPE, b).map(drop)
        }),
        ("calibration", calibration(), |b| {
            Record::parse(CALIBRATION_TYPE, b).map(drop)
        }),
        ("baseline", baseline(), |b| Baseline::parse(b).map(drop)),
    ]
}

/// Every node of a document with its field path as errors write it
/// (`parameters[0].as_left`; the empty path is the document itself).
fn nodes(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    out.push((path.clone(), v.clone()));
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| nodes(c, join(k), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| nodes(c, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// The document with the node at `path` replaced.
fn replaced(doc: &Value, path: &str, new: &Value) -> Value {
    fn walk(v: &mut Value, here: String, path: &str, new: &Value) {
        if here == path {
            *v = new.clone();
            return;
        }
        let join = |k: &str| {
            if here.is_empty() {
                k.to_owned()
            } else {
                format!("{here}.{k}")
            }
        };
        match v {
            Value::Object(m) => m.iter_mut().for_each(|(k, c)| walk(c, join(k), path, new)),
            Value::Array(a) => a
                .iter_mut()
                .enumerate()
                .for_each(|(i, c)| walk(c, format!("{here}[{i}]"), path, new)),
            _ => {}
        }
    }
    let mut d = doc.clone();
    walk(&mut d, String::new(), path, new);
    d
}

fn with_path(path: &str, msg: &str) -> String {
    if path.is_empty() {
        msg.to_owned()
    } else {
        format!("{path}: {msg}")
    }
}

/// The issue's case: a calibration parameter written as an array was read by
/// position and stored with as_found and as_left swapped.
#[test]
fn a_parameter_written_as_an_array_is_refused() {
    let doc = calibration().replace(
        r#"{"name":"spo2_offset","unit":"%","nominal":0.0,"tolerance_low":-0.5,
          "tolerance_high":0.5,"as_found":0.31,"as_left":0.04}"#,
        r#"["spo2_offset","%",0.0,-0.5,0.5,0.04,0.31]"#,
    );
    assert_ne!(doc, calibration());
    let e = calibration_record(&doc).unwrap_err();
    assert_eq!(e.reason, Reason::MalformedJson);
    assert_eq!(e.message, "parameters[0]: expected an object, got an array");
}

/// Every object of every payload kind, the document itself included, written
/// as the array of its values in order (what serde's derived code read by
/// position) is refused, and the error names its path.
#[test]
fn every_object_written_as_an_array_is_refused() {
    let mut checked = 0;
    for (kind, json, parse) in documents() {
        let doc: Value = serde_json::from_str(&json).unwrap();
        let mut all = Vec::new();
        nodes(&doc, String::new(), &mut all);
        for (path, node) in all {
            let Value::Object(m) = &node else { continue };
            let as_array = Value::Array(m.values().cloned().collect());
            let bytes = serde_json::to_vec(&replaced(&doc, &path, &as_array)).unwrap();
            let e = parse(&bytes).expect_err(&format!("{kind} {path:?} as an array"));
            assert_eq!(e.reason, Reason::MalformedJson, "{kind} {path:?}");
            assert_eq!(
                e.message,
                with_path(&path, "expected an object, got an array"),
                "{kind}"
            );
            checked += 1;
        }
    }
    // 3 documents; provisioning has 3 objects, calibration 4, baseline 9.
    assert_eq!(checked, 16);
}

/// serde words its errors after the Rust type being filled in ("invalid
/// type: floating point `1.5`, expected u64"), which a station team cannot
/// act on. Every field of every payload kind, given each kind of wrong
/// value, must fail with a message free of Rust type names.
#[test]
fn no_error_message_names_a_rust_type() {
    const RUST: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "struct", "String", "Vec", "Option",
    ];
    let wrong = [
        serde_json::json!(1.5),
        serde_json::json!(-1),
        serde_json::json!(300),
        serde_json::json!(1e20),
        serde_json::json!(u64::MAX),
        serde_json::json!("x"),
        serde_json::json!(true),
        serde_json::json!(null),
        serde_json::json!([]),
        serde_json::json!([1]),
        serde_json::json!({}),
        serde_json::json!({"a": 1}),
    ];
    let mut refused = 0;
    for (kind, json, parse) in documents() {
        let doc: Value = serde_json::from_str(&json).unwrap();
        let mut all = Vec::new();
        nodes(&doc, String::new(), &mut all);
        for (path, _) in all {
            for w in &wrong {
                let bytes = serde_json::to_vec(&replaced(&doc, &path, w)).unwrap();
                let Err(e) = parse(&bytes) else { continue };
                refused += 1;
                let leaked: Vec<&str> = e
                    .message
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| RUST.contains(w) || w.ends_with("Doc"))
                    .collect();
                assert!(leaked.is_empty(), "{kind} {path} = {w}: {}", e.message);
                // serde's own wording ("invalid type: sequence, ...").
                for phrase in [
                    "invalid",
                    "a sequence",
                    "a map",
                    "unit value",
                    "floating point",
                ] {
                    assert!(
                        !e.message.contains(phrase),
                        "{kind} {path} = {w}: {}",
                        e.message
                    );
                }
            }
        }
    }
    assert!(refused > 500, "{refused}");
}

#[test]
fn numbers_of_the_wrong_kind_say_what_is_expected() {
    let cases = [
        (
            provisioning().replace("\"sequence\":1042", "\"sequence\":1.5"),
            "sequence: expected a whole number 0..2^64-1, got 1.5",
        ),
        (
            provisioning().replace("\"svn\":4", "\"svn\":-1"),
            "firmware[0].svn: expected a whole number 0..2^64-1, got -1",
        ),
        (
            provisioning().replace("\"sequence\":1042", "\"sequence\":18446744073709551616"),
            "sequence: expected a whole number 0..2^64-1, got 1.8446744073709552e+19",
        ),
        (
            calibration().replace("\"as_left\":0.04", "\"as_left\":\"0.04\""),
            "parameters[0].as_left: expected a number, got a string",
        ),
    ];
    for (doc, want) in cases {
        let e = Record::parse(
            if doc.contains("device_key") {
                PROVISIONING_TYPE
            } else {
                CALIBRATION_TYPE
            },
            doc.as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::MalformedJson, want)
        );
    }
    let cases = [
        (
            baseline().replace("\"min_dbgstat\":3", "\"min_dbgstat\":7"),
            "security.min_dbgstat: expected a whole number 0..4, got 7",
        ),
        (
            baseline().replace("\"min_dbgstat\":3", "\"min_dbgstat\":3.0"),
            "security.min_dbgstat: expected a whole number 0..4, got 3.0",
        ),
        (
            baseline().replace("\"max_interval_days\":365", "\"max_interval_days\":-365"),
            "calibration.max_interval_days: expected a whole number 0..4294967295, got -365",
        ),
        (
            baseline().replace("\"required\":true", "\"required\":1"),
            "calibration.required: expected true or false, got 1",
        ),
        (
            baseline().replace("\"hw_versions\":[\"A\",\"B\"]", "\"hw_versions\":\"A\""),
            "hw_versions: expected an array, got a string",
        ),
    ];
    for (doc, want) in cases {
        let e = Baseline::parse(doc.as_bytes()).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::MalformedJson, want)
        );
    }
}
