//! `attestctl audit head | list | tail | export`: reading the audit trail
//! from a server (`audit verify`, offline, is in files.rs).

use std::time::Duration;

use anyhow::Context;
use attestd_client::{pb, Client};

use crate::cli::{AuditCmd, AuditFilter};
use crate::show::{self, Out};

/// Entries asked for per call (the server may answer fewer).
const PAGE: u64 = 1000;

fn request(after: u64, page_size: u64, f: &AuditFilter) -> pb::ListAuditEventsRequest {
    pb::ListAuditEventsRequest {
        after_sequence: after,
        page_size: page_size.min(PAGE) as i32,
        principal: f.principal.clone(),
        action: f.action.clone(),
        target: f.target.clone(),
    }
}

pub(crate) async fn run(c: &Client, cmd: AuditCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify { .. } => unreachable!("offline, handled in main"),
        AuditCmd::Head => {
            let h = c
                .audit()
                .get_audit_head(pb::GetAuditHeadRequest {})
                .await?
                .into_inner();
            out.message(&h, show::audit_head)
        }
        AuditCmd::Export { out: path, after } => {
            let export = attestd_client::audit::export_file(c, after, 0, |n| {
                if n.is_multiple_of(10_000) {
                    show::note(&format!("exported {n} entries ..."));
                }
            })
            .await?;
            std::fs::write(&path, export.text)
                .with_context(|| format!("writing {}", path.display()))?;
            out.line(&format!(
                "{} entries written to {}",
                export.entries,
                path.display()
            ))
        }
        AuditCmd::List {
            after,
            limit,
            filter,
        } => {
            let page = list(c, after, limit, &filter).await?;
            out.message(&page, show::audit_events)
        }
        AuditCmd::Tail {
            lines,
            follow,
            interval_ms,
            filter,
        } => tail(c, lines, follow, interval_ms, &filter, out).await,
    }
}

/// Up to `limit` entries after `after`, page after page, as one response:
/// `next_after_sequence` says where to go on (0: nothing more now).
async fn list(
    c: &Client,
    after: u64,
    limit: u64,
    filter: &AuditFilter,
) -> anyhow::Result<pb::ListAuditEventsResponse> {
    let mut all = pb::ListAuditEventsResponse {
        events: Vec::new(),
        next_after_sequence: after,
    };
    while (all.events.len() as u64) < limit {
        let want = limit - all.events.len() as u64;
        let page = c
            .audit()
            .list_audit_events(request(all.next_after_sequence, want, filter))
            .await?
            .into_inner();
        let got = page.events.len() as u64;
        all.events
            .extend(page.events.into_iter().take(want as usize));
        all.next_after_sequence = page.next_after_sequence;
        if all.next_after_sequence == 0 {
            return Ok(all);
        }
        if got > want {
            break;
        }
    }
    // Stopped at the limit: go on after the last entry printed.
    if let Some(last) = all.events.last() {
        all.next_after_sequence = last.sequence;
    }
    Ok(all)
}

/// The newest entry's sequence number.
async fn head(c: &Client) -> anyhow::Result<u64> {
    Ok(c.audit()
        .get_audit_head(pb::GetAuditHeadRequest {})
        .await?
        .into_inner()
        .sequence)
}

/// The entries among the newest `lines` that match, one per line (one JSON
/// `AuditEvent` per line with `--json`), then with `follow` every new one.
async fn tail(
    c: &Client,
    lines: u64,
    follow: bool,
    interval_ms: u64,
    filter: &AuditFilter,
    out: &Out,
) -> anyhow::Result<()> {
    let mut after = head(c).await?.saturating_sub(lines);
    loop {
        // Every entry up to this head is examined once the listing below
        // reaches the end of the chain, matching or not.
        let seen_up_to = head(c).await?;
        loop {
            let page = c
                .audit()
                .list_audit_events(request(after, PAGE, filter))
                .await?
                .into_inner();
            for e in &page.events {
                out.message(e, show::audit_event)?;
                after = after.max(e.sequence);
            }
            if page.next_after_sequence == 0 {
                break;
            }
            after = after.max(page.next_after_sequence);
        }
        after = after.max(seen_up_to);
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(interval_ms.max(100))).await;
    }
}
