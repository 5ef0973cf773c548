//! Each op of [`super::write`]: read what it decides on (locking the unit
//! and station rows), ask [`crate::plan`], write what the plan says. The
//! statements of one step are pipelined (sent together, one round trip).
//! Mirrors `sled_store::engine` write for write.

use attestd_core::reject;
use prost::Message;
use tokio_postgres::Row;

use super::write::{decode, Answer, Cx, Fail, InOrder, Op, Step};
use crate::plan::{self, UnitWrite};
use crate::{
    AuditNote, BaselineEntry, DeviceEntry, FlagCommit, ReappraisalCommit, RecordCommit,
    RecordEntry, RecordOutcome, StationEntry, Write, Written, SWEEP_STATION,
};

/// The unit, locked, and its model's active baseline version.
const UNIT_VIEW: &str = "SELECT d.body, (SELECT a.version FROM baseline_active a \
     WHERE a.model = d.model) FROM devices d WHERE d.serial = $1 FOR UPDATE";

/// Writes a unit: its row (with the indexed columns) and its digest index.
const PUT_UNIT: &str = "WITH u AS (INSERT INTO devices \
     (serial, status, tenant, model, next_check_at, body) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (serial) DO UPDATE SET status = excluded.status, tenant = excluded.tenant, \
     model = excluded.model, next_check_at = excluded.next_check_at, body = excluded.body), \
     gone AS (DELETE FROM unit_digests WHERE serial = $1 AND digest = ANY($7::text[])) \
     INSERT INTO unit_digests (digest, serial) SELECT d, $1 FROM unnest($8::text[]) d \
     ON CONFLICT DO NOTHING";

const INSERT_RECORD: &str = "WITH h AS (INSERT INTO history (serial, ord, kind, ref_id) \
     VALUES ($2, nextval('history_ord'), 'r', $1) RETURNING ord) \
     INSERT INTO records (record_id, serial, ord, body) SELECT $1, $2, h.ord, $3 FROM h";

/// A history entry kept by value: re-appraisal ('a') or decision ('d').
const INSERT_HISTORY: &str = "INSERT INTO history (serial, ord, kind, body) \
     VALUES ($1, nextval('history_ord'), $2, $3)";

const CLEAR_DIRTY: &str = "DELETE FROM dirty WHERE serial = $1";
const MARK_DIRTY: &str = "INSERT INTO dirty (serial) VALUES ($1) ON CONFLICT DO NOTHING";

const GET_RECORD: &str = "SELECT body FROM records WHERE record_id = $1";
const LOCK_STATION: &str = "SELECT body FROM stations WHERE station_id = $1 FOR UPDATE";
const KEY_OWNER: &str = "SELECT serial FROM device_keys WHERE key_id = $1";
const LOCK_DEVICE: &str = "SELECT body FROM devices WHERE serial = $1 FOR UPDATE";
const PUT_STATION: &str = "UPDATE stations SET body = $2 WHERE station_id = $1";
const INSERT_STATION: &str =
    "INSERT INTO stations (station_id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const DROP_KEY: &str = "DELETE FROM device_keys WHERE key_id = $1";
const PUT_KEY: &str = "INSERT INTO device_keys (key_id, serial) VALUES ($1, $2) \
     ON CONFLICT (key_id) DO UPDATE SET serial = excluded.serial";
const UNLINK_STATIONS: &str =
    "DELETE FROM unit_stations WHERE serial = $1 AND station_id = ANY($2::text[])";
const LINK_STATION: &str =
    "INSERT INTO unit_stations (station_id, serial) VALUES ($1, $2) ON CONFLICT DO NOTHING";

const LATEST_BASELINE: &str = "SELECT max(version) FROM baselines WHERE model = $1";
const INSERT_BASELINE: &str = "INSERT INTO baselines (model, version, body) VALUES ($1, $2, $3)";
const INSERT_PENDING: &str =
    "INSERT INTO baseline_pending (effective_at, model, version) VALUES ($1, $2, $3)";
const TAKE_PENDING: &str =
    "DELETE FROM baseline_pending WHERE effective_at = $1 AND model = $2 AND version = $3";
