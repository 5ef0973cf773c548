//! What only the PostgreSQL backend promises beyond the conformance suite
//! (`tests/conformance_pg.rs`): several replicas on one database, retried
//! serialization failures, a lost database answered `Unavailable`, and no
//! start on a server that would not keep acknowledged writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestd_core::keys::{KeyAlg, PublicKey};

use super::testdb::TestDb;
use super::{PgConfig, PgStore};
use crate::*;

fn config(url: &str) -> PgConfig {
    let mut cfg = PgConfig::new(url);
    cfg.pool_size = 4;
    cfg
}

async fn open(db: &TestDb) -> PgStore {
    PgStore::open(&config(&db.url))
        .await
        .unwrap_or_else(|e| panic!("opening the store: {e}"))
}

/// Runs SQL on the test database directly.
async fn sql(db: &TestDb, text: &str) {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client.batch_execute(text).await.unwrap();
    drop(client);
    let _ = conn.await;
}

fn note(action: &str) -> AuditNote {
    AuditNote::new(7, "tester", action, "target")
}

fn station(id: &str) -> StationEntry {
    StationEntry {
        station_id: id.into(),
        allowed_kinds: vec![1, 2],
        allowed_models: vec!["*".into()],
        ..StationEntry::default()
    }
}

fn serial(n: usize) -> String {
    format!("SN{n:04}")
}

/// A provisioning record enrolling `serial(n)` with a key of its own.
fn enrollment(seq: u64, n: usize) -> RecordCommit {
    let mut raw = [7u8; 32];
    raw[..8].copy_from_slice(&(n as u64).to_be_bytes());
    let key = PublicKey::from_raw(KeyAlg::Ed25519, &raw).unwrap();
    RecordCommit {
        audit: note("record"),
        entry: RecordEntry {
            record_id: format!("rec_{seq}"),
            kind: 1,
            serial: serial(n),
            station_id: "line".into(),
            sequence: seq,
            payload: b"{}".to_vec(),
            payload_type: "t".into(),
            ..RecordEntry::default()
        },
        enrollment: Some(Enrollment {
            model: "PM-200".into(),
            hw_version: "B".into(),
            spki_der: key.spki_der().to_vec(),
            key_id: key.key_id(),
            supersedes: None,
        }),
        calibration: None,
    }
}

/// Evidence for a unit decided on the snapshot `d`, giving it `status`.
fn evidence(d: &DeviceEntry, id: &str, status: i32) -> EvidenceCommit {
    EvidenceCommit {
        audit: note("evidence"),
        entry: EvidenceEntry {
            evidence_id: id.into(),
            serial: d.serial.clone(),
            bootcount: d.highest_bootcount + 1,
            raw: vec![1, 2, 3],
            ..EvidenceEntry::default()
        },
        spki_der: d.spki_der.clone(),
        expected_revision: d.revision,
        deferred: false,
        expected_baseline: None,
        svns: vec![],
        firmware: vec![],
        calibration_digest: vec![],
        verdict: UnitVerdict {
            status,
            now_ms: 1,
            ..UnitVerdict::default()
        },
    }
}

/// A RELEASE decision `id` about unit `d` as read.
fn decision(id: &str, d: &DeviceEntry) -> DecisionCommit {
    DecisionCommit {
        entry: ReleaseDecisionEntry {
            decision_id: id.into(),
            serial: d.serial.clone(),
            decision: 1,
            ..ReleaseDecisionEntry::default()
        },
        audit: note("release.decide"),
        expected_revision: d.revision,
        expected_baseline: None,
        expected_revoked_stations: vec![],
    }
}

/// A station and `units` enrolled units.
async fn fleet(s: &PgStore, units: usize) {
    s.register_station(station("line"), &note("station.register"))
        .await
        .unwrap();
    for n in 0..units {
        s.commit_record(enrollment(n as u64 + 1, n)).await.unwrap();
    }
}

/// Verifies the whole chain from genesis; returns its head hash.
fn verified_head(entries: &[AuditRecord]) -> [u8; 32] {
    let chain: Vec<attestd_core::audit::AuditEntry> = entries
        .iter()
        .map(|e| attestd_core::audit::AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            principal: e.principal.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            reason: e.reason.clone(),
            details: e.details.clone(),
            prev_hash: e.prev_hash.clone().try_into().unwrap(),
            hash: e.hash.clone().try_into().unwrap(),
        })
        .collect();
    attestd_core::audit::verify_chain(&chain, attestd_core::audit::GENESIS, 0).unwrap()
}

