//! The ops a group commits in a few statements however many there are:
//! challenge nonces issued and used, accepted evidence and release
//! decisions.
//!
//! A boot is a challenge and an evidence write. Written one statement per
//! op, each costs PostgreSQL a round trip and a commit of its own, and the
//! evidence writes of a group run one after another under the head lock.
//! Measured with `pg_stat_statements` on a boot storm, most of the
//! database's CPU went to round trips rather than to the statements'
//! work. So here each kind of op of a group is one statement over arrays
//! (`unnest`): one upsert for the nonces issued, one update for those used,
//! one locking read of every unit the group's evidence is about, then one
//! statement per table written. Rules are decided in Rust between the read
//! and the writes, op by op in queue order, each against the unit as the
//! ops before it left it, so a group answers exactly as its ops would one
//! at a time; a refused op writes nothing, so no savepoint is needed.
//!
//! The same functions serve an op alone (a slice of one), under a
//! savepoint, when a group is retried op by op ([`super::write`]).
//!
//! One limit of grouping nonces: a group's challenges and its uses are two
//! statements, challenges first, so a use queued before a challenge of the
//! same unit may find its nonce evicted by that challenge (`NONCE_UNKNOWN`)
//! where one at a time it would have been taken. It needs a unit with
//! `max_nonces_per_serial` nonces outstanding asking for another while
//! using its oldest; the unit asks again.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;
use tokio_postgres::types::ToSql;

use super::apply::when;
use super::write::{decode, Cx, Fail, InOrder, Step};
use crate::nonces::{expired_nonce, reused_nonce, unknown_nonce};
use crate::plan;
use crate::{DecisionCommit, DeviceEntry, EvidenceCommit, StationEntry, StoreError};

/// A nonce to store as issued.
pub(super) struct IssueNonce {
    pub nonce: Vec<u8>,
    pub serial: String,
    pub expires_at: i64,
    /// Unused nonces a serial keeps at most (older ones are evicted).
    pub per_serial: i32,
    /// Issued only if the serial is enrolled (a challenge).
    pub enrolled_only: bool,
}

/// A nonce to use once.
pub(super) struct UseNonce {
    pub nonce: Vec<u8>,
    pub serial: String,
    pub now_ms: i64,
    /// How long past expiry a nonce still answers "expired" (then "unknown").
    pub grace_ms: i64,
    /// Used nonces a serial remembers at most (to answer "reused").
    pub per_serial: i32,
}

/// Adds issued nonces to their units' rows (those of enrolled units only,
/// where asked), each row keeping its newest `$5` unused ones (the oldest
/// evicted); returns the serials stored. A statement may write a row only
/// once, so a serial appears at most once per call (see [`rounds`]).
/// The update leaves the row's one index untouched: a heap-only update.
pub(super) const ISSUE_NONCES: &str = "INSERT INTO challenges AS c (serial, open, open_exp) \
     SELECT u.serial, ARRAY[u.nonce], ARRAY[u.expires] FROM unnest($1::bytea[], $2::text[], \
     $3::bigint[], $4::bool[]) AS u(nonce, serial, expires, enrolled_only) \
     WHERE NOT u.enrolled_only OR EXISTS (SELECT 1 FROM devices d WHERE d.serial = u.serial) \
     ON CONFLICT (serial) DO UPDATE SET \
     open = (c.open || excluded.open)[greatest(1, cardinality(c.open) + 2 - $5::int):], \
     open_exp = (c.open_exp || excluded.open_exp)[greatest(1, cardinality(c.open_exp) + 2 - $5::int):] \
     RETURNING c.serial";

