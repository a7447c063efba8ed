//! `sluice bench http`: a load generator for the HTTP source.
//!
//! ```text
//! sluice [--ca-file PEM] bench http --addr ADDR --key KEY [--connections C]
//!                   [--batch-size B] [--event-bytes S] [--duration SECS]
//!                   [--server-name NAME]
//! ```
//!
//! Each of the C keep-alive HTTP/1.1 connections posts `POST /v1/events`
//! requests of B JSON lines (the flat shape of the Tell browser SDK, with the
//! properties of the TCP bench's workload) one at a time for SECS seconds,
//! authenticated with `Authorization: Bearer KEY` (over TLS with
//! `--ca-file`, for `[sources.http.tls]`). A request counts once it
//! is answered 202, which sluice sends only after the durable commit; the
//! time from writing it to reading the answer goes into a latency
//! histogram. 429 and 503 answers are counted (and waited out per
//! `Retry-After`), anything else fails the run. Then one JSON line goes to
//! stdout:
//!
//! ```text
//! {"events":N,"seconds":S,"acked_events_per_sec":R,"p99_ms":Q}
//! ```
//!
//! The client is a minimal HTTP/1.1 one (Content-Length bodies, keep-alive),
//! so the bench measures the server, not a client library. The daemon's rate
//! limit must allow the request rate (`[sources.http.rate_limit] per = "off"`).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::hist::Histogram;
use super::workload::{Generator, Pool};
use crate::cli::HttpBenchArgs;
use crate::client::parse_key;
use crate::net::tls::ClientTls;

/// Largest answer body read (sluice's answers are small JSON objects).
const MAX_ANSWER: usize = 1 << 20;
/// Longest wait for one answer before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Validated settings.
#[derive(Debug, Clone)]
struct Settings {
    addr: String,
    key: String,
    connections: usize,
    batch_size: usize,
    event_bytes: usize,
    duration: Duration,
    /// Set with --ca-file: connections speak TLS.
    tls: Option<ClientTls>,
}

impl Settings {
    fn from_args(a: &HttpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<Settings> {
        parse_key(&a.key).context("--key")?;
        if a.connections == 0 || a.connections > 10_000 {
            bail!("--connections must be 1..=10000, not {}", a.connections);
        }
        if a.batch_size == 0 || a.batch_size > 100_000 {
            bail!("--batch-size must be 1..=100000, not {}", a.batch_size);
        }
        if a.event_bytes > 1 << 20 {
            bail!("--event-bytes must be at most 1 MiB, not {}", a.event_bytes);
        }
        if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 1e6) {
            bail!("--duration must be a positive number of seconds, not {}", a.duration);
        }
        Ok(Settings {
            addr: a.addr.clone(),
            key: a.key.trim().to_owned(),
            connections: a.connections,
            batch_size: a.batch_size,
            event_bytes: a.event_bytes,
            duration: Duration::from_secs_f64(a.duration),
            tls: super::client_tls(&a.addr, ca_file, &a.tls)?,
        })
    }
}

/// What one connection (or, merged, the run) achieved.
#[derive(Debug, Default)]
struct Stats {
    events: u64,
    /// Requests answered 429 or 503 (retried after `Retry-After`).
    pushed_back: u64,
    latency_us: Histogram,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.events += other.events;
        self.pushed_back += other.pushed_back;
        self.latency_us.merge(&other.latency_us);
    }

    fn json_line(&self, seconds: f64) -> String {
        let p99 = match self.latency_us.quantile(0.99) {
            Some(us) => format!("{:.3}", us as f64 / 1000.0),
            None => "null".to_owned(),
        };
        let rate = self.events as f64 / seconds.max(1e-9);
        format!(
            "{{\"events\":{},\"seconds\":{seconds:.3},\"acked_events_per_sec\":{rate:.0},\"p99_ms\":{p99}}}",
            self.events
        )
    }
}

/// Runs the bench on its own runtime and prints the JSON line, also when it fails.
pub fn run(args: &HttpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::from_args(args, ca_file)?;
    let runtime = super::runtime()?;
    let (stats, seconds, result) = runtime.block_on(bench(&settings));
    println!("{}", stats.json_line(seconds));
    if let (Some(p50), Some(max)) = (stats.latency_us.quantile(0.5), stats.latency_us.quantile(1.0)) {
        eprintln!("bench: latency ms: p50 {:.3}, max {:.3}", p50 as f64 / 1e3, max as f64 / 1e3);
    }
    if stats.pushed_back > 0 {
        eprintln!("bench: {} request(s) answered 429 or 503 and retried", stats.pushed_back);
    }
    result
}

