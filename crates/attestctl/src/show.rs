//! Output: aligned tables for people, JSON for scripts.

use attestd_client::pb;
use serde_json::{json, Value};

pub struct Out {
    pub json: bool,
}

fn ts(t: &Option<attestd_proto::Timestamp>) -> String {
    match t {
        Some(t) => attestd_client::core::time::UnixTime(t.seconds).to_string(),
        None => "-".into(),
    }
}

fn status(s: i32) -> String {
    pb::DeviceStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DEVICE_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| s.to_string())
}

fn tier(t: i32) -> String {
    pb::TrustTier::try_from(t)
        .map(|s| s.as_str_name().trim_start_matches("TRUST_TIER_").to_owned())
        .unwrap_or_else(|_| t.to_string())
}

fn decision(d: i32) -> &'static str {
    if d == pb::Decision::Release as i32 {
        "RELEASE"
    } else {
        "HOLD"
    }
}

/// Prints rows under a header with columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn reasons(a: &Option<pb::Appraisal>) -> String {
    a.as_ref()
        .map(|a| {
            a.reasons
                .iter()
                .map(|r| r.code.clone())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub fn device_json(d: &pb::Device) -> Value {
    json!({
        "serial": d.serial, "model": d.model, "hw_version": d.hw_version, "status": status(d.status),
        "tier": d.appraisal.as_ref().map(|a| tier(a.tier)),
        "reasons": d.appraisal.as_ref().map(|a| a.reasons.iter().map(|r| json!({
            "code": r.code, "claim": r.claim, "component": r.component, "expected": r.expected, "actual": r.actual, "detail": r.detail,
        })).collect::<Vec<_>>()),
        "trust_vector": d.appraisal.as_ref().and_then(|a| a.trust_vector.as_ref()).map(|v| json!({
            "instance_identity": v.instance_identity, "configuration": v.configuration, "executables": v.executables,
            "hardware": v.hardware, "sourced_data": v.sourced_data,
        })),
        "baseline_version": d.appraisal.as_ref().map(|a| a.baseline_version),
        "firmware": d.firmware.iter().map(|f| json!({"name": f.name, "version": f.version, "svn": f.svn, "digest": f.digest})).collect::<Vec<_>>(),
        "tenant": d.assignment.as_ref().map(|a| a.tenant.clone()), "site": d.assignment.as_ref().map(|a| a.site.clone()),
        "last_seen": ts(&d.last_seen), "quarantined": d.quarantined, "revoked": d.revoked,
        "last_evidence_id": d.last_evidence_id,
    })
}

pub fn decision_json(d: &pb::ReleaseDecision) -> Value {
    json!({
        "serial": d.serial, "decision": decision(d.decision), "decision_id": d.decision_id,
        "reasons": d.reasons.iter().map(|r| json!({"code": r.code, "detail": r.detail, "waived": r.waived})).collect::<Vec<_>>(),
        "baseline_version": d.baseline_version, "evidence_id": d.evidence_id,
        "provisioning_record_id": d.provisioning_record_id, "calibration_record_id": d.calibration_record_id,
        "under_concession": d.under_concession, "concession_id": d.concession_id,
    })
}

impl Out {
    pub fn line(&self, s: &str) {
        if self.json {
            println!("{}", json!({ "message": s }));
        } else {
            println!("{s}");
        }
    }

    pub fn stations(&self, list: &[pb::Station]) {
        if self.json {
            let v: Vec<Value> = list
                .iter()
                .map(|s| json!({"station_id": s.station_id, "key_id": s.key_id, "allowed_kinds": s.allowed_kinds, "allowed_models": s.allowed_models, "revoked": s.revoked, "last_sequence": s.last_sequence}))
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        let rows = list
            .iter()
            .map(|s| {
                let kinds = s
                    .allowed_kinds
                    .iter()
                    .map(|k| {
                        pb::RecordKind::try_from(*k)
                            .map(|k| {
                                k.as_str_name()
                                    .trim_start_matches("RECORD_KIND_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    s.station_id.clone(),
                    kinds,
                    s.allowed_models.join(","),
                    if s.revoked {
                        format!("REVOKED ({})", s.revoked_reason)
                    } else {
                        "active".into()
                    },
                    s.last_sequence.to_string(),
                    s.key_id.clone(),
                ]
            })
            .collect::<Vec<_>>();
        table(
            &["STATION", "KINDS", "MODELS", "STATE", "LAST SEQ", "KEY"],
            &rows,
        );
    }

    pub fn record_receipt(&self, r: &pb::SubmitRecordResponse) {
        if self.json {
            println!(
                "{}",
                json!({"record_id": r.record_id, "serial": r.serial, "kind": r.kind, "duplicate": r.duplicate})
            );
        } else {
            println!(
                "{} {} for {}{}",
                r.record_id,
                if r.kind == 1 {
                    "provisioning"
                } else {
                    "calibration"
                },
                r.serial,
                if r.duplicate { " (already stored)" } else { "" }
            );
        }
    }

    pub fn records(&self, list: &[pb::StoredRecord]) {
        if self.json {
            let v: Vec<Value> = list
                .iter()
                .map(|r| json!({"record_id": r.record_id, "kind": r.kind, "serial": r.serial, "station_id": r.station_id, "sequence": r.sequence, "performed_at": ts(&r.performed_at)}))
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        let rows = list
            .iter()
            .map(|r| {
                vec![
                    r.record_id.clone(),
                    if r.kind == 1 {
                        "provisioning".into()
                    } else {
                        "calibration".into()
                    },
                    r.serial.clone(),
                    r.station_id.clone(),
                    r.sequence.to_string(),
                    ts(&r.performed_at),
                ]
            })
            .collect::<Vec<_>>();
        table(
            &["RECORD", "KIND", "SERIAL", "STATION", "SEQ", "PERFORMED"],
            &rows,
        );
    }

    pub fn published(&self, r: &pb::PublishBaselineResponse) {
        let state = pb::BaselineState::try_from(r.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("BASELINE_STATE_")
                    .to_owned()
            })
            .unwrap_or_default();
        if self.json {
            println!(
                "{}",
                json!({"model": r.model, "version": r.version, "effective_at": ts(&r.effective_at), "state": state})
            );
        } else {
            println!(
                "baseline {} v{} accepted: {} (effective {})",
                r.model,
                r.version,
                state,
                ts(&r.effective_at)
            );
        }
    }

    pub fn baselines(&self, list: &[pb::Baseline]) {
        let state = |s: i32| {
            pb::BaselineState::try_from(s)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("BASELINE_STATE_")
                        .to_owned()
                })
                .unwrap_or_default()
        };
        if self.json {
            let v: Vec<Value> = list
                .iter()
                .map(|b| json!({"model": b.model, "version": b.version, "state": state(b.state), "effective_at": ts(&b.effective_at), "description": b.description, "published_by": b.published_by}))
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        let rows = list
            .iter()
            .map(|b| {
                vec![
                    b.model.clone(),
                    b.version.to_string(),
                    state(b.state),
                    ts(&b.effective_at),
                    b.description.clone(),
                ]
            })
            .collect::<Vec<_>>();
        table(
            &["MODEL", "VERSION", "STATE", "EFFECTIVE", "DESCRIPTION"],
            &rows,
        );
    }

    pub fn device(&self, d: &pb::Device) {
        if self.json {
            println!("{}", device_json(d));
            return;
        }
        println!("serial      {}", d.serial);
        println!("model       {} rev {}", d.model, d.hw_version);
        println!("status      {}", status(d.status));
        if let Some(a) = &d.appraisal {
            println!(
                "tier        {} (baseline v{})",
                tier(a.tier),
                a.baseline_version
            );
            if let Some(v) = &a.trust_vector {
                println!(
                    "trust       identity {} hardware {} executables {} configuration {} sourced_data {}",
                    v.instance_identity, v.hardware, v.executables, v.configuration, v.sourced_data
                );
            }
            for r in &a.reasons {
                let comp = if r.component.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", r.component)
                };
                println!(
                    "reason      {}{}: {} (expected {}, actual {})",
                    r.code, comp, r.detail, r.expected, r.actual
                );
            }
        }
        for f in &d.firmware {
            println!("firmware    {} {} svn {}", f.name, f.version, f.svn);
        }
        if let Some(a) = &d.assignment {
            println!(
                "assigned    {} / {} / {} {}",
                a.tenant, a.site, a.department, a.asset_tag
            );
        }
        println!("last seen   {}", ts(&d.last_seen));
    }

    /// Units as a table (then the change-feed cursor they reflect), or a
    /// JSON array.
    pub fn devices(&self, list: &[pb::Device], cursor: &str) {
        if self.json {
            println!("{}", Value::Array(list.iter().map(device_json).collect()));
            return;
        }
        let rows = list
            .iter()
            .map(|d| {
                vec![
                    d.serial.clone(),
                    d.model.clone(),
                    status(d.status),
                    d.assignment
                        .as_ref()
                        .map(|a| format!("{}/{}", a.tenant, a.site))
                        .unwrap_or_default(),
                    ts(&d.last_seen),
                    reasons(&d.appraisal),
                ]
            })
            .collect::<Vec<_>>();
        table(
            &[
                "SERIAL",
                "MODEL",
                "STATUS",
                "TENANT/SITE",
                "LAST SEEN",
                "REASONS",
            ],
            &rows,
        );
        watch_hint(cursor);
    }

    pub fn history(&self, entries: &[pb::HistoryEntry]) {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .filter_map(|e| e.entry.as_ref())
            .map(|e| match e {
                pb::history_entry::Entry::Record(r) => vec![
                    ts(&r.received_at),
                    "record".into(),
                    r.record_id.clone(),
                    format!("station {} seq {}", r.station_id, r.sequence),
                ],
                pb::history_entry::Entry::Evidence(v) => vec![
                    ts(&v.received_at),
                    "evidence".into(),
                    v.evidence_id.clone(),
                    format!("bootcount {} {}", v.bootcount, reasons(&v.appraisal)),
                ],
                pb::history_entry::Entry::Reappraisal(r) => vec![
                    ts(&r.at),
                    "re-appraisal".into(),
                    status(r.status),
                    reasons(&r.appraisal),
                ],
                pb::history_entry::Entry::ReleaseDecision(d) => vec![
                    ts(&d.decided_at),
                    "release".into(),
                    decision(d.decision).into(),
                    d.reasons
                        .iter()
                        .map(|r| r.code.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                ],
            })
            .collect();
        if self.json {
            println!(
                "{}",
                Value::Array(
                    rows.into_iter()
                        .map(|r| json!({"at": r[0], "kind": r[1], "what": r[2], "detail": r[3]}))
                        .collect()
                )
            );
        } else {
            table(&["AT", "KIND", "WHAT", "DETAIL"], &rows);
        }
    }

    pub fn summary(&self, s: &pb::FleetSummary) {
        let counts = |c: &[pb::StatusCount]| {
            c.iter()
                .map(|c| (status(c.status), c.count))
                .collect::<Vec<_>>()
        };
        if self.json {
            println!(
                "{}",
                json!({
                    "total": s.total,
                    "counts": counts(&s.counts).into_iter().map(|(k, v)| json!({"status": k, "count": v})).collect::<Vec<_>>(),
                    "groups": s.groups.iter().map(|g| json!({"key": g.key, "total": g.total, "counts": counts(&g.counts).into_iter().map(|(k, v)| json!({"status": k, "count": v})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                    "cursor": s.cursor,
                })
            );
            return;
        }
        let render = |c: &[pb::StatusCount]| {
            counts(c)
                .into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if s.groups.is_empty() {
            println!("{} units: {}", s.total, render(&s.counts));
        } else {
            let rows = s
                .groups
                .iter()
                .map(|g| {
                    vec![
                        if g.key.is_empty() {
                            "(none)".into()
                        } else {
                            g.key.clone()
                        },
                        g.total.to_string(),
                        render(&g.counts),
                    ]
                })
                .collect::<Vec<_>>();
            table(&["GROUP", "UNITS", "BY STATUS"], &rows);
            println!("{} units: {}", s.total, render(&s.counts));
        }
        watch_hint(&s.cursor);
    }

    pub fn change(&self, c: &pb::DeviceChange) {
        if self.json {
            println!(
                "{}",
                json!({"cursor": c.cursor, "serial": c.serial, "old_status": status(c.old_status), "new_status": status(c.new_status), "at": ts(&c.at), "reasons": c.reasons})
            );
        } else {
            println!(
                "{}  {}  {} -> {}  {}  (cursor {})",
                ts(&c.at),
                c.serial,
                status(c.old_status),
                status(c.new_status),
                c.reasons.join(","),
                c.cursor
            );
        }
    }

    pub fn decisions(&self, list: &[pb::ReleaseDecision]) {
        if self.json {
            println!("{}", Value::Array(list.iter().map(decision_json).collect()));
            return;
        }
        let rows = list
            .iter()
            .map(|d| {
                let why = d
                    .reasons
                    .iter()
                    .map(|r| {
                        if r.waived {
                            format!("{} (waived)", r.code)
                        } else {
                            r.code.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let what = if d.under_concession {
                    "RELEASE (under concession)".into()
                } else {
                    decision(d.decision).to_string()
                };
                vec![d.serial.clone(), what, why]
            })
            .collect::<Vec<_>>();
        table(&["SERIAL", "DECISION", "REASONS"], &rows);
        let released = list
            .iter()
            .filter(|d| d.decision == pb::Decision::Release as i32)
            .count();
        println!("{released} of {} released", list.len());
    }
}

/// The change-feed cursor a read reflects, and how to continue from it.
fn watch_hint(cursor: &str) {
    if !cursor.is_empty() {
        println!(
            "as of change {cursor}: `attestctl fleet watch --after {cursor}` continues from here"
        );
    }
}
