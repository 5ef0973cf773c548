//! Who is calling, and may they. Principals come from the configuration:
//! bearer tokens (stored as SHA-256) and client certificates (by SHA-256
//! fingerprint or SAN URI; the certificate has already chained to a
//! configured CA in the TLS handshake). [`ROUTES`] is the one authorization
//! matrix: every RPC of the API is listed with the roles allowed to call it,
//! and a path that is not listed is refused (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use attestd_core::ids::{Digest, StationId};
use attestd_core::{reject, Reason, Rejection};

use crate::settings::PrincipalConfig;
use crate::tls::ClientCert;

/// The roles of docs/api.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A factory or service-depot station: submits its own records.
    Station,
    /// The manufacturing execution system: asks the release gate.
    Mes,
    /// A hospital's IT or biomed tooling: sees its tenant's units only.
    HospitalIt,
    /// The Verifier owner: stations, baselines, revocation, quarantine, concessions.
    SecurityAdmin,
    /// Quality, regulatory, external auditors: reads the audit chain.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Station,
        Role::Mes,
        Role::HospitalIt,
        Role::SecurityAdmin,
        Role::Auditor,
    ];

    /// The role a configuration spells `s` (e.g. `hospital-it`), if it is one.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "station" => Role::Station,
            "mes" => Role::Mes,
            "hospital-it" => Role::HospitalIt,
            "security-admin" => Role::SecurityAdmin,
            "auditor" => Role::Auditor,
            _ => return None,
        })
    }

    /// The role as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Station => "station",
            Role::Mes => "mes",
            Role::HospitalIt => "hospital-it",
            Role::SecurityAdmin => "security-admin",
            Role::Auditor => "auditor",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name, as the audit chain records it.
    pub name: String,
    /// What the principal may do.
    pub role: Role,
    /// Set for the station role.
    pub station_id: Option<StationId>,
    /// Set for the hospital-it role.
    pub tenant: Option<String>,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No principal needed (device attestation, health, reflection).
    Public,
    /// A principal with one of these roles.
    Roles(&'static [Role]),
}

use Role::*;

const OPERATORS: &[Role] = &[Station, Mes, HospitalIt, SecurityAdmin, Auditor];
const RECORD_READERS: &[Role] = &[Station, SecurityAdmin, Auditor, Mes];
const FLEET_READERS: &[Role] = &[Mes, HospitalIt, SecurityAdmin, Auditor];

/// The authorization matrix: gRPC method path -> access.
#[rustfmt::skip]
pub const ROUTES: &[(&str, Access)] = &[
    ("/attestd.v1.DeviceAttestation/GetChallenge", Access::Public),
    ("/attestd.v1.DeviceAttestation/SubmitEvidence", Access::Public),
    ("/attestd.v1.Factory/SubmitRecord", Access::Roles(&[Station])),
    ("/attestd.v1.Factory/GetRecord", Access::Roles(RECORD_READERS)),
    ("/attestd.v1.Factory/ListRecords", Access::Roles(RECORD_READERS)),
    ("/attestd.v1.Admin/RegisterStation", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Admin/RevokeStation", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Admin/ListStations", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Admin/RevokeDevice", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Admin/AssignDevice", Access::Roles(&[SecurityAdmin, Mes])),
    ("/attestd.v1.Admin/Backup", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Baselines/PublishBaseline", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Baselines/GetBaseline", Access::Roles(OPERATORS)),
    ("/attestd.v1.Baselines/ListBaselines", Access::Roles(OPERATORS)),
    ("/attestd.v1.Fleet/GetDevice", Access::Roles(FLEET_READERS)),
    ("/attestd.v1.Fleet/ListDevices", Access::Roles(FLEET_READERS)),
    ("/attestd.v1.Fleet/GetFleetSummary", Access::Roles(FLEET_READERS)),
    ("/attestd.v1.Fleet/WatchFleet", Access::Roles(FLEET_READERS)),
    ("/attestd.v1.Fleet/ListDeviceHistory", Access::Roles(FLEET_READERS)),
    ("/attestd.v1.Fleet/GetEvidence", Access::Roles(&[SecurityAdmin, Auditor])),
    ("/attestd.v1.Release/CheckRelease", Access::Roles(&[Mes])),
    ("/attestd.v1.Release/CheckReleaseBatch", Access::Roles(&[Mes])),
    ("/attestd.v1.Release/SetQuarantine", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Release/GrantConcession", Access::Roles(&[SecurityAdmin])),
    ("/attestd.v1.Release/GetResultKeys", Access::Public),
    ("/attestd.v1.Audit/ListAuditEvents", Access::Roles(&[Auditor, SecurityAdmin])),
    ("/attestd.v1.Audit/GetAuditHead", Access::Roles(&[Auditor, SecurityAdmin])),
    ("/attestd.v1.Audit/ExportAudit", Access::Roles(&[Auditor, SecurityAdmin])),
];

/// The plain HTTP routes beside gRPC, under the same rule: a path not
/// listed here or in [`ROUTES`] is refused.
pub const HTTP_ROUTES: &[(&str, Access)] = &[
    // The result keys (the JWK Set of `Release.GetResultKeys`), for JOSE
    // libraries.
    ("/.well-known/jwks.json", Access::Public),
    // The OpenAPI document of the HTTP/JSON API.
    ("/openapi.json", Access::Public),
    // The dashboard's page, script and style: public, as they hold no data
    // (the page calls the API with the user's token).
    ("/dashboard", Access::Public),
    ("/dashboard/", Access::Public),
    ("/dashboard/app.js", Access::Public),
    ("/dashboard/style.css", Access::Public),
    // Browsers ask for it on their own; answered 204.
    ("/favicon.ico", Access::Public),
];

/// Services that are public as a whole.
const PUBLIC_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Every role, for documentation and the matrix test.
pub fn operator_roles() -> &'static [Role] {
    OPERATORS
}

