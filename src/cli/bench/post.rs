//! The load loop of the benches that POST over HTTP (`bench http`,
//! `bench otlp`), and the minimal HTTP/1.1 client it drives.
//!
//! C keep-alive connections (over TLS with `--ca-file`) each post one
//! request at a time until the deadline, authenticated with
//! `Authorization: Bearer KEY`. What differs between the benches is the
//! [`Target`] (path, `Content-Type`, `Content-Encoding`, the status that
//! means "durable") and, per connection, the [`Bodies`]: where the bodies
//! come from and how many of a request's items its answer accepted.
//!
//! A request counts once answered with the target's status, which sluice
//! sends only after the durable commit; the time from writing it to reading
//! the answer goes into a latency histogram. 429 and 503 answers are
//! counted and waited out per `Retry-After` (at most 5 s), anything else
//! fails the run. The client speaks Content-Length bodies and keep-alive
//! only, so a bench measures the server, not a client library.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::hist::Histogram;
use crate::cli::BenchTlsArg;
use crate::client::parse_key;
use crate::net::tls::ClientTls;

/// Largest answer body read (sluice's answers are small).
const MAX_ANSWER: usize = 1 << 20;
/// Longest wait for one answer before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER_SECS: u64 = 5;
/// Most connections a bench opens.
const MAX_CONNECTIONS: usize = 10_000;
/// Most items in one request.
pub const MAX_BATCH: usize = 100_000;

/// Where and how a bench posts.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub key: String,
    pub connections: usize,
    pub duration: Duration,
    /// Set with --ca-file: connections speak TLS.
    pub tls: Option<ClientTls>,
    pub route: Route,
}

/// What a bench posts to, and the status that means "durable".
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    /// 202 for `/v1/events`, 200 for OTLP.
    pub durable: u16,
}

/// The arguments every posting bench takes, before they are checked.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    pub addr: &'a str,
    pub key: &'a str,
    pub connections: usize,
    pub batch_size: usize,
    pub duration: f64,
    pub tls: &'a BenchTlsArg,
}

impl Load<'_> {
    /// Checks the arguments; the target posts to `route`.
    pub fn check(&self, route: Route, ca_file: Option<&Path>) -> anyhow::Result<Target> {
        parse_key(self.key).context("--key")?;
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            bail!("--connections must be 1..={MAX_CONNECTIONS}, not {}", self.connections);
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            bail!("--batch-size must be 1..={MAX_BATCH}, not {}", self.batch_size);
        }
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 1e6) {
            bail!("--duration must be a positive number of seconds, not {}", self.duration);
        }
        Ok(Target {
            addr: self.addr.to_owned(),
            key: self.key.trim().to_owned(),
            connections: self.connections,
            duration: Duration::from_secs_f64(self.duration),
            tls: super::client_tls(self.addr, ca_file, self.tls)?,
            route,
        })
    }
}

impl Target {
    /// `http` or `https`, for the stderr banner.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The request head up to (not including) `Content-Length`.
    fn head(&self) -> String {
        let r = &self.route;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\n",
            r.path, self.addr, self.key, r.content_type
        );
        if let Some(encoding) = r.content_encoding {
            head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
        }
        head
    }
}

/// One connection's request bodies.
pub trait Bodies: Send + 'static {
    /// The next request's body and the items it carries.
    fn next(&mut self) -> (&[u8], u64);

    /// How many of a request's `items` a durable answer with `body`
    /// accepted; an error fails the run. All of them unless overridden.
    fn accepted(&mut self, body: &[u8], items: u64) -> anyhow::Result<u64> {
        let _ = body;
        Ok(items)
    }
}

