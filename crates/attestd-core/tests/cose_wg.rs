//! The COSE_Sign1 layer against the public-domain vectors of the COSE
//! working group (tests/vectors/cose-wg, copied unchanged with their
//! LICENSE). They show that Sig_structure construction, tag handling, raw
//! ES256 and Ed25519 agree with an independent implementation, and that
//! attestd's stricter policy refuses what it should.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::cbor::{self, Limits, Value};
use attestd_core::cose::{sig_structure, signed_protected, CoseSign1};
use attestd_core::keys::{KeyAlg, PublicKey, SigEncoding};
use attestd_core::Reason;
use base64::Engine as _;
use serde_json::Value as Json;

fn vector(name: &str) -> Json {
    let path = format!(
        "{}/tests/vectors/cose-wg/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn message(v: &Json) -> Vec<u8> {
    unhex(v["output"]["cbor"].as_str().unwrap())
}

fn to_be_signed(v: &Json) -> Vec<u8> {
    unhex(v["intermediates"]["ToBeSign_hex"].as_str().unwrap())
}

fn external_aad(v: &Json) -> Vec<u8> {
    v["input"]["sign0"]["external"]
        .as_str()
        .map(unhex)
        .unwrap_or_default()
}

/// The vector's public key, or the reason attestd refuses it.
fn key(v: &Json) -> Result<PublicKey, attestd_core::Rejection> {
    let k = &v["input"]["sign0"]["key"];
    match k["kty"].as_str().unwrap() {
        "EC" => {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut raw = vec![4u8];
            raw.extend(b64.decode(k["x"].as_str().unwrap()).unwrap());
            raw.extend(b64.decode(k["y"].as_str().unwrap()).unwrap());
            PublicKey::from_raw(KeyAlg::Es256, &raw)
        }
        "OKP" => PublicKey::from_raw(KeyAlg::Ed25519, &unhex(k["x_hex"].as_str().unwrap())),
        other => panic!("unexpected kty {other}"),
    }
}

#[test]
fn passing_vectors_verify_and_match_the_sig_structure() {
    for name in [
        "ecdsa-examples_ecdsa-sig-01",
        "eddsa-examples_eddsa-sig-01",
        "sign1-tests_sign-pass-02",
        "sign1-tests_sign-pass-03",
    ] {
        let v = vector(name);
        let msg = message(&v);
        let cose = CoseSign1::decode(&msg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let aad = external_aad(&v);
        assert_eq!(
            cose.to_be_signed(&aad),
            to_be_signed(&v),
            "{name}: Sig_structure"
        );
        let key = key(&v).unwrap();
        assert!(cose.verify_with_aad(&key, &aad), "{name}: signature");
        // Evidence is always verified with empty external AAD.
        assert_eq!(
            cose.verify(&key),
            aad.is_empty(),
            "{name}: empty-AAD verification"
        );
    }
    assert!(
        !CoseSign1::decode(&message(&vector("sign1-tests_sign-pass-03")))
            .unwrap()
            .tagged
    );
    assert!(
        CoseSign1::decode(&message(&vector("sign1-tests_sign-pass-02")))
            .unwrap()
            .tagged
    );
}

#[test]
fn alg_only_in_the_unprotected_header_verifies_but_is_refused_by_policy() {
    let v = vector("sign1-tests_sign-pass-01");
    let msg = message(&v);
    // The plain-COSE view: Sig_structure and signature agree with the vector.
    let Value::Tag(18, inner) = cbor::decode(&msg, Limits::CLAIMS).unwrap() else {
        panic!()
    };
    let Value::Array(items) = *inner else {
        panic!()
    };
    let (Value::Bytes(prot), Value::Bytes(payload), Value::Bytes(sig)) =
        (&items[0], &items[2], &items[3])
    else {
        panic!()
    };
    // "Redo protected": h'A0' is an empty map, signed as h'' (RFC 9052 §4.4).
    let tbs = sig_structure(signed_protected(prot), &[], payload);
    assert_eq!(tbs, to_be_signed(&v));
    assert!(key(&v).unwrap().verify(&tbs, sig, SigEncoding::Raw));
    // attestd's policy: alg must be protected.
    let e = CoseSign1::decode(&msg).unwrap_err();
    assert_eq!(e.reason, Reason::AlgNotAllowed, "{e}");
}

#[test]
fn ed448_is_refused_with_a_clear_error() {
    let v = vector("eddsa-examples_eddsa-sig-02");
    let e = key(&v).unwrap_err();
    assert!(e.message.contains("Ed25519"), "{e}");
}

#[test]
fn failing_vectors_do_not_pass() {
    // Wrong tag, changed algorithm: refused while decoding.
    let e = CoseSign1::decode(&message(&vector("sign1-tests_sign-fail-01"))).unwrap_err();
    assert_eq!(e.reason, Reason::MalformedCose, "{e}");
    for name in ["sign1-tests_sign-fail-03", "sign1-tests_sign-fail-04"] {
        let e = CoseSign1::decode(&message(&vector(name))).unwrap_err();
        assert_eq!(e.reason, Reason::AlgNotAllowed, "{name}: {e}");
    }
    // Changed signature, added or removed protected attribute: do not verify.
    for name in [
        "sign1-tests_sign-fail-02",
        "sign1-tests_sign-fail-06",
        "sign1-tests_sign-fail-07",
    ] {
        let v = vector(name);
        let msg = message(&v);
        let cose = CoseSign1::decode(&msg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cose.verify(&key(&v).unwrap()), "{name} must not verify");
    }
}
