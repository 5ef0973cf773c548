//! Latency histograms and the result rows every scenario prints and writes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 us .. 10 min, 3 significant digits.
// The bounds are constants that hdrhistogram accepts (low >= 1, high >=
// 2 * low, 3 significant digits <= 5): this cannot fail.
#[allow(clippy::expect_used)]
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 600_000_000);
    let _ = h.record(us);
}

/// One measured operation.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub scenario: String,
    pub operation: String,
    pub count: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rate_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// A single figure (seconds, MiB, signatures/s; the note names it)
    /// instead of a latency distribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// CPU per operation, where measured (boot storms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuPerOp>,
    /// Anything else worth keeping (a first error, a fraction of a ceiling).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The latencies second by second (boot storms).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Second>,
    /// When the timeline's second 0 began (Unix time, ms), to set it beside
    /// the server's and the database's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
}

/// The operations that ended in one second of a run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Second {
    /// Seconds from the start of the run.
    pub second: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// When each operation of a run ended and how long it took, kept so that
/// a tail can be placed in time: spread over the run (queueing), or in a
/// few seconds (a checkpoint, a vacuum, a stall of the host). Raw pairs
/// rather than a histogram per second: 8 bytes an operation (a 15 s storm
/// at 3,000 boots/s keeps 360 KB), and percentiles exact.
#[derive(Default)]
pub(crate) struct Timeline {
    /// (ended at, ms from the start; latency, us)
    points: Vec<(u32, u32)>,
}

impl Timeline {
    pub(crate) fn record(&mut self, ended: Duration, latency: Duration) {
        let at = u32::try_from(ended.as_millis()).unwrap_or(u32::MAX);
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.points.push((at, us));
    }

    pub(crate) fn add(&mut self, other: Timeline) {
        self.points.extend(other.points);
    }

    /// Count and latency percentiles for each second of the run, from the
    /// first to the last in which an operation ended; a second in which none
    /// ended is there with a count of 0 (a stall). The last second is
    /// partial: the run's end, where only the operations in flight finish.
    pub(crate) fn seconds(mut self) -> Vec<Second> {
        self.points.sort_unstable();
        let mut out: Vec<Second> = Vec::new();
        for chunk in self.points.chunk_by(|a, b| a.0 / 1000 == b.0 / 1000) {
            let second = u64::from(chunk[0].0 / 1000);
            let next = out.last().map_or(second, |s| s.second + 1);
            out.extend((next..second).map(|second| Second {
                second,
                count: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
            }));
            let mut us: Vec<u32> = chunk.iter().map(|p| p.1).collect();
            us.sort_unstable();
            let at = |q: f64| {
                let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
                f64::from(us[i]) / 1000.0
            };
            out.push(Second {
                second,
                count: us.len() as u64,
                p50_ms: at(0.5),
                p99_ms: at(0.99),
                max_ms: at(1.0),
            });
        }
        out
    }
}

/// CPU time (user + system) per operation in microseconds, by process,
/// whatever else the machine was doing: what a figure costs.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CpuPerOp {
    /// Every attestd replica, summed.
    pub server_us: f64,
    /// How many replicas `server_us` sums (1 with sled).
    pub replicas: usize,
    /// Every `postgres` process on this machine (with PostgreSQL only);
    /// it includes the server's work for other databases, if any ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_us: Option<f64>,
    /// Of which the backends connected to the fleet's database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_db_backends_us: Option<f64>,
    /// This load generator.
    pub load_generator_us: f64,
    /// Of the whole machine's CPU time over the measurement, the share (%)
    /// the hypervisor gave to other guests (steal): high on a busy shared
    /// host, where every figure here is lower for reasons of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_steal_pct: Option<f64>,
    /// And the share that was idle (or waiting for I/O).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_idle_pct: Option<f64>,
}

impl Row {
    pub(crate) fn new(
        scenario: &str,
        operation: &str,
        h: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
    ) -> Row {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Row {
            scenario: scenario.into(),
            operation: operation.into(),
            count: h.len(),
            errors,
            seconds: secs,
            rate_per_sec: h.len() as f64 / secs,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            value: None,
            cpu: None,
            note: String::new(),
            timeline: Vec::new(),
            started_unix_ms: None,
        }
    }

    /// A single figure (a time, a size) rather than a latency distribution.
    pub(crate) fn figure(scenario: &str, operation: &str, value: f64, note: String) -> Row {
        Row {
            scenario: scenario.into(),
            operation: operation.into(),
            count: 1,
            errors: 0,
            seconds: 0.0,
            rate_per_sec: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            value: Some(value),
            cpu: None,
            note,
            timeline: Vec::new(),
            started_unix_ms: None,
        }
    }

    pub(crate) fn with_errors(mut self, errors: u64) -> Row {
        self.errors = errors;
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// The rows as a table. The CPU columns are microseconds per operation of
/// the attestd server(s), all of PostgreSQL, the backends of the fleet's
/// database alone, and the load generator; `st %` is the machine's steal
/// over the measurement (CPU time the hypervisor gave to other guests).
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<11} {:<38} {:>9} {:>6} {:>11} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>5}  {}\n",
        "scenario",
        "operation",
        "count",
        "errors",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "srv us",
        "pg us",
        "pg db",
        "gen us",
        "st %",
        "note"
    );
    for r in rows {
        let us = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
        let (srv, pg, db, generator, steal) = match &r.cpu {
            Some(c) => (
                us(Some(c.server_us)),
                us(c.postgres_us),
                us(c.postgres_db_backends_us),
                us(Some(c.load_generator_us)),
                c.host_steal_pct
                    .map_or(String::new(), |v| format!("{v:.1}")),
            ),
            None => Default::default(),
        };
        if let Some(v) = r.value {
            out.push_str(&format!(
                "{:<11} {:<38} {:>9} {:>6} {:>11.2} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>5}  {}\n",
                r.scenario,
                r.operation,
                "",
                r.errors,
                v,
                "",
                "",
                "",
                srv,
                pg,
                db,
                generator,
                steal,
                r.note
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<11} {:<38} {:>9} {:>6} {:>11.1} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>7} {:>7} {:>5}  {}\n",
            r.scenario,
            r.operation,
            r.count,
            r.errors,
            r.rate_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            srv,
            pg,
            db,
            generator,
            steal,
            r.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_gives_each_second_and_shows_a_stall_as_zero() {
        let mut t = Timeline::default();
        // Second 0: latencies 1..=100 ms; second 1: nothing; second 2: one.
        for ms in 1..=100u64 {
            t.record(
                Duration::from_millis(10 * ms - 5),
                Duration::from_millis(ms),
            );
        }
        t.record(Duration::from_millis(2_500), Duration::from_millis(7));
        let s = t.seconds();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].second, s[0].count), (0, 100));
        assert_eq!((s[0].p50_ms, s[0].p99_ms, s[0].max_ms), (50.0, 99.0, 100.0));
        assert_eq!((s[1].second, s[1].count, s[1].max_ms), (1, 0, 0.0));
        assert_eq!((s[2].second, s[2].count, s[2].p99_ms), (2, 1, 7.0));
        assert!(Timeline::default().seconds().is_empty());
    }
}
