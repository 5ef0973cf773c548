//! attestctl: the operator CLI of attestd. Human-readable tables by
//! default, `--json` for scripts (the API's response messages in the proto3
//! JSON mapping); long operations show progress on stderr.

#![forbid(unsafe_code)]

mod audit;
mod cli;
mod demo;
mod evidence;
mod files;
mod show;

use std::path::PathBuf;

use anyhow::{bail, Context};
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::{Client, SigningKey};
use clap::Parser;

use crate::cli::*;
use crate::files::{read_envelope, read_private_key, read_public_key, write_envelope};
use crate::show::Out;

/// Exit status when a release check held at least one unit.
const EXIT_HELD: i32 = 3;

fn status_code(s: &str) -> anyhow::Result<i32> {
    let name = format!("DEVICE_STATUS_{}", s.to_uppercase());
    pb::DeviceStatus::from_str_name(&name)
        .map(|s| s as i32)
        .with_context(|| format!("unknown status {s}"))
}

/// TLS settings from --ca-file / --cert-file / --key-file.
fn tls_options(cli: &Cli) -> anyhow::Result<Option<attestd_client::TlsOptions>> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let Some(ca) = &cli.ca_file else {
        if cli.cert_file.is_some() {
            bail!("--cert-file needs --ca-file (client certificates are sent over TLS only)");
        }
        return Ok(None);
    };
    let identity = match (&cli.cert_file, &cli.key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(Some(attestd_client::TlsOptions {
        ca_pem: read(ca)?,
        identity,
        domain: None,
    }))
}

/// Verifies a result token (`@FILE` reads it from a file) against a JWK Set
/// and prints its claims; an error if it does not verify.
fn verify_result(token: &str, jwks: &str, out: &Out) -> anyhow::Result<()> {
    let token = match token.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_owned(),
        None => token.trim().to_owned(),
    };
    let set: attestd_client::core::ear::Jwks =
        serde_json::from_str(jwks).context("the JWK Set does not parse")?;
    let claims = attestd_client::core::ear::verify(&token, &set)
        .map_err(|e| anyhow::anyhow!("the result token does not verify: {e}"))?;
    out.message(&claims, |c| {
        c.submods
            .iter()
            .map(|(serial, sub)| {
                format!(
                    "verified: {serial} {} {} issued {} by {} {}\n",
                    sub.status,
                    sub.release_decision.as_deref().unwrap_or("-"),
                    c.iat,
                    c.verifier_id.developer,
                    sub.reasons.join(",")
                )
            })
            .collect()
    })?;
    Ok(())
}

