//! The simulated fleet and the scenarios, all over the real gRPC API through
//! the SDK's client.
//!
//! Unit `i` has serial `BN000000i`, model PM-200 hardware B, a device key
//! from the pool (ES256 for even `i`, Ed25519 for odd), application 2.1.3
//! when `i % 10 == 0` (the build the revoke scenario withdraws) and 2.1.4
//! otherwise, and a calibration whose digest is SHA-256("calibration of
//! <serial>"). Station `i % stations` provisions and calibrates it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestd_client::core::evidence::{CalibrationClaim, Component};
use attestd_client::core::ids::Serial;
use attestd_client::core::keys::{KeyAlg, SigEncoding};
use attestd_client::core::time::UnixTime;
use attestd_client::core::Reason;
use attestd_client::evidence::{sample_claims, sign_evidence};
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration, sign_provisioning};
use attestd_client::{Client, SigningKey};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use crate::kit::{Kit, UnitKeys};
use crate::report::{histogram, record, Row, Timeline};

pub(crate) const MODEL: &str = "PM-200";

pub(crate) fn serial(i: u64) -> String {
    format!("BN{i:09}")
}

pub(crate) fn alg_of(i: u64) -> KeyAlg {
    if i.is_multiple_of(2) {
        KeyAlg::Es256
    } else {
        KeyAlg::Ed25519
    }
}

/// Units running the build the revoke scenario withdraws.
pub(crate) fn runs_old_build(i: u64) -> bool {
    i.is_multiple_of(10)
}

fn app_of(i: u64) -> (&'static str, u64) {
    if runs_old_build(i) {
        ("2.1.3", 9)
    } else {
        ("2.1.4", 10)
    }
}

pub(crate) fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The load generator's connections and the kit.
pub(crate) struct Ctx {
    pub kit: Arc<Kit>,
    /// Connection `j` goes to replica `j % endpoints.len()`.
    pub channels: Vec<Channel>,
    /// Units provisioned (serials 0..units).
    pub units: u64,
    /// Each station's last record sequence number.
    pub seqs: Vec<u64>,
    pub baseline_version: u64,
    /// The replicas' addresses.
    pub endpoints: Vec<String>,
    pub keys: Arc<UnitKeys>,
}

impl Ctx {
    pub(crate) fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        self.kit
            .save(dir, &self.seqs, self.units, self.baseline_version)
    }

    /// Opens `connections` HTTP/2 connections, round robin over
    /// `endpoints` (the caller makes `connections` a multiple of their
    /// number so every replica carries the same share).
    pub(crate) async fn connect(
        kit: Kit,
        keys: Arc<UnitKeys>,
        endpoints: &[String],
        connections: usize,
    ) -> anyhow::Result<Ctx> {
        anyhow::ensure!(!endpoints.is_empty(), "no server to connect to");
        let mut channels = Vec::new();
        for j in 0..connections.max(1) {
            let endpoint = &endpoints[j % endpoints.len()];
            channels.push(
                tonic::transport::Endpoint::from_shared(endpoint.clone())?
                    .tcp_nodelay(true)
                    .connect()
                    .await?,
            );
        }
        Ok(Ctx {
            units: kit.file.units,
            seqs: kit.file.stations.iter().map(|s| s.last_sequence).collect(),
            baseline_version: kit.file.baseline_version,
            kit: Arc::new(kit),
            channels,
            endpoints: endpoints.to_vec(),
            keys,
        })
    }

    /// A client on connection `i` (round robin) with `token`.
    /// Fails if the token (read from the kit file) cannot be sent as a header.
    pub(crate) fn client(&self, i: usize, token: Option<&str>) -> anyhow::Result<Client> {
        Ok(Client::from_channel(
            self.channels[i % self.channels.len()].clone(),
            token,
        )?)
    }

    pub(crate) fn admin(&self) -> anyhow::Result<Client> {
        self.client(0, Some(&self.kit.file.admin_token))
    }
}

