//! End-to-end harness: starts the real `attestd` binary on a free loopback
//! port with a temporary data directory and a test configuration, and
//! speaks gRPC to it through the SDK.

#![allow(dead_code)]

pub(crate) mod faulty;
pub(crate) mod fleet;
pub(crate) mod inproc;
pub(crate) mod load;
pub(crate) mod pki;
pub(crate) mod private_pg;
pub(crate) mod replicas;
pub(crate) mod rpc;
pub(crate) mod trusted;
pub(crate) mod web;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use attestd_client::core::evidence::Claims;
use attestd_client::core::ids::Serial;
use attestd_client::core::keys::KeyAlg;
use attestd_client::core::record::{
    CalibrationDoc, DeviceKeyDoc, FirmwareDoc, InstrumentDoc, ParameterDoc, ProcedureDoc,
    ProvisioningDoc,
};
use attestd_client::core::time::UnixTime;
use attestd_client::evidence::{sample_claims, sign_evidence};
use attestd_client::pb;
use attestd_client::record::{sign_provisioning, spki_base64};
use attestd_client::{Client, SigningKey};
use tonic::Code;

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token";
pub(crate) const MES_TOKEN: &str = "test-mes-token";
pub(crate) const HOSPITAL_TOKEN: &str = "test-hospital-token";
pub(crate) const AUDITOR_TOKEN: &str = "test-auditor-token";
/// Stations with a principal in the test configuration: (station_id, token).
pub(crate) const STATIONS: &[(&str, &str)] = &[
    ("line1-prov", "tok-line1-prov"),
    ("line1-cal", "tok-line1-cal"),
    ("line2-prov", "tok-line2-prov"),
    ("depot-cal", "tok-depot-cal"),
    ("unregistered-st", "tok-unregistered"),
    ("rep-a", "tok-rep-a"),
    ("rep-b", "tok-rep-b"),
    ("rep-c", "tok-rep-c"),
];

pub(crate) fn station_token(id: &str) -> &'static str {
    STATIONS
        .iter()
        .find(|(s, _)| *s == id)
        .map(|(_, t)| *t)
        .expect("station in test config")
}

pub(crate) fn sha256_hex(s: &str) -> String {
    attestd_client::core::ids::Digest::of(s.as_bytes()).to_hex()
}

/// Extra settings for the test configuration.
#[derive(Default, Clone)]
pub(crate) struct Options {
    /// Extra `[limits]` lines.
    pub limits: Vec<(&'static str, String)>,
    /// Release keys (base64 SPKI) and threshold for baselines.
    pub release: Option<(usize, Vec<String>)>,
    /// Run the server on the test clock (see [`TestServer::advance_clock`]).
    pub test_clock: bool,
    /// ATTESTD_LOG for the server (default "warn").
    pub log: Option<&'static str>,
    /// More configuration, appended at the end (tables: `[tls]`,
    /// `[[principals]]`).
    pub extra_toml: String,
    /// Connect over TLS, trusting this CA (PEM); the endpoint is https.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// A PostgreSQL database to use (replicas share one); by default the
    /// backend comes from [`BACKEND_VAR`].
    pub postgres_url: Option<String>,
    /// The audit key file (replicas share one); default: in the data dir.
    pub audit_key_file: Option<PathBuf>,
    /// The data directory; default: `data` in the test's directory.
    pub data_dir: Option<PathBuf>,
    /// More arguments after `serve --config FILE` (`--log-format json`).
    pub args: Vec<String>,
    /// More environment variables for the server.
    pub env: Vec<(String, String)>,
}

/// Which backend the end-to-end tests run on: `sled` (default) or
/// `postgres` (a database per server, on the PostgreSQL named by
/// `ATTESTD_TEST_PG_URL`, default the local one).
pub(crate) const BACKEND_VAR: &str = "ATTESTD_TEST_BACKEND";

/// The storage backend of a test's servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sled,
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

impl Backend {
    /// Runs a test body whose servers use this backend.
    pub(crate) async fn run<F: std::future::Future>(self, body: F) -> F::Output {
        BACKEND.scope(self, body).await
    }
}

/// Runs each named end-to-end test (an `async fn` without arguments) twice,
/// on sled and on PostgreSQL: `crate::both_backends!(the_tamper_story);`
/// gives the tests `the_tamper_story::sled` and `the_tamper_story::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sled() {
                    $crate::common::Backend::Sled.run(super::$name()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::common::Backend::Postgres.run(super::$name()).await
                }
            }
        )*
    };
}

