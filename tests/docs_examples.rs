//! The examples of `docs/*.md`, read from the documents and checked with
//! attestd's own parsers and verifiers: every record, calibration record,
//! baseline and piece of evidence shown is accepted, or refused with the
//! reason code (and field) the document says; examples drawn from
//! `tests/vectors/` agree with the vector files byte for byte.
//!
//! Every fenced block in `docs/` must say what it is in its info string,
//! so that nothing shown to readers escapes the checks:
//!
//! - `example=NAME kind=KIND expect=accepted|REASON [vector=FILE]
//!   [names=TEXT] [field=FIELD]`: an input, checked here. Kinds:
//!   `provisioning`, `calibration`, `baseline` (JSON payloads),
//!   `cose-sign1`, `eat-claims` (CBOR diagnostic notation, `...` inside
//!   `h'..'` marks left-out bytes), `hex-prefix` (the start of a vector
//!   field, in hex).
//! - `config`: a configuration file (or part of one) that attestd must
//!   accept: parsed with the binary's own configuration type.
//! - `excerpt=PATH`: protobuf messages as they are in PATH.
//! - `audit-vector-*`: the audit test vector, checked by
//!   `crates/attestd-core/tests/audit_format.rs`.
//! - `syntax` (a layout or template, not an input) and `commands` (shell or
//!   SQL commands to type).

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use attestd_client::core::appraisal::{appraise, CalibrationFacts, EvidenceFacts, Tier, UnitFacts};
use attestd_client::core::baseline::Baseline;
use attestd_client::core::cbor::{self, Encoder};
use attestd_client::core::cose::{self, CoseAlg};
use attestd_client::core::dsse::{pae, Envelope, Signature};
use attestd_client::core::evidence::{Claims, Evidence};
use attestd_client::core::ids::hex;
use attestd_client::core::keys::{KeyAlg, PublicKey};
use attestd_client::core::record::{
    record_id, Calibration, Provisioning, Record, CALIBRATION_TYPE, PROVISIONING_TYPE,
};
use attestd_client::core::time::UnixTime;
use attestd_client::core::{Reason, Rejection};
use attestd_client::SigningKey;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value as Json;

/// The binary's configuration type, so that configuration examples are
/// read exactly as `attestd serve --config` reads them.
#[allow(dead_code, unused_imports)]
#[path = "../src/config.rs"]
mod config;
/// `config` names the binary's `[telemetry]` type.
#[allow(dead_code, unused_imports)]
#[path = "../src/logging.rs"]
mod logging;

#[allow(dead_code)]
#[path = "docs/blocks.rs"]
mod blocks;
#[path = "docs/diag.rs"]
mod diag;

use blocks::{all_blocks, blocks, blocks_of, classify, documents, example, root, Block, Class};
use diag::{encode, matches, unhex, DiagParser};

// ---------------------------------------------------------------------------
// Vectors.

fn vector(name: &str) -> Json {
    let p = root().join("tests/vectors").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text<'a>(v: &'a Json, path: &[&str]) -> Result<&'a str, String> {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_str()
        .ok_or_else(|| format!("vector field {} is not text", path.join(".")))
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    B64.decode(s).map_err(|e| format!("base64: {e}"))
}

/// The vector's device key and its private key.
fn device_keys(v: &Json) -> Result<(PublicKey, SigningKey), String> {
    let k = &v["device_key"];
    let public = PublicKey::from_spki_der(
        &b64(text(k, &["spki_der"])?)?,
        Reason::FieldInvalid,
        "spki_der",
    )
    .map_err(|e| e.to_string())?;
    let alg = KeyAlg::parse(text(k, &["alg"])?).ok_or("vector: unknown alg")?;
    let private = SigningKey::from_pkcs8(alg, &b64(text(k, &["pkcs8"])?)?)
        .map_err(|e| format!("vector pkcs8: {e:?}"))?;
    Ok((public, private))
}

// ---------------------------------------------------------------------------
// Checking one example.

