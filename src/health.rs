//! `attestd health`: asks a running attestd whether it serves, through the
//! standard gRPC health service (`grpc.health.v1.Health/Check`, which needs
//! no principal). The container image's HEALTHCHECK and Kubernetes exec
//! probes run it, so the image needs no other tool (no shell, no
//! grpc_health_probe).
//!
//! Exit status: 0 when the server answers SERVING for the service asked
//! about, 1 for anything else (nothing listens, no answer in time, a TLS
//! failure, NOT_SERVING, a service the server does not know, unreadable
//! files), with one line on standard error saying which. A command line
//! clap cannot parse is a usage error (exit 2); probes count any non-zero
//! status as a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The listener a probe asks by default: where `attestd serve` listens
/// without configuration.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// PEM files larger than this are refused unread (a certificate chain or a
/// key is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Flags of `attestd health`. Each can also come from an `ATTESTD_HEALTH_*`
/// variable, so that an image's fixed HEALTHCHECK can be pointed at another
/// port or a TLS listener through the container's environment.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HealthArgs {
    /// The gRPC listener to ask, as HOST:PORT.
    #[arg(long, env = "ATTESTD_HEALTH_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// The health service to ask about: "" (the default) is the whole
    /// server; the API services answer by their names (attestd.v1.Fleet, ...).
    #[arg(long, env = "ATTESTD_HEALTH_SERVICE", default_value = "")]
    pub service: String,
    /// Speak TLS and trust the CA certificate(s) in this PEM file to have
    /// signed the server's certificate. Without it the probe speaks
    /// plaintext.
    #[arg(long, env = "ATTESTD_HEALTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (DNS name or IP
    /// address). Default: the host of --addr. Needs --ca-file.
    #[arg(long, env = "ATTESTD_HEALTH_SERVER_NAME")]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) to present, for a listener that
    /// wants one. Needs --ca-file and --key-file.
    #[arg(long, env = "ATTESTD_HEALTH_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(long, env = "ATTESTD_HEALTH_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Give up after this many seconds, connection and TLS handshake
    /// included (1 to 300).
    #[arg(
        long,
        env = "ATTESTD_HEALTH_TIMEOUT_SECS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub timeout_secs: u64,
}

/// Runs the probe and exits: 0 when SERVING, 1 otherwise with the reason on
/// one line of standard error.
pub(crate) fn run(args: HealthArgs) -> ! {
    let outcome = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(probe(&args)),
        Err(e) => Err(format!("cannot start the async runtime: {e}")),
    };
    let what = match args.service.as_str() {
        "" => args.addr.clone(),
        s => format!("{} service {s:?}", args.addr),
    };
    match outcome {
        Ok(()) => {
            println!("attestd health: {what}: SERVING");
            std::process::exit(0)
        }
        Err(reason) => {
            eprintln!("attestd health: {}: {}", one_line(&what), one_line(&reason));
            std::process::exit(1)
        }
    }
}

/// Asks the server once, within the timeout.
async fn probe(args: &HealthArgs) -> Result<(), String> {
    let endpoint = endpoint(args)?;
    let ask = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {}", error_chain(&e)))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await;
        match answer {
            Ok(r) => judge(r.into_inner().status),
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(format!("the server knows no service {:?}", args.service))
            }
            Err(s) => Err(format!(
                "the health check failed: {:?}: {}",
                s.code(),
                s.message()
            )),
        }
    };
    match tokio::time::timeout(Duration::from_secs(args.timeout_secs), ask).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} s", args.timeout_secs)),
    }
}

/// SERVING is healthy; any other status, known or not, is not.
fn judge(status: i32) -> Result<(), String> {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(format!("the server answers {}", other.as_str_name())),
        Err(_) => Err(format!("the server answers an unknown status {status}")),
    }
}

/// The endpoint to dial, with TLS when a CA file is given. Reads the PEM
/// files; touches no network. (No timeouts here: [`probe`] bounds the
/// whole exchange, connection and handshake included, with one.)
fn endpoint(args: &HealthArgs) -> Result<Endpoint, String> {
    let addr = args.addr.trim();
    if addr.is_empty()
        || addr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
    {
        return Err(format!("--addr wants HOST:PORT, got {addr:?}"));
    }
    let scheme = if args.ca_file.is_some() {
        "https"
    } else {
        "http"
    };
    let ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|_| format!("--addr wants HOST:PORT, got {addr:?}"))?;
    if ep.uri().port_u16().is_none() {
        return Err(format!(
            "--addr wants HOST:PORT (a port is needed), got {addr:?}"
        ));
    }
    let Some(ca_file) = &args.ca_file else {
        for (flag, set) in [
            ("--server-name", args.server_name.is_some()),
            ("--cert-file", args.cert_file.is_some()),
            ("--key-file", args.key_file.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{flag} is a TLS setting: give --ca-file too (the CA that signed the server's certificate)"
                ));
            }
        }
        return Ok(ep);
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read_pem(ca_file, "CERTIFICATE")?));
    if let Some(name) = &args.server_name {
        if name.is_empty() {
            return Err("--server-name is empty".into());
        }
        tls = tls.domain_name(name.clone());
    }
    match (&args.cert_file, &args.key_file) {
        (Some(cert), Some(key)) => {
            let cert = read_pem(cert, "CERTIFICATE")?;
            let key = read_pem(key, "PRIVATE KEY")?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        (Some(_), None) => return Err("--cert-file needs --key-file".into()),
        (None, Some(_)) => return Err("--key-file needs --cert-file".into()),
    }
    ep.tls_config(tls)
        .map_err(|e| format!("TLS settings: {}", error_chain(&e)))
}

