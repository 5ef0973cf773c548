//! attestd-bench: a fleet simulator and load generator for attestd, over the
//! real gRPC API. See BENCHMARKS.md for the scenarios, the commands and the
//! figures.
//!
//! Run it in release mode, with RUST_BACKTRACE unset:
//!
//! ```sh
//! cargo run --release -p attestd-bench -- all --units 10000
//! cargo run --release -p attestd-bench -- boot-storm --units 100000 --concurrency 64
//! cargo run --release -p attestd-bench -- all --quick      # seconds; the CI smoke test
//! ```

mod fleet;
mod kit;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use clap::{Parser, Subcommand};

use crate::fleet::{Bound, Ctx, Query, Which};
use crate::kit::{Kit, ServerProc, UnitKeys};
use crate::report::Row;

#[derive(Parser)]
#[command(
    name = "attestd-bench",
    about = "Fleet simulator and load generator for attestd"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Units in the fleet.
    #[arg(long, global = true, default_value_t = 10_000)]
    units: u64,
    /// Concurrent simulated callers (boot storm and closed-loop queries).
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// How long each timed phase runs, in seconds.
    #[arg(long, global = true, default_value_t = 20)]
    duration: u64,
    /// Factory stations provisioning in parallel.
    #[arg(long, global = true, default_value_t = 32)]
    stations: usize,
    /// HTTP/2 connections the load is spread over.
    #[arg(long, global = true, default_value_t = 4)]
    connections: usize,
    /// attestd's database page cache, in MiB.
    #[arg(long, global = true, default_value_t = 256)]
    cache_mb: u64,
    /// Where the fleet's database and kit live (default
    /// target/bench-data/<units>); kept between runs so that a scenario can
    /// reuse a provisioned fleet.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Start from an empty data directory.
    #[arg(long, global = true)]
    fresh: bool,
    /// CheckRelease requests per second during the boot storm (queries).
    #[arg(long, global = true, default_value_t = 1000)]
    release_rate: u32,
    /// Small and short: 200 units, 2 s phases, a fresh temporary directory.
    /// For CI: checks that every scenario runs without errors, not speed.
    #[arg(long, global = true)]
    quick: bool,
    /// Where to write the JSON results (default
    /// target/bench-results/<scenario>-<units>.json).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Stations enroll and calibrate the fleet.
    Provision,
    /// Units challenge and submit evidence (ES256, then Ed25519).
    BootStorm,
    /// Summary, list pages, GetDevice, CheckRelease: alone and during a storm.
    Queries,
    /// A baseline withdraws the build 10% of the units run: time to re-grade.
    Revoke,
    /// Cold start time and resident memory with the fleet stored.
    Restart,
    /// The machine's ceiling: health-check RPC rate, signature verification.
    Ceiling,
    /// Every scenario in order on one fleet.
    All,
    /// (internal) the attestd server process the load runs against.
    #[command(hide = true)]
    Server,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Provision => "provision",
            Scenario::BootStorm => "boot-storm",
            Scenario::Queries => "queries",
            Scenario::Revoke => "revoke",
            Scenario::Restart => "restart",
            Scenario::Ceiling => "ceiling",
            Scenario::All => "all",
            Scenario::Server => "server",
        }
    }
}

struct Run {
    cli: Cli,
    dir: PathBuf,
    rows: Vec<Row>,
    /// Health-check RPCs per second (the ceiling), once measured.
    rpc_ceiling: Option<f64>,
    keys: std::sync::Arc<UnitKeys>,
    warmed: bool,
    /// The server process, for its CPU time.
    server_pid: u32,
    _temp: Option<tempfile_dir::TempDir>,
}

