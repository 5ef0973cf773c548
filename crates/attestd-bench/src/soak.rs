//! `soak`: the crash-cycle soak. For N cycles (default 50), devices boot,
//! stations enroll and calibrate units, the MES asks the release gate and a
//! security admin quarantines, places units and publishes baselines, all at
//! once against the real `attestd` binary, which is killed with SIGKILL at
//! a random moment of the cycle and started again on the same data. After
//! each restart everything attestd acknowledged since the soak began must
//! be there, the audit chain must verify, every entry must have its change
//! (and every change its entry), and the fleet counters must equal a
//! recount ([`verify`] says how each is checked).
//!
//! The seed (printed; `--seed` to reuse it) fixes the kill moments and the
//! load's choices; the interleaving of the callers is the scheduler's, so a
//! replay meets the same kind of moment, not the same instruction.
//!
//! It prints a line per cycle and a summary line: cycles, acknowledged
//! writes, writes lost, chain failures, counter mismatches (and audit
//! mismatches, rejections), and exits non-zero if any is above zero.

mod agree;
mod binary;
mod counters;
mod verify;
mod workload;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use attestd_client::Client;
use serde::Serialize;

use crate::kit::Kit;
use crate::report::Row;
use workload::{Load, LoadOutcome, Shape, World};

/// The soak's own settings (the global ones that apply: --store-url,
/// --pool-size, --cache-mb, --data, --fresh, --quick, --json).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct SoakArgs {
    /// Crash cycles (with --quick: at most 3).
    #[arg(long, default_value_t = 50)]
    cycles: u32,
    /// Seed of the kill moments and the load's choices (default: from the
    /// clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Earliest kill, in milliseconds after a cycle's load starts.
    #[arg(long, default_value_t = 500)]
    kill_min_ms: u64,
    /// Latest kill, in milliseconds after a cycle's load starts.
    #[arg(long, default_value_t = 3000)]
    kill_max_ms: u64,
    /// Units booting at once.
    #[arg(long, default_value_t = 8)]
    boot_workers: usize,
    /// Stations enrolling new units at once.
    #[arg(long, default_value_t = 4)]
    station_workers: usize,
    /// MES callers of the release gate.
    #[arg(long, default_value_t = 2)]
    mes_workers: usize,
    /// The attestd binary (default: `attestd` beside this executable,
    /// i.e. target/<profile>/attestd).
    #[arg(long, value_name = "PATH")]
    attestd: Option<PathBuf>,
}

/// A small deterministic generator (splitmix64), so a seed replays.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One cycle, as reported.
#[derive(Debug, Serialize)]
struct Cycle {
    cycle: u32,
    kill_after_ms: u64,
    /// Writes acknowledged in this cycle, by kind.
    acknowledged: std::collections::BTreeMap<&'static str, u64>,
    load: LoadOutcome,
    restart_to_serving_ms: u64,
    verify_ms: u64,
    findings: verify::Findings,
}

/// The soak's totals.
#[derive(Debug, Default, Serialize)]
struct Totals {
    cycles: u32,
    acknowledged_writes: u64,
    writes_lost: u64,
    chain_failures: u64,
    counter_mismatches: u64,
    audit_mismatches: u64,
    rejected: u64,
    in_flight_at_kills: u64,
    units: u64,
    audit_entries: u64,
    max_restart_ms: u64,
    wall_secs: f64,
}

impl Totals {
    fn failed(&self) -> bool {
        self.writes_lost
            + self.chain_failures
            + self.counter_mismatches
            + self.audit_mismatches
            + self.rejected
            > 0
    }
}

/// HTTP/2 connections the load is spread over.
const CONNECTIONS: usize = 4;

async fn connect(endpoint: &str) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        out.push(
            tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(out)
}

/// Runs the soak; prints the per-cycle lines and the summary, writes the
/// JSON, and returns whether everything held.
pub(crate) fn main(cli: &crate::Cli, args: &SoakArgs) -> anyhow::Result<bool> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli, args))
}

