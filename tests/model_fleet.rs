//! Model-based test of the fleet views: 1,000 random operations (enroll,
//! boot, tamper, recalibrate, revoke, quarantine, assign, time passing) on an
//! in-process server; after each one, GetFleetSummary (plain, grouped, and
//! as a hospital tenant) and ListDevices (plain, by status, by tenant) must
//! equal a recount from GetDevice of every unit. Run on one sled server, and
//! on three replicas sharing one PostgreSQL database with every operation,
//! every read and every step of a boot (challenge, evidence) going to a
//! different replica in turn.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use attestd_client::core::baseline::{
    ApprovedDoc, BaselineDoc, CalibrationPolicyDoc, ComponentDoc, FirmwareDoc, FreshnessDoc,
    SecurityDoc,
};
use attestd_client::core::evidence::{CalibrationClaim, Component};
use attestd_client::core::ids::Digest;
use attestd_client::core::keys::KeyAlg;
use attestd_client::core::time::UnixTime;
use attestd_client::evidence::sign_evidence;
use attestd_client::pb;
use attestd_client::record::{sign_baseline, sign_calibration, sign_provisioning};
use attestd_client::{Client, SigningKey};
use attestd_server::clock::{Clock, ManualClock};
use attestd_server::settings::ReleaseConfig;
use attestd_store::sled_store::{SledConfig, SledStore};
use attestd_store::Store;
use base64::Engine as _;
use common::inproc::InProc;
use common::*;

const UNITS: usize = 12;
const STEPS: usize = 1000;
const HOSPITAL_B_TOKEN: &str = "test-hospital-b-token";

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Unit {
    serial: String,
    model: &'static str,
    key: SigningKey,
    enrolled: bool,
    bootcount: u64,
    cal_digest: Digest,
}

/// One replica's clients.
struct Replica {
    admin: Client,
    device: Client,
    prov: Client,
    cal: Client,
    hospital: Client,
}

struct World {
    /// The servers (one, or replicas of one store); `srv` is the first.
    srvs: Vec<InProc>,
    replicas: Vec<Replica>,
    /// Which replica serves the next call.
    turn: usize,
    prov_key: SigningKey,
    cal_key: SigningKey,
    units: Vec<Unit>,
    seq: u64,
}

fn app_digest(v: &str) -> Digest {
    Digest::of(format!("application {v}").as_bytes())
}

fn baseline(model: &str) -> BaselineDoc {
    BaselineDoc {
        model: model.into(),
        hw_versions: vec!["B".into()],
        version: 1,
        effective_at: "2020-01-01T00:00:00Z".into(),
        description: String::new(),
        firmware: FirmwareDoc {
            components: vec![
                ComponentDoc {
                    name: "bootloader".into(),
                    min_svn: 4,
                    approved: vec![ApprovedDoc {
                        version: "2.1.0".into(),
                        svn: 4,
                        digest: Digest::of(b"bootloader 2.1.0").to_hex(),
                    }],
                },
                ComponentDoc {
                    name: "application".into(),
                    min_svn: 9,
                    approved: ["2.1.3", "2.1.4"]
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ApprovedDoc {
                            version: v.to_string(),
                            svn: 9 + i as u64,
                            digest: app_digest(v).to_hex(),
                        })
                        .collect(),
                },
            ],
            revoked: vec![],
        },
        calibration: CalibrationPolicyDoc {
            required: true,
            max_interval_days: 365,
            parameters: vec![],
        },
        security: SecurityDoc {
            require_secure_boot: true,
            min_dbgstat: 3,
        },
        freshness: FreshnessDoc {
            max_evidence_age_hours: 24,
            nonce_required: true,
        },
    }
}

impl World {
    fn now(&self) -> UnixTime {
        UnixTime(self.srvs[0].clock.now_ms() / 1000)
    }

    /// The replica of the next call (round robin).
    fn next(&mut self) -> &Replica {
        self.turn += 1;
        &self.replicas[self.turn % self.replicas.len()]
    }

