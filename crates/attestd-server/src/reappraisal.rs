//! The re-appraisal job: keeps every unit's verdict true as the world
//! changes without new evidence (docs/appraisal.md, "When a verdict changes
//! without new evidence").
//!
//! Work is found only through indices, never by scanning the fleet:
//! `dirty` (a record arrived, a unit was revoked), sweeps over `by_model`
//! (a baseline became active) and `by_station` (a station was revoked), and
//! `due` (time: calibration due dates, evidence going stale). Pending
//! baselines are activated when their `effective_at` passes. Each unit is
//! re-decided from its stored evidence and written with the same checks as
//! any write; a round's verdicts go to the store as one batch (one
//! transaction where the backend can), so the job's writes are as durable
//! as a client's. Handlers wake the job after the writes that create
//! work; a timer catches what only time creates.

use std::sync::Arc;
use std::time::Duration;

use attestd_core::Rejection;
use attestd_store::{ReappraisalCommit, StoreError, SweepEntry, Write, SWEEP_DIGEST};
use tokio::sync::watch;

use crate::app::App;
use crate::verdict::unit_verdict;

/// Attempts per unit when it keeps changing underneath the job.
const MAX_ATTEMPTS: usize = 5;

/// The lease that makes one replica do this job.
pub const LEASE: &str = "reappraisal";

/// Runs until `shutdown` turns true. With several replicas on one store,
/// only the holder of the job's lease works; the others check the lease at
/// every interval and take over once the holder stops renewing it.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.limits.reappraisal_interval_ms.max(10));
    let ttl_ms = lease_ttl_ms(interval);
    loop {
        // Drain everything there is, then wait for a nudge or the timer.
        while app.holds(LEASE, ttl_ms).await {
            match step(&app).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(reason = e.reason.as_str(), message = %e.message, "re-appraisal paused");
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
        tokio::select! {
            _ = app.work.notified() => {}
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One bounded round of work; returns how much progressed.
pub async fn step(app: &Arc<App>) -> Result<usize, Rejection> {
    let batch = app.limits.reappraisal_batch.max(1);
    let now_ms = app.clock.now_ms();
    let now_s = now_ms.div_euclid(1000);
    let mut progress = 0;

    let store = app.store.as_ref();
    let err = |e| app.store_err(e);
    let activated = store.activate_due_baselines(now_s).await.map_err(err)?;
    let dirty = store.dirty_units(batch).await.map_err(err)?;
    for (model, version) in activated {
        tracing::info!(model, version, "baseline became active");
        progress += 1;
    }
    progress += written(&reappraise_units(app, &dirty, now_ms).await);
    // Units on a firmware a new baseline withdrew go first (one sweep per
    // digest); the sweeps of whole models and stations follow.
    let mut sweeps = store.sweeps().await.map_err(err)?;
    if sweeps.iter().any(|s| s.kind == SWEEP_DIGEST) {
        sweeps.retain(|s| s.kind == SWEEP_DIGEST);
    }
    for sweep in sweeps {
        // A withdrawn build is urgent: bigger rounds, fewer commits.
        let n = if sweep.kind == SWEEP_DIGEST {
            batch * 4
        } else {
            batch
        };
        progress += run_sweep(app, &sweep, n, now_ms).await?;
    }
    let due = store.due_units(now_s, batch).await.map_err(err)?;
    progress += written(&reappraise_units(app, &due, now_ms).await);
    // Keep the change feed bounded: a watcher behind it is told so.
    store
        .trim_changes(app.limits.change_feed_retention, batch * 16)
        .await
        .map_err(err)?;
    Ok(progress)
}

/// How long a lease outlives its last renewal: long enough for a busy
/// round, short enough that another replica takes over within seconds.
pub fn lease_ttl_ms(interval: Duration) -> i64 {
    (interval.as_millis() as i64 * 6).clamp(3_000, 120_000)
}

fn written(done: &[bool]) -> usize {
    done.iter().filter(|d| **d).count()
}

/// Re-appraises the next batch of a sweep and moves its cursor past the
/// units done. A unit that fails stops the batch there, to be retried.
async fn run_sweep(
    app: &Arc<App>,
    sweep: &SweepEntry,
    batch: usize,
    now_ms: i64,
) -> Result<usize, Rejection> {
    let units = app
        .store
        .sweep_units(sweep, batch)
        .await
        .map_err(|e| app.store_err(e))?;
    let results = reappraise_units(app, &units, now_ms).await;
    app.metrics.sweep_progress(sweep.kind, written(&results));
    let mut done: Option<&str> = None;
    let mut failed = false;
    for (serial, ok) in units.iter().zip(&results) {
        if !ok {
            failed = true;
            break;
        }
        done = Some(serial);
    }
    let cursor = if !failed && units.len() < batch {
        None
    } else {
        done
    };
    if cursor.is_none() && failed {
        return Ok(0);
    }
    app.store
        .advance_sweep(sweep, cursor)
        .await
        .map_err(|e| app.store_err(e))?;
    if cursor.is_none() {
        app.metrics.sweep_finished(sweep.kind);
        tracing::info!(kind = sweep.kind, key = %sweep.key, reason = %sweep.reason, "re-appraisal sweep finished");
    }
    Ok(units.len().max(1))
}

/// Re-decides `serials` and writes their verdicts in one group; returns,
/// per unit, whether its verdict is now written (or it needs none). A unit
/// that changed underneath is retried alone.
pub async fn reappraise_units(app: &Arc<App>, serials: &[String], now_ms: i64) -> Vec<bool> {
    let mut done = vec![false; serials.len()];
    let mut writes = Vec::with_capacity(serials.len());
    let mut which = Vec::with_capacity(serials.len());
    let decided = decide_all(app, serials, now_ms).await;
    for (i, (serial, decided)) in serials.iter().zip(decided).enumerate() {
        match decided {
            Ok(Some(c)) => {
                writes.push(Write::Reappraisal(c));
                which.push(i);
            }
            Ok(None) => done[i] = true,
            Err(e) => {
                tracing::warn!(serial, reason = e.reason.as_str(), message = %e.message, "re-appraisal failed")
            }
        }
    }
    if writes.is_empty() {
        return done;
    }
    let results = app.store.commit_batch(writes).await;
    for (i, r) in which.into_iter().zip(results) {
        match r {
            Ok(_) => {
                app.metrics.reappraisals.inc();
                done[i] = true;
            }
            Err(StoreError::Conflict) => {
                app.metrics.commit_conflicts.inc();
                done[i] = reappraise_unit(app, &serials[i], now_ms).await;
            }
            Err(e) => {
                let e = app.store_err(e);
                tracing::warn!(serial = %serials[i], reason = e.reason.as_str(), message = %e.message, "re-appraisal failed");
            }
        }
    }
    done
}

/// Tasks deciding a large round at once: more than the cores, because
/// deciding waits on store reads (the unit's last evidence).
const DECIDE_TASKS: usize = 8;

/// Decides every unit of a round, in order; a large round in several tasks
/// (deciding is reading, decoding and appraising: no locks held, no writes).
async fn decide_all(
    app: &Arc<App>,
    serials: &[String],
    now_ms: i64,
) -> Vec<Result<Option<ReappraisalCommit>, Rejection>> {
    if serials.len() < 64 {
        let mut out = Vec::with_capacity(serials.len());
        for s in serials {
            out.push(decide(app, s, now_ms).await);
        }
        return out;
    }
    let chunk = serials.len().div_ceil(DECIDE_TASKS);
    let tasks: Vec<_> = serials
        .chunks(chunk)
        .map(|part| {
            let (app, part) = (app.clone(), part.to_vec());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(part.len());
                for s in &part {
                    out.push(decide(&app, s, now_ms).await);
                }
                out
            })
        })
        .collect();
    let mut out = Vec::with_capacity(serials.len());
    for (t, part) in tasks.into_iter().zip(serials.chunks(chunk)) {
        match t.await {
            Ok(r) => out.extend(r),
            Err(e) => {
                tracing::error!(error = %e, "a re-appraisal task failed");
                out.extend(part.iter().map(|_| {
                    Err(attestd_core::reject!(
                        StoreUnavailable,
                        "re-appraisal of this unit failed inside the server"
                    ))
                }));
            }
        }
    }
    out
}

/// Re-decides one unit from its stored evidence and writes the verdict
/// alone. Returns whether it was written.
pub async fn reappraise_unit(app: &App, serial: &str, now_ms: i64) -> bool {
    match try_reappraise(app, serial, now_ms).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(serial, reason = e.reason.as_str(), message = %e.message, "re-appraisal failed");
            false
        }
    }
}