/// Moves each nonce from its unit's unused ones to its used ones (keeping
/// the newest `$4`), if it is there and not expired; returns the serials
/// whose nonce was taken. Every position is computed from the row being
/// updated (`c`), never from an earlier read: of two replicas using one
/// nonce at once, the second waits for the first's row and re-checks it,
/// no longer finds the nonce unused, and takes nothing. One row per serial
/// per call, as [`ISSUE_NONCES`].
pub(super) const USE_NONCES: &str = "UPDATE challenges c SET \
     open = c.open[:array_position(c.open, u.nonce) - 1] \
         || c.open[array_position(c.open, u.nonce) + 1:], \
     open_exp = c.open_exp[:array_position(c.open, u.nonce) - 1] \
         || c.open_exp[array_position(c.open, u.nonce) + 1:], \
     used = (c.used || u.nonce)[greatest(1, cardinality(c.used) + 2 - $4::int):], \
     used_exp = (c.used_exp || c.open_exp[array_position(c.open, u.nonce)])\
         [greatest(1, cardinality(c.used_exp) + 2 - $4::int):] \
     FROM unnest($1::bytea[], $2::text[], $3::bigint[]) AS u(nonce, serial, now_ms) \
     WHERE c.serial = u.serial AND c.open_exp[array_position(c.open, u.nonce)] >= u.now_ms \
     RETURNING c.serial";

/// What is known of the nonces of units whose nonce could not be taken,
/// to say why.
const CHALLENGES_KNOWN: &str = "SELECT serial, open, open_exp, used, used_exp FROM challenges \
     WHERE serial = ANY($1::text[])";

/// The units of a group's evidence, locked, with their models' active
/// baseline versions.
const LOCK_UNITS: &str = "SELECT d.serial, d.body, (SELECT a.version FROM baseline_active a \
     WHERE a.model = d.model) FROM devices d WHERE d.serial = ANY($1::text[]) \
     ORDER BY d.serial FOR UPDATE OF d";

/// [`LOCK_UNITS`] with the bodies of the stations linked to each unit (for
/// release decisions, which rest on their revocation).
const LOCK_UNITS_AND_STATIONS: &str = "SELECT d.serial, d.body, (SELECT a.version FROM \
     baseline_active a WHERE a.model = d.model), ARRAY(SELECT s.body FROM unit_stations us \
     JOIN stations s ON s.station_id = us.station_id WHERE us.serial = d.serial) \
     FROM devices d WHERE d.serial = ANY($1::text[]) ORDER BY d.serial FOR UPDATE OF d";

/// Which of these evidence ids are stored.
const EVIDENCE_KNOWN: &str = "SELECT evidence_id FROM evidence WHERE evidence_id = ANY($1::text[])";

/// Writes units that exist, with their indexed columns.
const UPDATE_UNITS: &str = "UPDATE devices d SET status = u.status, tenant = u.tenant, \
     model = u.model, next_check_at = u.due, body = u.body FROM unnest($1::text[], $2::int[], \
     $3::text[], $4::text[], $5::bigint[], $6::bytea[]) AS u(serial, status, tenant, model, due, \
     body) WHERE d.serial = u.serial";

const DROP_DIGESTS: &str = "DELETE FROM unit_digests WHERE (serial, digest) IN \
     (SELECT * FROM unnest($1::text[], $2::text[]))";

const ADD_DIGESTS: &str = "INSERT INTO unit_digests (serial, digest) \
     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING";

/// Accepted evidence (its history entries are written by
/// [`INSERT_HISTORY`]).
const INSERT_EVIDENCE: &str = "INSERT INTO evidence (evidence_id, serial, body, raw) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])";

/// History entries in queue order: evidence by reference, decisions by value.
const INSERT_HISTORY: &str = "INSERT INTO history (serial, ord, kind, ref_id, body) \
     SELECT t.s, nextval('history_ord'), t.k, t.r, t.b FROM unnest($1::text[], \
     $2::\"char\"[], $3::text[], $4::bytea[]) WITH ORDINALITY AS t(s, k, r, b, i) ORDER BY t.i";

/// The rounds in which a group's nonce ops of one kind run: op `i` goes
/// in round `r` when `r` earlier ops of the group are about its serial. A
/// statement over arrays may write a row once, so each round has a serial
/// at most once; a serial's ops keep their order. Nearly every group is
/// one round. Each round is in serial order, so two replicas' statements
/// lock the rows they share in the same order (not across statements: a
/// replica's challenges and uses are two statements, so two replicas
/// could still meet in opposite orders on two units that each have a
/// challenge in one group and a use in the other; PostgreSQL then breaks
/// the cycle after `deadlock_timeout` and the group is retried. Nonce
/// groups take no head lock, so no other write waits on them).
fn rounds<'a>(serials: impl Iterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let serials: Vec<&str> = serials.collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, s) in serials.iter().enumerate() {
        let r = seen.entry(s).or_insert(0);
        if out.len() <= *r {
            out.push(Vec::new());
        }
        out[*r].push(i);
        *r += 1;
    }
    for round in &mut out {
        round.sort_by_key(|&i| serials[i]);
    }
    out
}

