//! The `attestd` binary: flags, configuration and wiring. No domain logic.

#![forbid(unsafe_code)]

mod backup;
mod config;
mod health;
mod logging;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use attestd_server::auth::token_hash;
use attestd_server::clock::{Clock, OffsetFileClock, SystemClock};
use attestd_server::dev;
use attestd_server::results::ResultKeys;
use attestd_server::settings::{PrincipalConfig, Settings};
use attestd_server::ServerParts;
use attestd_store::postgres::PgStore;
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::Store;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{
    check_listen, FileConfig, Resolved, StoreConfig, Transport, DEFAULT_CACHE_MB,
    DEFAULT_DEV_DATA_DIR, DEFAULT_LISTEN,
};

#[derive(Parser)]
#[command(
    name = "attestd",
    version,
    about = "Attestation verifier and system of record for a medical-device fleet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    /// Check a configuration file without starting: every check `serve`
    /// makes before it listens or opens the database. Exits 0 when the
    /// file can be served (warnings are printed), 1 with the reason if not.
    CheckConfig(CheckConfigArgs),
    /// Print a new random bearer token and the SHA-256 to put in the configuration.
    GenToken,
    /// Print the SHA-256 (for token_sha256) of a token read from standard input.
    HashToken,
    /// Write a consistent backup of a running attestd (sled) to a file.
    Backup(backup::BackupArgs),
    /// Make a new data directory from a backup file.
    Restore(backup::RestoreArgs),
    /// Ask a running attestd whether it serves (exit 0) or not (exit 1): for
    /// container health checks and Kubernetes probes.
    Health(health::HealthArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "ATTESTD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve gRPC on (loopback only unless TLS is configured).
    #[arg(long, env = "ATTESTD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory: the sled database, the audit key and the dev kit.
    #[arg(long, env = "ATTESTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve Prometheus metrics on (GET /metrics).
    #[arg(long, env = "ATTESTD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Page cache of the sled database, in MiB.
    #[arg(long, env = "ATTESTD_CACHE_CAPACITY_MB")]
    cache_capacity_mb: Option<u64>,
    /// Log lines on standard error: text, or json (one object per line).
    #[arg(long, env = "ATTESTD_LOG_FORMAT", value_enum, default_value_t)]
    log_format: logging::LogFormat,
    /// Development mode: no configuration needed; data in ./attestd-data,
    /// 127.0.0.1:50051, and fresh tokens printed at start: a security-admin,
    /// a station (station_id dev-station), an MES, hospital IT (tenant
    /// dev-hospital) and an auditor.
    #[arg(long)]
    dev: bool,
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// The configuration file (TOML) to check.
    file: PathBuf,
}

fn random_token() -> anyhow::Result<String> {
    Ok(dev::random_token()?)
}

fn resolve(args: &ServeArgs) -> anyhow::Result<(Resolved, Option<dev::DevKit>)> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None if args.dev => FileConfig::default(),
        None => bail!("no configuration: pass --config FILE (or ATTESTD_CONFIG), or --dev to try attestd locally"),
    };
    let data_dir = match args.data_dir.clone().or(file.data_dir) {
        Some(d) => d,
        None if args.dev => PathBuf::from(DEFAULT_DEV_DATA_DIR),
        None => bail!("no data directory: set data_dir in the configuration or pass --data-dir"),
    };
    let listen = match args.listen.or(file.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse()?,
    };
    check_listen(listen, file.tls.is_some(), file.insecure_plaintext)?;
    let mut principals: Vec<PrincipalConfig> = file.principals;
    let mut release = file.release;
    let kit = if args.dev {
        let kit = dev::prepare(&data_dir)?;
        principals.extend(kit.principals.iter().cloned());
        if release.keys.is_empty() {
            release = kit.release.clone();
        }
        Some(kit)
    } else {
        None
    };
    let audit_key_file = file
        .audit_key_file
        .unwrap_or_else(|| data_dir.join("audit-key.pkcs8"));
    let result_key_file = file
        .results
        .key_file
        .unwrap_or_else(|| data_dir.join("result-key.pkcs8"));
    Ok((
        Resolved {
            listen,
            data_dir,
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            cache_capacity_mb: args
                .cache_capacity_mb
                .or(file.cache_capacity_mb)
                .unwrap_or(DEFAULT_CACHE_MB),
            limits: file.limits,
            principals,
            release,
            clock_offset_file: file.testing.clock_offset_file,
            audit_key_file,
            tls: file.tls,
            insecure_plaintext: file.insecure_plaintext,
            store: file.store,
            result_key_file,
            retired_result_keys: file.results.retired_public_keys,
            telemetry: file.telemetry,
        },
        kit,
    ))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: draining in-flight requests");
}

