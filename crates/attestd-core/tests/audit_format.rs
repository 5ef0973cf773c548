//! The test vector of `docs/audit-format.md`, read from the document itself:
//! the export verifies with the stated key, each entry has the stated hash,
//! the bytes hashed for entry 1 and the signed-head message are as stated,
//! and the cuts the document says a verifier must reject are rejected.
//! `cargo test -p attestd-core --test audit_format -- --ignored` prints a
//! fresh vector (for when the document is rewritten).

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::audit::export::{
    entry_line, head_line, range_line, signed_head_message, verify_export, Range, SignedHead,
};
use attestd_core::audit::{entry_hash, AuditEntry, Checkpoint, CHECKPOINT_ACTION, GENESIS};
use attestd_core::ids::{hex, Digest};
use attestd_core::keys::{KeyAlg, PublicKey};
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit-format.md");
    std::fs::read_to_string(path).expect("docs/audit-format.md")
}

/// The body of the fenced block whose info string ends with `name`.
fn block(doc: &str, name: &str) -> Vec<String> {
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("```") && l.trim_end().ends_with(name))
        .unwrap_or_else(|| panic!("no block {name} in docs/audit-format.md"));
    lines
        .take_while(|l| !l.starts_with("```"))
        .map(String::from)
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_documented_vector_verifies_and_its_hashes_are_as_stated() {
    let doc = doc();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(block(&doc, "audit-vector-key").concat().trim())
        .unwrap();
    let key = PublicKey::from_spki_der(&spki, attestd_core::Reason::FieldInvalid, "key").unwrap();
    let export = block(&doc, "audit-vector-export");
    assert_eq!(export.len(), 5, "range line, 3 entries, signed head");
    let text = export.join("\n") + "\n";
    let v = verify_export(&text, Some(&key)).expect("the documented vector verifies");
    assert_eq!((v.range.first, v.range.last, v.checkpoints), (1, 3, 1));

    // Each stated hash is the one attestd-core computes from the entry's fields.
    let hashes = block(&doc, "audit-vector-hashes");
    assert_eq!(hashes.len(), 3);
    let mut prev = GENESIS;
    for (line, stated) in export[1..4].iter().zip(&hashes) {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| e[k].as_str().unwrap().to_owned();
        let h = entry_hash(
            &prev,
            e["sequence"].as_u64().unwrap(),
            e["at_ms"].as_i64().unwrap(),
            &s("principal"),
            &s("action"),
            &s("target"),
            &s("reason"),
            &s("details"),
        );
        assert_eq!(
            stated,
            &format!("{} {}", e["sequence"], hex(&h)),
            "docs/audit-format.md states a wrong hash"
        );
        assert_eq!(s("hash"), hex(&h));
        prev = h;
    }
    // The bytes hashed for entry 1 hash to entry 1's hash.
    let bytes = unhex(&block(&doc, "audit-vector-entry1-bytes").concat());
    assert!(bytes.starts_with(b"attestd-audit-v1"));
    assert_eq!(
        format!("1 {}", hex(&Digest::of(&bytes).0)),
        hashes[0],
        "entry 1's documented bytes"
    );
    // The signed-head message is the one signed.
    let head: serde_json::Value = serde_json::from_str(&export[4]).unwrap();
    let msg = unhex(&block(&doc, "audit-vector-head-message").concat());
    let range = Range {
        first: 1,
        last: 3,
        prev_hash: GENESIS,
    };
    let h = &head["signed_head"];
    assert_eq!(
        msg,
        signed_head_message(
            &range,
            3,
            &Digest::from_hex(h["hash"].as_str().unwrap()).unwrap().0,
            h["at_ms"].as_i64().unwrap()
        )
    );
    assert!(key.verify(
        &msg,
        &unhex(h["signature"].as_str().unwrap()),
        attestd_core::keys::SigEncoding::Raw
    ));

    // What the document says a verifier must reject.
    let without = |i: usize| {
        let mut l = export.clone();
        l.remove(i);
        l.join("\n")
    };
    assert_eq!(
        verify_export(&without(1), Some(&key))
            .unwrap_err()
            .to_string(),
        "entries 1..1 missing at the start: the export states it begins at 1"
    );
    assert_eq!(
        verify_export(&without(3), Some(&key))
            .unwrap_err()
            .to_string(),
        "export ends at 2 but its signed head is at 3: entries 3..3 missing"
    );
    let changed = text.replacen("line1-prov", "line2-prov", 1);
    assert!(verify_export(&changed, Some(&key)).is_err());
}

