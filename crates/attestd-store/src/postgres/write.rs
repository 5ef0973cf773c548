//! How the PostgreSQL backend writes: every domain write is an [`Op`], and
//! [`run`] applies a list of them in one transaction.
//!
//! The transaction first locks the single `head` row, then reads and locks
//! what each op decides on (`SELECT ... FOR UPDATE`), runs the op's plan
//! ([`crate::plan`]) and writes it. The head row carries both sequence
//! numbers, the audit head hash and the totals: they are assigned in Rust
//! while the lock is held and written back once, with the batch's audit
//! entries, change-feed entries and summary deltas, just before `COMMIT`.
//! So writers on every replica queue on one row, sequences follow commit
//! order without gaps, and no two writers can wait on each other in a
//! cycle (the head is always the first lock).
//!
//! Several ops share the transaction (one lock acquisition, one commit, one
//! fsync); each runs under a savepoint, so one refused is rolled back alone
//! and answers as it would alone. A deadlock or serialization failure
//! (which the head-first order should make impossible) retries the whole
//! transaction; any other failure of the transaction answers every op
//! `Unavailable`. Answers are given only after `COMMIT` returned.

use std::time::Duration;

use deadpool_postgres::{Pool, PoolError, Transaction};
use prost::Message;
use tokio_postgres::error::SqlState;
use tokio_postgres::Statement;

use crate::plan::{self, SummaryKey};
use crate::{
    Assignment, AuditNote, AuditRecord, BaselineEntry, ChangeEntry, ConcessionEntry, DeviceEntry,
    FlagCommit, Group, StationEntry, StoreError, Write, Written,
};

/// Whole-transaction attempts before answering `Unavailable`.
const ATTEMPTS: u32 = 5;

/// Longest one write transaction may take, waiting for the head lock
/// included. Past it the connection is dropped (the server rolls back what
/// did not commit) and the writes answer `Unavailable`.
const TX_TIMEOUT: Duration = Duration::from_secs(30);

/// One domain write.
// Built once per call and borrowed by each attempt; boxing would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Op {
    /// A write the contract lets a caller batch.
    Write(Write),
    Flag(FlagCommit),
    Assign {
        serial: String,
        assignment: Assignment,
        audit: AuditNote,
    },
    Concession {
        concession: ConcessionEntry,
        audit: AuditNote,
    },
    RegisterStation {
        station: StationEntry,
        audit: AuditNote,
    },
    RevokeStation {
        station_id: String,
        reason: String,
        audit: AuditNote,
    },
    PublishBaseline {
        baseline: BaselineEntry,
        now_secs: i64,
        audit: AuditNote,
    },
    AppendAudit(AuditNote),
    /// A challenge nonce issued (no head lock needed).
    IssueNonce(super::batch::IssueNonce),
    /// A challenge nonce used (no head lock needed).
    UseNonce(super::batch::UseNonce),
    /// A pending baseline whose time has come (a row of `baseline_pending`).
    Activate {
        effective_at: i64,
        model: String,
        version: i64,
    },
}

/// What an op returned.
pub(super) enum Answer {
    Written(Written),
    Device(DeviceEntry),
    Station(StationEntry),
    /// `publish_baseline`: active now; `Activate`: this call activated it;
    /// `IssueNonce`: the nonce was stored.
    Flag(bool),
    Done,
}

