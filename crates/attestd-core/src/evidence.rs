//! Device evidence: an EAT (RFC 9711) claims set inside COSE_Sign1, decoded
//! under the bounds of docs/formats.md §1, and the freshness rules for evidence
//! that carries no nonce (deferred evidence, RFC 9334 §10.4).

use crate::cbor::{self, Encoder, Limits, Value};
use crate::cose::CoseSign1;
use crate::error::{Reason, Rejection};
use crate::ids::{Digest, Serial};
use crate::reject;
use crate::time::UnixTime;

/// The one EAT profile attestd accepts.
pub const PROFILE: &str = "urn:attestd:profile:device-evidence:v1";
/// Largest evidence message accepted.
pub const MAX_EVIDENCE_BYTES: usize = 16 * 1024;
/// At most this many firmware components.
pub const MAX_COMPONENTS: usize = 32;

/// Claim keys (RFC 9711 integer keys; text keys are attestd's own).
pub mod key {
    /// `eat_nonce`: the nonce from `GetChallenge`, 8..64 bytes.
    pub const NONCE: i64 = 10;
    /// `iat`: when the unit made the evidence, seconds since the Unix epoch.
    pub const IAT: i64 = 6;
    /// `ueid`: the unit's EAT UEID, 7..33 bytes; checked for length only.
    pub const UEID: i64 = 256;
    /// `hwmodel`: the model, as a byte string holding UTF-8.
    pub const HWMODEL: i64 = 259;
    /// `hwversion`: `[text]` or `[text, integer]`.
    pub const HWVERSION: i64 = 260;
    /// `dbgstat`: the EAT debug status, 0..4.
    pub const DBGSTAT: i64 = 263;
    /// `eat_profile`: must be attestd's profile.
    pub const PROFILE: i64 = 265;
    /// `bootcount`: the unit's monotonic boot counter.
    pub const BOOTCOUNT: i64 = 267;
    /// The unit's serial; selects the enrolled key.
    pub const SERIAL: &str = "serial";
    /// Whether secure boot was enforced on this boot.
    pub const SECURE_BOOT: &str = "secure_boot";
    /// The measured firmware images, 1..32.
    pub const COMPONENTS: &str = "components";
    /// The calibration data set loaded now.
    pub const CALIBRATION: &str = "calibration";
}

/// One measured firmware image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Component name, e.g. `bootloader`; unique within the evidence.
    pub name: String,
    /// The build's version text, e.g. `2.1.4`.
    pub version: String,
    /// The build's security version number.
    pub svn: u64,
    /// SHA-256 of the measured image.
    pub digest: Digest,
}

/// The calibration data set a unit reports as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalibrationClaim {
    /// The station's id of the calibration that wrote the data set.
    pub id: String,
    /// SHA-256 of the calibration data set, as its calibration record states it.
    pub digest: Digest,
}

/// `hwversion`: a version string with an optional version scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwVersion {
    /// The hardware version; must equal the enrolled one.
    pub version: String,
    /// The optional version scheme; read and ignored.
    pub scheme: Option<i64>,
}

/// The claims of one piece of evidence, typed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The nonce attestd issued; `None` for deferred evidence.
    pub nonce: Option<Vec<u8>>,
    /// When the unit made the evidence (its clock).
    pub iat: UnixTime,
    /// The unit's monotonic boot counter.
    pub bootcount: u64,
    /// The model the unit claims to be; must equal the enrolled model.
    pub hwmodel: String,
    /// The hardware version the unit claims.
    pub hwversion: HwVersion,
    /// EAT debug status: 0 enabled, 1 disabled, 2 disabled since boot, 3 disabled permanently, 4
    /// disabled fully and permanently.
    pub dbgstat: u8,
    /// The unit's UEID, if sent; not compared with anything.
    pub ueid: Option<Vec<u8>>,
    /// The unit's serial; selects the enrolled key.
    pub serial: Serial,
    /// Whether secure boot was enforced on this boot.
    pub secure_boot: bool,
    /// The measured firmware images, names unique.
    pub components: Vec<Component>,
    /// The calibration data set loaded now, if the unit reports one.
    pub calibration: Option<CalibrationClaim>,
}

