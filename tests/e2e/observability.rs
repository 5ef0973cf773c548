//! Observability end to end: every refused call logged once as a JSON line
//! naming its request id, method, peer, principal, code and reason; request
//! ids returned to callers; request spans exported over OTLP to a receiver
//! running in this test; the Prometheus page checked by `promtool` and each
//! metric the README lists seen to exist and to move.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::record::sign_calibration;
use attestd_client::SigningKey;
use attestd_server::clock::Clock as _;
use attestd_server::settings::Limits;
use serde_json::Value;

/// `msg` with `x-request-id: id` in its metadata.
fn with_id<T>(msg: T, id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("x-request-id", id.parse().expect("ascii request id"));
    req
}

/// The request id an answer carries.
fn echoed(md: &tonic::metadata::MetadataMap) -> String {
    md.get("x-request-id")
        .expect("the answer carries x-request-id")
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every line of the log as JSON; a line that is not JSON fails the test.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect()
}

fn field<'a>(line: &'a Value, name: &str) -> &'a str {
    line.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {name:?} in {line}"))
}

/// The one "call refused" line of `request_id`, waiting briefly for it.
async fn refusal_line(server: &TestServer, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = json_lines(&server.log())
            .into_iter()
            .filter(|l| {
                l.get("message").and_then(Value::as_str) == Some("call refused")
                    && l.get("request_id").and_then(Value::as_str) == Some(request_id)
            })
            .collect();
        match lines.len() {
            1 => return lines.into_iter().next().unwrap(),
            0 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            n => panic!(
                "{n} refusal lines for request id {request_id}:\n{}",
                server.log()
            ),
        }
    }
}