/// A temporary directory for --quick, removed at the end.
mod tempfile_dir {
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Run {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.cli.duration.max(1))
    }

    fn add(&mut self, row: Row) {
        eprintln!(
            "{}",
            report::table(std::slice::from_ref(&row))
                .lines()
                .nth(1)
                .unwrap_or("")
        );
        self.rows.push(row);
    }

    async fn start(&self) -> anyhow::Result<(ServerProc, Ctx)> {
        let kit = Kit::load_or_create(&self.dir, self.cli.stations)?;
        let server = ServerProc::start(&self.dir, self.cli.cache_mb).await?;
        let mut ctx = Ctx::connect(
            kit,
            self.keys.clone(),
            &server.endpoint,
            self.cli.connections,
        )
        .await?;
        fleet::prepare(&mut ctx).await?;
        ctx.save(&self.dir)?;
        Ok((server, ctx))
    }

    /// Provisions up to --units (measured only in the provision scenario).
    async fn ensure_units(&mut self, ctx: &mut Ctx, measured: bool) -> anyhow::Result<()> {
        if ctx.units >= self.cli.units {
            return Ok(());
        }
        if !measured {
            eprintln!(
                "provisioning units {}..{} first (not measured here; see the provision scenario)",
                ctx.units, self.cli.units
            );
        }
        let rows = fleet::provision(ctx, self.cli.units).await?;
        ctx.save(&self.dir)?;
        if measured {
            for r in rows {
                self.add(r);
            }
        }
        Ok(())
    }

    async fn ceiling(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let d = self.duration().min(Duration::from_secs(10));
        for row in fleet::ceiling(ctx, self.cli.concurrency, d).await? {
            if row.operation == "health check RPC" {
                self.rpc_ceiling = Some(row.rate_per_sec);
            }
            self.add(row);
        }
        Ok(())
    }

    fn ceiling_note(&self, boots_per_sec: f64) -> String {
        match self.rpc_ceiling {
            Some(c) if c > 0.0 => format!(
                "; {:.0}% of the RPC ceiling (2 RPCs per boot)",
                200.0 * boots_per_sec / c
            ),
            _ => String::new(),
        }
    }

    /// CPU seconds used so far by the server and by this load generator.
    fn cpu(&self) -> (f64, f64) {
        (
            kit::cpu_seconds(self.server_pid),
            kit::cpu_seconds(std::process::id()),
        )
    }

    /// CPU per operation since `before`: what a figure costs, whatever else
    /// the machine was doing.
    fn cpu_note(&self, before: (f64, f64), ops: u64) -> String {
        let (s, c) = self.cpu();
        if ops == 0 {
            return String::new();
        }
        let per = |d: f64| d * 1e6 / ops as f64;
        format!(
            "; CPU per boot: server {:.0} us, load generator {:.0} us",
            per(s - before.0),
            per(c - before.1)
        )
    }

    /// Parses every unit's key before a measured storm (not timed).
    async fn warm(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        if !self.warmed {
            let started = std::time::Instant::now();
            let (keys, n) = (self.keys.clone(), ctx.units);
            tokio::task::spawn_blocking(move || keys.warm(n)).await??;
            eprintln!(
                "unit keys loaded in {:.1} s (not measured)",
                started.elapsed().as_secs_f64()
            );
            self.warmed = true;
        }
        Ok(())
    }

    async fn boot_storm(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.warm(ctx).await?;
        if self.rpc_ceiling.is_none() {
            self.ceiling(ctx).await?;
        }
        for (label, alg) in [
            ("boot ES256 (challenge + evidence)", KeyAlg::Es256),
            ("boot Ed25519 (challenge + evidence)", KeyAlg::Ed25519),
        ] {
            let cpu = self.cpu();
            let r = fleet::storm(
                ctx,
                label,
                Which::Alg(alg),
                self.cli.concurrency,
                Bound::Time(self.duration()),
            )
            .await?;
            let note = self.ceiling_note(r.row.rate_per_sec);
            let cpu = self.cpu_note(cpu, r.row.count);
            let row = r.row.clone();
            let n = row.note.clone();
            self.add(row.with_note(format!("{n}{note}{cpu}")));
        }
        Ok(())
    }

    async fn queries(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.warm(ctx).await?;
        let d = self.duration().min(Duration::from_secs(10));
        for q in [
            Query::Summary,
            Query::ListPage,
            Query::GetDevice,
            Query::CheckRelease,
        ] {
            let row =
                fleet::queries(ctx, q, self.cli.concurrency.min(16), d, None, " (alone)").await?;
            self.add(row);
        }
        // During a boot storm: CheckRelease at a fixed rate, one caller each
        // for the other queries.
        let storm = {
            let ctx2 = Ctx::connect(
                Kit::load_or_create(&self.dir, self.cli.stations)?,
                self.keys.clone(),
                &ctx_endpoint(ctx),
                self.cli.connections,
            )
            .await?;
            let c = self.cli.concurrency;
            let dur = self.duration();
            tokio::spawn(async move {
                fleet::storm(
                    &ctx2,
                    "boot (during queries)",
                    Which::All,
                    c,
                    Bound::Time(dur),
                )
                .await
            })
        };
        let dur = self.duration();
        let rate = self.cli.release_rate;
        let (a, b, c, e) = tokio::join!(
            fleet::queries(
                ctx,
                Query::CheckRelease,
                1,
                dur,
                Some(rate),
                " (during storm)"
            ),
            fleet::queries(ctx, Query::Summary, 1, dur, None, " (during storm)"),
            fleet::queries(ctx, Query::ListPage, 1, dur, None, " (during storm)"),
            fleet::queries(ctx, Query::GetDevice, 1, dur, None, " (during storm)"),
        );
        let s = storm.await??;
        let note = self.ceiling_note(s.row.rate_per_sec);
        let row = s.row.clone();
        let n = row.note.clone();
        self.add(row.with_note(format!("{n}{note}")));
        for r in [a, b, c, e] {
            self.add(r?);
        }
        Ok(())
    }

    async fn revoke(&mut self, ctx: &mut Ctx) -> anyhow::Result<()> {
        self.warm(ctx).await?;
        // Every unit on the old build attests once, so it has a verdict.
        let cover = fleet::storm(
            ctx,
            "boot once: units on 2.1.3",
            Which::OldBuild,
            self.cli.concurrency,
            Bound::Once,
        )
        .await?;
        let k = cover.trusted;
        let cover_errors = cover.row.errors;
        self.add(cover.row);
        anyhow::ensure!(
            cover_errors == 0,
            "units failed to attest before the revocation"
        );
        let limit = Duration::from_secs(if self.cli.quick { 60 } else { 600 });
        if fleet::count_status(ctx, pb::DeviceStatus::Untrusted).await? != 0 {
            // A previous run left the build withdrawn: approve it again first.
            fleet::publish_baseline(ctx, &[]).await?;
            fleet::wait_for_count(ctx, pb::DeviceStatus::Untrusted, 0, limit).await?;
        }
        fleet::publish_baseline(ctx, &["2.1.3"]).await?;
        ctx.save(&self.dir)?;
        let (took, seen) =
            fleet::wait_for_count(ctx, pb::DeviceStatus::Untrusted, k, limit).await?;
        let ok = seen == k;
        self.add(
            Row::figure(
                "revoke",
                "re-grade: all affected read UNTRUSTED",
                took.as_secs_f64(),
                format!(
                    "seconds for {k} units{}",
                    if ok {
                        String::new()
                    } else {
                        format!("; only {seen} after {limit:?}")
                    }
                ),
            )
            .with_errors(u64::from(!ok)),
        );
        // Approve the build again so the fleet can be reused.
        fleet::publish_baseline(ctx, &[]).await?;
        ctx.save(&self.dir)?;
        fleet::wait_for_count(ctx, pb::DeviceStatus::Untrusted, 0, limit).await?;
        Ok(())
    }

    async fn restart(&mut self, server: ServerProc, ctx: Ctx) -> anyhow::Result<()> {
        let (rss, peak) = server.memory();
        self.add(Row::figure(
            "restart",
            "resident memory before restart (MiB)",
            rss as f64 / 1048576.0,
            format!(
                "peak {:.0} MiB during the run; {} units",
                peak as f64 / 1048576.0,
                ctx.units
            ),
        ));
        drop(ctx);
        server.stop()?;
        let dropped = !self.cli.quick && drop_page_cache();
        let server = ServerProc::start(&self.dir, self.cli.cache_mb).await?;
        self.add(Row::figure(
            "restart",
            "cold start to SERVING (s)",
            server.start_time.as_secs_f64(),
            format!(
                "{} units; OS page cache {}",
                self.cli.units,
                if dropped {
                    "dropped first"
                } else {
                    "not dropped"
                }
            ),
        ));
        let ctx = Ctx::connect(
            Kit::load_or_create(&self.dir, self.cli.stations)?,
            self.keys.clone(),
            &server.endpoint,
            self.cli.connections,
        )
        .await?;
        let summary = fleet::queries(
            &ctx,
            Query::Summary,
            1,
            Duration::from_secs(1),
            None,
            " (after restart)",
        )
        .await?;
        self.add(summary);
        let (rss, _) = server.memory();
        self.add(Row::figure(
            "restart",
            "resident memory after start (MiB)",
            rss as f64 / 1048576.0,
            String::new(),
        ));
        drop(ctx);
        server.stop()?;
        Ok(())
    }
}

