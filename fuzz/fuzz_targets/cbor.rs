//! CBOR (cbor::decode): the strict, bounded decoder every evidence byte goes
//! through first.
//!
//! Asserts, under five sets of limits (the claims limits, the COSE envelope
//! limits, tight ones, zero and loose ones):
//! - a decoded value respects the limits: container nesting, string
//!   lengths, item counts; and its map keys are unique (by their canonical
//!   encoding, RFC 8949 §4.2.1);
//! - written back in preferred serialization (fuzz/src/cbor.rs, independent
//!   of the decoder; the library's encoder writes heads and strings, not
//!   whole values) it is never longer than the input and decodes to the
//!   same value; the canonical encoding is a fixed point;
//! - input refused under some limits but decoded under loose ones breaks
//!   one of those limits: a refusal is never for nothing;
//! - a refusal is MALFORMED_CBOR and names a byte offset inside the input.

#![no_main]

use attestd_core::cbor::{decode, Limits};
use attestd_core::Reason;
use attestd_fuzz::cbor::{breaks, canonical, encode, keys_unique, same};
use libfuzzer_sys::fuzz_target;

const LIMITS: [Limits; 4] = [
    Limits::CLAIMS,
    // The COSE_Sign1 envelope's (cose.rs).
    Limits {
        max_depth: 8,
        max_string: 16 * 1024,
        max_items: 64,
    },
    Limits {
        max_depth: 2,
        max_string: 4,
        max_items: 3,
    },
    Limits {
        max_depth: 0,
        max_string: 0,
        max_items: 0,
    },
];

const LOOSE: Limits = Limits {
    max_depth: 64,
    max_string: 1 << 20,
    max_items: 1 << 16,
};

fn offset_of(message: &str) -> usize {
    message
        .strip_prefix("at byte ")
        .and_then(|m| m.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a CBOR error names its byte offset: {message}"))
}

fuzz_target!(|data: &[u8]| {
    let loose = decode(data, LOOSE);
    for limits in LIMITS.iter().chain([&LOOSE]) {
        match decode(data, *limits) {
            Ok(v) => {
                assert_eq!(breaks(&v, limits), None, "decoded past {limits:?}");
                assert!(keys_unique(&v), "duplicate map keys decoded");
                let again = encode(&v);
                assert!(again.len() <= data.len(), "preferred form is longer");
                let back = decode(&again, *limits).expect("a decoded value, written back, decodes");
                assert!(same(&back, &v), "{v:?} written back reads {back:?}");
                let c = canonical(&v);
                let cv = decode(&c, *limits).expect("the canonical form decodes");
                assert_eq!(canonical(&cv), c, "canonical encoding is a fixed point");
                let lv = loose
                    .as_ref()
                    .expect("what decodes under limits decodes loose");
                assert!(same(lv, &v), "the limits change what a value decodes to");
            }
            Err(e) => {
                assert_eq!(e.reason, Reason::MalformedCbor);
                assert!(offset_of(&e.message) <= data.len(), "{}", e.message);
                if let Ok(lv) = &loose {
                    assert!(
                        breaks(lv, limits).is_some(),
                        "refused under {limits:?} ({}) but breaks none of them",
                        e.message
                    );
                }
            }
        }
    }
});
