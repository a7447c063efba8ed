//! `[sources.otlp]` with real OpenTelemetry clients: the Python SDK's
//! OTLP/HTTP protobuf exporters (gzip) send logs, metrics and traces with
//! each way to send the key, the JS logs SDK's OTLP/HTTP JSON exporter sends
//! logs, and curl gets every documented refusal. What was stored is read back
//! with `sluice export` once the daemon has stopped.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::curl::{Answer, curl};
use common::{Daemon, create_key, export, run_bounded};
use prost::Message;
use serde_json::{Value, json};
use sluice::source::otlp::reply::Status;

const OTLP: &str = "[sources.otlp]\naddress = \"127.0.0.1:0\"\n";
/// A client run may take this long (they bound themselves to 10 s per export).
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn endpoint(daemon: &Daemon) -> String {
    format!("http://{}", daemon.otlp.expect("otlp listener"))
}

/// Runs `tests/otlp/send.py` (the Python SDK, made by scripts/test.sh); its summary line.
fn python(args: &[&str]) -> Value {
    let python: PathBuf = root().join("target/otlp-py-venv/bin/python");
    assert!(python.is_file(), "no {}: run scripts/test.sh, which creates it", python.display());
    let mut cmd = Command::new(python);
    cmd.arg(root().join("tests/otlp/send.py")).args(args);
    summary(run_bounded(cmd, "send.py", CLIENT_LIMIT))
}

/// Runs `tests/otlp/send_logs.mjs` (the JS SDK); its summary line.
fn node(args: &[&str]) -> Value {
    assert!(root().join("tests/otlp/node_modules").is_dir(), "run scripts/test.sh: it installs tests/otlp");
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/otlp/send_logs.mjs")).args(args);
    summary(run_bounded(cmd, "send_logs.mjs", CLIENT_LIMIT))
}

fn summary(run: common::ScriptRun) -> Value {
    assert!(run.success, "the client failed:\n{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.lines().last().unwrap_or_else(|| panic!("no summary; stderr:\n{}", run.stderr));
    serde_json::from_str(line).expect("summary json")
}

fn of_kind<'a>(stored: &'a [Value], kind: &str, service: &str) -> Vec<&'a Value> {
    stored.iter().filter(|e| e["kind"] == kind && e["service"] == service).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_owned()).collect()
}

