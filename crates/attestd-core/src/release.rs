//! The release gate (docs/release-gate.md): RELEASE only when every
//! condition holds; otherwise HOLD with every failing reason. Pure, like
//! appraisal: the same state always gives the same decision and reasons.

use crate::appraisal::{Appraisal, Claim, Code};

/// The serial is not enrolled; the only reason, and the decision is not stored.
pub const NOT_ENROLLED: &str = "NOT_ENROLLED";
/// A security admin quarantined the unit.
pub const QUARANTINED: &str = "QUARANTINED";
/// No nonce-fresh evidence received after the unit's latest record.
pub const NO_FINAL_ATTESTATION: &str = "NO_FINAL_ATTESTATION";
/// The latest evidence was received more than the release window ago.
pub const EVIDENCE_TOO_OLD: &str = "EVIDENCE_TOO_OLD";

/// What the gate looks at for one unit.
#[derive(Clone, Debug)]
pub struct GateInput<'a> {
    /// Whether a provisioning record enrolls the serial.
    pub enrolled: bool,
    /// Whether a security admin quarantined the unit.
    pub quarantined: bool,
    /// The latest evidence appraised now (against the active baseline), if any.
    pub appraisal: Option<&'a Appraisal>,
    /// Whether the latest evidence carried a nonce attestd issued.
    pub evidence_nonce_fresh: bool,
    /// When attestd received the latest evidence, ms since the Unix epoch.
    pub evidence_received_ms: i64,
    /// When the latest provisioning or calibration record was accepted.
    pub latest_record_received_ms: i64,
    /// Now, ms since the Unix epoch.
    pub now_ms: i64,
    /// How old the final attestation may be.
    pub release_window_secs: i64,
    /// The unit's concession: its id and waived codes.
    pub concession: Option<(&'a str, &'a [String])>,
    /// The station whose provisioning record enrolled the unit (its key).
    pub provisioning_station_id: &'a str,
}

/// One reason of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateReason {
    /// The gate's or the appraisal's reason code.
    pub code: String,
    /// A sentence for a reader; an appraisal reason about a component carries it in front.
    pub detail: String,
    /// Whether the unit's concession waives it.
    pub waived: bool,
}

/// RELEASE or HOLD, with every reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateDecision {
    /// RELEASE when true, HOLD when false.
    pub release: bool,
    /// Every reason, in gate order (quarantine, appraisal, attestation, age).
    pub reasons: Vec<GateReason>,
    /// Set when the release rests on a concession.
    pub concession_id: Option<String>,
}

/// Whether a concession may waive `code`. Identity codes never can, nor can
/// the conditions that mean "not verified at all": the gate's own, and no
/// baseline to appraise against (a unit is never released without one).
pub fn waivable(code: &str) -> bool {
    match Code::parse(code) {
        Some(Code::NoBaseline) => false,
        Some(c) => c.claim() != Claim::InstanceIdentity,
        None => code == EVIDENCE_TOO_OLD,
    }
}

fn reason(code: &str, detail: impl Into<String>) -> GateReason {
    GateReason {
        code: code.to_owned(),
        detail: detail.into(),
        waived: false,
    }
}

