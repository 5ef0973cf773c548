//! The bench's world: a data directory holding a kit (tokens, station keys,
//! release key, a pool of device keys, the audit key) and, with sled,
//! attestd's database; and the attestd server processes the load runs
//! against.
//!
//! A server is this same executable re-run as `attestd-bench server`,
//! which assembles `attestd_server::serve` exactly as the `attestd` binary
//! does (store, group commit, background jobs, audit checkpoints), on a
//! loopback port, in its own process so that its memory, CPU and start-up
//! time can be measured apart from the load generator's. With PostgreSQL
//! ([`Backend::Postgres`]) several such replicas may share one database and
//! one audit key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use attestd_client::core::keys::KeyAlg;
use attestd_client::SigningKey;
use attestd_server::settings::{Limits, PrincipalConfig, ReleaseConfig, Settings};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(crate) struct KitFile {
    pub admin_token: String,
    pub mes_token: String,
    pub stations: Vec<StationFile>,
    pub release_pkcs8: String,
    /// Units provisioned so far (serials 0..units).
    pub units: u64,
    /// Baseline versions published so far.
    pub baseline_version: u64,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct StationFile {
    pub id: String,
    pub token: String,
    pub pkcs8: String,
    pub last_sequence: u64,
}

pub(crate) struct Kit {
    pub file: KitFile,
    pub stations: Vec<(StationFile, SigningKey)>,
    pub release: SigningKey,
}

fn token() -> anyhow::Result<String> {
    Ok(attestd_server::dev::random_token()?)
}

fn key_b64(k: &SigningKey) -> String {
    B64.encode(k.pkcs8())
}

fn load_key(alg: KeyAlg, b64: &str) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::from_pkcs8(alg, &B64.decode(b64)?)?)
}

impl Kit {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("bench-kit.json")
    }

    /// Loads the kit of `dir`, or makes one with `stations` stations.
    pub(crate) fn load_or_create(dir: &Path, stations: usize) -> anyhow::Result<Kit> {
        let path = Kit::path(dir);
        let file = if path.exists() {
            serde_json::from_slice(&std::fs::read(&path)?).context("reading the bench kit")?
        } else {
            std::fs::create_dir_all(dir)?;
            let gen = |alg| SigningKey::generate(alg).map(|k| key_b64(&k));
            let file = KitFile {
                admin_token: token()?,
                mes_token: token()?,
                stations: (0..stations)
                    .map(|i| {
                        Ok(StationFile {
                            id: format!("bench-st-{i:02}"),
                            token: token()?,
                            pkcs8: gen(KeyAlg::Es256)?,
                            last_sequence: 0,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                release_pkcs8: gen(KeyAlg::Ed25519)?,
                units: 0,
                baseline_version: 0,
            };
            std::fs::write(&path, serde_json::to_vec_pretty(&file)?)?;
            file
        };
        Kit::from_file(file)
    }

    fn from_file(file: KitFile) -> anyhow::Result<Kit> {
        Ok(Kit {
            stations: file
                .stations
                .iter()
                .map(|s| Ok((s.clone(), load_key(KeyAlg::Es256, &s.pkcs8)?)))
                .collect::<anyhow::Result<_>>()?,
            release: load_key(KeyAlg::Ed25519, &file.release_pkcs8)?,
            file,
        })
    }

    /// Writes the kit with the progress made: station sequences, units
    /// provisioned, baseline version.
    pub(crate) fn save(
        &self,
        dir: &Path,
        seqs: &[u64],
        units: u64,
        baseline: u64,
    ) -> anyhow::Result<()> {
        let mut file = serde_json::from_slice::<KitFile>(&serde_json::to_vec(&self.file)?)?;
        for (s, seq) in file.stations.iter_mut().zip(seqs) {
            s.last_sequence = *seq;
        }
        file.units = units;
        file.baseline_version = baseline;
        let tmp = dir.join("bench-kit.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)?;
        std::fs::rename(tmp, Kit::path(dir))?;
        Ok(())
    }

    /// The principals and release trust root the server runs with.
    pub(crate) fn settings(&self) -> Settings {
        let p = |name: &str, role: &str, token: &str, station: Option<&str>| PrincipalConfig {
            name: name.into(),
            role: role.into(),
            token_sha256: Some(attestd_server::auth::token_hash(token)),
            cert_sha256: None,
            cert_uri: None,
            station_id: station.map(Into::into),
            tenant: None,
        };
        let mut principals = vec![
            p(
                "bench-admin",
                "security-admin",
                &self.file.admin_token,
                None,
            ),
            p("bench-mes", "mes", &self.file.mes_token, None),
        ];
        for s in &self.file.stations {
            principals.push(p(&s.id, "station", &s.token, Some(&s.id)));
        }
        Settings {
            limits: Limits {
                // All load comes from one loopback peer and each simulated
                // unit may boot many times a minute in a short run.
                rate_per_peer_per_min: 0,
                rate_per_serial_per_min: 0,
                ..Limits::default()
            },
            principals,
            release: ReleaseConfig {
                threshold: 1,
                keys: vec![B64.encode(self.release.public_key().spki_der())],
            },
        }
    }
}

/// Where the fleet is stored.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// sled in `<data>/db`, with this page cache (MiB).
    Sled { cache_mb: u64 },
    /// A PostgreSQL database, shared by every replica.
    Postgres {
        /// May carry a password: passed to the server processes through
        /// [`STORE_URL_VAR`], never on a command line, and never printed.
        url: String,
        /// Connections each replica keeps open at most.
        pool_size: usize,
    },
}

/// The environment variable that carries `--store-url`.
pub(crate) const STORE_URL_VAR: &str = "ATTESTD_BENCH_STORE_URL";

/// The audit key every replica signs checkpoints with (attestd pins one
/// key per database; replicas with different keys would refuse to start).
pub(crate) fn audit_key_path(dir: &Path) -> PathBuf {
    dir.join("audit-key.pkcs8")
}

/// `attestd-bench server`: runs attestd on `dir` until SIGTERM, storing in
/// `backend`; `replica` numbers the process's log file.
pub(crate) fn run_server(dir: &Path, backend: &Backend, replica: usize) -> anyhow::Result<()> {
    // The load generator makes the kit before it starts the server; a
    // server without one would have no principals to serve.
    anyhow::ensure!(
        Kit::path(dir).exists(),
        "no bench kit in {}: the server is started by attestd-bench itself",
        dir.display()
    );
    let kit = Kit::load_or_create(dir, 0)?;
    // Logs as attestd writes them (ATTESTD_LOG, default info), into a file
    // so that they cost what they cost in production without mixing into
    // the tables.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(match replica {
            0 => "server.log".to_owned(),
            k => format!("server-{k}.log"),
        }))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATTESTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = open_store(dir, backend, &kit).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let key = attestd_server::checkpoint::CheckpointKey::load_or_create(&audit_key_path(dir))
            .map_err(|e| anyhow::anyhow!(e))?;
        println!("bench server listening on {}", listener.local_addr()?);
        let parts = attestd_server::ServerParts {
            store,
            settings: kit.settings(),
            clock: Arc::new(attestd_server::clock::SystemClock),
            metrics_listener: None,
            checkpoint_key: Some(Arc::new(key)),
            tls: None,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            term.recv().await;
        };
        attestd_server::serve(listener, parts, stop).await?;
        Ok(())
    })
}

