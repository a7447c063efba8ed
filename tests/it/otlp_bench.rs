//! `sluice bench otlp` against a real daemon, once per signal (each with
//! another encoding): the JSON line it ends with, and every record it counts
//! as acknowledged is in the store, of the signal's kind.

use crate::common;

use std::collections::HashSet;
use std::process::Command;

use common::{BIN, Daemon, create_key, export};
use serde_json::Value;

const OTLP: &str = "[sources.otlp]\naddress = \"127.0.0.1:0\"\nrate_limit = { per = \"off\" }\n";

/// Runs the bench for 1 s; its JSON line.
fn bench(addr: &str, key: &str, signal: &str, encoding: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["bench", "otlp", "--addr", addr, "--key", key, "--signal", signal])
        .args(["--connections", "2", "--batch-size", "50", "--duration", "1"])
        .args(encoding)
        .output()
        .unwrap();
    assert!(out.status.success(), "{signal}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line on stdout: {text}");
    serde_json::from_str(&text).expect("a JSON line")
}

#[test]
fn every_acknowledged_record_is_stored_as_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, OTLP);
    let addr = daemon.otlp.expect("otlp listener").to_string();
    let runs = [
        ("logs", "log", &["--encoding", "protobuf"][..], "protobuf", false),
        ("metrics", "metric", &["--encoding", "json"][..], "json", false),
        ("traces", "span", &["--gzip"][..], "protobuf", true),
    ];
    let mut acked = Vec::new();
    for (signal, _, args, encoding, gzip) in runs {
        let line = bench(&addr, &key, signal, args);
        let records = line["records"].as_u64().unwrap();
        assert!(records > 0 && records.is_multiple_of(50), "{line}");
        assert!(line["acked_records_per_sec"].as_f64().unwrap() > 0.0 && line["p99_ms"].as_f64().unwrap() > 0.0);
        assert!(line["seconds"].as_f64().unwrap() >= 1.0);
        assert_eq!((line["signal"].as_str(), line["encoding"].as_str()), (Some(signal), Some(encoding)));
        assert_eq!(line["gzip"].as_bool(), Some(gzip));
        acked.push(records);
    }
    assert!(daemon.stop().success());
    let stored = export(&data);
    for ((_, kind, ..), &records) in runs.iter().zip(&acked) {
        let of_kind: Vec<&Value> = stored.iter().filter(|e| e["kind"] == *kind).collect();
        assert_eq!(of_kind.len() as u64, records, "{kind}: acknowledged means stored, nothing more");
        assert!(of_kind.iter().all(|e| e["listener"] == "otlp" && e["service"].is_string()));
        assert!(of_kind.iter().all(|e| e["resource"]["host.name"].is_string() && e["scope"]["name"].is_string()));
    }
    assert_eq!(stored.len() as u64, acked.iter().sum::<u64>());
    let field = |kind: &str, name: &str| -> HashSet<String> {
        stored.iter().filter(|e| e["kind"] == kind).map(|e| e[name].to_string()).collect()
    };
    assert!(field("log", "level").len() >= 4, "log levels: {:?}", field("log", "level"));
    let types = field("metric", "metric_type");
    assert!(["\"sum\"", "\"gauge\"", "\"histogram\""].iter().all(|t| types.contains(*t)), "{types:?}");
    assert!(field("span", "span_kind").len() >= 4, "{:?}", field("span", "span_kind"));
}
