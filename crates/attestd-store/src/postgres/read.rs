//! The PostgreSQL backend's listings: pages, tokens and the device query.
//!
//! Every listing is one statement (one snapshot) per page, except a device
//! listing, which reads its index in chunks. Page tokens are opaque to
//! callers: a decimal order for per-unit lists and baselines, the last id
//! for stations, and for devices the hex of the last serial examined
//! (prefixed by its status, `<status>:<hex>`, when the listing walks the
//! status index). A token this server did not issue is `FIELD_INVALID`.

use attestd_core::reject;
use deadpool_postgres::ClientWrapper as Client;
use prost::Message;
use tokio_postgres::{Row, Statement};

use crate::{DeviceEntry, DeviceFilter, DeviceIndex, DeviceQuery, HistoryItem, Page, StoreError};

/// `Unavailable` for a stored value that does not decode.
pub(super) fn corrupt(what: &str) -> StoreError {
    tracing::error!(what, "stored value does not decode");
    StoreError::Unavailable(format!("stored {what} does not decode"))
}

pub(super) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> crate::Result<M> {
    M::decode(bytes).map_err(|_| corrupt(what))
}

pub(super) fn db(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| super::pg_error(what, &e)
}

pub(super) fn bad_token() -> StoreError {
    StoreError::Rejected(reject!(
        FieldInvalid,
        "page_token: not a token this server issued"
    ))
}

/// A `LIMIT` for `n` rows.
pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A decimal order token (history, records, baselines).
pub(super) fn parse_order(token: Option<&str>) -> crate::Result<Option<i64>> {
    token
        .map(|t| {
            t.parse::<u64>()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                .map_err(|_| bad_token())
        })
        .transpose()
}

/// Splits `limit + 1` rows into a page: `next` is the order of the last
/// item kept when a row was left over.
pub(super) fn page<T>(
    rows: Vec<Row>,
    limit: usize,
    order: impl Fn(&Row) -> String,
    item: impl Fn(&Row) -> crate::Result<T>,
) -> crate::Result<Page<T>> {
    let more = rows.len() > limit;
    let kept = &rows[..rows.len().min(limit)];
    let items = kept.iter().map(&item).collect::<crate::Result<Vec<T>>>()?;
    let next = if more { kept.last().map(order) } else { None };
    Ok(Page { items, next })
}

const HISTORY: &str = "SELECT h.ord, h.kind, h.body, e.body, r.body FROM history h \
     LEFT JOIN evidence e ON h.kind = 'e' AND e.evidence_id = h.ref_id \
     LEFT JOIN records r ON h.kind = 'r' AND r.record_id = h.ref_id \
     WHERE h.serial = $1 AND h.ord > $2 ORDER BY h.ord LIMIT $3";

/// One history row as an item (evidence without its raw bytes).
fn history_item(row: &Row) -> crate::Result<HistoryItem> {
    let kind: i8 = row.get(1);
    let body = |i: usize, what: &str| {
        row.get::<_, Option<&[u8]>>(i)
            .ok_or_else(|| corrupt(&format!("{what} named by the history")))
    };
    Ok(match kind as u8 {
        b'e' => HistoryItem::Evidence(decode(body(3, "evidence")?, "evidence")?),
        b'r' => HistoryItem::Record(decode(body(4, "record")?, "record")?),
        b'a' => HistoryItem::Reappraisal(decode(body(2, "re-appraisal")?, "re-appraisal")?),
        b'd' => HistoryItem::Decision(decode(body(2, "decision")?, "release decision")?),
        _ => return Err(corrupt("history entry")),
    })
}

pub(super) async fn history(
    c: &Client,
    serial: &str,
    after: Option<&str>,
    n: usize,
) -> crate::Result<Page<HistoryItem>> {
    let after = parse_order(after)?.unwrap_or(0);
    let s = prep(c, HISTORY).await?;
    let rows = c
        .query(&s, &[&serial, &after, &limit(n.saturating_add(1))])
        .await
        .map_err(db("reading a history"))?;
    page(rows, n, |r| r.get::<_, i64>(0).to_string(), history_item)
}

/// A statement, prepared once per connection.
pub(super) async fn prep(c: &Client, sql: &str) -> crate::Result<Statement> {
    c.prepare_cached(sql)
        .await
        .map_err(|e| super::pg_error("preparing a statement", &e))
}

