//! Counters, exposed in the Prometheus text format on the optional metrics
//! listener (`GET /metrics`). Lock-free on the hot path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use attestd_core::Reason;
use attestd_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Process-wide counters.
#[derive(Debug)]
pub struct Metrics {
    pub evidence_accepted: AtomicU64,
    pub records_accepted: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub challenges_issued: AtomicU64,
    pub security_events: AtomicU64,
    /// Transactions retried because the unit changed underneath.
    pub commit_conflicts: AtomicU64,
    /// Units re-appraised without new evidence.
    pub reappraisals: AtomicU64,
    pub baselines_accepted: AtomicU64,
    rejected: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            evidence_accepted: AtomicU64::new(0),
            records_accepted: AtomicU64::new(0),
            records_duplicate: AtomicU64::new(0),
            challenges_issued: AtomicU64::new(0),
            security_events: AtomicU64::new(0),
            commit_conflicts: AtomicU64::new(0),
            reappraisals: AtomicU64::new(0),
            baselines_accepted: AtomicU64::new(0),
            rejected: Reason::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Metrics {
    pub fn count_rejection(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn rejected(&self, reason: Reason) -> u64 {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.rejected[i].load(Relaxed))
    }

    /// Renders the Prometheus text exposition format.
    pub async fn render(&self, store: &dyn Store) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        counter(
            "attestd_store_flushes_total",
            "Commits that made writes durable (sled: group flushes; PostgreSQL: transactions).",
            store.write_stats().commits,
        );
        counter(
            "attestd_store_flushed_writes_total",
            "Writes those commits made durable.",
            store.write_stats().writes,
        );
        counter(
            "attestd_evidence_accepted_total",
            "Evidence accepted.",
            self.evidence_accepted.load(Relaxed),
        );
        counter(
            "attestd_records_accepted_total",
            "Station records accepted.",
            self.records_accepted.load(Relaxed),
        );
        counter(
            "attestd_records_duplicate_total",
            "Identical records resubmitted (idempotent).",
            self.records_duplicate.load(Relaxed),
        );
        counter(
            "attestd_challenges_issued_total",
            "Nonces issued.",
            self.challenges_issued.load(Relaxed),
        );
        counter(
            "attestd_security_events_total",
            "Security events raised.",
            self.security_events.load(Relaxed),
        );
        counter(
            "attestd_commit_conflicts_total",
            "Writes re-decided because the unit changed concurrently.",
            self.commit_conflicts.load(Relaxed),
        );
        counter(
            "attestd_reappraisals_total",
            "Units re-appraised without new evidence.",
            self.reappraisals.load(Relaxed),
        );
        counter(
            "attestd_baselines_accepted_total",
            "Baselines accepted.",
            self.baselines_accepted.load(Relaxed),
        );
        out.push_str("# HELP attestd_rejected_total Requests rejected, by reason.\n# TYPE attestd_rejected_total counter\n");
        for (i, r) in Reason::ALL.iter().enumerate() {
            let v = self.rejected[i].load(Relaxed);
            if v > 0 {
                out.push_str(&format!(
                    "attestd_rejected_total{{reason=\"{}\"}} {v}\n",
                    r.as_str()
                ));
            }
        }
        if let Ok(c) = store.counts().await {
            out.push_str(
                "# HELP attestd_stored Objects in the store.\n# TYPE attestd_stored gauge\n",
            );
            for (what, v) in [
                ("stations", c.stations),
                ("devices", c.devices),
                ("records", c.records),
                ("evidence", c.evidence),
            ] {
                out.push_str(&format!("attestd_stored{{kind=\"{what}\"}} {v}\n"));
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. A minimal
/// HTTP/1.1 responder: one request per connection, bounded reads.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, store: Arc<dyn Store>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let store = store.clone();
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
                ("200 OK", metrics.render(store.as_ref()).await)
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
