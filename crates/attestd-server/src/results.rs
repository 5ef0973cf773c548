//! Signed results: every appraisal and release decision attestd answers
//! also comes as an EAR JWT ([`attestd_core::ear`]) signed with the
//! service's result key, and the keys are published as a JWKS (over gRPC,
//! `Release.GetResultKeys`, and HTTP, `GET /.well-known/jwks.json`).
//!
//! Rotation: a new `key_file` signs from the next start; the old key's
//! public half, listed in `retired_public_keys`, stays in the JWKS, so
//! tokens signed before the rotation keep verifying. Every replica of one
//! store must use the same key (as for the audit key), or a token from one
//! replica would not verify against another's JWKS.

use std::path::Path;
use std::sync::Arc;

use attestd_core::ear::{self, Ear, Jwks, Submod, TrustVector, VerifierId};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_core::Reason;
use attestd_proto::v1 as pb;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

enum Signer {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// The result signing key and the keys published beside it.
pub struct ResultKeys {
    signer: Signer,
    public: PublicKey,
    published: Vec<PublicKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ResultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        write!(
            f,
            "ResultKeys({:?}, {} published)",
            self.public,
            self.published.len()
        )
    }
}

/// The newest draft of a key file holds at most this much base64.
const MAX_KEY_FILE: u64 = 4096;

