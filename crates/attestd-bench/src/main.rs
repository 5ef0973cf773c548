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
//!
//! `soak` is not a speed figure: crash cycles against the `attestd` binary
//! built beside the bench (RELIABILITY.md; the code is in `soak.rs`).
//!
//! ```sh
//! cargo build --release -p attestd -p attestd-bench --bins
//! target/release/attestd-bench soak                          # 50 cycles on sled
//! target/release/attestd-bench soak --quick                  # 3 cycles; what CI runs
//! ```
//!
//! With `--features postgres`, `--store-url` runs the fleet on a PostgreSQL
//! database instead of sled, served by `--replicas` attestd processes. The
//! bench owns that database: `--fresh` drops and recreates its `public`
//! schema, so name a database that holds nothing else.
//!
//! ```sh
//! cargo run --release -p attestd-bench --features postgres -- all --units 10000 \
//!     --store-url postgres://postgres@127.0.0.1:5432/attestd_bench --fresh --replicas 3
//! ```

mod fleet;
mod kit;
#[cfg(feature = "postgres")]
mod pgdb;
mod report;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use clap::{Parser, Subcommand};

use crate::fleet::{Bound, Ctx, Query, Which};
use crate::kit::{Backend, Kit, Servers, UnitKeys};
use crate::report::{CpuPerOp, Row};

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
    /// HTTP/2 connections the load is spread over (round robin over the
    /// replicas; rounded up to a multiple of their number).
    #[arg(long, global = true, default_value_t = 4)]
    connections: usize,
    /// attestd's database page cache, in MiB (sled).
    #[arg(long, global = true, default_value_t = 256)]
    cache_mb: u64,
    /// Store the fleet in this PostgreSQL database instead of sled
    /// (postgres://user[:password]@host[:port]/dbname). The bench owns it:
    /// with --fresh it drops and recreates the database's `public` schema
    /// (DROP SCHEMA public CASCADE), so name a database that holds nothing
    /// else. It touches no other database. Needs a bench built with
    /// `--features postgres`.
    #[arg(
        long,
        global = true,
        env = kit::STORE_URL_VAR,
        hide_env_values = true,
        value_name = "URL"
    )]
    store_url: Option<String>,
    /// attestd processes serving the fleet, all on the --store-url database
    /// with the same audit key; the load is spread over them. More than one
    /// needs --store-url.
    #[arg(long, global = true, default_value_t = 1)]
    replicas: usize,
    /// PostgreSQL connections each replica keeps open at most.
    #[arg(long, global = true, default_value_t = 16)]
    pool_size: usize,
    /// Where the fleet's kit (and with sled its database) lives (default
    /// target/bench-data/<units>, or <units>-pg with --store-url); kept
    /// between runs so that a scenario can reuse a provisioned fleet. A
    /// directory belongs to one backend and one database. The soak always
    /// starts a new fleet: its default, target/bench-data/soak[-pg], is
    /// emptied at start; another directory must be empty, or --fresh.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Start from an empty data directory and, with --store-url, an empty
    /// database (its `public` schema dropped and recreated; the servers
    /// then create attestd's tables).
    #[arg(long, global = true)]
    fresh: bool,
    /// CheckRelease requests per second during the boot storm (queries).
    #[arg(long, global = true, default_value_t = 1000)]
    release_rate: u32,
    /// Also boot at this many boots per second, offered in open loop
    /// (boot-storm): each boot starts on schedule whatever the others are
    /// doing, latency counted from its scheduled start; the rate achieved
    /// is reported beside the rate offered. 0: closed loop only.
    #[arg(long, global = true, default_value_t = 0)]
    boot_rate: u32,
    /// Small and short: 200 units, 2 s phases, a fresh temporary directory
    /// (with --store-url: an empty database, or --fresh to empty it). For
    /// CI: checks that every scenario runs without errors, not speed. The soak: at most 3 cycles.
    #[arg(long, global = true)]
    quick: bool,
    /// Where to write the JSON results (default
    /// target/bench-results/<scenario>-<units>[-pg[-r<replicas>]].json).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// (internal) which replica a server process is, for its log's name.
    #[arg(long, global = true, default_value_t = 0, hide = true)]
    replica: usize,
}

