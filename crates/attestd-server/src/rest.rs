//! The HTTP/JSON API beside gRPC, on the same port: the read side and the
//! release gate for systems that do not speak gRPC (a CMMS, a SIEM, the
//! dashboard, scripts).
//!
//! Every route in [`REST_ROUTES`] stands for one gRPC method and is served
//! by calling that method's handler in-process, so there is one
//! implementation of each answer and one authorization matrix: the edge
//! layer resolves the HTTP path to its gRPC method ([`route_for`]) and
//! authorizes that, with the same principals, roles and tenant scope.
//! Requests and answers are the protobuf JSON mapping of the method's
//! messages (pbjson: lowerCamelCase names, enums by name, 64-bit integers
//! and bytes as strings, timestamps in RFC 3339; answers write every field,
//! at its default value too, and leave out only unset messages).
//! GET routes take the request's fields from the path and the query
//! string, POST routes from a JSON body. Refusals carry the gRPC code's
//! HTTP status and a JSON body with the same code, reason and message.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use attestd_core::{reject, Reason, Rejection};
use attestd_proto::v1 as pb;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{header, HeaderValue, StatusCode};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use crate::auth::Principal;
use crate::service::audit::AuditService;
use crate::service::fleet::FleetService;
use crate::service::release::ReleaseService;

use pb::audit_server::Audit as _;
use pb::fleet_server::Fleet as _;
use pb::release_server::Release as _;

/// How a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One JSON object.
    Unary,
    /// A server-sent event stream (`text/event-stream`), one event per
    /// message of the gRPC stream.
    Events,
    /// JSON lines (`application/x-ndjson`), one line per message.
    Lines,
}

/// One HTTP route and the gRPC method it stands for.
#[derive(Debug)]
pub struct RestRoute {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, with `{name}` for a request field taken from the path (by
    /// its JSON name).
    pub path: &'static str,
    /// The gRPC method path; its access rule in [`crate::auth::ROUTES`] is
    /// this route's.
    pub rpc: &'static str,
    /// Whether the route answers one object or a stream of them.
    pub shape: Shape,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    rpc: &'static str,
    shape: Shape,
    summary: &'static str,
) -> RestRoute {
    RestRoute {
        method,
        path,
        rpc,
        shape,
        summary,
    }
}

/// Every route of the HTTP/JSON API.
#[rustfmt::skip]
pub const REST_ROUTES: &[RestRoute] = &[
    route("GET", "/v1/fleet/summary", "/attestd.v1.Fleet/GetFleetSummary", Shape::Unary,
        "Unit counts by status, optionally grouped by model, site or firmware"),
    route("GET", "/v1/fleet/watch", "/attestd.v1.Fleet/WatchFleet", Shape::Events,
        "Status changes as they commit, as server-sent events (id = cursor)"),
    route("GET", "/v1/devices", "/attestd.v1.Fleet/ListDevices", Shape::Unary,
        "Units matching a filter, a page at a time"),
    route("GET", "/v1/devices/{serial}", "/attestd.v1.Fleet/GetDevice", Shape::Unary,
        "One unit: status, verdict with every reason, firmware, calibration"),
    route("GET", "/v1/devices/{serial}/history", "/attestd.v1.Fleet/ListDeviceHistory", Shape::Unary,
        "A unit's evidence, records, re-appraisals and release decisions, in the order they were accepted"),
    route("GET", "/v1/evidence/{evidenceId}", "/attestd.v1.Fleet/GetEvidence", Shape::Unary,
        "One stored evidence, as received"),
    route("POST", "/v1/release/check", "/attestd.v1.Release/CheckRelease", Shape::Unary,
        "The release gate for one unit (the decision is recorded)"),
    route("POST", "/v1/release/check-batch", "/attestd.v1.Release/CheckReleaseBatch", Shape::Unary,
        "The release gate for several units"),
    route("GET", "/v1/result-keys", "/attestd.v1.Release/GetResultKeys", Shape::Unary,
        "The public keys of signed results (also /.well-known/jwks.json)"),
    route("GET", "/v1/audit/head", "/attestd.v1.Audit/GetAuditHead", Shape::Unary,
        "The audit chain's head and latest signed checkpoint"),
    route("GET", "/v1/audit/events", "/attestd.v1.Audit/ListAuditEvents", Shape::Unary,
        "Audit entries after a sequence number"),
    route("GET", "/v1/audit/export", "/attestd.v1.Audit/ExportAudit", Shape::Lines,
        "A range of the audit chain with its checkpoints, as JSON lines"),
];

/// The route whose path pattern matches `path`, if any.
pub fn route_for(path: &str) -> Option<&'static RestRoute> {
    if !path.starts_with("/v1/") {
        return None;
    }
    REST_ROUTES.iter().find(|r| pattern_matches(r.path, path))
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Whether a request is gRPC (by its content type); anything else on this
/// port is answered as HTTP.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Put into a response's extensions by this module: how the call ended,
/// for the call's log line and metrics ([`crate::observe`]), which
/// otherwise read the gRPC status from headers and trailers.
#[derive(Clone, Debug)]
pub enum HttpOutcome {
    /// A whole answer: OK, or the refusal it carries.
    Done(Option<Status>),
    /// A stream: the task writing it sets how it ended (unset: OK); the
    /// call is closed when the body ends.
    Stream(Arc<OnceLock<Status>>),
}

/// The HTTP status of a gRPC code (as Google's API guidelines map them).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of a refusal: `{"code", "reason", "message"}`.
pub fn error_json(status: &Status) -> Value {
    let reason = crate::status::reason_of(status).unwrap_or_default();
    serde_json::json!({
        "code": crate::metrics::code_name(status.code()),
        "reason": reason,
        "message": status.message(),
    })
}

/// A refusal as an HTTP response (a request too large is 413, whatever
/// its gRPC code).
pub fn status_response(status: Status) -> Response {
    let mut code = http_status(status.code());
    if crate::status::reason_of(&status).as_deref() == Some(Reason::TooLarge.as_str()) {
        code = StatusCode::PAYLOAD_TOO_LARGE;
    }
    let body = error_json(&status).to_string();
    let mut resp = (code, json_headers(), body).into_response();
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"attestd\""),
        );
    }
    resp.extensions_mut()
        .insert(HttpOutcome::Done(Some(status)));
    resp
}

