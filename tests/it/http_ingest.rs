//! `[sources.http]` through curl against the real daemon: every answer the
//! API documents (202, 207, 400, 401, 403, 404, 405, 413, 415, 429, 503),
//! the three ways to send a key, gzip and zstd bodies, CORS, and each
//! stored event checked with `sluice export` after the daemon has stopped.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::curl::curl;
use common::{Daemon, create_key, export};
use serde_json::{Value, json};

const HTTP: &str = "[sources.http]\naddress = \"127.0.0.1:0\"\n";

fn url(daemon: &Daemon, path: &str) -> String {
    format!("http://{}{path}", daemon.http.expect("http listener"))
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// What the browser SDK sends for `track`: flat, properties at the top level.
fn browser_event(name: &str, n: u32) -> String {
    json!({"type": "track", "event": name, "service": "shop", "device_id": "0123456789abcdef0123456789abcdef",
           "session_id": "a0a1a2a3b0b1c0c1d0d1e0e1e2e3e4e5", "user_id": "u1", "timestamp": 1_700_000_000_000u64 + u64::from(n),
           "n": n, "plan": "team"})
    .to_string()
}

fn by_name<'a>(stored: &'a [Value], name: &str) -> Vec<&'a Value> {
    stored.iter().filter(|e| e["event_name"] == name).collect()
}

#[test]
fn events_and_logs_with_every_way_to_send_the_key_are_stored_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 4);
    let daemon = Daemon::start(&data, HTTP);
    let lines = format!("{}\n{}\n", browser_event("Lines", 1), browser_event("Lines", 2));
    let a = curl(
        dir.path(),
        &url(&daemon, "/v1/events"),
        Some(lines.as_bytes()),
        &["-H", &bearer(&key), "-H", "Content-Type: text/plain"],
    );
    assert_eq!((a.status, &a.body), (202, &json!({"accepted": 2, "first_seq": 1})), "{a:?}");
    let array = format!("[{},{}]", browser_event("Array", 3), browser_event("Array", 4));
    let a =
        curl(dir.path(), &url(&daemon, "/v1/events"), Some(array.as_bytes()), &["-H", &format!("X-API-Key: {key}")]);
    assert_eq!((a.status, &a.body), (202, &json!({"accepted": 2, "first_seq": 3})), "{a:?}");
    let log = json!({"level": "error", "message": "db down", "source": "api", "service": "shop", "data": {"ms": 5000}});
    let a = curl(dir.path(), &url(&daemon, &format!("/v1/logs?token={key}")), Some(log.to_string().as_bytes()), &[]);
    assert_eq!(a.status, 202, "{a:?}");
    let gz = gzip(browser_event("Gzip", 5).as_bytes());
    let a = curl(
        dir.path(),
        &url(&daemon, "/v1/events"),
        Some(&gz),
        &["-H", &bearer(&key), "-H", "Content-Encoding: gzip"],
    );
    assert_eq!(a.status, 202, "{a:?}");
    let zst = zstd::encode_all(browser_event("Zstd", 6).as_bytes(), 3).unwrap();
    let a = curl(
        dir.path(),
        &url(&daemon, "/v1/events"),
        Some(&zst),
        &["-H", &bearer(&key), "-H", "Content-Encoding: zstd"],
    );
    assert_eq!((a.status, &a.body["accepted"]), (202, &json!(1)), "{a:?}");
    assert!(daemon.stop().success());

    let stored = export(&data);
    assert_eq!(stored.len(), 7, "{stored:#?}");
    for e in &stored {
        assert_eq!((e["workspace"].clone(), e["listener"].clone()), (json!(4), json!("http")), "{e}");
        assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
    }
    let first = by_name(&stored, "Lines")[0];
    assert_eq!(first["event_type"], "track");
    assert_eq!(first["service"], "shop");
    assert_eq!(first["device_id"], "01234567-89ab-cdef-0123-456789abcdef");
    assert_eq!(first["timestamp"], 1_700_000_000_001u64);
    assert_eq!(first["payload"], json!({"user_id": "u1", "n": 1, "plan": "team"}));
    assert_eq!(by_name(&stored, "Array").len(), 2);
    assert_eq!(by_name(&stored, "Gzip").len() + by_name(&stored, "Zstd").len(), 2);
    let log = stored.iter().find(|e| e["kind"] == "log").unwrap();
    assert_eq!((log["level"].clone(), log["source"].clone()), (json!("error"), json!("api")));
    assert_eq!(log["payload"], json!({"message": "db down", "ms": 5000}));
}