const ACTIVATION_VIEW: &str = "SELECT (SELECT body FROM baselines WHERE model = $1 AND \
     version = $2), (SELECT version FROM baseline_active WHERE model = $1)";
const SET_ACTIVE: &str = "INSERT INTO baseline_active (model, version) VALUES ($1, $2) \
     ON CONFLICT (model) DO UPDATE SET version = excluded.version";
const OPEN_SWEEP: &str = "INSERT INTO sweeps (kind, key, cursor, reason, generation) \
     VALUES ($1, $2, '', $3, $4) ON CONFLICT (kind, key) DO UPDATE SET cursor = '', \
     reason = excluded.reason, generation = excluded.generation";

const KIND_REAPPRAISAL: i8 = b'a' as i8;

/// Applies one op.
pub(super) async fn apply(cx: &mut Cx<'_>, op: &Op) -> Step<Answer> {
    Ok(match op {
        Op::Write(Write::Evidence(c)) => one_unit(cx, super::batch::UnitOp::Evidence(c)).await?,
        Op::IssueNonce(n) => {
            cx.wrote = true;
            let stored = super::batch::issue_nonces(cx, &[n]).await?;
            Answer::Flag(stored.first().copied().unwrap_or(false))
        }
        Op::UseNonce(n) => {
            cx.wrote = true;
            let one = super::batch::use_nonces(cx, &[n]).await?.pop();
            one.unwrap_or_else(|| Err(Fail::Refused(super::store::unexpected())))?;
            Answer::Done
        }
        Op::Write(Write::Reappraisal(c)) => {
            Answer::Written(Written::Device(reappraisal(cx, c).await?))
        }
        Op::Write(Write::Record(c)) => Answer::Written(Written::Record(record(cx, c).await?)),
        Op::Write(Write::Decision(d)) => one_unit(cx, super::batch::UnitOp::Decision(d)).await?,
        Op::Flag(c) => Answer::Device(flag(cx, c).await?),
        Op::Assign {
            serial,
            assignment: a,
            audit,
        } => Answer::Device(
            update_device(cx, serial, audit, |d| {
                d.tenant = a.tenant.clone();
                d.site = a.site.clone();
                d.department = a.department.clone();
                d.asset_tag = a.asset_tag.clone();
            })
            .await?,
        ),
        Op::Concession { concession, audit } => Answer::Device(
            update_device(cx, &concession.serial, audit, |d| {
                d.concession = Some(concession.clone());
            })
            .await?,
        ),
        Op::RegisterStation { station, audit } => {
            Answer::Station(register_station(cx, station, audit).await?)
        }
        Op::RevokeStation {
            station_id,
            reason,
            audit,
        } => Answer::Station(revoke_station(cx, station_id, reason, audit).await?),
        Op::PublishBaseline {
            baseline,
            now_secs,
            audit,
        } => Answer::Flag(publish_baseline(cx, baseline, *now_secs, audit).await?),
        Op::AppendAudit(note) => {
            cx.audit(note);
            Answer::Done
        }
        Op::Activate {
            effective_at,
            model,
            version,
        } => {
            let s = cx.stmt(TAKE_PENDING).await?;
            let taken = cx.tx.execute(&s, &[effective_at, model, version]).await?;
            // Another replica may have activated it first.
            if taken == 1 {
                cx.wrote = true;
                activate(cx, model, *version).await?;
            }
            Answer::Flag(taken == 1)
        }
    })
}

/// One evidence or decision through [`super::batch::units`].
async fn one_unit(cx: &mut Cx<'_>, op: super::batch::UnitOp<'_>) -> Step<Answer> {
    let one = super::batch::units(cx, &[op]).await?.pop();
    let d = one.unwrap_or_else(|| Err(Fail::Refused(super::store::unexpected())))?;
    Ok(super::write::unit_answer(d))
}

fn device_of(row: &Row) -> Step<DeviceEntry> {
    decode(row.get::<_, &[u8]>(0), "device")
}

/// The unit of `serial`, locked, and its model's active baseline version.
async fn unit_view(cx: &Cx<'_>, serial: &str) -> Step<(Option<DeviceEntry>, Option<u64>)> {
    let s = cx.stmt(UNIT_VIEW).await?;
    match cx.tx.query_opt(&s, &[&serial]).await? {
        Some(row) => Ok((
            Some(device_of(&row)?),
            row.get::<_, Option<i64>>(1).map(|v| v as u64),
        )),
        None => Ok((None, None)),
    }
}