/// Looks up the access rule of a method path, or of an HTTP/JSON route
/// (the rule of the gRPC method it calls). Unknown paths get `None`.
pub fn access_for(path: &str) -> Option<Access> {
    if let Some(route) = crate::rest::route_for(path) {
        return access_for(route.rpc);
    }
    if PUBLIC_SERVICES.iter().any(|p| path.starts_with(p)) {
        return Some(Access::Public);
    }
    ROUTES
        .iter()
        .chain(HTTP_ROUTES)
        .find(|(p, _)| *p == path)
        .map(|(_, a)| *a)
}

/// Why a principal could not be loaded from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("principal {name:?}: {problem}")]
pub struct PrincipalError {
    /// The principal's name in the configuration.
    pub name: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Maps bearer tokens (by their SHA-256) and client certificates (by
/// fingerprint or SAN URI) to principals.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    by_token: HashMap<[u8; 32], Arc<Principal>>,
    by_fingerprint: HashMap<[u8; 32], Arc<Principal>>,
    by_uri: HashMap<String, Arc<Principal>>,
}

/// The principals in force, replaced whole when they are reloaded
/// (SIGHUP): a call sees the old table or the new one, never a mix.
#[derive(Clone, Debug, Default)]
pub struct SharedAuth(Arc<RwLock<Arc<Authenticator>>>);

impl SharedAuth {
    /// A table in force now.
    pub fn new(a: Authenticator) -> SharedAuth {
        SharedAuth(Arc::new(RwLock::new(Arc::new(a))))
    }

    /// The table as it is now.
    pub fn current(&self) -> Arc<Authenticator> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `a` in force for every later call.
    pub fn replace(&self, a: Authenticator) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(a);
    }
}

/// Where reloaded principals come from: the binary re-reads its
/// configuration file. `Err` keeps the principals in force.
pub type PrincipalSource =
    Arc<dyn Fn() -> Result<Vec<PrincipalConfig>, String> + Send + Sync + 'static>;

/// Reloads the principals from `source` on SIGHUP until `stop` turns true.
/// A reload that fails (a file that does not parse, a principal refused,
/// certificate principals without client CAs) is logged and changes
/// nothing.
pub async fn watch_principals(
    auth: SharedAuth,
    source: PrincipalSource,
    client_certs: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP cannot be caught: principals reload only at restart");
            return;
        }
    };
    loop {
        #[cfg(unix)]
        let hangup = hup.recv();
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = stop.changed() => return,
            _ = hangup => {}
        }
        if *stop.borrow() {
            return;
        }
        match reload(&source, client_certs) {
            Ok(a) => {
                let n = a.len();
                auth.replace(a);
                tracing::info!(principals = n, "principals reloaded (SIGHUP)");
            }
            Err(e) => {
                tracing::error!(error = %e, "principals NOT reloaded (SIGHUP); the previous ones stay in force")
            }
        }
    }
}

fn reload(source: &PrincipalSource, client_certs: bool) -> Result<Authenticator, String> {
    Authenticator::for_listener(&source()?, client_certs)
}

/// A fingerprint as people copy it: hex, any case, colons allowed.
fn parse_fingerprint(s: &str) -> Option<Digest> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Digest::from_hex(&hex)
}

