//! The `attestd` binary: flags, configuration and wiring. No domain logic.

#![forbid(unsafe_code)]

mod config;
mod health;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use attestd_server::auth::token_hash;
use attestd_server::clock::{Clock, OffsetFileClock, SystemClock};
use attestd_server::dev;
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
    /// Print a new random bearer token and the SHA-256 to put in the configuration.
    GenToken,
    /// Print the SHA-256 (for token_sha256) of a token read from standard input.
    HashToken,
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
    /// Development mode: no configuration needed; data in ./attestd-data,
    /// 127.0.0.1:50051, and fresh tokens printed at start: a security-admin
    /// and a station (station_id dev-station).
    #[arg(long)]
    dev: bool,
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (cfg, kit) = resolve(&args)?;
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
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
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
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let local = listener.local_addr()?;
    let metrics_listener = match cfg.metrics_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding metrics {a}"))?,
        ),
        None => None,
    };
    // Machine-readable start-up lines on stdout (tests and scripts read them).
    println!("attestd listening on {local}");
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
    if let Some(m) = &metrics_listener {
        println!("attestd metrics on http://{}/metrics", m.local_addr()?);
    }
    if let Some(kit) = &kit {
        dev::register_station(store.as_ref(), &kit.station_key, SystemClock.now_ms()).await?;
        for (what, t) in &kit.tokens {
            println!("attestd dev {what} token: {t}");
        }
        println!(
            "  (dev mode: tokens, the dev-station key and two release keys are in {}; new tokens at every start)",
            kit.dir.display()
        );
    }
    tracing::info!(listen = %local, data_dir = %cfg.data_dir.display(), principals = cfg.principals.len(), "attestd started");
    let checkpoint_key =
        attestd_server::checkpoint::CheckpointKey::load_or_create(&cfg.audit_key_file)
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    tracing::info!(key_id = %checkpoint_key.public.key_id(), file = %cfg.audit_key_file.display(), "audit checkpoints signed with this key");
    let clock: Arc<dyn Clock> = match &cfg.clock_offset_file {
        Some(path) => {
            tracing::warn!(file = %path.display(), "TEST CLOCK: time is read with an offset from this file; never use in production");
            Arc::new(OffsetFileClock { path: path.clone() })
        }
        None => Arc::new(SystemClock),
    };
    let parts = ServerParts {
        store,
        settings: Settings {
            limits: cfg.limits,
            principals: cfg.principals,
            release: cfg.release,
        },
        clock,
        metrics_listener,
        checkpoint_key: Some(Arc::new(checkpoint_key)),
        tls,
    };
    attestd_server::serve(listener, parts, shutdown_signal()).await?;
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
        Command::Health(args) => health::run(args),
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("ATTESTD_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(args))
        }
    }
}
