//! A load for fault tests: workers that call attestd replicas until
//! stopped (units booting, stations provisioning, MES asking the gate), each
//! call logged with what it was answered and the phase of the test it
//! started and ended in, so a test can say which calls had to succeed,
//! which could fail and how, and which writes were acknowledged.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestd_client::core::keys::KeyAlg;
use attestd_client::evidence::sign_evidence;
use attestd_client::{pb, Client, SigningKey};

use super::fleet::Unit;
use super::{provision, submit};

/// How long anything the tests wait for may take on a loaded 2-core machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Where the test stood when a call started or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Nothing has failed yet.
    Before,
    /// The fault is being made (the kill sent, the database stopping).
    Faulting,
    /// The fault is complete (the replica gone, the database down).
    Down,
    /// The database is starting again.
    Restarting,
    /// The database accepts connections again.
    After,
}

const PHASES: [Phase; 5] = [
    Phase::Before,
    Phase::Faulting,
    Phase::Down,
    Phase::Restarting,
    Phase::After,
];

/// What a worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A unit boots: challenge, then evidence.
    Boot,
    /// A station provisions a new unit.
    Record,
    /// MES asks the gate, for one unit or a batch.
    Release,
}

impl Kind {
    /// The audit action of the change it makes.
    pub(crate) fn action(self) -> &'static str {
        match self {
            Kind::Boot => "evidence.accept",
            Kind::Record => "record.provisioning",
            Kind::Release => "release.decide",
        }
    }
}

/// One answer of a call: the id of what it stored (empty when nothing was
/// stored), whether it released the unit and the gate's reason codes.
#[derive(Debug)]
pub(crate) struct Answer {
    pub serial: String,
    pub id: String,
    pub release: bool,
    pub codes: Vec<String>,
}

impl Answer {
    /// What a batch answers for a unit it could not decide: HOLD, nothing
    /// stored, because the store is unavailable.
    pub(crate) fn held_unavailable(&self) -> bool {
        !self.release && self.id.is_empty() && self.codes == ["STORE_UNAVAILABLE"]
    }
}

/// One call of the load.
#[derive(Debug)]
pub(crate) struct Call {
    pub worker: usize,
    pub replica: usize,
    pub kind: Kind,
    pub from: Phase,
    pub to: Phase,
    pub took: Duration,
    /// How many changes it could store.
    pub writes: usize,
    pub outcome: Result<Vec<Answer>, tonic::Status>,
}

impl Call {
    pub(crate) fn released(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|a| a.iter().any(|a| a.release))
    }

    pub(crate) fn within(&self, p: Phase) -> bool {
        self.from == p && self.to == p
    }
}

/// The work of one worker.
pub(crate) enum Job {
    /// Boots `units` in turn, through one replica.
    Boot {
        device: Client,
        units: Vec<Arc<Unit>>,
    },
    /// Provisions new units `<prefix>-<n>` as `station`.
    Record {
        client: Client,
        station: String,
        key: Arc<SigningKey>,
        prefix: String,
    },
    /// Checks `serials` one by one, and every other call all at once.
    Release { mes: Client, serials: Vec<String> },
}

