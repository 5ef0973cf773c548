//! Challenge nonces: random, single use, expiring, and bounded per serial and
//! in total ([`NoncePolicy`]). [`NonceCache`] keeps them in memory, for a
//! backend with one process: a restart forgets outstanding nonces, which is
//! safe (the unit asks again) and never lets one be used twice. A backend
//! shared by several replicas keeps them in its database with the same
//! meaning (the conformance suite checks both).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use attestd_core::{reject, Rejection};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of the nonces attestd issues.
pub const NONCE_LEN: usize = 32;

/// How long a nonce lives and how many may be outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoncePolicy {
    /// How long an issued nonce stays valid, in ms.
    pub lifetime_ms: i64,
    /// Outstanding nonces per serial; issuing more evicts the oldest.
    pub per_serial: usize,
    /// Outstanding nonces in total (a backend may bound them otherwise).
    pub total: usize,
}

impl NoncePolicy {
    /// How long past expiry a nonce is remembered (to say "expired" or
    /// "reused" rather than "unknown").
    pub fn grace_ms(&self) -> i64 {
        self.lifetime_ms.max(60_000)
    }
}

/// A fresh random nonce.
pub fn random_nonce() -> Result<[u8; NONCE_LEN], Rejection> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| reject!(StoreUnavailable, "no randomness available; retry"))?;
    Ok(nonce)
}

/// The refusal of a nonce issued to another serial, evicted or long expired.
pub fn unknown_nonce(why: &str) -> Rejection {
    reject!(NonceUnknown, "claim \"eat_nonce\": {why}")
}

/// The refusal of a nonce that was already used.
pub fn reused_nonce() -> Rejection {
    reject!(
        NonceReused,
        "claim \"eat_nonce\": this nonce was already used"
    )
}

/// The refusal of a nonce whose challenge has expired.
pub fn expired_nonce() -> Rejection {
    reject!(
        NonceExpired,
        "claim \"eat_nonce\": the challenge has expired"
    )
}

struct Issued {
    serial: String,
    expires_ms: i64,
    used: bool,
}

#[derive(Default)]
struct State {
    by_nonce: HashMap<[u8; NONCE_LEN], Issued>,
    /// Unused nonces of each serial, oldest first.
    by_serial: HashMap<String, VecDeque<[u8; NONCE_LEN]>>,
    /// Every nonce in issue order; lifetimes are equal, so also expiry order.
    queue: VecDeque<(i64, [u8; NONCE_LEN])>,
}

/// The outstanding nonces.
pub struct NonceCache {
    state: Mutex<State>,
    rng: SystemRandom,
    lifetime_ms: i64,
    /// How long past expiry a nonce is remembered (to say "expired" or
    /// "reused" rather than "unknown").
    grace_ms: i64,
    per_serial: usize,
    total: usize,
}

impl NonceCache {
    /// A cache with the policy's limits.
    pub fn with_policy(p: &NoncePolicy) -> NonceCache {
        NonceCache::new(p.lifetime_ms.max(0) as u64, p.per_serial, p.total)
    }

    /// A cache whose nonces live `lifetime_ms`, at most `per_serial` per serial and `total` in all.
    pub fn new(lifetime_ms: u64, per_serial: usize, total: usize) -> NonceCache {
        NonceCache {
            state: Mutex::new(State::default()),
            rng: SystemRandom::new(),
            lifetime_ms: lifetime_ms.min(i64::MAX as u64 / 4) as i64,
            grace_ms: (lifetime_ms.min(i64::MAX as u64 / 4) as i64).max(60_000),
            per_serial: per_serial.max(1),
            total: total.max(1),
        }
    }

