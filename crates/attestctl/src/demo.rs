//! `attestctl demo`: a factory line and a small fleet in a minute, against a
//! server started with `attestd serve --dev` (it reads the dev kit that
//! server wrote: tokens, the dev-station key, two release keys).
//!
//! Release engineering publishes a baseline; the station provisions and
//! calibrates a handful of units; they boot and attest; one unit's
//! calibration is changed behind attestd's back; a firmware build is
//! withdrawn; MES checks the pallet. Every step prints what attestd said.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use attestd_client::core::baseline::BaselineDoc;
use attestd_client::core::evidence::{CalibrationClaim, Component};
use attestd_client::core::ids::{Digest, Serial};
use attestd_client::core::keys::KeyAlg;
use attestd_client::core::time::UnixTime;
use attestd_client::core::Reason;
use attestd_client::evidence::{sample_claims, sign_evidence};
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration, sign_provisioning};
use attestd_client::{Client, SigningKey};

use crate::files::read_private_key;
use crate::show::Out;

const MODEL: &str = "PM-200";
const STATION: &str = "dev-station";

fn digest(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

fn app_digest(v: &str) -> Digest {
    attestd_client::sample::application_digest(v)
}

fn baseline(version: u64, approved: &[(&str, u64)], revoked: &[&str]) -> BaselineDoc {
    let mut b =
        attestd_client::sample::baseline(MODEL, version, approved, revoked, "2026-01-01T00:00:00Z");
    b.description = if revoked.is_empty() {
        "FW 2.1 line".into()
    } else {
        format!(
            "FW 2.1 line; withdraws application {} (CVE-2026-0001)",
            revoked.join(", ")
        )
    };
    b
}

fn token(dir: &Path, role: &str) -> anyhow::Result<String> {
    let p = dir.join(format!("{role}.token"));
    Ok(std::fs::read_to_string(&p)
        .with_context(|| {
            format!(
                "reading {} (start the server with `attestd serve --dev` first)",
                p.display()
            )
        })?
        .trim()
        .to_owned())
}

struct Unit {
    serial: String,
    key: SigningKey,
    app: (&'static str, u64),
    cal: Digest,
}

fn status_name(s: i32) -> String {
    pb::DeviceStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DEVICE_STATUS_")
                .to_owned()
        })
        .unwrap_or_default()
}

