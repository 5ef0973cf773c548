//! Evidence claims (Claims::from_value on the CBOR payload of a token) and
//! the appraisal that follows.
//!
//! The input is the claims set alone (the COSE_Sign1 payload), so the
//! fuzzer works on the claims rather than on the envelope around them.
//! Asserts:
//! - decoded claims keep the bounds of docs/formats.md §1: nonce 8..64
//!   bytes, ueid 7..33, 1..32 components with unique non-empty names,
//!   dbgstat 0..4, non-empty texts, a serial by the identifier rule;
//! - they are what the map says (serial, bootcount, iat, secure_boot);
//! - encoded as the SDK does (`Claims::to_cbor`) they decode to the same
//!   claims, the encoding is stable, and signed into a token they come out
//!   of `Evidence::decode` unchanged;
//! - appraisal of them, under the vectors' unit and variations, is
//!   deterministic and its tier, trust vector and reasons agree
//!   (fuzz/src/appraisal.rs);
//! - a refusal is MALFORMED_CBOR, CLAIM_MISSING, CLAIM_INVALID or
//!   PROFILE_MISMATCH.

#![no_main]

use attestd_core::cbor::{decode, Limits, Value};
use attestd_core::cose::{encode_sign1, protected_header, CoseAlg};
use attestd_core::evidence::{Claims, Evidence, MAX_COMPONENTS};
use attestd_core::Reason;
use attestd_fuzz::{appraisal, assert_reason_in, oracle};
use libfuzzer_sys::fuzz_target;

pub const REASONS: &[Reason] = &[
    Reason::MalformedCbor,
    Reason::ClaimMissing,
    Reason::ClaimInvalid,
    Reason::ProfileMismatch,
];

fn bounds(c: &Claims) {
    if let Some(n) = &c.nonce {
        assert!((8..=64).contains(&n.len()), "nonce of {}", n.len());
    }
    if let Some(u) = &c.ueid {
        assert!((7..=33).contains(&u.len()), "ueid of {}", u.len());
    }
    assert!((1..=MAX_COMPONENTS).contains(&c.components.len()));
    for (i, x) in c.components.iter().enumerate() {
        assert!(!x.name.is_empty() && !x.version.is_empty());
        assert!(c.components[..i].iter().all(|y| y.name != x.name));
    }
    assert!(c.dbgstat <= 4);
    assert!(!c.hwmodel.is_empty() && !c.hwversion.version.is_empty());
    assert!(oracle::is_ident(c.serial.as_str()));
    if let Some(cal) = &c.calibration {
        assert!(!cal.id.is_empty());
    }
    assert!(c.iat.0 > i64::MIN, "iat fits the encoding");
}

fuzz_target!(|data: &[u8]| {
    let value = match decode(data, Limits::CLAIMS) {
        Ok(v) => v,
        Err(e) => {
            assert_reason_in(&e, &[Reason::MalformedCbor]);
            return;
        }
    };
    let claims = match Claims::from_value(&value) {
        Ok(c) => c,
        Err(e) => {
            assert_reason_in(&e, REASONS);
            return;
        }
    };
    bounds(&claims);
    assert_eq!(
        value.map_get_text("serial"),
        Some(&Value::Text(claims.serial.as_str()))
    );
    assert_eq!(
        value.map_get_int(267),
        Some(&Value::Unsigned(claims.bootcount))
    );
    assert_eq!(
        value.map_get_int(6).and_then(Value::as_int),
        Some(i128::from(claims.iat.0))
    );
    assert_eq!(
        value.map_get_text("secure_boot"),
        Some(&Value::Bool(claims.secure_boot))
    );

    let bytes = claims.to_cbor();
    let v2 = decode(&bytes, Limits::CLAIMS).expect("SDK-encoded claims are within the limits");
    let back = Claims::from_value(&v2).expect("SDK-encoded claims decode");
    assert_eq!(back, claims);
    assert_eq!(back.to_cbor(), bytes, "the encoding is stable");
    let token = encode_sign1(&protected_header(CoseAlg::Es256), &bytes, &[0x11; 64]);
    let ev = Evidence::decode(&token).expect("a token of decodable claims decodes");
    assert_eq!(ev.claims, claims);

    appraisal::check(&claims);
});