/// A rejection as an HTTP response.
pub fn refusal(r: &Rejection) -> Response {
    status_response(crate::status::to_status(r))
}

fn json_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

fn json_response<T: Serialize>(msg: &T) -> Response {
    match serde_json::to_string(msg) {
        Ok(body) => {
            let mut resp = (StatusCode::OK, json_headers(), body).into_response();
            resp.extensions_mut().insert(HttpOutcome::Done(None));
            resp
        }
        // pbjson serializes every message of the API; should it ever fail,
        // the caller learns it and nothing half-written is sent.
        Err(e) => status_response(Status::internal(format!("encoding the answer: {e}"))),
    }
}

/// The services the routes call.
pub struct Services {
    /// The `Fleet` service.
    pub fleet: FleetService,
    /// The `Release` service.
    pub release: ReleaseService,
    /// The `Audit` service.
    pub audit: AuditService,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
}

type St = State<Arc<Services>>;

/// The router of [`REST_ROUTES`]: each route's path and HTTP method come
/// from the table, its handler from [`handler`] (a test checks that every
/// route has one).
pub fn router(services: Arc<Services>) -> axum::Router {
    let mut router = axum::Router::new();
    for r in REST_ROUTES {
        let Some(h) = handler(r) else {
            continue;
        };
        router = router.route(r.path, h);
    }
    router
        .method_not_allowed_fallback(|| async {
            let mut r = refusal(&reject!(
                FieldInvalid,
                "this route does not take that HTTP method (see /openapi.json)"
            ));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .with_state(services)
}

/// The handler of a route: the gRPC method it calls, by its path.
fn handler(route: &RestRoute) -> Option<axum::routing::MethodRouter<Arc<Services>>> {
    // A unary route: decode, call `$svc.$call`, answer JSON.
    macro_rules! unary {
        ($svc:ident . $call:ident) => {{
            let rpc = route.rpc;
            move |State(s): St, r: Request| {
                unary(s, r, rpc, |s, q| async move { s.$svc.$call(q).await })
            }
        }};
    }
    // The route's HTTP method from the table.
    macro_rules! method {
        ($h:expr) => {
            match route.method {
                "GET" => get($h),
                "POST" => post($h),
                _ => return None,
            }
        };
    }
    Some(match route.rpc {
        "/attestd.v1.Fleet/GetFleetSummary" => method!(unary!(fleet.get_fleet_summary)),
        "/attestd.v1.Fleet/WatchFleet" => method!(|State(s): St, r: Request| watch(s, r)),
        "/attestd.v1.Fleet/ListDevices" => method!(unary!(fleet.list_devices)),
        "/attestd.v1.Fleet/GetDevice" => method!(unary!(fleet.get_device)),
        "/attestd.v1.Fleet/ListDeviceHistory" => method!(unary!(fleet.list_device_history)),
        "/attestd.v1.Fleet/GetEvidence" => method!(unary!(fleet.get_evidence)),
        "/attestd.v1.Release/CheckRelease" => method!(unary!(release.check_release)),
        "/attestd.v1.Release/CheckReleaseBatch" => method!(unary!(release.check_release_batch)),
        "/attestd.v1.Release/GetResultKeys" => method!(unary!(release.get_result_keys)),
        "/attestd.v1.Audit/GetAuditHead" => method!(unary!(audit.get_audit_head)),
        "/attestd.v1.Audit/ListAuditEvents" => method!(unary!(audit.list_audit_events)),
        "/attestd.v1.Audit/ExportAudit" => method!(|State(s): St, r: Request| export(s, r)),
        _ => return None,
    })
}

/// Calls a unary gRPC handler with the request decoded from `req` and
/// answers its message as JSON.
async fn unary<Req, Resp, F, Fut>(
    s: Arc<Services>,
    req: Request,
    rpc: &'static str,
    call: F,
) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Arc<Services>, tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let limit = s.max_request_bytes;
    let req = match decode::<Req>(req, rpc, limit).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match call(s, req).await {
        Ok(r) => json_response(r.get_ref()),
        Err(status) => status_response(status),
    }
}

/// How often an idle event stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/fleet/watch`: WatchFleet as server-sent events.
async fn watch(s: Arc<Services>, req: Request) -> Response {
    let rpc = "/attestd.v1.Fleet/WatchFleet";
    // A client that reconnects by itself (EventSource) says where it was
    // with Last-Event-ID; afterCursor, when given, wins.
    let last_event = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut req = match decode::<pb::WatchFleetRequest>(req, rpc, s.max_request_bytes).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.get_ref().after_cursor.is_empty() {
        if let Some(id) = last_event {
            req.get_mut().after_cursor = id;
        }
    }
    let answer = match s.fleet.watch_fleet(req).await {
        Ok(r) => r,
        Err(status) => return status_response(status),
    };
    // The cursor the watch starts after (as gRPC's attestd-cursor): a
    // client that started from "now" can resume from it without a gap.
    let start = answer
        .metadata()
        .get(crate::service::fleet::CURSOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(v).ok());
    let mut changes = answer.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let ended = Arc::new(OnceLock::new());
    let outcome = ended.clone();
    tokio::spawn(async move {
        // Headers go out at once, so that a browser sees the stream open.
        if tx
            .send(Ok(Bytes::from_static(b": open\n\n")))
            .await
            .is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.tick().await;
        loop {
            let event = tokio::select! {
                item = changes.next() => match item {
                    Some(Ok(c)) => change_event(&c),
                    Some(Err(status)) => {
                        tracing::info!(
                            code = crate::metrics::code_name(status.code()),
                            reason = crate::status::reason_of(&status).unwrap_or_default(),
                            detail = status.message(),
                            "watch stream ended with an error"
                        );
                        let _ = tx.send(Ok(error_event(&status))).await;
                        let _ = outcome.set(status);
                        return;
                    }
                    None => return,
                },
                _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                // The client went away: stop reading the feed.
                () = tx.closed() => return,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = streaming(rx, "text/event-stream", ended);
    if let Some(v) = start {
        resp.headers_mut()
            .insert(crate::service::fleet::CURSOR_HEADER, v);
    }
    resp
}

fn change_event(c: &pb::DeviceChange) -> Bytes {
    match serde_json::to_string(c) {
        // JSON has no raw newlines, so one data line carries the message.
        Ok(json) => Bytes::from(format!("id: {}\nevent: change\ndata: {json}\n\n", c.cursor)),
        Err(e) => error_event(&Status::internal(format!("encoding a change: {e}"))),
    }
}

fn error_event(status: &Status) -> Bytes {
    Bytes::from(format!("event: error\ndata: {}\n\n", error_json(status)))
}

/// `GET /v1/audit/export`: ExportAudit as JSON lines; a failure part-way
/// ends the stream with a line `{"error": {...}}`.
async fn export(s: Arc<Services>, req: Request) -> Response {
    let rpc = "/attestd.v1.Audit/ExportAudit";
    let req = match decode::<pb::ExportAuditRequest>(req, rpc, s.max_request_bytes).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut items = match s.audit.export_audit(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => return status_response(status),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let ended = Arc::new(OnceLock::new());
    let outcome = ended.clone();
    tokio::spawn(async move {
        while let Some(item) = items.next().await {
            let line = match item.map(|i| serde_json::to_string(&i)) {
                Ok(Ok(json)) => json,
                Ok(Err(e)) => {
                    let s = Status::internal(format!("encoding an entry: {e}"));
                    let line = serde_json::json!({ "error": error_json(&s) }).to_string();
                    let _ = outcome.set(s);
                    line
                }
                Err(status) => {
                    tracing::info!(
                        code = crate::metrics::code_name(status.code()),
                        detail = status.message(),
                        "audit export ended with an error"
                    );
                    let line = serde_json::json!({ "error": error_json(&status) }).to_string();
                    let _ = outcome.set(status);
                    line
                }
            };
            let last = line.starts_with("{\"error\"");
            if tx.send(Ok(Bytes::from(line + "\n"))).await.is_err() || last {
                return;
            }
        }
    });
    streaming(rx, "application/x-ndjson", ended)
}

fn streaming(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    content_type: &'static str,
    ended: Arc<OnceLock<Status>>,
) -> Response {
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // Proxies that buffer (nginx) would hold events back.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response();
    resp.extensions_mut().insert(HttpOutcome::Stream(ended));
    resp
}

/// The gRPC request of an HTTP request: its fields from the path and the
/// query string (GET) or the JSON body (POST), checked against the
/// method's message, with the principal the edge layer authenticated.
async fn decode<Req: DeserializeOwned>(
    req: Request,
    rpc: &'static str,
    limit: usize,
) -> Result<tonic::Request<Req>, Response> {
    let schema = schema();
    let Some((input, _)) = schema.method(rpc) else {
        return Err(status_response(Status::internal(format!(
            "{rpc} is not in the API's descriptors"
        ))));
    };
    let (mut parts, body) = req.into_parts();
    let principal = parts.extensions.get::<Arc<Principal>>().cloned();
    let params: Vec<(String, String)> =
        match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(p) => p
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(_) => {
                return Err(refusal(&reject!(
                    FieldInvalid,
                    "a path segment is not valid UTF-8"
                )))
            }
        };
    let mut fields = if parts.method == http::Method::POST {
        // JSON only: a browser cannot send a cross-site request with this
        // type without asking first (CORS), so a page elsewhere cannot make
        // a user's browser, holding a client certificate, record a decision.
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            let mut r = refusal(&reject!(
                MalformedMessage,
                "a POST body must be JSON (Content-Type: application/json)"
            ));
            *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Err(r);
        }
        if parts.uri.query().is_some_and(|q| !q.is_empty()) {
            return Err(refusal(&reject!(
                FieldInvalid,
                "a POST takes its fields from the JSON body, not the query string"
            )));
        }
        // A body declared too large is refused before a byte of it is read.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(refusal(&reject!(
                TooLarge,
                "request body exceeds the limit of {limit} bytes"
            )));
        }
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            refusal(&reject!(
                TooLarge,
                "request body exceeds the limit of {limit} bytes"
            ))
        })?;
        if bytes.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(refusal(&reject!(
                        MalformedMessage,
                        "the request body must be a JSON object"
                    )))
                }
                Err(e) => {
                    return Err(refusal(&reject!(
                        MalformedMessage,
                        "the request body is not JSON: {e}"
                    )))
                }
            }
        }
    } else {
        query_fields(schema, input, parts.uri.query().unwrap_or("")).map_err(|r| refusal(&r))?
    };
    for (name, value) in params {
        if fields.contains_key(&name) {
            return Err(refusal(&reject!(
                FieldInvalid,
                "{name} is given by the path; leave it out of the request"
            )));
        }
        fields.insert(name, Value::String(value));
    }
    let msg: Req = serde_json::from_value(Value::Object(fields)).map_err(|e| {
        refusal(&reject!(
            MalformedMessage,
            "the request does not match {}: {e}",
            input.trim_start_matches('.')
        ))
    })?;
    let mut out = tonic::Request::new(msg);
    if let Some(p) = principal {
        out.extensions_mut().insert(p);
    }
    Ok(out)
}

