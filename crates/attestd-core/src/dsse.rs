//! DSSE, the in-toto signing envelope: what stations and release engineering
//! sign. The signature covers the pre-authentication encoding (PAE) of the
//! payload type and payload; ECDSA signatures are ASN.1 DER.

use crate::error::Rejection;
use crate::keys::{PublicKey, SigEncoding};
use crate::reject;

/// Largest payload accepted (docs/formats.md §2).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// At most this many signatures on one envelope.
pub const MAX_SIGNATURES: usize = 16;
/// Largest single signature (a DER P-256 signature is at most 72 bytes).
const MAX_SIG_BYTES: usize = 128;

/// A DSSE envelope as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The signed document's bytes.
    pub payload: Vec<u8>,
    /// The document's type, e.g. `application/vnd.attestd.baseline.v1+json`.
    pub payload_type: String,
    /// The signatures (1..16), each over `PAE(payload_type, payload)`.
    pub signatures: Vec<Signature>,
}

/// One signature; `keyid` is a hint and never trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The signature bytes (DER for P-256, 64 bytes for Ed25519).
    pub sig: Vec<u8>,
    /// The signer's key id, as the signer states it; may be empty.
    pub keyid: String,
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Checks the sizes before anything else looks at the envelope.
    pub fn check_bounds(&self) -> Result<(), Rejection> {
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(reject!(
                TooLarge,
                "payload of {} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}",
                self.payload.len()
            ));
        }
        if self.signatures.is_empty() {
            return Err(reject!(SignatureInvalid, "envelope carries no signature"));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(reject!(
                TooLarge,
                "{} signatures exceed the limit of {MAX_SIGNATURES}",
                self.signatures.len()
            ));
        }
        for (i, s) in self.signatures.iter().enumerate() {
            if s.sig.len() > MAX_SIG_BYTES || s.keyid.len() > 256 {
                return Err(reject!(TooLarge, "signatures[{i}] is too large"));
            }
        }
        Ok(())
    }

    /// Whether any signature verifies with `key`.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        let msg = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .any(|s| key.verify(&msg, &s.sig, SigEncoding::Der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
