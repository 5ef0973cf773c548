//! End-to-end: every refusal of the Foundation issue returns its documented
//! status and reason, and leaves the store exactly as it was.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_client::core::cbor::Encoder;
use attestd_client::core::cose::{encode_sign1, sig_structure, CoseAlg};
use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::{sign_evidence, sign_payload};
use attestd_client::pb;
use attestd_client::record::{sign_envelope, sign_provisioning};
use attestd_client::{Client, SigningKey};
use common::*;
use tonic::Code;

struct World {
    server: TestServer,
    admin: Client,
    station: Client,
    station_key: SigningKey,
    device: Client,
    auditor: Client,
    serial: String,
    key: SigningKey,
    other_serial: String,
    other_key: SigningKey,
    next_seq: u64,
}

impl World {
    async fn new(opts: Options) -> World {
        let server = TestServer::start_with(opts);
        let admin = server.admin().await;
        let station_key = register_station(
            &admin,
            "line1-prov",
            &[pb::RecordKind::Provisioning],
            &["PM-200"],
        )
        .await;
        let station = server.station("line1-prov").await;
        let device = server.client(None).await;
        let auditor = server.client(Some(AUDITOR_TOKEN)).await;
        let key = SigningKey::generate(KeyAlg::Es256).unwrap();
        let other_key = SigningKey::generate(KeyAlg::Ed25519).unwrap();
        provision(
            &station,
            "line1-prov",
            &station_key,
            1,
            "PM200-000001",
            &key,
        )
        .await
        .unwrap();
        provision(
            &station,
            "line1-prov",
            &station_key,
            2,
            "PM200-000002",
            &other_key,
        )
        .await
        .unwrap();
        World {
            server,
            admin,
            station,
            station_key,
            device,
            auditor,
            serial: "PM200-000001".into(),
            key,
            other_serial: "PM200-000002".into(),
            other_key,
            next_seq: 3,
        }
    }

    /// Everything that could change: stored totals and both units' histories.
    async fn snapshot(&self) -> ((u64, u64, u64, u64), usize, usize) {
        (
            self.server.stored(),
            history(&self.auditor, &self.serial).await.len(),
            history(&self.auditor, &self.other_serial).await.len(),
        )
    }

    async fn fresh_claims(&self) -> attestd_client::core::evidence::Claims {
        let mut c = claims(&self.serial, 7);
        c.nonce = Some(challenge(&self.device, &self.serial).await);
        c
    }
}

/// Runs `f`, asserts the refusal, and asserts nothing changed.
macro_rules! refused {
    ($w:expr, $code:expr, $reason:literal, $call:expr) => {{
        let before = $w.snapshot().await;
        let msg = assert_rejected($call.await, $code, $reason);
        assert_eq!($w.snapshot().await, before, "{} changed the store", $reason);
        msg
    }};
}

