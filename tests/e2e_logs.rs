//! No token, private key or evidence signature ever reaches the logs, even
//! at the most verbose level (the server's own logs and its libraries').

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_client::core::cose::CoseSign1;
use attestd_client::core::ids::hex;
use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::SigningKey;
use base64::Engine as _;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let server = TestServer::start_with(Options {
        log: Some("trace"),
        ..Options::default()
    });
    let admin = server.admin().await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let device_key = SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(
        &station,
        "line1-prov",
        &st_key,
        1,
        "PM200-000001",
        &device_key,
    )
    .await
    .unwrap();
    let device = server.client(None).await;
    let mut c = claims("PM200-000001", 1);
    c.nonce = Some(challenge(&device, "PM200-000001").await);
    let token = sign_evidence(&c, &device_key);
    let sig = CoseSign1::decode(&token).unwrap().signature.to_vec();
    submit(&device, token).await.unwrap();
    // Refused calls, with a wrong token and with a forged signature.
    let wrong = "not-a-real-token-but-secret-all-the-same";
    let _ = admin
        .with_token(Some(wrong))
        .unwrap()
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await;
    let mut c2 = claims("PM200-000001", 2);
    c2.nonce = Some(challenge(&device, "PM200-000001").await);
    let forged = sign_evidence(&c2, &SigningKey::generate(KeyAlg::Es256).unwrap());
    let forged_sig = CoseSign1::decode(&forged).unwrap().signature.to_vec();
    let _ = submit(&device, forged).await;
    for t in [MES_TOKEN, AUDITOR_TOKEN, HOSPITAL_TOKEN] {
        let _ = admin
            .with_token(Some(t))
            .unwrap()
            .fleet()
            .get_fleet_summary(pb::GetFleetSummaryRequest::default())
            .await;
    }

    let log = server.log();
    assert!(
        log.lines().count() > 50,
        "the trace log is there ({} lines)",
        log.lines().count()
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), ADMIN_TOKEN.into()),
        ("station token".into(), station_token("line1-prov").into()),
        ("mes token".into(), MES_TOKEN.into()),
        ("auditor token".into(), AUDITOR_TOKEN.into()),
        ("hospital token".into(), HOSPITAL_TOKEN.into()),
        ("wrong token".into(), wrong.into()),
        ("device private key".into(), b64.encode(device_key.pkcs8())),
        ("station private key".into(), b64.encode(st_key.pkcs8())),
    ];
    for (what, s) in [
        ("evidence signature", &sig),
        ("forged signature", &forged_sig),
    ] {
        secrets.push((format!("{what} (hex)"), hex(s)));
        secrets.push((format!("{what} (base64)"), b64.encode(s)));
    }
    for (what, s) in &secrets {
        assert!(!log.contains(s.as_str()), "{what} appears in the log");
    }
    // Our own messages say "Bearer token" / "Bearer <token>"; nothing else may
    // follow the word (a header value would).
    let lower = log.to_ascii_lowercase();
    for (i, _) in lower.match_indices("bearer ") {
        let next = lower.get(i + 7..).unwrap_or("");
        assert!(
            next.starts_with("token") || next.starts_with("<token>"),
            "something like an authorization header appears in the log: {:?}",
            log.get(i..)
                .unwrap_or("")
                .chars()
                .take(40)
                .collect::<String>()
        );
    }
}
