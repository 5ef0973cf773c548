//! Public keys and signature verification. Two algorithms only, ECDSA P-256
//! with SHA-256 and Ed25519 (docs/formats.md); keys travel as SubjectPublicKeyInfo
//! DER and are identified by `sha256:<hex>` of that DER.

use ring::signature::{self, UnparsedPublicKey};

use crate::error::{Reason, Rejection};
use crate::ids::{hex, Digest};

/// The signature algorithms attestd accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// ECDSA over P-256 with SHA-256.
    Es256,
    /// Ed25519 (pure EdDSA).
    Ed25519,
}

impl KeyAlg {
    /// The name used in JSON records (`device_key.alg`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::Ed25519 => "Ed25519",
        }
    }

    /// Parses the JSON name; `EdDSA` is accepted as a synonym for Ed25519.
    pub fn parse(s: &str) -> Option<KeyAlg> {
        match s {
            "ES256" => Some(KeyAlg::Es256),
            "Ed25519" | "EdDSA" => Some(KeyAlg::Ed25519),
            _ => None,
        }
    }
}

/// How an ECDSA signature is encoded: raw `r || s` in COSE, DER in DSSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigEncoding {
    /// 64 bytes, `r || s` (RFC 9053).
    Raw,
    /// ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }`.
    Der,
}

// SPKI prefixes (everything before the key bytes) of the only two key shapes
// accepted: an uncompressed P-256 point and a raw Ed25519 key.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A validated public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: KeyAlg,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.alg, self.key_id())
    }
}

impl PublicKey {
    /// Parses SubjectPublicKeyInfo DER. Accepts an uncompressed P-256 point
    /// or an Ed25519 key, nothing else. `field` names the input in errors.
    pub fn from_spki_der(der: &[u8], reason: Reason, field: &str) -> Result<PublicKey, Rejection> {
        PublicKey::parse(der, reason, field, true)
    }

    /// Parses a key that passed [`PublicKey::from_spki_der`] when it was
    /// enrolled and comes back from the store: the shape is checked again,
    /// the curve equation is not (it costs more than the verification it
    /// precedes, and ring checks the point at every verification anyway).
    pub fn from_enrolled_spki_der(der: &[u8], field: &str) -> Result<PublicKey, Rejection> {
        PublicKey::parse(der, Reason::StoreUnavailable, field, false)
    }

    fn parse(
        der: &[u8],
        reason: Reason,
        field: &str,
        check_curve: bool,
    ) -> Result<PublicKey, Rejection> {
        let alg = if der.len() == 91 && der[..26] == P256_SPKI_PREFIX && der[26] == 0x04 {
            KeyAlg::Es256
        } else if der.len() == 44 && der[..12] == ED25519_SPKI_PREFIX {
            KeyAlg::Ed25519
        } else {
            return Err(Rejection::new(
                reason,
                format!(
                    "{field}: expected the SubjectPublicKeyInfo DER of an uncompressed P-256 \
                     or an Ed25519 public key ({} bytes given)",
                    der.len()
                ),
            ));
        };
        if alg == KeyAlg::Es256 && check_curve {
            // Reject points that are not on the curve now, not at first use.
            if !p256_point_valid(&der[26..]) {
                return Err(Rejection::new(
                    reason,
                    format!("{field}: the P-256 point is not on the curve"),
                ));
            }
        }
        Ok(PublicKey {
            alg,
            spki_der: der.to_vec(),
        })
    }

    /// Builds the SPKI of a raw key: a 65-byte uncompressed P-256 point or a
    /// 32-byte Ed25519 key.
    pub fn from_raw(alg: KeyAlg, raw: &[u8]) -> Result<PublicKey, Rejection> {
        let mut der = Vec::with_capacity(91);
        match alg {
            KeyAlg::Es256 => der.extend_from_slice(&P256_SPKI_PREFIX),
            KeyAlg::Ed25519 => der.extend_from_slice(&ED25519_SPKI_PREFIX),
        }
        der.extend_from_slice(raw);
        PublicKey::from_spki_der(&der, Reason::FieldInvalid, "public key")
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The key's SubjectPublicKeyInfo DER, as enrolled or registered.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The raw key bytes (the uncompressed point or the 32-byte Ed25519 key).
    pub fn raw(&self) -> &[u8] {
        match self.alg {
            KeyAlg::Es256 => &self.spki_der[26..],
            KeyAlg::Ed25519 => &self.spki_der[12..],
        }
    }

    /// `sha256:<hex of SHA-256 over the SPKI DER>`.
    pub fn key_id(&self) -> String {
        format!("sha256:{}", hex(&Digest::of(&self.spki_der).0))
    }

    /// Verifies `sig` over `msg`. ECDSA signatures use `encoding`; Ed25519
    /// signatures are always 64 raw bytes.
    pub fn verify(&self, msg: &[u8], sig: &[u8], encoding: SigEncoding) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match (self.alg, encoding) {
            (KeyAlg::Es256, SigEncoding::Raw) => &signature::ECDSA_P256_SHA256_FIXED,
            (KeyAlg::Es256, SigEncoding::Der) => &signature::ECDSA_P256_SHA256_ASN1,
            (KeyAlg::Ed25519, _) => &signature::ED25519,
        };
        UnparsedPublicKey::new(alg, self.raw())
            .verify(msg, sig)
            .is_ok()
    }
}

