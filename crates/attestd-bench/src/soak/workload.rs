//! The load of one soak cycle, and the ledger of every write attestd
//! acknowledged since the soak began.
//!
//! Four kinds of callers run at once until the kill: devices booting
//! (challenge, then signed evidence), factory stations enrolling and
//! calibrating new units, the MES asking the release gate (each decision is
//! a stored write), and a security admin quarantining, releasing and
//! placing units and now and then publishing a baseline (which withdraws or
//! re-approves the build one unit in ten runs, so the re-appraisal job
//! changes statuses in the background too).
//!
//! A write counts as acknowledged when its answer arrived, even after the
//! kill: attestd answers only after the flush that makes the write
//! durable, so an answer that was sent is a promise. A call that fails once
//! the kill is under way was in flight: it may or may not have been
//! stored, and is never counted either way. A call refused before the kill
//! is a rejection, which the soak reports (its load is built to be valid).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use attestd_client::pb;
use attestd_client::{Client, SigningKey};
use tonic::transport::Channel;

use super::Rng;
use crate::fleet::{self, serial};
use crate::kit::Kit;

/// How long one call may take before the soak calls it stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Tenants and sites units are placed with.
pub(super) const TENANTS: &[&str] = &["st-mary", "st-luke"];
const SITES: &[&str] = &["north", "south", "east"];

/// The shape of the load.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(super) struct Shape {
    /// Units booting at once (each worker boots its own units in turn).
    pub boot_workers: usize,
    /// Stations enrolling new units at once (one per kit station).
    pub stations: usize,
    /// Pause of a station between two units.
    pub station_pause_ms: u64,
    /// MES callers of the release gate.
    pub mes_workers: usize,
    /// Pause of an MES caller between two checks.
    pub mes_pause_ms: u64,
    /// Pause of the security admin between two actions.
    pub admin_pause_ms: u64,
    /// Chance in percent that an admin action is a baseline publication.
    pub publish_percent: u64,
}

/// One acknowledged write and how to find it again.
#[derive(Clone, Debug)]
pub(super) enum Write {
    Station {
        id: String,
    },
    Baseline {
        version: u64,
    },
    Record {
        serial: String,
        record_id: String,
        kind: pb::RecordKind,
    },
    Evidence {
        serial: String,
        evidence_id: String,
    },
    Decision {
        serial: String,
        decision_id: String,
    },
    Quarantine {
        serial: String,
        on: bool,
        reason: String,
    },
    Assign {
        serial: String,
        assignment: Placement,
    },
}

impl Write {
    /// The kind, for the per-kind tallies.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Write::Station { .. } => "stations",
            Write::Baseline { .. } => "baselines",
            Write::Record { .. } => "records",
            Write::Evidence { .. } => "evidence",
            Write::Decision { .. } => "decisions",
            Write::Quarantine { .. } => "quarantines",
            Write::Assign { .. } => "assignments",
        }
    }
}

/// A write and the cycle in which it was acknowledged.
#[derive(Clone, Debug)]
pub(super) struct Acked {
    pub cycle: u32,
    pub write: Write,
}

/// A unit's placement (tenant, site, department, asset tag), as the
/// `device.assign` audit entry spells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Placement {
    pub tenant: String,
    pub site: String,
    pub department: String,
    pub asset_tag: String,
}

impl Placement {
    pub(super) fn of(d: &pb::Device) -> Placement {
        let a = d.assignment.clone().unwrap_or_default();
        Placement {
            tenant: a.tenant,
            site: a.site,
            department: a.department,
            asset_tag: a.asset_tag,
        }
    }

    /// The details of its `device.assign` entry (the server's format).
    pub(super) fn details(&self) -> String {
        format!(
            "tenant {:?} site {:?} department {:?} asset {:?}",
            self.tenant, self.site, self.department, self.asset_tag
        )
    }
}

/// What a unit's admin state must be: `known`, or, when the kill caught an
/// action on it in flight, `known` or `maybe`. Settled after each restart
/// to what the server shows, which is then durable.
#[derive(Clone, Debug, Default)]
pub(super) struct Expect<T> {
    pub known: T,
    pub maybe: Option<T>,
}

impl<T: PartialEq + Clone> Expect<T> {
    pub(super) fn allows(&self, v: &T) -> bool {
        *v == self.known || self.maybe.as_ref() == Some(v)
    }

