//! Hostile peers against the real daemon over real sockets: header-only
//! frames, trickled bodies and request heads, stalled octet counts, idle
//! connections against `max_connections`, the per-address cap, streams
//! nobody reads, acks nobody reads, and a shutdown in the middle of all of
//! it. Each test runs its own daemon with short timeouts; hostile sockets
//! come from other loopback addresses than the legitimate client (all of
//! 127.0.0.0/8 is on `lo`), so the per-address cap never hits 127.0.0.1.
//!
//! Assertions are on outcomes (stored, refused, closed) and on the
//! `sluice_connections_cut_total` counters, with generous time bounds only
//! where the bound is the behaviour (a cut long before an idle timeout, a
//! shutdown within its drain deadline).

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::admin::{ApiClient, admin_section, metric, setup};
use common::{Daemon, create_key, export, hex_key};
use serde_json::{Value, json};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::{ACK_LEN, Ack, Status};
use sluice::codec::frame::{AckedHeader, encode_acked};
use socket2::{Domain, Socket, Type};
use tell_encoding::{EventParams, EventType};

/// Longest any single wait in these tests may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);
/// How often a trickling peer sends its next byte.
const TRICKLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Sockets from other loopback addresses
// ---------------------------------------------------------------------------

/// The `n`th stranger's address (n ≥ 1): 127.1.x.y, never 127.0.0.1.
fn stranger(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8)
}

/// A blocking connection from `from` to `to`; `rcvbuf` shrinks the receive
/// buffer first, so a peer that does not read fills it quickly.
fn connect_from(from: Ipv4Addr, to: SocketAddr, rcvbuf: Option<usize>) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect(&to.into()).unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
    s.into()
}

/// An async connection from `from` to `to`.
async fn connect_from_async(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

/// Reads until the server closes (EOF or reset) or `limit` passes; returns
/// what was read and how long the close took (`None`: still open).
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return (got, None);
        }
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, Some(started.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return (got, Some(started.elapsed())),
        }
    }
}

/// The host's `ListenOverflows` counter (SYNs dropped for a full accept
/// queue), to explain a client that could not even connect.
fn listen_overflows_note() -> String {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let value = lines.first().zip(lines.get(1)).and_then(|(names, values)| {
        let at = names.split_whitespace().position(|n| n == "ListenOverflows")?;
        values.split_whitespace().nth(at).map(str::to_owned)
    });
    format!("TcpExt ListenOverflows on this host: {}", value.as_deref().unwrap_or("unknown"))
}

