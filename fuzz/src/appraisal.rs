//! The appraisal that follows decoding, run on fuzzed claims against the
//! unit of the vectors (provisioning vector, documented calibration record
//! and baseline) and variations of it, with the invariants of
//! docs/appraisal.md checked on every verdict.

use attestd_core::appraisal::{
    appraise, next_check, status, Appraisal, CalibrationFacts, Claim, Code, EvidenceFacts, Status,
    Tier, UnitFacts,
};
use attestd_core::baseline::Baseline;
use attestd_core::evidence::Claims;
use attestd_core::ids::Digest;
use attestd_core::record::CalibrationResult;
use attestd_core::time::UnixTime;

use crate::fixtures;

/// One set of facts around the fuzzed claims.
struct Case<'a> {
    name: &'static str,
    nonce_fresh: bool,
    prior_bootcount: Option<u64>,
    prior_svns: Vec<(String, u64)>,
    unit: UnitFacts,
    baseline: Option<&'a Baseline>,
    now: UnixTime,
}

fn unit() -> UnitFacts {
    let f = fixtures::get();
    let p = &f.provisioning;
    let c = &f.calibration;
    UnitFacts {
        model: p.model.to_string(),
        hw_version: p.hw_version.clone(),
        provisioning_record_id: f.provisioning_id.clone(),
        provisioning_station_id: p.station_id.to_string(),
        revoked: false,
        calibration: Some(CalibrationFacts::from_record(
            c,
            &f.calibration_id,
            (c.performed_at.0 + 60) * 1000,
        )),
        revoked_stations: Vec::new(),
    }
}

fn cases(claims: &Claims) -> Vec<Case<'static>> {
    let f = fixtures::get();
    let b = Some(&f.baseline);
    let now = f.baseline.effective_at;
    let fresh = claims.nonce.is_some();
    let base = |name| Case {
        name,
        nonce_fresh: fresh,
        prior_bootcount: None,
        prior_svns: Vec::new(),
        unit: unit(),
        baseline: b,
        now,
    };
    let mut v = vec![base("as documented")];

    let mut c = base("history");
    c.nonce_fresh = !fresh;
    c.prior_bootcount = Some(claims.bootcount.wrapping_add(1));
    c.prior_svns = claims
        .components
        .iter()
        .map(|x| (x.name.clone(), x.svn.saturating_add(1)))
        .collect();
    v.push(c);

    v.push(Case {
        baseline: None,
        ..base("no baseline")
    });

    let mut c = base("revoked");
    c.unit.revoked = true;
    c.unit.revoked_stations = vec![c.unit.provisioning_station_id.clone()];
    v.push(c);

    let mut c = base("no calibration record");
    c.unit.calibration = None;
    v.push(c);

    let mut c = base("failed calibration");
    if let Some(cal) = &mut c.unit.calibration {
        cal.result = CalibrationResult::Fail;
        cal.digest = Digest([0xee; 32]);
        cal.received_at_ms = i64::MAX;
        cal.parameters.clear();
        cal.instruments.push(("REF-old".into(), UnixTime(i64::MIN)));
    }
    v.push(c);

    v.push(Case {
        now: UnixTime(i64::MAX),
        ..base("end of time")
    });
    v.push(Case {
        now: UnixTime(i64::MIN),
        ..base("start of time")
    });

    let mut c = base("another hardware version");
    c.unit.hw_version = "Z".into();
    v.push(c);
    v
}

/// The trust claims a finding's code can set, in reason order.
const CLAIMS: [Claim; 5] = [
    Claim::InstanceIdentity,
    Claim::Hardware,
    Claim::Executables,
    Claim::Configuration,
    Claim::SourcedData,
];

fn value_of(a: &Appraisal, c: Claim) -> i8 {
    match c {
        Claim::InstanceIdentity => a.vector.instance_identity,
        Claim::Hardware => a.vector.hardware,
        Claim::Executables => a.vector.executables,
        Claim::Configuration => a.vector.configuration,
        Claim::SourcedData => a.vector.sourced_data,
        Claim::Freshness => 0,
    }
}

/// Codes whose finding names a component or parameter.
fn names_component(c: Code) -> bool {
    matches!(
        c,
        Code::ComponentUnexpected
            | Code::ComponentMissing
            | Code::FirmwareRevoked
            | Code::FirmwareUnapproved
            | Code::FirmwareRollback
            | Code::CalibrationOutOfRange
    )
}

/// Appraises `claims` under every case and checks each verdict.
pub fn check(claims: &Claims) {
    for case in cases(claims) {
        let ev = EvidenceFacts {
            claims,
            evidence_id: "ev_fuzz",
            nonce_fresh: case.nonce_fresh,
            received_at_ms: claims.iat.0.saturating_add(60).saturating_mul(1000),
            prior_bootcount: case.prior_bootcount,
            prior_svns: &case.prior_svns,
        };
        let a = appraise(&ev, &case.unit, case.baseline, case.now);
        assert_eq!(
            a,
            appraise(&ev, &case.unit, case.baseline, case.now),
            "{}: appraisal is a pure function",
            case.name
        );
        verdict_is_consistent(&a, claims, &case);
    }
}