/// Registers the stations (once) and publishes the first baseline (once).
pub(crate) async fn prepare(ctx: &mut Ctx) -> anyhow::Result<()> {
    let admin = ctx.admin()?;
    let known: Vec<String> = admin
        .admin()
        .list_stations(pb::ListStationsRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .stations
        .into_iter()
        .map(|s| s.station_id)
        .collect();
    for (s, key) in &ctx.kit.stations {
        if !known.contains(&s.id) {
            admin
                .admin()
                .register_station(pb::RegisterStationRequest {
                    station_id: s.id.clone(),
                    public_key: key.public_key().spki_der().to_vec(),
                    allowed_kinds: vec![
                        pb::RecordKind::Provisioning as i32,
                        pb::RecordKind::Calibration as i32,
                    ],
                    allowed_models: vec![MODEL.into()],
                    allow_rekey: false,
                })
                .await?;
        }
    }
    if ctx.baseline_version == 0 {
        publish_baseline(ctx, &[]).await?;
    }
    Ok(())
}

/// Publishes the next baseline version, withdrawing `revoked` builds.
pub(crate) async fn publish_baseline(ctx: &mut Ctx, revoked: &[&str]) -> anyhow::Result<()> {
    let version = ctx.baseline_version + 1;
    ctx.admin()?
        .baselines()
        .publish_baseline(pb::PublishBaselineRequest {
            envelope: Some(baseline_envelope(&ctx.kit, version, revoked)),
        })
        .await?;
    ctx.baseline_version = version;
    Ok(())
}

/// Baseline `version` of the fleet's model, signed with the kit's release
/// key: both builds approved, `revoked` builds withdrawn.
pub(crate) fn baseline_envelope(kit: &Kit, version: u64, revoked: &[&str]) -> pb::Envelope {
    let doc = attestd_client::sample::baseline(
        MODEL,
        version,
        &[("2.1.3", 9), ("2.1.4", 10)],
        revoked,
        "2026-01-01T00:00:00Z",
    );
    sign_baseline(&doc, &[&kit.release])
}

pub(crate) fn provisioning(
    kit: &Kit,
    dev: &SigningKey,
    station: usize,
    seq: u64,
    i: u64,
    now: UnixTime,
) -> pb::Envelope {
    let (s, key) = &kit.stations[station];
    let doc = attestd_client::sample::provisioning_doc(&s.id, seq, &serial(i), MODEL, dev, now);
    sign_provisioning(&doc, key)
}

pub(crate) fn calibration(
    kit: &Kit,
    station: usize,
    seq: u64,
    i: u64,
    now: UnixTime,
) -> pb::Envelope {
    let (s, key) = &kit.stations[station];
    let doc = attestd_client::sample::calibration_doc(&s.id, seq, &serial(i), now);
    sign_calibration(&doc, key)
}

/// Keeps the first error message of a run.
#[derive(Default)]
struct FirstError(std::sync::Mutex<Option<String>>);

impl FirstError {
    fn note(&self, e: impl std::fmt::Display) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e.to_string());
        }
    }
    fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|e| format!("first error: {e}"))
            .unwrap_or_default()
    }
}