/// A statement parameter made for one round of [`by_rounds`].
type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// One array parameter: `f` of each op of a round, in the round's order.
fn column<'a, T: ToSql + Sync + Send + 'a>(round: &[usize], f: impl Fn(usize) -> T) -> Param<'a> {
    Box::new(round.iter().map(|&i| f(i)).collect::<Vec<T>>())
}

/// Runs a nonce statement once per round of `serials` (see [`rounds`]):
/// the round's nonces are `$1`, its serials `$2`, then the parameters
/// `rest` makes from the round's ops (indices, in the round's order).
/// Answers op by op whether the statement returned the op's serial (its
/// first column).
async fn by_rounds<'a>(
    cx: &Cx<'_>,
    sql: &str,
    nonces: &[&'a [u8]],
    serials: &[&'a str],
    rest: impl Fn(&[usize]) -> Vec<Param<'a>>,
) -> Step<Vec<bool>> {
    let mut out = vec![false; serials.len()];
    if serials.is_empty() {
        return Ok(out);
    }
    let s = cx.stmt(sql).await?;
    for round in rounds(serials.iter().copied()) {
        let mut owned = vec![
            column(&round, |i| nonces[i]),
            column(&round, |i| serials[i]),
        ];
        owned.extend(rest(&round));
        let args: Vec<&(dyn ToSql + Sync)> =
            owned.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let returned: HashSet<String> = cx
            .tx
            .query(&s, &args)
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        for &i in &round {
            out[i] = returned.contains(serials[i]);
        }
    }
    Ok(out)
}

/// The bound of a group's nonce ops: the policy is the server's, the same
/// for every call; the smallest is the safe one if it ever is not.
fn group_bound(bounds: impl Iterator<Item = i32>) -> i32 {
    bounds.min().unwrap_or(1).max(1)
}

/// Issues `ops` (one statement per round, nearly always one); each answers
/// whether its nonce was stored (`false`: its serial is not enrolled and
/// it asked for enrolled only). Takes the context shared, so that it can
/// be sent with [`use_nonces`]; the caller notes the write.
pub(super) async fn issue_nonces(cx: &Cx<'_>, ops: &[&IssueNonce]) -> Step<Vec<bool>> {
    let per_serial = group_bound(ops.iter().map(|o| o.per_serial));
    let nonces: Vec<&[u8]> = ops.iter().map(|o| o.nonce.as_slice()).collect();
    let serials: Vec<&str> = ops.iter().map(|o| o.serial.as_str()).collect();
    by_rounds(cx, ISSUE_NONCES, &nonces, &serials, |round| {
        vec![
            column(round, |i| ops[i].expires_at),
            column(round, |i| ops[i].enrolled_only),
            Box::new(per_serial),
        ]
    })
    .await
}

/// What a unit's row holds of its nonces.
struct Known {
    open: Vec<Vec<u8>>,
    open_exp: Vec<i64>,
    used: Vec<Vec<u8>>,
    used_exp: Vec<i64>,
}

/// Uses `ops`' nonces: one statement per round (nearly always one), and
/// one more to say why for those refused. A nonce given twice in the group
/// is taken by the first. The caller notes the write.
pub(super) async fn use_nonces(cx: &Cx<'_>, ops: &[&UseNonce]) -> Step<Vec<Step<()>>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let per_serial = group_bound(ops.iter().map(|o| o.per_serial));
    let nonces: Vec<&[u8]> = ops.iter().map(|o| o.nonce.as_slice()).collect();
    let serials: Vec<&str> = ops.iter().map(|o| o.serial.as_str()).collect();
    let taken = by_rounds(cx, USE_NONCES, &nonces, &serials, |round| {
        vec![column(round, |i| ops[i].now_ms), Box::new(per_serial)]
    })
    .await?;
    let refused: Vec<&str> = ops
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(o, _)| o.serial.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut known: HashMap<String, Known> = HashMap::new();
    if !refused.is_empty() {
        // Read after this group's uses: a nonce taken by an earlier op of
        // the group is found used.
        let s = cx.stmt(CHALLENGES_KNOWN).await?;
        for r in cx.tx.query(&s, &[&refused]).await? {
            known.insert(
                r.get(0),
                Known {
                    open: r.get(1),
                    open_exp: r.get(2),
                    used: r.get(3),
                    used_exp: r.get(4),
                },
            );
        }
    }
    Ok(ops
        .iter()
        .zip(taken)
        .map(|(o, t)| {
            if t {
                Ok(())
            } else {
                Err(Fail::Refused(StoreError::Rejected(why_not(
                    o,
                    known.get(&o.serial),
                ))))
            }
        })
        .collect())
}

/// Why a nonce was not taken, from what its unit's row holds.
fn why_not(o: &UseNonce, known: Option<&Known>) -> attestd_core::Rejection {
    const GONE: &str = "not issued for this serial, evicted, or long expired";
    let find = |nonces: &[Vec<u8>], expires: &[i64]| {
        nonces
            .iter()
            .position(|n| *n == o.nonce)
            .and_then(|i| expires.get(i).copied())
    };
    let Some(k) = known else {
        return unknown_nonce(GONE);
    };
    let long_expired = |exp: i64| o.now_ms.saturating_sub(exp) > o.grace_ms;
    if let Some(exp) = find(&k.used, &k.used_exp) {
        if long_expired(exp) {
            unknown_nonce(GONE)
        } else {
            reused_nonce()
        }
    } else if let Some(exp) = find(&k.open, &k.open_exp) {
        // Unused and not expired would have been taken: not reached, and
        // answered "unknown" rather than a wrong "expired" if it ever were.
        if long_expired(exp) || exp >= o.now_ms {
            unknown_nonce(GONE)
        } else {
            expired_nonce()
        }
    } else {
        unknown_nonce(GONE)
    }
}

/// Net digest index changes of one unit over several writes.
#[derive(Default)]
struct Digests {
    removed: BTreeMap<String, ()>,
    added: BTreeMap<String, ()>,
}

impl Digests {
    /// Adds one write's changes after the earlier ones.
    fn follow(&mut self, removed: Vec<String>, added: Vec<String>) {
        for d in removed {
            if self.added.remove(&d).is_none() {
                self.removed.insert(d, ());
            }
        }
        for d in added {
            if self.removed.remove(&d).is_none() {
                self.added.insert(d, ());
            }
        }
    }
}

/// A group's write about one unit that [`units`] admits in queue order.
#[derive(Clone, Copy)]
pub(super) enum UnitOp<'a> {
    Evidence(&'a EvidenceCommit),
    /// A release decision: stored only on the state it rested on.
    Decision(&'a DecisionCommit),
}

impl UnitOp<'_> {
    fn serial(&self) -> &str {
        match self {
            UnitOp::Evidence(c) => &c.entry.serial,
            UnitOp::Decision(c) => &c.entry.serial,
        }
    }
}

/// What [`units`] answers for one op: the unit (evidence) or nothing
/// (a decision).
pub(super) type UnitAnswer = Step<Option<DeviceEntry>>;

/// Admits and writes `ops` in queue order: one locking read, the rules op
/// by op, then one statement per table. Answers each op.
pub(super) async fn units(cx: &mut Cx<'_>, ops: &[UnitOp<'_>]) -> Step<Vec<UnitAnswer>> {
    let read = read_units(cx.tx, ops).await?;
    units_with(cx, ops, read).await
}

