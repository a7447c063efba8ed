//! `[admin] max_password_hashes` and `[admin] max_connections` change
//! behaviour as documented. (The rate limits, body limit, token lifetime
//! and trusted proxies are shown in tests/admin_api.rs.)

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::admin::*;
use serde_json::json;

/// `n` logins released at once, each on its own connection; all must succeed.
fn login_together(api: &ApiClient, n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (api, barrier) = (api.clone(), barrier.clone());
            std::thread::spawn(move || {
                let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
                barrier.wait();
                api.post("/api/v1/auth/login", None, &body).unwrap().status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
}

const WAITS: &str = "sluice_admin_password_hash_waits_total";

#[test]
fn max_password_hashes_makes_concurrent_logins_wait_for_a_slot() {
    const LOGINS: usize = 6;
    // As many slots as logins: nobody ever waits.
    let dir = tempfile::tempdir().unwrap();
    let (roomy, api) = start_admin(&dir.path().join("data"), &format!("max_password_hashes = {LOGINS}\n"));
    setup(&api);
    let after_setup = metric(&api, WAITS);
    login_together(&api, LOGINS);
    assert_eq!(metric(&api, WAITS), after_setup);
    drop(roomy);

    // One slot: logins that overlap queue for it (and still all succeed).
    let dir = tempfile::tempdir().unwrap();
    let (narrow, api) = start_admin(&dir.path().join("data"), "max_password_hashes = 1\n");
    setup(&api);
    for round in 0..5 {
        login_together(&api, LOGINS);
        if metric(&api, WAITS) > 0 {
            assert_eq!(metric(&api, "sluice_admin_password_hashes_in_flight"), 0);
            return;
        }
        eprintln!("round {round}: the logins did not overlap; again");
    }
    panic!("no login ever waited with one hashing slot; log:\n{}", narrow.log_text());
}

/// Sends `GET /health` on a keep-alive connection and reads the answer's status line.
fn health(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: sluice\r\n\r\n")?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned())
}

#[test]
fn max_connections_holds_an_extra_connection_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _api) = start_admin(&dir.path().join("data"), "max_connections = 1\n");
    let addr = daemon.admin.unwrap();
    let mut first = TcpStream::connect(addr).unwrap();
    assert_eq!(health(&mut first).unwrap(), "HTTP/1.1 200 OK");

    // The second connection completes in the kernel's backlog but is not served.
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let waiting = health(&mut second).unwrap_err();
    assert!(matches!(waiting.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{waiting}");

    // Once the first closes, the second is accepted and its request answered.
    drop(first);
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = second.read(&mut buf).unwrap();
    let status = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned();
    assert_eq!(status, "HTTP/1.1 200 OK", "after {:?}", started.elapsed());
}
