//! Every attestctl command, end to end, against a freshly started server
//! with the dev kit (what `attestd serve --dev` makes), the demo with its
//! output checked for the expected verdicts, and output cut by a closed pipe.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use attestd_client::core::keys::KeyAlg;
use attestd_client::{pb, SigningKey};
use common::{base64_decode, ctl, ok, p, start, Env};

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
    // The API's ListStationsResponse, every page in one, in the proto3
    // JSON mapping (lowerCamelCase names).
    let ids: Vec<&str> = v["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stationId"].as_str().unwrap())
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
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["records"]
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
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["baselines"][0]["version"],
        "1",
        "64-bit integers are strings in the proto3 JSON mapping"
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
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"], serde_json::json!([]), "{out}");
    assert!(!v["cursor"].as_str().unwrap().is_empty(), "{out}");
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
    assert_eq!(v["results"][0]["decision"], "DECISION_HOLD");
    assert_eq!(v["results"][0]["reasons"][0]["code"], "QUARANTINED");

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

/// Spawns attestctl with stdout a pipe, reads its first line (at most 4 KiB
/// of it), closes the pipe, and waits for attestctl to end, with `poke`
/// appending an audit entry (a station registration) every 100 ms meanwhile.
/// Returns (exit code, what was read, stderr).
async fn read_then_close(
    env: &Env,
    token: Option<&str>,
    args: &[&str],
    poke: Option<&attestd_client::Client>,
) -> (i32, String, String) {
    let mut child = env
        .command(token, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut r = BufReader::with_capacity(4096, stdout);
        let mut got = Vec::new();
        while got.len() < 4096 && !got.ends_with(b"\n") {
            let buf = r.fill_buf().unwrap();
            if buf.is_empty() {
                break;
            }
            let n = buf
                .iter()
                .position(|b| *b == b'\n')
                .map_or(buf.len(), |i| i + 1)
                .min(4096 - got.len());
            got.extend_from_slice(&buf[..n]);
            r.consume(n);
        }
        String::from_utf8_lossy(&got).into_owned()
        // The reader, the pipe's only read end, is dropped here.
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), first, err);
        }
        assert!(Instant::now() < deadline, "attestctl did not end");
        if let Some(admin) = poke {
            n += 1;
            let key = SigningKey::generate(KeyAlg::Ed25519).unwrap();
            admin
                .admin()
                .register_station(pb::RegisterStationRequest {
                    station_id: format!("pipe-{n}"),
                    public_key: key.public_key().spki_der().to_vec(),
                    allowed_kinds: vec![pb::RecordKind::Calibration as i32],
                    allowed_models: vec!["PM-200".into()],
                    allow_rekey: false,
                })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nothing on stderr but the progress of a long check: no panic, no error.
#[track_caller]
fn assert_only_progress(err: &str) {
    assert!(
        err.lines().all(|l| l.starts_with("checking ")),
        "stderr: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_output_quietly() {
    let env = start().await;
    let mes_t = env.token("mes");
    let admin_t = env.token("admin");

    // A table longer than a pipe holds: 5,000 serials (none enrolled, so
    // every one is held). The exit status stays 3: a cut output never turns
    // a HOLD into success.
    let serials: String = (0..5000).map(|i| format!("CLI-PIPE-{i:05}\n")).collect();
    std::fs::write(env.path("pallet.txt"), serials).unwrap();
    let pallet = env.path("pallet.txt");
    let (code, first, err) = read_then_close(
        &env,
        Some(&mes_t),
        &["release", "check", "--file", p(&pallet)],
        None,
    )
    .await;
    assert!(first.starts_with("SERIAL"), "{first}");
    assert_only_progress(&err);
    assert_eq!(code, 3, "held units, output cut");

    // The same as JSON: one line longer than a pipe holds, cut after 4 KiB.
    let (code, first, err) = read_then_close(
        &env,
        Some(&mes_t),
        &["--json", "release", "check", "--file", p(&pallet)],
        None,
    )
    .await;
    assert!(
        first.starts_with("{\"results\":[") && first.len() == 4096,
        "{first}"
    );
    assert_only_progress(&err);
    assert_eq!(code, 3);

    // A follower: `audit tail -f` prints an entry, its reader goes away,
    // and the next entry it writes ends it quietly with status 0.
    let admin = env.client(Some("admin")).await;
    let (code, first, err) = read_then_close(
        &env,
        Some(&admin_t),
        &["audit", "tail", "-n", "1", "-f", "--interval-ms", "100"],
        Some(&admin),
    )
    .await;
    assert!(first.ends_with('\n'), "{first}");
    assert_eq!(err, "", "nothing on stderr: no panic, no error");
    assert_eq!(code, 0);
}

/// `result verify` checks a result token against the server's keys, or
/// offline against a JWK Set file, and refuses a changed token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_verify_checks_tokens_online_and_offline() {
    let env = start().await;
    let mes = env.token("mes");
    let c = attestd_client::Client::connect(&env.endpoint, Some(&mes))
        .await
        .unwrap();
    let d = c
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "CLI-NOBODY".into(),
            want_result_token: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!d.result_token.is_empty());
    // Online: the keys come from the server (no token needed).
    let out = ok(ctl(&env, None, &["result", "verify", &d.result_token]).await);
    assert!(
        out.contains("verified: CLI-NOBODY contraindicated HOLD"),
        "{out}"
    );
    // Offline: a JWK Set file, and the token from a file.
    let keys = c
        .release()
        .get_result_keys(pb::GetResultKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    std::fs::write(env.path("jwks.json"), &keys.jwks_json).unwrap();
    std::fs::write(env.path("token.jwt"), &d.result_token).unwrap();
    let at = format!("@{}", p(&env.path("token.jwt")));
    let out = ok(ctl(
        &env,
        None,
        &[
            "--json",
            "result",
            "verify",
            &at,
            "--jwks",
            p(&env.path("jwks.json")),
        ],
    )
    .await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["submods"]["CLI-NOBODY"]["attestd.release-decision"], "HOLD",
        "{out}"
    );
    // One character of the signature changed: refused, exit non-zero.
    let mut bad = d.result_token.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = ctl(&env, None, &["result", "verify", &bad]).await;
    assert_ne!(r.0, 0);
    assert!(r.2.contains("does not verify"), "{}", r.2);
}
