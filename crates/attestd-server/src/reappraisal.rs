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
//! any write; a round's verdicts go to the group committer together (one
//! transaction, one flush), so the job's writes are as durable as a
//! client's. Handlers wake the job after the writes that create
//! work; a timer catches what only time creates.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use attestd_core::Rejection;
use attestd_store::{ReappraisalCommit, StoreError, SweepEntry, Write, SWEEP_DIGEST};
use tokio::sync::watch;

use crate::app::App;
use crate::verdict::unit_verdict;

/// Attempts per unit when it keeps changing underneath the job.
const MAX_ATTEMPTS: usize = 5;

/// Runs until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.limits.reappraisal_interval_ms.max(10));
    loop {
        // Drain everything there is, then wait for a nudge or the timer.
        loop {
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

    // Every store call runs on the blocking pool, never on the runtime.
    let (activated, dirty) = app
        .blocking(move |app| {
            let store = app.store.as_ref();
            let activated = store
                .activate_due_baselines(now_s)
                .map_err(|e| app.store_err(e))?;
            let dirty = store.dirty_units(batch).map_err(|e| app.store_err(e))?;
            Ok((activated, dirty))
        })
        .await?;
    for (model, version) in activated {
        tracing::info!(model, version, "baseline became active");
        progress += 1;
    }
    progress += written(&reappraise_units(app, &dirty, now_ms).await);
    // Units on a firmware a new baseline withdrew go first (one sweep per
    // digest); the sweeps of whole models and stations follow.
    let mut sweeps = app
        .blocking(|app| app.store.sweeps().map_err(|e| app.store_err(e)))
        .await?;
    if sweeps.iter().any(|s| s.kind == SWEEP_DIGEST) {
        sweeps.retain(|s| s.kind == SWEEP_DIGEST);
    }
    for sweep in sweeps {
        // A withdrawn build is urgent: bigger rounds, fewer flushes.
        let n = if sweep.kind == SWEEP_DIGEST {
            batch * 4
        } else {
            batch
        };
        progress += run_sweep(app, &sweep, n, now_ms).await?;
    }
    let due = app
        .blocking(move |app| {
            app.store
                .due_units(now_s, batch)
                .map_err(|e| app.store_err(e))
        })
        .await?;
    progress += written(&reappraise_units(app, &due, now_ms).await);
    // Keep the change feed bounded: a watcher behind it is told so.
    app.blocking(move |app| {
        app.store
            .trim_changes(app.limits.change_feed_retention, batch * 16)
            .map_err(|e| app.store_err(e))
    })
    .await?;
    if progress > 0 {
        // Sweep cursors, activations, the trimmed feed.
        app.commit.begin().durable().await?;
    }
    Ok(progress)
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
    let s = sweep.clone();
    let units = app
        .blocking(move |app| {
            app.store
                .sweep_units(&s, batch)
                .map_err(|e| app.store_err(e))
        })
        .await?;
    let results = reappraise_units(app, &units, now_ms).await;
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
    let (s, c) = (sweep.clone(), cursor.map(str::to_owned));
    app.blocking(move |app| {
        app.store
            .advance_sweep(&s, c.as_deref())
            .map_err(|e| app.store_err(e))
    })
    .await?;
    if cursor.is_none() {
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
    // Deciding reads the store and spawns threads: off the runtime.
    let owned = serials.to_vec();
    let decided = match app
        .blocking(move |app| Ok(decide_all(app, &owned, now_ms)))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(reason = e.reason.as_str(), message = %e.message, "re-appraisal round failed");
            return done;
        }
    };
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
    let results = match app.commit.begin().commit_all(writes).await {
        Ok(r) => r,
        Err(e) => {
            let e = app.store_err(e);
            tracing::warn!(reason = e.reason.as_str(), message = %e.message, "re-appraisal round not durable");
            return done;
        }
    };
    for (i, r) in which.into_iter().zip(results) {
        match r {
            Ok(_) => {
                app.metrics.reappraisals.fetch_add(1, Relaxed);
                done[i] = true;
            }
            Err(StoreError::Conflict) => {
                app.metrics.commit_conflicts.fetch_add(1, Relaxed);
                let serial = serials[i].clone();
                done[i] = app
                    .blocking(move |app| Ok(reappraise_unit(app, &serial, now_ms)))
                    .await
                    .unwrap_or(false);
            }
            Err(e) => {
                let e = app.store_err(e);
                tracing::warn!(serial = %serials[i], reason = e.reason.as_str(), message = %e.message, "re-appraisal failed");
            }
        }
    }
    done
}

/// Threads deciding a large round: more than the cores, because deciding
/// waits on disk reads (the unit's last evidence) once the fleet outgrows
/// the cache.
const DECIDE_THREADS: usize = 8;

/// Decides every unit of a round, in parallel for a large round (deciding
/// is reading, decoding and appraising: no locks held, no writes).
fn decide_all(
    app: &App,
    serials: &[String],
    now_ms: i64,
) -> Vec<Result<Option<ReappraisalCommit>, Rejection>> {
    let one = |s: &[String]| -> Vec<_> { s.iter().map(|x| decide(app, x, now_ms)).collect() };
    if serials.len() < 64 {
        return one(serials);
    }
    let chunk = serials.len().div_ceil(DECIDE_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = serials
            .chunks(chunk)
            .skip(1)
            .map(|part| scope.spawn(move || one(part)))
            .collect();
        let mut out = one(&serials[..chunk]);
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Re-decides one unit from its stored evidence and writes the verdict
/// alone (durable with the round's flush). Returns whether it was written.
pub fn reappraise_unit(app: &App, serial: &str, now_ms: i64) -> bool {
    match try_reappraise(app, serial, now_ms) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(serial, reason = e.reason.as_str(), message = %e.message, "re-appraisal failed");
            false
        }
    }
}

fn try_reappraise(app: &App, serial: &str, now_ms: i64) -> Result<(), Rejection> {
    let store = app.store.as_ref();
    for _ in 0..MAX_ATTEMPTS {
        let Some(commit) = decide(app, serial, now_ms)? else {
            return Ok(());
        };
        match store.commit_reappraisal(commit) {
            Ok(_) => {
                app.metrics.reappraisals.fetch_add(1, Relaxed);
                return Ok(());
            }
            Err(StoreError::Conflict) => {
                app.metrics.commit_conflicts.fetch_add(1, Relaxed);
            }
            Err(e) => return Err(app.store_err(e)),
        }
    }
    Err(app.store_err(StoreError::Conflict))
}

/// The verdict `serial` gets now, as a write; `None` for an unknown unit.
fn decide(app: &App, serial: &str, now_ms: i64) -> Result<Option<ReappraisalCommit>, Rejection> {
    let store = app.store.as_ref();
    let Some(d) = store.get_device(serial).map_err(|e| app.store_err(e))? else {
        return Ok(None);
    };
    let (v, r) = unit_verdict(store, &app.baselines, &d, now_ms)?;
    Ok(Some(ReappraisalCommit {
        serial: serial.to_owned(),
        expected_revision: d.revision,
        expected_baseline: r.baseline_version,
        verdict: v,
    }))
}
