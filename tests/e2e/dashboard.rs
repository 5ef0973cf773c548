//! End-to-end: the read-only fleet dashboard in a real headless browser
//! (Debian's Chromium, driven by Playwright from tests/dashboard/check.mjs).
//! A reader logs in with a token and watches a unit's page; a baseline then
//! withdraws the firmware the unit runs, and the page shows it UNTRUSTED,
//! with the reason, without a reload (the change feed). A hospital token
//! never sees another tenant's units. Screenshots are kept under
//! target/tmp/dashboard/ as the test's artifacts.
//!
//! Needs Chromium (`apt-get install chromium`) and the script's packages
//! (`npm ci --prefix tests/dashboard`); .ci/run installs both. Without
//! them the test fails and says so: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::fleet::*;
use crate::common::*;
use attestd_client::pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn prerequisites() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        chromium.exists(),
        "the dashboard test needs Chromium at {} (Debian: apt-get install chromium; \
         or set CHROMIUM); .ci/run installs it",
        chromium.display()
    );
    let script = root.join("tests/dashboard/check.mjs");
    assert!(
        root.join("tests/dashboard/node_modules/playwright-core")
            .exists(),
        "the dashboard test needs its packages: npm ci --prefix tests/dashboard \
         (.ci/run does it)"
    );
    (chromium, script)
}

/// The next line of the script's stdout, bounded.
async fn line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    within: Duration,
) -> String {
    match tokio::time::timeout(within, lines.next_line()).await {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => String::new(),
        Ok(Err(e)) => panic!("reading the browser script: {e}"),
        Err(_) => panic!("the browser script said nothing for {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_turns_untrusted_on_the_open_page_and_tenants_stay_apart() {
    let (chromium, script) = prerequisites();
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 6, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();
    for i in 0..6 {
        f.boot(i).await;
    }
    f.assign(0, "st-mary", "ward-1").await;
    f.assign(1, "st-mary", "ward-2").await;
    f.assign(2, "county", "er").await;
    f.assign(3, "county", "icu").await;
    let watched = 4;
    assert_eq!(f.status(watched).await, pb::DeviceStatus::Trusted);

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let serial = |i: usize| f.units[i].serial.clone();
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("ATTESTD_URL", format!("http://{}", f.server.addr))
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .env("READER_TOKEN", AUDITOR_TOKEN)
        .env("WATCH_SERIAL", serial(watched))
        .env("EXPECT_REASON", "FIRMWARE_UNAPPROVED")
        .env("TENANT_TOKEN", HOSPITAL_TOKEN)
        .env("TENANT_SERIALS", format!("{},{}", serial(0), serial(1)))
        .env("OTHER_SERIALS", format!("{},{}", serial(2), serial(3)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js 20 or later)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    assert_eq!(
        line(&mut lines, Duration::from_secs(60)).await,
        "READY",
        "the page never showed the unit TRUSTED (see the script's output above)"
    );
    // The unit's build is withdrawn: re-appraisal makes it UNTRUSTED and
    // the change feed tells the open page.
    let v2 = baseline_doc(
        "PM-200",
        2,
        &[("2.1.3", 9)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v2, &[0, 1]).await.unwrap();
    f.wait_for(
        watched,
        pb::DeviceStatus::Untrusted,
        Some("FIRMWARE_UNAPPROVED"),
        Duration::from_secs(10),
    )
    .await;
    stdin.write_all(b"CHANGED\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(
        line(&mut lines, Duration::from_secs(75)).await,
        "OK",
        "the dashboard check failed (see the script's output above; failure.png in {})",
        artifacts.display()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the script ends")
        .unwrap();
    assert!(status.success());
    for shot in [
        "dashboard-overview.png",
        "dashboard-device-untrusted.png",
        "dashboard-tenant.png",
    ] {
        let len = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            len > 10_000,
            "{shot} missing or empty in {}",
            artifacts.display()
        );
    }
}
