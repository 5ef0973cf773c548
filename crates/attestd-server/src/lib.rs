//! attestd's gRPC front end: the services of `proto/attestd/v1`, the edge
//! layer that authenticates and authorizes every call, the background jobs
//! (under leases when replicas share a store), and server assembly with
//! health that follows the store, and reflection. Handlers translate; rules live in `attestd-core`; state lives
//! behind `attestd_store::Store`.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod checkpoint;
pub mod clock;
pub mod convert;
pub mod dev;
pub mod edge;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod ratelimit;
pub mod reappraisal;
pub mod rest;
pub mod results;
pub mod security;
pub mod service;
pub mod settings;
pub mod status;
pub mod tls;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use attestd_proto::v1 as pb;
use attestd_store::Store;
use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::{PrincipalSource, SharedAuth};
use crate::clock::Clock;
use crate::edge::EdgeLayer;
use crate::metrics::Metrics;
use crate::security::SecurityEvents;
use crate::service::{
    admin::AdminService, audit::AuditService, baselines::BaselinesService, device::DeviceService,
    factory::FactoryService, fleet::FleetService, release::ReleaseService,
};
use crate::settings::Settings;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configured principals do not load.
    #[error(transparent)]
    Principal(#[from] auth::PrincipalError),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Binding or serving failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The configuration is refused.
    #[error("configuration: {0}")]
    Config(String),
    /// The store failed and the process must restart (`Store::failure`).
    #[error("the store failed and cannot recover without a restart: {0}")]
    StoreFailed(String),
}

/// Everything a server needs.
pub struct ServerParts {
    /// The store the server serves.
    pub store: Arc<dyn Store>,
    /// Limits, principals and release keys.
    pub settings: Settings,
    /// The clock the rules read.
    pub clock: Arc<dyn Clock>,
    /// Where to serve `GET /metrics`, if anywhere.
    pub metrics_listener: Option<TcpListener>,
    /// The key that signs audit checkpoints; none: no checkpoints.
    pub checkpoint_key: Option<Arc<checkpoint::CheckpointKey>>,
    /// TLS for the gRPC listener; none: plaintext (the binary allows that
    /// on loopback only, or with an explicit override).
    pub tls: Option<Arc<tls::TlsState>>,
}

/// A built server: its shared state, ready to run. Tests in this workspace
/// can reach the state (`app`) to drive background work by hand.
pub struct Server {
    app: Arc<App>,
    auth: SharedAuth,
    principal_source: Option<PrincipalSource>,
    metrics_listener: Option<TcpListener>,
    checkpoint_key: Option<Arc<checkpoint::CheckpointKey>>,
    tls: Option<Arc<tls::TlsState>>,
}

impl Server {
    /// Checks the settings and builds the shared state.
    pub fn new(parts: ServerParts) -> Result<Server, ServeError> {
        let ServerParts {
            store,
            settings,
            clock,
            metrics_listener,
            checkpoint_key,
            tls,
        } = parts;
        let client_certs = tls.as_ref().is_some_and(|t| t.client_certs());
        let checked = settings.check(client_certs).map_err(ServeError::Config)?;
        for w in &checked.warnings {
            tracing::warn!("{w}");
        }
        let auth = SharedAuth::new(checked.auth);
        let trust_root = checked.trust_root;
        let metrics = Arc::new(Metrics::default());
        metrics.set_build_info(store.backend());
        let limits = settings.limits.clone();
        let peer_limit = Arc::new(ratelimit::Buckets::new(
            "peer",
            limits.rate_per_peer_per_min,
            100_000,
        ));
        let serial_limit =
            ratelimit::Buckets::new("serial", limits.rate_per_serial_per_min, 1_000_000);
        let app = Arc::new(App {
            store,
            security: SecurityEvents::new(metrics.clone()),
            metrics,
            clock,
            limits,
            trust_root,
            peer_limit,
            serial_limit,
            auth_failures: Default::default(),
            unknown_serials: Default::default(),
            baselines: verdict::BaselineCache::default(),
            work: tokio::sync::Notify::new(),
            replica: replica_id(),
            draining: tokio::sync::watch::Sender::new(false),
            result_keys: Default::default(),
        });
        Ok(Server {
            app,
            auth,
            principal_source: None,
            metrics_listener,
            checkpoint_key,
            tls,
        })
    }

