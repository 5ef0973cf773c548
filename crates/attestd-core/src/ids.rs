//! Identifiers that can only be built valid ("parse, don't validate").

use std::fmt;

use crate::error::{Reason, Rejection};

/// Checks the common identifier alphabet: 1..=64 characters of `[A-Za-z0-9._-]`.
fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses `s`; `field` names the input in the error message.
            pub fn parse(s: &str, reason: Reason, field: &str) -> Result<Self, Rejection> {
                if valid_ident(s) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(Rejection::new(
                        reason,
                        format!(
                            "{field}: {} must be 1..64 characters of [A-Za-z0-9._-]",
                            $what
                        ),
                    ))
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

ident_type!(
    /// A unit's serial number, e.g. `PM200-000123`.
    Serial,
    "a serial"
);
ident_type!(
    /// A factory or depot station, e.g. `line3-prov-01`.
    StationId,
    "a station id"
);
ident_type!(
    /// A device model, e.g. `PM-200`.
    Model,
    "a model"
);

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Digest {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(s: &str) -> Option<Digest> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let bytes = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = lower_hex_value(bytes[2 * i])?;
            let lo = lower_hex_value(bytes[2 * i + 1])?;
            *o = (hi << 4) | lo;
        }
        Some(Digest(out))
    }

    /// The digest of exactly 32 bytes, if `b` is that long.
    pub fn from_slice(b: &[u8]) -> Option<Digest> {
        <[u8; 32]>::try_from(b).ok().map(Digest)
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Builds a stored object's id: `prefix` then 32 hex characters of a digest.
pub fn object_id(prefix: &str, digest: &Digest) -> String {
    format!("{prefix}{}", hex(&digest.0[..16]))
}

/// Checks that `s` looks like an id made by [`object_id`] with `prefix`.
pub fn is_object_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|c| lower_hex_value(c).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_alphabet_and_length() {
        assert!(Serial::parse("PM200-000123", Reason::ClaimInvalid, "serial").is_ok());
        assert!(Serial::parse("a.b_c-D9", Reason::ClaimInvalid, "serial").is_ok());
        for bad in ["", "has space", "slash/", "ü", &"x".repeat(65)] {
            let e = Serial::parse(bad, Reason::ClaimInvalid, "serial").unwrap_err();
            assert_eq!(e.reason, Reason::ClaimInvalid);
            assert!(e.message.starts_with("serial:"), "{}", e.message);
        }
        assert!(Serial::parse(&"x".repeat(64), Reason::ClaimInvalid, "s").is_ok());
    }

    #[test]
    fn digest_hex_is_strict_lowercase() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex(&d.to_hex().to_uppercase()), None);
        assert_eq!(Digest::from_hex(&d.to_hex()[1..]), None);
        let id = object_id("ev_", &d);
        assert!(is_object_id("ev_", &id));
        assert!(!is_object_id("rec_", &id));
    }
}