impl ResultKeys {
    /// Loads the PKCS#8 key in `path` (base64; ES256 or Ed25519), or makes
    /// an ES256 one there (0600). `retired` are the base64 SPKI of keys that
    /// signed earlier tokens, published beside it.
    pub fn load_or_create(path: &Path, retired: &[String]) -> Result<ResultKeys, String> {
        let shown = path.display();
        if !path.exists() {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| "result key generation failed".to_string())?;
            crate::dev::write_private(path, B64.encode(doc.as_ref()).as_bytes())
                .map_err(|e| format!("{shown}: {e}"))?;
        }
        let keys = ResultKeys::load(path, retired)?;
        // Its public half beside it, for `retired_public_keys` after a
        // rotation and for relying parties that pin keys.
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let spki = B64.encode(keys.public.spki_der());
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(spki.as_str()) {
            std::fs::write(&pub_path, spki).map_err(|e| format!("writing the public key: {e}"))?;
        }
        Ok(keys)
    }

    /// Loads the key in `path` without making or writing anything
    /// (`attestd check-config`).
    pub fn load(path: &Path, retired: &[String]) -> Result<ResultKeys, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if size > MAX_KEY_FILE {
            return Err(format!("{shown}: {size} bytes, not a result key file"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let pkcs8 = B64
            .decode(text.trim())
            .map_err(|_| format!("{shown} is not base64"))?;
        ResultKeys::from_pkcs8(&pkcs8, retired).map_err(|e| format!("{shown}: {e}"))
    }

    /// A key from PKCS#8 (ES256 tried first, then Ed25519).
    pub fn from_pkcs8(pkcs8: &[u8], retired: &[String]) -> Result<ResultKeys, String> {
        let rng = SystemRandom::new();
        let (signer, public) =
            match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng) {
                Ok(pair) => {
                    let public = PublicKey::from_raw(KeyAlg::Es256, pair.public_key().as_ref())
                        .map_err(|e| e.message)?;
                    (Signer::Es256(pair), public)
                }
                Err(_) => {
                    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| {
                        "not a PKCS#8 ES256 (P-256) or Ed25519 private key".to_string()
                    })?;
                    let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref())
                        .map_err(|e| e.message)?;
                    (Signer::Ed25519(pair), public)
                }
            };
        let mut published = vec![public.clone()];
        for key in ResultKeys::retired(retired)? {
            if !published.contains(&key) {
                published.push(key);
            }
        }
        Ok(ResultKeys {
            signer,
            public,
            published,
            rng,
        })
    }

    /// The retired keys of the configuration (base64 SPKI), checked.
    pub fn retired(retired: &[String]) -> Result<Vec<PublicKey>, String> {
        let mut keys = Vec::new();
        for (i, k) in retired.iter().enumerate() {
            let der = B64
                .decode(k.trim())
                .map_err(|_| format!("results.retired_public_keys[{i}]: not base64"))?;
            let key = PublicKey::from_spki_der(
                &der,
                Reason::FieldInvalid,
                &format!("results.retired_public_keys[{i}]"),
            )
            .map_err(|e| e.message)?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// The key that signs new tokens.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The published keys: the current one first, then the retired ones.
    pub fn jwks(&self) -> Jwks {
        Jwks::of(&self.published)
    }

    /// The JWKS as JSON.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.jwks()).unwrap_or_default()
    }

    /// The signed token, or empty (logged) if it could not be made: the
    /// only failure is the system's randomness (ES256), and an answer
    /// without a token is better than one whose token cannot verify.
    fn sign(&self, claims: &Ear) -> String {
        let signed = ear::sign(claims, &self.public, |m| match &self.signer {
            Signer::Es256(p) => p
                .sign(&self.rng, m)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed (system randomness)".to_owned()),
            Signer::Ed25519(p) => Ok(p.sign(m).as_ref().to_vec()),
        });
        signed.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a result token could not be signed; answered without one");
            String::new()
        })
    }

    /// The EAR of an appraisal of `serial`, issued at `iat` (seconds).
    pub fn appraisal_token(&self, serial: &str, a: &pb::Appraisal, iat: i64) -> String {
        let v = a.trust_vector.unwrap_or_default();
        let claim = |x: i32| x.clamp(i8::MIN.into(), i8::MAX.into()) as i8;
        let submod = Submod {
            status: tier_status(a.tier).into(),
            trust_vector: Some(TrustVector {
                instance_identity: claim(v.instance_identity),
                configuration: claim(v.configuration),
                executables: claim(v.executables),
                file_system: claim(v.file_system),
                hardware: claim(v.hardware),
                runtime_opaque: claim(v.runtime_opaque),
                storage_opaque: claim(v.storage_opaque),
                sourced_data: claim(v.sourced_data),
            }),
            policy_id: policy_id(&a.baseline_model, a.baseline_version),
            evidence_id: non_empty(&a.evidence_id),
            reasons: a.reasons.iter().map(|r| r.code.clone()).collect(),
            release_decision: None,
            decision_id: None,
        };
        self.sign(&claims(serial, submod, iat))
    }

    /// The EAR of a release decision, issued at `iat` (seconds). Its status
    /// is `affirming` for RELEASE and `contraindicated` for anything else:
    /// a relying party that reads only the status never ships a held unit.
    pub fn decision_token(&self, d: &pb::ReleaseDecision, iat: i64) -> String {
        let release = d.decision == pb::Decision::Release as i32;
        let submod = Submod {
            status: if release {
                "affirming"
            } else {
                "contraindicated"
            }
            .into(),
            trust_vector: None,
            policy_id: (d.baseline_version > 0)
                .then(|| format!("attestd:baseline-version:{}", d.baseline_version)),
            evidence_id: non_empty(&d.evidence_id),
            reasons: d
                .reasons
                .iter()
                .filter(|r| !r.waived)
                .map(|r| r.code.clone())
                .collect(),
            release_decision: Some(if release { "RELEASE" } else { "HOLD" }.into()),
            decision_id: non_empty(&d.decision_id),
        };
        self.sign(&claims(&d.serial, submod, iat))
    }
}

fn claims(serial: &str, submod: Submod, iat: i64) -> Ear {
    Ear {
        eat_profile: ear::PROFILE.into(),
        iat,
        verifier_id: VerifierId {
            developer: "attestd".into(),
            build: concat!("attestd ", env!("CARGO_PKG_VERSION")).into(),
        },
        submods: [(serial.to_owned(), submod)].into_iter().collect(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn policy_id(model: &str, version: u64) -> Option<String> {
    (!model.is_empty() && version > 0).then(|| format!("attestd:baseline:{model}:{version}"))
}

/// The EAR status of an API trust tier.
fn tier_status(tier: i32) -> &'static str {
    match pb::TrustTier::try_from(tier) {
        Ok(pb::TrustTier::Affirming) => "affirming",
        Ok(pb::TrustTier::Warning) => "warning",
        Ok(pb::TrustTier::Contraindicated) => "contraindicated",
        _ => "none",
    }
}

/// The result keys a server signs with, if any (tests may run without).
pub type SharedResultKeys = Option<Arc<ResultKeys>>;
