//! The command line: every subcommand and flag, with the help text that
//! `attestctl help` shows. A test walks this tree and fails on any
//! subcommand or argument without help.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "attestctl",
    version,
    about = "Operate an attestd server",
    after_help = "Tables by default; --json prints each API response message in the proto3 JSON \
                  mapping (every field). Exit status: 0 ok, 1 error, 3 a release check held a unit. \
                  Output cut short by a closed pipe (`| head`) ends quietly with the status the \
                  command would have had."
)]
pub(crate) struct Cli {
    /// attestd's address.
    #[arg(
        long,
        global = true,
        env = "ATTESTD_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// Bearer token of the principal to act as.
    #[arg(long, global = true, env = "ATTESTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; turns TLS
    /// on (use an https:// endpoint).
    #[arg(long, global = true, env = "ATTESTD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a principal identified by certificate.
    #[arg(long, global = true, env = "ATTESTD_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, global = true, env = "ATTESTD_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Print the API's response messages as JSON (the proto3 JSON mapping,
    /// every field) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Make a key pair: PREFIX.pkcs8 (private, base64) and PREFIX.pub (SPKI, base64).
    Keygen {
        /// Signature algorithm of the key.
        #[arg(long, value_enum, default_value = "es256")]
        alg: Alg,
        /// Path prefix of the two files written.
        #[arg(long)]
        out: PathBuf,
    },
    /// Stations whose signed records attestd accepts (security-admin).
    #[command(subcommand)]
    Station(StationCmd),
    /// Signed provisioning and calibration records.
    #[command(subcommand)]
    Record(RecordCmd),
    /// Reference values and policy per device model.
    #[command(subcommand)]
    Baseline(BaselineCmd),
    /// Device evidence: a challenge, submitting signed evidence, reading it back.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// One unit or a filtered list of units; assignment and revocation.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Fleet summaries and the live change stream.
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// The release gate: RELEASE or HOLD, and quarantine.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Concessions: waiving named reason codes for one unit (security-admin).
    #[command(subcommand)]
    Concession(ConcessionCmd),
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Signed results (EAR JWTs) that attestd returns on request.
    #[command(subcommand)]
    Result(ResultCmd),
    /// Simulate a factory line and a small fleet against a server started with
    /// `attestd serve --dev`, and print what happened.
    Demo {
        /// The dev kit written by `attestd serve --dev`.
        #[arg(long, default_value = "attestd-data/dev")]
        dev_dir: PathBuf,
        /// Units on the line (3 to 200).
        #[arg(long, default_value_t = 8)]
        units: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Alg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    Ed25519,
}

#[derive(Subcommand)]
pub(crate) enum StationCmd {
    /// Register a station's public key for record kinds and models.
    Register {
        /// The station's id: 1..64 characters of [A-Za-z0-9._-].
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
        /// Allow the station to re-key an enrolled unit (a repair).
        #[arg(long)]
        allow_rekey: bool,
    },
    /// Every registered station, revoked ones included.
    List,
    /// Revoke a station: its signatures are refused from now on.
    Revoke {
        /// The station's id.
        station_id: String,
        /// Why (kept in the station and the audit trail).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum RecordCmd {
    /// Sign a provisioning or calibration JSON document into a DSSE envelope file.
    Sign {
        /// The record JSON.
        file: PathBuf,
        /// Which record the document is.
        #[arg(long, value_enum)]
        kind: Kind,
        /// The station's private key (base64 PKCS#8).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the envelope (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Submit a DSSE envelope file (JSON: payloadType, payload, signatures).
    Submit {
        /// The envelope file, as `record sign` writes it.
        file: PathBuf,
    },
    /// One record, with its envelope as received.
    Get {
        /// The record's id, as `record submit` printed it.
        record_id: String,
    },
    /// A unit's records, oldest first.
    List {
        /// The unit's serial number.
        serial: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    /// What a unit was built with, and its device key.
    Provisioning,
    /// A calibration data set and when it was performed.
    Calibration,
}

#[derive(Subcommand)]
pub(crate) enum BaselineCmd {
    /// Sign a baseline JSON with local release keys and publish it.
    Publish {
        /// The baseline JSON.
        file: PathBuf,
        /// Release private keys (base64 PKCS#8); one signature each.
        #[arg(long = "release-key", required = true)]
        release_keys: Vec<PathBuf>,
    },
    /// One baseline of a model.
    Get {
        /// The device model, e.g. PM-200.
        model: String,
        /// 0 for the active version.
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// A model's baselines, newest first.
    List {
        /// The device model, e.g. PM-200.
        model: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum EvidenceCmd {
    /// Ask for a fresh single-use nonce for an enrolled unit, to be signed into
    /// its evidence (the eat_nonce claim) before `evidence submit`.
    Challenge {
        /// The unit's serial number.
        serial: String,
    },
    /// Submit a signed COSE_Sign1 Entity Attestation Token and print its
    /// appraisal. Needs no token: the device's signature is the credential.
    Submit {
        /// The evidence: raw COSE_Sign1 bytes (tagged or untagged), at most 16 KiB.
        file: PathBuf,
    },
    /// One accepted evidence with its appraisal (security-admin, auditor).
    Get {
        /// The evidence's id (a device's last_evidence_id, or from `evidence submit`).
        evidence_id: String,
        /// Also write the raw COSE_Sign1 bytes to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum DeviceCmd {
    /// One unit: status, verdict, firmware, assignment.
    Get {
        /// The unit's serial number.
        serial: String,
    },
    /// Units matching a filter.
    List {
        /// TRUSTED, WARNING, UNTRUSTED, STALE, UNKNOWN, QUARANTINED (repeatable).
        #[arg(long)]
        status: Vec<String>,
        /// Only this device model.
        #[arg(long, default_value = "")]
        model: String,
        /// Only this tenant (hospital).
        #[arg(long, default_value = "")]
        tenant: String,
        /// Only this site.
        #[arg(long, default_value = "")]
        site: String,
    },
    /// Place a unit with a tenant, site, department and asset tag.
    Assign {
        /// The unit's serial number.
        serial: String,
        /// The tenant (hospital); empty to unassign.
        #[arg(long)]
        tenant: String,
        /// The site within the tenant.
        #[arg(long, default_value = "")]
        site: String,
        /// The department within the site.
        #[arg(long, default_value = "")]
        department: String,
        /// The hospital's asset tag of the unit.
        #[arg(long, default_value = "")]
        asset_tag: String,
    },
    /// Revoke a unit (a stolen or cloned key, a unit withdrawn): it becomes
    /// UNTRUSTED at once; its history is kept (security-admin).
    Revoke {
        /// The unit's serial number.
        serial: String,
        /// Why (required; kept with the unit and in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// A unit's evidence, records, re-appraisals and release decisions, in order.
    History {
        /// The unit's serial number.
        serial: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum FleetCmd {
    /// Units by status, optionally grouped.
    Summary {
        /// Count per model, site or reported firmware as well.
        #[arg(long, value_enum)]
        group_by: Option<GroupBy>,
    },
    /// Print status changes as they happen (resumable with --after).
    Watch {
        /// Cursor of the last change seen (empty: from now on).
        #[arg(long, default_value = "")]
        after: String,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum GroupBy {
    /// Per device model.
    Model,
    /// Per site.
    Site,
    /// Per reported firmware ("name=version" pairs).
    Firmware,
}

#[derive(Subcommand)]
pub(crate) enum ReleaseCmd {
    /// RELEASE or HOLD for one serial, or for every serial in a file (one per line).
    Check {
        /// The unit's serial number.
        serial: Option<String>,
        /// A file of serials, one per line (# starts a comment).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Hold a unit whatever its evidence says (or release the hold with --off).
    Quarantine {
        /// The unit's serial number.
        serial: String,
        /// Release the hold instead.
        #[arg(long)]
        off: bool,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ResultCmd {
    /// Verify a result token and print its claims. The keys come from
    /// --jwks (offline) or from the server (Release.GetResultKeys).
    Verify {
        /// The token, or @FILE to read it from a file.
        token: String,
        /// A JWK Set file (as served at /.well-known/jwks.json): verify offline.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConcessionCmd {
    /// Waive named reason codes for one unit, with a justification and the
    /// meaning of the approval. Identity codes can never be waived.
    Grant {
        /// The unit's serial number.
        serial: String,
        /// Reason codes to waive, e.g. CALIBRATION_OVERDUE (comma-separated).
        #[arg(long = "waive", value_delimiter = ',', required = true)]
        waived_codes: Vec<String>,
        /// Why the unit may ship anyway.
        #[arg(long)]
        justification: String,
        /// What the approval means, e.g. "approved under concession per CAPA-123".
        #[arg(long)]
        meaning: String,
    },
}

/// Filters of the audit trail, each an exact match when given.
#[derive(clap::Args)]
pub(crate) struct AuditFilter {
    /// Only entries by this principal (e.g. dev-mes).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub principal: String,
    /// Only entries of this action (e.g. release.decide, concession.grant).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub action: String,
    /// Only entries about this target (e.g. a serial).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub target: String,
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// The newest entry's sequence and hash, and the newest signed checkpoint.
    Head,
    /// Entries after a sequence number, oldest first, page after page.
    List {
        /// Start after this entry (0: from the first).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print at most this many entries; the output says where to go on.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// The newest entries, then (with --follow) new ones as they are appended.
    Tail {
        /// How many of the newest entries to look at first (matching the filters).
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: u64,
        /// Keep printing new entries until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How often to look for new entries with --follow, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Write the whole chain (or the entries after --after) to a file: a range
    /// line, one JSON entry per line, then the head signed with the audit key
    /// (docs/audit-format.md).
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Export the entries after this one (0: from the first).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Check an export offline: the chain, that no entry is missing at either
    /// end of its stated range, and (with --key) the signed head and every
    /// checkpoint. Names the first problem. No server needed.
    Verify {
        /// The export file.
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and argument, with its path, that has no help text.
    fn missing_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = if path.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{path} {}", cmd.get_name())
        };
        if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
            missing.push(format!("subcommand `{path}`"));
        }
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("argument `{}` of `{path}`", arg.get_id()));
            }
            for v in arg.get_possible_values() {
                if v.get_help().is_none() {
                    missing.push(format!(
                        "value `{}` of `{}` of `{path}`",
                        v.get_name(),
                        arg.get_id()
                    ));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            missing_help(sub, &path, missing);
        }
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        missing_help(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "no help text:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_walk_finds_what_has_no_help() {
        // The check above must be able to fail: a command with an
        // undocumented subcommand and argument is caught.
        let cmd = clap::Command::new("x")
            .about("x")
            .subcommand(clap::Command::new("bare").arg(clap::Arg::new("naked")));
        let mut missing = Vec::new();
        missing_help(&cmd, "", &mut missing);
        assert_eq!(
            missing,
            ["subcommand `x bare`", "argument `naked` of `x bare`"]
        );
    }

    #[test]
    fn new_commands_parse() {
        for args in [
            &["attestctl", "evidence", "submit", "ev.cose"][..],
            &["attestctl", "evidence", "challenge", "PM200-1"],
            &[
                "attestctl",
                "device",
                "revoke",
                "PM200-1",
                "--reason",
                "stolen",
            ],
            &[
                "attestctl",
                "concession",
                "grant",
                "PM200-1",
                "--waive",
                "CALIBRATION_OVERDUE,EVIDENCE_TOO_OLD",
                "--justification",
                "j",
                "--meaning",
                "m",
            ],
            &["attestctl", "audit", "list", "--action", "concession.grant"],
            &["attestctl", "audit", "tail", "-n", "5", "-f"],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