    /// The shared state of the services.
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Signs result tokens (EAR) with `keys` and publishes their JWKS.
    pub fn results_with(self, keys: Arc<results::ResultKeys>) -> Server {
        let _ = self.app.result_keys.set(keys);
        self
    }

    /// Serves `GET /metrics` on `listener` (bound after the checks passed).
    pub fn metrics_on(mut self, listener: TcpListener) -> Server {
        self.metrics_listener = Some(listener);
        self
    }

    /// Reloads the principals from `source` on SIGHUP (the binary re-reads
    /// its configuration file).
    pub fn reload_principals_with(mut self, source: PrincipalSource) -> Server {
        self.principal_source = Some(source);
        self
    }

    /// Checks that this server's audit key is the one the store was started
    /// with (pinning it in a new store). [`Server::run`] does it too; the
    /// binary calls it first, so a wrong key is refused before anything
    /// listens.
    pub async fn check_audit_key(&self) -> Result<(), ServeError> {
        match &self.checkpoint_key {
            Some(k) => pin_audit_key(&self.app, k).await,
            None => Ok(()),
        }
    }

    /// Serves the API on `listener` until `shutdown` resolves, then drains
    /// in-flight requests and completes the last group flush. With
    /// `background` the re-appraisal job runs beside the handlers.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        background: bool,
    ) -> Result<(), ServeError> {
        let Server {
            app,
            auth,
            principal_source,
            metrics_listener,
            checkpoint_key,
            tls,
        } = self;
        if let Some(k) = &checkpoint_key {
            pin_audit_key(&app, k).await?;
        }
        let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
        let checkpoints = match (&checkpoint_key, background) {
            (Some(k), true) => Some(tokio::spawn(checkpoint::run(
                app.clone(),
                k.clone(),
                jobs_stopped.clone(),
            ))),
            _ => None,
        };
        // Refusals at the edge, and gate checks of serials that are not
        // enrolled: one audit entry per interval each, not one per call.
        let summaries = background.then(|| {
            tokio::spawn(crate::security::summarize(
                app.clone(),
                app.auth_failures.clone(),
                "auth.failures",
                "refused calls",
                jobs_stopped.clone(),
            ))
        });
        let unknown_summaries = background.then(|| {
            tokio::spawn(crate::security::summarize(
                app.clone(),
                app.unknown_serials.clone(),
                "release.unknown_serials",
                "release checks of serials not enrolled",
                jobs_stopped.clone(),
            ))
        });
        let client_certs = tls.as_ref().is_some_and(|t| t.client_certs());
        let principal_watch = principal_source.map(|source| {
            tokio::spawn(auth::watch_principals(
                auth.clone(),
                source,
                client_certs,
                jobs_stopped.clone(),
            ))
        });
        let tls_watch = tls
            .clone()
            .map(|t| tokio::spawn(tls::watch_files(t, jobs_stopped.clone())));
        let reappraisal =
            background.then(|| tokio::spawn(reappraisal::run(app.clone(), jobs_stopped.clone())));
        let metrics_task = metrics_listener
            .map(|l| tokio::spawn(metrics::serve_metrics(l, app.clone(), tls.clone())));

        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, true).await;
        // Whoever changes health holds this: the store probe never sets
        // SERVING after the drain has set NOT_SERVING.
        let health = Arc::new(tokio::sync::Mutex::new(health));
        // SIGTERM (or whatever `shutdown` is): health goes NOT_SERVING, open
        // streams end telling their callers to reconnect, new connections
        // are refused and in-flight calls get `drain_timeout_secs` to end.
        let drain = Duration::from_secs(app.limits.drain_timeout_secs.max(1));
        let (drain_started, drain_begun) = tokio::sync::oneshot::channel::<()>();
        // A store that can no longer write (see `Store::failure`) stops the
        // server as SIGTERM would, and `run` then returns the error.
        let (fatal, fatal_seen) = tokio::sync::watch::channel::<Option<String>>(None);
        let shutdown = {
            let (app, health) = (app.clone(), health.clone());
            let mut fatal_seen = fatal_seen.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = fatal_seen.wait_for(|f| f.is_some()) => {}
                }
                {
                    let h = health.lock().await;
                    app.draining.send_replace(true);
                    set_health(&h, false).await;
                }
                tracing::info!(
                    deadline_secs = drain.as_secs(),
                    "draining: health NOT_SERVING, streams told to reconnect, in-flight calls finishing"
                );
                let _ = drain_started.send(());
            }
        };
        // Health follows the store: NOT_SERVING while it cannot be read
        // (the database unreachable), SERVING again once it can.
        let health_watch = tokio::spawn(watch_store_health(
            app.clone(),
            health.clone(),
            fatal,
            jobs_stopped.clone(),
        ));

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(attestd_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let max = app.limits.max_request_bytes;
        let edge = EdgeLayer {
            auth,
            metrics: app.metrics.clone(),
            failures: app.auth_failures.clone(),
            max_request_bytes: max,
            peer_limit: app.peer_limit.clone(),
            clock: app.clock.clone(),
        };
        // Outermost: every call gets its request id, span and metrics, the
        // edge layer's refusals included.
        let layers = tower::layer::util::Stack::new(
            edge,
            observe::ObserveLayer {
                metrics: app.metrics.clone(),
            },
        );
        let a = || app.clone();
        // Plain HTTP beside gRPC on the same port (HTTP/1.1 or 2), behind
        // the same layers: the result keys, the HTTP/JSON API (each route
        // calls its gRPC handler), the OpenAPI document and the dashboard.
        let jwks = app
            .result_keys
            .get()
            .map(|k| k.jwks_json())
            .unwrap_or_else(|| r#"{"keys":[]}"#.to_owned());
        let rest_services = Arc::new(rest::Services {
            fleet: FleetService { app: a() },
            release: ReleaseService { app: a() },
            audit: AuditService {
                app: a(),
                key: checkpoint_key.clone(),
            },
            max_request_bytes: max,
        });
        let http = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let jwks = jwks.clone();
                    async move {
                        let mut r = axum::response::IntoResponse::into_response((
                            [(http::header::CONTENT_TYPE, "application/jwk-set+json")],
                            jwks,
                        ));
                        r.extensions_mut().insert(rest::HttpOutcome::Done(None));
                        r
                    }
                }),
            )
            .merge(rest::router(rest_services))
            .merge(rest::static_router());
        let routes = tonic::service::Routes::from(http)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                pb::device_attestation_server::DeviceAttestationServer::new(DeviceService {
                    app: a(),
                })
                .max_decoding_message_size(max),
            )
            .add_service(
                pb::factory_server::FactoryServer::new(FactoryService { app: a() })
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::admin_server::AdminServer::new(AdminService {
                    app: a(),
                    key: checkpoint_key.clone(),
                })
                .max_decoding_message_size(max),
            )
            .add_service(
                pb::fleet_server::FleetServer::new(FleetService { app: a() })
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::baselines_server::BaselinesServer::new(BaselinesService { app: a() })
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::release_server::ReleaseServer::new(ReleaseService { app: a() })
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::audit_server::AuditServer::new(AuditService {
                    app: a(),
                    key: checkpoint_key.clone(),
                })
                .max_decoding_message_size(max),
            );
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                tls::incoming(listener, tls, app.auth_failures.clone()),
                shutdown,
            );
        let deadline = async {
            if drain_begun.await.is_err() {
                // The server ended without a shutdown request.
                return std::future::pending().await;
            }
            tokio::time::sleep(drain).await;
        };
        let result = tokio::select! {
            r = served => r,
            () = deadline => {
                tracing::warn!(
                    deadline_secs = drain.as_secs(),
                    "drain deadline passed: calls still open are cut"
                );
                Ok(())
            }
        };
        // In-flight requests have drained: stop the job (it finishes its batch,
        // flush included), then make the last writes durable and stop.
        let _ = stop_jobs.send(true);
        if let Some(job) = reappraisal {
            let _ = job.await;
        }
        if let Some(job) = checkpoints {
            let _ = job.await;
        }
        for job in [summaries, unknown_summaries].into_iter().flatten() {
            let _ = job.await;
        }
        for job in [tls_watch, principal_watch].into_iter().flatten() {
            let _ = job.await;
        }
        let _ = health_watch.await;
        app.store.close().await;
        if let Some(t) = metrics_task {
            t.abort();
        }
        let fatal = fatal_seen.borrow().clone();
        if let Some(why) = fatal {
            tracing::error!(error = %why, "server stopped: the store failed");
            return Err(ServeError::StoreFailed(why));
        }
        tracing::info!("server stopped");
        Ok(result?)
    }
}