/// The block's diagnostic notation, encoded.
fn diag_bytes(b: &Block) -> Result<Vec<u8>, String> {
    let d = DiagParser::parse(&b.body)?;
    let mut e = Encoder::new();
    encode(&d, &mut e)?;
    Ok(e.into_bytes())
}

/// `Ok` if the outcome is the one the block expects.
fn outcome<T>(b: &Block, r: Result<T, Rejection>) -> Result<Option<T>, String> {
    let expect = b.attr("expect").ok_or("no expect=")?;
    match (expect, r) {
        ("accepted", Ok(t)) => Ok(Some(t)),
        ("accepted", Err(e)) => Err(format!("refused, the document says accepted: {e}")),
        (code, Ok(_)) => Err(format!("accepted, the document says refused with {code}")),
        (code, Err(e)) => {
            if e.reason.as_str() != code {
                return Err(format!(
                    "refused with {}, the document says {code}: {e}",
                    e.reason
                ));
            }
            if let Some(n) = b.attr("names") {
                if !e.message.contains(n) {
                    return Err(format!("the refusal does not name {n}: {e}"));
                }
            }
            Ok(None)
        }
    }
}

fn payload_type(kind: &str) -> &'static str {
    match kind {
        "provisioning" => PROVISIONING_TYPE,
        _ => CALIBRATION_TYPE,
    }
}

fn check_record(b: &Block, doc_text: &str) -> Result<(), String> {
    let kind = b.attr("kind").unwrap_or_default();
    let ty = payload_type(kind);
    let parsed = outcome(b, Record::parse(ty, b.body.as_bytes()))?;
    match (kind, &parsed) {
        ("provisioning", Some(Record::Provisioning(_)))
        | ("calibration", Some(Record::Calibration(_)))
        | (_, None) => {}
        _ => return Err(format!("parsed as another kind of record than {kind}")),
    }
    let Some(file) = b.attr("vector") else {
        return Ok(());
    };
    // The vector's payload is this document (any layout), signed by the
    // vector's station key, with the ids the document names.
    let v = vector(file);
    let env = &v["envelope"];
    let payload = b64(text(env, &["payload"])?)?;
    let shown: Json = serde_json::from_str(&b.body).map_err(|e| e.to_string())?;
    let signed: Json = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    if shown != signed {
        return Err(format!("differs from the payload of tests/vectors/{file}"));
    }
    if text(env, &["payloadType"])? != ty {
        return Err(format!("tests/vectors/{file} has another payload type"));
    }
    let envelope = Envelope {
        payload: payload.clone(),
        payload_type: ty.to_owned(),
        signatures: env["signatures"]
            .as_array()
            .ok_or("no signatures")?
            .iter()
            .map(|s| {
                Ok(Signature {
                    sig: b64(text(s, &["sig"])?)?,
                    keyid: text(s, &["keyid"])?.to_owned(),
                })
            })
            .collect::<Result<_, String>>()?,
    };
    let station = PublicKey::from_spki_der(
        &b64(text(&v, &["station_key", "spki_der"])?)?,
        Reason::FieldInvalid,
        "station key",
    )
    .map_err(|e| e.to_string())?;
    if !envelope.signed_by(&station) {
        return Err(format!(
            "tests/vectors/{file}: the signature does not verify"
        ));
    }
    if hex(&pae(ty, &payload)) != text(&v, &["pae_hex"])? {
        return Err(format!("tests/vectors/{file}: pae_hex is not the PAE"));
    }
    let id = record_id(ty, &payload);
    if id != text(&v, &["record_id"])? {
        return Err(format!(
            "tests/vectors/{file}: record_id is not the record's id"
        ));
    }
    // What the document says about the vector around the example.
    for fact in [
        id.clone(),
        station.key_id(),
        format!("{} bytes", payload.len()),
    ] {
        if !doc_text.contains(&fact) {
            return Err(format!(
                "the document does not state {fact} of tests/vectors/{file}"
            ));
        }
    }
    Ok(())
}