async fn try_reappraise(app: &App, serial: &str, now_ms: i64) -> Result<(), Rejection> {
    let store = app.store.as_ref();
    for _ in 0..MAX_ATTEMPTS {
        let Some(commit) = decide(app, serial, now_ms).await? else {
            return Ok(());
        };
        match store.commit_reappraisal(commit).await {
            Ok(_) => {
                app.metrics.reappraisals.inc();
                return Ok(());
            }
            Err(StoreError::Conflict) => {
                app.metrics.commit_conflicts.inc();
            }
            Err(e) => return Err(app.store_err(e)),
        }
    }
    Err(app.store_err(StoreError::Conflict))
}

/// The verdict `serial` gets now, as a write; `None` for an unknown unit.
async fn decide(
    app: &App,
    serial: &str,
    now_ms: i64,
) -> Result<Option<ReappraisalCommit>, Rejection> {
    let store = app.store.as_ref();
    let Some(d) = store
        .get_device(serial)
        .await
        .map_err(|e| app.store_err(e))?
    else {
        return Ok(None);
    };
    let (v, r) = unit_verdict(store, &app.baselines, &d, now_ms).await?;
    Ok(Some(ReappraisalCommit {
        serial: serial.to_owned(),
        expected_revision: d.revision,
        expected_baseline: r.baseline_version,
        verdict: v,
    }))
}