/// Boots in flight at most in an open-loop phase: far above what a server
/// that keeps up needs (rate times latency: 2,000/s x 50 ms = 100), so the
/// bound only stops a server that falls behind from being buried.
const OPEN_LOOP_IN_FLIGHT: usize = 1024;

impl Cli {
    /// Where the fleet is stored.
    fn backend(&self) -> Backend {
        match &self.store_url {
            Some(url) => Backend::Postgres {
                url: url.clone(),
                pool_size: self.pool_size,
            },
            None => Backend::Sled {
                cache_mb: self.cache_mb,
            },
        }
    }

    /// --connections rounded up to a multiple of --replicas, so that every
    /// replica carries the same share of the load.
    fn connections(&self) -> usize {
        let r = self.replicas.max(1);
        self.connections.max(1).div_ceil(r) * r
    }

    /// Names of data directories and result files: "" with sled, "-pg"
    /// with PostgreSQL ("-pg-r3" for three replicas in result files).
    fn suffix(&self, with_replicas: bool) -> String {
        match (&self.store_url, self.replicas) {
            (None, _) => String::new(),
            (Some(_), n) if with_replicas && n > 1 => format!("-pg-r{n}"),
            (Some(_), _) => "-pg".to_owned(),
        }
    }
}

#[derive(Subcommand, Clone, Debug)]
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
    /// Crash cycles against the real attestd binary: load, SIGKILL at a
    /// random moment, restart, then every acknowledged write, the audit
    /// chain and the counters checked (RELIABILITY.md).
    Soak(soak::SoakArgs),
    /// (internal) the attestd server process the load runs against.
    #[command(hide = true)]
    Server,
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Provision => "provision",
            Scenario::BootStorm => "boot-storm",
            Scenario::Queries => "queries",
            Scenario::Revoke => "revoke",
            Scenario::Restart => "restart",
            Scenario::Ceiling => "ceiling",
            Scenario::All => "all",
            Scenario::Soak(_) => "soak",
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
    backend: Backend,
    /// The PostgreSQL database's name, for its backends' CPU time.
    pg_database: Option<String>,
    /// The server processes, for their CPU time.
    server_pids: Vec<u32>,
    _temp: Option<tempfile_dir::TempDir>,
}

/// CPU seconds used so far, by process.
#[derive(Clone, Copy)]
struct CpuNow {
    servers: f64,
    postgres: Option<kit::PgCpu>,
    load_generator: f64,
    host: Option<kit::HostTicks>,
}

/// The share (%) of the machine's CPU time between two readings that
/// `part` counts.
fn host_share(
    before: Option<kit::HostTicks>,
    now: Option<kit::HostTicks>,
    part: impl Fn(&kit::HostTicks) -> u64,
) -> Option<f64> {
    let (b, n) = (before?, now?);
    let total = n.total.checked_sub(b.total).filter(|t| *t > 0)?;
    let d = part(&n).checked_sub(part(&b))?;
    Some(d as f64 * 100.0 / total as f64)
}

/// A temporary directory for --quick, removed at the end.
mod tempfile_dir {
    pub(crate) struct TempDir(pub std::path::PathBuf);
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

