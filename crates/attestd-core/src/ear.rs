//! EAT Attestation Results (EAR, draft-ietf-rats-ear) as signed JWTs, and
//! the JWKS that publishes the keys that sign them.
//!
//! An attestd result token is a JWS compact serialization (RFC 7515) of
//! EAR claims: the profile, when it was issued, which verifier issued it,
//! and one submodule per unit (its serial) with the AR4SI status and trust
//! vector, the appraisal policy (the baseline) and attestd's own claims
//! under `attestd.*` names (reasons, evidence id, release decision).
//!
//! Why not Veraison's `ear` crate: its JWT side signs through
//! `jsonwebtoken` built on aws-lc-rs, a second crypto provider (and a C
//! build) beside ring, which is the only one attestd ships. The JOSE part
//! here is small: ES256 (raw r||s, RFC 7518 §3.4) and EdDSA (RFC 8037)
//! over ring, checked in tests against an independent JOSE library.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyAlg, PublicKey, SigEncoding};

/// The EAR profile attestd's tokens follow.
pub const PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// Longest token [`verify`] reads: results are small; a longer input is
/// refused before it is decoded.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The claims of a result token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ear {
    /// Always [`PROFILE`].
    pub eat_profile: String,
    /// Seconds since the Unix epoch.
    pub iat: i64,
    /// Who made the result: attestd and its build.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// One appraisal per unit, by serial.
    pub submods: BTreeMap<String, Submod>,
}

/// `ear.verifier-id`: the verifier that made a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifierId {
    /// Who develops the verifier: `attestd`.
    pub developer: String,
    /// The verifier's build (its version).
    pub build: String,
}

/// One unit's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Submod {
    /// `none`, `affirming`, `warning` or `contraindicated`.
    #[serde(rename = "ear.status")]
    pub status: String,
    #[serde(
        rename = "ear.trustworthiness-vector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    /// The AR4SI claims of the appraisal.
    pub trust_vector: Option<TrustVector>,
    /// The baseline the result rests on, when one was applied: an
    /// appraisal names it `attestd:baseline:<model>:<version>`; a release
    /// decision (which names the unit, not its model)
    /// `attestd:baseline-version:<version>`.
    #[serde(
        rename = "ear.appraisal-policy-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_id: Option<String>,
    /// The evidence the appraisal was computed from.
    #[serde(
        rename = "attestd.evidence-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub evidence_id: Option<String>,
    /// Why the result is not affirming (the API's reason codes).
    #[serde(
        rename = "attestd.reasons",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reasons: Vec<String>,
    /// For a release decision: `RELEASE` or `HOLD`, and its id.
    #[serde(
        rename = "attestd.release-decision",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub release_decision: Option<String>,
    #[serde(
        rename = "attestd.decision-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    /// The stored decision's id, for a release decision.
    pub decision_id: Option<String>,
}

/// The AR4SI trustworthiness vector; claims attestd does not evaluate are
/// left out (AR4SI: absent means no claim).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrustVector {
    /// AR4SI `instance-identity`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub instance_identity: i8,
    /// AR4SI `configuration`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub configuration: i8,
    /// AR4SI `executables`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub executables: i8,
    /// AR4SI `file-system` (not evaluated by attestd).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file_system: i8,
    /// AR4SI `hardware`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hardware: i8,
    /// AR4SI `runtime-opaque` (not evaluated by attestd).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runtime_opaque: i8,
    /// AR4SI `storage-opaque` (not evaluated by attestd).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storage_opaque: i8,
    /// AR4SI `sourced-data`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sourced_data: i8,
}

fn is_zero(v: &i8) -> bool {
    *v == 0
}

/// The JOSE `alg` of a key.
pub fn jose_alg(alg: KeyAlg) -> &'static str {
    match alg {
        KeyAlg::Es256 => "ES256",
        KeyAlg::Ed25519 => "EdDSA",
    }
}

/// The JWK `kid` of a key: base64url of the first 16 bytes of the SHA-256
/// of its SubjectPublicKeyInfo (stable, and the same on every replica).
pub fn kid(key: &PublicKey) -> String {
    B64URL.encode(&crate::ids::Digest::of(key.spki_der()).0[..16])
}

