//! The Prometheus metrics of one server, served in the text exposition
//! format on the optional metrics listener (`GET /metrics`).
//!
//! Counters and histograms are updated on the request path (lock-free
//! atomics, through the `prometheus` crate); what the store knows (stored
//! objects, units by status, the re-appraisal backlog, commits) and the TLS
//! certificate's expiry are read when a scrape asks. `prometheus` (TiKV's)
//! rather than `prometheus-client`: it writes the classic text format that
//! `promtool check metrics` and every Prometheus accept as is, and keeps its
//! metrics in a registry per server rather than a process-wide recorder
//! (tests run several servers in one process).

use std::sync::Arc;

use attestd_core::Reason;
use attestd_store::{SWEEP_DIGEST, SWEEP_MODEL, SWEEP_STATION};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::app::App;
use crate::tls::TlsState;

/// Upper bounds of the RPC latency buckets, in seconds: sub-millisecond
/// reads to multi-second writes under load (streams that last longer land
/// in `+Inf`).
const RPC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Dirty and due units are counted up to this many per scrape (the store
/// lists them through its indices; a scrape must stay cheap).
pub const BACKLOG_CAP: usize = 10_000;

/// The methods the metrics name; any other path is counted as `unknown`,
/// so that callers cannot create series.
fn known_methods() -> impl Iterator<Item = &'static str> {
    crate::auth::ROUTES.iter().map(|(p, _)| *p).chain([
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ])
}

/// `/pkg.Service/Method` as the `service` and `method` labels.
fn split_path(path: &'static str) -> (&'static str, &'static str) {
    let p = path.trim_start_matches('/');
    p.split_once('/').unwrap_or(("unknown", p))
}

/// Which method's series a call counts in (an index into the known
/// methods; the last is `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpc(usize);

/// The gRPC status codes by name, as they appear in the `code` label and
/// in logs.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn sweep_kind(kind: i32) -> &'static str {
    match kind {
        SWEEP_MODEL => "model",
        SWEEP_STATION => "station",
        SWEEP_DIGEST => "digest",
        _ => "other",
    }
}

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    /// Evidence accepted.
    pub evidence_accepted: IntCounter,
    /// Station records accepted.
    pub records_accepted: IntCounter,
    /// Identical records resubmitted (idempotent).
    pub records_duplicate: IntCounter,
    /// Nonces issued.
    pub challenges_issued: IntCounter,
    /// Security events raised ([`crate::security::SecurityEvents`]).
    pub security_events: IntCounter,
    /// Transactions retried because the unit changed underneath.
    pub commit_conflicts: IntCounter,
    /// Units re-appraised without new evidence.
    pub reappraisals: IntCounter,
    /// Baselines accepted.
    pub baselines_accepted: IntCounter,
    rejected: IntCounterVec,
    /// Units a re-appraisal sweep went through, by sweep kind.
    sweep_units: IntCounterVec,
    /// Sweeps run to their end, by kind.
    sweeps_finished: IntCounterVec,
    methods: Vec<(&'static str, &'static str)>,
    rpc_duration: Vec<Histogram>,
    rpc_handled: IntCounterVec,
    // Read from elsewhere when a scrape asks.
    store_commits: IntCounter,
    store_writes: IntCounter,
    stored: IntGaugeVec,
    units: IntGaugeVec,
    dirty_units: IntGaugeVec,
    due_units: IntGaugeVec,
    open_sweeps: IntGaugeVec,
    tls_expiry: IntGaugeVec,
    build_info: IntGaugeVec,
    /// One scrape at a time (they set the gauges they then read).
    scrape: tokio::sync::Mutex<()>,
}

/// Registers a metric; the names are fixed here, so a failure is a bug
/// that the unit tests below show.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    if let Err(e) = registry.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "a metric could not be registered");
    }
    m
}

// Called only from `Metrics::default` with constant names, help texts and
// labels, which every unit test that builds `Metrics` checks: cannot fail.
#[allow(clippy::expect_used)]
fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("a valid metric name"))
}

// Called only from `Metrics::default` with constant names, help texts and
// labels, which every unit test that builds `Metrics` checks: cannot fail.
#[allow(clippy::expect_used)]
fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"),
    )
}

