//! `sluice export` and `sluice tail` end to end: the real binary against a
//! running daemon through the admin API (one streamed request each), and
//! offline on the same data once the daemon stopped.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::admin::*;
use common::{BIN, Daemon, hex_key};
use serde_json::Value;
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

/// A daemon with the admin API, set up, and a credentials file for the CLI.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    daemon: Daemon,
    api: ApiClient,
    token: String,
    key: [u8; 16],
    workspace: u64,
    credentials: PathBuf,
}

fn start(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (daemon, api) = start_admin(&data, extra);
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let workspace = done["workspace"]["id"].as_u64().or(done["workspace"].as_u64()).unwrap();
    let key = hex_key(done["streaming_key"].as_str().unwrap());
    let credentials = tmp.path().join("credentials.json");
    // The credentials file as `sluice login` writes it where no keyring runs.
    let stored = serde_json::json!({
        "server": format!("http://{}", daemon.admin.unwrap()),
        "token": token,
        "email": ADMIN_EMAIL,
        "expires_at": u64::MAX / 2,
    });
    std::fs::write(&credentials, serde_json::to_vec(&stored).unwrap()).unwrap();
    Setup { _tmp: tmp, data, daemon, api, token, key, workspace, credentials }
}

impl Setup {
    /// The CLI with the stored login (its server is the default).
    fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("SLUICE_CREDENTIALS", &self.credentials).env_remove("SLUICE_SERVER").env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli(args).stdin(Stdio::null()).output().expect("run sluice")
    }

    /// stdout of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Sends `batches` acked batches of `per_batch` events named `e<i>` (every
