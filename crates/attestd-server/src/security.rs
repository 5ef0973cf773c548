//! Security events: a rejected request about an enrolled unit or a
//! registered station is something an operator should see (someone may be
//! forging its evidence). Logged at `warn` under target `attestd::security`,
//! counted, and rate-limited per subject so that a flood cannot drown the log.
//! Never stored: unauthenticated input does not change state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attestd_core::Reason;

use crate::metrics::Metrics;

/// At most one logged event per subject per this many milliseconds.
const INTERVAL_MS: i64 = 60_000;
/// Subjects remembered for rate limiting before the table is reset.
const MAX_SUBJECTS: usize = 10_000;

/// Logs and counts security events, at most one log line per subject per minute.
pub struct SecurityEvents {
    last: Mutex<HashMap<String, i64>>,
    metrics: Arc<Metrics>,
}

impl SecurityEvents {
    /// An empty log that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> SecurityEvents {
        SecurityEvents {
            last: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Records a security event about `kind` `subject` (e.g. "device",
    /// "PM200-000123"). Returns whether it was logged (not rate-limited).
    pub fn raise(&self, kind: &'static str, subject: &str, reason: Reason, now_ms: i64) -> bool {
        self.metrics.security_events.inc();
        let key = format!("{kind}:{subject}");
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = last.get(&key) {
                if now_ms - t < INTERVAL_MS {
                    return false;
                }
            }
            if last.len() >= MAX_SUBJECTS {
                last.clear();
            }
            last.insert(key, now_ms);
        }
        tracing::warn!(target: "attestd::security", kind, subject, reason = reason.as_str(), "security event");
        true
    }
}

/// Calls counted per caller (a principal, or a peer address when there is
/// none) and written to the audit chain as one summary entry per interval
/// ([`summarize`]), not one entry each: refusals at the edge, release checks
/// of serials that are not enrolled.
#[derive(Default)]
pub struct CallerTally {
    counts: Mutex<HashMap<String, u64>>,
}

/// Distinct callers remembered per interval; beyond that they are lumped.
const MAX_FAILING_CALLERS: usize = 1000;

impl CallerTally {
    /// Counts one event of `who` (a principal, a peer address) in the current interval.
    pub fn note(&self, who: &str) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = if m.len() >= MAX_FAILING_CALLERS && !m.contains_key(who) {
            "others".to_owned()
        } else {
            who.to_owned()
        };
        *m.entry(key).or_default() += 1;
    }

    /// The counts since the last call, sorted, and resets them.
    pub fn drain(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        v.sort();
        v
    }
}

/// Every `checkpoint_interval_secs`, writes what `counts` gathered since the
/// last time as one audit entry (`action`, target "<n> <what>"), if anything;
/// once more when `shutdown` turns true.
pub async fn summarize(
    app: Arc<crate::app::App>,
    counts: Arc<CallerTally>,
    action: &'static str,
    what: &'static str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = std::time::Duration::from_secs(app.limits.checkpoint_interval_secs.max(1));
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = shutdown.changed() => true,
        };
        let counts = counts.drain();
        if !counts.is_empty() {
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let details = counts
                .iter()
                .map(|(who, n)| format!("{who}: {n}"))
                .collect::<Vec<_>>()
                .join("; ");
            let note = attestd_store::AuditNote::new(
                app.clock.now_ms(),
                "attestd",
                action,
                &format!("{total} {what}"),
            )
            .details(details);
            if let Err(e) = app.store.append_audit(&note).await {
                let e = app.store_err(e);
                tracing::warn!(action, reason = e.reason.as_str(), message = %e.message, "could not record a refusal summary")
            }
        }
        if stop {
            return;
        }
    }
}
