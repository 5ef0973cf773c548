//! End-to-end: signed results. An appraisal and a release decision come
//! back as EAR JWTs that an independent JOSE library (jsonwebtoken)
//! verifies with nothing but the JWKS fetched over plain HTTP from attestd;
//! a changed token fails; a token signed before a key rotation still
//! verifies after it.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use common::fleet::*;
use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

/// GET /.well-known/jwks.json over HTTP/1.1 on the gRPC port.
fn fetch_jwks(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/jwk-set+json"),
        "{head}"
    );
    // A small body may come chunked; the JWKS has no CR/LF of its own.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (len, after) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        return out;
    }
    body.to_owned()
}

/// Verifies `token` with jsonwebtoken, using only `jwks` (JSON).
fn jose_verify(token: &str, jwks: &str) -> Result<serde_json::Value, String> {
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(header.alg);
    // Results carry iat, not exp or aud.
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn boot_for_token(f: &mut Fleet, i: usize) -> pb::SubmitEvidenceResponse {
    let u = &mut f.units[i];
    u.bootcount += 1;
    let nonce = challenge(&f.device, &u.serial).await;
    let c = u.claims(u.bootcount, nonce);
    f.device
        .device()
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence: sign_evidence(&c, &u.key),
            want_result_token: true,
        })
        .await
        .expect("evidence accepted")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_tokens_verify_with_the_published_keys_and_survive_a_rotation() {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 2, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();

    // Without asking, no token (no signing cost on the boot path).
    let plain = submit(&f.device, {
        let u = &mut f.units[1];
        u.bootcount += 1;
        let nonce = challenge(&f.device, &u.serial).await;
        sign_evidence(&u.claims(u.bootcount, nonce), &u.key)
    })
    .await
    .unwrap();
    assert!(plain.result_token.is_empty());

    let r = boot_for_token(&mut f, 0).await;
    let serial = f.units[0].serial.clone();
    assert!(!r.result_token.is_empty());
    let jwks = fetch_jwks(&f.server.addr);
    let claims = jose_verify(&r.result_token, &jwks).expect("the appraisal token verifies");
    assert_eq!(claims["eat_profile"], "tag:github.com,2023:veraison/ear");
    let sub = &claims["submods"][serial.as_str()];
    assert_eq!(sub["ear.status"], "affirming", "{claims}");
    assert_eq!(sub["attestd.evidence-id"], r.evidence_id.as_str());
    assert_eq!(sub["ear.appraisal-policy-id"], "attestd:baseline:PM-200:1");
    let v = r.appraisal.as_ref().unwrap().trust_vector.unwrap();
    assert_eq!(
        sub["ear.trustworthiness-vector"]["executables"],
        v.executables
    );
    // Our own SDK agrees.
    let set: attestd_client::core::ear::Jwks = serde_json::from_str(&jwks).unwrap();
    attestd_client::core::ear::verify(&r.result_token, &set).expect("the SDK verifies it");

    // The same keys over gRPC.
    let grpc = f
        .device
        .release()
        .get_result_keys(pb::GetResultKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .jwks_json;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&grpc).unwrap(),
        serde_json::from_str::<serde_json::Value>(&jwks).unwrap()
    );

    // A changed token fails: another status in the same signature.
    let parts: Vec<&str> = r.result_token.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["submods"][serial.as_str()]["ear.status"] = "warning".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    assert!(jose_verify(&forged, &jwks).is_err());
    assert!(attestd_client::core::ear::verify(&forged, &set).is_err());

    // A release decision for the MES, signed the same way.
    let mes = f.server.client(Some(MES_TOKEN)).await;
    let d = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: serial.clone(),
            want_result_token: true,
        })
        .await
        .unwrap()
        .into_inner();
    let dc = jose_verify(&d.result_token, &jwks).expect("the decision token verifies");
    let dsub = &dc["submods"][serial.as_str()];
    let released = d.decision == pb::Decision::Release as i32;
    assert_eq!(
        dsub["attestd.release-decision"],
        if released { "RELEASE" } else { "HOLD" }
    );
    assert_eq!(dsub["attestd.decision-id"], d.decision_id.as_str());
    let batch = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec![serial.clone(), "PM200-NOBODY".into()],
            want_result_token: true,
        })
        .await
        .unwrap()
        .into_inner();
    for d in &batch.results {
        let c = jose_verify(&d.result_token, &jwks).expect("every decision of a batch");
        assert!(c["submods"].get(d.serial.as_str()).is_some());
    }
    assert_eq!(
        jose_verify(&batch.results[1].result_token, &jwks).unwrap()["submods"]["PM200-NOBODY"]
            ["ear.status"],
        "contraindicated"
    );

    // Rotation: a new key signs from the next start; the old one stays
    // published, so the token signed before still verifies.
    let data = f.server.data_dir();
    let old_pub = std::fs::read_to_string(data.join("result-key.pkcs8.pub")).unwrap();
    let mut opts = f.server.options().clone();
    opts.extra_toml.push_str(&format!(
        "\n[results]\nkey_file = {:?}\nretired_public_keys = [{:?}]\n",
        data.join("result-key-2.pkcs8").display().to_string(),
        old_pub.trim()
    ));
    let old_token = r.result_token.clone();
    f.server.restart_with(opts);
    let jwks2 = fetch_jwks(&f.server.addr);
    let set2: serde_json::Value = serde_json::from_str(&jwks2).unwrap();
    assert_eq!(set2["keys"].as_array().unwrap().len(), 2, "{jwks2}");
    jose_verify(&old_token, &jwks2).expect("a token from before the rotation still verifies");
    let mes = f.server.client(Some(MES_TOKEN)).await;
    let after = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: serial.clone(),
            want_result_token: true,
        })
        .await
        .unwrap()
        .into_inner();
    let new_kid = decode_header(&after.result_token).unwrap().kid.unwrap();
    let old_kid = decode_header(&old_token).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid, "the new key signs");
    jose_verify(&after.result_token, &jwks2).unwrap();
    // Before the rotation's JWKS (one key), the new token is unknown.
    assert!(jose_verify(&after.result_token, &jwks).is_err());
}
