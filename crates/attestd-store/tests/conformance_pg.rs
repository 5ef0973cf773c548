//! The Store contract on PostgreSQL: every clause of
//! `attestd_store::conformance`, each on a database of its own (created on
//! the test server, dropped after the test; see `postgres::testdb`).
//!
//! `cargo test -p attestd-store --features pg-test,conformance --test conformance_pg`

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use attestd_store::postgres::testdb::TestDb;
use attestd_store::postgres::{PgConfig, PgStore};
use attestd_store::Store;

/// An empty store on a fresh database, which outlives it.
async fn fixture() -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::create();
    let mut cfg = PgConfig::new(db.url.clone());
    // Tests run in parallel on one server: a few connections each.
    cfg.pool_size = 4;
    let store = PgStore::open(&cfg)
        .await
        .unwrap_or_else(|e| panic!("opening the PostgreSQL store: {e}"));
    (Arc::new(store), db)
}

attestd_store::conformance_tests!(fixture());
