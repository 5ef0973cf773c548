//! Output: aligned tables for people; for scripts (`--json`) the API's own
//! response messages, serialized by the generated proto3 JSON mapping of
//! attestd-proto (every field, nothing mapped by hand), one message per line.
//!
//! Everything goes through [`Out`], which writes each piece of output at once
//! and hands back the write's error instead of panicking as `println!` does:
//! a reader that went away (`attestctl ... | head -1`) ends the command
//! quietly (see `main`).

use std::fmt::Write as _;
use std::io::Write as _;

use attestd_client::pb;
use serde::Serialize;

pub(crate) struct Out {
    pub json: bool,
}

impl Out {
    /// One API message: its proto3 JSON on one line with `--json`, else the
    /// text `human` renders from it.
    pub(crate) fn message<M: Serialize>(
        &self,
        msg: &M,
        human: impl FnOnce(&M) -> String,
    ) -> anyhow::Result<()> {
        let text = if self.json {
            let mut s = serde_json::to_string(msg)?;
            s.push('\n');
            s
        } else {
            human(msg)
        };
        Ok(write_stdout(&text)?)
    }

    /// A line of its own (no API message behind it): `{"message": ...}` with
    /// `--json`.
    pub(crate) fn line(&self, s: &str) -> anyhow::Result<()> {
        let text = if self.json {
            serde_json::json!({ "message": s }).to_string()
        } else {
            s.to_owned()
        };
        Ok(write_stdout(&(text + "\n"))?)
    }
}

/// Writes `text` to stdout in one go and flushes it.
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Progress and notes on stderr; a closed stderr is not worth failing for.
pub(crate) fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn ts(t: &Option<attestd_proto::Timestamp>) -> String {
    match t {
        Some(t) => attestd_client::core::time::UnixTime(t.seconds).to_string(),
        None => "-".into(),
    }
}

fn ms(at_ms: i64) -> String {
    attestd_client::core::time::UnixTime(at_ms.div_euclid(1000)).to_string()
}

fn hex(b: &[u8]) -> String {
    attestd_client::core::ids::hex(b)
}

pub(crate) fn status(s: i32) -> String {
    pb::DeviceStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DEVICE_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| s.to_string())
}

