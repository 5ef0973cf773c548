//! Clauses with concurrent writers: several tokio tasks on a multi-thread
//! runtime against one store, while readers watch. Each checks that what
//! concurrency could break (a head read across two writes, a counter
//! updated outside its write, a sequence number taken twice, a stale
//! decision applied twice, a nonce accepted twice) holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use super::data::*;
use crate::*;

/// A task's result; its panic, re-raised here.
async fn join<T>(h: JoinHandle<T>) -> T {
    match h.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a task of the clause was cancelled: {e}"),
    }
}

/// Retries a write decided on a fresh snapshot until it is not a conflict;
/// returns the number of conflicts met.
async fn until_applied<F, Fut, T>(s: &dyn Store, serial: &str, mut write: F) -> u32
where
    F: FnMut(DeviceEntry) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
    T: std::fmt::Debug,
{
    for conflicts in 0..10_000 {
        let d = device(s, serial).await;
        match write(d).await {
            Ok(_) => return conflicts,
            Err(StoreError::Conflict) => continue,
            Err(e) => panic!("a write to {serial} failed: {e:?}"),
        }
    }
    panic!("a write to {serial} conflicted 10000 times");
}

/// The head a reader gets is always one the chain has (sequence and hash of
/// the same entry) and never goes back, while writers append; afterwards
/// the chain verifies and each writer's entries are in its order.
pub async fn the_audit_head_is_in_the_chain_while_others_append(s: Arc<dyn Store>) {
    const WRITERS: i64 = 8;
    const EACH: i64 = 100;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<JoinHandle<u64>> = (0..2)
        .map(|_| {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                let (mut checked, mut last) = (0, 0);
                loop {
                    let finished = done.load(SeqCst);
                    let (seq, hash) = s.audit_head().await.unwrap();
                    assert!(seq >= last, "the head went back from {last} to {seq}");
                    last = seq;
                    if seq > 0 {
                        let entry = s.audit_after(seq - 1, 1).await.unwrap().remove(0);
                        assert_eq!(entry.seq, seq);
                        assert_eq!(
                            entry.hash,
                            hash.to_vec(),
                            "head {seq} pairs another entry's hash"
                        );
                        checked += 1;
                    }
                    if finished {
                        return checked;
                    }
                }
            })
        })
        .collect();
    let writers: Vec<JoinHandle<()>> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let target = format!("w{w}");
                    s.append_audit(&AuditNote::new(
                        w * 1000 + i,
                        "tester",
                        "test.append",
                        &target,
                    ))
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        join(w).await;
    }
    done.store(true, SeqCst);
    for r in readers {
        assert!(join(r).await > 0, "the reader checked a head");
    }
    let entries = s.audit_after(0, 10_000).await.unwrap();
    let n = (WRITERS * EACH) as u64;
    assert_eq!(entries.len() as u64, n);
    assert_eq!(s.audit_head().await.unwrap(), (n, verified_head(&entries)));
    for w in 0..WRITERS {
        let at: Vec<i64> = entries
            .iter()
            .filter(|e| e.target == format!("w{w}"))
            .map(|e| e.at_ms)
            .collect();
        assert_eq!(at, (w * 1000..w * 1000 + EACH).collect::<Vec<i64>>());
    }
}

const STATUSES: [i32; 5] = [1, 2, 3, 4, 6];

/// Many tasks commit evidence, each to a unit of its own and all to one
/// shared unit (retrying conflicts): afterwards every counter equals a
/// recount of the units, each unit counts exactly its evidence, and the
/// feed has each unit's status changes as a chain ending in its status.
pub async fn concurrent_evidence_keeps_counters_equal_to_a_recount(s: Arc<dyn Store>) {
    const TASKS: u32 = 6;
    const ROUNDS: u32 = 10;
    line(&*s, "st-a").await;
    enroll(&*s, "st-a", 1, "S", 1).await;
    for t in 0..TASKS {
        enroll(&*s, "st-a", u64::from(t) + 2, &format!("O{t}"), t + 2).await;
    }
    let tasks: Vec<JoinHandle<(u64, u64, u32)>> = (0..TASKS)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let (mut own, mut shared, mut conflicts) = (0, 0, 0);
                for round in 0..ROUNDS {
                    let serial = if round % 2 == 0 {
                        format!("O{t}")
                    } else {
                        "S".to_string()
                    };
                    let status = STATUSES[((t + round) % 5) as usize];
                    let bootcount = u64::from(t * 1000 + round);
                    conflicts += until_applied(&*s, &serial, |d| {
                        let mut c = with_verdict(
                            evidence(&serial, bootcount, &d, false),
                            verdict(status, 0, i64::from(round)),
                        );
                        c.firmware = vec![FirmwareEntry {
                            name: "os".into(),
                            version: format!("{}", round % 3),
                            svn: 1,
                            digest: vec![(round % 3) as u8; 32],
                        }];
                        let s = s.clone();
                        async move { s.commit_evidence(c).await }
                    })
                    .await;
                    if round % 2 == 0 {
                        own += 1;
                    } else {
                        shared += 1;
                    }
                }
                (own, shared, conflicts)
            })
        })
        .collect();
    let mut shared = 0;
    for (t, h) in tasks.into_iter().enumerate() {
        let (own, sh, _) = join(h).await;
        shared += sh;
        assert_eq!(device(&*s, &format!("O{t}")).await.evidence_count, own);
    }
    let s = &*s;
    assert_eq!(device(s, "S").await.evidence_count, shared);
    assert_eq!(
        s.counts().await.unwrap().evidence,
        u64::from(TASKS * ROUNDS)
    );
    assert_counters_match_units(s).await;
    let feed = changes(s, 0).await;
    for d in all_devices(s).await {
        let mine: Vec<(i32, i32)> = feed
            .iter()
            .filter(|c| c.0 == d.serial)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(mine.first().map(|c| c.0), Some(0), "{}", d.serial);
        assert!(
            mine.windows(2).all(|w| w[0].1 == w[1].0),
            "{}: {mine:?}",
            d.serial
        );
        assert!(mine.iter().all(|(a, b)| a != b));
        assert_eq!(mine.last().map(|c| c.1), Some(d.status), "{}", d.serial);
    }
}