/// Whether the server still holds the connection open (nothing to read, no EOF).
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!((&*stream).read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// Writes `head`, then `body` one byte per [`TRICKLE`] on its own thread,
/// until a write fails, `stop` is set or [`HANG`] passes.
fn trickle(stream: &TcpStream, head: &[u8], body: &'static [u8], stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let mut w = stream.try_clone().expect("clone stream");
    let stop = stop.clone();
    let head = head.to_vec();
    std::thread::spawn(move || {
        if w.write_all(&head).is_err() {
            return;
        }
        let started = Instant::now();
        for b in body.iter().cycle() {
            std::thread::sleep(TRICKLE);
            if stop.load(Ordering::Relaxed) || started.elapsed() > HANG || w.write_all(&[*b]).is_err() {
                return;
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Counters, events, requests
// ---------------------------------------------------------------------------

/// `sluice_connections_cut_total` of one listener and reason.
fn cuts(api: &ApiClient, listener: &str, reason: &str) -> u64 {
    metric(api, &format!("sluice_connections_cut_total{{listener=\"{listener}\",reason=\"{reason}\"}}"))
}

/// Polls `cuts` until it reaches `at_least` (counting may trail the close a little).
fn cuts_reach(api: &ApiClient, listener: &str, reason: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = cuts(api, listener, reason);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An admin client for the daemon's `[admin]` listener.
fn admin_api(daemon: &Daemon) -> ApiClient {
    let addr = daemon.admin.unwrap_or_else(|| panic!("no admin listener; log:\n{}", daemon.log_text()));
    ApiClient::new(&addr.to_string())
}

/// A Tell batch of `n` events marked `tag-i`, each payload padded to about `pad` bytes.
fn marker_batch(key: &[u8; 16], tag: &str, n: usize, pad: usize) -> Vec<u8> {
    let payloads: Vec<String> =
        (0..n).map(|i| json!({"marker": format!("{tag}-{i}"), "pad": "p".repeat(pad)}).to_string()).collect();
    let events: Vec<EventParams<'_>> = payloads
        .iter()
        .map(|p| EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000,
            service: Some("svc"),
            device_id: Some(&[7u8; 16]),
            session_id: None,
            event_name: Some("Marked"),
            payload: Some(p.as_bytes()),
        })
        .collect();
    tell_batch(key, 1, &events)
}

/// The markers of stored events.
fn markers(stored: &[Value]) -> Vec<String> {
    stored.iter().filter_map(|e| e["payload"]["marker"].as_str().map(str::to_owned)).collect()
}

/// Sends acked batches one at a time for about `run`, each expected `Stored`;
/// returns the markers acknowledged.
async fn keyed_client(addr: SocketAddr, key: [u8; 16], tag: &str, run: Duration) -> Vec<String> {
    let mut c = AckedClient::connect(&addr.to_string()).await.unwrap();
    let started = Instant::now();
    let mut acked = Vec::new();
    for id in 1..=200u64 {
        let batch = marker_batch(&key, &format!("{tag}{id}"), 3, 20);
        let ack = tokio::time::timeout(HANG, c.send_and_wait(id, &batch)).await.expect("ack in time").unwrap();
        assert_eq!(ack.status, Status::Stored, "batch {id} of the keyed client");
        acked.extend((0..3).map(|i| format!("{tag}{id}-{i}")));
        if started.elapsed() > run {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acked
}

/// One acked frame over a blocking socket, and its ack.
fn acked_exchange(stream: &mut TcpStream, batch_id: u64, batch: &[u8]) -> std::io::Result<Ack> {
    let mut wire = Vec::new();
    encode_acked(&AckedHeader { producer: rand::random(), batch_id }, batch, &mut wire);
    stream.set_read_timeout(Some(HANG))?;
    stream.write_all(&wire)?;
    let mut reply = [0u8; ACK_LEN];
    stream.read_exact(&mut reply)?;
    Ack::decode(&reply).map_err(|e| std::io::Error::other(e.to_string()))
}

/// A browser-style event line for `/v1/events`, padded to about `pad` bytes.
fn json_event(name: &str, n: usize, pad: usize) -> String {
    json!({"type": "track", "event": name, "service": "shop", "device_id": "0123456789abcdef0123456789abcdef",
           "timestamp": 1_700_000_000_000u64 + n as u64, "n": n, "pad": "x".repeat(pad)})
    .to_string()
}

/// POSTs a JSON array of events to `/v1/events` with `key`; returns the status.
fn post_events(http: &ApiClient, key: &str, events: &[String]) -> u16 {
    let body = format!("[{}]", events.join(","));
    http.send("POST", "/v1/events", Some(key), Some(body.as_bytes()), &[]).expect("POST /v1/events").status
}

/// Stored events named `name`.
fn named(stored: &[Value], name: &str) -> usize {
    stored.iter().filter(|e| e["event_name"] == name).count()
}

/// The status line of the reply to `request` sent on a fresh connection
/// (which is returned, still open, for streamed answers).
fn request_head(to: SocketAddr, request: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(to).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (String::from_utf8_lossy(&head).trim_end().to_owned(), s)
}

fn get(path: &str, token: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {token}\r\n\r\n")
}

const FRAME_1S: &str = "[pipeline]\nframe_timeout = \"1s\"\n";
const HTTP_SECTION: &str = "[sources.http]\naddress = \"127.0.0.1:0\"\n";

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Header-only raw TCP frames: a stranger announcing more than
/// `max_untrusted_bytes` is closed at once; one announcing less and sending
/// a few bytes is cut at the frame deadline; a keyed client is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_frames_are_closed_or_cut_while_a_keyed_client_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, &format!("{FRAME_1S}{}", admin_section("")));
    let api = admin_api(&daemon);
    let tcp = daemon.tcp;

    let keyed = tokio::spawn(keyed_client(tcp, key, "k", Duration::from_secs(3)));
    let hostile = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::new();
        for i in 0..8u32 {
            // ~16 MiB announced, nothing sent.
            let mut s = connect_from(stranger(1 + i), tcp, None);
            s.write_all(&((16u32 << 20) - 1000).to_be_bytes()).unwrap();
            conns.push(("16MiB", s));
        }
        for i in 0..8u32 {
            // 512 KiB announced, a few bytes sent, then nothing.
            let mut s = connect_from(stranger(9 + i), tcp, None);
            s.write_all(&(512u32 << 10).to_be_bytes()).unwrap();
            s.write_all(b"abcdefgh").unwrap();
            conns.push(("512KiB", s));
        }
        conns.into_iter().map(|(what, mut s)| (what, read_until_closed(&mut s, Duration::from_secs(10)).1)).collect()
    });
    let closed: Vec<(&str, Option<Duration>)> = hostile.await.unwrap();
    let acked = keyed.await.unwrap();

    for (what, took) in &closed {
        assert!(took.is_some(), "a header-only connection announcing {what} is still open after 10 s");
    }
    assert_eq!(cuts_reach(&api, "tcp", "untrusted_too_large", 8), 8);
    assert_eq!(cuts_reach(&api, "tcp", "slow_frame", 8), 8);
    assert!(daemon.stop().success());
    let mut stored = markers(&export(&data));
    stored.sort();
    let mut want = acked;
    want.sort();
    assert_eq!(stored, want, "every acked event of the keyed client, nothing else");
}

/// HTTP bodies trickled one byte per 300 ms are answered 408 (or closed)
/// within frame_timeout plus a few seconds, while normal POSTs get 202.
#[test]
fn trickled_http_bodies_are_cut_while_normal_posts_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, &format!("{FRAME_1S}{HTTP_SECTION}{}", admin_section("")));
    let api = admin_api(&daemon);
    let http_addr = daemon.http.expect("http listener");
    let http = ApiClient::new(&http_addr.to_string());

    let stop = Arc::new(AtomicBool::new(false));
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    );
    let tricklers: Vec<_> = (0..6u32)
        .map(|i| {
            let (head, stop) = (head.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = connect_from(stranger(1 + i), http_addr, None);
                let writer = trickle(&s, head.as_bytes(), b"[{\"type\":\"track\"", &stop);
                let result = read_until_closed(&mut s, HANG);
                drop(s);
                let _ = writer.join();
                result
            })
        })
        .collect();

    let mut posted = 0;
    for round in 0..12 {
        let events: Vec<String> = (0..5).map(|i| json_event("Normal", round * 5 + i, 10)).collect();
        assert_eq!(post_events(&http, &key, &events), 202, "a normal POST while bodies trickle");
        posted += events.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    for t in tricklers {
        let (answer, took) = t.join().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let took = took.unwrap_or_else(|| panic!("a trickled body is still being read after {HANG:?}"));
        assert!(took < Duration::from_secs(1 + 5), "cut after {took:?}");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answer to a trickled body: {answer}");
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(cuts_reach(&api, "http", "slow_frame", 6), 6);
    assert!(daemon.stop().success());
    assert_eq!(named(&export(&data), "Normal"), posted);
}

/// A syslog octet count whose message never comes is cut at the frame
/// deadline (its listener trusts everyone into workspace 1, so only the
/// frame deadline can end it early); another sender's message is stored.
#[test]
fn a_stalled_syslog_octet_count_is_cut_and_other_senders_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let syslog = "[sources.syslog_tcp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n";
    let daemon = Daemon::start(&data, &format!("{FRAME_1S}{syslog}{}", admin_section("")));
    let api = admin_api(&daemon);
    let to = daemon.syslog_tcp.expect("syslog_tcp listener");

    let stalled: Vec<_> = (0..4u32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect_from(stranger(1 + i), to, None);
                s.write_all(b"200 <13>partial").unwrap();
                read_until_closed(&mut s, HANG).1
            })
        })
        .collect();
    let mut good = TcpStream::connect(to).unwrap();
    let mut wire = Vec::new();
    sluice::codec::octet::encode_octet_counted(b"<13>good message from a patient sender", &mut wire);
    good.write_all(&wire).unwrap();
    drop(good);

    for s in stalled {
        let took = s.join().unwrap().unwrap_or_else(|| panic!("a stalled octet count is still open after {HANG:?}"));
        // The listener's idle timeout is the default 300 s: only the frame deadline cuts this soon.
        assert!(took < Duration::from_secs(1 + 5), "cut after {took:?}");
    }
    assert_eq!(cuts_reach(&api, "syslog_tcp", "slow_frame", 4), 4);
    assert!(daemon.stop().success());
    let stored = export(&data);
    let good: Vec<_> =
        stored.iter().filter(|e| e["raw"].as_str().is_some_and(|r| r.contains("good message"))).collect();
    assert_eq!(good.len(), 1, "{stored:#?}");
}

