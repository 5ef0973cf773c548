//! End-to-end over TLS, with certificates made here (rcgen): a station
//! authenticated by its client certificate (SAN URI) submits records, an MES
//! by certificate fingerprint reads, devices attest with no certificate at
//! all, a certificate from an unknown CA is refused at the handshake, no
//! certificate and no token is UNAUTHENTICATED on every protected RPC, and
//! the server's certificate is reloaded on SIGHUP and on file change.

use std::sync::Arc;
use std::time::Duration;

use crate::common::pki::{ca, leaf, Ca};
use crate::common::rpc::call;
use crate::common::*;
use attestd_client::core::ids::Digest;
use attestd_client::pb;
use attestd_server::auth::{Access, ROUTES};
use tonic::Code;

const STATION_URI: &str = "spiffe://factory.example/station/line1-prov";
const MES_URI_UNMAPPED: &str = "spiffe://factory.example/mes/unknown";

struct Pki {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server_ca: ca("attestd test server CA"),
            client_ca: ca("attestd test client CA"),
        };
        pki.issue_server_cert();
        std::fs::write(pki.path("client-ca.pem"), &pki.client_ca.pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes a fresh server certificate and key; returns its fingerprint.
    fn issue_server_cert(&self) -> Digest {
        let (cert, key, fp) = leaf(&self.server_ca, &["127.0.0.1", "localhost"], &[]);
        // Key first: a reload between the two writes fails (mismatch) and
        // keeps the previous pair, the next check picks up both.
        std::fs::write(self.path("server.key"), key).unwrap();
        std::fs::write(self.path("server.pem"), cert).unwrap();
        fp
    }

    fn options(&self, reload_check_secs: u64, principals: &str) -> Options {
        Options {
            extra_toml: format!(
                "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_files = [{:?}]\n\
                 reload_check_secs = {reload_check_secs}\n{principals}",
                self.path("server.pem"),
                self.path("server.key"),
                self.path("client-ca.pem"),
            ),
            tls_ca_pem: Some(self.server_ca.pem.clone().into_bytes()),
            log: Some("info"),
            ..Default::default()
        }
    }
}