/// What the checks before start-up found and loaded.
struct Checked {
    transport: Transport,
    tls: Option<Arc<attestd_server::tls::TlsState>>,
    warnings: Vec<String>,
}

/// Every check of the configuration that needs neither a port nor the
/// database: TLS files, limits, principals, release keys, the store's
/// settings, the data directory and the audit key. `serve` runs them before
/// it opens or binds anything; `check-config` runs them alone.
fn check(cfg: &Resolved) -> anyhow::Result<Checked> {
    // ring is the one crypto provider of the whole dependency graph.
    attestd_server::tls::install_crypto_provider();
    let transport = check_listen(cfg.listen, cfg.tls.is_some(), cfg.insecure_plaintext)?;
    let tls = match &cfg.tls {
        Some(files) => Some(Arc::new(
            attestd_server::tls::TlsState::load(files.clone())
                .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        )),
        None => None,
    };
    let settings = Settings {
        limits: cfg.limits.clone(),
        principals: cfg.principals.clone(),
        release: cfg.release.clone(),
    };
    let client_certs = tls.as_ref().is_some_and(|t| t.client_certs());
    let mut warnings = settings
        .check(client_certs)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?
        .warnings;
    if let StoreConfig::Postgres(pg) = &cfg.store {
        attestd_store::postgres::check_config(&pg.0)
            .map_err(|e| anyhow::anyhow!("[store]: {e}"))?;
    }
    match std::fs::metadata(&cfg.data_dir) {
        Ok(m) if !m.is_dir() => bail!("data_dir {} is not a directory", cfg.data_dir.display()),
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "data_dir {} has mode {mode:04o}: other users can read attestd's data; \
                     chmod 700 it",
                    cfg.data_dir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Made at start (0700); its parent must exist.
            if let Some(parent) = cfg.data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    bail!(
                        "data_dir {}: its parent {} does not exist",
                        cfg.data_dir.display(),
                        parent.display()
                    );
                }
            }
        }
        Err(e) => bail!("data_dir {}: {e}", cfg.data_dir.display()),
    }
    if cfg.audit_key_file.exists() {
        attestd_server::checkpoint::CheckpointKey::load(&cfg.audit_key_file)
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    }
    if cfg.result_key_file.exists() {
        ResultKeys::load(&cfg.result_key_file, &cfg.retired_result_keys)
            .map_err(|e| anyhow::anyhow!("result key: {e}"))?;
    } else {
        // The retired keys are checked even before the key is made.
        ResultKeys::retired(&cfg.retired_result_keys)
            .map_err(|e| anyhow::anyhow!("result keys: {e}"))?;
    }
    Ok(Checked {
        transport,
        tls,
        warnings,
    })
}

