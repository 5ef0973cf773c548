//! The tower layer in front of every service: authorizes each call from the
//! matrix in [`crate::auth`] before the request body is read, puts the
//! principal into the request extensions for the handlers, and turns
//! tonic's own "message too large" refusal into RESOURCE_EXHAUSTED with
//! reason TOO_LARGE, as api.md promises.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use attestd_core::{reject, Rejection};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::status::to_status;

#[derive(Clone)]
pub struct EdgeLayer {
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    /// Refusals, summarized into the audit chain per interval.
    pub failures: Arc<crate::security::AuthFailures>,
    pub max_request_bytes: usize,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

fn refuse<E>(r: Rejection, path: &str, metrics: &Metrics) -> BoxFuture<http::Response<Body>, E>
where
    E: Send + 'static,
{
    metrics.count_rejection(r.reason);
    tracing::warn!(method = path, reason = r.reason.as_str(), message = %r.message, "call refused");
    let resp = to_status(&r).into_http::<Body>();
    Box::pin(async move { Ok(resp) })
}

impl<S, B> Service<http::Request<B>> for Edge<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<http::Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let peer = req.extensions().get::<crate::tls::PeerInfo>();
        let cert = peer.and_then(|p| p.client_cert.clone());
        let remote = peer.and_then(|p| p.remote);
        match self.layer.auth.authorize(&path, header, cert.as_deref()) {
            Ok(Some(principal)) => {
                req.extensions_mut().insert(principal);
            }
            Ok(None) => {}
            Err(r) => {
                // Who failed: the principal if the token was known, else the peer.
                let who = match r.reason {
                    attestd_core::Reason::RoleForbidden => self
                        .layer
                        .auth
                        .authenticate(header, cert.as_deref())
                        .map(|p| format!("principal {}", p.name))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let who = if who.is_empty() {
                    let peer = remote
                        .map(|a| a.ip().to_string())
                        .unwrap_or_else(|| "unknown".into());
                    format!("peer {peer}")
                } else {
                    who
                };
                self.layer.failures.note(&who);
                return refuse(r, &path, &self.layer.metrics);
            }
        }
        let fut = self.inner.call(req);
        let metrics = self.layer.metrics.clone();
        let limit = self.layer.max_request_bytes;
        Box::pin(async move {
            let mut resp = fut.await?;
            // tonic refuses an over-long message with OUT_OF_RANGE before
            // reading it; no attestd handler returns OUT_OF_RANGE itself.
            if resp
                .headers()
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == b"11")
            {
                let r = reject!(TooLarge, "request exceeds the limit of {limit} bytes");
                metrics.count_rejection(r.reason);
                tracing::warn!(method = %path, reason = r.reason.as_str(), "call refused");
                let headers = resp.headers_mut();
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                let _ = to_status(&r).add_header(headers);
            }
            Ok(resp)
        })
    }
}
