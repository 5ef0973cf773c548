//! End-to-end: the binary's own behaviour: configuration errors, the
//! loopback-only rule, dev mode, environment overrides, graceful shutdown.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attestd_client::pb;
use attestd_client::Client;

fn attestd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_attestd"));
    c.env_remove("ATTESTD_CONFIG")
        .env_remove("ATTESTD_LISTEN")
        .env_remove("ATTESTD_DATA_DIR");
    c
}

/// Runs to completion (it must exit by itself) and returns (success, stderr).
fn run_to_exit(mut c: Command) -> (bool, String) {
    let out = c.stdin(Stdio::null()).output().expect("run attestd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_mistakes_stop_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Neither a configuration nor --dev.
    let (ok, err) = run_to_exit({
        let mut c = attestd();
        c.arg("serve");
        c
    });
    assert!(!ok);
    assert!(err.contains("--config"), "{err}");

    // Plaintext on a non-loopback address.
    let (ok, err) = run_to_exit({
        let mut c = attestd();
        c.args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(&data);
        c
    });
    assert!(!ok);
    assert!(err.contains("loopback"), "{err}");
    assert!(
        !data.exists(),
        "nothing is created when start-up is refused"
    );

    // A misspelt key in the file.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"x\"\n[limits]\nnonce_lifetime = 5\n",
    )
    .unwrap();
    let (ok, err) = run_to_exit({
        let mut c = attestd();
        c.args(["serve", "--config"]).arg(&cfg);
        c
    });
    assert!(!ok);
    assert!(err.contains("nonce_lifetime"), "{err}");

    // A principal with a malformed token hash.
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[[principals]]\nname = \"x\"\nrole = \"mes\"\ntoken_sha256 = \"abc\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let (ok, err) = run_to_exit({
        let mut c = attestd();
        c.args(["serve", "--config"]).arg(&cfg);
        c
    });
    assert!(!ok);
    assert!(err.contains("token_sha256"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_with_env_overrides_then_sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = attestd()
        .args(["serve", "--dev"])
        .env("ATTESTD_LISTEN", "127.0.0.1:0")
        .env("ATTESTD_DATA_DIR", dir.path().join("dev-data"))
        .env("ATTESTD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut admin = None;
    let mut station = None;
    let mut hospital_it = None;
    let mut auditor = None;
    while admin.is_none()
        || station.is_none()
        || hospital_it.is_none()
        || auditor.is_none()
        || addr.is_none()
    {
        let line = lines.next().expect("start-up line").unwrap();
        if let Some(a) = line.strip_prefix("attestd listening on ") {
            addr = Some(a.to_owned());
        } else if let Some(t) = line.strip_prefix("attestd dev admin token: ") {
            admin = Some(t.to_owned());
        } else if let Some(t) = line.strip_prefix("attestd dev station token: ") {
            station = Some(t.to_owned());
        } else if let Some(t) = line.strip_prefix("attestd dev hospital-it token: ") {
            hospital_it = Some(t.to_owned());
        } else if let Some(t) = line.strip_prefix("attestd dev auditor token: ") {
            auditor = Some(t.to_owned());
        }
    }
    let addr = addr.unwrap();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    assert!(
        dir.path().join("dev-data").exists(),
        "ATTESTD_DATA_DIR honoured"
    );
    let client = Client::connect(&format!("http://{addr}"), admin.as_deref())
        .await
        .unwrap();
    client
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .expect("the printed admin token works");
    let st = client.with_token(station.as_deref()).unwrap();
    let denied = st
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        tonic::Code::PermissionDenied,
        "the station token is a station, not an admin"
    );
    // hospital IT (tenant dev-hospital) reads the fleet, not the release gate.
    let it = client.with_token(hospital_it.as_deref()).unwrap();
    let summary = it
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .expect("the printed hospital-it token reads the fleet")
        .into_inner();
    assert_eq!(summary.total, 0, "no unit of its tenant yet");
    let denied = it
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-000001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // The auditor reads the audit trail, not the stations.
    let aud = client.with_token(auditor.as_deref()).unwrap();
    aud.audit()
        .get_audit_head(pb::GetAuditHeadRequest {})
        .await
        .expect("the printed auditor token reads the audit trail");
    let denied = aud
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    for role in ["hospital-it", "auditor"] {
        assert!(
            dir.path()
                .join(format!("dev-data/dev/{role}.token"))
                .exists(),
            "{role}.token written"
        );
    }

    // SIGTERM: graceful stop, exit status 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "attestd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_example_configuration_starts_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/attestd.example.toml");
    let mut child = attestd()
        .args(["serve", "--config"])
        .arg(&cfg)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("ATTESTD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next();
    let _ = child.kill();
    let _ = child.wait();
    let line = first.expect("a start-up line").unwrap();
    assert!(
        line.starts_with("attestd listening on 127.0.0.1:"),
        "{line}"
    );
}