/// Why an op stopped.
pub(super) enum Fail {
    /// A rule refused it (rejection, conflict) or stored data is damaged:
    /// this op answers with it, the others go on.
    Refused(StoreError),
    /// The database failed the statement.
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<plan::Refusal> for Fail {
    fn from(r: plan::Refusal) -> Fail {
        Fail::Refused(r.into())
    }
}

impl From<attestd_core::Rejection> for Fail {
    fn from(r: attestd_core::Rejection) -> Fail {
        Fail::Refused(StoreError::Rejected(r))
    }
}

pub(super) type Step<T> = std::result::Result<T, Fail>;

/// The results of statements sent together (pipelined), in the order they
/// were sent, as one: the first failure in that order is the one that
/// matters. The server aborts the transaction there and fails every later
/// statement only for that ("current transaction is aborted"), and those
/// answers may reach their futures first, so `try_join!` could report one
/// of them instead (and a retryable deadlock would look fatal).
pub(super) trait InOrder {
    type Out;
    fn in_order(self) -> std::result::Result<Self::Out, tokio_postgres::Error>;
}

macro_rules! in_order {
    ($($t:ident $v:ident),+) => {
        impl<$($t),+> InOrder for ($(std::result::Result<$t, tokio_postgres::Error>,)+) {
            type Out = ($($t,)+);
            fn in_order(self) -> std::result::Result<Self::Out, tokio_postgres::Error> {
                let ($($v,)+) = self;
                Ok(($($v?,)+))
            }
        }
    };
}

in_order!(A a, B b);
in_order!(A a, B b, C c);
in_order!(A a, B b, C c, D d);
in_order!(A a, B b, C c, D d, E e);
in_order!(A a, B b, C c, D d, E e, F f, G g, H h);

/// Decodes a stored value inside a write.
pub(super) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Step<M> {
    M::decode(bytes).map_err(|_| Fail::Refused(super::read::corrupt(what)))
}

/// Why a transaction as a whole failed.
enum TxFail {
    /// Deadlock or serialization failure: run it again.
    Retry(String),
    /// A statement written for several ops failed: run them again one by
    /// one, so that the op it was for answers alone.
    Unbatch(String),
    Fatal(String),
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn tx_fail(what: &str) -> impl Fn(tokio_postgres::Error) -> TxFail + '_ {
    move |e| {
        let msg = match super::pg_error(what, &e) {
            StoreError::Unavailable(m) => m,
            other => other.to_string(),
        };
        if retryable(&e) {
            TxFail::Retry(msg)
        } else {
            TxFail::Fatal(msg)
        }
    }
}

/// A pool checkout failure as a short message (no URL: the pool has none).
pub(super) fn pool_message(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => format!("connecting to PostgreSQL: {}", super::error_chain(e)),
        PoolError::Timeout(_) => "no PostgreSQL connection free in time".to_owned(),
        PoolError::Closed => "the PostgreSQL pool is closed".to_owned(),
        other => format!("PostgreSQL pool: {other}"),
    }
}

/// What the write path did, for [`crate::WriteStats`].
pub(super) struct Outcome {
    pub answers: Vec<crate::Result<Answer>>,
    /// Whether a transaction committed.
    pub committed: bool,
}

/// Applies `ops` in one transaction; see the module documentation.
pub(super) async fn run(pool: &Pool, ops: &[Op]) -> Outcome {
    let mut attempt = 0;
    let mut batched = ops.len() > 1;
    loop {
        attempt += 1;
        let fail = match once(pool, ops, batched).await {
            Ok(outcome) => return outcome,
            Err(f) => f,
        };
        let msg = match fail {
            TxFail::Unbatch(msg) if batched => {
                tracing::warn!(error = %msg, writes = ops.len(), "a batched statement failed; the group is retried op by op");
                batched = false;
                continue;
            }
            TxFail::Retry(msg) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %msg, "write transaction retried");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                continue;
            }
            TxFail::Retry(msg) | TxFail::Unbatch(msg) | TxFail::Fatal(msg) => msg,
        };
        tracing::error!(error = %msg, writes = ops.len(), "write transaction failed");
        return Outcome {
            answers: ops
                .iter()
                .map(|_| Err(StoreError::Unavailable(msg.clone())))
                .collect(),
            committed: false,
        };
    }
}

async fn once(pool: &Pool, ops: &[Op], batched: bool) -> std::result::Result<Outcome, TxFail> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| TxFail::Fatal(pool_message(&e)))?;
    match tokio::time::timeout(TX_TIMEOUT, transact(&mut client, ops, batched)).await {
        Ok(r) => r,
        Err(_) => {
            // The connection may be stuck: never hand it out again.
            drop(deadpool_postgres::Object::take(client));
            Err(TxFail::Fatal(format!(
                "the write transaction took longer than {TX_TIMEOUT:?}; it did not complete"
            )))
        }
    }
}

/// Whether an op writes under the head lock (everything but nonces).
pub(super) fn needs_head(op: &Op) -> bool {
    !matches!(op, Op::IssueNonce(_) | Op::UseNonce(_))
}