/// Writes decided on one snapshot (evidence, re-appraisal, flag) race:
/// exactly one applies, the others conflict and leave nothing; round after
/// round, the unit moves one revision per round.
pub async fn a_stale_revision_never_applies_twice(s: Arc<dyn Store>) {
    const ROUNDS: u64 = 8;
    const RACERS: usize = 6;
    line(&*s, "st-a").await;
    enroll(&*s, "st-a", 1, "S", 1).await;
    let mut evidence_won = 0;
    for round in 0..ROUNDS {
        let d = device(&*s, "S").await;
        let status = if d.status == 1 { 2 } else { 1 };
        let barrier = Arc::new(Barrier::new(RACERS));
        let racers: Vec<JoinHandle<(bool, Option<String>)>> = (0..RACERS)
            .map(|t| {
                let (s, d, barrier) = (s.clone(), d.clone(), barrier.clone());
                tokio::spawn(async move {
                    let now = round as i64;
                    let ev = with_verdict(
                        evidence("S", round * 10 + t as u64, &d, false),
                        verdict(status, 0, now),
                    );
                    let id = (t % 3 == 0).then(|| ev.entry.evidence_id.clone());
                    barrier.wait().await;
                    let r = match t % 3 {
                        0 => s.commit_evidence(ev).await,
                        1 => {
                            s.commit_reappraisal(reappraisal(&d, verdict(status, 0, now)))
                                .await
                        }
                        _ => {
                            s.set_flag(flag("S", &d, quarantine(round % 2 == 0), status, None))
                                .await
                        }
                    };
                    match r {
                        Ok(_) => (true, id),
                        Err(StoreError::Conflict) => (false, id),
                        Err(e) => panic!("racer {t}: {e:?}"),
                    }
                })
            })
            .collect();
        let mut winners = 0;
        for (t, h) in racers.into_iter().enumerate() {
            let (won, id) = join(h).await;
            if won {
                winners += 1;
                if t % 3 == 0 {
                    evidence_won += 1;
                }
            } else if let Some(id) = id {
                assert_eq!(
                    s.get_evidence(&id).await.unwrap(),
                    None,
                    "a loser's evidence"
                );
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: one write decided on a snapshot applies"
        );
        let after = device(&*s, "S").await;
        assert_eq!(after.revision, d.revision + 1, "round {round}");
        assert_eq!(after.status, status);
    }
    let s = &*s;
    assert_eq!(device(s, "S").await.evidence_count, evidence_won);
    assert_eq!(s.counts().await.unwrap().evidence, evidence_won);
    assert_eq!(
        s.list_history("S", None, 100).await.unwrap().items.len() as u64,
        1 + ROUNDS
    );
    assert_eq!(changes(s, 0).await.len() as u64, 1 + ROUNDS);
    assert_counters_match_units(s).await;
}

/// Concurrent writers each change statuses; a reader polling
/// `changes_after(cursor)` meanwhile sees 1, 2, 3, ... without a gap or a
/// step back, and ends with the whole feed: one entry per status change,
/// each unit's in the order its writer made them.
pub async fn concurrent_status_changes_feed_a_gapless_ordered_stream(s: Arc<dyn Store>) {
    const OWNERS: u32 = 6;
    const FLIPS: usize = 15;
    const SHARERS: u32 = 2;
    const SHARED_FLIPS: usize = 10;
    line(&*s, "st-a").await;
    for t in 0..OWNERS {
        enroll(&*s, "st-a", u64::from(t) + 1, &format!("W{t}"), t + 1).await;
    }
    enroll(&*s, "st-a", 100, "S", 100).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader: JoinHandle<Vec<ChangeEntry>> = {
        let (s, done) = (s.clone(), done.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0, Vec::new());
            loop {
                let finished = done.load(SeqCst);
                let batch = s.changes_after(cursor, 25).await.unwrap();
                let empty = batch.is_empty();
                for c in batch {
                    assert_eq!(c.seq, cursor + 1, "after {cursor} the reader got {}", c.seq);
                    cursor = c.seq;
                    seen.push(c);
                }
                let now = s.change_cursor().await.unwrap();
                assert!(
                    now >= cursor,
                    "the cursor {now} is behind a change read ({cursor})"
                );
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let owners: Vec<JoinHandle<Vec<(i32, i32)>>> = (0..OWNERS)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let serial = format!("W{t}");
                let mut made = Vec::new();
                for i in 0..FLIPS {
                    let d = device(&*s, &serial).await;
                    let status = STATUSES[(i + t as usize) % 5];
                    let status = if status == d.status { 5 } else { status };
                    let after = if i % 2 == 0 {
                        s.commit_reappraisal(reappraisal(&d, verdict(status, 0, i as i64)))
                            .await
                    } else {
                        s.set_flag(flag(&serial, &d, quarantine(i % 4 == 1), status, None))
                            .await
                    }
                    .unwrap();
                    assert_eq!(after.status, status);
                    made.push((d.status, status));
                }
                made
            })
        })
        .collect();
    let sharers: Vec<JoinHandle<()>> = (0..SHARERS)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..SHARED_FLIPS {
                    until_applied(&*s, "S", |d| {
                        let status = if d.status == 1 { 2 } else { 1 };
                        let c = reappraisal(&d, verdict(status, 0, (t as usize * 100 + i) as i64));
                        let s = s.clone();
                        async move { s.commit_reappraisal(c).await }
                    })
                    .await;
                }
            })
        })
        .collect();
    let mut made = Vec::new();
    for h in owners {
        made.push(join(h).await);
    }
    for h in sharers {
        join(h).await;
    }
    done.store(true, SeqCst);
    let seen = join(reader).await;
    let s = &*s;
    let all = s.changes_after(0, 100_000).await.unwrap();
    let n = u64::from(OWNERS + 1)
        + u64::from(OWNERS) * FLIPS as u64
        + u64::from(SHARERS) * SHARED_FLIPS as u64;
    assert_eq!(
        all.iter().map(|c| c.seq).collect::<Vec<u64>>(),
        (1..=n).collect::<Vec<u64>>(),
        "one entry per status change, numbered without gaps"
    );
    assert_eq!(s.change_cursor().await.unwrap(), n);
    assert_eq!(seen, all, "the reader saw the whole feed");
    let mut per_unit: BTreeMap<&str, Vec<(i32, i32)>> = BTreeMap::new();
    for c in &all {
        per_unit
            .entry(c.serial.as_str())
            .or_default()
            .push((c.old_status, c.new_status));
    }
    for (t, mine) in made.iter().enumerate() {
        let fed = &per_unit[format!("W{t}").as_str()];
        assert_eq!(fed[0], (0, STATUS_UNKNOWN));
        assert_eq!(&fed[1..], mine.as_slice(), "W{t}");
    }
    let shared = &per_unit["S"];
    assert_eq!(shared.len(), 1 + SHARERS as usize * SHARED_FLIPS);
    assert!(shared.windows(2).all(|w| w[0].1 == w[1].0), "{shared:?}");
    assert_eq!(
        shared.last().map(|c| c.1),
        Some(device(s, "S").await.status)
    );
    assert_counters_match_units(s).await;
}

/// Two tasks using the same nonce at the same moment: exactly one is told
/// it is new.
pub async fn a_nonce_used_concurrently_is_accepted_once(s: Arc<dyn Store>) {
    const NONCES: u32 = 200;
    const TASKS: usize = 2;
    let mut pairs = Vec::new();
    for i in 0..NONCES {
        let barrier = Arc::new(Barrier::new(TASKS));
        for _ in 0..TASKS {
            let (s, barrier) = (s.clone(), barrier.clone());
            pairs.push((
                i,
                tokio::spawn(async move {
                    let nonce = format!("race-{i}").into_bytes();
                    barrier.wait().await;
                    s.use_nonce(&nonce, 60_000, 1_000).await.unwrap()
                }),
            ));
        }
    }
    let mut accepted = vec![0; NONCES as usize];
    for (i, h) in pairs {
        if join(h).await {
            accepted[i as usize] += 1;
        }
    }
    for (i, n) in accepted.iter().enumerate() {
        assert_eq!(*n, 1, "nonce {i} was accepted {n} times");
    }
}