/// Whether this test's servers use PostgreSQL: the backend of
/// [`both_backends!`], else [`BACKEND_VAR`].
pub(crate) fn on_postgres() -> bool {
    if let Ok(b) = BACKEND.try_with(|b| *b) {
        return b == Backend::Postgres;
    }
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("postgres") => true,
        Ok("sled") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_VAR}={other}: expected sled or postgres"),
    }
}

pub(crate) struct TestServer {
    /// The server's own database, when it made one (dropped with it).
    pub db: Option<Arc<attestd_store::postgres::testdb::TestDb>>,
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub metrics_addr: String,
    child: Child,
    opts: Options,
}

impl TestServer {
    pub(crate) fn start() -> TestServer {
        TestServer::start_with(Options::default())
    }

    pub(crate) fn start_with(opts: Options) -> TestServer {
        TestServer::start_in(tempfile::tempdir().expect("tempdir"), opts)
    }

    /// Starts a server in `dir`, whose `data` directory may hold data
    /// already (a restored backup).
    pub(crate) fn start_in(dir: tempfile::TempDir, mut opts: Options) -> TestServer {
        let mut db = None;
        if opts.postgres_url.is_none() && on_postgres() {
            let made = Arc::new(attestd_store::postgres::testdb::TestDb::create());
            opts.postgres_url = Some(made.url.clone());
            db = Some(made);
        }
        let (child, addr, metrics_addr) = launch(dir.path(), &opts);
        TestServer {
            db,
            dir,
            addr,
            metrics_addr,
            child,
            opts,
        }
    }

