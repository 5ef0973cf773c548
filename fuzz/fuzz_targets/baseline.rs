//! Baselines (Baseline::parse): release engineering's reference values and
//! appraisal policy, strict JSON checked into a typed baseline.
//!
//! Asserts:
//! - a checked baseline keeps the rules of docs/formats.md §2.3: a model
//!   identifier, 1..64 hardware versions, version ≥ 1, a description of at
//!   most 1024 bytes, 1..64 components sorted by unique names each with
//!   1..64 approved builds, at most 64 revoked digests and bounded
//!   parameters with unique names and min ≤ max, dbgstat 0..4, non-zero
//!   intervals;
//! - the document reads back the same after serde writes it, and checks to
//!   the same baseline;
//! - the checked baseline written back as a document (fuzz/src/docs.rs: the
//!   library has no writer for checked baselines) parses to the same
//!   baseline, and writing it again gives the same bytes;
//! - `urgent_digests` is sorted and unique, empty against itself, the
//!   revoked digests without a previous baseline; `revoked_reason` and
//!   `covers` agree with the lists;
//! - a refusal is MALFORMED_JSON or FIELD_INVALID.

#![no_main]

use attestd_core::baseline::{Baseline, BaselineDoc};
use attestd_core::record::parse_json;
use attestd_core::Reason;
use attestd_fuzz::docs::{baseline_doc, is_record_text};
use attestd_fuzz::{assert_reason_in, fixtures, oracle};
use libfuzzer_sys::fuzz_target;

fn rules(b: &Baseline) {
    assert!(oracle::is_ident(b.model.as_str()));
    assert!((1..=64).contains(&b.hw_versions.len()));
    assert!(b.hw_versions.iter().all(|h| is_record_text(h)));
    assert!(b.version >= 1);
    assert!(b.description.len() <= 1024);
    assert!((1..=64).contains(&b.components.len()));
    for w in b.components.windows(2) {
        assert!(w[0].name < w[1].name, "components sorted by unique name");
    }
    for c in &b.components {
        assert!(is_record_text(&c.name));
        assert!((1..=64).contains(&c.approved.len()));
        assert!(c.approved.iter().all(|a| is_record_text(&a.version)));
    }
    assert!(b.revoked.len() <= 64);
    assert!(b.revoked.iter().all(|(_, why)| is_record_text(why)));
    assert!(b.parameters.len() <= 64);
    for (i, p) in b.parameters.iter().enumerate() {
        assert!(is_record_text(&p.name) && p.min <= p.max);
        assert!(b.parameters[..i].iter().all(|q| q.name != p.name));
    }
    assert!(b.min_dbgstat <= 4);
    assert!(b.max_interval_days >= 1 && b.max_evidence_age_hours >= 1);
    assert_eq!(
        b.max_evidence_age_secs(),
        i64::from(b.max_evidence_age_hours) * 3600
    );
}

fn digests(b: &Baseline) {
    let f = fixtures::get();
    for prev in [None, Some(&f.baseline), Some(b)] {
        let u = b.urgent_digests(prev);
        assert!(u.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
    }
    assert!(b.urgent_digests(Some(b)).is_empty());
    let mut revoked: Vec<_> = b.revoked.iter().map(|(d, _)| *d).collect();
    revoked.sort_by_key(|d| d.0);
    revoked.dedup();
    assert_eq!(b.urgent_digests(None), revoked);
    for (d, _) in &b.revoked {
        assert!(b.revoked_reason(d).is_some());
    }
    for c in &b.components {
        for a in &c.approved {
            assert_eq!(
                b.revoked_reason(&a.digest).is_some(),
                b.revoked.iter().any(|(d, _)| *d == a.digest)
            );
        }
    }
    for h in &b.hw_versions {
        assert!(b.covers(b.model.as_str(), h));
    }
}

fuzz_target!(|data: &[u8]| {
    let b = match Baseline::parse(data) {
        Ok(b) => b,
        Err(e) => {
            assert_reason_in(&e, &[Reason::MalformedJson, Reason::FieldInvalid]);
            return;
        }
    };
    rules(&b);
    digests(&b);

    let doc: BaselineDoc = parse_json(data).expect("a checked baseline's document parses");
    let json = serde_json::to_vec(&doc).expect("documents serialize");
    assert_eq!(parse_json::<BaselineDoc>(&json).as_ref(), Ok(&doc));
    assert_eq!(Baseline::parse(&json).as_ref(), Ok(&b));

    let written = serde_json::to_vec(&baseline_doc(&b)).expect("documents serialize");
    let back = Baseline::parse(&written).expect("a baseline written back parses");
    assert_eq!(back, b);
    assert_eq!(
        serde_json::to_vec(&baseline_doc(&back)).expect("serialize"),
        written
    );
});