/// `provision`: the stations enroll and calibrate units up to `n`, each
/// station a sequential worker (station sequence numbers must increase).
pub(crate) async fn provision(ctx: &mut Ctx, n: u64) -> anyhow::Result<Vec<Row>> {
    let from = ctx.units;
    if from >= n {
        return Ok(vec![]);
    }
    let stations = ctx.kit.stations.len();
    let kit = ctx.kit.clone();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first = Arc::new(FirstError::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for st in 0..stations {
        let client = ctx.client(st, Some(&kit.stations[st].0.token))?;
        let (kit, done, errors, first) = (kit.clone(), done.clone(), errors.clone(), first.clone());
        let seqs = ctx.seqs.clone();
        let keys = ctx.keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut seq = seqs[st];
            let now = now();
            let mut i =
                from + ((st as u64 + stations as u64 - from % stations as u64) % stations as u64);
            while i < n {
                let dev = match keys.create(i, alg_of(i)) {
                    Ok(k) => k,
                    Err(e) => {
                        errors.fetch_add(1, Relaxed);
                        first.note(format!("{}: key: {e}", serial(i)));
                        i += stations as u64;
                        continue;
                    }
                };
                let t = Instant::now();
                seq += 1;
                let p = client
                    .factory()
                    .submit_record(pb::SubmitRecordRequest {
                        envelope: Some(provisioning(&kit, dev, st, seq, i, now)),
                    })
                    .await;
                seq += 1;
                let c = match p {
                    Ok(_) => client
                        .factory()
                        .submit_record(pb::SubmitRecordRequest {
                            envelope: Some(calibration(&kit, st, seq, i, now)),
                        })
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                match c {
                    Ok(()) => record(&mut h, t.elapsed()),
                    Err(e) => {
                        errors.fetch_add(1, Relaxed);
                        first.note(format!("{}: {}", serial(i), e.message()));
                    }
                }
                done.fetch_add(1, Relaxed);
                i += stations as u64;
            }
            (st, seq, h)
        }));
    }
    let total = n - from;
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let d = done.load(Relaxed);
                eprintln!(
                    "  provisioned {d}/{total} ({:.0} units/s)",
                    d as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut all = histogram();
    let mut last = vec![0u64; stations];
    for t in tasks {
        let (st, seq, h) = t.await?;
        last[st] = seq;
        all.add(&h)?;
    }
    progress.abort();
    let elapsed = started.elapsed();
    ctx.keys.sync()?;
    ctx.seqs = last;
    ctx.units = n;
    let row = Row::new(
        "provision",
        "unit: provisioning + calibration",
        &all,
        errors.load(Relaxed),
        elapsed,
    )
    .with_note(format!(
        "{} units from {stations} stations in {:.1} s; {}",
        total,
        elapsed.as_secs_f64(),
        first.get()
    ));
    Ok(vec![row])
}

/// One boot: challenge, then signed evidence. Returns the unit's status.
async fn boot(device: &Client, keys: &UnitKeys, i: u64) -> Result<i32, tonic::Status> {
    let key = keys
        .get(i)
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let r = boot_with(device, key, i, now_ms()).await?;
    Ok(r.appraisal.map_or(0, |a| a.tier))
}

/// One boot of unit `i` signed by `key` with `bootcount`: a challenge, then
/// the evidence (the claims of a healthy unit of the simulated fleet).
pub(crate) async fn boot_with(
    device: &Client,
    key: &SigningKey,
    i: u64,
    bootcount: u64,
) -> Result<pb::SubmitEvidenceResponse, tonic::Status> {
    let sn = serial(i);
    let nonce = device
        .device()
        .get_challenge(pb::GetChallengeRequest { serial: sn.clone() })
        .await?
        .into_inner()
        .nonce;
    let s = Serial::parse(&sn, Reason::FieldInvalid, "serial")
        .map_err(|e| tonic::Status::internal(e.message))?;
    let mut c = sample_claims(&s, MODEL, "B", bootcount, now());
    c.nonce = Some(nonce);
    let (app, svn) = app_of(i);
    c.components.push(Component {
        name: "application".into(),
        version: app.into(),
        svn,
        digest: attestd_client::sample::application_digest(app),
    });
    c.calibration = Some(CalibrationClaim {
        id: "CAL".into(),
        digest: attestd_client::sample::calibration_digest(&sn),
    });
    Ok(device
        .device()
        .submit_evidence(pb::SubmitEvidenceRequest {
            evidence: sign_evidence(&c, key),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Which units a storm boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Alg(KeyAlg),
    All,
    /// Units on the build the revoke scenario withdraws.
    OldBuild,
}

impl Which {
    fn unit(self, k: u64) -> u64 {
        match self {
            Which::Alg(KeyAlg::Es256) => 2 * k,
            Which::Alg(KeyAlg::Ed25519) => 2 * k + 1,
            Which::All => k,
            Which::OldBuild => 10 * k,
        }
    }
    fn count(self, n: u64) -> u64 {
        match self {
            Which::Alg(KeyAlg::Es256) => n.div_ceil(2),
            Which::Alg(KeyAlg::Ed25519) => n / 2,
            Which::All => n,
            Which::OldBuild => n.div_ceil(10),
        }
    }
}

/// How long a storm runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bound {
    /// Until this much time has passed.
    Time(Duration),
    /// Every selected unit boots exactly once.
    Once,
}

pub(crate) struct StormResult {
    pub row: Row,
    pub trusted: u64,
}

/// `boot-storm`: `concurrency` workers boot units (challenge + evidence).
pub(crate) async fn storm(
    ctx: &Ctx,
    label: &str,
    which: Which,
    concurrency: usize,
    bound: Bound,
) -> anyhow::Result<StormResult> {
    let total = which.count(ctx.units);
    anyhow::ensure!(total > 0, "no units to boot: provision first");
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let device = ctx.client(w, None)?;
        let keys = ctx.keys.clone();
        let (next, tally) = (next.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut times = Timeline::default();
            loop {
                let k = next.fetch_add(1, Relaxed);
                match bound {
                    Bound::Once if k >= total => break,
                    Bound::Time(d) if started.elapsed() >= d => break,
                    _ => {}
                }
                let i = which.unit(k % total);
                let t = Instant::now();
                if tally.boot(i, boot(&device, &keys, i).await) {
                    let took = t.elapsed();
                    record(&mut h, took);
                    times.record(started.elapsed(), took);
                }
            }
            (h, times)
        }));
    }
    let mut all: Histogram<u64> = histogram();
    let mut times = Timeline::default();
    for t in tasks {
        let (h, t) = t.await?;
        all.add(&h)?;
        times.add(t);
    }
    Ok(tally.result(label, &all, times, started, &format!("c={concurrency}")))
}

