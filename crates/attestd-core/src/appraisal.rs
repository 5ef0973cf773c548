//! Appraisal: the verdict on a unit's evidence as a pure function of
//! (evidence, the unit's records, baseline, history, now) — design
//! invariant 4. Every failing check is collected, in a fixed order, so the
//! same inputs always give the same verdict and the same reasons.
//! The rules are those of docs/appraisal.md.

use crate::baseline::Baseline;
use crate::evidence::Claims;
use crate::ids::Digest;
use crate::record::{Calibration, CalibrationResult};
use crate::time::UnixTime;

/// AR4SI overall tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Nothing to appraise against.
    None,
    /// Every check passed; a claim in the affirming band and no finding.
    Affirming,
    /// A claim in the warning band, or freshness unverified.
    Warning,
    /// A claim in the contraindicated band: a revoked or mismatching unit, unapproved firmware, a
    /// wrong configuration.
    Contraindicated,
}

impl Tier {
    /// The tier band of one trust-claim value.
    pub fn of_value(v: i8) -> Tier {
        match v {
            -1..=1 => Tier::None,
            2..=31 | -32..=-2 => Tier::Affirming,
            32..=95 | -96..=-33 => Tier::Warning,
            _ => Tier::Contraindicated,
        }
    }
}

/// The device status of the fleet view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The current appraisal is AFFIRMING and the evidence is within the freshness window.
    Trusted,
    /// The current appraisal is WARNING.
    Warning,
    /// The current appraisal is CONTRAINDICATED, or the unit is revoked.
    Untrusted,
    /// No evidence received within the covering baseline's `max_evidence_age_hours`.
    Stale,
    /// Enrolled but never attested, or no baseline covers the unit (tier NONE).
    Unknown,
    /// Held by a security admin (`Release.SetQuarantine`), whatever the evidence says.
    Quarantined,
}

impl Status {
    /// Every status, from TRUSTED to QUARANTINED.
    pub const ALL: [Status; 6] = [
        Status::Trusted,
        Status::Warning,
        Status::Untrusted,
        Status::Stale,
        Status::Unknown,
        Status::Quarantined,
    ];

    /// The status as the API and logs spell it, e.g. `TRUSTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trusted => "TRUSTED",
            Status::Warning => "WARNING",
            Status::Untrusted => "UNTRUSTED",
            Status::Stale => "STALE",
            Status::Unknown => "UNKNOWN",
            Status::Quarantined => "QUARANTINED",
        }
    }
}

/// The AR4SI claims attestd evaluates, in reason order; `Freshness` is the
/// pseudo-claim of `FRESHNESS_UNVERIFIED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    /// Signed by the unit's enrolled key, as provisioned, not revoked.
    InstanceIdentity,
    /// An active baseline covers the unit's model and hardware version.
    Hardware,
    /// The reported firmware is approved and not rolled back.
    Executables,
    /// Secure boot, debug state and calibration as the baseline requires.
    Configuration,
    /// The records relied on come from trusted stations with in-date reference instruments.
    SourcedData,
    /// Nonce freshness (`FRESHNESS_UNVERIFIED`); sets no value in the vector.
    Freshness,
}

