//! The appraisal rules of docs/appraisal.md: one table row per code (claim, value,
//! overall tier), status precedence, and property tests for determinism and
//! against an independent oracle.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attestd_core::appraisal::*;
use attestd_core::baseline::Baseline;
use attestd_core::evidence::{CalibrationClaim, Claims, Component, HwVersion};
use attestd_core::ids::{Digest, Serial};
use attestd_core::record::CalibrationResult;
use attestd_core::time::UnixTime;
use attestd_core::Reason;
use proptest::prelude::*;

fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

const NOW: UnixTime = UnixTime(1_800_000_000);
const HOUR: i64 = 3600;

fn baseline() -> Baseline {
    let json = format!(
        r#"{{"model":"PM-200","hw_versions":["A","B"],"version":7,"effective_at":"2026-12-01T00:00:00Z",
        "description":"test","firmware":{{"components":[
          {{"name":"bootloader","min_svn":4,"approved":[{{"version":"2.1.0","svn":4,"digest":"{}"}}]}},
          {{"name":"application","min_svn":9,"approved":[{{"version":"2.1.3","svn":9,"digest":"{}"}},{{"version":"2.1.4","svn":10,"digest":"{}"}}]}}],
          "revoked":[{{"digest":"{}","reason":"CVE-2026-0001"}}]}},
        "calibration":{{"required":true,"max_interval_days":365,"parameters":[{{"name":"spo2_offset","min":-0.5,"max":0.5}}]}},
        "security":{{"require_secure_boot":true,"min_dbgstat":3}},
        "freshness":{{"max_evidence_age_hours":24,"nonce_required":true}}}}"#,
        d("boot").to_hex(),
        d("app3").to_hex(),
        d("app4").to_hex(),
        d("bad").to_hex()
    );
    Baseline::parse(json.as_bytes()).unwrap()
}

fn claims() -> Claims {
    Claims {
        nonce: Some(vec![1; 32]),
        iat: NOW,
        bootcount: 10,
        hwmodel: "PM-200".into(),
        hwversion: HwVersion {
            version: "B".into(),
            scheme: None,
        },
        dbgstat: 3,
        ueid: None,
        serial: Serial::parse("PM200-1", Reason::ClaimInvalid, "serial").unwrap(),
        secure_boot: true,
        components: vec![
            Component {
                name: "bootloader".into(),
                version: "2.1.0".into(),
                svn: 4,
                digest: d("boot"),
            },
            Component {
                name: "application".into(),
                version: "2.1.4".into(),
                svn: 10,
                digest: d("app4"),
            },
        ],
        calibration: Some(CalibrationClaim {
            id: "CAL-1".into(),
            digest: d("cal"),
        }),
    }
}

fn unit() -> UnitFacts {
    UnitFacts {
        model: "PM-200".into(),
        hw_version: "B".into(),
        provisioning_record_id: "rec_p".into(),
        provisioning_station_id: "line1-prov".into(),
        revoked: false,
        calibration: Some(CalibrationFacts {
            record_id: "rec_c".into(),
            station_id: "line1-cal".into(),
            result: CalibrationResult::Pass,
            performed_at: NOW.plus_seconds(-30 * 24 * HOUR),
            received_at_ms: (NOW.0 - 30 * 24 * HOUR) * 1000,
            next_due_at: NOW.plus_seconds(300 * 24 * HOUR),
            digest: d("cal"),
            parameters: vec![("spo2_offset".into(), 0.04)],
            instruments: vec![("REF-1".into(), NOW.plus_seconds(100 * 24 * HOUR))],
        }),
        revoked_stations: vec![],
    }
}

/// Everything an appraisal depends on, owned.
#[derive(Clone)]
struct Inputs {
    claims: Claims,
    nonce_fresh: bool,
    received_at_ms: i64,
    prior_bootcount: Option<u64>,
    prior_svns: Vec<(String, u64)>,
    unit: UnitFacts,
    baseline: Option<Baseline>,
    now: UnixTime,
}

impl Inputs {
    fn good() -> Inputs {
        Inputs {
            claims: claims(),
            nonce_fresh: true,
            received_at_ms: NOW.0 * 1000,
            prior_bootcount: Some(9),
            prior_svns: vec![("application".into(), 10), ("bootloader".into(), 4)],
            unit: unit(),
            baseline: Some(baseline()),
            now: NOW,
        }
    }

