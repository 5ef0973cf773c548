//! The export file of the audit chain, and its verifier. An export is
//! JSON lines: one range line stating which entries it holds and what the
//! first one chains from, the entries, then one signed-head line: the
//! service key's signature over the range's start and the head at its end.
//! So removing entries at either end, or cutting the file, is named rather
//! than passing as a shorter chain. The format is specified for auditors in
//! `docs/audit-format.md`.
//!
//! The file is untrusted input: lines are bounded ([`MAX_LINE_BYTES`]), so
//! is the number of entries ([`MAX_ENTRIES`]), and nothing here panics on
//! any input. The verifier is fed one line at a time and keeps only the
//! entries' hashes (for checkpoints naming an earlier head).

use serde::{Deserialize, Serialize};

use super::{AuditEntry, Checkpoint, CHECKPOINT_ACTION, GENESIS};
use crate::ids::{hex, Digest};
use crate::keys::{PublicKey, SigEncoding};

/// The value of the range line's `audit_export` field.
pub const FORMAT: &str = "attestd-audit-export-v1";

/// The longest line a verifier accepts, in bytes (without the newline).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The most entries one export may hold.
pub const MAX_ENTRIES: u64 = 10_000_000;

/// Domain tag of the signed-head message.
const HEAD_DOMAIN: &[u8] = b"attestd-export-head-v1";

/// What an export states about itself, before its entries: it holds
/// entries `first..=last` (none when `last == first - 1`), and entry
/// `first` chains from `prev_hash` ([`GENESIS`] when `first` is 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first entry the export holds (at least 1).
    pub first: u64,
    /// The last entry it holds; `first - 1` when it holds none.
    pub last: u64,
    /// The hash entry `first` chains from.
    pub prev_hash: [u8; 32],
}

/// The service's signature over an export's start and end: the range's
/// `first` and `prev_hash`, and the head `seq`/`hash` (the last entry of the
/// export, or `first - 1`/`prev_hash` for an empty one), at `at_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// The sequence number of the export's last entry (`first - 1` when empty).
    pub seq: u64,
    /// That entry's hash (`prev_hash` when empty).
    pub hash: [u8; 32],
    /// When the head was signed, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `sha256:<hex>` of the signing key's SPKI DER; empty when unsigned.
    pub key_id: String,
    /// Ed25519 signature (64 bytes) over [`signed_head_message`]; empty
    /// when the server had no audit key.
    pub signature: Vec<u8>,
}

/// The bytes the signed head signs:
/// `"attestd-export-head-v1" || first u64 BE || prev_hash (32) ||
/// seq u64 BE || hash (32) || at_ms i64 BE`.
pub fn signed_head_message(range: &Range, seq: u64, hash: &[u8; 32], at_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + 88);
    m.extend_from_slice(HEAD_DOMAIN);
    m.extend_from_slice(&range.first.to_be_bytes());
    m.extend_from_slice(&range.prev_hash);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

