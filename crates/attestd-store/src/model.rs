//! What the store keeps, as prost messages (stable, versionable encodings;
//! docs/formats.md asks for prost rather than serde-bincode). Field numbers are a
//! storage contract: never reuse one.

use prost::Message;

/// A registered station.
#[derive(Clone, PartialEq, Message)]
pub struct StationEntry {
    /// The station's id.
    #[prost(string, tag = "1")]
    pub station_id: String,
    /// The station's public key (SPKI DER), as registered.
    #[prost(bytes = "vec", tag = "2")]
    pub spki_der: Vec<u8>,
    /// Record kinds ([`crate::codes::kind`]).
    #[prost(int32, repeated, tag = "3")]
    pub allowed_kinds: Vec<i32>,
    /// Models this station may sign for; "*" for any.
    #[prost(string, repeated, tag = "4")]
    pub allowed_models: Vec<String>,
    /// Whether the station may re-key an enrolled unit (a provisioning record with `supersedes`).
    #[prost(bool, tag = "5")]
    pub allow_rekey: bool,
    /// Whether a security admin revoked the station; its records are refused from then on.
    #[prost(bool, tag = "6")]
    pub revoked: bool,
    /// Why it was revoked.
    #[prost(string, tag = "7")]
    pub revoked_reason: String,
    /// When it was registered, ms since the Unix epoch.
    #[prost(int64, tag = "8")]
    pub registered_at: i64,
    /// When it was revoked, ms since the Unix epoch; 0 while it is not.
    #[prost(int64, tag = "9")]
    pub revoked_at: i64,
    /// Highest record sequence accepted; 0 before the first.
    #[prost(uint64, tag = "10")]
    pub last_sequence: u64,
    /// Whether a record of the station was accepted yet (`last_sequence` is meaningful).
    #[prost(bool, tag = "11")]
    pub has_sequence: bool,
}

/// What attestd knows about one enrolled unit.
#[derive(Clone, PartialEq, Message)]
pub struct DeviceEntry {
    /// The unit's serial.
    #[prost(string, tag = "1")]
    pub serial: String,
    /// The model the unit is enrolled as.
    #[prost(string, tag = "2")]
    pub model: String,
    /// The hardware version the unit is enrolled as.
    #[prost(string, tag = "3")]
    pub hw_version: String,
    /// The enrolled device key (SPKI DER).
    #[prost(bytes = "vec", tag = "4")]
    pub spki_der: Vec<u8>,
    /// The unit's current provisioning record.
    #[prost(string, tag = "5")]
    pub provisioning_record_id: String,
    /// The unit's latest calibration record; empty without one.
    #[prost(string, tag = "6")]
    pub calibration_record_id: String,
    /// Whether evidence was accepted yet (`highest_bootcount` is meaningful).
    #[prost(bool, tag = "7")]
    pub has_bootcount: bool,
    /// Highest boot counter accepted from the unit.
    #[prost(uint64, tag = "8")]
    pub highest_bootcount: u64,
    /// How many pieces of evidence were accepted from the unit.
    #[prost(uint64, tag = "9")]
    pub evidence_count: u64,
    /// The latest accepted evidence; empty before the first.
    #[prost(string, tag = "10")]
    pub last_evidence_id: String,
    /// When attestd received the latest evidence, ms since the Unix epoch; 0 never.
    #[prost(int64, tag = "11")]
    pub last_seen: i64,
    /// When the unit was enrolled, ms since the Unix epoch.
    #[prost(int64, tag = "12")]
    pub enrolled_at: i64,
    /// Bumped by every write to the unit: lets a writer that decided on a
    /// snapshot detect that the unit changed underneath it.
    #[prost(uint64, tag = "13")]
    pub revision: u64,
    /// The station behind the current provisioning record.
    #[prost(string, tag = "14")]
    pub provisioning_station_id: String,
    /// The station behind the latest calibration record; empty without one.
    #[prost(string, tag = "15")]
    pub calibration_station_id: String,
    /// Revoked by a security admin (`Admin.RevokeDevice`).
    #[prost(bool, tag = "16")]
    pub revoked: bool,
    /// Why it was revoked.
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
    /// When the status last changed, ms since the Unix epoch.
    #[prost(int64, tag = "21")]
    pub status_changed_at: i64,
    /// When time alone next changes the verdict (seconds); 0 for never.
    #[prost(int64, tag = "22")]
    pub next_check_at: i64,
    /// Held by a security admin (`Release.SetQuarantine`).
    #[prost(bool, tag = "23")]
    pub quarantined: bool,
    /// Firmware the unit last reported.
    #[prost(message, repeated, tag = "24")]
    pub firmware: Vec<FirmwareEntry>,
    /// Calibration data set digest the unit last reported (empty if none).
    #[prost(bytes = "vec", tag = "25")]
    pub calibration_digest: Vec<u8>,
    /// The tenant (hospital) the unit is assigned to; empty when unassigned.
    #[prost(string, tag = "26")]
    pub tenant: String,
    /// The site within the tenant.
    #[prost(string, tag = "27")]
    pub site: String,
    /// The department within the site.
    #[prost(string, tag = "28")]
    pub department: String,
    /// The hospital's asset tag.
    #[prost(string, tag = "29")]
    pub asset_tag: String,
    /// Why the unit is quarantined; empty when it is not.
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
    /// The calibration record's id.
    #[prost(string, tag = "1")]
    pub record_id: String,
    /// The station that signed it.
    #[prost(string, tag = "2")]
    pub station_id: String,
    /// Whether its result is PASS.
    #[prost(bool, tag = "3")]
    pub passed: bool,
    /// When the calibration was done, seconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub performed_at: i64,
    /// When attestd accepted the record, ms since the Unix epoch (its clock).
    #[prost(int64, tag = "5")]
    pub received_at_ms: i64,
    /// When the next calibration is due, seconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub next_due_at: i64,
    /// SHA-256 of the calibration data set the unit must report.
    #[prost(bytes = "vec", tag = "7")]
    pub digest: Vec<u8>,
    /// `as_left` of each calibrated parameter.
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<CalibrationParameterEntry>,
    /// The reference instruments used.
    #[prost(message, repeated, tag = "9")]
    pub instruments: Vec<InstrumentEntry>,
}

