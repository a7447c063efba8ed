//! `sluice bench tcp`: a load generator for the raw TCP source.
//!
//! ```text
//! sluice bench tcp --addr ADDR --key KEY [--connections C] [--batch-size B]
//!                  [--event-bytes S] [--duration SECS] [--rate EVENTS_PER_SEC] [--acked]
//! ```
//!
//! Each of the C connections sends Tell `Batch`es of B events for SECS
//! seconds:
//!
//! - with `--acked`, as acked frames (batch ids 1, 2, 3, … per connection,
//!   a fresh random producer per connection) with up to 8 batches in flight;
//!   the time from writing a batch to reading its ack goes into a latency
//!   histogram. Only batches acknowledged `stored` or `duplicate` count;
//!   other statuses are counted and summarised on stderr.
//! - without it, as plain Tell frames, exactly as the Tell SDK sends them;
//!   events count once written to the socket.
//!
//! `--rate` caps the total events per second, split evenly over the
//! connections and paced per connection in whole batches (a token bucket
//! that may catch up by at most the in-flight window after a stall). The
//! latency it reports is measured from the actual write, so run it well
//! below the maximum rate, e.g. at half.
//!
//! When the time is up, sending stops and outstanding acks are awaited for
//! at most 5 s (still missing after that fails the run). Then one JSON line
//! goes to stdout:
//!
//! ```text
//! {"events":N,"seconds":S,"acked_events_per_sec":R,"mb_per_sec":M,"p50_ack_ms":P,"p99_ack_ms":Q}
//! ```
//!
//! `mb_per_sec` counts frame bytes (headers included) acknowledged, or
//! written, per second, in 10^6 bytes; the latencies are `null` without
//! `--acked`. If the server goes away (connection refused or reset, EOF
//! with acks outstanding) the run stops, the line still reports what was
//! acknowledged, and the command fails. Everything else goes to stderr.
//!
//! ## The events
//!
//! Payloads look like product analytics: JSON objects for event names such
//! as `Page Viewed`, `Button Clicked`, `Product Added`, `Checkout Started`
//! or `Order Completed` (15 names, weighted by how common they are), each
//! with its own properties (paths, titles, referrers, button and product
//! names, plans, prices, currencies, order and product ids, durations),
//! context (country, browser) and then, in random order until the payload
//! is about `--event-bytes` long, more properties drawn from a vocabulary
//! (OS, locale, time zone, city, screen size, UTM parameters, experiment and
//! variant, timings, account and team fields, feature flags, user agent,
//! …), then for large sizes an `items` array of products and a `tags`
//! array. Values come from lists and ranges; no filler text is ever
//! repeated. Each event also carries a fresh random `event_id`, its
//! simulated user's `user_id` and a per-connection `seq`, and is sent with
//! that user's device id (a UUID), a session id that rotates every 1–200
//! events, a service (`web`, `ios`, `android`, `api`) and a timestamp up to
//! 3 s before sending. Payloads are never shorter than one event's own
//! properties plus the ids (about 150–250 bytes).
//!
//! To stay cheap on a machine it shares with the daemon, the bench builds a
//! pool of up to 65,536 distinct property bodies (at most 64 MiB) at start
//! and per event only adds the ids and copies the next body of a run that
//! starts at random: about 7 million events per second on one core. It runs on one tokio worker
//! thread (`SLUICE_BENCH_THREADS` overrides).

mod hist;
pub mod hostile;
pub mod http;
pub mod login;
pub mod otlp;
mod otlp_workload;
mod post;
mod syslog;
pub mod tail;
pub mod workload;

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use self::hist::Histogram;
use self::workload::{Generator, Pool};
use crate::cli::{BenchCommand, BenchTlsArg, TcpBenchArgs};
use crate::client::{AckedClient, ClientError, parse_key};
use crate::codec::ack::{Ack, Status};
use crate::codec::frame::ACKED_HEADER_LEN;
use crate::net::tls::ClientTls;

