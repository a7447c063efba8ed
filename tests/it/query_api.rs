//! `GET /api/v1/events` end to end: the real binary, events sent over raw
//! TCP with acks, read back through the admin API with a real HTTP client.

use crate::common;

use std::collections::BTreeSet;

use common::admin::*;
use common::hex_key;
use serde_json::{Value, json};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

const BATCHES: u64 = 20;
const PER_BATCH: u64 = 10;

fn dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    (t, d)
}

/// Sends `BATCHES` acked batches of `PER_BATCH` events named `e<i>` (every
/// 9th says "needle" in its payload); returns the acked sequence numbers.
async fn ingest(tcp: &str, key: &[u8; 16]) -> Vec<u64> {
    ingest_padded(tcp, key, 0).await
}

/// [`ingest`] with `pad` more bytes in every payload.
async fn ingest_padded(tcp: &str, key: &[u8; 16], pad: usize) -> Vec<u64> {
    let mut c = AckedClient::connect(tcp).await.unwrap();
    let mut seqs = Vec::new();
    for b in 0..BATCHES {
        let names: Vec<String> = (0..PER_BATCH).map(|i| format!("e{}", b * PER_BATCH + i)).collect();
        let payloads: Vec<String> = (0..PER_BATCH)
            .map(|i| {
                if (b * PER_BATCH + i).is_multiple_of(9) {
                    r#"{"w":"needle"}"#.into()
                } else {
                    format!(r#"{{"w":"hay","pad":"{}"}}"#, "x".repeat(pad))
                }
            })
            .collect();
        let events: Vec<EventParams<'_>> = (0..PER_BATCH as usize)
            .map(|i| EventParams {
                event_type: EventType::Track,
                timestamp: 1_700_000_000_000,
                service: Some("svc"),
                device_id: Some(&[7u8; 16]),
                session_id: None,
                event_name: Some(&names[i]),
                payload: Some(payloads[i].as_bytes()),
            })
            .collect();
        let ack = c.send_and_wait(b + 1, &tell_batch(key, b + 1, &events)).await.unwrap();
        assert_eq!(ack.status, Status::Stored);
        seqs.extend(ack.first_seq..ack.first_seq + u64::from(ack.count));
    }
    seqs
}

fn page(api: &ApiClient, token: &str, query: &str) -> Value {
    let r = api.get(&format!("/api/v1/events?{query}"), Some(token)).unwrap();
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    assert!(r.header("x-ratelimit-limit").is_some(), "query routes are rate limited per token");
    r.json()
}

fn seqs(v: &Value) -> Vec<u64> {
    v["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Every page of a query, following `next_cursor`.
fn all(api: &ApiClient, token: &str, query: &str) -> (Vec<u64>, usize) {
    let (mut out, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let p = page(api, token, &q);
        out.extend(seqs(&p));
        pages += 1;
        assert!(pages < 500, "cursor loops");
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (out, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_filters_and_scopes() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "query_max_scan_rows = 30\n");
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let ws = done["workspace"]["id"].as_u64().or(done["workspace"].as_u64()).unwrap();
    let key = hex_key(done["streaming_key"].as_str().unwrap());
    let acked = ingest(&daemon.tcp.to_string(), &key).await;
    let total = (BATCHES * PER_BATCH) as usize;
    assert_eq!(acked.len(), total);

    // Ascending and descending pages cover every acknowledged event once.
    let (asc, pages) = all(&api, &token, &format!("workspace={ws}&limit=40"));
    assert_eq!(asc, acked);
    assert_eq!(pages, total.div_ceil(40));
    let (desc, _) = all(&api, &token, "limit=33&order=desc");
    assert_eq!(desc, acked.iter().rev().copied().collect::<Vec<_>>());

    // A sequence window; the last page carries no cursor.
    let since = acked[150];
    let p = page(&api, &token, &format!("since={since}&limit=50"));
    assert_eq!(seqs(&p), acked[150..].to_vec());
    assert!(p.get("next_cursor").is_none(), "{p}");
    let e = &p["events"][0];
    assert_eq!((e["kind"].as_str(), e["listener"].as_str()), (Some("event"), Some("tcp")));
    assert_eq!(e["event_name"], "e150");
    assert!(p["rows_scanned"].as_u64().unwrap() <= 50 + 1 + PER_BATCH);

    // A time window around everything, and one before anything was stored.
    let first_at = page(&api, &token, "limit=1")["events"][0]["received_at"].as_u64().unwrap();
    let (win, _) = all(&api, &token, &format!("from={first_at}&to=4102444800000&limit=100"));
    assert_eq!(win, acked);
    let early = page(&api, &token, "from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z");
    assert_eq!(early, json!({"events": [], "rows_scanned": 0}));

    // Text search, across pages of at most `query_max_scan_rows` rows each.
    let (needles, pages) = all(&api, &token, "q=needle&kind=event&listener=tcp");
    let want: Vec<u64> = acked.iter().enumerate().filter(|(i, _)| i % 9 == 0).map(|(_, s)| *s).collect();
    assert_eq!(needles, want);
    assert!(pages >= total / 30, "{pages} pages: the scan limit splits the search");
    let p = page(&api, &token, "q=e199");
    assert_eq!(p["scan_limited"], true, "{p}");
    assert_eq!(p["rows_scanned"], 30);
    let none = page(&api, &token, "listener=syslog_udp");
    assert!(seqs(&none).is_empty());
    assert!(seqs(&page(&api, &token, "kind=log")).is_empty());

    // Errors: no token, a foreign workspace, bad parameters.
    assert_eq!(api.get("/api/v1/events", None).unwrap().status, 401);
    let other = api.get(&format!("/api/v1/events?workspace={}", ws + 1), Some(&token)).unwrap();
    assert_eq!(other.status, 403, "{}", other.body);
    for bad in ["limit=0", "order=sideways", "nope=1", "from=10&to=5", "kind=bird"] {
        let r = api.get(&format!("/api/v1/events?{bad}"), Some(&token)).unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"]["code"].is_string());
    }
    let distinct: BTreeSet<u64> = asc.iter().copied().collect();
    assert_eq!(distinct.len(), total);
    drop(daemon);
}

#[test]
fn query_routes_count_against_the_token_rate_limit() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "api_requests_per_minute = 3\n");
    let token = setup(&api)["token"].as_str().unwrap().to_owned();
    let codes: Vec<u16> = (0..4).map(|_| api.get("/api/v1/events", Some(&token)).unwrap().status).collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    drop(daemon);
}

/// Opens a live tail over HTTP/1.0, so the body is the raw stream (no chunking).
fn open_tail(admin: std::net::SocketAddr, token: &str, query: &str) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    // A stuck stream fails the test instead of hanging it.
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(s, "GET /api/v1/events/tail?{query} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return r;
        }
        if line.to_ascii_lowercase().starts_with("content-type") {
            assert!(line.contains("text/event-stream"), "{line}");
        }
    }
}