fn ctx_endpoint(ctx: &Ctx) -> String {
    ctx.endpoint.clone()
}

/// Drops the OS page cache when allowed (root), so a restart reads from disk.
fn drop_page_cache() -> bool {
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

async fn run(cli: Cli) -> anyhow::Result<Vec<Row>> {
    let scenario = cli.scenario;
    let mut cli = cli;
    let mut temp = None;
    if cli.quick {
        cli.units = cli.units.min(200);
        cli.duration = 2;
        cli.concurrency = cli.concurrency.min(16);
        cli.stations = cli.stations.min(4);
        cli.release_rate = cli.release_rate.min(200);
        let d = std::env::temp_dir().join(format!("attestd-bench-quick-{}", std::process::id()));
        temp = Some(tempfile_dir::TempDir(d));
    }
    let dir = match (&temp, &cli.data) {
        (Some(t), _) => t.0.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => PathBuf::from("target/bench-data").join(cli.units.to_string()),
    };
    if cli.fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let capacity = cli.units.max(
        Kit::load_or_create(&dir, cli.stations)
            .map(|k| k.file.units)
            .unwrap_or(0),
    );
    let keys = std::sync::Arc::new(UnitKeys::open(&dir, capacity)?);
    let mut run = Run {
        cli,
        dir,
        rows: Vec::new(),
        rpc_ceiling: None,
        keys,
        warmed: false,
        server_pid: 0,
        _temp: temp,
    };
    let (server, mut ctx) = run.start().await?;
    run.server_pid = server.pid();
    match scenario {
        Scenario::Provision => run.ensure_units(&mut ctx, true).await?,
        Scenario::BootStorm => {
            run.ensure_units(&mut ctx, false).await?;
            run.boot_storm(&ctx).await?;
        }
        Scenario::Queries => {
            run.ensure_units(&mut ctx, false).await?;
            run.ceiling(&ctx).await?;
            run.queries(&ctx).await?;
        }
        Scenario::Revoke => {
            run.ensure_units(&mut ctx, false).await?;
            run.revoke(&mut ctx).await?;
        }
        Scenario::Restart => {
            run.ensure_units(&mut ctx, false).await?;
            run.restart(server, ctx).await?;
            return Ok(run.rows);
        }
        Scenario::Ceiling => run.ceiling(&ctx).await?,
        Scenario::All => {
            run.ensure_units(&mut ctx, true).await?;
            run.ceiling(&ctx).await?;
            run.boot_storm(&ctx).await?;
            run.queries(&ctx).await?;
            run.revoke(&mut ctx).await?;
            run.restart(server, ctx).await?;
            return Ok(run.rows);
        }
        Scenario::Server => unreachable!("handled in main"),
    }
    ctx.save(&run.dir)?;
    drop(ctx);
    server.stop()?;
    Ok(run.rows)
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory": mem,
    })
}