/// Checks a refusal line against what the client was told.
fn check_refusal(
    line: &Value,
    method: &str,
    principal: &str,
    status: &tonic::Status,
    code: &str,
    level: &str,
) {
    assert_eq!(field(line, "method"), method, "{line}");
    assert_eq!(field(line, "principal"), principal, "{line}");
    assert_eq!(field(line, "code"), code, "{line}");
    assert_eq!(
        tonic::Code::from_i32(status.code() as i32),
        status.code(),
        "{line}"
    );
    let told = reason(status);
    assert!(!told.is_empty(), "the client got a reason: {status:?}");
    assert_eq!(field(line, "reason"), told, "{line}");
    assert_eq!(field(line, "level"), level, "{line}");
    let peer: SocketAddr = field(line, "peer")
        .parse()
        .unwrap_or_else(|e| panic!("peer is not an address ({e}): {line}"));
    assert!(peer.ip().is_loopback(), "{line}");
    assert_ne!(peer.port(), 0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_once_each_as_json_lines_with_request_id_method_peer_principal_code_and_reason(
) {
    let server = TestServer::start_with(Options {
        log: Some("info"),
        args: vec!["--log-format".into(), "json".into()],
        ..Options::default()
    });
    let serial = "PM200-OBS-001";
    enroll_one(&server, serial, KeyAlg::Es256).await;
    let admin = server.admin().await;
    let device = server.client(None).await;
    let stranger = SigningKey::generate(KeyAlg::Es256).unwrap();

    // A bearer token nobody issued.
    let wrong = "obs-wrong-token-never-logged";
    let bad_token = server
        .client(Some(wrong))
        .await
        .fleet()
        .get_fleet_summary(with_id(
            pb::GetFleetSummaryRequest::default(),
            "obs-bad-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(echoed(bad_token.metadata()), "obs-bad-token");

    // Evidence from a serial nobody enrolled.
    let unknown = device
        .device()
        .submit_evidence(with_id(
            pb::SubmitEvidenceRequest {
                evidence: sign_evidence(&claims("PM200-OBS-404", 1), &stranger),
                ..Default::default()
            },
            "obs-unknown-serial",
        ))
        .await
        .unwrap_err();
    assert_eq!(echoed(unknown.metadata()), "obs-unknown-serial");

    // Evidence of the enrolled unit signed with another key: the handler
    // raises a security event, inside the call's span.
    let mut c = claims(serial, 1);
    c.nonce = Some(challenge(&device, serial).await);
    let forged = device
        .device()
        .submit_evidence(with_id(
            pb::SubmitEvidenceRequest {
                evidence: sign_evidence(&c, &stranger),
                ..Default::default()
            },
            "obs-forged",
        ))
        .await
        .unwrap_err();

    // A principal whose role may not call the method.
    let forbidden = server
        .client(Some(MES_TOKEN))
        .await
        .admin()
        .list_stations(with_id(
            pb::ListStationsRequest::default(),
            "obs-role-forbidden",
        ))
        .await
        .unwrap_err();

    // A unit that does not exist: the caller's mistake, logged at info.
    let missing = admin
        .fleet()
        .get_device(with_id(
            pb::GetDeviceRequest {
                serial: "PM200-OBS-NOPE".into(),
            },
            "obs-not-found",
        ))
        .await
        .unwrap_err();

    // A request id that is not sane is replaced; a call that succeeds gets
    // its id back and logs no refusal.
    let ok = admin
        .fleet()
        .get_fleet_summary(with_id(pb::GetFleetSummaryRequest::default(), "has space"))
        .await
        .unwrap();
    let generated = echoed(ok.metadata());
    assert!(is_generated_id(&generated), "{generated}");
    let too_long = "x".repeat(129);
    let ok2 = admin
        .fleet()
        .get_fleet_summary(with_id(pb::GetFleetSummaryRequest::default(), &too_long))
        .await
        .unwrap();
    assert!(is_generated_id(&echoed(ok2.metadata())));
    assert_ne!(echoed(ok2.metadata()), generated);
    // No id at all: one is made and returned.
    let no_id = server
        .client(Some(MES_TOKEN))
        .await
        .fleet()
        .get_device(pb::GetDeviceRequest {
            serial: "PM200-OBS-NOPE-2".into(),
        })
        .await
        .unwrap_err();
    let made = echoed(no_id.metadata());
    assert!(is_generated_id(&made), "{made}");

    let fleet = "/attestd.v1.Fleet/";
    let line = refusal_line(&server, "obs-bad-token").await;
    check_refusal(
        &line,
        &format!("{fleet}GetFleetSummary"),
        "unauthenticated",
        &bad_token,
        "UNAUTHENTICATED",
        "WARN",
    );
    assert_eq!(field(&line, "reason"), "NO_CREDENTIALS");
    let line = refusal_line(&server, "obs-unknown-serial").await;
    check_refusal(
        &line,
        "/attestd.v1.DeviceAttestation/SubmitEvidence",
        "anonymous",
        &unknown,
        "UNAUTHENTICATED",
        "WARN",
    );
    assert_eq!(field(&line, "reason"), "UNKNOWN_DEVICE");
    let line = refusal_line(&server, "obs-forged").await;
    check_refusal(
        &line,
        "/attestd.v1.DeviceAttestation/SubmitEvidence",
        "anonymous",
        &forged,
        "UNAUTHENTICATED",
        "WARN",
    );
    let line = refusal_line(&server, "obs-role-forbidden").await;
    check_refusal(
        &line,
        "/attestd.v1.Admin/ListStations",
        "mes",
        &forbidden,
        "PERMISSION_DENIED",
        "WARN",
    );
    assert_eq!(field(&line, "reason"), "ROLE_FORBIDDEN");
    let line = refusal_line(&server, "obs-not-found").await;
    check_refusal(
        &line,
        &format!("{fleet}GetDevice"),
        "admin",
        &missing,
        "NOT_FOUND",
        "INFO",
    );
    let line = refusal_line(&server, &made).await;
    check_refusal(
        &line,
        &format!("{fleet}GetDevice"),
        "mes",
        &no_id,
        "NOT_FOUND",
        "INFO",
    );

    let lines = json_lines(&server.log());
    // The handler's own log line inherits the call's span.
    let security = lines
        .iter()
        .find(|l| {
            l.get("message").and_then(Value::as_str) == Some("security event")
                && l.pointer("/span/request_id").and_then(Value::as_str) == Some("obs-forged")
        })
        .unwrap_or_else(|| {
            panic!(
                "no security event in the span of obs-forged:\n{}",
                server.log()
            )
        });
    assert_eq!(
        security.pointer("/span/method").and_then(Value::as_str),
        Some("/attestd.v1.DeviceAttestation/SubmitEvidence"),
        "{security}"
    );
    assert_eq!(
        security.pointer("/span/principal").and_then(Value::as_str),
        Some("anonymous"),
        "{security}"
    );
    // Successful calls are not refusals.
    for id in [generated.as_str(), "has space"] {
        assert!(
            !lines.iter().any(|l| {
                l.get("message").and_then(Value::as_str) == Some("call refused")
                    && l.get("request_id").and_then(Value::as_str) == Some(id)
            }),
            "a refusal line for a successful call {id}"
        );
    }
    // Every refusal line has every field.
    let refusals: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("message").and_then(Value::as_str) == Some("call refused"))
        .collect();
    assert!(refusals.len() >= 6, "{} refusal lines", refusals.len());
    for l in refusals {
        for f in [
            "request_id",
            "method",
            "peer",
            "principal",
            "code",
            "reason",
        ] {
            assert!(
                l.get(f)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty()),
                "{f} missing: {l}"
            );
        }
    }
    let log = server.log();
    assert!(!log.contains(wrong), "the wrong token appears in the log");
    assert!(
        !log.contains(ADMIN_TOKEN),
        "the admin token appears in the log"
    );
}

// ---- OTLP -----------------------------------------------------------------

mod otlp {
    //! A tiny OTLP/gRPC trace receiver: keeps every span it is sent.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

    #[derive(Clone, Debug)]
    pub(crate) struct Span {
        pub service: String,
        pub name: String,
        pub kind: i32,
        pub status: i32,
        pub attributes: HashMap<String, String>,
        /// The names of its events (the log lines written in the span).
        pub events: Vec<String>,
    }

    #[derive(Clone, Default)]
    pub(crate) struct Receiver {
        pub spans: Arc<Mutex<Vec<Span>>>,
    }

    fn text(v: &Option<AnyValue>) -> String {
        match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        }
    }

    fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect()
    }

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut out = self.spans.lock().unwrap();
            for rs in req.into_inner().resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attrs(&r.attributes))
                    .unwrap_or_default();
                let service = resource.get("service.name").cloned().unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push(Span {
                            service: service.clone(),
                            name: s.name.clone(),
                            kind: s.kind,
                            status: s.status.as_ref().map_or(0, |st| st.code),
                            attributes: attrs(&s.attributes),
                            events: s.events.iter().map(|e| e.name.clone()).collect(),
                        });
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    /// Starts a receiver on a free loopback port; returns it and its address.
    pub(crate) async fn start() -> (Receiver, std::net::SocketAddr) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        (receiver, addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_with_the_method_name() {
    let (receiver, addr) = otlp::start().await;
    let server = TestServer::start_with(Options {
        extra_toml: format!(
            "[telemetry]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"attestd-otlp-test\"\n"
        ),
        // Batches go out every 100 ms rather than every 5 s.
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
        ..Options::default()
    });
    let admin = server.admin().await;
    admin
        .fleet()
        .get_fleet_summary(with_id(
            pb::GetFleetSummaryRequest::default(),
            "otlp-summary",
        ))
        .await
        .unwrap();
    let missing = admin
        .fleet()
        .get_device(with_id(
            pb::GetDeviceRequest {
                serial: "PM200-OTLP-NOPE".into(),
            },
            "otlp-missing",
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let find = |id: &str| {
        receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.attributes.get("request_id").map(String::as_str) == Some(id))
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while find("otlp-summary").is_none() || find("otlp-missing").is_none() {
        assert!(
            Instant::now() < deadline,
            "no span arrived in 20 s; received {:?}\nlog:\n{}",
            receiver.spans.lock().unwrap(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = find("otlp-summary").unwrap();
    assert_eq!(summary.name, "attestd.v1.Fleet/GetFleetSummary");
    assert_eq!(summary.service, "attestd-otlp-test");
    assert_eq!(summary.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(summary.attributes["principal"], "admin");
    assert_eq!(summary.attributes["rpc.system"], "grpc");
    assert_eq!(summary.attributes["rpc.grpc.status_code"], "0");
    assert!(summary.attributes["peer"].starts_with("127.0.0.1:"));
    let missing = find("otlp-missing").unwrap();
    assert_eq!(missing.name, "attestd.v1.Fleet/GetDevice");
    assert_eq!(missing.attributes["rpc.grpc.status_code"], "5");
    // A refused caller is not a server error (status unset).
    assert_eq!(missing.status, 0);
    // The refusal's log line travels with the span.
    assert!(
        missing.events.iter().any(|e| e == "call refused"),
        "{:?}",
        missing.events
    );
    assert!(!summary.events.iter().any(|e| e == "call refused"));
}

// ---- Prometheus -------------------------------------------------------------

/// One scraped page: each series' value, after checking the exposition
/// format line by line (HELP and TYPE before the samples of a family,
/// names by the conventions, histograms cumulative and ending in +Inf).
#[derive(Debug)]
struct Page {
    series: BTreeMap<String, f64>,
    types: HashMap<String, String>,
}

impl Page {
    fn parse(text: &str) -> Page {
        let mut series = BTreeMap::new();
        let mut types = HashMap::new();
        let mut helps = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.trim().is_empty(), "empty HELP for {name}");
                helps.insert(name.to_owned(), help.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').expect("TYPE name type");
                assert!(helps.contains_key(name), "TYPE before HELP for {name}");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&t),
                    "{name}: type {t}"
                );
                types.insert(name.to_owned(), t.to_owned());
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("a sample: series value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a sample's value: {line}"));
            let name = key.split('{').next().unwrap();
            assert!(name.starts_with("attestd_"), "{name}: not attestd_");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: not snake_case"
            );
            let family = [
                name.strip_suffix("_bucket"),
                name.strip_suffix("_sum"),
                name.strip_suffix("_count"),
            ]
            .into_iter()
            .flatten()
            .find(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            .unwrap_or(name);
            let t = types
                .get(family)
                .unwrap_or_else(|| panic!("{name}: sample without a TYPE"));
            match t.as_str() {
                "counter" => assert!(
                    family.ends_with("_total"),
                    "{family}: counter without _total"
                ),
                "histogram" => assert!(
                    family.ends_with("_seconds"),
                    "{family}: histogram not in seconds"
                ),
                _ => assert!(
                    !family.ends_with("_total"),
                    "{family}: a gauge named _total"
                ),
            }
            assert!(
                series.insert(key.to_owned(), value).is_none(),
                "duplicate series {key}"
            );
        }
        let page = Page { series, types };
        page.check_histograms();
        page
    }

    /// Buckets grow with `le` and the +Inf bucket equals the count.
    fn check_histograms(&self) {
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (key, v) in &self.series {
            let Some(rest) = key.split_once("_bucket{") else {
                continue;
            };
            let labels = rest.1.trim_end_matches('}');
            let (le, others): (Vec<&str>, Vec<&str>) =
                labels.split(',').partition(|l| l.starts_with("le="));
            let le = le[0].trim_start_matches("le=").trim_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let series = if others.is_empty() {
                format!("{}_count", rest.0)
            } else {
                format!("{}_count{{{}}}", rest.0, others.join(","))
            };
            buckets.entry(series).or_default().push((le, *v));
        }
        for (count, mut b) in buckets {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            assert!(
                b.windows(2).all(|w| w[0].1 <= w[1].1),
                "buckets of {count} not cumulative: {b:?}"
            );
            let (le, inf) = *b.last().unwrap();
            assert!(le.is_infinite(), "{count}: no +Inf bucket");
            let total = self
                .series
                .get(&count)
                .unwrap_or_else(|| panic!("{count} missing"));
            assert_eq!(inf, *total, "{count}: +Inf bucket != count");
        }
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .series
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not on the page"))
    }

    fn or_zero(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }
}

/// The body of the metrics page (without the HTTP head).
fn scrape(server: &TestServer) -> String {
    let raw = server.metrics();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// `promtool check metrics` on a page: its own problems, or none.
fn promtool(page: &str) -> Option<Result<(), String>> {
    use std::io::Write as _;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

const GET_SUMMARY: &str = "{method=\"GetFleetSummary\",service=\"attestd.v1.Fleet\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_passes_promtool_and_each_metric_moves() {
    let server = TestServer::start();
    let before = Page::parse(&scrape(&server));
    let count = |p: &Page| p.get(&format!("attestd_rpc_duration_seconds_count{GET_SUMMARY}"));
    let ok = |p: &Page| {
        p.or_zero(
            "attestd_rpc_requests_total{code=\"OK\",method=\"GetFleetSummary\",service=\"attestd.v1.Fleet\"}",
        )
    };
    let denied = "attestd_rpc_requests_total{code=\"UNAUTHENTICATED\",method=\"GetFleetSummary\",service=\"attestd.v1.Fleet\"}";
    assert_eq!(count(&before), 0.0);

    // Build information, once, with the backend.
    let build: Vec<_> = before
        .series
        .iter()
        .filter(|(k, _)| k.starts_with("attestd_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    let (labels, one) = build[0];
    assert_eq!(*one, 1.0);
    assert!(labels.contains("backend=\"sled\""), "{labels}");
    assert!(labels.contains("version=\"0.1.0\""), "{labels}");
    assert!(labels.contains("git_commit=\""), "{labels}");

    // Calls move the RPC histogram and the counts by code.
    let admin = server.admin().await;
    for _ in 0..3 {
        admin
            .fleet()
            .get_fleet_summary(pb::GetFleetSummaryRequest::default())
            .await
            .unwrap();
    }
    let _ = server
        .client(Some("not-a-token"))
        .await
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .unwrap_err();
    // A unit enrolled and booted moves the store's counters and the units
    // by status.
    let key = enroll_one(&server, "PM200-MET-001", KeyAlg::Es256).await;
    boot(&server.client(None).await, "PM200-MET-001", &key, 1)
        .await
        .unwrap();

    let text = scrape(&server);
    let after = Page::parse(&text);
    assert_eq!(count(&after), 4.0, "three answered, one refused");
    assert_eq!(ok(&after) - ok(&before), 3.0);
    assert_eq!(after.get(denied), 1.0);
    assert!(after.get(&format!("attestd_rpc_duration_seconds_sum{GET_SUMMARY}")) > 0.0);
    assert_eq!(
        after.get(
            "attestd_rpc_duration_seconds_bucket{method=\"GetFleetSummary\",service=\"attestd.v1.Fleet\",le=\"+Inf\"}"
        ),
        4.0
    );
    assert_eq!(after.types["attestd_rpc_duration_seconds"], "histogram");
    assert!(after
        .series
        .keys()
        .any(|k| k.starts_with("attestd_rpc_duration_seconds_bucket{")));
    assert_eq!(
        after.get("attestd_rpc_requests_total{code=\"OK\",method=\"SubmitEvidence\",service=\"attestd.v1.DeviceAttestation\"}"),
        1.0
    );
    assert!(after.get("attestd_store_flushes_total") > before.get("attestd_store_flushes_total"));
    assert!(
        after.get("attestd_store_flushed_writes_total") >= after.get("attestd_store_flushes_total")
    );
    let units = |p: &Page| -> f64 {
        [
            "TRUSTED",
            "WARNING",
            "UNTRUSTED",
            "STALE",
            "UNKNOWN",
            "QUARANTINED",
        ]
        .iter()
        .map(|s| p.get(&format!("attestd_units{{status=\"{s}\"}}")))
        .sum()
    };
    assert_eq!(units(&before), 0.0);
    assert_eq!(units(&after), 1.0);
    // No baseline: the unit is UNKNOWN.
    assert_eq!(after.get("attestd_units{status=\"UNKNOWN\"}"), 1.0);
    assert_eq!(after.get("attestd_stored{kind=\"devices\"}"), 1.0);
    for kind in ["model", "station", "digest"] {
        after.get(&format!(
            "attestd_reappraisal_open_sweeps{{kind=\"{kind}\"}}"
        ));
    }
    after.get("attestd_reappraisal_dirty_units");
    after.get("attestd_reappraisal_due_units");
    // Without [tls] there is no certificate to expire.
    assert!(!text.contains("attestd_tls_certificate_expiry_seconds "));

    match promtool(&text) {
        Some(Ok(())) => {}
        Some(Err(problems)) => panic!("promtool check metrics:\n{problems}\npage:\n{text}"),
        None if std::env::var("ATTESTD_SKIP_PROMTOOL").as_deref() == Ok("1") => {
            eprintln!("promtool not found; skipped (ATTESTD_SKIP_PROMTOOL=1)")
        }
        None => panic!(
            "promtool not found: install it (Debian: apt-get install -y --no-install-recommends \
             prometheus; .ci/run does) or set ATTESTD_SKIP_PROMTOOL=1 to skip this check"
        ),
    }
}

/// The re-appraisal backlog and sweep progress, on an in-process server
/// whose job runs only when the test says (so each gauge can be seen up
/// before it goes down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reappraisal_backlog_and_sweep_progress_move_with_the_work() {
    let b = crate::common::trusted::trusted(3, Limits::default()).await;
    let page = || async { Page::parse(&attestd_server::metrics::render(&b.srv.app, None).await) };
    let start = page().await;
    assert_eq!(start.get("attestd_units{status=\"TRUSTED\"}"), 3.0);
    assert_eq!(start.get("attestd_reappraisal_dirty_units"), 0.0);
    assert_eq!(start.get("attestd_reappraisal_due_units"), 0.0);
    let open = |p: &Page| -> f64 {
        ["model", "station", "digest"]
            .iter()
            .map(|k| p.get(&format!("attestd_reappraisal_open_sweeps{{kind=\"{k}\"}}")))
            .sum()
    };
    assert_eq!(open(&start), 0.0);

    // A baseline that withdraws the units' bootloader opens sweeps.
    crate::common::trusted::publish(&b.admin, &b.release_key, 2, true).await;
    let opened = page().await;
    assert!(open(&opened) >= 1.0, "{:?}", opened.series);
    b.srv.settle().await;
    let swept = page().await;
    assert_eq!(open(&swept), 0.0);
    let swept_units: f64 = ["model", "station", "digest"]
        .iter()
        .map(|k| {
            swept.or_zero(&format!(
                "attestd_reappraisal_sweep_units_total{{kind=\"{k}\"}}"
            ))
        })
        .sum();
    assert!(swept_units >= 3.0, "{swept_units}");
    let finished: f64 = ["model", "station", "digest"]
        .iter()
        .map(|k| {
            swept.or_zero(&format!(
                "attestd_reappraisal_sweeps_finished_total{{kind=\"{k}\"}}"
            ))
        })
        .sum();
    assert!(finished >= 1.0, "{finished}");
    assert_eq!(swept.get("attestd_units{status=\"TRUSTED\"}"), 0.0);
    assert_eq!(swept.get("attestd_units{status=\"UNTRUSTED\"}"), 3.0);
    assert!(swept.get("attestd_reappraisals_total") >= 3.0);

    // A calibration record makes its unit dirty until the job runs.
    let depot = "depot-cal";
    let depot_key =
        register_station(&b.admin, depot, &[pb::RecordKind::Calibration], &["PM-200"]).await;
    let doc = calibration_doc(depot, 1, "PM200-1", 0.1, "PASS");
    b.srv
        .client(Some(station_token(depot)))
        .await
        .factory()
        .submit_record(pb::SubmitRecordRequest {
            envelope: Some(sign_calibration(&doc, &depot_key)),
        })
        .await
        .unwrap();
    assert_eq!(page().await.get("attestd_reappraisal_dirty_units"), 1.0);
    b.srv.settle().await;
    assert_eq!(page().await.get("attestd_reappraisal_dirty_units"), 0.0);

    // Time passing makes re-appraisals due (evidence going stale).
    b.srv.clock.advance_ms(400 * 86_400_000);
    let due = page().await.get("attestd_reappraisal_due_units");
    assert!(due >= 1.0, "{due}");
    b.srv.settle().await;
    assert_eq!(page().await.get("attestd_reappraisal_due_units"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_expiry_follows_the_served_certificate() {
    use attestd_server::tls::{TlsFiles, TlsState};
    let dir = tempfile::tempdir().unwrap();
    let write = |not_after: (i32, u8, u8)| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    };
    attestd_server::tls::install_crypto_provider();
    write((2031, 1, 1));
    let tls = TlsState::load(TlsFiles {
        cert_file: dir.path().join("cert.pem"),
        key_file: dir.path().join("key.pem"),
        client_ca_files: vec![],
        reload_check_secs: 10,
    })
    .unwrap();
    let b = crate::common::trusted::trusted(0, Limits::default()).await;
    let now_s = b.srv.clock.now_ms().div_euclid(1000) as f64;
    let expiry = |text: String| Page::parse(&text).get("attestd_tls_certificate_expiry_seconds");
    let first = expiry(attestd_server::metrics::render(&b.srv.app, Some(&tls)).await);
    // 2031-01-01T00:00:00Z
    assert_eq!(first, 1_924_992_000.0 - now_s);
    // A renewed certificate (reloaded) moves it.
    write((2032, 1, 1));
    assert!(tls.reload().unwrap());
    let second = expiry(attestd_server::metrics::render(&b.srv.app, Some(&tls)).await);
    assert_eq!(second - first, 365.0 * 86_400.0);
}

/// The metrics helpers' own failure modes: a page the checks above must
/// refuse (so that they cannot pass on anything).
#[test]
fn the_exposition_checks_refuse_broken_pages() {
    let good = "# HELP attestd_x_seconds X.\n# TYPE attestd_x_seconds histogram\n\
                attestd_x_seconds_bucket{le=\"0.1\"} 1\nattestd_x_seconds_bucket{le=\"+Inf\"} 2\n\
                attestd_x_seconds_sum 0.3\nattestd_x_seconds_count 2\n";
    Page::parse(good);
    for (why, bad) in [
        (
            "buckets shrink",
            good.replace("{le=\"0.1\"} 1", "{le=\"0.1\"} 3"),
        ),
        ("count differs", good.replace("_count 2", "_count 3")),
        (
            "no TYPE",
            good.replace("# TYPE attestd_x_seconds histogram\n", ""),
        ),
        (
            "counter without _total",
            "# HELP attestd_c C.\n# TYPE attestd_c counter\nattestd_c 1\n".into(),
        ),
        (
            "not attestd_",
            "# HELP other_total C.\n# TYPE other_total counter\nother_total 1\n".into(),
        ),
    ] {
        let r = std::panic::catch_unwind(|| Page::parse(&bad));
        assert!(r.is_err(), "accepted a page with {why}");
    }
}
