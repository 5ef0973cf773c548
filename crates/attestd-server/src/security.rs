//! Security events: a rejected request about an enrolled unit or a
//! registered station is something an operator should see (someone may be
//! forging its evidence). Logged at `warn` under target `attestd::security`,
//! counted, and rate-limited per subject so that a flood cannot drown the log.
//! Never stored: unauthenticated input does not change state.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use attestd_core::Reason;

use crate::metrics::Metrics;

/// At most one logged event per subject per this many milliseconds.
const INTERVAL_MS: i64 = 60_000;
/// Subjects remembered for rate limiting before the table is reset.
const MAX_SUBJECTS: usize = 10_000;

pub struct SecurityEvents {
    last: Mutex<HashMap<String, i64>>,
    metrics: Arc<Metrics>,
}

impl SecurityEvents {
    pub fn new(metrics: Arc<Metrics>) -> SecurityEvents {
        SecurityEvents {
            last: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Records a security event about `kind` `subject` (e.g. "device",
    /// "PM200-000123"). Returns whether it was logged (not rate-limited).
    pub fn raise(&self, kind: &'static str, subject: &str, reason: Reason, now_ms: i64) -> bool {
        self.metrics.security_events.fetch_add(1, Relaxed);
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
