//! `sluice bench tail`: how long a committed event takes to reach a live
//! tail reader.
//!
//! ```text
//! sluice login --server URL            # the bench uses the stored token
//! sluice bench tail --server URL --addr TCP_ADDR --key KEY [--rate 200] [--duration 10]
//! ```
//!
//! It opens `GET /api/v1/events/tail` (Server-Sent Events) for the key's
//! workspace, then sends `rate` acked batches of one event per second over
//! raw TCP, each with a payload `{"bench_tail": i}`, and notes when each
//! ack arrives and when the tail delivers event `i`. The ack is the client's
//! proof of the commit, so "commit to reader" is measured from it (floored
//! at zero: the tail is told about a commit before the ack is written, so
//! it may win); "send to reader" adds the commit itself. One JSON line:
//!
//! ```text
//! {"events":N,"missing":M,"p50_ms":…,"p99_ms":…,"max_ms":…,"p99_from_send_ms":…}
//! ```
//!
//! Events the tail has not delivered 5 s after the last ack count as
//! missing and fail the run. Log in as a member of the key's workspace.
//! `--filter` adds tail filters (`q=bench_tail`, say, when other load goes
//! to the same workspace: a reader of every event of a busy workspace falls
//! behind and is dropped).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use tell_encoding::{EventParams, EventType};

use super::hist::Histogram;
use crate::cli::credentials::{ServerArg, server_url, token_for};
use crate::client::{AckedClient, parse_key, tell_batch};
use crate::codec::ack::Status;

/// How long events may still arrive after the last ack.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct TailBenchArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Address of the raw TCP source.
    #[arg(long, default_value = "127.0.0.1:50000")]
    pub addr: String,
    /// Streaming key (32 hex chars) of the workspace the login can read.
    #[arg(long)]
    pub key: String,
    /// Events sent per second (one acked batch each).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Filters for the tail, as in its query string (e.g. `q=bench_tail`).
    #[arg(long)]
    pub filter: Option<String>,
}

/// When the tail delivered each event, by its number.
type Seen = Arc<Mutex<HashMap<u64, Instant>>>;

/// Send and ack times of one event.
struct Sent {
    sent: Instant,
    acked: Instant,
}

pub fn run(args: &TailBenchArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.duration > 0.0) {
        return Err(anyhow!("--rate and --duration must be positive"));
    }
    let key = parse_key(&args.key).map_err(|e| anyhow!("--key: {e}"))?;
    let server = server_url(args.server.server.as_deref())?;
    let token = token_for(&server)?;
    let seen: Seen = Arc::default();
    let ready = std::sync::mpsc::channel();
    let reader = {
        let (seen, ready) = (seen.clone(), ready.0);
        let filter = args.filter.clone().unwrap_or_default();
        std::thread::spawn(move || follow(&server, &token, &filter, &seen, ready))
    };
    match ready.1.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(anyhow!("the tail did not open within 10 s")),
    }
    let sent = super::runtime()?.block_on(send(args, &key))?;
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && seen.lock().map_or(0, |s| s.len()) < sent.len() {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(reader); // ends with the process; its stream has no end of its own
    report(&sent, &seen.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Reads the SSE stream, noting when each bench event arrives. Says on
/// `ready` once the stream is open (or why it is not).
fn follow(server: &str, token: &str, filter: &str, seen: &Seen, ready: std::sync::mpsc::Sender<anyhow::Result<()>>) {
    let path =
        if filter.is_empty() { "/api/v1/events/tail".to_owned() } else { format!("/api/v1/events/tail?{filter}") };
    let body = match crate::cli::stream::get(server, &path, token) {
        Ok(body) => body,
        Err(e) => {
            let _ = ready.send(Err(e.context("cannot open the live tail")));
            return;
        }
    };
    let mut lines = BufReader::new(body).lines();
    // The server's first frame (": open") says the subscription is in place.
    if lines.next().is_none() {
        let _ = ready.send(Err(anyhow!("the tail closed at once")));
        return;
    }
    let _ = ready.send(Ok(()));
    for line in lines.map_while(Result::ok) {
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let at = Instant::now();
        let event: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if let Some(i) = event["payload"]["bench_tail"].as_u64()
            && let Ok(mut s) = seen.lock()
        {
            s.entry(i).or_insert(at);
        }
    }
}

/// Sends the events, one acked batch at a time, paced to the rate.
async fn send(args: &TailBenchArgs, key: &[u8; 16]) -> anyhow::Result<Vec<Sent>> {
    let mut client =
        AckedClient::connect(&args.addr).await.with_context(|| format!("cannot connect to {}", args.addr))?;
    let total = (args.rate * args.duration).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = tokio::time::Instant::now();
    let mut out = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let payload = json!({ "bench_tail": i }).to_string();
        let event = EventParams {
            event_type: EventType::Track,
            timestamp: crate::store::now_ms(),
            service: Some("bench-tail"),
            device_id: Some(&[1u8; 16]),
            session_id: None,
            event_name: Some("Tail Probe"),
            payload: Some(payload.as_bytes()),
        };
        let sent = Instant::now();
        let ack = client.send_and_wait(i + 1, &tell_batch(key, i + 1, &[event])).await?;
        if ack.status != Status::Stored {
            return Err(anyhow!("event {i} was answered {:?}", ack.status));
        }
        out.push(Sent { sent, acked: Instant::now() });
    }
    Ok(out)
}

fn report(sent: &[Sent], seen: &HashMap<u64, Instant>) -> anyhow::Result<()> {
    let (mut from_ack, mut from_send) = (Histogram::default(), Histogram::default());
    let mut missing = 0u64;
    for (i, s) in sent.iter().enumerate() {
        match seen.get(&(i as u64)) {
            Some(at) => {
                from_ack.record(at.saturating_duration_since(s.acked).as_micros() as u64);
                from_send.record(at.saturating_duration_since(s.sent).as_micros() as u64);
            }
            None => missing += 1,
        }
    }
    let ms = |h: &Histogram, q: f64| h.quantile(q).map(|us| us as f64 / 1000.0);
    let line = json!({
        "events": from_ack.count(), "missing": missing,
        "p50_ms": ms(&from_ack, 0.5), "p99_ms": ms(&from_ack, 0.99), "max_ms": ms(&from_ack, 1.0),
        "p99_from_send_ms": ms(&from_send, 0.99),
    });
    println!("{line}");
    if missing > 0 { Err(anyhow!("{missing} events never reached the tail")) } else { Ok(()) }
}
