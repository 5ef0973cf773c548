//! Typed gRPC clients with bearer-token authentication, over plaintext
//! (loopback) or TLS, optionally with a client certificate.

use attestd_proto::v1 as pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every call, if a token is set.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a valid URI, the TLS settings were refused, or the connection failed.
    #[error("invalid endpoint or connection failure: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The token cannot be sent as an HTTP header value.
    #[error("the token contains characters not allowed in a header")]
    Token,
    /// TLS options were given for an endpoint that is not `https://`.
    #[error("TLS needs an https:// endpoint, got {0}")]
    Scheme(String),
}

/// How a client speaks TLS: the CA certificate(s) that signed the server's
/// certificate (PEM) and, for a principal identified by certificate, the
/// client's certificate chain and private key (PEM).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// The CA certificate(s) that signed the server's certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// For a principal identified by certificate: its certificate chain and private key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check the server's certificate against; default: the
    /// endpoint's host.
    pub domain: Option<String>,
}

/// One connection to attestd, shared by all service clients.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    bearer: Bearer,
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(endpoint: &str, token: Option<&str>) -> Result<Client, ClientError> {
        Client::connect_with(endpoint, token, None).await
    }

    /// Connects to `endpoint`, over TLS when `tls` is given (the endpoint
    /// must then be `https://`).
    pub async fn connect_with(
        endpoint: &str,
        token: Option<&str>,
        tls: Option<&TlsOptions>,
    ) -> Result<Client, ClientError> {
        let mut ep = Endpoint::from_shared(endpoint.to_owned())?;
        if let Some(t) = tls {
            if !endpoint.starts_with("https://") {
                return Err(ClientError::Scheme(endpoint.to_owned()));
            }
            let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca_pem));
            if let Some((cert, key)) = &t.identity {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            if let Some(d) = &t.domain {
                cfg = cfg.domain_name(d.clone());
            }
            ep = ep.tls_config(cfg)?;
        }
        let channel = ep.connect().await?;
        Client::from_channel(channel, token)
    }

    /// A client on an existing channel, with `token` if given. Fails if the token cannot be sent as
    /// a header.
    pub fn from_channel(channel: Channel, token: Option<&str>) -> Result<Client, ClientError> {
        let bearer = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::Token)?,
            ),
            None => None,
        };
        Ok(Client {
            channel,
            bearer: Bearer(bearer),
        })
    }

    /// The same connection with another token.
    pub fn with_token(&self, token: Option<&str>) -> Result<Client, ClientError> {
        Client::from_channel(self.channel.clone(), token)
    }

    /// The channel the service clients share.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The `DeviceAttestation` service: challenges and evidence.
    pub fn device(&self) -> pb::device_attestation_client::DeviceAttestationClient<Authed> {
        pb::device_attestation_client::DeviceAttestationClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// The `Factory` service: station records.
    pub fn factory(&self) -> pb::factory_client::FactoryClient<Authed> {
        pb::factory_client::FactoryClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// The `Admin` service: stations, revocation, placement, backups.
    pub fn admin(&self) -> pb::admin_client::AdminClient<Authed> {
        pb::admin_client::AdminClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The `Baselines` service.
    pub fn baselines(&self) -> pb::baselines_client::BaselinesClient<Authed> {
        pb::baselines_client::BaselinesClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// The `Audit` service: the audit chain and its export.
    pub fn audit(&self) -> pb::audit_client::AuditClient<Authed> {
        pb::audit_client::AuditClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The `Release` service: the release gate, quarantine, concessions, result keys.
    pub fn release(&self) -> pb::release_client::ReleaseClient<Authed> {
        pb::release_client::ReleaseClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// The `Fleet` service: units, summaries, the change feed, history, evidence.
    pub fn fleet(&self) -> pb::fleet_client::FleetClient<Authed> {
        pb::fleet_client::FleetClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
}
