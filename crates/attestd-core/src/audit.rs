//! The audit chain: every state change leaves one entry, and each entry's
//! hash covers the previous entry's hash, so changing, removing or
//! reordering any entry breaks every hash after it. The hash is over a
//! fixed byte layout (not a serialization library's), so an auditor can
//! recompute it with any SHA-256 implementation:
//!
//! `SHA-256("attestd-audit-v1" || prev_hash || seq u64 BE || at_ms i64 BE ||
//! for principal, action, target, reason, details: len u32 BE || UTF-8 bytes)`
//!
//! `docs/audit-format.md` specifies this layout, the checkpoints and the
//! export file (module [`export`]) for auditors, with a test vector.

use crate::ids::Digest;

pub mod export;

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

const DOMAIN: &[u8] = b"attestd-audit-v1";

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain: 1 for the first entry, then one more per entry, without gaps.
    pub seq: u64,
    /// When the entry was written, milliseconds since the Unix epoch (hashed as such).
    pub at_ms: i64,
    /// Who: a principal name, `device:<serial>` for device evidence.
    pub principal: String,
    /// What, e.g. `record.provisioning`, `station.revoke`, `release.decide`.
    pub action: String,
    /// On what: a serial, station id, model and version.
    pub target: String,
    /// The reason an operator gave, or empty.
    pub reason: String,
    /// Ids and facts a reader needs (record id, decision, ...).
    pub details: String,
    /// The `hash` of the entry before ([`GENESIS`] for the first).
    pub prev_hash: [u8; 32],
    /// This entry's hash: SHA-256 over the domain tag, `prev_hash` and the fields ([`entry_hash`]).
    pub hash: [u8; 32],
}

/// The hash of an entry with these contents after `prev`.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev: &[u8; 32],
    seq: u64,
    at_ms: i64,
    principal: &str,
    action: &str,
    target: &str,
    reason: &str,
    details: &str,
) -> [u8; 32] {
    let mut buf = Vec::with_capacity(
        DOMAIN.len()
            + 48
            + principal.len()
            + action.len()
            + target.len()
            + reason.len()
            + details.len()
            + 20,
    );
    buf.extend_from_slice(DOMAIN);
    buf.extend_from_slice(prev);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&at_ms.to_be_bytes());
    for s in [principal, action, target, reason, details] {
        buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    Digest::of(&buf).0
}

impl AuditEntry {
    /// The hash this entry should carry.
    pub fn expected_hash(&self) -> [u8; 32] {
        entry_hash(
            &self.prev_hash,
            self.seq,
            self.at_ms,
            &self.principal,
            &self.action,
            &self.target,
            &self.reason,
            &self.details,
        )
    }
}

/// What a checkpoint signs: the chain head at `seq` with `hash`, at `at_ms`.
/// `"attestd-checkpoint-v1" || seq u64 BE || hash || at_ms i64 BE`.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32], at_ms: i64) -> Vec<u8> {
    let mut m = b"attestd-checkpoint-v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// The action of checkpoint entries; their details are
/// `head <seq> <hash hex>; at <at_ms>; key <key id>; sig <signature hex>`.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";

/// A checkpoint parsed from an entry's details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The sequence number of the entry that was the head when signed.
    pub seq: u64,
    /// That entry's hash.
    pub hash: [u8; 32],
    /// When the head was signed, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `sha256:<hex>` of the audit key's SPKI DER.
    pub key_id: String,
    /// Ed25519 signature (64 bytes) over [`checkpoint_message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The `details` text of the checkpoint entry: `head <seq> <hash hex>; at <at_ms>; key <key
    /// id>; sig <signature hex>`.
    pub fn details(&self) -> String {
        format!(
            "head {} {}; at {}; key {}; sig {}",
            self.seq,
            crate::ids::hex(&self.hash),
            self.at_ms,
            self.key_id,
            crate::ids::hex(&self.signature)
        )
    }

    /// Reads details written by [`Checkpoint::details`], and only those
    /// (docs/audit-format.md §3.1: decimal integers, lowercase hex, single
    /// spaces): Rust's integer parsing also takes `+1`, `01` or `+f` as a hex
    /// byte, and a checkpoint must have one spelling, the one another
    /// verifier following the document reads the same way.
    pub fn parse(details: &str) -> Option<Checkpoint> {
        let mut parts = details.split("; ");
        let mut head = parts.next()?.strip_prefix("head ")?.split(' ');
        let seq = head.next()?.parse().ok()?;
        let hash = Digest::from_hex(head.next()?)?.0;
        let at_ms = parts.next()?.strip_prefix("at ")?.parse().ok()?;
        let key_id = parts.next()?.strip_prefix("key ")?.to_owned();
        let sig_hex = parts.next()?.strip_prefix("sig ")?;
        if sig_hex.len() % 2 != 0 || parts.next().is_some() {
            return None;
        }
        let signature = (0..sig_hex.len() / 2)
            .map(|i| u8::from_str_radix(sig_hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let c = Checkpoint {
            seq,
            hash,
            at_ms,
            key_id,
            signature,
        };
        (c.details() == details).then_some(c)
    }

    /// Whether `key` signed this checkpoint.
    pub fn verify(&self, key: &crate::keys::PublicKey) -> bool {
        key.verify(
            &checkpoint_message(self.seq, &self.hash, self.at_ms),
            &self.signature,
            crate::keys::SigEncoding::Raw,
        )
    }
}

/// Checks every checkpoint entry of a verified chain: signed by `key`, and
/// naming a head that is in the chain before it. Returns how many there were.
pub fn verify_checkpoints(
    entries: &[AuditEntry],
    key: &crate::keys::PublicKey,
) -> Result<usize, ChainBreak> {
    let mut n = 0;
    for (index, e) in entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == CHECKPOINT_ACTION)
    {
        let fail = |why| {
            Err(ChainBreak {
                index,
                seq: e.seq,
                why,
            })
        };
        let Some(c) = Checkpoint::parse(&e.details) else {
            return fail("checkpoint details do not parse");
        };
        if !c.verify(key) {
            return fail("checkpoint is not signed by this key");
        }
        let named = entries[..index]
            .iter()
            .any(|p| p.seq == c.seq && p.hash == c.hash);
        let before_export = entries.first().is_some_and(|f| c.seq < f.seq);
        if !named && !before_export {
            return fail("checkpoint names a head that is not in the chain");
        }
        n += 1;
    }
    Ok(n)
}

