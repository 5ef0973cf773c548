//! Background work and what replicas coordinate on: the re-appraisal
//! queues (dirty, due, sweeps), pending baselines, change-feed trimming,
//! challenge nonces, leases and pinned settings.
//!
//! Each is one statement (or, for activation, one write transaction), so
//! replicas doing the same work at once do it once: a sweep advances only
//! from the cursor and generation its caller read, trimming deletes each
//! row once, a unit's nonces, a lease or a setting is a primary key.

use tokio_postgres::types::ToSql;

use super::batch::{IssueNonce, UseNonce};
use super::read::{corrupt, db, limit, prep};
use super::store::{count, serials, PgStore};
use super::write::{Answer, Op};
use crate::nonces::{random_nonce, NoncePolicy, NONCE_LEN};
use crate::{Result, StoreError, SweepEntry, SWEEP_DIGEST, SWEEP_MODEL, SWEEP_STATION};

pub(super) async fn activate_due_baselines(
    store: &PgStore,
    now_secs: i64,
) -> Result<Vec<(String, u64)>> {
    let sql = "SELECT effective_at, model, version FROM baseline_pending \
               WHERE effective_at <= $1 ORDER BY effective_at, model, version";
    let due = store
        .rows(sql, &[&now_secs.max(0)], "reading pending baselines")
        .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ops: Vec<Op> = due
        .iter()
        .map(|r| Op::Activate {
            effective_at: r.get(0),
            model: r.get(1),
            version: r.get(2),
        })
        .collect();
    let answers = store.write(ops).await;
    let mut activated = Vec::new();
    for (row, answer) in due.iter().zip(answers) {
        if let Answer::Flag(true) = answer? {
            activated.push((row.get(1), count(row.get(2))));
        }
    }
    Ok(activated)
}

pub(super) async fn dirty_units(store: &PgStore, n: usize) -> Result<Vec<String>> {
    let sql = "SELECT serial FROM dirty ORDER BY serial LIMIT $1";
    Ok(serials(
        store.rows(sql, &[&limit(n)], "reading dirty units").await?,
    ))
}

pub(super) async fn due_units(store: &PgStore, now_secs: i64, n: usize) -> Result<Vec<String>> {
    let sql = "SELECT serial FROM devices WHERE next_check_at <> 0 AND next_check_at <= $1 \
               ORDER BY next_check_at, serial LIMIT $2";
    Ok(serials(
        store
            .rows(sql, &[&now_secs.max(0), &limit(n)], "reading due units")
            .await?,
    ))
}

pub(super) async fn sweeps(store: &PgStore) -> Result<Vec<SweepEntry>> {
    let sql = "SELECT kind, key, cursor, reason, generation FROM sweeps ORDER BY kind, key";
    Ok(store
        .rows(sql, &[], "reading sweeps")
        .await?
        .iter()
        .map(|r| SweepEntry {
            kind: r.get(0),
            key: r.get(1),
            cursor: r.get(2),
            reason: r.get(3),
            generation: count(r.get(4)),
        })
        .collect())
}

pub(super) async fn sweep_units(
    store: &PgStore,
    sweep: &SweepEntry,
    n: usize,
) -> Result<Vec<String>> {
    let sql = match sweep.kind {
        SWEEP_MODEL => {
            "SELECT serial FROM devices WHERE model = $1 AND serial > $2 \
             ORDER BY serial LIMIT $3"
        }
        SWEEP_STATION => {
            "SELECT serial FROM unit_stations WHERE station_id = $1 AND serial > $2 \
             ORDER BY serial LIMIT $3"
        }
        SWEEP_DIGEST => {
            "SELECT serial FROM unit_digests WHERE digest = $1 AND serial > $2 \
             ORDER BY serial LIMIT $3"
        }
        _ => return Err(corrupt("sweep kind")),
    };
    let params: [&(dyn ToSql + Sync); 3] = [&sweep.key, &sweep.cursor, &limit(n)];
    Ok(serials(
        store.rows(sql, &params, "reading a sweep's units").await?,
    ))
}

pub(super) async fn advance_sweep(
    store: &PgStore,
    sweep: &SweepEntry,
    cursor: Option<&str>,
) -> Result<()> {
    // A sweep reopened meanwhile (a newer generation) or advanced by
    // another replica (another cursor) is left alone.
    let Ok(generation) = i64::try_from(sweep.generation) else {
        return Ok(());
    };
    let key: [&(dyn ToSql + Sync); 4] = [&sweep.kind, &sweep.key, &generation, &sweep.cursor];
    let what = "advancing a sweep";
    match cursor {
        Some(c) => {
            let sql = "UPDATE sweeps SET cursor = $5 WHERE kind = $1 AND key = $2 \
                       AND generation = $3 AND cursor = $4";
            store
                .change(sql, &[key[0], key[1], key[2], key[3], &c], what)
                .await?
        }
        None => {
            let sql = "DELETE FROM sweeps WHERE kind = $1 AND key = $2 \
                       AND generation = $3 AND cursor = $4";
            store.change(sql, &key, what).await?
        }
    };
    Ok(())
}