/// What a storm's boots came to besides their latencies.
#[derive(Default)]
struct Tally {
    errors: AtomicU64,
    trusted: AtomicU64,
    first: FirstError,
}

impl Tally {
    /// Counts the outcome of unit `i`'s boot; whether it was answered (so
    /// its latency counts).
    fn boot(&self, i: u64, r: Result<i32, tonic::Status>) -> bool {
        match r {
            Ok(tier) => {
                if tier == pb::TrustTier::Affirming as i32 {
                    self.trusted.fetch_add(1, Relaxed);
                }
                true
            }
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                self.first.note(format!("{}: {}", serial(i), e.message()));
                false
            }
        }
    }

    /// The storm's row, its note led by `how` the load was offered, with
    /// its boots second by second (`times`).
    fn result(
        &self,
        label: &str,
        all: &Histogram<u64>,
        times: Timeline,
        started: Instant,
        how: &str,
    ) -> StormResult {
        let ok = all.len();
        let trusted = self.trusted.load(Relaxed);
        let elapsed = started.elapsed();
        let mut row =
            Row::new("boot-storm", label, all, self.errors.load(Relaxed), elapsed).with_note(
                format!("{how}; {trusted}/{ok} AFFIRMING {}", self.first.get()),
            );
        row.timeline = times.seconds();
        row.started_unix_ms = Some(now_ms().saturating_sub(elapsed.as_millis() as u64));
        StormResult { row, trusted }
    }
}