#[test]
fn bad_requests_store_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, HTTP);
    let events = url(&daemon, "/v1/events");
    let auth = bearer(&key);
    let post = |body: &str, args: &[&str]| curl(dir.path(), &events, Some(body.as_bytes()), args);

    let a = post("{\"event\":\"ok\"}\n{\"event\":\"broken\",}\n", &["-H", &auth]);
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str(), a.body["error"]["line"].as_u64()),
        (400, Some("invalid_json"), Some(2))
    );
    assert!(a.body["error"]["message"].as_str().unwrap().starts_with("line 2:"), "{a:?}");
    let a = post("{\"event\":\"ok\"}\n42\n", &["-H", &auth]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("not_an_object")));
    for (args, code) in [
        (vec![], "missing_key"),
        (vec!["-H".to_owned(), bearer("0123456789abcdef0123456789abcdef")], "unknown_key"),
        (vec!["-H".to_owned(), "X-API-Key: nope".to_owned()], "invalid_key"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = post("{\"event\":\"x\"}", &args);
        assert_eq!((a.status, a.body["error"]["code"].as_str()), (401, Some(code)), "{a:?}");
    }
    let a = curl(dir.path(), &url(&daemon, "/v1/nothing"), Some(b"{}"), &["-H", &auth]);
    assert_eq!(a.status, 404);
    let a = curl(dir.path(), &events, None, &["-H", &auth]);
    assert_eq!((a.status, a.header("allow")), (405, Some("POST, OPTIONS")), "{a:?}");
    let a = post("{}", &["-H", &auth, "-H", "Content-Encoding: br"]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (415, Some("unsupported_encoding")));
    let a = post("not gzip at all", &["-H", &auth, "-H", "Content-Encoding: gzip"]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("bad_encoding")));
    let a = curl(dir.path(), &url(&daemon, "/v1/ingest"), Some(b"x"), &["-H", &auth, "-H", "Content-Type: text/plain"]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    let metrics_log = daemon.log_text();
    assert!(daemon.stop().success());
    assert!(export(&data).is_empty(), "nothing refused is stored; log:\n{metrics_log}");
}

#[test]
fn limits_partial_acceptance_cors_query_token_and_rate_limit_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let (_, other) = create_key(&data, 1);
    let config = format!(
        "{HTTP}max_body_bytes = \"4KiB\"\nmax_lines = 3\nquery_token = false\ncors_origins = [\"http://app.test\"]\n\
         [sources.http.rate_limit]\nper = \"key\"\nrequests_per_minute = 8\n"
    );
    let daemon = Daemon::start(&data, &config);
    let events = url(&daemon, "/v1/events");
    let auth = bearer(&key);
    let post = |body: &[u8], args: &[&str]| curl(dir.path(), &events, Some(body), args);

    let a = post(&vec![b' '; 5000], &["-H", &auth]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("body_too_large")), "{a:?}");
    let bomb = gzip(&vec![b' '; 1 << 20]);
    let a = post(&bomb, &["-H", &auth, "-H", "Content-Encoding: gzip"]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("body_too_large")), "{a:?}");
    let a = post(b"{}\n{}\n{}\n{}\n", &["-H", &auth]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("too_many_lines")));
    let a = curl(dir.path(), &format!("{events}?token={key}"), Some(b"{}"), &[]);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (401, Some("query_token_disabled")));

    let mixed = b"{\"event\":\"kept1\"}\n{oops\n{\"event\":\"kept2\"}\n";
    let a = curl(dir.path(), &format!("{events}?partial=true"), Some(mixed), &["-H", &auth]);
    assert_eq!((a.status, &a.body["accepted"], &a.body["rejected"]), (207, &json!(2), &json!(1)), "{a:?}");
    let seq = a.body["first_seq"].as_u64().unwrap();
    assert_eq!(a.body["results"][0], json!({"line": 1, "seq": seq}));
    assert_eq!(a.body["results"][1]["error"]["code"], "invalid_json");
    assert_eq!(a.body["results"][2], json!({"line": 3, "seq": seq + 1}));

    check_cors(dir.path(), &events, &auth);
    check_rate_limit(dir.path(), &events, &auth, &other);
    assert!(daemon.stop().success());
    let stored = export(&data);
    let names: Vec<&str> = stored.iter().filter_map(|e| e["event_name"].as_str()).collect();
    assert!(names.starts_with(&["kept1", "kept2", "cors"]), "{names:?}");
}