/// How long to wait for outstanding acks once sending has stopped.
const DRAIN: Duration = Duration::from_secs(5);
/// The six ack statuses, indexed by their wire value.
const STATUSES: [Status; 6] =
    [Status::Stored, Status::Duplicate, Status::BadKey, Status::Malformed, Status::TooLarge, Status::Unavailable];

/// Runs a bench; with `ca_file` (the global `--ca-file`) the tcp, syslog,
/// http and otlp generators connect over TLS.
pub fn run(cmd: &BenchCommand, ca_file: Option<&Path>) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Tcp(args) => run_tcp(args, ca_file),
        BenchCommand::Http(args) => http::run(args, ca_file),
        BenchCommand::Otlp(args) => otlp::run(args, ca_file),
        BenchCommand::Syslog(args) => syslog::run(args, ca_file),
        BenchCommand::Login(args) => login::run(args),
        BenchCommand::Tail(args) => tail::run(args),
        BenchCommand::Hostile(args) => hostile::run(args),
    }
}

/// A small runtime for a load generator: one worker unless
/// `SLUICE_BENCH_THREADS` says otherwise, so the bench leaves the daemon room.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = match std::env::var("SLUICE_BENCH_THREADS") {
        Ok(v) => {
            v.parse::<usize>().ok().filter(|n| (1..=64).contains(n)).context("SLUICE_BENCH_THREADS must be 1..=64")?
        }
        Err(_) => 1,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the bench runtime")
}

/// `sluice bench tcp`: runs the bench on its own small runtime and prints
/// the JSON line, also when the run fails.
/// The TLS a generator connects with: none without `ca_file`, else
/// trusting its CAs for `server_name` (default: the host of `addr`).
pub(crate) fn client_tls(addr: &str, ca_file: Option<&Path>, arg: &BenchTlsArg) -> anyhow::Result<Option<ClientTls>> {
    let Some(ca) = ca_file else {
        if arg.server_name.is_some() {
            bail!("--server-name needs --ca-file");
        }
        return Ok(None);
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let name = arg.server_name.as_deref().unwrap_or(host.trim_matches(['[', ']']));
    Ok(Some(ClientTls::new(ca, name).context("--ca-file")?))
}

pub fn run_tcp(args: &TcpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::from_args(args, ca_file)?;
    let runtime = runtime()?;
    let (report, result) = runtime.block_on(bench(&settings));
    println!("{}", report.json_line());
    report.summarise();
    result
}

/// Validated bench settings.
#[derive(Debug, Clone)]
struct Settings {
    addr: String,
    key: [u8; 16],
    connections: usize,
    batch_size: usize,
    event_bytes: usize,
    duration: Duration,
    /// Events per second per connection.
    rate_per_connection: Option<f64>,
    acked: bool,
    /// Acked batches in flight per connection.
    window: usize,
    /// How long to wait for outstanding acks after the run.
    drain: Duration,
    /// Set with --ca-file: connections speak TLS.
    tls: Option<ClientTls>,
}

impl Settings {
    fn from_args(a: &TcpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<Settings> {
        let key = parse_key(&a.key).context("--key")?;
        if a.connections == 0 || a.connections > 10_000 {
            bail!("--connections must be 1..=10000, not {}", a.connections);
        }
        if a.batch_size == 0 || a.batch_size > 1_000_000 {
            bail!("--batch-size must be 1..=1000000, not {}", a.batch_size);
        }
        if a.event_bytes > 1 << 20 {
            bail!("--event-bytes must be at most 1 MiB, not {}", a.event_bytes);
        }
        if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 1e6) {
            bail!("--duration must be a positive number of seconds, not {}", a.duration);
        }
        if a.rate == Some(0) {
            bail!("--rate must be positive");
        }
        if a.window == 0 || a.window > 1024 {
            bail!("--window must be 1..=1024, not {}", a.window);
        }
        if ca_file.is_some() && !a.acked {
            bail!("--ca-file needs --acked");
        }
        let tls = client_tls(&a.addr, ca_file, &a.tls)?;
        Ok(Settings {
            addr: a.addr.clone(),
            key,
            connections: a.connections,
            batch_size: a.batch_size,
            event_bytes: a.event_bytes,
            duration: Duration::from_secs_f64(a.duration),
            rate_per_connection: a.rate.map(|r| r as f64 / a.connections as f64),
            acked: a.acked,
            window: a.window,
            drain: DRAIN,
            tls,
        })
    }
}

/// What one connection (or, merged, the whole run) achieved.
#[derive(Debug, Default)]
struct Stats {
    /// Events acknowledged as durable (acked) or written (plain).
    events: u64,
    /// Frame bytes of those events.
    bytes: u64,
    /// Acks received, by status.
    statuses: [u64; 6],
    /// Send → ack, in microseconds.
    latency_us: Histogram,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.events += other.events;
        self.bytes += other.bytes;
        for (a, b) in self.statuses.iter_mut().zip(other.statuses) {
            *a += b;
        }
        self.latency_us.merge(&other.latency_us);
    }

    fn durable_acks(&self) -> u64 {
        self.statuses[Status::Stored as usize] + self.statuses[Status::Duplicate as usize]
    }
}

