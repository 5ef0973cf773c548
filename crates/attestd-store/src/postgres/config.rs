//! Where the PostgreSQL backend connects, and the pool it connects with.
//!
//! TLS to the database is rustls with the *ring* provider, like every other
//! TLS connection of attestd (one crypto provider per process): the
//! `MakeTlsConnect` is tokio-postgres-rustls without its default features,
//! so it names no provider of its own; the `ClientConfig` built here hands
//! it ring explicitly. Cargo.lock holds no aws-lc-rs (a test checks).
//!
//! The URL may carry a password. It never appears in a log line, an error
//! or `Debug` output: those show [`redact_url`]'s form.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, PoolError, RecyclingMethod, Runtime,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error_chain;
use super::url::{redact_url, scrub, take_sslmode, url_password, SslRequest};
use crate::StoreError;

/// The connection pool the backend draws from.
pub use deadpool_postgres::Pool;

/// A CA file larger than this is a mistake (a whole disk image, a log).
const MAX_CA_FILE: u64 = 1024 * 1024;

/// How to reach the database.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// `postgres://user[:password]@host[:port]/dbname[?sslmode=...]` or the
    /// `key=value` form. `sslmode=require`, `verify-ca` or `verify-full`
    /// need `ca_file`.
    pub url: String,
    /// Connections kept open at most (default 16).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PEM file of the CA(s) that sign the database server's certificate.
    /// When set, every connection is TLS, the server's chain is verified
    /// against these CAs alone and its name against the URL's host (what
    /// libpq calls `verify-full`). When unset, connections are plain TCP.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long opening one connection may take (default 5 s); also how
    /// long a request waits for a free connection.
    #[serde(
        default = "default_connect_timeout",
        rename = "connect_timeout_secs",
        deserialize_with = "seconds"
    )]
    pub connect_timeout: Duration,
}

fn default_pool_size() -> usize {
    16
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    match Duration::try_from_secs_f64(secs) {
        Ok(t) if !t.is_zero() => Ok(t),
        _ => Err(serde::de::Error::custom(format!(
            "connect_timeout_secs must be a positive number of seconds, not {secs}"
        ))),
    }
}

impl PgConfig {
    /// `url` with the default pool size and timeout, plain TCP.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: default_pool_size(),
            ca_file: None,
            connect_timeout: default_connect_timeout(),
        }
    }
}

/// Shows the URL without its password.
impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Opens the pool and one connection, so that a wrong URL, password, CA or
/// an unreachable server fails at start rather than at the first request.
/// Every failure is [`StoreError::Unavailable`], with the URL shown without
/// its password.
pub async fn connect(cfg: &PgConfig) -> Result<Pool, StoreError> {
    connect_as(cfg, Role::Shared).await
}

/// The unit-context readers' own `size` connections (beside `pool_size`),
/// set to run every prepared statement with its generic plan.
///
/// The context read (`super::context::UNIT_CONTEXTS`, `serial = ANY($1)`)
/// is prepared once per connection, but PostgreSQL's default
/// (`plan_cache_mode = auto`) kept planning it again at most executions on
/// some connections, whichever plan the first five executions happened to
/// favour: `pg_stat_statements` counted 7,039 plans in 17,772 executions
/// over one 100k-unit boot storm, the planning as long as the execution.
/// Its one generic plan (the primary key, probed per serial) is the plan
/// for every batch. The setting is per connection, so the other statements,
/// whose filters can be rare values (a status, a tenant), keep PostgreSQL's
/// choice on the shared pool.
pub(super) async fn connect_readers(cfg: &PgConfig, size: usize) -> Result<Pool, StoreError> {
    connect_as(cfg, Role::Readers(size)).await
}

/// [`open`], its failure `Unavailable` with the URL's password scrubbed.
async fn connect_as(cfg: &PgConfig, role: Role) -> Result<Pool, StoreError> {
    let mut secrets: Vec<String> = url_password(&cfg.url).into_iter().collect();
    open(cfg, &mut secrets, role)
        .await
        .map_err(|msg| StoreError::Unavailable(scrub(msg, &secrets)))
}