    fn appraise(&self) -> Appraisal {
        let ev = EvidenceFacts {
            claims: &self.claims,
            evidence_id: "ev_1",
            nonce_fresh: self.nonce_fresh,
            received_at_ms: self.received_at_ms,
            prior_bootcount: self.prior_bootcount,
            prior_svns: &self.prior_svns,
        };
        appraise(&ev, &self.unit, self.baseline.as_ref(), self.now)
    }
}

/// The reported application component, if a mutation left one.
fn app(i: &mut Inputs) -> &mut Component {
    if !i.claims.components.iter().any(|c| c.name == "application") {
        i.claims.components.push(Component {
            name: "application".into(),
            version: "x".into(),
            svn: 0,
            digest: d("none"),
        });
    }
    i.claims
        .components
        .iter_mut()
        .find(|c| c.name == "application")
        .unwrap()
}

/// Applies `f` to the calibration record, if a mutation left one.
fn cal(i: &mut Inputs, f: impl FnOnce(&mut CalibrationFacts, i64)) {
    let at = i.received_at_ms;
    if let Some(c) = i.unit.calibration.as_mut() {
        f(c, at);
    }
}

#[test]
fn a_unit_that_matches_everything_is_affirming() {
    let a = Inputs::good().appraise();
    assert_eq!(a.findings, vec![], "{:?}", a.findings);
    assert_eq!(a.tier, Tier::Affirming);
    assert_eq!(a.vector.values(), [2, 2, 3, 0, 2, 0, 0, 2]);
    assert_eq!(
        (a.baseline_model.as_str(), a.baseline_version),
        ("PM-200", 7)
    );
    assert_eq!(
        (
            a.provisioning_record_id.as_str(),
            a.calibration_record_id.as_str(),
            a.evidence_id.as_str()
        ),
        ("rec_p", "rec_c", "ev_1")
    );
}

type Mutation = fn(&mut Inputs);