/// Writers on two replicas of one database (evidence alone and in
/// batches, status changes, audit appends), a unit shared by all of them,
/// and a reader on one replica following the change feed: the reader never
/// sees a gap or a step back; afterwards both sequences run 1..=n without
/// gaps, the chain verifies, every unit's changes chain to its status,
/// and the counters equal what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_at_once_keep_both_sequences_gapless_in_commit_order() {
    const UNITS: usize = 5;
    const ROUNDS: usize = 40;
    let db = TestDb::create();
    let replicas = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    fleet(&replicas[0], UNITS).await;
    let base_audit = replicas[0].audit_head().await.unwrap().0;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (replicas[1].clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = 0u64;
            let mut reads = 0;
            loop {
                let done = stop.load(Ordering::SeqCst);
                for c in s.changes_after(seen, 1000).await.unwrap() {
                    assert_eq!(c.seq, seen + 1, "the feed skipped or repeated");
                    seen = c.seq;
                }
                reads += 1;
                if done {
                    return (seen, reads);
                }
            }
        })
    };

    // Two writers per replica; writer w owns unit w + 1 and shares unit 0.
    let mut writers = Vec::new();
    for w in 0..4usize {
        let s = replicas[w % 2].clone();
        writers.push(tokio::spawn(async move {
            let (mine, shared) = (serial(w + 1), serial(0));
            let mut stored = 0u64;
            for round in 0..ROUNDS {
                let status = if round % 2 == 0 { 1 } else { 3 };
                if round % 5 == 4 {
                    // A batch: my unit twice on one snapshot (the second
                    // conflicts), an audit entry between rounds.
                    let d = s.get_device(&mine).await.unwrap().unwrap();
                    let out = s
                        .commit_batch(vec![
                            Write::Evidence(evidence(&d, &format!("ev_{w}_{round}_a"), status)),
                            Write::Evidence(evidence(&d, &format!("ev_{w}_{round}_b"), 4)),
                        ])
                        .await;
                    assert!(matches!(out[0], Ok(Written::Device(_))), "{:?}", out[0]);
                    assert!(matches!(out[1], Err(StoreError::Conflict)), "{:?}", out[1]);
                    stored += 1;
                    s.append_audit(&note("tester.mark")).await.unwrap();
                    continue;
                }
                let target = if round % 3 == 0 { &shared } else { &mine };
                loop {
                    let d = s.get_device(target).await.unwrap().unwrap();
                    let id = format!("ev_{w}_{round}");
                    match s.commit_evidence(evidence(&d, &id, status)).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict) => continue,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                stored += 1;
            }
            stored
        }));
    }
    let mut evidence_stored = 0;
    for w in writers {
        evidence_stored += w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (followed, reads) = reader.await.unwrap();
    assert!(reads > 1, "the reader read while the writers wrote");

    for s in &replicas {
        let entries = s.audit_after(0, 100_000).await.unwrap();
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let n = entries.len() as u64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<u64>>(),
            "audit sequence gapless"
        );
        // One entry per stored evidence and per mark, after the fleet's.
        assert_eq!(n, base_audit + evidence_stored + 4 * (ROUNDS as u64 / 5));
        assert_eq!(s.audit_head().await.unwrap(), (n, verified_head(&entries)));

        let changes = s.changes_after(0, 100_000).await.unwrap();
        let m = changes.len() as u64;
        let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
        assert_eq!(
            seqs,
            (1..=m).collect::<Vec<u64>>(),
            "change sequence gapless"
        );
        assert_eq!(s.change_cursor().await.unwrap(), m);
        assert_eq!(followed, m, "the reader saw the whole feed");
        // In commit order: each unit's changes chain, ending in its status.
        let mut last: BTreeMap<&str, i32> = BTreeMap::new();
        for c in &changes {
            let before = last.insert(c.serial.as_str(), c.new_status);
            assert_eq!(c.old_status, before.unwrap_or(0), "change {}", c.seq);
        }
        for (sn, status) in &last {
            let d = s.get_device(sn).await.unwrap().unwrap();
            assert_eq!(d.status, *status, "{sn}");
        }
        let c = s.counts().await.unwrap();
        assert_eq!(c.evidence, evidence_stored);
        assert_eq!(c.devices, UNITS as u64);
        assert_eq!(c.by_status.iter().sum::<u64>(), UNITS as u64);
    }
    // Both replicas committed; batching counted its writes.
    let stats: Vec<WriteStats> = replicas.iter().map(|s| s.write_stats()).collect();
    assert!(stats.iter().all(|w| w.commits > 0 && w.writes >= w.commits));
}

