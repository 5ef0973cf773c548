//! Audit checkpoints (Checkpoint::parse of an `audit.checkpoint` entry's
//! details, and Checkpoint::details, which writes them).
//!
//! Asserts:
//! - the parser accepts exactly docs/audit-format.md §3.1's
//!   `head <seq> <hash hex>; at <at_ms>; key <key id>; sig <signature hex>`
//!   (decimal integers as attestd writes them, lowercase hex, `; ` between
//!   the four parts), read independently here;
//! - parse → write gives back the input, and parse → write → parse the same
//!   checkpoint;
//! - any checkpoint (from the input's bytes) written and parsed is itself,
//!   given a key id without `; ` (the separator; key ids are `sha256:<hex>`);
//! - a checkpoint that verifies with the documented audit key is the one
//!   that key signed in the documented vector.

#![no_main]

use attestd_core::audit::Checkpoint;
use attestd_fuzz::{fixtures, oracle, Bytes};
use libfuzzer_sys::fuzz_target;

/// docs/audit-format.md §3.1, read without the library's parser.
fn read(details: &str) -> Option<Checkpoint> {
    let parts: Vec<&str> = details.split("; ").collect();
    let [head, at, key, sig] = parts[..] else {
        return None;
    };
    let (seq, hash) = head.strip_prefix("head ")?.split_once(' ')?;
    let at = at.strip_prefix("at ")?;
    let sig = sig.strip_prefix("sig ")?;
    if !(oracle::is_decimal(seq, false)
        && oracle::is_digest_hex(hash)
        && oracle::is_decimal(at, true)
        && oracle::is_lower_hex(sig))
    {
        return None;
    }
    Some(Checkpoint {
        seq: seq.parse().ok()?,
        hash: oracle::unhex(hash).try_into().ok()?,
        at_ms: at.parse().ok()?,
        key_id: key.strip_prefix("key ")?.to_owned(),
        signature: oracle::unhex(sig),
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = Checkpoint::parse(s);
        assert_eq!(parsed, read(s), "{s:?}");
        if let Some(c) = parsed {
            assert_eq!(c.details(), s, "parse then write is the input");
            assert_eq!(Checkpoint::parse(&c.details()), Some(c.clone()));
            if c.verify(&fixtures::get().audit_key) {
                assert_eq!((c.seq, c.at_ms), (2, 1_767_225_602_500));
            }
        }
    }

    // A checkpoint made from the bytes, written and read back.
    let mut b = Bytes::new(data);
    let seq = b.u64();
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&[b.take(32), &[0u8; 32][..]].concat()[..32]);
    let at_ms = b.u64() as i64;
    let key_id = String::from_utf8_lossy(b.chunk()).replace("; ", ";_");
    let signature = b.rest().to_vec();
    let c = Checkpoint {
        seq,
        hash,
        at_ms,
        key_id,
        signature,
    };
    assert_eq!(Checkpoint::parse(&c.details()), Some(c));
});