/// What [`units`] decides on: the units of a group's ops, locked (with the
/// stations behind them when a decision needs them), and the evidence ids
/// already stored. Read apart so that it can travel with the head lock
/// (one round trip).
pub(super) struct UnitsRead {
    units: Vec<tokio_postgres::Row>,
    known: Vec<tokio_postgres::Row>,
    with_stations: bool,
}

/// The locking read of `ops`' units and of their evidence ids.
pub(super) async fn read_units(
    tx: &deadpool_postgres::Transaction<'_>,
    ops: &[UnitOp<'_>],
) -> Result<UnitsRead, tokio_postgres::Error> {
    let with_stations = ops.iter().any(|o| matches!(o, UnitOp::Decision(_)));
    if ops.is_empty() {
        return Ok(UnitsRead {
            units: Vec::new(),
            known: Vec::new(),
            with_stations,
        });
    }
    let mut serials: Vec<&str> = ops.iter().map(UnitOp::serial).collect();
    serials.sort_unstable();
    serials.dedup();
    let ids: Vec<&str> = ops
        .iter()
        .filter_map(|o| match o {
            UnitOp::Evidence(c) => Some(c.entry.evidence_id.as_str()),
            UnitOp::Decision(_) => None,
        })
        .collect();
    let lock = if with_stations {
        LOCK_UNITS_AND_STATIONS
    } else {
        LOCK_UNITS
    };
    let (s_lock, s_known) = (
        tx.prepare_cached(lock).await?,
        tx.prepare_cached(EVIDENCE_KNOWN).await?,
    );
    let (units, known) = tokio::join!(
        biased;
        async { tx.query(&s_lock, &[&serials]).await },
        async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            tx.query(&s_known, &[&ids]).await
        },
    )
    .in_order()?;
    Ok(UnitsRead {
        units,
        known,
        with_stations,
    })
}