/// Reads SSE frames until `n` events arrived; returns their JSON and any named events.
fn read_events(r: &mut impl std::io::BufRead, n: usize) -> (Vec<Value>, Vec<String>) {
    let (mut events, mut named, mut line) = (Vec::new(), Vec::new(), String::new());
    while events.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data.trim_end()).unwrap();
            if v.get("seq").is_some() {
                events.push(v);
            }
        } else if let Some(name) = line.strip_prefix("event: ") {
            named.push(name.trim_end().to_owned());
            break;
        }
    }
    (events, named)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_sees_new_commits_filtered_and_resumes_with_since() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let key = hex_key(done["streaming_key"].as_str().unwrap());
    let admin = daemon.admin.unwrap();
    let mut all = open_tail(admin, &token, "");
    let mut needles = open_tail(admin, &token, "q=needle");
    let acked = ingest(&daemon.tcp.to_string(), &key).await;
    let total = acked.len();
    let (got, named) = tokio::task::spawn_blocking(move || read_events(&mut all, total)).await.unwrap();
    assert!(named.is_empty(), "{named:?}");
    assert_eq!(got.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), acked);
    let want: Vec<u64> = acked.iter().enumerate().filter(|(i, _)| i % 9 == 0).map(|(_, s)| *s).collect();
    let n = want.len();
    let (got, _) = tokio::task::spawn_blocking(move || read_events(&mut needles, n)).await.unwrap();
    assert_eq!(got.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), want);
    // `since` replays what is stored from there on.
    let mut again = open_tail(admin, &token, &format!("since={}", acked[total - 5]));
    let (got, _) = tokio::task::spawn_blocking(move || read_events(&mut again, 5)).await.unwrap();
    assert_eq!(got.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), acked[total - 5..]);
    assert_eq!(api.get("/api/v1/events/tail?limit=5", Some(&token)).unwrap().status, 400);
    assert_eq!(api.get("/api/v1/events/tail", None).unwrap().status, 401);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tail_is_dropped_with_a_notice_and_never_slows_ingest() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let key = hex_key(done["streaming_key"].as_str().unwrap());
    let mut stalled = open_tail(daemon.admin.unwrap(), &token, "");
    // Never read while ingesting: the socket buffers, then the tail's channel fill up.
    let started = std::time::Instant::now();
    let mut acked = 0;
    for _ in 0..30 {
        acked += ingest_padded(&daemon.tcp.to_string(), &key, 4096).await.len();
    }
    let took = started.elapsed();
    eprintln!("{acked} events acked in {took:?} with a stalled tail open");
    // Stay stalled past the server's 5 s patience with a full buffer.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (got, named) = tokio::task::spawn_blocking(move || read_events(&mut stalled, acked)).await.unwrap();
    assert_eq!(named, ["dropped"], "after {} events", got.len());
    assert!(got.len() < acked, "the stalled tail was cut short");
    let metrics = api.get("/metrics", None).unwrap().body;
    assert!(metrics.contains("sluice_tails_dropped_total 1"), "{metrics}");
    // A reader that keeps up gets a replay far larger than the buffer.
    let mut replay = open_tail(daemon.admin.unwrap(), &token, "since=1");
    let (got, named) = tokio::task::spawn_blocking(move || read_events(&mut replay, acked)).await.unwrap();
    assert_eq!((got.len(), named.len()), (acked, 0));
    drop(daemon);
}