fn check_baseline(b: &Block) -> Result<(), String> {
    outcome(b, Baseline::parse(b.body.as_bytes())).map(|_| ())
}

fn check_cose(b: &Block) -> Result<(), String> {
    let shown = DiagParser::parse(&b.body)?;
    let file = b
        .attr("vector")
        .ok_or("a cose-sign1 example needs vector=")?;
    let v = vector(file);
    let token = unhex(text(&v, &["token_hex"])?)?;
    let limits = cbor::Limits {
        max_depth: 8,
        max_string: 16 * 1024,
        max_items: 64,
    };
    let decoded = cbor::decode(&token, limits).map_err(|e| e.to_string())?;
    matches(&shown, &decoded, "COSE_Sign1")?;
    let (key, _) = device_keys(&v)?;
    let verified = Evidence::decode(&token).and_then(|e| e.verify(&key).map(|()| e.claims));
    outcome(b, verified).map(|_| ())
}

fn check_claims(b: &Block) -> Result<Option<Claims>, String> {
    let bytes = diag_bytes(b)?;
    let claims = outcome(
        b,
        cbor::decode(&bytes, cbor::Limits::CLAIMS).and_then(|v| Claims::from_value(&v)),
    )?;
    let Some(file) = b.attr("vector") else {
        return Ok(claims);
    };
    let v = vector(file);
    let token = unhex(text(&v, &["token_hex"])?)?;
    let cose = cose::CoseSign1::decode(&token).map_err(|e| e.to_string())?;
    if cose.payload != bytes.as_slice() {
        return Err(format!(
            "encoded as written, the claims differ from the payload of tests/vectors/{file}"
        ));
    }
    // Signed with the vector's device key, the shown claims verify.
    let (key, private) = device_keys(&v)?;
    let alg = match private.alg() {
        KeyAlg::Es256 => CoseAlg::Es256,
        KeyAlg::Ed25519 => CoseAlg::EdDsa,
    };
    let protected = cose::protected_header(alg);
    let sig = private.sign_raw(&cose::sig_structure(&protected, &[], &bytes));
    let signed = cose::encode_sign1(&protected, &bytes, &sig);
    Evidence::decode(&signed)
        .and_then(|e| e.verify(&key))
        .map_err(|e| format!("the shown claims, signed with the vector's key, are refused: {e}"))?;
    Ok(claims)
}

fn check_hex_prefix(b: &Block) -> Result<(), String> {
    let file = b
        .attr("vector")
        .ok_or("a hex-prefix example needs vector=")?;
    let field = b.attr("field").ok_or("a hex-prefix example needs field=")?;
    let shown: String = b.body.split_whitespace().collect();
    let shown = shown
        .strip_suffix("...")
        .ok_or("a hex-prefix example ends with ...")?;
    unhex(shown)?;
    let v = vector(file);
    if !text(&v, &[field])?.starts_with(shown) {
        return Err(format!(
            "is not the start of {field} in tests/vectors/{file}"
        ));
    }
    Ok(())
}

/// Checks one example; `Err` says what is wrong.
fn check_example(b: &Block, doc_text: &str) -> Result<(), String> {
    match b.attr("kind").ok_or("no kind=")? {
        "provisioning" | "calibration" => check_record(b, doc_text),
        "baseline" => check_baseline(b),
        "cose-sign1" => check_cose(b),
        "eat-claims" => check_claims(b).map(|_| ()),
        "hex-prefix" => check_hex_prefix(b),
        k => Err(format!("unknown kind={k}")),
    }
}

