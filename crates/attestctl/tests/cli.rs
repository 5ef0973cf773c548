//! Every attestctl command, end to end, against a freshly started server
//! with the dev kit (what `attestd serve --dev` makes), and the demo with
//! its output checked for the expected verdicts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use attestd_server::clock::SystemClock;
use attestd_server::dev;
use attestd_server::settings::Settings;
use attestd_server::{Server, ServerParts};
use attestd_store::sled_store::{SledConfig, SledStore};

struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Env {
    fn dev_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn token(&self, role: &str) -> String {
        std::fs::read_to_string(self.dev_dir().join(format!("{role}.token")))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kit = dev::prepare(dir.path()).unwrap();
    let store = SledStore::open(
        &dir.path().join("data"),
        &SledConfig {
            cache_capacity: 16 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    dev::register_station(&store, &kit.station_key, 0)
        .await
        .unwrap();
    let server = Server::new(ServerParts {
        store: Arc::new(store),
        settings: Settings {
            limits: attestd_server::settings::Limits {
                checkpoint_interval_secs: 1,
                ..Default::default()
            },
            principals: kit.principals.clone(),
            release: kit.release.clone(),
        },
        clock: Arc::new(SystemClock),
        metrics_listener: None,
        checkpoint_key: Some(Arc::new(
            attestd_server::checkpoint::CheckpointKey::load_or_create(
                &dir.path().join("audit-key.pkcs8"),
            )
            .unwrap(),
        )),
        tls: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run(
                listener,
                async {
                    let _ = stopped.await;
                },
                true,
            )
            .await;
    });
    Env {
        dir,
        endpoint,
        stop: Some(stop),
    }
}

/// Runs attestctl (off the async runtime); returns (exit code, stdout, stderr).
async fn ctl(env: &Env, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_attestctl"));
    c.arg("--endpoint")
        .arg(&env.endpoint)
        .args(args)
        .env_remove("ATTESTD_TOKEN")
        .env_remove("ATTESTD_ENDPOINT");
    if let Some(t) = token {
        c.arg("--token").arg(t);
    }
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_and_shows_the_expected_verdicts() {
    let env = start().await;
    let out = ok(ctl(&env, None, &["demo", "--dev-dir", p(&env.dev_dir())]).await);
    assert!(
        out.contains("1. baseline PM-200 v1 published with 2 of 2 release signatures"),
        "{out}"
    );
    assert!(
        out.contains("CONTRAINDICATED CALIBRATION_MISMATCH"),
        "{out}"
    );
    assert_eq!(
        out.matches("UNTRUSTED  FIRMWARE_REVOKED").count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("  RELEASE")).count(),
        5,
        "{out}"
    );
    assert!(out.contains("HOLD      CALIBRATION_MISMATCH"), "{out}");
    assert!(out.contains("5 of 8 released"), "{out}");
    assert!(out.contains("TRUSTED 5, UNTRUSTED 3"), "{out}");
    // A second run works against the same server (new units, next versions).
    let again = ok(ctl(
        &env,
        None,
        &["demo", "--dev-dir", p(&env.dev_dir()), "--units", "4"],
    )
    .await);
    assert!(again.contains("baseline PM-200 v3 published"), "{again}");
    assert!(again.contains("2 of 4 released"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command() {
    let env = start().await;
    let admin = env.token("admin");
    let admin = Some(admin.as_str());
    let station_t = env.token("station");
    let station = Some(station_t.as_str());
    let mes_t = env.token("mes");
    let mes = Some(mes_t.as_str());

    // keygen
    let out = ok(ctl(
        &env,
        None,
        &["keygen", "--alg", "ed25519", "--out", p(&env.path("line9"))],
    )
    .await);
    assert!(out.contains("sha256:"), "{out}");
    assert!(env.path("line9.pkcs8").exists() && env.path("line9.pub").exists());

    // station register / list / revoke, tables and JSON
    let out = ok(ctl(
        &env,
        admin,
        &[
            "station",
            "register",
            "line9",
            "--public-key",
            p(&env.path("line9.pub")),
            "--kinds",
            "provisioning",
            "--models",
            "PM-200",
        ],
    )
    .await);
    assert!(
        out.contains("line9") && out.contains("provisioning"),
        "{out}"
    );
    let out = ok(ctl(&env, admin, &["--json", "station", "list"]).await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["station_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dev-station", "line9"]);
    let out = ok(ctl(
        &env,
        admin,
        &["station", "revoke", "line9", "--reason", "decommissioned"],
    )
    .await);
    assert!(out.contains("REVOKED (decommissioned)"), "{out}");
    // A refused call exits non-zero with the reason.
    let r = ctl(&env, station, &["station", "list"]).await;
    assert_eq!(r.0, 1);
    assert!(r.2.contains("PermissionDenied"), "{}", r.2);

    // record sign / submit / get / list
    let unit_key = env.path("unit1");
    ok(ctl(&env, None, &["keygen", "--out", p(&unit_key)]).await);
    let spki = std::fs::read_to_string(env.path("unit1.pub")).unwrap();
    let prov = serde_json::json!({
        "station_id": "dev-station", "sequence": 1, "performed_at": "2026-11-28T09:14:03Z", "operator_id": "op-1",
        "serial": "CLI-0001", "model": "PM-200", "hw_version": "B",
        "device_key": {"alg": "ES256", "spki_der": spki.trim()}, "firmware": []
    });
    std::fs::write(env.path("prov.json"), prov.to_string()).unwrap();
    let station_pkcs8 = env.dev_dir().join("station.pkcs8");
    ok(ctl(
        &env,
        None,
        &[
            "record",
            "sign",
            p(&env.path("prov.json")),
            "--kind",
            "provisioning",
            "--key",
            p(&station_pkcs8),
            "--out",
            p(&env.path("prov.dsse.json")),
        ],
    )
    .await);
    let out = ok(ctl(
        &env,
        station,
        &["record", "submit", p(&env.path("prov.dsse.json"))],
    )
    .await);
    assert!(out.contains("provisioning for CLI-0001"), "{out}");
    let record_id = out.split_whitespace().next().unwrap().to_owned();
    let again = ok(ctl(
        &env,
        station,
        &["record", "submit", p(&env.path("prov.dsse.json"))],
    )
    .await);
    assert!(again.contains("(already stored)"), "{again}");
    let out = ok(ctl(&env, admin, &["record", "get", &record_id]).await);
    assert!(
        out.contains("CLI-0001") && out.contains("dev-station"),
        "{out}"
    );
    let out = ok(ctl(&env, admin, &["--json", "record", "list", "CLI-0001"]).await);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // baseline publish / get / list
    let baseline = serde_json::json!({
        "model": "PM-200", "hw_versions": ["B"], "version": 1, "effective_at": "2026-01-01T00:00:00Z",
        "firmware": {"components": [{"name": "bootloader", "min_svn": 4, "approved": [{"version": "2.1.0", "svn": 4,
            "digest": attestd_client::core::ids::Digest::of(b"bootloader 2.1.0").to_hex()}]}]},
        "calibration": {"required": false, "max_interval_days": 365},
        "security": {"require_secure_boot": true, "min_dbgstat": 3},
        "freshness": {"max_evidence_age_hours": 24, "nonce_required": true}
    });
    std::fs::write(env.path("baseline.json"), baseline.to_string()).unwrap();
    let r1 = env.dev_dir().join("release-1.pkcs8");
    let r2 = env.dev_dir().join("release-2.pkcs8");
    let r = ctl(
        &env,
        admin,
        &[
            "baseline",
            "publish",
            p(&env.path("baseline.json")),
            "--release-key",
            p(&r1),
        ],
    )
    .await;
    assert_eq!(r.0, 1, "one release signature of two is refused");
    assert!(r.2.contains("required"), "{}", r.2);
    let out = ok(ctl(
        &env,
        admin,
        &[
            "baseline",
            "publish",
            p(&env.path("baseline.json")),
            "--release-key",
            p(&r1),
            "--release-key",
            p(&r2),
        ],
    )
    .await);
    assert!(out.contains("baseline PM-200 v1 accepted: ACTIVE"), "{out}");
    let out = ok(ctl(&env, mes, &["baseline", "get", "PM-200"]).await);
    assert!(out.contains("ACTIVE"), "{out}");
    let out = ok(ctl(&env, mes, &["--json", "baseline", "list", "PM-200"]).await);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["version"],
        1
    );

    // The unit boots (through the SDK, as a device would).
    let client = attestd_client::Client::connect(&env.endpoint, None)
        .await
        .unwrap();
    let dkey = attestd_client::SigningKey::from_pkcs8(
        attestd_client::core::keys::KeyAlg::Es256,
        &base64_decode(&std::fs::read_to_string(env.path("unit1.pkcs8")).unwrap()),
    )
    .unwrap();
    let nonce = client
        .device()
        .get_challenge(attestd_client::pb::GetChallengeRequest {
            serial: "CLI-0001".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .nonce;
    let serial = attestd_client::core::ids::Serial::parse(
        "CLI-0001",
        attestd_client::core::Reason::FieldInvalid,
        "s",
    )
    .unwrap();
    let now = attestd_client::core::time::UnixTime(0);
    let mut claims = attestd_client::evidence::sample_claims(&serial, "PM-200", "B", 1, now);
    claims.nonce = Some(nonce);
    client
        .device()
        .submit_evidence(attestd_client::pb::SubmitEvidenceRequest {
            evidence: attestd_client::evidence::sign_evidence(&claims, &dkey),
            ..Default::default()
        })
        .await
        .unwrap();

    // device get / list / assign / history
    let out = ok(ctl(&env, admin, &["device", "get", "CLI-0001"]).await);
    assert!(out.contains("status      TRUSTED"), "{out}");
    let out = ok(ctl(
        &env,
        admin,
        &[
            "device", "assign", "CLI-0001", "--tenant", "st-mary", "--site", "ward-3",
        ],
    )
    .await);
    assert!(out.contains("st-mary / ward-3"), "{out}");
    let out = ok(ctl(
        &env,
        admin,
        &[
            "device", "list", "--status", "trusted", "--tenant", "st-mary",
        ],
    )
    .await);
    assert!(
        out.contains("CLI-0001") && out.contains("st-mary/ward-3"),
        "{out}"
    );
    let out = ok(ctl(
        &env,
        admin,
        &["--json", "device", "list", "--status", "untrusted"],
    )
    .await);
    assert_eq!(out.trim(), "[]");
    let out = ok(ctl(&env, admin, &["device", "history", "CLI-0001"]).await);
    assert!(out.contains("record") && out.contains("evidence"), "{out}");

    // fleet summary / watch
    let out = ok(ctl(&env, admin, &["fleet", "summary"]).await);
    assert!(out.contains("1 units: TRUSTED 1"), "{out}");
    let out = ok(ctl(
        &env,
        admin,
        &["--json", "fleet", "summary", "--group-by", "site"],
    )
    .await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["groups"][0]["key"], "ward-3");
    // The summary says which change it reflects, and how to watch on.
    let cursor = v["cursor"].as_str().unwrap().to_owned();
    let out = ok(ctl(&env, admin, &["fleet", "summary"]).await);
    assert!(
        out.contains(&format!("fleet watch --after {cursor}")),
        "{out}"
    );
    let out = ok(ctl(
        &env,
        admin,
        &["fleet", "watch", "--after", "0", "--count", "1"],
    )
    .await);
    assert!(out.contains("CLI-0001") && out.contains("UNKNOWN"), "{out}");

    // release check (one, and a file) / quarantine
    let out = ok(ctl(&env, mes, &["release", "check", "CLI-0001"]).await);
    assert!(
        out.contains("RELEASE") && out.contains("1 of 1 released"),
        "{out}"
    );
    std::fs::write(env.path("pallet.txt"), "# pallet 7\nCLI-0001\nCLI-0404\n").unwrap();
    let r = ctl(
        &env,
        mes,
        &["release", "check", "--file", p(&env.path("pallet.txt"))],
    )
    .await;
    assert_eq!(r.0, 3, "a held unit makes the exit status 3: {}", r.1);
    assert!(
        r.1.contains("NOT_ENROLLED") && r.1.contains("1 of 2 released"),
        "{}",
        r.1
    );
    let out = ok(ctl(
        &env,
        admin,
        &["release", "quarantine", "CLI-0001", "--reason", "returned"],
    )
    .await);
    assert!(out.contains("quarantined = true"), "{out}");
    let r = ctl(&env, mes, &["--json", "release", "check", "CLI-0001"]).await;
    assert_eq!(r.0, 3);
    let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(v[0]["decision"], "HOLD");
    assert_eq!(v[0]["reasons"][0]["code"], "QUARANTINED");

    // audit head / export / verify (offline), and tampering named by line
    let out = ok(ctl(&env, admin, &["audit", "head"]).await);
    assert!(out.starts_with("sequence "), "{out}");
    // Wait for a checkpoint to sign the head (the interval is a second here).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = ok(ctl(&env, admin, &["audit", "head"]).await);
        if out.contains("newest checkpoint: entry") {
            break;
        }
        assert!(out.contains("no signed checkpoint yet"), "{out}");
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let chain = env.path("chain.jsonl");
    let out = ok(ctl(&env, admin, &["audit", "export", "--out", p(&chain)]).await);
    assert!(out.contains("entries written"), "{out}");
    // Without the key, a consistent export is not enough: its end is unproven.
    let r = ctl(&env, None, &["audit", "verify", p(&chain)]).await;
    assert_eq!(r.0, 1, "verify without --key fails closed: {}", r.1);
    assert!(r.2.contains("only the service key proves"), "{}", r.2);
    let out = ok(ctl(&env, None, &["audit", "verify", p(&chain), "--no-key"]).await);
    assert!(out.starts_with("ok without key: "), "{out}");
    assert!(out.contains("may be missing at the end"), "{out}");
    let service_key = env.path("audit-key.pkcs8.pub");
    let out = ok(ctl(
        &env,
        None,
        &["audit", "verify", p(&chain), "--key", p(&service_key)],
    )
    .await);
    assert!(out.contains("checkpoints signed by sha256:"), "{out}");
    let r = ctl(
        &env,
        None,
        &[
            "audit",
            "verify",
            p(&chain),
            "--key",
            p(&env.path("line9.pub")),
        ],
    )
    .await;
    assert_eq!(r.0, 1, "a checkpoint signed by another key fails: {}", r.1);
    assert!(r.2.contains("not signed by this key"), "{}", r.2);
    let text = std::fs::read_to_string(&chain).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(lines.len() >= 8, "{} entries", lines.len());
    assert!(lines
        .iter()
        .any(|l| l.contains("\"release.decide\"") && l.contains("dev-mes")));
    lines[3] = lines[3].replacen("\"target\":\"", "\"target\":\"X", 1);
    std::fs::write(env.path("tampered.jsonl"), lines.join("\n")).unwrap();
    let r = ctl(
        &env,
        None,
        &["audit", "verify", p(&env.path("tampered.jsonl"))],
    )
    .await;
    assert_eq!(r.0, 1);
    assert!(r.2.contains("(line 4) does not verify"), "{}", r.2);

    // Cuts: the first entry removed, or the export cut after any entry,
    // fail naming the missing entries, with the key and without it.
    let full: Vec<String> = text.lines().map(String::from).collect();
    let n = full.len() - 2; // the range line, n entries, the signed head
    let cut = env.path("cut.jsonl");
    let verify_cut = |lines: Vec<String>, key: bool| {
        std::fs::write(&cut, lines.join("\n") + "\n").unwrap();
        let mut args = vec!["audit", "verify", p(&cut)];
        if key {
            args.extend(["--key", p(&service_key)]);
        } else {
            args.push("--no-key");
        }
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = ctl(env, None, &args).await;
            assert_eq!(r.0, 1, "a cut export verified: {}", r.1);
            r.2
        }
    };
    let mut no_first = full.clone();
    no_first.remove(1);
    for key in [true, false] {
        let err = verify_cut(no_first.clone(), key).await;
        assert!(
            err.contains("entries 1..1 missing at the start: the export states it begins at 1"),
            "{err}"
        );
    }
    for keep in 0..n {
        let gap = format!("entries {}..{n} missing", keep + 1);
        // Entries removed from the end, the signed head kept.
        let mut lines = full[..1 + keep].to_vec();
        lines.push(full[n + 1].clone());
        let err = verify_cut(lines, keep % 2 == 0).await;
        assert!(
            err.contains(&format!(
                "export ends at {keep} but its signed head is at {n}: {gap}"
            )),
            "{err}"
        );
        // The file cut after the entry.
        let err = verify_cut(full[..1 + keep].to_vec(), keep % 2 == 1).await;
        assert!(
            err.contains(&format!(
                "export ends at {keep} but its stated range ends at {n}: {gap}"
            )),
            "{err}"
        );
    }
    // An export without a range line (the format before it) proves nothing.
    let err = verify_cut(full[1..=n].to_vec(), true).await;
    assert!(err.contains("states no range"), "{err}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}