// Called only from `Metrics::default` with constant names, help texts and
// labels, which every unit test that builds `Metrics` checks: cannot fail.
#[allow(clippy::expect_used)]
fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        let methods: Vec<_> = known_methods()
            .map(split_path)
            .chain([("unknown", "unknown")])
            .collect();
        // A constant name, help text, buckets and labels: cannot fail.
        #[allow(clippy::expect_used)]
        let duration = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "attestd_rpc_duration_seconds",
                    "Time from a call's arrival to the end of its answer (the last message of a stream), by method.",
                )
                .buckets(RPC_BUCKETS.to_vec()),
                &["service", "method"],
            )
            .expect("a valid metric name"),
        );
        // Every known method's histogram exists from the start (rates of a
        // method never called read 0, not "no data").
        let rpc_duration = methods
            .iter()
            .map(|(s, m)| duration.with_label_values(&[*s, *m]))
            .collect();
        Metrics {
            evidence_accepted: counter(&r, "attestd_evidence_accepted_total", "Evidence accepted."),
            records_accepted: counter(
                &r,
                "attestd_records_accepted_total",
                "Station records accepted.",
            ),
            records_duplicate: counter(
                &r,
                "attestd_records_duplicate_total",
                "Identical records resubmitted (idempotent).",
            ),
            challenges_issued: counter(&r, "attestd_challenges_issued_total", "Nonces issued."),
            security_events: counter(
                &r,
                "attestd_security_events_total",
                "Security events raised.",
            ),
            commit_conflicts: counter(
                &r,
                "attestd_commit_conflicts_total",
                "Writes re-decided because the unit changed concurrently.",
            ),
            reappraisals: counter(
                &r,
                "attestd_reappraisals_total",
                "Units re-appraised without new evidence.",
            ),
            baselines_accepted: counter(
                &r,
                "attestd_baselines_accepted_total",
                "Baselines accepted.",
            ),
            rejected: counter_vec(
                &r,
                "attestd_rejected_total",
                "Requests rejected, by reason.",
                &["reason"],
            ),
            sweep_units: counter_vec(
                &r,
                "attestd_reappraisal_sweep_units_total",
                "Units re-appraised by sweeps (a new baseline's model, a revoked station's units, a withdrawn firmware's units), by sweep kind; only the replica holding the re-appraisal lease counts.",
                &["kind"],
            ),
            sweeps_finished: counter_vec(
                &r,
                "attestd_reappraisal_sweeps_finished_total",
                "Re-appraisal sweeps run to their end, by kind.",
                &["kind"],
            ),
            methods,
            rpc_duration,
            rpc_handled: counter_vec(
                &r,
                "attestd_rpc_requests_total",
                "Calls answered, by method and gRPC status code.",
                &["service", "method", "code"],
            ),
            store_commits: counter(
                &r,
                "attestd_store_flushes_total",
                "Commits that made writes durable (sled: group flushes; PostgreSQL: transactions).",
            ),
            store_writes: counter(
                &r,
                "attestd_store_flushed_writes_total",
                "Writes those commits made durable.",
            ),
            stored: gauge_vec(&r, "attestd_stored", "Objects in the store.", &["kind"]),
            units: gauge_vec(
                &r,
                "attestd_units",
                "Units by status, from the store's counters.",
                &["status"],
            ),
            dirty_units: gauge_vec(
                &r,
                "attestd_reappraisal_dirty_units",
                "Units waiting for re-appraisal after a record or a revocation (counted up to 10000).",
                &[],
            ),
            due_units: gauge_vec(
                &r,
                "attestd_reappraisal_due_units",
                "Units whose time-based re-appraisal is due now (counted up to 10000).",
                &[],
            ),
            open_sweeps: gauge_vec(
                &r,
                "attestd_reappraisal_open_sweeps",
                "Re-appraisal sweeps not finished yet, by kind.",
                &["kind"],
            ),
            tls_expiry: gauge_vec(
                &r,
                "attestd_tls_certificate_expiry_seconds",
                "Seconds until the notAfter of the TLS certificate served now (negative once expired).",
                &[],
            ),
            build_info: gauge_vec(
                &r,
                "attestd_build_info",
                "1, labelled with the version, the git commit it was built from (ATTESTD_GIT_COMMIT at build time) and the storage backend.",
                &["version", "git_commit", "backend"],
            ),
            scrape: tokio::sync::Mutex::new(()),
            registry: r,
        }
    }
}

/// The git commit the binary was built from, if the build said
/// (`ATTESTD_GIT_COMMIT=$(git rev-parse HEAD) cargo build ...`). Not read
/// from git by a build script: that would rebuild this crate and everything
/// above it at every commit.
pub const GIT_COMMIT: &str = match option_env!("ATTESTD_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

impl Metrics {
    /// Counts a refused call (`attestd_rejected_total`) by its reason code.
    pub fn count_rejection(&self, reason: Reason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// How many calls were refused with `reason` so far.
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected.with_label_values(&[reason.as_str()]).get()
    }

    /// The series a call of `path` counts in.
    pub fn rpc(&self, path: &str) -> Rpc {
        let p = path.trim_start_matches('/');
        let known = p.split_once('/').and_then(|(s, m)| {
            self.methods
                .iter()
                .position(|(ks, km)| *ks == s && *km == m)
        });
        Rpc(known.unwrap_or(self.methods.len() - 1))
    }

    /// Counts a call that ended with `code` after `seconds`.
    pub fn observe_rpc(&self, rpc: Rpc, code: tonic::Code, seconds: f64) {
        if let Some(h) = self.rpc_duration.get(rpc.0) {
            h.observe(seconds);
        }
        if let Some((s, m)) = self.methods.get(rpc.0) {
            self.rpc_handled
                .with_label_values(&[*s, *m, code_name(code)])
                .inc();
        }
    }

    /// Counts `n` units re-appraised by a sweep of `kind`.
    pub fn sweep_progress(&self, kind: i32, n: usize) {
        self.sweep_units
            .with_label_values(&[sweep_kind(kind)])
            .inc_by(n as u64);
    }

    /// Counts a re-appraisal sweep of `kind` that reached its end.
    pub fn sweep_finished(&self, kind: i32) {
        self.sweeps_finished
            .with_label_values(&[sweep_kind(kind)])
            .inc();
    }

    /// Sets the build information (the backend is the store's).
    pub fn set_build_info(&self, backend: &str) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT, backend])
            .set(1);
    }
}

