//! COSE_Sign1 (RFC 9052) with attestd's policy: `alg` must sit in the
//! protected header and be one of ES256/ESP256 (P-256) or EdDSA/Ed25519;
//! ES256 signatures are raw `r || s`; the only tag accepted is 18.

use crate::cbor::{self, Encoder, Limits, Value};
use crate::error::{Reason, Rejection};
use crate::keys::{KeyAlg, PublicKey, SigEncoding};
use crate::reject;

/// CBOR tag of COSE_Sign1.
pub const TAG_SIGN1: u64 = 18;

/// Limits for the envelope: the payload may be as large as the whole message.
const ENVELOPE_LIMITS: Limits = Limits {
    max_depth: 8,
    max_string: 16 * 1024,
    max_items: 64,
};

/// The COSE `alg` values attestd accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoseAlg {
    /// -7: ECDSA w/ SHA-256 (P-256 keys only, by attestd policy).
    Es256,
    /// -9: ECDSA P-256 w/ SHA-256, fully specified.
    Esp256,
    /// -8: EdDSA (Ed25519 keys only, by attestd policy).
    EdDsa,
    /// -19: Ed25519, fully specified.
    Ed25519,
}

impl CoseAlg {
    /// The algorithm of a COSE `alg` label, if attestd accepts it.
    pub fn from_label(v: i128) -> Option<CoseAlg> {
        match v {
            -7 => Some(CoseAlg::Es256),
            -9 => Some(CoseAlg::Esp256),
            -8 => Some(CoseAlg::EdDsa),
            -19 => Some(CoseAlg::Ed25519),
            _ => None,
        }
    }

    /// The COSE `alg` label.
    pub fn label(self) -> i64 {
        match self {
            CoseAlg::Es256 => -7,
            CoseAlg::Esp256 => -9,
            CoseAlg::EdDsa => -8,
            CoseAlg::Ed25519 => -19,
        }
    }

    /// The name of the algorithm in the COSE registry.
    pub fn name(self) -> &'static str {
        match self {
            CoseAlg::Es256 => "ES256",
            CoseAlg::Esp256 => "ESP256",
            CoseAlg::EdDsa => "EdDSA",
            CoseAlg::Ed25519 => "Ed25519",
        }
    }

    /// The key algorithm this COSE algorithm needs.
    pub fn key_alg(self) -> KeyAlg {
        match self {
            CoseAlg::Es256 | CoseAlg::Esp256 => KeyAlg::Es256,
            CoseAlg::EdDsa | CoseAlg::Ed25519 => KeyAlg::Ed25519,
        }
    }
}

/// A decoded COSE_Sign1 message. Nothing in it is trusted until
/// [`CoseSign1::verify`] succeeds.
#[derive(Clone, Debug)]
pub struct CoseSign1<'a> {
    /// The protected header exactly as encoded (it is signed as bytes).
    pub protected: &'a [u8],
    /// The algorithm of the protected header's `alg`.
    pub alg: CoseAlg,
    /// The payload (the claims set for evidence).
    pub payload: &'a [u8],
    /// The signature bytes (raw `r || s` for P-256).
    pub signature: &'a [u8],
    /// Whether the message carried tag 18.
    pub tagged: bool,
}