/// A request's fields from a query string: `name=value` by JSON or proto
/// field name, nested fields with dots (`filter.model`), repeated fields
/// by repeating the name. Written here (rather than with a form crate)
/// because the shape of the value comes from the message descriptor.
fn query_fields(
    schema: &Schema,
    message: &str,
    query: &str,
) -> Result<Map<String, Value>, Rejection> {
    let mut out = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = unescape(k)?;
        let value = unescape(v)?;
        let mut msg = message.to_owned();
        let mut target = &mut out;
        let segments: Vec<&str> = key.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            let field = schema.field(&msg, seg).ok_or_else(|| {
                reject!(
                    FieldInvalid,
                    "unknown query parameter {key:?} for {}",
                    msg.trim_start_matches('.')
                )
            })?;
            let name = field
                .json_name
                .clone()
                .unwrap_or_else(|| field.name().to_owned());
            let last = i + 1 == segments.len();
            let nested = field.r#type() == Type::Message && !is_scalar_message(field.type_name());
            if !last {
                if !nested || field.label() == Label::Repeated {
                    return Err(reject!(
                        FieldInvalid,
                        "query parameter {key:?}: {seg} has no fields"
                    ));
                }
                msg = field.type_name().to_owned();
                let slot = target
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                target = match slot {
                    Value::Object(m) => m,
                    _ => {
                        return Err(reject!(FieldInvalid, "query parameter {key:?} conflicts"));
                    }
                };
                continue;
            }
            if nested {
                return Err(reject!(
                    FieldInvalid,
                    "query parameter {key:?} is a message; give its fields ({key}.name)"
                ));
            }
            let v = scalar(field, &value);
            if field.label() == Label::Repeated {
                match target
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(a) => a.push(v),
                    _ => return Err(reject!(FieldInvalid, "query parameter {key:?} conflicts")),
                }
            } else if target.insert(name, v).is_some() {
                return Err(reject!(
                    FieldInvalid,
                    "query parameter {key:?} is given twice"
                ));
            }
        }
    }
    Ok(out)
}

