//! A commit that fails on a real daemon: `events.redb` hits the file size
//! limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so the write fails with
//! `EFBIG` instead of killing the process), which looks to the store like a
//! full disk. Nothing in the failed commit may be acknowledged, clients are
//! told `unavailable`, an ERROR is logged, the daemon keeps serving, and once
//! the limit is lifted (with `prlimit` on the running process) ingest resumes
//! by itself.

use crate::common;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, create_key, export, hex_key};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::{Ack, Status};
use tell_encoding::{EventParams, EventType};

const EVENTS_PER_BATCH: usize = 20;
/// Room past the empty store's size: a few dozen batches' worth.
const HEADROOM: u64 = 512 * 1024;
/// Gives up if the limit is never hit.
const MAX_BATCHES: u64 = 2000;

/// A batch of events whose payloads are `{"marker":"<id>-<i>","fill":<hex>}`;
/// the fill is random, so chunk compression cannot hide the growth.
fn marker_batch(key: &[u8; 16], id: u64, seed: &mut u64) -> Vec<u8> {
    let payloads: Vec<String> =
        (0..EVENTS_PER_BATCH).map(|i| format!("{{\"marker\":\"{id}-{i}\",\"fill\":\"{}\"}}", fill(seed))).collect();
    let events: Vec<EventParams<'_>> = payloads
        .iter()
        .map(|p| EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000,
            service: Some("svc"),
            device_id: Some(&[7u8; 16]),
            session_id: None,
            event_name: Some("Filled"),
            payload: Some(p.as_bytes()),
        })
        .collect();
    tell_batch(key, id, &events)
}

/// 1 KiB of hex from a xorshift generator.
pub fn fill(seed: &mut u64) -> String {
    (0..64)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            format!("{:016x}", *seed)
        })
        .collect()
}

/// Runs the daemon with files limited to `limit` bytes, with `extra` config.
pub fn start_limited(data: &Path, extra: &str, limit: u64) -> Daemon {
    Daemon::start_with(data, extra, |cmd| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                set_fsize_limit(0, limit)
            });
        }
    })
}