/// Reads a PEM file that must hold at least one block whose label ends
/// with `label` (CERTIFICATE; PRIVATE KEY also matches RSA and EC keys).
fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(format!("{shown}: {len} bytes is too large for a PEM file"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if !found {
        return Err(format!("{shown}: no PEM {label} in it"));
    }
    Ok(bytes)
}

/// An error and its sources on one line, without repeats ("transport
/// error: tcp connect error: Connection refused (os error 111)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Control characters (newlines above all) become spaces: a probe's
/// reason is one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        health: HealthArgs,
    }

    fn args(extra: &[&str]) -> HealthArgs {
        let mut argv = vec!["health"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").health
    }

    #[test]
    fn only_serving_is_healthy() {
        assert_eq!(judge(ServingStatus::Serving as i32), Ok(()));
        for (status, says) in [
            (ServingStatus::NotServing as i32, "NOT_SERVING"),
            (ServingStatus::Unknown as i32, "UNKNOWN"),
            (ServingStatus::ServiceUnknown as i32, "SERVICE_UNKNOWN"),
            (42, "unknown status 42"),
            (-1, "unknown status -1"),
        ] {
            let err = judge(status).unwrap_err();
            assert!(err.contains(says), "{status}: {err}");
        }
    }

    #[test]
    fn addresses_that_are_not_host_and_port_are_refused_before_dialling() {
        for bad in [
            "",
            "   ",
            "127.0.0.1",
            "http://127.0.0.1:50051",
            "127.0.0.1:50051/x",
            "user@127.0.0.1:50051",
            "127.0.0.1:99999",
            "127.0.0.1:port",
            "[::1",
            "a b:1",
            "host:1\nx",
        ] {
            let mut a = args(&[]);
            a.addr = bad.into();
            let err = endpoint(&a).unwrap_err();
            assert!(err.contains("--addr"), "{bad:?}: {err}");
        }
        for good in [
            "127.0.0.1:50051",
            "[::1]:50051",
            "localhost:1",
            "attestd.ns.svc:50051",
        ] {
            let mut a = args(&[]);
            a.addr = good.into();
            assert!(endpoint(&a).is_ok(), "{good}");
        }
    }

    #[test]
    fn tls_settings_without_a_ca_are_refused() {
        for flags in [
            &["--server-name", "x"][..],
            &["--cert-file", "c.pem"],
            &["--key-file", "k.pem"],
        ] {
            let err = endpoint(&args(flags)).unwrap_err();
            assert!(err.contains("--ca-file"), "{flags:?}: {err}");
        }
    }

    #[test]
    fn pem_files_are_checked_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pem(&missing, "CERTIFICATE")
            .unwrap_err()
            .contains("missing.pem"));
        assert!(read_pem(&not_pem, "CERTIFICATE")
            .unwrap_err()
            .contains("no PEM CERTIFICATE"));
        assert!(read_pem(&key_only, "CERTIFICATE").is_err());
        assert!(read_pem(&key_only, "PRIVATE KEY").is_ok());
        let ec = dir.path().join("ec.pem");
        std::fs::write(
            &ec,
            "-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pem(&ec, "PRIVATE KEY").is_ok());

        let a = args(&["--ca-file", &not_pem.display().to_string()]);
        assert!(endpoint(&a).unwrap_err().contains("no PEM CERTIFICATE"));
    }

    #[test]
    fn reasons_fit_on_one_line() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
        let io = std::io::Error::other("line one\nline two");
        assert_eq!(one_line(&error_chain(&io)), "line one line two");
    }

    /// A CA certificate (PEM) in a file, made once for these tests.
    fn ca_file() -> &'static Path {
        static CA: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
        let (_, path) = CA.get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
            (dir, path)
        });
        path
    }

    proptest::proptest! {
        /// Whatever the address and server name, building the endpoint
        /// answers (Ok or a reason) and never panics; with TLS too.
        #[test]
        fn any_address_gets_an_answer_not_a_panic(addr in "\\PC{0,40}", name in "\\PC{0,24}") {
            let mut a = args(&[]);
            a.addr = addr;
            let plain = endpoint(&a);
            a.ca_file = Some(ca_file().to_path_buf());
            a.server_name = Some(name);
            let tls = endpoint(&a);
            // The address is judged the same way with or without TLS.
            if plain.is_err() {
                proptest::prop_assert!(tls.is_err());
            }
            a.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
            proptest::prop_assert!(endpoint(&a).is_err());
        }
    }
}