/// Runs one command; `Ok` holds the exit status (0, or [`EXIT_HELD`]).
async fn run(cli: Cli) -> anyhow::Result<i32> {
    let out = Out { json: cli.json };
    match &cli.command {
        Command::Keygen { alg, out: prefix } => {
            let alg = match alg {
                Alg::Es256 => KeyAlg::Es256,
                Alg::Ed25519 => KeyAlg::Ed25519,
            };
            let key = SigningKey::generate(alg)?;
            files::write_keypair(prefix, &key)?;
            out.line(&format!(
                "key {} written to {}.pkcs8 / .pub",
                key.public_key().key_id(),
                prefix.display()
            ))?;
            return Ok(0);
        }
        Command::Audit(AuditCmd::Verify { file, key, no_key }) => {
            files::verify_audit(file, key.as_deref(), *no_key, &out)?;
            return Ok(0);
        }
        Command::Record(RecordCmd::Sign {
            file,
            kind,
            key,
            out: dest,
        }) => {
            let payload =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let key = read_private_key(key)?;
            let payload_type = match kind {
                Kind::Provisioning => attestd_client::core::record::PROVISIONING_TYPE,
                Kind::Calibration => attestd_client::core::record::CALIBRATION_TYPE,
            };
            let env = attestd_client::record::sign_envelope(payload_type, payload, &key);
            write_envelope(dest, &env)?;
            out.line(&format!("signed envelope written to {}", dest.display()))?;
            return Ok(0);
        }
        Command::Result(ResultCmd::Verify {
            token,
            jwks: Some(jwks),
        }) => {
            let text = std::fs::read_to_string(jwks)
                .with_context(|| format!("reading {}", jwks.display()))?;
            verify_result(token, &text, &out)?;
            return Ok(0);
        }
        Command::Demo { dev_dir, units } => {
            demo::run(&cli.endpoint, dev_dir, *units, &out).await?;
            return Ok(0);
        }
        _ => {}
    }
    let tls = tls_options(&cli)?;
    let c = Client::connect_with(&cli.endpoint, cli.token.as_deref(), tls.as_ref())
        .await
        .with_context(|| format!("connecting to {}", cli.endpoint))?;
    match cli.command {
        Command::Keygen { .. }
        | Command::Demo { .. }
        | Command::Record(RecordCmd::Sign { .. })
        | Command::Audit(AuditCmd::Verify { .. })
        | Command::Result(ResultCmd::Verify { jwks: Some(_), .. }) => {
            unreachable!("handled above")
        }
        Command::Result(ResultCmd::Verify { token, jwks: None }) => {
            let keys = c
                .release()
                .get_result_keys(pb::GetResultKeysRequest {})
                .await?
                .into_inner();
            verify_result(&token, &keys.jwks_json, &out)?;
        }
        Command::Audit(cmd) => audit::run(&c, cmd, &out).await?,
        Command::Evidence(cmd) => evidence::run(&c, cmd, &out).await?,
        Command::Station(cmd) => station(&c, cmd, &out).await?,
        Command::Record(cmd) => record(&c, cmd, &out).await?,
        Command::Baseline(cmd) => baseline(&c, cmd, &out).await?,
        Command::Device(cmd) => device(&c, cmd, &out).await?,
        Command::Fleet(cmd) => fleet(&c, cmd, &out).await?,
        Command::Release(cmd) => return release(&c, cmd, &out).await,
        Command::Concession(ConcessionCmd::Grant {
            serial,
            waived_codes,
            justification,
            meaning,
        }) => {
            let r = c
                .release()
                .grant_concession(pb::GrantConcessionRequest {
                    serial,
                    waived_codes,
                    justification,
                    meaning,
                })
                .await?
                .into_inner();
            out.message(&r, show::concession)?;
        }
    }
    Ok(0)
}