/// Which pool [`open`] builds.
#[derive(Clone, Copy)]
enum Role {
    /// The store's pool: `pool_size` connections, the server's plan choice.
    Shared,
    /// The context readers' connections (see [`connect_readers`]).
    Readers(usize),
}

/// Checks the settings as `connect` would, without connecting: the URL,
/// its sslmode, the pool size and the CA file. For `attestd check-config`.
pub fn check(cfg: &PgConfig) -> Result<(), String> {
    let mut secrets: Vec<String> = url_password(&cfg.url).into_iter().collect();
    settings(cfg, &mut secrets)
        .map(|_| ())
        .map_err(|msg| scrub(msg, &secrets))
}

/// The client configuration and TLS settings `cfg` asks for.
fn settings(
    cfg: &PgConfig,
    secrets: &mut Vec<String>,
) -> Result<(tokio_postgres::Config, Option<rustls::ClientConfig>), String> {
    let shown = redact_url(&cfg.url);
    if cfg.pool_size == 0 {
        return Err("PostgreSQL pool_size must be at least 1".to_owned());
    }
    let (url, mode) = take_sslmode(&cfg.url);
    let mode = match mode.as_deref().map(SslRequest::parse) {
        None => SslRequest::Prefer,
        Some(Some(m)) => m,
        Some(None) => {
            return Err(format!(
                "the database URL {shown} has an unknown sslmode={} (disable, prefer, \
                 require, verify-ca or verify-full)",
                mode.unwrap_or_default()
            ))
        }
    };
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("the database URL {shown} is invalid: {}", error_chain(&e)))?;
    if let Some(p) = pg.get_password() {
        secrets.push(String::from_utf8_lossy(p).into_owned());
    }
    // An sslmode written `sslmode = require` (spaces) reached tokio-postgres.
    let mode = match (mode, pg.get_ssl_mode()) {
        (SslRequest::Prefer, SslMode::Require) => SslRequest::Require,
        (SslRequest::Prefer, SslMode::Disable) => SslRequest::Disable,
        (m, _) => m,
    };
    let tls = match (mode, cfg.ca_file.as_deref()) {
        (m, None) if m.wants_tls() => {
            return Err(format!(
                "the database URL {shown} asks for TLS (sslmode={}) but no ca_file is \
                 configured: set ca_file to the PEM file of the CA that signed the \
                 database server's certificate, or remove sslmode from the URL for \
                 plain TCP",
                m.name()
            ))
        }
        (SslRequest::Disable, Some(ca)) => {
            return Err(format!(
                "the database URL {shown} says sslmode=disable but ca_file ({}) is \
                 configured: remove one of them",
                ca.display()
            ))
        }
        (_, None) => None,
        // A CA was given, so TLS is wanted: with `prefer` (libpq's default)
        // a server without TLS would get a plaintext connection instead,
        // which defeats the CA. Every mode here verifies chain and name.
        (_, Some(ca)) => Some(client_tls(ca)?),
    };
    pg.connect_timeout(cfg.connect_timeout);
    Ok((pg, tls))
}