#[test]
fn the_python_sdk_sends_logs_metrics_and_traces_with_each_key_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (id, key) = create_key(&data, 3);
    let daemon = Daemon::start(&data, OTLP);
    let url = endpoint(&daemon);
    let logs = python(&["--endpoint", &url, "--signal", "logs", "--run", "r1", "--key", &key, "--header", "bearer"]);
    let metrics =
        python(&["--endpoint", &url, "--signal", "metrics", "--run", "r1", "--key", &key, "--header", "x-api-key"]);
    let id = id.to_string();
    let traces = python(&[
        "--endpoint",
        &url,
        "--signal",
        "traces",
        "--run",
        "r1",
        "--key",
        &key,
        "--header",
        "pair",
        "--key-id",
        &id,
    ]);
    assert!(daemon.stop().success());

    let stored = export(&data);
    assert!(stored.iter().all(|e| e["listener"] == "otlp" && e["workspace"] == 3), "{stored:#?}");
    let got = of_kind(&stored, "log", "otlp-test-py");
    assert_eq!(got.len(), 5);
    let bodies: Vec<_> = got.iter().map(|e| e["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, strings(&logs["bodies"]));
    let severities: Vec<_> = got.iter().map(|e| e["severity_text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(severities, strings(&logs["severities"]));
    let traced: Vec<_> = got.iter().map(|e| e["trace_id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(traced, strings(&logs["trace_ids"]));
    let first = got[0];
    assert_eq!((first["level"].as_str(), first["severity_number"].as_u64()), (Some("info"), Some(9)));
    assert_eq!(first["attributes"]["run.id"], "r1");
    assert_eq!(first["attributes"]["index"], 0);
    assert_eq!(first["resource"]["service.name"], "otlp-test-py");
    assert_eq!(first["scope"]["name"], "sluice.otlp-test");
    assert!(first["time_unix_nano"].as_u64().unwrap() > 1_700_000_000_000_000_000);

    let points = of_kind(&stored, "metric", "otlp-test-py");
    assert_eq!(points.len() as u64, metrics["data_points"].as_u64().unwrap());
    let named = |n: &str| points.iter().filter(|p| p["name"] == n).copied().collect::<Vec<_>>();
    let requests: i64 = named("otlp_test.requests").iter().map(|p| p["value"].as_i64().unwrap()).sum();
    assert_eq!(requests, metrics["counter_total"].as_i64().unwrap());
    let requests = named("otlp_test.requests");
    assert_eq!((requests[0]["metric_type"].as_str(), requests[0]["monotonic"].as_bool()), (Some("sum"), Some(true)));
    assert_eq!(requests[0]["temporality"], "cumulative");
    assert_eq!(named("otlp_test.temperature")[0]["value"], metrics["gauge_value"]);
    let latency = named("otlp_test.latency");
    assert_eq!(latency[0]["histogram"]["count"], metrics["histogram_count"]);
    assert_eq!(latency[0]["histogram"]["sum"], metrics["histogram_sum"]);
    let exp = named("otlp_test.payload.size");
    assert_eq!(exp[0]["metric_type"], "exponential_histogram");
    assert_eq!(exp[0]["exponential_histogram"]["count"], metrics["exp_histogram_count"]);

    let spans = of_kind(&stored, "span", "otlp-test-py");
    let names: Vec<_> = spans.iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, strings(&traces["span_names"]));
    let ids: Vec<_> = spans.iter().map(|s| s["span_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, strings(&traces["span_ids"]));
    let parents: Vec<_> = spans.iter().map(|s| s["parent_span_id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(parents, strings(&traces["parent_span_ids"]));
    let failed = spans.iter().find(|s| s["status_code"] == "error").expect("a span with status error");
    assert!(failed["status_message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(failed["links"][0]["span_id"].is_string(), "{failed}");
    let evented = spans.iter().find(|s| s["events"].is_array()).expect("a span with an event");
    assert_eq!(evented["span_kind"], "client");
    assert!(spans.iter().all(|s| s["end_time_unix_nano"].as_u64() >= s["start_time_unix_nano"].as_u64()));

    // The query filters: by kind and by service.name.
    let out = Command::new(common::BIN)
        .args(["export", "--kind", "span", "--service", "otlp-test-py", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), spans.len());
    let out =
        Command::new(common::BIN).args(["export", "--service", "nobody", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 0);
}

#[test]
fn the_js_json_exporter_sends_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, OTLP);
    let sent = node(&["--endpoint", &endpoint(&daemon), "--run", "j1", "--key", &key, "--count", "5"]);
    let gzipped = node(&[
        "--endpoint",
        &endpoint(&daemon),
        "--run",
        "j2",
        "--key",
        &key,
        "--header",
        "x-api-key",
        "--compression",
        "gzip",
    ]);
    assert!(daemon.stop().success());
    let stored = export(&data);
    let got = of_kind(&stored, "log", "otlp-test-js");
    assert_eq!(got.len(), 5 + gzipped["records"].as_u64().unwrap() as usize);
    let bodies: Vec<_> = got.iter().take(5).map(|e| e["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, strings(&sent["bodies"]));
    let traced: Vec<_> = got.iter().take(5).map(|e| e["trace_id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(traced, strings(&sent["trace_ids"]));
    assert_eq!(got[0]["attributes"]["http"]["status"], 200);
    assert_eq!(got[0]["attributes"]["http"]["route"]["versioned"], true);
    assert_eq!(got[0]["resource"]["run.id"], "j1");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn status(a: &Answer) -> Status {
    Status::decode(&a.raw[..]).unwrap_or_else(|e| panic!("not a google.rpc.Status ({e}): {a:?}"))
}

const PROTOBUF: &str = "Content-Type: application/x-protobuf";
const JSON: &str = "Content-Type: application/json";

#[test]
fn curl_gets_every_documented_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (id, key) = create_key(&data, 1);
    let config = format!("{OTLP}max_body_bytes = \"64KiB\"\n[sources.otlp.rate_limit]\nrequests_per_minute = 12\n");
    let daemon = Daemon::start(&data, &config);
    let logs = format!("{}/v1/logs", endpoint(&daemon));
    let bearer = format!("Authorization: Bearer {key}");
    let d = dir.path();
    let good = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"curl ok"}}]}]}]}"#;

    let a = curl(d, &logs, Some(good), &["-H", &bearer, "-H", JSON]);
    assert_eq!((a.status, &a.body), (200, &json!({})), "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert!(a.header("x-ratelimit-limit").is_some() && a.header("x-ratelimit-remaining").is_some(), "{a:?}");
    let v2 = format!("{}/api/v2/otlp/logs", endpoint(&daemon));
    let a = curl(d, &v2, Some(&[]), &["-H", &format!("X-API-Key: {key}"), "-H", PROTOBUF]);
    assert_eq!((a.status, a.raw.len(), a.header("content-type")), (200, 0, Some("application/x-protobuf")), "{a:?}");

    // One record refused (a 15-byte trace id): 200 with partial_success.
    let partial = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"kept"}},
        {"traceId":"00112233445566778899aabbccddee","body":{"stringValue":"refused"}}]}]}]}"#;
    let a = curl(d, &logs, Some(partial), &["-H", &bearer, "-H", JSON]);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["partialSuccess"]["rejectedLogRecords"], "1", "{a:?}");

    let a = curl(d, &logs, Some(b"\xff\xff\xff\xff"), &["-H", &bearer, "-H", PROTOBUF]);
    assert_eq!((a.status, status(&a).code), (400, 3), "{a:?}");
    let a = curl(d, &logs, Some(b"{\"resourceLogs\":7}"), &["-H", &bearer, "-H", JSON]);
    assert_eq!((a.status, &a.body["code"]), (400, &json!(3)), "{a:?}");
    let wrong = "Authorization: Bearer 00000000000000000000000000000000";
    let a = curl(d, &logs, Some(good), &["-H", wrong, "-H", JSON]);
    assert_eq!((a.status, &a.body["code"]), (401, &json!(16)), "{a:?}");
    let other_id = format!("X-API-Key-ID: {}", id + 1);
    let a = curl(d, &logs, Some(good), &["-H", &other_id, "-H", &format!("X-API-Key-Secret: {key}"), "-H", JSON]);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.body["message"].as_str().unwrap().contains("key_id_mismatch"), "{a:?}");
    let a = curl(d, &logs, Some(good), &["-H", JSON]);
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "a connection without a key is not kept: {a:?}");
    // Past an argument's length: curl reads the header from a file.
    let long = d.join("long-header");
    std::fs::write(&long, format!("X-Filler: {}\n", "f".repeat(70 << 10))).unwrap();
    let long = format!("@{}", long.display());
    let a = curl(d, &logs, Some(good), &["-H", &bearer, "-H", JSON, "-H", &long]);
    assert_eq!(a.status, 431, "a head over 64 KiB: {a:?}");

    let big = vec![b' '; 100 << 10];
    let a = curl(d, &logs, Some(&big), &["-H", &bearer, "-H", JSON]);
    assert_eq!((a.status, &a.body["code"]), (413, &json!(8)), "{a:?}");
    let bomb = gzip(&vec![0u8; 32 << 20]);
    assert!(bomb.len() < 64 << 10);
    let a = curl(d, &logs, Some(&bomb), &["-H", &bearer, "-H", PROTOBUF, "-H", "Content-Encoding: gzip"]);
    assert_eq!((a.status, status(&a).code), (413, 8), "{a:?}");
    // 64 KiB × 4 of records: a JSON body of more than 1024 objects would decode into more.
    let many = format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#, vec!["{}"; 2000].join(","));
    let a = curl(d, &logs, Some(many.as_bytes()), &["-H", &bearer, "-H", JSON]);
    assert_eq!((a.status, &a.body["code"]), (413, &json!(8)), "{a:?}");
    let a = curl(d, &logs, Some(good), &["-H", &bearer, "-H", "Content-Type: text/plain"]);
    assert_eq!(a.status, 415, "{a:?}");
    let a = curl(d, &logs, Some(good), &["-H", &bearer, "-H", JSON, "-H", "Content-Encoding: br"]);
    assert_eq!(a.status, 415, "{a:?}");
    let a = curl(d, &format!("{}/v1/profiles", endpoint(&daemon)), Some(good), &["-H", &bearer, "-H", JSON]);
    assert_eq!(a.status, 404, "{a:?}");
    let a = curl(d, &logs, None, &["-H", &bearer]);
    assert_eq!((a.status, a.header("allow")), (405, Some("POST")), "{a:?}");

    // The rate limit: 12 a minute per key and client; the rest are 429.
    let mut limited = None;
    for _ in 0..12 {
        let a = curl(d, &logs, Some(good), &["-H", &bearer, "-H", JSON]);
        if a.status == 429 {
            limited = Some(a);
            break;
        }
    }
    let a = limited.expect("429 within the quota plus 12");
    assert_eq!(a.body["code"], 8, "{a:?}");
    assert!(a.header("retry-after").is_some() && a.header("x-ratelimit-reset").is_some(), "{a:?}");
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
    assert!(daemon.stop().success());

    let stored = export(&data);
    let bodies: Vec<_> = stored.iter().filter_map(|e| e["body"].as_str()).collect();
    assert!(bodies.contains(&"kept") && !bodies.contains(&"refused"), "{bodies:?}");
    assert!(bodies.iter().all(|b| *b == "curl ok" || *b == "kept"), "{bodies:?}");
}