impl Claim {
    /// The claim's name in reasons, e.g. `instance_identity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::InstanceIdentity => "instance_identity",
            Claim::Hardware => "hardware",
            Claim::Executables => "executables",
            Claim::Configuration => "configuration",
            Claim::SourcedData => "sourced_data",
            Claim::Freshness => "freshness",
        }
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal, $claim:ident, $value:expr;)*) => {
        /// The reason codes of docs/appraisal.md, each with its claim and value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($(#[$doc])* $variant,)* }

        impl Code {
            /// Every code, in check order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as the API spells it, e.g. `FIRMWARE_REVOKED`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }

            /// The claim this code is about.
            pub fn claim(self) -> Claim {
                match self { $(Code::$variant => Claim::$claim,)* }
            }

            /// The trust-claim value this finding sets (0 for freshness).
            pub fn value(self) -> i8 {
                match self { $(Code::$variant => $value,)* }
            }

            /// The code of its API spelling, if it is one.
            pub fn parse(s: &str) -> Option<Code> {
                match s { $($text => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    /// The evidence's `hwmodel` or `hwversion` differs from the unit's provisioning record.
    IdentityMismatch => "IDENTITY_MISMATCH", InstanceIdentity, 96;
    /// Nonce-fresh evidence whose boot counter is below the highest accepted before it: a cloned
    /// key or a reset counter.
    BootcountRegressed => "BOOTCOUNT_REGRESSED", InstanceIdentity, 96;
    /// A security admin revoked the unit (`Admin.RevokeDevice`).
    DeviceRevoked => "DEVICE_REVOKED", InstanceIdentity, 96;
    /// No active baseline covers the unit's model and hardware version; nothing else is checked
    /// against one.
    NoBaseline => "NO_BASELINE", Hardware, 0;
    /// A component's digest and svn are not one of its approved builds.
    FirmwareUnapproved => "FIRMWARE_UNAPPROVED", Executables, 96;
    /// A component's digest is withdrawn by the baseline.
    FirmwareRevoked => "FIRMWARE_REVOKED", Executables, 96;
    /// A component's svn is below the baseline's `min_svn`, or below the highest this unit reported
    /// before.
    FirmwareRollback => "FIRMWARE_ROLLBACK", Executables, 96;
    /// A component the baseline names was not reported.
    ComponentMissing => "COMPONENT_MISSING", Executables, 96;
    /// A reported component the baseline does not name.
    ComponentUnexpected => "COMPONENT_UNEXPECTED", Executables, 96;
    /// The baseline requires secure boot and the evidence says it is off.
    SecureBootDisabled => "SECURE_BOOT_DISABLED", Configuration, 96;
    /// The evidence's `dbgstat` is below the baseline's `min_dbgstat`.
    DebugEnabled => "DEBUG_ENABLED", Configuration, 96;
    /// The unit reports another calibration digest than its latest calibration record, and its
    /// evidence reached attestd after that record.
    CalibrationMismatch => "CALIBRATION_MISMATCH", Configuration, -97;
    /// Calibration is required, but the unit has no calibration record or reports no calibration
    /// data set.
    CalibrationMissing => "CALIBRATION_MISSING", Configuration, -98;
    /// The latest calibration record's result is FAIL.
    CalibrationFailed => "CALIBRATION_FAILED", Configuration, -99;
    /// A parameter the baseline bounds is absent from the latest calibration record, or its
    /// `as_left` is out of bounds.
    CalibrationOutOfRange => "CALIBRATION_OUT_OF_RANGE", Configuration, -100;
    /// The calibration is past its due date (the record's `next_due_at` or the baseline's interval,
    /// whichever is earlier).
    CalibrationOverdue => "CALIBRATION_OVERDUE", Configuration, 32;
    /// The calibration digests differ, but the record reached attestd after the evidence: the unit
    /// has not attested its new data set yet.
    CalibrationUnconfirmed => "CALIBRATION_UNCONFIRMED", Configuration, 32;
    /// A station behind the unit's provisioning or latest calibration record has been revoked
    /// since.
    StationRevoked => "STATION_REVOKED", SourcedData, 96;
    /// A reference instrument of the latest calibration record was past its due date when the
    /// calibration was performed.
    CalibrationReferenceExpired => "CALIBRATION_REFERENCE_EXPIRED", SourcedData, 32;
    /// Deferred evidence (no nonce) while the baseline requires nonces: the tier is at most
    /// WARNING.
    FreshnessUnverified => "FRESHNESS_UNVERIFIED", Freshness, 0;
}

/// The eight AR4SI trust claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrustVector {
    /// Identity of the unit (AR4SI `instance-identity`).
    pub instance_identity: i8,
    /// Configuration: secure boot, debug state, calibration.
    pub configuration: i8,
    /// Firmware: approved builds, no rollback.
    pub executables: i8,
    /// Not evaluated by attestd; always 0.
    pub file_system: i8,
    /// Whether a baseline covers the hardware.
    pub hardware: i8,
    /// Not evaluated by attestd; always 0.
    pub runtime_opaque: i8,
    /// Not evaluated by attestd; always 0.
    pub storage_opaque: i8,
    /// Provenance of the records relied on: stations and reference instruments.
    pub sourced_data: i8,
}

impl TrustVector {
    /// In the fixed AR4SI order.
    pub fn values(&self) -> [i8; 8] {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.file_system,
            self.hardware,
            self.runtime_opaque,
            self.storage_opaque,
            self.sourced_data,
        ]
    }

    /// The vector of values in the fixed AR4SI order (the inverse of [`TrustVector::values`]).
    pub fn from_values(v: [i8; 8]) -> TrustVector {
        TrustVector {
            instance_identity: v[0],
            configuration: v[1],
            executables: v[2],
            file_system: v[3],
            hardware: v[4],
            runtime_opaque: v[5],
            storage_opaque: v[6],
            sourced_data: v[7],
        }
    }

    fn set(&mut self, c: Claim, v: i8) {
        match c {
            Claim::InstanceIdentity => self.instance_identity = v,
            Claim::Hardware => self.hardware = v,
            Claim::Executables => self.executables = v,
            Claim::Configuration => self.configuration = v,
            Claim::SourcedData => self.sourced_data = v,
            Claim::Freshness => {}
        }
    }

    /// Whether any claim is in a contraindicated range (96..127, -97..-128).
    pub fn any_contraindicated(&self) -> bool {
        self.values()
            .iter()
            .any(|&v| Tier::of_value(v) == Tier::Contraindicated)
    }

    /// Whether any claim is in a warning range (32..95, -33..-96).
    pub fn any_warning(&self) -> bool {
        self.values()
            .iter()
            .any(|&v| Tier::of_value(v) == Tier::Warning)
    }
}

/// One reason an appraisal is not AFFIRMING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub code: Code,
    /// The firmware component or calibration parameter concerned; empty when none.
    pub component: String,
    /// The value the baseline or records expect, for a reader; may be empty.
    pub expected: String,
    /// The value the evidence shows; may be empty.
    pub actual: String,
    /// A sentence for a reader.
    pub detail: String,
}

impl Finding {
    fn new(
        code: Code,
        expected: impl Into<String>,
        actual: impl Into<String>,
        detail: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            component: String::new(),
            expected: expected.into(),
            actual: actual.into(),
            detail: detail.into(),
        }
    }

    fn component(mut self, c: &str) -> Finding {
        self.component = c.to_owned();
        self
    }
}

