//! The listener: TLS with rustls (ring, the process's one crypto provider),
//! optional client certificates chained to configured CAs, reload of the
//! certificate, key and CA files without restart, and plaintext for
//! loopback. Every connection reaches the services with a [`PeerInfo`] in
//! its request extensions: the peer address and, when the client presented
//! a certificate that verified, its fingerprint and SAN URIs, which the edge
//! layer maps to a principal.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use attestd_core::ids::Digest;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::security::CallerTally;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; the accept loop waits beyond this.
const MAX_HANDSHAKES: usize = 512;
/// SAN URIs kept from one client certificate, and their longest length.
const MAX_URIS: usize = 16;
const MAX_URI_LEN: usize = 512;
/// Largest certificate, key or CA file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Installs ring as the process's rustls crypto provider, unless one is
/// installed already. attestd has exactly one provider in its dependency
/// graph; this makes the choice explicit for any code that asks rustls for
/// the default.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the TLS material is read from.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. None:
    /// client certificates are not asked for.
    #[serde(default)]
    pub client_ca_files: Vec<PathBuf>,
    /// How often the files are checked for changes, in seconds (SIGHUP
    /// reloads at once).
    #[serde(default = "default_reload_check_secs")]
    pub reload_check_secs: u64,
}

fn default_reload_check_secs() -> u64 {
    10
}

