//! Appraisal: the verdict on one piece of evidence, as a pure function of
//! its inputs (design invariant 4). This first version evaluates instance
//! identity; baselines, and with them firmware and calibration checks, come
//! next. Until then every verdict honestly says `NO_BASELINE`.

use crate::evidence::Claims;
use crate::time::UnixTime;

/// AR4SI overall tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Nothing to appraise against.
    None,
    Affirming,
    Warning,
    Contraindicated,
}

/// The eight AR4SI trust claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrustVector {
    pub instance_identity: i8,
    pub configuration: i8,
    pub executables: i8,
    pub file_system: i8,
    pub hardware: i8,
    pub runtime_opaque: i8,
    pub storage_opaque: i8,
    pub sourced_data: i8,
}

impl TrustVector {
    fn values(&self) -> [i8; 8] {
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

    /// Whether any claim is in a contraindicated range (96..127, -97..-128).
    pub fn any_contraindicated(&self) -> bool {
        self.values().iter().any(|&v| v >= 96 || v <= -97)
    }
}

/// One reason an appraisal is not AFFIRMING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    pub claim: &'static str,
    pub component: String,
    pub expected: String,
    pub actual: String,
    pub detail: String,
}

/// A verdict and the ids of the inputs it was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appraisal {
    pub tier: Tier,
    pub vector: TrustVector,
    pub findings: Vec<Finding>,
    pub evidence_id: String,
    pub baseline_model: String,
    pub baseline_version: u64,
    pub provisioning_record_id: String,
    pub calibration_record_id: String,
    pub appraised_at: UnixTime,
}

/// What attestd knows about a unit when its evidence is appraised.
#[derive(Clone, Debug)]
pub struct UnitContext<'a> {
    pub model: &'a str,
    pub hw_version: &'a str,
    pub provisioning_record_id: &'a str,
    /// Latest calibration record id, empty if none.
    pub calibration_record_id: &'a str,
    /// Highest boot counter accepted before this evidence.
    pub highest_bootcount: Option<u64>,
}

/// Appraises `claims` (already authenticated) for the unit in `ctx`.
pub fn appraise(
    claims: &Claims,
    nonce_fresh: bool,
    ctx: &UnitContext<'_>,
    evidence_id: &str,
    now: UnixTime,
) -> Appraisal {
    let mut findings = Vec::new();
    let mut vector = TrustVector {
        instance_identity: 2,
        ..TrustVector::default()
    };
    if claims.hwmodel != ctx.model {
        vector.instance_identity = 96;
        findings.push(Finding {
            code: "IDENTITY_MISMATCH",
            claim: "instance_identity",
            component: String::new(),
            expected: ctx.model.to_owned(),
            actual: claims.hwmodel.clone(),
            detail: "hwmodel differs from the provisioning record".into(),
        });
    }
    if claims.hwversion.version != ctx.hw_version {
        vector.instance_identity = 96;
        findings.push(Finding {
            code: "IDENTITY_MISMATCH",
            claim: "instance_identity",
            component: String::new(),
            expected: ctx.hw_version.to_owned(),
            actual: claims.hwversion.version.clone(),
            detail: "hwversion differs from the provisioning record".into(),
        });
    }
    if let Some(h) = ctx.highest_bootcount {
        if nonce_fresh && claims.bootcount < h {
            vector.instance_identity = 96;
            findings.push(Finding {
                code: "BOOTCOUNT_REGRESSED",
                claim: "instance_identity",
                component: String::new(),
                expected: format!(">= {h}"),
                actual: claims.bootcount.to_string(),
                detail: "boot counter went backwards: a cloned key or a reset counter".into(),
            });
        }
    }
    findings.push(Finding {
        code: "NO_BASELINE",
        claim: "hardware",
        component: String::new(),
        expected: format!("an active baseline for {} {}", ctx.model, ctx.hw_version),
        actual: "none".into(),
        detail: "no baseline covers this model and hardware version".into(),
    });
    let tier = if vector.any_contraindicated() {
        Tier::Contraindicated
    } else {
        Tier::None
    };
    Appraisal {
        tier,
        vector,
        findings,
        evidence_id: evidence_id.to_owned(),
        baseline_model: String::new(),
        baseline_version: 0,
        provisioning_record_id: ctx.provisioning_record_id.to_owned(),
        calibration_record_id: ctx.calibration_record_id.to_owned(),
        appraised_at: now,
    }
}
