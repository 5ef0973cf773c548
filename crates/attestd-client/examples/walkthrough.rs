//! A first session with attestd, against a server started with
//! `attestd serve --dev`: register the dev station's key, enroll a unit,
//! let it boot, and read its history back.
//!
//! ```text
//! cargo run -p attestd-client --example walkthrough -- <admin-token> <station-token>
//! ```
//! `ATTESTD_ENDPOINT` overrides the default `http://127.0.0.1:50051`.

use attestd_client::core::evidence::Claims;
use attestd_client::core::ids::{Digest, Serial};
use attestd_client::core::keys::KeyAlg;
use attestd_client::core::record::{DeviceKeyDoc, FirmwareDoc, ProvisioningDoc};
use attestd_client::core::time::UnixTime;
use attestd_client::core::Reason;
use attestd_client::evidence::{sample_claims, sign_evidence};
use attestd_client::pb;
use attestd_client::record::{sign_provisioning, spki_base64};
use attestd_client::{Client, SigningKey};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [admin_token, station_token] = args.as_slice() else {
        eprintln!(
            "usage: walkthrough <admin-token> <station-token>   (printed by `attestd serve --dev`)"
        );
        std::process::exit(2);
    };
    let endpoint =
        std::env::var("ATTESTD_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let now = UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
    );
    let admin = Client::connect(&endpoint, Some(admin_token)).await?;
    let station = admin.with_token(Some(station_token))?;
    let device = admin.with_token(None)?;

    // 1. Security admin registers the station's public key.
    let station_key = SigningKey::generate(KeyAlg::Es256)?;
    let station_id = "dev-station";
    let registered = admin
        .admin()
        .register_station(pb::RegisterStationRequest {
            station_id: station_id.into(),
            public_key: station_key.public_key().spki_der().to_vec(),
            allowed_kinds: vec![
                pb::RecordKind::Provisioning as i32,
                pb::RecordKind::Calibration as i32,
            ],
            allowed_models: vec!["PM-200".into()],
            allow_rekey: false,
        })
        .await;
    match registered {
        Ok(s) => println!(
            "1. registered station {} (key {})",
            station_id,
            s.into_inner().key_id
        ),
        Err(e) => {
            eprintln!("registering {station_id} failed: {} (this walk-through needs a fresh --dev data directory)", e.message());
            std::process::exit(1);
        }
    }

    // 2. The station enrolls a unit with the unit's own key.
    let serial = format!("PM200-{}", now.0 % 1_000_000);
    let device_key = SigningKey::generate(KeyAlg::Es256)?;
    let doc = ProvisioningDoc {
        station_id: station_id.into(),
        sequence: 1,
        performed_at: now.to_string(),
        operator_id: "op-1".into(),
        work_order: None,
        serial: serial.clone(),
        udi: None,
        model: "PM-200".into(),
        hw_version: "B".into(),
        device_key: DeviceKeyDoc {
            alg: "ES256".into(),
            spki_der: spki_base64(&device_key),
        },
        firmware: vec![FirmwareDoc {
            name: "bootloader".into(),
            version: "2.1.0".into(),
            svn: 4,
            digest: Digest::of(b"bootloader 2.1.0").to_hex(),
        }],
        supersedes: None,
    };
    let rec = station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, &station_key)),
        })
        .await?
        .into_inner();
    println!("2. enrolled {serial}: record {}", rec.record_id);

    // 3. The unit boots: challenge, then signed evidence.
    let nonce = device
        .device()
        .get_challenge(pb::GetChallengeRequest {
            serial: serial.clone(),
        })
        .await?
        .into_inner()
        .nonce;
    let mut claims: Claims = sample_claims(
        &Serial::parse(&serial, Reason::FieldInvalid, "serial")?,
        "PM-200",
        "B",
        1,
        now,
    );
    claims.nonce = Some(nonce);
    let resp = device
        .device()
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence: sign_evidence(&claims, &device_key),
        })
        .await?
        .into_inner();
    let a = resp.appraisal.unwrap_or_default();
    let codes: Vec<&str> = a.reasons.iter().map(|r| r.code.as_str()).collect();
    println!(
        "3. evidence {} accepted: tier {:?}, reasons {codes:?}",
        resp.evidence_id,
        pb::TrustTier::try_from(a.tier).unwrap_or(pb::TrustTier::Unspecified)
    );

    // 4. Replaying the same evidence is refused and changes nothing.
    let replay = device
        .device()
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence: sign_evidence(&claims, &device_key),
        })
        .await;
    if let Err(e) = replay {
        println!("4. replay refused: {:?} {}", e.code(), e.message());
    }

    // 5. The unit's history, as an auditor or admin sees it.
    let h = admin
        .fleet()
        .list_device_history(pb::ListDeviceHistoryRequest {
            serial: serial.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    println!("5. history of {serial}:");
    for e in h.entries {
        match e.entry {
            Some(pb::history_entry::Entry::Record(r)) => println!(
                "   record   {} (station {}, sequence {})",
                r.record_id, r.station_id, r.sequence
            ),
            Some(pb::history_entry::Entry::Evidence(ev)) => println!(
                "   evidence {} (bootcount {}, nonce-fresh {})",
                ev.evidence_id, ev.bootcount, ev.nonce_fresh
            ),
            _ => {}
        }
    }
    Ok(())
}