/// The parameters of [`PUT_UNIT`] for a unit write, with its delta noted.
struct UnitRow {
    new: DeviceEntry,
    body: Vec<u8>,
    removed: Vec<String>,
    added: Vec<String>,
}

fn unit_row(cx: &mut Cx<'_>, w: UnitWrite) -> UnitRow {
    let mut delta = w.delta();
    cx.unit_delta(&mut delta);
    UnitRow {
        body: w.new.encode_to_vec(),
        new: w.new,
        removed: delta.digests_removed,
        added: delta.digests_added,
    }
}

impl UnitRow {
    async fn put(
        &self,
        cx: &Cx<'_>,
        s: &tokio_postgres::Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        let n = &self.new;
        cx.tx
            .execute(
                s,
                &[
                    &n.serial,
                    &n.status,
                    &n.tenant,
                    &n.model,
                    &n.next_check_at,
                    &self.body,
                    &self.removed,
                    &self.added,
                ],
            )
            .await
    }
}

/// Runs `f` if `cond`, else answers 0 rows (for optional pipelined statements).
pub(super) async fn when<F>(cond: bool, f: F) -> Result<u64, tokio_postgres::Error>
where
    F: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
{
    if cond {
        f.await
    } else {
        Ok(0)
    }
}

async fn reappraisal(cx: &mut Cx<'_>, c: &ReappraisalCommit) -> Step<DeviceEntry> {
    let serial = c.serial.as_str();
    let (d, active) = unit_view(cx, serial).await?;
    let (w, h) = match plan::admit_reappraisal(d.as_ref(), active, c)? {
        None => {
            let s = cx.stmt(CLEAR_DIRTY).await?;
            cx.wrote = true;
            cx.tx.execute(&s, &[&serial]).await?;
            return d.ok_or_else(|| Fail::Refused(super::read::corrupt("device")));
        }
        Some(x) => x,
    };
    let row = unit_row(cx, w);
    let body = h.encode_to_vec();
    let (s_dirty, s_unit, s_hist) = (
        cx.stmt(CLEAR_DIRTY).await?,
        cx.stmt(PUT_UNIT).await?,
        cx.stmt(INSERT_HISTORY).await?,
    );
    tokio::join!(
        biased;
        async { cx.tx.execute(&s_dirty, &[&serial]).await },
        row.put(cx, &s_unit),
        async { cx.tx.execute(&s_hist, &[&serial, &KIND_REAPPRAISAL, &body]).await },
    )
    .in_order()?;
    Ok(row.new)
}

