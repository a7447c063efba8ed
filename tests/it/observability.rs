//! The metrics a live daemon exposes, with every listener configured,
//! against what the Grafana dashboard, the alert rules and
//! docs/operations.md use: every name they use exists, and every family
//! exported is documented. The rules pass `promtool check rules`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::Daemon;
use crate::common::admin::{ApiClient, admin_section};

const DASHBOARD: &str = "config/grafana/sluice.json";
const RULES: &str = "config/prometheus/sluice-alerts.yml";

/// Every `sluice_*` / `process_*` identifier in `text`.
fn identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["sluice_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            // Not inside another word (`my_sluice_x`).
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// Sample names a scrape holds, and the family names of its `# TYPE` lines
/// (in the Prometheus format, a counter's `# TYPE` name ends in `_total`).
fn scrape(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    (samples, families)
}

/// Every listener, and both sides of NATS forwarding (edge and central),
/// pointed at a port where no NATS server runs: their metrics are
/// exported while NATS is unreachable.
fn all_listeners() -> String {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut extra = format!(
        "[sources.syslog_tcp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n\
         [sources.syslog_udp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n\
         [sources.relp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n\
         [sources.http]\naddress = \"127.0.0.1:0\"\n\
         [sources.otlp]\naddress = \"127.0.0.1:0\"\n\
         [sources.nats]\nservers = [\"nats://{nobody}\"]\nstream = \"SLUICE\"\nconsumer = \"central\"\n\
         [forward.nats]\nservers = [\"nats://{nobody}\"]\nstream = \"SLUICE\"\nnode_id = \"edge-1\"\n",
    );
    extra.push_str(&admin_section(""));
    extra
}

#[test]
fn the_dashboard_rules_and_docs_match_a_live_daemons_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &all_listeners());
    let api = ApiClient::new(&daemon.admin.expect("admin listener").to_string());
    let reply = api.get("/metrics", None).unwrap();
    assert_eq!(reply.status, 200);
    let (samples, families) = scrape(&reply.body);
    for family in ["sluice_forward_lag_events", "sluice_relay_gaps_total"] {
        assert!(families.contains(family), "no {family} while NATS is away:\n{}", reply.body);
    }
    for listener in ["tcp", "syslog_tcp", "syslog_udp", "relp", "http", "otlp", "admin"] {
        assert!(reply.body.contains(&format!("listener=\"{listener}\"")), "no {listener} metrics:\n{}", reply.body);
    }

    for file in [DASHBOARD, RULES] {
        let text = std::fs::read_to_string(file).unwrap();
        let used = identifiers(&text);
        assert!(used.len() >= 10, "{file} uses only {used:?}");
        let missing: Vec<_> = used.iter().filter(|n| !samples.contains(*n) && !families.contains(*n)).collect();
        assert!(missing.is_empty(), "{file} uses names the daemon does not export: {missing:?}");
    }
    let docs = std::fs::read_to_string("docs/operations.md").unwrap();
    let undocumented: Vec<_> =
        families.iter().filter(|f| f.starts_with("sluice_")).filter(|f| !docs.contains(&format!("`{f}`"))).collect();
    assert!(undocumented.is_empty(), "families missing from docs/operations.md: {undocumented:?}");
    daemon.stop();
}

#[test]
fn openmetrics_is_served_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &admin_section(""));
    let addr = daemon.admin.unwrap();
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-H", "Accept: application/openmetrics-text;version=1.0.0"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{text}");
    assert!(text.contains("# TYPE sluice_events_stored counter") && text.trim_end().ends_with("# EOF"), "{text}");
    daemon.stop();
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules", RULES])
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_dashboard_is_grafana_json_with_panels_for_each_concern() {
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let titles: Vec<String> =
        dash["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_lowercase()).collect();
    for concern in [
        "events in",
        "stored",
        "ack latency",
        "ack stages",
        "commit",
        "budget",
        "refused",
        "dropped",
        "connections",
        "disk",
        "auth",
        "forward",
        "relay",
    ] {
        assert!(titles.iter().any(|t| t.contains(concern)), "no panel for {concern}: {titles:?}");
    }
}