/// Decides. Fails closed: anything not shown to be right is a reason to hold.
pub fn decide(g: &GateInput<'_>) -> GateDecision {
    let mut reasons = Vec::new();
    if !g.enrolled {
        return GateDecision {
            release: false,
            reasons: vec![reason(
                NOT_ENROLLED,
                "no provisioning record enrolls this serial",
            )],
            concession_id: None,
        };
    }
    if g.quarantined {
        reasons.push(reason(QUARANTINED, "held by a security admin"));
    }
    // Reasons no concession may waive beyond the codes `waivable` refuses:
    // the revoked station is the one that enrolled the unit, so the key
    // the unit proves itself with came from a station no longer trusted.
    let mut identity_doubt = Vec::new();
    match g.appraisal {
        None => reasons.push(reason(NO_FINAL_ATTESTATION, "the unit has never attested")),
        Some(a) => {
            for f in &a.findings {
                let mut detail = f.detail.clone();
                if !f.component.is_empty() {
                    detail = format!("{}: {detail}", f.component);
                }
                if f.code == Code::StationRevoked
                    && !g.provisioning_station_id.is_empty()
                    && f.actual == g.provisioning_station_id
                {
                    identity_doubt.push(reasons.len());
                    detail = format!("{detail} (the station that enrolled the unit: not waivable)");
                }
                reasons.push(reason(f.code.as_str(), detail));
            }
            if !g.evidence_nonce_fresh {
                reasons.push(reason(
                    NO_FINAL_ATTESTATION,
                    "the latest evidence is deferred (no nonce)",
                ));
            } else if g.evidence_received_ms <= g.latest_record_received_ms {
                reasons.push(reason(
                    NO_FINAL_ATTESTATION,
                    "no evidence since the latest provisioning or calibration record",
                ));
            }
            let age_secs = (g.now_ms - g.evidence_received_ms).div_euclid(1000);
            if age_secs > g.release_window_secs {
                reasons.push(reason(
                    EVIDENCE_TOO_OLD,
                    format!(
                        "the final attestation is {age_secs} s old; the window is {} s",
                        g.release_window_secs
                    ),
                ));
            }
        }
    }
    let mut concession_id = None;
    if let Some((id, waived)) = g.concession {
        for (i, r) in reasons.iter_mut().enumerate() {
            if waivable(&r.code) && waived.contains(&r.code) && !identity_doubt.contains(&i) {
                r.waived = true;
            }
        }
        if !reasons.is_empty() && reasons.iter().all(|r| r.waived) {
            concession_id = Some(id.to_owned());
        }
    }
    GateDecision {
        release: reasons.iter().all(|r| r.waived),
        reasons,
        concession_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appraisal::{Finding, Tier, TrustVector};
    use crate::time::UnixTime;

    fn appraisal(codes: &[Code]) -> Appraisal {
        Appraisal {
            tier: if codes.is_empty() {
                Tier::Affirming
            } else {
                Tier::Warning
            },
            vector: TrustVector::default(),
            findings: codes
                .iter()
                .map(|c| Finding {
                    code: *c,
                    component: String::new(),
                    expected: String::new(),
                    actual: String::new(),
                    detail: "d".into(),
                })
                .collect(),
            evidence_id: "ev".into(),
            baseline_model: "PM-200".into(),
            baseline_version: 1,
            provisioning_record_id: "p".into(),
            calibration_record_id: "c".into(),
            appraised_at: UnixTime(0),
        }
    }

    fn input<'a>(a: Option<&'a Appraisal>) -> GateInput<'a> {
        GateInput {
            enrolled: true,
            quarantined: false,
            appraisal: a,
            evidence_nonce_fresh: true,
            evidence_received_ms: 10_000,
            latest_record_received_ms: 5_000,
            now_ms: 20_000,
            release_window_secs: 72 * 3600,
            concession: None,
            provisioning_station_id: "line1-prov",
        }
    }

    fn codes(d: &GateDecision) -> Vec<&str> {
        d.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn every_gate_condition() {
        let ok = appraisal(&[]);
        let d = decide(&input(Some(&ok)));
        assert!(d.release && d.reasons.is_empty());

        let mut g = input(Some(&ok));
        g.enrolled = false;
        assert_eq!(codes(&decide(&g)), [NOT_ENROLLED]);
        let mut g = input(Some(&ok));
        g.quarantined = true;
        assert_eq!(codes(&decide(&g)), [QUARANTINED]);
        assert_eq!(codes(&decide(&input(None))), [NO_FINAL_ATTESTATION]);
        let mut g = input(Some(&ok));
        g.latest_record_received_ms = 10_000;
        assert_eq!(codes(&decide(&g)), [NO_FINAL_ATTESTATION]);
        let mut g = input(Some(&ok));
        g.evidence_nonce_fresh = false;
        assert_eq!(codes(&decide(&g)), [NO_FINAL_ATTESTATION]);
        let mut g = input(Some(&ok));
        g.now_ms = 10_000 + 73 * 3600 * 1000;
        assert_eq!(codes(&decide(&g)), [EVIDENCE_TOO_OLD]);
        let bad = appraisal(&[Code::FirmwareRevoked, Code::CalibrationOverdue]);
        let d = decide(&input(Some(&bad)));
        assert!(!d.release);
        assert_eq!(codes(&d), ["FIRMWARE_REVOKED", "CALIBRATION_OVERDUE"]);
    }

    #[test]
    fn concessions_waive_named_codes_but_never_identity() {
        let a = appraisal(&[Code::CalibrationOverdue]);
        let waived = vec!["CALIBRATION_OVERDUE".to_string()];
        let mut g = input(Some(&a));
        g.concession = Some(("con_1", &waived));
        let d = decide(&g);
        assert!(d.release);
        assert_eq!(d.concession_id.as_deref(), Some("con_1"));
        assert!(d.reasons[0].waived);

        // A code not named stays a reason to hold.
        let a = appraisal(&[Code::CalibrationOverdue, Code::FirmwareRevoked]);
        let mut g = input(Some(&a));
        g.concession = Some(("con_1", &waived));
        let d = decide(&g);
        assert!(!d.release && d.concession_id.is_none());

        // A revoked station: waivable when it calibrated the unit, not when
        // it enrolled it (the unit's key came from it).
        let mut a = appraisal(&[Code::StationRevoked]);
        let named = vec!["STATION_REVOKED".to_string()];
        a.findings[0].actual = "line1-cal".into();
        let mut g = input(Some(&a));
        g.concession = Some(("con_4", &named));
        assert!(decide(&g).release);
        a.findings[0].actual = "line1-prov".into();
        let mut g = input(Some(&a));
        g.concession = Some(("con_4", &named));
        let d = decide(&g);
        assert!(!d.release && !d.reasons[0].waived, "{d:?}");
        assert!(d.reasons[0].detail.contains("enrolled"));

        // Identity codes cannot be waived even if named.
        let a = appraisal(&[Code::DeviceRevoked]);
        let named = vec!["DEVICE_REVOKED".to_string()];
        let mut g = input(Some(&a));
        g.concession = Some(("con_2", &named));
        assert!(!decide(&g).release);
        assert!(
            !waivable("DEVICE_REVOKED")
                && !waivable("IDENTITY_MISMATCH")
                && !waivable("BOOTCOUNT_REGRESSED")
        );
        assert!(
            !waivable(QUARANTINED) && !waivable(NOT_ENROLLED) && !waivable(NO_FINAL_ATTESTATION)
        );
        // Without a baseline nothing was verified: never released.
        assert!(!waivable("NO_BASELINE"));
        let a = appraisal(&[Code::NoBaseline]);
        let named = vec!["NO_BASELINE".to_string()];
        let mut g = input(Some(&a));
        g.concession = Some(("con_3", &named));
        assert!(!decide(&g).release);
        assert!(waivable(EVIDENCE_TOO_OLD) && waivable("FIRMWARE_REVOKED"));
        assert!(!waivable("MADE_UP"));
    }
}