async fn transact(
    client: &mut deadpool_postgres::Client,
    ops: &[Op],
    batched: bool,
) -> std::result::Result<Outcome, TxFail> {
    let tx = client
        .transaction()
        .await
        .map_err(tx_fail("starting a transaction"))?;
    // Nonces alone need no order with other writes: no head lock for them.
    // A batched group's evidence and decisions are read (their units
    // locked) in the round trip of the head lock, sent after it, so the
    // head is still locked first.
    let unit_ops: Vec<super::batch::UnitOp<'_>> = if batched {
        ops.iter().filter_map(unit_op).collect()
    } else {
        Vec::new()
    };
    let (head, read) = if ops.iter().any(needs_head) {
        let (head, read) = tokio::join!(
            biased;
            Head::lock(&tx),
            super::batch::read_units(&tx, &unit_ops),
        );
        (head?, Some(read))
    } else {
        (Head::default(), None)
    };
    let mut cx = Cx::new(&tx, head);
    let mut answers: Vec<Option<crate::Result<Answer>>> = ops.iter().map(|_| None).collect();
    let mut wrote = false;
    if batched {
        let read = match read {
            Some(r) => Some(r.map_err(|e| {
                if retryable(&e) || e.is_closed() {
                    tx_fail("locking units")(e)
                } else {
                    TxFail::Unbatch(super::pg_error("locking units", &e).to_string())
                }
            })?),
            None => None,
        };
        wrote |= batch(&mut cx, ops, &unit_ops, read, &mut answers).await?;
    }
    let many = ops
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .count()
        > 1;
    let mut first = true;
    let mut abandon = false;
    for (op, answer) in ops.iter().zip(answers.iter_mut()) {
        if answer.is_some() {
            continue;
        }
        let mark = cx.mark();
        let r = if many {
            // A savepoint per op, pipelined with the op's first statement.
            let sp = if first {
                "SAVEPOINT w"
            } else {
                "RELEASE SAVEPOINT w; SAVEPOINT w"
            };
            first = false;
            let (s, r) =
                tokio::join!(biased; tx.batch_execute(sp), super::apply::apply(&mut cx, op));
            s.map_err(tx_fail("setting a savepoint"))?;
            r
        } else {
            super::apply::apply(&mut cx, op).await
        };
        let failed = match r {
            Ok(a) => {
                wrote |= cx.wrote;
                *answer = Some(Ok(a));
                continue;
            }
            Err(Fail::Refused(e)) => e,
            Err(Fail::Db(e)) if retryable(&e) || e.is_closed() => {
                return Err(tx_fail("writing")(e));
            }
            Err(Fail::Db(e)) if !many && wrote => {
                return Err(TxFail::Unbatch(super::pg_error("writing", &e).to_string()));
            }
            Err(Fail::Db(e)) if !many => return Err(tx_fail("writing")(e)),
            Err(Fail::Db(e)) => super::pg_error("writing", &e),
        };
        if cx.wrote || matches!(failed, StoreError::Unavailable(_)) {
            if !many {
                if wrote {
                    // Others of the batch wrote: only this op may fail.
                    return Err(TxFail::Unbatch(failed.to_string()));
                }
                // Nothing of a lone op may stay: the transaction is dropped
                // (rolled back) with it.
                *answer = Some(Err(failed));
                abandon = true;
                break;
            }
            tx.batch_execute("ROLLBACK TO SAVEPOINT w")
                .await
                .map_err(tx_fail("rolling back a refused write"))?;
        }
        cx.reset(mark);
        *answer = Some(Err(failed));
    }
    let answers: Vec<crate::Result<Answer>> = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(super::store::unexpected())))
        .collect();
    if abandon {
        return Ok(Outcome {
            answers,
            committed: false,
        });
    }
    if !wrote {
        tx.rollback()
            .await
            .map_err(tx_fail("ending a read-only transaction"))?;
        return Ok(Outcome {
            answers,
            committed: false,
        });
    }
    cx.finish().await.map_err(tx_fail("writing the head"))?;
    tx.commit().await.map_err(tx_fail("committing"))?;
    Ok(Outcome {
        answers,
        committed: true,
    })
}

