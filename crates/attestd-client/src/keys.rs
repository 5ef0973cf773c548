//! Signing keys for devices, stations and release engineering. Generated
//! with the operating system's randomness; stored as PKCS#8.

use attestd_core::keys::{KeyAlg, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system random source failed while making a key.
    #[error("key generation failed")]
    Generate,
    /// The bytes are not a PKCS#8 private key of the named algorithm.
    #[error("not a PKCS#8 {0} private key")]
    Pkcs8(&'static str),
}

enum Inner {
    Es256 {
        raw: Box<EcdsaKeyPair>,
        der: Box<EcdsaKeyPair>,
    },
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs COSE (raw ECDSA) and DSSE (DER ECDSA) messages.
pub struct SigningKey {
    inner: Inner,
    pkcs8: Vec<u8>,
    public: PublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material.
        write!(f, "SigningKey({:?})", self.public)
    }
}

impl SigningKey {
    /// Generates a new key.
    pub fn generate(alg: KeyAlg) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            KeyAlg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate)?
            }
            KeyAlg::Ed25519 => {
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?
            }
        };
        SigningKey::from_pkcs8(alg, pkcs8.as_ref())
    }

    /// Loads a PKCS#8 private key.
    pub fn from_pkcs8(alg: KeyAlg, pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let (inner, raw_pub) = match alg {
            KeyAlg::Es256 => {
                let raw = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &rng,
                )
                .map_err(|_| KeyError::Pkcs8("P-256"))?;
                let der = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    pkcs8,
                    &rng,
                )
                .map_err(|_| KeyError::Pkcs8("P-256"))?;
                let p = raw.public_key().as_ref().to_vec();
                (
                    Inner::Es256 {
                        raw: Box::new(raw),
                        der: Box::new(der),
                    },
                    p,
                )
            }
            KeyAlg::Ed25519 => {
                let k = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|_| KeyError::Pkcs8("Ed25519"))?;
                let p = k.public_key().as_ref().to_vec();
                (Inner::Ed25519(k), p)
            }
        };
        let public =
            PublicKey::from_raw(alg, &raw_pub).map_err(|_| KeyError::Pkcs8(alg.as_str()))?;
        Ok(SigningKey {
            inner,
            pkcs8: pkcs8.to_vec(),
            public,
            rng,
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.public.alg()
    }

    /// The public half, as attestd enrolls or registers it.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The PKCS#8 encoding, to save the key. Handle as a secret.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Signs with raw `r || s` ECDSA (COSE) or Ed25519.
    pub fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        match &self.inner {
            // ring fails to sign only without randomness, which SystemRandom always has.
            Inner::Es256 { raw, .. } => raw
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Inner::Ed25519(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// Signs with DER ECDSA (DSSE) or Ed25519.
    pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::Es256 { der, .. } => der
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Inner::Ed25519(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}
