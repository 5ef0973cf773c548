//! A small HTTP/1.1 client for the HTTP/JSON API tests (hyper's), with a
//! bound on every wait.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Longest wait for one answer.
const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// An answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The attestd reason of a refusal ("" if none).
    pub(crate) fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_owned()
    }
}

/// An open streaming answer.
pub(crate) struct Stream {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buf: String,
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub id: String,
    pub event: String,
    pub data: String,
}

impl Stream {
    /// The next event (comments skipped), or None if the stream ended or
    /// nothing came within `wait`.
    pub(crate) async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event {
                    id: String::new(),
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = v.into();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.into();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                Ok(Some(Err(e))) => panic!("stream failed: {e}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The rest of the body (until it ends; bounded by `wait`).
    pub(crate) async fn rest(mut self, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                Ok(Some(Err(e))) => panic!("stream failed: {e}"),
                Ok(None) => return self.buf,
                Err(_) => panic!("the stream did not end within {wait:?}"),
            }
        }
    }
}

impl Http {
    /// A client of the server at `addr` (host:port).
    pub(crate) fn new(addr: &str) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> http::Request<Full<Bytes>> {
        self.request_with(method, path, token, body, &[])
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() && !headers.iter().any(|(k, _)| *k == "content-type") {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .unwrap()
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        self.send_req(self.request(method, path, token, body), method, path)
            .await
    }

    /// A request with a body of another content type.
    pub(crate) async fn send_with_type(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> Answer {
        let req = self.request_with(
            method,
            path,
            token,
            Some(body),
            &[("content-type", content_type)],
        );
        self.send_req(req, method, path).await
    }

    async fn send_req(&self, req: http::Request<Full<Bytes>>, method: &str, path: &str) -> Answer {
        let fut = async {
            let resp = self.client.request(req).await.expect("HTTP request");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("HTTP body").to_bytes();
            Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: body.to_vec(),
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WAIT:?}"))
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send("GET", path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Answer {
        self.send("POST", path, token, Some(body)).await
    }

    /// Opens a streaming GET: the headers are in, the body is read later.
    pub(crate) async fn open(&self, path: &str, token: Option<&str>) -> Stream {
        self.open_with(path, token, &[]).await
    }

    /// Opens a streaming GET with extra headers.
    pub(crate) async fn open_with(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Stream {
        let req = self.request_with("GET", path, token, None, headers);
        let resp = tokio::time::timeout(WAIT, self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no headers within {WAIT:?}"))
            .expect("HTTP request");
        let (parts, body) = resp.into_parts();
        Stream {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            buf: String::new(),
        }
    }
}

/// `path` with `{name}` segments replaced by `value`.
pub(crate) fn concrete(pattern: &str, value: &str) -> String {
    pattern
        .split('/')
        .map(|s| if s.starts_with('{') { value } else { s })
        .collect::<Vec<_>>()
        .join("/")
}
