//! Public keys (PublicKey::from_spki_der): the SubjectPublicKeyInfo DER of
//! device keys in provisioning records and of station and release keys.
//!
//! Input: SPKI DER bytes. Asserts:
//! - exactly two shapes are accepted, an uncompressed P-256 point on the
//!   curve and an Ed25519 key; the on-curve check agrees with an
//!   independent big-number computation (num-bigint) of
//!   y² = x³ − 3x + b mod p, on the input and on points built from its
//!   first 32 bytes as x (with y from the square root, −y, y + 1, and
//!   coordinates not reduced mod p);
//! - an accepted key re-encodes to the same bytes: `spki_der` is the
//!   input, `from_raw(alg, raw)` is the same key, the key id is
//!   `sha256:` and the hex SHA-256 of the DER;
//! - `from_enrolled_spki_der` accepts every shape-valid key and refuses
//!   with STORE_UNAVAILABLE; a refusal names the field with the caller's
//!   reason;
//! - verification of any signature, in either encoding, never panics.

#![no_main]

use std::sync::OnceLock;

use attestd_core::ids::{hex, Digest};
use attestd_core::keys::{KeyAlg, PublicKey, SigEncoding};
use attestd_core::Reason;
use libfuzzer_sys::fuzz_target;
use num_bigint::BigUint;

const P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

struct Curve {
    p: BigUint,
    b: BigUint,
}

/// P-256's field prime and `b` (SEC 2 §2.4.2), parsed from hex here.
fn curve() -> &'static Curve {
    static C: OnceLock<Curve> = OnceLock::new();
    C.get_or_init(|| {
        let h = |s: &str| BigUint::parse_bytes(s.as_bytes(), 16).expect("hex");
        Curve {
            p: h("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
            b: h("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b"),
        }
    })
}

fn rhs(x: &BigUint) -> BigUint {
    let c = curve();
    let three_x = (x * 3u32) % &c.p;
    ((x * x * x) % &c.p + &c.p - three_x + &c.b) % &c.p
}

fn on_curve(point: &[u8]) -> bool {
    let c = curve();
    let x = BigUint::from_bytes_be(&point[1..33]);
    let y = BigUint::from_bytes_be(&point[33..65]);
    x < c.p && y < c.p && (&y * &y) % &c.p == rhs(&x)
}

fn shape(der: &[u8]) -> Option<KeyAlg> {
    if der.len() == 91 && der[..26] == P256_PREFIX && der[26] == 0x04 {
        Some(KeyAlg::Es256)
    } else if der.len() == 44 && der[..12] == ED25519_PREFIX {
        Some(KeyAlg::Ed25519)
    } else {
        None
    }
}

fn check(der: &[u8], msg: &[u8]) {
    let expected = match shape(der) {
        Some(KeyAlg::Es256) => on_curve(&der[26..]).then_some(KeyAlg::Es256),
        other => other,
    };
    let key = PublicKey::from_spki_der(der, Reason::FieldInvalid, "device_key.spki_der");
    match (&key, expected) {
        (Ok(k), Some(alg)) => {
            assert_eq!(k.alg(), alg);
            assert_eq!(k.spki_der(), der);
            let prefix = if alg == KeyAlg::Es256 { 26 } else { 12 };
            assert_eq!(k.raw(), &der[prefix..]);
            assert_eq!(PublicKey::from_raw(alg, k.raw()).as_ref(), Ok(k));
            assert_eq!(k.key_id(), format!("sha256:{}", hex(&Digest::of(der).0)));
            for enc in [SigEncoding::Raw, SigEncoding::Der] {
                let _ = k.verify(msg, msg, enc);
            }
        }
        (Err(e), None) => {
            assert_eq!(e.reason, Reason::FieldInvalid);
            assert!(
                e.message.starts_with("device_key.spki_der: "),
                "{}",
                e.message
            );
        }
        (k, e) => panic!("from_spki_der gave {k:?}, the curve equation says {e:?}"),
    }
    match PublicKey::from_enrolled_spki_der(der, "stored key") {
        Ok(k) => assert_eq!(Some(k.alg()), shape(der)),
        Err(e) => {
            assert!(shape(der).is_none());
            assert_eq!(e.reason, Reason::StoreUnavailable);
        }
    }
}

/// An SPKI of the point (x, y) if both fit 32 bytes.
fn p256(x: &BigUint, y: &BigUint) -> Option<Vec<u8>> {
    let (xb, yb) = (x.to_bytes_be(), y.to_bytes_be());
    if xb.len() > 32 || yb.len() > 32 {
        return None;
    }
    let mut der = P256_PREFIX.to_vec();
    der.push(0x04);
    der.extend(std::iter::repeat_n(0, 32 - xb.len()).chain(xb));
    der.extend(std::iter::repeat_n(0, 32 - yb.len()).chain(yb));
    Some(der)
}

fuzz_target!(|data: &[u8]| {
    check(data, data);

    // Points built from the input: on the curve, off it, unreduced.
    let c = curve();
    let mut xb = [0u8; 32];
    for (i, b) in data.iter().take(32).enumerate() {
        xb[i] = *b;
    }
    let x = BigUint::from_bytes_be(&xb) % &c.p;
    let r = rhs(&x);
    let exp = (&c.p + 1u32) >> 2; // p ≡ 3 (mod 4)
    let y = r.modpow(&exp, &c.p);
    let mut candidates = vec![
        (x.clone(), &y + 1u32),
        (&x + &c.p, y.clone()),
        (x.clone(), &y + &c.p),
    ];
    if (&y * &y) % &c.p == r {
        candidates.push((x.clone(), y.clone()));
        candidates.push((x.clone(), (&c.p - &y) % &c.p));
    }
    for (px, py) in candidates {
        if let Some(der) = p256(&px, &py) {
            check(&der, data);
        }
    }
});
