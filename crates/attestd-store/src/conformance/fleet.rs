//! Fleet views: device listings (filters, pages, budget), summaries and
//! counters, each compared with what the units themselves say.

use std::sync::Arc;

use super::data::*;
use crate::*;

const FLEET: u32 = 12;

/// Twelve units F00..F11 of three models, two hardware versions, two
/// tenants (and none), three sites, two departments, three firmware
/// versions, every status, some never seen; the units.
async fn fleet(s: &dyn Store) -> Vec<DeviceEntry> {
    line(s, "st-a").await;
    for i in 0..FLEET {
        let serial = format!("F{i:02}");
        let n = i as usize;
        let mut c = provisioning("st-a", u64::from(i) + 1, &serial, &key(100 + i), None);
        let en = c.enrollment.as_mut().expect("an enrollment");
        en.model = ["PM-200", "IP-100", "PM-300"][n % 3].into();
        en.hw_version = ["A", "B"][n % 2].into();
        s.commit_record(c).await.unwrap();
        if n % 4 != 3 {
            let tenant = ["h1", "h2", "h1"][n % 4];
            let site = match (tenant, n % 8 < 4) {
                ("h2", _) => "east",
                (_, true) => "north",
                _ => "south",
            };
            let a = Assignment {
                tenant: tenant.into(),
                site: site.into(),
                department: if n.is_multiple_of(5) { "icu" } else { "ward" }.into(),
                asset_tag: format!("A-{i}"),
            };
            s.assign_device(&serial, &a, &note("device.assign"))
                .await
                .unwrap();
        }
        if i < 10 {
            let d = device(s, &serial).await;
            let v = (n / 3) % 3;
            let mut c = evidence(&serial, 1, &d, false);
            c.entry.received_at = 1_000 * (i64::from(i) + 1);
            c.firmware = vec![FirmwareEntry {
                name: "os".into(),
                version: ["1.0", "1.1", "2.0"][v].into(),
                svn: v as u64,
                digest: vec![v as u8; 32],
            }];
            if n.is_multiple_of(2) {
                c.firmware.push(FirmwareEntry {
                    name: "boot".into(),
                    version: "7".into(),
                    svn: 7,
                    digest: vec![0x70; 32],
                });
            }
            c.verdict = UnitVerdict {
                status: [1, 2, 3, 4, 6, 1][n % 6],
                calibration_due_at: if n.is_multiple_of(3) {
                    0
                } else {
                    10_000 + 1_000 * i64::from(i)
                },
                now_ms: 50,
                ..UnitVerdict::default()
            };
            s.commit_evidence(c).await.unwrap();
        }
    }
    let all = all_devices(s).await;
    assert_eq!(all.len(), FLEET as usize);
    all
}

fn by_status(statuses: &[i32]) -> DeviceFilter {
    DeviceFilter {
        statuses: statuses.to_vec(),
        ..DeviceFilter::default()
    }
}

/// Filters over every field and some of their combinations.
fn filters() -> Vec<DeviceFilter> {
    let f = DeviceFilter::default;
    vec![
        f(),
        by_status(&[1]),
        by_status(&[2, 5]),
        by_status(&[5, 2, 2]),
        by_status(&[6, 3]),
        DeviceFilter {
            model: "PM-200".into(),
            ..f()
        },
        DeviceFilter {
            model: "NONE".into(),
            ..f()
        },
        DeviceFilter {
            hw_version: "A".into(),
            ..f()
        },
        DeviceFilter {
            tenant: "h1".into(),
            ..f()
        },
        DeviceFilter {
            tenant: "h2".into(),
            ..f()
        },
        DeviceFilter {
            site: "north".into(),
            ..f()
        },
        DeviceFilter {
            department: "icu".into(),
            ..f()
        },
        DeviceFilter {
            firmware_digest: Some([1; 32]),
            ..f()
        },
        DeviceFilter {
            firmware_digest: Some([0x70; 32]),
            ..f()
        },
        DeviceFilter {
            firmware_version: "1.1".into(),
            ..f()
        },
        DeviceFilter {
            calibration_due_before: Some(15_000),
            ..f()
        },
        DeviceFilter {
            last_seen_before_ms: Some(5_000),
            ..f()
        },
        DeviceFilter {
            last_seen_after_ms: Some(5_000),
            ..f()
        },
        DeviceFilter {
            tenant: "h1".into(),
            ..by_status(&[1, 2])
        },
        DeviceFilter {
            model: "PM-200".into(),
            tenant: "h1".into(),
            ..f()
        },
        DeviceFilter {
            model: "IP-100".into(),
            hw_version: "B".into(),
            ..by_status(&[1])
        },
        DeviceFilter {
            tenant: "h2".into(),
            firmware_version: "2.0".into(),
            ..f()
        },
    ]
}

/// The serials a listing must return, in the order of the filter's index.
fn expected(all: &[DeviceEntry], f: &DeviceFilter) -> Vec<String> {
    let mut hit: Vec<&DeviceEntry> = all.iter().filter(|d| f.matches(d)).collect();
    match f.index() {
        DeviceIndex::Status(_) => {
            hit.sort_by(|a, b| (a.status, &a.serial).cmp(&(b.status, &b.serial)))
        }
        _ => hit.sort_by(|a, b| a.serial.cmp(&b.serial)),
    }
    hit.into_iter().map(|d| d.serial.clone()).collect()
}

fn serials(v: &[DeviceEntry]) -> Vec<String> {
    v.iter().map(|d| d.serial.clone()).collect()
}

