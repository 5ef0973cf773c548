//! The reference documents against the code they describe: every RPC of
//! `proto/attestd/v1/` has its reason codes listed in `docs/api.md`, every
//! reason code is documented with the status it travels with, every limit
//! with its default, every appraisal code with its claim and value
//! (`docs/appraisal.md`), every code the release gate can give with whether a
//! concession may waive it (`docs/release-gate.md`), and the metrics the
//! server serves are the ones `docs/operations.md` and the README name.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use attestd_core::appraisal::{Claim, Code};
use attestd_core::release::{
    waivable, EVIDENCE_TOO_OLD, NOT_ENROLLED, NO_FINAL_ATTESTATION, QUARANTINED,
};
use attestd_core::Reason;

fn read(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The lines of the section that starts with the heading `heading`, up to
/// the next heading of the same or a higher level.
fn section(doc: &str, heading: &str) -> Vec<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !(hashes > 0 && hashes <= level && l[hashes..].starts_with(' '))
        })
        .map(String::from)
        .collect()
}

/// The cells of the table rows of `lines` (header and rule rows left out).
fn rows(lines: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = lines
        .iter()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .filter(|cells: &Vec<String>| !cells.iter().all(|c| c.chars().all(|x| "-: ".contains(x))))
        .collect();
    // The header row.
    if !out.is_empty() {
        out.remove(0);
    }
    out
}

/// The `backticked` words of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// Reason-code-like words: `UPPER_SNAKE`.
fn codes_in(cell: &str) -> Vec<String> {
    ticked(cell)
        .into_iter()
        .filter(|w| {
            w.len() > 2
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

/// Every `Service.Rpc` of proto/attestd/v1/.
fn proto_rpcs() -> BTreeSet<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/attestd/v1");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("proto/attestd/v1") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut service = None;
        for line in text
            .lines()
            .map(|l| l.split("//").next().unwrap_or("").trim())
        {
            if let Some(rest) = line.strip_prefix("service ") {
                service = Some(rest.trim_end_matches('{').trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap().trim();
                let s = service.as_ref().expect("rpc outside a service");
                out.insert(format!("{s}.{name}"));
            }
        }
    }
    assert!(out.len() >= 25, "RPCs lost: {out:?}");
    out
}

/// api.md's table of reason codes by RPC: RPC (or group) -> codes.
fn reasons_by_rpc() -> Vec<(String, Vec<String>)> {
    let doc = read("docs/api.md");
    rows(&section(&doc, "### Reason codes by RPC"))
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), 2, "a row of two cells: {cells:?}");
            let rpc = match ticked(&cells[0]).first() {
                Some(t) if cells[0].starts_with('`') => t.clone(),
                _ => cells[0].clone(),
            };
            (rpc, codes_in(&cells[1]))
        })
        .collect()
}

#[test]
fn every_rpc_has_its_reason_codes_in_api_md() {
    let rpcs = proto_rpcs();
    let table = reasons_by_rpc();
    let documented: BTreeSet<String> = table
        .iter()
        .filter(|(r, _)| r.contains('.') && !r.contains(' '))
        .map(|(r, _)| r.clone())
        .collect();
    let missing: Vec<_> = rpcs.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/api.md, \"Reason codes by RPC\", has no row for {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&rpcs).collect();
    assert!(
        unknown.is_empty(),
        "docs/api.md lists RPCs that proto/ does not have: {unknown:?}"
    );
}

#[test]
fn the_reason_table_names_real_codes_and_every_code() {
    let known: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let mut named = BTreeSet::new();
    for (rpc, codes) in reasons_by_rpc() {
        for c in codes {
            assert!(
                known.contains(c.as_str()),
                "docs/api.md: {rpc} names {c}, which is not a reason code"
            );
            named.insert(c);
        }
    }
    let never: Vec<_> = known.iter().filter(|c| !named.contains(**c)).collect();
    assert!(
        never.is_empty(),
        "reason codes no RPC of docs/api.md returns: {never:?}"
    );
}

#[test]
fn every_rpc_is_in_the_authorization_matrix() {
    let routes: BTreeSet<String> = attestd_server::auth::ROUTES
        .iter()
        .map(|(path, _)| path.trim_start_matches("/attestd.v1.").replace('/', "."))
        .collect();
    assert_eq!(
        routes,
        proto_rpcs(),
        "auth::ROUTES and proto/ list other RPCs"
    );
}