    /// The options it was started with (to start a replica like it).
    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// Everything the server logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("attestd.log")).unwrap_or_default()
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        data_dir(self.dir.path(), &self.opts)
    }

    /// Sends a signal (`TERM`, `HUP`, ...) to the server.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits up to `within` for the server to exit; its status, if it did.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves the server's clock forward (needs `Options::test_clock`).
    pub(crate) fn advance_clock(&self, by: Duration) {
        assert!(self.opts.test_clock, "start the server with test_clock");
        let path = self.dir.path().join("clock_offset_ms");
        let now: i64 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(&path, (now + by.as_millis() as i64).to_string()).unwrap();
    }

    /// The server's clock offset, to build timestamps on its timeline.
    pub(crate) fn clock_offset(&self) -> Duration {
        let path = self.dir.path().join("clock_offset_ms");
        Duration::from_millis(
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        )
    }

    /// SIGKILL: no shutdown, no final flush.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again on the same data directory with `opts`.
    pub(crate) fn restart_with(&mut self, opts: Options) {
        self.opts = opts;
        self.restart();
    }

    /// Starts the binary again on the same data directory (new port).
    pub(crate) fn restart(&mut self) {
        self.kill9();
        let (child, addr, metrics_addr) = launch(self.dir.path(), &self.opts);
        self.child = child;
        self.addr = addr;
        self.metrics_addr = metrics_addr;
    }

    pub(crate) fn endpoint(&self) -> String {
        match self.opts.tls_ca_pem {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    pub(crate) async fn client(&self, token: Option<&str>) -> Client {
        self.client_with_cert(token, None).await.expect("connect")
    }

    /// A client with a token and/or a client certificate (PEM chain, key).
    pub(crate) async fn client_with_cert(
        &self,
        token: Option<&str>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Client, attestd_client::client::ClientError> {
        let tls = self
            .opts
            .tls_ca_pem
            .as_ref()
            .map(|ca| attestd_client::TlsOptions {
                ca_pem: ca.clone(),
                identity,
                domain: None,
            });
        Client::connect_with(&self.endpoint(), token, tls.as_ref()).await
    }

    /// The server's process id (for signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) async fn admin(&self) -> Client {
        self.client(Some(ADMIN_TOKEN)).await
    }

    pub(crate) async fn station(&self, id: &str) -> Client {
        self.client(Some(station_token(id))).await
    }

    /// The Prometheus text of GET /metrics.
    pub(crate) fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics_addr).expect("metrics connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// One metric's value (exact series name, labels included).
    pub(crate) fn metric(&self, series: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().expect("metric value"))
            .unwrap_or(0)
    }

    /// Waits until the metric reaches at least `want` (the re-appraisal job
    /// works in the background); fails after 20 s.
    pub(crate) async fn wait_metric(&self, series: &str, want: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(series);
            if v >= want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series} stuck at {v}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the re-appraisal job has been idle for a while (its
    /// counter unchanged over 300 ms).
    pub(crate) async fn wait_idle(&self) {
        let mut last = self.metric("attestd_reappraisals_total");
        let mut quiet = 0;
        while quiet < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.metric("attestd_reappraisals_total");
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
    }

    /// Counts of stored objects: (stations, devices, records, evidence).
    pub(crate) fn stored(&self) -> (u64, u64, u64, u64) {
        (
            self.metric("attestd_stored{kind=\"stations\"}"),
            self.metric("attestd_stored{kind=\"devices\"}"),
            self.metric("attestd_stored{kind=\"records\"}"),
            self.metric("attestd_stored{kind=\"evidence\"}"),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data_dir(dir: &Path, opts: &Options) -> PathBuf {
    opts.data_dir.clone().unwrap_or_else(|| dir.join("data"))
}

fn launch(dir: &Path, opts: &Options) -> (Child, String, String) {
    let mut cfg = String::new();
    cfg.push_str(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ncache_capacity_mb = 32\n",
    );
    cfg.push_str(&format!(
        "data_dir = {:?}\n",
        data_dir(dir, opts).display().to_string()
    ));
    cfg.push_str("\n[limits]\n");
    for (k, v) in &opts.limits {
        cfg.push_str(&format!("{k} = {v}\n"));
    }
    if let Some((threshold, keys)) = &opts.release {
        cfg.push_str(&format!(
            "\n[release]\nthreshold = {threshold}\nkeys = {keys:?}\n"
        ));
    }
    if opts.test_clock {
        cfg.push_str(&format!(
            "\n[testing]\nclock_offset_file = {:?}\n",
            dir.join("clock_offset_ms").display().to_string()
        ));
    }
    let mut principal = |name: &str, role: &str, token: &str, extra: &str| {
        cfg.push_str(&format!(
            "\n[[principals]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n{extra}",
            sha256_hex(token)
        ));
    };
    principal("admin", "security-admin", ADMIN_TOKEN, "");
    principal("mes", "mes", MES_TOKEN, "");
    principal(
        "hospital",
        "hospital-it",
        HOSPITAL_TOKEN,
        "tenant = \"st-mary\"\n",
    );
    principal("auditor", "auditor", AUDITOR_TOKEN, "");
    for (id, tok) in STATIONS {
        principal(id, "station", tok, &format!("station_id = \"{id}\"\n"));
    }
    if let Some(k) = &opts.audit_key_file {
        cfg.insert_str(
            0,
            &format!("audit_key_file = {:?}\n", k.display().to_string()),
        );
    }
    if let Some(url) = &opts.postgres_url {
        cfg.push_str(&format!(
            "\n[store]\nbackend = \"postgres\"\nurl = {url:?}\npool_size = 4\n"
        ));
    }
    cfg.push('\n');
    cfg.push_str(&opts.extra_toml);
    let cfg_path = dir.join("attestd.toml");
    std::fs::write(&cfg_path, cfg).expect("write config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("attestd.log"))
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_attestd"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .args(&opts.args)
        .env("ATTESTD_LOG", opts.log.unwrap_or("warn"))
        .env_remove("ATTESTD_LOG_FORMAT")
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn attestd");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut metrics = None;
    while addr.is_none() || metrics.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "attestd did not start; log: {}",
                    std::fs::read_to_string(dir.join("attestd.log")).unwrap_or_default()
                )
            });
        if let Some(a) = line.strip_prefix("attestd listening on ") {
            addr = Some(a.to_owned());
        }
        if let Some(m) = line.strip_prefix("attestd metrics on http://") {
            metrics = Some(m.trim_end_matches("/metrics").to_owned());
        }
    }
    (child, addr.unwrap(), metrics.unwrap())
}

/// The attestd reason code carried by a status.
pub(crate) fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and `reason`; returns the message.
#[track_caller]
pub(crate) fn assert_rejected<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    want: &str,
) -> String {
    match result {
        Ok(v) => panic!("expected {code:?} {want}, got success: {v:?}"),
        Err(s) => {
            assert_eq!(
                (s.code(), reason(&s).as_str()),
                (code, want),
                "message: {}",
                s.message()
            );
            s.message().to_owned()
        }
    }
}

