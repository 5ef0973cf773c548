//! What a PostgreSQL backend of [`crate::Store`] stands on: where to connect
//! and how ([`PgConfig`], [`connect`], TLS with rustls over *ring*).

mod config;
#[cfg(any(test, feature = "pg-test"))]
pub mod testdb;
mod url;

pub use config::{connect, PgConfig, Pool};
pub use url::redact_url;

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