    pub(super) fn settle(&mut self, v: T) {
        self.known = v;
        self.maybe = None;
    }
}

/// The admin state the soak expects of a unit it acted on.
#[derive(Clone, Debug, Default)]
pub(super) struct UnitAdmin {
    /// Quarantined, and the reason (empty when not).
    pub quarantine: Expect<(bool, String)>,
    pub placement: Expect<Placement>,
}

/// A unit a boot worker owns: its key and last boot counter.
struct BootUnit {
    index: u64,
    key: Arc<SigningKey>,
    bootcount: u64,
}

/// What the soak knows across cycles (attestd is killed; this is not).
pub(super) struct World {
    pub kit: Arc<Kit>,
    pub shape: Shape,
    pub seed: u64,
    /// Every acknowledged write, in the order the answers arrived.
    pub ledger: Mutex<Vec<Acked>>,
    /// Admin expectations by unit index.
    pub admin: Mutex<BTreeMap<u64, UnitAdmin>>,
    next_unit: AtomicU64,
    /// Enrolled units (provisioning acknowledged), by boot worker: unit
    /// `i` is booted by worker `i % boot_workers` only, so that no unit
    /// boots twice at once (boot counters must increase).
    boot_sets: Vec<Mutex<Vec<BootUnit>>>,
    /// Every enrolled unit's index, for the gate and the admin.
    enrolled: RwLock<Vec<u64>>,
    /// Each station's last record sequence number (used or attempted).
    seqs: Vec<AtomicU64>,
    /// The last baseline version attempted, and whether the last one
    /// acknowledged withdrew build 2.1.3.
    baseline: Mutex<(u64, bool)>,
    admin_ops: AtomicU64,
}

impl World {
    pub(super) fn new(kit: Arc<Kit>, shape: Shape, seed: u64) -> World {
        World {
            boot_sets: (0..shape.boot_workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            seqs: (0..kit.stations.len()).map(|_| AtomicU64::new(0)).collect(),
            kit,
            shape,
            seed,
            ledger: Mutex::new(Vec::new()),
            admin: Mutex::new(BTreeMap::new()),
            next_unit: AtomicU64::new(0),
            enrolled: RwLock::new(Vec::new()),
            baseline: Mutex::new((0, false)),
            admin_ops: AtomicU64::new(0),
        }
    }

    fn ack(&self, cycle: u32, write: Write) {
        lock(&self.ledger).push(Acked { cycle, write });
    }

    fn enroll(&self, index: u64, key: Arc<SigningKey>) {
        let n = self.boot_sets.len() as u64;
        lock(&self.boot_sets[(index % n) as usize]).push(BootUnit {
            index,
            key,
            bootcount: 0,
        });
        self.enrolled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(index);
    }

    fn random_enrolled(&self, rng: &mut Rng) -> Option<u64> {
        let e = self.enrolled.read().unwrap_or_else(|p| p.into_inner());
        (!e.is_empty()).then(|| e[rng.below(e.len() as u64) as usize])
    }

    /// Before the first cycle: registers the kit's stations and publishes
    /// baseline 1 (both acknowledged writes of cycle 0).
    pub(super) async fn prepare(&self, admin: &Client) -> anyhow::Result<()> {
        for (s, key) in &self.kit.stations {
            admin
                .admin()
                .register_station(pb::RegisterStationRequest {
                    station_id: s.id.clone(),
                    public_key: key.public_key().spki_der().to_vec(),
                    allowed_kinds: vec![
                        pb::RecordKind::Provisioning as i32,
                        pb::RecordKind::Calibration as i32,
                    ],
                    allowed_models: vec![fleet::MODEL.into()],
                    allow_rekey: false,
                })
                .await?;
            self.ack(0, Write::Station { id: s.id.clone() });
        }
        admin
            .baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(fleet::baseline_envelope(&self.kit, 1, &[])),
            })
            .await?;
        *lock(&self.baseline) = (1, false);
        self.ack(0, Write::Baseline { version: 1 });
        Ok(())
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The kill's flags and the cycle's tallies, shared by every caller.
#[derive(Default)]
struct Signals {
    /// Set just before SIGKILL: failures from now on are calls in flight.
    killed: AtomicBool,
    /// Set after SIGKILL: callers stop.
    stop: AtomicBool,
    in_flight: AtomicU64,
    rejected: AtomicU64,
    first_rejections: Mutex<Vec<String>>,
}

/// How a call ended.
enum Answer<T> {
    Acked(T),
    /// Failed once the kill was under way: stored or not, unknown.
    InFlight,
    /// Refused (or stuck) before the kill.
    Rejected,
}

impl Signals {
    fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }

    async fn call<T>(
        &self,
        what: impl FnOnce() -> String,
        fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Answer<T> {
        let r = tokio::time::timeout(CALL_TIMEOUT, fut).await;
        if let Ok(Ok(v)) = r {
            return Answer::Acked(v);
        }
        if self.killed.load(SeqCst) {
            self.in_flight.fetch_add(1, SeqCst);
            return Answer::InFlight;
        }
        let why = match r {
            Ok(Err(s)) => format!("{:?} {}", s.code(), s.message()),
            _ => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        self.rejected.fetch_add(1, SeqCst);
        let mut first = lock(&self.first_rejections);
        if first.len() < 10 {
            first.push(format!("{}: {why}", what()));
        }
        Answer::Rejected
    }

    /// Sleeps `ms`, waking early when the callers stop.
    async fn pause(&self, ms: u64) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        while !self.stopping() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(ms.min(10))).await;
        }
    }
}

/// One cycle's callers, running.
pub(super) struct Load {
    signals: Arc<Signals>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a cycle's load saw.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct LoadOutcome {
    /// Calls that failed once the kill was under way.
    pub in_flight: u64,
    /// Calls refused before the kill, and the first few of them.
    pub rejected: u64,
    pub first_rejections: Vec<String>,
}

impl Load {
    /// Starts cycle `cycle`'s callers on `channels` (round robin).
    pub(super) fn start(
        world: &Arc<World>,
        channels: &[Channel],
        cycle: u32,
    ) -> anyhow::Result<Load> {
        let signals = Arc::new(Signals::default());
        let kit = &world.kit;
        let mut conn = 0usize;
        let mut client = |token: Option<&str>| -> anyhow::Result<Client> {
            conn += 1;
            Ok(Client::from_channel(
                channels[conn % channels.len()].clone(),
                token,
            )?)
        };
        let seed = |task: u64| {
            world.seed ^ (u64::from(cycle) << 32) ^ task.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        };
        let mut tasks = Vec::new();
        for w in 0..world.shape.boot_workers {
            let (world, signals, device) = (world.clone(), signals.clone(), client(None)?);
            let rng = Rng::new(seed(1000 + w as u64));
            tasks.push(tokio::spawn(async move {
                boots(&world, &signals, &device, w, rng, cycle).await
            }));
        }
        for st in 0..world.shape.stations.min(kit.stations.len()) {
            let (world, signals) = (world.clone(), signals.clone());
            let station = client(Some(&kit.stations[st].0.token))?;
            tasks.push(tokio::spawn(async move {
                enrolments(&world, &signals, &station, st, cycle).await
            }));
        }
        for m in 0..world.shape.mes_workers {
            let (world, signals) = (world.clone(), signals.clone());
            let mes = client(Some(&kit.file.mes_token))?;
            let rng = Rng::new(seed(2000 + m as u64));
            tasks.push(tokio::spawn(async move {
                releases(&world, &signals, &mes, rng, cycle).await
            }));
        }
        {
            let (world, signals) = (world.clone(), signals.clone());
            let admin = client(Some(&kit.file.admin_token))?;
            let rng = Rng::new(seed(3000));
            tasks.push(tokio::spawn(async move {
                administration(&world, &signals, &admin, rng, cycle).await
            }));
        }
        Ok(Load { signals, tasks })
    }

    /// Marks the kill as under way (call just before SIGKILL).
    pub(super) fn killing(&self) {
        self.signals.killed.store(true, SeqCst);
    }

    /// After SIGKILL: stops the callers and waits for them.
    pub(super) async fn finish(self) -> anyhow::Result<LoadOutcome> {
        self.signals.stop.store(true, SeqCst);
        for t in self.tasks {
            t.await?;
        }
        let s = &self.signals;
        Ok(LoadOutcome {
            in_flight: s.in_flight.load(SeqCst),
            rejected: s.rejected.load(SeqCst),
            first_rejections: lock(&s.first_rejections).clone(),
        })
    }
}