#[test]
fn shutdown_ends_an_open_tail_with_a_notice() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let token = setup(&api)["token"].as_str().unwrap().to_owned();
    let mut tail = open_tail(daemon.admin.unwrap(), &token, "");
    let stopping = std::thread::spawn(move || daemon.stop());
    let (events, named) = read_events(&mut tail, usize::MAX);
    assert!(events.is_empty());
    assert_eq!(named, ["shutdown"]);
    assert!(stopping.join().unwrap().success(), "the daemon stops cleanly with a tail open");
}

/// The daemon's resident memory, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Tails that never read pin at most their byte bound each while syslog
/// floods in, and their memory is returned once they are gone.
#[test]
fn non_reading_tails_pin_a_bounded_amount_of_memory() {
    use std::io::Write;
    let (_t, data) = dir();
    let syslog = "[sources.syslog_tcp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n";
    let (daemon, api) = start_admin(&data, &format!("max_streams = 32\n{syslog}"));
    let token = setup(&api)["token"].as_str().unwrap().to_owned();
    let pid = daemon.pid();
    let flood = |n: usize| {
        let mut s = std::net::TcpStream::connect(daemon.syslog_tcp.unwrap()).unwrap();
        let body = "x".repeat(1000);
        let mut wire = Vec::new();
        for i in 0..n {
            wire.extend_from_slice(format!("<14>1 - h app - - - flood {i} {body}\n").as_bytes());
        }
        s.write_all(&wire).unwrap();
    };
    flood(2_000);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let baseline = rss(pid);
    let tails: Vec<_> = (0..30).map(|_| open_tail(daemon.admin.unwrap(), &token, "")).collect();
    for _ in 0..10 {
        flood(5_000);
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let during = rss(pid);
    drop(tails);
    std::thread::sleep(std::time::Duration::from_secs(7));
    let after = rss(pid);
    eprintln!("rss baseline {baseline} during {during} after {after}");
    // 30 tails × 256 KiB of frames and a 64-event page each, plus the flood's
    // own share (redb's 32 MiB cache fills); unbounded, it was +290 MB.
    assert!(during < baseline + (128 << 20), "30 non-reading tails took RSS from {baseline} to {during}");
    assert!(after < baseline + (48 << 20), "after the tails closed RSS is {after} (baseline {baseline})");
    drop(daemon);
}