/// `InvalidArgument` -> `INVALID_ARGUMENT`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn every_reason_code_is_documented_with_its_status() {
    let doc = read("docs/api.md");
    let table = rows(&section(&doc, "### Reason codes"));
    for r in Reason::ALL {
        let status = upper_snake(&format!(
            "{:?}",
            attestd_server::status::code_for(r.class())
        ));
        let row = table
            .iter()
            .find(|cells| ticked(&cells[0]).iter().any(|t| t == r.as_str()))
            .unwrap_or_else(|| panic!("docs/api.md, \"Reason codes\": no row for {}", r.as_str()));
        assert_eq!(
            row[1],
            status,
            "docs/api.md: {} travels with another status",
            r.as_str()
        );
    }
    // Every document that mentions a code mentions a real one or an
    // appraisal or gate code.
    let mut known: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    known.extend(Code::ALL.iter().map(|c| c.as_str().to_owned()));
    known.extend(
        [
            NOT_ENROLLED,
            QUARANTINED,
            NO_FINAL_ATTESTATION,
            EVIDENCE_TOO_OLD,
        ]
        .map(String::from),
    );
    for row in table {
        for c in codes_in(&row[0]) {
            assert!(
                known.contains(&c),
                "docs/api.md documents {c}, which does not exist"
            );
        }
    }
}

#[test]
fn every_appraisal_code_is_documented_with_its_claim_and_value() {
    let doc = read("docs/appraisal.md");
    let table = rows(&section(&doc, "## 4. Reason codes"));
    assert_eq!(
        table.len(),
        Code::ALL.len(),
        "docs/appraisal.md: one row per code"
    );
    for code in Code::ALL {
        let row = table
            .iter()
            .find(|cells| ticked(&cells[0]) == [code.as_str()])
            .unwrap_or_else(|| panic!("docs/appraisal.md: no row for {}", code.as_str()));
        assert_eq!(row[1], code.claim().as_str(), "claim of {}", code.as_str());
        let value = if code.claim() == Claim::Freshness {
            "none".to_owned()
        } else {
            code.value().to_string()
        };
        assert_eq!(row[2], value, "value of {}", code.as_str());
    }
}

#[test]
fn the_concession_table_is_what_the_gate_waives() {
    let doc = read("docs/release-gate.md");
    let table = rows(&section(&doc, "## 5. What a concession can waive"));
    let mut every: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    every.extend(
        [
            NOT_ENROLLED,
            QUARANTINED,
            NO_FINAL_ATTESTATION,
            EVIDENCE_TOO_OLD,
        ]
        .map(String::from),
    );
    let mut seen = BTreeSet::new();
    for cells in &table {
        let code = ticked(&cells[0]).first().cloned().expect("a code");
        let says = cells.last().unwrap();
        let yes = says.starts_with("yes");
        assert!(
            yes || says.starts_with("no"),
            "{code}: yes or no, not {says:?}"
        );
        assert_eq!(
            yes,
            waivable(&code),
            "docs/release-gate.md says {code} {} be waived; the gate disagrees",
            if yes { "may" } else { "may not" }
        );
        assert!(seen.insert(code.clone()), "{code} listed twice");
    }
    assert_eq!(
        seen, every,
        "docs/release-gate.md must list every code the gate can give"
    );
    // The gate's rules table names its own codes.
    let rules = rows(&section(&doc, "## 2. The rules"));
    for code in [
        NOT_ENROLLED,
        QUARANTINED,
        NO_FINAL_ATTESTATION,
        EVIDENCE_TOO_OLD,
    ] {
        assert!(
            rules.iter().any(|r| ticked(&r[0]) == [code]),
            "docs/release-gate.md, section 2: no rule for {code}"
        );
    }
}

#[test]
fn every_limit_is_documented_with_its_default() {
    // Limits has no serializer; its Debug form lists every field in order.
    let debug = format!("{:?}", attestd_server::settings::Limits::default());
    let inner = debug
        .strip_prefix("Limits { ")
        .and_then(|s| s.strip_suffix(" }"))
        .expect("Limits { .. }");
    let defaults: BTreeMap<&str, &str> = inner
        .split(", ")
        .map(|kv| kv.split_once(": ").expect("field: value"))
        .collect();
    assert!(defaults.len() >= 20, "limits lost: {defaults:?}");
    let doc = read("docs/api.md");
    let table = rows(&section(&doc, "## 6. Limits"));
    for (name, value) in &defaults {
        let row = table
            .iter()
            .find(|cells| ticked(&cells[0]) == [*name])
            .unwrap_or_else(|| panic!("docs/api.md, section 6: no row for {name}"));
        assert_eq!(
            row[1].split_whitespace().next(),
            Some(*value),
            "docs/api.md: the default of {name} is {value}"
        );
    }
    for cells in &table {
        for t in ticked(&cells[0]) {
            assert!(
                defaults.contains_key(t.as_str()),
                "docs/api.md documents a limit {t} that does not exist"
            );
        }
    }
}

/// `attestd_..._total` and `attestd_stored` names mentioned in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("attestd_") {
        let start = from + i;
        from = start + 1;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name.ends_with("_total") || name == "attestd_stored" {
            out.insert(name);
        }
    }
    out
}