/// An op [`super::batch::units`] writes (evidence, a release decision).
fn unit_op(op: &Op) -> Option<super::batch::UnitOp<'_>> {
    match op {
        Op::Write(Write::Evidence(c)) => Some(super::batch::UnitOp::Evidence(c)),
        Op::Write(Write::Decision(d)) => Some(super::batch::UnitOp::Decision(d)),
        _ => None,
    }
}

/// Runs the ops [`super::batch`] writes for many at once (nonces, and
/// `unit_ops`: the evidence and release decisions, read in `read` with the
/// head lock), answering them in `answers`; the others are left `None`.
/// Returns whether anything was written. A failed statement fails the
/// transaction: [`TxFail::Unbatch`] (or `Retry`).
async fn batch(
    cx: &mut Cx<'_>,
    ops: &[Op],
    unit_ops: &[super::batch::UnitOp<'_>],
    read: Option<super::batch::UnitsRead>,
    answers: &mut [Option<crate::Result<Answer>>],
) -> std::result::Result<bool, TxFail> {
    let fail = |f: Fail| match f {
        Fail::Db(e) if retryable(&e) || e.is_closed() => tx_fail("writing")(e),
        Fail::Db(e) => TxFail::Unbatch(super::pg_error("writing", &e).to_string()),
        Fail::Refused(e) => TxFail::Unbatch(e.to_string()),
    };
    let mut issue = Vec::new();
    let mut uses = (Vec::new(), Vec::new());
    let mut unit_idx = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::IssueNonce(n) => issue.push((i, n)),
            Op::UseNonce(n) => {
                uses.0.push(i);
                uses.1.push(n);
            }
            _ if unit_op(op).is_some() => unit_idx.push(i),
            _ => {}
        }
    }
    let issued: Vec<&super::batch::IssueNonce> = issue.iter().map(|(_, n)| *n).collect();
    // Sent together: one round trip for the nonces of the group.
    let (stored, used) = {
        let shared: &Cx<'_> = cx;
        tokio::join!(
            biased;
            super::batch::issue_nonces(shared, &issued),
            super::batch::use_nonces(shared, &uses.1),
        )
    };
    let (stored, used) = (stored.map_err(fail)?, used.map_err(fail)?);
    cx.wrote = !issue.is_empty() || !uses.0.is_empty();
    for ((i, _), stored) in issue.iter().zip(stored) {
        answers[*i] = Some(Ok(Answer::Flag(stored)));
    }
    for (i, a) in uses.0.iter().zip(used) {
        answers[*i] = Some(a.map(|()| Answer::Done).map_err(step_error));
    }
    // No read: a group of nonces only (no head lock), so no unit ops.
    if let Some(read) = read {
        let accepted = super::batch::units_with(cx, unit_ops, read)
            .await
            .map_err(fail)?;
        for (i, a) in unit_idx.iter().zip(accepted) {
            answers[*i] = Some(a.map(unit_answer).map_err(step_error));
        }
    }
    Ok(cx.wrote)
}

/// The answer of an op [`super::batch::units`] applied: the unit for
/// evidence, nothing for a decision.
pub(super) fn unit_answer(d: Option<DeviceEntry>) -> Answer {
    match d {
        Some(d) => Answer::Written(Written::Device(d)),
        None => Answer::Written(Written::Done),
    }
}

/// The answer of an op refused inside a batch (a rule, never a statement).
fn step_error(f: Fail) -> StoreError {
    match f {
        Fail::Refused(e) => e,
        Fail::Db(e) => super::pg_error("writing", &e),
    }
}

/// The head row: sequences, audit head and totals.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Head {
    pub audit_seq: i64,
    pub audit_hash: [u8; 32],
    pub last_checkpoint: i64,
    pub change_seq: i64,
    pub stations: i64,
    pub devices: i64,
    pub records: i64,
    pub evidence: i64,
    pub baselines: i64,
    pub sweep_generation: i64,
}

const LOCK_HEAD: &str = "SELECT audit_seq, audit_hash, last_checkpoint, change_seq, stations, \
     devices, records, evidence, baselines, sweep_generation FROM head WHERE id = 1 FOR UPDATE";

