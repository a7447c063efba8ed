//! Every config file shipped in config/ is accepted by `sluice check-config`,
//! so the examples the docs point at stay true to the code.

use crate::common;

use std::process::Command;

#[test]
fn shipped_configs_pass_check_config() {
    let mut checked = 0;
    for entry in std::fs::read_dir("config").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(common::BIN).arg("check-config").arg(&path).output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 2, "config/minimal.toml and config/production.toml at least");
}

#[test]
fn check_config_names_the_file_and_line_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "data_dir = \"d\"\n[sources.tcp]\naddress = \"127.0.0.1:1\"\nmax_conections = 5\n").unwrap();
    let out = Command::new(common::BIN).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", path.display())) && err.contains("max_conections"), "{err}");
}

#[test]
fn check_config_json_lists_every_listener() {
    let out = Command::new(common::BIN).args(["check-config", "--json", "config/production.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["listeners"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tcp", "syslog_tcp", "relp", "syslog_udp", "http", "otlp", "admin"]);
    assert_eq!(v["listeners"][1]["address"], "127.0.0.1:514");
}