async fn bench(s: &Settings) -> (Stats, f64, anyhow::Result<()>) {
    let seed: u64 = rand::random();
    let pool = std::sync::Arc::new(Pool::new(s.event_bytes, seed));
    eprintln!(
        "bench: {} connection(s) to {}://{}/v1/events, {} events/request, ~{} B/event, {:.1} s",
        s.connections,
        if s.tls.is_some() { "https" } else { "http" },
        s.addr,
        s.batch_size,
        s.event_bytes,
        s.duration.as_secs_f64()
    );
    let start = Instant::now();
    let deadline = start + s.duration;
    let mut tasks = JoinSet::new();
    for c in 0..s.connections {
        let generator = Generator::new(pool.clone(), seed.wrapping_add(c as u64 + 1));
        tasks.spawn(connection(s.clone(), generator, deadline));
    }
    let mut stats = Stats::default();
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let (conn_stats, outcome) = joined.unwrap_or_else(|e| (Stats::default(), Err(anyhow!("task failed: {e}"))));
        stats.merge(&conn_stats);
        if let (Err(e), true) = (outcome, result.is_ok()) {
            eprintln!("bench: {e:#}");
            result = Err(e);
        }
    }
    (stats, start.elapsed().as_secs_f64(), result)
}

/// One keep-alive connection posting until the deadline.
async fn connection(s: Settings, mut generator: Generator, deadline: Instant) -> (Stats, anyhow::Result<()>) {
    let mut stats = Stats::default();
    let result = post_until(&s, &mut generator, deadline, &mut stats).await;
    (stats, result.with_context(|| format!("connection to {}", s.addr)))
}

async fn post_until(s: &Settings, g: &mut Generator, deadline: Instant, stats: &mut Stats) -> anyhow::Result<()> {
    let mut conn = Conn::open(&s.addr, s.tls.as_ref()).await?;
    let mut body = Vec::new();
    let mut request = Vec::new();
    while Instant::now() < deadline {
        body.clear();
        g.jsonl_into(&mut body, s.batch_size);
        request.clear();
        request.extend_from_slice(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n\r\n",
                s.addr,
                s.key,
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(&body);
        let sent = Instant::now();
        let answer = conn.exchange(&request).await?;
        match answer.status {
            202 => {
                stats.events += s.batch_size as u64;
                stats.latency_us.record(sent.elapsed().as_micros() as u64);
            }
            429 | 503 => {
                stats.pushed_back += 1;
                tokio::time::sleep(Duration::from_secs(answer.retry_after.unwrap_or(1).min(5))).await;
            }
            status => bail!("answered {status}: {}", String::from_utf8_lossy(&answer.body)),
        }
        if answer.close {
            conn = Conn::open(&s.addr, s.tls.as_ref()).await?;
        }
    }
    Ok(())
}

/// One answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    close: bool,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 client connection.
struct Conn {
    read: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    write: Box<dyn AsyncWrite + Unpin + Send>,
    line: String,
}

impl Conn {
    async fn open(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write): (Box<dyn AsyncRead + Unpin + Send>, Box<dyn AsyncWrite + Unpin + Send>) = match tls {
            Some(tls) => {
                let (read, write) = tokio::io::split(tls.connect(stream).await?);
                (Box::new(read), Box::new(write))
            }
            None => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
        };
        Ok(Conn { read: BufReader::with_capacity(16 << 10, read), write, line: String::new() })
    }

    /// Writes a request and reads its answer.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        self.write.write_all(request).await?;
        tokio::time::timeout(ANSWER_TIMEOUT, self.read_answer()).await.context("no answer in time")?
    }

    async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        let status_line = self.next_line().await?;
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("status line")?;
        let mut answer = Answer { status, retry_after: None, close: false, body: Vec::new() };
        let mut length = 0usize;
        loop {
            let line = self.next_line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().context("content-length")?,
                "retry-after" => answer.retry_after = value.parse().ok(),
                "connection" => answer.close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if length > MAX_ANSWER {
            bail!("answer body of {length} bytes");
        }
        answer.body.resize(length, 0);
        self.read.read_exact(&mut answer.body).await?;
        Ok(answer)
    }

    async fn next_line(&mut self) -> anyhow::Result<String> {
        self.line.clear();
        if self.read.read_line(&mut self.line).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(self.line.trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_refused() {
        let args = HttpBenchArgs {
            addr: "127.0.0.1:1".into(),
            key: "000102030405060708090a0b0c0d0e0f".into(),
            connections: 1,
            batch_size: 1,
            event_bytes: 300,
            duration: 1.0,
            tls: crate::cli::BenchTlsArg::default(),
        };
        assert!(Settings::from_args(&args, None).is_ok());
        assert!(Settings::from_args(&args, Some(Path::new("/no/such/ca.pem"))).is_err());
        for bad in [
            HttpBenchArgs { key: "nope".into(), ..args.clone() },
            HttpBenchArgs { connections: 0, ..args.clone() },
            HttpBenchArgs { batch_size: 0, ..args.clone() },
            HttpBenchArgs { duration: f64::NAN, ..args.clone() },
        ] {
            assert!(Settings::from_args(&bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_line_has_the_documented_keys() {
        let mut stats = Stats { events: 1000, ..Stats::default() };
        stats.latency_us.record(1500);
        let v: serde_json::Value = serde_json::from_str(&stats.json_line(2.0)).unwrap();
        assert_eq!((v["events"].as_u64(), v["acked_events_per_sec"].as_f64()), (Some(1000), Some(500.0)));
        assert!(v["p99_ms"].as_f64().unwrap() >= 1.5 && v["seconds"].as_f64() == Some(2.0));
    }
}