pub(super) async fn trim_changes(store: &PgStore, keep: u64, max: usize) -> Result<usize> {
    // One statement: replicas trimming at once delete each row once.
    let sql = "WITH b AS (SELECT min(seq) AS lo, max(seq) AS hi FROM changes) \
               DELETE FROM changes WHERE seq >= (SELECT lo FROM b) AND seq < \
               (SELECT lo + LEAST(GREATEST(hi - lo + 1 - $1, 0), $2) FROM b)";
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let n = store
        .change(sql, &[&keep, &limit(max)], "trimming the change feed")
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Issues a nonce for `serial`; with `enrolled_only`, only if the serial is
/// enrolled (else `DEVICE_NOT_FOUND`, nothing stored).
pub(super) async fn issue_nonce(
    store: &PgStore,
    serial: &str,
    now_ms: i64,
    policy: &NoncePolicy,
    enrolled_only: bool,
) -> Result<([u8; NONCE_LEN], i64)> {
    let nonce = random_nonce()?;
    let expires_ms = now_ms.saturating_add(policy.lifetime_ms);
    // Stored with the group of writes in flight (one statement for all the
    // nonces of a group, which also evicts each serial's oldest beyond its
    // bound: see `batch::issue_nonces`). Nothing to sweep: a unit's nonces
    // are one row, bounded.
    let stored = store
        .grouped(Op::IssueNonce(IssueNonce {
            nonce: nonce.to_vec(),
            serial: serial.to_owned(),
            expires_at: expires_ms,
            per_serial: per_serial(policy),
            enrolled_only,
        }))
        .await?;
    match stored {
        Answer::Flag(true) => {}
        Answer::Flag(false) => return Err(StoreError::Rejected(crate::not_enrolled(serial))),
        _ => return Err(super::store::unexpected()),
    }
    Ok((nonce, expires_ms))
}

/// The policy's bound on a unit's outstanding (and remembered used) nonces.
fn per_serial(policy: &NoncePolicy) -> i32 {
    i32::try_from(policy.per_serial.max(1)).unwrap_or(i32::MAX)
}

pub(super) async fn consume_nonce(
    store: &PgStore,
    nonce: &[u8],
    serial: &str,
    now_ms: i64,
    policy: &NoncePolicy,
) -> Result<()> {
    // Used with the group of writes in flight (one statement for all the
    // nonces of a group: see `batch::use_nonces`).
    store
        .grouped(Op::UseNonce(UseNonce {
            nonce: nonce.to_vec(),
            serial: serial.to_owned(),
            now_ms,
            grace_ms: policy.grace_ms(),
            per_serial: per_serial(policy),
        }))
        .await
        .map(|_| ())
}

pub(super) async fn lease(
    store: &PgStore,
    job: &str,
    holder: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<bool> {
    // Taken if free, lapsed, or renewed by its holder; one statement,
    // so two replicas never both win.
    let sql = "INSERT INTO leases (job, holder, until_ms) VALUES ($1, $2, $3) \
               ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, \
               until_ms = excluded.until_ms \
               WHERE leases.holder = excluded.holder OR leases.until_ms <= $4";
    let until = now_ms.saturating_add(ttl_ms.max(0));
    let c = store.client().await?;
    let s = prep(&c, sql).await?;
    Ok(c.execute(&s, &[&job, &holder, &until, &now_ms])
        .await
        .map_err(db("taking a lease"))?
        == 1)
}

pub(super) async fn pin_setting(store: &PgStore, key: &str, value: &str) -> Result<String> {
    let sql = "WITH ins AS (INSERT INTO settings (key, value) VALUES ($1, $2) \
               ON CONFLICT (key) DO NOTHING RETURNING value) \
               SELECT value FROM ins UNION ALL SELECT value FROM settings WHERE key = $1";
    // A replica pinning at the same moment may commit after this
    // statement's snapshot: then neither part sees a row, and a second
    // statement (a new snapshot) does.
    for _ in 0..3 {
        let rows = store
            .rows(sql, &[&key, &value], "pinning a setting")
            .await?;
        if let Some(r) = rows.first() {
            return Ok(r.get(0));
        }
    }
    Err(StoreError::Unavailable(format!(
        "setting {key} could be neither stored nor read"
    )))
}
