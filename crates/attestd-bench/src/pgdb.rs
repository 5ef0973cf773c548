//! The PostgreSQL database a fleet is stored in, as the load generator sees
//! it before any replica starts: emptied for a fresh fleet, looked at for a
//! reused one. Only ever the database `--store-url` names: the bench
//! connects to no other, so it cannot drop or create one.

use attestd_store::postgres::{connect, redact_url, PgConfig, Pool};

/// A pool of one connection to the database at `url`.
async fn pool(url: &str) -> anyhow::Result<Pool> {
    let mut cfg = PgConfig::new(url);
    cfg.pool_size = 1;
    Ok(connect(&cfg).await?)
}

/// What a database holds, as far as the bench cares.
pub(crate) struct Found {
    /// Tables in the schema attestd creates its tables in (`public`).
    pub tables: i64,
    /// The database's name (as its backends' process titles show it).
    pub database: String,
}

pub(crate) async fn look(url: &str) -> anyhow::Result<Found> {
    let pool = pool(url).await?;
    let c = pool.get().await?;
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'), \
             current_database()",
            &[],
        )
        .await
        .map_err(|e| failed("counting tables", url, &e))?;
    Ok(Found {
        tables: row.get(0),
        database: row.get(1),
    })
}

/// Drops the database's `public` schema with everything in it and creates
/// it again, empty; the replicas then create attestd's tables (PgStore
/// migrates at open). Refuses when unqualified names would not land in
/// `public` (a search_path naming another schema first), since the tables
/// would then live where this does not look. Returns the database's name.
pub(crate) async fn empty(url: &str) -> anyhow::Result<String> {
    let pool = pool(url).await?;
    let c = pool.get().await?;
    let row = c
        .query_one("SELECT current_schema(), current_database()", &[])
        .await
        .map_err(|e| failed("reading current_schema()", url, &e))?;
    let (schema, name): (Option<String>, String) = (row.get(0), row.get(1));
    anyhow::ensure!(
        schema.as_deref().is_none_or(|s| s == "public"),
        "the database {} creates tables in schema {:?}, not public (search_path): \
         the bench empties only public, so --fresh would not start from an empty fleet",
        redact_url(url),
        schema.unwrap_or_default()
    );
    c.batch_execute("BEGIN; DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public; COMMIT;")
        .await
        .map_err(|e| failed("emptying (DROP SCHEMA public CASCADE)", url, &e))?;
    eprintln!(
        "emptied the database {} (schema public dropped and recreated)",
        redact_url(url)
    );
    Ok(name)
}

/// `what` failed on the database at `url`, with `e`'s sources (the text of
/// a tokio-postgres error is only "db error"; the server's is its source).
fn failed(what: &str, url: &str, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut text = format!("{what} on the database {}: {e}", redact_url(url));
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    anyhow::anyhow!(text)
}