/// Nonces issued by one replica are used through another, each once,
/// with tasks on both racing for them; expiry and eviction are shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_single_use_across_replicas() {
    const NONCES: usize = 150;
    let db = TestDb::create();
    let replicas = [Arc::new(open(&db).await), Arc::new(open(&db).await)];
    let policy = crate::nonces::NoncePolicy {
        lifetime_ms: 10_000,
        per_serial: 4,
        total: 100_000,
    };
    let mut issued = Vec::new();
    for n in 0..NONCES {
        let serial = format!("N{n}");
        let (nonce, _) = replicas[n % 2]
            .issue_nonce(&serial, 0, &policy)
            .await
            .unwrap();
        issued.push((serial, nonce));
    }
    let issued = Arc::new(issued);
    let accepted = Arc::new(Mutex::new(vec![0u32; NONCES]));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (s, accepted, issued) = (replicas[t % 2].clone(), accepted.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            for (n, (serial, nonce)) in issued.iter().enumerate() {
                match s.consume_nonce(nonce, serial, 1, &policy).await {
                    Ok(()) => accepted.lock().unwrap()[n] += 1,
                    Err(StoreError::Rejected(r)) => {
                        assert_eq!(r.reason, attestd_core::Reason::NonceReused)
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.iter().all(|n| *n == 1), "{accepted:?}");

    let (a, b) = (&replicas[0], &replicas[1]);
    let (late, _) = a.issue_nonce("LATE", 0, &policy).await.unwrap();
    match b.consume_nonce(&late, "LATE", 10_001, &policy).await {
        Err(StoreError::Rejected(r)) => {
            assert_eq!(r.reason, attestd_core::Reason::NonceExpired)
        }
        other => panic!("{other:?}"),
    }
    // A lease is one replica's at a time, until it lapses.
    assert!(a.lease("checkpoint", "a", 1_000, 0).await.unwrap());
    assert!(!b.lease("checkpoint", "b", 1_000, 500).await.unwrap());
    assert!(a.lease("checkpoint", "a", 1_000, 900).await.unwrap());
    assert!(!b.lease("checkpoint", "b", 1_000, 1_899).await.unwrap());
    assert!(b.lease("checkpoint", "b", 1_000, 1_900).await.unwrap());
    assert!(!a.lease("checkpoint", "a", 1_000, 1_901).await.unwrap());
    // The first pin wins on every replica.
    assert_eq!(a.pin_setting("audit.key_id", "k1").await.unwrap(), "k1");
    assert_eq!(b.pin_setting("audit.key_id", "k2").await.unwrap(), "k1");
}

/// Single writes arriving together share transactions (fewer commits than
/// writes), each answered as if alone; a caller that gives up while its
/// write is in flight does not undo it, nor the writes grouped with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_writes_share_transactions_and_outlive_their_callers() {
    const UNITS: usize = 24;
    let db = TestDb::create();
    let s = Arc::new(open(&db).await);
    fleet(&s, UNITS).await;
    let before = s.write_stats();
    let mut tasks = Vec::new();
    for n in 0..UNITS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let d = s.get_device(&serial(n)).await.unwrap().unwrap();
            // Every other write is decided on a stale snapshot.
            let mut c = evidence(&d, &format!("ev_{n}"), 1);
            if n % 2 == 1 {
                c.expected_revision -= 1;
            }
            (n, s.commit_evidence(c).await)
        }));
    }
    for t in tasks {
        let (n, r) = t.await.unwrap();
        if n % 2 == 1 {
            assert!(matches!(r, Err(StoreError::Conflict)), "{n}: {r:?}");
        } else {
            assert_eq!(r.unwrap().evidence_count, 1, "{n}");
        }
    }
    let after = s.write_stats();
    assert_eq!(after.writes - before.writes, UNITS as u64 / 2);
    assert!(
        after.commits - before.commits < UNITS as u64 / 2,
        "grouped: {before:?} -> {after:?}"
    );
    assert_eq!(s.counts().await.unwrap().evidence, UNITS as u64 / 2);

    // Callers that leave as soon as their writes are queued.
    for n in [0, 2, 4] {
        let d = s.get_device(&serial(n)).await.unwrap().unwrap();
        let c = evidence(&d, &format!("ev_{n}_left"), 3);
        let _ = tokio::time::timeout(Duration::from_micros(1), s.commit_evidence(c)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for n in [0, 2, 4] {
        while s
            .get_evidence(&format!("ev_{n}_left"))
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the write of a caller that left is lost"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.get_device(&serial(n)).await.unwrap().unwrap().status, 3);
    }
}

/// Installs a trigger that fails every audit insert with a serialization
/// failure (SQLSTATE 40001) while `fail_left` is positive, counting down.
async fn inject_serialization_failures(db: &TestDb, n: i64) {
    sql(
        db,
        &format!(
            "CREATE SEQUENCE IF NOT EXISTS fail_left INCREMENT -1 MINVALUE -1000000000 MAXVALUE 1000000000;
             SELECT setval('fail_left', {n}, false);
             CREATE OR REPLACE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('fail_left') > 0 THEN
                     RAISE EXCEPTION 'injected' USING ERRCODE = '40001';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE OR REPLACE TRIGGER fail_audit BEFORE INSERT ON audit
                 FOR EACH ROW EXECUTE FUNCTION fail_audit();"
        ),
    )
    .await;
}

/// A serialization failure retries the whole transaction (the head with
/// it: no sequence is skipped); one that persists answers every write of
/// the batch `Unavailable` and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_retried_and_then_unavailable() {
    let db = TestDb::create();
    let s = open(&db).await;
    fleet(&s, 2).await;
    let (seq, _) = s.audit_head().await.unwrap();

    inject_serialization_failures(&db, 2).await;
    s.append_audit(&note("tester.one")).await.unwrap();
    assert_eq!(s.audit_head().await.unwrap().0, seq + 1);

    inject_serialization_failures(&db, 1_000).await;
    let before = s.write_stats();
    let d0 = s.get_device(&serial(0)).await.unwrap().unwrap();
    let d1 = s.get_device(&serial(1)).await.unwrap().unwrap();
    let started = Instant::now();
    let out = s
        .commit_batch(vec![
            Write::Evidence(evidence(&d0, "ev_a", 1)),
            Write::Evidence(evidence(&d1, "ev_b", 1)),
        ])
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded retries"
    );
    for r in &out {
        assert!(
            matches!(r, Err(StoreError::Unavailable(m)) if m.contains("injected")),
            "{r:?}"
        );
    }
    assert_eq!(s.write_stats(), before, "nothing committed");
    assert_eq!(s.get_device(&serial(0)).await.unwrap().unwrap(), d0);
    assert_eq!(s.counts().await.unwrap().evidence, 0);

    sql(&db, "DROP TRIGGER fail_audit ON audit").await;
    s.append_audit(&note("tester.two")).await.unwrap();
    let entries = s.audit_after(0, 1000).await.unwrap();
    assert_eq!(entries.len() as u64, seq + 2);
    verified_head(&entries);
}

