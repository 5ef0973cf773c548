//! DSSE envelopes (dsse::Envelope, pae): what stations and release
//! engineering sign, and the record or baseline parsing that follows.
//!
//! The gRPC layer (prost) turns the wire message into an `Envelope`; this
//! target starts there. Input layout (fuzz/README.md): `pad` (u8), the
//! payload type (u16 length, bytes), the number of signatures (u8), each
//! signature (u16 length, bytes) with its key id (u16 length, bytes), and
//! the payload (the rest, followed by `pad` × 512 spaces, so payloads past
//! the 64 KiB bound are reachable from small inputs).
//!
//! Asserts:
//! - `check_bounds` accepts exactly the envelopes within docs/formats.md §2
//!   (payload ≤ 64 KiB, 1..16 signatures, each ≤ 128 bytes with a key id
//!   ≤ 256 bytes) and refuses the others as TOO_LARGE or, with no
//!   signature, SIGNATURE_INVALID;
//! - the PAE reads back, unambiguously, as the payload type and payload;
//! - a record id is `rec_` and 32 hex characters of the PAE's digest;
//! - the vector's station key verifies only the vector's PAE;
//! - an envelope within bounds goes on to its payload type's parser, and an
//!   unknown type is UNKNOWN_PAYLOAD_TYPE with a bounded message.

#![no_main]

use attestd_core::baseline::{Baseline, BASELINE_TYPE};
use attestd_core::dsse::{pae, Envelope, Signature, MAX_PAYLOAD_BYTES, MAX_SIGNATURES};
use attestd_core::ids::{object_id, Digest};
use attestd_core::record::{record_id, Record, RecordKind};
use attestd_core::Reason;
use attestd_fuzz::{assert_reason_in, fixtures, oracle, Bytes};
use libfuzzer_sys::fuzz_target;

fn envelope(data: &[u8]) -> Envelope {
    let mut b = Bytes::new(data);
    let pad = b.u8() as usize * 512;
    let payload_type = String::from_utf8_lossy(b.chunk()).into_owned();
    let n = b.u8();
    let signatures = (0..n)
        .map(|_| Signature {
            sig: b.chunk().to_vec(),
            keyid: String::from_utf8_lossy(b.chunk()).into_owned(),
        })
        .collect();
    let mut payload = b.rest().to_vec();
    payload.resize(payload.len() + pad, b' ');
    Envelope {
        payload,
        payload_type,
        signatures,
    }
}

/// Reads `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body` back.
fn read_pae(m: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = m.strip_prefix(b"DSSEv1 ")?;
    let field = |m: &'_ [u8]| -> Option<(usize, usize)> {
        let digits = m.iter().take_while(|b| b.is_ascii_digit()).count();
        let n = std::str::from_utf8(&m[..digits]).ok()?.parse().ok()?;
        (m.get(digits) == Some(&b' ')).then_some((n, digits + 1))
    };
    let (tn, at) = field(rest)?;
    let rest = &rest[at..];
    let (t, rest) = (rest.get(..tn)?, rest.get(tn..)?);
    let rest = rest.strip_prefix(b" ")?;
    let (bn, at) = field(rest)?;
    let body = &rest[at..];
    (body.len() == bn).then_some((t, body))
}

fuzz_target!(|data: &[u8]| {
    let env = envelope(data);
    let within = env.payload.len() <= MAX_PAYLOAD_BYTES
        && (1..=MAX_SIGNATURES).contains(&env.signatures.len())
        && env
            .signatures
            .iter()
            .all(|s| s.sig.len() <= 128 && s.keyid.len() <= 256);
    match env.check_bounds() {
        Ok(()) => assert!(within, "bounds accepted an envelope past them"),
        Err(e) => {
            assert!(!within, "bounds refused an envelope within them: {e}");
            let expected = if env.payload.len() <= MAX_PAYLOAD_BYTES && env.signatures.is_empty() {
                Reason::SignatureInvalid
            } else {
                Reason::TooLarge
            };
            assert_eq!(e.reason, expected, "{e}");
        }
    }

    let m = pae(&env.payload_type, &env.payload);
    assert_eq!(
        read_pae(&m),
        Some((env.payload_type.as_bytes(), env.payload.as_slice()))
    );
    let id = record_id(&env.payload_type, &env.payload);
    assert!(oracle::is_object_id("rec_", &id), "{id}");
    assert_eq!(id, object_id("rec_", &Digest::of(&m)));

    let f = fixtures::get();
    if env.signed_by(&f.station_key) {
        assert_eq!(m, f.station_pae, "the station key verified another message");
    }
    if !within {
        return;
    }
    if env.payload_type == BASELINE_TYPE {
        if let Err(e) = Baseline::parse(&env.payload) {
            assert_reason_in(&e, &[Reason::MalformedJson, Reason::FieldInvalid]);
        }
        return;
    }
    match RecordKind::from_payload_type(&env.payload_type) {
        Ok(kind) => match Record::parse(&env.payload_type, &env.payload) {
            Ok(r) => assert_eq!(r.kind(), kind),
            Err(e) => assert_reason_in(&e, &[Reason::MalformedJson, Reason::FieldInvalid]),
        },
        Err(e) => {
            assert_eq!(e.reason, Reason::UnknownPayloadType);
            // At most 100 characters of the type, each escaped in at most 10.
            assert!(
                e.message.len() < 1200,
                "the message quotes at most 100 characters"
            );
            let r = Record::parse(&env.payload_type, &env.payload).unwrap_err();
            assert_eq!(r.reason, Reason::UnknownPayloadType);
        }
    }
});
