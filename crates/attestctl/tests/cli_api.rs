//! attestctl against a server with the dev kit: `--json` prints whole API
//! messages (checked field by field against the API's descriptors and
//! against what the server answers the SDK), the newer commands (evidence,
//! device revoke, concessions, audit list/tail), and the dev kit's
//! hospital-it and auditor tokens.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_client::core::ids::Serial;
use attestd_client::core::keys::KeyAlg;
use attestd_client::core::time::UnixTime;
use attestd_client::core::Reason;
use attestd_client::pb;
use attestd_client::SigningKey;
use common::schema::{whole, Schema};
use common::{base64_decode, ctl, ok, p, start, Env};
use serde_json::Value;

/// Runs the demo with 3 units: one TRUSTED, one held for FIRMWARE_REVOKED
/// only, one for that and a calibration mismatch. Returns them in that order.
async fn demo(env: &Env) -> [pb::Device; 3] {
    ok(ctl(
        env,
        None,
        &["demo", "--dev-dir", p(&env.dev_dir()), "--units", "3"],
    )
    .await);
    let mut devices = env
        .client(Some("admin"))
        .await
        .fleet()
        .list_devices(pb::ListDevicesRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 3);
    devices.sort_by(|a, b| a.serial.cmp(&b.serial));
    let codes = |d: &pb::Device| -> Vec<String> {
        d.appraisal
            .as_ref()
            .unwrap()
            .reasons
            .iter()
            .map(|r| r.code.clone())
            .collect()
    };
    assert!(codes(&devices[0]).is_empty());
    assert_eq!(codes(&devices[1]), ["FIRMWARE_REVOKED"]);
    devices.try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_every_field_of_the_api_message() {
    let env = start().await;
    let schema = Schema::load();
    let [trusted, revoked_fw, _] = demo(&env).await;
    let admin_t = env.token("admin");
    let admin = Some(admin_t.as_str());
    let mes_t = env.token("mes");
    let sdk = env.client(Some("admin")).await;

    // device get: the Device exactly as the server answers the SDK.
    for d in [&trusted, &revoked_fw] {
        let out = ok(ctl(&env, admin, &["--json", "device", "get", &d.serial]).await);
        let got: pb::Device = whole(&schema, ".attestd.v1.Device", &out);
        let want = sdk
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: d.serial.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, want);
        // Fields at their default value are written too.
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["revoked"], false, "{out}");
        assert_eq!(v["quarantineReason"], "", "{out}");
        assert!(v["appraisal"]["appraisedAt"].is_string(), "{out}");
    }

    // fleet summary, with and without groups.
    for (args, group) in [
        (
            &["--json", "fleet", "summary"][..],
            pb::SummaryGroup::Unspecified,
        ),
        (
            &["--json", "fleet", "summary", "--group-by", "model"],
            pb::SummaryGroup::Model,
        ),
    ] {
        let out = ok(ctl(&env, admin, args).await);
        let got: pb::FleetSummary = whole(&schema, ".attestd.v1.FleetSummary", &out);
        let want = sdk
            .fleet()
            .get_fleet_summary(pb::GetFleetSummaryRequest {
                filter: None,
                group_by: group as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, want);
        assert_eq!(got.total, 3);
    }

    // release check: the decisions as the server stored them in the unit's
    // history (the same id, reasons, inputs, time and principal).
    for (d, code) in [(&trusted, 0), (&revoked_fw, 3)] {
        let r = ctl(
            &env,
            Some(&mes_t),
            &["--json", "release", "check", &d.serial],
        )
        .await;
        assert_eq!(r.0, code, "{}{}", r.1, r.2);
        let got: pb::CheckReleaseBatchResponse =
            whole(&schema, ".attestd.v1.CheckReleaseBatchResponse", &r.1);
        assert_eq!(got.results.len(), 1);
        let history = sdk
            .fleet()
            .list_device_history(pb::ListDeviceHistoryRequest {
                serial: d.serial.clone(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let stored = history
            .entries
            .into_iter()
            .filter_map(|e| match e.entry {
                Some(pb::history_entry::Entry::ReleaseDecision(r)) => Some(r),
                _ => None,
            })
            .find(|r| r.decision_id == got.results[0].decision_id)
            .expect("the decision is in the unit's history");
        assert_eq!(got.results[0], stored);
    }

    // More commands, each against the SDK's answer.
    let out = ok(ctl(&env, admin, &["--json", "device", "list"]).await);
    let got: pb::ListDevicesResponse = whole(&schema, ".attestd.v1.ListDevicesResponse", &out);
    let want = sdk
        .fleet()
        .list_devices(pb::ListDevicesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, want);
    let out = ok(ctl(
        &env,
        admin,
        &["--json", "device", "history", &trusted.serial],
    )
    .await);
    whole::<pb::ListDeviceHistoryResponse>(&schema, ".attestd.v1.ListDeviceHistoryResponse", &out);
    let out = ok(ctl(&env, admin, &["--json", "baseline", "get", "PM-200"]).await);
    let got: pb::Baseline = whole(&schema, ".attestd.v1.Baseline", &out);
    let want = sdk
        .baselines()
        .get_baseline(pb::GetBaselineRequest {
            model: "PM-200".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, want);
    let out = ok(ctl(&env, admin, &["--json", "station", "list"]).await);
    whole::<pb::ListStationsResponse>(&schema, ".attestd.v1.ListStationsResponse", &out);
    let out = ok(ctl(&env, admin, &["--json", "audit", "list", "--limit", "5"]).await);
    let got: pb::ListAuditEventsResponse =
        whole(&schema, ".attestd.v1.ListAuditEventsResponse", &out);
    let want = sdk
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.events, want.events);
    assert_eq!(got.next_after_sequence, 5);

    // The check itself fails on a field left out or added.
    let out = ok(ctl(&env, admin, &["--json", "device", "get", &trusted.serial]).await);
    let mut v: Value = serde_json::from_str(&out).unwrap();
    v.as_object_mut().unwrap().remove("hwVersion");
    v["appraisal"]["trustVector"]
        .as_object_mut()
        .unwrap()
        .remove("storageOpaque");
    v["firmware"][0]["svn"] = Value::from(4);
    v["tier"] = Value::from("AFFIRMING");
    assert_eq!(
        schema.problems(".attestd.v1.Device", &v),
        [
            ".attestd.v1.Device.tier: no field of .attestd.v1.Device",
            ".attestd.v1.Device.hwVersion: missing",
            ".attestd.v1.Device.appraisal.trustVector.storageOpaque: missing",
            ".attestd.v1.Device.firmware[0].svn: 4 is not a Uint64 in proto3 JSON",
        ]
    );
}

/// Provisions a new unit through the SDK (as the dev station); returns its key.
async fn provision(env: &Env, serial: &str) -> SigningKey {
    let admin = env.client(Some("admin")).await;
    let seq = admin
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stations
        .into_iter()
        .find(|s| s.station_id == "dev-station")
        .unwrap()
        .last_sequence;
    let station_key = SigningKey::from_pkcs8(
        KeyAlg::Es256,
        &base64_decode(&std::fs::read_to_string(env.dev_dir().join("station.pkcs8")).unwrap()),
    )
    .unwrap();
    let key = SigningKey::generate(KeyAlg::Ed25519).unwrap();
    let doc = attestd_client::sample::provisioning_doc(
        "dev-station",
        seq + 1,
        serial,
        "PM-200",
        &key,
        UnixTime(1_780_000_000),
    );
    env.client(Some("station"))
        .await
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(attestd_client::record::sign_provisioning(
                &doc,
                &station_key,
            )),
        })
        .await
        .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_revocation_concessions_and_audit_paging() {
    let env = start().await;
    let schema = Schema::load();
    let [trusted, revoked_fw, _] = demo(&env).await;
    let admin_t = env.token("admin");
    let admin = Some(admin_t.as_str());
    let mes_t = env.token("mes");
    let mes = Some(mes_t.as_str());
    let auditor_t = env.token("auditor");
    let auditor = Some(auditor_t.as_str());

    // evidence challenge / submit (no token: the device's signature is its
    // credential) / get.
    let key = provision(&env, "CLI-EV-1").await;
    let out = ok(ctl(&env, None, &["--json", "evidence", "challenge", "CLI-EV-1"]).await);
    let challenge: pb::GetChallengeResponse =
        whole(&schema, ".attestd.v1.GetChallengeResponse", &out);
    assert_eq!(challenge.nonce.len(), 32);
    let serial = Serial::parse("CLI-EV-1", Reason::FieldInvalid, "serial").unwrap();
    let now = UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let mut claims = attestd_client::evidence::sample_claims(&serial, "PM-200", "B", 1, now);
    claims.nonce = Some(challenge.nonce.clone());
    let cose = attestd_client::evidence::sign_evidence(&claims, &key);
    std::fs::write(env.path("ev.cose"), &cose).unwrap();
    let out = ok(ctl(
        &env,
        None,
        &["--json", "evidence", "submit", p(&env.path("ev.cose"))],
    )
    .await);
    let receipt: pb::SubmitEvidenceResponse =
        whole(&schema, ".attestd.v1.SubmitEvidenceResponse", &out);
    assert!(!receipt.evidence_id.is_empty());
    assert!(receipt.appraisal.is_some());
    // The nonce is single-use: the same evidence again is refused.
    let r = ctl(&env, None, &["evidence", "submit", p(&env.path("ev.cose"))]).await;
    assert_eq!(r.0, 1, "{}", r.1);
    assert!(r.2.starts_with("attestctl: "), "{}", r.2);
    // The auditor reads it back, byte for byte.
    let out = ok(ctl(
        &env,
        auditor,
        &[
            "--json",
            "evidence",
            "get",
            &receipt.evidence_id,
            "--out",
            p(&env.path("back.cose")),
        ],
    )
    .await);
    let stored: pb::StoredEvidence = whole(&schema, ".attestd.v1.StoredEvidence", &out);
    assert_eq!(stored.cose_sign1, cose);
    assert!(stored.nonce_fresh);
    assert_eq!(std::fs::read(env.path("back.cose")).unwrap(), cose);
    let out = ok(ctl(&env, auditor, &["evidence", "get", &receipt.evidence_id]).await);
    assert!(out.contains("serial      CLI-EV-1 bootcount 1"), "{out}");

    // concession grant: the FIRMWARE_REVOKED unit is held, then released
    // under concession; identity codes are refused.
    let r = ctl(&env, mes, &["release", "check", &revoked_fw.serial]).await;
    assert_eq!(r.0, 3, "{}", r.1);
    let r = ctl(
        &env,
        admin,
        &[
            "concession",
            "grant",
            &revoked_fw.serial,
            "--waive",
            "IDENTITY_MISMATCH",
            "--justification",
            "no",
            "--meaning",
            "no",
        ],
    )
    .await;
    assert_eq!(r.0, 1);
    assert!(
        r.2.contains("InvalidArgument") && r.2.contains("cannot be waived"),
        "{}",
        r.2
    );
    let out = ok(ctl(
        &env,
        admin,
        &[
            "--json",
            "concession",
            "grant",
            &revoked_fw.serial,
            "--waive",
            "FIRMWARE_REVOKED",
            "--justification",
            "field fix scheduled, CVE not reachable in this configuration",
            "--meaning",
            "approved under concession per CAPA-123",
        ],
    )
    .await);
    let concession: pb::Concession = whole(&schema, ".attestd.v1.Concession", &out);
    assert_eq!(concession.waived_codes, ["FIRMWARE_REVOKED"]);
    assert_eq!(concession.granted_by, "dev-admin");
    let out = ok(ctl(&env, mes, &["release", "check", &revoked_fw.serial]).await);
    assert!(
        out.contains("RELEASE (under concession)") && out.contains("FIRMWARE_REVOKED (waived)"),
        "{out}"
    );
    // Concessions have no list RPC; the audit trail names them.
    let out = ok(ctl(
        &env,
        auditor,
        &["--json", "audit", "list", "--action", "concession.grant"],
    )
    .await);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(v["events"][0]["target"], revoked_fw.serial.as_str());
    assert!(
        v["events"][0]["details"]
            .as_str()
            .unwrap()
            .starts_with(&concession.concession_id),
        "{out}"
    );

    // device revoke: the trusted unit becomes UNTRUSTED and is held.
    let r = ctl(&env, admin, &["device", "revoke", &trusted.serial]).await;
    assert_eq!(r.0, 2, "--reason is required: {}", r.2);
    let out = ok(ctl(
        &env,
        admin,
        &[
            "--json",
            "device",
            "revoke",
            &trusted.serial,
            "--reason",
            "device key cloned",
        ],
    )
    .await);
    let revoked: pb::RevokeDeviceResponse =
        whole(&schema, ".attestd.v1.RevokeDeviceResponse", &out);
    assert!(revoked.revoked);
    assert_eq!(revoked.reason, "device key cloned");
    let out = ok(ctl(&env, admin, &["device", "get", &trusted.serial]).await);
    assert!(
        out.contains("status      UNTRUSTED") && out.contains("revoked     device key cloned"),
        "{out}"
    );
    let r = ctl(&env, mes, &["release", "check", &trusted.serial]).await;
    assert_eq!(r.0, 3);
    assert!(r.1.contains("DEVICE_REVOKED"), "{}", r.1);

    // audit list pages: --limit, then --after where it stopped, equals one
    // longer list; tail shows the newest entries.
    let list = |args: Vec<String>| {
        let env = &env;
        async move {
            let mut all = vec!["--json".to_owned(), "audit".into(), "list".into()];
            all.extend(args);
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            let out = ok(ctl(env, auditor, &args).await);
            serde_json::from_str::<pb::ListAuditEventsResponse>(&out).unwrap()
        }
    };
    let first = list(vec!["--limit".into(), "3".into()]).await;
    assert_eq!(
        first.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(first.next_after_sequence, 3);
    let second = list(vec![
        "--after".into(),
        "3".into(),
        "--limit".into(),
        "4".into(),
    ])
    .await;
    let both = list(vec!["--limit".into(), "7".into()]).await;
    assert_eq!(
        [first.events, second.events].concat(),
        both.events,
        "pages follow each other without gap or overlap"
    );
    let everything = list(vec!["--limit".into(), "100000".into()]).await;
    assert_eq!(everything.next_after_sequence, 0, "nothing more now");
    let decisions = list(vec![
        "--limit".into(),
        "100000".into(),
        "--action".into(),
        "release.decide".into(),
        "--principal".into(),
        "dev-mes".into(),
    ])
    .await;
    assert!(decisions.events.len() >= 4);
    assert!(decisions
        .events
        .iter()
        .all(|e| e.action == "release.decide" && e.principal == "dev-mes"));
    let out = ok(ctl(&env, auditor, &["audit", "list", "--limit", "2"]).await);
    assert!(
        out.starts_with("SEQ") && out.contains("more: `attestctl audit list --after 2` goes on"),
        "{out}"
    );
    let head = everything.events.last().unwrap().sequence;
    let out = ok(ctl(&env, auditor, &["--json", "audit", "tail", "-n", "2"]).await);
    let tail: Vec<pb::AuditEvent> = out
        .lines()
        .map(|l| whole(&schema, ".attestd.v1.AuditEvent", l))
        .collect();
    // Checkpoints may have been appended since: the newest two at least.
    assert_eq!(tail.len(), 2, "{out}");
    assert!(tail[0].sequence >= head - 1 && tail[1].sequence == tail[0].sequence + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_kit_hospital_it_and_auditor_tokens() {
    let env = start().await;
    let [mine, other, _] = demo(&env).await;
    let admin_t = env.token("admin");
    let it_t = env.token("hospital-it");
    let it = Some(it_t.as_str());
    let auditor_t = env.token("auditor");
    let auditor = Some(auditor_t.as_str());
    ok(ctl(
        &env,
        Some(&admin_t),
        &[
            "device",
            "assign",
            &mine.serial,
            "--tenant",
            "dev-hospital",
            "--site",
            "ward-3",
        ],
    )
    .await);

    // hospital-it (tenant dev-hospital): its own units, nothing else.
    let out = ok(ctl(&env, it, &["device", "get", &mine.serial]).await);
    assert!(out.contains("assigned    dev-hospital / ward-3"), "{out}");
    let out = ok(ctl(&env, it, &["--json", "fleet", "summary"]).await);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], "1", "only its tenant's unit: {out}");
    let r = ctl(&env, it, &["device", "get", &other.serial]).await;
    assert_eq!(r.0, 1, "another tenant's unit: {}", r.1);
    assert!(r.2.contains("NotFound"), "{}", r.2);
    let r = ctl(&env, it, &["release", "check", &mine.serial]).await;
    assert_eq!(r.0, 1, "{}", r.1);
    assert!(r.2.contains("PermissionDenied"), "{}", r.2);

    // auditor: the audit trail and raw evidence, no changes.
    let out = ok(ctl(&env, auditor, &["audit", "head"]).await);
    assert!(out.starts_with("sequence "), "{out}");
    let out = ok(ctl(&env, auditor, &["device", "history", &mine.serial]).await);
    assert!(out.contains("evidence"), "{out}");
    let r = ctl(
        &env,
        auditor,
        &["device", "revoke", &mine.serial, "--reason", "x"],
    )
    .await;
    assert_eq!(r.0, 1, "{}", r.1);
    assert!(r.2.contains("PermissionDenied"), "{}", r.2);
    let r = ctl(&env, auditor, &["release", "quarantine", &mine.serial]).await;
    assert_eq!(r.0, 1, "{}", r.1);
    assert!(r.2.contains("PermissionDenied"), "{}", r.2);
}
