//! What the store keeps, as prost messages (stable, versionable encodings;
//! docs/formats.md asks for prost rather than serde-bincode). Field numbers are a
//! storage contract: never reuse one.

use prost::Message;

/// A registered station.
#[derive(Clone, PartialEq, Message)]
pub struct StationEntry {
    #[prost(string, tag = "1")]
    pub station_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub spki_der: Vec<u8>,
    /// Record kinds ([`crate::codes::kind`]).
    #[prost(int32, repeated, tag = "3")]
    pub allowed_kinds: Vec<i32>,
    /// Models this station may sign for; "*" for any.
    #[prost(string, repeated, tag = "4")]
    pub allowed_models: Vec<String>,
    #[prost(bool, tag = "5")]
    pub allow_rekey: bool,
    #[prost(bool, tag = "6")]
    pub revoked: bool,
    #[prost(string, tag = "7")]
    pub revoked_reason: String,
    #[prost(int64, tag = "8")]
    pub registered_at: i64,
    #[prost(int64, tag = "9")]
    pub revoked_at: i64,
    /// Highest record sequence accepted; 0 before the first.
    #[prost(uint64, tag = "10")]
    pub last_sequence: u64,
    #[prost(bool, tag = "11")]
    pub has_sequence: bool,
}

/// What attestd knows about one enrolled unit.
#[derive(Clone, PartialEq, Message)]
pub struct DeviceEntry {
    #[prost(string, tag = "1")]
    pub serial: String,
    #[prost(string, tag = "2")]
    pub model: String,
    #[prost(string, tag = "3")]
    pub hw_version: String,
    /// The enrolled device key (SPKI DER).
    #[prost(bytes = "vec", tag = "4")]
    pub spki_der: Vec<u8>,
    #[prost(string, tag = "5")]
    pub provisioning_record_id: String,
    #[prost(string, tag = "6")]
    pub calibration_record_id: String,
    #[prost(bool, tag = "7")]
    pub has_bootcount: bool,
    #[prost(uint64, tag = "8")]
    pub highest_bootcount: u64,
    #[prost(uint64, tag = "9")]
    pub evidence_count: u64,
    #[prost(string, tag = "10")]
    pub last_evidence_id: String,
    #[prost(int64, tag = "11")]
    pub last_seen: i64,
    #[prost(int64, tag = "12")]
    pub enrolled_at: i64,
    /// Bumped by every write to the unit: lets a writer that decided on a
    /// snapshot detect that the unit changed underneath it.
    #[prost(uint64, tag = "13")]
    pub revision: u64,
    #[prost(string, tag = "14")]
    pub provisioning_station_id: String,
    #[prost(string, tag = "15")]
    pub calibration_station_id: String,
    /// Revoked by a security admin (`Admin.RevokeDevice`).
    #[prost(bool, tag = "16")]
    pub revoked: bool,
    #[prost(string, tag = "17")]
    pub revoked_reason: String,
    /// Highest svn accepted per component.
    #[prost(message, repeated, tag = "18")]
    pub svns: Vec<SvnEntry>,
    /// The current verdict (of the latest evidence), if appraised.
    #[prost(message, optional, tag = "19")]
    pub appraisal: Option<AppraisalEntry>,
    /// Status ([`crate::codes::status`]); 0 before the first decision.
    #[prost(int32, tag = "20")]
    pub status: i32,
    #[prost(int64, tag = "21")]
    pub status_changed_at: i64,
    /// When time alone next changes the verdict (seconds); 0 for never.
    #[prost(int64, tag = "22")]
    pub next_check_at: i64,
    #[prost(bool, tag = "23")]
    pub quarantined: bool,
    /// Firmware the unit last reported.
    #[prost(message, repeated, tag = "24")]
    pub firmware: Vec<FirmwareEntry>,
    /// Calibration data set digest the unit last reported (empty if none).
    #[prost(bytes = "vec", tag = "25")]
    pub calibration_digest: Vec<u8>,
    #[prost(string, tag = "26")]
    pub tenant: String,
    #[prost(string, tag = "27")]
    pub site: String,
    #[prost(string, tag = "28")]
    pub department: String,
    #[prost(string, tag = "29")]
    pub asset_tag: String,
    #[prost(string, tag = "30")]
    pub quarantine_reason: String,
    /// The unit's current concession, if one was granted.
    #[prost(message, optional, tag = "31")]
    pub concession: Option<ConcessionEntry>,
    /// When the active baseline says calibration falls due (seconds; 0 unknown).
    #[prost(int64, tag = "32")]
    pub calibration_due_at: i64,
    /// What the latest calibration record says, kept with the unit so that
    /// appraisal does not re-read and re-parse the record (absent in data
    /// written before it existed: then the record is read).
    #[prost(message, optional, tag = "33")]
    pub calibration_facts: Option<CalibrationFactsEntry>,
    /// When attestd accepted the latest provisioning record (ms; 0 unknown).
    #[prost(int64, tag = "34")]
    pub provisioning_received_at: i64,
}

