//! Fleet counters against a recount: GetFleetSummary (plain, grouped by
//! model, site and firmware, and per tenant) must count exactly the units
//! ListDevices returns, by status. attestd keeps the counters in the same
//! atomic write as every status change; a crash between the two would
//! show here as a count that no listing explains.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use attestd_client::{pb, Client};

use super::workload::{Placement, TENANTS};

/// Count by (group key, status); status -1 is the total.
type Counts = BTreeMap<(String, i32), u64>;

/// The summaries and the whole listing, read at one change-feed cursor.
pub(super) struct FleetRead {
    pub devices: BTreeMap<String, pb::Device>,
    /// (view name, summary): "fleet", "Model", "Site", "Firmware",
    /// "tenant <name>".
    pub views: Vec<(String, pb::FleetSummary)>,
}

/// Reads the fleet at rest: the re-appraisal job may still change statuses
/// after a restart, so the reads are repeated until every summary and every
/// page reflect the same change-feed cursor (nothing changed in between).
/// `None` when the fleet kept changing for a minute.
pub(super) async fn read_still(admin: &Client) -> anyhow::Result<Option<FleetRead>> {
    let summary = |group: pb::SummaryGroup, tenant: &str| {
        let (c, tenant) = (admin.clone(), tenant.to_owned());
        async move {
            anyhow::Ok(
                c.fleet()
                    .get_fleet_summary(pb::GetFleetSummaryRequest {
                        filter: Some(pb::DeviceFilter {
                            tenant,
                            ..Default::default()
                        }),
                        group_by: group as i32,
                    })
                    .await?
                    .into_inner(),
            )
        }
    };
    for _ in 0..600 {
        let first = summary(pb::SummaryGroup::Unspecified, "").await?;
        let (devices, mut cursors) = list_devices(admin).await?;
        let mut views = vec![("fleet".to_owned(), first)];
        for g in [
            pb::SummaryGroup::Model,
            pb::SummaryGroup::Site,
            pb::SummaryGroup::Firmware,
        ] {
            views.push((format!("{g:?}"), summary(g, "").await?));
        }
        for t in TENANTS {
            views.push((
                format!("tenant {t}"),
                summary(pb::SummaryGroup::Unspecified, t).await?,
            ));
        }
        cursors.push(summary(pb::SummaryGroup::Unspecified, "").await?.cursor);
        cursors.extend(views.iter().map(|(_, s)| s.cursor.clone()));
        if cursors.iter().all(|c| *c == cursors[0]) {
            return Ok(Some(FleetRead { devices, views }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Every unit, page after page, and the cursor of each page.
async fn list_devices(
    admin: &Client,
) -> anyhow::Result<(BTreeMap<String, pb::Device>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut cursors = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .fleet()
            .list_devices(pb::ListDevicesRequest {
                filter: None,
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        cursors.push(page.cursor);
        for d in page.devices {
            anyhow::ensure!(
                out.insert(d.serial.clone(), d).is_none(),
                "a unit was listed twice"
            );
        }
        if page.next_page_token.is_empty() {
            return Ok((out, cursors));
        }
        token = page.next_page_token;
    }
}

fn summary_counts(s: &pb::FleetSummary, grouped: bool) -> Counts {
    let mut out = Counts::new();
    if grouped {
        for g in &s.groups {
            for c in &g.counts {
                out.insert((g.key.clone(), c.status), c.count);
            }
        }
    } else {
        for c in &s.counts {
            out.insert((String::new(), c.status), c.count);
        }
        out.insert((String::new(), -1), s.total);
    }
    out.retain(|_, n| *n > 0);
    out
}

fn recount<'a>(
    devices: impl Iterator<Item = &'a pb::Device>,
    key: impl Fn(&pb::Device) -> String,
    with_total: bool,
) -> Counts {
    let mut out = Counts::new();
    for d in devices {
        *out.entry((key(d), d.status)).or_default() += 1;
        if with_total {
            *out.entry((String::new(), -1)).or_default() += 1;
        }
    }
    out
}

/// The firmware group key: "name=version" pairs, sorted, joined by ",".
fn firmware_key(d: &pb::Device) -> String {
    let mut parts: Vec<String> = d
        .firmware
        .iter()
        .map(|c| format!("{}={}", c.name, c.version))
        .collect();
    parts.sort();
    parts.join(",")
}

fn site_key(d: &pb::Device) -> String {
    Placement::of(d).site
}

/// Every summary cell that differs from the recount, in words.
pub(super) fn compare(read: &FleetRead) -> Vec<String> {
    let all = || read.devices.values();
    let mut out = Vec::new();
    for (name, s) in &read.views {
        let (got, want) = match name.as_str() {
            "fleet" => (
                summary_counts(s, false),
                recount(all(), |_| String::new(), true),
            ),
            "Model" => (
                summary_counts(s, true),
                recount(all(), |d| d.model.clone(), false),
            ),
            "Site" => (summary_counts(s, true), recount(all(), site_key, false)),
            "Firmware" => (summary_counts(s, true), recount(all(), firmware_key, false)),
            t => {
                let tenant = t.trim_start_matches("tenant ");
                (
                    summary_counts(s, false),
                    recount(
                        all().filter(|d| Placement::of(d).tenant == tenant),
                        |_| String::new(),
                        true,
                    ),
                )
            }
        };
        let keys: BTreeSet<_> = got.keys().chain(want.keys()).collect();
        for k in keys {
            let (g, w) = (got.get(k).copied(), want.get(k).copied());
            if g != w {
                let status = match k.1 {
                    -1 => "total".to_owned(),
                    s => pb::DeviceStatus::try_from(s)
                        .map_or_else(|_| s.to_string(), |s| s.as_str_name().to_owned()),
                };
                out.push(format!(
                    "{name} {:?} {status}: the summary counts {} but {} units are listed",
                    k.0,
                    g.unwrap_or(0),
                    w.unwrap_or(0)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(serial: &str, status: pb::DeviceStatus, tenant: &str, site: &str) -> pb::Device {
        pb::Device {
            serial: serial.into(),
            model: "PM-200".into(),
            status: status as i32,
            firmware: vec![pb::FirmwareComponent {
                name: "application".into(),
                version: "2.1.4".into(),
                ..Default::default()
            }],
            assignment: (!tenant.is_empty()).then(|| pb::Assignment {
                tenant: tenant.into(),
                site: site.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn counts(c: &[(pb::DeviceStatus, u64)]) -> Vec<pb::StatusCount> {
        c.iter()
            .map(|(s, n)| pb::StatusCount {
                status: *s as i32,
                count: *n,
            })
            .collect()
    }

    fn group(key: &str, c: &[(pb::DeviceStatus, u64)]) -> pb::SummaryGroupCounts {
        pb::SummaryGroupCounts {
            key: key.into(),
            counts: counts(c),
            total: c.iter().map(|x| x.1).sum(),
        }
    }

    /// Two trusted units and a quarantined one at st-mary north.
    fn read() -> FleetRead {
        use pb::DeviceStatus::{Quarantined as Q, Trusted as T};
        let devices = [
            unit("A", T, "", ""),
            unit("B", T, "st-mary", "north"),
            unit("C", Q, "st-mary", "north"),
        ]
        .into_iter()
        .map(|d| (d.serial.clone(), d))
        .collect();
        let plain = |c: &[(pb::DeviceStatus, u64)]| pb::FleetSummary {
            counts: counts(c),
            total: c.iter().map(|x| x.1).sum(),
            ..Default::default()
        };
        let grouped = |g: Vec<pb::SummaryGroupCounts>| pb::FleetSummary {
            groups: g,
            ..Default::default()
        };
        FleetRead {
            devices,
            views: vec![
                ("fleet".into(), plain(&[(T, 2), (Q, 1)])),
                (
                    "Model".into(),
                    grouped(vec![group("PM-200", &[(T, 2), (Q, 1)])]),
                ),
                (
                    "Site".into(),
                    grouped(vec![
                        group("", &[(T, 1)]),
                        group("north", &[(T, 1), (Q, 1)]),
                    ]),
                ),
                (
                    "Firmware".into(),
                    grouped(vec![group("application=2.1.4", &[(T, 2), (Q, 1)])]),
                ),
                ("tenant st-mary".into(), plain(&[(T, 1), (Q, 1)])),
                ("tenant st-luke".into(), plain(&[])),
            ],
        }
    }

    #[test]
    fn counters_equal_to_the_recount_pass() {
        assert_eq!(compare(&read()), Vec::<String>::new());
    }

    #[test]
    fn a_count_the_listing_does_not_explain_is_a_mismatch() {
        let mut r = read();
        // The fleet summary still counts C as trusted (a status change whose
        // counter update was lost): trusted 3 against 2 listed, quarantined
        // 0 against 1, total 4 against 3.
        r.views[0].1.counts[0].count = 3;
        r.views[0].1.counts[1].count = 0;
        r.views[0].1.total = 4;
        let found = compare(&r);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.contains("DEVICE_STATUS_TRUSTED: the summary counts 3 but 2 units")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_tenant_counter_left_behind_by_a_placement_is_a_mismatch() {
        let mut r = read();
        // st-luke still counts a unit that moved to st-mary.
        r.views[5].1 = pb::FleetSummary {
            counts: counts(&[(pb::DeviceStatus::Trusted, 1)]),
            total: 1,
            ..Default::default()
        };
        let found = compare(&r);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found.iter().all(|f| f.starts_with("tenant st-luke")));
    }

    #[test]
    fn a_group_count_is_compared_per_key() {
        let mut r = read();
        r.views[2].1.groups[1].counts[0].count = 0;
        let found = compare(&r);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("Site \"north\""), "{found:#?}");
    }
}