/// (mutation, code, claim, claim value after, overall tier)
/// (what, mutation, code, claim, claim value after, overall tier)
type Row = (&'static str, Mutation, Code, Option<Claim>, i8, Tier);

fn table() -> Vec<Row> {
    vec![
        (
            "hwmodel differs",
            |i| i.claims.hwmodel = "IP-900".into(),
            Code::IdentityMismatch,
            Some(Claim::InstanceIdentity),
            96,
            Tier::Contraindicated,
        ),
        (
            "hwversion differs",
            |i| i.claims.hwversion.version = "A".into(),
            Code::IdentityMismatch,
            Some(Claim::InstanceIdentity),
            96,
            Tier::Contraindicated,
        ),
        (
            "bootcount went back",
            |i| i.prior_bootcount = Some(50),
            Code::BootcountRegressed,
            Some(Claim::InstanceIdentity),
            96,
            Tier::Contraindicated,
        ),
        (
            "unit revoked",
            |i| i.unit.revoked = true,
            Code::DeviceRevoked,
            Some(Claim::InstanceIdentity),
            96,
            Tier::Contraindicated,
        ),
        (
            "no baseline",
            |i| i.baseline = None,
            Code::NoBaseline,
            Some(Claim::Hardware),
            0,
            Tier::None,
        ),
        (
            "hw version not covered",
            |i| {
                i.unit.hw_version = "C".into();
                i.claims.hwversion.version = "C".into();
            },
            Code::NoBaseline,
            Some(Claim::Hardware),
            0,
            Tier::None,
        ),
        (
            "unapproved application",
            |i| app(i).digest = d("evil"),
            Code::FirmwareUnapproved,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "approved digest, wrong svn",
            |i| app(i).svn = 11,
            Code::FirmwareUnapproved,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "revoked application",
            |i| app(i).digest = d("bad"),
            Code::FirmwareRevoked,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "svn below min_svn",
            |i| {
                let a = app(i);
                a.svn = 8;
            },
            Code::FirmwareRollback,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "svn below what the unit ran",
            |i| {
                let a = app(i);
                a.svn = 9;
                a.digest = d("app3");
            },
            Code::FirmwareRollback,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "component missing",
            |i| i.claims.components.retain(|c| c.name != "application"),
            Code::ComponentMissing,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "component unexpected",
            |i| {
                i.claims.components.push(Component {
                    name: "radio".into(),
                    version: "1".into(),
                    svn: 1,
                    digest: d("radio"),
                })
            },
            Code::ComponentUnexpected,
            Some(Claim::Executables),
            96,
            Tier::Contraindicated,
        ),
        (
            "secure boot off",
            |i| i.claims.secure_boot = false,
            Code::SecureBootDisabled,
            Some(Claim::Configuration),
            96,
            Tier::Contraindicated,
        ),
        (
            "debug enabled",
            |i| i.claims.dbgstat = 1,
            Code::DebugEnabled,
            Some(Claim::Configuration),
            96,
            Tier::Contraindicated,
        ),
        (
            "calibration changed after the record",
            |i| {
                if let Some(c) = i.claims.calibration.as_mut() {
                    c.digest = d("tampered");
                }
            },
            Code::CalibrationMismatch,
            Some(Claim::Configuration),
            -97,
            Tier::Contraindicated,
        ),
        (
            "no calibration record",
            |i| i.unit.calibration = None,
            Code::CalibrationMissing,
            Some(Claim::Configuration),
            -98,
            Tier::Contraindicated,
        ),
        (
            "no calibration claim",
            |i| i.claims.calibration = None,
            Code::CalibrationMissing,
            Some(Claim::Configuration),
            -98,
            Tier::Contraindicated,
        ),
        (
            "calibration FAIL",
            |i| cal(i, |c, _| c.result = CalibrationResult::Fail),
            Code::CalibrationFailed,
            Some(Claim::Configuration),
            -99,
            Tier::Contraindicated,
        ),
        (
            "as_left out of bounds",
            |i| cal(i, |c, _| c.parameters.iter_mut().for_each(|p| p.1 = 0.7)),
            Code::CalibrationOutOfRange,
            Some(Claim::Configuration),
            -100,
            Tier::Contraindicated,
        ),
        (
            "required parameter absent",
            |i| cal(i, |c, _| c.parameters.clear()),
            Code::CalibrationOutOfRange,
            Some(Claim::Configuration),
            -100,
            Tier::Contraindicated,
        ),
        (
            "past next_due_at",
            |i| cal(i, |c, _| c.next_due_at = NOW.plus_seconds(-1)),
            Code::CalibrationOverdue,
            Some(Claim::Configuration),
            32,
            Tier::Warning,
        ),
        (
            "past max_interval_days",
            |i| {
                cal(i, |c, _| {
                    c.performed_at = NOW.plus_seconds(-366 * 24 * HOUR)
                })
            },
            Code::CalibrationOverdue,
            Some(Claim::Configuration),
            32,
            Tier::Warning,
        ),
        (
            "new record not yet attested",
            |i| {
                cal(i, |c, at| {
                    c.digest = d("cal-next");
                    c.received_at_ms = at + 1;
                })
            },
            Code::CalibrationUnconfirmed,
            Some(Claim::Configuration),
            32,
            Tier::Warning,
        ),
        (
            "calibration station revoked",
            |i| i.unit.revoked_stations = vec!["line1-cal".into()],
            Code::StationRevoked,
            Some(Claim::SourcedData),
            96,
            Tier::Contraindicated,
        ),
        (
            "reference instrument expired",
            |i| {
                cal(i, |c, _| {
                    let before = c.performed_at.plus_seconds(-1);
                    c.instruments.iter_mut().for_each(|x| x.1 = before);
                })
            },
            Code::CalibrationReferenceExpired,
            Some(Claim::SourcedData),
            32,
            Tier::Warning,
        ),
        (
            "deferred evidence, nonce required",
            |i| i.nonce_fresh = false,
            Code::FreshnessUnverified,
            None,
            0,
            Tier::Warning,
        ),
    ]
}

fn claim_value(v: &TrustVector, c: Claim) -> i8 {
    match c {
        Claim::InstanceIdentity => v.instance_identity,
        Claim::Hardware => v.hardware,
        Claim::Executables => v.executables,
        Claim::Configuration => v.configuration,
        Claim::SourcedData => v.sourced_data,
        Claim::Freshness => unreachable!(),
    }
}

#[test]
fn every_code_with_its_claim_value_and_tier() {
    let mut covered = std::collections::HashSet::new();
    for (name, mutate, code, claim, value, tier) in table() {
        let mut i = Inputs::good();
        mutate(&mut i);
        let a = i.appraise();
        let f = a
            .findings
            .iter()
            .find(|f| f.code == code)
            .unwrap_or_else(|| panic!("{name}: no {} in {:?}", code.as_str(), a.findings));
        assert_eq!(f.code.claim(), claim.unwrap_or(Claim::Freshness), "{name}");
        if let Some(c) = claim {
            assert_eq!(
                claim_value(&a.vector, c),
                value,
                "{name}: value of {}",
                c.as_str()
            );
        }
        assert_eq!(a.tier, tier, "{name}: tier");
        covered.insert(code);
    }
    for c in Code::ALL {
        assert!(covered.contains(c), "no table row for {}", c.as_str());
    }
}

#[test]
fn freshness_caps_at_warning_but_contraindications_win() {
    let mut i = Inputs::good();
    i.nonce_fresh = false;
    assert_eq!(i.appraise().tier, Tier::Warning);
    i.claims.dbgstat = 0;
    assert_eq!(i.appraise().tier, Tier::Contraindicated);
    // Without nonce_required, deferred evidence can affirm.
    let mut i = Inputs::good();
    i.nonce_fresh = false;
    i.baseline.as_mut().unwrap().nonce_required = false;
    assert_eq!(i.appraise().tier, Tier::Affirming);
}

#[test]
fn reasons_come_in_claim_order_then_component() {
    let mut i = Inputs::good();
    i.unit.revoked_stations = vec!["line1-cal".into()];
    i.claims.dbgstat = 0;
    app(&mut i).digest = d("evil");
    i.claims
        .components
        .iter_mut()
        .find(|c| c.name == "bootloader")
        .unwrap()
        .digest = d("evil-boot");
    i.claims.hwmodel = "X".into();
    let a = i.appraise();
    let got: Vec<(&str, &str)> = a
        .findings
        .iter()
        .map(|f| (f.code.as_str(), f.component.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("IDENTITY_MISMATCH", ""),
            ("FIRMWARE_UNAPPROVED", "application"),
            ("FIRMWARE_UNAPPROVED", "bootloader"),
            ("DEBUG_ENABLED", ""),
            ("STATION_REVOKED", ""),
        ]
    );
}

#[test]
fn status_precedence() {
    let good = Inputs::good();
    let b = good.baseline.clone();
    let a = good.appraise();
    let last = Some(NOW.0 * 1000);
    assert_eq!(
        status(Some(&a), last, b.as_ref(), false, false, NOW),
        Status::Trusted
    );
    assert_eq!(
        status(Some(&a), last, b.as_ref(), true, false, NOW),
        Status::Quarantined
    );
    assert_eq!(
        status(None, None, b.as_ref(), false, false, NOW),
        Status::Unknown
    );
    // Revoked before it ever attested: untrusted, not unknown; a
    // quarantine still shows first.
    assert_eq!(
        status(None, None, b.as_ref(), false, true, NOW),
        Status::Untrusted
    );
    assert_eq!(
        status(None, None, b.as_ref(), true, true, NOW),
        Status::Quarantined
    );
    let later = NOW.plus_seconds(25 * HOUR);
    assert_eq!(
        status(Some(&a), last, b.as_ref(), false, false, later),
        Status::Stale
    );
    let mut w = Inputs::good();
    w.nonce_fresh = false;
    let wa = w.appraise();
    assert_eq!(
        status(Some(&wa), last, b.as_ref(), false, false, NOW),
        Status::Warning
    );
    assert_eq!(
        status(Some(&wa), last, b.as_ref(), false, false, later),
        Status::Stale,
        "STALE outranks WARNING"
    );
    let mut u = Inputs::good();
    u.claims.dbgstat = 0;
    let ua = u.appraise();
    assert_eq!(
        status(Some(&ua), last, b.as_ref(), false, false, later),
        Status::Untrusted,
        "UNTRUSTED outranks STALE"
    );
    assert_eq!(
        status(Some(&ua), last, b.as_ref(), true, false, later),
        Status::Quarantined
    );
    let mut n = Inputs::good();
    n.baseline = None;
    assert_eq!(
        status(Some(&n.appraise()), last, None, false, false, later),
        Status::Unknown
    );
}

#[test]
fn next_check_is_the_first_time_based_change() {
    let i = Inputs::good();
    let b = i.baseline.as_ref();
    let last = Some(NOW.0 * 1000);
    // Stale after 24 h comes before the calibration due date.
    assert_eq!(
        next_check(&i.unit, b, last, NOW),
        Some(NOW.plus_seconds(24 * HOUR + 1))
    );
    let mut soon = i.unit.clone();
    soon.calibration
        .as_mut()
        .expect("fixture has a record")
        .next_due_at = NOW.plus_seconds(HOUR);
    assert_eq!(
        next_check(&soon, b, last, NOW),
        Some(NOW.plus_seconds(HOUR + 1))
    );
    assert_eq!(next_check(&i.unit, None, last, NOW), None);
}

// ---- properties ---------------------------------------------------------------

fn mutated(mask: u32) -> Inputs {
    let mut i = Inputs::good();
    for (bit, (_, m, ..)) in table().into_iter().enumerate() {
        if mask & (1 << bit) != 0 {
            m(&mut i);
        }
    }
    i
}

/// An independent statement of "every check passes", written from
/// docs/appraisal.md without looking at the engine.
fn oracle_all_pass(i: &Inputs) -> bool {
    let Some(b) = &i.baseline else { return false };
    let c = &i.claims;
    let u = &i.unit;
    if !(b.model.as_str() == u.model && b.hw_versions.contains(&u.hw_version)) {
        return false;
    }
    if c.hwmodel != u.model || c.hwversion.version != u.hw_version || u.revoked {
        return false;
    }
    if i.nonce_fresh && i.prior_bootcount.is_some_and(|p| c.bootcount < p) {
        return false;
    }
    let names: std::collections::BTreeSet<&str> =
        c.components.iter().map(|x| x.name.as_str()).collect();
    let want: std::collections::BTreeSet<&str> =
        b.components.iter().map(|x| x.name.as_str()).collect();
    if names != want {
        return false;
    }
    for x in &c.components {
        let p = b.components.iter().find(|p| p.name == x.name).unwrap();
        if b.revoked.iter().any(|(r, _)| *r == x.digest)
            || !p
                .approved
                .iter()
                .any(|a| a.digest == x.digest && a.svn == x.svn)
        {
            return false;
        }
        if x.svn < p.min_svn || i.prior_svns.iter().any(|(n, s)| *n == x.name && x.svn < *s) {
            return false;
        }
    }
    if (b.require_secure_boot && !c.secure_boot) || c.dbgstat < b.min_dbgstat {
        return false;
    }
    if b.calibration_required {
        let (Some(r), Some(cl)) = (&u.calibration, &c.calibration) else {
            return false;
        };
        if r.digest != cl.digest || r.result != CalibrationResult::Pass {
            return false;
        }
        for bound in &b.parameters {
            match r.parameters.iter().find(|(n, _)| *n == bound.name) {
                Some((_, v)) if *v >= bound.min && *v <= bound.max => {}
                _ => return false,
            }
        }
        let interval_end = r.performed_at.0 + b.max_interval_days as i64 * 86_400;
        if i.now.0 > r.next_due_at.0 || i.now.0 > interval_end {
            return false;
        }
    }
    if !u.revoked_stations.is_empty() {
        return false;
    }
    if let Some(r) = &u.calibration {
        if r.instruments
            .iter()
            .any(|(_, due)| due.0 < r.performed_at.0)
        {
            return false;
        }
    }
    !b.nonce_required || i.nonce_fresh
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn appraisal_is_deterministic(mask in any::<u32>()) {
        let i = mutated(mask);
        let a = i.appraise();
        let b = i.clone().appraise();
        prop_assert_eq!(&a, &b);
        // Reasons are in claim order, then component.
        let keys: Vec<_> = a.findings.iter().map(|f| (f.code.claim(), f.component.clone())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(keys, sorted);
    }

    #[test]
    fn affirming_exactly_when_every_check_passes(mask in any::<u32>()) {
        let i = mutated(mask);
        let a = i.appraise();
        prop_assert_eq!(a.tier == Tier::Affirming, oracle_all_pass(&i), "mask {:#x}: {:?}", mask, a.findings);
        prop_assert_eq!(a.tier == Tier::Affirming, a.findings.is_empty());
    }
}