/// `attestd check-config FILE`.
fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let serve = ServeArgs {
        config: Some(args.file.clone()),
        listen: None,
        data_dir: None,
        metrics_listen: None,
        cache_capacity_mb: None,
        log_format: Default::default(),
        dev: false,
    };
    let (cfg, _) = resolve(&serve)?;
    let checked = check(&cfg)?;
    for w in &checked.warnings {
        println!("warning: {w}");
    }
    println!("{}: configuration OK", args.file.display());
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Nothing attestd writes is for other users: the data directory 0700,
    // files 0600 (sled's, the audit key's, the dev kit's).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let (cfg, kit) = resolve(&args)?;
    let _telemetry = logging::init(args.log_format, &cfg.telemetry)?;
    let Checked {
        transport,
        tls,
        warnings,
    } = check(&cfg)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let checkpoint_key =
        attestd_server::checkpoint::CheckpointKey::load_or_create(&cfg.audit_key_file)
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    let store: Arc<dyn Store> = match &cfg.store {
        StoreConfig::Sled => Arc::new(
            SledStore::open(
                &cfg.data_dir,
                &SledConfig {
                    cache_capacity: cfg.cache_capacity_mb.saturating_mul(1024 * 1024),
                    group_commit_max_wait: std::time::Duration::from_micros(
                        cfg.limits.group_commit_max_wait_us,
                    ),
                },
            )
            .with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?,
        ),
        StoreConfig::Postgres(pg) => {
            let store = PgStore::open(&pg.0)
                .await
                .map_err(|e| anyhow::anyhow!("opening the PostgreSQL store: {e}"))?;
            tracing::info!(
                url = %attestd_store::postgres::redact_url(&pg.0.url),
                pool_size = pg.0.pool_size,
                tls = pg.0.ca_file.is_some(),
                "store: PostgreSQL"
            );
            Arc::new(store)
        }
    };
    if let Some(kit) = &kit {
        dev::register_station(store.as_ref(), &kit.station_key, SystemClock.now_ms()).await?;
    }
    tracing::info!(key_id = %checkpoint_key.public.key_id(), file = %cfg.audit_key_file.display(), "audit checkpoints signed with this key");
    let result_keys = ResultKeys::load_or_create(&cfg.result_key_file, &cfg.retired_result_keys)
        .map_err(|e| anyhow::anyhow!("result key: {e}"))?;
    tracing::info!(kid = %attestd_core::ear::kid(result_keys.public()), file = %cfg.result_key_file.display(), "result tokens signed with this key");
    let clock: Arc<dyn Clock> = match &cfg.clock_offset_file {
        Some(path) => {
            tracing::warn!(file = %path.display(), "TEST CLOCK: time is read with an offset from this file; never use in production");
            Arc::new(OffsetFileClock { path: path.clone() })
        }
        None => Arc::new(SystemClock),
    };
    let principals = cfg.principals.len();
    let mut server = attestd_server::Server::new(ServerParts {
        store,
        settings: Settings {
            limits: cfg.limits,
            principals: cfg.principals,
            release: cfg.release,
        },
        clock,
        metrics_listener: None,
        checkpoint_key: Some(Arc::new(checkpoint_key)),
        tls: tls.clone(),
    })?;
    server = server.results_with(Arc::new(result_keys));
    // SIGHUP re-reads the principals from the configuration file (the dev
    // kit's stay as they are).
    // Without a file (--dev alone) the kit's principals are all there is;
    // SIGHUP is still caught (it must never end the process).
    let kit_principals: Vec<PrincipalConfig> = kit
        .as_ref()
        .map(|k| k.principals.clone())
        .unwrap_or_default();
    let config_file = args.config.clone();
    server = server.reload_principals_with(Arc::new(move || {
        let mut p = match &config_file {
            Some(path) => {
                FileConfig::load(path)
                    .map_err(|e| format!("{e:#}"))?
                    .principals
            }
            None => Vec::new(),
        };
        p.extend(kit_principals.iter().cloned());
        Ok(p)
    }));
    // A replica with another audit key is refused before anything listens.
    server.check_audit_key().await?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let local = listener.local_addr()?;
    let metrics = match cfg.metrics_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding metrics {a}"))?,
        ),
        None => None,
    };
    // Machine-readable start-up lines on stdout (tests and scripts read them).
    println!("attestd listening on {local}");
    if let Some(l) = metrics {
        println!("attestd metrics on http://{}/metrics", l.local_addr()?);
        server = server.metrics_on(l);
    }
    match transport {
        Transport::Tls => {
            let files = tls.as_ref().map(|t| t.files());
            tracing::info!(
                cert = ?files.map(|f| &f.cert_file),
                client_cas = files.map_or(0, |f| f.client_ca_files.len()),
                "TLS on; the certificate, key and CA files reload on change and on SIGHUP"
            );
        }
        Transport::PlaintextLoopback => {
            tracing::info!("plaintext gRPC on loopback (configure [tls] to serve a network)")
        }
        Transport::PlaintextOverride => tracing::warn!(
            listen = %local,
            "INSECURE: plaintext gRPC on a network address (insecure_plaintext = true): bearer \
             tokens and all data cross the network unencrypted; configure [tls]"
        ),
    }
    if let Some(kit) = &kit {
        for (what, t) in &kit.tokens {
            println!("attestd dev {what} token: {t}");
        }
        println!(
            "  (dev mode: tokens, the dev-station key and two release keys are in {}; new tokens at every start)",
            kit.dir.display()
        );
    }
    tracing::info!(listen = %local, data_dir = %cfg.data_dir.display(), principals, "attestd started");
    server.run(listener, shutdown_signal(), true).await?;
    Ok(())
}

/// mimalloc: the request path allocates and frees many small buffers
/// (protobuf, HTTP/2 frames, sled nodes); glibc's malloc cost ~15% of the
/// server's CPU in a boot storm (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::GenToken => {
            let t = random_token()?;
            println!("token:        {t}");
            println!("token_sha256: {}", token_hash(&t));
            Ok(())
        }
        Command::HashToken => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            println!("{}", token_hash(line.trim()));
            Ok(())
        }
        Command::CheckConfig(args) => check_config(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Health(args) => health::run(args),
        // Logging starts in `serve`, once the configuration is read.
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(args)),
    }
}