async fn record(cx: &mut Cx<'_>, c: &RecordCommit) -> Step<RecordOutcome> {
    let entry = &c.entry;
    let (sid, serial) = (entry.station_id.as_str(), entry.serial.as_str());
    let key_id = c.enrollment.as_ref().map_or("", |e| e.key_id.as_str());
    let (s_rec, s_st, s_dev, s_key) = (
        cx.stmt(GET_RECORD).await?,
        cx.stmt(LOCK_STATION).await?,
        cx.stmt(LOCK_DEVICE).await?,
        cx.stmt(KEY_OWNER).await?,
    );
    let (existing, station, device, owner) = tokio::join!(
        biased;
        async { cx.tx.query_opt(&s_rec, &[&entry.record_id]).await },
        async { cx.tx.query_opt(&s_st, &[&sid]).await },
        async { cx.tx.query_opt(&s_dev, &[&serial]).await },
        async { cx.tx.query_opt(&s_key, &[&key_id]).await },
    )
    .in_order()?;
    let existing: Option<RecordEntry> = existing
        .map(|r| decode(r.get::<_, &[u8]>(0), "record"))
        .transpose()?;
    let station: Option<StationEntry> = station
        .map(|r| decode(r.get::<_, &[u8]>(0), "station"))
        .transpose()?;
    let device = device.map(|r| device_of(&r)).transpose()?;
    let owner: Option<String> = match &c.enrollment {
        Some(_) => owner.map(|r| r.get(0)),
        None => None,
    };
    let admission = plan::admit_record(existing, station, device.as_ref(), owner.as_deref(), c)?;
    let outcome = admission.outcome(entry);
    let plan::RecordAdmission::Store(p) = admission else {
        return Ok(outcome);
    };
    let p = *p;
    if p.unit.old.is_none() {
        cx.head.devices += 1;
    }
    cx.head.records += 1;
    let row = unit_row(cx, p.unit);
    let station_body = p.station.encode_to_vec();
    let record_body = entry.encode_to_vec();
    let stmts = [
        cx.stmt(DROP_KEY).await?,
        cx.stmt(PUT_KEY).await?,
        cx.stmt(UNLINK_STATIONS).await?,
        cx.stmt(LINK_STATION).await?,
        cx.stmt(MARK_DIRTY).await?,
        cx.stmt(PUT_UNIT).await?,
        cx.stmt(PUT_STATION).await?,
        cx.stmt(INSERT_RECORD).await?,
    ];
    let removed = p.key_removed.as_deref().unwrap_or("");
    let added = p.key_added.as_deref().unwrap_or("");
    let linked = p.station_linked.as_str();
    let unlinked = &p.stations_unlinked;
    let tx = cx.tx;
    tokio::join!(
        biased;
        when(p.key_removed.is_some(), async { tx.execute(&stmts[0], &[&removed]).await }),
        when(p.key_added.is_some(), async { tx.execute(&stmts[1], &[&added, &serial]).await }),
        when(!unlinked.is_empty(), async { tx.execute(&stmts[2], &[&serial, unlinked]).await }),
        async { tx.execute(&stmts[3], &[&linked, &serial]).await },
        // The unit's verdict must follow its new record.
        async { tx.execute(&stmts[4], &[&serial]).await },
        row.put(cx, &stmts[5]),
        async { tx.execute(&stmts[6], &[&sid, &station_body]).await },
        async { tx.execute(&stmts[7], &[&entry.record_id, &serial, &record_body]).await },
    )
    .in_order()?;
    cx.audit(&p.audit);
    Ok(outcome)
}

async fn flag(cx: &mut Cx<'_>, c: &FlagCommit) -> Step<DeviceEntry> {
    let (d, active) = unit_view(cx, &c.serial).await?;
    let (w, h) = plan::admit_flag(d.as_ref(), active, c)?;
    let row = unit_row(cx, w);
    let body = h.as_ref().map(Message::encode_to_vec).unwrap_or_default();
    let (s_unit, s_hist) = (cx.stmt(PUT_UNIT).await?, cx.stmt(INSERT_HISTORY).await?);
    tokio::join!(
        biased;
        row.put(cx, &s_unit),
        when(h.is_some(), async {
            cx.tx.execute(&s_hist, &[&c.serial, &KIND_REAPPRAISAL, &body]).await
        }),
    )
    .in_order()?;
    cx.audit(&c.audit);
    Ok(row.new)
}

/// Changes a unit with `f` and writes it (assignment, concession).
async fn update_device(
    cx: &mut Cx<'_>,
    serial: &str,
    audit: &AuditNote,
    f: impl FnOnce(&mut DeviceEntry),
) -> Step<DeviceEntry> {
    let s = cx.stmt(LOCK_DEVICE).await?;
    let Some(row) = cx.tx.query_opt(&s, &[&serial]).await? else {
        return Err(reject!(DeviceNotFound, "serial {serial} is not enrolled").into());
    };
    let old = device_of(&row)?;
    let mut d = old.clone();
    f(&mut d);
    d.revision += 1;
    let row = unit_row(
        cx,
        UnitWrite {
            old: Some(old),
            new: d,
        },
    );
    let s = cx.stmt(PUT_UNIT).await?;
    row.put(cx, &s).await?;
    cx.audit(audit);
    Ok(row.new)
}