fn check_cors(dir: &Path, events: &str, auth: &str) {
    let preflight = ["-X", "OPTIONS", "-H", "Origin: http://app.test", "-H", "Access-Control-Request-Method: POST"];
    let a = curl(dir, events, None, &preflight);
    assert_eq!((a.status, a.header("access-control-allow-origin")), (204, Some("http://app.test")), "{a:?}");
    assert!(a.header("access-control-allow-headers").unwrap().contains("Authorization"));
    let a = curl(dir, events, None, &["-X", "OPTIONS", "-H", "Origin: http://evil.test"]);
    assert_eq!((a.status, a.header("access-control-allow-origin")), (204, None));
    let a = curl(dir, events, Some(b"{\"event\":\"cors\"}"), &["-H", auth, "-H", "Origin: http://app.test"]);
    assert_eq!((a.status, a.header("access-control-allow-origin")), (202, Some("http://app.test")), "{a:?}");
    assert!(a.header("access-control-expose-headers").unwrap().contains("X-RateLimit-Remaining"));
}

/// Per key: the quota runs out with 429 + Retry-After; another key is unaffected.
fn check_rate_limit(dir: &Path, events: &str, auth: &str, other: &str) {
    let mut refused = None;
    for _ in 0..10 {
        let a = curl(dir, events, Some(b""), &["-H", auth]);
        assert_eq!(a.header("x-ratelimit-limit"), Some("8"), "{a:?}");
        if a.status == 429 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 202, "{a:?}");
    }
    let a = refused.expect("the quota of 8 per minute ran out");
    assert_eq!(a.body["error"]["code"], "rate_limited");
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=8).contains(&retry), "{retry}");
    assert!(a.header("x-ratelimit-reset").unwrap().parse::<u64>().unwrap() >= retry);
    let a = curl(dir, events, Some(b""), &["-H", &bearer(other)]);
    assert_eq!(a.status, 202, "another key has its own quota: {a:?}");
}