/// A TCP relay to the test server that can be cut (every connection
/// dropped, new ones refused) and restored.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(db: &TestDb) -> Relay {
        let target: tokio_postgres::Config = db.url.parse().unwrap();
        let port = target.get_ports().first().copied().unwrap_or(5432);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is reset
                    }
                    conns.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) =
                            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            })
        };
        Relay {
            port: relay_port,
            up,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The database out of reach: writes and reads answer `Unavailable`,
/// promptly, without the URL's password, and nothing half-done stays;
/// back in reach, the store works on without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_unavailable_and_the_store_recovers() {
    let db = TestDb::create();
    let relay = Relay::start(&db).await;
    let mut cfg = config(&format!(
        "postgres://postgres:s3cret@127.0.0.1:{}/{}",
        relay.port,
        db.name()
    ));
    cfg.connect_timeout = Duration::from_secs(1);
    let s = PgStore::open(&cfg).await.unwrap();
    fleet(&s, 1).await;
    let (seq, _) = s.audit_head().await.unwrap();

    relay.cut();
    let started = Instant::now();
    for r in [
        s.append_audit(&note("tester.lost")).await,
        s.get_device(&serial(0)).await.map(|_| ()),
    ] {
        match r {
            Err(StoreError::Unavailable(m)) => assert!(!m.contains("s3cret"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    relay.restore();
    s.append_audit(&note("tester.back")).await.unwrap();
    let entries = s.audit_after(0, 1000).await.unwrap();
    assert_eq!(entries.len() as u64, seq + 1, "the lost write left nothing");
    assert_eq!(entries.last().unwrap().action, "tester.back");
}

/// A server that would acknowledge commits before they are durable is
/// refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_synchronous_commit_is_refused() {
    let db = TestDb::create();
    sql(
        &db,
        &format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = off",
            db.name()
        ),
    )
    .await;
    match PgStore::open(&config(&db.url)).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("synchronous_commit"), "{m}"),
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("opened a store that cannot keep acknowledged writes"),
    }
}

/// A database whose schema a newer attestd migrated is refused by this
/// one's store, before it writes anything (the path `attestd serve` takes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused_and_left_as_it_was() {
    let db = TestDb::create();
    let s = open(&db).await;
    s.register_station(station("st-a"), &note("station.register"))
        .await
        .unwrap();
    let head = s.audit_head().await.unwrap();
    s.close().await;
    drop(s);
    let newer = super::SCHEMA_VERSION as i32 + 1;
    sql(
        &db,
        &format!("insert into schema_version (version) values ({newer})"),
    )
    .await;
    match PgStore::open(&config(&db.url)).await {
        Err(StoreError::Incompatible(m)) => {
            assert!(m.contains(&format!("version {newer}")), "{m}");
            assert!(m.contains("upgrade attestd"), "{m}");
        }
        Err(e) => panic!("expected Incompatible, got {e:?}"),
        Ok(_) => panic!("opened a database newer than this binary"),
    }
    // Nothing was migrated or written: without the newer row, the store
    // opens on the same chain and data.
    sql(
        &db,
        &format!("delete from schema_version where version = {newer}"),
    )
    .await;
    let s = open(&db).await;
    assert_eq!(s.audit_head().await.unwrap(), head);
    assert!(s.get_station("st-a").await.unwrap().is_some());
}

