//! Rate limits for the unauthenticated RPCs (DeviceAttestation): one token
//! bucket per peer address and one per claimed serial. Buckets refill
//! continuously; the table is bounded, and when it is full of active
//! buckets new keys are refused (fail closed) rather than growing memory.
//!
//! Every call costs a bounded amount of work under the lock: when the table
//! is full, at most [`EVICT_PER_CALL`] of the oldest keys are examined (a
//! fully refilled bucket holds no state and is forgotten; an active one goes
//! to the back of the queue), never the whole table.
//!
//! A per-serial limit on unauthenticated calls lets someone who floods a
//! serial slow that unit's own boots down; the default is generous (a unit
//! boots a few times a day) and the per-peer limit stops most floods first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use attestd_core::{reject, Rejection};

struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Keys examined at most per call to make room in a full table.
pub const EVICT_PER_CALL: usize = 16;

/// The table: buckets and their keys, oldest first (each key once).
#[derive(Default)]
struct Table {
    map: HashMap<String, Bucket>,
    order: VecDeque<String>,
    /// Keys examined to make room by the last call (for tests).
    examined: usize,
}

/// Token buckets keyed by a string.
pub struct Buckets {
    what: &'static str,
    per_minute: f64,
    max_keys: usize,
    table: Mutex<Table>,
}

impl Buckets {
    /// `per_minute` calls per key and minute, in bursts of at most that many.
    /// Zero disables the limit.
    pub fn new(what: &'static str, per_minute: u32, max_keys: usize) -> Buckets {
        Buckets {
            what,
            per_minute: per_minute as f64,
            max_keys: max_keys.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// Takes one token for `key`, or refuses with RATE_LIMITED.
    pub fn take(&self, key: &str, now_ms: i64) -> Result<(), Rejection> {
        if self.per_minute <= 0.0 {
            return Ok(());
        }
        let rate_per_ms = self.per_minute / 60_000.0;
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *guard;
        table.examined = 0;
        if !table.map.contains_key(key) && table.map.len() >= self.max_keys {
            // Forget the oldest buckets that have refilled completely (they
            // hold no state); look at a bounded number of them.
            let full = self.per_minute;
            for _ in 0..EVICT_PER_CALL.min(table.order.len()) {
                let Some(k) = table.order.pop_front() else {
                    break;
                };
                table.examined += 1;
                let refilled = table.map.get(&k).is_none_or(|b| {
                    b.tokens + (now_ms - b.at_ms).max(0) as f64 * rate_per_ms >= full
                });
                if refilled {
                    table.map.remove(&k);
                    if table.map.len() < self.max_keys {
                        break;
                    }
                } else {
                    table.order.push_back(k);
                }
            }
            if table.map.len() >= self.max_keys {
                return Err(reject!(
                    RateLimited,
                    "too many callers right now; retry later"
                ));
            }
        }
        let map = &mut table.map;
        if !map.contains_key(key) {
            table.order.push_back(key.to_owned());
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

    #[test]
    fn a_full_table_costs_a_bounded_amount_per_call() {
        let n = 20_000;
        let b = Buckets::new("peer", 5, n);
        for i in 0..n {
            b.take(&format!("k{i}"), 0).unwrap();
        }
        // Full of active buckets: each new key is refused after looking at
        // a few entries, not all 20,000.
        for i in 0..100 {
            assert_eq!(
                b.take(&format!("new{i}"), 1).unwrap_err().reason,
                Reason::RateLimited
            );
            let examined = b.table.lock().unwrap().examined;
            assert!(
                (1..=EVICT_PER_CALL).contains(&examined),
                "examined {examined}"
            );
        }
        // Refilled buckets make room, still a few at a time.
        b.take("late", 61_000).unwrap();
        assert_eq!(b.table.lock().unwrap().examined, 1);
        assert_eq!(b.table.lock().unwrap().map.len(), n);
        // An existing key never pays for eviction.
        b.take("k19999", 61_000).unwrap();
        assert_eq!(b.table.lock().unwrap().examined, 0);
    }
}