    async fn enroll(&mut self, i: usize) {
        self.seq += 1;
        let (serial, model) = (self.units[i].serial.clone(), self.units[i].model);
        let mut doc = provisioning_doc("line1-prov", self.seq, &serial, model, &self.units[i].key);
        doc.performed_at = self.now().plus_seconds(-60).to_string();
        let env = sign_provisioning(&doc, &self.prov_key);
        self.next()
            .prov
            .factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(env),
            })
            .await
            .expect("enroll");
        self.recalibrate(i).await;
        self.units[i].enrolled = true;
    }

    async fn recalibrate(&mut self, i: usize) {
        self.seq += 1;
        let mut cal = calibration_doc("line1-cal", self.seq, &self.units[i].serial, 0.0, "PASS");
        cal.performed_at = self.now().plus_seconds(-60).to_string();
        cal.next_due_at = self.now().plus_seconds(30 * 86_400).to_string();
        cal.reference_instruments[0].due_at = self.now().plus_seconds(400 * 86_400).to_string();
        let env = sign_calibration(&cal, &self.cal_key);
        self.next()
            .cal
            .factory()
            .submit_record(pb::SubmitRecordRequest {
                envelope: Some(env),
            })
            .await
            .expect("calibrate");
        self.units[i].cal_digest = Digest::from_hex(&cal.calibration_digest).unwrap();
    }

    async fn boot(&mut self, i: usize, app: &str, tamper: bool) {
        // The challenge from one replica, the evidence to the next.
        let challenger = self.next().device.clone();
        let submitter = self.next().device.clone();
        let u = &mut self.units[i];
        u.bootcount += 1;
        let nonce = challenge(&challenger, &u.serial).await;
        let mut c = claims(&u.serial, u.bootcount);
        c.hwmodel = u.model.into();
        c.nonce = Some(nonce);
        c.components[0].digest = Digest::of(b"bootloader 2.1.0");
        let svn = if app == "2.1.3" { 9 } else { 10 };
        c.components.push(Component {
            name: "application".into(),
            version: app.into(),
            svn,
            digest: app_digest(app),
        });
        let digest = if tamper {
            Digest::of(b"tampered")
        } else {
            u.cal_digest
        };
        c.calibration = Some(CalibrationClaim {
            id: "CAL".into(),
            digest,
        });
        submit(&submitter, sign_evidence(&c, &u.key))
            .await
            .expect("boot");
    }
}

fn firmware_key(d: &pb::Device) -> String {
    let mut parts: Vec<String> = d
        .firmware
        .iter()
        .map(|f| format!("{}={}", f.name, f.version))
        .collect();
    parts.sort();
    parts.join(",")
}

type Counts = BTreeMap<(String, i32), u64>;

fn summary_counts(s: &pb::FleetSummary, grouped: bool) -> Counts {
    let mut out = Counts::new();
    if grouped {
        for g in &s.groups {
            for c in &g.counts {
                out.insert((g.key.clone(), c.status), c.count);
            }
        }
    } else {
        for c in &s.counts {
            out.insert((String::new(), c.status), c.count);
        }
    }
    out.retain(|_, n| *n > 0);
    out
}

fn recount(devices: &[pb::Device], key: impl Fn(&pb::Device) -> String) -> Counts {
    let mut out = Counts::new();
    for d in devices {
        *out.entry((key(d), d.status)).or_default() += 1;
    }
    out
}

