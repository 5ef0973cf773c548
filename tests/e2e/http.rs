//! End-to-end: the HTTP/JSON API beside gRPC. The authorization matrix
//! over every HTTP route (every role, no credentials, tenant scope); JSON
//! answers equal to the gRPC answers for the same requests; errors with
//! the same reasons; pagination; the change feed as server-sent events;
//! the audit export as JSON lines; bad input refused with nothing stored;
//! and the OpenAPI document: valid, and describing exactly the routes
//! that exist.

use std::time::Duration;

use crate::common::fleet::*;
use crate::common::web::{concrete, Http};
use crate::common::*;
use attestd_client::pb;
use attestd_server::auth::{access_for, Access, Role, HTTP_ROUTES};
use attestd_server::rest::{Shape, REST_ROUTES};
use serde_json::Value;

fn token_of(role: Role) -> &'static str {
    match role {
        Role::Station => station_token("line1-prov"),
        Role::Mes => MES_TOKEN,
        Role::HospitalIt => HOSPITAL_TOKEN,
        Role::SecurityAdmin => ADMIN_TOKEN,
        Role::Auditor => AUDITOR_TOKEN,
    }
}

/// Whether an HTTP answer is a refusal by authorization.
fn refused_by_authorization(a: &crate::common::web::Answer) -> bool {
    (a.status == 401 || a.status == 403)
        && matches!(a.reason().as_str(), "NO_CREDENTIALS" | "ROLE_FORBIDDEN")
}