/// Sets the soft file size limit of process `pid` (0: this one). The hard
/// limit stays, so the test may lift the soft one again without privileges.
pub fn set_fsize_limit(pid: libc::pid_t, soft: libc::rlim_t) -> std::io::Result<()> {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on valid pointers.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let new = libc::rlimit { rlim_cur: soft.min(old.rlim_max), rlim_max: old.rlim_max };
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    if rc != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

pub fn events_file_len(data: &Path) -> u64 {
    std::fs::metadata(data.join("events.redb")).expect("events.redb").len()
}

fn markers(stored: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in stored.iter().filter_map(|e| e["payload"]["marker"].as_str()) {
        *seen.entry(m.to_string()).or_insert(0) += 1;
    }
    seen
}

/// Resends one batch until the store takes it again.
async fn resend_until_accepted(client: &mut AckedClient, id: u64, batch: &[u8]) -> Ack {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ack = client.send_and_wait(id, batch).await.expect("ack");
        if ack.status != Status::Unavailable || Instant::now() > deadline {
            return ack;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_logged_survived_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    // An empty run first, so the limit is measured from the store as this
    // build creates it rather than guessed.
    assert!(Daemon::start(&data, "").stop().success());
    let limit = events_file_len(&data) + HEADROOM;

    let daemon = start_limited(&data, "", limit);
    let mut client = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    let mut id = 0;
    let mut first_refusal: Option<Instant> = None;
    // Until the first refusal, then on for a while: all must be answered.
    while first_refusal.is_none_or(|t| t.elapsed() < Duration::from_millis(600)) {
        id += 1;
        assert!(first_refusal.is_some() || id < MAX_BATCHES, "the size limit was never hit; {}", daemon.log_text());
        let batch = marker_batch(&key, id, &mut seed);
        let ack = client.send_and_wait(id, &batch).await.expect("an ack for every batch");
        match ack.status {
            Status::Stored => stored.push(id),
            Status::Unavailable => {
                first_refusal.get_or_insert_with(Instant::now);
                refused.push((id, batch));
                // As a client would: wait a little before going on.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => panic!("batch {id}: {other:?}"),
        }
    }
    assert!(!stored.is_empty(), "the limit leaves room for some batches");
    assert!(events_file_len(&data) <= limit);

    let log = daemon.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    // A small commit may still fit after a larger one failed, which ends
    // that streak; a streak is one ERROR however long it lasts.
    let streaks = 1 + log.lines().filter(|l| l.contains("commits succeed again")).count();
    assert!(
        errors.len() == streaks && errors.iter().all(|e| e.contains("commit failed")),
        "one ERROR per failure streak:\n{log}"
    );
    // The writer backs off (50 ms, doubling): a handful of commits were
    // tried per streak in the time all those batches were refused.
    let tried = log.lines().filter(|l| l.contains("commit failed")).count();
    assert!(tried <= 8 * streaks, "{tried} failed commits for {} refused batches:\n{log}", refused.len());

    // Still up and answering, on a new connection too.
    let mut other = AckedClient::connect(&daemon.tcp.to_string()).await.expect("still accepting");
    let probe = other.send_and_wait(1, &marker_batch(&key, 999_999, &mut seed)).await.expect("still answering");
    assert_eq!(probe.status, Status::Unavailable);

    // Room again: the writer finds out by itself; a refused batch, resent
    // with its id, is stored (it left no de-dup record behind).
    set_fsize_limit(daemon.pid(), libc::RLIM_INFINITY).expect("lift the limit");
    let (resent_id, resent) = refused.remove(0);
    let ack = resend_until_accepted(&mut client, resent_id, &resent).await;
    assert_eq!(ack.status, Status::Stored, "{}", daemon.log_text());
    stored.push(resent_id);
    let next = marker_batch(&key, id + 1, &mut seed);
    assert_eq!(client.send_and_wait(id + 1, &next).await.unwrap().status, Status::Stored);
    stored.push(id + 1);
    assert!(daemon.log_text().contains("ingest resumed"));

    assert!(daemon.stop().success());
    let on_disk = markers(&export(&data));
    for id in &stored {
        for i in 0..EVENTS_PER_BATCH {
            assert_eq!(on_disk.get(&format!("{id}-{i}")), Some(&1), "acknowledged batch {id}, event {i}");
        }
    }
    for (id, _) in &refused {
        assert!(!on_disk.contains_key(&format!("{id}-0")), "refused batch {id} was stored");
    }
    assert_eq!(on_disk.len(), stored.len() * EVENTS_PER_BATCH, "nothing else");
}

/// `control.redb` on a full disk: writes fail with 503 (retry), and once
/// there is room again a leaked key can be deleted and a session ended
/// without a restart (the control store reopens itself).
#[test]
fn after_a_full_disk_keys_can_be_revoked_and_sessions_ended_without_a_restart() {
    use common::admin::{ADMIN_EMAIL, ADMIN_PASSWORD, ApiClient, admin_section, login, setup};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Measure the files this build makes, then limit them to a little more.
    let (daemon, api) = {
        let d = Daemon::start(&data, &admin_section(""));
        let api = ApiClient::new(&d.admin.unwrap().to_string());
        setup(&api);
        (d, api)
    };
    let leaked =
        api.post("/api/v1/apikeys", Some(&login(&api, ADMIN_EMAIL, ADMIN_PASSWORD)), &json!({"name": "leaked"}));
    let leaked = leaked.unwrap().json()["id"].as_u64().unwrap();
    drop(api);
    assert!(daemon.stop().success());
    let size = |f: &str| std::fs::metadata(data.join(f)).unwrap().len();
    let limit = size("control.redb").max(size("events.redb")) + 64 * 1024;
    let daemon = Daemon::start_with(&data, &admin_section(""), |cmd| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                set_fsize_limit(0, limit)
            });
        }
    });
    let api = ApiClient::new(&daemon.admin.unwrap().to_string());
    let token = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let name = "k".repeat(200);
    let mut statuses = Vec::new();
    for _ in 0..5_000 {
        let r = api.post("/api/v1/apikeys", Some(&token), &json!({ "name": name })).unwrap();
        statuses.push(r.status);
        if r.status != 201 {
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(r.header("retry-after"), Some("1"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "the size limit was never hit");
    set_fsize_limit(daemon.pid(), libc::RLIM_INFINITY).expect("lift the limit");
    let deleted = api.delete(&format!("/api/v1/apikeys/{leaked}"), Some(&token)).unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let out = api.post("/api/v1/auth/logout", Some(&token), &json!({})).unwrap();
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(api.get("/api/v1/apikeys", Some(&token)).unwrap().status, 401, "the ended session stops at once");
    assert!(daemon.log_text().contains("control database reopened"), "{}", daemon.log_text());
    assert!(daemon.stop().success());
}