/// One calibrated parameter's value after adjustment.
#[derive(Clone, PartialEq, Message)]
pub struct CalibrationParameterEntry {
    /// The parameter's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value measured after adjustment.
    #[prost(double, tag = "2")]
    pub as_left: f64,
}

/// A reference instrument of a calibration.
#[derive(Clone, PartialEq, Message)]
pub struct InstrumentEntry {
    /// The instrument's id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The instrument's own calibration due date, seconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub due_at: i64,
}

/// Waived reason codes for one unit.
#[derive(Clone, PartialEq, Message)]
pub struct ConcessionEntry {
    /// The concession's id.
    #[prost(string, tag = "1")]
    pub concession_id: String,
    /// The unit it applies to.
    #[prost(string, tag = "2")]
    pub serial: String,
    /// The reason codes it waives.
    #[prost(string, repeated, tag = "3")]
    pub waived_codes: Vec<String>,
    /// Why the deviation is accepted.
    #[prost(string, tag = "4")]
    pub justification: String,
    /// What the approval means, e.g. "approved under concession per CAPA-123".
    #[prost(string, tag = "5")]
    pub meaning: String,
    /// The principal that granted it.
    #[prost(string, tag = "6")]
    pub granted_by: String,
    /// When it was granted, ms since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub granted_at: i64,
}

/// One status change, as the change feed keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct ChangeEntry {
    /// Position in the change feed: gapless, in commit order; the watch cursor.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The unit whose status changed.
    #[prost(string, tag = "2")]
    pub serial: String,
    /// The status before ([`crate::codes::status`]; 0 for none).
    #[prost(int32, tag = "3")]
    pub old_status: i32,
    /// The status after.
    #[prost(int32, tag = "4")]
    pub new_status: i32,
    /// When it changed, ms since the Unix epoch.
    #[prost(int64, tag = "5")]
    pub at: i64,
    /// The unit's model, for watch filters.
    #[prost(string, tag = "6")]
    pub model: String,
    /// The unit's tenant, for watch filters.
    #[prost(string, tag = "7")]
    pub tenant: String,
    /// The unit's site, for watch filters.
    #[prost(string, tag = "8")]
    pub site: String,
    /// The reason codes of the verdict behind the change.
    #[prost(string, repeated, tag = "9")]
    pub reasons: Vec<String>,
}

/// One reason of a release decision.
#[derive(Clone, PartialEq, Message)]
pub struct GateReasonEntry {
    /// The gate's or the appraisal's reason code.
    #[prost(string, tag = "1")]
    pub code: String,
    /// A sentence for a reader.
    #[prost(string, tag = "2")]
    pub detail: String,
    /// Whether the unit's concession waives it.
    #[prost(bool, tag = "3")]
    pub waived: bool,
}