crate::both_backends!(bad_evidence_is_refused_and_stores_nothing);
async fn bad_evidence_is_refused_and_stores_nothing() {
    let w = World::new(Options::default()).await;

    // Signed by the wrong key (the other unit's): also a security event, since
    // someone is forging evidence for an enrolled unit.
    let events = w.server.metric("attestd_security_events_total");
    let c = w.fresh_claims().await;
    refused!(
        w,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        submit(&w.device, sign_evidence(&c, &w.other_key))
    );
    assert_eq!(w.server.metric("attestd_security_events_total"), events + 1);
    assert!(
        w.server
            .metric("attestd_rejected_total{reason=\"SIGNATURE_INVALID\"}")
            >= 1
    );

    // One bit flipped in the signature (the last byte of the token).
    let c = w.fresh_claims().await;
    let mut token = sign_evidence(&c, &w.key);
    let last = token.len() - 1;
    token[last] ^= 0x01;
    refused!(
        w,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        submit(&w.device, token)
    );

    // alg only in the unprotected header, correctly signed otherwise.
    let c = w.fresh_claims().await;
    let payload = c.to_cbor();
    let protected = [0xa0u8]; // an empty map
    let sig = w.key.sign_raw(&sig_structure(&protected, &[], &payload));
    let mut e = Encoder::new();
    e.tag(18)
        .array(4)
        .bytes(&protected)
        .map(1)
        .uint(1)
        .int(-7)
        .bytes(&payload)
        .bytes(&sig);
    let msg = refused!(
        w,
        Code::InvalidArgument,
        "ALG_NOT_ALLOWED",
        submit(&w.device, e.into_bytes())
    );
    assert!(msg.contains("protected"), "{msg}");

    // ES384 (-35).
    let c = w.fresh_claims().await;
    let mut p = Encoder::new();
    p.map(1).uint(1).int(-35);
    let protected = p.into_bytes();
    let sig = w
        .key
        .sign_raw(&sig_structure(&protected, &[], &c.to_cbor()));
    let msg = refused!(
        w,
        Code::InvalidArgument,
        "ALG_NOT_ALLOWED",
        submit(&w.device, encode_sign1(&protected, &c.to_cbor(), &sig))
    );
    assert!(msg.contains("-35"), "{msg}");

    // Random bytes, and a truncated token.
    let noise: Vec<u8> = (0..600u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    refused!(
        w,
        Code::InvalidArgument,
        "MALFORMED_COSE",
        submit(&w.device, noise)
    );
    let c = w.fresh_claims().await;
    let token = sign_evidence(&c, &w.key);
    refused!(
        w,
        Code::InvalidArgument,
        "MALFORMED_COSE",
        submit(&w.device, token[..token.len() / 2].to_vec())
    );

    // A 1 MiB request.
    refused!(
        w,
        Code::ResourceExhausted,
        "TOO_LARGE",
        submit(&w.device, vec![0u8; 1 << 20])
    );
    // Evidence over 16 KiB but under the request limit is refused by the evidence bound.
    refused!(
        w,
        Code::ResourceExhausted,
        "TOO_LARGE",
        submit(&w.device, vec![0u8; 20 * 1024])
    );

    // A claim of the wrong shape names the claim.
    let mut c = w.fresh_claims().await;
    c.components[0].name = String::new();
    let msg = refused!(
        w,
        Code::InvalidArgument,
        "CLAIM_INVALID",
        submit(&w.device, sign_evidence(&c, &w.key))
    );
    assert!(msg.contains("\"components\"[0].name"), "{msg}");

    // A serial nobody enrolled.
    let mut c = claims("PM200-999999", 1);
    c.nonce = Some(vec![1; 32]);
    let events = w.server.metric("attestd_security_events_total");
    refused!(
        w,
        Code::Unauthenticated,
        "UNKNOWN_DEVICE",
        submit(&w.device, sign_evidence(&c, &w.key))
    );
    assert_eq!(
        w.server.metric("attestd_security_events_total"),
        events,
        "no unit to warn about"
    );
    // Signed with a payload that is not a claims set at all.
    refused!(
        w,
        Code::InvalidArgument,
        "MALFORMED_CBOR",
        submit(&w.device, sign_payload(b"\xff", &w.key, CoseAlg::Es256))
    );
}

crate::both_backends!(nonces_are_single_use_per_serial_and_deferred_evidence_must_advance);
async fn nonces_are_single_use_per_serial_and_deferred_evidence_must_advance() {
    let w = World::new(Options::default()).await;

    // Nonce reused.
    let c = w.fresh_claims().await;
    submit(&w.device, sign_evidence(&c, &w.key))
        .await
        .expect("first use accepted");
    let mut again = c.clone();
    again.bootcount += 1;
    refused!(
        w,
        Code::FailedPrecondition,
        "NONCE_REUSED",
        submit(&w.device, sign_evidence(&again, &w.key))
    );
    // The very same token again.
    refused!(
        w,
        Code::FailedPrecondition,
        "NONCE_REUSED",
        submit(&w.device, sign_evidence(&c, &w.key))
    );

    // A nonce issued for another serial.
    let theirs = challenge(&w.device, &w.other_serial).await;
    let mut c = claims(&w.serial, 9);
    c.nonce = Some(theirs.clone());
    refused!(
        w,
        Code::FailedPrecondition,
        "NONCE_UNKNOWN",
        submit(&w.device, sign_evidence(&c, &w.key))
    );
    // ...which the rightful owner can still use.
    let mut mine = claims(&w.other_serial, 1);
    mine.nonce = Some(theirs);
    submit(&w.device, sign_evidence(&mine, &w.other_key))
        .await
        .expect("owner uses its nonce");

    // A nonce nobody issued.
    let mut c = claims(&w.serial, 9);
    c.nonce = Some(vec![7; 32]);
    refused!(
        w,
        Code::FailedPrecondition,
        "NONCE_UNKNOWN",
        submit(&w.device, sign_evidence(&c, &w.key))
    );

    // Deferred evidence: bootcount 7 was accepted above.
    let mut d = claims(&w.serial, 7);
    d.nonce = None;
    refused!(
        w,
        Code::FailedPrecondition,
        "REPLAYED",
        submit(&w.device, sign_evidence(&d, &w.key))
    );
    d.bootcount = 3;
    refused!(
        w,
        Code::FailedPrecondition,
        "REPLAYED",
        submit(&w.device, sign_evidence(&d, &w.key))
    );
    // Too old, and from the future.
    d.bootcount = 8;
    d.iat = now().plus_seconds(-2 * 24 * 3600);
    refused!(
        w,
        Code::FailedPrecondition,
        "REPLAYED",
        submit(&w.device, sign_evidence(&d, &w.key))
    );
    d.iat = now().plus_seconds(3600);
    refused!(
        w,
        Code::FailedPrecondition,
        "CLOCK_SKEW",
        submit(&w.device, sign_evidence(&d, &w.key))
    );
    // An advancing boot counter is accepted, once.
    d.iat = now();
    let token = sign_evidence(&d, &w.key);
    let ok = submit(&w.device, token.clone())
        .await
        .expect("deferred evidence accepted");
    assert!(ok.evidence_id.starts_with("ev_"));
    refused!(
        w,
        Code::FailedPrecondition,
        "REPLAYED",
        submit(&w.device, token)
    );

    // Unknown serial: no challenge, nothing stored.
    assert_rejected(
        w.device
            .device()
            .get_challenge(pb::GetChallengeRequest {
                serial: "PM200-404".into(),
            })
            .await,
        Code::NotFound,
        "DEVICE_NOT_FOUND",
    );
}

crate::both_backends!(expired_nonce_is_refused);
async fn expired_nonce_is_refused() {
    let w = World::new(Options {
        limits: vec![("nonce_lifetime_ms", "300".into())],
        ..Options::default()
    })
    .await;
    let c = w.fresh_claims().await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    refused!(
        w,
        Code::FailedPrecondition,
        "NONCE_EXPIRED",
        submit(&w.device, sign_evidence(&c, &w.key))
    );
}

crate::both_backends!(bad_records_are_refused_and_store_nothing);
async fn bad_records_are_refused_and_store_nothing() {
    let mut w = World::new(Options::default()).await;

    // An unknown JSON field, named in the message.
    let k = SigningKey::generate(KeyAlg::Es256).unwrap();
    let mut v = serde_json::to_value(provisioning_doc(
        "line1-prov",
        w.next_seq,
        "PM200-000050",
        "PM-200",
        &k,
    ))
    .unwrap();
    v["firmware"][0]["tolerance"] = serde_json::json!(1);
    let env = sign_envelope(
        attestd_client::core::record::PROVISIONING_TYPE,
        serde_json::to_vec(&v).unwrap(),
        &w.station_key,
    );
    let msg = refused!(
        w,
        Code::InvalidArgument,
        "MALFORMED_JSON",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(env)
        })
    );
    assert!(
        msg.contains("firmware[0]") && msg.contains("tolerance"),
        "{msg}"
    );

    // Signed by a station that was never registered (its principal exists).
    let rogue_key = SigningKey::generate(KeyAlg::Es256).unwrap();
    let rogue = w.server.station("unregistered-st").await;
    let doc = provisioning_doc("unregistered-st", 1, "PM200-000051", "PM-200", &k);
    refused!(
        w,
        Code::Unauthenticated,
        "UNKNOWN_STATION",
        rogue.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &rogue_key))
        })
    );

    // A registered station's record signed with some other key.
    let doc = provisioning_doc("line1-prov", w.next_seq, "PM200-000051", "PM-200", &k);
    refused!(
        w,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &rogue_key))
        })
    );

    // A station not allowed for the model.
    let doc = provisioning_doc("line1-prov", w.next_seq, "PM200-000052", "IP-900", &k);
    refused!(
        w,
        Code::PermissionDenied,
        "STATION_NOT_AUTHORIZED",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );

    // A station principal submitting another station's record.
    let doc = provisioning_doc("line1-prov", w.next_seq, "PM200-000053", "PM-200", &k);
    let other = w.server.station("line2-prov").await;
    refused!(
        w,
        Code::PermissionDenied,
        "STATION_NOT_AUTHORIZED",
        other.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );

    // A sequence that goes back (2 was used), and one that repeats with other content.
    let doc = provisioning_doc("line1-prov", 1, "PM200-000054", "PM-200", &k);
    refused!(
        w,
        Code::FailedPrecondition,
        "SEQUENCE_REGRESSED",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );
    let doc = provisioning_doc("line1-prov", 2, "PM200-000054", "PM-200", &k);
    refused!(
        w,
        Code::FailedPrecondition,
        "SEQUENCE_REGRESSED",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );

    // A second key for an enrolled serial.
    let doc = provisioning_doc("line1-prov", w.next_seq, &w.serial, "PM-200", &k);
    refused!(
        w,
        Code::AlreadyExists,
        "SERIAL_ENROLLED",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );

    // The same key for a second serial.
    let doc = provisioning_doc("line1-prov", w.next_seq, "PM200-000055", "PM-200", &w.key);
    refused!(
        w,
        Code::AlreadyExists,
        "KEY_IN_USE",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );

    // An unknown payload type.
    let env = sign_envelope("application/json", b"{}".to_vec(), &w.station_key);
    refused!(
        w,
        Code::InvalidArgument,
        "UNKNOWN_PAYLOAD_TYPE",
        w.station.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(env)
        })
    );

    // After all that, the station's next sequence still works.
    w.next_seq += 1;
    let doc = provisioning_doc("line1-prov", w.next_seq, "PM200-000056", "PM-200", &k);
    w.station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key)),
        })
        .await
        .expect("valid record accepted");
}

