//! Property tests: the decoders of untrusted bytes (COSE/CBOR evidence and
//! DSSE/JSON records) return errors, never panic, on arbitrary and mutated
//! input; and what the SDK encodes decodes back to the same claims.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::cose::{encode_sign1, protected_header, CoseAlg};
use attestd_core::evidence::{CalibrationClaim, Claims, Component, Evidence, HwVersion};
use attestd_core::ids::{Digest, Serial};
use attestd_core::record::{Record, CALIBRATION_TYPE, PROVISIONING_TYPE};
use attestd_core::time::UnixTime;
use attestd_core::Reason;
use proptest::prelude::*;

fn claims_strategy() -> impl Strategy<Value = Claims> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 8..=64)),
        any::<u32>(),
        any::<u64>(),
        "[A-Z]{2}-[0-9]{3}",
        "[A-Z]",
        0u8..=4,
        "[A-Za-z0-9._-]{1,64}",
        any::<bool>(),
        proptest::collection::vec(
            (
                "[a-z]{1,12}",
                "[0-9.]{1,8}",
                any::<u64>(),
                any::<[u8; 32]>(),
            ),
            1..8,
        ),
        proptest::option::of(("[A-Z0-9-]{1,20}", any::<[u8; 32]>())),
    )
        .prop_map(
            |(nonce, iat, bootcount, model, hw, dbg, serial, sb, comps, cal)| {
                let mut components: Vec<Component> = Vec::new();
                for (name, version, svn, d) in comps {
                    if !components.iter().any(|c| c.name == name) {
                        components.push(Component {
                            name,
                            version,
                            svn,
                            digest: Digest(d),
                        });
                    }
                }
                Claims {
                    nonce,
                    iat: UnixTime(iat as i64),
                    bootcount,
                    hwmodel: model,
                    hwversion: HwVersion {
                        version: hw,
                        scheme: None,
                    },
                    dbgstat: dbg,
                    ueid: None,
                    serial: Serial::parse(&serial, Reason::ClaimInvalid, "serial").unwrap(),
                    secure_boot: sb,
                    components,
                    calibration: cal.map(|(id, d)| CalibrationClaim {
                        id,
                        digest: Digest(d),
                    }),
                }
            },
        )
}

fn token(c: &Claims) -> Vec<u8> {
    // The signature is irrelevant to decoding; 64 bytes of the right shape.
    encode_sign1(&protected_header(CoseAlg::Es256), &c.to_cbor(), &[0x11; 64])
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *m {
            Mutation::Flip(i, x) => bytes[i % n] ^= x | 1,
            Mutation::Insert(i, x) => bytes.insert(i % (n + 1), x),
            Mutation::Delete(i) => {
                bytes.remove(i % n);
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
        ],
        1..6,
    )
}

const PROVISIONING: &str = r#"{"station_id":"line3-prov-01","sequence":1042,"performed_at":"2026-11-28T09:14:03Z","operator_id":"op-1187","work_order":"WO-2026-3312","serial":"PM200-000123","udi":"(01)00812345678901(21)PM200-000123","model":"PM-200","hw_version":"B","device_key":{"alg":"Ed25519","spki_der":"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},"firmware":[{"name":"bootloader","version":"2.1.0","svn":4,"digest":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}]}"#;
const CALIBRATION: &str = r#"{"station_id":"depot-cal-02","sequence":77,"performed_at":"2026-11-28T10:02:00Z","operator_id":"tech-5521","serial":"PM200-000123","calibration_id":"CAL-PM200-000123-0003","procedure":{"id":"CP-SPO2-7","version":"3"},"result":"PASS","parameters":[{"name":"spo2_offset","unit":"%","nominal":0.0,"tolerance_low":-0.5,"tolerance_high":0.5,"as_found":0.31,"as_left":0.04}],"reference_instruments":[{"id":"REF-ProSim8-4471","due_at":"2027-03-01T00:00:00Z"}],"calibration_digest":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","next_due_at":"2027-11-28T00:00:00Z","supersedes":"CAL-PM200-000123-0002"}"#;

#[test]
fn the_format_examples_parse() {
    assert!(matches!(
        Record::parse(PROVISIONING_TYPE, PROVISIONING.as_bytes()),
        Ok(Record::Provisioning(_))
    ));
    assert!(matches!(
        Record::parse(CALIBRATION_TYPE, CALIBRATION.as_bytes()),
        Ok(Record::Calibration(_))
    ));
}