/// Calls a route with an empty request: GET with no query, POST with `{}`.
async fn call(
    http: &Http,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> crate::common::web::Answer {
    if method == "POST" {
        http.post(path, token, "{}").await
    } else {
        http.get(path, token).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_route_times_every_role() {
    let server = TestServer::start();
    let http = Http::new(&server.addr);
    let mut checked = 0;
    for r in REST_ROUTES {
        let path = concrete(r.path, "NOPE-1");
        if r.shape == Shape::Events {
            // A stream that is allowed stays open: only its headers are read.
            for token in [None]
                .into_iter()
                .chain(Role::ALL.map(|x| Some(token_of(x))))
            {
                let s = http.open(&path, token).await;
                let allowed = match (access_for(r.rpc), token) {
                    (Some(Access::Public), _) => true,
                    (Some(Access::Roles(roles)), Some(t)) => {
                        roles.iter().any(|x| token_of(*x) == t)
                    }
                    _ => false,
                };
                if allowed {
                    assert_eq!(s.status, 200, "{path} with {token:?}");
                    assert_eq!(s.headers["content-type"], "text/event-stream", "{path}");
                } else {
                    assert_eq!(
                        s.status,
                        if token.is_none() { 401 } else { 403 },
                        "{path} with {token:?}"
                    );
                }
                checked += 1;
            }
            continue;
        }
        let a = call(&http, r.method, &path, None).await;
        match access_for(r.rpc) {
            Some(Access::Public) => assert!(
                !refused_by_authorization(&a),
                "{path} is public but was refused: {a:?}"
            ),
            _ => {
                assert_eq!(
                    (a.status, a.reason().as_str()),
                    (401, "NO_CREDENTIALS"),
                    "{path} without a token: {}",
                    a.text()
                );
                assert!(a.header("www-authenticate").starts_with("Bearer"));
            }
        }
        checked += 1;
        for role in Role::ALL {
            let a = call(&http, r.method, &path, Some(token_of(role))).await;
            let allowed = match access_for(r.rpc) {
                Some(Access::Public) => true,
                Some(Access::Roles(roles)) => roles.contains(&role),
                None => false,
            };
            if allowed {
                assert!(
                    !refused_by_authorization(&a),
                    "{} {path} as {}: allowed but refused: {}",
                    r.method,
                    role.as_str(),
                    a.text()
                );
                // Past authorization, the answer is the method's own: JSON
                // in both cases.
                let want = if r.shape == Shape::Lines && a.status == 200 {
                    "application/x-ndjson"
                } else {
                    "application/json"
                };
                assert_eq!(a.header("content-type"), want, "{path}");
            } else {
                assert_eq!(
                    (a.status, a.reason().as_str()),
                    (403, "ROLE_FORBIDDEN"),
                    "{} {path} as {} must be refused: {}",
                    r.method,
                    role.as_str(),
                    a.text()
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, REST_ROUTES.len() * (Role::ALL.len() + 1));

    // The plain HTTP routes are public.
    for (path, access) in HTTP_ROUTES {
        assert_eq!(*access, Access::Public);
        let a = http.get(path, None).await;
        assert!(
            matches!(a.status, 200 | 204 | 301),
            "{path}: {} {}",
            a.status,
            a.text()
        );
    }

    // A path in no table is refused to everyone, fail closed, as JSON.
    for path in ["/v1/nothing", "/v1/devices/a/b/c", "/v2/devices", "/admin"] {
        for token in [None, Some(ADMIN_TOKEN)] {
            let a = http.get(path, token).await;
            assert!(
                a.status == 401 || a.status == 403,
                "{path}: {} {}",
                a.status,
                a.text()
            );
        }
    }
    // A route called with another method: refused, nothing done.
    let a = http.get("/v1/release/check", Some(MES_TOKEN)).await;
    assert_eq!(a.status, 405, "{}", a.text());
    let a = http.post("/v1/devices", Some(MES_TOKEN), "{}").await;
    assert_eq!(a.status, 405, "{}", a.text());

    // Nothing the walk sent was stored.
    assert_eq!(server.stored(), (0, 0, 0, 0));
}

/// Four booted PM-200 units: 0 and 1 at St Mary, 2 at County, 3 unassigned.
async fn started() -> Fleet {
    let mut f = Fleet::start().await;
    f.enroll("PM-200", 4, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.3", 9), ("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.unwrap();
    for i in 0..4 {
        f.boot(i).await;
    }
    f.assign(0, "st-mary", "ward-1").await;
    f.assign(1, "st-mary", "ward-2").await;
    f.assign(2, "county", "er").await;
    f
}

fn json_of<T: serde::Serialize>(m: &T) -> Value {
    serde_json::to_value(m).unwrap()
}

/// `a` without the keys in `drop` (at the top level).
fn without(mut a: Value, drop: &[&str]) -> Value {
    if let Some(o) = a.as_object_mut() {
        for k in drop {
            o.remove(*k);
        }
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_equal_the_grpc_answers() {
    let f = started().await;
    let http = Http::new(&f.server.addr);
    let auditor = &f.auditor;
    let serial = |i: usize| f.units[i].serial.clone();
    let t = Some(AUDITOR_TOKEN);

    // GetDevice.
    let g = auditor
        .fleet()
        .get_device(pb::GetDeviceRequest { serial: serial(0) })
        .await
        .unwrap()
        .into_inner();
    let h = http.get(&format!("/v1/devices/{}", serial(0)), t).await;
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json(), json_of(&g));
    assert_eq!(h.json()["status"], "DEVICE_STATUS_TRUSTED");
    assert!(
        h.json()["calibrationDueAt"].is_string(),
        "the calibration due date is served: {}",
        h.text()
    );

    // ListDevices with a filter, a page at a time.
    let mut token = String::new();
    let mut via_http = Vec::new();
    let mut pages = 0;
    loop {
        let q = format!(
            "/v1/devices?filter.model=PM-200&filter.statuses=DEVICE_STATUS_TRUSTED&pageSize=3&pageToken={token}"
        );
        let h = http.get(&q, t).await.json();
        let g = auditor
            .fleet()
            .list_devices(pb::ListDevicesRequest {
                filter: Some(pb::DeviceFilter {
                    model: "PM-200".into(),
                    statuses: vec![pb::DeviceStatus::Trusted as i32],
                    ..Default::default()
                }),
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h, json_of(&g), "page {pages}");
        pages += 1;
        for d in h["devices"].as_array().unwrap() {
            via_http.push(d["serial"].as_str().unwrap().to_owned());
        }
        match h["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(via_http, (0..4).map(serial).collect::<Vec<_>>());

    // GetFleetSummary, grouped by site.
    let g = auditor
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest {
            filter: None,
            group_by: pb::SummaryGroup::Site as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let h = http
        .get("/v1/fleet/summary?groupBy=SUMMARY_GROUP_SITE", t)
        .await;
    assert_eq!(h.json(), json_of(&g));
    assert_eq!(h.json()["total"], "4");

    // ListDeviceHistory and GetEvidence.
    let g = auditor
        .fleet()
        .list_device_history(pb::ListDeviceHistoryRequest {
            serial: serial(1),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let h = http
        .get(&format!("/v1/devices/{}/history?pageSize=10", serial(1)), t)
        .await;
    assert_eq!(h.json(), json_of(&g));
    let ev = evidence_ids(auditor, &serial(1)).await.remove(0);
    let g = auditor
        .fleet()
        .get_evidence(pb::GetEvidenceRequest {
            evidence_id: ev.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let h = http.get(&format!("/v1/evidence/{ev}"), t).await;
    assert_eq!(h.json(), json_of(&g));

    // The audit head, events and export.
    let h = http.get("/v1/audit/head", t).await;
    let g = auditor
        .audit()
        .get_audit_head(pb::GetAuditHeadRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.json(), json_of(&g));
    let h = http
        .get(
            "/v1/audit/events?afterSequence=2&pageSize=5&action=evidence.accept",
            t,
        )
        .await;
    let g = auditor
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest {
            after_sequence: 2,
            page_size: 5,
            action: "evidence.accept".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.json(), json_of(&g));
    assert!(!h.json()["events"].as_array().unwrap().is_empty());
    let mut stream = auditor
        .audit()
        .export_audit(pb::ExportAuditRequest {
            after_sequence: 0,
            up_to_sequence: 6,
        })
        .await
        .unwrap()
        .into_inner();
    let mut grpc_items = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        grpc_items.push(json_of(&item));
    }
    let lines = http
        .open("/v1/audit/export?upToSequence=6", t)
        .await
        .rest(Duration::from_secs(20))
        .await;
    let http_items: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(grpc_items.len() >= 6);
    // The closing signed checkpoint is made per export (its signature
    // covers the same head): everything before it is identical.
    let n = grpc_items.len();
    assert_eq!(http_items.len(), n);
    assert_eq!(http_items[..n - 1], grpc_items[..n - 1]);

    // An HTTP stream is counted under its gRPC method when its body ends,
    // and a refused HTTP call with its code (the
    // labels as the page writes them, sorted).
    let series = |m: &str, code: &str| {
        format!("attestd_rpc_requests_total{{code=\"{code}\",method=\"{m}\",service=\"attestd.v1.Audit\"}}")
    };
    let exports = f.server.metric(&series("ExportAudit", "OK"));
    assert!(exports >= 2, "the gRPC and the HTTP export: {exports}");
    let _ = http.get("/v1/audit/head", Some(MES_TOKEN)).await;
    assert_eq!(
        f.server
            .metric(&series("GetAuditHead", "PERMISSION_DENIED")),
        1,
        "{}",
        f.server.metrics()
    );

    // The result keys.
    let h = http.get("/v1/result-keys", None).await;
    let g = f
        .device
        .release()
        .get_result_keys(pb::GetResultKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.json(), json_of(&g));

    // The release gate: the same decision (each call is its own decision,
    // with its own id and time).
    let mes = f.server.client(Some(MES_TOKEN)).await;
    let g = mes
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: serial(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let body = format!("{{\"serial\": \"{}\"}}", serial(3));
    let h = http.post("/v1/release/check", Some(MES_TOKEN), &body).await;
    assert_eq!(h.status, 200, "{}", h.text());
    let per_call = ["decisionId", "decidedAt"];
    assert_eq!(
        without(h.json(), &per_call),
        without(json_of(&g), &per_call)
    );
    assert_eq!(h.json()["decision"], "DECISION_RELEASE");
    let body = format!("{{\"serials\": [\"{}\", \"NOPE-9\"]}}", serial(3));
    let h = http
        .post("/v1/release/check-batch", Some(MES_TOKEN), &body)
        .await;
    let g = mes
        .release()
        .check_release_batch(pb::CheckReleaseBatchRequest {
            serials: vec![serial(3), "NOPE-9".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let strip = |v: Value| -> Vec<Value> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| without(d.clone(), &per_call))
            .collect()
    };
    assert_eq!(strip(h.json()), strip(json_of(&g)));
    assert_eq!(strip(h.json()).len(), 2);

    // The same refusal: code, reason and message.
    let g = auditor
        .fleet()
        .get_device(pb::GetDeviceRequest {
            serial: "NOPE-1".into(),
        })
        .await
        .unwrap_err();
    let h = http.get("/v1/devices/NOPE-1", t).await;
    assert_eq!(h.status, 404);
    assert_eq!(h.json()["code"], "NOT_FOUND");
    assert_eq!(h.reason(), reason(&g));
    assert_eq!(h.json()["message"], g.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_sees_only_its_tenant_over_http() {
    let f = started().await;
    let http = Http::new(&f.server.addr);
    let serial = |i: usize| f.units[i].serial.clone();
    let t = Some(HOSPITAL_TOKEN);
    let listed: Vec<String> = http.get("/v1/devices", t).await.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![serial(0), serial(1)]);
    assert_eq!(
        http.get(&format!("/v1/devices/{}", serial(0)), t)
            .await
            .status,
        200
    );
    for i in [2, 3] {
        for path in [
            format!("/v1/devices/{}", serial(i)),
            format!("/v1/devices/{}/history", serial(i)),
        ] {
            let a = http.get(&path, t).await;
            assert_eq!(
                (a.status, a.reason().as_str()),
                (404, "DEVICE_NOT_FOUND"),
                "{path}"
            );
        }
    }
    let a = http.get("/v1/devices?filter.tenant=county", t).await;
    assert_eq!((a.status, a.reason().as_str()), (403, "TENANT_FORBIDDEN"));
    let s = http
        .get("/v1/fleet/summary?groupBy=SUMMARY_GROUP_SITE", t)
        .await
        .json();
    assert_eq!(s["total"], "2");
    let text = s.to_string();
    assert!(!text.contains("\"er\""), "another tenant's site: {text}");

    // The watch stream carries only the tenant's changes.
    let mut w = http.open("/v1/fleet/watch", t).await;
    assert_eq!(w.status, 200);
    for i in [2, 0] {
        f.admin
            .release()
            .set_quarantine(pb::SetQuarantineRequest {
                serial: serial(i),
                on: true,
                reason: "test".into(),
            })
            .await
            .unwrap();
    }
    let ev = w
        .next_event(Duration::from_secs(10))
        .await
        .expect("a change");
    let change: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(change["serial"], serial(0).as_str(), "{ev:?}");
    assert_eq!(change["newStatus"], "DEVICE_STATUS_QUARANTINED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_streams_as_events_in_order_and_resumes() {
    let f = started().await;
    let http = Http::new(&f.server.addr);
    let t = Some(AUDITOR_TOKEN);
    let start = http.get("/v1/devices", t).await.json()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut w = http
        .open(&format!("/v1/fleet/watch?afterCursor={start}"), t)
        .await;
    assert_eq!(w.status, 200);
    assert_eq!(w.headers["cache-control"], "no-store");
    for i in 0..3 {
        f.admin
            .release()
            .set_quarantine(pb::SetQuarantineRequest {
                serial: f.units[i].serial.clone(),
                on: true,
                reason: "test".into(),
            })
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = w
            .next_event(Duration::from_secs(10))
            .await
            .expect("a change");
        assert_eq!(ev.event, "change");
        let c: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(c["cursor"].as_str().unwrap(), ev.id);
        seen.push((
            ev.id.parse::<u64>().unwrap(),
            c["serial"].as_str().unwrap().to_owned(),
        ));
    }
    let ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless, in order: {ids:?}"
    );
    let serials: Vec<String> = seen.iter().map(|s| s.1.clone()).collect();
    assert_eq!(
        serials,
        (0..3)
            .map(|i| f.units[i].serial.clone())
            .collect::<Vec<_>>()
    );
    drop(w);

    // Resuming after the first gives exactly the later two.
    let mut w = http
        .open(&format!("/v1/fleet/watch?afterCursor={}", ids[0]), t)
        .await;
    for want in &ids[1..] {
        let ev = w
            .next_event(Duration::from_secs(10))
            .await
            .expect("a change");
        assert_eq!(ev.id, want.to_string());
    }
    assert!(w.next_event(Duration::from_millis(300)).await.is_none());
    drop(w);

    // EventSource's reconnect: Last-Event-ID stands for afterCursor.
    let mut w = http
        .open_with(
            "/v1/fleet/watch",
            t,
            &[("last-event-id", &ids[1].to_string())],
        )
        .await;
    let ev = w
        .next_event(Duration::from_secs(10))
        .await
        .expect("a change");
    assert_eq!(ev.id, ids[2].to_string());
    drop(w);

    // Watching from now says where now is, to resume from without a gap.
    let w = http.open("/v1/fleet/watch", t).await;
    assert_eq!(w.headers["attestd-cursor"], ids[2].to_string().as_str());

    // A cursor that is not a number is refused before the stream opens.
    let a = http.get("/v1/fleet/watch?afterCursor=abc", t).await;
    assert_eq!(a.status, 400, "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let f = started().await;
    let http = Http::new(&f.server.addr);
    let head = || async {
        f.auditor
            .audit()
            .get_audit_head(pb::GetAuditHeadRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sequence
    };
    let before = head().await;
    let m = Some(MES_TOKEN);
    for (body, reason) in [
        ("not json", "MALFORMED_MESSAGE"),
        ("[1, 2]", "MALFORMED_MESSAGE"),
        ("{\"serial\": 5}", "MALFORMED_MESSAGE"),
        ("{\"serial\": \"x\", \"nope\": 1}", "MALFORMED_MESSAGE"),
        ("{\"serial\": \"\"}", "FIELD_INVALID"),
    ] {
        let a = http.post("/v1/release/check", m, body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.reason(), reason, "{body}: {}", a.text());
    }
    let a = http
        .get(
            "/v1/devices?filter.statuses=DEVICE_STATUS_NOPE",
            Some(AUDITOR_TOKEN),
        )
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (400, "MALFORMED_MESSAGE"),
        "{}",
        a.text()
    );
    // A POST body that is not declared JSON, or fields in the query string.
    let a = http
        .send_with_type(
            "POST",
            "/v1/release/check",
            m,
            "text/plain",
            "{\"serial\": \"x\"}",
        )
        .await;
    assert_eq!(a.status, 415, "{}", a.text());
    let a = http
        .post("/v1/release/check?serial=x", m, "{\"serial\": \"x\"}")
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (400, "FIELD_INVALID"),
        "{}",
        a.text()
    );
    let a = http.get("/v1/devices?bogus=1", Some(AUDITOR_TOKEN)).await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (400, "FIELD_INVALID"),
        "{}",
        a.text()
    );
    let a = http
        .get("/v1/devices?pageToken=%ZZ", Some(AUDITOR_TOKEN))
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    // Declared larger than the request limit: 413 before the body is read.
    let a = raw_post_head(&f.server.addr, "/v1/release/check", MES_TOKEN, 5 << 20);
    assert!(a.starts_with("HTTP/1.1 413"), "{a}");
    assert!(a.contains("TOO_LARGE"), "{a}");
    // A wrong token: refused, nothing recorded.
    let a = http
        .post(
            "/v1/release/check",
            Some("not-a-token"),
            "{\"serial\": \"x\"}",
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(head().await, before, "refused requests left audit entries");
}

/// Sends only the head of a POST that declares `len` bytes of body and
/// returns the answer's text.
fn raw_post_head(addr: &str, path: &str, token: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The OpenAPI document as served.
async fn served_document(http: &Http) -> Value {
    let a = http.get("/openapi.json", None).await;
    assert_eq!(a.status, 200);
    a.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_routes_that_exist() {
    let server = TestServer::start();
    let http = Http::new(&server.addr);
    let doc = served_document(&http).await;
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.push((method.to_uppercase(), path.clone()));
            // Each documented operation is served: without credentials it
            // is either answered (public) or asks for them; an unknown
            // route would be ROLE_FORBIDDEN.
            let concrete = concrete(path, "NOPE-1");
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            if method == "get" && op["responses"]["200"]["content"]["text/event-stream"].is_object()
            {
                let s = http.open(&concrete, None).await;
                assert_eq!(s.status, 401, "{path}");
                continue;
            }
            let a = call(&http, &method.to_uppercase(), &concrete, None).await;
            if public {
                assert!(matches!(a.status, 200 | 204 | 301), "{path}: {}", a.status);
            } else {
                assert_eq!(
                    (a.status, a.reason().as_str()),
                    (401, "NO_CREDENTIALS"),
                    "{path}"
                );
                // The roles it documents are the matrix's.
                let rpc = REST_ROUTES.iter().find(|r| r.path == path).unwrap().rpc;
                let Some(Access::Roles(roles)) = access_for(rpc) else {
                    panic!("{path} is documented as protected");
                };
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                assert_eq!(op["x-attestd-roles"], serde_json::json!(names), "{path}");
            }
        }
    }
    let mut existing: Vec<(String, String)> = REST_ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .chain(
            HTTP_ROUTES
                .iter()
                .map(|(p, _)| ("GET".to_owned(), (*p).to_owned())),
        )
        .collect();
    documented.sort();
    existing.sort();
    assert_eq!(documented, existing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates() {
    let server = TestServer::start();
    let http = Http::new(&server.addr);
    let doc = served_document(&http).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    // An independent validator (the OpenAPI Initiative's schemas), from
    // PyPI; .ci/run installs it.
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "the validator is missing: `python3 -m pip install openapi-spec-validator` \
         (.ci/run does it): {text}"
    );
    assert!(
        out.status.success(),
        "the OpenAPI document is not valid: {text}"
    );
    assert!(text.contains("OK"), "{text}");
}