/// Request heads sent one byte per 300 ms (slowloris) are closed after the
/// head timeout on both HTTP listeners, while `/health` and ingest are answered.
#[test]
fn request_heads_sent_byte_by_byte_are_closed_on_http_and_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let http_section = format!("{HTTP_SECTION}idle_timeout = \"1s\"\n");
    let daemon = Daemon::start(&data, &format!("{FRAME_1S}{http_section}{}", admin_section("")));
    let api = admin_api(&daemon);
    let admin_addr = daemon.admin.unwrap();
    let http_addr = daemon.http.unwrap();
    let http = ApiClient::new(&http_addr.to_string());

    let stop = Arc::new(AtomicBool::new(false));
    let loris: Vec<_> = (0..16u32)
        .map(|i| {
            let to = if i % 2 == 0 { http_addr } else { admin_addr };
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = connect_from(stranger(1 + i), to, None);
                let writer =
                    trickle(&s, b"G", b"ET /health HTTP/1.1\r\nHost: sluice\r\nX-Padding: aaaaaaaaaaaaaaaa", &stop);
                let took = read_until_closed(&mut s, HANG).1;
                drop(s);
                let _ = writer.join();
                took
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    for round in 0..5 {
        let health = api.get("/health", None).unwrap();
        assert_eq!(health.status, 200, "/health while heads trickle: {}", health.body);
        assert_eq!(post_events(&http, &key, &[json_event("Served", round, 10)]), 202, "ingest while heads trickle");
        std::thread::sleep(Duration::from_millis(200));
    }
    for l in loris {
        let took = l.join().unwrap().unwrap_or_else(|| panic!("a trickled request head is still open after {HANG:?}"));
        assert!(took < Duration::from_secs(1 + 5), "closed after {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(cuts_reach(&api, "http", "slow_frame", 8), 8);
    assert_eq!(cuts_reach(&api, "admin", "slow_frame", 8), 8);
    assert!(daemon.stop().success());
    assert_eq!(named(&export(&data), "Served"), 5);
}

/// Idle strangers fill `max_connections` again and again; as they hold no
/// key, each is cut after frame_timeout (not the 300 s idle timeout), so a
/// keyed client waiting in the backlog gets its turn within seconds, and once
/// trusted it may be quiet for longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_strangers_cannot_keep_a_keyed_client_out_past_max_connections() {
    sluice::net::limits::raise_nofile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, &format!("max_connections = 50\n{FRAME_1S}{}", admin_section("")));
    let api = admin_api(&daemon);
    let tcp = daemon.tcp;

    // More than max_connections plus the kernel's usual listen backlog (128).
    const STRANGERS: u32 = 300;
    let idlers: Vec<_> = (0..STRANGERS)
        .map(|i| {
            // 10 connections per address: well under the per-address cap of 64.
            let from = stranger(1 + i / 10);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                // Reconnect after every cut, as an attacker would, a bounded number of times.
                for _ in 0..30 {
                    let Ok(Ok(mut s)) = tokio::time::timeout(HANG, connect_from_async(from, tcp)).await else { break };
                    let mut buf = [0u8; 16];
                    if !matches!(tokio::time::timeout(HANG, s.read(&mut buf)).await, Ok(Ok(0) | Err(_))) {
                        break;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    // 300 strangers through 50 slots, each cut after 1 s: about 6 s in the
    // queue, not the 300 s idle timeout.
    const SERVED_WITHIN: Duration = Duration::from_secs(15);
    let started = Instant::now();
    let served = tokio::time::timeout(SERVED_WITHIN, async {
        let mut c = AckedClient::connect(&tcp.to_string()).await.unwrap();
        let connected = started.elapsed();
        let ack = c.send_and_wait(1, &marker_batch(&key, "first", 1, 10)).await.unwrap();
        (c, connected, ack)
    })
    .await;
    let Ok((mut c, connected, ack)) = served else {
        panic!("the keyed client was not served within {SERVED_WITHIN:?} ({})", listen_overflows_note());
    };
    assert_eq!(ack.status, Status::Stored, "connected after {connected:?}");
    // Trusted now: quiet for longer than frame_timeout and still connected.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = tokio::time::timeout(HANG, c.send_and_wait(2, &marker_batch(&key, "second", 1, 10))).await;
    assert_eq!(again.expect("ack in time").unwrap().status, Status::Stored);

    let counted = tokio::task::spawn_blocking(move || cuts_reach(&api, "tcp", "idle", u64::from(STRANGERS)));
    assert!(counted.await.unwrap() >= u64::from(STRANGERS), "idle cuts, at least one per stranger");
    for idler in &idlers {
        idler.abort();
    }
    assert!(daemon.stop().success());
    let mut stored = markers(&export(&data));
    stored.sort();
    assert_eq!(stored, ["first-0", "second-0"]);
}

/// `max_connections_per_address = 2`: a third connection from one address
/// is closed at once (long before any timeout) and counted; the first two
/// stay open, another address is served, and a closed slot is given back.
#[test]
fn a_connection_over_the_per_address_cap_is_closed_at_once_and_other_addresses_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    // frame_timeout 30 s: an untrusted idle connection would otherwise live that long.
    let extra = format!("max_connections_per_address = 2\n[pipeline]\nframe_timeout = \"30s\"\n{}", admin_section(""));
    let daemon = Daemon::start(&data, &extra);
    let api = admin_api(&daemon);
    let (crowded, other) = (stranger(1), stranger(2));

    let first = connect_from(crowded, daemon.tcp, None);
    let mut second = connect_from(crowded, daemon.tcp, None);
    assert_eq!(acked_exchange(&mut second, 1, &marker_batch(&key, "second", 1, 10)).unwrap().status, Status::Stored);
    let mut third = connect_from(crowded, daemon.tcp, None);
    let took = read_until_closed(&mut third, HANG).1.expect("the third connection from one address is closed");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(cuts_reach(&api, "tcp", "per_address", 1), 1);
    assert!(still_open(&first) && still_open(&second), "the first two connections are kept");

    let mut elsewhere = connect_from(other, daemon.tcp, None);
    assert_eq!(acked_exchange(&mut elsewhere, 1, &marker_batch(&key, "other", 1, 10)).unwrap().status, Status::Stored);

    // Once one of the two closes, the address may connect again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let ack = loop {
        let mut s = connect_from(crowded, daemon.tcp, None);
        match acked_exchange(&mut s, 1, &marker_batch(&key, "again", 1, 10)) {
            Ok(ack) => break ack,
            Err(e) if Instant::now() > deadline => panic!("the address never got its slot back: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(ack.status, Status::Stored);
    assert!(daemon.stop().success());
    let mut stored = markers(&export(&data));
    stored.sort();
    assert_eq!(stored, ["again-0", "other-0", "second-0"]);
}

/// With a tail and an export nobody reads, an admin body trickled in and
/// a keyed peer that never reads its acks all connected, SIGTERM still ends
/// the daemon with status 0 within drain_timeout plus a margin, and every
/// batch acknowledged before is in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_the_drain_deadline_whatever_peers_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A long frame_timeout: no hostile peer is cut before the SIGTERM.
    let extra = format!("[pipeline]\nframe_timeout = \"30s\"\ndrain_timeout = \"2s\"\n{}", admin_section(""));
    let daemon = Daemon::start(&data, &extra);
    let api = admin_api(&daemon);
    let setup_reply = tokio::task::spawn_blocking(move || setup(&api)).await.unwrap();
    let token = setup_reply["token"].as_str().unwrap().to_owned();
    let key = hex_key(setup_reply["streaming_key"].as_str().unwrap());
    let (tcp, admin) = (daemon.tcp, daemon.admin.unwrap());

    // Enough stored that an export or a replayed tail fills every buffer on the way.
    let mut c = AckedClient::connect(&tcp.to_string()).await.unwrap();
    let mut acked = Vec::new();
    for id in 1..=20u64 {
        let ack = c.send_and_wait(id, &marker_batch(&key, &format!("b{id}"), 1000, 300)).await.unwrap();
        assert_eq!(ack.status, Status::Stored);
        acked.extend((0..1000).map(|i| format!("b{id}-{i}")));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let peers = {
        let (token, stop) = (token.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            // A replayed tail and an export, never read, through tiny receive buffers.
            for (i, path) in ["/api/v1/events/tail?since=1", "/api/v1/events/export"].into_iter().enumerate() {
                let mut s = connect_from(stranger(1 + i as u32), admin, Some(4096));
                s.write_all(get(path, &token).as_bytes()).unwrap();
                held.push(s);
            }
            // An admin body trickled in.
            let s = connect_from(stranger(3), admin, None);
            let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n\
                        Content-Length: 1000\r\n\r\n";
            let writer = trickle(&s, head.as_bytes(), b"{\"email\":\"x\"", &stop);
            held.push(s);
            // A keyed peer sending acked frames and never reading an ack.
            let mut s = connect_from(stranger(4), tcp, Some(4096));
            s.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
            let mut wire = Vec::new();
            for id in 0..2000u64 {
                let batch = marker_batch(&key, &format!("deaf{id}"), 1, 10);
                encode_acked(&AckedHeader { producer: [9; 16], batch_id: id }, &batch, &mut wire);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && s.write_all(&wire).is_ok() {}
            held.push(s);
            (held, writer)
        })
    };
    let (held, writer) = peers.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || daemon.stop()).await.unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    drop(held);
    let _ = writer.join();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2 + 5), "stopped {took:?} after SIGTERM");
    let stored: std::collections::HashSet<String> = markers(&export(&data)).into_iter().collect();
    let missing: Vec<_> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing, e.g. {:?}",
        missing.len(),
        &missing[..3.min(missing.len())]
    );
}

/// A slow but honest client: a 5 MiB body sent at about four times
/// `min_transfer_rate`, taking several times `frame_timeout`, is stored whole.
#[test]
fn a_slow_honest_http_client_above_the_minimum_rate_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let extra = format!(
        "[pipeline]\nframe_timeout = \"1s\"\nmin_transfer_rate = \"256KiB\"\n\
         {HTTP_SECTION}max_body_bytes = \"8MiB\"\nmax_lines = 20000\n{}",
        admin_section("")
    );
    let daemon = Daemon::start(&data, &extra);
    let api = admin_api(&daemon);

    const LINES: usize = 10_000;
    let body: String = (0..LINES).map(|i| json_event("Slow", i, 400) + "\n").collect();
    assert!(body.len() > 4 << 20, "{} bytes", body.len());
    let mut s = TcpStream::connect(daemon.http.unwrap()).unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {key}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // 32 KiB every 32 ms on a fixed schedule: about 1 MiB/s, four times the minimum.
    const PIECE: usize = 32 << 10;
    let started = Instant::now();
    for (i, piece) in body.as_bytes().chunks(PIECE).enumerate() {
        let due = started + Duration::from_millis(32 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        s.write_all(piece).unwrap();
    }
    let sending = started.elapsed();
    assert!(sending > Duration::from_secs(3), "the body took {sending:?}, not longer than frame_timeout");
    let (answer, closed) = read_until_closed(&mut s, HANG);
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed.is_some(), "no answer: {answer}");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains(&format!("\"accepted\":{LINES}")), "{answer}");
    assert_eq!(cuts(&api, "http", "slow_frame"), 0);
    assert!(daemon.stop().success());
    assert_eq!(named(&export(&data), "Slow"), LINES);
}