async fn station(c: &Client, cmd: StationCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        StationCmd::Register {
            station_id,
            public_key,
            kinds,
            models,
            allow_rekey,
        } => {
            let key = read_public_key(&public_key)?;
            let kinds = kinds
                .iter()
                .map(|k| match k.as_str() {
                    "provisioning" => Ok(pb::RecordKind::Provisioning as i32),
                    "calibration" => Ok(pb::RecordKind::Calibration as i32),
                    other => bail!("unknown record kind {other}"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let s = c
                .admin()
                .register_station(pb::RegisterStationRequest {
                    station_id,
                    public_key: key,
                    allowed_kinds: kinds,
                    allowed_models: models,
                    allow_rekey,
                })
                .await?
                .into_inner();
            out.message(&s, |s| show::stations(std::slice::from_ref(s)))
        }
        StationCmd::List => {
            // Every page, printed as one response.
            let mut all = pb::ListStationsResponse::default();
            loop {
                let page = c
                    .admin()
                    .list_stations(pb::ListStationsRequest {
                        page_size: 1000,
                        page_token: all.next_page_token,
                    })
                    .await?
                    .into_inner();
                all.stations.extend(page.stations);
                all.next_page_token = page.next_page_token;
                if all.next_page_token.is_empty() {
                    break;
                }
            }
            out.message(&all, |r| show::stations(&r.stations))
        }
        StationCmd::Revoke { station_id, reason } => {
            let s = c
                .admin()
                .revoke_station(pb::RevokeStationRequest { station_id, reason })
                .await?
                .into_inner();
            out.message(&s, |s| show::stations(std::slice::from_ref(s)))
        }
    }
}

async fn record(c: &Client, cmd: RecordCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        RecordCmd::Sign { .. } => unreachable!("handled in run"),
        RecordCmd::Submit { file } => {
            let env = read_envelope(&file)?;
            let r = c
                .factory()
                .submit_record(pb::SubmitRecordRequest {
                    envelope: Some(env),
                })
                .await?
                .into_inner();
            out.message(&r, show::record_receipt)
        }
        RecordCmd::Get { record_id } => {
            let r = c
                .factory()
                .get_record(pb::GetRecordRequest { record_id })
                .await?
                .into_inner();
            out.message(&r, |r| show::records(std::slice::from_ref(r)))
        }
        RecordCmd::List { serial } => {
            let mut all = pb::ListRecordsResponse::default();
            loop {
                let page = c
                    .factory()
                    .list_records(pb::ListRecordsRequest {
                        serial: serial.clone(),
                        page_size: 1000,
                        page_token: all.next_page_token,
                    })
                    .await?
                    .into_inner();
                all.records.extend(page.records);
                all.next_page_token = page.next_page_token;
                if all.next_page_token.is_empty() {
                    break;
                }
            }
            out.message(&all, |r| show::records(&r.records))
        }
    }
}

async fn baseline(c: &Client, cmd: BaselineCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        BaselineCmd::Publish { file, release_keys } => {
            let payload =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let keys = release_keys
                .iter()
                .map(|k| read_private_key(k))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let env = attestd_client::record::sign_envelope_multi(
                attestd_client::core::baseline::BASELINE_TYPE,
                payload,
                &refs,
            );
            let r = c
                .baselines()
                .publish_baseline(pb::PublishBaselineRequest {
                    envelope: Some(env),
                })
                .await?
                .into_inner();
            out.message(&r, show::published)
        }
        BaselineCmd::Get { model, version } => {
            let b = c
                .baselines()
                .get_baseline(pb::GetBaselineRequest { model, version })
                .await?
                .into_inner();
            out.message(&b, |b| show::baselines(std::slice::from_ref(b)))
        }
        BaselineCmd::List { model } => {
            let mut all = pb::ListBaselinesResponse::default();
            loop {
                let page = c
                    .baselines()
                    .list_baselines(pb::ListBaselinesRequest {
                        model: model.clone(),
                        page_size: 1000,
                        page_token: all.next_page_token,
                    })
                    .await?
                    .into_inner();
                all.baselines.extend(page.baselines);
                all.next_page_token = page.next_page_token;
                if all.next_page_token.is_empty() {
                    break;
                }
            }
            out.message(&all, |r| show::baselines(&r.baselines))
        }
    }
}