/// Brings a counter kept elsewhere (the store's) up to `value`.
fn catch_up(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

/// Reads what the store and the TLS state know into the gauges, then
/// renders every metric in the Prometheus text exposition format. What
/// cannot be read now (the store does not answer) is left out of this
/// scrape rather than shown stale.
pub async fn render(app: &App, tls: Option<&TlsState>) -> String {
    let m = &app.metrics;
    let _one = m.scrape.lock().await;
    let store = app.store.as_ref();
    let stats = store.write_stats();
    catch_up(&m.store_commits, stats.commits);
    catch_up(&m.store_writes, stats.writes);

    m.stored.reset();
    m.units.reset();
    if let Ok(c) = store.counts().await {
        for (what, v) in [
            ("stations", c.stations),
            ("devices", c.devices),
            ("records", c.records),
            ("evidence", c.evidence),
            ("baselines", c.baselines),
        ] {
            m.stored.with_label_values(&[what]).set(v as i64);
        }
        for status in attestd_core::appraisal::Status::ALL {
            let code = attestd_store::codes::status(status) as usize;
            let n = c.by_status.get(code).copied().unwrap_or(0);
            m.units.with_label_values(&[status.as_str()]).set(n as i64);
        }
    }

    let now_ms = app.clock.now_ms();
    m.dirty_units.reset();
    if let Ok(d) = store.dirty_units(BACKLOG_CAP).await {
        m.dirty_units
            .with_label_values::<&str>(&[])
            .set(d.len() as i64);
    }
    m.due_units.reset();
    if let Ok(d) = store.due_units(now_ms.div_euclid(1000), BACKLOG_CAP).await {
        m.due_units
            .with_label_values::<&str>(&[])
            .set(d.len() as i64);
    }
    m.open_sweeps.reset();
    if let Ok(sweeps) = store.sweeps().await {
        for kind in [SWEEP_MODEL, SWEEP_STATION, SWEEP_DIGEST] {
            let n = sweeps.iter().filter(|s| s.kind == kind).count();
            m.open_sweeps
                .with_label_values(&[sweep_kind(kind)])
                .set(n as i64);
        }
    }

    m.tls_expiry.reset();
    if let Some(not_after) = tls.and_then(TlsState::not_after) {
        m.tls_expiry
            .with_label_values::<&str>(&[])
            .set(not_after - now_ms.div_euclid(1000));
    }

    TextEncoder::new()
        .encode_to_string(&m.registry.gather())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the metrics could not be rendered");
            String::new()
        })
}

/// Serves `GET /metrics` on `listener` until the task is dropped. A minimal
/// HTTP/1.1 responder: one request per connection, bounded reads.
pub async fn serve_metrics(listener: TcpListener, app: Arc<App>, tls: Option<Arc<TlsState>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let (status, body) = if buf[..n].starts_with(b"GET /metrics ") {
                ("200 OK", render(&app, tls.as_deref()).await)
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_owned(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_known_methods_have_their_own_series() {
        let m = Metrics::default();
        m.count_rejection(Reason::NoCredentials);
        m.set_build_info("sled");
        let get = m.rpc("/attestd.v1.Fleet/GetDevice");
        let unknown = m.rpc("/evil.Service/Anything");
        assert_ne!(get, unknown);
        assert_eq!(unknown, m.rpc("/attestd.v1.Fleet/NoSuchMethod"));
        m.observe_rpc(get, tonic::Code::NotFound, 0.003);
        m.observe_rpc(unknown, tonic::Code::PermissionDenied, 0.001);
        let text = TextEncoder::new()
            .encode_to_string(&m.registry.gather())
            .unwrap();
        for name in [
            "attestd_evidence_accepted_total",
            "attestd_rejected_total{reason=\"NO_CREDENTIALS\"} 1",
            "attestd_rpc_duration_seconds_count{method=\"GetDevice\",service=\"attestd.v1.Fleet\"} 1",
            "attestd_rpc_duration_seconds_count{method=\"CheckRelease\",service=\"attestd.v1.Release\"} 0",
            "attestd_rpc_requests_total{code=\"NOT_FOUND\",method=\"GetDevice\",service=\"attestd.v1.Fleet\"} 1",
            "attestd_rpc_requests_total{code=\"PERMISSION_DENIED\",method=\"unknown\",service=\"unknown\"} 1",
            "attestd_build_info{backend=\"sled\"",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(
            !text.contains("evil"),
            "a caller's path never becomes a label"
        );
    }
}