async fn open(cfg: &PgConfig, secrets: &mut Vec<String>, role: Role) -> Result<Pool, String> {
    let shown = redact_url(&cfg.url);
    let (mut pg, tls) = settings(cfg, secrets)?;
    let size = match role {
        Role::Shared => cfg.pool_size,
        Role::Readers(n) => {
            // Added to the URL's own `options`, if it has any.
            let mut opts = pg
                .get_options()
                .map(|o| format!("{o} "))
                .unwrap_or_default();
            opts.push_str("-c plan_cache_mode=force_generic_plan");
            pg.options(&opts);
            n
        }
    };
    let manager_config = ManagerConfig {
        // The pool drops connections tokio-postgres knows are closed; a
        // connection that died silently fails its next query, which the
        // caller sees as Unavailable and retries. Verifying each checkout
        // would cost a round trip per request.
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &tls {
        Some(client) => {
            pg.ssl_mode(SslMode::Require);
            Manager::from_config(pg, MakeRustlsConnect::new(client.clone()), manager_config)
        }
        None => {
            pg.ssl_mode(SslMode::Disable);
            Manager::from_config(pg, NoTls, manager_config)
        }
    };
    let t = Some(cfg.connect_timeout);
    let replan_timeout = cfg.connect_timeout;
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .create_timeout(t)
        .wait_timeout(t)
        .recycle_timeout(t)
        .post_recycle(Hook::async_fn(move |client, metrics| {
            Box::pin(async move {
                if !replan_due(metrics.recycle_count) {
                    return Ok(());
                }
                // Bounded like every other wait for the database: a
                // connection that died silently must not hold the checkout.
                match tokio::time::timeout(replan_timeout, client.batch_execute("DISCARD PLANS"))
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a PostgreSQL connection failed to plan again; it is closed");
                        Err(HookError::Backend(e))
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?replan_timeout, "a PostgreSQL connection did not answer DISCARD PLANS; it is closed");
                        Err(HookError::message("DISCARD PLANS timed out"))
                    }
                }
            })
        }))
        .build()
        .map_err(|e| format!("building the PostgreSQL pool: {e}"))?;
    match pool.get().await {
        Ok(_) => {}
        Err(PoolError::Backend(e)) => {
            return Err(format!("connecting to {shown}: {}", error_chain(&e)));
        }
        Err(PoolError::Timeout(_)) => {
            return Err(format!(
                "connecting to {shown}: no connection within {:?}",
                cfg.connect_timeout
            ));
        }
        Err(e) => return Err(format!("connecting to {shown}: {e}")),
    }
    if matches!(role, Role::Shared) {
        tracing::info!(
            url = %shown,
            pool_size = cfg.pool_size,
            tls = tls.is_some(),
            "connected to PostgreSQL"
        );
    }
    Ok(pool)
}

/// Uses of a connection after which it plans its statements again.
///
/// A connection keeps a prepared statement's plan until something changes
/// the tables' definitions or statistics (PostgreSQL invalidates plans
/// when a table is vacuumed or analyzed). A plan made while a table was
/// nearly empty (a new deployment; `challenges` before the fleet's first
/// boots) scans the whole table, and stays in use as the table grows until
/// autovacuum next reaches it. Measured on a storm after `challenges` was
/// emptied as provisioning leaves it (100,000 units, two 15 s phases): the
/// nonce update scanned the table 3,070 times (58 million rows read) and
/// PostgreSQL spent 481-726 us per boot; with this, 169 scans (1.5 million
/// rows) and 269-283 us (BENCHMARKS.md, "plans made on empty tables").
/// `DISCARD PLANS` after every this many uses lets the plans follow the
/// tables: a table grows only by writes, and writes come through uses.
/// Planning again costs each connection a few plannings per statement, once
/// per this many uses (every few seconds under a storm). Prepared
/// statements stay prepared.
pub(super) const REPLAN_EVERY: usize = 250;

/// Whether a connection plans again before this checkout, given how many
/// times it was recycled before (deadpool counts a recycle after its
/// hooks; a new connection is not recycled): after 250, 500, ... earlier
/// recycles, i.e. every [`REPLAN_EVERY`] reuses.
fn replan_due(recycle_count: usize) -> bool {
    recycle_count > 0 && recycle_count.is_multiple_of(REPLAN_EVERY)
}