fn codes(a: &Option<pb::Appraisal>) -> String {
    a.as_ref()
        .map(|a| {
            a.reasons
                .iter()
                .map(|r| r.code.clone())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub(crate) async fn run(endpoint: &str, dev_dir: &Path, n: usize, out: &Out) -> anyhow::Result<()> {
    if !(3..=200).contains(&n) {
        bail!("--units must be between 3 and 200");
    }
    let admin = Client::connect(endpoint, Some(&token(dev_dir, "admin")?))
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let station = admin.with_token(Some(&token(dev_dir, "station")?))?;
    let mes = admin.with_token(Some(&token(dev_dir, "mes")?))?;
    let device = admin.with_token(None)?;
    let station_key = read_private_key(&dev_dir.join("station.pkcs8"))?;
    let release = [
        read_private_key(&dev_dir.join("release-1.pkcs8"))?,
        read_private_key(&dev_dir.join("release-2.pkcs8"))?,
    ];
    let now = UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
    );
    out.line(&format!("attestd demo against {endpoint}"))?;

    // 1. Release engineering publishes a baseline, signed 2 of 2.
    let latest = admin
        .baselines()
        .list_baselines(pb::ListBaselinesRequest {
            model: MODEL.into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .baselines
        .first()
        .map_or(0, |b| b.version);
    let v1 = latest + 1;
    let doc = baseline(v1, &[("2.1.3", 9), ("2.1.4", 10)], &[]);
    admin
        .baselines()
        .publish_baseline(pb::PublishBaselineRequest {
            envelope: Some(sign_baseline(&doc, &[&release[0], &release[1]])),
        })
        .await
        .context("publishing the baseline")?;
    out.line(&format!(
        "1. baseline {MODEL} v{v1} published with 2 of 2 release signatures: bootloader 2.1.0, application 2.1.3 and 2.1.4; calibration required"
    ))?;

    // 2. The station provisions and calibrates the units.
    let mut seq = admin
        .admin()
        .list_stations(pb::ListStationsRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .stations
        .into_iter()
        .find(|s| s.station_id == STATION)
        .map(|s| s.last_sequence)
        .context("dev-station is not registered (start the server with `attestd serve --dev`)")?;
    // A run id from the clock's nanoseconds, so that runs never share serials.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let run_id = format!("{:08X}", (nanos / 1000) as u64 & 0xFFFF_FFFF);
    let mut units = Vec::new();
    for i in 0..n {
        let serial = format!("DEMO-{run_id}-{:02}", i + 1);
        let key = SigningKey::generate(if i % 2 == 0 {
            KeyAlg::Es256
        } else {
            KeyAlg::Ed25519
        })?;
        seq += 1;
        let mut prov =
            attestd_client::sample::provisioning_doc(STATION, seq, &serial, MODEL, &key, now);
        prov.work_order = Some(format!("WO-{run_id}"));
        station
            .factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(sign_provisioning(&prov, &station_key)),
            })
            .await
            .with_context(|| format!("provisioning {serial}"))?;
        seq += 1;
        let cal_digest = attestd_client::sample::calibration_digest(&serial);
        let cal = attestd_client::sample::calibration_doc(STATION, seq, &serial, now);
        station
            .factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(sign_calibration(&cal, &station_key)),
            })
            .await
            .with_context(|| format!("calibrating {serial}"))?;
        // Two units run the older application build.
        let app = if i == n - 2 || i == n - 1 {
            ("2.1.3", 9)
        } else {
            ("2.1.4", 10)
        };
        units.push(Unit {
            serial,
            key,
            app,
            cal: cal_digest,
        });
    }
    out.line(&format!(
        "2. station {STATION} provisioned and calibrated {n} units: {} .. {}",
        units[0].serial,
        units[n - 1].serial
    ))?;

    // 3. Every unit boots and attests.
    out.line("3. every unit boots and attests:")?;
    let tampered = 2;
    for (i, u) in units.iter().enumerate() {
        let nonce = device
            .device()
            .get_challenge(pb::GetChallengeRequest {
                serial: u.serial.clone(),
            })
            .await?
            .into_inner()
            .nonce;
        let mut c = sample_claims(
            &Serial::parse(&u.serial, Reason::FieldInvalid, "serial")?,
            MODEL,
            "B",
            1,
            now,
        );
        c.nonce = Some(nonce);
        c.components.push(Component {
            name: "application".into(),
            version: u.app.0.into(),
            svn: u.app.1,
            digest: app_digest(u.app.0),
        });
        // One unit's calibration was changed behind attestd's back.
        let cal = if i == tampered {
            digest("calibration changed on the bench")
        } else {
            u.cal
        };
        c.calibration = Some(CalibrationClaim {
            id: "CAL".into(),
            digest: cal,
        });
        let r = device
            .device()
            .submit_evidence(pb::SubmitEvidenceRequest {
                evidence: sign_evidence(&c, &u.key),
                ..Default::default()
            })
            .await
            .with_context(|| format!("evidence of {}", u.serial))?
            .into_inner();
        let a = r.appraisal.unwrap_or_default();
        let tier = pb::TrustTier::try_from(a.tier)
            .map(|t| t.as_str_name().trim_start_matches("TRUST_TIER_").to_owned())
            .unwrap_or_default();
        let why = a
            .reasons
            .iter()
            .map(|r| r.code.clone())
            .collect::<Vec<_>>()
            .join(",");
        let note = if i == tampered {
            "  <- calibration changed outside an authorised calibration"
        } else {
            ""
        };
        out.line(format!("   {}  app {}  {tier:<15} {why}{note}", u.serial, u.app.0).trim_end())?;
    }

    // 4. Release engineering withdraws application 2.1.3.
    let v2 = v1 + 1;
    let doc = baseline(v2, &[("2.1.4", 10)], &["2.1.3"]);
    let started = Instant::now();
    admin
        .baselines()
        .publish_baseline(pb::PublishBaselineRequest {
            envelope: Some(sign_baseline(&doc, &[&release[0], &release[1]])),
        })
        .await
        .context("publishing the revocation")?;
    out.line(&format!(
        "4. baseline {MODEL} v{v2} withdraws application 2.1.3 (CVE-2026-0001); no unit reboots:"
    ))?;
    for u in units.iter().filter(|u| u.app.0 == "2.1.3") {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = admin
                .fleet()
                .get_device(pb::GetDeviceRequest {
                    serial: u.serial.clone(),
                })
                .await?
                .into_inner();
            let revoked = d
                .appraisal
                .as_ref()
                .is_some_and(|a| a.reasons.iter().any(|r| r.code == "FIRMWARE_REVOKED"));
            if revoked {
                out.line(&format!(
                    "   {}  {}  {}  (re-graded {:.1} s after publication)",
                    u.serial,
                    status_name(d.status),
                    codes(&d.appraisal),
                    started.elapsed().as_secs_f64()
                ))?;
                break;
            }
            if Instant::now() > deadline {
                bail!("{} was not re-graded within 10 s", u.serial);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 5. MES checks the pallet.
    out.line("5. MES checks the pallet before shipping:")?;
    let batch = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: units.iter().map(|u| u.serial.clone()).collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    out.message(&batch, |b| crate::show::decisions(&b.results))?;

    // 6. What hospital IT would see of these units.
    let mut counts = std::collections::BTreeMap::new();
    for u in &units {
        let d = admin
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: u.serial.clone(),
            })
            .await?
            .into_inner();
        *counts.entry(status_name(d.status)).or_insert(0) += 1;
    }
    let summary = counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.line(&format!("6. the demo's {n} units now: {summary}"))?;
    Ok(())
}