fn query(filter: &DeviceFilter, limit: usize, budget: usize) -> DeviceQuery {
    DeviceQuery {
        filter: filter.clone(),
        after: None,
        limit,
        budget,
    }
}

/// A listing returns exactly the units its filter matches
/// ([`DeviceFilter::matches`]), whole, in its index's order.
pub async fn list_devices_returns_exactly_the_matching_units_in_index_order(s: Arc<dyn Store>) {
    let s = &*s;
    let all = fleet(s).await;
    let mut partial = 0;
    for f in filters() {
        let want = expected(&all, &f);
        if !want.is_empty() && want.len() < all.len() {
            partial += 1;
        }
        let got = all_pages(s, query(&f, 100, 1000), 10).await;
        assert_eq!(serials(&got), want, "filter {f:?}");
        for d in &got {
            assert_eq!(Some(d), all.iter().find(|x| x.serial == d.serial));
        }
    }
    assert!(partial >= 15, "the fleet exercises the filters ({partial})");
}

/// Pages of any size concatenate to the whole listing, without gaps or
/// repeats; with budget to spare, only the last page is short.
pub async fn list_devices_pages_without_gaps_or_repeats(s: Arc<dyn Store>) {
    let s = &*s;
    let all = fleet(s).await;
    for f in [
        DeviceFilter::default(),
        by_status(&[1, 2, 5]),
        DeviceFilter {
            tenant: "h1".into(),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            model: "PM-200".into(),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            site: "north".into(),
            ..DeviceFilter::default()
        },
    ] {
        let want = expected(&all, &f);
        for limit in 1..=5 {
            let mut q = query(&f, limit, 1000);
            let mut got = Vec::new();
            for _ in 0..=FLEET {
                let page = s.list_devices(q.clone()).await.unwrap();
                got.extend(serials(&page.items));
                match page.next {
                    Some(next) => {
                        assert_eq!(page.items.len(), limit, "a short page before the end");
                        q.after = Some(next);
                    }
                    None => {
                        q.after = None;
                        break;
                    }
                }
            }
            assert_eq!(q.after, None, "the listing ends");
            assert_eq!(got, want, "filter {f:?}, pages of {limit}");
        }
    }
}

/// A page examines at most its budget: it may come back short, with a
/// token to continue, and continuing returns every match once, in order.
pub async fn list_devices_keeps_its_budget_and_continues(s: Arc<dyn Store>) {
    let s = &*s;
    let all = fleet(s).await;
    for f in [
        DeviceFilter {
            department: "icu".into(),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            tenant: "h1".into(),
            ..by_status(&[1, 5])
        },
        DeviceFilter {
            firmware_version: "1.1".into(),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            model: "NONE".into(),
            ..DeviceFilter::default()
        },
        DeviceFilter {
            site: "nowhere".into(),
            ..DeviceFilter::default()
        },
    ] {
        let want = expected(&all, &f);
        for budget in 1..=4 {
            // all_pages checks each page against min(limit, budget).
            let pages = FLEET as usize / budget + 2;
            let got = all_pages(s, query(&f, 3, budget), pages).await;
            assert_eq!(serials(&got), want, "filter {f:?}, budget {budget}");
        }
    }
}

/// Summaries count units by (group key, status), for all tenants or one,
/// exactly as the units are, and follow every change of a unit.
pub async fn the_summary_counts_by_group_and_tenant(s: Arc<dyn Store>) {
    let s = &*s;
    fleet(s).await;
    async fn check(s: &dyn Store) {
        let all = all_devices(s).await;
        for g in [Group::All, Group::Model, Group::Site, Group::Firmware] {
            for t in [None, Some("h1"), Some("h2"), Some(""), Some("nope")] {
                assert_eq!(
                    s.summary(g, t).await.unwrap(),
                    expected_summary(&all, g, t),
                    "summary by {g:?} for {t:?}"
                );
            }
        }
        assert_eq!(s.counts().await.unwrap().by_status, recount(&all));
    }
    check(s).await;
    assert_eq!(
        s.summary(Group::All, Some("nope")).await.unwrap(),
        Vec::new()
    );
    // A unit moves tenant, another changes status, a third reports new firmware.
    s.assign_device(
        "F00",
        &Assignment {
            tenant: "h2".into(),
            site: "east".into(),
            ..Assignment::default()
        },
        &note("device.assign"),
    )
    .await
    .unwrap();
    let d = device(s, "F01").await;
    s.commit_reappraisal(reappraisal(&d, verdict(4, 0, 60)))
        .await
        .unwrap();
    let d = device(s, "F02").await;
    let mut c = evidence("F02", 2, &d, false);
    c.firmware = vec![FirmwareEntry {
        name: "os".into(),
        version: "3.0".into(),
        svn: 3,
        digest: vec![3; 32],
    }];
    s.commit_evidence(c).await.unwrap();
    check(s).await;
}

/// The totals count what was stored, and the status counters the units.
pub async fn counts_follow_what_was_stored(s: Arc<dyn Store>) {
    let s = &*s;
    let all = fleet(s).await;
    let c = s.counts().await.unwrap();
    assert_eq!(
        (c.stations, c.devices, c.records, c.evidence, c.baselines),
        (1, 12, 12, 10, 0)
    );
    assert_eq!(c.by_status, recount(&all));
    assert_eq!(c.by_status.iter().sum::<u64>(), 12);
    s.publish_baseline(baseline("PM-200", 1, 10_000), 0, &note("baseline"))
        .await
        .unwrap();
    assert_eq!(s.counts().await.unwrap().baselines, 1);
    assert_counters_match_units(s).await;
}