impl Job {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Job::Boot { .. } => Kind::Boot,
            Job::Record { .. } => Kind::Record,
            Job::Release { .. } => Kind::Release,
        }
    }

    /// How many changes the worker's `n`th call could store.
    pub(crate) fn writes(&self, n: u64) -> usize {
        match self {
            Job::Release { serials, .. } if !n.is_multiple_of(2) => serials.len(),
            _ => 1,
        }
    }

    /// The worker's `n`th call.
    pub(crate) async fn call(&self, n: u64) -> Result<Vec<Answer>, tonic::Status> {
        match self {
            Job::Boot { device, units } => {
                let u = &units[n as usize % units.len()];
                // Strictly increasing per unit, failed attempts included.
                let bootcount = u.bootcount + n / units.len() as u64 + 1;
                let nonce = device
                    .device()
                    .get_challenge(pb::GetChallengeRequest {
                        serial: u.serial.clone(),
                    })
                    .await?
                    .into_inner()
                    .nonce;
                let r = submit(device, sign_evidence(&u.claims(bootcount, nonce), &u.key)).await?;
                Ok(vec![Answer {
                    serial: u.serial.clone(),
                    id: r.evidence_id,
                    release: false,
                    codes: Vec::new(),
                }])
            }
            Job::Record {
                client,
                station,
                key,
                prefix,
            } => {
                let serial = format!("{prefix}-{n:05}");
                let unit = SigningKey::generate(KeyAlg::Es256).expect("a device key");
                let r = provision(client, station, key, n + 1, &serial, &unit).await?;
                Ok(vec![Answer {
                    serial,
                    id: r.record_id,
                    release: false,
                    codes: Vec::new(),
                }])
            }
            Job::Release { mes, serials } => {
                let answers = if n.is_multiple_of(2) {
                    let serial = serials[(n / 2) as usize % serials.len()].clone();
                    vec![mes
                        .release()
                        .check_release(pb::CheckReleaseRequest {
                            serial,
                            ..Default::default()
                        })
                        .await?
                        .into_inner()]
                } else {
                    mes.release()
                        .check_release_batch(pb::CheckReleaseBatchRequest {
                            serials: serials.clone(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .results
                };
                Ok(answers
                    .into_iter()
                    .map(|d| Answer {
                        release: d.decision == pb::Decision::Release as i32,
                        codes: d.reasons.into_iter().map(|r| r.code).collect(),
                        serial: d.serial,
                        id: d.decision_id,
                    })
                    .collect())
            }
        }
    }
}

/// Workers calling replicas until stopped, each call logged with the
/// phases it started and ended in.
pub(crate) struct Load {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    /// Every call so far.
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// (replica, kind, whether it still calls) per worker.
    workers: Vec<(usize, Kind, Arc<AtomicBool>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// A load whose log times count from `started`.
    pub(crate) fn new(started: Instant) -> Load {
        Load {
            phase: Arc::new(AtomicU8::new(Phase::Before as u8)),
            stop: Arc::new(AtomicBool::new(false)),
            calls: Arc::default(),
            workers: Vec::new(),
            tasks: Vec::new(),
            started,
        }
    }

    pub(crate) fn set(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::SeqCst);
        eprintln!("{:>6.2?}: {p:?}", self.started.elapsed());
    }

    pub(crate) fn spawn(&mut self, replica: usize, job: Job) {
        let worker = self.workers.len();
        let kind = job.kind();
        let on = Arc::new(AtomicBool::new(true));
        self.workers.push((replica, kind, on.clone()));
        let (phase, stop, calls) = (self.phase.clone(), self.stop.clone(), self.calls.clone());
        let now = move || PHASES[phase.load(Ordering::SeqCst) as usize];
        self.tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && on.load(Ordering::SeqCst) {
                let (from, t0) = (now(), Instant::now());
                let outcome = job.call(n).await;
                let failed = outcome.is_err();
                calls.lock().unwrap().push(Call {
                    worker,
                    replica,
                    kind,
                    from,
                    to: now(),
                    took: t0.elapsed(),
                    writes: job.writes(n),
                    outcome,
                });
                n += 1;
                if failed {
                    // Paces the retries against a store that is gone.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    /// The workers calling one of `replicas`.
    pub(crate) fn workers_on(&self, replicas: &[usize]) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|w| replicas.contains(&self.workers[*w].0))
            .collect()
    }

    /// Stops the workers of `replica` from making further calls.
    pub(crate) fn halt(&self, replica: usize) {
        for (r, _, on) in &self.workers {
            if *r == replica {
                on.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Calls of `worker` that started in `from` or later and succeeded.
    pub(crate) fn acked(&self, worker: usize, from: Phase) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.worker == worker && c.from >= from && c.outcome.is_ok())
            .count()
    }

    /// Waits until every worker in `workers` has `n` successful calls
    /// started in `from` or later.
    pub(crate) async fn wait_acked(&self, workers: &[usize], from: Phase, n: usize) {
        let t0 = Instant::now();
        for &w in workers {
            poll(
                &format!("{n} successful calls of worker {w} from {from:?}"),
                || async { self.acked(w, from) >= n },
            )
            .await;
        }
        eprintln!(
            "{:>6.2?}: {n} calls acknowledged per worker from {from:?} ({:.2?})",
            self.started.elapsed(),
            t0.elapsed()
        );
    }

    /// Stops every worker and returns the log.
    pub(crate) async fn finish(self) -> Vec<Call> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("a worker stops within the deadline")
                .expect("a worker ran to its end");
        }
        let calls = std::mem::take(&mut *self.calls.lock().unwrap());
        summarize(&calls);
        calls
    }
}

/// Calls per (replica, kind, phases): how many succeeded and failed, and
/// the slowest.
fn summarize(calls: &[Call]) {
    #[derive(Default)]
    struct Tally {
        ok: usize,
        failed: usize,
        slowest: Duration,
    }
    let mut by: BTreeMap<(usize, Kind, Phase, Phase), Tally> = BTreeMap::new();
    for c in calls {
        let t = by.entry((c.replica, c.kind, c.from, c.to)).or_default();
        if c.outcome.is_ok() {
            t.ok += 1;
        } else {
            t.failed += 1;
        }
        t.slowest = t.slowest.max(c.took);
    }
    for ((r, k, f, to), t) in by {
        eprintln!(
            "replica {} {k:?} {f:?}..{to:?}: {} ok, {} failed, slowest {:.2?}",
            r + 1,
            t.ok,
            t.failed,
            t.slowest
        );
    }
}

/// Polls `ok` until it holds; fails the test after [`DEADLINE`].
pub(crate) async fn poll<F: Future<Output = bool>>(
    what: &str,
    mut ok: impl FnMut() -> F,
) -> Duration {
    let t0 = Instant::now();
    loop {
        if ok().await {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < DEADLINE, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The acknowledged writes of a load, by kind: (serial, id).
pub(crate) fn acked(calls: &[Call], kind: Kind) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.kind == kind)
        .filter_map(|c| c.outcome.as_ref().ok())
        .flatten()
        .filter(|a| !a.id.is_empty())
        .map(|a| (a.serial.clone(), a.id.clone()))
        .collect()
}