#[tokio::test]
async fn the_documented_metrics_are_the_served_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let store = attestd_store::sled_store::SledStore::open(
        dir.path(),
        &attestd_store::sled_store::SledConfig {
            cache_capacity: 8 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let server = attestd_server::Server::new(attestd_server::ServerParts {
        store: std::sync::Arc::new(store),
        settings: Default::default(),
        clock: std::sync::Arc::new(attestd_server::clock::SystemClock),
        metrics_listener: None,
        checkpoint_key: None,
        tls: None,
    })
    .unwrap();
    let app = server.app();
    // Series that appear once something happened: one call, one backend.
    app.metrics.set_build_info(app.store.backend());
    let rpc = app.metrics.rpc("/attestd.v1.Fleet/GetDevice");
    app.metrics.observe_rpc(rpc, tonic::Code::Ok, 0.001);
    app.metrics
        .count_rejection(attestd_core::Reason::SignatureInvalid);
    app.metrics.sweep_progress(attestd_store::SWEEP_MODEL, 1);
    app.metrics.sweep_finished(attestd_store::SWEEP_MODEL);
    let text = attestd_server::metrics::render(&app, None).await;
    let mut served: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    // Served only with [tls] (it is the served certificate's expiry).
    assert!(!served.contains("attestd_tls_certificate_expiry_seconds"));
    served.insert("attestd_tls_certificate_expiry_seconds".into());
    assert!(served.len() >= 12, "metrics lost: {served:?}");

    let ops = read("docs/operations.md");
    let table: BTreeSet<String> = rows(&section(&ops, "## 7. Metrics and logs"))
        .iter()
        .filter_map(|cells| ticked(&cells[0]).first().cloned())
        .collect();
    assert_eq!(
        table, served,
        "docs/operations.md's metrics table and /metrics differ"
    );

    for path in [
        "README.md",
        "docs/api.md",
        "docs/operations.md",
        "docs/appraisal.md",
        "docs/release-gate.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "deploy/attestd.example.toml",
        "deploy/attestd.postgres.example.toml",
    ] {
        for name in metric_names(&read(path)) {
            assert!(
                served.contains(&name),
                "{path} names a metric {name} that /metrics does not serve"
            );
        }
    }
}

/// api.md's authorization matrix is `auth::ROUTES`: for every RPC, the roles
/// marked are exactly the roles allowed, and public RPCs are public.
#[test]
fn the_authorization_matrix_of_api_md_is_the_one_enforced() {
    use attestd_server::auth::{access_for, Access, Role};
    let doc = read("docs/api.md");
    let lines = section(&doc, "## 3. Roles and the authorization matrix");
    let table: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.starts_with("| RPC |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let header = cells(table.first().expect("the matrix"));
    let roles: Vec<Role> = header[1..]
        .iter()
        .map(|h| Role::parse(h).unwrap_or_else(|| panic!("not a role: {h}")))
        .collect();
    assert_eq!(roles.len(), Role::ALL.len());
    let mut seen = BTreeSet::new();
    for line in &table[2..] {
        let row = cells(line);
        let names = ticked(&row[0]);
        let service = names[0].split('.').next().unwrap().to_owned();
        for n in &names {
            let rpc = if n.starts_with('.') {
                format!("{service}{n}")
            } else {
                n.clone()
            };
            let path = format!("/attestd.v1.{}", rpc.replacen('.', "/", 1));
            let access = access_for(&path).unwrap_or_else(|| panic!("{rpc} is not a route"));
            for (role, mark) in roles.iter().zip(&row[1..]) {
                let allowed = match access {
                    Access::Public => {
                        assert_eq!(mark, "public", "{rpc} is public");
                        true
                    }
                    Access::Roles(rs) => rs.contains(role),
                };
                assert_eq!(
                    !mark.is_empty(),
                    allowed,
                    "docs/api.md: {rpc} for {}: the matrix says {mark:?}",
                    role.as_str()
                );
            }
            seen.insert(rpc);
        }
    }
    assert_eq!(
        seen,
        proto_rpcs(),
        "docs/api.md's matrix must list every RPC once"
    );
}

#[test]
fn the_http_route_table_is_the_one_served_with_its_roles() {
    use attestd_server::auth::{access_for, Access};
    use attestd_server::rest::REST_ROUTES;
    let doc = read("docs/http-api.md");
    let documented: Vec<(String, String, String, String)> = rows(&section(&doc, "## Routes"))
        .into_iter()
        .map(|c| {
            (
                c[0].clone(),
                c[1].trim_matches('`').to_owned(),
                c[2].trim_matches('`').to_owned(),
                c[3].clone(),
            )
        })
        .collect();
    let served: Vec<(String, String, String, String)> = REST_ROUTES
        .iter()
        .map(|r| {
            let roles = match access_for(r.rpc) {
                Some(Access::Public) | None => "public".to_owned(),
                Some(Access::Roles(roles)) => roles
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.rpc.trim_start_matches("/attestd.v1.").replace('/', "."),
                roles,
            )
        })
        .collect();
    assert_eq!(documented, served, "docs/http-api.md, \"## Routes\"");
}