/// One segment of a device listing: a range of one index, in serial order.
enum Segment<'a> {
    All,
    Status(i32),
    Tenant(&'a str),
    Model(&'a str),
}

const DEVICES_ALL: &str =
    "SELECT serial, body FROM devices WHERE serial > $1 ORDER BY serial LIMIT $2";
const DEVICES_STATUS: &str = "SELECT serial, body FROM devices WHERE status = $1 \
     AND serial > $2 AND ($3 = '' OR tenant = $3) AND ($4 = '' OR model = $4) \
     ORDER BY serial LIMIT $5";
const DEVICES_TENANT: &str = "SELECT serial, body FROM devices WHERE tenant = $1 \
     AND serial > $2 AND ($3 = '' OR model = $3) ORDER BY serial LIMIT $4";
const DEVICES_MODEL: &str = "SELECT serial, body FROM devices WHERE model = $1 \
     AND serial > $2 ORDER BY serial LIMIT $3";

/// Rows fetched per statement at most when the filter has fields SQL
/// does not check.
const CHUNK: usize = 256;

fn hex_serial(s: &str) -> String {
    attestd_core::ids::hex(s.as_bytes())
}

fn unhex_serial(s: &str) -> crate::Result<String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(bad_token());
    }
    let bytes = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad_token())?;
    String::from_utf8(bytes).map_err(|_| bad_token())
}

/// Where a listing resumes: the status segment and serial of the last unit
/// examined.
fn parse_device_token(token: &str, by_status: bool) -> crate::Result<(i32, String)> {
    if by_status {
        let (status, serial) = token.split_once(':').ok_or_else(bad_token)?;
        Ok((
            status.parse().map_err(|_| bad_token())?,
            unhex_serial(serial)?,
        ))
    } else {
        Ok((0, unhex_serial(token)?))
    }
}

/// Whether SQL checks the whole filter (only status, tenant and model set).
fn pushed_down(f: &DeviceFilter) -> bool {
    DeviceFilter {
        statuses: Vec::new(),
        tenant: String::new(),
        model: String::new(),
        ..f.clone()
    } == DeviceFilter::default()
}

/// Units matching a query in the order of `filter.index()`: examines at
/// most `budget` units that the SQL part of the filter selects, returns at
/// most `limit`, and a token when units remain after the last examined.
pub(super) async fn list_devices(c: &Client, q: &DeviceQuery) -> crate::Result<Page<DeviceEntry>> {
    let f = &q.filter;
    let index = f.index();
    let by_status = matches!(index, DeviceIndex::Status(_));
    let segments: Vec<Segment<'_>> = match &index {
        DeviceIndex::All => vec![Segment::All],
        DeviceIndex::Status(set) => set.iter().map(|s| Segment::Status(*s)).collect(),
        DeviceIndex::Tenant(t) => vec![Segment::Tenant(t)],
        DeviceIndex::Model(m) => vec![Segment::Model(m)],
    };
    let resume = q
        .after
        .as_deref()
        .map(|t| parse_device_token(t, by_status))
        .transpose()?;
    let token = |status: i32, serial: &str| {
        if by_status {
            format!("{status}:{}", hex_serial(serial))
        } else {
            hex_serial(serial)
        }
    };
    let pushed = pushed_down(f);
    let mut items = Vec::new();
    let mut examined = 0usize;
    let mut last: Option<String> = None;
    for seg in &segments {
        let status = match seg {
            Segment::Status(s) => *s,
            _ => 0,
        };
        let mut after = match &resume {
            Some((st, serial)) if *st == status => serial.clone(),
            Some((st, _)) if *st > status => continue,
            _ => String::new(),
        };
        loop {
            let wanted = q.limit.saturating_sub(items.len());
            let chunk = if pushed { wanted } else { wanted.max(CHUNK) }
                .min(q.budget.saturating_sub(examined))
                .min(CHUNK * 4)
                // One more row says whether a token is needed.
                + 1;
            let rows = segment_rows(c, seg, f, &after, chunk).await?;
            let fetched = rows.len();
            for row in rows {
                if items.len() == q.limit || examined == q.budget {
                    return Ok(Page { items, next: last });
                }
                examined += 1;
                let serial: String = row.get(0);
                let d: DeviceEntry = decode(row.get::<_, &[u8]>(1), "device")?;
                if f.matches(&d) {
                    items.push(d);
                }
                last = Some(token(status, &serial));
                after = serial;
            }
            if fetched < chunk {
                break;
            }
        }
    }
    Ok(Page { items, next: None })
}

async fn segment_rows(
    c: &Client,
    seg: &Segment<'_>,
    f: &DeviceFilter,
    after: &str,
    n: usize,
) -> crate::Result<Vec<Row>> {
    let n = limit(n);
    let fail = db("listing devices");
    match seg {
        Segment::All => {
            let s = prep(c, DEVICES_ALL).await?;
            c.query(&s, &[&after, &n]).await
        }
        Segment::Status(status) => {
            let s = prep(c, DEVICES_STATUS).await?;
            c.query(&s, &[status, &after, &f.tenant, &f.model, &n])
                .await
        }
        Segment::Tenant(t) => {
            let s = prep(c, DEVICES_TENANT).await?;
            c.query(&s, &[t, &after, &f.model, &n]).await
        }
        Segment::Model(m) => {
            let s = prep(c, DEVICES_MODEL).await?;
            c.query(&s, &[m, &after, &n]).await
        }
    }
    .map_err(fail)
}