pub(crate) fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

/// Registers `station_id` with a fresh key for the given kinds and models.
pub(crate) async fn register_station(
    admin: &Client,
    station_id: &str,
    kinds: &[pb::RecordKind],
    models: &[&str],
) -> SigningKey {
    let key = SigningKey::generate(KeyAlg::Es256).unwrap();
    admin
        .admin()
        .register_station(pb::RegisterStationRequest {
            station_id: station_id.into(),
            public_key: key.public_key().spki_der().to_vec(),
            allowed_kinds: kinds.iter().map(|k| *k as i32).collect(),
            allowed_models: models.iter().map(|m| m.to_string()).collect(),
            allow_rekey: false,
        })
        .await
        .expect("register station");
    key
}

pub(crate) fn provisioning_doc(
    station_id: &str,
    sequence: u64,
    serial: &str,
    model: &str,
    device_key: &SigningKey,
) -> ProvisioningDoc {
    ProvisioningDoc {
        station_id: station_id.into(),
        sequence,
        performed_at: now().plus_seconds(-60).to_string(),
        operator_id: "op-1187".into(),
        work_order: Some("WO-2026-3312".into()),
        serial: serial.into(),
        udi: None,
        model: model.into(),
        hw_version: "B".into(),
        device_key: DeviceKeyDoc {
            alg: device_key.alg().as_str().into(),
            spki_der: spki_base64(device_key),
        },
        firmware: vec![FirmwareDoc {
            name: "bootloader".into(),
            version: "2.1.0".into(),
            svn: 4,
            digest: attestd_client::core::ids::Digest::of(b"bootloader 2.1.0").to_hex(),
        }],
        supersedes: None,
    }
}

/// Registers station `line1-prov` (provisioning, PM-200) and enrolls
/// `serial` through it with a new device key of `alg`; returns that key.
pub(crate) async fn enroll_one(server: &TestServer, serial: &str, alg: KeyAlg) -> SigningKey {
    let admin = server.admin().await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let unit = SigningKey::generate(alg).unwrap();
    provision(&station, "line1-prov", &st_key, 1, serial, &unit)
        .await
        .unwrap();
    unit
}

/// Provisions `serial` through `station` signed by `station_key`; returns the record id.
pub(crate) async fn provision(
    station: &Client,
    station_id: &str,
    station_key: &SigningKey,
    sequence: u64,
    serial: &str,
    device_key: &SigningKey,
) -> Result<pb::SubmitRecordResponse, tonic::Status> {
    let doc = provisioning_doc(station_id, sequence, serial, "PM-200", device_key);
    station
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_provisioning(&doc, station_key)),
        })
        .await
        .map(|r| r.into_inner())
}