/// The outcome of a run, as printed.
#[derive(Debug)]
struct Report {
    stats: Stats,
    seconds: f64,
    acked: bool,
}

impl Report {
    /// The one stdout line, keys in the documented order.
    fn json_line(&self) -> String {
        let secs = self.seconds.max(1e-9);
        let ms = |q: f64| match self.stats.latency_us.quantile(q) {
            Some(us) if self.acked => format!("{:.3}", us as f64 / 1000.0),
            _ => "null".to_owned(),
        };
        format!(
            "{{\"events\":{},\"seconds\":{:.3},\"acked_events_per_sec\":{:.0},\"mb_per_sec\":{:.3},\"p50_ack_ms\":{},\"p99_ack_ms\":{}}}",
            self.stats.events,
            self.seconds,
            self.stats.events as f64 / secs,
            self.stats.bytes as f64 / secs / 1e6,
            ms(0.5),
            ms(0.99),
        )
    }

    /// On stderr: the latency distribution, and statuses other than
    /// stored/duplicate if any.
    fn summarise(&self) {
        let h = &self.stats.latency_us;
        if let (Some(p90), Some(p999), Some(max)) = (h.quantile(0.9), h.quantile(0.999), h.quantile(1.0)) {
            eprintln!(
                "bench: ack latency ms: p90 {:.3}, p99.9 {:.3}, max {:.3}",
                p90 as f64 / 1e3,
                p999 as f64 / 1e3,
                max as f64 / 1e3
            );
        }
        let refused: Vec<String> = STATUSES[2..]
            .iter()
            .filter(|s| self.stats.statuses[**s as usize] > 0)
            .map(|s| format!("{}={}", s.name(), self.stats.statuses[*s as usize]))
            .collect();
        if !refused.is_empty() {
            eprintln!("bench: batches not stored: {}", refused.join(" "));
        }
    }
}

