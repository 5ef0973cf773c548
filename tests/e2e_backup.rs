//! End-to-end: `attestd backup` of a server under load, `attestd restore`
//! into a new data directory, and a server started on it. What a user would
//! notice: every write acknowledged before the backup is served by the
//! restored attestd; its audit chain is the live chain up to the backup's
//! checkpoint, byte for byte, and verifies with the audit key; the restored
//! attestd goes on taking writes. And the refusals: a damaged or tampered
//! file, a directory that is not empty, a principal that is not a security
//! admin, a server on PostgreSQL, a database in a newer format.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Instant;

use attestd_client::core::keys::PublicKey;
use attestd_client::{pb, SigningKey};
use attestd_store::backup::Header;
use common::fleet::*;
use common::load::*;
use common::*;
use tonic::Code;

/// Runs the attestd binary with `args`.
fn attestd(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestd"))
        .args(args)
        .env("ATTESTD_LOG", "warn")
        .output()
        .expect("running attestd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `attestd backup` of `server` as the principal of `token`, into `out`.
fn backup(server: &TestServer, token: &str, out: &Path, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "backup".as_ref(),
        "--addr".as_ref(),
        server.addr.as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    attestd(&args)
}

fn restore(file: &Path, data_dir: &Path, key: Option<&Path>) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "restore".as_ref(),
        file.as_os_str(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ];
    if let Some(k) = key {
        args.extend(["--audit-key".as_ref(), k.as_os_str()]);
    }
    attestd(&args)
}

/// The header of a backup file.
fn header(file: &Path) -> Header {
    attestd_store::sled_store::restore::verify(file, None)
        .expect("a backup that verifies")
        .header
}

fn audit_key(data_dir: &Path) -> PublicKey {
    use base64::Engine as _;
    let spki = base64::engine::general_purpose::STANDARD
        .decode(
            std::fs::read_to_string(data_dir.join("audit-key.pkcs8.pub"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    PublicKey::from_spki_der(
        &spki,
        attestd_client::core::Reason::FieldInvalid,
        "audit key",
    )
    .unwrap()
}

/// Restores `file` into a new directory with the audit key of `live` and
/// starts a server on it like `live`.
fn start_restored(live: &TestServer, file: &Path) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_pub = live.data_dir().join("audit-key.pkcs8.pub");
    let out = restore(file, &data, Some(&key_pub));
    assert!(out.status.success(), "restore: {}", text(&out));
    // The documented step: the audit key goes with the data.
    std::fs::copy(
        live.data_dir().join("audit-key.pkcs8"),
        data.join("audit-key.pkcs8"),
    )
    .unwrap();
    TestServer::start_in(dir, live.options().clone())
}

/// Whether `server` serves the write `id` of `serial` that a call of
/// `kind` stored: evidence and records by id, release decisions in their
/// unit's history.
async fn serves(server: &TestServer, kind: Kind, serial: &str, id: &str) -> bool {
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let found = |r: Result<(), tonic::Status>| match r {
        Ok(()) => true,
        Err(s) if s.code() == Code::NotFound => false,
        Err(s) => panic!("reading {id} of {serial}: {s}"),
    };
    match kind {
        Kind::Boot => found(
            auditor
                .fleet()
                .get_evidence(pb::GetEvidenceRequest {
                    evidence_id: id.into(),
                })
                .await
                .map(|e| assert_eq!(e.into_inner().serial, serial)),
        ),
        Kind::Record => found(
            auditor
                .factory()
                .get_record(pb::GetRecordRequest {
                    record_id: id.into(),
                })
                .await
                .map(|r| assert_eq!(r.into_inner().serial, serial)),
        ),
        Kind::Release => history(&auditor, serial).await.into_iter().any(|e| {
            matches!(e.entry, Some(pb::history_entry::Entry::ReleaseDecision(d)) if d.decision_id == id)
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_write_and_the_chain() {
    let t0 = Instant::now();
    let mut f = Fleet::start_on(Options {
        limits: vec![
            ("rate_per_peer_per_min", "100000000".into()),
            ("rate_per_serial_per_min", "100000000".into()),
        ],
        ..Options::default()
    })
    .await;
    f.enroll("PM-200", 6, 0..0).await;
    let v1 = baseline_doc(
        "PM-200",
        1,
        &[("2.1.4", 10)],
        &[],
        "2026-01-01T00:00:00Z".into(),
    );
    f.publish(&v1, &[0, 1]).await.expect("baseline v1");
    for i in 4..6 {
        f.boot(i).await;
    }
    let units: Vec<Arc<Unit>> = std::mem::take(&mut f.units)
        .into_iter()
        .map(Arc::new)
        .collect();
    let release: Vec<String> = units[4..].iter().map(|u| u.serial.clone()).collect();
    let st_key = Arc::new(
        register_station(&f.admin, "rep-a", &[pb::RecordKind::Provisioning], &["*"]).await,
    );
    let live = &f.server;

    // Units booting, a station provisioning, MES asking the gate: writes
    // of every kind go on while the backup is taken.
    let mut load = Load::new(t0);
    for w in 0..2 {
        load.spawn(
            0,
            Job::Boot {
                device: live.client(None).await,
                units: units[2 * w..2 * w + 2].to_vec(),
            },
        );
    }
    load.spawn(
        0,
        Job::Record {
            client: live.station("rep-a").await,
            station: "rep-a".into(),
            key: st_key,
            prefix: "BK".into(),
        },
    );
    load.spawn(
        0,
        Job::Release {
            mes: live.client(Some(MES_TOKEN)).await,
            serials: release,
        },
    );
    let workers = load.workers_on(&[0]);
    load.wait_acked(&workers, Phase::Before, 10).await;

    // The backup, while the load goes on ("Faulting": the backup runs).
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("attestd.backup");
    load.set(Phase::Faulting);
    let out = {
        let (addr, file) = (live.addr.clone(), file.clone());
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("admin.token");
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
        tokio::task::spawn_blocking(move || {
            let o = attestd(&[
                "backup".as_ref(),
                "--addr".as_ref(),
                addr.as_ref(),
                "--token-file".as_ref(),
                token_file.as_os_str(),
                "--out".as_ref(),
                file.as_os_str(),
            ]);
            drop(token_dir);
            o
        })
        .await
        .unwrap()
    };
    load.set(Phase::After);
    assert!(out.status.success(), "backup: {}", text(&out));
    eprintln!("{}", text(&out));
    load.wait_acked(&workers, Phase::After, 5).await;
    let calls = load.finish().await;
    assert!(
        calls.iter().all(|c| c.outcome.is_ok()),
        "every call succeeded while the backup was taken: {:?}",
        calls.iter().find(|c| c.outcome.is_err())
    );
    assert!(
        calls
            .iter()
            .any(|c| c.from == Phase::Faulting || c.to == Phase::Faulting),
        "writes ran while the backup was taken"
    );

    let h = header(&file);
    eprintln!(
        "backup: audit head {}, {} entries, writes paused {} us",
        h.audit_seq, h.entries, h.writes_paused_us
    );

    let restored = start_restored(live, &file);
    let live_auditor = live.client(Some(AUDITOR_TOKEN)).await;
    let auditor = restored.client(Some(AUDITOR_TOKEN)).await;
    let live_chain = audit_entries(&live_auditor).await;
    let chain = audit_entries(&auditor).await;
    let n = h.audit_seq as usize;

    // Every acknowledged write whose audit entry precedes the backup's
    // checkpoint is served by the restored attestd, and none after it: the
    // copy is the state at the checkpoint. (Details start with the id of
    // what was stored.)
    let seq_of = |kind: Kind, id: &str| {
        live_chain
            .iter()
            .find(|e| e.action == kind.action() && e.details.split([';', ' ']).next() == Some(id))
            .map(|e| e.seq)
            .unwrap_or_else(|| panic!("no {} entry for {id}", kind.action()))
    };
    let (mut before, mut after) = (0, 0);
    for kind in [Kind::Boot, Kind::Record, Kind::Release] {
        for (serial, id) in acked(&calls, kind) {
            let in_copy = seq_of(kind, &id) < h.audit_seq;
            assert_eq!(
                serves(&restored, kind, &serial, &id).await,
                in_copy,
                "{kind:?} {id} of {serial}: in the copy {in_copy}"
            );
            if in_copy {
                before += 1;
            } else {
                after += 1;
            }
        }
    }
    eprintln!(
        "restored: {before} acknowledged writes before the checkpoint served, {after} after it not"
    );
    assert!(
        before >= 40 && after >= 10,
        "writes on both sides of the backup"
    );
    // In particular every call answered before the backup began.
    for c in calls.iter().filter(|c| c.to == Phase::Before) {
        for a in c
            .outcome
            .as_ref()
            .unwrap()
            .iter()
            .filter(|a| !a.id.is_empty())
        {
            assert!(seq_of(c.kind, &a.id) < h.audit_seq);
        }
    }

    // The restored chain is the live chain up to the backup's checkpoint,
    // which follows the entry naming who took it.
    assert_eq!(
        chain.len(),
        n,
        "the restored chain ends at the backup's head"
    );
    assert_eq!(
        chain[..],
        live_chain[..n],
        "the live chain's prefix, byte for byte"
    );
    assert_eq!(chain[n - 1].action, "audit.checkpoint");
    assert_eq!(
        (
            chain[n - 2].action.as_str(),
            chain[n - 2].principal.as_str()
        ),
        ("store.backup", "admin")
    );
    assert!(
        live_chain.len() > n,
        "the live attestd went on writing after the backup"
    );
    let export = attestd_client::audit::export_file(&auditor, 0, 0, |_| {})
        .await
        .expect("export from the restored attestd");
    let v = attestd_client::core::audit::export::verify_export(
        &export.text,
        Some(&audit_key(&live.data_dir())),
    )
    .expect("the restored chain verifies with the audit key");
    assert!(v.checkpoints >= 1 && v.signature_checked);

    // Counters agree with the chain they were copied with.
    let count = |action: &str| chain.iter().filter(|e| e.action == action).count() as u64;
    let (stations, devices, records, evidence) = restored.stored();
    assert_eq!(evidence, count("evidence.accept"));
    assert_eq!(
        records,
        count("record.provisioning") + count("record.calibration")
    );
    assert_eq!(stations, count("station.register"));
    assert_eq!(devices, count("record.provisioning"));

    // The restored attestd takes writes, and a unit's history goes on in
    // order after what was restored.
    let u = &units[0];
    let device = restored.client(None).await;
    let nonce = challenge(&device, &u.serial).await;
    let new = submit(
        &device,
        attestd_client::evidence::sign_evidence(&u.claims(1_000_000, nonce), &u.key),
    )
    .await
    .expect("a boot on the restored attestd");
    let ids = evidence_ids(&auditor, &u.serial).await;
    assert_eq!(ids.last(), Some(&new.evidence_id), "history order: {ids:?}");
    eprintln!("{:>6.2?}: done", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_tampered_backup_is_refused_and_nothing_is_written() {
    let server = TestServer::start();
    enroll_one(
        &server,
        "PM200-000001",
        attestd_client::core::keys::KeyAlg::Es256,
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("b.attestd");
    let out = backup(&server, ADMIN_TOKEN, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let good = std::fs::read(&file).unwrap();

    // One byte changed in the middle: the SHA-256 names it.
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x20;
    let damaged = files.path().join("damaged.attestd");
    std::fs::write(&damaged, &bad).unwrap();
    let target = files.path().join("restored");
    let out = restore(&damaged, &target, None);
    assert!(!out.status.success());
    assert!(text(&out).contains("damaged"), "{}", text(&out));
    assert!(!target.exists(), "a refused restore leaves no directory");

    // Cut short.
    let cut = files.path().join("cut.attestd");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let out = restore(&cut, &target, None);
    assert!(!out.status.success());
    assert!(text(&out).contains("damaged"), "{}", text(&out));

    // Signed by another audit key than the one given.
    let other = SigningKey::generate(attestd_client::core::keys::KeyAlg::Ed25519).unwrap();
    let other_pub = files.path().join("other.pub");
    {
        use base64::Engine as _;
        std::fs::write(
            &other_pub,
            base64::engine::general_purpose::STANDARD.encode(other.public_key().spki_der()),
        )
        .unwrap();
    }
    let out = restore(&file, &target, Some(&other_pub));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not by the key given"),
        "{}",
        text(&out)
    );
    assert!(!target.exists());

    // Not a backup at all.
    let out = restore(
        &server.data_dir().join("audit-key.pkcs8.pub"),
        &target,
        None,
    );
    assert!(
        text(&out).contains("not an attestd backup"),
        "{}",
        text(&out)
    );

    // The intact file restores, with the key.
    let key = server.data_dir().join("audit-key.pkcs8.pub");
    let out = restore(&file, &target, Some(&key));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("signature verifies"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_directory_that_is_not_empty_and_backup_an_existing_file() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("b.attestd");
    let out = backup(&server, ADMIN_TOKEN, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is its owner's only");
    }

    let target = files.path().join("data");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep-me"), b"operator's file").unwrap();
    let out = restore(&file, &target, None);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
    assert_eq!(left.len(), 1, "the directory is as it was");
    assert_eq!(
        std::fs::read(target.join("keep-me")).unwrap(),
        b"operator's file"
    );
    // An empty directory is fine.
    std::fs::remove_file(target.join("keep-me")).unwrap();
    let out = restore(&file, &target, None);
    assert!(out.status.success(), "{}", text(&out));

    // The backup file is never replaced without --force.
    let before = std::fs::read(&file).unwrap();
    let out = backup(&server, ADMIN_TOKEN, &file, &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let out = backup(&server, ADMIN_TOKEN, &file, &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read(&file).unwrap(), before, "a newer backup");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(files.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_security_admin_may_take_a_backup() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    for token in [
        AUDITOR_TOKEN,
        MES_TOKEN,
        HOSPITAL_TOKEN,
        station_token("line1-prov"),
    ] {
        let file = files.path().join("b.attestd");
        let out = backup(&server, token, &file, &[]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("PermissionDenied"),
            "{token}: {}",
            text(&out)
        );
        assert!(!file.exists());
        let c = server.client(Some(token)).await;
        assert_rejected(
            c.admin().backup(pb::BackupRequest {}).await.map(|_| ()),
            Code::PermissionDenied,
            "ROLE_FORBIDDEN",
        );
    }
    let c = server.client(Some("not-a-token")).await;
    assert_rejected(
        c.admin().backup(pb::BackupRequest {}).await.map(|_| ()),
        Code::Unauthenticated,
        "NO_CREDENTIALS",
    );
    // Nothing was written for the refused calls: the chain holds no
    // store.backup entry.
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    assert!(audit_entries(&auditor)
        .await
        .iter()
        .all(|e| e.action != "store.backup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_refuses_and_names_its_tools() {
    Backend::Postgres
        .run(async {
            let server = TestServer::start();
            let files = tempfile::tempdir().unwrap();
            let file = files.path().join("b.attestd");
            let out = backup(&server, ADMIN_TOKEN, &file, &[]);
            assert!(!out.status.success());
            let t = text(&out);
            assert!(t.contains("FailedPrecondition"), "{t}");
            assert!(t.contains("pg_dump") && t.contains("pg_basebackup"), "{t}");
            assert!(!file.exists());
            let c = server.admin().await;
            assert_rejected(
                c.admin().backup(pb::BackupRequest {}).await.map(|_| ()),
                Code::FailedPrecondition,
                "BACKUP_UNSUPPORTED",
            );
        })
        .await
}

/// Sets `meta`'s `format/version` of the stopped database in `dir`.
fn set_format(dir: &Path, version: Option<u64>) {
    let db = open_raw(dir);
    let meta = db.open_tree("meta").unwrap();
    match version {
        Some(v) => meta.insert("format/version", &v.to_be_bytes()).unwrap(),
        None => meta.remove("format/version").unwrap(),
    };
    db.flush().unwrap();
}

fn format_of(dir: &Path) -> Option<Vec<u8>> {
    let db = open_raw(dir);
    db.open_tree("meta")
        .unwrap()
        .get("format/version")
        .unwrap()
        .map(|v| v.to_vec())
}

/// sled directly, waiting for a stopped server's lock to go.
fn open_raw(dir: &Path) -> sled::Db {
    let t0 = Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if t0.elapsed() < std::time::Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

/// `attestd serve` with the test server's configuration, expected to stop.
fn serve_fails(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_attestd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("ATTESTD_LOG", "warn")
        .output()
        .expect("running attestd");
    assert!(!out.status.success(), "attestd started: {}", text(&out));
    text(&out)
}

fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_a_newer_format_is_refused_at_start_and_left_as_it_was() {
    let mut server = TestServer::start();
    enroll_one(
        &server,
        "PM200-000002",
        attestd_client::core::keys::KeyAlg::Es256,
    )
    .await;
    server.kill9();
    let data = server.data_dir();
    assert_eq!(format_of(&data), Some(1u64.to_be_bytes().to_vec()));
    set_format(&data, Some(2));
    // Wait for the raw handle's lock to go, then look at every byte.
    drop(open_raw(&data));
    let before = files_of(&data);
    let msg = serve_fails(&server.dir.path().join("attestd.toml"));
    assert!(msg.contains("store format 2"), "{msg}");
    assert!(msg.contains("newer attestd"), "{msg}");
    assert!(msg.contains("Nothing was changed"), "{msg}");
    assert_eq!(
        files_of(&data),
        before,
        "a refused database is not written to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_formats_were_recorded_opens_as_format_1() {
    let mut server = TestServer::start();
    enroll_one(
        &server,
        "PM200-000003",
        attestd_client::core::keys::KeyAlg::Es256,
    )
    .await;
    server.kill9();
    let data = server.data_dir();
    set_format(&data, None);
    assert_eq!(format_of(&data), None);
    server.restart();
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    auditor
        .fleet()
        .get_device(pb::GetDeviceRequest {
            serial: "PM200-000003".into(),
        })
        .await
        .expect("the unit is still there");
    server.kill9();
    assert_eq!(
        format_of(&data),
        Some(1u64.to_be_bytes().to_vec()),
        "opening records format 1"
    );
}