impl SignedHead {
    /// Whether `key` signed this head for `range`.
    pub fn verify(&self, range: &Range, key: &PublicKey) -> bool {
        key.verify(
            &signed_head_message(range, self.seq, &self.hash, self.at_ms),
            &self.signature,
            SigEncoding::Raw,
        )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeLine {
    audit_export: String,
    first: u64,
    last: u64,
    prev_hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    sequence: u64,
    at_ms: i64,
    principal: String,
    action: String,
    target: String,
    reason: String,
    details: String,
    prev_hash: String,
    hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadLine {
    signed_head: HeadFields,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFields {
    sequence: u64,
    hash: String,
    at_ms: i64,
    key_id: String,
    signature: String,
}

fn json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs of strings and integers cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// The first line of an export.
pub fn range_line(r: &Range) -> String {
    json(&RangeLine {
        audit_export: FORMAT.into(),
        first: r.first,
        last: r.last,
        prev_hash: hex(&r.prev_hash),
    })
}

/// One entry's line (the format `attestctl audit export` has always written).
pub fn entry_line(e: &AuditEntry) -> String {
    json(&EntryLine {
        sequence: e.seq,
        at_ms: e.at_ms,
        principal: e.principal.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        reason: e.reason.clone(),
        details: e.details.clone(),
        prev_hash: hex(&e.prev_hash),
        hash: hex(&e.hash),
    })
}

/// The last line of an export.
pub fn head_line(h: &SignedHead) -> String {
    json(&HeadLine {
        signed_head: HeadFields {
            sequence: h.seq,
            hash: hex(&h.hash),
            at_ms: h.at_ms,
            key_id: h.key_id.clone(),
            signature: hex(&h.signature),
        },
    })
}

/// Why an export does not verify. Each says what is wrong and, for missing
/// entries, which ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A line is not one of the three line formats.
    #[error("line {line}: {why}")]
    Malformed {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Line 1 is not a range line (an export of the old format, or cut at the start).
    #[error(
        "line 1 is not a range line: this export states no range (it was written before \
         exports carried one, or its first line was removed), so nothing proves that no \
         entries are missing at either end; export the chain again with this attestctl"
    )]
    NoRange,
    /// The first entry comes after the range's `first`.
    #[error("entries {from}..{to} missing at the start: the export states it begins at {first}")]
    MissingStart {
        /// The first missing entry (the range's `first`).
        from: u64,
        /// The last missing entry.
        to: u64,
        /// Where the range line says the export begins.
        first: u64,
    },
    /// A gap between two entries of the export.
    #[error("entries {from}..{to} missing before entry {to_next} (line {line})", to_next = .to + 1)]
    MissingInside {
        /// The first missing entry.
        from: u64,
        /// The last missing entry.
        to: u64,
        /// The line of the entry after the gap.
        line: usize,
    },
    /// An entry is repeated or moved, does not chain from the one before,
    /// or its hash does not match its contents.
    #[error("entry {seq} (line {line}) does not verify: {why}")]
    Entry {
        /// The entry's sequence number.
        seq: u64,
        /// Its line.
        line: usize,
        /// What does not verify.
        why: &'static str,
    },
    /// Entries are missing after the export's last entry.
    #[error("export ends at {end} but its {what} {stated}: entries {from}..{stated} missing", from = .end + 1)]
    MissingEnd {
        /// The last entry the export holds (`first - 1` when none).
        end: u64,
        /// Where the range line or the signed head says it ends.
        stated: u64,
        /// Which of the two says so.
        what: &'static str,
    },
    /// The file ends without a signed head line.
    #[error(
        "export ends at {end} without a signed head line: nothing proves that it is not cut \
         (entries after {end} may be missing)"
    )]
    NoSignedHead {
        /// The last entry the file holds.
        end: u64,
    },
    /// An entry lies beyond the end the range states, or the signed head
    /// does not name the export's last entry and its hash.
    #[error("{0}")]
    Inconsistent(String),
    /// The signed head does not verify with the key.
    #[error(
        "the signed head (line {line}) does not verify with key {key_id}: the range line or \
         the head line was changed, or another key signed it"
    )]
    HeadSignature {
        /// The signed head's line.
        line: usize,
        /// The key the head was checked with.
        key_id: String,
    },
    /// The head is not signed, so the export's end cannot be proven.
    #[error(
        "the export's head is not signed (the server had no audit key): its end cannot be proven"
    )]
    HeadUnsigned,
    /// A checkpoint entry's details do not parse, its signature does not
    /// verify with the key, or it signs a head the export holds otherwise.
    #[error("entry {seq} (line {line}): {why}")]
    Checkpoint {
        /// The checkpoint entry's sequence number.
        seq: u64,
        /// Its line.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The entries the export holds, as its range line states them.
    pub range: Range,
    /// The hash of the last entry (`prev_hash` for an empty export).
    pub head: [u8; 32],
    /// The key id the head line names.
    pub key_id: String,
    /// Whether the head's signature (and every checkpoint's) was checked
    /// with a key; without a key the end of the export is not proven.
    pub signature_checked: bool,
    /// Checkpoint entries in the export (checked when `signature_checked`).
    pub checkpoints: usize,
}

/// Checks an export one line at a time: feed every line with
/// [`ExportVerifier::line`], then call [`ExportVerifier::finish`].
pub struct ExportVerifier<'k> {
    key: Option<&'k PublicKey>,
    range: Option<Range>,
    /// Hashes of the entries so far (entry `range.first + i` at `i`).
    hashes: Vec<[u8; 32]>,
    head: Option<(usize, SignedHead)>,
    lines: usize,
    checkpoints: usize,
}