fn verdict_is_consistent(a: &Appraisal, claims: &Claims, case: &Case<'_>) {
    let name = case.name;
    let unit = &case.unit;
    let covering = case
        .baseline
        .filter(|b| b.covers(&unit.model, &unit.hw_version));
    let band = |c: Code| Tier::of_value(c.value());

    // Reasons are in claim order, then component order.
    for w in a.findings.windows(2) {
        let key = |f: &attestd_core::appraisal::Finding| (f.code.claim(), f.component.clone());
        assert!(key(&w[0]) <= key(&w[1]), "{name}: findings out of order");
    }
    for f in &a.findings {
        assert_eq!(Code::parse(f.code.as_str()), Some(f.code));
        assert_eq!(
            names_component(f.code),
            !f.component.is_empty(),
            "{name}: {} and its component {:?}",
            f.code.as_str(),
            f.component
        );
    }

    // Each trust claim sits in the band of its worst finding, or at the
    // value of "nothing found" (0 where there is nothing to compare with).
    for c in CLAIMS {
        let worst = a
            .findings
            .iter()
            .filter(|f| f.code.claim() == c)
            .map(|f| band(f.code))
            .max();
        let expected = match (worst, c) {
            (Some(t), _) => t,
            (None, Claim::InstanceIdentity | Claim::SourcedData) => Tier::Affirming,
            (None, _) if covering.is_some() => Tier::Affirming,
            (None, _) => Tier::None,
        };
        assert_eq!(
            Tier::of_value(value_of(a, c)),
            expected,
            "{name}: {} = {}",
            c.as_str(),
            value_of(a, c)
        );
    }
    let v = &a.vector;
    assert_eq!(
        (v.file_system, v.runtime_opaque, v.storage_opaque),
        (0, 0, 0),
        "{name}: claims attestd does not appraise stay 0"
    );

    // The overall tier follows from the reasons.
    let worst = a.findings.iter().map(|f| band(f.code)).max();
    let fresh_unverified = a.has(Code::FreshnessUnverified);
    let tier = if worst == Some(Tier::Contraindicated) {
        Tier::Contraindicated
    } else if covering.is_none() {
        Tier::None
    } else if worst == Some(Tier::Warning) || fresh_unverified {
        Tier::Warning
    } else {
        Tier::Affirming
    };
    assert_eq!(
        a.tier, tier,
        "{name}: tier against the reasons {:?}",
        a.findings
    );
    if a.tier == Tier::Affirming {
        assert!(a.findings.is_empty(), "{name}: AFFIRMING with reasons");
    }
    assert_eq!(a.has(Code::NoBaseline), covering.is_none(), "{name}");

    // Rules that are one line of docs/appraisal.md each.
    assert_eq!(a.has(Code::DeviceRevoked), unit.revoked, "{name}");
    assert_eq!(
        a.has(Code::StationRevoked),
        !unit.revoked_stations.is_empty(),
        "{name}"
    );
    let identity = claims.hwmodel != unit.model || claims.hwversion.version != unit.hw_version;
    assert_eq!(a.has(Code::IdentityMismatch), identity, "{name}");
    if let Some(b) = covering {
        assert_eq!(
            a.has(Code::SecureBootDisabled),
            b.require_secure_boot && !claims.secure_boot,
            "{name}"
        );
        assert_eq!(
            a.has(Code::DebugEnabled),
            claims.dbgstat < b.min_dbgstat,
            "{name}"
        );
        for c in &claims.components {
            let known = b.components.iter().any(|p| p.name == c.name);
            let unexpected = a
                .findings
                .iter()
                .any(|f| f.code == Code::ComponentUnexpected && f.component == c.name);
            assert_eq!(unexpected, !known, "{name}: component {:?}", c.name);
        }
        for p in &b.components {
            let reported = claims.components.iter().any(|c| c.name == p.name);
            let missing = a
                .findings
                .iter()
                .any(|f| f.code == Code::ComponentMissing && f.component == p.name);
            assert_eq!(missing, !reported, "{name}: component {:?}", p.name);
        }
        assert_eq!(a.baseline_version, b.version);
        assert_eq!(a.baseline_model, b.model.as_str());
    } else {
        assert_eq!((a.baseline_version, a.baseline_model.as_str()), (0, ""));
    }
    assert_eq!(a.appraised_at, case.now);
    assert_eq!(a.evidence_id, "ev_fuzz");

    // The vector's own claims meet every rule (docs/formats.md §2.3).
    if name == "as documented" && *claims == vector_claims() {
        assert!(
            a.findings.is_empty(),
            "the vector evidence: {:?}",
            a.findings
        );
    }

    // Fleet status and the next check agree with the verdict.
    let last_ms = Some(claims.iat.0.saturating_mul(1000));
    let s = status(Some(a), last_ms, covering, false, unit.revoked, case.now);
    if a.tier == Tier::Contraindicated || unit.revoked {
        assert_eq!(s, Status::Untrusted, "{name}");
    }
    assert_eq!(
        status(Some(a), last_ms, covering, true, unit.revoked, case.now),
        Status::Quarantined
    );
    if let Some(t) = next_check(unit, covering, last_ms, case.now) {
        assert!(t > case.now, "{name}: the next check is in the future");
    }
}

/// The claims of the ES256 vector, as decoded.
fn vector_claims() -> Claims {
    use std::sync::OnceLock;
    static C: OnceLock<Claims> = OnceLock::new();
    C.get_or_init(|| {
        attestd_core::evidence::Evidence::decode(&fixtures::get().es256.token)
            .expect("the ES256 vector decodes")
            .claims
    })
    .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vector_claims_pass_every_case() {
        super::check(&super::vector_claims());
    }
}