/// One group of ops written by `postgres::batch` in one transaction: a
/// nonce given twice is taken by the first only, each refused nonce says
/// why, a challenge for a serial not enrolled stores nothing, and of three
/// evidence writes (two on one unit's same snapshot, one on another unit)
/// the stale one conflicts while the others apply, as one at a time would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_answers_each_nonce_and_evidence_as_alone() {
    use super::batch::{IssueNonce, UseNonce};
    use super::write::{Answer, Op};
    let db = TestDb::create();
    let s = open(&db).await;
    fleet(&s, 2).await;
    let policy = crate::nonces::NoncePolicy {
        lifetime_ms: 1_000,
        per_serial: 4,
        total: 100,
    };
    let (a, _) = s.issue_nonce(&serial(0), 0, &policy).await.unwrap();
    let (b, _) = s.issue_nonce(&serial(1), 0, &policy).await.unwrap();
    let use_op = |n: &[u8], who: usize| {
        Op::UseNonce(UseNonce {
            nonce: n.to_vec(),
            serial: serial(who),
            now_ms: 10,
            grace_ms: policy.grace_ms(),
            per_serial: 4,
        })
    };
    let issue_op = |n: u8, who: &str| {
        Op::IssueNonce(IssueNonce {
            nonce: vec![n; 32],
            serial: who.into(),
            expires_at: 1_005,
            per_serial: 4,
            enrolled_only: true,
        })
    };
    let d0 = s.get_device(&serial(0)).await.unwrap().unwrap();
    let d1 = s.get_device(&serial(1)).await.unwrap().unwrap();
    let evidence_before = s.counts().await.unwrap().evidence;
    let answers = s
        .write(vec![
            use_op(&a, 0),
            use_op(&a, 0),
            use_op(&b, 0),
            use_op(&[9; 32], 1),
            issue_op(1, "NOT-ENROLLED"),
            issue_op(2, &serial(1)),
            Op::Write(Write::Evidence(evidence(&d0, "ev_a", 1))),
            Op::Write(Write::Evidence(evidence(&d0, "ev_b", 1))),
            Op::Write(Write::Evidence(evidence(&d1, "ev_c", 1))),
        ])
        .await;
    let reason = |a: &Result<Answer>| match a {
        Err(StoreError::Rejected(r)) => r.reason,
        other => panic!("expected a refusal, got {:?}", other.as_ref().err()),
    };
    assert!(matches!(answers[0], Ok(Answer::Done)));
    assert_eq!(reason(&answers[1]), attestd_core::Reason::NonceReused);
    assert_eq!(
        reason(&answers[2]),
        attestd_core::Reason::NonceUnknown,
        "another serial's nonce"
    );
    assert_eq!(reason(&answers[3]), attestd_core::Reason::NonceUnknown);
    assert!(matches!(answers[4], Ok(Answer::Flag(false))));
    assert!(matches!(answers[5], Ok(Answer::Flag(true))));
    assert!(
        matches!(&answers[6], Ok(Answer::Written(Written::Device(d))) if d.evidence_count == 1)
    );
    assert!(matches!(answers[7], Err(StoreError::Conflict)));
    assert!(
        matches!(&answers[8], Ok(Answer::Written(Written::Device(d))) if d.evidence_count == 1)
    );
    // What was answered is what is stored.
    assert_eq!(s.counts().await.unwrap().evidence, evidence_before + 2);
    assert!(s.get_evidence("ev_b").await.unwrap().is_none());
    assert_eq!(
        s.get_device(&serial(0))
            .await
            .unwrap()
            .unwrap()
            .last_evidence_id,
        "ev_a"
    );
    // b is still its own serial's; the stored challenge nonce is usable once;
    // the refused challenge stored nothing.
    s.consume_nonce(&b, &serial(1), 20, &policy).await.unwrap();
    s.consume_nonce(&[2; 32], &serial(1), 20, &policy)
        .await
        .unwrap();
    assert!(matches!(
        s.consume_nonce(&[1; 32], "NOT-ENROLLED", 20, &policy).await,
        Err(StoreError::Rejected(r)) if r.reason == attestd_core::Reason::NonceUnknown
    ));
    // One chained audit entry per applied evidence.
    let entries = s.audit_after(0, 1_000).await.unwrap();
    verified_head(&entries);
    assert_eq!(entries.iter().filter(|e| e.action == "evidence").count(), 2);
}

