//! The published Tell SDK (`tell` 0.7 from crates.io) against a real sluice:
//! events, logs and metrics each arrive with their fields.

use crate::common;

use std::time::Duration;

use common::{Daemon, create_key, export};
use serde_json::Value;
use tell::{HistogramParams, LogLevel, Tell, TellConfig, props};

fn sdk(key: &str, addr: std::net::SocketAddr) -> Tell {
    let config = TellConfig::builder(key)
        .endpoint(addr.to_string())
        .service("checkout-api")
        .source("web-1")
        .flush_interval(Duration::from_millis(50))
        .on_error(|e| eprintln!("tell sdk error: {e}"))
        .build()
        .expect("config");
    Tell::new(config).expect("client")
}

fn find(events: &[Value], pred: impl Fn(&Value) -> bool) -> &Value {
    events.iter().find(|e| pred(e)).unwrap_or_else(|| panic!("not stored; have:\n{events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_logs_and_metrics_from_the_tell_sdk_are_stored_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 3);
    let daemon = Daemon::start(&data, "");

    let client = sdk(&key, daemon.tcp);
    client.track("user_42", "Checkout Started", props! { "plan" => "team", "seats" => 5 });
    client.identify("user_42", props! { "email" => "a@example.com" });
    client.log(LogLevel::Warning, "card declined", Some("payments"), props! { "code" => 51 });
    client.log_error("db timeout", None, props! { "ms" => 5000 });
    client.gauge("queue_depth", 17.5, &[("queue", "emails"), ("region", "eu")]);
    client.counter("orders_total", 3.0, &[("shop", "main")]);
    let hist = HistogramParams { count: 3, sum: 0.6, min: 0.1, max: 0.3, buckets: vec![(0.2, 2), (f64::INFINITY, 3)] };
    client.histogram("latency_seconds", hist, &[]);
    client.close().await.expect("close flushes");
    // The SDK never waits for a reply: stopping the daemon drains and commits.
    let log = daemon.log.clone();
    assert!(daemon.stop().success());
    eprintln!("{}", log.lock().unwrap().join("\n"));

    let stored = export(&data);
    for e in &stored {
        assert_eq!(e["workspace"], 3, "{e}");
        assert_eq!(e["listener"], "tcp");
        assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(e["received_at"].as_u64().unwrap() > 1_600_000_000_000);
        assert!(e["seq"].as_u64().unwrap() >= 1);
    }

    let track = find(&stored, |e| e["event_name"] == "Checkout Started");
    assert_eq!(track["kind"], "event");
    assert_eq!(track["event_type"], "track");
    assert_eq!(track["service"], "checkout-api");
    assert_eq!(track["payload"]["plan"], "team");
    assert_eq!(track["payload"]["seats"], 5);
    assert!(track["payload"].to_string().contains("user_42"));
    assert_eq!(track["device_id"].as_str().unwrap().len(), 36, "uuid text");
    assert!(track["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let identify = find(&stored, |e| e["event_type"] == "identify");
    assert_eq!(identify["payload"]["email"], "a@example.com", "{identify}");
    assert_eq!(identify["payload"]["user_id"], "user_42");

    let warn = find(&stored, |e| e["kind"] == "log" && e["level"] == "warning");
    assert_eq!(warn["source"], "payments");
    assert_eq!(warn["service"], "checkout-api");
    assert!(warn["payload"].to_string().contains("card declined"));
    assert_eq!(warn["log_type"], "log");
    let err = find(&stored, |e| e["kind"] == "log" && e["level"] == "error");
    assert_eq!(err["source"], "web-1", "the configured source stands in for a missing component");

    let gauge = find(&stored, |e| e["name"] == "queue_depth");
    assert_eq!(gauge["kind"], "metric");
    assert_eq!(gauge["metric_type"], "gauge");
    assert_eq!(gauge["value"], 17.5);
    assert_eq!(gauge["labels"]["queue"], "emails");
    assert_eq!(gauge["labels"]["region"], "eu");
    assert_eq!(gauge["service"], "checkout-api");
    let counter = find(&stored, |e| e["name"] == "orders_total");
    assert_eq!(counter["metric_type"], "counter");
    assert_eq!(counter["value"], 3.0);
    let hist = find(&stored, |e| e["name"] == "latency_seconds");
    assert_eq!(hist["metric_type"], "histogram");
    assert_eq!(hist["histogram"]["count"], 3);

    let mut seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), stored.len(), "every event has its own seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_stores_nothing_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_key(&data, 1);
    let daemon = Daemon::start(&data, "");
    let client = sdk("0123456789abcdef0123456789abcdef", daemon.tcp);
    client.track("u", "Nope", props! { "x" => 1 });
    client.close().await.expect("close");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = daemon.log_text();
    assert!(daemon.stop().success());
    assert!(export(&data).is_empty());
    assert!(log.contains("unknown or revoked streaming key"), "{log}");
}