/// Evidence decoded but not yet verified: the signature has not been checked,
/// so nothing in `claims` may be trusted or stored until [`Evidence::verify`].
#[derive(Clone, Debug)]
pub struct Evidence<'a> {
    /// The COSE_Sign1 message, signature not yet checked.
    pub cose: CoseSign1<'a>,
    /// The claims of its payload, decoded but not yet trusted.
    pub claims: Claims,
}

impl<'a> Evidence<'a> {
    /// Decodes a COSE_Sign1 EAT with every bound of docs/formats.md applied before
    /// any other work.
    pub fn decode(bytes: &'a [u8]) -> Result<Evidence<'a>, Rejection> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(reject!(
                TooLarge,
                "evidence of {} bytes exceeds the limit of {MAX_EVIDENCE_BYTES}",
                bytes.len()
            ));
        }
        let cose = CoseSign1::decode(bytes)?;
        let payload = cbor::decode(cose.payload, Limits::CLAIMS)
            .map_err(|e| reject!(MalformedCbor, "claims: {}", e.message))?;
        let claims = Claims::from_value(&payload)?;
        Ok(Evidence { cose, claims })
    }

    /// Checks the signature against the unit's enrolled key.
    pub fn verify(&self, key: &crate::keys::PublicKey) -> Result<(), Rejection> {
        if self.cose.verify(key) {
            return Ok(());
        }
        // Say what to fix when the shape shows it (wrong alg, DER signature).
        Err(match self.cose.mismatch(key) {
            Some(why) => reject!(SignatureInvalid, "{why}"),
            None => reject!(
                SignatureInvalid,
                "signature does not verify with the key enrolled for {}",
                self.claims.serial
            ),
        })
    }
}

fn missing(name: &str) -> Rejection {
    reject!(ClaimMissing, "claim \"{name}\" is required")
}

fn invalid(path: &str, msg: impl std::fmt::Display) -> Rejection {
    reject!(ClaimInvalid, "claim {path}: {msg}")
}

fn expect_uint(v: &Value<'_>, path: &str) -> Result<u64, Rejection> {
    match v {
        Value::Unsigned(n) => Ok(*n),
        o => Err(invalid(
            path,
            format!("expected uint, got {}", o.type_name()),
        )),
    }
}

fn expect_text<'v>(v: &'v Value<'_>, path: &str) -> Result<&'v str, Rejection> {
    match v {
        Value::Text(s) if !s.is_empty() => Ok(s),
        Value::Text(_) => Err(invalid(path, "must not be empty")),
        o => Err(invalid(
            path,
            format!("expected tstr, got {}", o.type_name()),
        )),
    }
}

fn expect_bytes<'v>(v: &'v Value<'_>, path: &str) -> Result<&'v [u8], Rejection> {
    match v {
        Value::Bytes(b) => Ok(b),
        o => Err(invalid(
            path,
            format!("expected bstr, got {}", o.type_name()),
        )),
    }
}

fn expect_digest(v: &Value<'_>, path: &str) -> Result<Digest, Rejection> {
    let b = expect_bytes(v, path)?;
    Digest::from_slice(b)
        .ok_or_else(|| invalid(path, format!("expected 32 bytes, got {}", b.len())))
}

/// Reads a `{"name": value}` map with only the given text keys, all required.
fn text_map<'v, 'a>(
    v: &'v Value<'a>,
    path: &str,
    keys: &[&str],
) -> Result<Vec<&'v Value<'a>>, Rejection> {
    let Value::Map(entries) = v else {
        return Err(invalid(
            path,
            format!("expected map, got {}", v.type_name()),
        ));
    };
    for (k, _) in entries {
        match k {
            Value::Text(t) if keys.contains(t) => {}
            Value::Text(t) => return Err(invalid(path, format!("unexpected key \"{t}\""))),
            o => {
                return Err(invalid(
                    path,
                    format!("unexpected key of type {}", o.type_name()),
                ))
            }
        }
    }
    keys.iter()
        .map(|k| {
            v.map_get_text(k)
                .ok_or_else(|| reject!(ClaimMissing, "claim {path}.{k} is required"))
        })
        .collect()
}