/// A server with autovacuum off is warned about; one with it on is not.
#[test]
fn autovacuum_off_is_warned_about() {
    let w = super::store::autovacuum_warning("off").expect("a warning");
    assert!(w.contains("autovacuum is off"), "{w}");
    assert!(w.contains("dead rows"), "{w}");
    assert!(super::store::autovacuum_warning("on").is_none());
}

/// Evidence and release decisions of one group are decided in queue order
/// against the unit as the ops before them left it: a decision after
/// evidence on the same snapshot conflicts; a decision before it applies,
/// and the unit's history lists them in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_decides_evidence_and_decisions_in_queue_order() {
    use super::write::{Answer, Op};
    let db = TestDb::create();
    let s = open(&db).await;
    fleet(&s, 2).await;
    let d0 = s.get_device(&serial(0)).await.unwrap().unwrap();
    let d1 = s.get_device(&serial(1)).await.unwrap().unwrap();
    let answers = s
        .write(vec![
            Op::Write(Write::Evidence(evidence(&d0, "ev_0", 1))),
            Op::Write(Write::Decision(decision("rd_late", &d0))),
            Op::Write(Write::Decision(decision("rd_first", &d1))),
            Op::Write(Write::Evidence(evidence(&d1, "ev_1", 1))),
        ])
        .await;
    assert!(matches!(
        answers[0],
        Ok(Answer::Written(Written::Device(_)))
    ));
    assert!(
        matches!(answers[1], Err(StoreError::Conflict)),
        "decided on the unit before the evidence of the same group"
    );
    assert!(matches!(answers[2], Ok(Answer::Written(Written::Done))));
    assert!(matches!(
        answers[3],
        Ok(Answer::Written(Written::Device(_)))
    ));
    let kinds = |items: Vec<HistoryItem>| -> Vec<String> {
        items
            .into_iter()
            .filter_map(|i| match i {
                HistoryItem::Evidence(e) => Some(e.evidence_id),
                HistoryItem::Decision(d) => Some(d.decision_id),
                _ => None,
            })
            .collect()
    };
    let h0 = s.list_history(&serial(0), None, 10).await.unwrap().items;
    assert_eq!(kinds(h0), ["ev_0"], "the refused decision stored nothing");
    let h1 = s.list_history(&serial(1), None, 10).await.unwrap().items;
    assert_eq!(kinds(h1), ["rd_first", "ev_1"], "queue order");
    let entries = s.audit_after(0, 1_000).await.unwrap();
    verified_head(&entries);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "release.decide")
            .count(),
        1
    );
}

/// The plan PostgreSQL runs for `text` once prepared on a pooled
/// connection (the generic plan, chosen without the parameters' values),
/// with parameters of `types` and the values `args`.
async fn generic_plan(db: &TestDb, text: &str, types: &str, args: &str) -> String {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE s({types}) AS {text}"
        ))
        .await
        .unwrap();
    let mut plan = String::new();
    for m in client
        .simple_query(&format!("EXPLAIN EXECUTE s({args})"))
        .await
        .unwrap()
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            plan.push_str(r.get(0).unwrap_or_default());
            plan.push('\n');
        }
    }
    drop(client);
    let _ = conn.await;
    plan
}