    /// Issues a nonce for `serial`, evicting its oldest if it has too many.
    /// Returns the nonce and its expiry (ms since the epoch).
    pub fn issue(&self, serial: &str, now_ms: i64) -> Result<([u8; NONCE_LEN], i64), Rejection> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| reject!(StoreUnavailable, "no randomness available; retry"))?;
        let expires_ms = now_ms + self.lifetime_ms;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.purge(&mut st, now_ms - self.grace_ms);
        if st.queue.len() >= self.total {
            // Full: forget expired nonces early before refusing anyone.
            self.purge(&mut st, now_ms);
        }
        if st.queue.len() >= self.total {
            return Err(reject!(
                RateLimited,
                "too many outstanding challenges; retry later"
            ));
        }
        let q = st.by_serial.entry(serial.to_owned()).or_default();
        q.push_back(nonce);
        let evicted = if q.len() > self.per_serial {
            q.pop_front()
        } else {
            None
        };
        if let Some(old) = evicted {
            st.by_nonce.remove(&old);
        }
        st.by_nonce.insert(
            nonce,
            Issued {
                serial: serial.to_owned(),
                expires_ms,
                used: false,
            },
        );
        st.queue.push_back((expires_ms, nonce));
        Ok((nonce, expires_ms))
    }

    /// Uses `nonce` for `serial`: it must have been issued to that serial,
    /// be unexpired and unused. A nonce issued to another serial is left as
    /// it was for its rightful owner.
    pub fn consume(&self, nonce: &[u8], serial: &str, now_ms: i64) -> Result<(), Rejection> {
        let Ok(key) = <[u8; NONCE_LEN]>::try_from(nonce) else {
            return Err(reject!(
                NonceUnknown,
                "claim \"eat_nonce\": not a nonce this server issued"
            ));
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.purge(&mut st, now_ms - self.grace_ms);
        let Some(issued) = st.by_nonce.get_mut(&key) else {
            return Err(reject!(
                NonceUnknown,
                "claim \"eat_nonce\": not issued by this server, evicted, or long expired"
            ));
        };
        if issued.serial != serial {
            return Err(reject!(
                NonceUnknown,
                "claim \"eat_nonce\": was not issued for serial {serial}"
            ));
        }
        if issued.used {
            return Err(reject!(
                NonceReused,
                "claim \"eat_nonce\": this nonce was already used"
            ));
        }
        if now_ms > issued.expires_ms {
            return Err(reject!(
                NonceExpired,
                "claim \"eat_nonce\": the challenge has expired"
            ));
        }
        issued.used = true;
        if let Some(q) = st.by_serial.get_mut(serial) {
            q.retain(|n| *n != key);
            if q.is_empty() {
                st.by_serial.remove(serial);
            }
        }
        Ok(())
    }

    /// Forgets nonces that expired before `cutoff_ms`. Expired nonces are
    /// kept for a grace period so that late use is reported as expired or
    /// reused, not unknown.
    fn purge(&self, st: &mut State, cutoff_ms: i64) {
        while let Some(&(expires, n)) = st.queue.front() {
            if expires >= cutoff_ms {
                break;
            }
            st.queue.pop_front();
            if let Some(issued) = st.by_nonce.remove(&n) {
                if let Some(q) = st.by_serial.get_mut(&issued.serial) {
                    q.retain(|x| *x != n);
                    if q.is_empty() {
                        st.by_serial.remove(&issued.serial);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestd_core::Reason;

    #[test]
    fn single_use_expiring_bound_per_serial() {
        let c = NonceCache::new(1000, 2, 100);
        let (a, exp) = c.issue("s1", 0).unwrap();
        assert_eq!(exp, 1000);
        assert_eq!(
            c.consume(&a, "s2", 1).unwrap_err().reason,
            Reason::NonceUnknown
        );
        c.consume(&a, "s1", 1).unwrap();
        assert_eq!(
            c.consume(&a, "s1", 2).unwrap_err().reason,
            Reason::NonceReused
        );
        let (b, _) = c.issue("s1", 10).unwrap();
        assert_eq!(
            c.consume(&b, "s1", 1011).unwrap_err().reason,
            Reason::NonceExpired
        );
        // Oldest evicted beyond two outstanding.
        let (x, _) = c.issue("s1", 20).unwrap();
        let (y, _) = c.issue("s1", 21).unwrap();
        let (z, _) = c.issue("s1", 22).unwrap();
        let _ = (y, z);
        assert_eq!(
            c.consume(&x, "s1", 23).unwrap_err().reason,
            Reason::NonceUnknown
        );
        c.consume(&z, "s1", 24).unwrap();
        // Recently expired nonces are reported as expired, long expired ones forgotten.
        assert_eq!(
            c.consume(&y, "s1", 5000).unwrap_err().reason,
            Reason::NonceExpired
        );
        assert_eq!(
            c.consume(&y, "s1", 70_000).unwrap_err().reason,
            Reason::NonceUnknown
        );
        assert_eq!(
            c.consume(&[1, 2, 3], "s1", 0).unwrap_err().reason,
            Reason::NonceUnknown
        );
    }

    #[test]
    fn total_bound_rate_limits() {
        let c = NonceCache::new(1000, 4, 3);
        for i in 0..3 {
            c.issue(&format!("s{i}"), 0).unwrap();
        }
        assert_eq!(c.issue("s9", 0).unwrap_err().reason, Reason::RateLimited);
        // Once the old ones have expired there is room again.
        c.issue("s9", 1001).unwrap();
    }
}
