//! The bench's world: a data directory holding attestd's database and a kit
//! (tokens, station keys, release key, a pool of device keys), and the
//! attestd server process the load runs against.
//!
//! The server is this same executable re-run as `attestd-bench server`,
//! which assembles `attestd_server::serve` exactly as the `attestd` binary
//! does (sled store, group commit, background jobs, audit checkpoints), on
//! a loopback port, in its own process so that its memory and start-up
//! time can be measured apart from the load generator's.

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
pub struct KitFile {
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
pub struct StationFile {
    pub id: String,
    pub token: String,
    pub pkcs8: String,
    pub last_sequence: u64,
}

pub struct Kit {
    pub file: KitFile,
    pub stations: Vec<(StationFile, SigningKey)>,
    pub release: SigningKey,
}

fn token() -> String {
    attestd_server::dev::random_token().expect("randomness")
}

fn key_b64(k: &SigningKey) -> String {
    B64.encode(k.pkcs8())
}

fn load_key(alg: KeyAlg, b64: &str) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::from_pkcs8(alg, &B64.decode(b64)?)?)
}

impl Kit {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("bench-kit.json")
    }

    /// Loads the kit of `dir`, or makes one with `stations` stations.
    pub fn load_or_create(dir: &Path, stations: usize) -> anyhow::Result<Kit> {
        let path = Kit::path(dir);
        let file = if path.exists() {
            serde_json::from_slice(&std::fs::read(&path)?).context("reading the bench kit")?
        } else {
            std::fs::create_dir_all(dir)?;
            let gen = |alg| SigningKey::generate(alg).map(|k| key_b64(&k));
            let file = KitFile {
                admin_token: token(),
                mes_token: token(),
                stations: (0..stations)
                    .map(|i| {
                        Ok(StationFile {
                            id: format!("bench-st-{i:02}"),
                            token: token(),
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
    pub fn save(&self, dir: &Path, seqs: &[u64], units: u64, baseline: u64) -> anyhow::Result<()> {
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
    pub fn settings(&self) -> Settings {
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

/// `attestd-bench server`: runs attestd on `dir` until SIGTERM.
pub fn run_server(dir: &Path, cache_mb: u64) -> anyhow::Result<()> {
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
        .open(dir.join("server.log"))?;
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
        let store = attestd_store::sled_store::SledStore::open(
            &dir.join("db"),
            &attestd_store::sled_store::SledConfig {
                cache_capacity: cache_mb * 1024 * 1024,
                group_commit_max_wait: std::time::Duration::from_micros(
                    kit.settings().limits.group_commit_max_wait_us,
                ),
            },
        )
        .map_err(|e| anyhow::anyhow!("store: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let key =
            attestd_server::checkpoint::CheckpointKey::load_or_create(&dir.join("audit-key.pkcs8"))
                .map_err(|e| anyhow::anyhow!(e))?;
        println!("bench server listening on {}", listener.local_addr()?);
        let parts = attestd_server::ServerParts {
            store: Arc::new(store),
            settings: kit.settings(),
            clock: Arc::new(attestd_server::clock::SystemClock),
            metrics_listener: None,
            checkpoint_key: Some(Arc::new(key)),
            tls: None,
        };
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
            term.recv().await;
        };
        attestd_server::serve(listener, parts, stop).await?;
        Ok(())
    })
}

/// The server process.
pub struct ServerProc {
    child: Child,
    pub endpoint: String,
    /// From spawn to the first health check answered SERVING.
    pub start_time: Duration,
}

impl ServerProc {
    pub async fn start(dir: &Path, cache_mb: u64) -> anyhow::Result<ServerProc> {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .arg("server")
            .arg("--data")
            .arg(dir)
            .arg("--cache-mb")
            .arg(cache_mb.to_string())
            .env("ATTESTD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the bench server")?;
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
            if started.elapsed() > Duration::from_secs(600) {
                bail!("the bench server did not answer health checks");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(ServerProc {
            start_time: started.elapsed(),
            child,
            endpoint,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> (u64, u64) {
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

    /// SIGTERM, then waits for the drain and final flush.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
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

/// One private key per unit (attestd refuses a device key enrolled for two
/// units), made when the unit is provisioned and kept in
/// `<data>/unit-keys.bin` as fixed-size records (length byte + PKCS#8), so
/// a later run can boot the same fleet. Parsed keys are cached in memory.
pub struct UnitKeys {
    file: std::fs::File,
    cache: Vec<std::sync::OnceLock<SigningKey>>,
}

const KEY_RECORD: u64 = 192;

impl UnitKeys {
    pub fn open(dir: &Path, capacity: u64) -> anyhow::Result<UnitKeys> {
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
    pub fn create(&self, i: u64, alg: KeyAlg) -> anyhow::Result<&SigningKey> {
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
    pub fn get(&self, i: u64) -> anyhow::Result<&SigningKey> {
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
    pub fn warm(&self, n: u64) -> anyhow::Result<()> {
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

    pub fn sync(&self) -> anyhow::Result<()> {
        Ok(self.file.sync_all()?)
    }
}

/// CPU seconds (user + system, every thread) process `pid` has used, from
/// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ); 0 when
/// unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields count from its ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are 11 and 12.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}