/// [`units`] on what [`read_units`] read for the same `ops`.
pub(super) async fn units_with(
    cx: &mut Cx<'_>,
    ops: &[UnitOp<'_>],
    read: UnitsRead,
) -> Step<Vec<UnitAnswer>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    // Each unit as the ops so far left it, with its active version.
    let mut state: HashMap<String, (DeviceEntry, Option<u64>)> = HashMap::new();
    // Stations by id, as read (a group's ops change none).
    let mut stations: HashMap<String, StationEntry> = HashMap::new();
    for r in &read.units {
        let d: DeviceEntry = decode(r.get::<_, &[u8]>(1), "device")?;
        let active = r.get::<_, Option<i64>>(2).map(|v| v as u64);
        if read.with_stations {
            for b in r.get::<_, Vec<&[u8]>>(3) {
                let st: StationEntry = decode(b, "station")?;
                stations.insert(st.station_id.clone(), st);
            }
        }
        state.insert(r.get(0), (d, active));
    }
    let mut known: HashSet<String> = read.known.iter().map(|r| r.get(0)).collect();
    let mut answers = Vec::with_capacity(ops.len());
    let mut digests: BTreeMap<String, Digests> = BTreeMap::new();
    let mut written: BTreeMap<String, ()> = BTreeMap::new();
    let mut rows = EvidenceRows::default();
    let mut history = HistoryRows::default();
    for op in ops {
        let (unit, active) = match state.get(op.serial()) {
            Some((d, a)) => (Some(d), *a),
            None => (None, None),
        };
        let c = match op {
            UnitOp::Evidence(c) => *c,
            UnitOp::Decision(c) => {
                let revoked: Vec<String> = unit
                    .iter()
                    .flat_map(|d| crate::rules::stations_behind(d))
                    .filter(|sid| stations.get(*sid).is_some_and(|st| st.revoked))
                    .map(str::to_owned)
                    .collect();
                match plan::admit_decision(unit, active, revoked, c) {
                    Ok(()) => {
                        history.decision(c);
                        cx.audit(&c.audit);
                        answers.push(Ok(None));
                    }
                    Err(r) => answers.push(Err(r.into())),
                }
                continue;
            }
        };
        let e = &c.entry;
        let w = match plan::admit_evidence(unit, active, known.contains(&e.evidence_id), c) {
            Ok(w) => w,
            Err(r) => {
                answers.push(Err(r.into()));
                continue;
            }
        };
        let mut delta = w.delta();
        cx.unit_delta(&mut delta);
        digests
            .entry(e.serial.clone())
            .or_default()
            .follow(delta.digests_removed, delta.digests_added);
        written.insert(e.serial.clone(), ());
        known.insert(e.evidence_id.clone());
        rows.push(e);
        history.evidence(e);
        cx.head.evidence += 1;
        cx.audit(&c.audit);
        answers.push(Ok(Some(w.new.clone())));
        if let Some(s) = state.get_mut(&e.serial) {
            s.0 = w.new;
        }
    }
    if history.serials.is_empty() {
        return Ok(answers);
    }
    let units: Vec<&DeviceEntry> = written
        .keys()
        .filter_map(|s| state.get(s).map(|(d, _)| d))
        .collect();
    let unit_cols = (
        units.iter().map(|d| d.serial.as_str()).collect::<Vec<_>>(),
        units.iter().map(|d| d.status).collect::<Vec<i32>>(),
        units.iter().map(|d| d.tenant.as_str()).collect::<Vec<_>>(),
        units.iter().map(|d| d.model.as_str()).collect::<Vec<_>>(),
        units.iter().map(|d| d.next_check_at).collect::<Vec<i64>>(),
        units.iter().map(|d| d.encode_to_vec()).collect::<Vec<_>>(),
    );
    let (mut drop_s, mut drop_d, mut add_s, mut add_d) = (vec![], vec![], vec![], vec![]);
    for (serial, d) in &digests {
        for x in d.removed.keys() {
            drop_s.push(serial.as_str());
            drop_d.push(x.as_str());
        }
        for x in d.added.keys() {
            add_s.push(serial.as_str());
            add_d.push(x.as_str());
        }
    }
    let (s_units, s_drop, s_add, s_ev, s_hist) = (
        cx.stmt(UPDATE_UNITS).await?,
        cx.stmt(DROP_DIGESTS).await?,
        cx.stmt(ADD_DIGESTS).await?,
        cx.stmt(INSERT_EVIDENCE).await?,
        cx.stmt(INSERT_HISTORY).await?,
    );
    let tx = cx.tx;
    let (updated, _, _, _, _) = tokio::join!(
        biased;
        when(!units.is_empty(), async {
            let (a, b, c, d, e, f) = &unit_cols;
            tx.execute(&s_units, &[a, b, c, d, e, f]).await
        }),
        when(!drop_s.is_empty(), async { tx.execute(&s_drop, &[&drop_s, &drop_d]).await }),
        when(!add_s.is_empty(), async { tx.execute(&s_add, &[&add_s, &add_d]).await }),
        when(!rows.ids.is_empty(), async {
            tx.execute(&s_ev, &[&rows.ids, &rows.serials, &rows.bodies, &rows.raw])
                .await
        }),
        async {
            let h = &history;
            tx.execute(&s_hist, &[&h.serials, &h.kinds, &h.refs, &h.bodies])
                .await
        },
    )
    .in_order()?;
    if updated != units.len() as u64 {
        // Every unit was read under its lock just before: damage, not a race.
        return Err(Fail::Refused(super::read::corrupt("device")));
    }
    Ok(answers)
}

