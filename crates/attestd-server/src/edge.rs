//! The tower layer in front of every service: authorizes each call from the
//! matrix in [`crate::auth`] before the request body is read, puts the
//! principal into the request extensions for the handlers (and tells the
//! call's [`crate::observe::Call`] who it is), and turns tonic's own
//! "message too large" refusal into RESOURCE_EXHAUSTED with reason
//! TOO_LARGE, as docs/api.md promises. Refusals are counted here and logged
//! once, with the rest of the call, by [`crate::observe`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use attestd_core::{reject, Rejection};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::auth::SharedAuth;
use crate::metrics::Metrics;
use crate::status::to_status;

/// The layer that builds [`Edge`] around a service.
#[derive(Clone)]
pub struct EdgeLayer {
    /// The principals in force.
    pub auth: SharedAuth,
    /// Counts refusals.
    pub metrics: Arc<Metrics>,
    /// Refusals, summarized into the audit chain per interval.
    pub failures: Arc<crate::security::CallerTally>,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// The per-peer limit of the public (unauthenticated) routes, taken
    /// before the request is read, so that malformed requests count too.
    pub peer_limit: Arc<crate::ratelimit::Buckets>,
    /// The clock of the rate limits.
    pub clock: Arc<dyn crate::clock::Clock>,
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

/// The edge service: authorizes the call, then passes it to `inner`.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Answers a refused call: a gRPC status to a gRPC client, an HTTP status
/// with a JSON body ([`crate::rest`]) to anything else.
fn refuse<E>(r: Rejection, metrics: &Metrics, grpc: bool) -> BoxFuture<http::Response<Body>, E>
where
    E: Send + 'static,
{
    metrics.count_rejection(r.reason);
    let resp = if grpc {
        to_status(&r).into_http::<Body>()
    } else {
        crate::rest::refusal(&r).map(Body::new)
    };
    Box::pin(async move { Ok(resp) })
}

/// The public routes whose calls are limited per peer (devices).
const DEVICE_ROUTES: &str = "/attestd.v1.DeviceAttestation/";

/// The detail of tonic's "failed to decode Protobuf message" answer, if
/// that is what `headers` carry (attestd itself never answers INTERNAL).
fn decode_failure(headers: &http::HeaderMap) -> Option<String> {
    const PREFIX: &str = "failed to decode Protobuf message";
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"13") {
        return None;
    }
    let message = headers.get("grpc-message")?.as_bytes();
    // grpc-message is percent-encoded (RFC 3986 style, as tonic writes it).
    let text = percent_encoding::percent_decode(message).decode_utf8_lossy();
    let detail = text.strip_prefix(PREFIX)?;
    Some(
        detail
            .trim_start_matches([':', ' '])
            .chars()
            .take(200)
            .collect(),
    )
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
        let grpc = crate::rest::is_grpc(req.headers());
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let call = req.extensions().get::<crate::observe::Call>().cloned();
        let identify = |who: &str| {
            if let Some(c) = &call {
                c.set_principal(who);
            }
        };
        let peer = req.extensions().get::<crate::tls::PeerInfo>();
        let cert = peer.and_then(|p| p.client_cert.clone());
        let remote = peer.and_then(|p| p.remote);
        // Requests not over TCP (in-process) have no peer address; they
        // share one rate-limit bucket.
        let peer_ip = remote.map(|a| a.ip().to_string()).unwrap_or_default();
        let peer_label = || {
            let ip = if peer_ip.is_empty() {
                "unknown"
            } else {
                &peer_ip
            };
            format!("peer {ip}")
        };
        let auth = self.layer.auth.current();
        match auth.authorize(&path, header, cert.as_deref()) {
            Ok(Some(principal)) => {
                identify(&principal.name);
                req.extensions_mut().insert(principal);
            }
            // A device route: limited per peer address before it is read.
            Ok(None) => {
                identify(crate::observe::ANONYMOUS);
                if path.starts_with(DEVICE_ROUTES) {
                    let now = self.layer.clock.now_ms();
                    if let Err(r) = self.layer.peer_limit.take(&peer_ip, now) {
                        return refuse(r, &self.layer.metrics, grpc);
                    }
                }
            }
            Err(r) => {
                // Who failed: the principal if the token was known, else the peer.
                let known = match r.reason {
                    attestd_core::Reason::RoleForbidden => {
                        auth.authenticate(header, cert.as_deref()).ok()
                    }
                    _ => None,
                };
                let who = match &known {
                    Some(p) => {
                        identify(&p.name);
                        format!("principal {}", p.name)
                    }
                    None => {
                        identify(if header.is_some() || cert.is_some() {
                            crate::observe::UNAUTHENTICATED
                        } else {
                            crate::observe::ANONYMOUS
                        });
                        peer_label()
                    }
                };
                self.layer.failures.note(&who);
                return refuse(r, &self.layer.metrics, grpc);
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
                let headers = resp.headers_mut();
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                let _ = to_status(&r).add_header(headers);
            } else if let Some(detail) = decode_failure(resp.headers()) {
                // tonic answers a body that is not the method's protobuf
                // message with INTERNAL; it is the caller's error.
                let r = reject!(
                    MalformedMessage,
                    "the request is not a valid protobuf message for {path}: {detail}"
                );
                metrics.count_rejection(r.reason);
                let headers = resp.headers_mut();
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                let _ = to_status(&r).add_header(headers);
            }
            Ok(resp)
        })
    }
}