/// A boot worker: its units boot one after another, at random.
async fn boots(world: &World, sig: &Signals, device: &Client, w: usize, mut rng: Rng, cycle: u32) {
    while !sig.stopping() {
        let picked = {
            let mut units = lock(&world.boot_sets[w]);
            if units.is_empty() {
                None
            } else {
                let k = rng.below(units.len() as u64) as usize;
                let u = &mut units[k];
                // Strictly increasing per unit, also past a boot whose
                // evidence the kill may have let through unanswered.
                u.bootcount = fleet::now_ms().max(u.bootcount + 1);
                Some((u.index, u.key.clone(), u.bootcount))
            }
        };
        let Some((i, key, bootcount)) = picked else {
            sig.pause(5).await;
            continue;
        };
        let answer = sig
            .call(
                || format!("boot {}", serial(i)),
                fleet::boot_with(device, &key, i, bootcount),
            )
            .await;
        match answer {
            Answer::Acked(r) => world.ack(
                cycle,
                Write::Evidence {
                    serial: serial(i),
                    evidence_id: r.evidence_id,
                },
            ),
            Answer::InFlight => return,
            Answer::Rejected => sig.pause(10).await,
        }
    }
}

/// A station: enrolls a new unit (provisioning record), calibrates it
/// (calibration record), pauses, again.
async fn enrolments(world: &World, sig: &Signals, station: &Client, st: usize, cycle: u32) {
    let kit = &world.kit;
    while !sig.stopping() {
        let i = world.next_unit.fetch_add(1, SeqCst);
        let key = match SigningKey::generate(fleet::alg_of(i)) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                sig.rejected.fetch_add(1, SeqCst);
                lock(&sig.first_rejections).push(format!("key for {}: {e}", serial(i)));
                return;
            }
        };
        let seq = world.seqs[st].fetch_add(1, SeqCst) + 1;
        let env = fleet::provisioning(kit, &key, st, seq, i, fleet::now());
        let answer = sig
            .call(|| format!("provisioning of {}", serial(i)), async {
                let r = station
                    .factory()
                    .submit_record(pb::SubmitRecordRequest {
                        envelope: Some(env),
                    })
                    .await?;
                Ok(r.into_inner())
            })
            .await;
        match answer {
            Answer::Acked(r) => {
                world.ack(
                    cycle,
                    Write::Record {
                        serial: serial(i),
                        record_id: r.record_id,
                        kind: pb::RecordKind::Provisioning,
                    },
                );
                world.enroll(i, key);
            }
            Answer::InFlight => return,
            Answer::Rejected => {
                sig.pause(10).await;
                continue;
            }
        }
        let seq = world.seqs[st].fetch_add(1, SeqCst) + 1;
        let env = fleet::calibration(kit, st, seq, i, fleet::now());
        let answer = sig
            .call(|| format!("calibration of {}", serial(i)), async {
                let r = station
                    .factory()
                    .submit_record(pb::SubmitRecordRequest {
                        envelope: Some(env),
                    })
                    .await?;
                Ok(r.into_inner())
            })
            .await;
        match answer {
            Answer::Acked(r) => world.ack(
                cycle,
                Write::Record {
                    serial: serial(i),
                    record_id: r.record_id,
                    kind: pb::RecordKind::Calibration,
                },
            ),
            Answer::InFlight => return,
            Answer::Rejected => {}
        }
        sig.pause(world.shape.station_pause_ms).await;
    }
}

/// An MES caller: the release gate for random enrolled units.
async fn releases(world: &World, sig: &Signals, mes: &Client, mut rng: Rng, cycle: u32) {
    while !sig.stopping() {
        let Some(i) = world.random_enrolled(&mut rng) else {
            sig.pause(5).await;
            continue;
        };
        let answer = sig
            .call(|| format!("release check of {}", serial(i)), async {
                let r = mes
                    .release()
                    .check_release(pb::CheckReleaseRequest {
                        serial: serial(i),
                        want_result_token: false,
                    })
                    .await?;
                Ok(r.into_inner())
            })
            .await;
        match answer {
            // An enrolled unit's decision is always stored (only a serial
            // that is not enrolled gets an unstored HOLD without an id).
            Answer::Acked(d) if d.decision_id.is_empty() => {
                sig.rejected.fetch_add(1, SeqCst);
                lock(&sig.first_rejections)
                    .push(format!("release check of {}: no decision id", serial(i)));
            }
            Answer::Acked(d) => world.ack(
                cycle,
                Write::Decision {
                    serial: serial(i),
                    decision_id: d.decision_id,
                },
            ),
            Answer::InFlight => return,
            Answer::Rejected => {}
        }
        sig.pause(world.shape.mes_pause_ms).await;
    }
}

