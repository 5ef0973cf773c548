//! [`PgStore`]: the [`Store`] contract on PostgreSQL, for several replicas
//! sharing one database.
//!
//! Writes go through [`super::write`] (one transaction per call or batch,
//! head row locked first, answered after `COMMIT`); listings through
//! [`super::read`]; queues, nonces, leases and settings through
//! [`super::jobs`]; the rest is one statement each, so it reads one
//! snapshot.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::commit::Committer;
use super::context::Contexts;
use super::jobs;
use super::read::{self, corrupt, db, decode, limit, page, parse_order, prep};
use super::write::{self, Answer, Op};
use super::{connect, migrate, PgConfig, Pool};
use crate::{
    Assignment, AuditNote, AuditRecord, BaselineEntry, ChangeEntry, ConcessionEntry, Counts,
    DecisionCommit, DeviceEntry, DeviceQuery, EvidenceCommit, EvidenceEntry, FlagCommit, Group,
    HistoryItem, Page, ReappraisalCommit, RecordCommit, RecordEntry, RecordOutcome, Result,
    StationEntry, Store, StoreError, SummaryCount, SweepEntry, UnitContext, Write, WriteStats,
    Written,
};

/// The PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: Pool,
    committer: Arc<Committer>,
    contexts: Arc<Contexts>,
}