/// Claims for a unit provisioned by [`provisioning_doc`].
pub(crate) fn claims(serial: &str, bootcount: u64) -> Claims {
    let serial =
        Serial::parse(serial, attestd_client::core::Reason::FieldInvalid, "serial").unwrap();
    sample_claims(&serial, "PM-200", "B", bootcount, now())
}

/// Gets a challenge and returns it.
pub(crate) async fn challenge(client: &Client, serial: &str) -> Vec<u8> {
    client
        .device()
        .get_challenge(pb::GetChallengeRequest {
            serial: serial.into(),
        })
        .await
        .expect("challenge")
        .into_inner()
        .nonce
}

/// A whole boot: challenge, then evidence signed by `key`.
pub(crate) async fn boot(
    client: &Client,
    serial: &str,
    key: &SigningKey,
    bootcount: u64,
) -> Result<pb::SubmitEvidenceResponse, tonic::Status> {
    let nonce = challenge(client, serial).await;
    let mut c = claims(serial, bootcount);
    c.nonce = Some(nonce);
    submit(client, sign_evidence(&c, key)).await
}

pub(crate) async fn submit(
    client: &Client,
    evidence: Vec<u8>,
) -> Result<pb::SubmitEvidenceResponse, tonic::Status> {
    client
        .device()
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Every history entry of a unit (all pages).
pub(crate) async fn history(client: &Client, serial: &str) -> Vec<pb::HistoryEntry> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .fleet()
            .list_device_history(pb::ListDeviceHistoryRequest {
                serial: serial.into(),
                page_size: 1000,
                page_token: token.clone(),
            })
            .await
            .expect("history")
            .into_inner();
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Evidence ids in a unit's history.
pub(crate) async fn evidence_ids(client: &Client, serial: &str) -> Vec<String> {
    history(client, serial)
        .await
        .into_iter()
        .filter_map(|e| match e.entry {
            Some(pb::history_entry::Entry::Evidence(ev)) => Some(ev.evidence_id),
            _ => None,
        })
        .collect()
}

/// A calibration record of `serial` (digest derived from serial and sequence).
pub(crate) fn calibration_doc(
    station_id: &str,
    sequence: u64,
    serial: &str,
    as_left: f64,
    result: &str,
) -> CalibrationDoc {
    CalibrationDoc {
        station_id: station_id.into(),
        sequence,
        performed_at: now().plus_seconds(-30).to_string(),
        operator_id: "tech-5521".into(),
        serial: serial.into(),
        calibration_id: format!("CAL-{serial}-{sequence:04}"),
        procedure: ProcedureDoc {
            id: "CP-SPO2-7".into(),
            version: "3".into(),
        },
        result: result.into(),
        parameters: vec![ParameterDoc {
            name: "spo2_offset".into(),
            unit: "%".into(),
            nominal: 0.0,
            tolerance_low: -0.5,
            tolerance_high: 0.5,
            as_found: 0.31,
            as_left,
        }],
        reference_instruments: vec![InstrumentDoc {
            id: "REF-ProSim8-4471".into(),
            due_at: "2027-03-01T00:00:00Z".into(),
        }],
        calibration_digest: attestd_client::core::ids::Digest::of(
            format!("cal {serial} {sequence}").as_bytes(),
        )
        .to_hex(),
        next_due_at: "2027-11-28T00:00:00Z".into(),
        supersedes: None,
    }
}

/// Every audit entry (all pages), as the core type, in order.
pub(crate) async fn audit_entries(c: &Client) -> Vec<attestd_client::core::audit::AuditEntry> {
    let mut stream = c
        .audit()
        .export_audit(pb::ExportAuditRequest::default())
        .await
        .expect("export")
        .into_inner();
    let mut out = Vec::new();
    while let Some(i) = stream.message().await.expect("export stream") {
        // The range and the signed head around the entries are checked by
        // the export tests (tests/e2e/audit.rs); here only the entries matter.
        if let Some(pb::export_audit_item::Item::Event(e)) = i.item {
            out.push(attestd_client::audit::entry(e).expect("32-byte hashes"));
        }
    }
    out
}