/// What one connection (or, merged, the run) achieved.
#[derive(Debug, Default)]
pub struct Stats {
    /// Items in durable answers, less those the answers refused.
    pub items: u64,
    /// Items durable answers refused (OTLP `partial_success`).
    pub refused: u64,
    /// Requests answered 429 or 503 (retried after `Retry-After`).
    pub pushed_back: u64,
    /// Write → durable answer, in microseconds.
    pub latency_us: Histogram,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.items += other.items;
        self.refused += other.refused;
        self.pushed_back += other.pushed_back;
        self.latency_us.merge(&other.latency_us);
    }

    /// The stdout line: `{"<noun>":N,"seconds":S,"acked_<noun>_per_sec":R,"p99_ms":Q` then
    /// `extra` (`,"key":value…`, already JSON) and `}`.
    pub fn json_line(&self, seconds: f64, noun: &str, extra: &str) -> String {
        let p99 = match self.latency_us.quantile(0.99) {
            Some(us) => format!("{:.3}", us as f64 / 1000.0),
            None => "null".to_owned(),
        };
        let rate = self.items as f64 / seconds.max(1e-9);
        format!(
            "{{\"{noun}\":{},\"seconds\":{seconds:.3},\"acked_{noun}_per_sec\":{rate:.0},\"p99_ms\":{p99}{extra}}}",
            self.items
        )
    }

    /// On stderr: the latency spread, and pushback and refusals if any.
    fn summarise(&self) {
        if let (Some(p50), Some(max)) = (self.latency_us.quantile(0.5), self.latency_us.quantile(1.0)) {
            eprintln!("bench: latency ms: p50 {:.3}, max {:.3}", p50 as f64 / 1e3, max as f64 / 1e3);
        }
        if self.pushed_back > 0 {
            eprintln!("bench: {} request(s) answered 429 or 503 and retried", self.pushed_back);
        }
        if self.refused > 0 {
            eprintln!("bench: {} item(s) refused in accepted requests (not counted)", self.refused);
        }
    }
}

/// Runs the bench on its own runtime, `bodies(c)` feeding connection `c`,
/// and prints the JSON line (see [`Stats::json_line`]), also when it fails.
pub fn run<B: Bodies>(target: Target, bodies: impl FnMut(usize) -> B, noun: &str, extra: &str) -> anyhow::Result<()> {
    let runtime = super::runtime()?;
    let (stats, seconds, result) = runtime.block_on(bench(Arc::new(target), bodies));
    println!("{}", stats.json_line(seconds, noun, extra));
    stats.summarise();
    result
}