    async fn start(&self) -> anyhow::Result<(Servers, Ctx)> {
        let kit = Kit::load_or_create(&self.dir, self.cli.stations)?;
        // Made here, before any replica starts, so that they all load the
        // same key rather than each making its own.
        attestd_server::checkpoint::CheckpointKey::load_or_create(&kit::audit_key_path(&self.dir))
            .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
        let servers = Servers::start(&self.dir, &self.backend, self.cli.replicas).await?;
        let mut ctx = Ctx::connect(
            kit,
            self.keys.clone(),
            &servers.endpoints(),
            self.cli.connections,
        )
        .await?;
        fleet::prepare(&mut ctx).await?;
        ctx.save(&self.dir)?;
        Ok((servers, ctx))
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

    /// CPU seconds used so far by the servers (summed), PostgreSQL (when
    /// the fleet is stored there) and this load generator.
    fn cpu(&self) -> CpuNow {
        CpuNow {
            servers: self.server_pids.iter().map(|p| kit::cpu_seconds(*p)).sum(),
            postgres: self.pg_database.as_deref().map(kit::postgres_cpu_seconds),
            load_generator: kit::cpu_seconds(std::process::id()),
            host: kit::host_ticks(),
        }
    }

    /// CPU per operation since `before`: what a figure costs, whatever else
    /// the machine was doing.
    fn cpu_per_op(&self, before: CpuNow, ops: u64) -> Option<CpuPerOp> {
        let now = self.cpu();
        if ops == 0 {
            return None;
        }
        let per = |d: f64| d * 1e6 / ops as f64;
        Some(CpuPerOp {
            server_us: per(now.servers - before.servers),
            replicas: self.server_pids.len(),
            postgres_us: now
                .postgres
                .zip(before.postgres)
                .map(|(n, b)| per(n.all - b.all)),
            postgres_db_backends_us: now
                .postgres
                .zip(before.postgres)
                .map(|(n, b)| per(n.database - b.database)),
            load_generator_us: per(now.load_generator - before.load_generator),
            host_steal_pct: host_share(before.host, now.host, |t| t.steal),
            host_idle_pct: host_share(before.host, now.host, |t| t.idle),
        })
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
        // Closed loop, then (with --boot-rate) at a fixed rate; each phase's
        // row with the CPU its boots cost.
        let mut phases = vec![
            ("boot ES256 (challenge + evidence)", KeyAlg::Es256, None),
            ("boot Ed25519 (challenge + evidence)", KeyAlg::Ed25519, None),
        ];
        if self.cli.boot_rate > 0 {
            let rate = Some(self.cli.boot_rate);
            phases.push(("boot ES256 at a fixed rate", KeyAlg::Es256, rate));
            phases.push(("boot Ed25519 at a fixed rate", KeyAlg::Ed25519, rate));
        }
        for (label, alg, rate) in phases {
            let cpu = self.cpu();
            let which = Which::Alg(alg);
            let r = match rate {
                None => {
                    let bound = Bound::Time(self.duration());
                    fleet::storm(ctx, label, which, self.cli.concurrency, bound).await?
                }
                Some(rate) => {
                    let d = self.duration();
                    fleet::storm_at_rate(ctx, label, which, rate, OPEN_LOOP_IN_FLIGHT, d).await?
                }
            };
            let note = self.ceiling_note(r.row.rate_per_sec);
            let cpu = self.cpu_per_op(cpu, r.row.count);
            let mut row = r.row;
            row.note = format!("{}{note}", row.note);
            row.cpu = cpu;
            self.add(row);
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
                &ctx.endpoints,
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

    /// Memory of the largest replica, and a note naming every replica's
    /// when there are several.
    fn memory(servers: &Servers) -> ((u64, u64), String) {
        let all: Vec<(u64, u64)> = servers.procs.iter().map(|p| p.memory()).collect();
        let max = all
            .iter()
            .fold((0, 0), |(r, p), (r2, p2)| (r.max(*r2), p.max(*p2)));
        let note = if all.len() > 1 {
            format!(
                "; largest of {} replicas ({} MiB)",
                all.len(),
                all.iter()
                    .map(|(r, _)| format!("{:.0}", *r as f64 / 1048576.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        (max, note)
    }

    async fn restart(&mut self, servers: Servers, ctx: Ctx) -> anyhow::Result<()> {
        let ((rss, peak), which) = Run::memory(&servers);
        self.add(Row::figure(
            "restart",
            "resident memory before restart (MiB)",
            rss as f64 / 1048576.0,
            format!(
                "peak {:.0} MiB during the run; {} units{which}",
                peak as f64 / 1048576.0,
                ctx.units
            ),
        ));
        drop(ctx);
        servers.stop()?;
        let dropped = !self.cli.quick && drop_page_cache();
        let servers = Servers::start(&self.dir, &self.backend, self.cli.replicas).await?;
        self.server_pids = servers.pids();
        self.add(Row::figure(
            "restart",
            "cold start to SERVING (s)",
            servers.start_time.as_secs_f64(),
            format!(
                "{} units; OS page cache {}{}",
                self.cli.units,
                if dropped {
                    "dropped first"
                } else {
                    "not dropped"
                },
                match (&self.backend, self.cli.replicas) {
                    (Backend::Sled { .. }, _) => String::new(),
                    (Backend::Postgres { .. }, 1) => "; PostgreSQL kept running".to_owned(),
                    (Backend::Postgres { .. }, n) => {
                        format!("; {n} replicas started at once, until all SERVING; PostgreSQL kept running")
                    }
                }
            ),
        ));
        let ctx = Ctx::connect(
            Kit::load_or_create(&self.dir, self.cli.stations)?,
            self.keys.clone(),
            &servers.endpoints(),
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
        let ((rss, _), which) = Run::memory(&servers);
        self.add(Row::figure(
            "restart",
            "resident memory after start (MiB)",
            rss as f64 / 1048576.0,
            which.trim_start_matches("; ").to_owned(),
        ));
        drop(ctx);
        servers.stop()?;
        Ok(())
    }
}

/// Drops the OS page cache when allowed (root), so a restart reads from disk.
fn drop_page_cache() -> bool {
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

async fn run(cli: Cli) -> anyhow::Result<Vec<Row>> {
    let scenario = cli.scenario.clone();
    let mut cli = cli;
    anyhow::ensure!(cli.replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        cli.replicas == 1 || cli.store_url.is_some(),
        "--replicas {} needs --store-url: replicas share a PostgreSQL database (sled is one process's)",
        cli.replicas
    );
    #[cfg(not(feature = "postgres"))]
    if cli.store_url.is_some() {
        return Err(kit::without_postgres());
    }
    let connections = cli.connections();
    if connections != cli.connections {
        eprintln!(
            "{connections} connections rather than {} (a multiple of {} replicas)",
            cli.connections, cli.replicas
        );
        cli.connections = connections;
    }
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
        (None, None) => {
            PathBuf::from("target/bench-data").join(format!("{}{}", cli.units, cli.suffix(false)))
        }
    };
    if cli.fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let new_fleet = !Kit::path(&dir).exists();
    std::fs::create_dir_all(&dir)?;
    let backend = cli.backend();
    let pg_database = check_store(&dir, &backend, new_fleet, cli.fresh).await?;
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
        backend,
        pg_database,
        server_pids: Vec::new(),
        _temp: temp,
    };
    let (server, mut ctx) = run.start().await?;
    run.server_pids = server.pids();
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
        Scenario::Server | Scenario::Soak(_) => unreachable!("handled in main"),
    }
    ctx.save(&run.dir)?;
    drop(ctx);
    server.stop()?;
    Ok(run.rows)
}

/// Which backend (and database) a data directory's fleet is stored in, kept
/// in `<data>/store` so that a sled fleet's kit never meets a PostgreSQL
/// database, nor one database's kit another's.
fn store_label(backend: &Backend) -> String {
    match backend {
        Backend::Sled { .. } => "sled".to_owned(),
        #[cfg(feature = "postgres")]
        Backend::Postgres { url, .. } => {
            format!("postgres {}", attestd_store::postgres::redact_url(url))
        }
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres { .. } => "postgres".to_owned(),
    }
}

/// Checks that the data directory and the store hold the same fleet, and
/// empties the PostgreSQL database for a fresh one. `new_fleet`: the
/// directory had no kit (fresh, --quick or first run). Returns the
/// PostgreSQL database's name.
async fn check_store(
    dir: &std::path::Path,
    backend: &Backend,
    new_fleet: bool,
    fresh: bool,
) -> anyhow::Result<Option<String>> {
    let label_path = dir.join("store");
    let label = store_label(backend);
    if !new_fleet {
        // Directories from before PostgreSQL have no label: they are sled's.
        let had = std::fs::read_to_string(&label_path).unwrap_or_else(|_| "sled".to_owned());
        anyhow::ensure!(
            had.trim() == label,
            "{} holds the kit of a fleet stored in {} but this run stores in {label}: \
             pass the --data directory of that fleet, or --fresh to start a new one",
            dir.display(),
            had.trim()
        );
    }
    let database = match backend {
        Backend::Postgres { url, .. } => Some(check_database(url, dir, new_fleet, fresh).await?),
        Backend::Sled { .. } => None,
    };
    std::fs::write(&label_path, format!("{label}\n"))?;
    Ok(database)
}

/// Empties the database for a fresh fleet (`fresh`), or checks that it
/// holds a fleet exactly when the data directory has its kit. Returns the
/// database's name.
#[cfg(feature = "postgres")]
async fn check_database(
    url: &str,
    dir: &std::path::Path,
    new_fleet: bool,
    fresh: bool,
) -> anyhow::Result<String> {
    let shown = attestd_store::postgres::redact_url(url);
    if fresh {
        return pgdb::empty(url).await;
    }
    let pgdb::Found { tables, database } = pgdb::look(url).await?;
    anyhow::ensure!(
        !new_fleet || tables == 0,
        "the database {shown} holds tables ({tables}) but {} has no kit for them: pass \
         --fresh to empty the database (it drops its public schema), or the --data \
         directory of the fleet stored there",
        dir.display()
    );
    anyhow::ensure!(
        new_fleet || tables > 0,
        "the database {shown} is empty but {} holds the kit of a fleet: pass --fresh to \
         start a new fleet",
        dir.display()
    );
    Ok(database)
}

#[cfg(not(feature = "postgres"))]
async fn check_database(
    _url: &str,
    _dir: &std::path::Path,
    _new_fleet: bool,
    _fresh: bool,
) -> anyhow::Result<String> {
    Err(kit::without_postgres())
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
        "writeback": writeback(),
    })
}

/// The kernel's writeback settings (`/proc/sys/vm`, Linux): when dirty
/// pages are written back decides whether a database's commits meet a
/// burst of writes (BENCHMARKS.md: commits of 35-123 ms at the 30 s
/// writeback bursts of the default settings). Settings this system lacks
/// are left out.
fn writeback() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for name in [
        "dirty_background_bytes",
        "dirty_background_ratio",
        "dirty_bytes",
        "dirty_ratio",
        "dirty_expire_centisecs",
        "dirty_writeback_centisecs",
    ] {
        let value = std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(v) = value {
            out.insert(name.to_owned(), v.into());
        }
    }
    out.into()
}

/// mimalloc: the request path allocates and frees many small buffers
/// (protobuf, HTTP/2 frames, sled nodes); glibc's malloc cost ~15% of the
/// server's CPU in a boot storm (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Server = cli.scenario {
        let dir = cli.data.clone().context("server needs --data")?;
        return kit::run_server(&dir, &cli.backend(), cli.replica);
    }
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("note: RUST_BACKTRACE is set; unset it for benchmark figures");
    }
    if let Scenario::Soak(args) = &cli.scenario {
        if !soak::main(&cli, args)? {
            std::process::exit(2);
        }
        return Ok(());
    }
    let scenario = cli.scenario.clone();
    let units = if cli.quick {
        cli.units.min(200)
    } else {
        cli.units
    };
    let json_path = cli.json.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-results").join(format!(
            "{}-{units}{}.json",
            scenario.name(),
            cli.suffix(true)
        ))
    });
    let settings = serde_json::json!({
        "units": units,
        "concurrency": cli.concurrency,
        "duration_secs": if cli.quick { 2 } else { cli.duration },
        "stations": cli.stations,
        "connections": cli.connections(),
        "store": store_label(&cli.backend()),
        "replicas": cli.replicas,
        "cache_mb": cli.cache_mb,
        "pool_size": cli.store_url.as_ref().map(|_| cli.pool_size),
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn runs_record_the_kernels_writeback_settings() {
        let w = super::writeback();
        for name in ["dirty_expire_centisecs", "dirty_writeback_centisecs"] {
            let on_file = std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            assert!(on_file.is_some(), "/proc/sys/vm/{name} is not readable");
            assert_eq!(
                w.get(name).and_then(serde_json::Value::as_u64),
                on_file,
                "{name} in {w}"
            );
        }
    }
}