/// Messages that the JSON mapping writes as one string.
fn is_scalar_message(type_name: &str) -> bool {
    matches!(
        type_name,
        ".google.protobuf.Timestamp" | ".google.protobuf.Duration"
    )
}

/// A query value as the JSON the mapping expects: booleans and 32-bit
/// numbers as JSON values when they parse, everything else as a string
/// (the mapping reads 64-bit integers, enums and timestamps from strings).
fn scalar(field: &FieldDescriptorProto, v: &str) -> Value {
    match field.r#type() {
        Type::Bool => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(v.to_owned()),
        },
        Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => v
            .parse::<i64>()
            .map_or_else(|_| Value::String(v.to_owned()), Value::from),
        _ => Value::String(v.to_owned()),
    }
}

fn unescape(s: &str) -> Result<String, Rejection> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| reject!(FieldInvalid, "a query parameter is not UTF-8"))
}

/// The API's messages and methods, from the descriptors compiled into
/// attestd-proto: for query strings here and for the OpenAPI document.
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, Vec<String>>,
    /// gRPC method path -> (input type, output type), full names with a
    /// leading dot.
    methods: HashMap<String, (String, String)>,
    /// Comments of messages, fields and methods, by full name
    /// (`.attestd.v1.Device`, `.attestd.v1.Device.serial`).
    pub docs: HashMap<String, String>,
}