#[test]
fn tell_batches_on_v1_ingest_must_carry_the_request_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 2);
    let daemon = Daemon::start(&data, HTTP);
    let ingest = url(&daemon, "/v1/ingest");
    let event = |name| tell_encoding::EventParams {
        event_type: tell_encoding::EventType::Identify,
        timestamp: 1_700_000_000_000,
        service: Some("api"),
        device_id: Some(&[7u8; 16]),
        session_id: None,
        event_name: Some(name),
        payload: Some(br#"{"user_id":"u9"}"#),
    };
    let batch = sluice::client::tell_batch(&common::hex_key(&key), 1, &[event("A"), event("B")]);
    let fb = ["-H", "Content-Type: application/x-flatbuffers"];
    let a = curl(dir.path(), &ingest, Some(&batch), &[&["-H", &bearer(&key)][..], &fb].concat());
    assert_eq!((a.status, &a.body), (202, &json!({"accepted": 2, "first_seq": 1})), "{a:?}");
    let foreign = sluice::client::tell_batch(&[9u8; 16], 1, &[event("C")]);
    let a = curl(dir.path(), &ingest, Some(&foreign), &[&["-H", &bearer(&key)][..], &fb].concat());
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (403, Some("key_mismatch")));
    let a = curl(
        dir.path(),
        &ingest,
        Some(b"garbage"),
        &["-H", &bearer(&key), "-H", "Content-Type: application/octet-stream"],
    );
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (400, Some("malformed_batch")));
    let a = curl(dir.path(), &format!("{ingest}?token={key}"), Some(&batch), &fb);
    assert_eq!(a.status, 401, "no query token on /v1/ingest");
    assert!(daemon.stop().success());
    let stored = export(&data);
    let names: Vec<&str> = stored.iter().filter_map(|e| e["event_name"].as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!((stored[0]["event_type"].clone(), stored[0]["listener"].clone()), (json!("identify"), json!("http")));
}

#[test]
fn a_request_in_flight_at_shutdown_is_finished_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, HTTP);
    let body = browser_event("Late", 1);
    let (head, tail) = body.split_at(10);
    let mut conn = TcpStream::connect(daemon.http.unwrap()).unwrap();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    );
    conn.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(tail.as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "closes after the answer: {answer}");
    assert!(daemon.stop().success());
    assert_eq!(by_name(&export(&data), "Late").len(), 1);
}

#[test]
fn a_failed_commit_is_503_with_retry_after_and_ingest_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start_with(&data, HTTP, |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only an async-signal-safe call between fork and exec. A
        // write past RLIMIT_FSIZE then fails with EFBIG instead of killing.
        unsafe {
            cmd.pre_exec(|| match libc::signal(libc::SIGXFSZ, libc::SIG_IGN) {
                libc::SIG_ERR => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
    });
    let events = url(&daemon, "/v1/events");
    let len = std::fs::metadata(data.join("events.redb")).unwrap().len();
    set_fsize_limit(daemon.pid(), len + (256 << 10));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut unavailable = None;
    for _ in 0..200 {
        let a = curl(dir.path(), &events, Some(random_lines(&mut seed).as_bytes()), &["-H", &bearer(&key)]);
        if a.status == 503 {
            unavailable = Some(a);
            break;
        }
        assert_eq!(a.status, 202, "{a:?}");
    }
    let a = unavailable.expect("a full disk answers 503");
    assert_eq!((a.body["error"]["code"].as_str(), a.header("retry-after")), (Some("unavailable"), Some("1")));
    set_fsize_limit(daemon.pid(), libc::RLIM_INFINITY);
    let mut resumed = false;
    for _ in 0..100 {
        let a = curl(dir.path(), &events, Some(b"{\"event\":\"after\"}"), &["-H", &bearer(&key)]);
        if a.status == 202 {
            resumed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(resumed, "ingest resumes once the disk has room");
    assert!(daemon.stop().success());
    assert_eq!(by_name(&export(&data), "after").len(), 1);
}

/// 20 events of 1 KiB of random hex each: compression cannot hide the growth.
fn random_lines(seed: &mut u64) -> String {
    let mut out = String::new();
    for _ in 0..20 {
        let fill: String = (0..64)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                format!("{:016x}", *seed)
            })
            .collect();
        out.push_str(&format!("{{\"event\":\"fill\",\"fill\":\"{fill}\"}}\n"));
    }
    out
}

/// Sets the soft file size limit of a running process (the hard limit stays).
fn set_fsize_limit(pid: i32, soft: libc::rlim_t) {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on valid pointers.
    unsafe {
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old), 0);
        let new = libc::rlimit { rlim_cur: soft.min(old.rlim_max), rlim_max: old.rlim_max };
        assert_eq!(libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()), 0);
    }
}