impl Claims {
    /// Types and checks a decoded claims map. Unknown claims are ignored.
    pub fn from_value(v: &Value<'_>) -> Result<Claims, Rejection> {
        if !matches!(v, Value::Map(_)) {
            return Err(reject!(
                MalformedCbor,
                "claims set must be a map, got {}",
                v.type_name()
            ));
        }
        let int = |k: i64| v.map_get_int(k as i128);
        let text = |k: &str| v.map_get_text(k);

        let profile = int(key::PROFILE).ok_or_else(|| missing("eat_profile"))?;
        match profile {
            Value::Text(p) if *p == PROFILE => {}
            Value::Text(p) => {
                return Err(reject!(
                    ProfileMismatch,
                    "claim \"eat_profile\": expected {PROFILE}, got {p}"
                ));
            }
            o => {
                return Err(invalid(
                    "\"eat_profile\"",
                    format!("expected tstr, got {}", o.type_name()),
                ))
            }
        }

        let serial_s = expect_text(
            text(key::SERIAL).ok_or_else(|| missing("serial"))?,
            "\"serial\"",
        )?;
        let serial = Serial::parse(serial_s, Reason::ClaimInvalid, "claim \"serial\"")?;

        let nonce = match int(key::NONCE) {
            None => None,
            Some(n) => {
                let b = expect_bytes(n, "\"eat_nonce\"")?;
                if !(8..=64).contains(&b.len()) {
                    return Err(invalid(
                        "\"eat_nonce\"",
                        format!("expected 8..64 bytes, got {}", b.len()),
                    ));
                }
                Some(b.to_vec())
            }
        };

        let iat = match int(key::IAT).ok_or_else(|| missing("iat"))? {
            Value::Unsigned(n) if *n <= i64::MAX as u64 => UnixTime(*n as i64),
            Value::Negative(n) if *n < i64::MAX as u64 => UnixTime(-1 - *n as i64),
            o => {
                return Err(invalid(
                    "\"iat\"",
                    format!("expected int seconds, got {}", o.type_name()),
                ))
            }
        };

        let bootcount = expect_uint(
            int(key::BOOTCOUNT).ok_or_else(|| missing("bootcount"))?,
            "\"bootcount\"",
        )?;

        let hwmodel_b = expect_bytes(
            int(key::HWMODEL).ok_or_else(|| missing("hwmodel"))?,
            "\"hwmodel\"",
        )?;
        let hwmodel = std::str::from_utf8(hwmodel_b)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("\"hwmodel\"", "expected a non-empty UTF-8 model id"))?
            .to_owned();

        let hwversion = match int(key::HWVERSION).ok_or_else(|| missing("hwversion"))? {
            Value::Array(items) if (1..=2).contains(&items.len()) => {
                let version = expect_text(&items[0], "\"hwversion\"[0]")?.to_owned();
                let scheme = match items.get(1) {
                    None => None,
                    Some(s) => Some(
                        s.as_int()
                            .and_then(|i| i64::try_from(i).ok())
                            .ok_or_else(|| invalid("\"hwversion\"[1]", "expected int"))?,
                    ),
                };
                HwVersion { version, scheme }
            }
            o => {
                return Err(invalid(
                    "\"hwversion\"",
                    format!("expected [tstr] or [tstr, int], got {}", o.type_name()),
                ))
            }
        };

        let dbg = expect_uint(
            int(key::DBGSTAT).ok_or_else(|| missing("dbgstat"))?,
            "\"dbgstat\"",
        )?;
        if dbg > 4 {
            return Err(invalid("\"dbgstat\"", format!("expected 0..4, got {dbg}")));
        }