impl<'a> CoseSign1<'a> {
    /// Decodes and checks the structure and the header policy.
    pub fn decode(input: &'a [u8]) -> Result<CoseSign1<'a>, Rejection> {
        let top = cbor::decode(input, ENVELOPE_LIMITS)
            .map_err(|e| Rejection::new(Reason::MalformedCose, e.message))?;
        let (tagged, body) = match top {
            Value::Tag(TAG_SIGN1, inner) => (true, *inner),
            Value::Tag(t, _) => {
                return Err(reject!(MalformedCose, "tag {t} is not COSE_Sign1 (18)"));
            }
            other => (false, other),
        };
        let items = match body {
            Value::Array(items) if items.len() == 4 => items,
            Value::Array(items) => {
                return Err(reject!(
                    MalformedCose,
                    "COSE_Sign1 must be an array of 4 items, got {}",
                    items.len()
                ));
            }
            other => {
                return Err(reject!(
                    MalformedCose,
                    "COSE_Sign1 must be an array, got {}",
                    other.type_name()
                ));
            }
        };
        let mut it = items.into_iter();
        let (protected, unprotected, payload, signature) =
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(p), Some(u), Some(pl), Some(s)) => (p, u, pl, s),
                _ => {
                    return Err(reject!(
                        MalformedCose,
                        "COSE_Sign1 must be an array of 4 items"
                    ))
                }
            };
        let protected = match protected {
            Value::Bytes(b) => b,
            o => {
                return Err(reject!(
                    MalformedCose,
                    "protected header must be a bstr, got {}",
                    o.type_name()
                ))
            }
        };
        if !matches!(unprotected, Value::Map(_)) {
            return Err(reject!(
                MalformedCose,
                "unprotected header must be a map, got {}",
                unprotected.type_name()
            ));
        }
        let payload = match payload {
            Value::Bytes(b) => b,
            Value::Null => {
                return Err(reject!(MalformedCose, "detached payloads are not accepted"))
            }
            o => {
                return Err(reject!(
                    MalformedCose,
                    "payload must be a bstr, got {}",
                    o.type_name()
                ))
            }
        };
        let signature = match signature {
            Value::Bytes(b) => b,
            o => {
                return Err(reject!(
                    MalformedCose,
                    "signature must be a bstr, got {}",
                    o.type_name()
                ))
            }
        };
        let alg = header_alg(protected, &unprotected)?;
        Ok(CoseSign1 {
            protected,
            alg,
            payload,
            signature,
            tagged,
        })
    }

    /// The Sig_structure: `["Signature1", protected, external_aad, payload]`.
    pub fn to_be_signed(&self, external_aad: &[u8]) -> Vec<u8> {
        sig_structure(signed_protected(self.protected), external_aad, self.payload)
    }

    /// Verifies the signature with `key` and empty external AAD. A key of the
    /// wrong type for `alg` does not verify.
    pub fn verify(&self, key: &PublicKey) -> bool {
        self.verify_with_aad(key, &[])
    }

    /// Verifies the signature with `key` over the Sig_structure with `external_aad`. A key of the
    /// wrong type for `alg` does not verify.
    pub fn verify_with_aad(&self, key: &PublicKey, external_aad: &[u8]) -> bool {
        if key.alg() != self.alg.key_alg() {
            return false;
        }
        key.verify(
            &self.to_be_signed(external_aad),
            self.signature,
            SigEncoding::Raw,
        )
    }
}

impl CoseSign1<'_> {
    /// Why this message cannot verify with `key`, when that shows without
    /// cryptography: an `alg` of the wrong family for the key, or a signature
    /// of the wrong shape (a DER ECDSA signature where COSE wants raw
    /// `r || s`). `None` when the shapes fit: then only the signature itself
    /// is wrong. Call it after [`CoseSign1::verify`] failed, to tell a device
    /// team what to fix instead of only "does not verify".
    pub fn mismatch(&self, key: &PublicKey) -> Option<String> {
        let alg = self.alg;
        if key.alg() != alg.key_alg() {
            let (key_name, labels) = match key.alg() {
                KeyAlg::Es256 => ("P-256", "-7 (ES256) or -9 (ESP256)"),
                KeyAlg::Ed25519 => ("Ed25519", "-8 (EdDSA) or -19 (Ed25519)"),
            };
            return Some(format!(
                "alg {} ({}) does not match the enrolled {key_name} key; label the token {labels}",
                alg.label(),
                alg.name()
            ));
        }
        let n = self.signature.len();
        match key.alg() {
            KeyAlg::Es256 if looks_like_der_ecdsa(self.signature) => Some(format!(
                "signature: {n} bytes look like a DER-encoded ECDSA signature; {} signatures \
                 are the raw 64-byte r||s (RFC 9053 section 2.1)",
                alg.name()
            )),
            KeyAlg::Es256 if n != 64 => Some(format!(
                "signature: {n} bytes; {} signatures are the raw 64-byte r||s \
                 (RFC 9053 section 2.1)",
                alg.name()
            )),
            KeyAlg::Ed25519 if n != 64 => Some(format!(
                "signature: {n} bytes; Ed25519 signatures are 64 bytes (RFC 8032 section 5.1.6)"
            )),
            _ => None,
        }
    }
}

