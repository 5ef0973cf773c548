//! Stored values to API messages.

use attestd_core::appraisal::{Appraisal, Tier};
use attestd_core::record::RecordKind;
use attestd_proto::v1 as pb;
use attestd_store::codes;
use attestd_store::{
    AppraisalEntry, BaselineEntry, ChangeEntry, DeviceEntry, EvidenceEntry, FindingEntry,
    ReappraisalEntry, RecordEntry, ReleaseDecisionEntry, SignatureEntry, StationEntry,
};

/// A whole-second time (seconds since the Unix epoch) as a protobuf timestamp.
pub fn timestamp(secs: i64) -> Option<attestd_proto::Timestamp> {
    Some(attestd_proto::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// A millisecond time (ms since the Unix epoch) as a protobuf timestamp.
pub fn timestamp_ms(ms: i64) -> Option<attestd_proto::Timestamp> {
    Some(attestd_proto::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// The API's trust tier.
pub fn api_tier(t: Tier) -> i32 {
    (match t {
        Tier::None => pb::TrustTier::None,
        Tier::Affirming => pb::TrustTier::Affirming,
        Tier::Warning => pb::TrustTier::Warning,
        Tier::Contraindicated => pb::TrustTier::Contraindicated,
    }) as i32
}

/// The API's device status of a unit's stored status (the store keeps its
/// own numbers, [`codes`]); UNSPECIFIED for none or a code it does not know.
pub fn api_status(stored: i32) -> i32 {
    use attestd_core::appraisal::Status;
    (match codes::status_of(stored) {
        Some(Status::Trusted) => pb::DeviceStatus::Trusted,
        Some(Status::Warning) => pb::DeviceStatus::Warning,
        Some(Status::Untrusted) => pb::DeviceStatus::Untrusted,
        Some(Status::Stale) => pb::DeviceStatus::Stale,
        Some(Status::Unknown) => pb::DeviceStatus::Unknown,
        Some(Status::Quarantined) => pb::DeviceStatus::Quarantined,
        None => pb::DeviceStatus::Unspecified,
    }) as i32
}

/// The stored status of an API device status (none for UNSPECIFIED).
pub fn stored_status(api: pb::DeviceStatus) -> Option<i32> {
    use attestd_core::appraisal::Status;
    Some(codes::status(match api {
        pb::DeviceStatus::Trusted => Status::Trusted,
        pb::DeviceStatus::Warning => Status::Warning,
        pb::DeviceStatus::Untrusted => Status::Untrusted,
        pb::DeviceStatus::Stale => Status::Stale,
        pb::DeviceStatus::Unknown => Status::Unknown,
        pb::DeviceStatus::Quarantined => Status::Quarantined,
        pb::DeviceStatus::Unspecified => return None,
    }))
}

fn api_stored_tier(stored: i32) -> i32 {
    codes::tier_of(stored).map_or(pb::TrustTier::Unspecified as i32, api_tier)
}

/// The API's record kind of a stored kind.
pub fn api_kind(stored: i32) -> i32 {
    (match codes::kind_of(stored) {
        Some(RecordKind::Provisioning) => pb::RecordKind::Provisioning,
        Some(RecordKind::Calibration) => pb::RecordKind::Calibration,
        None => pb::RecordKind::Unspecified,
    }) as i32
}

/// The stored kind of an API record kind (none for UNSPECIFIED).
pub fn stored_kind(api: pb::RecordKind) -> Option<i32> {
    match api {
        pb::RecordKind::Provisioning => Some(codes::kind(RecordKind::Provisioning)),
        pb::RecordKind::Calibration => Some(codes::kind(RecordKind::Calibration)),
        pb::RecordKind::Unspecified => None,
    }
}

fn api_decision(stored: i32) -> i32 {
    (match codes::decision_of(stored) {
        Some(codes::Decision::Release) => pb::Decision::Release,
        Some(codes::Decision::Hold) => pb::Decision::Hold,
        None => pb::Decision::Unspecified,
    }) as i32
}

/// Core appraisal to its stored form.
pub fn appraisal_entry(a: &Appraisal) -> AppraisalEntry {
    let v = a.vector;
    AppraisalEntry {
        tier: codes::tier(a.tier),
        vector: [
            v.instance_identity,
            v.configuration,
            v.executables,
            v.file_system,
            v.hardware,
            v.runtime_opaque,
            v.storage_opaque,
            v.sourced_data,
        ]
        .iter()
        .map(|&x| x as i32)
        .collect(),
        findings: a
            .findings
            .iter()
            .map(|f| FindingEntry {
                code: f.code.as_str().to_owned(),
                claim: f.code.claim().as_str().to_owned(),
                component: f.component.clone(),
                expected: f.expected.clone(),
                actual: f.actual.clone(),
                detail: f.detail.clone(),
            })
            .collect(),
        evidence_id: a.evidence_id.clone(),
        baseline_model: a.baseline_model.clone(),
        baseline_version: a.baseline_version,
        provisioning_record_id: a.provisioning_record_id.clone(),
        calibration_record_id: a.calibration_record_id.clone(),
        appraised_at: a.appraised_at.0,
    }
}

/// A stored appraisal as the API answers it.
pub fn appraisal(a: &AppraisalEntry) -> pb::Appraisal {
    let v = |i: usize| a.vector.get(i).copied().unwrap_or(0);
    pb::Appraisal {
        tier: api_stored_tier(a.tier),
        trust_vector: Some(pb::TrustVector {
            instance_identity: v(0),
            configuration: v(1),
            executables: v(2),
            file_system: v(3),
            hardware: v(4),
            runtime_opaque: v(5),
            storage_opaque: v(6),
            sourced_data: v(7),
        }),
        reasons: a
            .findings
            .iter()
            .map(|f| pb::Reason {
                code: f.code.clone(),
                claim: f.claim.clone(),
                component: f.component.clone(),
                expected: f.expected.clone(),
                actual: f.actual.clone(),
                detail: f.detail.clone(),
            })
            .collect(),
        evidence_id: a.evidence_id.clone(),
        baseline_model: a.baseline_model.clone(),
        baseline_version: a.baseline_version,
        provisioning_record_id: a.provisioning_record_id.clone(),
        calibration_record_id: a.calibration_record_id.clone(),
        appraised_at: timestamp(a.appraised_at),
    }
}

/// A stored envelope, exactly as it was received.
fn envelope(
    payload: Vec<u8>,
    payload_type: String,
    signatures: Vec<SignatureEntry>,
) -> pb::Envelope {
    pb::Envelope {
        payload,
        payload_type,
        signatures: signatures
            .into_iter()
            .map(|s| pb::Signature {
                sig: s.sig,
                keyid: s.keyid,
            })
            .collect(),
    }
}

/// A stored record, with its envelope exactly as received.
pub fn record(r: RecordEntry) -> pb::StoredRecord {
    pb::StoredRecord {
        record_id: r.record_id,
        kind: api_kind(r.kind),
        serial: r.serial,
        station_id: r.station_id,
        sequence: r.sequence,
        performed_at: timestamp(r.performed_at),
        received_at: timestamp_ms(r.received_at),
        envelope: Some(envelope(r.payload, r.payload_type, r.signatures)),
    }
}

/// Stored evidence (with its raw bytes if the entry holds them).
pub fn evidence(e: EvidenceEntry) -> pb::StoredEvidence {
    pb::StoredEvidence {
        evidence_id: e.evidence_id,
        serial: e.serial,
        bootcount: e.bootcount,
        issued_at: timestamp(e.issued_at),
        received_at: timestamp_ms(e.received_at),
        nonce_fresh: e.nonce_fresh,
        appraisal: e.appraisal.as_ref().map(appraisal),
        cose_sign1: e.raw,
    }
}

/// A registered station, with its key id.
pub fn station(s: StationEntry) -> pb::Station {
    let key_id = attestd_core::keys::PublicKey::from_spki_der(
        &s.spki_der,
        attestd_core::Reason::FieldInvalid,
        "public_key",
    )
    .map(|k| k.key_id())
    .unwrap_or_default();
    pb::Station {
        station_id: s.station_id,
        public_key: s.spki_der,
        key_id,
        allowed_kinds: s.allowed_kinds.into_iter().map(api_kind).collect(),
        allowed_models: s.allowed_models,
        allow_rekey: s.allow_rekey,
        revoked: s.revoked,
        revoked_reason: s.revoked_reason,
        registered_at: timestamp_ms(s.registered_at),
        revoked_at: if s.revoked {
            timestamp_ms(s.revoked_at)
        } else {
            None
        },
        last_sequence: s.last_sequence,
    }
}

/// A stored baseline with its state relative to the model's active version.
pub fn baseline(b: BaselineEntry, active: Option<u64>) -> pb::Baseline {
    let state = match active {
        Some(a) if a == b.version => pb::BaselineState::Active,
        Some(a) if a > b.version => pb::BaselineState::Superseded,
        _ => pb::BaselineState::Pending,
    };
    pb::Baseline {
        model: b.model,
        version: b.version,
        effective_at: timestamp(b.effective_at),
        description: b.description,
        state: state as i32,
        published_at: timestamp_ms(b.published_at),
        published_by: b.published_by,
        envelope: Some(envelope(b.payload, b.payload_type, b.signatures)),
    }
}

/// A unit as the fleet views show it.
pub fn device(d: DeviceEntry) -> pb::Device {
    let hex = attestd_core::ids::hex;
    pb::Device {
        serial: d.serial,
        model: d.model,
        hw_version: d.hw_version,
        status: api_status(d.status),
        status_changed_at: timestamp_ms(d.status_changed_at),
        appraisal: d.appraisal.as_ref().map(appraisal),
        firmware: d
            .firmware
            .iter()
            .map(|f| pb::FirmwareComponent {
                name: f.name.clone(),
                version: f.version.clone(),
                svn: f.svn,
                digest: hex(&f.digest),
            })
            .collect(),
        calibration_digest: hex(&d.calibration_digest),
        provisioning_record_id: d.provisioning_record_id,
        calibration_record_id: d.calibration_record_id,
        last_evidence_id: d.last_evidence_id,
        last_seen: if d.last_seen > 0 {
            timestamp_ms(d.last_seen)
        } else {
            None
        },
        enrolled_at: timestamp_ms(d.enrolled_at),
        revoked: d.revoked,
        revoked_reason: d.revoked_reason,
        next_check_at: if d.next_check_at > 0 {
            timestamp(d.next_check_at)
        } else {
            None
        },
        assignment: (!d.tenant.is_empty() || !d.site.is_empty()).then(|| pb::Assignment {
            tenant: d.tenant.clone(),
            site: d.site.clone(),
            department: d.department.clone(),
            asset_tag: d.asset_tag.clone(),
        }),
        quarantined: d.quarantined,
        quarantine_reason: d.quarantine_reason,
        calibration_due_at: if d.calibration_due_at > 0 {
            timestamp(d.calibration_due_at)
        } else {
            None
        },
    }
}

/// A verdict reached without new evidence, as a history entry.
pub fn reappraisal(r: ReappraisalEntry) -> pb::Reappraisal {
    pb::Reappraisal {
        appraisal: r.appraisal.as_ref().map(appraisal),
        status: api_status(r.status),
        at: timestamp_ms(r.at),
    }
}

/// A stored release decision (without a result token).
pub fn decision(d: ReleaseDecisionEntry) -> pb::ReleaseDecision {
    pb::ReleaseDecision {
        decision_id: d.decision_id,
        serial: d.serial,
        decision: api_decision(d.decision),
        reasons: d
            .reasons
            .into_iter()
            .map(|r| pb::GateReason {
                code: r.code,
                detail: r.detail,
                waived: r.waived,
            })
            .collect(),
        baseline_version: d.baseline_version,
        evidence_id: d.evidence_id,
        provisioning_record_id: d.provisioning_record_id,
        calibration_record_id: d.calibration_record_id,
        concession_id: d.concession_id,
        under_concession: d.under_concession,
        decided_at: timestamp_ms(d.decided_at),
        decided_for: d.decided_for,
        // Added on request, once the decision is final.
        result_token: String::new(),
    }
}

/// A change of the change feed, with its cursor.
pub fn change(c: ChangeEntry) -> pb::DeviceChange {
    pb::DeviceChange {
        cursor: c.seq.to_string(),
        serial: c.serial,
        old_status: api_status(c.old_status),
        new_status: api_status(c.new_status),
        at: timestamp_ms(c.at),
        model: c.model,
        tenant: c.tenant,
        site: c.site,
        reasons: c.reasons,
    }
}

/// Summary counters (group key, status, count) to the API shape.
pub fn summary(counts: &[attestd_store::SummaryCount], grouped: bool) -> pb::FleetSummary {
    let mut out = pb::FleetSummary::default();
    let add = |list: &mut Vec<pb::StatusCount>, status: i32, n: u64| match list
        .iter_mut()
        .find(|c| c.status == status)
    {
        Some(c) => c.count += n,
        None => list.push(pb::StatusCount { status, count: n }),
    };
    for (key, status, n) in counts {
        let status = &api_status(*status);
        add(&mut out.counts, *status, *n);
        out.total += n;
        if grouped {
            let i = match out.groups.iter().position(|g| g.key == *key) {
                Some(i) => i,
                None => {
                    out.groups.push(pb::SummaryGroupCounts {
                        key: key.clone(),
                        ..Default::default()
                    });
                    out.groups.len() - 1
                }
            };
            let g = &mut out.groups[i];
            add(&mut g.counts, *status, *n);
            g.total += n;
        }
    }
    out.counts.sort_by_key(|c| c.status);
    for g in &mut out.groups {
        g.counts.sort_by_key(|c| c.status);
    }
    out.groups.sort_by(|a, b| a.key.cmp(&b.key));
    out
}
