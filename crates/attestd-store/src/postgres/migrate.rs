//! The schema's versions, applied in order at start.
//!
//! Migration `n` is `migrations/postgres/000n_*.sql`, embedded in the
//! binary. Each runs in its own transaction with its row in
//! `schema_version`, so a database is always at exactly one version. Every
//! step first takes a transaction-scoped advisory lock: replicas starting
//! together queue on it, and each finds the work of the one before it done.

use tokio_postgres::Client;

use super::pg_error;
use crate::StoreError;

/// One schema version and the SQL that reaches it from the one before.
struct Migration {
    version: u32,
    sql: &'static str,
}

/// In order, numbered 1, 2, 3, ... without gaps (a test checks).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../migrations/postgres/0002_unit_stations_by_serial.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../../migrations/postgres/0003_nonces_hot_use.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../migrations/postgres/0004_challenges_per_unit.sql"),
    },
];

/// The schema version this binary writes: the last migration's.
pub const SCHEMA_VERSION: u32 = 4;

/// Key of the advisory lock migrations hold: "attestd" in ASCII, so that it
/// is recognisable in `pg_locks` and unlikely to meet another program's.
const MIGRATION_LOCK: i64 = 0x0061_7474_6573_7464;

const CREATE_VERSION_TABLE: &str = "create table if not exists schema_version (
    version int primary key,
    applied_at timestamptz not null default now()
)";