/// `[admin] max_streams = 1`: while one tail is open, a second tail (or
/// an export) gets 503; once the first tail has ended (its client gone, and a
/// commit to send it), a tail is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_streams_refuses_a_second_stream_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (daemon, api, token, key) = tokio::task::spawn_blocking(move || {
        let (daemon, api) = common::admin::start_admin(&data, "max_streams = 1\n");
        let done = setup(&api);
        let key = hex_key(done["streaming_key"].as_str().unwrap());
        (daemon, api, done["token"].as_str().unwrap().to_owned(), key)
    })
    .await
    .unwrap();
    let admin = daemon.admin.unwrap();

    let tail = get("/api/v1/events/tail", &token);
    let first = tokio::task::spawn_blocking({
        let (tail, api, token) = (tail.clone(), api.clone(), token.clone());
        move || {
            let (first, open) = request_head(admin, &tail);
            assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            let (second, _) = request_head(admin, &tail);
            assert!(second.starts_with("HTTP/1.1 503"), "a second tail: {second}");
            let export = api.get("/api/v1/events/export", Some(&token)).unwrap();
            assert_eq!(export.status, 503, "an export: {}", export.body);
            open
        }
    });
    drop(first.await.unwrap());

    // A commit gives the first tail's feed something to send: it finds its client gone.
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    assert_eq!(c.send_and_wait(1, &marker_batch(&key, "wake", 1, 10)).await.unwrap().status, Status::Stored);
    let again = tokio::task::spawn_blocking(move || tail_within(admin, &tail, Duration::from_secs(5)));
    let (line, _open) = again.await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "after the first tail ended: {line}");
    drop(daemon);
}

