//! An in-process server for tests that must drive background work by hand
//! (run the re-appraisal job to quiescence after each step) or wrap the
//! store (fault injection). It speaks real gRPC on a loopback port.

#![allow(dead_code)]

use std::sync::Arc;

use attestd_client::Client;
use attestd_server::app::App;
use attestd_server::clock::ManualClock;
use attestd_server::settings::{PrincipalConfig, ReleaseConfig, Settings};
use attestd_server::{Server, ServerParts};
use attestd_store::Store;

use super::{sha256_hex, ADMIN_TOKEN, AUDITOR_TOKEN, HOSPITAL_TOKEN, MES_TOKEN, STATIONS};

pub(crate) struct InProc {
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The test principals of `common`, plus a second hospital tenant.
pub(crate) fn principals() -> Vec<PrincipalConfig> {
    let p = |name: &str, role: &str, token: &str, station: Option<&str>, tenant: Option<&str>| {
        PrincipalConfig {
            name: name.into(),
            role: role.into(),
            token_sha256: Some(sha256_hex(token)),
            cert_sha256: None,
            cert_uri: None,
            station_id: station.map(Into::into),
            tenant: tenant.map(Into::into),
        }
    };
    let mut v = vec![
        p("admin", "security-admin", ADMIN_TOKEN, None, None),
        p("mes", "mes", MES_TOKEN, None, None),
        p(
            "hospital",
            "hospital-it",
            HOSPITAL_TOKEN,
            None,
            Some("st-mary"),
        ),
        p(
            "hospital-b",
            "hospital-it",
            "test-hospital-b-token",
            None,
            Some("county"),
        ),
        p("auditor", "auditor", AUDITOR_TOKEN, None, None),
    ];
    for (id, tok) in STATIONS {
        v.push(p(id, "station", tok, Some(id), None));
    }
    v
}

impl InProc {
    /// Starts a server on `store` with the clock at `start_ms`; the
    /// re-appraisal job does not run by itself (call [`InProc::settle`]).
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        release: ReleaseConfig,
        start_ms: i64,
    ) -> InProc {
        InProc::start_with(store, release, start_ms, Default::default()).await
    }

    pub(crate) async fn start_with(
        store: Arc<dyn Store>,
        release: ReleaseConfig,
        start_ms: i64,
        limits: attestd_server::settings::Limits,
    ) -> InProc {
        let clock = Arc::new(ManualClock::new(start_ms));
        InProc::start_on_clock(store, release, clock, limits).await
    }

    /// Starts a server on `store` reading `clock` (replicas share one).
    pub(crate) async fn start_on_clock(
        store: Arc<dyn Store>,
        release: ReleaseConfig,
        clock: Arc<ManualClock>,
        limits: attestd_server::settings::Limits,
    ) -> InProc {
        let server = Server::new(ServerParts {
            store,
            settings: Settings {
                limits,
                principals: principals(),
                release,
            },
            clock: clock.clone(),
            metrics_listener: None,
            checkpoint_key: None,
            tls: None,
        })
        .expect("server settings");
        let app = server.app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(
                    listener,
                    async {
                        let _ = stopped.await;
                    },
                    false,
                )
                .await
                .expect("server run");
        });
        InProc {
            app,
            clock,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn client(&self, token: Option<&str>) -> Client {
        Client::connect(&format!("http://{}", self.addr), token)
            .await
            .expect("connect")
    }

    /// Runs the re-appraisal job until it has nothing left to do.
    pub(crate) async fn settle(&self) {
        for _ in 0..1000 {
            if attestd_server::reappraisal::step(&self.app)
                .await
                .expect("re-appraisal step")
                == 0
            {
                return;
            }
        }
        panic!("the re-appraisal job did not settle");
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