async fn open_store(
    dir: &Path,
    backend: &Backend,
    kit: &Kit,
) -> anyhow::Result<Arc<dyn attestd_store::Store>> {
    match backend {
        Backend::Sled { cache_mb } => {
            let store = attestd_store::sled_store::SledStore::open(
                &dir.join("db"),
                &attestd_store::sled_store::SledConfig {
                    cache_capacity: cache_mb * 1024 * 1024,
                    group_commit_max_wait: Duration::from_micros(
                        kit.settings().limits.group_commit_max_wait_us,
                    ),
                },
            )
            .map_err(|e| anyhow::anyhow!("store: {e}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres { url, pool_size } => {
            let mut cfg = attestd_store::postgres::PgConfig::new(url.clone());
            cfg.pool_size = *pool_size;
            let store = attestd_store::postgres::PgStore::open(&cfg)
                .await
                .map_err(|e| anyhow::anyhow!("store: {e}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres { .. } => Err(without_postgres()),
    }
}

/// The refusal of `--store-url` by a bench built without PostgreSQL.
#[cfg(not(feature = "postgres"))]
pub(crate) fn without_postgres() -> anyhow::Error {
    anyhow::anyhow!(
        "this attestd-bench was built without PostgreSQL support: \
         build it with `--features postgres` to use --store-url"
    )
}

/// A server process.
pub(crate) struct ServerProc {
    child: Child,
    pub endpoint: String,
}

impl ServerProc {
    /// Starts replica `replica` of the fleet in `dir` and waits until it
    /// answers health checks SERVING.
    pub(crate) async fn start(
        dir: &Path,
        backend: &Backend,
        replica: usize,
    ) -> anyhow::Result<ServerProc> {
        let started = Instant::now();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("server")
            .arg("--data")
            .arg(dir)
            .arg("--replica")
            .arg(replica.to_string())
            .env("ATTESTD_LOG", "warn")
            .env_remove(STORE_URL_VAR)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match backend {
            Backend::Sled { cache_mb } => cmd.arg("--cache-mb").arg(cache_mb.to_string()),
            Backend::Postgres { url, pool_size } => cmd
                .arg("--pool-size")
                .arg(pool_size.to_string())
                .env(STORE_URL_VAR, url),
        };
        let mut child = cmd.spawn().context("starting the bench server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let addr = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(l)) = lines.next() {
                if let Some(a) = l.strip_prefix("bench server listening on ") {
                    return Some(a.to_owned());
                }
            }
            None
        })
        .await?
        .context("the bench server did not start")?;
        let endpoint = format!("http://{addr}");
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?;
        loop {
            if let Ok(ch) = channel.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                {
                    if r.into_inner().status == 1 {
                        break;
                    }
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!("bench server {replica} exited at start ({status}); see its log in the data directory");
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("bench server {replica} did not answer health checks");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(ServerProc { child, endpoint })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in bytes.
    pub(crate) fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// SIGTERM, then waits for the drain and final flush.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the bench server did not stop within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The replicas of a fleet: one server process, or several on one
/// PostgreSQL database.
pub(crate) struct Servers {
    pub procs: Vec<ServerProc>,
    /// From the first spawn until every replica answered SERVING.
    pub start_time: Duration,
}

impl Servers {
    /// Starts `replicas` server processes on `dir` at once (with PostgreSQL,
    /// their migrations at start meet on the database's advisory lock).
    pub(crate) async fn start(
        dir: &Path,
        backend: &Backend,
        replicas: usize,
    ) -> anyhow::Result<Servers> {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..replicas.max(1) {
            let (dir, backend) = (dir.to_owned(), backend.clone());
            tasks.push(tokio::spawn(async move {
                ServerProc::start(&dir, &backend, k).await
            }));
        }
        let mut procs = Vec::new();
        let mut failed = None;
        for t in tasks {
            match t.await? {
                Ok(p) => procs.push(p),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        // Dropping the started ones kills them.
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Servers {
            procs,
            start_time: started.elapsed(),
        })
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.endpoint.clone()).collect()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(ServerProc::pid).collect()
    }

    /// Stops every replica (SIGTERM to all, then waits for each).
    pub(crate) fn stop(self) -> anyhow::Result<()> {
        for p in &self.procs {
            p.terminate();
        }
        let mut result = Ok(());
        for p in self.procs {
            if let Err(e) = p.stop() {
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// One private key per unit (attestd refuses a device key enrolled for two
/// units), made when the unit is provisioned and kept in
/// `<data>/unit-keys.bin` as fixed-size records (length byte + PKCS#8), so
/// a later run can boot the same fleet. Parsed keys are cached in memory.
pub(crate) struct UnitKeys {
    file: std::fs::File,
    cache: Vec<std::sync::OnceLock<SigningKey>>,
}

const KEY_RECORD: u64 = 192;

impl UnitKeys {
    pub(crate) fn open(dir: &Path, capacity: u64) -> anyhow::Result<UnitKeys> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("unit-keys.bin"))?;
        Ok(UnitKeys {
            file,
            cache: (0..capacity).map(|_| std::sync::OnceLock::new()).collect(),
        })
    }

    /// Makes, stores and returns unit `i`'s key.
    pub(crate) fn create(&self, i: u64, alg: KeyAlg) -> anyhow::Result<&SigningKey> {
        use std::os::unix::fs::FileExt as _;
        let key = SigningKey::generate(alg)?;
        let pkcs8 = key.pkcs8();
        anyhow::ensure!(pkcs8.len() < KEY_RECORD as usize - 1, "key too long");
        let mut rec = vec![0u8; KEY_RECORD as usize];
        rec[0] = match alg {
            KeyAlg::Es256 => 1,
            KeyAlg::Ed25519 => 2,
        };
        rec[1] = pkcs8.len() as u8;
        rec[2..2 + pkcs8.len()].copy_from_slice(pkcs8);
        self.file.write_all_at(&rec, i * KEY_RECORD)?;
        let slot = self.cache.get(i as usize).context("unit beyond capacity")?;
        let _ = slot.set(key);
        slot.get().context("key cached")
    }

    /// Unit `i`'s key, read from the file the first time.
    pub(crate) fn get(&self, i: u64) -> anyhow::Result<&SigningKey> {
        use std::os::unix::fs::FileExt as _;
        let slot = self.cache.get(i as usize).context("unit beyond capacity")?;
        if let Some(k) = slot.get() {
            return Ok(k);
        }
        let mut rec = vec![0u8; KEY_RECORD as usize];
        self.file.read_exact_at(&mut rec, i * KEY_RECORD)?;
        let alg = match rec[0] {
            1 => KeyAlg::Es256,
            2 => KeyAlg::Ed25519,
            _ => bail!("no key stored for unit {i}"),
        };
        let len = rec[1] as usize;
        let key = SigningKey::from_pkcs8(alg, &rec[2..2 + len])?;
        let _ = slot.set(key);
        slot.get().context("key cached")
    }

    /// Parses the keys of units `0..n` ahead of a measured run, on every core.
    pub(crate) fn warm(&self, n: u64) -> anyhow::Result<()> {
        let threads = std::thread::available_parallelism().map_or(2, |c| c.get()) as u64;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || -> anyhow::Result<()> {
                        let mut i = t;
                        while i < n {
                            self.get(i)?;
                            i += threads;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("warm-up thread panicked"))??;
            }
            Ok(())
        })
    }

    pub(crate) fn sync(&self) -> anyhow::Result<()> {
        Ok(self.file.sync_all()?)
    }
}

/// CPU seconds (user + system, every thread) process `pid` has used, from
/// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ); 0 when
/// unreadable.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |s| s.own_ticks as f64 / 100.0)
}

/// The machine's CPU time so far, in clock ticks summed over its CPUs
/// (the `cpu` line of /proc/stat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostTicks {
    /// Idle and waiting for I/O.
    pub idle: u64,
    /// Taken by the hypervisor for other guests while this one wanted to
    /// run: a shared host's noise, which no figure here can control.
    pub steal: u64,
    /// All of it.
    pub total: u64,
}

/// [`HostTicks`] now; `None` when /proc/stat is unreadable (not Linux).
pub(crate) fn host_ticks() -> Option<HostTicks> {
    parse_host_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of /proc/stat: user nice system idle iowait irq softirq
/// steal (guest time is already counted in user and nice).
fn parse_host_ticks(stat: &str) -> Option<HostTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if f.len() < 8 {
        return None;
    }
    Some(HostTicks {
        idle: f[3] + f[4],
        steal: f[7],
        total: f.iter().sum(),
    })
}

/// CPU seconds used so far by the PostgreSQL server on this machine.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PgCpu {
    /// Every process whose command name is `postgres` (postmaster,
    /// backends, writers), with the children they have reaped, so that a
    /// backend which exited mid-phase still counts (through the
    /// postmaster). It includes the server's work for every database.
    pub all: f64,
    /// The live backends connected to `database` alone (their process
    /// title names it): the replicas' share, whatever else the server does.
    pub database: f64,
}

/// [`PgCpu`] now, for the backends of `database`.
pub(crate) fn postgres_cpu_seconds(database: &str) -> PgCpu {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return PgCpu::default();
    };
    let (mut all, mut ours) = (0u64, 0u64);
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Some(s) = proc_stat(pid).filter(|s| s.comm == "postgres") else {
            continue;
        };
        all += s.own_ticks + s.reaped_children_ticks;
        if serves_database(pid, database) {
            ours += s.own_ticks;
        }
    }
    PgCpu {
        all: all as f64 / 100.0,
        database: ours as f64 / 100.0,
    }
}

/// Whether process `pid` is a PostgreSQL backend of `database`: its title
/// reads `postgres: [cluster: ]user database host(port) activity`.
fn serves_database(pid: u32, database: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let words: Vec<&str> = title.split_whitespace().collect();
    words.windows(2).any(|w| {
        w[0] == database && (w[1] == "[local]" || (w[1].contains('(') && w[1].ends_with(')')))
    })
}

struct ProcStat {
    comm: String,
    /// utime + stime, in clock ticks.
    own_ticks: u64,
    /// cutime + cstime: children waited for.
    reaped_children_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields count from its ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After ')': state is field 3, so utime (14), stime (15), cutime (16)
    // and cstime (17) are 11, 12, 13 and 14.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(ProcStat {
        comm,
        own_ticks: ticks(11) + ticks(12),
        reaped_children_ticks: ticks(13) + ticks(14),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ticks_come_from_the_cpu_line() {
        let stat = "cpu  100 5 50 800 20 1 4 30 7 0\ncpu0 50 2 25 400 10 0 2 15 3 0\n";
        assert_eq!(
            parse_host_ticks(stat),
            Some(HostTicks {
                idle: 820,
                steal: 30,
                total: 1010,
            })
        );
        assert_eq!(parse_host_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_host_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_host_ticks("cpu  1 2 x 4 5 6 7 8\n"), None);
    }
}
