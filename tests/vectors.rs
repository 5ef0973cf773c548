//! The SDK's fixed test vectors (tests/vectors): evidence tokens and a
//! station record, with their keys, for device and station teams to check
//! their own implementations against. This test proves the checked-in files
//! still decode and verify with attestd's code; `regenerate` (ignored) is how
//! they were made.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_client::core::cose::CoseSign1;
use attestd_client::core::dsse::{pae, Envelope, Signature};
use attestd_client::core::evidence::{CalibrationClaim, Claims, Component, Evidence, HwVersion};
use attestd_client::core::ids::{hex, Digest, Serial};
use attestd_client::core::keys::{KeyAlg, PublicKey};
use attestd_client::core::record::{Record, PROVISIONING_TYPE};
use attestd_client::core::time::UnixTime;
use attestd_client::core::Reason;
use attestd_client::SigningKey;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Value {
    let p = dir().join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn alg_of(v: &Value) -> KeyAlg {
    KeyAlg::parse(v["alg"].as_str().unwrap()).unwrap()
}

fn vector_claims(serial: &str, nonce: Option<Vec<u8>>) -> Claims {
    Claims {
        nonce,
        iat: UnixTime::parse_rfc3339("2026-11-28T09:30:00Z").unwrap(),
        bootcount: 42,
        hwmodel: "PM-200".into(),
        hwversion: HwVersion {
            version: "B".into(),
            scheme: None,
        },
        dbgstat: 3,
        ueid: None,
        serial: Serial::parse(serial, Reason::ClaimInvalid, "serial").unwrap(),
        secure_boot: true,
        components: vec![
            Component {
                name: "bootloader".into(),
                version: "2.1.0".into(),
                svn: 4,
                digest: Digest::of(b"bootloader 2.1.0"),
            },
            Component {
                name: "application".into(),
                version: "2.1.4".into(),
                svn: 10,
                digest: Digest::of(b"application 2.1.4"),
            },
        ],
        calibration: Some(CalibrationClaim {
            id: "CAL-PM200-000123-0003".into(),
            digest: Digest::of(b"calibration data set 3"),
        }),
    }
}

#[test]
fn checked_in_evidence_vectors_decode_and_verify() {
    for name in ["evidence-es256.json", "evidence-ed25519.json"] {
        let v = load(name);
        let key_v = &v["device_key"];
        let spki = B64.decode(key_v["spki_der"].as_str().unwrap()).unwrap();
        let key = PublicKey::from_spki_der(&spki, Reason::FieldInvalid, "spki").unwrap();
        assert_eq!(key.alg(), alg_of(key_v));
        assert_eq!(key.key_id(), key_v["key_id"].as_str().unwrap());
        let token = unhex(v["token_hex"].as_str().unwrap());
        let ev = Evidence::decode(&token).unwrap_or_else(|e| panic!("{name}: {e}"));
        ev.verify(&key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex(&ev.cose.to_be_signed(&[])),
            v["to_be_signed_hex"].as_str().unwrap(),
            "{name}"
        );
        let serial = v["claims"]["serial"].as_str().unwrap();
        let nonce = v["claims"]["eat_nonce_hex"].as_str().map(unhex);
        assert_eq!(
            ev.claims,
            vector_claims(serial, nonce),
            "{name}: claims as documented"
        );
        // The private key loads in the SDK and signs tokens that verify.
        let sk = SigningKey::from_pkcs8(
            key.alg(),
            &B64.decode(key_v["pkcs8"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        let again = attestd_client::evidence::sign_evidence(&ev.claims, &sk);
        assert!(CoseSign1::decode(&again).unwrap().verify(&key));
        // One flipped bit and it no longer verifies.
        let mut bad = token.clone();
        let n = bad.len();
        bad[n - 5] ^= 0x20;
        assert!(Evidence::decode(&bad)
            .map(|e| e.verify(&key).is_err())
            .unwrap_or(true));
    }
}

#[test]
fn checked_in_record_vector_parses_and_verifies() {
    let v = load("record-provisioning.json");
    let spki = B64
        .decode(v["station_key"]["spki_der"].as_str().unwrap())
        .unwrap();
    let key = PublicKey::from_spki_der(&spki, Reason::FieldInvalid, "spki").unwrap();
    let e = &v["envelope"];
    let env = Envelope {
        payload: B64.decode(e["payload"].as_str().unwrap()).unwrap(),
        payload_type: e["payloadType"].as_str().unwrap().to_owned(),
        signatures: e["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Signature {
                sig: B64.decode(s["sig"].as_str().unwrap()).unwrap(),
                keyid: s["keyid"].as_str().unwrap().to_owned(),
            })
            .collect(),
    };
    assert_eq!(
        hex(&pae(&env.payload_type, &env.payload)),
        v["pae_hex"].as_str().unwrap()
    );
    assert!(
        env.signed_by(&key),
        "the DSSE signature verifies with the station key"
    );
    let Record::Provisioning(p) = Record::parse(&env.payload_type, &env.payload).unwrap() else {
        panic!("provisioning")
    };
    assert_eq!(p.serial.as_str(), "PM200-000123");
    assert_eq!(
        p.device_key.key_id(),
        load("evidence-es256.json")["device_key"]["key_id"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        attestd_client::core::record::record_id(&env.payload_type, &env.payload),
        v["record_id"].as_str().unwrap()
    );
}

/// Writes the vector files. Run on purpose only:
/// `cargo test --test vectors -- --ignored regenerate`
#[test]
#[ignore]
fn regenerate() {
    let mut es_key = None;
    for (alg, name, serial) in [
        (KeyAlg::Es256, "evidence-es256.json", "PM200-000123"),
        (KeyAlg::Ed25519, "evidence-ed25519.json", "PM200-000124"),
    ] {
        let key = SigningKey::generate(alg).unwrap();
        let nonce = (alg == KeyAlg::Es256).then(|| (0u8..32).collect::<Vec<u8>>());
        let claims = vector_claims(serial, nonce.clone());
        let token = attestd_client::evidence::sign_evidence(&claims, &key);
        let cose = CoseSign1::decode(&token).unwrap();
        let doc = json!({
            "description": format!("Device evidence (COSE_Sign1 EAT, {}) for {serial}. {}", alg.as_str(),
                if nonce.is_some() { "Nonce-fresh: eat_nonce is 00 01 .. 1f." } else { "Deferred: no eat_nonce." }),
            "device_key": {
                "alg": alg.as_str(),
                "spki_der": B64.encode(key.public_key().spki_der()),
                "key_id": key.public_key().key_id(),
                "pkcs8": B64.encode(key.pkcs8()),
            },
            "claims": {
                "serial": serial,
                "eat_nonce_hex": nonce.as_ref().map(|n| hex(n)),
                "iat": "2026-11-28T09:30:00Z",
                "bootcount": 42,
                "hwmodel": "PM-200",
                "hwversion": ["B"],
                "dbgstat": 3,
                "secure_boot": true,
                "components": [
                    {"name": "bootloader", "version": "2.1.0", "svn": 4, "digest": Digest::of(b"bootloader 2.1.0").to_hex()},
                    {"name": "application", "version": "2.1.4", "svn": 10, "digest": Digest::of(b"application 2.1.4").to_hex()},
                ],
                "calibration": {"id": "CAL-PM200-000123-0003", "digest": Digest::of(b"calibration data set 3").to_hex()},
            },
            "to_be_signed_hex": hex(&cose.to_be_signed(&[])),
            "token_hex": hex(&token),
        });
        std::fs::write(
            dir().join(name),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
        if alg == KeyAlg::Es256 {
            es_key = Some(key);
        }
    }
    let device_key = es_key.unwrap();
    let station_key = SigningKey::generate(KeyAlg::Es256).unwrap();
    let payload = serde_json::to_vec_pretty(&json!({
        "station_id": "line3-prov-01",
        "sequence": 1042,
        "performed_at": "2026-11-28T09:14:03Z",
        "operator_id": "op-1187",
        "work_order": "WO-2026-3312",
        "serial": "PM200-000123",
        "udi": "(01)00812345678901(21)PM200-000123",
        "model": "PM-200",
        "hw_version": "B",
        "device_key": {"alg": "ES256", "spki_der": B64.encode(device_key.public_key().spki_der())},
        "firmware": [{"name": "bootloader", "version": "2.1.0", "svn": 4, "digest": Digest::of(b"bootloader 2.1.0").to_hex()}],
    }))
    .unwrap();
    let env =
        attestd_client::record::sign_envelope(PROVISIONING_TYPE, payload.clone(), &station_key);
    let doc = json!({
        "description": "Provisioning record of PM200-000123 (the unit of evidence-es256.json), DSSE-signed by station line3-prov-01 with ES256 (DER signature).",
        "station_key": {
            "alg": "ES256",
            "spki_der": B64.encode(station_key.public_key().spki_der()),
            "key_id": station_key.public_key().key_id(),
            "pkcs8": B64.encode(station_key.pkcs8()),
        },
        "envelope": {
            "payload": B64.encode(&payload),
            "payloadType": PROVISIONING_TYPE,
            "signatures": [{"keyid": env.signatures[0].keyid, "sig": B64.encode(&env.signatures[0].sig)}],
        },
        "pae_hex": hex(&pae(PROVISIONING_TYPE, &payload)),
        "record_id": attestd_client::core::record::record_id(PROVISIONING_TYPE, &payload),
    });
    std::fs::write(
        dir().join("record-provisioning.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}