/// rustls with the ring provider, trusting only the CAs in `ca_file`.
fn client_tls(ca_file: &Path) -> Result<rustls::ClientConfig, String> {
    let shown = ca_file.display();
    let size = std::fs::metadata(ca_file)
        .map_err(|e| format!("ca_file {shown}: {e}"))?
        .len();
    if size > MAX_CA_FILE {
        return Err(format!(
            "ca_file {shown}: {size} bytes, more than a CA file holds"
        ));
    }
    let pem = std::fs::read(ca_file).map_err(|e| format!("ca_file {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("ca_file {shown}: no CERTIFICATE in the file"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| format!("ca_file {shown}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret";

    #[test]
    fn connections_plan_again_every_replan_every_reuses() {
        // `recycle_count` as the hook sees it: reuses before this one.
        let due: Vec<usize> = (0..=3 * REPLAN_EVERY).filter(|&n| replan_due(n)).collect();
        assert_eq!(due, vec![REPLAN_EVERY, 2 * REPLAN_EVERY, 3 * REPLAN_EVERY]);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let cfg = PgConfig::new("postgres://postgres:s3cret@127.0.0.1:1/x");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("postgres:***@"), "{debug}");
    }

    #[test]
    fn the_file_shape_has_defaults_and_refuses_unknown_keys() {
        let cfg: PgConfig = serde_json::from_str(r#"{"url": "postgres://h/x"}"#).unwrap();
        assert_eq!(cfg.pool_size, 16);
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert!(cfg.ca_file.is_none());
        let cfg: PgConfig =
            serde_json::from_str(r#"{"url": "postgres://h/x", "connect_timeout_secs": 1.5}"#)
                .unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        let err = serde_json::from_str::<PgConfig>(r#"{"url": "u", "pool_sise": 3}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("pool_sise"), "{err}");
        let err = serde_json::from_str::<PgConfig>(r#"{"url": "u", "connect_timeout_secs": 0}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("positive"), "{err}");
    }

    fn unavailable(r: Result<Pool, StoreError>) -> String {
        match r {
            Err(StoreError::Unavailable(msg)) => msg,
            Err(e) => panic!("expected Unavailable, got {e:?}"),
            Ok(_) => panic!("expected Unavailable, got a pool"),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_within_the_timeout_and_hides_the_password() {
        // Port 1 on loopback: nothing listens there, so the connection is refused.
        let mut cfg = PgConfig::new("postgres://postgres:s3cret@127.0.0.1:1/x");
        cfg.connect_timeout = Duration::from_secs(2);
        let started = std::time::Instant::now();
        let msg = unavailable(connect(&cfg).await);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!msg.contains(SECRET), "{msg}");
        assert!(msg.contains("127.0.0.1:1"), "says where: {msg}");
        assert!(msg.contains("postgres:***@"), "{msg}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
        // Accepts TCP and then says nothing: only the timeout ends the wait.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut cfg = PgConfig::new(format!("postgres://postgres:s3cret@{addr}/x"));
        cfg.connect_timeout = Duration::from_millis(500);
        let started = std::time::Instant::now();
        let msg = unavailable(connect(&cfg).await);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(!msg.contains(SECRET), "{msg}");
        hold.abort();
    }

    #[tokio::test]
    async fn tls_modes_without_a_ca_file_are_refused() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let cfg = PgConfig::new(format!(
                "postgres://postgres:s3cret@127.0.0.1:5432/postgres?sslmode={mode}"
            ));
            let msg = unavailable(connect(&cfg).await);
            assert!(msg.contains(&format!("sslmode={mode}")), "{msg}");
            assert!(msg.contains("ca_file"), "{msg}");
            assert!(!msg.contains(SECRET), "{msg}");
        }
        let cfg = PgConfig::new("host=127.0.0.1 user=postgres sslmode=require");
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("ca_file"), "{msg}");
    }

    #[tokio::test]
    async fn contradictory_or_broken_tls_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = PgConfig::new("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable");
        cfg.ca_file = Some(dir.path().join("ca.pem"));
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("sslmode=disable"), "{msg}");

        cfg.url = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("ca.pem"), "names the missing file: {msg}");

        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("no CERTIFICATE"), "{msg}");

        cfg.url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=maybe".to_owned();
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("unknown sslmode=maybe"), "{msg}");

        cfg.url = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
        cfg.ca_file = None;
        cfg.pool_size = 0;
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("pool_size"), "{msg}");
    }

    /// A TLS front for the test server, as a TLS-terminating PostgreSQL
    /// would be: answers the client's SSLRequest with `S`, completes the
    /// handshake with `server`, then relays the plaintext to `backend`.
    /// Returns its address and the number of handshakes completed.
    async fn tls_front(
        server: rustls::ServerConfig,
        backend: std::net::SocketAddr,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = done.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    // SSLRequest: length 8, code 80877103.
                    let mut req = [0u8; 8];
                    tcp.read_exact(&mut req).await?;
                    assert_eq!(
                        req,
                        [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
                        "not an SSLRequest"
                    );
                    tcp.write_all(b"S").await?;
                    let mut tls = acceptor.accept(tcp).await?;
                    count.fetch_add(1, Ordering::SeqCst);
                    let mut db = tokio::net::TcpStream::connect(backend).await?;
                    tokio::io::copy_bidirectional(&mut tls, &mut db).await?;
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        (addr, done)
    }

    /// A CA (its PEM) and a server configuration whose certificate it
    /// signed for `localhost`.
    fn pki() -> (String, rustls::ServerConfig) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test db CA");
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                    .unwrap(),
            )
            .unwrap();
        (ca_pem, server)
    }

    #[tokio::test]
    async fn tls_verifies_the_server_against_the_ca_file_and_the_host_name() {
        let db = crate::postgres::testdb::TestDb::create();
        let target: tokio_postgres::Config = db.url.parse().unwrap();
        let backend = match (&target.get_hosts()[0], target.get_ports().first()) {
            (tokio_postgres::config::Host::Tcp(h), port) => {
                tokio::net::lookup_host((h.as_str(), port.copied().unwrap_or(5432)))
                    .await
                    .unwrap()
                    .next()
                    .unwrap()
            }
            #[allow(unreachable_patterns)]
            (other, _) => panic!("the test server must be reached over TCP, not {other:?}"),
        };
        let (ca_pem, server) = pki();
        let (front, handshakes) = tls_front(server, backend).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let (other_ca, _) = pki();
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca_file, &other_ca).unwrap();

        let user = target.get_user().unwrap_or("postgres");
        let dbname = target.get_dbname().unwrap_or(user);
        let url = |host: &str, mode: &str| {
            format!(
                "postgres://{user}@{host}:{}/{dbname}?hostaddr=127.0.0.1{mode}",
                front.port()
            )
        };

        // The CA that signed the certificate, the name it was issued for:
        // connected, over TLS, whatever the URL's sslmode.
        for mode in ["", "&sslmode=require", "&sslmode=verify-full"] {
            let mut cfg = PgConfig::new(url("localhost", mode));
            cfg.ca_file = Some(ca_file.clone());
            let pool = connect(&cfg)
                .await
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            let one: i32 = pool
                .get()
                .await
                .unwrap()
                .query_one("select 1", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(one, 1);
        }
        assert!(handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 3);

        // Another CA (of the same name, another key): refused at the handshake.
        let mut cfg = PgConfig::new(url("localhost", ""));
        cfg.ca_file = Some(other_ca_file);
        cfg.connect_timeout = Duration::from_secs(2);
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("invalid peer certificate"), "{msg}");

        // The right CA, but the certificate is not for the host connected to.
        let mut cfg = PgConfig::new(url("db.invalid", ""));
        cfg.ca_file = Some(ca_file);
        cfg.connect_timeout = Duration::from_secs(2);
        let msg = unavailable(connect(&cfg).await);
        assert!(msg.contains("not valid for name \"db.invalid\""), "{msg}");
    }
}