/// Prints a vector for the document (run with --ignored when the format or
/// the example changes, and paste the blocks).
#[test]
#[ignore]
fn print_vector() {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let key = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref()).unwrap();
    let t0 = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut entries: Vec<AuditEntry> = Vec::new();
    fn push(
        entries: &mut Vec<AuditEntry>,
        t0: i64,
        principal: &str,
        action: &str,
        target: &str,
        reason: &str,
        details: String,
    ) {
        let prev = entries.last().map_or(GENESIS, |e| e.hash);
        let seq = entries.len() as u64 + 1;
        let at_ms = t0 + 1000 * seq as i64;
        let hash = entry_hash(
            &prev, seq, at_ms, principal, action, target, reason, &details,
        );
        entries.push(AuditEntry {
            seq,
            at_ms,
            principal: principal.into(),
            action: action.into(),
            target: target.into(),
            reason: reason.into(),
            details,
            prev_hash: prev,
            hash,
        });
    }
    push(
        &mut entries,
        t0,
        "admin",
        "station.register",
        "line1-prov",
        "",
        "kinds provisioning; models PM-200".into(),
    );
    push(
        &mut entries,
        t0,
        "line1-prov",
        "record.provisioning",
        "PM200-000123",
        "ré-étalonnage",
        "rec-3f1c2a9d0b7e4c55a1e2d3c4b5a69788".into(),
    );
    let (seq2, hash2) = (entries[1].seq, entries[1].hash);
    let cp_at = t0 + 2500;
    let sig = pair.sign(&attestd_core::audit::checkpoint_message(
        seq2, &hash2, cp_at,
    ));
    let cp = Checkpoint {
        seq: seq2,
        hash: hash2,
        at_ms: cp_at,
        key_id: key.key_id(),
        signature: sig.as_ref().to_vec(),
    };
    push(
        &mut entries,
        t0,
        "attestd",
        CHECKPOINT_ACTION,
        "head 2",
        "",
        cp.details(),
    );
    let range = Range {
        first: 1,
        last: 3,
        prev_hash: GENESIS,
    };
    let last = &entries[2];
    let at_ms = t0 + 4000;
    let msg = signed_head_message(&range, last.seq, &last.hash, at_ms);
    let head = SignedHead {
        seq: last.seq,
        hash: last.hash,
        at_ms,
        key_id: key.key_id(),
        signature: pair.sign(&msg).as_ref().to_vec(),
    };
    println!(
        "KEY\n{}",
        base64::engine::general_purpose::STANDARD.encode(key.spki_der())
    );
    println!("EXPORT\n{}", range_line(&range));
    for e in &entries {
        println!("{}", entry_line(e));
    }
    println!("{}", head_line(&head));
    let e = &entries[0];
    let mut bytes = b"attestd-audit-v1".to_vec();
    bytes.extend_from_slice(&e.prev_hash);
    bytes.extend_from_slice(&e.seq.to_be_bytes());
    bytes.extend_from_slice(&e.at_ms.to_be_bytes());
    for s in [&e.principal, &e.action, &e.target, &e.reason, &e.details] {
        bytes.extend_from_slice(&(s.len() as u32).to_be_bytes());
        bytes.extend_from_slice(s.as_bytes());
    }
    println!("BYTES\n{}", hex(&bytes));
    println!("HASHES");
    for e in &entries {
        println!("{} {}", e.seq, hex(&e.hash));
    }
    println!("HEAD\n{}", hex(&msg));
}