/// The security admin: quarantine on and off, placements, and now and then
/// a baseline that withdraws (or approves again) build 2.1.3. Each action
/// but an unplacement carries a unique reason or asset tag, so that its
/// audit entry can be told from every other.
async fn administration(world: &World, sig: &Signals, admin: &Client, mut rng: Rng, cycle: u32) {
    while !sig.stopping() {
        let roll = rng.below(100);
        if roll < world.shape.publish_percent {
            let (version, withdraw) = {
                let mut b = lock(&world.baseline);
                b.0 += 1;
                (b.0, !b.1)
            };
            let revoked: &[&str] = if withdraw { &["2.1.3"] } else { &[] };
            let env = fleet::baseline_envelope(&world.kit, version, revoked);
            let answer = sig
                .call(
                    || format!("baseline v{version}"),
                    admin
                        .baselines()
                        .publish_baseline(pb::PublishBaselineRequest {
                            envelope: Some(env),
                        }),
                )
                .await;
            match answer {
                Answer::Acked(_) => {
                    lock(&world.baseline).1 = withdraw;
                    world.ack(cycle, Write::Baseline { version });
                }
                Answer::InFlight => return,
                Answer::Rejected => {}
            }
            sig.pause(world.shape.admin_pause_ms).await;
            continue;
        }
        let Some(i) = world.random_enrolled(&mut rng) else {
            sig.pause(5).await;
            continue;
        };
        let n = world.admin_ops.fetch_add(1, SeqCst);
        let sn = serial(i);
        if roll < 55 {
            let on = !lock(&world.admin)
                .get(&i)
                .is_some_and(|a| a.quarantine.known.0);
            let reason = format!("soak cycle {cycle} action {n}");
            let answer = sig
                .call(
                    || format!("quarantine {on} of {sn}"),
                    admin.release().set_quarantine(pb::SetQuarantineRequest {
                        serial: sn.clone(),
                        on,
                        reason: reason.clone(),
                    }),
                )
                .await;
            let state = (on, if on { reason.clone() } else { String::new() });
            match answer {
                Answer::Acked(_) => {
                    lock(&world.admin)
                        .entry(i)
                        .or_default()
                        .quarantine
                        .settle(state);
                    world.ack(
                        cycle,
                        Write::Quarantine {
                            serial: sn,
                            on,
                            reason,
                        },
                    );
                }
                Answer::InFlight => {
                    lock(&world.admin).entry(i).or_default().quarantine.maybe = Some(state);
                    return;
                }
                Answer::Rejected => {}
            }
        } else {
            // One placement in ten removes the unit from its tenant. All
            // fields empty: the API shows no placement without a tenant or
            // site (an asset tag alone would be stored but never shown).
            let p = if rng.below(10) == 0 {
                Placement::default()
            } else {
                Placement {
                    tenant: TENANTS[rng.below(TENANTS.len() as u64) as usize].into(),
                    site: SITES[rng.below(SITES.len() as u64) as usize].into(),
                    department: "icu".into(),
                    asset_tag: format!("soak-{cycle}-{n}"),
                }
            };
            let answer = sig
                .call(
                    || format!("placement of {sn}"),
                    admin.admin().assign_device(pb::AssignDeviceRequest {
                        serial: sn.clone(),
                        tenant: p.tenant.clone(),
                        site: p.site.clone(),
                        department: p.department.clone(),
                        asset_tag: p.asset_tag.clone(),
                    }),
                )
                .await;
            match answer {
                Answer::Acked(_) => {
                    lock(&world.admin)
                        .entry(i)
                        .or_default()
                        .placement
                        .settle(p.clone());
                    world.ack(
                        cycle,
                        Write::Assign {
                            serial: sn,
                            assignment: p,
                        },
                    );
                }
                Answer::InFlight => {
                    lock(&world.admin).entry(i).or_default().placement.maybe = Some(p);
                    return;
                }
                Answer::Rejected => {}
            }
        }
        sig.pause(world.shape.admin_pause_ms).await;
    }
}