const UPDATE_HEAD: &str = "UPDATE head SET audit_seq = $1, audit_hash = $2, last_checkpoint = $3, \
     change_seq = $4, stations = $5, devices = $6, records = $7, evidence = $8, baselines = $9, \
     sweep_generation = $10 WHERE id = 1";

const INSERT_AUDIT: &str = "INSERT INTO audit (seq, at_ms, principal, action, target, body) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
     $6::bytea[])";

const INSERT_CHANGES: &str =
    "INSERT INTO changes (seq, body) SELECT * FROM unnest($1::bigint[], $2::bytea[])";

const ADD_SUMMARY: &str = "INSERT INTO summary (grp, key, tenant, status, n) \
     SELECT * FROM unnest($1::smallint[], $2::text[], $3::text[], $4::int[], $5::bigint[]) \
     ON CONFLICT (grp, key, tenant, status) DO UPDATE SET n = summary.n + excluded.n";

const DROP_EMPTY_SUMMARY: &str = "DELETE FROM summary WHERE n <= 0";

impl Head {
    async fn lock(tx: &Transaction<'_>) -> std::result::Result<Head, TxFail> {
        let fail = tx_fail("locking the head row");
        let s = tx.prepare_cached(LOCK_HEAD).await.map_err(&fail)?;
        let row = tx.query_one(&s, &[]).await.map_err(&fail)?;
        let hash: Vec<u8> = row.get(1);
        Ok(Head {
            audit_seq: row.get(0),
            audit_hash: hash
                .try_into()
                .map_err(|_| TxFail::Fatal("the stored audit head is not 32 bytes".to_owned()))?,
            last_checkpoint: row.get(2),
            change_seq: row.get(3),
            stations: row.get(4),
            devices: row.get(5),
            records: row.get(6),
            evidence: row.get(7),
            baselines: row.get(8),
            sweep_generation: row.get(9),
        })
    }
}

/// Where the state of a transaction stood before an op, to undo the op.
pub(super) struct Mark {
    head: Head,
    audits: usize,
    changes: usize,
    summary: usize,
}

/// A write transaction under the head lock: the head as the ops so far
/// left it, and what they append at the end.
pub(super) struct Cx<'a> {
    pub tx: &'a Transaction<'a>,
    pub head: Head,
    initial: Head,
    audits: Vec<AuditRecord>,
    changes: Vec<ChangeEntry>,
    summary: Vec<(SummaryKey, i64)>,
    /// Whether the current op changed anything.
    pub wrote: bool,
}

