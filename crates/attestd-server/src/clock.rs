//! Where the server reads the time. Behind a trait so that time-based rules
//! (nonce expiry, freshness, due dates) can be tested without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

use attestd_core::time::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now(&self) -> UnixTime {
        UnixTime(self.now_ms().div_euclid(1000))
    }
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
