//! A freshly started server with the dev kit (what `attestd serve --dev`
//! makes), and attestctl run against it as a separate process.

#![allow(dead_code)]

pub(crate) mod schema;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use attestd_server::clock::SystemClock;
use attestd_server::dev;
use attestd_server::settings::Settings;
use attestd_server::{Server, ServerParts};
use attestd_store::sled_store::{SledConfig, SledStore};

pub(crate) struct Env {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Env {
    pub(crate) fn dev_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    pub(crate) fn token(&self, role: &str) -> String {
        std::fs::read_to_string(self.dev_dir().join(format!("{role}.token")))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An SDK client acting as `role` of the dev kit (None: no token).
    pub(crate) async fn client(&self, role: Option<&str>) -> attestd_client::Client {
        let token = role.map(|r| self.token(r));
        attestd_client::Client::connect(&self.endpoint, token.as_deref())
            .await
            .unwrap()
    }

    /// attestctl with the endpoint set and no token from the environment.
    pub(crate) fn command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_attestctl"));
        c.arg("--endpoint")
            .arg(&self.endpoint)
            .args(args)
            .env_remove("ATTESTD_TOKEN")
            .env_remove("ATTESTD_ENDPOINT");
        if let Some(t) = token {
            c.arg("--token").arg(t);
        }
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub(crate) async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kit = dev::prepare(dir.path()).unwrap();
    let store = SledStore::open(
        &dir.path().join("data"),
        &SledConfig {
            cache_capacity: 16 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    dev::register_station(&store, &kit.station_key, 0)
        .await
        .unwrap();
    let server = Server::new(ServerParts {
        store: Arc::new(store),
        settings: Settings {
            limits: attestd_server::settings::Limits {
                checkpoint_interval_secs: 1,
                ..Default::default()
            },
            principals: kit.principals.clone(),
            release: kit.release.clone(),
        },
        clock: Arc::new(SystemClock),
        metrics_listener: None,
        checkpoint_key: Some(Arc::new(
            attestd_server::checkpoint::CheckpointKey::load_or_create(
                &dir.path().join("audit-key.pkcs8"),
            )
            .unwrap(),
        )),
        tls: None,
    })
    .unwrap()
    .results_with(Arc::new(
        attestd_server::results::ResultKeys::load_or_create(
            &dir.path().join("result-key.pkcs8"),
            &[],
        )
        .unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run(
                listener,
                async {
                    let _ = stopped.await;
                },
                true,
            )
            .await;
    });
    Env {
        dir,
        endpoint,
        stop: Some(stop),
    }
}

/// Runs attestctl (off the async runtime); returns (exit code, stdout, stderr).
pub(crate) async fn ctl(env: &Env, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = env.command(token, args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
pub(crate) fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(crate) fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}
