//! A data dir written by an older format must keep opening and reading the
//! same in every later version: each one's files are committed under
//! tests/fixtures/format-vN with what `export` and `apikeys list` showed then
//! (v1: sluice 0.1, tell events in LZ4 chunks; v2: also a syslog event, and
//! `meta.chunk_bytes`; v3: zstd chunks, one of them longer than a 4 KiB page
//! so its value is split into `chunks` and `chunk_tails` rows, written over a
//! daemon restart, with an HTTP event beside the tell and syslog ones; v4: a
//! central node's dir with tell events and logs, TCP and UDP syslog and HTTP
//! events and logs over a restart, and events relayed from an edge through
//! NATS JetStream, with `origin_node` and `origin_seq`, in workspaces 1 and 2,
//! one relayed chunk longer than a page).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::BIN;
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Every field the old version showed is still there with the same value
/// (newer versions may add fields).
fn assert_superset(old: &Value, new: &Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                assert_superset(v, n.get(k).unwrap_or_else(|| panic!("field {k} is gone from {new}")));
            }
        }
        _ => assert_eq!(old, new),
    }
}

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(dir).output().expect("run sluice");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

/// Opens a copy of `fixture` and compares what it shows now with what it
/// showed when it was written, which held `events` events.
fn reads_the_same(fixture: &str, events: usize) {
    let fixture = Path::new("tests/fixtures").join(fixture);
    let dir = tempfile::tempdir().unwrap();
    for file in ["events.redb", "control.redb"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    let expected = lines(&std::fs::read_to_string(fixture.join("expected.ndjson")).unwrap());
    assert_eq!(expected.len(), events);
    let got = lines(&run(&["export"], dir.path()));
    assert_eq!(got.len(), expected.len());
    for (old, new) in expected.iter().zip(&got) {
        assert_superset(old, new);
    }
    let keys = lines(&std::fs::read_to_string(fixture.join("keys.ndjson")).unwrap());
    let got_keys = lines(&run(&["apikeys", "list", "--json"], dir.path()));
    assert_eq!(keys.len(), got_keys.len());
    for (old, new) in keys.iter().zip(&got_keys) {
        assert_superset(old, new);
    }
}

#[test]
fn a_format_v1_data_dir_reads_the_same() {
    reads_the_same("format-v1", 3);
}

#[test]
fn a_format_v2_data_dir_reads_the_same() {
    reads_the_same("format-v2", 5);
}

#[test]
fn a_format_v3_data_dir_reads_the_same() {
    reads_the_same("format-v3", 41);
}

#[test]
fn a_format_v4_data_dir_reads_the_same() {
    reads_the_same("format-v4", 32);
}
