//! Station records (Record::parse): provisioning and calibration payloads,
//! strict JSON checked into typed records. Every input is parsed as both
//! kinds.
//!
//! Asserts:
//! - a checked record keeps the rules of docs/formats.md §2.1 and §2.2:
//!   identifiers by the identifier rule, texts of 1..256 bytes without
//!   control characters, lists of at most 64 with unique names, a
//!   provisioning `supersedes` that is a record id, tolerances in order and,
//!   for a PASS, `as_left` within them;
//! - the document reads back the same after serde writes it, and that
//!   document checks to the same record;
//! - the checked record written back as a document (fuzz/src/docs.rs: the
//!   library checks documents into records but has no way back) parses to
//!   the same record, and writing it again gives the same bytes;
//! - a refusal is MALFORMED_JSON or FIELD_INVALID.

#![no_main]

use attestd_core::appraisal::CalibrationFacts;
use attestd_core::record::{
    parse_json, record_id, Calibration, CalibrationDoc, CalibrationResult, Provisioning,
    ProvisioningDoc, Record, CALIBRATION_TYPE, PROVISIONING_TYPE,
};
use attestd_core::Reason;
use attestd_fuzz::docs::{calibration_doc, is_record_text, provisioning_doc};
use attestd_fuzz::{assert_reason_in, oracle};
use libfuzzer_sys::fuzz_target;

fn unique<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut v: Vec<&str> = names.collect();
    let n = v.len();
    v.sort_unstable();
    v.dedup();
    v.len() == n && n <= 64
}

fn provisioning(p: &Provisioning, data: &[u8]) {
    assert!(oracle::is_ident(p.station_id.as_str()));
    assert!(oracle::is_ident(p.serial.as_str()));
    assert!(oracle::is_ident(p.model.as_str()));
    for t in [&p.operator_id, &p.hw_version] {
        assert!(is_record_text(t), "{t:?}");
    }
    for t in [&p.work_order, &p.udi].into_iter().flatten() {
        assert!(is_record_text(t), "{t:?}");
    }
    for c in &p.firmware {
        assert!(is_record_text(&c.name) && is_record_text(&c.version));
    }
    assert!(unique(p.firmware.iter().map(|c| c.name.as_str())));
    if let Some(s) = &p.supersedes {
        assert!(oracle::is_object_id("rec_", s), "{s:?}");
    }

    let doc: ProvisioningDoc = parse_json(data).expect("a checked record's document parses");
    let json = serde_json::to_vec(&doc).expect("documents serialize");
    assert_eq!(parse_json::<ProvisioningDoc>(&json).as_ref(), Ok(&doc));
    assert_eq!(
        Record::parse(PROVISIONING_TYPE, &json),
        Ok(Record::Provisioning(p.clone()))
    );

    let written = serde_json::to_vec(&provisioning_doc(p)).expect("documents serialize");
    let back = match Record::parse(PROVISIONING_TYPE, &written) {
        Ok(Record::Provisioning(b)) => b,
        other => panic!("written back: {other:?}"),
    };
    assert_eq!(&back, p);
    assert_eq!(
        serde_json::to_vec(&provisioning_doc(&back)).expect("serialize"),
        written
    );
}

fn calibration(c: &Calibration, data: &[u8]) {
    assert!(oracle::is_ident(c.station_id.as_str()));
    assert!(oracle::is_ident(c.serial.as_str()));
    for t in [
        &c.operator_id,
        &c.calibration_id,
        &c.procedure_id,
        &c.procedure_version,
    ] {
        assert!(is_record_text(t), "{t:?}");
    }
    if let Some(s) = &c.supersedes {
        assert!(is_record_text(s));
    }
    for p in &c.parameters {
        assert!(is_record_text(&p.name) && is_record_text(&p.unit));
        assert!(p.tolerance_low <= p.tolerance_high);
        if c.result == CalibrationResult::Pass {
            assert!(p.tolerance_low <= p.as_left && p.as_left <= p.tolerance_high);
        }
    }
    assert!(unique(c.parameters.iter().map(|p| p.name.as_str())));
    assert!(c.reference_instruments.len() <= 64);
    for i in &c.reference_instruments {
        assert!(is_record_text(&i.id));
    }

    let doc: CalibrationDoc = parse_json(data).expect("a checked record's document parses");
    let json = serde_json::to_vec(&doc).expect("documents serialize");
    assert_eq!(parse_json::<CalibrationDoc>(&json).as_ref(), Ok(&doc));
    assert_eq!(
        Record::parse(CALIBRATION_TYPE, &json),
        Ok(Record::Calibration(c.clone()))
    );

    let written = serde_json::to_vec(&calibration_doc(c)).expect("documents serialize");
    let back = match Record::parse(CALIBRATION_TYPE, &written) {
        Ok(Record::Calibration(b)) => b,
        other => panic!("written back: {other:?}"),
    };
    assert_eq!(&back, c);
    assert_eq!(
        serde_json::to_vec(&calibration_doc(&back)).expect("serialize"),
        written
    );

    let facts = CalibrationFacts::from_record(c, &record_id(CALIBRATION_TYPE, data), 0);
    assert_eq!(facts.parameters.len(), c.parameters.len());
    assert_eq!(facts.digest, c.calibration_digest);
}

fuzz_target!(|data: &[u8]| {
    for ty in [PROVISIONING_TYPE, CALIBRATION_TYPE] {
        match Record::parse(ty, data) {
            Ok(r) => {
                assert_eq!(r.kind().payload_type(), ty);
                match &r {
                    Record::Provisioning(p) => provisioning(p, data),
                    Record::Calibration(c) => calibration(c, data),
                }
            }
            Err(e) => assert_reason_in(&e, &[Reason::MalformedJson, Reason::FieldInvalid]),
        }
    }
});
