//! What a device team is told when its evidence does not verify: the
//! message says what to fix when the token's shape shows it.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::cose::{encode_sign1, protected_header, sig_structure, CoseAlg};
use attestd_core::evidence::{Claims, Component, Evidence, HwVersion};
use attestd_core::ids::{Digest, Serial};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_core::time::UnixTime;
use attestd_core::Reason;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};

fn claims() -> Vec<u8> {
    Claims {
        nonce: Some(vec![1; 32]),
        iat: UnixTime(1_800_000_000),
        bootcount: 10,
        hwmodel: "PM-200".into(),
        hwversion: HwVersion {
            version: "B".into(),
            scheme: None,
        },
        dbgstat: 3,
        ueid: None,
        serial: Serial::parse("PM200-000123", Reason::ClaimInvalid, "serial").unwrap(),
        secure_boot: true,
        components: vec![Component {
            name: "bootloader".into(),
            version: "2.1.0".into(),
            svn: 4,
            digest: Digest::of(b"boot"),
        }],
        calibration: None,
    }
    .to_cbor()
}

fn token(alg: CoseAlg, sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let prot = protected_header(alg);
    let payload = claims();
    let sig = sign(&sig_structure(&prot, &[], &payload));
    encode_sign1(&prot, &payload, &sig)
}

fn refused(token: &[u8], key: &PublicKey) -> String {
    let e = Evidence::decode(token).unwrap().verify(key).unwrap_err();
    assert_eq!(e.reason, Reason::SignatureInvalid);
    e.message
}

#[test]
fn an_ed25519_unit_labelling_its_token_es256_is_told_the_label() {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = PublicKey::from_raw(KeyAlg::Ed25519, kp.public_key().as_ref()).unwrap();
    let t = token(CoseAlg::Es256, |m| kp.sign(m).as_ref().to_vec());
    assert_eq!(
        refused(&t, &key),
        "alg -7 (ES256) does not match the enrolled Ed25519 key; \
         label the token -8 (EdDSA) or -19 (Ed25519)"
    );
    // Labelled right, it verifies; signed by another key, the message is
    // the plain one.
    let ok = token(CoseAlg::EdDsa, |m| kp.sign(m).as_ref().to_vec());
    assert!(Evidence::decode(&ok).unwrap().verify(&key).is_ok());
    let other = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let t = token(CoseAlg::EdDsa, |m| other.sign(m).as_ref().to_vec());
    assert_eq!(
        refused(&t, &key),
        "signature does not verify with the key enrolled for PM200-000123"
    );
}

#[test]
fn a_der_es256_signature_is_told_to_be_raw() {
    let rng = SystemRandom::new();
    let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let der = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let key = PublicKey::from_raw(KeyAlg::Es256, der.public_key().as_ref()).unwrap();
    let t = token(CoseAlg::Es256, |m| {
        der.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let n = Evidence::decode(&t).unwrap().cose.signature.len();
    assert_eq!(
        refused(&t, &key),
        format!(
            "signature: {n} bytes look like a DER-encoded ECDSA signature; \
             ES256 signatures are the raw 64-byte r||s (RFC 9053 section 2.1)"
        )
    );
    // The same key, raw r||s: verifies.
    let fixed = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let raw = EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref(), &rng).unwrap();
    let t = token(CoseAlg::Es256, |m| {
        raw.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert!(Evidence::decode(&t).unwrap().verify(&key).is_ok());
}