async fn device(c: &Client, cmd: DeviceCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Get { serial } => {
            let d = c
                .fleet()
                .get_device(pb::GetDeviceRequest { serial })
                .await?
                .into_inner();
            out.message(&d, show::device)
        }
        DeviceCmd::List {
            status,
            model,
            tenant,
            site,
        } => {
            let statuses = status
                .iter()
                .map(|s| status_code(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let filter = pb::DeviceFilter {
                statuses,
                model,
                tenant,
                site,
                ..Default::default()
            };
            let mut all = pb::ListDevicesResponse::default();
            // The first page's cursor: a watch from it misses nothing the
            // later pages did not show.
            let mut cursor = None;
            loop {
                let page = c
                    .fleet()
                    .list_devices(pb::ListDevicesRequest {
                        filter: Some(filter.clone()),
                        page_size: 1000,
                        page_token: all.next_page_token,
                    })
                    .await?
                    .into_inner();
                cursor.get_or_insert(page.cursor);
                all.devices.extend(page.devices);
                all.next_page_token = page.next_page_token;
                if all.next_page_token.is_empty() {
                    break;
                }
            }
            all.cursor = cursor.unwrap_or_default();
            out.message(&all, |r| show::devices(&r.devices, &r.cursor))
        }
        DeviceCmd::Assign {
            serial,
            tenant,
            site,
            department,
            asset_tag,
        } => {
            let r = c
                .admin()
                .assign_device(pb::AssignDeviceRequest {
                    serial,
                    tenant,
                    site,
                    department,
                    asset_tag,
                })
                .await?
                .into_inner();
            out.message(&r, |r| {
                format!(
                    "{} assigned to {} / {} / {}\n",
                    r.serial, r.tenant, r.site, r.department
                )
            })
        }
        DeviceCmd::Revoke { serial, reason } => {
            let r = c
                .admin()
                .revoke_device(pb::RevokeDeviceRequest { serial, reason })
                .await?
                .into_inner();
            out.message(&r, |r| {
                format!(
                    "{}: revoked = {} ({}); its status is now UNTRUSTED\n",
                    r.serial, r.revoked, r.reason
                )
            })
        }
        DeviceCmd::History { serial } => {
            let mut all = pb::ListDeviceHistoryResponse::default();
            loop {
                let page = c
                    .fleet()
                    .list_device_history(pb::ListDeviceHistoryRequest {
                        serial: serial.clone(),
                        page_size: 1000,
                        page_token: all.next_page_token,
                    })
                    .await?
                    .into_inner();
                all.entries.extend(page.entries);
                all.next_page_token = page.next_page_token;
                if all.next_page_token.is_empty() {
                    break;
                }
            }
            out.message(&all, |r| show::history(&r.entries))
        }
    }
}

async fn fleet(c: &Client, cmd: FleetCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        FleetCmd::Summary { group_by } => {
            let group = match group_by {
                None => pb::SummaryGroup::Unspecified,
                Some(GroupBy::Model) => pb::SummaryGroup::Model,
                Some(GroupBy::Site) => pb::SummaryGroup::Site,
                Some(GroupBy::Firmware) => pb::SummaryGroup::Firmware,
            };
            let s = c
                .fleet()
                .get_fleet_summary(pb::GetFleetSummaryRequest {
                    filter: None,
                    group_by: group as i32,
                })
                .await?
                .into_inner();
            out.message(&s, show::summary)
        }
        FleetCmd::Watch { after, count } => {
            let mut stream = c
                .fleet()
                .watch_fleet(pb::WatchFleetRequest {
                    filter: None,
                    after_cursor: after,
                })
                .await?
                .into_inner();
            let mut seen = 0;
            while let Some(change) = stream.message().await? {
                out.message(&change, show::change)?;
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// The release gate. Exit status [`EXIT_HELD`] when any unit is held, also
/// when the output could not be written to the end (a closed pipe must not
/// turn a HOLD into a success).
async fn release(c: &Client, cmd: ReleaseCmd, out: &Out) -> anyhow::Result<i32> {
    match cmd {
        ReleaseCmd::Check { serial, file } => {
            let serials: Vec<String> = match (serial, file) {
                (Some(s), None) => vec![s],
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
                _ => bail!("give one serial or --file, not both"),
            };
            let mut all = pb::CheckReleaseBatchResponse::default();
            for (n, chunk) in serials.chunks(1000).enumerate() {
                if serials.len() > 1000 {
                    show::note(&format!(
                        "checking {} of {} ...",
                        (n * 1000 + chunk.len()),
                        serials.len()
                    ));
                }
                let r = c
                    .release()
                    .check_release_batch(pb::CheckReleaseBatchRequest {
                        serials: chunk.to_vec(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                all.results.extend(r.results);
            }
            let held = all
                .results
                .iter()
                .any(|d| d.decision != pb::Decision::Release as i32);
            let printed = out.message(&all, |r| show::decisions(&r.results));
            if held {
                if let Err(e) = printed {
                    if !is_broken_pipe(&e) {
                        show::note(&format!("attestctl: {e:#}"));
                    }
                }
                return Ok(EXIT_HELD);
            }
            printed?;
            Ok(0)
        }
        ReleaseCmd::Quarantine {
            serial,
            off,
            reason,
        } => {
            let r = c
                .release()
                .set_quarantine(pb::SetQuarantineRequest {
                    serial,
                    on: !off,
                    reason,
                })
                .await?
                .into_inner();
            out.message(&r, |r| {
                format!("{}: quarantined = {}\n", r.serial, r.quarantined)
            })?;
            Ok(0)
        }
    }
}

/// Whether `e` is stdout's reader having gone away (EPIPE).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            show::note(&format!("attestctl: {e}"));
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): nothing left to say to
        // it, and nothing went wrong. End quietly, as if the output had been
        // read to the end.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => show::note(&format!("attestctl: {:?}: {}", s.code(), s.message())),
                None => show::note(&format!("attestctl: {e:#}")),
            }
            1
        }
    };
    std::process::exit(code);
}
