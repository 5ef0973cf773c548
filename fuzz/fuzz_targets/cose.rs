//! COSE_Sign1 (CoseSign1::decode): the envelope of device evidence.
//!
//! Asserts:
//! - what decodes is what the bytes say, read independently with the CBOR
//!   decoder: an optionally tag-18 array of four, the protected header
//!   (whose bytes are kept exactly), payload and signature; `alg` sits in
//!   the protected header, is one of -7, -9, -8, -19, no `crit`, and the
//!   unprotected header does not repeat it;
//! - re-encoded (with its unprotected header, tagged or not) and with the
//!   library's `encode_sign1`, it decodes to the same message;
//! - the Sig_structure is `["Signature1", protected or h'' for an empty
//!   map, h'', payload]`;
//! - a signature that verifies with a vector key signed exactly the vector's
//!   Sig_structure; `mismatch` explains a key of the other family;
//! - a refusal is MALFORMED_COSE or ALG_NOT_ALLOWED.

#![no_main]

use attestd_core::cbor::{decode, Limits, Value};
use attestd_core::cose::{encode_sign1, sig_structure, signed_protected, CoseSign1};
use attestd_core::Reason;
use attestd_fuzz::{assert_reason_in, cbor::encode, fixtures};
use libfuzzer_sys::fuzz_target;

const LOOSE: Limits = Limits {
    max_depth: 64,
    max_string: 1 << 20,
    max_items: 1 << 16,
};

fn fields<'a>(c: &CoseSign1<'a>) -> (&'a [u8], i64, &'a [u8], &'a [u8], bool) {
    (c.protected, c.alg.label(), c.payload, c.signature, c.tagged)
}

fuzz_target!(|data: &[u8]| {
    let cose = match CoseSign1::decode(data) {
        Ok(c) => c,
        Err(e) => {
            assert_reason_in(&e, &[Reason::MalformedCose, Reason::AlgNotAllowed]);
            return;
        }
    };

    // The structure, read independently.
    let top = decode(data, LOOSE).expect("a decoded COSE_Sign1 is CBOR");
    let (tagged, body) = match &top {
        Value::Tag(18, inner) => (true, &**inner),
        other => (false, other),
    };
    assert_eq!(tagged, cose.tagged);
    let Value::Array(items) = body else {
        panic!("COSE_Sign1 decoded from a {}", body.type_name())
    };
    assert_eq!(items.len(), 4);
    let unprotected = &items[1];
    assert_eq!(items[0], Value::Bytes(cose.protected));
    assert_eq!(items[2], Value::Bytes(cose.payload));
    assert_eq!(items[3], Value::Bytes(cose.signature));
    let header = if cose.protected.is_empty() {
        Value::Map(Vec::new())
    } else {
        decode(cose.protected, Limits::CLAIMS).expect("the protected header is CBOR")
    };
    assert!(matches!(header, Value::Map(_)));
    let alg = header.map_get_int(1).and_then(Value::as_int);
    assert_eq!(alg, Some(i128::from(cose.alg.label())));
    assert!([-7, -9, -8, -19].contains(&cose.alg.label()));
    assert!(header.map_get_int(2).is_none(), "crit is refused");
    assert!(unprotected.map_get_int(1).is_none(), "alg only protected");

    // Written back, it reads the same.
    let mut again = Vec::new();
    if cose.tagged {
        again.push(0xd2);
    }
    again.push(0x84);
    again.extend(encode(&Value::Bytes(cose.protected)));
    again.extend(encode(unprotected));
    again.extend(encode(&Value::Bytes(cose.payload)));
    again.extend(encode(&Value::Bytes(cose.signature)));
    let back = CoseSign1::decode(&again).expect("re-encoded COSE_Sign1 decodes");
    assert_eq!(fields(&back), fields(&cose));
    let sdk = encode_sign1(cose.protected, cose.payload, cose.signature);
    let back = CoseSign1::decode(&sdk).expect("encode_sign1 output decodes");
    assert_eq!(
        fields(&back),
        (
            cose.protected,
            cose.alg.label(),
            cose.payload,
            cose.signature,
            true
        )
    );

    // The Sig_structure.
    let tbs = cose.to_be_signed(&[]);
    let empty_map = matches!(&header, Value::Map(m) if m.is_empty());
    let signed = if empty_map { &[][..] } else { cose.protected };
    assert_eq!(signed_protected(cose.protected), signed);
    assert_eq!(tbs, sig_structure(signed, &[], cose.payload));
    let Ok(Value::Array(s)) = decode(&tbs, LOOSE) else {
        panic!("the Sig_structure is a CBOR array")
    };
    assert_eq!(s[0], Value::Text("Signature1"));
    assert_eq!(s[1], Value::Bytes(signed));
    assert_eq!(s[2], Value::Bytes(&[]));
    assert_eq!(s[3], Value::Bytes(cose.payload));

    // Signatures: only the vectors' own messages verify.
    let f = fixtures::get();
    for v in [&f.es256, &f.ed25519] {
        if cose.verify(&v.key) {
            assert_eq!(tbs, v.to_be_signed, "a vector key verified another message");
        }
        let family = cose.alg.key_alg() == v.key.alg();
        if !family {
            assert!(!cose.verify(&v.key));
            assert!(cose.mismatch(&v.key).is_some(), "wrong family unexplained");
        } else {
            let _ = cose.mismatch(&v.key);
        }
    }
});
