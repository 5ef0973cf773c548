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

/// A clock for end-to-end tests of time-based rules: the system clock plus
/// an offset in milliseconds read from a file at every call (a missing or
/// unreadable file means no offset). Enabled only by the `[testing]`
/// section of the configuration, and announced loudly at start-up.
#[derive(Clone, Debug)]
pub struct OffsetFileClock {
    /// The file holding the offset in milliseconds.
    pub path: std::path::PathBuf,
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> i64 {
        let offset = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        SystemClock.now_ms().saturating_add(offset)
    }
}

/// A clock that moves only when told to: for in-process tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    /// A clock at `now_ms` (ms since the Unix epoch).
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock {
            now_ms: std::sync::atomic::AtomicI64::new(now_ms),
        }
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.now_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}
