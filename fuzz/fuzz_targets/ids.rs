//! Identifiers and the other small names (ids.rs: Serial, StationId, Model,
//! Digest, object ids; KeyAlg, appraisal codes, record payload types).
//!
//! Input: any text (invalid UTF-8 is read lossily). Asserts, against the
//! rules of docs/formats.md §4 written out in fuzz/src/oracle.rs:
//! - Serial, StationId and Model accept exactly 1..64 characters of
//!   `[A-Za-z0-9._-]`, keep the text (Display, as_str, AsRef round-trip),
//!   and refuse with the caller's reason, naming the field;
//! - Digest::from_hex accepts exactly 64 lowercase hex characters and
//!   writes them back; `hex` is lowercase, twice as long, and reads back;
//! - object ids are the prefix and 32 lowercase hex characters, and
//!   `object_id` makes only such ids;
//! - KeyAlg, appraisal Code and payload-type names parse exactly their
//!   documented spellings and round-trip.

#![no_main]

use attestd_core::appraisal::Code;
use attestd_core::ids::{hex, is_object_id, object_id, Digest, Model, Serial, StationId};
use attestd_core::keys::KeyAlg;
use attestd_core::record::{RecordKind, CALIBRATION_TYPE, PROVISIONING_TYPE};
use attestd_core::Reason;
use attestd_fuzz::oracle;
use libfuzzer_sys::fuzz_target;

macro_rules! ident {
    ($t:ty, $s:expr, $reason:expr) => {{
        match <$t>::parse($s, $reason, "the_field") {
            Ok(v) => {
                assert!(oracle::is_ident($s), "{} accepted {:?}", stringify!($t), $s);
                assert_eq!(v.as_str(), $s);
                assert_eq!(v.to_string(), $s);
                assert_eq!(AsRef::<str>::as_ref(&v), $s);
                assert_eq!(<$t>::parse(&v.to_string(), $reason, "f").as_ref(), Ok(&v));
            }
            Err(e) => {
                assert!(!oracle::is_ident($s), "{} refused {:?}", stringify!($t), $s);
                assert_eq!(e.reason, $reason);
                assert!(e.message.starts_with("the_field: "), "{}", e.message);
            }
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    ident!(Serial, s, Reason::ClaimInvalid);
    ident!(StationId, s, Reason::FieldInvalid);
    ident!(Model, s, Reason::UnknownDevice);

    match Digest::from_hex(s) {
        Some(d) => {
            assert!(oracle::is_digest_hex(s), "from_hex accepted {s:?}");
            assert_eq!(d.to_hex(), s);
            assert_eq!(d.to_string(), s);
            assert_eq!(format!("{d:?}"), format!("Digest({s})"));
            assert_eq!(Digest::from_slice(&d.0), Some(d));
        }
        None => assert!(!oracle::is_digest_hex(s), "from_hex refused {s:?}"),
    }
    let h = hex(data);
    assert!(h.len() == 2 * data.len() && oracle::is_lower_hex(&h));
    assert_eq!(oracle::unhex(&h), data);
    assert_eq!(Digest::from_slice(data).is_some(), data.len() == 32);

    // Object ids, with the prefixes attestd uses and one taken from the input.
    let own = s.find('_').map_or("", |i| &s[..=i]);
    for prefix in ["rec_", "ev_", "", own] {
        assert_eq!(
            is_object_id(prefix, s),
            oracle::is_object_id(prefix, s),
            "is_object_id({prefix:?}, {s:?})"
        );
        let id = object_id(prefix, &Digest::of(data));
        assert!(oracle::is_object_id(prefix, &id) && is_object_id(prefix, &id));
    }

    match KeyAlg::parse(s) {
        Some(a) => {
            assert!(["ES256", "Ed25519", "EdDSA"].contains(&s));
            assert_eq!(KeyAlg::parse(a.as_str()), Some(a));
        }
        None => assert!(!["ES256", "Ed25519", "EdDSA"].contains(&s)),
    }
    assert_eq!(
        Code::parse(s),
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    );
    match RecordKind::from_payload_type(s) {
        Ok(k) => assert_eq!(k.payload_type(), s),
        Err(e) => {
            assert!(s != PROVISIONING_TYPE && s != CALIBRATION_TYPE);
            assert_eq!(e.reason, Reason::UnknownPayloadType);
        }
    }
});