/// The facts of a calibration record that appraisal uses.
#[derive(Clone, PartialEq, Message)]
pub struct CalibrationFactsEntry {
    #[prost(string, tag = "1")]
    pub record_id: String,
    #[prost(string, tag = "2")]
    pub station_id: String,
    #[prost(bool, tag = "3")]
    pub passed: bool,
    #[prost(int64, tag = "4")]
    pub performed_at: i64,
    #[prost(int64, tag = "5")]
    pub received_at_ms: i64,
    #[prost(int64, tag = "6")]
    pub next_due_at: i64,
    #[prost(bytes = "vec", tag = "7")]
    pub digest: Vec<u8>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<CalibrationParameterEntry>,
    #[prost(message, repeated, tag = "9")]
    pub instruments: Vec<InstrumentEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CalibrationParameterEntry {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(double, tag = "2")]
    pub as_left: f64,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentEntry {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(int64, tag = "2")]
    pub due_at: i64,
}

/// Waived reason codes for one unit.
#[derive(Clone, PartialEq, Message)]
pub struct ConcessionEntry {
    #[prost(string, tag = "1")]
    pub concession_id: String,
    #[prost(string, tag = "2")]
    pub serial: String,
    #[prost(string, repeated, tag = "3")]
    pub waived_codes: Vec<String>,
    #[prost(string, tag = "4")]
    pub justification: String,
    #[prost(string, tag = "5")]
    pub meaning: String,
    #[prost(string, tag = "6")]
    pub granted_by: String,
    #[prost(int64, tag = "7")]
    pub granted_at: i64,
}

/// One status change, as the change feed keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct ChangeEntry {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(string, tag = "2")]
    pub serial: String,
    #[prost(int32, tag = "3")]
    pub old_status: i32,
    #[prost(int32, tag = "4")]
    pub new_status: i32,
    #[prost(int64, tag = "5")]
    pub at: i64,
    #[prost(string, tag = "6")]
    pub model: String,
    #[prost(string, tag = "7")]
    pub tenant: String,
    #[prost(string, tag = "8")]
    pub site: String,
    #[prost(string, repeated, tag = "9")]
    pub reasons: Vec<String>,
}

/// One reason of a release decision.
#[derive(Clone, PartialEq, Message)]
pub struct GateReasonEntry {
    #[prost(string, tag = "1")]
    pub code: String,
    #[prost(string, tag = "2")]
    pub detail: String,
    #[prost(bool, tag = "3")]
    pub waived: bool,
}

/// A release decision, kept in the unit's history.
#[derive(Clone, PartialEq, Message)]
pub struct ReleaseDecisionEntry {
    #[prost(string, tag = "1")]
    pub decision_id: String,
    #[prost(string, tag = "2")]
    pub serial: String,
    /// [`crate::codes::decision`].
    #[prost(int32, tag = "3")]
    pub decision: i32,
    #[prost(message, repeated, tag = "4")]
    pub reasons: Vec<GateReasonEntry>,
    #[prost(uint64, tag = "5")]
    pub baseline_version: u64,
    #[prost(string, tag = "6")]
    pub evidence_id: String,
    #[prost(string, tag = "7")]
    pub provisioning_record_id: String,
    #[prost(string, tag = "8")]
    pub calibration_record_id: String,
    #[prost(string, tag = "9")]
    pub concession_id: String,
    #[prost(bool, tag = "10")]
    pub under_concession: bool,
    #[prost(int64, tag = "11")]
    pub decided_at: i64,
    #[prost(string, tag = "12")]
    pub decided_for: String,
}

/// A verdict reached without new evidence, kept in the unit's history.
#[derive(Clone, PartialEq, Message)]
pub struct ReappraisalEntry {
    #[prost(message, optional, tag = "1")]
    pub appraisal: Option<AppraisalEntry>,
    #[prost(int32, tag = "2")]
    pub status: i32,
    #[prost(int64, tag = "3")]
    pub at: i64,
}

/// One reported firmware component.
#[derive(Clone, PartialEq, Message)]
pub struct FirmwareEntry {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(uint64, tag = "3")]
    pub svn: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub digest: Vec<u8>,
}

/// Highest svn of one component.
#[derive(Clone, PartialEq, Message)]
pub struct SvnEntry {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub svn: u64,
}

/// A published baseline with its envelope as received.
#[derive(Clone, PartialEq, Message)]
pub struct BaselineEntry {
    #[prost(string, tag = "1")]
    pub model: String,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(int64, tag = "3")]
    pub effective_at: i64,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
    #[prost(string, tag = "6")]
    pub payload_type: String,
    #[prost(message, repeated, tag = "7")]
    pub signatures: Vec<SignatureEntry>,
    #[prost(int64, tag = "8")]
    pub published_at: i64,
    #[prost(string, tag = "9")]
    pub published_by: String,
    /// Firmware digests (hex) whose units this baseline most likely
    /// re-grades (newly revoked or no longer approved): when it becomes
    /// active they are swept first, ahead of the sweep of the whole model.
    #[prost(string, repeated, tag = "10")]
    pub urgent_digests: Vec<String>,
}