#[test]
fn record_errors_name_the_field_path() {
    let bad = CALIBRATION.replace("\"as_left\":0.04", "\"as_left\":\"x\"");
    let e = Record::parse(CALIBRATION_TYPE, bad.as_bytes()).unwrap_err();
    assert_eq!(e.reason, Reason::MalformedJson);
    assert!(
        e.message.starts_with("parameters[0].as_left:"),
        "{}",
        e.message
    );
    let bad = CALIBRATION.replace("\"as_left\":0.04", "\"as_left\":0.9");
    let e = Record::parse(CALIBRATION_TYPE, bad.as_bytes()).unwrap_err();
    assert_eq!(e.reason, Reason::FieldInvalid);
    assert!(
        e.message.starts_with("parameters[0].as_left:"),
        "{}",
        e.message
    );
    let bad = PROVISIONING.replace("\"model\"", "\"modle\"");
    let e = Record::parse(PROVISIONING_TYPE, bad.as_bytes()).unwrap_err();
    assert!(e.message.contains("modle"), "{}", e.message);
    let dup = PROVISIONING.replace(
        "\"hw_version\":\"B\"",
        "\"hw_version\":\"B\",\"hw_version\":\"C\"",
    );
    assert_eq!(
        Record::parse(PROVISIONING_TYPE, dup.as_bytes())
            .unwrap_err()
            .reason,
        Reason::MalformedJson
    );
    let bad = PROVISIONING.replace("2026-11-28T09:14:03Z", "2026-11-28T09:14:03+01:00");
    let e = Record::parse(PROVISIONING_TYPE, bad.as_bytes()).unwrap_err();
    assert!(e.message.starts_with("performed_at:"), "{}", e.message);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn claims_round_trip(c in claims_strategy()) {
        let t = token(&c);
        let ev = Evidence::decode(&t).expect("SDK-encoded evidence decodes");
        prop_assert_eq!(ev.claims, c);
    }

    #[test]
    fn evidence_decoder_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Evidence::decode(&data);
        // Behind a valid envelope too, so the claims decoder sees the bytes.
        let _ = Evidence::decode(&encode_sign1(&protected_header(CoseAlg::EdDsa), &data, &[0; 64]));
    }

    #[test]
    fn evidence_decoder_never_panics_on_mutated_tokens(c in claims_strategy(), muts in mutations()) {
        let _ = Evidence::decode(&mutate(token(&c), &muts));
        let inner = mutate(c.to_cbor(), &muts);
        let _ = Evidence::decode(&encode_sign1(&protected_header(CoseAlg::Es256), &inner, &[0; 64]));
    }

    #[test]
    fn record_parser_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Record::parse(PROVISIONING_TYPE, &data);
        let _ = Record::parse(CALIBRATION_TYPE, &data);
    }

    #[test]
    fn record_parser_never_panics_on_mutated_json(muts in mutations(), which in any::<bool>()) {
        let (ty, doc) = if which { (PROVISIONING_TYPE, PROVISIONING) } else { (CALIBRATION_TYPE, CALIBRATION) };
        let _ = Record::parse(ty, &mutate(doc.as_bytes().to_vec(), &muts));
    }

    #[test]
    fn record_parser_never_panics_on_retyped_fields(field in 0usize..16, value in prop_oneof![
        Just(serde_json::json!(null)), Just(serde_json::json!(-1)), Just(serde_json::json!(1e308)),
        Just(serde_json::json!("")), Just(serde_json::json!([])), Just(serde_json::json!({})),
        Just(serde_json::json!(u64::MAX)), ".{0,300}".prop_map(serde_json::Value::String),
    ]) {
        for (ty, doc) in [(PROVISIONING_TYPE, PROVISIONING), (CALIBRATION_TYPE, CALIBRATION)] {
            let mut v: serde_json::Value = serde_json::from_str(doc).unwrap();
            let obj = v.as_object_mut().unwrap();
            let key = obj.keys().nth(field % obj.len()).unwrap().clone();
            obj.insert(key, value.clone());
            let _ = Record::parse(ty, &serde_json::to_vec(&v).unwrap());
        }
    }
}