crate::both_backends!(callers_without_the_role_are_refused);
async fn callers_without_the_role_are_refused() {
    let w = World::new(Options::default()).await;
    let k = SigningKey::generate(KeyAlg::Es256).unwrap();
    let req = || pb::RegisterStationRequest {
        station_id: "line9".into(),
        public_key: k.public_key().spki_der().to_vec(),
        allowed_kinds: vec![pb::RecordKind::Provisioning as i32],
        allowed_models: vec!["*".into()],
        allow_rekey: false,
    };
    let anonymous = w.admin.with_token(None).unwrap();
    refused!(
        w,
        Code::Unauthenticated,
        "NO_CREDENTIALS",
        anonymous.admin().register_station(req())
    );
    let wrong = w.admin.with_token(Some("not-a-token")).unwrap();
    refused!(
        w,
        Code::Unauthenticated,
        "NO_CREDENTIALS",
        wrong.admin().register_station(req())
    );
    let hospital = w.admin.with_token(Some(HOSPITAL_TOKEN)).unwrap();
    refused!(
        w,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
        hospital.admin().register_station(req())
    );
    // A station may not read the station list, nor submit evidence-reading calls.
    refused!(
        w,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
        w.station
            .admin()
            .list_stations(pb::ListStationsRequest::default())
    );
    // Records need a station principal: the admin cannot submit one.
    let doc = provisioning_doc("line1-prov", 99, "PM200-000077", "PM-200", &k);
    refused!(
        w,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
        w.admin.factory().submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &w.station_key))
        })
    );
    // The admin can.
    w.admin
        .admin()
        .register_station(req())
        .await
        .expect("security-admin registers");
}