        let ueid = match int(key::UEID) {
            None => None,
            Some(u) => {
                let b = expect_bytes(u, "\"ueid\"")?;
                if !(7..=33).contains(&b.len()) {
                    return Err(invalid(
                        "\"ueid\"",
                        format!("expected 7..33 bytes, got {}", b.len()),
                    ));
                }
                Some(b.to_vec())
            }
        };

        let secure_boot = match text(key::SECURE_BOOT).ok_or_else(|| missing("secure_boot"))? {
            Value::Bool(b) => *b,
            o => {
                return Err(invalid(
                    "\"secure_boot\"",
                    format!("expected bool, got {}", o.type_name()),
                ))
            }
        };

        let components = match text(key::COMPONENTS).ok_or_else(|| missing("components"))? {
            Value::Array(items) if (1..=MAX_COMPONENTS).contains(&items.len()) => {
                let mut out: Vec<Component> = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("\"components\"[{i}]");
                    let f = text_map(item, &path, &["name", "version", "svn", "digest"])?;
                    let c = Component {
                        name: expect_text(f[0], &format!("{path}.name"))?.to_owned(),
                        version: expect_text(f[1], &format!("{path}.version"))?.to_owned(),
                        svn: expect_uint(f[2], &format!("{path}.svn"))?,
                        digest: expect_digest(f[3], &format!("{path}.digest"))?,
                    };
                    if out.iter().any(|o| o.name == c.name) {
                        return Err(invalid(
                            &format!("{path}.name"),
                            format!("component \"{}\" reported twice", c.name),
                        ));
                    }
                    out.push(c);
                }
                out
            }
            Value::Array(items) => {
                return Err(invalid(
                    "\"components\"",
                    format!("expected 1..{MAX_COMPONENTS} items, got {}", items.len()),
                ));
            }
            o => {
                return Err(invalid(
                    "\"components\"",
                    format!("expected array, got {}", o.type_name()),
                ))
            }
        };

        let calibration = match text(key::CALIBRATION) {
            None => None,
            Some(c) => {
                let f = text_map(c, "\"calibration\"", &["id", "digest"])?;
                Some(CalibrationClaim {
                    id: expect_text(f[0], "\"calibration\".id")?.to_owned(),
                    digest: expect_digest(f[1], "\"calibration\".digest")?,
                })
            }
        };

        Ok(Claims {
            nonce,
            iat,
            bootcount,
            hwmodel,
            hwversion,
            dbgstat: dbg as u8,
            ueid,
            serial,
            secure_boot,
            components,
            calibration,
        })
    }

    /// Encodes the claims as attestd expects them (used by the SDK and tests).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut n = 9;
        n += usize::from(self.nonce.is_some());
        n += usize::from(self.ueid.is_some());
        n += usize::from(self.calibration.is_some());
        let mut e = Encoder::new();
        e.map(n);
        e.uint(key::PROFILE as u64).text(PROFILE);
        if let Some(nonce) = &self.nonce {
            e.uint(key::NONCE as u64).bytes(nonce);
        }
        e.uint(key::IAT as u64).int(self.iat.0);
        e.uint(key::BOOTCOUNT as u64).uint(self.bootcount);
        e.uint(key::HWMODEL as u64).bytes(self.hwmodel.as_bytes());
        e.uint(key::HWVERSION as u64);
        match self.hwversion.scheme {
            None => e.array(1).text(&self.hwversion.version),
            Some(s) => e.array(2).text(&self.hwversion.version).int(s),
        };
        e.uint(key::DBGSTAT as u64).uint(self.dbgstat as u64);
        if let Some(u) = &self.ueid {
            e.uint(key::UEID as u64).bytes(u);
        }
        e.text(key::SERIAL).text(self.serial.as_str());
        e.text(key::SECURE_BOOT).bool(self.secure_boot);
        e.text(key::COMPONENTS).array(self.components.len());
        for c in &self.components {
            e.map(4)
                .text("name")
                .text(&c.name)
                .text("version")
                .text(&c.version)
                .text("svn")
                .uint(c.svn)
                .text("digest")
                .bytes(&c.digest.0);
        }
        if let Some(c) = &self.calibration {
            e.text(key::CALIBRATION)
                .map(2)
                .text("id")
                .text(&c.id)
                .text("digest")
                .bytes(&c.digest.0);
        }
        e.into_bytes()
    }
}