/// A verdict and the ids of the inputs it was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appraisal {
    /// The overall tier.
    pub tier: Tier,
    /// The eight AR4SI trust claims.
    pub vector: TrustVector,
    /// Every failing check, in reason order (by claim, then component).
    pub findings: Vec<Finding>,
    /// The evidence appraised.
    pub evidence_id: String,
    /// The model of the baseline used; empty without one.
    pub baseline_model: String,
    /// The version of the baseline used; 0 without one.
    pub baseline_version: u64,
    /// The unit's provisioning record the appraisal rests on.
    pub provisioning_record_id: String,
    /// The unit's latest calibration record; empty without one.
    pub calibration_record_id: String,
    /// When the appraisal was made.
    pub appraised_at: UnixTime,
}

impl Appraisal {
    /// Whether a finding has this code.
    pub fn has(&self, code: Code) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

/// What the latest calibration record says, as appraisal needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationFacts {
    /// The calibration record's id.
    pub record_id: String,
    /// The station that signed it.
    pub station_id: String,
    /// PASS or FAIL.
    pub result: CalibrationResult,
    /// When the calibration was done, as the station states it.
    pub performed_at: UnixTime,
    /// When attestd accepted the record (its clock), to order it against evidence.
    pub received_at_ms: i64,
    /// When the next calibration is due, as the record states it.
    pub next_due_at: UnixTime,
    /// SHA-256 of the calibration data set the unit must report.
    pub digest: Digest,
    /// (name, as_left) of each parameter.
    pub parameters: Vec<(String, f64)>,
    /// (id, due_at) of each reference instrument.
    pub instruments: Vec<(String, UnixTime)>,
}

impl CalibrationFacts {
    /// The facts of a checked calibration record that attestd accepted at `received_at_ms` (its
    /// clock, ms).
    pub fn from_record(c: &Calibration, record_id: &str, received_at_ms: i64) -> CalibrationFacts {
        CalibrationFacts {
            record_id: record_id.to_owned(),
            station_id: c.station_id.as_str().to_owned(),
            result: c.result,
            performed_at: c.performed_at,
            received_at_ms,
            next_due_at: c.next_due_at,
            digest: c.calibration_digest,
            parameters: c
                .parameters
                .iter()
                .map(|p| (p.name.clone(), p.as_left))
                .collect(),
            instruments: c
                .reference_instruments
                .iter()
                .map(|i| (i.id.clone(), i.due_at))
                .collect(),
        }
    }
}