/// A unit's nonces live in one row however many it is issued: in one
/// group, six challenges keep the newest four (the oldest evicted), and
/// four uses of that unit's nonces in one group are each taken (a
/// statement over arrays updates a row once, so a group's ops on one
/// serial run in rounds). A use finds the row by its key, also in the
/// generic plan of a pooled connection, before and after `ANALYZE` (a
/// challenge does by its conflict on the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_units_nonces_are_one_row_and_each_of_a_group_is_taken() {
    use super::batch::{IssueNonce, UseNonce};
    use super::write::{Answer, Op};
    let db = TestDb::create();
    let s = open(&db).await;
    fleet(&s, 1).await;
    let issue = |n: u8| {
        Op::IssueNonce(IssueNonce {
            nonce: vec![n; 32],
            serial: serial(0),
            expires_at: 1_000,
            per_serial: 4,
            enrolled_only: true,
        })
    };
    let take = |n: u8| {
        Op::UseNonce(UseNonce {
            nonce: vec![n; 32],
            serial: serial(0),
            now_ms: 10,
            grace_ms: 60_000,
            per_serial: 4,
        })
    };
    let answers = s.write((1..=6).map(issue).collect()).await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(Answer::Flag(true)))),
        "{:?}",
        answers.iter().map(|a| a.as_ref().err()).collect::<Vec<_>>()
    );
    // Each row's count of unused and of used nonces.
    let c = s.client().await.unwrap();
    let rows = async || -> Vec<(i32, i32)> {
        c.query(
            "SELECT cardinality(open), cardinality(used) FROM challenges",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    assert_eq!(rows().await, [(4, 0)]);
    let answers = s
        .write(vec![take(2), take(3), take(4), take(5), take(6)])
        .await;
    assert!(
        matches!(&answers[0], Err(StoreError::Rejected(r)) if r.reason == attestd_core::Reason::NonceUnknown),
        "the second oldest of six was evicted"
    );
    for (i, a) in answers.iter().enumerate().skip(1) {
        assert!(
            matches!(a, Ok(Answer::Done)),
            "use {i}: {:?}",
            a.as_ref().err()
        );
    }
    assert_eq!(rows().await, [(0, 4)]);
    for n in [3, 6] {
        assert!(matches!(
            s.consume_nonce(&[n; 32], &serial(0), 20, &crate::nonces::NoncePolicy {
                lifetime_ms: 1_000,
                per_serial: 4,
                total: 100,
            }).await,
            Err(StoreError::Rejected(r)) if r.reason == attestd_core::Reason::NonceReused
        ));
    }
    // 50k units' rows; the plan of a use.
    sql(
        &db,
        "INSERT INTO challenges (serial, open, open_exp) SELECT 'SN' || i, \
         ARRAY[sha256(i::text::bytea)], ARRAY[1000 + i] FROM generate_series(1, 50000) i",
    )
    .await;
    for analyzed in [false, true] {
        if analyzed {
            sql(&db, "ANALYZE challenges").await;
        }
        let plan = generic_plan(
            &db,
            super::batch::USE_NONCES,
            "bytea[], text[], bigint[], int",
            "'{\\\\x01}', '{SN7}', '{5}', 4",
        )
        .await;
        assert!(!plan.contains("Seq Scan"), "analyzed: {analyzed}\n{plan}");
        assert!(
            plan.contains("challenges_pkey"),
            "analyzed: {analyzed}\n{plan}"
        );
    }
}

/// Concurrent context reads share statements, and each caller gets the
/// context of its own serial: the unit (as `get_device` reads it), or none
/// for a serial not enrolled, also when several ask for one serial at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unit_contexts_are_read_together_and_answered_apart() {
    let db = TestDb::create();
    let s = Arc::new(open(&db).await);
    fleet(&s, 40).await;
    let calls = 400;
    let before = s.context_statements();
    let start = Arc::new(tokio::sync::Barrier::new(calls));
    let mut tasks = Vec::new();
    for i in 0..calls {
        let (s, start) = (s.clone(), start.clone());
        // 40 enrolled serials and 10 that are not, each asked for 8 times.
        let sn = serial(i % 50);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let ctx = s.unit_context(&sn).await.unwrap();
            (sn, ctx)
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let (sn, ctx) = t.await.unwrap();
        let single = s.get_device(&sn).await.unwrap();
        match (ctx, single) {
            (Some(c), Some(d)) => {
                assert_eq!(c.device, d, "{sn}");
                assert_eq!(c.device.serial, sn);
                let ids: Vec<&str> = c.stations.iter().map(|st| st.station_id.as_str()).collect();
                assert_eq!(ids, ["line"], "{sn}");
                assert_eq!(c.active, None);
            }
            (None, None) => {}
            (c, d) => panic!(
                "{sn}: context {:?} but device {:?}",
                c.is_some(),
                d.is_some()
            ),
        }
        answered += 1;
    }
    assert_eq!(answered, calls);
    let statements = s.context_statements() - before;
    eprintln!("{calls} concurrent reads, {statements} statements");
    assert!(
        statements >= 1 && statements * 4 <= calls as u64,
        "{calls} concurrent reads took {statements} statements"
    );
}

/// The context read runs its generic plan on every execution, whatever
/// the batch sizes: PostgreSQL's default (`plan_cache_mode = auto`) plans
/// the first five executions on each connection for their parameters, and
/// kept doing so on some connections for good. Its readers' connections
/// are their own; the store's pool keeps the server's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_reads_use_generic_plans_only() {
    let db = TestDb::create();
    let s = Arc::new(open(&db).await);
    fleet(&s, 40).await;
    // Batches of 1 to 40 serials, each read many times over.
    for round in 1..=40usize {
        let mut tasks = Vec::new();
        for i in 0..round {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.unit_context(&serial(i)).await.unwrap().is_some()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
    }
    // Every reader connection at once, so each is looked at.
    let pool = s.context_pool();
    let mut conns = Vec::new();
    for _ in 0..super::context::READERS {
        conns.push(pool.get().await.unwrap());
    }
    let (mut generic, mut custom) = (0i64, 0i64);
    for c in &conns {
        let mode: String = c
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "force_generic_plan");
        for row in c
            .query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                 WHERE statement = $1",
                &[&super::context::UNIT_CONTEXTS],
            )
            .await
            .unwrap()
        {
            generic += row.get::<_, i64>(0);
            custom += row.get::<_, i64>(1);
        }
    }
    assert!(
        generic >= 1,
        "no context read ran on the readers' connections"
    );
    assert_eq!(
        custom, 0,
        "context reads planned again: {custom} custom plans, {generic} generic"
    );
    // The shared pool is left with the server's setting.
    let c = s.pool().get().await.unwrap();
    let mode: String = c
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        mode, "force_generic_plan",
        "the store's pool forces generic plans"
    );
}