/// A public key as a JWK (RFC 7517; EC per RFC 7518, OKP per RFC 8037).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC` (P-256) or `OKP` (Ed25519).
    pub kty: String,
    /// Curve: `P-256` or `Ed25519`.
    pub crv: String,
    /// base64url of the x coordinate (P-256) or of the public key (Ed25519).
    pub x: String,
    /// base64url of the y coordinate (P-256 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key's id ([`kid`]).
    pub kid: String,
    /// The JOSE algorithm ([`jose_alg`]).
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    /// The JWK of a P-256 or Ed25519 public key.
    pub fn of(key: &PublicKey) -> Jwk {
        let raw = key.raw();
        let (kty, crv, x, y) = match key.alg() {
            // The uncompressed point: 0x04 || x || y.
            KeyAlg::Es256 => ("EC", "P-256", &raw[1..33], Some(&raw[33..65])),
            KeyAlg::Ed25519 => ("OKP", "Ed25519", raw, None),
        };
        Jwk {
            kty: kty.into(),
            crv: crv.into(),
            x: B64URL.encode(x),
            y: y.map(|y| B64URL.encode(y)),
            kid: kid(key),
            alg: jose_alg(key.alg()).into(),
            use_: "sig".into(),
        }
    }

    /// The public key this JWK describes, if it is one attestd can use.
    pub fn public_key(&self) -> Result<PublicKey, String> {
        let bytes = |s: &str| {
            B64URL
                .decode(s)
                .map_err(|_| "a JWK coordinate is not base64url")
        };
        let key = match (self.kty.as_str(), self.crv.as_str(), &self.y) {
            ("EC", "P-256", Some(y)) => {
                let (x, y) = (bytes(&self.x)?, bytes(y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("a P-256 JWK needs 32-byte coordinates".into());
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::from_raw(KeyAlg::Es256, &point)
            }
            ("OKP", "Ed25519", None) => PublicKey::from_raw(KeyAlg::Ed25519, &bytes(&self.x)?),
            _ => return Err(format!("unsupported JWK {}/{}", self.kty, self.crv)),
        };
        key.map_err(|e| e.message)
    }
}

/// A JWK Set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, current first.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The JWK Set of these keys, in order.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Jwks {
        Jwks {
            keys: keys.into_iter().map(Jwk::of).collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    kid: String,
}

/// Signs `claims` as a compact JWS with the key `public` whose private half
/// `sign` holds: `sign` gets the signing input and returns the signature
/// (ES256: 64 bytes r||s; EdDSA: 64 bytes), or why it could not.
pub fn sign(
    claims: &Ear,
    public: &PublicKey,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    let header = Header {
        alg: jose_alg(public.alg()).into(),
        typ: Some("JWT".into()),
        kid: kid(public),
    };
    let h = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let c = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut out = format!("{}.{}", B64URL.encode(h), B64URL.encode(c));
    let sig = sign(out.as_bytes())?;
    if sig.len() != 64 {
        return Err(format!("a {}-byte signature, not 64", sig.len()));
    }
    out.push('.');
    out.push_str(&B64URL.encode(sig));
    Ok(out)
}

/// Verifies a result token against the keys of `jwks` and returns its
/// claims. Refuses: a token longer than [`MAX_TOKEN_LEN`], anything but
/// three base64url parts, an unknown `kid`, an `alg` other than the key's
/// (no `none`, no algorithm confusion), a bad signature, claims that are
/// not an EAR of [`PROFILE`].
pub fn verify(token: &str, jwks: &Jwks) -> Result<Ear, String> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let part = |p: &str, what: &str| {
        B64URL
            .decode(p)
            .map_err(|_| format!("the {what} is not base64url"))
    };
    let header: Header =
        serde_json::from_slice(&part(h, "header")?).map_err(|e| format!("the header: {e}"))?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == header.kid)
        .ok_or_else(|| format!("no published key has kid {:?}", header.kid))?;
    let key = jwk.public_key()?;
    if header.alg != jose_alg(key.alg()) {
        return Err(format!(
            "alg {:?} is not the key's ({})",
            header.alg,
            jose_alg(key.alg())
        ));
    }
    let sig = part(s, "signature")?;
    let signed = &token[..h.len() + 1 + c.len()];
    if !key.verify(signed.as_bytes(), &sig, SigEncoding::Raw) {
        return Err("the signature does not verify".into());
    }
    let claims: Ear =
        serde_json::from_slice(&part(c, "payload")?).map_err(|e| format!("the claims: {e}"))?;
    if claims.eat_profile != PROFILE {
        return Err(format!(
            "eat_profile {:?} is not {PROFILE}",
            claims.eat_profile
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn claims() -> Ear {
        Ear {
            eat_profile: PROFILE.into(),
            iat: 1_767_225_600,
            verifier_id: VerifierId {
                developer: "attestd".into(),
                build: "attestd 0.1.0".into(),
            },
            submods: BTreeMap::from([(
                "PM200-0001".into(),
                Submod {
                    status: "contraindicated".into(),
                    trust_vector: Some(TrustVector {
                        instance_identity: 2,
                        executables: 96,
                        hardware: 2,
                        ..Default::default()
                    }),
                    policy_id: Some("attestd:baseline:PM-200:3".into()),
                    evidence_id: Some("ev-1".into()),
                    reasons: vec!["FIRMWARE_REVOKED".into()],
                    release_decision: None,
                    decision_id: None,
                },
            )]),
        }
    }

    fn es256() -> (PublicKey, EcdsaKeyPair) {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let public = PublicKey::from_raw(KeyAlg::Es256, pair.public_key().as_ref()).unwrap();
        (public, pair)
    }

    fn ed25519() -> (PublicKey, Ed25519KeyPair) {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref()).unwrap();
        (public, pair)
    }

    fn es256_token(public: &PublicKey, pair: &EcdsaKeyPair) -> String {
        let rng = SystemRandom::new();
        sign(&claims(), public, |m| {
            Ok(pair.sign(&rng, m).unwrap().as_ref().to_vec())
        })
        .unwrap()
    }

    #[test]
    fn a_token_verifies_with_its_published_key_and_round_trips() {
        let (public, pair) = es256();
        let token = es256_token(&public, &pair);
        let jwks = Jwks::of([&public]);
        assert_eq!(verify(&token, &jwks).unwrap(), claims());
        let (ed, ed_pair) = ed25519();
        let t2 = sign(&claims(), &ed, |m| Ok(ed_pair.sign(m).as_ref().to_vec())).unwrap();
        let both = Jwks::of([&public, &ed]);
        assert_eq!(verify(&t2, &both).unwrap(), claims());
        // A signer that fails, or gives a signature of the wrong size,
        // makes no token.
        assert!(sign(&claims(), &public, |_| Err("no randomness".into())).is_err());
        assert!(sign(&claims(), &public, |_| Ok(Vec::new())).is_err());
        // A JWK gives back the key it was made of.
        for k in [&public, &ed] {
            assert_eq!(&Jwk::of(k).public_key().unwrap(), k);
        }
    }

    #[test]
    fn changed_tokens_unknown_keys_and_other_algorithms_are_refused() {
        let (public, pair) = es256();
        let token = es256_token(&public, &pair);
        let jwks = Jwks::of([&public]);
        // A changed payload (another status).
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c.submods.get_mut("PM200-0001").unwrap().status = "affirming".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64URL.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert!(verify(&forged, &jwks).unwrap_err().contains("signature"));
        // Another key's JWKS.
        let (other, _) = es256();
        assert!(verify(&token, &Jwks::of([&other]))
            .unwrap_err()
            .contains("kid"));
        // alg none, or a header naming the wrong algorithm for the key.
        for alg in ["none", "EdDSA", "HS256"] {
            let h = serde_json::json!({"alg": alg, "kid": kid(&public)});
            let t = format!(
                "{}.{}.{}",
                B64URL.encode(serde_json::to_vec(&h).unwrap()),
                parts[1],
                parts[2]
            );
            assert!(verify(&t, &jwks).unwrap_err().contains("alg"), "{alg}");
        }
        // Garbage and oversize input.
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(verify(bad, &jwks).is_err(), "{bad}");
        }
        assert!(verify(&"a".repeat(MAX_TOKEN_LEN + 1), &jwks).is_err());
    }
}
