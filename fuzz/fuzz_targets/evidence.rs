//! Device evidence (Evidence::decode: COSE_Sign1 around an EAT claims set),
//! its signature check and freshness rules, and the appraisal that follows.
//!
//! Asserts:
//! - nothing over 16 KiB is looked at (TOO_LARGE);
//! - decoded evidence agrees with its parts decoded on their own
//!   (CoseSign1::decode, then the payload's claims);
//! - the claims, encoded as the SDK does and signed into a token with the
//!   same protected header and signature, decode to the same evidence;
//! - `verify` with a vector key succeeds only for the vector's own
//!   Sig_structure, and a failure is SIGNATURE_INVALID;
//! - the freshness checks never panic and refuse a future `iat` as
//!   CLOCK_SKEW, replays as REPLAYED;
//! - appraisal of the claims is consistent (fuzz/src/appraisal.rs);
//! - a refusal carries one of the decoders' reasons.

#![no_main]

use attestd_core::cbor::{decode, Limits};
use attestd_core::cose::{encode_sign1, CoseSign1};
use attestd_core::evidence::{
    check_deferred, check_not_ahead, Claims, DeferredPolicy, Evidence, MAX_EVIDENCE_BYTES,
};
use attestd_core::time::UnixTime;
use attestd_core::Reason;
use attestd_fuzz::{appraisal, assert_reason_in, fixtures};
use libfuzzer_sys::fuzz_target;

const REASONS: &[Reason] = &[
    Reason::TooLarge,
    Reason::MalformedCose,
    Reason::AlgNotAllowed,
    Reason::MalformedCbor,
    Reason::ClaimMissing,
    Reason::ClaimInvalid,
    Reason::ProfileMismatch,
];

fn freshness(c: &Claims) {
    let policy = DeferredPolicy {
        clock_skew_secs: 300,
        max_age_secs: 3600,
    };
    for now in [
        c.iat,
        c.iat.plus_seconds(-301),
        UnixTime(0),
        UnixTime(i64::MAX),
        UnixTime(i64::MIN),
    ] {
        let ahead = c.iat > now.plus_seconds(300);
        match check_not_ahead(c, now, 300) {
            Ok(()) => assert!(!ahead),
            Err(e) => {
                assert!(ahead);
                assert_eq!(e.reason, Reason::ClockSkew);
            }
        }
        for highest in [None, Some(c.bootcount), Some(c.bootcount.saturating_sub(1))] {
            match check_deferred(c, highest, now, policy) {
                Ok(()) => {
                    assert!(!ahead && highest.is_none_or(|h| c.bootcount > h));
                    assert!(c.iat >= now.plus_seconds(-3600));
                }
                Err(e) => assert_reason_in(&e, &[Reason::ClockSkew, Reason::Replayed]),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ev = match Evidence::decode(data) {
        Ok(ev) => ev,
        Err(e) => {
            assert_reason_in(&e, REASONS);
            assert_eq!(
                e.reason == Reason::TooLarge,
                data.len() > MAX_EVIDENCE_BYTES
            );
            return;
        }
    };
    assert!(data.len() <= MAX_EVIDENCE_BYTES);

    let cose = CoseSign1::decode(data).expect("the envelope of decoded evidence decodes");
    assert_eq!(cose.payload, ev.cose.payload);
    let payload = decode(cose.payload, Limits::CLAIMS).expect("the claims are CBOR");
    assert_eq!(Claims::from_value(&payload).as_ref(), Ok(&ev.claims));

    // Re-encoded (tagged, empty unprotected header): at most one byte
    // longer than the input, the tag.
    let token = encode_sign1(ev.cose.protected, &ev.claims.to_cbor(), ev.cose.signature);
    assert!(token.len() <= data.len() + 1);
    if token.len() <= MAX_EVIDENCE_BYTES {
        let again = Evidence::decode(&token).expect("re-encoded evidence decodes");
        assert_eq!(again.claims, ev.claims);
        assert_eq!(again.cose.alg, ev.cose.alg);
        assert_eq!(again.cose.protected, ev.cose.protected);
    }

    let f = fixtures::get();
    for v in [&f.es256, &f.ed25519] {
        match ev.verify(&v.key) {
            Ok(()) => assert_eq!(ev.cose.to_be_signed(&[]), v.to_be_signed),
            Err(e) => assert_eq!(e.reason, Reason::SignatureInvalid),
        }
    }

    freshness(&ev.claims);
    appraisal::check(&ev.claims);
});