/// The columns of the evidence rows a group inserts.
#[derive(Default)]
struct EvidenceRows {
    ids: Vec<String>,
    serials: Vec<String>,
    bodies: Vec<Vec<u8>>,
    raw: Vec<Vec<u8>>,
}

impl EvidenceRows {
    /// The stored form: the raw evidence in its own column, not in the body.
    fn push(&mut self, e: &crate::EvidenceEntry) {
        let mut stored = e.clone();
        let raw = std::mem::take(&mut stored.raw);
        self.ids.push(e.evidence_id.clone());
        self.serials.push(e.serial.clone());
        self.bodies.push(stored.encode_to_vec());
        self.raw.push(raw);
    }
}

/// The columns of the history entries a group appends, in queue order:
/// evidence by reference, decisions by value.
#[derive(Default)]
struct HistoryRows {
    serials: Vec<String>,
    kinds: Vec<i8>,
    refs: Vec<Option<String>>,
    bodies: Vec<Option<Vec<u8>>>,
}

impl HistoryRows {
    fn evidence(&mut self, e: &crate::EvidenceEntry) {
        self.serials.push(e.serial.clone());
        self.kinds.push(b'e' as i8);
        self.refs.push(Some(e.evidence_id.clone()));
        self.bodies.push(None);
    }

    fn decision(&mut self, c: &DecisionCommit) {
        self.serials.push(c.entry.serial.clone());
        self.kinds.push(b'd' as i8);
        self.refs.push(None);
        self.bodies.push(Some(c.entry.encode_to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::rounds;

    #[test]
    fn rounds_hold_a_serial_once_each_in_serial_order_and_keep_its_ops_in_order() {
        let serials = ["B", "A", "B", "C", "A", "B"];
        assert_eq!(
            rounds(serials.into_iter()),
            [vec![1, 0, 3], vec![4, 2], vec![5]]
        );
        assert!(rounds(std::iter::empty()).is_empty());
    }
}
