//! attestctl: the operator CLI of attestd. Human-readable tables by
//! default, `--json` for scripts; long operations show progress on stderr.

#![forbid(unsafe_code)]

mod demo;
mod files;
mod show;

use std::path::PathBuf;

use anyhow::{bail, Context};
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::{Client, SigningKey};
use clap::{Parser, Subcommand, ValueEnum};

use crate::files::{read_envelope, read_private_key, read_public_key, write_envelope};
use crate::show::Out;

#[derive(Parser)]
#[command(name = "attestctl", version, about = "Operate an attestd server")]
struct Cli {
    /// attestd's address.
    #[arg(
        long,
        global = true,
        env = "ATTESTD_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Bearer token of the principal to act as.
    #[arg(long, global = true, env = "ATTESTD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; turns TLS
    /// on (use an https:// endpoint).
    #[arg(long, global = true, env = "ATTESTD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a principal identified by certificate.
    #[arg(long, global = true, env = "ATTESTD_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, global = true, env = "ATTESTD_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a key pair: PREFIX.pkcs8 (private, base64) and PREFIX.pub (SPKI, base64).
    Keygen {
        #[arg(long, value_enum, default_value = "es256")]
        alg: Alg,
        #[arg(long)]
        out: PathBuf,
    },
    #[command(subcommand)]
    Station(StationCmd),
    #[command(subcommand)]
    Record(RecordCmd),
    #[command(subcommand)]
    Baseline(BaselineCmd),
    #[command(subcommand)]
    Device(DeviceCmd),
    #[command(subcommand)]
    Fleet(FleetCmd),
    #[command(subcommand)]
    Release(ReleaseCmd),
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Simulate a factory line and a small fleet against a server started with
    /// `attestd serve --dev`, and print what happened.
    Demo {
        /// The dev kit written by `attestd serve --dev`.
        #[arg(long, default_value = "attestd-data/dev")]
        dev_dir: PathBuf,
        /// Units on the line.
        #[arg(long, default_value_t = 8)]
        units: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    Es256,
    Ed25519,
}

#[derive(Subcommand)]
enum StationCmd {
    /// Register a station's public key for record kinds and models.
    Register {
        station_id: String,
        /// File with the station's public key (base64 SPKI, as `keygen` writes).
        #[arg(long)]
        public_key: PathBuf,
        /// provisioning, calibration (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Device models, or "*" (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long)]
        allow_rekey: bool,
    },
    List,
    Revoke {
        station_id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum RecordCmd {
    /// Sign a provisioning or calibration JSON document into a DSSE envelope file.
    Sign {
        /// The record JSON.
        file: PathBuf,
        #[arg(long, value_enum)]
        kind: Kind,
        /// The station's private key (base64 PKCS#8).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Submit a DSSE envelope file (JSON: payloadType, payload, signatures).
    Submit {
        file: PathBuf,
    },
    Get {
        record_id: String,
    },
    List {
        serial: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Provisioning,
    Calibration,
}

#[derive(Subcommand)]
enum BaselineCmd {
    /// Sign a baseline JSON with local release keys and publish it.
    Publish {
        file: PathBuf,
        /// Release private keys (base64 PKCS#8); one signature each.
        #[arg(long = "release-key", required = true)]
        release_keys: Vec<PathBuf>,
    },
    Get {
        model: String,
        /// 0 for the active version.
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    List {
        model: String,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    Get {
        serial: String,
    },
    List {
        /// TRUSTED, WARNING, UNTRUSTED, STALE, UNKNOWN, QUARANTINED (repeatable).
        #[arg(long)]
        status: Vec<String>,
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value = "")]
        tenant: String,
        #[arg(long, default_value = "")]
        site: String,
    },
    Assign {
        serial: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "")]
        site: String,
        #[arg(long, default_value = "")]
        department: String,
        #[arg(long, default_value = "")]
        asset_tag: String,
    },
    History {
        serial: String,
    },
}

#[derive(Subcommand)]
enum FleetCmd {
    Summary {
        #[arg(long, value_enum)]
        group_by: Option<GroupBy>,
    },
    /// Print status changes as they happen (resumable with --after).
    Watch {
        #[arg(long, default_value = "")]
        after: String,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GroupBy {
    Model,
    Site,
    Firmware,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// The newest entry's sequence and hash.
    Head,
    /// Write the whole chain (or the entries after --after) to a file: a range
    /// line, one JSON entry per line, then the head signed with the audit key
    /// (docs/audit-format.md).
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Check an export offline: the chain, that no entry is missing at either
    /// end of its stated range, and (with --key) the signed head and every
    /// checkpoint. Names the first problem. No server needed.
    Verify {
        file: PathBuf,
        /// The service's checkpoint public key (base64 SPKI, `audit-key.pkcs8.pub`):
        /// the export's head and every checkpoint in it must be signed by it.
        /// Without it (and without --no-key) verification fails: only the key
        /// proves that the export was not cut.
        #[arg(long, conflicts_with = "no_key")]
        key: Option<PathBuf>,
        /// Check the chain and its stated range without the key, accepting
        /// that nothing proves the end of the export.
        #[arg(long)]
        no_key: bool,
    },
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// RELEASE or HOLD for one serial, or for every serial in a file (one per line).
    Check {
        serial: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    Quarantine {
        serial: String,
        #[arg(long)]
        off: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Out { json: cli.json };
    if let Command::Keygen { alg, out: prefix } = &cli.command {
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
        ));
        return Ok(());
    }
    if let Command::Audit(AuditCmd::Verify { file, key, no_key }) = &cli.command {
        return files::verify_audit(file, key.as_deref(), *no_key, &out);
    }
    if let Command::Demo { dev_dir, units } = &cli.command {
        return demo::run(&cli.endpoint, dev_dir, *units, &out).await;
    }
    let tls = tls_options(&cli)?;
    let c = Client::connect_with(&cli.endpoint, cli.token.as_deref(), tls.as_ref())
        .await
        .with_context(|| format!("connecting to {}", cli.endpoint))?;
    match cli.command {
        Command::Keygen { .. } | Command::Demo { .. } | Command::Audit(AuditCmd::Verify { .. }) => {
            unreachable!("handled above")
        }
        Command::Audit(AuditCmd::Head) => {
            let h = c
                .audit()
                .get_audit_head(pb::GetAuditHeadRequest {})
                .await?
                .into_inner();
            out.line(&format!(
                "sequence {} hash {}",
                h.sequence,
                attestd_client::core::ids::hex(&h.hash)
            ));
            match h
                .checkpoint
                .as_ref()
                .and_then(|c| attestd_client::core::audit::Checkpoint::parse(&c.details))
            {
                Some(cp) => out.line(&format!(
                    "newest checkpoint: entry {} signs head {} {} with key {}",
                    h.checkpoint.as_ref().map_or(0, |c| c.sequence),
                    cp.seq,
                    attestd_client::core::ids::hex(&cp.hash),
                    cp.key_id
                )),
                None => out.line("no signed checkpoint yet"),
            }
        }
        Command::Audit(AuditCmd::Export { out: path, after }) => {
            let export = attestd_client::audit::export_file(&c, after, 0, |n| {
                if n.is_multiple_of(10_000) {
                    eprintln!("exported {n} entries ...");
                }
            })
            .await?;
            std::fs::write(&path, export.text)
                .with_context(|| format!("writing {}", path.display()))?;
            out.line(&format!(
                "{} entries written to {}",
                export.entries,
                path.display()
            ));
        }
        Command::Station(cmd) => match cmd {
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
                out.stations(&[s]);
            }
            StationCmd::List => {
                let mut all = Vec::new();
                let mut token = String::new();
                loop {
                    let page = c
                        .admin()
                        .list_stations(pb::ListStationsRequest {
                            page_size: 1000,
                            page_token: token,
                        })
                        .await?
                        .into_inner();
                    all.extend(page.stations);
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                out.stations(&all);
            }
            StationCmd::Revoke { station_id, reason } => {
                let s = c
                    .admin()
                    .revoke_station(pb::RevokeStationRequest { station_id, reason })
                    .await?
                    .into_inner();
                out.stations(&[s]);
            }
        },
        Command::Record(cmd) => match cmd {
            RecordCmd::Sign {
                file,
                kind,
                key,
                out: dest,
            } => {
                let payload =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let key = read_private_key(&key)?;
                let payload_type = match kind {
                    Kind::Provisioning => attestd_client::core::record::PROVISIONING_TYPE,
                    Kind::Calibration => attestd_client::core::record::CALIBRATION_TYPE,
                };
                let env = attestd_client::record::sign_envelope(payload_type, payload, &key);
                write_envelope(&dest, &env)?;
                out.line(&format!("signed envelope written to {}", dest.display()));
            }
            RecordCmd::Submit { file } => {
                let env = read_envelope(&file)?;
                let r = c
                    .factory()
                    .submit_record(pb::SubmitRecordRequest {
                        envelope: Some(env),
                    })
                    .await?
                    .into_inner();
                out.record_receipt(&r);
            }
            RecordCmd::Get { record_id } => {
                let r = c
                    .factory()
                    .get_record(pb::GetRecordRequest { record_id })
                    .await?
                    .into_inner();
                out.records(&[r]);
            }
            RecordCmd::List { serial } => {
                let r = c
                    .factory()
                    .list_records(pb::ListRecordsRequest {
                        serial,
                        page_size: 1000,
                        page_token: String::new(),
                    })
                    .await?
                    .into_inner();
                out.records(&r.records);
            }
        },
        Command::Baseline(cmd) => match cmd {
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
                out.published(&r);
            }
            BaselineCmd::Get { model, version } => {
                let b = c
                    .baselines()
                    .get_baseline(pb::GetBaselineRequest { model, version })
                    .await?
                    .into_inner();
                out.baselines(&[b]);
            }
            BaselineCmd::List { model } => {
                let r = c
                    .baselines()
                    .list_baselines(pb::ListBaselinesRequest {
                        model,
                        page_size: 1000,
                        page_token: String::new(),
                    })
                    .await?
                    .into_inner();
                out.baselines(&r.baselines);
            }
        },
        Command::Device(cmd) => match cmd {
            DeviceCmd::Get { serial } => {
                let d = c
                    .fleet()
                    .get_device(pb::GetDeviceRequest { serial })
                    .await?
                    .into_inner();
                out.device(&d);
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
                let mut all = Vec::new();
                let mut token = String::new();
                // The first page's cursor: a watch from it misses nothing
                // the later pages did not show.
                let mut cursor = None;
                loop {
                    let page = c
                        .fleet()
                        .list_devices(pb::ListDevicesRequest {
                            filter: Some(filter.clone()),
                            page_size: 1000,
                            page_token: token,
                        })
                        .await?
                        .into_inner();
                    cursor.get_or_insert(page.cursor);
                    all.extend(page.devices);
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                out.devices(&all, cursor.as_deref().unwrap_or_default());
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
                out.line(&format!(
                    "{} assigned to {} / {} / {}",
                    r.serial, r.tenant, r.site, r.department
                ));
            }
            DeviceCmd::History { serial } => {
                let r = c
                    .fleet()
                    .list_device_history(pb::ListDeviceHistoryRequest {
                        serial,
                        page_size: 1000,
                        page_token: String::new(),
                    })
                    .await?
                    .into_inner();
                out.history(&r.entries);
            }
        },
        Command::Fleet(cmd) => match cmd {
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
                out.summary(&s);
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
                    out.change(&change);
                    seen += 1;
                    if count.is_some_and(|n| seen >= n) {
                        break;
                    }
                }
            }
        },
        Command::Release(cmd) => match cmd {
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
                let mut decisions = Vec::new();
                for (n, chunk) in serials.chunks(1000).enumerate() {
                    if serials.len() > 1000 {
                        eprintln!(
                            "checking {} of {} ...",
                            (n * 1000 + chunk.len()),
                            serials.len()
                        );
                    }
                    let r = c
                        .release()
                        .check_release_batch(pb::CheckReleaseBatchRequest {
                            serials: chunk.to_vec(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    decisions.extend(r.results);
                }
                out.decisions(&decisions);
                if decisions
                    .iter()
                    .any(|d| d.decision != pb::Decision::Release as i32)
                {
                    std::process::exit(3);
                }
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
                out.line(&format!("{}: quarantined = {}", r.serial, r.quarantined));
            }
        },
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("attestctl: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        match e.downcast_ref::<tonic::Status>() {
            Some(s) => eprintln!("attestctl: {:?}: {}", s.code(), s.message()),
            None => eprintln!("attestctl: {e:#}"),
        }
        std::process::exit(1);
    }
}
