//! End-to-end: `attestd health`, the probe that container health checks and
//! Kubernetes run. Exit 0 when the server answers SERVING; exit 1 with one
//! line on standard error when nothing listens, nothing answers in time,
//! the service is unknown, TLS fails or the command line makes no sense.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pki::{ca, leaf};
use common::*;

/// `attestd health` with these flags and no ATTESTD_HEALTH_* from the
/// environment of the test run.
fn health(flags: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_attestd"));
    c.arg("health").args(flags).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ATTESTD_HEALTH_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run attestd health")
}

/// Asserts exit 1 with exactly one line on stderr containing `says`.
#[track_caller]
fn assert_unhealthy(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.ends_with('\n'), "{err:?}");
    assert!(err.contains(says), "{says:?} not in {err:?}");
}

#[track_caller]
fn assert_healthy(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
}

/// A loopback port that nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn health_exits_0_against_a_serving_server_and_1_when_nothing_listens() {
    let server = TestServer::start();
    assert_healthy(&run(health(&["--addr", &server.addr])));
    // An API service by name, as the health service knows it.
    assert_healthy(&run(health(&[
        "--addr",
        &server.addr,
        "--service",
        "attestd.v1.Fleet",
    ])));
    // The default address comes from the environment too (an image's fixed
    // HEALTHCHECK is pointed elsewhere that way).
    let mut c = health(&[]);
    c.env("ATTESTD_HEALTH_ADDR", &server.addr);
    assert_healthy(&run(c));

    // A service the server does not know.
    assert_unhealthy(
        &run(health(&[
            "--addr",
            &server.addr,
            "--service",
            "no.such.Service",
        ])),
        "no service \"no.such.Service\"",
    );

    // Nothing listens.
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = run(health(&["--addr", &addr]));
    assert_unhealthy(&out, "cannot connect");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once"
    );

    // The server stopped: the same probe that passed now fails.
    let addr = server.addr.clone();
    drop(server);
    assert_unhealthy(&run(health(&["--addr", &addr])), "cannot connect");
}

#[test]
fn health_gives_up_after_its_timeout_when_the_peer_never_answers() {
    // Accepts TCP connections (the kernel does, from the backlog) but never
    // speaks HTTP/2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = run(health(&["--addr", &addr, "--timeout-secs", "1"]));
    let took = started.elapsed();
    assert_unhealthy(&out, "no answer within 1 s");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(silent);
}

#[test]
fn health_refuses_senseless_input_with_one_line() {
    for (flags, says) in [
        (&["--addr", "not an address"][..], "--addr wants HOST:PORT"),
        (&["--addr", "127.0.0.1"], "a port is needed"),
        (
            &["--addr", "http://127.0.0.1:50051"],
            "--addr wants HOST:PORT",
        ),
        (&["--addr", "127.0.0.1:70000"], "--addr wants HOST:PORT"),
        (&["--server-name", "x"], "give --ca-file too"),
        (&["--ca-file", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (&["--ca-file", "/dev/null"], "no PEM CERTIFICATE"),
    ] {
        assert_unhealthy(&run(health(flags)), says);
    }
    // What clap cannot parse is a usage error (exit 2), never a panic.
    for flags in [
        &["--timeout-secs", "0"][..],
        &["--timeout-secs", "-1"],
        &["--no-such-flag"],
    ] {
        let out = run(health(flags));
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn health_over_tls_checks_the_server_certificate_and_can_present_one() {
    let server_ca = ca("health test server CA");
    let client_ca = ca("health test client CA");
    let stranger = ca("someone else's CA");
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let (cert, key, _) = leaf(&server_ca, &["127.0.0.1", "attestd.example"], &[]);
    std::fs::write(path("server.pem"), cert).unwrap();
    std::fs::write(path("server.key"), key).unwrap();
    std::fs::write(path("server-ca.pem"), &server_ca.pem).unwrap();
    std::fs::write(path("client-ca.pem"), &client_ca.pem).unwrap();
    std::fs::write(path("stranger-ca.pem"), &stranger.pem).unwrap();
    let (ccert, ckey, _) = leaf(&client_ca, &["probe"], &[]);
    std::fs::write(path("probe.pem"), ccert).unwrap();
    std::fs::write(path("probe.key"), ckey).unwrap();
    let (scert, skey, _) = leaf(&stranger, &["probe"], &[]);
    std::fs::write(path("stranger.pem"), scert).unwrap();
    std::fs::write(path("stranger.key"), skey).unwrap();

    let server = TestServer::start_with(Options {
        extra_toml: format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_files = [{:?}]\n",
            path("server.pem"),
            path("server.key"),
            path("client-ca.pem"),
        ),
        tls_ca_pem: Some(server_ca.pem.clone().into_bytes()),
        ..Default::default()
    });
    let ca_file = path("server-ca.pem");
    let tls = |extra: &[&str]| {
        let mut flags = vec!["--addr", &server.addr, "--ca-file", &ca_file];
        flags.extend_from_slice(extra);
        run(health(&flags))
    };

    // The certificate names 127.0.0.1 (the host of --addr) and
    // attestd.example.
    assert_healthy(&tls(&[]));
    assert_healthy(&tls(&["--server-name", "attestd.example"]));
    // A client certificate the server's client CA signed.
    let (pem, key) = (path("probe.pem"), path("probe.key"));
    assert_healthy(&tls(&["--cert-file", &pem, "--key-file", &key]));

    // A name the certificate does not carry.
    assert_unhealthy(&tls(&["--server-name", "other.example"]), "cannot connect");
    // A CA that did not sign the server's certificate.
    let stranger_ca = path("stranger-ca.pem");
    assert_unhealthy(
        &run(health(&["--addr", &server.addr, "--ca-file", &stranger_ca])),
        "cannot connect",
    );
    // A client certificate from a CA the server does not trust: refused at
    // the handshake.
    let (pem, key) = (path("stranger.pem"), path("stranger.key"));
    let out = tls(&["--cert-file", &pem, "--key-file", &key]);
    assert_eq!(out.status.code(), Some(1));
    // Half an identity.
    assert_unhealthy(&tls(&["--cert-file", &path("probe.pem")]), "--key-file");
    // Plaintext against the TLS listener.
    assert_unhealthy(
        &run(health(&["--addr", &server.addr, "--timeout-secs", "2"])),
        "",
    );
    // The image's HEALTHCHECK gets the same through the environment.
    let mut c = health(&[]);
    c.env("ATTESTD_HEALTH_ADDR", &server.addr)
        .env("ATTESTD_HEALTH_CA_FILE", &ca_file)
        .env("ATTESTD_HEALTH_SERVER_NAME", "attestd.example");
    assert_healthy(&run(c));
}
