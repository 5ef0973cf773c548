//! The audit export file and its verifier (audit::export::verify_export),
//! which auditors run on files they did not make.
//!
//! Two kinds of input. One starting with `{` is an export file as text. Any
//! other is a recipe: a valid export is built from it (range start biased
//! to the edges of u64, up to 7 entries, maybe a checkpoint, signed with a
//! fixed Ed25519 key), then changed as the rest of the input says (a byte
//! flipped, a line dropped, repeated or swapped, the file cut).
//!
//! Asserts:
//! - nothing panics and every error formats (module doc: "nothing here
//!   panics on any input");
//! - a verified export is consistent: its range starts at 1 or later and
//!   ends no earlier than just before it, the key decides
//!   `signature_checked`;
//! - a built export verifies, with its range, head and checkpoint count;
//! - a changed export that still verifies with the key proves the same
//!   range and head: no change to what is signed passes.

#![no_main]

use std::sync::OnceLock;

use attestd_core::audit::export::{
    entry_line, head_line, range_line, signed_head_message, verify_export, Range, SignedHead,
    Verified,
};
use attestd_core::audit::{checkpoint_message, AuditEntry, Checkpoint, CHECKPOINT_ACTION, GENESIS};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_fuzz::{fixtures, Bytes};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

fn signer() -> &'static (Ed25519KeyPair, PublicKey) {
    static K: OnceLock<(Ed25519KeyPair, PublicKey)> = OnceLock::new();
    K.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[0x5a; 32]).expect("seed");
        let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref())
            .expect("an Ed25519 key");
        (pair, public)
    })
}

fn consistent(r: &Result<Verified, attestd_core::audit::export::ExportError>, keyed: bool) {
    match r {
        Ok(v) => {
            assert!(v.range.first >= 1);
            assert!(v.range.last >= v.range.first - 1);
            assert_eq!(v.signature_checked, keyed);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn text(s: &str) {
    let f = fixtures::get();
    let keyed = verify_export(s, Some(&f.audit_key));
    consistent(&keyed, true);
    let unkeyed = verify_export(s, None);
    consistent(&unkeyed, false);
    if let (Ok(k), Ok(u)) = (&keyed, &unkeyed) {
        assert_eq!((&k.range, k.head), (&u.range, u.head));
    }
    if keyed.is_ok() {
        assert!(unkeyed.is_ok(), "the key only adds checks");
    }
}

/// A range start near the edges of u64 or anywhere.
fn first(b: &mut Bytes<'_>) -> u64 {
    match b.u8() % 4 {
        0 => 1 + u64::from(b.u8()),
        1 => u64::MAX - u64::from(b.u8()),
        2 => (1u64 << (b.u8() % 64)).saturating_add(u64::from(b.u8())),
        _ => b.u64().max(1),
    }
}

fn build(b: &mut Bytes<'_>) -> (String, Verified) {
    let (pair, public) = signer();
    let first = first(b);
    let room = u64::MAX - first + 1; // entries first..=u64::MAX
    let n = u64::from(b.u8() % 8).min(room);
    let prev_hash = if first == 1 {
        GENESIS
    } else {
        let mut h = [0u8; 32];
        for (x, y) in h.iter_mut().zip(b.take(32)) {
            *x = *y;
        }
        h
    };
    let range = Range {
        first,
        last: first - 1 + n,
        prev_hash,
    };
    let checkpoint_at = b.u8();
    let mut lines = vec![range_line(&range)];
    let mut prev = prev_hash;
    let mut checkpoints = 0;
    for i in 0..n {
        let seq = first + i;
        let at_ms = b.u64() as i64;
        let field = |b: &mut Bytes<'_>| String::from_utf8_lossy(b.take(8)).into_owned();
        let (principal, mut action, target) = (field(b), field(b), field(b));
        let mut details = field(b);
        if i > 0 && u64::from(checkpoint_at % 8) == i {
            // A checkpoint of the entry before, signed as attestd signs them.
            let c = Checkpoint {
                seq: seq - 1,
                hash: prev,
                at_ms,
                key_id: public.key_id(),
                signature: pair
                    .sign(&checkpoint_message(seq - 1, &prev, at_ms))
                    .as_ref()
                    .to_vec(),
            };
            action = CHECKPOINT_ACTION.into();
            details = c.details();
            checkpoints += 1;
        }
        let mut e = AuditEntry {
            seq,
            at_ms,
            principal,
            action,
            target,
            reason: String::new(),
            details,
            prev_hash: prev,
            hash: [0; 32],
        };
        e.hash = e.expected_hash();
        prev = e.hash;
        lines.push(entry_line(&e));
    }
    let at_ms = b.u64() as i64;
    let head = SignedHead {
        seq: range.last,
        hash: prev,
        at_ms,
        key_id: public.key_id(),
        signature: pair
            .sign(&signed_head_message(&range, range.last, &prev, at_ms))
            .as_ref()
            .to_vec(),
    };
    lines.push(head_line(&head));
    let verified = Verified {
        range,
        head: prev,
        key_id: public.key_id(),
        signature_checked: true,
        checkpoints,
    };
    (lines.join("\n") + "\n", verified)
}

/// Changes the export as the input says; `None` leaves it.
fn change(export: &str, b: &mut Bytes<'_>) -> Option<String> {
    let mut lines: Vec<String> = export.lines().map(str::to_owned).collect();
    let n = lines.len();
    let i = usize::from(b.u8()) % n;
    let j = usize::from(b.u8()) % n;
    match b.u8() % 6 {
        0 => return None,
        5 => {
            let copy = lines[i].clone();
            lines.insert(j, copy);
        }
        1 => {
            let mut bytes = export.as_bytes().to_vec();
            let k = usize::from(b.u16()) % bytes.len();
            bytes[k] ^= b.u8() | 1;
            return String::from_utf8(bytes).ok();
        }
        2 => {
            lines.remove(i);
        }
        3 => lines.swap(i, j),
        _ => {
            let k = usize::from(b.u16()) % export.len();
            return export.get(..k).map(str::to_owned);
        }
    }
    Some(lines.join("\n") + "\n")
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        if let Ok(s) = std::str::from_utf8(data) {
            text(s);
        }
        return;
    }
    let mut b = Bytes::new(data);
    let (export, expected) = build(&mut b);
    let public = &signer().1;
    assert_eq!(
        verify_export(&export, Some(public)).as_ref(),
        Ok(&expected),
        "{export}"
    );
    let Some(changed) = change(&export, &mut b) else {
        return;
    };
    let r = verify_export(&changed, Some(public));
    consistent(&r, true);
    if let Ok(v) = r {
        assert_eq!(
            (&v.range, v.head),
            (&expected.range, expected.head),
            "a changed export proves another range or head:\n{changed}"
        );
    }
    text(&changed);
});
