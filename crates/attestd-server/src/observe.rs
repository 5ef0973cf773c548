//! Every call, observed once, in front of the edge layer:
//!
//! - a request id: the caller's `x-request-id` when it is sane (1 to 128
//!   visible ASCII characters), else a new one; returned in the response
//!   metadata `x-request-id`, success or refusal;
//! - a tracing span `rpc` (method, request id, peer, principal) that the
//!   edge layer's and the handler's logs inherit, and that OpenTelemetry
//!   exports when the binary turns export on ([`export_spans`]);
//! - the RPC metrics: latency by method, calls by method and gRPC code;
//! - one log line for each call that ends with an error status, naming the
//!   request id, method, peer, principal, status code and reason (the
//!   `Reason` of the `ErrorInfo`, `NONE` for a status without one). Never
//!   a token, a key or evidence: the line is built from the path, the peer
//!   address, the principal's name and the status the client also gets.
//!
//! A call ends when its status is known: in the response headers for a
//! refusal (trailers-only), else in the trailers at the end of the response
//! body, streams included. A body dropped before its end (the client went
//! away) ends the call as CANCELLED, which is counted but not logged as a
//! refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::metrics::{code_name, Metrics, Rpc};

/// The metadata key of the request id, in requests and responses.
pub const REQUEST_ID: &str = "x-request-id";
/// The longest request id taken from a caller.
pub const MAX_REQUEST_ID: usize = 128;
/// The principal of a call that presented no credentials (devices, health).
pub const ANONYMOUS: &str = "anonymous";
/// The principal of a call whose credentials were not recognised.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// Longest method path and status message put into a log line.
const MAX_LOGGED: usize = 200;

static EXPORT_SPANS: AtomicBool = AtomicBool::new(false);

/// Gives request spans the fields OpenTelemetry reads (`otel.name` = the
/// method, `otel.kind`, the gRPC status). The binary turns this on when it
/// exports traces; process-wide, like the tracing subscriber it serves.
/// Off, the spans carry only what logs need.
pub fn export_spans(on: bool) {
    EXPORT_SPANS.store(on, Relaxed);
}

/// What the layers learn about one call, shared through the request's
/// extensions: the edge layer records who the caller is.
#[derive(Clone, Debug)]
pub struct Call(Arc<CallState>);

#[derive(Debug)]
struct CallState {
    request_id: String,
    span: Span,
    principal: OnceLock<String>,
}

impl Call {
    /// The call's request id (the caller's `x-request-id`, or one made up).
    pub fn request_id(&self) -> &str {
        &self.0.request_id
    }

    /// Records the caller: a principal's name, [`ANONYMOUS`] or
    /// [`UNAUTHENTICATED`]. The first answer stands.
    pub fn set_principal(&self, who: &str) {
        if self.0.principal.set(who.to_owned()).is_ok() {
            self.0.span.record("principal", who);
        }
    }

    /// The caller as recorded so far; [`ANONYMOUS`] until it is known.
    pub fn principal(&self) -> &str {
        self.0.principal.get().map_or(ANONYMOUS, String::as_str)
    }
}