crate::both_backends!(unauthenticated_calls_are_rate_limited_per_serial_and_per_peer);
async fn unauthenticated_calls_are_rate_limited_per_serial_and_per_peer() {
    let w = World::new(Options {
        limits: vec![
            ("rate_per_serial_per_min", "3".into()),
            ("rate_per_peer_per_min", "6".into()),
        ],
        ..Options::default()
    })
    .await;
    let ask = |serial: &str| {
        let device = w.device.clone();
        let serial = serial.to_owned();
        async move {
            device
                .device()
                .get_challenge(pb::GetChallengeRequest { serial })
                .await
        }
    };
    for _ in 0..3 {
        ask(&w.serial).await.expect("within the serial's budget");
    }
    let before = w.snapshot().await;
    let msg = assert_rejected(
        ask(&w.serial).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert!(msg.contains("serial"), "{msg}");
    // Another serial has its own budget, until this peer's runs out.
    ask(&w.other_serial).await.expect("another serial");
    ask(&w.other_serial).await.expect("another serial");
    let msg = assert_rejected(
        ask(&w.other_serial).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert!(msg.contains("peer"), "{msg}");
    // Evidence is limited the same way; nothing was stored by any of it.
    let c = claims(&w.serial, 3);
    assert_rejected(
        submit(&w.device, sign_evidence(&c, &w.key)).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert_eq!(w.snapshot().await, before);
    // Authenticated callers are not affected.
    w.admin
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .expect("admin calls go on");
}