async fn register_station(
    cx: &mut Cx<'_>,
    station: &StationEntry,
    audit: &AuditNote,
) -> Step<StationEntry> {
    let id = station.station_id.as_str();
    let s = cx.stmt(INSERT_STATION).await?;
    if cx.tx.execute(&s, &[&id, &station.encode_to_vec()]).await? == 0 {
        return Err(reject!(StationExists, "station {id} is already registered").into());
    }
    cx.head.stations += 1;
    cx.audit(audit);
    Ok(station.clone())
}

async fn revoke_station(
    cx: &mut Cx<'_>,
    station_id: &str,
    reason: &str,
    audit: &AuditNote,
) -> Step<StationEntry> {
    let s = cx.stmt(LOCK_STATION).await?;
    let Some(row) = cx.tx.query_opt(&s, &[&station_id]).await? else {
        return Err(reject!(StationNotFound, "station {station_id} is not registered").into());
    };
    let mut st: StationEntry = decode(row.get::<_, &[u8]>(0), "station")?;
    if !st.revoked {
        st.revoked = true;
        st.revoked_reason = reason.to_owned();
        st.revoked_at = audit.at_ms;
        let s = cx.stmt(PUT_STATION).await?;
        cx.wrote = true;
        cx.tx
            .execute(&s, &[&station_id, &st.encode_to_vec()])
            .await?;
        // Every unit relying on its records is re-appraised.
        open_sweep(cx, SWEEP_STATION, station_id, "station revoked").await?;
        cx.audit(audit);
    }
    Ok(st)
}

/// A baseline version as stored (bigint); larger versions are refused.
pub(super) fn stored_version(v: u64) -> Step<i64> {
    i64::try_from(v).map_err(|_| {
        reject!(
            FieldInvalid,
            "version: {v} is larger than this store keeps ({})",
            i64::MAX
        )
        .into()
    })
}

async fn publish_baseline(
    cx: &mut Cx<'_>,
    b: &BaselineEntry,
    now_secs: i64,
    audit: &AuditNote,
) -> Step<bool> {
    let version = stored_version(b.version)?;
    let s = cx.stmt(LATEST_BASELINE).await?;
    let latest: Option<i64> = cx.tx.query_one(&s, &[&b.model]).await?.get(0);
    let active_now = plan::admit_baseline(latest.map(|v| v as u64), b, now_secs)?;
    let s = cx.stmt(INSERT_BASELINE).await?;
    cx.wrote = true;
    cx.tx
        .execute(&s, &[&b.model, &version, &b.encode_to_vec()])
        .await?;
    cx.head.baselines += 1;
    cx.audit(audit);
    if active_now {
        activate(cx, &b.model, version).await?;
    } else {
        let s = cx.stmt(INSERT_PENDING).await?;
        cx.tx
            .execute(&s, &[&b.effective_at, &b.model, &version])
            .await?;
    }
    Ok(active_now)
}

/// Makes `version` the model's active baseline unless a newer one already
/// is, and opens the sweeps it calls for ([`plan::activation`]).
async fn activate(cx: &mut Cx<'_>, model: &str, version: i64) -> Step<()> {
    let s = cx.stmt(ACTIVATION_VIEW).await?;
    let row = cx.tx.query_one(&s, &[&model, &version]).await?;
    let entry: Option<BaselineEntry> = row
        .get::<_, Option<&[u8]>>(0)
        .map(|b| decode(b, "baseline"))
        .transpose()?;
    let active = row.get::<_, Option<i64>>(1).map(|v| v as u64);
    let Some(sweeps) = plan::activation(model, version as u64, active, entry.as_ref()) else {
        return Ok(());
    };
    let s = cx.stmt(SET_ACTIVE).await?;
    cx.wrote = true;
    cx.tx.execute(&s, &[&model, &version]).await?;
    for (kind, key, reason) in sweeps {
        open_sweep(cx, kind, &key, &reason).await?;
    }
    Ok(())
}

/// Opens a sweep of `kind` over `key`, restarting one already open with a
/// new generation.
async fn open_sweep(cx: &mut Cx<'_>, kind: i32, key: &str, reason: &str) -> Step<()> {
    cx.head.sweep_generation += 1;
    cx.wrote = true;
    let s = cx.stmt(OPEN_SWEEP).await?;
    cx.tx
        .execute(&s, &[&kind, &key, &reason, &cx.head.sweep_generation])
        .await?;
    Ok(())
}