/// Every replica of one store signs checkpoints with the same key (the
/// chain has one verifier key): the first replica pins its key id in the
/// store, and a replica with another key refuses to start.
async fn pin_audit_key(app: &App, key: &checkpoint::CheckpointKey) -> Result<(), ServeError> {
    let mine = key.public.key_id();
    let pinned = app
        .store
        .pin_setting("audit_key_id", &mine)
        .await
        .map_err(|e| ServeError::Config(format!("reading the store's audit key id: {e}")))?;
    if pinned != mine {
        return Err(ServeError::Config(format!(
            "the audit key of this replica ({mine}) is not the one the store was started with \
             ({pinned}): every replica must use the same audit_key_file"
        )));
    }
    Ok(())
}

/// Sets every service's health.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let status = if serving { Serving } else { NotServing };
    for name in [
        "",
        <pb::device_attestation_server::DeviceAttestationServer<DeviceService> as tonic::server::NamedService>::NAME,
        <pb::factory_server::FactoryServer<FactoryService> as tonic::server::NamedService>::NAME,
        <pb::admin_server::AdminServer<AdminService> as tonic::server::NamedService>::NAME,
        <pb::fleet_server::FleetServer<FleetService> as tonic::server::NamedService>::NAME,
        <pb::baselines_server::BaselinesServer<BaselinesService> as tonic::server::NamedService>::NAME,
        <pb::release_server::ReleaseServer<ReleaseService> as tonic::server::NamedService>::NAME,
        <pb::audit_server::AuditServer<AuditService> as tonic::server::NamedService>::NAME,
    ] {
        health.set_service_status(name, status).await;
    }
}