/// The schema, decoded once.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::load(attestd_proto::FILE_DESCRIPTOR_SET))
}

impl Schema {
    fn load(bytes: &[u8]) -> Schema {
        // The set is generated at build time from our own protos; a set
        // that does not decode yields an empty schema, and every route
        // then answers INTERNAL (a test loads it).
        let set = FileDescriptorSet::decode(bytes).unwrap_or_default();
        let mut s = Schema {
            messages: HashMap::new(),
            enums: HashMap::new(),
            methods: HashMap::new(),
            docs: HashMap::new(),
        };
        for file in &set.file {
            let pkg = format!(".{}", file.package());
            for m in &file.message_type {
                s.add_message(&pkg, m);
            }
            for e in &file.enum_type {
                s.enums.insert(
                    format!("{pkg}.{}", e.name()),
                    e.value.iter().map(|v| v.name().to_owned()).collect(),
                );
            }
            for svc in &file.service {
                for m in &svc.method {
                    s.methods.insert(
                        format!("/{}.{}/{}", file.package(), svc.name(), m.name()),
                        (m.input_type().to_owned(), m.output_type().to_owned()),
                    );
                }
            }
            if let Some(info) = &file.source_code_info {
                s.add_docs(&pkg, file, info);
            }
        }
        s
    }

