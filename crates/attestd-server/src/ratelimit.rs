//! Rate limits for the unauthenticated RPCs (DeviceAttestation): one token
//! bucket per peer address and one per claimed serial. Buckets refill
//! continuously; the table is bounded, and when it is full of active
//! buckets new keys are refused (fail closed) rather than growing memory.
//!
//! A per-serial limit on unauthenticated calls lets someone who floods a
//! serial slow that unit's own boots down; the default is generous (a unit
//! boots a few times a day) and the per-peer limit stops most floods first.

use std::collections::HashMap;
use std::sync::Mutex;

use attestd_core::{reject, Rejection};

struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Token buckets keyed by a string.
pub struct Buckets {
    what: &'static str,
    per_minute: f64,
    max_keys: usize,
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// `per_minute` calls per key and minute, in bursts of at most that many.
    /// Zero disables the limit.
    pub fn new(what: &'static str, per_minute: u32, max_keys: usize) -> Buckets {
        Buckets {
            what,
            per_minute: per_minute as f64,
            max_keys: max_keys.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or refuses with RATE_LIMITED.
    pub fn take(&self, key: &str, now_ms: i64) -> Result<(), Rejection> {
        if self.per_minute <= 0.0 {
            return Ok(());
        }
        let rate_per_ms = self.per_minute / 60_000.0;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= self.max_keys {
            // Forget buckets that have refilled completely: they hold no state.
            let full = self.per_minute;
            map.retain(|_, b| b.tokens + (now_ms - b.at_ms).max(0) as f64 * rate_per_ms < full);
            if map.len() >= self.max_keys {
                return Err(reject!(
                    RateLimited,
                    "too many callers right now; retry later"
                ));
            }
        }
        let b = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.per_minute,
            at_ms: now_ms,
        });
        b.tokens = (b.tokens + (now_ms - b.at_ms).max(0) as f64 * rate_per_ms).min(self.per_minute);
        b.at_ms = now_ms.max(b.at_ms);
        if b.tokens < 1.0 {
            return Err(reject!(
                RateLimited,
                "more than {} calls a minute for this {}; retry later",
                self.per_minute,
                self.what
            ));
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestd_core::Reason;

    #[test]
    fn bursts_then_refills() {
        let b = Buckets::new("serial", 3, 100);
        for _ in 0..3 {
            b.take("s1", 0).unwrap();
        }
        assert_eq!(b.take("s1", 0).unwrap_err().reason, Reason::RateLimited);
        b.take("s2", 0).expect("another key has its own bucket");
        // One token comes back every 20 s at 3 a minute.
        assert!(b.take("s1", 19_000).is_err());
        b.take("s1", 20_000).unwrap();
        assert!(Buckets::new("x", 0, 1).take("any", 0).is_ok(), "0 disables");
    }

    #[test]
    fn the_table_is_bounded() {
        let b = Buckets::new("peer", 2, 2);
        b.take("a", 0).unwrap();
        b.take("b", 0).unwrap();
        // Full of active buckets: a new key is refused.
        assert_eq!(b.take("c", 0).unwrap_err().reason, Reason::RateLimited);
        // Once they refill (a minute later) they are forgotten to make room.
        b.take("c", 61_000).unwrap();
    }
}