async fn run(cli: &crate::Cli, args: &SoakArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    anyhow::ensure!(
        cli.replicas == 1,
        "the soak runs one attestd process (--replicas 1)"
    );
    #[cfg(not(feature = "postgres"))]
    if cli.store_url.is_some() {
        return Err(crate::kit::without_postgres());
    }
    anyhow::ensure!(
        args.kill_min_ms <= args.kill_max_ms,
        "--kill-min-ms must not be above --kill-max-ms"
    );
    let cycles = if cli.quick {
        args.cycles.min(3)
    } else {
        args.cycles
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let exe = binary::find_binary(args.attestd.as_deref())?;
    let backend = cli.backend();
    // The soak needs a new fleet: it must know every write from the first.
    // Its default directory is its own and starts over every run; another
    // one must be new, or emptied with --fresh.
    let default_dir = cli.data.is_none();
    let dir = cli.data.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-data").join(format!("soak{}", cli.suffix(false)))
    });
    if dir.exists() && (default_dir || cli.fresh) {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    anyhow::ensure!(
        !dir.exists() || std::fs::read_dir(&dir)?.next().is_none(),
        "{} is not empty: the soak starts a new fleet; pass --fresh to empty it",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    crate::check_store(&dir, &backend, true, cli.fresh).await?;
    let kit = Kit::load_or_create(&dir, args.station_workers.max(1))?;
    let audit_key = binary::audit_public_key(&dir)?;
    let launch = binary::Launch::prepare(&dir, exe.clone(), &kit, &backend)?;
    let admin_token = kit.file.admin_token.clone();
    let shape = Shape {
        boot_workers: args.boot_workers.max(1),
        stations: args.station_workers.max(1),
        station_pause_ms: 100,
        mes_workers: args.mes_workers,
        mes_pause_ms: 5,
        admin_pause_ms: 20,
        publish_percent: 2,
    };
    let world = Arc::new(World::new(Arc::new(kit), shape, seed));
    let store = crate::store_label(&backend);
    eprintln!(
        "soak: {cycles} cycles, seed {seed}, kill {}..{} ms into each cycle, {store}, \
         attestd {}, data {}",
        args.kill_min_ms,
        args.kill_max_ms,
        exe.display(),
        dir.display()
    );

    let mut server = launch.start().await?;
    let admin = |endpoint: &str| {
        let (endpoint, token) = (endpoint.to_owned(), admin_token.clone());
        async move { anyhow::Ok(Client::connect(&endpoint, Some(&token)).await?) }
    };
    world.prepare(&admin(&server.endpoint).await?).await?;

    let mut rng = Rng::new(seed);
    let mut mark = None;
    let mut lost_seen = BTreeSet::new();
    let mut reported = Vec::new();
    let mut totals = Totals::default();
    for cycle in 1..=cycles {
        let channels = connect(&server.endpoint).await?;
        let kill_after = args.kill_min_ms + rng.below(args.kill_max_ms - args.kill_min_ms + 1);
        let acked_before = workload::lock(&world.ledger).len();
        let load = Load::start(&world, &channels, cycle)?;
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        load.killing();
        server.kill9()?;
        let load = load.finish().await?;
        drop(channels);

        server = launch.start().await?;
        let verify_started = Instant::now();
        let findings = verify::check(
            &world,
            &admin(&server.endpoint).await?,
            &audit_key,
            cycle,
            &mut mark,
            &mut lost_seen,
        )
        .await?;
        let mut acknowledged = std::collections::BTreeMap::new();
        for a in workload::lock(&world.ledger).iter().skip(acked_before) {
            *acknowledged.entry(a.write.kind()).or_insert(0u64) += 1;
        }
        let c = Cycle {
            cycle,
            kill_after_ms: kill_after,
            acknowledged,
            load,
            restart_to_serving_ms: server.start_time.as_millis() as u64,
            verify_ms: verify_started.elapsed().as_millis() as u64,
            findings,
        };
        eprintln!("{}", cycle_line(&c, cycles));
        for n in &c.findings.notes {
            eprintln!("    {n}");
        }
        for r in &c.load.first_rejections {
            eprintln!("    REJECTED before the kill: {r}");
        }
        totals.writes_lost += c.findings.lost;
        totals.chain_failures += c.findings.chain_failures;
        totals.counter_mismatches += c.findings.counter_mismatches;
        totals.audit_mismatches += c.findings.audit_mismatches;
        totals.rejected += c.load.rejected;
        totals.in_flight_at_kills += c.load.in_flight;
        totals.units = c.findings.units;
        totals.audit_entries = c.findings.audit_entries;
        totals.max_restart_ms = totals.max_restart_ms.max(c.restart_to_serving_ms);
        totals.cycles = cycle;
        reported.push(c);
    }
    server.stop()?;
    totals.acknowledged_writes = workload::lock(&world.ledger).len() as u64;
    totals.wall_secs = started.elapsed().as_secs_f64();

    let summary = format!(
        "soak: cycles {}, acknowledged writes {}, writes lost {}, chain failures {}, counter \
         mismatches {} (audit mismatches {}, rejected {}; seed {seed}, {store}, {:.0} s)",
        totals.cycles,
        totals.acknowledged_writes,
        totals.writes_lost,
        totals.chain_failures,
        totals.counter_mismatches,
        totals.audit_mismatches,
        totals.rejected,
        totals.wall_secs
    );
    let rows = rows(&totals, seed);
    print!("{}", crate::report::table(&rows));
    println!("{summary}");
    let json_path = cli.json.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-results").join(format!("soak{}.json", cli.suffix(false)))
    });
    if let Some(parent) = json_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let doc = serde_json::json!({
        "scenario": "soak",
        "settings": {
            "cycles": cycles,
            "seed": seed,
            "kill_min_ms": args.kill_min_ms,
            "kill_max_ms": args.kill_max_ms,
            "shape": shape,
            "store": store,
            "attestd": exe.display().to_string(),
            "bench_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "quick": cli.quick,
        },
        "machine": crate::machine(),
        "results": rows,
        "totals": totals,
        "cycles": reported,
    });
    std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)?;
    println!("results written to {}", json_path.display());
    if totals.failed() {
        eprintln!("the soak FAILED: see the lines above");
    }
    Ok(!totals.failed())
}

