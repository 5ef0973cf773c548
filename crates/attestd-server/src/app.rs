//! State shared by every service, and the helpers that keep handlers short.

use std::sync::Arc;

use attestd_core::{reject, Rejection};
use attestd_store::Store;
use tonic::Status;

use crate::auth::Principal;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::security::SecurityEvents;
use crate::settings::Limits;
use crate::status::{store_rejection, to_status};
use crate::verdict::BaselineCache;
use attestd_core::baseline::TrustRoot;

/// What every handler shares: the store, the clock, the limits, the metrics and the per-process
/// tallies.
pub struct App {
    /// Where every write goes and every read comes from.
    pub store: Arc<dyn Store>,
    /// The server's Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Rejections worth an operator's attention, logged and counted.
    pub security: SecurityEvents,
    /// The time the rules see (the system clock, or a test clock).
    pub clock: Arc<dyn Clock>,
    /// The `[limits]` of the configuration.
    pub limits: Limits,
    /// Release keys and threshold for baselines.
    pub trust_root: TrustRoot,
    /// Limits on unauthenticated calls per peer address and per serial.
    pub peer_limit: Arc<crate::ratelimit::Buckets>,
    /// Limits on unauthenticated calls per claimed serial.
    pub serial_limit: crate::ratelimit::Buckets,
    /// Refusals at the edge, summarized into the audit chain per interval.
    pub auth_failures: Arc<crate::security::CallerTally>,
    /// Release checks of serials that are not enrolled, per principal: not
    /// stored one by one, summarized into the audit chain per interval.
    pub unknown_serials: Arc<crate::security::CallerTally>,
    /// Parsed baselines, so a decision does not parse the active one again.
    pub baselines: BaselineCache,
    /// Wakes the re-appraisal job after a write that created work for it.
    pub work: tokio::sync::Notify,
    /// This process among the replicas sharing a store (leases of jobs).
    pub replica: String,
    /// Set when the server starts draining (SIGTERM): open streams end,
    /// telling their callers to reconnect.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// The key that signs result tokens (EAR), once the binary set one.
    pub result_keys: std::sync::OnceLock<Arc<crate::results::ResultKeys>>,
}

impl App {
    /// Seconds now, for a result token's `iat`.
    pub fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// Turns a rejection into the status sent back, counting it. The call's
    /// one log line (request id, method, peer, principal, code, reason) is
    /// written by [`crate::observe`] when the status goes out; here only
    /// what the status does not say, at debug.
    pub fn fail(&self, r: Rejection) -> Status {
        // The call's one log line (method, principal, reason, message) is
        // written by `observe` when the status goes out.
        self.metrics.count_rejection(r.reason);
        to_status(&r)
    }

    /// The store error as a rejection.
    pub fn store_err(&self, e: attestd_store::StoreError) -> Rejection {
        store_rejection(e)
    }

    /// Runs CPU-bound work (decoding, verifying signatures) on the
    /// runtime's blocking pool, so that the threads that move requests and
    /// streams never wait on it.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, Rejection>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<App>) -> Result<T, Rejection> + Send + 'static,
    {
        let app = self.clone();
        match tokio::task::spawn_blocking(move || f(&app)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => {
                tracing::error!(error = %e, "a request panicked on the blocking pool");
                Err(reject!(
                    StoreUnavailable,
                    "the request failed inside the server; retry (the failure is logged)"
                ))
            }
            Err(_) => Err(reject!(ShuttingDown, "the server is shutting down; retry")),
        }
    }

    /// Answers a unary call that only reads: `f` gets the request; a
    /// refusal is counted, logged and turned into its status.
    pub async fn answer<R, T>(
        self: &Arc<Self>,
        req: tonic::Request<R>,
        f: impl AsyncFnOnce(&Arc<App>, R) -> Result<T, Rejection>,
    ) -> Result<tonic::Response<T>, Status> {
        let req = req.into_inner();
        f(self, req)
            .await
            .map(tonic::Response::new)
            .map_err(|r| self.fail(r))
    }

    /// As [`App::answer`], for a handler that acts as its caller: the
    /// principal the edge layer authenticated (refused if missing: a route
    /// wired without the layer fails closed).
    pub async fn answer_as<R, T>(
        &self,
        req: tonic::Request<R>,
        f: impl AsyncFnOnce(Arc<Principal>, R) -> Result<T, Rejection>,
    ) -> Result<tonic::Response<T>, Status> {
        let run = async {
            let caller = principal(&req)?;
            f(caller, req.into_inner()).await
        };
        run.await
            .map(tonic::Response::new)
            .map_err(|r| self.fail(r))
    }

    /// How challenge nonces live and how many may be outstanding.
    pub fn nonce_policy(&self) -> attestd_store::nonces::NoncePolicy {
        attestd_store::nonces::NoncePolicy {
            lifetime_ms: self.limits.nonce_lifetime_ms.min(i64::MAX as u64 / 4) as i64,
            per_serial: self.limits.max_nonces_per_serial.max(1),
            total: self.limits.max_nonces_total.max(1),
        }
    }

    /// Whether this replica holds (takes or renews) the lease on a job that
    /// must run once across replicas; it holds it for `ttl_ms` more. A
    /// failure to ask counts as not holding it.
    pub async fn holds(&self, job: &str, ttl_ms: i64) -> bool {
        match self
            .store
            .lease(job, &self.replica, ttl_ms, self.clock.now_ms())
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job, error = %e, "could not take the lease of a job");
                false
            }
        }
    }

    /// Validates a page size: 0 means the default; larger than the maximum is capped.
    pub fn page_size(&self, requested: i32) -> Result<usize, Rejection> {
        match requested {
            n if n < 0 => Err(reject!(FieldInvalid, "page_size: must not be negative")),
            0 => Ok(self.limits.default_page_size),
            n => Ok((n as usize).min(self.limits.max_page_size)),
        }
    }
}

/// The principal the edge layer authenticated for this request. Fails
/// closed if it is missing (a route wired without the layer).
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Arc<Principal>, Rejection> {
    req.extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| {
            reject!(
                NoCredentials,
                "this call needs an authorization: Bearer token"
            )
        })
}

/// An empty page token means "from the start".
pub fn page_token(t: &str) -> Option<&str> {
    (!t.is_empty()).then_some(t)
}