/// Whether `sig` has the shape of an ASN.1 DER ECDSA P-256 signature,
/// `SEQUENCE { r INTEGER, s INTEGER }` with integers of 1..33 bytes. Shape
/// only: used to explain a failure, never to accept anything.
fn looks_like_der_ecdsa(sig: &[u8]) -> bool {
    fn integer(b: &[u8]) -> Option<&[u8]> {
        match b {
            [0x02, len, rest @ ..] if (1..=33).contains(len) && rest.len() >= *len as usize => {
                Some(&rest[*len as usize..])
            }
            _ => None,
        }
    }
    match sig {
        [0x30, len, body @ ..] if *len as usize == body.len() => {
            matches!(integer(body).and_then(integer), Some([]))
        }
        _ => false,
    }
}

/// The protected-header bytes as they enter the Sig_structure: a header that
/// encodes an empty map means "no protected attributes", which RFC 9052 §4.4
/// signs as a zero-length bstr.
pub fn signed_protected(protected: &[u8]) -> &[u8] {
    match cbor::decode(protected, Limits::CLAIMS) {
        Ok(Value::Map(m)) if m.is_empty() => &[],
        _ => protected,
    }
}

/// Encodes the COSE Sig_structure for COSE_Sign1.
pub fn sig_structure(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.array(4)
        .text("Signature1")
        .bytes(protected)
        .bytes(external_aad)
        .bytes(payload);
    e.into_bytes()
}

/// Encodes a protected header holding only `alg`.
pub fn protected_header(alg: CoseAlg) -> Vec<u8> {
    let mut e = Encoder::new();
    e.map(1).uint(1).int(alg.label());
    e.into_bytes()
}

/// Assembles a tagged COSE_Sign1 from its parts.
pub fn encode_sign1(protected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.tag(TAG_SIGN1)
        .array(4)
        .bytes(protected)
        .map(0)
        .bytes(payload)
        .bytes(signature);
    e.into_bytes()
}

const LABEL_ALG: i128 = 1;
const LABEL_CRIT: i128 = 2;

