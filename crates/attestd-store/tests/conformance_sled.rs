//! The Store contract on sled (every clause of `attestd_store::conformance`,
//! each on a store in a temporary directory of its own), and what only an
//! embedded store has: its data across a restart, an abort, and the
//! directory lock handed from a closing store to the next.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use attestd_store::conformance::{self, data};
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::Store;

fn config() -> SledConfig {
    SledConfig {
        cache_capacity: 8 << 20,
        ..SledConfig::default()
    }
}

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, &config()).expect("opening the sled store")
}

/// An empty store in a directory removed after it.
async fn fixture() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> = Arc::new(open(dir.path()));
    (store, dir)
}

attestd_store::conformance_tests!(fixture());

/// Closes and drops a store that nothing else holds.
async fn shut(s: Arc<SledStore>) {
    s.close().await;
    drop(Arc::into_inner(s).expect("the only handle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_keeps_its_data_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    conformance::audit::scenario(&*s).await;
    let before = data::snapshot(&*s, "U1").await;
    let audit = s.audit_after(0, 100).await.unwrap();
    shut(s).await;
    let s = open(dir.path());
    assert_eq!(data::totals(&s).await, (1, 1, 1, 2));
    assert_eq!(s.counts().await.unwrap().baselines, 2);
    assert!(s.get_station("st-a").await.unwrap().unwrap().revoked);
    assert_eq!(s.list_records("U1", None, 10).await.unwrap().items.len(), 1);
    assert_eq!(s.active_baseline_version("PM-200").await.unwrap(), Some(2));
    assert_eq!(data::snapshot(&s, "U1").await, before);
    assert_eq!(s.audit_after(0, 100).await.unwrap(), audit);
    // And it goes on from there: the chain, the feed, the counters.
    s.append_audit(&attestd_store::AuditNote::new(1, "t", "after.restart", "x"))
        .await
        .unwrap();
    let entries = s.audit_after(0, 100).await.unwrap();
    assert_eq!(
        s.audit_head().await.unwrap(),
        (9, data::verified_head(&entries))
    );
    data::assert_counters_match_units(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_kept_whole_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    conformance::batch::scenario(&*s).await;
    shut(s).await;
    let s = open(dir.path());
    assert_eq!(data::totals(&s).await, (1, 2, 2, 2));
    assert_eq!(s.audit_head().await.unwrap().0, 6);
    assert!(s.get_device("U2").await.unwrap().is_none());
}

#[test]
fn opening_waits_briefly_for_a_closing_store_to_release_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    // Closed 200 ms later, while the second open is already waiting.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
    });
    let second = SledStore::open(dir.path(), &config());
    closer.join().unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

const ABORT_DIR: &str = "ATTESTD_SLED_ABORT_DIR";

/// A write that returned is on disk: a process that aborts right after
/// (no close, no destructor) loses none of it.
#[test]
fn an_acknowledged_write_survives_an_abort() {
    if let Ok(dir) = std::env::var(ABORT_DIR) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = open(Path::new(&dir));
            data::line(&s, "st-a").await;
            let d = data::enroll(&s, "st-a", 1, "U1", 1).await;
            s.commit_evidence(data::evidence("U1", 7, &d, false))
                .await
                .unwrap();
            s.append_audit(&data::note("last")).await.unwrap();
        });
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_acknowledged_write_survives_an_abort",
            "--nocapture",
        ])
        .env(ABORT_DIR, dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the child was to abort: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = open(dir.path());
        assert_eq!(data::totals(&s).await, (1, 1, 1, 1));
        assert_eq!(data::device(&s, "U1").await.highest_bootcount, 7);
        assert_eq!(data::last_audit(&s).await.action, "last");
    });
}