impl PgStore {
    /// Connects, brings the schema to this binary's version and checks
    /// that the database answers and commits durably (refuses
    /// `synchronous_commit = off`); every failure is `Unavailable` (the URL
    /// shown without its password).
    pub async fn open(cfg: &PgConfig) -> Result<PgStore> {
        let pool = connect(cfg).await?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(write::pool_message(&e)))?;
        let version = migrate(&mut client).await?;
        client
            .query_one("SELECT audit_seq FROM head WHERE id = 1", &[])
            .await
            .map_err(db("reading the head row"))?;
        // A write is answered once COMMIT returns: with synchronous_commit
        // off, that answer could outlive the write in a crash.
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .map_err(db("reading synchronous_commit"))?
            .get(0);
        if sync == "off" {
            return Err(StoreError::Unavailable(
                "synchronous_commit is off for this database or user: a committed write \
                 could be lost in a crash after attestd acknowledged it; set it to on \
                 (or local, remote_write, remote_apply)"
                    .to_owned(),
            ));
        }
        // Every boot rewrites a unit row and every challenge a challenge row:
        // without vacuum the tables and their indices grow with dead rows
        // and writes slow down. Served anyway (a setting, not a fault).
        match client.query_one("SHOW autovacuum", &[]).await {
            Ok(row) => {
                if let Some(w) = autovacuum_warning(row.get(0)) {
                    tracing::warn!("{w}");
                }
            }
            Err(e) => {
                tracing::warn!(error = %super::error_chain(&e), "autovacuum setting not read")
            }
        }
        drop(client);
        let readers = super::config::connect_readers(cfg, super::context::READERS).await?;
        tracing::info!(schema_version = version, "PostgreSQL store ready");
        Ok(PgStore {
            committer: Committer::start(pool.clone()),
            contexts: Contexts::start(readers),
            pool,
        })
    }

    /// The unit-context readers' own connections.
    #[cfg(test)]
    pub(super) fn context_pool(&self) -> &Pool {
        self.contexts.pool()
    }

    /// Statements that read unit contexts so far.
    #[cfg(test)]
    pub(super) fn context_statements(&self) -> u64 {
        self.contexts.statements()
    }

    /// The connection pool, for tools and tests that look below the contract.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(write::pool_message(&e)))
    }

    /// Runs one statement and returns its rows.
    pub(super) async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &'static str,
    ) -> Result<Vec<Row>> {
        let c = self.client().await?;
        let s = prep(&c, sql).await?;
        c.query(&s, params).await.map_err(db(what))
    }

    /// Runs one statement and returns its row, if any.
    pub(super) async fn row(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &'static str,
    ) -> Result<Option<Row>> {
        let c = self.client().await?;
        let s = prep(&c, sql).await?;
        c.query_opt(&s, params).await.map_err(db(what))
    }

    /// Runs one writing statement (committed by itself) and returns the
    /// rows it changed. Refused once the store is closed.
    pub(super) async fn change(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &'static str,
    ) -> Result<u64> {
        let _open = self.committer.gate().await?;
        let c = self.client().await?;
        let s = prep(&c, sql).await?;
        c.execute(&s, params).await.map_err(db(what))
    }

    /// Applies one op in the transaction of the group in flight (see
    /// [`super::commit`]).
    pub(super) async fn grouped(&self, op: Op) -> Result<Answer> {
        self.committer.grouped_op(op).await
    }

    /// Applies ops in one transaction, now (see [`write`]).
    pub(super) async fn write(&self, ops: Vec<Op>) -> Vec<Result<Answer>> {
        self.committer.write(ops).await
    }

    async fn write_one(&self, op: Op) -> Result<Answer> {
        self.write(vec![op])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no answer for this write".into())))
    }

    async fn write_device(&self, op: Op) -> Result<DeviceEntry> {
        match self.write_one(op).await? {
            Answer::Device(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    async fn write_station(&self, op: Op) -> Result<StationEntry> {
        match self.write_one(op).await? {
            Answer::Station(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }
}

/// The warning for a server whose `autovacuum` setting is `setting`, if
/// it calls for one.
pub(super) fn autovacuum_warning(setting: &str) -> Option<String> {
    (setting != "on").then(|| {
        format!(
            "autovacuum is {setting} on this PostgreSQL server: attestd rewrites a unit row on \
             every accepted evidence and a challenge row on every challenge, so without vacuum \
             its tables and indices fill with dead rows and writes slow down; turn autovacuum \
             on, or vacuum the database on a schedule"
        )
    })
}

pub(super) fn unexpected() -> StoreError {
    StoreError::Unavailable("the store answered a write with the wrong kind of result".into())
}

/// A stored non-negative number (sequence, counter) as the contract's u64.
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn body<M: prost::Message + Default>(row: &Row, what: &str) -> Result<M> {
    decode(row.get::<_, &[u8]>(0), what)
}

pub(super) fn serials(rows: Vec<Row>) -> Vec<String> {
    rows.iter().map(|r| r.get(0)).collect()
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn register_station(
        &self,
        station: StationEntry,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        self.write_station(Op::RegisterStation {
            station,
            audit: audit.clone(),
        })
        .await
    }

    async fn revoke_station(
        &self,
        station_id: &str,
        reason: &str,
        audit: &AuditNote,
    ) -> Result<StationEntry> {
        self.write_station(Op::RevokeStation {
            station_id: station_id.to_owned(),
            reason: reason.to_owned(),
            audit: audit.clone(),
        })
        .await
    }

    async fn get_station(&self, station_id: &str) -> Result<Option<StationEntry>> {
        let sql = "SELECT body FROM stations WHERE station_id = $1";
        self.row(sql, &[&station_id], "reading a station")
            .await?
            .map(|r| body(&r, "station"))
            .transpose()
    }

    async fn list_stations(&self, after: Option<&str>, n: usize) -> Result<Page<StationEntry>> {
        let sql = "SELECT station_id, body FROM stations WHERE station_id > $1 \
                   ORDER BY station_id LIMIT $2";
        let after = after.unwrap_or("");
        let rows = self
            .rows(
                sql,
                &[&after, &limit(n.saturating_add(1))],
                "listing stations",
            )
            .await?;
        page(rows, n, |r| r.get(0), |r| decode(r.get(1), "station"))
    }

    async fn get_device(&self, serial: &str) -> Result<Option<DeviceEntry>> {
        let sql = "SELECT body FROM devices WHERE serial = $1";
        self.row(sql, &[&serial], "reading a device")
            .await?
            .map(|r| body(&r, "device"))
            .transpose()
    }

    async fn commit_record(&self, commit: RecordCommit) -> Result<RecordOutcome> {
        match self.committer.grouped(Write::Record(commit)).await? {
            Written::Record(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn get_record(&self, record_id: &str) -> Result<Option<RecordEntry>> {
        let sql = "SELECT body FROM records WHERE record_id = $1";
        self.row(sql, &[&record_id], "reading a record")
            .await?
            .map(|r| body(&r, "record"))
            .transpose()
    }

    async fn list_records(
        &self,
        serial: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Page<RecordEntry>> {
        let sql = "SELECT ord, body FROM records WHERE serial = $1 AND ord > $2 \
                   ORDER BY ord LIMIT $3";
        let after = parse_order(after)?.unwrap_or(0);
        let rows = self
            .rows(
                sql,
                &[&serial, &after, &limit(n.saturating_add(1))],
                "listing records",
            )
            .await?;
        page(
            rows,
            n,
            |r| r.get::<_, i64>(0).to_string(),
            |r| decode(r.get(1), "record"),
        )
    }

    async fn set_flag(&self, commit: FlagCommit) -> Result<DeviceEntry> {
        self.write_device(Op::Flag(commit)).await
    }

    async fn commit_evidence(&self, commit: EvidenceCommit) -> Result<DeviceEntry> {
        match self.committer.grouped(Write::Evidence(commit)).await? {
            Written::Device(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    async fn commit_reappraisal(&self, commit: ReappraisalCommit) -> Result<DeviceEntry> {
        match self.committer.grouped(Write::Reappraisal(commit)).await? {
            Written::Device(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    async fn publish_baseline(
        &self,
        baseline: BaselineEntry,
        now_secs: i64,
        audit: &AuditNote,
    ) -> Result<bool> {
        let op = Op::PublishBaseline {
            baseline,
            now_secs,
            audit: audit.clone(),
        };
        match self.write_one(op).await? {
            Answer::Flag(active) => Ok(active),
            _ => Err(unexpected()),
        }
    }

    async fn get_baseline(&self, model: &str, version: u64) -> Result<Option<BaselineEntry>> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        let sql = "SELECT body FROM baselines WHERE model = $1 AND version = $2";
        self.row(sql, &[&model, &version], "reading a baseline")
            .await?
            .map(|r| body(&r, "baseline"))
            .transpose()
    }

    async fn active_baseline_version(&self, model: &str) -> Result<Option<u64>> {
        let sql = "SELECT version FROM baseline_active WHERE model = $1";
        Ok(self
            .row(sql, &[&model], "reading the active baseline")
            .await?
            .map(|r| count(r.get(0))))
    }

    async fn list_baselines(
        &self,
        model: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Page<BaselineEntry>> {
        let sql = "SELECT version, body FROM baselines WHERE model = $1 \
                   AND ($2::bigint IS NULL OR version < $2) ORDER BY version DESC LIMIT $3";
        let before = parse_order(after)?;
        let rows = self
            .rows(
                sql,
                &[&model, &before, &limit(n.saturating_add(1))],
                "listing baselines",
            )
            .await?;
        page(
            rows,
            n,
            |r| r.get::<_, i64>(0).to_string(),
            |r| decode(r.get(1), "baseline"),
        )
    }

    async fn activate_due_baselines(&self, now_secs: i64) -> Result<Vec<(String, u64)>> {
        jobs::activate_due_baselines(self, now_secs).await
    }

    async fn dirty_units(&self, n: usize) -> Result<Vec<String>> {
        jobs::dirty_units(self, n).await
    }

    async fn due_units(&self, now_secs: i64, n: usize) -> Result<Vec<String>> {
        jobs::due_units(self, now_secs, n).await
    }

    async fn sweeps(&self) -> Result<Vec<SweepEntry>> {
        jobs::sweeps(self).await
    }

    async fn sweep_units(&self, sweep: &SweepEntry, n: usize) -> Result<Vec<String>> {
        jobs::sweep_units(self, sweep, n).await
    }

    async fn advance_sweep(&self, sweep: &SweepEntry, cursor: Option<&str>) -> Result<()> {
        jobs::advance_sweep(self, sweep, cursor).await
    }

    async fn get_evidence(&self, evidence_id: &str) -> Result<Option<EvidenceEntry>> {
        let sql = "SELECT body, raw FROM evidence WHERE evidence_id = $1";
        let Some(row) = self.row(sql, &[&evidence_id], "reading evidence").await? else {
            return Ok(None);
        };
        let mut e: EvidenceEntry = body(&row, "evidence")?;
        e.raw = row.get(1);
        Ok(Some(e))
    }

    async fn list_history(
        &self,
        serial: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Page<HistoryItem>> {
        let c = self.client().await?;
        read::history(&c, serial, after, n).await
    }

    async fn assign_device(
        &self,
        serial: &str,
        a: &Assignment,
        audit: &AuditNote,
    ) -> Result<DeviceEntry> {
        self.write_device(Op::Assign {
            serial: serial.to_owned(),
            assignment: a.clone(),
            audit: audit.clone(),
        })
        .await
    }

    async fn grant_concession(&self, c: ConcessionEntry, audit: &AuditNote) -> Result<DeviceEntry> {
        self.write_device(Op::Concession {
            concession: c,
            audit: audit.clone(),
        })
        .await
    }

    async fn record_decision(&self, d: DecisionCommit) -> Result<()> {
        self.committer.grouped(Write::Decision(d)).await.map(|_| ())
    }

    async fn append_audit(&self, audit: &AuditNote) -> Result<()> {
        self.write_one(Op::AppendAudit(audit.clone()))
            .await
            .map(|_| ())
    }

    async fn audit_after(&self, after: u64, n: usize) -> Result<Vec<AuditRecord>> {
        let sql = "SELECT body FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2";
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.rows(sql, &[&after, &limit(n)], "reading the audit chain")
            .await?
            .iter()
            .map(|r| body(r, "audit entry"))
            .collect()
    }

    async fn audit_head(&self) -> Result<(u64, [u8; 32])> {
        // One row, one statement: the sequence and the hash of one entry.
        let sql = "SELECT audit_seq, audit_hash FROM head WHERE id = 1";
        let row = self
            .row(sql, &[], "reading the audit head")
            .await?
            .ok_or_else(|| corrupt("head row"))?;
        let hash: Vec<u8> = row.get(1);
        let hash = hash.try_into().map_err(|_| corrupt("audit head"))?;
        Ok((count(row.get(0)), hash))
    }

    async fn audit_last_checkpoint(&self) -> Result<Option<AuditRecord>> {
        let sql = "SELECT h.last_checkpoint, a.body FROM head h \
                   LEFT JOIN audit a ON a.seq = h.last_checkpoint WHERE h.id = 1";
        let row = self
            .row(sql, &[], "reading the last checkpoint")
            .await?
            .ok_or_else(|| corrupt("head row"))?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(None);
        }
        match row.get::<_, Option<&[u8]>>(1) {
            Some(b) => decode(b, "audit entry").map(Some),
            None => Err(corrupt("last checkpoint entry")),
        }
    }

    async fn list_devices(&self, q: DeviceQuery) -> Result<Page<DeviceEntry>> {
        let c = self.client().await?;
        read::list_devices(&c, &q).await
    }

    async fn summary(&self, group: Group, tenant: Option<&str>) -> Result<Vec<SummaryCount>> {
        let sql = "SELECT key, status, sum(n)::bigint FROM summary WHERE grp = $1 \
                   AND ($2::text IS NULL OR tenant = $2) AND n > 0 GROUP BY key, status";
        let grp = write::group_code(group);
        let mut out: Vec<SummaryCount> = self
            .rows(sql, &[&grp, &tenant], "reading the summary")
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), count(r.get(2))))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn changes_after(&self, after: u64, n: usize) -> Result<Vec<ChangeEntry>> {
        let sql = "SELECT body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.rows(sql, &[&after, &limit(n)], "reading the change feed")
            .await?
            .iter()
            .map(|r| body(r, "change"))
            .collect()
    }

    async fn probe(&self) -> Result<()> {
        // A standby (or a database set read-only) answers reads but refuses
        // every write: not a store to serve from.
        let sql = "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' \
                   FROM head WHERE id = 1";
        let row = self
            .row(sql, &[], "probing the database")
            .await?
            .ok_or_else(|| corrupt("head row"))?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::Unavailable(
                "the database is read-only (a standby, or default_transaction_read_only): \
                 writes would fail"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn change_cursor(&self) -> Result<u64> {
        let sql = "SELECT change_seq FROM head WHERE id = 1";
        let row = self
            .row(sql, &[], "reading the change cursor")
            .await?
            .ok_or_else(|| corrupt("head row"))?;
        Ok(count(row.get(0)))
    }

    async fn change_bounds(&self) -> Result<Option<(u64, u64)>> {
        let sql = "SELECT min(seq), max(seq) FROM changes";
        let row = self
            .row(sql, &[], "reading the change bounds")
            .await?
            .ok_or_else(|| corrupt("change bounds"))?;
        Ok(match (row.get(0), row.get(1)) {
            (Some(lo), Some(hi)) => Some((count(lo), count(hi))),
            _ => None,
        })
    }

    async fn trim_changes(&self, keep: u64, max: usize) -> Result<usize> {
        jobs::trim_changes(self, keep, max).await
    }

    async fn counts(&self) -> Result<Counts> {
        let sql = "SELECT h.stations, h.devices, h.records, h.evidence, h.baselines, \
                   s.status, s.n FROM head h LEFT JOIN (SELECT status, sum(n)::bigint AS n \
                   FROM summary WHERE grp = 0 GROUP BY status) s ON true WHERE h.id = 1";
        let rows = self.rows(sql, &[], "reading the counts").await?;
        let first = rows.first().ok_or_else(|| corrupt("head row"))?;
        let mut c = Counts {
            stations: count(first.get(0)),
            devices: count(first.get(1)),
            records: count(first.get(2)),
            evidence: count(first.get(3)),
            baselines: count(first.get(4)),
            by_status: [0; 7],
        };
        for r in &rows {
            if let (Some(status), Some(n)) = (r.get::<_, Option<i32>>(5), r.get(6)) {
                if let Some(slot) = usize::try_from(status)
                    .ok()
                    .and_then(|i| c.by_status.get_mut(i))
                {
                    *slot += count(n);
                }
            }
        }
        Ok(c)
    }

    async fn commit_batch(&self, writes: Vec<Write>) -> Vec<Result<Written>> {
        // Queued together on the write lane: the flusher commits them (and
        // whatever else is queued) in groups of at most MAX_GROUP, so a
        // re-appraisal round of a thousand units never holds the head lock
        // for all of them, and a single decision (CheckRelease) shares the
        // group in flight instead of taking the head lock and an fsync for
        // itself (alone, CheckRelease topped out near 450/s).
        let ops = writes.into_iter().map(Op::Write).collect();
        self.committer
            .grouped_ops(ops)
            .await
            .into_iter()
            .map(|a| match a? {
                Answer::Written(w) => Ok(w),
                _ => Err(unexpected()),
            })
            .collect()
    }

    async fn issue_nonce(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &crate::nonces::NoncePolicy,
    ) -> Result<([u8; crate::nonces::NONCE_LEN], i64)> {
        jobs::issue_nonce(self, serial, now_ms, policy, false).await
    }

    async fn issue_challenge(
        &self,
        serial: &str,
        now_ms: i64,
        policy: &crate::nonces::NoncePolicy,
    ) -> Result<([u8; crate::nonces::NONCE_LEN], i64)> {
        jobs::issue_nonce(self, serial, now_ms, policy, true).await
    }

    async fn unit_context(&self, serial: &str) -> Result<Option<UnitContext>> {
        // One statement for the units of all the reads queued with this
        // one (`super::context`).
        self.contexts.read(serial).await
    }

    async fn consume_nonce(
        &self,
        nonce: &[u8],
        serial: &str,
        now_ms: i64,
        policy: &crate::nonces::NoncePolicy,
    ) -> Result<()> {
        jobs::consume_nonce(self, nonce, serial, now_ms, policy).await
    }

    async fn lease(&self, job: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> Result<bool> {
        jobs::lease(self, job, holder, ttl_ms, now_ms).await
    }

    async fn pin_setting(&self, key: &str, value: &str) -> Result<String> {
        jobs::pin_setting(self, key, value).await
    }

    /// PostgreSQL is backed up with its own tools, which copy one snapshot
    /// while every replica keeps writing (and PITR gives more than a copy).
    async fn backup(
        &self,
        note: &AuditNote,
        seal: crate::backup::Seal,
    ) -> Result<crate::backup::Snapshot> {
        let _ = (note, seal);
        Err(StoreError::Rejected(attestd_core::Rejection::new(
            attestd_core::Reason::BackupUnsupported,
            "this attestd stores its data in PostgreSQL: back it up with PostgreSQL's own \
             tools (pg_dump -Fc for a consistent copy while attestd serves; pg_basebackup \
             with WAL archiving for point-in-time recovery), and keep the audit key with it; \
             see README, \"Backups (PostgreSQL)\"",
        )))
    }

    fn write_stats(&self) -> WriteStats {
        self.committer.stats()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        self.committer.close().await;
    }
}
