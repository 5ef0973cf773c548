//! The numbers the store keeps for the project's enums (unit status, trust
//! tier, record kind, gate decision). They are the store's own contract:
//! never renumbered, independent of the API's enum numbers, which the
//! server maps to and from at its edge. They were chosen equal to the API's
//! numbers of the day, so data written before this module reads unchanged;
//! the two may drift apart from here on without touching stored data.

use attestd_core::appraisal::{Status, Tier};
use attestd_core::record::RecordKind;

/// Stored status of a unit (0: no decision yet).
pub const fn status(s: Status) -> i32 {
    match s {
        Status::Trusted => 1,
        Status::Warning => 2,
        Status::Untrusted => 3,
        Status::Stale => 4,
        Status::Unknown => 5,
        Status::Quarantined => 6,
    }
}

/// The status of a stored code, if it is one.
pub fn status_of(code: i32) -> Option<Status> {
    Status::ALL.into_iter().find(|s| status(*s) == code)
}

/// Highest stored status code (the size of per-status tables is this + 1).
pub const MAX_STATUS: usize = 6;

/// Stored trust tier.
pub const fn tier(t: Tier) -> i32 {
    match t {
        Tier::None => 1,
        Tier::Affirming => 2,
        Tier::Warning => 3,
        Tier::Contraindicated => 4,
    }
}

/// The tier of a stored code, if it is one.
pub fn tier_of(code: i32) -> Option<Tier> {
    [
        Tier::None,
        Tier::Affirming,
        Tier::Warning,
        Tier::Contraindicated,
    ]
    .into_iter()
    .find(|t| tier(*t) == code)
}

/// Stored record kind.
pub const fn kind(k: RecordKind) -> i32 {
    match k {
        RecordKind::Provisioning => 1,
        RecordKind::Calibration => 2,
    }
}

/// The record kind of a stored code, if it is one.
pub fn kind_of(code: i32) -> Option<RecordKind> {
    [RecordKind::Provisioning, RecordKind::Calibration]
        .into_iter()
        .find(|k| kind(*k) == code)
}

/// A gate decision: release or hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The unit may ship.
    Release,
    /// The unit is held.
    Hold,
}

/// Stored gate decision.
pub const fn decision(d: Decision) -> i32 {
    match d {
        Decision::Release => 1,
        Decision::Hold => 2,
    }
}

/// The decision of a stored code, if it is one.
pub fn decision_of(code: i32) -> Option<Decision> {
    [Decision::Release, Decision::Hold]
        .into_iter()
        .find(|d| decision(*d) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself_and_nothing_else_reads() {
        for s in Status::ALL {
            assert_eq!(status_of(status(s)), Some(s));
            assert!((1..=MAX_STATUS as i32).contains(&status(s)));
        }
        for c in [0, 7, -1] {
            assert_eq!(status_of(c), None);
            assert_eq!(tier_of(c + 10), None);
        }
        for k in [RecordKind::Provisioning, RecordKind::Calibration] {
            assert_eq!(kind_of(kind(k)), Some(k));
        }
        for d in [Decision::Release, Decision::Hold] {
            assert_eq!(decision_of(decision(d)), Some(d));
        }
        for t in [
            Tier::None,
            Tier::Affirming,
            Tier::Warning,
            Tier::Contraindicated,
        ] {
            assert_eq!(tier_of(tier(t)), Some(t));
        }
    }
}