/// Runs every connection to the deadline and merges what they achieved;
/// the error, if any, is the first connection's.
pub async fn bench<B: Bodies>(
    target: Arc<Target>,
    mut bodies: impl FnMut(usize) -> B,
) -> (Stats, f64, anyhow::Result<()>) {
    let start = Instant::now();
    let deadline = start + target.duration;
    let head: Arc<str> = target.head().into();
    let mut tasks = JoinSet::new();
    for c in 0..target.connections {
        tasks.spawn(connection(target.clone(), head.clone(), bodies(c), deadline));
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
async fn connection<B: Bodies>(
    t: Arc<Target>,
    head: Arc<str>,
    mut bodies: B,
    deadline: Instant,
) -> (Stats, anyhow::Result<()>) {
    let mut stats = Stats::default();
    let result = post_until(&t, &head, &mut bodies, deadline, &mut stats).await;
    (stats, result.with_context(|| format!("connection to {}", t.addr)))
}

async fn post_until(
    t: &Target,
    head: &str,
    bodies: &mut impl Bodies,
    deadline: Instant,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut conn = Conn::open(&t.addr, t.tls.as_ref()).await?;
    let mut request = Vec::new();
    while Instant::now() < deadline {
        let (body, items) = bodies.next();
        request.clear();
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        let sent = Instant::now();
        let answer = conn.exchange(&request).await?;
        match answer.status {
            s if s == t.route.durable => {
                let accepted = bodies.accepted(&answer.body, items)?;
                stats.items += accepted;
                stats.refused += items.saturating_sub(accepted);
                stats.latency_us.record(sent.elapsed().as_micros() as u64);
            }
            429 | 503 => {
                stats.pushed_back += 1;
                let secs = answer.retry_after.unwrap_or(1).min(MAX_RETRY_AFTER_SECS);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            status => bail!("answered {status}: {}", String::from_utf8_lossy(&answer.body)),
        }
        if answer.close {
            conn = Conn::open(&t.addr, t.tls.as_ref()).await?;
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
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::net::TcpListener;

    const ROUTE: Route =
        Route { path: "/v1/x", content_type: "application/x-test", content_encoding: Some("gzip"), durable: 299 };

    fn load(tls: &BenchTlsArg) -> Load<'_> {
        Load {
            addr: "127.0.0.1:1",
            key: "000102030405060708090a0b0c0d0e0f",
            connections: 1,
            batch_size: 1,
            duration: 1.0,
            tls,
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let tls = BenchTlsArg::default();
        let ok = load(&tls);
        assert!(ok.check(ROUTE, None).is_ok());
        assert!(ok.check(ROUTE, Some(Path::new("/no/such/ca.pem"))).is_err());
        for bad in [
            Load { key: "nope", ..ok },
            Load { connections: 0, ..ok },
            Load { batch_size: 0, ..ok },
            Load { batch_size: MAX_BATCH + 1, ..ok },
            Load { duration: f64::NAN, ..ok },
            Load { duration: 0.0, ..ok },
        ] {
            assert!(bad.check(ROUTE, None).is_err(), "{bad:?}");
        }
        let named = BenchTlsArg { server_name: Some("localhost".into()) };
        assert!(load(&named).check(ROUTE, None).is_err(), "--server-name needs --ca-file");
    }

    #[test]
    fn the_line_has_the_documented_keys() {
        let mut stats = Stats { items: 1000, ..Stats::default() };
        stats.latency_us.record(1500);
        let v: serde_json::Value = serde_json::from_str(&stats.json_line(2.0, "records", ",\"x\":\"y\"")).unwrap();
        assert_eq!((v["records"].as_u64(), v["acked_records_per_sec"].as_f64()), (Some(1000), Some(500.0)));
        assert!(v["p99_ms"].as_f64().unwrap() >= 1.5 && v["seconds"].as_f64() == Some(2.0));
        assert_eq!(v["x"], "y");
        let empty: serde_json::Value = serde_json::from_str(&Stats::default().json_line(1.0, "events", "")).unwrap();
        assert!(empty["p99_ms"].is_null() && empty["events"] == 0);
    }

    /// Bodies of 10 items; a durable answer whose body is a number accepts that many.
    struct Tens;

    impl Bodies for Tens {
        fn next(&mut self) -> (&[u8], u64) {
            (b"0123456789", 10)
        }

        fn accepted(&mut self, body: &[u8], items: u64) -> anyhow::Result<u64> {
            Ok(std::str::from_utf8(body)?.parse::<u64>().unwrap_or(items))
        }
    }

    /// A server answering every request with `answers[n % len]` (status,
    /// extra headers, body); counts requests and checks their heads.
    async fn fake_server(answers: &'static [(u16, &'static str, &'static str)]) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push_str(&line);
                        }
                        assert!(head.starts_with("POST /v1/x HTTP/1.1\r\n"), "{head}");
                        assert!(head.contains("Authorization: Bearer 000102030405060708090a0b0c0d0e0f\r\n"));
                        assert!(head.contains("Content-Type: application/x-test\r\nContent-Encoding: gzip\r\n"));
                        let mut body = vec![0; 10];
                        read.read_exact(&mut body).await.unwrap();
                        let n = seen.fetch_add(1, Ordering::Relaxed) as usize;
                        let (status, headers, body) = answers[n % answers.len()];
                        let answer =
                            format!("HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len());
                        write.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (addr, count)
    }

    fn target(addr: &str, seconds: f64) -> Arc<Target> {
        let tls = BenchTlsArg::default();
        Arc::new(Load { addr, connections: 2, duration: seconds, ..load(&tls) }.check(ROUTE, None).unwrap())
    }

    #[tokio::test]
    async fn durable_answers_count_what_they_accepted() {
        // Every other answer accepts only 4 of the 10 items.
        let (addr, requests) = fake_server(&[(299, "", ""), (299, "", "4")]).await;
        let (stats, seconds, result) = bench(target(&addr, 0.3), |_| Tens).await;
        result.unwrap();
        let n = requests.load(Ordering::Relaxed);
        assert!(n > 2 && seconds >= 0.3);
        assert_eq!(stats.items + stats.refused, n * 10);
        assert_eq!(stats.refused, n / 2 * 6);
        assert_eq!(stats.latency_us.count(), n);
    }

    #[tokio::test]
    async fn pushback_is_waited_out_and_other_statuses_fail_the_run() {
        let (addr, _) = fake_server(&[(503, "Retry-After: 0\r\n", ""), (299, "", "")]).await;
        let (stats, _, result) = bench(target(&addr, 0.2), |_| Tens).await;
        result.unwrap();
        assert!(stats.pushed_back > 0 && stats.items > 0);
        let (addr, _) = fake_server(&[(299, "", ""), (400, "", "no good")]).await;
        let (stats, _, result) = bench(target(&addr, 5.0), |_| Tens).await;
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("answered 400: no good"), "{err}");
        assert!(stats.items >= 10);
    }
}
