//! The CI smoke test of the bench: every scenario of `all --quick` runs
//! against a real attestd process and finishes without a single error. It
//! checks that the tool works, not how fast anything is.

#[test]
fn all_scenarios_run_without_errors_in_quick_mode() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("quick.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestd-bench"))
        .args(["all", "--quick", "--json"])
        .arg(&json)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = doc["results"].as_array().unwrap();
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
    for r in rows {
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
}
