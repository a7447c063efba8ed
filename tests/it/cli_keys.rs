//! The `apikeys` and `export` commands, run as a user would: the built binary
//! on a temporary data dir.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn sluice(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice")
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = sluice(args, dir);
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn is_key(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn json_line(text: &str) -> Value {
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {text:?}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn create_list_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let first = json_line(&ok(&["apikeys", "create", "--name", "web app", "--json"], &dir));
    let obj = first.as_object().unwrap();
    let mut fields: Vec<_> = obj.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["id", "key", "name", "workspace"]);
    assert!(is_key(first["key"].as_str().unwrap()), "{first}");
    assert_eq!(first["id"], 1);
    assert_eq!(first["workspace"], 1);
    assert_eq!(first["name"], "web app");
    assert!(dir.join("control.redb").exists());

    let second = json_line(&ok(&["apikeys", "create", "--name", "ingest", "--workspace", "7", "--json"], &dir));
    assert_eq!(second["id"], 2);
    assert_eq!(second["workspace"], 7);
    assert_ne!(second["key"], first["key"]);

    // Human form: the key on its own line, once.
    let human = ok(&["apikeys", "create", "--name", "third"], &dir);
    let keys: Vec<_> = human.lines().map(str::trim).filter(|l| is_key(l)).collect();
    assert_eq!(keys.len(), 1, "{human}");
    assert!(human.contains("not be shown again"), "{human}");

    let listed: Vec<Value> =
        ok(&["apikeys", "list", "--json"], &dir).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().map(|k| k["id"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(listed[1]["workspace"], 7);
    assert_eq!(listed[0]["name"], "web app");
    assert_eq!(listed[0]["prefix"].as_str().unwrap(), &first["key"].as_str().unwrap()[..8]);
    assert!(listed.iter().all(|k| k.get("key").is_none()), "list never shows keys");
    let table = ok(&["apikeys", "list"], &dir);
    assert!(table.contains("web app") && table.contains("ingest"), "{table}");
    assert!(!table.contains(first["key"].as_str().unwrap()));

    let deleted = ok(&["apikeys", "delete", "1"], &dir);
    assert!(deleted.contains('1'), "{deleted}");
    let missing = sluice(&["apikeys", "delete", "1"], &dir);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no streaming key with id 1"));

    let listed = ok(&["apikeys", "list", "--json"], &dir);
    assert_eq!(listed.lines().count(), 2);
    // Ids are never reused.
    let fourth = json_line(&ok(&["apikeys", "create", "--name", "again", "--json"], &dir));
    assert_eq!(fourth["id"], 4);
}

#[test]
fn workspace_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sluice(&["apikeys", "create", "--name", "x", "--workspace", "0"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive"));
}

#[test]
fn export_of_an_empty_dir_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    let out = ok(&["export"], &dir);
    assert_eq!(out, "");
    assert!(dir.join("events.redb").exists());
    assert_eq!(ok(&["export", "--workspace", "3", "--since", "10", "--limit", "5"], &dir), "");
}
