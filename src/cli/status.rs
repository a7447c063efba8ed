//! `sluice status [--server URL] [--metrics] [--json]`: health, listeners and
//! the main counters, from `/health` and `/metrics` (neither needs a login).

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::credentials::{self, ServerArg};
use super::http::ApiClient;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Also print every metric (Prometheus text).
    #[arg(long)]
    pub metrics: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Counters summed over their labels, for the summary.
const MAIN_COUNTERS: [&str; 8] = [
    "sluice_events_received_total",
    "sluice_events_stored_total",
    "sluice_frames_refused_total",
    "sluice_bytes_received_total",
    "sluice_connections_open",
    "sluice_auth_failures_total",
    "sluice_commits_total",
    "sluice_inflight_bytes",
];

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let server = credentials::server_url(args.server.server.as_deref())?;
    let api = ApiClient::new(&server);
    let health = api.get("/health", None)?.ok().context("health check failed")?;
    let metrics = api.get("/metrics", None)?;
    let counters = summarize(&metrics.body);
    if args.json {
        let mut out = json!({"server": api.base(), "health": health, "counters": counters});
        if args.metrics {
            out["metrics"] = json!(metrics.body);
        }
        println!("{out}");
        return Ok(());
    }
    print_text(api.base(), &health, &counters);
    if args.metrics {
        println!();
        print!("{}", metrics.body);
    }
    Ok(())
}

fn print_text(server: &str, health: &Value, counters: &BTreeMap<String, f64>) {
    println!("{server}: {} (sluice {}, up {}s)", health["status"], health["version"], health["uptime_secs"]);
    if health["setup_required"] == true {
        println!("setup required: run `sluice setup`");
    }
    for l in health["listeners"].as_array().into_iter().flatten() {
        println!("  listener {:<12} {}", l["name"].as_str().unwrap_or("?"), l["address"].as_str().unwrap_or("?"));
    }
    for (name, v) in counters {
        println!("  {name:<32} {v}");
    }
}

/// Sums each main counter over its labels from Prometheus text.
pub fn summarize(text: &str) -> BTreeMap<String, f64> {
    super::scrape::sums(&super::scrape::parse(text), MAIN_COUNTERS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_counters_over_labels() {
        let text = "# TYPE x counter\nsluice_events_received_total{listener=\"tcp\"} 5\n\
                    sluice_events_received_total{listener=\"syslog_udp\"} 2\nsluice_inflight_bytes 10\nother 1\n";
        let s = super::summarize(text);
        assert_eq!(s["sluice_events_received_total"], 7.0);
        assert_eq!(s["sluice_inflight_bytes"], 10.0);
        assert!(!s.contains_key("other"));
    }
}