/// A verified client certificate, as the edge layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the certificate's DER.
    pub fingerprint: Digest,
    /// Its subject-alternative-name URIs.
    pub uris: Vec<String>,
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    /// The peer's address, when known.
    pub remote: Option<SocketAddr>,
    /// Set when the client presented a certificate that chained to a
    /// configured CA (rustls refuses the handshake otherwise).
    pub client_cert: Option<Arc<ClientCert>>,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("{}: larger than 1 MiB", path.display()));
    }
    Ok(buf)
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// The files' contents, read once per reload check.
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    cas: Vec<Vec<u8>>,
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Material, String> {
        Ok(Material {
            cert: read_limited(&files.cert_file)?,
            key: read_limited(&files.key_file)?,
            cas: files
                .client_ca_files
                .iter()
                .map(|p| read_limited(p))
                .collect::<Result<_, _>>()?,
        })
    }

    fn digest(&self) -> Digest {
        let mut all = Vec::new();
        for part in [&self.cert, &self.key].into_iter().chain(self.cas.iter()) {
            all.extend_from_slice(&(part.len() as u64).to_be_bytes());
            all.extend_from_slice(part);
        }
        Digest::of(&all)
    }

    /// The notAfter of the leaf certificate (the first of the chain).
    fn not_after(&self, files: &TlsFiles) -> Option<i64> {
        let chain = certs(&files.cert_file, &self.cert).ok()?;
        not_after(chain.first()?)
    }

    fn config(&self, files: &TlsFiles) -> Result<ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs(&files.cert_file, &self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| format!("{}: {e}", files.key_file.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if files.client_ca_files.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for (path, pem) in files.client_ca_files.iter().zip(&self.cas) {
                for ca in certs(path, pem)? {
                    roots
                        .add(ca)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            // A client without a certificate is let through (devices and
            // bearer-token callers); one whose certificate does not chain to
            // these CAs is refused at the handshake.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CAs: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        // gRPC is HTTP/2; HTTP/1.1 for plain HTTP routes (the JWKS).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The current TLS configuration, swapped whole on reload; each new
/// connection uses the configuration current when it arrives.
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<Current>,
}

/// What is in force: the files' digest, the configuration built from them,
/// and the served certificate's notAfter (Unix seconds), for the metrics.
struct Current {
    digest: Digest,
    config: Arc<ServerConfig>,
    not_after: Option<i64>,
}

/// The notAfter of a certificate (DER), in Unix seconds; `None` if it
/// cannot be read (rustls has accepted the certificate already: this is
/// only for the expiry metric).
fn not_after(der: &[u8]) -> Option<i64> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let t = cert.tbs_certificate.validity.not_after.to_unix_duration();
    i64::try_from(t.as_secs()).ok()
}

impl TlsState {
    /// Reads and checks the files; an error names the file and the problem.
    pub fn load(files: TlsFiles) -> Result<TlsState, String> {
        let m = Material::read(&files)?;
        let config = m.config(&files)?;
        Ok(TlsState {
            current: RwLock::new(Current {
                digest: m.digest(),
                config: Arc::new(config),
                not_after: m.not_after(&files),
            }),
            files,
        })
    }

    /// Where the TLS material was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether client certificates are asked for.
    pub fn client_certs(&self) -> bool {
        !self.files.client_ca_files.is_empty()
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    /// The notAfter (Unix seconds) of the certificate served now.
    pub fn not_after(&self) -> Option<i64> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .not_after
    }

    /// Re-reads the files; installs a new configuration if they changed and
    /// are valid. Ok(true): reloaded; Ok(false): unchanged; Err: the files
    /// are bad and the previous configuration stays in force.
    pub fn reload(&self) -> Result<bool, String> {
        let m = Material::read(&self.files)?;
        let digest = m.digest();
        if self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .digest
            == digest
        {
            return Ok(false);
        }
        let config = m.config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current {
            digest,
            config: Arc::new(config),
            not_after: m.not_after(&self.files),
        };
        Ok(true)
    }
}

fn reload_logged(tls: &TlsState, why: &str) {
    match tls.reload() {
        Ok(true) => tracing::info!(trigger = why, "TLS certificate, key and CAs reloaded"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(trigger = why, error = %e, "TLS reload failed; the previous certificate stays in use")
        }
    }
}

/// Reloads the TLS files on SIGHUP and whenever their contents change,
/// until `stop` turns true.
pub async fn watch_files(tls: Arc<TlsState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(tls.files.reload_check_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => reload_logged(&tls, "file change"),
            _ = hangup => reload_logged(&tls, "SIGHUP"),
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One accepted connection, plaintext or TLS.
pub enum Conn {
    /// A plaintext connection (loopback only).
    Plain(TcpStream, PeerInfo),
    /// A TLS connection.
    Tls(Box<TlsStream<TcpStream>>, PeerInfo),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Conn::Plain(_, p) | Conn::Tls(_, p) => p.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The fingerprint and SAN URIs of a client certificate rustls verified.
fn client_cert(der: &CertificateDer<'_>) -> ClientCert {
    let uris = webpki::EndEntityCert::try_from(der)
        .map(|c| {
            c.valid_uri_names()
                .filter(|u| u.len() <= MAX_URI_LEN)
                .take(MAX_URIS)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    ClientCert {
        fingerprint: Digest::of(der.as_ref()),
        uris,
    }
}

async fn handshake(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    remote: Option<SocketAddr>,
) -> Result<Conn, String> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("handshake timed out".into()),
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| Arc::new(client_cert(der)));
    Ok(Conn::Tls(
        Box::new(tls),
        PeerInfo {
            remote,
            client_cert: cert,
        },
    ))
}

/// Accepts connections on `listener` (TCP_NODELAY set), completes TLS
/// handshakes concurrently when `tls` is set, and yields the connections
/// ready for HTTP/2. A failed handshake is logged, counted as an
/// authentication failure of its peer, and dropped. Stops when the returned
/// stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<TlsState>>,
    failures: Arc<CallerTally>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Conn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Replies are small: without TCP_NODELAY, Nagle's algorithm and
            // delayed ACKs add ~40 ms to a request on a reused connection.
            let _ = stream.set_nodelay(true);
            let Some(tls) = &tls else {
                let peer = PeerInfo {
                    remote: Some(remote),
                    client_cert: None,
                };
                if tx.send(Ok(Conn::Plain(stream, peer))).await.is_err() {
                    return;
                }
                continue;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (config, tx, failures) = (tls.config(), tx.clone(), failures.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match handshake(config, stream, Some(remote)).await {
                    Ok(conn) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %remote.ip(), error = %e, "TLS handshake refused");
                        failures.note(&format!("peer {} (TLS handshake)", remote.ip()));
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