/// Asks for `tail` until it is served (200) or `limit` passes; the last status line.
fn tail_within(admin: SocketAddr, tail: &str, limit: Duration) -> (String, TcpStream) {
    let deadline = Instant::now() + limit;
    loop {
        let (line, s) = request_head(admin, tail);
        if line.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            return (line, s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tail whose client hung up gives its `max_streams` slot back soon,
/// not only at its next keepalive (15 s) or the next commit: otherwise a
/// client opening and dropping tails keeps every stream slot taken.
#[test]
fn a_tail_slot_is_given_back_soon_after_its_client_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (daemon, api) = common::admin::start_admin(&data, "max_streams = 1\n");
    let token = setup(&api)["token"].as_str().unwrap().to_owned();
    let admin = daemon.admin.unwrap();
    let tail = get("/api/v1/events/tail", &token);

    for round in 0..3 {
        let (line, mut open) = tail_within(admin, &tail, Duration::from_secs(5));
        assert!(line.starts_with("HTTP/1.1 200"), "round {round}, 5 s after the last tail's client left: {line}");
        // Read up to the stream's first frame, so the tail is surely running when its client leaves.
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(": open") {
            match open.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                other => panic!("the tail ended before its first frame: {other:?}"),
            }
        }
        drop(open);
    }
    drop(daemon);
}

/// `max_untrusted_bytes = 64KiB`: before any valid key, an acked frame
/// over it whose key is not valid is answered `too_large` and a Tell frame
/// over it closes the connection; after one small keyed frame a large frame
/// is stored, and so is a large first frame whose valid key is read from
/// its first bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_untrusted_bytes_refuses_a_large_first_frame_until_a_key_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, &format!("[pipeline]\nmax_untrusted_bytes = \"64KiB\"\n{}", admin_section("")));
    let api = admin_api(&daemon);
    let addr = daemon.tcp.to_string();
    let large = marker_batch(&key, "large", 100, 1000);
    let unknown = marker_batch(&[0x5a; 16], "unknown", 100, 1000);
    let under = marker_batch(&key, "under", 50, 1000);
    assert!(large.len() > 100_000 && under.len() < 64 << 10, "{} / {}", large.len(), under.len());

    // Before any valid key, a large frame whose key is not valid is refused unread.
    let mut c = AckedClient::connect(&addr).await.unwrap();
    assert_eq!(c.send_and_wait(1, &unknown).await.unwrap().status, Status::TooLarge, "before any key");
    assert_eq!(c.send_and_wait(2, &marker_batch(&key, "small", 1, 10)).await.unwrap().status, Status::Stored);
    assert_eq!(c.send_and_wait(3, &large).await.unwrap().status, Status::Stored, "after a valid key");

    // A large first frame whose valid key is read from its first bytes is taken.
    let mut k = AckedClient::connect(&addr).await.unwrap();
    assert_eq!(k.send_and_wait(1, &large).await.unwrap().status, Status::Stored, "key checked early");

    // A first frame under the limit is fine.
    let mut u = AckedClient::connect(&addr).await.unwrap();
    assert_eq!(u.send_and_wait(1, &under).await.unwrap().status, Status::Stored);

    // A Tell frame cannot be answered: the connection is closed.
    let to = daemon.tcp;
    let tell = unknown.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(to).unwrap();
        let mut wire = Vec::new();
        sluice::codec::frame::encode_tell(&tell, &mut wire);
        // The server may close before it has read everything.
        let _ = s.write_all(&wire);
        read_until_closed(&mut s, HANG).1
    });
    assert!(closed.await.unwrap().is_some(), "a keyless Tell frame over the limit leaves the connection open");

    let counted = tokio::task::spawn_blocking(move || cuts_reach(&api, "tcp", "untrusted_too_large", 2));
    assert_eq!(counted.await.unwrap(), 2, "the acked frame and the Tell frame");
    assert!(daemon.stop().success());
    let stored = markers(&export(&data));
    let count = |tag: &str| stored.iter().filter(|m| m.starts_with(&format!("{tag}-"))).count();
    assert_eq!((count("large"), count("small"), count("under"), count("unknown")), (200, 1, 50, 0));
}