/// How often the store's health is probed.
const HEALTH_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Probes the store with a small read; health follows its answers.
async fn watch_store_health(
    app: Arc<App>,
    health: Arc<tokio::sync::Mutex<tonic_health::server::HealthReporter>>,
    fatal: tokio::sync::watch::Sender<Option<String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut serving = true;
    let mut draining = app.draining.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_PROBE) => {}
            _ = stop.changed() => return,
            // Draining sets NOT_SERVING for good.
            _ = draining.wait_for(|d| *d) => return,
        }
        if let Some(why) = app.store.failure() {
            let h = health.lock().await;
            set_health(&h, false).await;
            tracing::error!(error = %why, "the store cannot write until attestd restarts: NOT_SERVING, stopping");
            fatal.send_replace(Some(why));
            return;
        }
        let probe = tokio::time::timeout(HEALTH_PROBE * 3, app.store.probe()).await;
        let ok = matches!(probe, Ok(Ok(())));
        if ok != serving {
            if ok {
                tracing::info!("the store answers again: serving");
            } else {
                let why = match probe {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", HEALTH_PROBE * 3),
                };
                tracing::error!(error = %why, "the store cannot serve: health is NOT_SERVING");
            }
            let h = health.lock().await;
            if *app.draining.borrow() {
                return;
            }
            set_health(&h, ok).await;
            serving = ok;
        }
    }
}

/// A name for this process among replicas: host, process id and a random
/// part (a restarted process is a new replica).
fn replica_id() -> String {
    use ring::rand::SecureRandom;
    let mut r = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut r);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "attestd".into());
    format!(
        "{}:{}:{}",
        host.chars().take(64).collect::<String>(),
        std::process::id(),
        attestd_core::ids::hex(&r)
    )
}

/// Builds and runs a server with its background jobs (what the binary does).
pub async fn serve(
    listener: TcpListener,
    parts: ServerParts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::new(parts)?.run(listener, shutdown, true).await
}