/// 9th says "needle"); returns the acked sequence numbers.
async fn ingest(tcp: &str, key: &[u8; 16], first_batch: u64, batches: u64, per_batch: u64) -> Vec<u64> {
    let mut c = AckedClient::connect(tcp).await.unwrap();
    let mut seqs = Vec::new();
    for b in first_batch..first_batch + batches {
        let ids: Vec<u64> = (0..per_batch).map(|i| b * per_batch + i).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("e{i}")).collect();
        let payloads: Vec<String> = ids
            .iter()
            .map(|i| if i % 9 == 0 { r#"{"w":"needle"}"#.to_owned() } else { format!(r#"{{"w":"hay","n":{i}}}"#) })
            .collect();
        let events: Vec<EventParams<'_>> = (0..ids.len())
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

fn seqs(ndjson: &str) -> Vec<u64> {
    ndjson.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()).collect()
}

fn offline(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data).env_remove("RUST_LOG").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_export_matches_the_offline_export_in_both_formats() {
    let s = start("");
    let acked = ingest(&s.daemon.tcp.to_string(), &s.key, 0, 20, 10).await;
    let ws = s.workspace.to_string();
    let since = acked[50].to_string();
    assert_eq!(seqs(&s.ok(&["export", "--limit", "1"])), acked[..1], "--limit caps the export");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--q", "needle", "--kind", "event", "--listener", "tcp"],
        vec!["--since", &since, "--limit", "7"],
        vec!["--from", "2001-01-01T00:00:00Z", "--to", "4102444800000"],
        vec!["--listener", "syslog_udp"],
    ];
    let mut remote = Vec::new();
    for case in &cases {
        for format in ["ndjson", "csv"] {
            let mut args = vec!["export", "--format", format];
            args.extend(case);
            remote.push((args.clone(), s.ok(&args)));
        }
    }
    let all = &remote[0].1;
    assert_eq!(seqs(all), acked, "everything, oldest first");
    let needles = seqs(&remote[2].1);
    assert_eq!(needles, acked.iter().enumerate().filter(|(i, _)| i % 9 == 0).map(|(_, s)| *s).collect::<Vec<_>>());
    assert_eq!(seqs(&remote[4].1), acked[50..57]);
    assert_eq!(seqs(&remote[6].1), acked);
    assert_eq!(remote[8].1, "");
    assert_eq!(remote[9].1.lines().count(), 1, "an empty CSV export is its header row");
    assert_eq!(remote[1].1.lines().count(), acked.len() + 1, "a header row, then one row an event");

    // On a terminal (a pseudo-terminal under util-linux `script`) a progress line is drawn on stderr.
    let out = Command::new("script")
        .args(["-qec", &format!("'{BIN}' export > /dev/null"), "/dev/null"])
        .env("SLUICE_CREDENTIALS", &s.credentials)
        .stdin(Stdio::null())
        .output()
        .expect("run util-linux script");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(terminal.contains(&format!("{} events, ", acked.len())), "{terminal:?}");

    // The same data read offline gives the same bytes.
    let Setup { daemon, data, .. } = s;
    assert!(daemon.stop().success());
    for (args, api_out) in &remote {
        let mut offline_args = args.clone();
        offline_args.extend(["--workspace", &ws]);
        assert_eq!(&offline(&data, &offline_args), api_out, "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_50k_events_is_one_request_against_the_rate_limit() {
    // Two requests a minute: a paged export (50 pages of 1000) could not finish.
    let s = start("api_requests_per_minute = 2\n");
    let acked = ingest(&s.daemon.tcp.to_string(), &s.key, 0, 50, 1000).await;
    assert_eq!(acked.len(), 50_000);
    let out = s.run(&["export"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "no progress line when stderr is not a terminal: {:?}", out.stderr);
    assert_eq!(seqs(&String::from_utf8(out.stdout).unwrap()), acked);
    // The export took one of the two units: this request takes the last.
    let r = s.api.get("/api/v1/events?limit=1", Some(&s.token)).unwrap();
    assert_eq!((r.status, r.header("x-ratelimit-remaining")), (200, Some("0")), "{}", r.body);
    assert_eq!(s.api.get("/api/v1/events?limit=1", Some(&s.token)).unwrap().status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_newest_events_then_follows_new_commits() {
    let s = start("");
    let tcp = s.daemon.tcp.to_string();
    let acked = ingest(&tcp, &s.key, 0, 5, 10).await;
    assert_eq!(seqs(&s.ok(&["tail", "-n", "3"])), acked[47..]);
    assert_eq!(seqs(&s.ok(&["tail"])), acked[40..], "ten by default");
    let needles = seqs(&s.ok(&["tail", "-n", "2", "--q", "needle"]));
    assert_eq!(needles, [acked[36], acked[45]]);

    let mut child = s.cli(&["tail", "-n", "2", "-f"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let wait = |got: &mut Vec<u64>, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got.len() < n && std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(serde_json::from_str::<Value>(&line).unwrap()["seq"].as_u64().unwrap());
            }
        }
    };
    wait(&mut got, 2);
    assert_eq!(got, acked[48..]);
    // Events committed after the tail started arrive, each once, in order.
    let later = ingest(&tcp, &s.key, 5, 3, 10).await;
    wait(&mut got, 32);
    assert_eq!(got[2..], later);

    // The daemon's shutdown ends the follow, with success.
    let Setup { daemon, data, .. } = s;
    assert!(daemon.stop().success());
    let status = common::wait_timeout(&mut child, Duration::from_secs(30));
    if status.is_none() {
        child.kill().unwrap();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");

    // Offline: the same newest events; no follow without a daemon.
    assert_eq!(seqs(&offline(&data, &["tail", "-n", "3"])), later[27..]);
    let out = Command::new(BIN).args(["tail", "-f", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--follow needs a running daemon"));
}

/// Stores `batches` acked batches of `per_batch` events whose names are `pad` bytes long.
async fn send_padded(s: &Setup, batches: u64, per_batch: usize, pad: usize) {
    let mut c = AckedClient::connect(&s.daemon.tcp.to_string()).await.unwrap();
    let name = "p".repeat(pad);
    for b in 0..batches {
        let events: Vec<EventParams<'_>> = (0..per_batch)
            .map(|_| EventParams {
                event_type: EventType::Track,
                timestamp: 1,
                service: Some("svc"),
                device_id: None,
                session_id: None,
                event_name: Some(&name),
                payload: None,
            })
            .collect();
        let ack = c.send_and_wait(b + 1, &tell_batch(&s.key, b + 1, &events)).await.unwrap();
        assert_eq!(ack.status, Status::Stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_by_shutdown_says_so_and_exits_non_zero() {
    let s = start("");
    // Far more than every buffer between the scan and an unread pipe holds.
    send_padded(&s, 120, 500, 1000).await;
    let mut child = s.cli(&["export"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Nobody reads the export yet: the server's scan waits on a full buffer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Setup { daemon, .. } = s;
    let log = daemon.log.clone();
    let stopping = std::thread::spawn(move || daemon.stop());
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()).unwrap());
    let status = common::wait_timeout(&mut child, Duration::from_secs(60)).expect("export ends");
    let read = reading.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cut by the server") && err.contains("shutting down"), "{err}");
    assert!(read > 0 && read < 60_000 * 1000, "{read} bytes before the cut");
    assert!(stopping.join().unwrap().success());
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("export cut") && log.contains("code=\"shutdown\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_dropped_by_the_server_says_so_and_exits_non_zero() {
    let s = start("");
    let mut child = s.cli(&["tail", "-n", "0", "-f"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Let the tail open before anything is committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nobody reads the tail's stdout: the pipe, the sockets, then the server's buffer fill up.
    send_padded(&s, 30, 200, 4096).await;
    // Past the server's 5 s patience with a full buffer.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()).unwrap());
    let status = common::wait_timeout(&mut child, Duration::from_secs(30));
    if status.is_none() {
        child.kill().unwrap();
    }
    let printed = reading.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert!(err.contains("the server dropped this tail (reader too slow)"), "{err}");
    assert!(printed > 0 && printed < 30 * 200 * 4096, "{printed} bytes before the drop");
}

#[test]
fn bad_filters_fail_with_a_clear_message() {
    let s = start("");
    let usage = [
        (&["export", "--kind", "bird"][..], "--kind"),
        (&["export", "--from", "yesterday"][..], "RFC 3339"),
        (&["export", "--format", "xml"][..], "ndjson or csv"),
        (&["export", "--sinse", "3"][..], "--sinse"),
        (&["tail", "-n", "5000"][..], "5000"),
    ];
    for (args, says) in usage {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let failing = [
        (&["export", "--from", "10", "--to", "5"][..], "--from is after --to"),
        (&["export", "--workspace", "99"][..], "403"),
        (&["tail", "--workspace", "99"][..], "workspace"),
    ];
    for (args, says) in failing {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    for bad in ["format=xml", "order=desc", "cursor=3", "limit=0", "nope=1"] {
        let r = s.api.get(&format!("/api/v1/events/export?{bad}"), Some(&s.token)).unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(s.api.get("/api/v1/events/export", None).unwrap().status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_with_commas_quotes_and_newlines_round_trip() {
    let s = start("");
    let name = "a, \"quoted\" name\nwith a second line";
    let payload = r#"{"note":"x,y","quote":"say \"hi\"","multi":"l1\nl2"}"#;
    let mut c = AckedClient::connect(&s.daemon.tcp.to_string()).await.unwrap();
    let event = EventParams {
        event_type: EventType::Track,
        timestamp: 1_700_000_000_123,
        service: Some("svc"),
        device_id: None,
        session_id: None,
        event_name: Some(name),
        payload: Some(payload.as_bytes()),
    };
    let ack = c.send_and_wait(1, &tell_batch(&s.key, 1, &[event])).await.unwrap();
    assert_eq!(ack.status, Status::Stored);
    let text = s.ok(&["export", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), sluice::export::COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let cell = |c: &str| rows[0].get(headers.iter().position(|h| h == c).unwrap()).unwrap().to_owned();
    assert_eq!(cell("event_name"), name);
    assert_eq!(cell("seq"), ack.first_seq.to_string());
    assert_eq!(cell("timestamp"), "1700000000123");
    assert_eq!(cell("kind"), "event");
    let parsed: Value = serde_json::from_str(&cell("payload")).unwrap();
    assert_eq!(parsed, serde_json::from_str::<Value>(payload).unwrap());
    assert_eq!(cell("session_id"), "");
}