/// The caller's request id, if it is sane: 1 to [`MAX_REQUEST_ID`] visible
/// ASCII characters (no spaces or control characters).
pub fn sane_request_id(v: &[u8]) -> Option<&str> {
    if v.is_empty() || v.len() > MAX_REQUEST_ID || !v.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// A new request id: 128 random bits in hex.
fn new_request_id() -> String {
    use ring::rand::SecureRandom;
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut r = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut r).is_err() {
        // Ids need to be distinct, not secret.
        let n = FALLBACK.fetch_add(1, Relaxed);
        r[..8].copy_from_slice(&n.to_be_bytes());
        r[8..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    }
    attestd_core::ids::hex(&r)
}

fn bounded(s: &str) -> &str {
    match s.char_indices().nth(MAX_LOGGED) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn request_span(method: &str, request_id: &str, peer: &str) -> Span {
    if EXPORT_SPANS.load(Relaxed) {
        tracing::info_span!(
            "rpc",
            method,
            request_id,
            peer,
            principal = Empty,
            otel.name = method.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.grpc.status_code = Empty,
        )
    } else {
        tracing::info_span!("rpc", method, request_id, peer, principal = Empty)
    }
}

/// The layer; put it outside the edge layer, so that it sees the edge
/// layer's refusals too.
#[derive(Clone)]
pub struct ObserveLayer {
    /// Where the layer records durations and status codes.
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The observing service: request id, span, metrics and the refusal log line around `inner`.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Observe<S>
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
        let start = Instant::now();
        let path = req.uri().path();
        // An HTTP/JSON route is counted as the gRPC method it calls, and
        // logged by its pattern (no serials in metric labels).
        let rest = crate::rest::route_for(path);
        let rpc = self.metrics.rpc(rest.map_or(path, |r| r.rpc));
        let method = match rest {
            Some(r) => format!("{} {}", r.method, r.path),
            None => bounded(path).to_owned(),
        };
        let peer = req
            .extensions()
            .get::<crate::tls::PeerInfo>()
            .and_then(|p| p.remote)
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| sane_request_id(v.as_bytes()))
            .map_or_else(new_request_id, str::to_owned);
        let span = request_span(&method, &request_id, &peer);
        let call = Call(Arc::new(CallState {
            request_id,
            span: span.clone(),
            principal: OnceLock::new(),
        }));
        req.extensions_mut().insert(call.clone());
        let fut = span.in_scope(|| self.inner.call(req));
        let ending = Ending {
            call,
            method,
            peer,
            rpc,
            start,
            metrics: self.metrics.clone(),
        };
        Box::pin(
            async move {
                let resp = fut.await?;
                let (mut parts, body) = resp.into_parts();
                if let Ok(v) = HeaderValue::from_str(ending.call.request_id()) {
                    parts.headers.insert(REQUEST_ID, v);
                }
                // An HTTP answer says how it ended in its extensions.
                match parts.extensions.remove::<crate::rest::HttpOutcome>() {
                    Some(crate::rest::HttpOutcome::Done(status)) => {
                        match status {
                            Some(s) => ending.finish(s.code(), Some(&s)),
                            None => ending.finish(Code::Ok, None),
                        }
                        return Ok(http::Response::from_parts(parts, body));
                    }
                    Some(crate::rest::HttpOutcome::Stream(ended)) => {
                        let body = Body::new(Watched {
                            inner: body,
                            ending: Some(ending),
                            http_stream: Some(ended),
                        });
                        return Ok(http::Response::from_parts(parts, body));
                    }
                    None => {}
                }
                // A refusal carries its status in the headers (trailers-only).
                if parts.headers.contains_key("grpc-status") {
                    ending.end(&parts.headers);
                    return Ok(http::Response::from_parts(parts, body));
                }
                let body = Body::new(Watched {
                    inner: body,
                    ending: Some(ending),
                    http_stream: None,
                });
                Ok(http::Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}

/// What is needed to close a call's books.
struct Ending {
    call: Call,
    method: String,
    peer: String,
    rpc: Rpc,
    start: Instant,
    metrics: Arc<Metrics>,
}

impl Ending {
    /// The call ended with the status in `headers` (the trailers, or the
    /// headers of a trailers-only answer).
    fn end(self, headers: &HeaderMap) {
        match tonic::Status::from_header_map(headers) {
            Some(status) => self.finish(status.code(), Some(&status)),
            None => self.finish(Code::Unknown, None),
        }
    }

    fn finish(self, code: Code, status: Option<&tonic::Status>) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.metrics.observe_rpc(self.rpc, code, seconds);
        let span = &self.call.0.span;
        if EXPORT_SPANS.load(Relaxed) {
            span.record("rpc.grpc.status_code", code as i32);
            // OpenTelemetry's RPC conventions: a server span is an error
            // only when the server failed, not when it refused a caller.
            if matches!(
                code,
                Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::Unavailable
                    | Code::DataLoss
            ) {
                span.record("otel.status_code", "ERROR");
            }
        }
        if code == Code::Ok {
            return;
        }
        let reason = status.and_then(crate::status::reason_of);
        let reason = reason.as_deref().unwrap_or("NONE");
        let detail = status.map_or("", |s| bounded(s.message()));
        let principal = self.call.principal();
        let elapsed_ms = (seconds * 1000.0) as u64;
        macro_rules! refused {
            ($level:ident, $what:literal) => {
                span.in_scope(|| {
                    tracing::$level!(
                        request_id = self.call.request_id(),
                        method = %self.method,
                        peer = %self.peer,
                        principal,
                        code = code_name(code),
                        reason,
                        detail,
                        elapsed_ms,
                        $what
                    )
                })
            };
        }
        match code {
            // The client went away: nothing was refused.
            Code::Cancelled => refused!(debug, "call cancelled"),
            // Who may not call, or may not call this much, and failures on
            // the server's side: what an operator watches.
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::Unavailable
            | Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::DeadlineExceeded => refused!(warn, "call refused"),
            // The caller's own mistakes, answered as documented.
            _ => refused!(info, "call refused"),
        }
    }
}

/// A response body watched to its end.
struct Watched {
    inner: Body,
    ending: Option<Ending>,
    /// An HTTP stream (no trailers): how it ended, set by its writer.
    http_stream: Option<Arc<OnceLock<tonic::Status>>>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(e) = self.ending.take() {
                        e.end(trailers);
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(e) = self.ending.take() {
                    e.finish(status.code(), Some(status));
                }
            }
            Poll::Ready(None) => {
                if let Some(e) = self.ending.take() {
                    match self.http_stream.as_ref().map(|s| s.get()) {
                        // An HTTP stream that ended as its writer says.
                        Some(Some(status)) => e.finish(status.code(), Some(status)),
                        Some(None) => e.finish(Code::Ok, None),
                        // A gRPC answer ends with trailers; one without is broken.
                        None => e.finish(Code::Unknown, None),
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(e) = self.ending.take() {
            e.finish(Code::Cancelled, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_taken_only_when_it_is_sane() {
        assert_eq!(sane_request_id(b"abc-123_X.y:z"), Some("abc-123_X.y:z"));
        assert_eq!(
            sane_request_id(b"550e8400-e29b-41d4-a716-446655440000"),
            Some("550e8400-e29b-41d4-a716-446655440000")
        );
        assert_eq!(
            sane_request_id(&[b'a'; MAX_REQUEST_ID]).map(str::len),
            Some(128)
        );
        for bad in [
            &b""[..],
            &[b'a'; MAX_REQUEST_ID + 1],
            b"has space",
            b"tab\there",
            b"new\nline",
            "caf\u{e9}".as_bytes(),
            b"\x7f",
        ] {
            assert_eq!(sane_request_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn new_request_ids_are_distinct_and_sane() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(sane_request_id(a.as_bytes()), Some(a.as_str()));
    }
}