/// A re-appraisal sweep over one index (all units of a model, or all units
/// relying on a station), resumable from its cursor.
#[derive(Clone, PartialEq, Message)]
pub struct SweepEntry {
    /// 1 by model, 2 by station, 3 by firmware digest.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub key: String,
    /// Last serial processed; empty before the first.
    #[prost(string, tag = "3")]
    pub cursor: String,
    #[prost(string, tag = "4")]
    pub reason: String,
    /// Changes each time the sweep is (re)opened, so a job that read an
    /// older opening cannot advance or close a newer one.
    #[prost(uint64, tag = "5")]
    pub generation: u64,
}

/// One DSSE signature as received.
#[derive(Clone, PartialEq, Message)]
pub struct SignatureEntry {
    #[prost(bytes = "vec", tag = "1")]
    pub sig: Vec<u8>,
    #[prost(string, tag = "2")]
    pub keyid: String,
}

/// A stored station record, with its envelope exactly as received.
#[derive(Clone, PartialEq, Message)]
pub struct RecordEntry {
    #[prost(string, tag = "1")]
    pub record_id: String,
    #[prost(int32, tag = "2")]
    pub kind: i32,
    #[prost(string, tag = "3")]
    pub serial: String,
    #[prost(string, tag = "4")]
    pub station_id: String,
    #[prost(uint64, tag = "5")]
    pub sequence: u64,
    #[prost(int64, tag = "6")]
    pub performed_at: i64,
    #[prost(int64, tag = "7")]
    pub received_at: i64,
    #[prost(bytes = "vec", tag = "8")]
    pub payload: Vec<u8>,
    #[prost(string, tag = "9")]
    pub payload_type: String,
    #[prost(message, repeated, tag = "10")]
    pub signatures: Vec<SignatureEntry>,
}

/// One reason of an appraisal.
#[derive(Clone, PartialEq, Message)]
pub struct FindingEntry {
    #[prost(string, tag = "1")]
    pub code: String,
    #[prost(string, tag = "2")]
    pub claim: String,
    #[prost(string, tag = "3")]
    pub component: String,
    #[prost(string, tag = "4")]
    pub expected: String,
    #[prost(string, tag = "5")]
    pub actual: String,
    #[prost(string, tag = "6")]
    pub detail: String,
}

/// A stored appraisal.
#[derive(Clone, PartialEq, Message)]
pub struct AppraisalEntry {
    /// [`crate::codes::tier`].
    #[prost(int32, tag = "1")]
    pub tier: i32,
    /// The eight AR4SI claims in their fixed order.
    #[prost(sint32, repeated, tag = "2")]
    pub vector: Vec<i32>,
    #[prost(message, repeated, tag = "3")]
    pub findings: Vec<FindingEntry>,
    #[prost(string, tag = "4")]
    pub evidence_id: String,
    #[prost(string, tag = "5")]
    pub baseline_model: String,
    #[prost(uint64, tag = "6")]
    pub baseline_version: u64,
    #[prost(string, tag = "7")]
    pub provisioning_record_id: String,
    #[prost(string, tag = "8")]
    pub calibration_record_id: String,
    #[prost(int64, tag = "9")]
    pub appraised_at: i64,
}

/// Accepted evidence, with the COSE_Sign1 bytes exactly as received.
#[derive(Clone, PartialEq, Message)]
pub struct EvidenceEntry {
    #[prost(string, tag = "1")]
    pub evidence_id: String,
    #[prost(string, tag = "2")]
    pub serial: String,
    #[prost(uint64, tag = "3")]
    pub bootcount: u64,
    #[prost(int64, tag = "4")]
    pub issued_at: i64,
    #[prost(int64, tag = "5")]
    pub received_at: i64,
    #[prost(bool, tag = "6")]
    pub nonce_fresh: bool,
    #[prost(bytes = "vec", tag = "7")]
    pub raw: Vec<u8>,
    #[prost(message, optional, tag = "8")]
    pub appraisal: Option<AppraisalEntry>,
    /// The unit's history when this evidence was accepted, so that a later
    /// re-appraisal of it is reproducible.
    #[prost(bool, tag = "9")]
    pub has_prior_bootcount: bool,
    #[prost(uint64, tag = "10")]
    pub prior_bootcount: u64,
    #[prost(message, repeated, tag = "11")]
    pub prior_svns: Vec<SvnEntry>,
}

/// One entry of the audit chain (see `attestd_core::audit`).
#[derive(Clone, PartialEq, Message)]
pub struct AuditRecord {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(int64, tag = "2")]
    pub at_ms: i64,
    #[prost(string, tag = "3")]
    pub principal: String,
    #[prost(string, tag = "4")]
    pub action: String,
    #[prost(string, tag = "5")]
    pub target: String,
    #[prost(string, tag = "6")]
    pub reason: String,
    #[prost(string, tag = "7")]
    pub details: String,
    #[prost(bytes = "vec", tag = "8")]
    pub prev_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    pub hash: Vec<u8>,
}