fn cycle_line(c: &Cycle, of: u32) -> String {
    let acked: u64 = c.acknowledged.values().sum();
    let f = &c.findings;
    format!(
        "cycle {:>3}/{of}: killed at {:.2} s; acknowledged {acked} ({}); in flight {}; \
         rejected {}; restart {:.2} s; checked in {:.1} s ({} units, {} audit entries): \
         lost {}, chain {}, audit mismatches {}, counter mismatches {}",
        c.cycle,
        c.kill_after_ms as f64 / 1000.0,
        c.acknowledged
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        c.load.in_flight,
        c.load.rejected,
        c.restart_to_serving_ms as f64 / 1000.0,
        c.verify_ms as f64 / 1000.0,
        f.units,
        f.audit_entries,
        f.lost,
        if f.chain_failures == 0 {
            "ok"
        } else {
            "FAILED"
        },
        f.audit_mismatches,
        f.counter_mismatches
    )
}

/// The table rows (a failure shows in the errors column).
fn rows(t: &Totals, seed: u64) -> Vec<Row> {
    let fig = |op: &str, v: f64, errors: u64, note: String| {
        Row::figure("soak", op, v, note).with_errors(errors)
    };
    vec![
        fig(
            "cycles (SIGKILL, restart, check)",
            t.cycles as f64,
            0,
            format!("seed {seed}; {:.0} s wall", t.wall_secs),
        ),
        fig(
            "acknowledged writes",
            t.acknowledged_writes as f64,
            0,
            format!(
                "{} units, {} audit entries at the end; {} calls in flight at the kills",
                t.units, t.audit_entries, t.in_flight_at_kills
            ),
        ),
        fig(
            "writes lost",
            t.writes_lost as f64,
            t.writes_lost,
            "acknowledged, then missing after a restart".into(),
        ),
        fig(
            "chain failures",
            t.chain_failures as f64,
            t.chain_failures,
            "checks in which the audit chain did not verify".into(),
        ),
        fig(
            "counter mismatches",
            t.counter_mismatches as f64,
            t.counter_mismatches,
            "summary counts unlike the recount, over all checks".into(),
        ),
        fig(
            "audit mismatches",
            t.audit_mismatches as f64,
            t.audit_mismatches,
            "entries without their change or changes without their entry".into(),
        ),
        fig(
            "rejected before a kill",
            t.rejected as f64,
            t.rejected,
            "valid requests refused".into(),
        ),
        fig(
            "restart to SERVING, longest (s)",
            t.max_restart_ms as f64 / 1000.0,
            0,
            String::new(),
        ),
    ]
}