/// Whether a 65-byte uncompressed SEC1 point lies on P-256. ring exposes no
/// direct check, so this uses the curve equation y^2 = x^3 - 3x + b mod p
/// with small big-number arithmetic.
fn p256_point_valid(point: &[u8]) -> bool {
    if point.len() != 65 || point[0] != 0x04 {
        return false;
    }
    let x = U256::from_be(&point[1..33]);
    let y = U256::from_be(&point[33..65]);
    let p = U256::from_be(&P256_P);
    if !x.lt(&p) || !y.lt(&p) {
        return false;
    }
    let b = U256::from_be(&P256_B);
    let lhs = y.mul_mod(&y, &p);
    let x3 = x.mul_mod(&x, &p).mul_mod(&x, &p);
    let three_x = x.add_mod(&x, &p).add_mod(&x, &p);
    let rhs = x3.sub_mod(&three_x, &p).add_mod(&b, &p);
    lhs == rhs
}

const P256_P: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];
const P256_B: [u8; 32] = [
    0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86, 0xbc,
    0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2, 0x60, 0x4b,
];

/// A 256-bit unsigned integer as four little-endian 64-bit limbs; just enough
/// arithmetic for the on-curve check (not constant time: public data only).
#[derive(Clone, Copy, PartialEq, Eq)]
struct U256([u64; 4]);

impl U256 {
    fn from_be(b: &[u8]) -> U256 {
        let mut l = [0u64; 4];
        for (i, limb) in l.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[start..start + 8]);
            *limb = u64::from_be_bytes(w);
        }
        U256(l)
    }

    fn lt(&self, o: &U256) -> bool {
        for i in (0..4).rev() {
            if self.0[i] != o.0[i] {
                return self.0[i] < o.0[i];
            }
        }
        false
    }

    /// (self + o) mod p, for self, o < p.
    fn add_mod(&self, o: &U256, p: &U256) -> U256 {
        let mut r = [0u64; 4];
        let mut carry = 0u128;
        for (i, limb) in r.iter_mut().enumerate() {
            let s = self.0[i] as u128 + o.0[i] as u128 + carry;
            *limb = s as u64;
            carry = s >> 64;
        }
        let r = U256(r);
        if carry != 0 || !r.lt(p) {
            r.wrapping_sub(p)
        } else {
            r
        }
    }

    fn sub_mod(&self, o: &U256, p: &U256) -> U256 {
        if self.lt(o) {
            self.wrapping_sub(o).wrapping_add(p)
        } else {
            self.wrapping_sub(o)
        }
    }

    fn wrapping_sub(&self, o: &U256) -> U256 {
        let mut r = [0u64; 4];
        let mut borrow = 0i128;
        for (i, limb) in r.iter_mut().enumerate() {
            let d = self.0[i] as i128 - o.0[i] as i128 - borrow;
            *limb = d as u64;
            borrow = if d < 0 { 1 } else { 0 };
        }
        U256(r)
    }

    fn wrapping_add(&self, o: &U256) -> U256 {
        let mut r = [0u64; 4];
        let mut carry = 0u128;
        for (i, limb) in r.iter_mut().enumerate() {
            let s = self.0[i] as u128 + o.0[i] as u128 + carry;
            *limb = s as u64;
            carry = s >> 64;
        }
        U256(r)
    }

    /// (self * o) mod p by double-and-add over the bits of o.
    fn mul_mod(&self, o: &U256, p: &U256) -> U256 {
        let mut acc = U256([0; 4]);
        for i in (0..256).rev() {
            acc = acc.add_mod(&acc, p);
            if (o.0[i / 64] >> (i % 64)) & 1 == 1 {
                acc = acc.add_mod(self, p);
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_generator() -> Vec<u8> {
        let x = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
        let y = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
        let mut v = vec![4u8];
        for h in [x, y] {
            v.extend(Digest::from_hex(h).unwrap().0);
        }
        v
    }

    #[test]
    fn p256_on_curve_check() {
        let g = p256_generator();
        assert!(p256_point_valid(&g));
        let mut off = g.clone();
        off[64] ^= 1;
        assert!(!p256_point_valid(&off));
        let k = PublicKey::from_raw(KeyAlg::Es256, &g).unwrap();
        assert_eq!(k.alg(), KeyAlg::Es256);
        assert!(k.key_id().starts_with("sha256:"));
        assert_eq!(k.key_id().len(), 7 + 64);
        assert!(PublicKey::from_raw(KeyAlg::Es256, &off).is_err());
    }

    #[test]
    fn rejects_other_key_shapes() {
        for der in [&[][..], &[0x30, 0x00][..], &[0u8; 91][..]] {
            let e = PublicKey::from_spki_der(der, Reason::FieldInvalid, "device_key.spki_der")
                .unwrap_err();
            assert!(e.message.starts_with("device_key.spki_der:"));
            let e = PublicKey::from_enrolled_spki_der(der, "stored key").unwrap_err();
            assert_eq!(e.reason, Reason::StoreUnavailable);
        }
    }

    #[test]
    fn an_enrolled_key_is_not_checked_against_the_curve_again() {
        let g = p256_generator();
        let der = PublicKey::from_raw(KeyAlg::Es256, &g)
            .unwrap()
            .spki_der()
            .to_vec();
        let k = PublicKey::from_enrolled_spki_der(&der, "stored key").unwrap();
        assert_eq!(k.alg(), KeyAlg::Es256);
        // Off the curve: refused on the way in, not on the way back (ring
        // refuses such a point when it verifies).
        let mut off = der.clone();
        off[90] ^= 1;
        assert!(PublicKey::from_spki_der(&off, Reason::FieldInvalid, "k").is_err());
        let k = PublicKey::from_enrolled_spki_der(&off, "stored key").unwrap();
        assert!(!k.verify(b"m", &[0u8; 64], SigEncoding::Raw));
    }
}