fn header_alg(protected: &[u8], unprotected: &Value<'_>) -> Result<CoseAlg, Rejection> {
    let prot = if protected.is_empty() {
        Value::Map(Vec::new())
    } else {
        cbor::decode(protected, Limits::CLAIMS)
            .map_err(|e| reject!(MalformedCose, "protected header: {}", e.message))?
    };
    if !matches!(prot, Value::Map(_)) {
        return Err(reject!(MalformedCose, "protected header must encode a map"));
    }
    if prot.map_get_int(LABEL_CRIT).is_some() {
        return Err(reject!(
            MalformedCose,
            "critical header parameters are not supported"
        ));
    }
    let in_unprotected = unprotected.map_get_int(LABEL_ALG).is_some();
    match prot.map_get_int(LABEL_ALG) {
        None if in_unprotected => Err(reject!(
            AlgNotAllowed,
            "alg must be in the protected header, not the unprotected one"
        )),
        None => Err(reject!(AlgNotAllowed, "protected header has no alg")),
        Some(_) if in_unprotected => Err(reject!(
            MalformedCose,
            "alg appears in both the protected and unprotected headers"
        )),
        Some(v) => match v.as_int().and_then(CoseAlg::from_label) {
            Some(alg) => Ok(alg),
            None => Err(reject!(
                AlgNotAllowed,
                "alg {} is not allowed (ES256 -7, ESP256 -9, EdDSA -8, Ed25519 -19)",
                v.as_int()
                    .map_or_else(|| format!("of type {}", v.type_name()), |i| i.to_string())
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    const PAYLOAD: &[u8] = b"claims";

    fn p256(alg: &'static ring::signature::EcdsaSigningAlgorithm) -> (EcdsaKeyPair, PublicKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let pk = PublicKey::from_raw(KeyAlg::Es256, kp.public_key().as_ref()).unwrap();
        (kp, pk)
    }

    fn ed25519() -> (Ed25519KeyPair, PublicKey) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk = PublicKey::from_raw(KeyAlg::Ed25519, kp.public_key().as_ref()).unwrap();
        (kp, pk)
    }

    /// A token with `alg` whose signature is made by `sign` over its
    /// Sig_structure.
    fn token(alg: CoseAlg, sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let prot = protected_header(alg);
        let sig = sign(&sig_structure(&prot, &[], PAYLOAD));
        encode_sign1(&prot, PAYLOAD, &sig)
    }

    fn refusal(bytes: &[u8], key: &PublicKey) -> Option<String> {
        let cose = CoseSign1::decode(bytes).unwrap();
        assert!(!cose.verify(key));
        cose.mismatch(key)
    }

    #[test]
    fn a_der_es256_signature_is_explained() {
        let (kp, pk) = p256(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let rng = SystemRandom::new();
        let t = token(CoseAlg::Es256, |m| {
            kp.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        let n = CoseSign1::decode(&t).unwrap().signature.len();
        assert!((8..=72).contains(&n));
        assert_eq!(
            refusal(&t, &pk).unwrap(),
            format!(
                "signature: {n} bytes look like a DER-encoded ECDSA signature; ES256 \
                 signatures are the raw 64-byte r||s (RFC 9053 section 2.1)"
            )
        );
        // The same key signing raw r||s verifies; a wrong raw signature has
        // the right shape, so nothing is explained beyond "does not verify".
        let (kp, pk) = p256(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let t = token(CoseAlg::Esp256, |m| {
            kp.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        let cose = CoseSign1::decode(&t).unwrap();
        assert!(cose.verify(&pk));
        let t = token(CoseAlg::Esp256, |_| vec![0x11; 64]);
        assert_eq!(refusal(&t, &pk), None);
        let t = token(CoseAlg::Es256, |_| vec![0x11; 63]);
        assert_eq!(
            refusal(&t, &pk).unwrap(),
            "signature: 63 bytes; ES256 signatures are the raw 64-byte r||s (RFC 9053 section 2.1)"
        );
    }

    #[test]
    fn an_alg_of_the_other_key_family_is_explained() {
        let (kp, pk) = ed25519();
        let t = token(CoseAlg::Es256, |m| kp.sign(m).as_ref().to_vec());
        assert_eq!(
            refusal(&t, &pk).unwrap(),
            "alg -7 (ES256) does not match the enrolled Ed25519 key; \
             label the token -8 (EdDSA) or -19 (Ed25519)"
        );
        let t = token(CoseAlg::EdDsa, |m| kp.sign(m).as_ref().to_vec());
        assert!(CoseSign1::decode(&t).unwrap().verify(&pk));
        let t = token(CoseAlg::Ed25519, |_| vec![0; 65]);
        assert_eq!(
            refusal(&t, &pk).unwrap(),
            "signature: 65 bytes; Ed25519 signatures are 64 bytes (RFC 8032 section 5.1.6)"
        );
        let t = token(CoseAlg::EdDsa, |_| vec![0; 64]);
        assert_eq!(refusal(&t, &pk), None);

        let (_, pk) = p256(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let t = token(CoseAlg::EdDsa, |_| vec![0; 64]);
        assert_eq!(
            refusal(&t, &pk).unwrap(),
            "alg -8 (EdDSA) does not match the enrolled P-256 key; \
             label the token -7 (ES256) or -9 (ESP256)"
        );
    }

    #[test]
    fn der_shape() {
        let der = |r: &[u8], s: &[u8]| {
            let mut v = vec![0x30, (4 + r.len() + s.len()) as u8, 0x02, r.len() as u8];
            v.extend(r);
            v.extend([0x02, s.len() as u8]);
            v.extend(s);
            v
        };
        assert!(looks_like_der_ecdsa(&der(&[1; 32], &[2; 32])));
        assert!(looks_like_der_ecdsa(&der(&[0, 0x80], &[1; 33])));
        assert!(!looks_like_der_ecdsa(&der(&[1; 34], &[2; 32])));
        assert!(!looks_like_der_ecdsa(&der(&[], &[2; 32])));
        let mut trailing = der(&[1; 32], &[2; 32]);
        trailing[1] += 1;
        trailing.push(0);
        assert!(!looks_like_der_ecdsa(&trailing));
        assert!(!looks_like_der_ecdsa(&[0x11; 64]));
        assert!(!looks_like_der_ecdsa(&[]));
        assert!(!looks_like_der_ecdsa(&[0x30, 0x00]));
    }
}