/// Freshness policy for evidence without a nonce.
#[derive(Clone, Copy, Debug)]
pub struct DeferredPolicy {
    /// How far ahead of attestd's clock `iat` may be.
    pub clock_skew_secs: i64,
    /// How old deferred evidence may be.
    pub max_age_secs: i64,
}

/// Refuses evidence that says it was made in the future: an `iat` more than
/// `clock_skew_secs` ahead of `now`. Applies to every evidence, with a nonce
/// or not (a far-future `iat` would otherwise be kept as when the unit
/// produced it).
pub fn check_not_ahead(
    claims: &Claims,
    now: UnixTime,
    clock_skew_secs: i64,
) -> Result<(), Rejection> {
    if claims.iat > now.plus_seconds(clock_skew_secs) {
        return Err(reject!(
            ClockSkew,
            "iat {} is in the future (now {now}; at most {clock_skew_secs} s of clock skew is allowed)",
            claims.iat
        ));
    }
    Ok(())
}

/// Accepts deferred evidence only with a boot counter above every one
/// accepted for the unit and an `iat` inside the freshness window; anything
/// else is a replay (docs/formats.md §1).
pub fn check_deferred(
    claims: &Claims,
    highest_bootcount: Option<u64>,
    now: UnixTime,
    policy: DeferredPolicy,
) -> Result<(), Rejection> {
    if let Some(h) = highest_bootcount {
        if claims.bootcount <= h {
            return Err(reject!(
                Replayed,
                "deferred evidence: bootcount {} is not above the highest accepted ({h})",
                claims.bootcount
            ));
        }
    }
    check_not_ahead(claims, now, policy.clock_skew_secs)?;
    if claims.iat < now.plus_seconds(-policy.max_age_secs) {
        return Err(reject!(
            Replayed,
            "deferred evidence: iat {} is older than the freshness window of {} s",
            claims.iat,
            policy.max_age_secs
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    fn claims(iat: i64, bootcount: u64) -> Claims {
        Claims {
            nonce: None,
            iat: UnixTime(iat),
            bootcount,
            hwmodel: "PM-200".into(),
            hwversion: HwVersion {
                version: "B".into(),
                scheme: None,
            },
            dbgstat: 0,
            ueid: None,
            serial: Serial::parse("PM200-1", Reason::FieldInvalid, "serial").unwrap(),
            secure_boot: true,
            components: Vec::new(),
            calibration: None,
        }
    }

    #[test]
    fn no_evidence_may_come_from_the_future() {
        let now = UnixTime(1_000_000);
        assert!(check_not_ahead(&claims(1_000_300, 1), now, 300).is_ok());
        let e = check_not_ahead(&claims(1_000_301, 1), now, 300).unwrap_err();
        assert_eq!(e.reason, Reason::ClockSkew);
        // A century ahead (what an outside client sent with a valid nonce).
        let far = claims(1_000_000 + 100 * 365 * 86_400, 1);
        assert_eq!(
            check_not_ahead(&far, now, 300).unwrap_err().reason,
            Reason::ClockSkew
        );
        // Deferred evidence applies the same bound, then its window.
        let policy = DeferredPolicy {
            clock_skew_secs: 300,
            max_age_secs: 3600,
        };
        assert_eq!(
            check_deferred(&far, Some(0), now, policy)
                .unwrap_err()
                .reason,
            Reason::ClockSkew
        );
        assert_eq!(
            check_deferred(&claims(990_000, 2), Some(1), now, policy)
                .unwrap_err()
                .reason,
            Reason::Replayed
        );
        assert!(check_deferred(&claims(999_000, 2), Some(1), now, policy).is_ok());
    }
}