/// What attestd knows about a unit, from its records and admin actions.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitFacts {
    /// The model the unit is enrolled as.
    pub model: String,
    /// The hardware version the unit is enrolled as.
    pub hw_version: String,
    /// The unit's current provisioning record.
    pub provisioning_record_id: String,
    /// The station that signed the current provisioning record.
    pub provisioning_station_id: String,
    /// Revoked by a security admin.
    pub revoked: bool,
    /// The unit's latest calibration record, if any.
    pub calibration: Option<CalibrationFacts>,
    /// Stations relied on (provisioning, calibration) that are revoked now.
    pub revoked_stations: Vec<String>,
}

/// One piece of authenticated evidence and the unit's history when it was accepted.
#[derive(Clone, Debug)]
pub struct EvidenceFacts<'a> {
    /// The authenticated claims.
    pub claims: &'a Claims,
    /// The evidence's id.
    pub evidence_id: &'a str,
    /// Whether the evidence carried a nonce attestd issued (false: deferred).
    pub nonce_fresh: bool,
    /// When attestd accepted the evidence (its clock, ms).
    pub received_at_ms: i64,
    /// Highest boot counter accepted before this evidence.
    pub prior_bootcount: Option<u64>,
    /// Highest svn accepted before this evidence, per component name.
    pub prior_svns: &'a [(String, u64)],
}

/// Appraises one piece of evidence. Pure: everything it depends on is an argument.
pub fn appraise(
    ev: &EvidenceFacts<'_>,
    unit: &UnitFacts,
    baseline: Option<&Baseline>,
    now: UnixTime,
) -> Appraisal {
    let c = ev.claims;
    let mut findings: Vec<Finding> = Vec::new();

    // instance_identity
    if c.hwmodel != unit.model {
        findings.push(Finding::new(
            Code::IdentityMismatch,
            &unit.model,
            &c.hwmodel,
            "hwmodel differs from the provisioning record",
        ));
    }
    if c.hwversion.version != unit.hw_version {
        findings.push(Finding::new(
            Code::IdentityMismatch,
            &unit.hw_version,
            &c.hwversion.version,
            "hwversion differs from the provisioning record",
        ));
    }
    if let Some(h) = ev.prior_bootcount {
        if ev.nonce_fresh && c.bootcount < h {
            findings.push(Finding::new(
                Code::BootcountRegressed,
                format!(">= {h}"),
                c.bootcount.to_string(),
                "boot counter went backwards: a cloned key or a reset counter",
            ));
        }
    }
    if unit.revoked {
        findings.push(Finding::new(
            Code::DeviceRevoked,
            "not revoked",
            "revoked",
            "the unit was revoked by a security admin",
        ));
    }

    // hardware
    let baseline = baseline.filter(|b| b.covers(&unit.model, &unit.hw_version));
    if baseline.is_none() {
        findings.push(Finding::new(
            Code::NoBaseline,
            format!("an active baseline for {} {}", unit.model, unit.hw_version),
            "none",
            "no active baseline covers this model and hardware version",
        ));
    }

    if let Some(b) = baseline {
        executables(c, ev.prior_svns, b, &mut findings);
        configuration(ev, unit, b, now, &mut findings);
    }
    sourced_data(unit, &mut findings);
    if let Some(b) = baseline {
        if !ev.nonce_fresh && b.nonce_required {
            findings.push(Finding::new(
                Code::FreshnessUnverified,
                "nonce-fresh evidence",
                "deferred evidence (no nonce)",
                "the baseline requires a nonce; deferred evidence is capped at WARNING",
            ));
        }
    }

    // Reasons in claim order, then component name; checks keep their order within.
    findings.sort_by(|a, b| (a.code.claim(), &a.component).cmp(&(b.code.claim(), &b.component)));

    let mut vector = TrustVector {
        instance_identity: 2,
        hardware: if baseline.is_some() { 2 } else { 0 },
        executables: if baseline.is_some() { 3 } else { 0 },
        configuration: if baseline.is_some() { 2 } else { 0 },
        sourced_data: 2,
        ..TrustVector::default()
    };
    for claim in [
        Claim::InstanceIdentity,
        Claim::Hardware,
        Claim::Executables,
        Claim::Configuration,
        Claim::SourcedData,
    ] {
        // The most severe finding of the claim sets its value; the first one among equals.
        let mut worst: Option<&Finding> = None;
        for f in findings.iter().filter(|f| f.code.claim() == claim) {
            if worst.is_none_or(|w| Tier::of_value(f.code.value()) > Tier::of_value(w.code.value()))
            {
                worst = Some(f);
            }
        }
        if let Some(f) = worst {
            vector.set(claim, f.code.value());
        }
    }
    let freshness_unverified = findings.iter().any(|f| f.code == Code::FreshnessUnverified);
    let tier = if vector.any_contraindicated() {
        Tier::Contraindicated
    } else if baseline.is_none() {
        Tier::None
    } else if vector.any_warning() || freshness_unverified {
        Tier::Warning
    } else {
        Tier::Affirming
    };
    Appraisal {
        tier,
        vector,
        findings,
        evidence_id: ev.evidence_id.to_owned(),
        baseline_model: baseline
            .map(|b| b.model.as_str().to_owned())
            .unwrap_or_default(),
        baseline_version: baseline.map_or(0, |b| b.version),
        provisioning_record_id: unit.provisioning_record_id.clone(),
        calibration_record_id: unit
            .calibration
            .as_ref()
            .map(|c| c.record_id.clone())
            .unwrap_or_default(),
        appraised_at: now,
    }
}