/// A release decision, kept in the unit's history.
#[derive(Clone, PartialEq, Message)]
pub struct ReleaseDecisionEntry {
    /// The decision's id (`rd_` and 32 hex characters).
    #[prost(string, tag = "1")]
    pub decision_id: String,
    /// The unit decided.
    #[prost(string, tag = "2")]
    pub serial: String,
    /// [`crate::codes::decision`].
    #[prost(int32, tag = "3")]
    pub decision: i32,
    /// Every reason, in gate order.
    #[prost(message, repeated, tag = "4")]
    pub reasons: Vec<GateReasonEntry>,
    /// The active baseline version it was decided against; 0 without one.
    #[prost(uint64, tag = "5")]
    pub baseline_version: u64,
    /// The evidence it rests on; empty if the unit never attested.
    #[prost(string, tag = "6")]
    pub evidence_id: String,
    /// The provisioning record it rests on.
    #[prost(string, tag = "7")]
    pub provisioning_record_id: String,
    /// The calibration record it rests on; empty without one.
    #[prost(string, tag = "8")]
    pub calibration_record_id: String,
    /// The concession a release rests on; empty without one.
    #[prost(string, tag = "9")]
    pub concession_id: String,
    /// Whether the release rests on a concession.
    #[prost(bool, tag = "10")]
    pub under_concession: bool,
    /// When it was decided, ms since the Unix epoch.
    #[prost(int64, tag = "11")]
    pub decided_at: i64,
    /// The principal that asked.
    #[prost(string, tag = "12")]
    pub decided_for: String,
}

/// A verdict reached without new evidence, kept in the unit's history.
#[derive(Clone, PartialEq, Message)]
pub struct ReappraisalEntry {
    /// The new appraisal, if the unit has evidence.
    #[prost(message, optional, tag = "1")]
    pub appraisal: Option<AppraisalEntry>,
    /// The new status ([`crate::codes::status`]).
    #[prost(int32, tag = "2")]
    pub status: i32,
    /// When it was decided, ms since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub at: i64,
}

/// One reported firmware component.
#[derive(Clone, PartialEq, Message)]
pub struct FirmwareEntry {
    /// Component name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The build's version text.
    #[prost(string, tag = "2")]
    pub version: String,
    /// The build's security version number.
    #[prost(uint64, tag = "3")]
    pub svn: u64,
    /// SHA-256 of the measured image.
    #[prost(bytes = "vec", tag = "4")]
    pub digest: Vec<u8>,
}

/// Highest svn of one component.
#[derive(Clone, PartialEq, Message)]
pub struct SvnEntry {
    /// Component name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The highest svn accepted for it.
    #[prost(uint64, tag = "2")]
    pub svn: u64,
}

/// A published baseline with its envelope as received.
#[derive(Clone, PartialEq, Message)]
pub struct BaselineEntry {
    /// The model it governs.
    #[prost(string, tag = "1")]
    pub model: String,
    /// Its version, increasing per model.
    #[prost(uint64, tag = "2")]
    pub version: u64,
    /// When it becomes active, seconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub effective_at: i64,
    /// Free text from the baseline.
    #[prost(string, tag = "4")]
    pub description: String,
    /// The DSSE payload as received.
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
    /// The DSSE payload type as received.
    #[prost(string, tag = "6")]
    pub payload_type: String,
    /// The release signatures as received.
    #[prost(message, repeated, tag = "7")]
    pub signatures: Vec<SignatureEntry>,
    /// When it was published, ms since the Unix epoch.
    #[prost(int64, tag = "8")]
    pub published_at: i64,
    /// The principal that published it.
    #[prost(string, tag = "9")]
    pub published_by: String,
    /// Firmware digests (hex) whose units this baseline most likely
    /// re-grades (newly revoked or no longer approved): when it becomes
    /// active they are swept first, ahead of the sweep of the whole model.
    #[prost(string, repeated, tag = "10")]
    pub urgent_digests: Vec<String>,
}

/// A re-appraisal sweep over one index (all units of a model, all units
/// relying on a station, or all units reporting a firmware digest),
/// resumable from its cursor.
#[derive(Clone, PartialEq, Message)]
pub struct SweepEntry {
    /// 1 by model, 2 by station, 3 by firmware digest.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The model, station id or digest (hex) whose units the sweep walks.
    #[prost(string, tag = "2")]
    pub key: String,
    /// Last serial processed; empty before the first.
    #[prost(string, tag = "3")]
    pub cursor: String,
    /// Why the sweep was opened, for logs.
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
    /// The signature bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub sig: Vec<u8>,
    /// The key id hint, as the signer gave it.
    #[prost(string, tag = "2")]
    pub keyid: String,
}

