//! The real `attestd` binary, as an operator runs it: a configuration file,
//! `attestd serve --config FILE` on a loopback port, its stdout's start-up
//! lines read for the address, SERVING awaited on the health service. The
//! soak kills it with SIGKILL (no drain, no final flush) and starts it
//! again on the same data: the sled directory or the PostgreSQL database.
//!
//! Unlike the other scenarios' server (this executable re-run as
//! `attestd-bench server`), nothing here is assembled by the bench: the
//! crash is the shipped binary's, with its configuration loading, key
//! files, store opening and recovery.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use attestd_client::core::keys::PublicKey;

use crate::kit::{Backend, Kit};

/// How to start attestd on the soak's data directory.
pub(super) struct Launch {
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

/// A running attestd process.
pub(super) struct Attestd {
    child: Child,
    pub endpoint: String,
    /// From spawning the process to the first SERVING health check.
    pub start_time: Duration,
}

/// The attestd binary beside this executable (`target/<profile>/attestd`),
/// or `explicit`.
pub(super) fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let exe = match explicit {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench executable has no directory")?
            .join("attestd"),
    };
    anyhow::ensure!(
        exe.is_file(),
        "no attestd binary at {}: build it with the same profile as the bench \
         (`cargo build --release -p attestd --bin attestd`), or pass --attestd PATH",
        exe.display()
    );
    Ok(exe)
}

/// A TOML basic string (the values written here are paths, ids and hex).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Launch {
    /// Writes `<dir>/attestd.toml`: the kit's principals (security admin,
    /// MES, stations), its release key, rate limits off (all load comes from
    /// one loopback peer), a checkpoint every second (so that kills land
    /// around checkpoint writes too), the audit key in `<dir>`, and the
    /// store: sled in `<dir>/db`, or the PostgreSQL URL through a 0600 file
    /// (`url_file`, so that a password never sits in the configuration).
    pub(super) fn prepare(
        dir: &Path,
        exe: PathBuf,
        kit: &Kit,
        backend: &Backend,
    ) -> anyhow::Result<Self> {
        let settings = kit.settings();
        let mut cfg = String::new();
        cfg.push_str("listen = \"127.0.0.1:0\"\n");
        cfg.push_str(&format!(
            "data_dir = {}\n",
            toml_string(&dir.join("db").display().to_string())
        ));
        cfg.push_str(&format!(
            "audit_key_file = {}\n",
            toml_string(&audit_key_path(dir).display().to_string())
        ));
        if let Backend::Sled { cache_mb } = backend {
            cfg.push_str(&format!("cache_capacity_mb = {cache_mb}\n"));
        }
        cfg.push_str(
            "\n[limits]\nrate_per_peer_per_min = 0\nrate_per_serial_per_min = 0\n\
             checkpoint_interval_secs = 1\n",
        );
        cfg.push_str(&format!(
            "\n[release]\nthreshold = {}\nkeys = [{}]\n",
            settings.release.threshold,
            settings
                .release
                .keys
                .iter()
                .map(|k| toml_string(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for p in &settings.principals {
            cfg.push_str(&format!(
                "\n[[principals]]\nname = {}\nrole = {}\n",
                toml_string(&p.name),
                toml_string(&p.role)
            ));
            if let Some(t) = &p.token_sha256 {
                cfg.push_str(&format!("token_sha256 = {}\n", toml_string(t)));
            }
            if let Some(s) = &p.station_id {
                cfg.push_str(&format!("station_id = {}\n", toml_string(s)));
            }
        }
        if let Backend::Postgres { url, pool_size } = backend {
            let url_file = dir.join("store-url");
            attestd_server::dev::write_private(&url_file, url.as_bytes())
                .with_context(|| format!("writing {}", url_file.display()))?;
            cfg.push_str(&format!(
                "\n[store]\nbackend = \"postgres\"\nurl_file = {}\npool_size = {pool_size}\n",
                toml_string(&url_file.display().to_string())
            ));
        }
        let config = dir.join("attestd.toml");
        std::fs::write(&config, cfg).with_context(|| format!("writing {}", config.display()))?;
        Ok(Launch {
            exe,
            config,
            log: dir.join("attestd.log"),
        })
    }

    /// Starts attestd and waits until its health service answers SERVING.
    pub(super) async fn start(&self) -> anyhow::Result<Attestd> {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(&self.exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("ATTESTD_LOG", "warn")
            .env_remove("ATTESTD_LOG_FORMAT")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let stdout = child.stdout.take().context("attestd's stdout")?;
        // Reads the start-up lines, then keeps draining stdout so that the
        // process never blocks on a full pipe.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("attestd listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(a.to_owned());
                    }
                }
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(a)) => a,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "attestd did not start (no address on its stdout); see {}",
                    self.log.display()
                );
            }
        };
        let mut server = Attestd {
            child,
            endpoint: format!("http://{addr}"),
            start_time: Duration::ZERO,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(server.endpoint.clone())?;
        loop {
            if let Ok(ch) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                {
                    if r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    {
                        break;
                    }
                }
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "attestd exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!(
                    "attestd did not answer SERVING within 300 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.start_time = started.elapsed();
        Ok(server)
    }
}

impl Attestd {
    /// SIGKILL: the process ends where it is, mid-write or mid-flush.
    pub(super) fn kill9(mut self) -> anyhow::Result<()> {
        // std's Child::kill sends SIGKILL on Unix.
        self.child.kill().context("SIGKILL attestd")?;
        self.child.wait().context("waiting for attestd")?;
        Ok(())
    }

    /// SIGTERM (drain, last flush), waiting up to a minute.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("attestd did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Attestd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The audit key file the soak's attestd signs checkpoints with.
pub(super) fn audit_key_path(dir: &Path) -> PathBuf {
    dir.join("audit-key.pkcs8")
}

/// Makes the audit key before the first start (attestd loads it then) and
/// returns its public key, with which every export of the chain is checked.
pub(super) fn audit_public_key(dir: &Path) -> anyhow::Result<PublicKey> {
    let key = attestd_server::checkpoint::CheckpointKey::load_or_create(&audit_key_path(dir))
        .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    Ok(key.public)
}