/// Boots at a fixed offered rate for `duration` (open loop): boot `k`
/// starts at `k / rate` seconds, whatever the earlier ones are doing, and
/// its latency counts from that intended start, so time spent queued
/// behind a slow server shows (no coordinated omission). At most
/// `in_flight` boots run at once; once that many are waiting the schedule
/// slips, and the rate achieved (the row's `rate_per_sec`) falls below
/// the rate offered. Units are taken in order, as in [`storm`], so no unit
/// boots twice at once.
pub(crate) async fn storm_at_rate(
    ctx: &Ctx,
    label: &str,
    which: Which,
    rate: u32,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<StormResult> {
    let total = which.count(ctx.units);
    anyhow::ensure!(total > 0, "no units to boot: provision first");
    let tally = Arc::new(Tally::default());
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    // (ended at, latency, how late the boot's task began)
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, Duration, Duration)>();
    let started = Instant::now();
    let mut k: u64 = 0;
    while started.elapsed() < duration {
        let due = started + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await?;
        let i = which.unit(k % total);
        let device = ctx.client(k as usize, None)?;
        k += 1;
        let (keys, tx, tally) = (ctx.keys.clone(), tx.clone(), tally.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let late = due.elapsed();
            if tally.boot(i, boot(&device, &keys, i).await) {
                let _ = tx.send((started.elapsed(), due.elapsed(), late));
            }
        });
    }
    drop(tx);
    let mut all: Histogram<u64> = histogram();
    let mut lateness: Histogram<u64> = histogram();
    let mut times = Timeline::default();
    while let Some((ended, d, late)) = rx.recv().await {
        record(&mut all, d);
        record(&mut lateness, late);
        times.record(ended, d);
    }
    // Part of each latency is the generator's own delay in starting the
    // boot (its tasks share the machine's two cores with the server and
    // the database): kept apart so a tail can be told from it. It stays in
    // the latency, as a device's wait would.
    let how = format!(
        "open loop {rate}/s offered, at most {in_flight} at once; boots began late by p50 {:.1} / p99 {:.1} ms",
        lateness.value_at_quantile(0.5) as f64 / 1000.0,
        lateness.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(tally.result(label, &all, times, started, &how))
}

/// A query the `queries` scenario issues.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Query {
    Summary,
    ListPage,
    GetDevice,
    CheckRelease,
}

impl Query {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Query::Summary => "GetFleetSummary",
            Query::ListPage => "ListDevices page of 100",
            Query::GetDevice => "GetDevice",
            Query::CheckRelease => "CheckRelease",
        }
    }
}

/// A small deterministic generator (xorshift) for picking units.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn query_once(
    c: &Client,
    q: Query,
    rng: &mut Rng,
    units: u64,
    page_token: &mut String,
) -> Result<(), tonic::Status> {
    match q {
        Query::Summary => {
            c.fleet()
                .get_fleet_summary(pb::GetFleetSummaryRequest::default())
                .await?;
        }
        Query::ListPage => {
            let r = c
                .fleet()
                .list_devices(pb::ListDevicesRequest {
                    filter: None,
                    page_size: 100,
                    page_token: std::mem::take(page_token),
                })
                .await?
                .into_inner();
            if r.devices.len() != 100 && !r.next_page_token.is_empty() {
                return Err(tonic::Status::internal(format!(
                    "short page of {} with more to come",
                    r.devices.len()
                )));
            }
            *page_token = r.next_page_token;
        }
        Query::GetDevice => {
            c.fleet()
                .get_device(pb::GetDeviceRequest {
                    serial: serial(rng.below(units)),
                })
                .await?;
        }
        Query::CheckRelease => {
            c.release()
                .check_release(pb::CheckReleaseRequest {
                    serial: serial(rng.below(units)),
                    ..Default::default()
                })
                .await?;
        }
    }
    Ok(())
}

