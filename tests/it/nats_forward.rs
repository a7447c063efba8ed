//! Forwarding into NATS JetStream and the central consumer, with real
//! nats-server processes (Debian's 2.9.10, or `$SLUICE_NATS_SERVER`): a
//! 3-server cluster with an R3 stream, SIGKILLed servers and edges, NATS
//! down with local and with replicated acks, and a reader that is not
//! sluice (nats-py) for the NDJSON encoding.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::client::AckedClient;
use sluice::codec::ack::Status;

use crate::common::acked::{marked_batch, stream_acked};
use crate::common::admin::{ApiClient, admin_section, metric};
use crate::common::curl::curl;
use crate::common::{Daemon, create_key, export, hex_key};
use crate::nats_support::{NatsCluster, consume_ndjson};

const PER_BATCH: usize = 20;
const WINDOW: usize = 8;
/// Longest wait for forwarded events to reach the central node.
const CONVERGE: Duration = Duration::from_secs(90);

/// `servers` as `NatsCluster::toml_servers` writes them.
fn forward_section(servers: &str, node: &str, extra: &str) -> String {
    format!("[forward.nats]\nservers = {servers}\nstream = \"SLUICE\"\nnode_id = \"{node}\"\n{extra}\n")
}

fn central_section(nats: &NatsCluster) -> String {
    format!("[sources.nats]\nservers = {}\nstream = \"SLUICE\"\n", nats.toml_servers())
}

/// A batch of `PER_BATCH` events whose payloads carry `<tag>-<id>-<i>`.
fn batch(key: &[u8; 16], tag: &str, id: u64) -> Vec<u8> {
    marked_batch(key, &format!("{tag}-"), id, PER_BATCH)
}

/// Streams batches `ids`; returns the ids acknowledged durable.
async fn stream(
    client: &mut AckedClient,
    key: &[u8; 16],
    tag: &str,
    ids: &[u64],
    on_ack: impl FnMut(usize),
) -> BTreeSet<u64> {
    stream_acked(client, ids, WINDOW, |id| batch(key, tag, id), on_ack).await
}

/// Sends `ids` until every one is acknowledged durable (resending what was
/// not, with the same producer), within a bounded number of rounds.
async fn send_all(addr: &str, key: &[u8; 16], tag: &str, ids: &[u64]) {
    let mut client = AckedClient::connect(addr).await.unwrap();
    let mut left: Vec<u64> = ids.to_vec();
    for _ in 0..20 {
        let done = stream(&mut client, key, tag, &left, |_| {}).await;
        left.retain(|id| !done.contains(id));
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        client = AckedClient::with_producer(addr, client.producer()).await.unwrap();
    }
    panic!("{tag}: {} batches never acknowledged", left.len());
}

fn api(d: &Daemon) -> ApiClient {
    ApiClient::new(&d.admin.expect("admin listener").to_string())
}