impl<'a> Cx<'a> {
    fn new(tx: &'a Transaction<'a>, head: Head) -> Cx<'a> {
        Cx {
            tx,
            head,
            initial: head,
            audits: Vec::new(),
            changes: Vec::new(),
            summary: Vec::new(),
            wrote: false,
        }
    }

    fn mark(&mut self) -> Mark {
        self.wrote = false;
        Mark {
            head: self.head,
            audits: self.audits.len(),
            changes: self.changes.len(),
            summary: self.summary.len(),
        }
    }

    fn reset(&mut self, m: Mark) {
        self.head = m.head;
        self.audits.truncate(m.audits);
        self.changes.truncate(m.changes);
        self.summary.truncate(m.summary);
        self.wrote = false;
    }

    /// A prepared statement (cached per connection).
    pub(super) async fn stmt(&self, sql: &str) -> Step<Statement> {
        Ok(self.tx.prepare_cached(sql).await?)
    }

    /// Appends an audit entry after the current head.
    pub(super) fn audit(&mut self, note: &AuditNote) {
        self.wrote = true;
        let seq = self.head.audit_seq + 1;
        let rec = plan::audit_entry(seq as u64, &self.head.audit_hash, note);
        self.head.audit_seq = seq;
        self.head.audit_hash.copy_from_slice(&rec.hash);
        if note.action == attestd_core::audit::CHECKPOINT_ACTION {
            self.head.last_checkpoint = seq;
        }
        self.audits.push(rec);
    }

    /// Notes what a unit write changes beside the unit: summary counters
    /// and the change feed (the indices are columns and rows written with
    /// the unit).
    pub(super) fn unit_delta(&mut self, delta: &mut plan::UnitDelta) {
        self.wrote = true;
        self.summary.append(&mut delta.summary);
        if let Some(mut c) = delta.change.take() {
            self.head.change_seq += 1;
            c.seq = self.head.change_seq as u64;
            self.changes.push(c);
        }
    }

    /// Writes what the ops appended, and the head, pipelined.
    async fn finish(&self) -> std::result::Result<(), tokio_postgres::Error> {
        let tx = self.tx;
        let (s_audit, s_changes, s_add, s_drop, s_head) = (
            tx.prepare_cached(INSERT_AUDIT).await?,
            tx.prepare_cached(INSERT_CHANGES).await?,
            tx.prepare_cached(ADD_SUMMARY).await?,
            tx.prepare_cached(DROP_EMPTY_SUMMARY).await?,
            tx.prepare_cached(UPDATE_HEAD).await?,
        );
        let a = &self.audits;
        let audit_cols = (
            a.iter().map(|r| r.seq as i64).collect::<Vec<i64>>(),
            a.iter().map(|r| r.at_ms).collect::<Vec<i64>>(),
            a.iter()
                .map(|r| r.principal.as_str())
                .collect::<Vec<&str>>(),
            a.iter().map(|r| r.action.as_str()).collect::<Vec<&str>>(),
            a.iter().map(|r| r.target.as_str()).collect::<Vec<&str>>(),
            a.iter()
                .map(Message::encode_to_vec)
                .collect::<Vec<Vec<u8>>>(),
        );
        let change_cols = (
            self.changes
                .iter()
                .map(|c| c.seq as i64)
                .collect::<Vec<i64>>(),
            self.changes
                .iter()
                .map(Message::encode_to_vec)
                .collect::<Vec<Vec<u8>>>(),
        );
        let mut net = std::collections::BTreeMap::<&SummaryKey, i64>::new();
        for (k, n) in &self.summary {
            *net.entry(k).or_default() += n;
        }
        net.retain(|_, n| *n != 0);
        let summary_cols = (
            net.keys()
                .map(|k| group_code(k.group))
                .collect::<Vec<i16>>(),
            net.keys().map(|k| k.key.as_str()).collect::<Vec<&str>>(),
            net.keys().map(|k| k.tenant.as_str()).collect::<Vec<&str>>(),
            net.keys().map(|k| k.status).collect::<Vec<i32>>(),
            net.values().copied().collect::<Vec<i64>>(),
        );
        let h = &self.head;
        let hash = h.audit_hash.as_slice();
        let write_audit = async {
            if a.is_empty() {
                return Ok(0);
            }
            let (seq, at, principal, action, target, body) = &audit_cols;
            tx.execute(&s_audit, &[seq, at, principal, action, target, body])
                .await
        };
        let write_changes = async {
            if self.changes.is_empty() {
                return Ok(0);
            }
            tx.execute(&s_changes, &[&change_cols.0, &change_cols.1])
                .await
        };
        let write_summary = async {
            if net.is_empty() {
                return Ok(0);
            }
            let (g, k, t, s, n) = &summary_cols;
            tx.execute(&s_add, &[g, k, t, s, n]).await
        };
        let drop_empty = async {
            if net.values().all(|n| *n > 0) {
                return Ok(0);
            }
            tx.execute(&s_drop, &[]).await
        };
        let write_head = async {
            if *h == self.initial {
                return Ok(0);
            }
            tx.execute(
                &s_head,
                &[
                    &h.audit_seq,
                    &hash,
                    &h.last_checkpoint,
                    &h.change_seq,
                    &h.stations,
                    &h.devices,
                    &h.records,
                    &h.evidence,
                    &h.baselines,
                    &h.sweep_generation,
                ],
            )
            .await
        };
        // Sent in this order, so the empty counters are dropped after the
        // deltas that emptied them.
        tokio::join!(
            biased;
            write_audit,
            write_changes,
            write_summary,
            drop_empty,
            write_head
        )
        .in_order()?;
        Ok(())
    }
}

/// A summary group as stored (`summary.grp`).
pub(super) fn group_code(g: Group) -> i16 {
    match g {
        Group::All => 0,
        Group::Model => 1,
        Group::Site => 2,
        Group::Firmware => 3,
    }
}