#[test]
fn a_failed_commit_is_503_with_retry_after_and_ingest_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = crate::commit_failure::start_limited(&data, OTLP, u64::MAX);
    let logs = format!("{}/v1/logs", endpoint(&daemon));
    let bearer = format!("Authorization: Bearer {key}");
    let len = crate::commit_failure::events_file_len(&data);
    crate::commit_failure::set_fsize_limit(daemon.pid(), len + (256 << 10)).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut unavailable = None;
    for _ in 0..200 {
        let records: Vec<_> =
            (0..20).map(|_| json!({"body": {"stringValue": crate::commit_failure::fill(&mut seed)}})).collect();
        let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).to_string();
        let a = curl(dir.path(), &logs, Some(body.as_bytes()), &["-H", &bearer, "-H", JSON]);
        if a.status == 503 {
            unavailable = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = unavailable.expect("a full disk answers 503");
    assert_eq!((&a.body["code"], a.header("retry-after")), (&json!(14), Some("1")), "{a:?}");
    crate::commit_failure::set_fsize_limit(daemon.pid(), libc::RLIM_INFINITY).unwrap();
    let after = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"after"}}]}]}]}"#;
    let resumed = (0..100).any(|_| {
        let a = curl(dir.path(), &logs, Some(after), &["-H", &bearer, "-H", JSON]);
        if a.status != 200 {
            std::thread::sleep(Duration::from_millis(100));
        }
        a.status == 200
    });
    assert!(resumed, "ingest resumes once the disk has room");
    assert!(daemon.stop().success());
    assert_eq!(export(&data).iter().filter(|e| e["body"] == "after").count(), 1);
}