/// mimalloc: the request path allocates and frees many small buffers
/// (protobuf, HTTP/2 frames, sled nodes); glibc's malloc cost ~15% of the
/// server's CPU in a boot storm (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.scenario == Scenario::Server {
        let dir = cli.data.clone().context("server needs --data")?;
        return kit::run_server(&dir, cli.cache_mb);
    }
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("note: RUST_BACKTRACE is set; unset it for benchmark figures");
    }
    let scenario = cli.scenario;
    let units = if cli.quick {
        cli.units.min(200)
    } else {
        cli.units
    };
    let json_path = cli.json.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-results").join(format!("{}-{units}.json", scenario.name()))
    });
    let settings = serde_json::json!({
        "units": units,
        "concurrency": cli.concurrency,
        "duration_secs": if cli.quick { 2 } else { cli.duration },
        "stations": cli.stations,
        "connections": cli.connections,
        "cache_mb": cli.cache_mb,
        "quick": cli.quick,
    });
    let rows = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))?;
    print!("{}", report::table(&rows));
    if let Some(parent) = json_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let doc = serde_json::json!({
        "scenario": scenario.name(),
        "settings": settings,
        "machine": machine(),
        "results": rows,
    });
    std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)?;
    println!("results written to {}", json_path.display());
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        eprintln!("{errors} errors");
        std::process::exit(2);
    }
    Ok(())
}
