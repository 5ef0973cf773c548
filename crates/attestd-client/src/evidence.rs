//! Building and signing device evidence (a COSE_Sign1 EAT), as a device or
//! its test double would.

use attestd_core::cose::{encode_sign1, protected_header, sig_structure, CoseAlg};
use attestd_core::evidence::{Claims, Component, HwVersion};
use attestd_core::ids::{Digest, Serial};
use attestd_core::keys::KeyAlg;
use attestd_core::time::UnixTime;

use crate::keys::SigningKey;

/// The COSE algorithm a key signs with by default.
pub fn default_alg(key: &SigningKey) -> CoseAlg {
    match key.alg() {
        KeyAlg::Es256 => CoseAlg::Es256,
        KeyAlg::Ed25519 => CoseAlg::EdDsa,
    }
}

/// Signs `claims` into a tagged COSE_Sign1 with `alg` in the protected header.
pub fn sign_evidence(claims: &Claims, key: &SigningKey) -> Vec<u8> {
    sign_payload(&claims.to_cbor(), key, default_alg(key))
}

/// Signs an arbitrary payload (for tests of malformed claims).
pub fn sign_payload(payload: &[u8], key: &SigningKey, alg: CoseAlg) -> Vec<u8> {
    let protected = protected_header(alg);
    let sig = key.sign_raw(&sig_structure(&protected, &[], payload));
    encode_sign1(&protected, payload, &sig)
}

/// A plausible claims set for a unit: one component, secure boot on, debug
/// disabled. Tests and the simulator adjust fields from here.
pub fn sample_claims(
    serial: &Serial,
    model: &str,
    hw_version: &str,
    bootcount: u64,
    iat: UnixTime,
) -> Claims {
    Claims {
        nonce: None,
        iat,
        bootcount,
        hwmodel: model.to_owned(),
        hwversion: HwVersion {
            version: hw_version.to_owned(),
            scheme: None,
        },
        dbgstat: 3,
        ueid: None,
        serial: serial.clone(),
        secure_boot: true,
        components: vec![Component {
            name: "bootloader".into(),
            version: "2.1.0".into(),
            svn: 4,
            digest: Digest::of(b"bootloader 2.1.0"),
        }],
        calibration: None,
    }
}