fn executables(c: &Claims, prior_svns: &[(String, u64)], b: &Baseline, out: &mut Vec<Finding>) {
    for comp in &c.components {
        let Some(policy) = b.components.iter().find(|p| p.name == comp.name) else {
            out.push(
                Finding::new(
                    Code::ComponentUnexpected,
                    "a component named in the baseline",
                    &comp.name,
                    "the baseline has no such component",
                )
                .component(&comp.name),
            );
            continue;
        };
        if let Some(why) = b.revoked_reason(&comp.digest) {
            out.push(
                Finding::new(
                    Code::FirmwareRevoked,
                    "a digest not revoked",
                    comp.digest.to_hex(),
                    format!("revoked: {why}"),
                )
                .component(&comp.name),
            );
        } else if !policy
            .approved
            .iter()
            .any(|a| a.digest == comp.digest && a.svn == comp.svn)
        {
            let expected = policy
                .approved
                .iter()
                .map(|a| format!("{} (svn {})", a.version, a.svn))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(
                Finding::new(
                    Code::FirmwareUnapproved,
                    expected,
                    format!("{} svn {} {}", comp.version, comp.svn, comp.digest.to_hex()),
                    "the measured image is not an approved build of this component",
                )
                .component(&comp.name),
            );
        }
        if comp.svn < policy.min_svn {
            out.push(
                Finding::new(
                    Code::FirmwareRollback,
                    format!("svn >= {}", policy.min_svn),
                    comp.svn.to_string(),
                    "below the baseline's min_svn",
                )
                .component(&comp.name),
            );
        } else if let Some((_, prior)) = prior_svns.iter().find(|(n, _)| *n == comp.name) {
            if comp.svn < *prior {
                out.push(
                    Finding::new(
                        Code::FirmwareRollback,
                        format!("svn >= {prior}"),
                        comp.svn.to_string(),
                        "below the highest svn this unit ran",
                    )
                    .component(&comp.name),
                );
            }
        }
    }
    for policy in &b.components {
        if !c.components.iter().any(|x| x.name == policy.name) {
            out.push(
                Finding::new(
                    Code::ComponentMissing,
                    &policy.name,
                    "absent",
                    "a component of the baseline was not reported",
                )
                .component(&policy.name),
            );
        }
    }
}

