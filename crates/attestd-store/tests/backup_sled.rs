//! Backups of the sled store, below the server: a copy taken while writers
//! run restores into a database that serves the same data and goes on from
//! there; the file refuses tampering that recomputes its SHA-256; the
//! store's format version is recorded, and a newer one is refused.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestd_core::audit::{checkpoint_message, Checkpoint, CHECKPOINT_ACTION};
use attestd_core::keys::{KeyAlg, PublicKey};
use attestd_store::backup::read::{read, Item};
use attestd_store::backup::{encode, BackupError, Seal, Snapshot, Table};
use attestd_store::conformance::{self, data};
use attestd_store::sled_store::restore::{restore, verify};
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::{AuditNote, HistoryItem, Store, StoreError};
use ring::signature::{Ed25519KeyPair, KeyPair};

fn config() -> SledConfig {
    SledConfig {
        cache_capacity: 8 << 20,
        ..SledConfig::default()
    }
}

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, &config()).expect("opening the sled store")
}

/// Closes and drops a store that nothing else holds.
async fn shut(s: Arc<SledStore>) {
    s.close().await;
    drop(Arc::into_inner(s).expect("the only handle"));
}

/// An audit key, and a seal that signs checkpoints with it as the server does.
fn audit_key() -> (Arc<Ed25519KeyPair>, PublicKey) {
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let public = PublicKey::from_raw(KeyAlg::Ed25519, pair.public_key().as_ref()).unwrap();
    (Arc::new(pair), public)
}

fn seal(pair: &Arc<Ed25519KeyPair>, public: &PublicKey) -> Seal {
    let (pair, key_id) = (pair.clone(), public.key_id());
    Box::new(move |seq, hash| {
        let at_ms = 1_767_225_600_000;
        let c = Checkpoint {
            seq,
            hash,
            at_ms,
            key_id: key_id.clone(),
            signature: pair
                .sign(&checkpoint_message(seq, &hash, at_ms))
                .as_ref()
                .to_vec(),
        };
        AuditNote::new(at_ms, "attestd", CHECKPOINT_ACTION, &format!("head {seq}"))
            .details(c.details())
    })
}

fn backup_note() -> AuditNote {
    AuditNote::new(1_767_225_600_000, "admin", "store.backup", "store")
}

/// Takes a backup of `s` into `file`.
async fn backup_to(s: &dyn Store, file: &Path, seal: Seal) -> attestd_store::backup::Header {
    let snap = s.backup(&backup_note(), seal).await.expect("a backup");
    let h = snap.header.clone();
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    encode(&snap, &mut out).unwrap();
    drop(out);
    h
}

/// A unit's history as (kind, id) in order.
async fn history(s: &dyn Store, serial: &str) -> Vec<String> {
    s.list_history(serial, None, 1000)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|h| match h {
            HistoryItem::Evidence(e) => format!("e {}", e.evidence_id),
            HistoryItem::Record(r) => format!("r {}", r.record_id),
            HistoryItem::Reappraisal(_) => "a".into(),
            HistoryItem::Decision(d) => format!("d {}", d.decision_id),
        })
        .collect()
}

