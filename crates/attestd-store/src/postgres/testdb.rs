//! A throwaway database per test, so tests run in parallel on one server.
//!
//! The server comes from `ATTESTD_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); its user must be allowed
//! to create databases. Without a server the test fails, saying how to
//! provide one: a test that skips silently proves nothing.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use super::url::redact_url;

/// Where tests find a PostgreSQL server.
pub const URL_VAR: &str = "ATTESTD_TEST_PG_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped (with its connections) when
/// this value is dropped.
pub struct TestDb {
    /// Connection URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `attestd_t_<16 hex>` on the test server. Panics, naming the
    /// URL it tried, if no server answers. Usable from sync and async tests
    /// alike (the work runs on a thread of its own).
    pub fn create() -> TestDb {
        let admin_url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let mut bytes = [0u8; 8];
        // A test helper that panics by contract when it cannot make the
        // database; without the OS random source there is no name to make.
        #[allow(clippy::expect_used)]
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random source failed");
        let name = format!(
            "attestd_t_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let sql = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = admin(&admin_url, &sql) {
            panic!(
                "no usable PostgreSQL server for the test database at {} ({e}). Start \
                 PostgreSQL 15 locally (user postgres, trust authentication on \
                 127.0.0.1:5432), or set {URL_VAR} to the URL of a server whose user \
                 may CREATE DATABASE",
                redact_url(&admin_url)
            );
        }
        TestDb {
            url: with_dbname(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.admin_url, &sql) {
            // Not a panic: this may run while a failed test unwinds.
            eprintln!("test database {} was not dropped: {e}", self.name);
        }
    }
}

/// Runs one statement on the admin database, on a thread with its own
/// runtime (a runtime cannot be blocked on from inside another, and a
/// `TestDb` is often dropped inside a `#[tokio::test]`).
fn admin(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime: {e}"))?;
        rt.block_on(async {
            let mut cfg: tokio_postgres::Config =
                url.parse().map_err(|e| super::error_chain(&e))?;
            cfg.connect_timeout(Duration::from_secs(5));
            let (client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| super::error_chain(&e))?;
            let conn = tokio::spawn(conn);
            let done = client
                .batch_execute(&sql)
                .await
                .map_err(|e| super::error_chain(&e));
            drop(client);
            let _ = conn.await;
            done
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_owned())?
}

/// `url` naming database `name` instead of its own.
fn with_dbname(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // key=value form: a later key overrides an earlier one.
        return format!("{url} dbname={name}");
    };
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| i + scheme_end);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_urls() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_dbname("postgres://u:p@h:1/postgres?sslmode=disable", "t"),
            "postgres://u:p@h:1/t?sslmode=disable"
        );
        assert_eq!(with_dbname("postgresql://h", "t"), "postgresql://h/t");
        assert_eq!(with_dbname("host=h user=u", "t"), "host=h user=u dbname=t");
    }

    #[test]
    fn a_test_database_exists_until_dropped() {
        let db = TestDb::create();
        assert!(db.name().starts_with("attestd_t_"));
        assert_eq!(db.name().len(), "attestd_t_".len() + 16);
        let admin_url = db.admin_url.clone();
        let exists = |name: &str| {
            let sql = format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}') \
                 THEN RAISE EXCEPTION 'absent'; END IF; END $$"
            );
            admin(&admin_url, &sql).is_ok()
        };
        let name = db.name().to_owned();
        assert!(exists(&name));
        // Reachable through its URL.
        admin(&db.url, "select 1").unwrap();
        drop(db);
        assert!(!exists(&name), "dropped with the TestDb");
    }

    #[test]
    fn no_server_is_a_failure_that_says_what_to_do() {
        // A child process, so the variable changes nothing in this one.
        if std::env::var("ATTESTD_TESTDB_CHILD").is_ok() {
            let _ = TestDb::create();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "postgres::testdb::tests::no_server_is_a_failure_that_says_what_to_do",
                "--nocapture",
            ])
            .env("ATTESTD_TESTDB_CHILD", "1")
            .env(URL_VAR, "postgres://postgres:s3cret@127.0.0.1:1/postgres")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("postgres://postgres:***@127.0.0.1:1/postgres"),
            "{text}"
        );
        assert!(text.contains(URL_VAR), "{text}");
        assert!(text.contains("PostgreSQL 15"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