/// Brings the database to [`SCHEMA_VERSION`] and returns the version it is
/// at. Refuses a database newer than this binary: its writers may rely on
/// invariants this binary does not keep.
pub async fn migrate(client: &mut Client) -> Result<u32, StoreError> {
    loop {
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a migration transaction", &e))?;
        tx.execute("select pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| pg_error("taking the migration lock", &e))?;
        tx.batch_execute(CREATE_VERSION_TABLE)
            .await
            .map_err(|e| pg_error("creating schema_version", &e))?;
        let row = tx
            .query_one("select coalesce(max(version), 0) from schema_version", &[])
            .await
            .map_err(|e| pg_error("reading schema_version", &e))?;
        let current: i32 = row
            .try_get(0)
            .map_err(|e| pg_error("reading schema_version", &e))?;
        let current = u32::try_from(current).map_err(|_| {
            StoreError::Unavailable(format!("schema_version holds a negative version {current}"))
        })?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Incompatible(format!(
                "the database schema is at version {current} but this attestd binary knows \
                 versions up to {SCHEMA_VERSION}: this binary is older than the database; \
                 upgrade attestd"
            )));
        }
        let Some(next) = MIGRATIONS.iter().find(|m| m.version > current) else {
            tx.commit()
                .await
                .map_err(|e| pg_error("ending the migration transaction", &e))?;
            return Ok(current);
        };
        let what = format!("applying schema migration {}", next.version);
        tx.batch_execute(next.sql)
            .await
            .map_err(|e| pg_error(&what, &e))?;
        let version = i32::try_from(next.version)
            .map_err(|_| StoreError::Unavailable(format!("{what}: version out of range")))?;
        tx.execute(
            "insert into schema_version (version) values ($1)",
            &[&version],
        )
        .await
        .map_err(|e| pg_error(&what, &e))?;
        tx.commit().await.map_err(|e| pg_error(&what, &e))?;
        tracing::info!(version = next.version, "applied schema migration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::testdb::TestDb;

    /// Every table 0001_init.sql creates.
    const TABLES: &[&str] = &[
        "settings",
        "leases",
        "head",
        "stations",
        "devices",
        "device_keys",
        "unit_stations",
        "unit_digests",
        "records",
        "evidence",
        "history",
        "baselines",
        "baseline_active",
        "baseline_pending",
        "dirty",
        "sweeps",
        "summary",
        "changes",
        "audit",
        "challenges",
    ];

    async fn client(db: &TestDb) -> Client {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    async fn applied(c: &Client) -> Vec<i32> {
        c.query("select version from schema_version order by version", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn all_versions() -> Vec<i32> {
        (1..=SCHEMA_VERSION as i32).collect()
    }

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(!m.sql.trim().is_empty());
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }

    #[tokio::test]
    async fn a_fresh_database_gets_every_table_and_the_current_version() {
        let db = TestDb::create();
        let mut c = client(&db).await;
        assert_eq!(migrate(&mut c).await.unwrap(), SCHEMA_VERSION);
        let rows = c
            .query(
                "select table_name::text from information_schema.tables \
                 where table_schema = 'public'",
                &[],
            )
            .await
            .unwrap();
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        for t in TABLES.iter().chain(&["schema_version"]) {
            assert!(have.iter().any(|h| h == t), "table {t} missing: {have:?}");
        }
        assert_eq!(applied(&c).await, all_versions());
        // The audit chain starts from the core's genesis hash, sequences at 0.
        let head = c
            .query_one(
                "select audit_seq, audit_hash, last_checkpoint, change_seq from head",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(head.get::<_, i64>(0), 0);
        assert_eq!(
            head.get::<_, Vec<u8>>(1),
            attestd_core::audit::GENESIS.to_vec()
        );
        assert_eq!(head.get::<_, i64>(2), 0);
        assert_eq!(head.get::<_, i64>(3), 0);
        // The head row is single.
        let err = c
            .execute(
                "insert into head (id, audit_seq, audit_hash, change_seq) values (2, 0, '', 0)",
                &[],
            )
            .await
            .unwrap_err();
        assert!(err.as_db_error().is_some(), "{err}");
        c.query_one("select nextval('history_ord')", &[])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_database_at_version_1_is_brought_to_the_current_version() {
        let db = TestDb::create();
        let mut c = client(&db).await;
        // As a release with only 0001 left it, with a unit's station link.
        c.batch_execute(CREATE_VERSION_TABLE).await.unwrap();
        c.batch_execute(MIGRATIONS[0].sql).await.unwrap();
        c.batch_execute(
            "insert into schema_version (version) values (1); \
             insert into unit_stations (station_id, serial) values ('F1', 'U1'); \
             insert into nonces (nonce, serial, issued_at, expires_at) values ('\\x01', 'U1', 0, 1)",
        )
        .await
        .unwrap();
        assert_eq!(migrate(&mut c).await.unwrap(), SCHEMA_VERSION);
        assert_eq!(applied(&c).await, all_versions());
        let index: i64 = c
            .query_one(
                "select count(*) from pg_indexes where indexname = 'unit_stations_by_serial'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(index, 1, "0002 adds the index by serial");
        let tables: Vec<String> = c
            .query(
                "select tablename::text from pg_tables where tablename in ('nonces', 'challenges')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            tables,
            ["challenges"],
            "0004 replaces the nonce rows (one outstanding was dropped) by a row per unit"
        );
        let kept: i64 = c
            .query_one(
                "select count(*) from unit_stations where serial = 'U1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1);
    }

    #[tokio::test]
    async fn migrating_twice_changes_nothing() {
        let db = TestDb::create();
        let mut c = client(&db).await;
        assert_eq!(migrate(&mut c).await.unwrap(), SCHEMA_VERSION);
        c.execute(
            "insert into settings (key, value) values ('audit.key_id', 'k7')",
            &[],
        )
        .await
        .unwrap();
        let before: Vec<String> = c
            .query(
                "select version || ' ' || applied_at::text from schema_version order by 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(migrate(&mut c).await.unwrap(), SCHEMA_VERSION);
        let after: Vec<String> = c
            .query(
                "select version || ' ' || applied_at::text from schema_version order by 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(before, after);
        let v: String = c
            .query_one("select value from settings where key = 'audit.key_id'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, "k7", "data survives a second migrate");
    }

    #[tokio::test]
    async fn a_database_newer_than_the_binary_is_refused() {
        let db = TestDb::create();
        let mut c = client(&db).await;
        migrate(&mut c).await.unwrap();
        let newer = SCHEMA_VERSION as i32 + 1;
        c.execute(
            "insert into schema_version (version) values ($1)",
            &[&newer],
        )
        .await
        .unwrap();
        let msg = match migrate(&mut c).await {
            Err(StoreError::Incompatible(msg)) => msg,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(msg.contains(&format!("version {newer}")), "{msg}");
        assert!(msg.contains(&format!("up to {SCHEMA_VERSION}")), "{msg}");
        assert!(msg.contains("older than the database"), "{msg}");
        assert!(msg.contains("upgrade attestd"), "{msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_migrating_at_once_apply_each_migration_once() {
        let db = TestDb::create();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(client(&db).await);
        }
        let runs: Vec<_> = clients
            .into_iter()
            .map(|mut c| tokio::spawn(async move { migrate(&mut c).await }))
            .collect();
        for r in runs {
            assert_eq!(r.await.unwrap().unwrap(), SCHEMA_VERSION);
        }
        let c = client(&db).await;
        // schema_version's primary key would have refused a second row for
        // a version; a second run of 0001 would have failed on its
        // `create table` (and so would have its migrate call).
        assert_eq!(applied(&c).await, all_versions());
        let heads: i64 = c
            .query_one("select count(*) from head", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(heads, 1);
    }
}