/// Polls a metric until it passes `check`, within `limit`.
fn wait_metric(d: &Daemon, name: &str, limit: Duration, check: impl Fn(u64) -> bool) -> u64 {
    let (api, deadline) = (api(d), Instant::now() + limit);
    loop {
        let v = metric(&api, name);
        if check(v) {
            return v;
        }
        if Instant::now() >= deadline {
            let text = api.get("/metrics", None).map(|r| r.body).unwrap_or_default();
            let ours: Vec<&str> =
                text.lines().filter(|l| l.starts_with("sluice_relay") || l.starts_with("sluice_forward")).collect();
            panic!("{name} = {v} after {limit:?}\n{}\nlog:\n{}", ours.join("\n"), d.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every marker of `expected` once; per (workspace, origin node) the origin
/// sequence numbers run 1, 2, 3… in the order the central node stored them
/// (events without a marker, such as OTLP records, count for the order only).
fn check_central(events: &[Value], expected: &BTreeSet<String>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut origins: BTreeMap<(u64, String), Vec<u64>> = BTreeMap::new();
    for e in events {
        if let Some(marker) = e["payload"]["marker"].as_str() {
            *seen.entry(marker.to_string()).or_default() += 1;
        }
        let node = e["origin_node"].as_str().expect("origin_node").to_string();
        origins.entry((e["workspace"].as_u64().unwrap(), node)).or_default().push(e["origin_seq"].as_u64().unwrap());
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(m, _)| m).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|m| !seen.contains_key(*m)).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but not at the central node: {missing:?}");
    for ((ws, node), seqs) in &origins {
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert!(seqs == &want, "workspace {ws} from {node}: origin order broken or gaps");
    }
}

fn markers(tag: &str, ids: impl IntoIterator<Item = u64>) -> impl Iterator<Item = String> {
    let tag = tag.to_string();
    ids.into_iter().flat_map(move |id| {
        (0..PER_BATCH).map({
            let tag = tag.clone();
            move |i| format!("{tag}-{id}-{i}")
        })
    })
}

/// Stops the central node once it stored `total` events; returns them.
fn central_events(central: Daemon, total: u64) -> Vec<Value> {
    wait_metric(&central, "sluice_relay_events_stored_total", CONVERGE, |v| v >= total);
    let data = central.data_dir.clone();
    assert!(central.stop().success());
    export(&data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_through_an_r3_cluster_with_kills_reach_the_central_node_exactly_once_in_order() {
    let mut nats = NatsCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2, dc) = (dir.path().join("edge-1"), dir.path().join("edge-2"), dir.path().join("central"));
    let k1 = hex_key(&create_key(&d1, 1).1);
    let k2 = hex_key(&create_key(&d2, 1).1);
    let k3 = hex_key(&create_key(&d2, 2).1);
    let servers = nats.toml_servers();
    let edge = |d: &Path, node: &str| {
        Daemon::start(d, &(admin_section("") + &forward_section(&servers, node, "replicas = 3")))
    };
    let e1 = edge(&d1, "edge-1");
    let e2 = edge(&d2, "edge-2");
    let central = Daemon::start_with(&dc, &(admin_section("") + &central_section(&nats)), |c| {
        c.env("RUST_LOG", "info,sluice=debug,sluice::source::nats=trace");
    });

    // Phase 1: load into both edges while a NATS server is SIGKILLed and restarted.
    let ids: Vec<u64> = (1..=60).collect();
    let (a1, a2) = (e1.tcp.to_string(), e2.tcp.to_string());
    let loads = [
        tokio::spawn({
            let ids = ids.clone();
            async move { send_all(&a1, &k1, "e1w1", &ids).await }
        }),
        tokio::spawn({
            let (a2, ids) = (a2.clone(), ids.clone());
            async move { send_all(&a2, &k2, "e2w1", &ids).await }
        }),
        tokio::spawn({
            let ids = ids.clone();
            async move { send_all(&a2, &k3, "e2w2", &ids).await }
        }),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = nats.stream_leader("SLUICE").unwrap_or(1);
    nats.kill(victim);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for l in loads {
        l.await.unwrap();
    }
    nats.restart(victim);

    // Phase 2: SIGKILL edge-1 mid-stream, restart it, resend what it did not acknowledge.
    let more: Vec<u64> = (61..=160).collect();
    let mut client = AckedClient::connect(&e1.tcp.to_string()).await.unwrap();
    let producer = client.producer();
    let pid = e1.pid();
    let mut killed = false;
    let before = stream(&mut client, &k1, "e1w1", &more, |n| {
        if n >= 30 && !killed {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
    })
    .await;
    assert!(killed && before.len() < more.len(), "the kill landed mid-stream");
    e1.kill();
    let e1 = edge(&d1, "edge-1");
    let mut client = AckedClient::with_producer(&e1.tcp.to_string(), producer).await.unwrap();
    let rest: Vec<u64> = more.iter().copied().filter(|id| !before.contains(id)).collect();
    let after = stream(&mut client, &k1, "e1w1", &rest, |_| {}).await;
    assert_eq!(after.len(), rest.len(), "every resent batch is acknowledged");

    let mut expected: BTreeSet<String> = markers("e1w1", 1..=160).collect();
    expected.extend(markers("e2w1", 1..=60));
    expected.extend(markers("e2w2", 1..=60));
    for e in [&e1, &e2] {
        wait_metric(e, "sluice_forward_lag_events", CONVERGE, |v| v == 0);
    }
    // What the edges hold is what the central node must hold (a batch the
    // killed edge committed but never acknowledged is there too).
    let (e1_data, e2_data) = (e1.data_dir.clone(), e2.data_dir.clone());
    assert!(e1.stop().success() && e2.stop().success());
    let at_edges = export(&e1_data).len() + export(&e2_data).len();
    assert!(at_edges >= expected.len());
    let events = central_events(central, at_edges as u64);
    assert_eq!(events.len(), at_edges, "the central node holds exactly what the edges hold");
    check_central(&events, &expected);
    assert!(nats.stream_messages("SLUICE") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_local_acks_go_on_and_the_lag_drains_when_it_returns() {
    let mut nats = NatsCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let key = hex_key(&create_key(&data, 4).1);
    let edge = Daemon::start(&data, &(admin_section("") + &forward_section(&nats.toml_servers(), "edge-a", "")));
    send_all(&edge.tcp.to_string(), &key, "up", &[1, 2]).await;
    wait_metric(&edge, "sluice_forward_lag_events", CONVERGE, |v| v == 0);

    nats.stop_all();
    let ids: Vec<u64> = (3..=40).collect();
    send_all(&edge.tcp.to_string(), &key, "down", &ids).await;
    let lag = wait_metric(&edge, "sluice_forward_lag_events", CONVERGE, |v| v > 0);
    assert_eq!(lag, (ids.len() * PER_BATCH) as u64, "everything taken while NATS is down waits");
    assert!(metric(&api(&edge), "sluice_forward_lag_bytes") > 0);

    nats.start_all();
    wait_metric(&edge, "sluice_forward_lag_events", CONVERGE, |v| v == 0);
    assert_eq!(metric(&api(&edge), "sluice_forward_lag_bytes"), 0);
    assert_eq!(metric(&api(&edge), "sluice_forward_events_total"), 40 * PER_BATCH as u64);

    let central = Daemon::start(&dir.path().join("central"), &(admin_section("") + &central_section(&nats)));
    let events = central_events(central, 40 * PER_BATCH as u64);
    let mut expected: BTreeSet<String> = markers("up", 1..=2).collect();
    expected.extend(markers("down", 3..=40));
    check_central(&events, &expected);
    assert!(edge.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_acks_wait_for_jetstream_and_resume_by_themselves() {
    let mut nats = NatsCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let key = hex_key(&create_key(&data, 5).1);
    let config = admin_section("")
        + &forward_section(&nats.toml_servers(), "edge-r", "replicas = 3\nack = \"replicated\"")
        + "[pipeline]\nack_timeout = \"2s\"\n[sources.otlp]\naddress = \"127.0.0.1:0\"\n";
    let edge = Daemon::start(&data, &config);
    let addr = edge.tcp.to_string();
    let mut client = AckedClient::connect(&addr).await.unwrap();
    let send = async |client: &mut AckedClient, id: u64| client.send_and_wait(id, &batch(&key, "r", id)).await;
    // The first answers may wait longer than ack_timeout: the stream is created first.
    let deadline = Instant::now() + CONVERGE;
    while !send(&mut client, 1).await.unwrap().status.is_durable() {
        assert!(Instant::now() < deadline, "the first batch was never replicated; log:\n{}", edge.log_text());
    }
    assert_eq!(send(&mut client, 10).await.unwrap().status, Status::Stored);
    // OTLP's 200 also waits for the PubAck.
    let otlp = |body: &str| {
        let logs = format!("http://{}/v1/logs", edge.otlp.expect("otlp listener"));
        let json = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{body}"}}}}]}}]}}]}}"#
        );
        let key = format!("X-API-Key: {}", hex::encode(key));
        curl(dir.path(), &logs, Some(json.as_bytes()), &["-H", &key, "-H", "Content-Type: application/json"])
    };
    assert_eq!(otlp("replicated-1").status, 200);

    nats.stop_all();
    let started = Instant::now();
    let refused = send(&mut client, 2).await.unwrap();
    assert_eq!(refused.status, Status::Unavailable, "never stored while JetStream is down");
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited for JetStream first");
    let a = otlp("replicated-2");
    assert_eq!((a.status, a.header("retry-after")), (503, Some("1")), "no 200 while JetStream is down: {a:?}");
    // Its retry is not answered "duplicate" before the events are replicated either.
    assert_eq!(send(&mut client, 2).await.unwrap().status, Status::Unavailable);

    nats.start_all();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let ack = send(&mut client, 2).await.unwrap();
        if ack.status.is_durable() {
            assert_eq!(ack.status, Status::Duplicate, "it was committed before; now replicated");
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not resume");
    }
    assert_eq!(send(&mut client, 3).await.unwrap().status, Status::Stored);
    assert!(edge.stop().success());

    let central = Daemon::start(&dir.path().join("central"), &(admin_section("") + &central_section(&nats)));
    // The OTLP request answered 503 was committed on the edge all the same
    // (the answer only could not promise it): it arrives, as a retry would.
    let events = central_events(central, 4 * PER_BATCH as u64 + 2);
    check_central(&events, &markers("r", [1, 2, 3, 10]).collect());
    let bodies: BTreeSet<_> = events.iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, BTreeSet::from(["replicated-1", "replicated-2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_is_not_sluice_reads_the_ndjson_encoding_as_export_prints_it() {
    let nats = NatsCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let key = hex_key(&create_key(&data, 6).1);
    let edge = Daemon::start(
        &data,
        &(admin_section("") + &forward_section(&nats.toml_servers(), "edge-n", "encoding = \"ndjson\"")),
    );
    let ids: Vec<u64> = (1..=30).collect();
    send_all(&edge.tcp.to_string(), &key, "n", &ids).await;
    wait_metric(&edge, "sluice_forward_lag_events", CONVERGE, |v| v == 0);
    assert!(edge.stop().success());

    let total = ids.len() * PER_BATCH;
    let got = consume_ndjson(&nats.url(0), "SLUICE", "sluice.events.>", total, Duration::from_secs(30));
    assert!(got.complete, "{}", got.stderr);
    let exported: Vec<String> = export(&data).iter().map(|v| v.to_string()).collect();
    let read: Vec<String> = got.lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap().to_string()).collect();
    assert_eq!(read, exported, "the messages hold the events as export prints them, in order");
    let mut next = 1u64;
    for h in &got.headers {
        let first: u64 = h["Sluice-First-Seq"].as_str().unwrap().parse().unwrap();
        let count: u64 = h["Sluice-Count"].as_str().unwrap().parse().unwrap();
        assert_eq!(first, next, "messages follow each other");
        assert_eq!(h["Sluice-Format"], "ndjson/1");
        let id = h["Nats-Msg-Id"].as_str().unwrap();
        let parts: Vec<&str> = id.split(':').collect();
        assert_eq!((parts[0], parts[1].len(), parts[2], parts[3]), ("edge-n", 16, "6", first.to_string().as_str()));
        next = first + count;
    }
    assert_eq!(next, total as u64 + 1);
}
