//! The CI smoke test of the bench: every scenario of `all --quick` runs
//! against a real attestd process and finishes without a single error. It
//! checks that the tool works, not how fast anything is.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn all_scenarios_run_without_errors_in_quick_mode() {
    let rows = all_quick(&["--boot-rate", "40"]);
    // sled: one server, no PostgreSQL CPU.
    for storm in rows.iter().filter(|r| r["cpu"].is_object()) {
        assert_eq!(storm["cpu"]["replicas"], 1, "{storm}");
        assert!(storm["cpu"]["postgres_us"].is_null(), "{storm}");
    }
    // With --boot-rate, both kinds of unit also boot at the rate offered:
    // 40/s for 2 s is about 80 boots (fewer if the schedule slipped), each
    // AFFIRMING (checked for every storm row above).
    let open: Vec<_> = rows
        .iter()
        .filter(|r| {
            r["note"]
                .as_str()
                .unwrap_or("")
                .contains("open loop 40/s offered")
        })
        .collect();
    assert_eq!(open.len(), 2, "{rows:?}");
    for r in open {
        assert_eq!(r["scenario"], "boot-storm", "{r}");
        let count = r["count"].as_u64().unwrap();
        assert!((10..=81).contains(&count), "{r}");
        assert!(r["cpu"].is_object(), "{r}");
    }
}

/// The same on a throw-away PostgreSQL database (see
/// `attestd_store::postgres::testdb`) served by two replicas: the bench
/// empties it (--fresh), spreads the load over both and restarts both.
#[cfg(feature = "pg-test")]
#[test]
fn all_scenarios_run_on_postgres_with_two_replicas() {
    let db = attestd_store::postgres::testdb::TestDb::create();
    let rows = all_quick(&["--store-url", &db.url, "--fresh", "--replicas", "2"]);
    let storms: Vec<_> = rows.iter().filter(|r| r["cpu"].is_object()).collect();
    assert_eq!(storms.len(), 2, "CPU per boot of both measured storms");
    for storm in storms {
        assert_eq!(storm["cpu"]["replicas"], 2, "{storm}");
        assert!(storm["cpu"]["server_us"].as_f64().unwrap() > 0.0, "{storm}");
        // The replicas' backends worked for every boot.
        assert!(
            storm["cpu"]["postgres_db_backends_us"].as_f64().unwrap() > 0.0,
            "{storm}"
        );
    }
}

/// Runs `all --quick` with `extra` arguments, checks what every backend
/// must show, and returns the result rows.
fn all_quick(extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("quick.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestd-bench"))
        .args(["all", "--quick", "--json"])
        .arg(&json)
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .env_remove("ATTESTD_BENCH_STORE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = doc["results"].as_array().unwrap().clone();
    for scenario in [
        "provision",
        "ceiling",
        "boot-storm",
        "queries",
        "revoke",
        "restart",
    ] {
        assert!(
            rows.iter().any(|r| r["scenario"] == scenario),
            "no {scenario} row: {stdout}"
        );
    }
    for r in &rows {
        assert_eq!(r["errors"], 0, "{r}");
    }
    // Every unit was provisioned, and every boot of the storms was appraised
    // AFFIRMING (the simulated fleet is healthy).
    let provision = rows.iter().find(|r| r["scenario"] == "provision").unwrap();
    assert_eq!(provision["count"], 200);
    for storm in rows.iter().filter(|r| r["scenario"] == "boot-storm") {
        let count = storm["count"].as_u64().unwrap();
        assert!(count > 0);
        assert!(
            storm["note"]
                .as_str()
                .unwrap()
                .contains(&format!("{count}/{count} AFFIRMING")),
            "{storm}"
        );
    }
    let revoke = rows.iter().find(|r| r["scenario"] == "revoke").unwrap();
    assert!(
        revoke["note"].as_str().unwrap().contains("20 units"),
        "{revoke}"
    );
    assert!(stdout.contains("scenario"), "the table is printed");
    rows
}