/// Evidence of `serial` decided on its current state (the scenario leaves a
/// baseline active for its model).
async fn boot(s: &dyn Store, serial: &str, bootcount: u64) {
    let dev = data::device(s, serial).await;
    let mut e = data::evidence(serial, bootcount, &dev, false);
    e.expected_baseline = s.active_baseline_version(&dev.model).await.unwrap();
    s.commit_evidence(e).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_a_store_that_serves_the_same_and_goes_on() {
    let (pair, public) = audit_key();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Arc::new(open(&dir.path().join("a")));
    conformance::audit::scenario(&*s).await;
    // sled's id generator jumps ahead at every opening: the orders of a
    // database that ran a while are far above those of a new one.
    for _ in 0..3 {
        shut(s).await;
        s = Arc::new(open(&dir.path().join("a")));
    }
    data::line(&*s, "st-b").await;
    data::enroll(&*s, "st-b", 1, "U7", 7).await;
    for n in 1..=3 {
        boot(&*s, "U7", n).await;
    }
    let file = dir.path().join("b.attestd");
    let h = backup_to(&*s, &file, seal(&pair, &public)).await;
    let chain = s.audit_after(0, 10_000).await.unwrap();
    assert_eq!(h.audit_seq, chain.len() as u64);
    let n = chain.len();
    assert_eq!(chain[n - 2].action, "store.backup");
    assert_eq!(chain[n - 1].action, CHECKPOINT_ACTION);
    assert_eq!(h.checkpoint_key, public.key_id());
    let views = (
        data::snapshot(&*s, "U1").await,
        data::snapshot(&*s, "U7").await,
        history(&*s, "U7").await,
        s.counts().await.unwrap(),
        s.change_cursor().await.unwrap(),
    );

    let v = verify(&file, Some(&public)).expect("the backup verifies with its key");
    assert!(v.signature_checked);
    let target = dir.path().join("restored");
    restore(&file, &target, Some(&public)).expect("restore");
    let r = open(&target);
    assert_eq!(
        (
            data::snapshot(&r, "U1").await,
            data::snapshot(&r, "U7").await,
            history(&r, "U7").await,
            r.counts().await.unwrap(),
            r.change_cursor().await.unwrap(),
        ),
        views
    );
    assert_eq!(r.audit_after(0, 10_000).await.unwrap(), chain);
    assert_eq!(
        r.audit_last_checkpoint().await.unwrap().map(|c| c.seq),
        Some(n as u64)
    );
    data::assert_counters_match_units(&r).await;

    // It goes on: a unit's history continues after what was restored (new
    // list orders start above the restored ones), the chain from its head.
    let before = history(&r, "U7").await;
    boot(&r, "U7", 4).await;
    let after = history(&r, "U7").await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    r.append_audit(&AuditNote::new(1, "t", "after.restore", "x"))
        .await
        .unwrap();
    let entries = r.audit_after(0, 10_000).await.unwrap();
    assert_eq!(
        r.audit_head().await.unwrap(),
        ((n + 2) as u64, data::verified_head(&entries))
    );
    // The live store goes on too, and its next checkpoint is not a
    // checkpoint of the backup's.
    shut(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_copy_and_each_copy_is_a_prefix_of_the_chain() {
    let (pair, public) = audit_key();
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir.path().join("a")));
    data::line(&*s, "st-a").await;
    // Writers of every path: grouped (records, evidence) and direct (audit).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u32 {
        let (s, stop) = (s.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let serial = format!("W{w}-{n}");
                match w {
                    0 => {
                        let dev = data::enroll(&*s, "st-a", 1 + n, &serial, 1000 + n as u32).await;
                        s.commit_evidence(data::evidence(&serial, 1, &dev, false))
                            .await
                            .unwrap();
                    }
                    _ => s
                        .append_audit(&AuditNote::new(1, "w", "test.write", &serial))
                        .await
                        .unwrap(),
                }
                n += 1;
            }
            n
        }));
    }
    let mut files = Vec::new();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let file = dir.path().join(format!("b{i}.attestd"));
        let h = backup_to(&*s, &file, seal(&pair, &public)).await;
        eprintln!(
            "backup {i}: head {}, {} entries, writes paused {} us",
            h.audit_seq, h.entries, h.writes_paused_us
        );
        files.push((file, h));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        assert!(w.await.unwrap() > 0, "every writer wrote");
    }
    let chain = s.audit_after(0, 1_000_000).await.unwrap();
    for (i, (file, h)) in files.iter().enumerate() {
        verify(file, Some(&public)).unwrap();
        let target = dir.path().join(format!("r{i}"));
        restore(file, &target, None).unwrap();
        let r = open(&target);
        let copy = r.audit_after(0, 1_000_000).await.unwrap();
        assert_eq!(copy.len() as u64, h.audit_seq);
        assert_eq!(
            copy[..],
            chain[..copy.len()],
            "backup {i} is the chain's prefix"
        );
        data::assert_counters_match_units(&r).await;
        // Each write is whole in the copy or absent: every unit has its
        // record first, and the totals count what the histories hold.
        let (mut records, mut evidence) = (0, 0);
        for d in data::all_devices(&r).await {
            let h = history(&r, &d.serial).await;
            assert!(h[0].starts_with("r "), "{}: {h:?}", d.serial);
            records += h.iter().filter(|x| x.starts_with("r ")).count() as u64;
            evidence += h.iter().filter(|x| x.starts_with("e ")).count() as u64;
        }
        let c = r.counts().await.unwrap();
        assert_eq!((c.records, c.evidence), (records, evidence), "backup {i}");
    }
    shut(s).await;
}

/// The tables of a backup, read back.
fn tables(file: &Path) -> Snapshot {
    let mut tables: Vec<Table> = Vec::new();
    let header = read(
        file,
        |_| Ok(()),
        |i| {
            match i {
                Item::Table { name, .. } => tables.push(Table {
                    name: name.into(),
                    entries: Vec::new(),
                }),
                Item::Entry { key, value } => tables
                    .last_mut()
                    .unwrap()
                    .entries
                    .push((key.into(), value.into())),
            }
            Ok(())
        },
    )
    .unwrap();
    Snapshot { header, tables }
}