/// Release decisions stored one per call (`commit_batch` of one write, as
/// CheckRelease stores them) share the transaction of the group in flight:
/// fewer commits than decisions, each stored and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_decisions_share_transactions() {
    const UNITS: usize = 32;
    let db = TestDb::create();
    let s = Arc::new(open(&db).await);
    fleet(&s, UNITS).await;
    let before = s.write_stats();
    let start = Arc::new(tokio::sync::Barrier::new(UNITS));
    let mut tasks = Vec::new();
    for n in 0..UNITS {
        let (s, start) = (s.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let d = s.get_device(&serial(n)).await.unwrap().unwrap();
            let c = decision(&format!("rd_{n}"), &d);
            start.wait().await;
            s.commit_batch(vec![Write::Decision(c)]).await
        }));
    }
    for t in tasks {
        let mut r = t.await.unwrap();
        assert_eq!(r.len(), 1);
        assert!(matches!(r.pop(), Some(Ok(Written::Done))), "{r:?}");
    }
    let after = s.write_stats();
    assert_eq!(after.writes - before.writes, UNITS as u64);
    assert!(
        after.commits - before.commits < UNITS as u64,
        "grouped: {before:?} -> {after:?}"
    );
    for n in 0..UNITS {
        let items = s.list_history(&serial(n), None, 10).await.unwrap().items;
        assert!(
            items.iter().any(
                |i| matches!(i, HistoryItem::Decision(d) if d.decision_id == format!("rd_{n}"))
            ),
            "{n}"
        );
    }
}

/// The plan a connection would use for the prepared statement `grows_q`
/// (as `EXPLAIN EXECUTE` shows it: the cached one, if any).
async fn cached_plan(c: &deadpool_postgres::Client) -> String {
    c.query("EXPLAIN EXECUTE grows_q('{k1}')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plan made while a table was empty must not stay in use once the table
/// has grown: every connection plans again after `REPLAN_EVERY` uses.
#[tokio::test]
async fn plans_made_on_an_empty_table_are_made_again() {
    let db = TestDb::create();
    // Autovacuum off, so that nothing but the pool invalidates the plan.
    sql(
        &db,
        "CREATE TABLE grows (k text PRIMARY KEY, v int) WITH (autovacuum_enabled = false)",
    )
    .await;
    sql(&db, "VACUUM ANALYZE grows").await;
    // One connection (a readers' pool: generic plans, as EXPLAIN shows them).
    let pool = super::config::connect_readers(&config(&db.url), 1)
        .await
        .unwrap();
    let c = pool.get().await.unwrap();
    c.batch_execute("PREPARE grows_q AS SELECT v FROM grows WHERE k = ANY($1::text[])")
        .await
        .unwrap();
    let empty = cached_plan(&c).await;
    assert!(empty.contains("Seq Scan"), "on the empty table: {empty}");
    drop(c);
    sql(
        &db,
        "INSERT INTO grows SELECT 'k' || i, i FROM generate_series(1, 100000) i",
    )
    .await;
    // Used again, the connection still has the plan made on the empty table.
    let c = pool.get().await.unwrap();
    let stale = cached_plan(&c).await;
    assert!(stale.contains("Seq Scan"), "before planning again: {stale}");
    drop(c);
    // Reused until the pool has planned again: the hook runs on the
    // checkout after REPLAN_EVERY reuses (deadpool counts a reuse after its
    // hooks ran, so that checkout leaves the count at REPLAN_EVERY + 1).
    let c = loop {
        let c = pool.get().await.unwrap();
        if deadpool_postgres::Object::metrics(&c).recycle_count > super::config::REPLAN_EVERY {
            break c;
        }
    };
    let uses = deadpool_postgres::Object::metrics(&c).recycle_count + 1;
    let fresh = cached_plan(&c).await;
    assert!(
        fresh.contains("Index") && !fresh.contains("Seq Scan"),
        "after {uses} uses the plan follows the table: {fresh}"
    );
}
