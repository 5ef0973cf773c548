//! End-to-end: the server's lifecycle as a supervisor (systemd, Kubernetes)
//! sees it. SIGTERM drains within the deadline and tells streams to
//! reconnect; health follows the store and the drain; a store that cannot
//! write again stops the server with an error; configuration is checked
//! before anything listens or is opened; principals reload on SIGHUP;
//! what attestd writes is private.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestd_client::pb;
use attestd_client::Client;
use attestd_server::{Server, ServerParts};
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::Store;
use common::faulty::FaultyStore;
use common::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

async fn health_of(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Waits until `f` answers true, up to `within`.
async fn eventually(within: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// An in-process server over a store that fails on demand; `run`'s result
/// comes back on the returned task.
async fn inproc_faulty() -> (
    Arc<FaultyStore>,
    String,
    tokio::task::JoinHandle<Result<(), attestd_server::ServeError>>,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), &SledConfig::default()).unwrap());
    let store = Arc::new(FaultyStore::new(sled));
    let server = Server::new(ServerParts {
        store: store.clone(),
        settings: attestd_server::settings::Settings {
            limits: attestd_server::settings::Limits {
                drain_timeout_secs: 2,
                ..Default::default()
            },
            ..Default::default()
        },
        clock: Arc::new(attestd_server::clock::SystemClock),
        metrics_listener: None,
        checkpoint_key: None,
        tls: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(
        listener,
        async {
            let _ = stopped.await;
        },
        false,
    ));
    (store, addr, task, stop, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_store_fails_and_serving_again_after() {
    let (store, addr, _task, _stop, _dir) = inproc_faulty().await;
    let channel = Client::connect(&addr, None).await.unwrap().channel();
    assert_eq!(
        health_of(channel.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    store.failing.store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "NOT_SERVING while failing",
        async || health_of(channel.clone()).await.unwrap() == ServingStatus::NotServing as i32,
    )
    .await;
    store.failing.store(false, Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "SERVING once it works",
        async || health_of(channel.clone()).await.unwrap() == ServingStatus::Serving as i32,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_until_restarted_stops_the_server_with_an_error() {
    let (store, addr, task, _stop, _dir) = inproc_faulty().await;
    let channel = Client::connect(&addr, None).await.unwrap().channel();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    *store.fatal.lock().unwrap() = Some("injected: a flush to disk failed".into());
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a health update")
        .unwrap()
        .expect("the health stream goes on");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let ended = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the server stops by itself")
        .unwrap();
    match ended {
        Err(attestd_server::ServeError::StoreFailed(why)) => {
            assert!(why.contains("injected"), "{why}")
        }
        other => panic!("expected StoreFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_watchers_to_reconnect_and_exits_within_the_drain_deadline() {
    let mut server = TestServer::start_with(Options {
        limits: vec![("drain_timeout_secs", "4".into())],
        ..Default::default()
    });
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let mut changes = auditor
        .fleet()
        .watch_fleet(pb::WatchFleetRequest {
            filter: None,
            after_cursor: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    // A second connection watches health, as a load balancer would.
    let lb = server.client(None).await.channel();
    let mut health = HealthClient::new(lb)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    // A change the watcher sees first: the stream is live.
    enroll_one(
        &server,
        "PM200-L1",
        attestd_client::core::keys::KeyAlg::Es256,
    )
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), changes.message())
        .await
        .expect("a change")
        .unwrap()
        .expect("the stream is open");
    assert_eq!(seen.serial, "PM200-L1");

    let asked = Instant::now();
    server.signal("TERM");
    let h = tokio::time::timeout(Duration::from_secs(10), health.message())
        .await
        .expect("a health update while draining")
        .expect("the health stream answers")
        .expect("the update comes before the stream ends");
    assert_eq!(h.status, ServingStatus::NotServing as i32);
    let end = tokio::time::timeout(Duration::from_secs(10), changes.message())
        .await
        .expect("the watch ends while draining");
    let err = end.expect_err("the watcher is told why the stream ends");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err), "SHUTTING_DOWN", "{err:?}");
    assert!(err.message().contains("reconnect"), "{}", err.message());
    let exit = server
        .wait_exit(Duration::from_secs(4 + 3))
        .expect("attestd exits within the drain deadline");
    assert!(exit.success(), "{exit:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(4 + 3),
        "{:?}",
        asked.elapsed()
    );
}

/// A drain that outlasts its deadline is cut: a call stuck in the store
/// does not hold the server past `drain_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_ends_does_not_hold_the_server_past_the_drain_deadline() {
    let (store, addr, task, stop, _dir) = inproc_faulty().await;
    store.hold.device_reads(true);
    let client = Client::connect(&addr, None).await.unwrap();
    let stuck = tokio::spawn(async move {
        client
            .device()
            .get_challenge(pb::GetChallengeRequest {
                serial: "PM200-STUCK".into(),
            })
            .await
    });
    eventually(
        Duration::from_secs(10),
        "the call is inside the store",
        async || store.hold.held.load(Ordering::SeqCst) == 1,
    )
    .await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2 + 4), task)
        .await
        .expect("the server stops by the drain deadline (2 s)")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "it waited for the call first: {:?}",
        asked.elapsed()
    );
    store.hold.device_reads(false);
    let _ = stuck.await;
}

fn attestd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_attestd"));
    c.env_remove("ATTESTD_CONFIG")
        .env_remove("ATTESTD_LISTEN")
        .env_remove("ATTESTD_DATA_DIR")
        .env("ATTESTD_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// (exit success, stdout, stderr)
fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().expect("run attestd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A release key (base64 SPKI) that parses.
fn good_key() -> String {
    use base64::Engine as _;
    let k =
        attestd_client::SigningKey::generate(attestd_client::core::keys::KeyAlg::Ed25519).unwrap();
    base64::engine::general_purpose::STANDARD.encode(k.public_key().spki_der())
}

/// A configuration that serves, with `extra` appended, listening on `port`.
fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n\
         [release]\nthreshold = 1\nkeys = [\"{}\"]\n\
         [[principals]]\nname = \"admin\"\nrole = \"security-admin\"\ntoken_sha256 = \"{}\"\n{extra}",
        dir.join("data").display().to_string(),
        good_key(),
        sha256_hex(ADMIN_TOKEN),
    );
    let path = dir.join("attestd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_refuses_each_broken_configuration_before_opening_anything() {
    let dir = tempfile::tempdir().unwrap();
    // A port held by the test: a server that bound it before checking would
    // fail with "binding", not with the configuration's mistake.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let data = dir.path().join("data");

    let good = config(dir.path(), port, "");
    let (ok, out, err) = run({
        let mut c = attestd();
        c.arg("check-config").arg(&good);
        c
    });
    assert!(ok, "{out}{err}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(!data.exists(), "check-config creates nothing");

    // [limits] lines replace the whole file's limits section: written as
    // their own table at the end.
    let broken: &[(&str, &str, &str)] = &[
        (
            "a principal with an unknown role",
            "[[principals]]\nname = \"x\"\nrole = \"boss\"\ntoken_sha256 = \"aa\"\n",
            "role must be",
        ),
        (
            "a principal with a malformed token hash",
            "[[principals]]\nname = \"x\"\nrole = \"mes\"\ntoken_sha256 = \"abc\"\n",
            "token_sha256",
        ),
        (
            "a hospital-it principal without a tenant",
            &format!(
                "[[principals]]\nname = \"h\"\nrole = \"hospital-it\"\ntoken_sha256 = \"{}\"\n",
                "b".repeat(64)
            ),
            "tenant",
        ),
        (
            "a certificate principal without client CAs",
            &format!(
                "[[principals]]\nname = \"c\"\nrole = \"mes\"\ncert_sha256 = \"{}\"\n",
                "c".repeat(64)
            ),
            "client_ca_files",
        ),
        ("a zero page size", "[limits]\nmax_page_size = 0\n", "max_page_size"),
        (
            "a 1,000-second commit linger",
            "[limits]\ngroup_commit_max_wait_us = 1000000000\n",
            "group_commit_max_wait_us",
        ),
        (
            "a default page above the maximum",
            "[limits]\ndefault_page_size = 500\nmax_page_size = 100\n",
            "default_page_size",
        ),
        (
            "a missing TLS file",
            "[tls]\ncert_file = \"/nonexistent/server.pem\"\nkey_file = \"/nonexistent/server.key\"\n",
            "TLS",
        ),
        (
            "a PostgreSQL URL with an unknown sslmode",
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1:1/db?sslmode=sometimes\"\n",
            "sslmode",
        ),
    ];
    for (what, extra, says) in broken {
        let cfg = config(dir.path(), port, extra);
        for sub in ["check-config", "serve"] {
            let (ok, out, err) = run({
                let mut c = attestd();
                if sub == "serve" {
                    c.args(["serve", "--config"]).arg(&cfg);
                } else {
                    c.arg(sub).arg(&cfg);
                }
                c
            });
            assert!(!ok, "{sub} accepted {what}: {out}");
            assert!(
                err.contains(says),
                "{sub}, {what}: wanted {says:?} in {err}"
            );
            assert!(
                !err.contains("binding"),
                "{sub}, {what}: bound first: {err}"
            );
            assert!(!out.contains("listening"), "{sub}, {what}: listened: {out}");
            assert!(!data.exists(), "{sub}, {what}: created the data directory");
        }
    }

    // A release key that does not parse.
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[release]\nthreshold = 1\nkeys = [\"bm90IGEga2V5\"]\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let (ok, _, err) = run({
        let mut c = attestd();
        c.arg("check-config").arg(&good);
        c
    });
    assert!(!ok);
    assert!(err.contains("release.keys[0]"), "{err}");

    // No release keys: it would start, but it says loudly what that means.
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, _) = run({
        let mut c = attestd();
        c.arg("check-config").arg(&good);
        c
    });
    assert!(ok, "{out}");
    assert!(out.contains("NO RELEASE KEYS"), "{out}");

    // A PostgreSQL store nobody listens for: check-config does not connect.
    let pg = config(
        dir.path(),
        port,
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n",
    );
    let (ok, out, err) = run({
        let mut c = attestd();
        c.arg("check-config").arg(&pg);
        c
    });
    assert!(ok, "{out}{err}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_reload_on_sighup_and_a_broken_file_keeps_the_old_ones() {
    let server = TestServer::start_with(Options {
        log: Some("info"),
        ..Default::default()
    });
    let cfg = server.dir.path().join("attestd.toml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    let new_token = "reloaded-mes-token-0123456789";
    let newcomer = server.client(Some(new_token)).await;
    let refused = newcomer
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-X".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    std::fs::write(
        &cfg,
        format!(
            "{original}\n[[principals]]\nname = \"mes-2\"\nrole = \"mes\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(new_token)
        ),
    )
    .unwrap();
    server.signal("HUP");
    eventually(Duration::from_secs(10), "the new token works", async || {
        newcomer
            .release()
            .check_release(pb::CheckReleaseRequest {
                serial: "PM200-X".into(),
                ..Default::default()
            })
            .await
            .is_ok()
    })
    .await;

    // A file that no longer parses: nothing changes.
    std::fs::write(&cfg, format!("{original}\nthis is not toml\n")).unwrap();
    server.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the refusal is logged",
        async || server.log().contains("principals NOT reloaded"),
    )
    .await;
    newcomer
        .release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-X".into(),
            ..Default::default()
        })
        .await
        .expect("the principals in force stay");
    server
        .admin()
        .await
        .admin()
        .list_stations(pb::ListStationsRequest::default())
        .await
        .expect("so does the admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_every_file_in_it_are_private() {
    let server = TestServer::start();
    enroll_one(
        &server,
        "PM200-P1",
        attestd_client::core::keys::KeyAlg::Es256,
    )
    .await;
    let dir = server.data_dir();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let mut stack = vec![dir];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the database and the audit key are there");
}

/// A small tmpfs mounted for one test, unmounted after.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a small filesystem: it needs to mount a tmpfs (root, or \
             CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// sled cannot recover from a failed write without being reopened, so
/// attestd, once its disk is full, refuses writes, reports NOT_SERVING and
/// exits non-zero for its supervisor to restart it; with space back, the
/// restarted server has every write it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_server_non_zero_and_nothing_acknowledged_is_lost() {
    let fs = Tmpfs::mount("64m");
    let data = fs.path().join("data");
    let mut server = TestServer::start_with(Options {
        data_dir: Some(data.clone()),
        log: Some("info"),
        ..Default::default()
    });
    let admin = server.admin().await;
    let key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    // Leave a little room, then fill it.
    let free = {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(fs.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; (free - (2 << 20)) as usize]).unwrap();
    let mut acked = Vec::new();
    let mut refused = None;
    for seq in 1..=100_000u64 {
        let serial = format!("PM200-F{seq}");
        let unit = attestd_client::SigningKey::generate(attestd_client::core::keys::KeyAlg::Es256)
            .unwrap();
        match provision(&station, "line1-prov", &key, seq, &serial, &unit).await {
            Ok(_) => acked.push(serial),
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    let refused = refused.expect("the disk fills up");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(!acked.is_empty());
    let exit = server
        .wait_exit(Duration::from_secs(60))
        .expect("attestd stops by itself");
    assert!(
        !exit.success(),
        "a non-zero exit for the supervisor: {exit:?}"
    );
    let log = server.log();
    assert!(log.contains("cannot write until attestd restarts"), "{log}");
    // The refused call's cause reaches the log, with the call's request id:
    // the client hears only STORE_UNAVAILABLE.
    let cause = log
        .lines()
        .find(|l| l.contains("storage failed; the call is answered STORE_UNAVAILABLE"))
        .unwrap_or_else(|| panic!("no log line names the store failure: {log}"));
    assert!(
        cause.contains("request_id") && cause.contains("No space left on device"),
        "{cause}"
    );

    // Space is back: a restart serves every acknowledged write.
    std::fs::remove_file(&filler).unwrap();
    server.restart();
    let admin = server.admin().await;
    for serial in &acked {
        admin
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: serial.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{serial} was acknowledged and is lost: {e}"));
    }
    drop(server);
    drop(fs);
}