async fn list_all(c: &Client, filter: pb::DeviceFilter) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = c
            .fleet()
            .list_devices(pb::ListDevicesRequest {
                filter: Some(filter.clone()),
                page_size: 5,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        for d in page.devices {
            assert!(out.insert(d.serial.clone()), "{} listed twice", d.serial);
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn check(w: &mut World, step: usize, op: &str) {
    // Units read through one replica, views through the next.
    let admin = w.next().admin.clone();
    let units_admin = admin.clone();
    let admin = &w.next().admin.clone();
    let hospital = &w.next().hospital.clone();
    let mut devices = Vec::new();
    for u in w.units.iter().filter(|u| u.enrolled) {
        let d = units_admin
            .fleet()
            .get_device(pb::GetDeviceRequest {
                serial: u.serial.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        devices.push(d);
    }
    let ctx = format!("after step {step} ({op})");
    let summary = |group: pb::SummaryGroup, tenant: &str| {
        let admin = admin.clone();
        let tenant = tenant.to_owned();
        async move {
            admin
                .fleet()
                .get_fleet_summary(pb::GetFleetSummaryRequest {
                    filter: Some(pb::DeviceFilter {
                        tenant,
                        ..Default::default()
                    }),
                    group_by: group as i32,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let all = summary(pb::SummaryGroup::Unspecified, "").await;
    assert_eq!(
        summary_counts(&all, false),
        recount(&devices, |_| String::new()),
        "summary {ctx}"
    );
    assert_eq!(all.total as usize, devices.len(), "summary total {ctx}");
    for (group, key) in [
        (
            pb::SummaryGroup::Model,
            (|d: &pb::Device| d.model.clone()) as fn(&pb::Device) -> String,
        ),
        (pb::SummaryGroup::Site, |d: &pb::Device| {
            d.assignment
                .as_ref()
                .map(|a| a.site.clone())
                .unwrap_or_default()
        }),
        (pb::SummaryGroup::Firmware, firmware_key),
    ] {
        let s = summary(group, "").await;
        assert_eq!(
            summary_counts(&s, true),
            recount(&devices, key),
            "summary by {group:?} {ctx}"
        );
    }
    let tenant_of = |d: &pb::Device| {
        d.assignment
            .as_ref()
            .map(|a| a.tenant.clone())
            .unwrap_or_default()
    };
    let st_mary: Vec<pb::Device> = devices
        .iter()
        .filter(|d| tenant_of(d) == "st-mary")
        .cloned()
        .collect();
    let s = summary(pb::SummaryGroup::Unspecified, "st-mary").await;
    assert_eq!(
        summary_counts(&s, false),
        recount(&st_mary, |_| String::new()),
        "tenant summary {ctx}"
    );
    // The hospital's own view is confined to its tenant.
    let hs = hospital
        .fleet()
        .get_fleet_summary(pb::GetFleetSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        summary_counts(&hs, false),
        recount(&st_mary, |_| String::new()),
        "hospital summary {ctx}"
    );

    let every: BTreeSet<String> = devices.iter().map(|d| d.serial.clone()).collect();
    assert_eq!(
        list_all(admin, pb::DeviceFilter::default()).await,
        every,
        "list {ctx}"
    );
    for status in 1..=6 {
        let want: BTreeSet<String> = devices
            .iter()
            .filter(|d| d.status == status)
            .map(|d| d.serial.clone())
            .collect();
        let got = list_all(
            admin,
            pb::DeviceFilter {
                statuses: vec![status],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(got, want, "list status {status} {ctx}");
    }
    let want: BTreeSet<String> = st_mary.iter().map(|d| d.serial.clone()).collect();
    assert_eq!(
        list_all(hospital, pb::DeviceFilter::default()).await,
        want,
        "hospital list {ctx}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_and_lists_always_equal_a_recount() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(
            dir.path(),
            &SledConfig {
                cache_capacity: 16 << 20,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    model(vec![store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_and_lists_always_equal_a_recount_on_three_replicas() {
    let db = attestd_store::postgres::testdb::TestDb::create();
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        let cfg = attestd_store::postgres::PgConfig {
            pool_size: 4,
            ..attestd_store::postgres::PgConfig::new(db.url.clone())
        };
        stores.push(Arc::new(
            attestd_store::postgres::PgStore::open(&cfg)
                .await
                .expect("replica"),
        ));
    }
    model(stores).await;
}

/// The model walk on servers over `stores` (one, or replicas of one store).
async fn model(stores: Vec<Arc<dyn Store>>) {
    let release_key = SigningKey::generate(KeyAlg::Ed25519).unwrap();
    let release = ReleaseConfig {
        threshold: 1,
        keys: vec![
            base64::engine::general_purpose::STANDARD.encode(release_key.public_key().spki_der())
        ],
    };
    let clock = Arc::new(ManualClock::new(now().0 * 1000));
    let mut srvs = Vec::new();
    for store in stores {
        srvs.push(
            InProc::start_on_clock(store, release.clone(), clock.clone(), Default::default()).await,
        );
    }
    let mut replicas = Vec::new();
    for srv in &srvs {
        replicas.push(Replica {
            admin: srv.client(Some(ADMIN_TOKEN)).await,
            device: srv.client(None).await,
            prov: srv.client(Some(station_token("line1-prov"))).await,
            cal: srv.client(Some(station_token("line1-cal"))).await,
            hospital: srv.client(Some(HOSPITAL_TOKEN)).await,
        });
    }
    let admin = replicas[0].admin.clone();
    let models = &["PM-200", "IP-900"];
    let prov_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        models,
    )
    .await;
    let cal_key =
        register_station(&admin, "line1-cal", &[pb::RecordKind::Calibration], models).await;
    for m in models {
        admin
            .baselines()
            .publish_baseline(pb::PublishBaselineRequest {
                envelope: Some(sign_baseline(&baseline(m), &[&release_key])),
            })
            .await
            .unwrap();
    }
    let units = (0..UNITS)
        .map(|i| Unit {
            serial: format!("U-{i:03}"),
            model: if i % 4 == 3 { "IP-900" } else { "PM-200" },
            key: SigningKey::generate(KeyAlg::Es256).unwrap(),
            enrolled: false,
            bootcount: 0,
            cal_digest: Digest::of(b"none"),
        })
        .collect();
    let mut w = World {
        srvs,
        replicas,
        turn: 0,
        prov_key,
        cal_key,
        units,
        seq: 0,
    };
    let _other_hospital = w.srvs[0].client(Some(HOSPITAL_B_TOKEN)).await;
    let mut rng = Rng(0x5eed_a77e_57d0_0001);
    let mut seen_statuses = BTreeSet::new();
    for step in 0..STEPS {
        let i = rng.below(UNITS as u64) as usize;
        let op = if !w.units[i].enrolled {
            w.enroll(i).await;
            "enroll"
        } else {
            match rng.below(100) {
                0..=39 => {
                    let app = if rng.below(3) == 0 { "2.1.3" } else { "2.1.4" };
                    w.boot(i, app, false).await;
                    "boot"
                }
                40..=47 => {
                    w.boot(i, "2.1.4", true).await;
                    "tamper"
                }
                48..=55 => {
                    w.recalibrate(i).await;
                    "recalibrate"
                }
                56..=58 => {
                    let serial = w.units[i].serial.clone();
                    w.next()
                        .admin
                        .admin()
                        .revoke_device(pb::RevokeDeviceRequest {
                            serial,
                            reason: "model test".into(),
                        })
                        .await
                        .unwrap();
                    "revoke"
                }
                59..=68 => {
                    let on = rng.below(2) == 0;
                    let serial = w.units[i].serial.clone();
                    w.next()
                        .admin
                        .release()
                        .set_quarantine(pb::SetQuarantineRequest {
                            serial,
                            on,
                            reason: "model test".into(),
                        })
                        .await
                        .unwrap();
                    "quarantine"
                }
                69..=84 => {
                    let tenant = ["st-mary", "county", ""][rng.below(3) as usize];
                    let site = if tenant.is_empty() {
                        ""
                    } else {
                        ["ward-1", "ward-2"][rng.below(2) as usize]
                    };
                    let serial = w.units[i].serial.clone();
                    w.next()
                        .admin
                        .admin()
                        .assign_device(pb::AssignDeviceRequest {
                            serial,
                            tenant: tenant.into(),
                            site: site.into(),
                            department: if tenant.is_empty() { "" } else { "icu" }.into(),
                            asset_tag: String::new(),
                        })
                        .await
                        .unwrap();
                    "assign"
                }
                _ => {
                    let by = [10 * 60, 3 * 3600, 25 * 3600][rng.below(3) as usize];
                    clock.advance_ms(by * 1000);
                    "time passes"
                }
            }
        };
        // The job runs where the turn is (any replica may hold its lease).
        let t = w.turn % w.srvs.len();
        w.srvs[t].settle().await;
        check(&mut w, step, op).await;
        let reader = w.next().admin.clone();
        for u in w.units.iter().filter(|u| u.enrolled) {
            let d = reader
                .fleet()
                .get_device(pb::GetDeviceRequest {
                    serial: u.serial.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            seen_statuses.insert(d.status);
        }
    }
    // The walk reached every status, so every counter was exercised.
    assert_eq!(
        seen_statuses,
        (1..=6).collect::<BTreeSet<i32>>(),
        "statuses seen"
    );
}