/// Where and why a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// Position in the slice given to [`verify_chain`].
    pub index: usize,
    /// The sequence number of the entry at fault.
    pub seq: u64,
    /// What does not verify.
    pub why: &'static str,
}

/// Verifies consecutive entries, starting after `prev` (the hash of the
/// entry before the first, or [`GENESIS`]) and `prev_seq` (0 at genesis).
/// Names the first bad entry.
pub fn verify_chain(
    entries: &[AuditEntry],
    mut prev: [u8; 32],
    mut prev_seq: u64,
) -> Result<[u8; 32], ChainBreak> {
    for (index, e) in entries.iter().enumerate() {
        let fail = |why| {
            Err(ChainBreak {
                index,
                seq: e.seq,
                why,
            })
        };
        if e.seq != prev_seq + 1 {
            return fail("sequence is not the next one (an entry was removed, added or moved)");
        }
        if e.prev_hash != prev {
            return fail("prev_hash is not the hash of the entry before");
        }
        if e.hash != e.expected_hash() {
            return fail("hash does not match the entry's contents");
        }
        prev = e.hash;
        prev_seq = e.seq;
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    at_ms: 1000 + seq as i64,
                    principal: "admin".into(),
                    action: "station.register".into(),
                    target: format!("st-{seq}"),
                    reason: String::new(),
                    details: String::new(),
                    prev_hash: prev,
                    hash: [0; 32],
                };
                e.hash = e.expected_hash();
                prev = e.hash;
                e
            })
            .collect()
    }

    /// Found by fuzz/fuzz_targets/checkpoint.rs: `sig 6b..c6+f03..` read
    /// `+f` as the byte 0x0f.
    #[test]
    fn checkpoint_details_parse_only_as_written() {
        let c = Checkpoint {
            seq: 2,
            hash: [0xab; 32],
            at_ms: -5,
            key_id: "sha256:00".into(),
            signature: vec![0x0f, 0xa0],
        };
        let d = c.details();
        assert_eq!(Checkpoint::parse(&d), Some(c));
        let hash = crate::ids::hex(&[0xab; 32]);
        for other in [
            d.replace("sig 0fa0", "sig +fa0"),
            d.replace("sig 0fa0", "sig 0FA0"),
            d.replace("head 2 ", "head +2 "),
            d.replace("head 2 ", "head 02 "),
            d.replace("at -5", "at -05"),
            d.replace(&format!("{hash};"), &format!("{hash} 7;")),
        ] {
            assert_ne!(other, d);
            assert_eq!(Checkpoint::parse(&other), None, "{other}");
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_is_named() {
        let c = chain(5);
        assert_eq!(verify_chain(&c, GENESIS, 0), Ok(c[4].hash));
        // One byte changed.
        let mut bad = c.clone();
        bad[2].target.push('x');
        assert_eq!(verify_chain(&bad, GENESIS, 0).unwrap_err().index, 2);
        // An entry deleted.
        let mut gone = c.clone();
        gone.remove(1);
        assert_eq!(verify_chain(&gone, GENESIS, 0).unwrap_err().index, 1);
        // Two entries swapped.
        let mut swapped = c.clone();
        swapped.swap(2, 3);
        assert_eq!(verify_chain(&swapped, GENESIS, 0).unwrap_err().index, 2);
        // A suffix verifies from its predecessor.
        assert!(verify_chain(&c[3..], c[2].hash, 3).is_ok());
        // Field boundaries are part of the hash: moving a byte between fields changes it.
        let a = entry_hash(&GENESIS, 1, 0, "ab", "c", "", "", "");
        let b = entry_hash(&GENESIS, 1, 0, "a", "bc", "", "", "");
        assert_ne!(a, b);
    }
}