/// Runs every connection to the end and merges what they achieved. The
/// error, if any, is the first connection's failure.
async fn bench(s: &Settings) -> (Report, anyhow::Result<()>) {
    let seed: u64 = rand::random();
    let pool = Arc::new(Pool::new(s.event_bytes, seed));
    eprintln!(
        "bench: {} connection(s) to {}, {} events/batch, ~{} B/event ({} distinct bodies), {}, {:.1} s, rate {}",
        s.connections,
        s.addr,
        s.batch_size,
        s.event_bytes,
        pool.distinct_bodies(),
        if s.acked { "acked" } else { "plain Tell frames" },
        s.duration.as_secs_f64(),
        s.rate_per_connection.map_or("unlimited".to_owned(), |r| format!("{:.0} events/s", r * s.connections as f64)),
    );
    let stop = CancellationToken::new();
    let start = Instant::now();
    let deadline = start + s.duration;
    let mut tasks = JoinSet::new();
    for c in 0..s.connections {
        let conn = Connection {
            settings: s.clone(),
            generator: Generator::new(pool.clone(), seed.wrapping_add(c as u64 + 1)),
            pacer: Pacer::new(s, c, start),
            deadline,
            stop: stop.clone(),
            stats: Stats::default(),
        };
        tasks.spawn(conn.run(c));
    }
    let ctrl_c = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("bench: interrupted, stopping");
                stop.cancel();
            }
        })
    };
    let mut stats = Stats::default();
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let (conn_stats, outcome) = match joined {
            Ok(done) => done,
            Err(e) => (Stats::default(), Err(anyhow!("bench connection task failed: {e}"))),
        };
        stats.merge(&conn_stats);
        if let Err(e) = outcome {
            // The server is likely gone: stop the others too, keep what they got acked.
            stop.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    ctrl_c.abort();
    let seconds = start.elapsed().as_secs_f64();
    // A run that stored nothing because of the key should say so, whatever
    // else went wrong (the server closes connections that keep sending bad keys).
    if s.acked && stats.durable_acks() == 0 && stats.statuses.iter().any(|&n| n > 0) {
        let why = if stats.statuses[Status::BadKey as usize] > 0 {
            "the server refused --key"
        } else {
            "the server stored no batch"
        };
        result = Err(match result {
            Ok(()) => anyhow!(why),
            Err(e) => e.context(why),
        });
    }
    (Report { stats, seconds, acked: s.acked }, result)
}

/// Paces one connection to its share of `--rate`, in whole batches.
#[derive(Debug)]
struct Pacer {
    /// Time between batches; `None` for unlimited.
    interval: Option<Duration>,
    /// When the next batch may go.
    next: Instant,
    /// Batches it may catch up by after a stall (the window).
    catch_up: u32,
}

impl Pacer {
    fn new(s: &Settings, connection: usize, start: Instant) -> Pacer {
        let interval = s.rate_per_connection.map(|r| Duration::from_secs_f64(s.batch_size as f64 / r));
        // Stagger the connections so their batches do not all go at once.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(connection as f64 / s.connections as f64));
        Pacer { interval, next: start + offset, catch_up: s.window as u32 }
    }

    fn ready(&self, now: Instant) -> bool {
        self.interval.is_none() || now >= self.next
    }

    /// Accounts for one batch sent at `now`. After a stall it may catch up
    /// by at most a window of batches, not by everything it missed.
    fn advance(&mut self, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        self.next += interval;
        if let Some(floor) = now.checked_sub(interval * self.catch_up)
            && self.next < floor
        {
            self.next = floor;
        }
    }
}

/// One batch in flight.
#[derive(Debug, Clone, Copy)]
struct Inflight {
    sent: Instant,
    frame_bytes: usize,
}

/// One connection's sender.
struct Connection {
    settings: Settings,
    generator: Generator,
    pacer: Pacer,
    deadline: Instant,
    stop: CancellationToken,
    stats: Stats,
}

impl Connection {
    async fn run(mut self, index: usize) -> (Stats, anyhow::Result<()>) {
        let result = if self.settings.acked {
            self.run_acked().await.map_err(anyhow::Error::from)
        } else {
            self.run_plain().await.map_err(anyhow::Error::from)
        };
        let result = result.with_context(|| format!("connection {index} to {}", self.settings.addr));
        if let Err(e) = &result {
            eprintln!("bench: {e:#}");
        }
        (self.stats, result)
    }

    /// Whether to send more: the time is not up and nobody asked to stop.
    fn sending(&self, now: Instant) -> bool {
        now < self.deadline && !self.stop.is_cancelled()
    }

    async fn run_acked(&mut self) -> Result<(), ClientError> {
        let mut client = match &self.settings.tls {
            Some(tls) => AckedClient::connect_tls(&self.settings.addr, tls).await?,
            None => AckedClient::connect(&self.settings.addr).await?,
        };
        let mut inflight: VecDeque<Inflight> = VecDeque::with_capacity(self.settings.window);
        let result = self.acked_loop(&mut client, &mut inflight).await;
        if let Err(ClientError::Io(_)) = &result {
            self.salvage_acks(&mut client, &mut inflight).await;
        }
        result
    }