/// A rustls client trusting the server CA, with a client certificate if
/// given.
fn client_config(server_ca_pem: &str, identity: Option<(&[u8], &[u8])>) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// Connects with rustls directly, trusting the server CA, optionally with a
/// client certificate; returns the server certificate's fingerprint once a
/// request/response round trip over the connection worked (an HTTP/2
/// preface is answered with the server's SETTINGS frame).
async fn raw_tls(
    addr: &str,
    server_ca_pem: &str,
    identity: Option<(&[u8], &[u8])>,
) -> Result<Digest, String> {
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = client_config(server_ca_pem, identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let fp = Digest::of(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    // With TLS 1.3 the server judges the client certificate after the
    // client's side of the handshake is done: the refusal arrives as an
    // alert on the first read.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    // A SETTINGS frame header: type 4.
    if buf[3] != 4 {
        return Err(format!("unexpected frame {buf:?}"));
    }
    Ok(fp)
}

fn principals(mes_fingerprint: &Digest) -> String {
    // The fingerprint written the way openssl prints it (upper case, colons).
    let colons = mes_fingerprint
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "\n[[principals]]\nname = \"station-by-cert\"\nrole = \"station\"\nstation_id = \"line1-prov\"\n\
         cert_uri = \"{STATION_URI}\"\n\
         \n[[principals]]\nname = \"mes-by-cert\"\nrole = \"mes\"\ncert_sha256 = \"{colons}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_by_certificate_mes_by_fingerprint_devices_without_certificates() {
    let pki = Pki::new();
    let (st_cert, st_key, _) = leaf(&pki.client_ca, &["line1-prov"], &[STATION_URI]);
    let (mes_cert, mes_key, mes_fp) = leaf(&pki.client_ca, &["mes"], &[MES_URI_UNMAPPED]);
    let server = TestServer::start_with(pki.options(60, &principals(&mes_fp)));

    // Bearer tokens keep working over TLS (no client certificate).
    let admin = server.admin().await;
    let station_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;

    // The station, by its certificate alone, submits a record.
    let station = server
        .client_with_cert(None, Some((st_cert.clone(), st_key.clone())))
        .await
        .unwrap();
    let unit =
        attestd_client::SigningKey::generate(attestd_client::core::keys::KeyAlg::Es256).unwrap();
    provision(
        &station,
        "line1-prov",
        &station_key,
        1,
        "PM200-000001",
        &unit,
    )
    .await
    .expect("the certificate's station submits a record");
    // ... and only as itself: a record signed for another station is refused.
    let other = provision(
        &station,
        "line2-prov",
        &station_key,
        1,
        "PM200-000002",
        &unit,
    )
    .await;
    assert!(other.is_err(), "{other:?}");

    // A device attests with no certificate and no token.
    let device = server.client(None).await;
    let r = boot(&device, "PM200-000001", &unit, 1)
        .await
        .expect("evidence");
    assert!(!r.evidence_id.is_empty());

    // The MES, by fingerprint, may check releases but not register stations.
    let mes = server
        .client_with_cert(None, Some((mes_cert, mes_key)))
        .await
        .unwrap();
    mes.release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-000001".into(),
            ..Default::default()
        })
        .await
        .expect("mes by fingerprint");
    assert_rejected(
        mes.admin()
            .list_stations(pb::ListStationsRequest::default())
            .await,
        Code::PermissionDenied,
        "ROLE_FORBIDDEN",
    );

    // The audit trail names the certificate principals.
    let entries = audit_entries(&server.client(Some(AUDITOR_TOKEN)).await).await;
    let record = entries
        .iter()
        .find(|e| e.action == "record.provisioning")
        .expect("record entry");
    assert_eq!(record.principal, "station-by-cert");
    let decision = entries
        .iter()
        .find(|e| e.action == "release.decide")
        .expect("decision entry");
    assert_eq!(decision.principal, "mes-by-cert");

    // A token, when sent, decides: a bad one is refused even with a good
    // certificate.
    let both = server
        .client_with_cert(Some("not-a-token"), Some((st_cert, st_key)))
        .await
        .unwrap();
    assert_rejected(
        both.factory()
            .list_records(pb::ListRecordsRequest {
                serial: "PM200-000001".into(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "NO_CREDENTIALS",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_is_refused_at_the_handshake_and_unmapped_certificates_are_unauthenticated() {
    let pki = Pki::new();
    let stranger_ca = ca("someone else's CA");
    let (bad_cert, bad_key, _) = leaf(&stranger_ca, &["line1-prov"], &[STATION_URI]);
    let (unmapped_cert, unmapped_key, _) = leaf(&pki.client_ca, &["x"], &[MES_URI_UNMAPPED]);
    let (_, _, some_fp) = leaf(&pki.client_ca, &["mes"], &[]);
    let server = TestServer::start_with(pki.options(60, &principals(&some_fp)));

    // Raw rustls: our CA's client is answered; the stranger's is refused by
    // the server during the handshake, before any HTTP/2 is spoken.
    raw_tls(&server.addr, &pki.server_ca.pem, None)
        .await
        .expect("no client certificate is fine");
    let err = raw_tls(
        &server.addr,
        &pki.server_ca.pem,
        Some((&bad_cert, &bad_key)),
    )
    .await
    .expect_err("unknown CA must be refused");
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate") || err.contains("alert"),
        "{err}"
    );
    // Through the SDK the call fails at the transport, never reaching a handler.
    // (With TLS 1.3 the client may count the handshake done before the
    // server's alert arrives; then the first call fails instead.)
    if let Ok(c) = server
        .client_with_cert(None, Some((bad_cert.clone(), bad_key.clone())))
        .await
    {
        let s = c
            .factory()
            .list_records(pb::ListRecordsRequest::default())
            .await
            .unwrap_err();
        assert!(
            reason(&s).is_empty() && s.code() != Code::Ok,
            "an attestd handler answered: {s:?}"
        );
    }
    let log = server.log();
    assert!(log.contains("TLS handshake refused"), "{log}");

    // A certificate from our CA that names no principal: UNAUTHENTICATED.
    let unmapped = server
        .client_with_cert(None, Some((unmapped_cert, unmapped_key)))
        .await
        .unwrap();
    assert_rejected(
        unmapped
            .fleet()
            .get_fleet_summary(pb::GetFleetSummaryRequest::default())
            .await,
        Code::Unauthenticated,
        "NO_CREDENTIALS",
    );

    // No certificate and no token: UNAUTHENTICATED on every protected RPC,
    // public ones answer.
    let anonymous = server.client(None).await;
    let mut protected = 0;
    for (path, access) in ROUTES {
        let s = call(&anonymous, path).await;
        match access {
            Access::Public => assert_ne!(s.code(), Code::Unauthenticated, "{path}"),
            Access::Roles(_) => {
                assert_eq!(
                    (s.code(), reason(&s).as_str()),
                    (Code::Unauthenticated, "NO_CREDENTIALS"),
                    "{path}: {s:?}"
                );
                protected += 1;
            }
        }
    }
    assert!(protected >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_on_sighup_and_on_file_change_and_bad_files_keep_the_old_one() {
    let pki = Pki::new();
    let first = {
        let (_, _, fp) = leaf(&pki.client_ca, &["mes"], &[]);
        fp
    };
    // Long check interval first: only SIGHUP can reload.
    let server = TestServer::start_with(pki.options(3600, &principals(&first)));
    let original = raw_tls(&server.addr, &pki.server_ca.pem, None)
        .await
        .unwrap();

    let second = pki.issue_server_cert();
    assert_ne!(second, original);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut seen = original;
    for _ in 0..100 {
        seen = raw_tls(&server.addr, &pki.server_ca.pem, None)
            .await
            .unwrap();
        if seen == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, second, "SIGHUP did not reload the certificate");

    // Broken files: the reload fails loudly and the served certificate stays.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut logged = false;
    for _ in 0..100 {
        if server.log().contains("TLS reload failed") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged, "{}", server.log());
    assert_eq!(
        raw_tls(&server.addr, &pki.server_ca.pem, None)
            .await
            .unwrap(),
        second
    );
    // The SDK still works through it, end to end.
    server
        .admin()
        .await
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .expect("a call over TLS");
    drop(server);

    // A one-second check interval: a changed file is picked up without a signal.
    let pki = Pki::new();
    let server = TestServer::start_with(pki.options(1, &principals(&first)));
    let original = raw_tls(&server.addr, &pki.server_ca.pem, None)
        .await
        .unwrap();
    let third = pki.issue_server_cert();
    let mut seen = original;
    for _ in 0..100 {
        seen = raw_tls(&server.addr, &pki.server_ca.pem, None)
            .await
            .unwrap();
        if seen == third {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, third, "a changed certificate file was not reloaded");
}

#[test]
fn plaintext_on_a_network_address_is_refused_without_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("attestd.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"0.0.0.0:0\"\ndata_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    // Refused before anything binds.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestd"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve plaintext"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing may be created");
}

#[test]
fn the_dependency_graph_has_exactly_one_crypto_provider() {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
    )
    .unwrap();
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(packages.contains(&"ring"), "ring is the provider");
    for other in [
        "aws-lc-rs",
        "aws-lc-sys",
        "aws-lc-fips-sys",
        "openssl",
        "openssl-sys",
    ] {
        assert!(!packages.contains(&other), "{other} is in Cargo.lock");
    }
}

/// Sends one HTTP/1.1 request over TLS (ALPN http/1.1), with a client
/// certificate if given, and returns the whole answer as text.
async fn https(
    addr: &str,
    server_ca_pem: &str,
    identity: Option<(&[u8], &[u8])>,
    request: &str,
) -> String {
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = client_config(server_ca_pem, identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .expect("an answer")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_over_tls_takes_the_same_certificates_and_tokens() {
    let pki = Pki::new();
    let (mes_cert, mes_key, mes_fp) = leaf(&pki.client_ca, &["mes"], &[MES_URI_UNMAPPED]);
    let server = TestServer::start_with(pki.options(60, &principals(&mes_fp)));
    let addr = &server.addr;
    let post = |auth: &str| {
        format!(
            "POST /v1/release/check HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 25\r\n\r\n{{\"serial\": \"PM200-00009\"}}"
        )
    };
    // The MES by its certificate alone: the gate answers (HOLD, not enrolled).
    let a = https(
        addr,
        &pki.server_ca.pem,
        Some((&mes_cert, &mes_key)),
        &post(""),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        a.contains("DECISION_HOLD") && a.contains("NOT_ENROLLED"),
        "{a}"
    );
    // By token, without a certificate.
    let a = https(
        addr,
        &pki.server_ca.pem,
        None,
        &post(&format!("Authorization: Bearer {MES_TOKEN}\r\n")),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    // Neither: refused, as over gRPC.
    let a = https(addr, &pki.server_ca.pem, None, &post("")).await;
    assert!(a.starts_with("HTTP/1.1 401"), "{a}");
    assert!(a.contains("NO_CREDENTIALS"), "{a}");
    // The certificate's principal may not read the audit chain.
    let get = format!("GET /v1/audit/head HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let a = https(addr, &pki.server_ca.pem, Some((&mes_cert, &mes_key)), &get).await;
    assert!(a.starts_with("HTTP/1.1 403"), "{a}");
    assert!(a.contains("ROLE_FORBIDDEN"), "{a}");
}
