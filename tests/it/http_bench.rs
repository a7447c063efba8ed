//! `sluice bench http` against a real daemon: the JSON line it ends with,
//! and every event it counts as acknowledged is in the store.

use crate::common;

use std::process::Command;

use common::{BIN, Daemon, create_key, export};

#[test]
fn every_acknowledged_event_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, "[sources.http]\naddress = \"127.0.0.1:0\"\nrate_limit = { per = \"off\" }\n");
    let out = Command::new(BIN)
        .args(["bench", "http", "--addr", &daemon.http.unwrap().to_string(), "--key", &key])
        .args(["--connections", "3", "--batch-size", "50", "--duration", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let events = line["events"].as_u64().unwrap();
    assert!(events > 0 && events.is_multiple_of(50), "{line}");
    assert!(line["acked_events_per_sec"].as_f64().unwrap() > 0.0 && line["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(line["seconds"].as_f64().unwrap() >= 1.0);
    assert!(daemon.stop().success());
    let stored = export(&data);
    assert_eq!(stored.len() as u64, events, "acknowledged means stored");
    assert!(stored.iter().all(|e| e["event_type"] == "track" && e["payload"]["user_id"].is_string()));
}
