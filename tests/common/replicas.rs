//! Several attestd replicas on one PostgreSQL database, signing the audit
//! chain with one key: replica 1 carries the fleet fixture (release keys,
//! stations, units), the others are started like it.

#![allow(dead_code)]

use attestd_client::core::keys::PublicKey;
use attestd_store::postgres::testdb::TestDb;

use super::fleet::Fleet;
use super::{Options, TestServer};

pub(crate) struct Replicas {
    pub fleet: Fleet,
    pub others: Vec<TestServer>,
    /// The database they share, when made for them (dropped after them).
    _db: Option<TestDb>,
    keys: tempfile::TempDir,
}

impl Replicas {
    /// `n` replicas on a new database of the shared test server.
    pub(crate) async fn start(n: usize) -> Replicas {
        Replicas::start_with(n, None, Vec::new()).await
    }

    /// `n` replicas on the database at `url` (a new one of the shared test
    /// server when `None`), with extra `[limits]`.
    pub(crate) async fn start_with(
        n: usize,
        url: Option<String>,
        mut limits: Vec<(&'static str, String)>,
    ) -> Replicas {
        let (url, db) = match url {
            Some(url) => (url, None),
            None => {
                let db = TestDb::create();
                (db.url.clone(), Some(db))
            }
        };
        let keys = tempfile::tempdir().unwrap();
        limits.push(("checkpoint_interval_secs", "1".into()));
        let fleet = Fleet::start_on(Options {
            postgres_url: Some(url),
            audit_key_file: Some(keys.path().join("audit-key.pkcs8")),
            limits,
            ..Options::default()
        })
        .await;
        let others = (1..n)
            .map(|_| TestServer::start_with(fleet.server.options().clone()))
            .collect();
        Replicas {
            fleet,
            others,
            _db: db,
            keys,
        }
    }

    /// Replica `i` (0 is the fleet's own).
    pub(crate) fn replica(&self, i: usize) -> &TestServer {
        match i {
            0 => &self.fleet.server,
            i => &self.others[i - 1],
        }
    }

    pub(crate) fn replica_mut(&mut self, i: usize) -> &mut TestServer {
        match i {
            0 => &mut self.fleet.server,
            i => &mut self.others[i - 1],
        }
    }

    /// The one audit key every replica signs with.
    pub(crate) fn audit_key(&self) -> PublicKey {
        use base64::Engine as _;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(
                std::fs::read_to_string(self.keys.path().join("audit-key.pkcs8.pub"))
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
}