fn rewrite(file: &Path, s: &Snapshot) {
    let mut out = std::fs::File::create(file).unwrap();
    encode(s, &mut out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_chain_is_refused_even_with_a_recomputed_sha256() {
    use prost::Message;
    let (pair, public) = audit_key();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("a"));
    conformance::audit::scenario(&s).await;
    let file = dir.path().join("b.attestd");
    backup_to(&s, &file, seal(&pair, &public)).await;
    let good = tables(&file);
    let audit = good.tables.iter().position(|t| t.name == "audit").unwrap();

    // An entry's principal changed, the file's SHA-256 made to match.
    let mut forged = tables(&file);
    let (_, v) = &mut forged.tables[audit].entries[2];
    let mut r = attestd_store::AuditRecord::decode(v.as_ref()).unwrap();
    r.principal = "someone-else".into();
    *v = r.encode_to_vec().into();
    rewrite(&file, &forged);
    match verify(&file, None) {
        Err(BackupError::Chain { seq: 3, why }) => assert!(why.contains("hash"), "{why}"),
        other => panic!("expected a broken chain at 3, got {other:?}"),
    }
    let target = dir.path().join("restored");
    assert!(matches!(
        restore(&file, &target, None),
        Err(BackupError::Chain { .. })
    ));
    assert!(!target.exists(), "a refused restore leaves nothing");

    // The last entries cut off (the checkpoint with them), header adjusted.
    let mut cut = good_snapshot(&good);
    let n = cut.tables[audit].entries.len();
    cut.tables[audit].entries.truncate(n - 2);
    cut.header.entries -= 2;
    rewrite(&file, &cut);
    match verify(&file, None) {
        Err(BackupError::Chain { why, .. }) => assert!(why.contains("head"), "{why}"),
        other => panic!("expected the cut to be named, got {other:?}"),
    }

    // A checkpoint signed by another key is refused when the key is given.
    rewrite(&file, &good_snapshot(&good));
    let (_, other) = audit_key();
    assert!(matches!(
        verify(&file, Some(&other)),
        Err(BackupError::Chain { why, .. }) if why.contains("not by the key given")
    ));
    verify(&file, Some(&public)).unwrap();
}

fn good_tables(s: &Snapshot) -> Vec<Table> {
    s.tables
        .iter()
        .map(|t| Table {
            name: t.name.clone(),
            entries: t.entries.clone(),
        })
        .collect()
}

fn good_snapshot(s: &Snapshot) -> Snapshot {
    Snapshot {
        header: s.header.clone(),
        tables: good_tables(s),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_writes_only_into_a_missing_or_empty_directory() {
    let (pair, public) = audit_key();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("a"));
    data::line(&s, "st-a").await;
    let file = dir.path().join("b.attestd");
    backup_to(&s, &file, seal(&pair, &public)).await;
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("x"), b"x").unwrap();
    assert!(matches!(
        restore(&file, &busy, None),
        Err(BackupError::NotEmpty(_))
    ));
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore(&file, &empty, None).unwrap();
    assert!(open(&empty).get_station("st-a").await.unwrap().is_some());
}

/// sled directly, waiting for a closed store's lock to go.
fn raw(dir: &Path) -> sled::Db {
    let t0 = Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn set_meta(dir: &Path, key: &str, value: Option<&[u8]>) {
    let db = raw(dir);
    let meta = db.open_tree("meta").unwrap();
    match value {
        Some(v) => meta.insert(key, v).unwrap(),
        None => meta.remove(key).unwrap(),
    };
    db.flush().unwrap();
}

fn get_meta(dir: &Path, key: &str) -> Option<Vec<u8>> {
    let db = raw(dir);
    db.open_tree("meta")
        .unwrap()
        .get(key)
        .unwrap()
        .map(|v| v.to_vec())
}

fn refusal(dir: &Path) -> String {
    match SledStore::open(dir, &config()) {
        Err(StoreError::Incompatible(m)) => m,
        Err(e) => panic!("expected an incompatible store, got {e}"),
        Ok(_) => panic!("a store that must be refused opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_format_is_recorded_and_a_newer_one_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let s = Arc::new(open(&path));
    data::line(&*s, "st-a").await;
    shut(s).await;
    let one = 1u64.to_be_bytes().to_vec();
    assert_eq!(get_meta(&path, "format/version"), Some(one.clone()));

    // Newer: refused, and the recorded format stays what it was.
    set_meta(&path, "format/version", Some(&2u64.to_be_bytes()));
    let m = refusal(&path);
    assert!(
        m.contains("store format 2") && m.contains("newer attestd") && m.contains("formats 1 to 1"),
        "{m}"
    );
    assert_eq!(
        get_meta(&path, "format/version"),
        Some(2u64.to_be_bytes().to_vec())
    );
    let db = raw(&path);
    let names: Vec<_> = db.tree_names();
    assert!(names.iter().any(|n| n.as_ref() == b"stations"));
    drop(db);

    // Damaged.
    set_meta(&path, "format/version", Some(b"one"));
    assert!(refusal(&path).contains("damaged"));

    // Written before formats were recorded: format 1, recorded on open,
    // data intact.
    set_meta(&path, "format/version", None);
    let s = Arc::new(open(&path));
    assert!(s.get_station("st-a").await.unwrap().is_some());
    shut(s).await;
    assert_eq!(get_meta(&path, "format/version"), Some(one));

    // A restore cut short is never served.
    set_meta(&path, "restore/incomplete", Some(b"1"));
    assert!(refusal(&path).contains("interrupted restore"));

    // A sled database that is not attestd's.
    let other = dir.path().join("other");
    {
        let db = raw(&other);
        db.open_tree("something").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    assert!(refusal(&other).contains("not attestd's"));
}

/// How long writes wait while a backup copies a store of 10,000 units
/// (each: a provisioning and a calibration record of about 1.5 KB, two
/// evidence of about 700 bytes). Run it with
/// `cargo test -p attestd-store --release --features conformance --test
/// backup_sled -- --ignored --nocapture pause`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes in a debug build"]
async fn pause_for_10k_units() {
    use attestd_store::Write;
    let units: u64 = std::env::var("UNITS")
        .ok()
        .and_then(|u| u.parse().ok())
        .unwrap_or(10_000);
    let (pair, public) = audit_key();
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(&dir.path().join("a"), &SledConfig::default()).unwrap());
    data::line(&*s, "st-a").await;
    let t0 = Instant::now();
    let mut seq = 0;
    for chunk in (0..units).collect::<Vec<_>>().chunks(64) {
        let mut writes = Vec::new();
        for i in chunk {
            seq += 1;
            let mut p = data::provisioning(
                "st-a",
                seq,
                &format!("U{i:06}"),
                &data::key(*i as u32),
                None,
            );
            p.entry.payload = vec![b'p'; 1500];
            writes.push(Write::Record(p));
        }
        for r in s.commit_batch(writes).await {
            r.unwrap();
        }
        let mut writes = Vec::new();
        for i in chunk {
            seq += 1;
            let mut c = data::calibration("st-a", seq, &format!("U{i:06}"));
            c.entry.payload = vec![b'c'; 1500];
            writes.push(Write::Record(c));
        }
        for r in s.commit_batch(writes).await {
            r.unwrap();
        }
        for boot in 1..=2 {
            let mut writes = Vec::new();
            for i in chunk {
                let serial = format!("U{i:06}");
                let dev = data::device(&*s, &serial).await;
                let mut e = data::evidence(&serial, boot, &dev, false);
                e.entry.raw = vec![b'e'; 700];
                writes.push(Write::Evidence(e));
            }
            for r in s.commit_batch(writes).await {
                r.unwrap();
            }
        }
    }
    eprintln!("{units} units written in {:.1?}", t0.elapsed());

    // A writer that keeps writing through the backup: its slowest write is
    // the pause as a client sees it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                s.append_audit(&AuditNote::new(1, "w", "test.write", "x"))
                    .await
                    .unwrap();
                slowest = slowest.max(t.elapsed());
                n += 1;
            }
            (n, slowest)
        })
    };
    // And a reader: reads go on while writes wait.
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let serial = format!("U{:06}", n % units);
                assert!(s.get_device(&serial).await.unwrap().is_some());
                slowest = slowest.max(t.elapsed());
                n += 1;
                tokio::task::yield_now().await;
            }
            (n, slowest)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let file = dir.path().join("b.attestd");
    let t = Instant::now();
    let snap = s
        .backup(&backup_note(), seal(&pair, &public))
        .await
        .unwrap();
    let taken = t.elapsed();
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let bytes = encode(&snap, &mut out).unwrap();
    drop(out);
    let written = t.elapsed();
    drop(snap);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, slowest) = writer.await.unwrap();
    let (reads, slowest_read) = reader.await.unwrap();
    let h = verify(&file, Some(&public)).unwrap().header;
    eprintln!(
        "{units} units: {} entries, {bytes} bytes; writes paused {:.1} ms (store's measure), \
         backup call {taken:.1?}, encoding {written:.1?}; a concurrent writer's slowest write \
         {slowest:.1?} over {n} writes; a concurrent reader's slowest read {slowest_read:.1?} \
         over {reads} reads",
        h.entries,
        h.writes_paused_us as f64 / 1000.0
    );
    let t = Instant::now();
    restore(&file, &dir.path().join("restored"), Some(&public)).unwrap();
    eprintln!("restore: {:.1?}", t.elapsed());
}