fn hash_field(s: &str, line: usize, what: &str) -> Result<[u8; 32], ExportError> {
    Digest::from_hex(s)
        .map(|d| d.0)
        .ok_or_else(|| ExportError::Malformed {
            line,
            why: format!("{what} is not a SHA-256 in lowercase hex (64 characters)"),
        })
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl<'k> ExportVerifier<'k> {
    /// A verifier that checks signatures with `key`, or, without one, only
    /// the chain and the consistency of the range and head lines.
    pub fn new(key: Option<&'k PublicKey>) -> Self {
        ExportVerifier {
            key,
            range: None,
            hashes: Vec::new(),
            head: None,
            lines: 0,
            checkpoints: 0,
        }
    }

    /// The next line of the file (without its newline).
    pub fn line(&mut self, text: &str) -> Result<(), ExportError> {
        self.lines += 1;
        let line = self.lines;
        let malformed = |why: String| ExportError::Malformed { line, why };
        if text.len() > MAX_LINE_BYTES {
            return Err(malformed(format!(
                "longer than {MAX_LINE_BYTES} bytes; not an audit export"
            )));
        }
        if self.head.is_some() {
            return Err(malformed(
                "a line follows the signed head, which must be the last line".into(),
            ));
        }
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| malformed(format!("not a JSON object: {e}")))?;
        let Some(range) = &self.range else {
            if !obj.contains_key("audit_export") {
                return Err(ExportError::NoRange);
            }
            return self.range_line(obj, line);
        };
        if obj.contains_key("audit_export") {
            return Err(malformed("a second range line".into()));
        }
        if obj.contains_key("signed_head") {
            let h: HeadLine = serde_json::from_value(obj.into())
                .map_err(|e| malformed(format!("not a signed-head line: {e}")))?;
            let h = h.signed_head;
            let signature = hex_bytes(&h.signature)
                .ok_or_else(|| malformed("signature is not lowercase hex".into()))?;
            self.head = Some((
                line,
                SignedHead {
                    seq: h.sequence,
                    hash: hash_field(&h.hash, line, "hash")?,
                    at_ms: h.at_ms,
                    key_id: h.key_id,
                    signature,
                },
            ));
            return Ok(());
        }
        let l: EntryLine = serde_json::from_value(obj.into())
            .map_err(|e| malformed(format!("not an audit entry: {e}")))?;
        let e = AuditEntry {
            seq: l.sequence,
            at_ms: l.at_ms,
            principal: l.principal,
            action: l.action,
            target: l.target,
            reason: l.reason,
            details: l.details,
            prev_hash: hash_field(&l.prev_hash, line, "prev_hash")?,
            hash: hash_field(&l.hash, line, "hash")?,
        };
        let range = range.clone();
        self.entry(&range, e, line)
    }

    fn range_line(
        &mut self,
        obj: serde_json::Map<String, serde_json::Value>,
        line: usize,
    ) -> Result<(), ExportError> {
        let malformed = |why: String| ExportError::Malformed { line, why };
        let r: RangeLine = serde_json::from_value(obj.into())
            .map_err(|e| malformed(format!("not a range line: {e}")))?;
        if r.audit_export != FORMAT {
            return Err(malformed(format!(
                "export format {:?} is not {FORMAT:?}",
                r.audit_export
            )));
        }
        let prev_hash = hash_field(&r.prev_hash, line, "prev_hash")?;
        if r.first == 0 {
            return Err(malformed(
                "the range starts at 0; sequences start at 1".into(),
            ));
        }
        if r.last < r.first - 1 {
            return Err(malformed(format!(
                "the range ends at {} before it begins at {}",
                r.last, r.first
            )));
        }
        if r.last - (r.first - 1) > MAX_ENTRIES {
            return Err(malformed(format!(
                "the range holds more than {MAX_ENTRIES} entries"
            )));
        }
        if r.first == 1 && prev_hash != GENESIS {
            return Err(malformed(
                "a range that begins at 1 must chain from the genesis (64 zeros)".into(),
            ));
        }
        self.range = Some(Range {
            first: r.first,
            last: r.last,
            prev_hash,
        });
        Ok(())
    }

    fn entry(&mut self, range: &Range, e: AuditEntry, line: usize) -> Result<(), ExportError> {
        let fail = |why| {
            Err(ExportError::Entry {
                seq: e.seq,
                line,
                why,
            })
        };
        // Not `first + len - 1`, which overflows when the range ends at
        // u64::MAX: `first` is at least 1 and the entries kept so far end at
        // or before `last`, so `first - 1 + len` cannot.
        let (prev_seq, prev) = match self.hashes.last() {
            Some(h) => (range.first - 1 + self.hashes.len() as u64, *h),
            None => (range.first - 1, range.prev_hash),
        };
        if e.seq > range.last || prev_seq >= range.last {
            return Err(ExportError::Inconsistent(format!(
                "entry {} (line {line}) is after the end the export states ({})",
                e.seq, range.last
            )));
        }
        if e.seq > prev_seq + 1 {
            if self.hashes.is_empty() {
                return Err(ExportError::MissingStart {
                    from: range.first,
                    to: e.seq - 1,
                    first: range.first,
                });
            }
            return Err(ExportError::MissingInside {
                from: prev_seq + 1,
                to: e.seq - 1,
                line,
            });
        }
        if e.seq != prev_seq + 1 {
            return fail("sequence is not the next one (an entry was repeated or moved)");
        }
        if e.prev_hash != prev {
            return fail(if self.hashes.is_empty() {
                "prev_hash is not the one the range line states"
            } else {
                "prev_hash is not the hash of the entry before"
            });
        }
        if e.hash != e.expected_hash() {
            return fail("hash does not match the entry's contents");
        }
        if e.action == CHECKPOINT_ACTION {
            self.checkpoint(range, &e, line)?;
        }
        self.hashes.push(e.hash);
        Ok(())
    }

    fn checkpoint(
        &mut self,
        range: &Range,
        e: &AuditEntry,
        line: usize,
    ) -> Result<(), ExportError> {
        let fail = |why| {
            Err(ExportError::Checkpoint {
                seq: e.seq,
                line,
                why,
            })
        };
        let Some(c) = Checkpoint::parse(&e.details) else {
            return fail("checkpoint details do not parse");
        };
        self.checkpoints += 1;
        let Some(key) = self.key else {
            return Ok(());
        };
        if !c.verify(key) {
            return fail("checkpoint is not signed by this key");
        }
        let named = c.seq >= range.first
            && c.seq < e.seq
            && self.hashes.get((c.seq - range.first) as usize) == Some(&c.hash);
        if !named && c.seq >= range.first {
            return fail("checkpoint names a head that is not in the chain");
        }
        Ok(())
    }

    /// After the last line: checks the end of the export against its range
    /// and its signed head.
    pub fn finish(self) -> Result<Verified, ExportError> {
        let Some(range) = self.range else {
            return Err(ExportError::Malformed {
                line: 1,
                why:
                    "the file is empty; an export has at least a range line and a signed-head line"
                        .into(),
            });
        };
        let end = range.first - 1 + self.hashes.len() as u64;
        let end_hash = self.hashes.last().copied().unwrap_or(range.prev_hash);
        let Some((line, head)) = self.head else {
            if end < range.last {
                return Err(ExportError::MissingEnd {
                    end,
                    stated: range.last,
                    what: "stated range ends at",
                });
            }
            return Err(ExportError::NoSignedHead { end });
        };
        if head.seq > end {
            return Err(ExportError::MissingEnd {
                end,
                stated: head.seq,
                what: "signed head is at",
            });
        }
        if range.last > end {
            return Err(ExportError::MissingEnd {
                end,
                stated: range.last,
                what: "stated range ends at",
            });
        }
        if head.seq != end {
            return Err(ExportError::Inconsistent(format!(
                "the signed head (line {line}) is at {} but the export goes on to {end}: \
                 entries {}..{end} are not covered by the signature",
                head.seq,
                head.seq + 1
            )));
        }
        if head.hash != end_hash {
            return Err(ExportError::Inconsistent(format!(
                "the signed head (line {line}) names hash {} for entry {end}, which has {}",
                hex(&head.hash),
                hex(&end_hash)
            )));
        }
        if let Some(key) = self.key {
            if head.signature.is_empty() {
                return Err(ExportError::HeadUnsigned);
            }
            if !head.verify(&range, key) {
                return Err(ExportError::HeadSignature {
                    line,
                    key_id: key.key_id(),
                });
            }
        }
        Ok(Verified {
            range,
            head: end_hash,
            key_id: head.key_id,
            signature_checked: self.key.is_some(),
            checkpoints: self.checkpoints,
        })
    }
}