/// Strangers that each send a frame just within `max_untrusted_bytes`
/// and then sit on it hold the whole untrusted share (a quarter of
/// `max_inflight_bytes`) until their frame deadlines. A keyed client opening
/// a new connection meanwhile must still be served: its key is read from its
/// first frame's first bytes, before they are charged, so it is not charged
/// to the untrusted share at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_the_untrusted_share_cannot_lock_out_a_new_keyed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    // Default budget (32 MiB, so an 8 MiB untrusted share) and max_untrusted_bytes (1 MiB).
    let daemon = Daemon::start(&data, &format!("{FRAME_1S}{}", admin_section("")));
    let api = admin_api(&daemon);
    let tcp = daemon.tcp;

    // Eight strangers, 1 MiB each (all but a few bytes of a frame of exactly 1 MiB).
    let strangers = tokio::task::spawn_blocking(move || {
        (0..8u32)
            .map(|i| {
                let mut s = connect_from(stranger(1 + i), tcp, None);
                s.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
                s.write_all(&vec![b's'; (1 << 20) - 16]).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut c = AckedClient::connect(&tcp.to_string()).await.unwrap();
    let ack = tokio::time::timeout(HANG, c.send_and_wait(1, &marker_batch(&key, "keyed", 1, 10))).await;
    let no_budget = tokio::task::spawn_blocking(move || cuts(&api, "tcp", "no_budget")).await.unwrap();
    let outcome = match ack {
        Ok(Ok(ack)) => format!("{:?}", ack.status),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => format!("no ack within {HANG:?}"),
    };
    assert_eq!(
        outcome, "Stored",
        "a new keyed connection while strangers hold the untrusted share ({no_budget} no_budget cuts)"
    );
    assert!(strangers.iter().all(still_open), "the strangers are within their rights until their frame deadlines");
    drop(strangers);
    assert!(daemon.stop().success());
    assert_eq!(markers(&export(&data)), ["keyed-0"]);
}

/// Syslog in key mode: strangers holding the whole untrusted share with
/// partial lines they keep alive byte by byte cannot cut off a keyed sender,
/// whose first message's key is checked before its bytes are charged (so
/// its connection is trusted and charged to the rest of the budget).
#[test]
fn strangers_holding_the_untrusted_share_do_not_cut_off_a_keyed_syslog_sender() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, 1).1;
    // A 1 MiB budget: a 256 KiB untrusted share, all but 4 KiB held by 4 strangers × 63 KiB.
    let config = format!(
        "[pipeline]\nframe_timeout = \"1s\"\nmax_inflight_bytes = \"1MiB\"\n\
         [sources.syslog_tcp]\naddress = \"127.0.0.1:0\"\nauth = \"key\"\n{}",
        admin_section("")
    );
    let daemon = Daemon::start(&data, &config);
    let api = admin_api(&daemon);
    let to = daemon.syslog_tcp.expect("syslog_tcp listener");
    let stop = Arc::new(AtomicBool::new(false));
    let strangers: Vec<_> = (0..4u32)
        .map(|i| {
            let s = connect_from(stranger(1 + i), to, None);
            let feeder = trickle(&s, &vec![b'x'; 63 << 10], b"x", &stop);
            (s, feeder)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let mut keyed = TcpStream::connect(to).unwrap();
    // 8 KiB messages: more than the share has left.
    let pad = "p".repeat(8 << 10);
    let line = |n: u32| format!("<14>1 - h app - - [sluice@32473 key=\"{key}\"] keyed message {n} {pad}\n");
    keyed.write_all(line(0).as_bytes()).unwrap();
    // Past the frame deadline: a connection charged to the spent share would be cut by now.
    std::thread::sleep(Duration::from_millis(2500));
    keyed.write_all(line(1).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_open(&keyed), "the keyed sender's connection was cut");
    assert!(strangers.iter().all(|(s, _)| still_open(s)), "the strangers kept the share");
    assert_eq!(cuts(&api, "syslog_tcp", "no_budget"), 0);
    let untrusted = crate::common::admin::metric(&api, "sluice_untrusted_inflight_bytes");
    assert!(untrusted >= 4 * (63 << 10), "the strangers' bytes show in the gauge: {untrusted}");
    stop.store(true, Ordering::Relaxed);
    drop(keyed);
    for (s, feeder) in strangers {
        drop(s);
        feeder.join().unwrap();
    }
    assert!(daemon.stop().success());
    let stored = export(&data);
    let keyed: Vec<_> =
        stored.iter().filter(|e| e["raw"].as_str().is_some_and(|r| r.contains("keyed message"))).collect();
    assert_eq!(keyed.len(), 2, "{stored:#?}");
}

/// The per-address cap counts an IPv6 client by its /64: in a network
/// namespace of its own (`unshare -n`, its loopback given addresses of two
/// /64s), two connections from two addresses of one /64 fill a cap of 2, a
/// third from that /64 is closed at once, and one from the next /64 is not.
#[test]
fn an_ipv6_slash_64_is_one_client_for_the_per_address_cap() {
    const SCRIPT: &str = r#"
set -eu
ip link set lo up
for a in 2001:db8:0:1::1 2001:db8:0:1::2 2001:db8:0:1::3 2001:db8:0:2::1; do
    ip -6 addr add "$a/64" dev lo nodad
done
"$SLUICE" serve --config "$CONFIG" 2> "$LOG" &
pid=$!
for _ in $(seq 200); do grep -q "sluice is ready" "$LOG" && break; sleep 0.05; done
python3 - << 'PY'
import socket
def conn(src):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect(("2001:db8:0:1::1", 50000))
    s.settimeout(1.0)
    return s
def closed(s):
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
held = [conn("2001:db8:0:1::2"), conn("2001:db8:0:1::3")]
third, other = conn("2001:db8:0:1::2"), conn("2001:db8:0:2::1")
print("third from the same /64 closed:", closed(third))
print("first still open:", not closed(held[0]))
print("other /64 open:", not closed(other))
PY
kill -TERM "$pid"
wait "$pid" || true
"#;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[sources.tcp]\naddress = \"[2001:db8:0:1::1]:50000\"\n\
             max_connections_per_address = 2\nidle_timeout = \"1m\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = std::process::Command::new(if root { "unshare" } else { "sudo" });
    if !root {
        cmd.args(["-n", "--preserve-env=SLUICE,CONFIG,LOG", "unshare"]);
    }
    cmd.args(["-n", "bash", "-c", SCRIPT])
        .env("SLUICE", common::BIN)
        .env("CONFIG", &config)
        .env("LOG", dir.path().join("daemon.log"))
        .env_remove("RUST_LOG");
    let run = common::run_bounded(cmd, "the daemon and clients in a network namespace", Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(run.success, "{}\n{}\ndaemon:\n{log}", run.stdout, run.stderr);
    for line in ["third from the same /64 closed: True", "first still open: True", "other /64 open: True"] {
        assert!(run.stdout.contains(line), "{line}?\n{}\ndaemon:\n{log}", run.stdout);
    }
}
