//! The PostgreSQL backend of [`crate::Store`]: [`PgStore`], and what it
//! stands on: where to connect and how ([`PgConfig`], [`connect`], TLS with
//! rustls over *ring*), and the versioned schema ([`migrate`],
//! `migrations/postgres/*.sql`).
//!
//! Several attestd replicas may share one database: migrations take an
//! advisory lock, and the schema's `head` row orders every writer's audit
//! and change sequence numbers.

mod apply;
mod batch;
mod commit;
mod config;
mod context;
mod jobs;
mod migrate;
mod queue;
mod read;
mod store;
#[cfg(any(test, feature = "pg-test"))]
pub mod testdb;
#[cfg(test)]
mod tests;
mod url;
mod write;

pub use config::{check as check_config, connect, PgConfig, Pool};
pub use migrate::{migrate, SCHEMA_VERSION};
pub use store::PgStore;
pub use url::redact_url;

/// `Unavailable` with `what` and the whole cause chain of a PostgreSQL error
/// (tokio-postgres' `Display` says only "db error" and keeps the server's
/// message in its source).
pub(crate) fn pg_error(what: &str, e: &(dyn std::error::Error + 'static)) -> crate::StoreError {
    crate::StoreError::Unavailable(format!("{what}: {}", error_chain(e)))
}

/// `e` and its sources, joined by ": ", skipping a source whose text its
/// parent already printed.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        next = cause.source();
    }
    text
}