/// Verifies a whole export held in memory (tests, small files).
pub fn verify_export(text: &str, key: Option<&PublicKey>) -> Result<Verified, ExportError> {
    let mut v = ExportVerifier::new(key);
    for l in text.lines() {
        v.line(l)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry_hash;
    use crate::keys::KeyAlg;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> (Ed25519KeyPair, PublicKey) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref()).unwrap();
        (pair, public)
    }

    fn entries(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let (principal, action, target) =
                    ("admin", "station.register", format!("st-{seq}"));
                let hash = entry_hash(
                    &prev,
                    seq,
                    1000 + seq as i64,
                    principal,
                    action,
                    &target,
                    "",
                    "",
                );
                let e = AuditEntry {
                    seq,
                    at_ms: 1000 + seq as i64,
                    principal: principal.into(),
                    action: action.into(),
                    target,
                    reason: String::new(),
                    details: String::new(),
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                e
            })
            .collect()
    }

    /// The lines of a signed export of `es` (range from the first entry).
    fn export(es: &[AuditEntry], pair: &Ed25519KeyPair, public: &PublicKey) -> Vec<String> {
        let range = Range {
            first: es[0].seq,
            last: es[es.len() - 1].seq,
            prev_hash: es[0].prev_hash,
        };
        let last = &es[es.len() - 1];
        let sig = pair.sign(&signed_head_message(&range, last.seq, &last.hash, 5000));
        let mut lines = vec![range_line(&range)];
        lines.extend(es.iter().map(entry_line));
        lines.push(head_line(&SignedHead {
            seq: last.seq,
            hash: last.hash,
            at_ms: 5000,
            key_id: public.key_id(),
            signature: sig.as_ref().to_vec(),
        }));
        lines
    }

    fn verify(lines: &[String], key: Option<&PublicKey>) -> Result<Verified, String> {
        verify_export(&lines.join("\n"), key).map_err(|e| e.to_string())
    }

    #[test]
    fn a_whole_export_verifies_with_its_key_and_without_one_its_end_is_unproven() {
        let (pair, public) = key();
        let es = entries(4);
        let lines = export(&es, &pair, &public);
        let v = verify(&lines, Some(&public)).unwrap();
        assert_eq!((v.range.first, v.range.last, v.head), (1, 4, es[3].hash));
        assert!(v.signature_checked);
        assert!(!verify(&lines, None).unwrap().signature_checked);
        // A suffix export verifies from its stated prev_hash.
        assert!(verify(&export(&es[2..], &pair, &public), Some(&public)).is_ok());
        // Another key does not.
        let other = PublicKey::from_raw(
            KeyAlg::Ed25519,
            Ed25519KeyPair::from_seed_unchecked(&[8; 32])
                .unwrap()
                .public_key()
                .as_ref(),
        )
        .unwrap();
        let err = verify(&lines, Some(&other)).unwrap_err();
        assert!(err.contains("does not verify with key"), "{err}");
    }

    #[test]
    fn removing_the_first_entry_is_named_even_when_the_range_line_is_rewritten() {
        let (pair, public) = key();
        let es = entries(4);
        let mut lines = export(&es, &pair, &public);
        lines.remove(1);
        assert_eq!(
            verify(&lines, None).unwrap_err(),
            "entries 1..1 missing at the start: the export states it begins at 1"
        );
        // Claiming the export starts at 2 is caught by the head's signature,
        // which covers the stated start.
        lines[0] = range_line(&Range {
            first: 2,
            last: 4,
            prev_hash: es[0].hash,
        });
        let err = verify(&lines, Some(&public)).unwrap_err();
        assert!(
            err.contains("signed head (line 5) does not verify"),
            "{err}"
        );
        // Starting at 1 from anything but the genesis is refused.
        let mut lines = export(&es, &pair, &public);
        lines[0] = lines[0].replace(&hex(&GENESIS), &hex(&[1; 32]));
        let err = verify(&lines, None).unwrap_err();
        assert!(err.contains("must chain from the genesis"), "{err}");
    }

    #[test]
    fn a_cut_after_any_entry_is_named_with_the_missing_entries() {
        let (pair, public) = key();
        let n = 5u64;
        let es = entries(n);
        let full = export(&es, &pair, &public);
        for keep in 0..n as usize {
            let gap = format!("entries {}..{n} missing", keep + 1);
            // Entries removed from the end, range and head lines kept.
            let mut cut: Vec<String> = full[..1 + keep].to_vec();
            cut.push(full[full.len() - 1].clone());
            let err = verify(&cut, None).unwrap_err();
            assert_eq!(
                err,
                format!("export ends at {keep} but its signed head is at {n}: {gap}")
            );
            // The file cut after the entry (no head line).
            let err = verify(&full[..1 + keep], None).unwrap_err();
            assert_eq!(
                err,
                format!("export ends at {keep} but its stated range ends at {n}: {gap}")
            );
            // The range line rewritten to end there too: the head still says n.
            let mut rewritten = cut.clone();
            rewritten[0] = range_line(&Range {
                first: 1,
                last: keep as u64,
                prev_hash: GENESIS,
            });
            let err = verify(&rewritten, Some(&public)).unwrap_err();
            assert_eq!(
                err,
                format!("export ends at {keep} but its signed head is at {n}: {gap}")
            );
            // ... and the head line dropped: nothing proves the end.
            rewritten.pop();
            let err = verify(&rewritten, None).unwrap_err();
            assert!(err.contains("without a signed head line"), "{err}");
            // ... or the head replaced by one naming the new end: only the
            // key tells (the signature covers the head).
            let end = keep.checked_sub(1).map_or(GENESIS, |i| es[i].hash);
            let mut forged_head = rewritten.clone();
            forged_head.push(head_line(&SignedHead {
                seq: keep as u64,
                hash: end,
                at_ms: 5000,
                key_id: public.key_id(),
                signature: vec![0; 64],
            }));
            let err = verify(&forged_head, Some(&public)).unwrap_err();
            assert!(err.contains("does not verify with key"), "{err}");
            assert!(!verify(&forged_head, None).unwrap().signature_checked);
        }
    }

    #[test]
    fn an_export_without_a_range_line_is_refused_as_unprovable() {
        let (pair, public) = key();
        let lines = export(&entries(3), &pair, &public);
        let err = verify(&lines[1..3], None).unwrap_err();
        assert!(err.starts_with("line 1 is not a range line"), "{err}");
        assert!(
            err.contains("nothing proves that no entries are missing"),
            "{err}"
        );
    }

    /// Found by fuzz/fuzz_targets/audit_export.rs: with a range ending at
    /// the last sequence number there is and its one entry repeated, the
    /// verifier computed `first + entries - 1` and overflowed (a panic
    /// wherever overflow checks are on) instead of naming the extra entry.
    #[test]
    fn an_entry_past_the_last_sequence_number_is_refused_without_overflow() {
        let prev_hash = [7u8; 32];
        let mut e = AuditEntry {
            seq: u64::MAX,
            at_ms: 1,
            principal: "admin".into(),
            action: "station.register".into(),
            target: "st-1".into(),
            reason: String::new(),
            details: String::new(),
            prev_hash,
            hash: [0; 32],
        };
        e.hash = e.expected_hash();
        let range = Range {
            first: u64::MAX,
            last: u64::MAX,
            prev_hash,
        };
        let lines = [range_line(&range), entry_line(&e), entry_line(&e)];
        let err = verify(&lines, None).unwrap_err();
        assert_eq!(
            err,
            format!(
                "entry {} (line 3) is after the end the export states ({})",
                u64::MAX,
                u64::MAX
            )
        );
    }

    #[test]
    fn hostile_lines_are_refused_without_panicking() {
        let (pair, public) = key();
        let full = export(&entries(3), &pair, &public);
        let cases: Vec<(Vec<String>, &str)> = vec![
            (vec![], "the file is empty"),
            (vec!["x".repeat(MAX_LINE_BYTES + 1)], "longer than"),
            (vec!["[1,2]".into()], "not a JSON object"),
            (
                vec![full[0].replace("\"first\":1", "\"first\":0")],
                "starts at 0",
            ),
            (
                vec![full[0].replace("\"last\":3", "\"last\":99999999999")],
                "more than",
            ),
            (
                vec![full[0].replace("\"first\":1", "\"first\":18446744073709551615")],
                "ends at 3 before it begins",
            ),
            (
                [&full[..], &full[1..2]].concat(),
                "a line follows the signed head",
            ),
            (
                vec![
                    full[0].clone(),
                    full[1].replace("\"sequence\":1", "\"sequence\":\"1\""),
                ],
                "line 2: not an audit entry",
            ),
            (
                vec![full[0].clone(), full[2].clone()],
                "entries 1..1 missing at the start",
            ),
            (
                vec![full[0].clone(), full[1].clone(), full[3].clone()],
                "entries 2..2 missing before entry 3 (line 3)",
            ),
            (
                vec![full[0].clone(), full[1].clone(), full[1].clone()],
                "entry 1 (line 3) does not verify: sequence is not the next one",
            ),
        ];
        for (lines, want) in cases {
            let err = verify(&lines, Some(&public)).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