    fn add_message(&mut self, scope: &str, m: &DescriptorProto) {
        let name = format!("{scope}.{}", m.name());
        for nested in &m.nested_type {
            self.add_message(&name, nested);
        }
        for e in &m.enum_type {
            self.enums.insert(
                format!("{name}.{}", e.name()),
                e.value.iter().map(|v| v.name().to_owned()).collect(),
            );
        }
        self.messages.insert(name, m.clone());
    }

    fn add_docs(
        &mut self,
        pkg: &str,
        file: &prost_types::FileDescriptorProto,
        info: &prost_types::SourceCodeInfo,
    ) {
        // Paths: [4, i] message i, [4, i, 2, j] its field j (top-level
        // messages only); [5, i] enum i; [6, i, 2, j] method j of service i.
        for loc in &info.location {
            let text = loc.leading_comments().trim();
            if text.is_empty() {
                continue;
            }
            let p = &loc.path;
            let idx = |k: usize| usize::try_from(p[k]).ok();
            let key = match p.as_slice() {
                [4, _] => idx(1)
                    .and_then(|i| file.message_type.get(i))
                    .map(|m| format!("{pkg}.{}", m.name())),
                [4, _, 2, _] => idx(1).and_then(|i| file.message_type.get(i)).and_then(|m| {
                    idx(3)
                        .and_then(|j| m.field.get(j))
                        .map(|f| format!("{pkg}.{}.{}", m.name(), f.name()))
                }),
                [5, _] => idx(1)
                    .and_then(|i| file.enum_type.get(i))
                    .map(|e| format!("{pkg}.{}", e.name())),
                _ => None,
            };
            if let Some(k) = key {
                self.docs
                    .insert(k, text.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }

    /// The input and output message of a gRPC method.
    pub fn method(&self, rpc: &str) -> Option<(&str, &str)> {
        self.methods.get(rpc).map(|(i, o)| (i.as_str(), o.as_str()))
    }

    /// A message's descriptor by its full name.
    pub fn message(&self, name: &str) -> Option<&DescriptorProto> {
        self.messages.get(name)
    }

    /// The value names of an enum by its full name.
    pub fn enum_values(&self, name: &str) -> Option<&[String]> {
        self.enums.get(name).map(Vec::as_slice)
    }

    /// A field of `message` by its JSON or proto name.
    pub fn field(&self, message: &str, name: &str) -> Option<&FieldDescriptorProto> {
        self.messages
            .get(message)?
            .field
            .iter()
            .find(|f| f.json_name.as_deref() == Some(name) || f.name() == name)
    }
}

/// The dashboard's files, compiled in (no CDN, nothing fetched elsewhere).
const DASHBOARD_HTML: &str = include_str!("../assets/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard/app.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard/style.css");

/// The static routes: the dashboard (public: its data comes from the API
/// with the user's token), the OpenAPI document and a favicon placeholder.
pub fn static_router() -> axum::Router {
    fn file(body: &'static str, content_type: &'static str) -> Response {
        let mut resp = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                    ),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(HttpOutcome::Done(None));
        resp
    }
    axum::Router::new()
        .route(
            "/dashboard",
            get(|| async {
                let mut r = (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, HeaderValue::from_static("/dashboard/"))],
                )
                    .into_response();
                r.extensions_mut().insert(HttpOutcome::Done(None));
                r
            }),
        )
        .route(
            "/dashboard/",
            get(|| async { file(DASHBOARD_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { file(DASHBOARD_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { file(DASHBOARD_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/favicon.ico",
            get(|| async {
                let mut r = StatusCode::NO_CONTENT.into_response();
                r.extensions_mut().insert(HttpOutcome::Done(None));
                r
            }),
        )
        .route(
            "/openapi.json",
            get(|| async {
                let mut r = (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    crate::openapi::document_json(),
                )
                    .into_response();
                r.extensions_mut().insert(HttpOutcome::Done(None));
                r
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_a_method_of_the_api_with_an_access_rule() {
        let s = schema();
        for r in REST_ROUTES {
            assert!(s.method(r.rpc).is_some(), "{} is not a method", r.rpc);
            assert!(
                crate::auth::ROUTES.iter().any(|(p, _)| *p == r.rpc),
                "{} has no access rule",
                r.rpc
            );
            let concrete: Vec<&str> = r
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect();
            assert_eq!(route_for(&concrete.join("/")).map(|x| x.rpc), Some(r.rpc));
        }
    }

    #[test]
    fn every_route_has_a_handler() {
        for r in REST_ROUTES {
            assert!(
                handler(r).is_some(),
                "{} {} has no handler",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn paths_match_their_pattern_only() {
        assert_eq!(
            route_for("/v1/devices/SN-1").map(|r| r.rpc),
            Some("/attestd.v1.Fleet/GetDevice")
        );
        assert_eq!(
            route_for("/v1/devices/SN-1/history").map(|r| r.rpc),
            Some("/attestd.v1.Fleet/ListDeviceHistory")
        );
        assert_eq!(
            route_for("/v1/devices").map(|r| r.rpc),
            Some("/attestd.v1.Fleet/ListDevices")
        );
        for p in [
            "/v1/devices/",
            "/v1/devices/a/b",
            "/v1/nothing",
            "/v1",
            "/v2/devices",
        ] {
            assert!(route_for(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_query_string_becomes_the_request_fields() {
        let s = schema();
        let m = query_fields(
            s,
            ".attestd.v1.ListDevicesRequest",
            "filter.statuses=DEVICE_STATUS_UNTRUSTED&filter.statuses=DEVICE_STATUS_STALE\
             &filter.model=PM%2D200&pageSize=5&filter.lastSeenAfter=2026-01-01T00:00:00Z",
        )
        .unwrap();
        let req: pb::ListDevicesRequest = serde_json::from_value(Value::Object(m)).unwrap();
        let f = req.filter.unwrap();
        assert_eq!(f.statuses, vec![3, 4]);
        assert_eq!(f.model, "PM-200");
        assert_eq!(req.page_size, 5);
        assert_eq!(f.last_seen_after.unwrap().seconds, 1_767_225_600);
        for bad in [
            "nope=1",
            "filter=1",
            "filter.model=a&filter.model=b",
            "filter.model.x=1",
        ] {
            let r = query_fields(s, ".attestd.v1.ListDevicesRequest", bad).unwrap_err();
            assert_eq!(r.reason, Reason::FieldInvalid, "{bad}");
        }
    }

    #[test]
    fn refusals_keep_their_code_and_reason() {
        let r = reject!(DeviceNotFound, "serial X is not enrolled");
        let resp = refusal(&r);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let v = error_json(&crate::status::to_status(&r));
        assert_eq!(v["code"], "NOT_FOUND");
        assert_eq!(v["reason"], "DEVICE_NOT_FOUND");
        assert_eq!(v["message"], "serial X is not enrolled");
        assert_eq!(
            refusal(&reject!(NoCredentials, "x")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refusal(&reject!(TooLarge, "x")).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