impl Authenticator {
    /// Builds the table, refusing incomplete or ambiguous entries.
    pub fn new(configs: &[PrincipalConfig]) -> Result<Authenticator, PrincipalError> {
        let mut by_token = HashMap::new();
        let mut by_fingerprint = HashMap::new();
        let mut by_uri = HashMap::new();
        for c in configs {
            let err = |problem: &str| PrincipalError {
                name: c.name.clone(),
                problem: problem.to_owned(),
            };
            let role = Role::parse(&c.role).ok_or_else(|| {
                err("role must be station, mes, hospital-it, security-admin or auditor")
            })?;
            let token = match &c.token_sha256 {
                Some(t) => Some(
                    Digest::from_hex(t)
                        .ok_or_else(|| err("token_sha256 must be 64 lowercase hex characters"))?,
                ),
                None => None,
            };
            let fingerprint = match &c.cert_sha256 {
                Some(f) => Some(
                    parse_fingerprint(f)
                        .ok_or_else(|| err("cert_sha256 must be 64 hex characters"))?,
                ),
                None => None,
            };
            let uri = match &c.cert_uri {
                Some(u) if u.contains(':') && !u.trim().is_empty() && u.trim() == u => {
                    Some(u.clone())
                }
                Some(_) => return Err(err("cert_uri must be a URI (scheme:...)")),
                None => None,
            };
            if token.is_none() && fingerprint.is_none() && uri.is_none() {
                return Err(err(
                    "needs a credential: token_sha256, cert_sha256 or cert_uri",
                ));
            }
            let station_id = match (role, &c.station_id) {
                (Role::Station, Some(s)) => Some(
                    StationId::parse(s, Reason::FieldInvalid, "station_id")
                        .map_err(|e| err(&e.message))?,
                ),
                (Role::Station, None) => return Err(err("the station role needs station_id")),
                (_, Some(_)) => return Err(err("station_id is only for the station role")),
                (_, None) => None,
            };
            let tenant = match (role, &c.tenant) {
                (Role::HospitalIt, Some(t)) if !t.is_empty() => Some(t.clone()),
                (Role::HospitalIt, _) => return Err(err("the hospital-it role needs a tenant")),
                (_, Some(_)) => return Err(err("tenant is only for the hospital-it role")),
                (_, None) => None,
            };
            let p = Arc::new(Principal {
                name: c.name.clone(),
                role,
                station_id,
                tenant,
            });
            if let Some(t) = token {
                if by_token.insert(t.0, p.clone()).is_some() {
                    return Err(err("two principals share one token"));
                }
            }
            if let Some(f) = fingerprint {
                if by_fingerprint.insert(f.0, p.clone()).is_some() {
                    return Err(err("two principals share one certificate fingerprint"));
                }
            }
            if let Some(u) = uri {
                if by_uri.insert(u, p).is_some() {
                    return Err(err("two principals share one certificate URI"));
                }
            }
        }
        Ok(Authenticator {
            by_token,
            by_fingerprint,
            by_uri,
        })
    }

    /// The table for a listener that does (`client_certs`) or does not
    /// verify client certificates: [`Authenticator::new`]'s checks, and
    /// certificate principals refused without client CAs (they could never
    /// be authenticated).
    pub fn for_listener(
        configs: &[PrincipalConfig],
        client_certs: bool,
    ) -> Result<Authenticator, String> {
        let a = Authenticator::new(configs).map_err(|e| e.to_string())?;
        if a.has_certificate_principals() && !client_certs {
            return Err(
                "principals identified by client certificate need TLS with client_ca_files".into(),
            );
        }
        Ok(a)
    }

    /// Credentials in the table (a principal may have several).
    pub fn len(&self) -> usize {
        self.by_token.len() + self.by_fingerprint.len() + self.by_uri.len()
    }

    /// Whether the table holds no credential.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any principal is identified by a client certificate.
    pub fn has_certificate_principals(&self) -> bool {
        !self.by_fingerprint.is_empty() || !self.by_uri.is_empty()
    }

    /// The principal of a verified client certificate: by fingerprint, else
    /// by SAN URI. A certificate whose URIs name two principals is refused.
    fn by_certificate(&self, cert: &ClientCert) -> Result<Arc<Principal>, Rejection> {
        if let Some(p) = self.by_fingerprint.get(&cert.fingerprint.0) {
            return Ok(p.clone());
        }
        let mut found: Option<&Arc<Principal>> = None;
        for u in &cert.uris {
            if let Some(p) = self.by_uri.get(u) {
                if found.is_some_and(|f| !Arc::ptr_eq(f, p)) {
                    return Err(reject!(
                        NoCredentials,
                        "the client certificate names more than one principal"
                    ));
                }
                found = Some(p);
            }
        }
        found.cloned().ok_or_else(|| {
            reject!(
                NoCredentials,
                "the client certificate is not mapped to a principal"
            )
        })
    }

