//! The `attestd` binary: flags, configuration and wiring. No domain logic.

#![forbid(unsafe_code)]

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use attestd_server::auth::token_hash;
use attestd_server::clock::{Clock, OffsetFileClock, SystemClock};
use attestd_server::settings::{PrincipalConfig, Settings};
use attestd_server::ServerParts;
use attestd_store::sled_store::{SledConfig, SledStore};
use clap::{Parser, Subcommand};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;

use crate::config::{
    check_listen, FileConfig, Resolved, DEFAULT_CACHE_MB, DEFAULT_DEV_DATA_DIR, DEFAULT_LISTEN,
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
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "ATTESTD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve gRPC on (loopback only until TLS is configured).
    #[arg(long, env = "ATTESTD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the embedded database.
    #[arg(long, env = "ATTESTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve Prometheus metrics on (GET /metrics).
    #[arg(long, env = "ATTESTD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Page cache of the embedded database, in MiB.
    #[arg(long, env = "ATTESTD_CACHE_CAPACITY_MB")]
    cache_capacity_mb: Option<u64>,
    /// Development mode: no configuration needed; data in ./attestd-data,
    /// 127.0.0.1:50051, and fresh tokens printed at start: a security-admin
    /// and a station (station_id dev-station).
    #[arg(long)]
    dev: bool,
}

fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(format!("atd_{}", attestd_core::ids::hex(&b)))
}

/// The station principal `--dev` creates (its key is registered by the user).
const DEV_STATION: &str = "dev-station";

/// Dev-mode tokens: (what, token).
type DevTokens = Vec<(&'static str, String)>;

fn resolve(args: &ServeArgs) -> anyhow::Result<(Resolved, DevTokens)> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None if args.dev => FileConfig::default(),
        None => bail!("no configuration: pass --config FILE (or ATTESTD_CONFIG), or --dev to try attestd locally"),
    };
    let mut principals: Vec<PrincipalConfig> = file.principals;
    let mut dev_tokens = Vec::new();
    if args.dev {
        let admin = random_token()?;
        principals.push(PrincipalConfig {
            name: "dev-admin".into(),
            role: "security-admin".into(),
            token_sha256: token_hash(&admin),
            station_id: None,
            tenant: None,
        });
        let station = random_token()?;
        principals.push(PrincipalConfig {
            name: DEV_STATION.into(),
            role: "station".into(),
            token_sha256: token_hash(&station),
            station_id: Some(DEV_STATION.into()),
            tenant: None,
        });
        dev_tokens = vec![("admin", admin), ("station", station)];
    }
    let data_dir = match args.data_dir.clone().or(file.data_dir) {
        Some(d) => d,
        None if args.dev => PathBuf::from(DEFAULT_DEV_DATA_DIR),
        None => bail!("no data directory: set data_dir in the configuration or pass --data-dir"),
    };
    let listen = match args.listen.or(file.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse()?,
    };
    check_listen(listen)?;
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
            release: file.release,
            clock_offset_file: file.testing.clock_offset_file,
        },
        dev_tokens,
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
    let (cfg, dev_tokens) = resolve(&args)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = SledStore::open(
        &cfg.data_dir,
        &SledConfig {
            cache_capacity: cfg.cache_capacity_mb.saturating_mul(1024 * 1024),
        },
    )
    .with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?;
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
    if let Some(m) = &metrics_listener {
        println!("attestd metrics on http://{}/metrics", m.local_addr()?);
    }
    for (what, t) in &dev_tokens {
        println!("attestd dev {what} token: {t}");
    }
    if !dev_tokens.is_empty() {
        println!("  (admin: role security-admin; station: role station for station_id {DEV_STATION}; new tokens at every --dev start)");
    }
    tracing::info!(listen = %local, data_dir = %cfg.data_dir.display(), principals = cfg.principals.len(), "attestd started");
    let clock: Arc<dyn Clock> = match &cfg.clock_offset_file {
        Some(path) => {
            tracing::warn!(file = %path.display(), "TEST CLOCK: time is read with an offset from this file; never use in production");
            Arc::new(OffsetFileClock { path: path.clone() })
        }
        None => Arc::new(SystemClock),
    };
    let parts = ServerParts {
        store: Arc::new(store),
        settings: Settings {
            limits: cfg.limits,
            principals: cfg.principals,
            release: cfg.release,
        },
        clock,
        metrics_listener,
    };
    attestd_server::serve(listener, parts, shutdown_signal()).await?;
    Ok(())
}

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