pub(crate) fn tier(t: i32) -> String {
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

fn kind(k: i32) -> String {
    pb::RecordKind::try_from(k)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("RECORD_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| k.to_string())
}

fn baseline_state(s: i32) -> String {
    pb::BaselineState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("BASELINE_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// Rows under a header with columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
    out
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

pub(crate) fn stations(list: &[pb::Station]) -> String {
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.station_id.clone(),
                s.allowed_kinds
                    .iter()
                    .map(|k| kind(*k))
                    .collect::<Vec<_>>()
                    .join(","),
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
    )
}

pub(crate) fn record_receipt(r: &pb::SubmitRecordResponse) -> String {
    format!(
        "{} {} for {}{}\n",
        r.record_id,
        kind(r.kind),
        r.serial,
        if r.duplicate { " (already stored)" } else { "" }
    )
}

pub(crate) fn records(list: &[pb::StoredRecord]) -> String {
    let rows = list
        .iter()
        .map(|r| {
            vec![
                r.record_id.clone(),
                kind(r.kind),
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
    )
}

pub(crate) fn published(r: &pb::PublishBaselineResponse) -> String {
    format!(
        "baseline {} v{} accepted: {} (effective {})\n",
        r.model,
        r.version,
        baseline_state(r.state),
        ts(&r.effective_at)
    )
}

pub(crate) fn baselines(list: &[pb::Baseline]) -> String {
    let rows = list
        .iter()
        .map(|b| {
            vec![
                b.model.clone(),
                b.version.to_string(),
                baseline_state(b.state),
                ts(&b.effective_at),
                b.description.clone(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["MODEL", "VERSION", "STATE", "EFFECTIVE", "DESCRIPTION"],
        &rows,
    )
}

/// An appraisal's tier, trust vector and reasons, one line each.
fn appraisal(out: &mut String, a: &pb::Appraisal) {
    let _ = writeln!(
        out,
        "tier        {} (baseline v{})",
        tier(a.tier),
        a.baseline_version
    );
    if let Some(v) = &a.trust_vector {
        let _ = writeln!(
            out,
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
        let _ = writeln!(
            out,
            "reason      {}{}: {} (expected {}, actual {})",
            r.code, comp, r.detail, r.expected, r.actual
        );
    }
}

pub(crate) fn device(d: &pb::Device) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "serial      {}", d.serial);
    let _ = writeln!(out, "model       {} rev {}", d.model, d.hw_version);
    let _ = writeln!(out, "status      {}", status(d.status));
    if let Some(a) = &d.appraisal {
        appraisal(&mut out, a);
    }
    for f in &d.firmware {
        let _ = writeln!(out, "firmware    {} {} svn {}", f.name, f.version, f.svn);
    }
    if let Some(a) = &d.assignment {
        let _ = writeln!(
            out,
            "assigned    {} / {} / {} {}",
            a.tenant, a.site, a.department, a.asset_tag
        );
    }
    if d.revoked {
        let _ = writeln!(out, "revoked     {}", d.revoked_reason);
    }
    if d.quarantined {
        let _ = writeln!(out, "quarantined {}", d.quarantine_reason);
    }
    let _ = writeln!(out, "last seen   {}", ts(&d.last_seen));
    out
}

/// Units as a table, then the change-feed cursor they reflect.
pub(crate) fn devices(list: &[pb::Device], cursor: &str) -> String {
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
    ) + &watch_hint(cursor)
}

pub(crate) fn history(entries: &[pb::HistoryEntry]) -> String {
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
    table(&["AT", "KIND", "WHAT", "DETAIL"], &rows)
}

pub(crate) fn summary(s: &pb::FleetSummary) -> String {
    let render = |c: &[pb::StatusCount]| {
        c.iter()
            .map(|c| format!("{} {}", status(c.status), c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    if !s.groups.is_empty() {
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
        out = table(&["GROUP", "UNITS", "BY STATUS"], &rows);
    }
    let _ = writeln!(out, "{} units: {}", s.total, render(&s.counts));
    out + &watch_hint(&s.cursor)
}

pub(crate) fn change(c: &pb::DeviceChange) -> String {
    format!(
        "{}  {}  {} -> {}  {}  (cursor {})\n",
        ts(&c.at),
        c.serial,
        status(c.old_status),
        status(c.new_status),
        c.reasons.join(","),
        c.cursor
    )
}

pub(crate) fn decisions(list: &[pb::ReleaseDecision]) -> String {
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
    let released = list
        .iter()
        .filter(|d| d.decision == pb::Decision::Release as i32)
        .count();
    table(&["SERIAL", "DECISION", "REASONS"], &rows)
        + &format!("{released} of {} released\n", list.len())
}

pub(crate) fn concession(c: &pb::Concession) -> String {
    format!(
        "concession {} for {}: waives {} ({}; {}), granted by {} at {}\n",
        c.concession_id,
        c.serial,
        c.waived_codes.join(","),
        c.justification,
        c.meaning,
        c.granted_by,
        ts(&c.granted_at)
    )
}

pub(crate) fn audit_head(h: &pb::AuditHead) -> String {
    let mut out = format!("sequence {} hash {}\n", h.sequence, hex(&h.hash));
    match h
        .checkpoint
        .as_ref()
        .and_then(|c| attestd_client::core::audit::Checkpoint::parse(&c.details))
    {
        Some(cp) => {
            let _ = writeln!(
                out,
                "newest checkpoint: entry {} signs head {} {} with key {}",
                h.checkpoint.as_ref().map_or(0, |c| c.sequence),
                cp.seq,
                hex(&cp.hash),
                cp.key_id
            );
        }
        None => out.push_str("no signed checkpoint yet\n"),
    }
    out
}

/// Audit entries as table rows (no header: `audit tail` prints them as they come).
pub(crate) fn audit_rows(events: &[pb::AuditEvent]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            vec![
                e.sequence.to_string(),
                ms(e.at_ms),
                e.principal.clone(),
                e.action.clone(),
                e.target.clone(),
                e.reason.clone(),
                e.details.clone(),
            ]
        })
        .collect()
}

pub(crate) const AUDIT_HEADER: [&str; 7] = [
    "SEQ",
    "AT",
    "PRINCIPAL",
    "ACTION",
    "TARGET",
    "REASON",
    "DETAILS",
];

/// An audit page: a table, then where to go on.
pub(crate) fn audit_events(r: &pb::ListAuditEventsResponse) -> String {
    let mut out = table(&AUDIT_HEADER, &audit_rows(&r.events));
    if r.next_after_sequence != 0 {
        let _ = writeln!(
            out,
            "more: `attestctl audit list --after {}` goes on",
            r.next_after_sequence
        );
    }
    out
}

/// One audit entry on one line, for `audit tail`.
pub(crate) fn audit_event(e: &pb::AuditEvent) -> String {
    let mut line = audit_rows(std::slice::from_ref(e))
        .remove(0)
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("  ");
    line.push('\n');
    line
}

pub(crate) fn challenge(c: &pb::GetChallengeResponse) -> String {
    format!(
        "nonce {} (expires {}); sign it into the evidence's eat_nonce claim\n",
        hex(&c.nonce),
        ts(&c.expires_at)
    )
}

pub(crate) fn evidence_receipt(r: &pb::SubmitEvidenceResponse) -> String {
    let mut out = format!("evidence {}\n", r.evidence_id);
    if let Some(a) = &r.appraisal {
        appraisal(&mut out, a);
    }
    out
}

pub(crate) fn stored_evidence(e: &pb::StoredEvidence) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "evidence    {}", e.evidence_id);
    let _ = writeln!(out, "serial      {} bootcount {}", e.serial, e.bootcount);
    let _ = writeln!(
        out,
        "issued      {} received {}{}",
        ts(&e.issued_at),
        ts(&e.received_at),
        if e.nonce_fresh {
            ""
        } else {
            " (deferred: no nonce)"
        }
    );
    if let Some(a) = &e.appraisal {
        appraisal(&mut out, a);
    }
    let _ = writeln!(out, "cose_sign1  {} bytes", e.cose_sign1.len());
    out
}

/// The change-feed cursor a read reflects, and how to continue from it.
fn watch_hint(cursor: &str) -> String {
    if cursor.is_empty() {
        return String::new();
    }
    format!("as of change {cursor}: `attestctl fleet watch --after {cursor}` continues from here\n")
}