    /// Authenticates a call: by its `authorization` header if it has one
    /// (a bad token is refused even with a good certificate), else by its
    /// client certificate.
    pub fn authenticate(
        &self,
        header: Option<&[u8]>,
        cert: Option<&ClientCert>,
    ) -> Result<Arc<Principal>, Rejection> {
        let Some(value) = header else {
            return match cert {
                Some(c) => self.by_certificate(c),
                None => Err(reject!(
                    NoCredentials,
                    "this call needs an authorization: Bearer token or a client certificate"
                )),
            };
        };
        let token = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| reject!(NoCredentials, "authorization must be \"Bearer <token>\""))?;
        self.by_token
            .get(&Digest::of(token.as_bytes()).0)
            .cloned()
            .ok_or_else(|| reject!(NoCredentials, "the bearer token is not recognised"))
    }

    /// Decides a call: `Ok(None)` for public routes, the principal for
    /// permitted ones, a rejection otherwise.
    pub fn authorize(
        &self,
        path: &str,
        header: Option<&[u8]>,
        cert: Option<&ClientCert>,
    ) -> Result<Option<Arc<Principal>>, Rejection> {
        match access_for(path) {
            Some(Access::Public) => Ok(None),
            Some(Access::Roles(roles)) => {
                let p = self.authenticate(header, cert)?;
                if roles.contains(&p.role) {
                    Ok(Some(p))
                } else {
                    Err(reject!(
                        RoleForbidden,
                        "role {} may not call {path}",
                        p.role.as_str()
                    ))
                }
            }
            None => Err(reject!(RoleForbidden, "{path} is not a known method")),
        }
    }
}

/// SHA-256 hex of a token, as the configuration stores it.
pub fn token_hash(token: &str) -> String {
    Digest::of(token.as_bytes()).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, role: &str, token: &str) -> PrincipalConfig {
        PrincipalConfig {
            name: name.into(),
            role: role.into(),
            token_sha256: Some(token_hash(token)),
            cert_sha256: None,
            cert_uri: None,
            station_id: (role == "station").then(|| "st-1".to_string()),
            tenant: (role == "hospital-it").then(|| "tenant-a".to_string()),
        }
    }

    #[test]
    fn every_route_is_public_or_has_roles_and_unknown_is_refused() {
        let auth = Authenticator::new(&[
            cfg("a", "security-admin", "t-admin"),
            cfg("h", "hospital-it", "t-h"),
        ])
        .unwrap();
        let admin = Some(&b"Bearer t-admin"[..]);
        let hosp = Some(&b"Bearer t-h"[..]);
        assert!(auth
            .authorize("/attestd.v1.Admin/RegisterStation", admin, None)
            .unwrap()
            .is_some());
        let e = auth
            .authorize("/attestd.v1.Admin/RegisterStation", hosp, None)
            .unwrap_err();
        assert_eq!(e.reason, Reason::RoleForbidden);
        let e = auth
            .authorize("/attestd.v1.Admin/RegisterStation", None, None)
            .unwrap_err();
        assert_eq!(e.reason, Reason::NoCredentials);
        let e = auth
            .authorize(
                "/attestd.v1.Admin/RegisterStation",
                Some(b"Bearer nope"),
                None,
            )
            .unwrap_err();
        assert_eq!(e.reason, Reason::NoCredentials);
        assert_eq!(
            auth.authorize("/attestd.v1.DeviceAttestation/GetChallenge", None, None)
                .unwrap(),
            None
        );
        assert_eq!(
            auth.authorize("/grpc.health.v1.Health/Check", None, None)
                .unwrap(),
            None
        );
        let e = auth
            .authorize("/attestd.v1.Admin/DropEverything", admin, None)
            .unwrap_err();
        assert_eq!(e.reason, Reason::RoleForbidden);
    }

    #[test]
    fn config_errors_are_named() {
        let mut c = cfg("s", "station", "t");
        c.station_id = None;
        assert!(Authenticator::new(&[c])
            .unwrap_err()
            .to_string()
            .contains("station_id"));
        let c = cfg("x", "root", "t");
        assert!(Authenticator::new(&[c]).is_err());
        let dup = [cfg("a", "mes", "same"), cfg("b", "auditor", "same")];
        assert!(Authenticator::new(&dup)
            .unwrap_err()
            .to_string()
            .contains("share"));
    }
}