/// A stored station record, with its envelope exactly as received.
#[derive(Clone, PartialEq, Message)]
pub struct RecordEntry {
    /// The record's id (`rec_` and 32 hex characters).
    #[prost(string, tag = "1")]
    pub record_id: String,
    /// Record kind ([`crate::codes::kind`]).
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The unit it is about.
    #[prost(string, tag = "3")]
    pub serial: String,
    /// The station that signed it.
    #[prost(string, tag = "4")]
    pub station_id: String,
    /// The station's record counter.
    #[prost(uint64, tag = "5")]
    pub sequence: u64,
    /// When the station says the work was done, seconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub performed_at: i64,
    /// When attestd accepted it, ms since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub received_at: i64,
    /// The DSSE payload as received.
    #[prost(bytes = "vec", tag = "8")]
    pub payload: Vec<u8>,
    /// The DSSE payload type as received.
    #[prost(string, tag = "9")]
    pub payload_type: String,
    /// The signatures as received.
    #[prost(message, repeated, tag = "10")]
    pub signatures: Vec<SignatureEntry>,
}

/// One reason of an appraisal.
#[derive(Clone, PartialEq, Message)]
pub struct FindingEntry {
    /// The reason code, e.g. `FIRMWARE_REVOKED`.
    #[prost(string, tag = "1")]
    pub code: String,
    /// The AR4SI claim it is about, e.g. `executables`.
    #[prost(string, tag = "2")]
    pub claim: String,
    /// The component or calibration parameter concerned; empty when none.
    #[prost(string, tag = "3")]
    pub component: String,
    /// The value expected; may be empty.
    #[prost(string, tag = "4")]
    pub expected: String,
    /// The value found; may be empty.
    #[prost(string, tag = "5")]
    pub actual: String,
    /// A sentence for a reader.
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
    /// Every failing check, in reason order.
    #[prost(message, repeated, tag = "3")]
    pub findings: Vec<FindingEntry>,
    /// The evidence appraised.
    #[prost(string, tag = "4")]
    pub evidence_id: String,
    /// The model of the baseline used; empty without one.
    #[prost(string, tag = "5")]
    pub baseline_model: String,
    /// The version of the baseline used; 0 without one.
    #[prost(uint64, tag = "6")]
    pub baseline_version: u64,
    /// The provisioning record it rests on.
    #[prost(string, tag = "7")]
    pub provisioning_record_id: String,
    /// The calibration record it rests on; empty without one.
    #[prost(string, tag = "8")]
    pub calibration_record_id: String,
    /// When it was appraised, seconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub appraised_at: i64,
}

/// Accepted evidence, with the COSE_Sign1 bytes exactly as received.
#[derive(Clone, PartialEq, Message)]
pub struct EvidenceEntry {
    /// The evidence's id (`ev_` and 32 hex characters).
    #[prost(string, tag = "1")]
    pub evidence_id: String,
    /// The unit that signed it.
    #[prost(string, tag = "2")]
    pub serial: String,
    /// Its boot counter.
    #[prost(uint64, tag = "3")]
    pub bootcount: u64,
    /// When the unit says it made the evidence (`iat`), seconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub issued_at: i64,
    /// When attestd accepted it, ms since the Unix epoch.
    #[prost(int64, tag = "5")]
    pub received_at: i64,
    /// Whether it carried a nonce attestd issued (false: deferred).
    #[prost(bool, tag = "6")]
    pub nonce_fresh: bool,
    /// The COSE_Sign1 bytes exactly as received.
    #[prost(bytes = "vec", tag = "7")]
    pub raw: Vec<u8>,
    /// Its appraisal when accepted.
    #[prost(message, optional, tag = "8")]
    pub appraisal: Option<AppraisalEntry>,
    /// The unit's history when this evidence was accepted, so that a later
    /// re-appraisal of it is reproducible.
    #[prost(bool, tag = "9")]
    pub has_prior_bootcount: bool,
    /// The highest boot counter accepted before it (meaningful with `has_prior_bootcount`).
    #[prost(uint64, tag = "10")]
    pub prior_bootcount: u64,
    /// The highest svn per component accepted before it.
    #[prost(message, repeated, tag = "11")]
    pub prior_svns: Vec<SvnEntry>,
}

/// One entry of the audit chain (see `attestd_core::audit`).
#[derive(Clone, PartialEq, Message)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// When it was written, ms since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub at_ms: i64,
    /// Who made the change.
    #[prost(string, tag = "3")]
    pub principal: String,
    /// What happened.
    #[prost(string, tag = "4")]
    pub action: String,
    /// On what.
    #[prost(string, tag = "5")]
    pub target: String,
    /// The reason an operator gave, or empty.
    #[prost(string, tag = "6")]
    pub reason: String,
    /// Ids and facts a reader needs, or empty.
    #[prost(string, tag = "7")]
    pub details: String,
    /// The hash of the entry before (32 zero bytes for the first).
    #[prost(bytes = "vec", tag = "8")]
    pub prev_hash: Vec<u8>,
    /// This entry's hash.
    #[prost(bytes = "vec", tag = "9")]
    pub hash: Vec<u8>,
}