/// Every example checked; the failures, each with where it is.
fn failures(examples: &[Block]) -> Vec<String> {
    let docs: BTreeMap<String, String> = documents().into_iter().collect();
    examples
        .iter()
        .filter_map(|b| {
            check_example(b, &docs[&b.file]).err().map(|e| {
                format!(
                    "{} (example={}): {e}",
                    b.at(),
                    b.attr("example").unwrap_or("?")
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn every_block_in_the_docs_says_what_it_is() {
    let mut unclassified = Vec::new();
    let mut names = BTreeSet::new();
    let audit_test =
        std::fs::read_to_string(root().join("crates/attestd-core/tests/audit_format.rs"))
            .expect("the audit vector test");
    for b in all_blocks() {
        match classify(&b) {
            None => unclassified.push(format!("{} ```{}", b.at(), b.info)),
            Some(Class::Example) => {
                let name = b.attr("example").unwrap_or_default().to_owned();
                assert!(
                    names.insert(name.clone()),
                    "{}: example={name} twice",
                    b.at()
                );
                let kind = b.attr("kind").unwrap_or_default();
                let needs_expect = kind != "hex-prefix";
                if needs_expect {
                    let expect = b
                        .attr("expect")
                        .unwrap_or_else(|| panic!("{}: example without expect=", b.at()));
                    assert!(
                        expect == "accepted" || Reason::ALL.iter().any(|r| r.as_str() == expect),
                        "{}: expect={expect} is not a reason code",
                        b.at()
                    );
                }
            }
            Some(Class::AuditVector(name)) => assert!(
                audit_test.contains(&format!("\"{name}\"")),
                "{}: {name} is not checked by crates/attestd-core/tests/audit_format.rs",
                b.at()
            ),
            Some(_) => {}
        }
    }
    assert!(
        unclassified.is_empty(),
        "fenced blocks in docs/ must say what they are (example=..., config, excerpt=..., \
         syntax, commands; see tests/docs_examples.rs):\n{}",
        unclassified.join("\n")
    );
    // The documents keep showing every kind of input.
    for kind in [
        "provisioning",
        "calibration",
        "baseline",
        "cose-sign1",
        "eat-claims",
    ] {
        assert!(
            all_blocks()
                .iter()
                .any(|b| b.attr("kind") == Some(kind) && b.attr("expect") == Some("accepted")),
            "no accepted {kind} example left in docs/"
        );
    }
}

#[test]
fn every_example_is_accepted_or_refused_as_the_docs_say() {
    let examples = blocks(Class::Example);
    assert!(examples.len() >= 10, "examples lost: {}", examples.len());
    let f = failures(&examples);
    assert!(
        f.is_empty(),
        "examples in docs/ disagree with the code:\n{}",
        f.join("\n")
    );
}

/// The checks fail when an example is edited to be wrong: a few edits a
/// careless writer could make, each caught.
#[test]
fn a_wrong_example_is_caught() {
    let edits: [(&str, &str, &str); 7] = [
        // A value the record's own rules refuse.
        (
            "calibration-pm200-000123",
            "\"as_left\": 0.04",
            "\"as_left\": 0.74",
        ),
        // The document no longer shows the vector's payload.
        (
            "provisioning-pm200-000123",
            "\"sequence\": 1042",
            "\"sequence\": 1043",
        ),
        // A claim changed: no longer the vector's payload.
        ("evidence-es256-claims", "267: 42,", "267: 43,"),
        // A header changed.
        ("evidence-es256-cose", "h'a10126'", "h'a10127'"),
        // A field the baseline does not have.
        (
            "baseline-pm200-v2",
            "\"version\": 2,",
            "\"version\": 2, \"revision\": 1,",
        ),
        // A wrong prefix.
        ("evidence-es256-token-start", "d2 84", "d2 83"),
        // A refused example that is no longer refused.
        (
            "calibration-pass-out-of-tolerance",
            "\"as_left\": 0.62",
            "\"as_left\": 0.12",
        ),
    ];
    for (name, from, to) in edits {
        let mut b = example(name);
        assert!(
            b.body.contains(from),
            "example={name} no longer contains {from}"
        );
        assert!(
            failures(std::slice::from_ref(&b)).is_empty(),
            "example={name} fails as written"
        );
        b.body = b.body.replacen(from, to, 1);
        assert_eq!(
            failures(&[b]).len(),
            1,
            "the edit of example={name} went unnoticed"
        );
    }
    // A refusal documented with another code.
    let mut b = example("calibration-parameter-as-array");
    b.attrs.insert("expect".into(), "FIELD_INVALID".into());
    assert_eq!(failures(&[b]).len(), 1, "a wrong expect= went unnoticed");
}

/// formats.md: the evidence of §1.8, from the unit provisioned as in §2.1
/// and calibrated as in §2.2, meets every rule of the baseline of §2.3.
#[test]
fn the_documented_evidence_meets_the_documented_baseline() {
    let prov_block = example("provisioning-pm200-000123");
    let cal_block = example("calibration-pm200-000123");
    let Ok(Record::Provisioning(p)) = Record::parse(PROVISIONING_TYPE, prov_block.body.as_bytes())
    else {
        panic!("the provisioning example")
    };
    let Ok(Record::Calibration(c)) = Record::parse(CALIBRATION_TYPE, cal_block.body.as_bytes())
    else {
        panic!("the calibration example")
    };
    let claims = check_claims(&example("evidence-es256-claims"))
        .expect("the claims example")
        .expect("accepted");
    let baseline = Baseline::parse(example("baseline-pm200-v2").body.as_bytes()).expect("baseline");
    let outcome = appraisal_of(&p, &c, &claims, &baseline);
    assert!(
        outcome.findings.is_empty() && outcome.tier == Tier::Affirming,
        "formats.md says this evidence meets every rule of the baseline; attestd finds {:?}",
        outcome
            .findings
            .iter()
            .map(|f| format!("{} {}", f.code.as_str(), f.detail))
            .collect::<Vec<_>>()
    );
    // And the check can fail: the same evidence against a baseline that
    // revokes its application build is contraindicated.
    let revoking = example("baseline-pm200-v2").body.replace(
        "68f4f3d176defbb6272058ba816b8407962ef6d450536ed1d643d48bc5401f44",
        "1ba6dbe66164156fc7eb055ba96a9d9fac36a5c483e7006daf983120eaadc0e7",
    );
    let revoking = Baseline::parse(revoking.as_bytes()).expect("edited baseline");
    assert_eq!(
        appraisal_of(&p, &c, &claims, &revoking).tier,
        Tier::Contraindicated
    );
}

fn appraisal_of(
    p: &Provisioning,
    c: &Calibration,
    claims: &Claims,
    baseline: &Baseline,
) -> attestd_client::core::appraisal::Appraisal {
    assert_eq!(p.serial, claims.serial, "the examples are about one unit");
    assert_eq!(c.serial, claims.serial, "the examples are about one unit");
    assert_eq!(
        baseline.model, p.model,
        "the baseline governs the unit's model"
    );
    let prov_id = record_id(
        PROVISIONING_TYPE,
        example("provisioning-pm200-000123").body.as_bytes(),
    );
    let cal_id = record_id(
        CALIBRATION_TYPE,
        example("calibration-pm200-000123").body.as_bytes(),
    );
    // Each reached attestd a minute after it was made, in the order made;
    // appraised when the baseline became active.
    let received = |t: UnixTime| (t.0 + 60) * 1000;
    let unit = UnitFacts {
        model: p.model.as_str().to_owned(),
        hw_version: p.hw_version.clone(),
        provisioning_record_id: prov_id,
        provisioning_station_id: p.station_id.as_str().to_owned(),
        revoked: false,
        calibration: Some(CalibrationFacts::from_record(
            c,
            &cal_id,
            received(c.performed_at),
        )),
        revoked_stations: Vec::new(),
    };
    let ev = EvidenceFacts {
        claims,
        evidence_id: "ev_00000000000000000000000000000000",
        nonce_fresh: claims.nonce.is_some(),
        received_at_ms: received(claims.iat),
        prior_bootcount: None,
        prior_svns: &[],
    };
    appraise(&ev, &unit, Some(baseline), baseline.effective_at)
}

/// formats.md: the baseline example is the SDK's sample, as it serializes.
#[test]
fn the_documented_baseline_is_the_sdk_sample() {
    let shown: Json =
        serde_json::from_str(&example("baseline-pm200-v2").body).expect("the baseline example");
    let sample = attestd_client::sample::baseline(
        "PM-200",
        2,
        &[("2.1.4", 10)],
        &["2.1.3"],
        "2026-12-01T00:00:00Z",
    );
    assert_eq!(shown, serde_json::to_value(&sample).unwrap());
}

/// formats.md §1.8: the Ed25519 vector holds the same claims for unit
/// PM200-000124, without a nonce.
#[test]
fn the_ed25519_vector_is_the_documented_claims_without_a_nonce() {
    let mut shown = check_claims(&example("evidence-es256-claims"))
        .expect("the claims example")
        .expect("accepted");
    let v = vector("evidence-ed25519.json");
    let token = unhex(text(&v, &["token_hex"]).unwrap()).unwrap();
    let ev = Evidence::decode(&token).expect("the Ed25519 vector decodes");
    let (key, _) = device_keys(&v).unwrap();
    ev.verify(&key).expect("and verifies");
    assert_eq!(ev.cose.alg, CoseAlg::EdDsa);
    assert_eq!(ev.cose.protected, unhex("a10127").unwrap().as_slice());
    shown.nonce = None;
    shown.serial = ev.claims.serial.clone();
    assert_eq!(ev.claims.serial.as_str(), "PM200-000124");
    assert_eq!(ev.claims, shown);
}

/// Protobuf shown in the docs is as it is in proto/.
#[test]
fn protobuf_excerpts_are_as_in_the_proto_files() {
    let excerpts = blocks(Class::Excerpt);
    assert!(!excerpts.is_empty());
    for b in excerpts {
        let path = b.attr("excerpt").unwrap();
        let proto = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("{}: {path}: {e}", b.at()));
        let in_proto = messages(&proto);
        let shown = messages(&b.body);
        assert!(!shown.is_empty(), "{}: no message", b.at());
        for (name, fields) in shown {
            assert_eq!(
                in_proto.get(&name),
                Some(&fields),
                "{}: message {name} differs from {path}",
                b.at()
            );
        }
    }
}

/// `message Name { fields }` of protobuf text: the fields as `type name = n`,
/// comments and layout removed.
fn messages(text: &str) -> BTreeMap<String, Vec<String>> {
    let clean: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = BTreeMap::new();
    let mut rest = clean.as_str();
    while let Some(i) = rest.find("message ") {
        rest = &rest[i + "message ".len()..];
        let Some(open) = rest.find('{') else { break };
        let name = rest[..open].trim().to_owned();
        let Some(close) = rest.find('}') else { break };
        let fields = rest[open + 1..close]
            .split(';')
            .map(|f| f.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|f| !f.is_empty())
            .collect();
        out.insert(name, fields);
        rest = &rest[close + 1..];
    }
    out
}

/// Configuration examples are files attestd would start with: read with the
/// binary's own configuration type (unknown keys refused), principals,
/// release keys and the listen address checked as at start.
#[test]
fn configuration_examples_are_accepted_by_attestd() {
    let examples = blocks(Class::Config);
    assert!(examples.len() >= 3, "configuration examples lost");
    for b in examples {
        let cfg: config::FileConfig =
            toml::from_str(&b.body).unwrap_or_else(|e| panic!("{}: {e}", b.at()));
        let auth = attestd_server::auth::Authenticator::new(&cfg.principals)
            .unwrap_or_else(|e| panic!("{}: {e}", b.at()));
        cfg.release
            .trust_root()
            .unwrap_or_else(|e| panic!("{}: {e}", b.at()));
        if auth.has_certificate_principals() {
            assert!(
                cfg.tls
                    .as_ref()
                    .is_some_and(|t| !t.client_ca_files.is_empty()),
                "{}: certificate principals need [tls] client_ca_files",
                b.at()
            );
        }
        if let Some(listen) = cfg.listen {
            config::check_listen(listen, cfg.tls.is_some(), cfg.insecure_plaintext)
                .unwrap_or_else(|e| panic!("{}: {e}", b.at()));
        }
    }
}

/// Command lines shown to readers: `commands` blocks of docs/ and the `sh`
/// blocks of the README, `cargo run` spelled as the installed binaries.
fn command_lines() -> Vec<(String, String)> {
    let mut blocks_: Vec<Block> = blocks(Class::Commands);
    blocks_.extend(
        blocks_of(
            "../README.md",
            &std::fs::read_to_string(root().join("README.md")).unwrap(),
        )
        .into_iter()
        .filter(|b| b.has("sh")),
    );
    let mut out = Vec::new();
    for b in blocks_ {
        for (i, line) in b.body.lines().enumerate() {
            let line = line.split(" #").next().unwrap_or("").trim();
            let line = if let Some(rest) = line.strip_prefix("cargo run -p attestctl -- ") {
                format!("attestctl {rest}")
            } else if let Some(rest) = line.strip_prefix("cargo run -- ") {
                format!("attestd {rest}")
            } else {
                line.to_owned()
            };
            if line.starts_with("attestd ") || line.starts_with("attestctl ") {
                out.push((format!("docs/{}:{}", b.file, b.line + 1 + i), line));
            }
        }
    }
    out
}

/// Words of a command line; a double-quoted part is one word.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// `group-by` -> `GroupBy`.
fn camel(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Every `attestd` command shown exists with the flags shown (asked of the
/// binary itself), and every `attestctl` command names subcommands and flags
/// that attestctl defines.
#[test]
fn commands_in_the_docs_exist() {
    let lines = command_lines();
    assert!(lines.len() >= 10, "command lines lost: {lines:?}");
    // attestctl's commands and flags are declared in cli.rs (clap derive).
    let ctl = ["main.rs", "cli.rs"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(root().join("crates/attestctl/src").join(f)).ok())
        .collect::<String>();
    for (at, line) in lines {
        let words = shell_words(&line);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let flags = words
            .iter()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap());
        if words[0] == "attestd" {
            let help = std::process::Command::new(env!("CARGO_BIN_EXE_attestd"))
                .args([words[1], "--help"])
                .output()
                .expect("run attestd");
            assert!(
                help.status.success(),
                "{at}: attestd has no command {:?}",
                words[1]
            );
            let help = String::from_utf8_lossy(&help.stdout);
            for f in flags {
                let whole = help.match_indices(f).any(|(i, _)| {
                    !help[i + f.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                });
                assert!(whole, "{at}: attestd {} has no flag {f}", words[1]);
            }
        } else {
            // Global options with a value, flags, then at most a command and
            // its subcommand; the rest are arguments.
            let mut commands: Vec<&str> = Vec::new();
            let mut it = words[1..].iter();
            while let Some(w) = it.next() {
                if [
                    "--token",
                    "--endpoint",
                    "--ca-file",
                    "--cert-file",
                    "--key-file",
                ]
                .contains(w)
                {
                    it.next();
                    continue;
                }
                if w.starts_with('-') {
                    continue;
                }
                let leaf = commands
                    .first()
                    .is_some_and(|c| ["keygen", "demo"].contains(c));
                if commands.len() < 2 && !leaf {
                    commands.push(w);
                }
            }
            for c in &commands {
                let name = camel(c);
                assert!(
                    [
                        format!("    {name}("),
                        format!("    {name} {{"),
                        format!("    {name},")
                    ]
                    .iter()
                    .any(|p| ctl.contains(p.as_str())),
                    "{at}: attestctl has no command {c}"
                );
            }
            for f in flags {
                let field = f.trim_start_matches('-').replace('-', "_");
                assert!(
                    ctl.contains(&format!(" {field}:"))
                        || ctl.contains(&format!("\"{}\"", f.trim_start_matches('-'))),
                    "{at}: attestctl has no flag {f}"
                );
            }
        }
    }
}
