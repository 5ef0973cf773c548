//! Building and signing station records (DSSE envelopes around JSON).

use attestd_core::baseline::{BaselineDoc, BASELINE_TYPE};
use attestd_core::dsse::pae;
use attestd_core::record::{CalibrationDoc, ProvisioningDoc, CALIBRATION_TYPE, PROVISIONING_TYPE};
use attestd_proto::v1 as pb;
use base64::Engine as _;

use crate::keys::SigningKey;

/// Signs `payload` of `payload_type` into a DSSE envelope with one signature.
pub fn sign_envelope(payload_type: &str, payload: Vec<u8>, key: &SigningKey) -> pb::Envelope {
    let sig = key.sign_der(&pae(payload_type, &payload));
    pb::Envelope {
        payload,
        payload_type: payload_type.to_owned(),
        signatures: vec![pb::Signature {
            sig,
            keyid: key.public_key().key_id(),
        }],
    }
}

/// Signs `payload` with every key in `keys` (one signature each), as release
/// engineering signs a baseline (t of n).
pub fn sign_envelope_multi(
    payload_type: &str,
    payload: Vec<u8>,
    keys: &[&SigningKey],
) -> pb::Envelope {
    let msg = pae(payload_type, &payload);
    pb::Envelope {
        signatures: keys
            .iter()
            .map(|k| pb::Signature {
                sig: k.sign_der(&msg),
                keyid: k.public_key().key_id(),
            })
            .collect(),
        payload,
        payload_type: payload_type.to_owned(),
    }
}

/// Serializes a baseline and signs it with each of `release_keys`.
pub fn sign_baseline(doc: &BaselineDoc, release_keys: &[&SigningKey]) -> pb::Envelope {
    sign_envelope_multi(
        BASELINE_TYPE,
        serde_json::to_vec(doc).unwrap_or_default(),
        release_keys,
    )
}

/// Serializes and signs a provisioning record.
pub fn sign_provisioning(doc: &ProvisioningDoc, key: &SigningKey) -> pb::Envelope {
    sign_envelope(
        PROVISIONING_TYPE,
        serde_json::to_vec(doc).unwrap_or_default(),
        key,
    )
}

/// Serializes and signs a calibration record.
pub fn sign_calibration(doc: &CalibrationDoc, key: &SigningKey) -> pb::Envelope {
    sign_envelope(
        CALIBRATION_TYPE,
        serde_json::to_vec(doc).unwrap_or_default(),
        key,
    )
}

/// Base64 SubjectPublicKeyInfo DER of a key, as records carry it.
pub fn spki_base64(key: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key().spki_der())
}
