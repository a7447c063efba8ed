//! `GET /api/v1/events`: one page of stored events of the token's workspace.
//!
//! Parameters (all optional): `workspace` (must be the token's), `since`
//! (sequence number), `from`/`to` (on `received_at`: unix milliseconds or
//! RFC 3339), `listener`, `kind`, `service` (exactly: Tell's `service`,
//! OTLP's `service.name`), `q` (substring of any field), `limit`
//! (1..=1000, default 100), `order` (`asc`|`desc`), `cursor` (the previous
//! page's `next_cursor`, with the same filters). Unknown parameters are 400
//! so that a typo never widens a query silently.
//!
//! The scan runs on the blocking pool ([`crate::store::query`]).

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::request::Ctx;
use super::response::{self, Resp};
use crate::record::Kind;
use crate::store::query::{MAX_PAGE, Order, Page, Query, time_ms};

/// Events per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// Longest `q` accepted, in bytes.
const MAX_TEXT: usize = 1024;

pub async fn events(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    let max_scan = cx.state.config.query_max_scan_rows.0 as u64;
    let q = parse(cx.query.as_deref().unwrap_or(""), caller.workspace(), max_scan)?;
    let handle = cx.state.events.clone();
    let page = match tokio::task::spawn_blocking(move || handle.query(&q, crate::export::event_json)).await {
        Ok(r) => r.map_err(ApiError::from)?,
        Err(e) => return Err(ApiError::internal(format!("query task failed: {e}"))),
    };
    response::json(StatusCode::OK, &page_json(page))
}

fn page_json(page: Page<Value>) -> Value {
    let mut m = Map::new();
    m.insert("events".into(), Value::Array(page.events));
    if let Some(c) = page.next_cursor {
        m.insert("next_cursor".into(), json!(c.to_string()));
    }
    m.insert("rows_scanned".into(), json!(page.rows_read));
    if page.scan_limited {
        m.insert("scan_limited".into(), json!(true));
    }
    Value::Object(m)
}

/// Parses the query string into a query on the caller's workspace.
pub(super) fn parse(raw: &str, workspace: u32, max_scan_rows: u64) -> Result<Query, ApiError> {
    let mut q = unfiltered(workspace, max_scan_rows);
    for pair in pairs(raw) {
        let (k, v) = pair?;
        if filter(&mut q, k, &v)? {
            continue;
        }
        match k {
            "cursor" => q.cursor = Some(number(k, &v)?),
            "limit" => match number::<usize>(k, &v)? {
                n @ 1..=MAX_PAGE => q.limit = n,
                _ => return Err(ApiError::invalid(format!("limit: must be 1..={MAX_PAGE}"))),
            },
            "order" => {
                q.order = match v.as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(ApiError::invalid("order: asc or desc")),
                }
            }
            other => return Err(unknown(other)),
        }
    }
    check_window(&q)?;
    Ok(q)
}

/// A query on `workspace` with no filter yet: ascending, from the start.
pub(super) fn unfiltered(workspace: u32, max_scan_rows: u64) -> Query {
    Query::unfiltered(workspace, DEFAULT_LIMIT, max_scan_rows)
}

/// The `key=value` pairs of a query string, values percent-decoded.
pub(super) fn pairs(raw: &str) -> impl Iterator<Item = Result<(&str, String), ApiError>> {
    raw.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| ApiError::invalid(format!("{k}: bad percent-encoding")))?;
        Ok((k, v))
    })
}

/// Applies one of the filters every event route shares (`workspace`,
/// `since`, `from`, `to`, `listener`, `kind`, `service`, `q`); `false` when `k` is none
/// of them.
pub(super) fn filter(q: &mut Query, k: &str, v: &str) -> Result<bool, ApiError> {
    match k {
        "workspace" => {
            if number::<u32>(k, v)? != q.workspace {
                return Err(ApiError::forbidden(format!("this token is for workspace {}", q.workspace)));
            }
        }
        "since" => q.since = Some(number(k, v)?),
        "from" => q.from_ms = Some(time(k, v)?),
        "to" => q.to_ms = Some(time(k, v)?),
        "listener" => q.listener = Some(v.to_owned()),
        "kind" => {
            q.kind =
                Some(Kind::from_name(v).ok_or_else(|| ApiError::invalid("kind: event, log, metric, syslog or span"))?)
        }
        "service" => q.service = Some(v.to_owned()),
        "q" if v.is_empty() => {}
        "q" if v.len() > MAX_TEXT => return Err(ApiError::invalid(format!("q: longer than {MAX_TEXT} bytes"))),
        "q" => q.text = Some(v.to_owned()),
        _ => return Ok(false),
    }
    Ok(true)
}

/// An unknown parameter: refused, so that a typo never widens a query.
pub(super) fn unknown(name: &str) -> ApiError {
    ApiError::invalid(format!("unknown parameter {name:?}"))
}

/// Refuses a time window that ends before it starts.
pub(super) fn check_window(q: &Query) -> Result<(), ApiError> {
    match (q.from_ms, q.to_ms) {
        (Some(f), Some(t)) if f > t => Err(ApiError::invalid("from is after to")),
        _ => Ok(()),
    }
}

pub(super) fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|_| ApiError::invalid(format!("{name}: not a valid number: {v:?}")))
}

/// Unix milliseconds, or an RFC 3339 time.
fn time(name: &str, v: &str) -> Result<u64, ApiError> {
    time_ms(v)
        .ok_or_else(|| ApiError::invalid(format!("{name}: unix milliseconds or RFC 3339 (after 1970), got {v:?}")))
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space);
/// `None` on a bad escape or bytes that are not UTF-8.
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let q = parse(
            "workspace=4&since=10&from=2026-01-01T00:00:00Z&to=1767225600500&listener=syslog_udp&kind=syslog\
             &q=disk+full%21&limit=7&order=desc&cursor=99",
            4,
            50,
        )
        .unwrap();
        assert_eq!((q.workspace, q.since, q.cursor, q.limit, q.order), (4, Some(10), Some(99), 7, Order::Desc));
        assert_eq!((q.from_ms, q.to_ms), (Some(1_767_225_600_000), Some(1_767_225_600_500)));
        assert_eq!(
            (q.listener.as_deref(), q.kind, q.text.as_deref()),
            (Some("syslog_udp"), Some(Kind::Syslog), Some("disk full!"))
        );
        assert_eq!(q.max_scan_rows, 50);
        let otel = parse("kind=span&service=check%20out", 4, 50).unwrap();
        assert_eq!((otel.kind, otel.service.as_deref()), (Some(Kind::Span), Some("check out")));
        let d = parse("", 1, 5).unwrap();
        assert_eq!((d.limit, d.order, d.text), (DEFAULT_LIMIT, Order::Asc, None));
    }

    #[test]
    fn refuses_bad_or_foreign_parameters() {
        let status = |s: &str| parse(s, 4, 5).unwrap_err().status;
        assert_eq!(status("workspace=5"), StatusCode::FORBIDDEN);
        for bad in ["limit=0", "limit=1001", "order=up", "kind=x", "since=-1", "from=yesterday", "q=%zz", "sinse=3"] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(status("from=20&to=10"), StatusCode::BAD_REQUEST);
    }
}