    /// After an I/O error (typically a write to a server that has gone),
    /// acks it sent before going may still be waiting in the socket: count
    /// them, so that `events` is everything acknowledged.
    async fn salvage_acks(&mut self, client: &mut AckedClient, inflight: &mut VecDeque<Inflight>) {
        while let Some(&batch) = inflight.front() {
            match tokio::time::timeout(Duration::from_millis(200), client.recv_ack()).await {
                Ok(Ok(ack)) => {
                    inflight.pop_front();
                    self.record(&ack, batch);
                }
                _ => return,
            }
        }
    }

    /// Sends paced batches with up to `--window` in flight until the time is
    /// up, then waits (bounded) for the outstanding acks.
    async fn acked_loop(
        &mut self,
        client: &mut AckedClient,
        inflight: &mut VecDeque<Inflight>,
    ) -> Result<(), ClientError> {
        let mut batch = Vec::new();
        let mut next_id = 1u64;
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let sending = drain_until.is_none() && self.sending(now);
            if !sending && drain_until.is_none() {
                drain_until = Some(now + self.settings.drain);
            }
            let window = self.settings.window;
            if sending && inflight.len() < window && self.pacer.ready(now) {
                while inflight.len() < window && self.pacer.ready(Instant::now()) {
                    batch.clear();
                    self.generator.batch_into(&mut batch, &self.settings.key, next_id, self.settings.batch_size);
                    let sent = Instant::now();
                    client.send(next_id, &batch).await?;
                    inflight.push_back(Inflight { sent, frame_bytes: ACKED_HEADER_LEN + batch.len() });
                    next_id += 1;
                    self.pacer.advance(sent);
                }
                client.flush().await?;
                continue;
            }
            if inflight.is_empty() && !sending {
                return Ok(());
            }
            // Wake for the next paced batch, the end of the run, or give up draining.
            let wake = match drain_until {
                Some(until) => until,
                None if inflight.len() < window && self.pacer.interval.is_some() => self.pacer.next.min(self.deadline),
                None => self.deadline,
            };
            tokio::select! {
                ack = client.recv_ack(), if !inflight.is_empty() => {
                    let ack = ack?;
                    if let Some(batch) = inflight.pop_front() {
                        self.record(&ack, batch);
                    }
                }
                _ = self.stop.cancelled(), if sending => {}
                _ = sleep_until(wake) => {
                    if drain_until.is_some() {
                        // A server that holds acks this long is failing the run.
                        let (n, drain) = (inflight.len(), self.settings.drain);
                        let msg = format!("{n} ack(s) still outstanding {drain:?} after the run");
                        return Err(ClientError::Io(io::Error::new(io::ErrorKind::TimedOut, msg)));
                    }
                }
            }
        }
    }

    fn record(&mut self, ack: &Ack, batch: Inflight) {
        self.stats.statuses[ack.status as usize] += 1;
        if ack.status.is_durable() {
            self.stats.events += self.settings.batch_size as u64;
            self.stats.bytes += batch.frame_bytes as u64;
            self.stats.latency_us.record(batch.sent.elapsed().as_micros() as u64);
        }
    }

    /// Plain Tell frames: what the Tell SDK sends, never answered.
    async fn run_plain(&mut self) -> Result<(), ClientError> {
        let mut stream = TcpStream::connect(&self.settings.addr).await?;
        let _ = stream.set_nodelay(true);
        let mut frame = Vec::new();
        let mut batch = Vec::new();
        let mut batch_id = 1u64;
        loop {
            let now = Instant::now();
            if !self.sending(now) {
                break;
            }
            if !self.pacer.ready(now) {
                let wake = self.pacer.next.min(self.deadline);
                tokio::select! {
                    _ = sleep_until(wake) => {}
                    _ = self.stop.cancelled() => {}
                }
                continue;
            }
            // tell-encoding writes absolute offsets, so a batch must start at
            // the beginning of its own buffer: encode, then frame.
            batch.clear();
            self.generator.batch_into(&mut batch, &self.settings.key, batch_id, self.settings.batch_size);
            frame.clear();
            crate::codec::frame::encode_tell(&batch, &mut frame);
            stream.write_all(&frame).await?;
            self.stats.events += self.settings.batch_size as u64;
            self.stats.bytes += frame.len() as u64;
            batch_id += 1;
            self.pacer.advance(now);
        }
        stream.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::{Frame, FrameDecoder};
    use bytes::BytesMut;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_util::codec::Decoder;

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Answer every acked frame `stored`.
        Ack,
        /// Answer this many, then close the connection.
        CloseAfter(u64),
        /// Read frames, never answer.
        Silent,
    }

    /// A fake raw TCP source: answers acked frames per `mode` and counts
    /// Tell frames (and, when silent, the acked frames it leaves unanswered).
    async fn fake_server(mode: Mode) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tell_frames = Arc::new(AtomicU64::new(0));
        let counter = tell_frames.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let (mut decoder, mut buf) = (FrameDecoder::new(64 << 20), BytesMut::new());
                    let mut acked = 0;
                    loop {
                        match decoder.decode(&mut buf).unwrap() {
                            Some(Frame::Acked { .. }) if mode == Mode::Silent => {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Frame::Acked { header, batch }) => {
                                crate::codec::tell::decode_batch(&batch).expect("a valid Tell batch");
                                let ack =
                                    Ack { status: Status::Stored, batch_id: header.batch_id, first_seq: 1, count: 1 };
                                write.write_all(&ack.encode()).await.unwrap();
                                acked += 1;
                                if mode == Mode::CloseAfter(acked) {
                                    return;
                                }
                            }
                            // Count only frames a real server would accept.
                            Some(Frame::Tell { batch }) => {
                                let view = crate::codec::tell::decode_batch(&batch).expect("a valid Tell batch");
                                let mut block = crate::record::BlockBuilder::default();
                                crate::codec::tell::append_items(&view, 1, &mut block).expect("valid items");
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Frame::Oversized { .. } | Frame::ReservedFlags { .. }) => {
                                panic!("the bench sent an oversized or flagged frame")
                            }
                            None if read.read_buf(&mut buf).await.unwrap_or(0) == 0 => return,
                            None => {}
                        }
                    }
                });
            }
        });
        (addr, tell_frames)
    }

    fn settings(addr: &str, acked: bool) -> Settings {
        Settings::from_args(
            &TcpBenchArgs {
                addr: addr.to_owned(),
                key: "000102030405060708090a0b0c0d0e0f".to_owned(),
                connections: 2,
                batch_size: 50,
                event_bytes: 200,
                duration: 0.3,
                rate: None,
                acked,
                window: 8,
                tls: BenchTlsArg::default(),
            },
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn acked_run_counts_acknowledged_events_and_latency() {
        let (addr, _) = fake_server(Mode::Ack).await;
        let (report, result) = bench(&settings(&addr, true)).await;
        result.unwrap();
        assert!(report.stats.events > 0 && report.stats.events % 50 == 0);
        assert_eq!(report.stats.events, report.stats.durable_acks() * 50);
        assert!(report.stats.latency_us.count() > 0);
        let line: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        assert!(line["p50_ack_ms"].as_f64().is_some() && line["p99_ack_ms"].as_f64().is_some());
        assert_eq!(line["events"].as_u64(), Some(report.stats.events));
    }

    #[tokio::test]
    async fn plain_run_counts_written_events_and_has_no_latency() {
        let (addr, frames) = fake_server(Mode::Ack).await;
        let (report, result) = bench(&settings(&addr, false)).await;
        result.unwrap();
        assert!(report.stats.events > 0);
        let line: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        assert!(line["p50_ack_ms"].is_null() && line["p99_ack_ms"].is_null());
        // Give the server a moment to read the last frames.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(frames.load(Ordering::Relaxed) * 50, report.stats.events);
    }

    #[tokio::test]
    async fn rate_paces_the_batches() {
        let (addr, _) = fake_server(Mode::Ack).await;
        let mut s = settings(&addr, true);
        // 2 connections × 1000 events/s for 0.5 s = 1000 events = 20 batches.
        s.rate_per_connection = Some(1000.0);
        s.duration = Duration::from_millis(500);
        let (report, result) = bench(&s).await;
        result.unwrap();
        let batches = report.stats.events / 50;
        assert!((14..=22).contains(&batches), "{batches} batches");
    }

    #[tokio::test]
    async fn server_going_away_fails_but_reports_what_was_acknowledged() {
        let (addr, _) = fake_server(Mode::CloseAfter(3)).await;
        let mut s = settings(&addr, true);
        s.connections = 1;
        s.duration = Duration::from_secs(5);
        let started = std::time::Instant::now();
        let (report, result) = bench(&s).await;
        // Broken pipe, reset or EOF, depending on who gets there first.
        assert!(result.is_err());
        assert_eq!(report.stats.events, 3 * 50);
        assert!(started.elapsed() < Duration::from_secs(2), "stops at once");
        let line: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        assert_eq!(line["events"].as_u64(), Some(150));
    }

    #[tokio::test]
    async fn acks_still_missing_after_the_drain_fail_the_run() {
        let (addr, _) = fake_server(Mode::Silent).await;
        let mut s = settings(&addr, true);
        s.duration = Duration::from_millis(100);
        s.drain = Duration::from_millis(200);
        let (report, result) = bench(&s).await;
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("still outstanding"), "{err}");
        assert_eq!(report.stats.events, 0);
        assert!(report.seconds < 1.0, "{}", report.seconds);
    }

    #[tokio::test]
    async fn no_more_than_the_window_is_in_flight() {
        let (addr, unanswered) = fake_server(Mode::Silent).await;
        let mut s = settings(&addr, true);
        (s.window, s.duration, s.drain) = (3, Duration::from_millis(300), Duration::from_millis(100));
        let _ = bench(&s).await;
        // Two connections, three batches each, none ever answered.
        assert_eq!(unanswered.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn connection_refused_fails_with_zero_events() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (report, result) = bench(&settings(&addr, true)).await;
        assert!(result.is_err());
        assert_eq!(report.stats.events, 0);
        assert!(report.json_line().starts_with("{\"events\":0,"));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut args = TcpBenchArgs {
            addr: "127.0.0.1:1".to_owned(),
            key: "not-a-key".to_owned(),
            connections: 1,
            batch_size: 1,
            event_bytes: 200,
            duration: 1.0,
            rate: None,
            acked: true,
            window: 8,
            tls: BenchTlsArg::default(),
        };
        assert!(Settings::from_args(&args, None).is_err());
        args.key = "000102030405060708090a0b0c0d0e0f".to_owned();
        assert!(Settings::from_args(&args, None).is_ok());
        for bad in [
            TcpBenchArgs { connections: 0, ..args.clone() },
            TcpBenchArgs { batch_size: 0, ..args.clone() },
            TcpBenchArgs { duration: f64::NAN, ..args.clone() },
            TcpBenchArgs { rate: Some(0), ..args.clone() },
            TcpBenchArgs { window: 0, ..args.clone() },
            TcpBenchArgs { window: 1025, ..args.clone() },
            TcpBenchArgs { tls: BenchTlsArg { server_name: Some("localhost".into()) }, ..args.clone() },
        ] {
            assert!(Settings::from_args(&bad, None).is_err(), "{bad:?}");
        }
        let no_ca = Some(Path::new("/no/such/ca.pem"));
        assert!(Settings::from_args(&args, no_ca).is_err());
        assert!(Settings::from_args(&TcpBenchArgs { acked: false, ..args.clone() }, no_ca).is_err());
    }
}