/// `concurrency` closed-loop workers issuing `q` for `duration`; with
/// `rate`, one open-loop stream at that many requests per second instead
/// (latency counted from the intended send time, so queueing shows).
pub(crate) async fn queries(
    ctx: &Ctx,
    q: Query,
    concurrency: usize,
    duration: Duration,
    rate: Option<u32>,
    label_suffix: &str,
) -> anyhow::Result<Row> {
    let errors = Arc::new(AtomicU64::new(0));
    let first = Arc::new(FirstError::default());
    let started = Instant::now();
    let units = ctx.units;
    let mes = ctx.kit.file.mes_token.clone();
    let mut all = histogram();
    if let Some(rate) = rate {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let slots = Arc::new(tokio::sync::Semaphore::new(512));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        let mut k: u64 = 0;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        while started.elapsed() < duration {
            let due = started + interval.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            k += 1;
            let permit = slots.clone().acquire_owned().await?;
            let c = ctx.client(k as usize, Some(&mes))?;
            let (tx, errors, first) = (tx.clone(), errors.clone(), first.clone());
            let mut r = Rng(rng.below(u64::MAX) | 1);
            tokio::spawn(async move {
                let _permit = permit;
                let mut tok = String::new();
                match query_once(&c, q, &mut r, units, &mut tok).await {
                    Ok(()) => {
                        let _ = tx.send(due.elapsed());
                    }
                    Err(e) => {
                        errors.fetch_add(1, Relaxed);
                        first.note(e.message());
                    }
                }
            });
        }
        drop(tx);
        while let Some(d) = rx.recv().await {
            record(&mut all, d);
        }
    } else {
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let c = ctx.client(w, Some(&mes))?;
            let (errors, first) = (errors.clone(), first.clone());
            tasks.push(tokio::spawn(async move {
                let mut h = histogram();
                let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (w as u64 + 1));
                let mut tok = String::new();
                while started.elapsed() < duration {
                    let t = Instant::now();
                    match query_once(&c, q, &mut rng, units, &mut tok).await {
                        Ok(()) => record(&mut h, t.elapsed()),
                        Err(e) => {
                            errors.fetch_add(1, Relaxed);
                            first.note(e.message());
                        }
                    }
                }
                h
            }));
        }
        for t in tasks {
            all.add(&t.await?)?;
        }
    }
    let note = match rate {
        Some(r) => format!("open loop {r}/s {}", first.get()),
        None => format!("c={concurrency} {}", first.get()),
    };
    Ok(Row::new(
        "queries",
        &format!("{}{label_suffix}", q.label()),
        &all,
        errors.load(Relaxed),
        started.elapsed(),
    )
    .with_note(note))
}

/// Count of units with `status` in the fleet summary.
pub(crate) async fn count_status(ctx: &Ctx, status: pb::DeviceStatus) -> anyhow::Result<u64> {
    let s = ctx
        .client(0, Some(&ctx.kit.file.mes_token))?
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await?
        .into_inner();
    Ok(s.counts
        .iter()
        .find(|c| c.status == status as i32)
        .map_or(0, |c| c.count))
}

/// Waits until `status` counts `want` units; returns how long it took.
pub(crate) async fn wait_for_count(
    ctx: &Ctx,
    status: pb::DeviceStatus,
    want: u64,
    limit: Duration,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut told = Duration::ZERO;
    loop {
        let n = count_status(ctx, status).await?;
        if n == want || started.elapsed() > limit {
            return Ok((started.elapsed(), n));
        }
        if started.elapsed() - told > Duration::from_secs(10) {
            told = started.elapsed();
            eprintln!(
                "  waiting: {n} of {want} units {} after {:.0} s",
                status.as_str_name(),
                told.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The machine's ceilings: health-check RPCs per second at `concurrency`,
/// and single-core signature verification rates.
pub(crate) async fn ceiling(
    ctx: &Ctx,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut health = tonic_health::pb::health_client::HealthClient::new(
            ctx.channels[w % ctx.channels.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut errors = 0u64;
            while started.elapsed() < duration {
                let t = Instant::now();
                match health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                {
                    Ok(_) => record(&mut h, t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let mut all = histogram();
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        all.add(&h)?;
        errors += e;
    }
    let mut rows = vec![Row::new(
        "ceiling",
        "health check RPC",
        &all,
        errors,
        started.elapsed(),
    )
    .with_note(format!("c={concurrency}"))];
    let rates = tokio::task::spawn_blocking(verify_rates).await??;
    for (name, rate) in rates {
        rows.push(Row::figure(
            "ceiling",
            &format!("{name} verify, one core"),
            rate,
            "signatures/s".into(),
        ));
    }
    Ok(rows)
}

/// Signatures verified per second on this thread, for ES256 and Ed25519.
fn verify_rates() -> anyhow::Result<Vec<(&'static str, f64)>> {
    let msg = vec![7u8; 300];
    [("ES256", KeyAlg::Es256), ("Ed25519", KeyAlg::Ed25519)]
        .into_iter()
        .map(|(name, alg)| {
            let key = SigningKey::generate(alg)?;
            let sig = key.sign_raw(&msg);
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_millis(1000) {
                for _ in 0..64 {
                    assert!(key.public_key().verify(&msg, &sig, SigEncoding::Raw));
                }
                n += 64;
            }
            Ok((name, n as f64 / started.elapsed().as_secs_f64()))
        })
        .collect()
}