fn configuration(
    ev: &EvidenceFacts<'_>,
    unit: &UnitFacts,
    b: &Baseline,
    now: UnixTime,
    out: &mut Vec<Finding>,
) {
    let c = ev.claims;
    if b.require_secure_boot && !c.secure_boot {
        out.push(Finding::new(
            Code::SecureBootDisabled,
            "true",
            "false",
            "the baseline requires secure boot",
        ));
    }
    if c.dbgstat < b.min_dbgstat {
        out.push(Finding::new(
            Code::DebugEnabled,
            format!("dbgstat >= {}", b.min_dbgstat),
            c.dbgstat.to_string(),
            "debug access is more open than the baseline allows",
        ));
    }
    if !b.calibration_required {
        return;
    }
    let (Some(rec), Some(claim)) = (&unit.calibration, &c.calibration) else {
        let detail = if unit.calibration.is_none() {
            "no calibration record for this unit"
        } else {
            "the evidence reports no calibration data set"
        };
        out.push(Finding::new(
            Code::CalibrationMissing,
            "a calibration record and claim",
            "none",
            detail,
        ));
        return;
    };
    if claim.digest != rec.digest {
        if ev.received_at_ms > rec.received_at_ms {
            out.push(Finding::new(
                Code::CalibrationMismatch,
                rec.digest.to_hex(),
                claim.digest.to_hex(),
                format!(
                    "calibration changed outside an authorised calibration (record {})",
                    rec.record_id
                ),
            ));
        } else {
            out.push(Finding::new(
                Code::CalibrationUnconfirmed,
                rec.digest.to_hex(),
                claim.digest.to_hex(),
                "a newer calibration record awaits the unit's next boot",
            ));
        }
    }
    if rec.result == CalibrationResult::Fail {
        out.push(Finding::new(
            Code::CalibrationFailed,
            "PASS",
            "FAIL",
            format!("record {}", rec.record_id),
        ));
    }
    for bound in &b.parameters {
        match rec.parameters.iter().find(|(n, _)| *n == bound.name) {
            None => out.push(
                Finding::new(
                    Code::CalibrationOutOfRange,
                    format!("[{}, {}]", bound.min, bound.max),
                    "absent",
                    "a required parameter is not in the record",
                )
                .component(&bound.name),
            ),
            Some((_, v)) if !(bound.min..=bound.max).contains(v) => out.push(
                Finding::new(
                    Code::CalibrationOutOfRange,
                    format!("[{}, {}]", bound.min, bound.max),
                    v.to_string(),
                    "as_left outside the baseline's bounds",
                )
                .component(&bound.name),
            ),
            Some(_) => {}
        }
    }
    let due = calibration_due(rec, b);
    if now > due {
        out.push(Finding::new(
            Code::CalibrationOverdue,
            format!("by {due}"),
            now.to_string(),
            "calibration is overdue",
        ));
    }
}

/// When the unit's calibration falls due under this baseline.
pub fn calibration_due(rec: &CalibrationFacts, b: &Baseline) -> UnixTime {
    rec.next_due_at.min(
        rec.performed_at
            .plus_seconds(b.max_interval_days as i64 * 86_400),
    )
}

fn sourced_data(unit: &UnitFacts, out: &mut Vec<Finding>) {
    for s in &unit.revoked_stations {
        out.push(Finding::new(
            Code::StationRevoked,
            "a registered, unrevoked station",
            s,
            "a record relied on comes from a station revoked since",
        ));
    }
    if let Some(rec) = &unit.calibration {
        for (id, due) in &rec.instruments {
            if *due < rec.performed_at {
                out.push(Finding::new(
                    Code::CalibrationReferenceExpired,
                    format!("due after {}", rec.performed_at),
                    format!("{id} due {due}"),
                    "a reference instrument was out of calibration when used",
                ));
            }
        }
    }
}

/// The fleet status of a unit (precedence QUARANTINED > UNTRUSTED > STALE >
/// WARNING > UNKNOWN > TRUSTED).
pub fn status(
    appraisal: Option<&Appraisal>,
    last_evidence_ms: Option<i64>,
    baseline: Option<&Baseline>,
    quarantined: bool,
    revoked: bool,
    now: UnixTime,
) -> Status {
    if quarantined {
        return Status::Quarantined;
    }
    // A revoked unit is untrusted even before it ever attested (its
    // evidence, if any, is appraised DEVICE_REVOKED anyway).
    if revoked {
        return Status::Untrusted;
    }
    let Some(a) = appraisal else {
        return Status::Unknown;
    };
    if a.tier == Tier::Contraindicated {
        return Status::Untrusted;
    }
    if let (Some(b), Some(last)) = (baseline, last_evidence_ms) {
        if now.0 > last.div_euclid(1000) + b.max_evidence_age_secs() {
            return Status::Stale;
        }
    }
    match a.tier {
        Tier::Warning => Status::Warning,
        Tier::Affirming => Status::Trusted,
        _ => Status::Unknown,
    }
}

/// The first moment after `now` at which time alone can change the unit's
/// verdict or status (evidence going stale, calibration falling due).
pub fn next_check(
    unit: &UnitFacts,
    baseline: Option<&Baseline>,
    last_evidence_ms: Option<i64>,
    now: UnixTime,
) -> Option<UnixTime> {
    let b = baseline?;
    let mut candidates = Vec::new();
    if let Some(last) = last_evidence_ms {
        candidates.push(UnixTime(
            last.div_euclid(1000) + b.max_evidence_age_secs() + 1,
        ));
    }
    if b.calibration_required {
        if let Some(rec) = &unit.calibration {
            candidates.push(calibration_due(rec, b).plus_seconds(1));
        }
    }
    candidates.into_iter().filter(|t| *t > now).min()
}
