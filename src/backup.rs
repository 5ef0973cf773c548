//! `attestd backup` and `attestd restore`.
//!
//! sled allows one process per database, and the running server holds it,
//! so a backup is taken by the server (`Admin.Backup`): this command is its
//! client. It writes the stream to a temporary file beside `--out`, syncs
//! it, verifies it (SHA-256, header, the audit chain to its closing
//! checkpoint) and only then moves it into place, never over an existing
//! file without `--force`. `restore` verifies a file again while writing a
//! new database into an empty directory. The format and the checks are
//! `attestd_store::backup` and `attestd_store::sled_store::restore`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use attestd_client::{pb, Client, TlsOptions};
use attestd_core::keys::PublicKey;
use attestd_store::sled_store::restore;

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    /// The attestd to back up: https://host:port (with --ca-file), or
    /// http://127.0.0.1:port on loopback; a bare host:port means http://
    /// (https:// with --ca-file).
    #[arg(long, visible_alias = "endpoint", env = "ATTESTD_ENDPOINT")]
    addr: String,
    /// A file holding the bearer token of a security-admin principal.
    #[arg(long)]
    token_file: PathBuf,
    /// The CA certificate(s) (PEM) that signed the server's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where to write the backup file.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file at --out.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The backup file (from `attestd backup`).
    file: PathBuf,
    /// The data directory to create: it must be missing or empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// The audit key's public half (`audit-key.pkcs8.pub`, base64 SPKI):
    /// the backup's closing checkpoint must be signed by it.
    #[arg(long)]
    audit_key: Option<PathBuf>,
}

/// `host:port` becomes a URL; a URL stays as it is.
fn endpoint(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// Removes a temporary file unless it was moved into place.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Makes a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the server refused the backup: {:?}: {}",
        s.code(),
        s.message()
    )
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fetch(args))
}

async fn fetch(args: BackupArgs) -> anyhow::Result<()> {
    let out = &args.out;
    if out.exists() && !args.force {
        bail!(
            "{} exists: choose another --out, or pass --force to replace it",
            out.display()
        );
    }
    let name = out
        .file_name()
        .with_context(|| format!("--out {} names no file", out.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?;
    let tls = match &args.ca_file {
        Some(f) => Some(TlsOptions {
            ca_pem: std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
            identity: None,
            domain: None,
        }),
        None => None,
    };
    attestd_server::tls::install_crypto_provider();
    let url = endpoint(&args.addr, tls.is_some());
    let client = Client::connect_with(&url, Some(token.trim()), tls.as_ref())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let started = std::time::Instant::now();
    let mut stream = client
        .admin()
        .backup(pb::BackupRequest {})
        .await
        .map_err(status)?
        .into_inner();

    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let partial = Partial(Some(tmp.clone()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The whole fleet's record: readable by its owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await.map_err(status)? {
        file.write_all(&chunk.data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        bytes += chunk.data.len() as u64;
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(file);
    // The file as written must be whole and its chain intact before it
    // takes the name of a backup.
    let verified = restore::verify(&tmp, None)
        .with_context(|| format!("the backup received is not usable ({bytes} bytes)"))?;
    if args.force {
        std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    } else {
        // A link fails if the name exists: never replaces a file that
        // appeared meanwhile. Where links are not supported, a rename
        // after a last look.
        match std::fs::hard_link(&tmp, out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "{} appeared while the backup was taken: pass --force to replace it",
                out.display()
            ),
            Err(_) if !out.exists() => std::fs::rename(&tmp, out)
                .with_context(|| format!("renaming to {}", out.display()))?,
            Err(e) => {
                return Err(e).with_context(|| format!("creating {}", out.display()));
            }
        }
    }
    drop(partial);
    sync_dir(&dir)?;
    let h = &verified.header;
    println!("backup written to {} ({bytes} bytes)", out.display());
    println!(
        "  audit chain: entries 1..{} verified, ending with a checkpoint signed by {}",
        h.audit_seq, h.checkpoint_key
    );
    println!(
        "  {} entries in {} tables; writes paused {:.1} ms on the server; {:.1} s in all",
        h.entries,
        h.tables,
        h.writes_paused_us as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    println!("  keep the audit key with it: a restore needs that key to go on signing checkpoints");
    Ok(())
}

/// Reads a public key written as base64 SPKI (`*.pub`).
fn public_key(path: &Path) -> anyhow::Result<PublicKey> {
    use base64::Engine as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .with_context(|| {
            format!(
                "{} is not base64: pass the public key (audit-key.pkcs8.pub)",
                path.display()
            )
        })?;
    PublicKey::from_spki_der(&der, attestd_core::Reason::FieldInvalid, "audit key")
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let key = args.audit_key.as_deref().map(public_key).transpose()?;
    let r = restore::restore(&args.file, &args.data_dir, key.as_ref())
        .with_context(|| format!("restoring {}", args.file.display()))?;
    let h = &r.verified.header;
    let created = attestd_core::time::UnixTime(h.created_at_ms.div_euclid(1000));
    println!(
        "restored {} entries into {} (backup of {created})",
        h.entries,
        r.dir.display()
    );
    println!(
        "  audit chain: entries 1..{} verified, ending with a checkpoint by {}",
        h.audit_seq, h.checkpoint_key
    );
    if r.verified.signature_checked {
        println!("  the checkpoint's signature verifies with the given audit key");
    } else {
        println!("  the checkpoint's signature was not checked: pass --audit-key to check it");
    }
    println!(
        "before starting attestd on it, install the audit key {} (audit-key.pkcs8 in the data \
         directory, or audit_key_file): under another key, later checkpoints would not verify \
         with the key auditors hold",
        h.checkpoint_key
    );
    Ok(())
}
