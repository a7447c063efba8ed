//! `sluice bench hostile`: peers that try to hold a listener's slots, memory
//! or time, for measuring what they cost the honest clients (run it beside
//! `sluice bench tcp --acked`) and what each of them gets.
//!
//! ```text
//! sluice bench hostile [--tcp ADDR] [--http ADDR] [--syslog ADDR] [--admin ADDR]
//!                      [--key KEY] [--per-kind N] [--spread IPS] [--duration SECS]
//! ```
//!
//! Each kind runs `--per-kind` loops; a loop connects, plays its part until
//! the server closes the connection, and reconnects (after 50 ms), until the
//! time is up. With `--spread N` (loopback targets only) the loops connect
//! from 127.0.0.2 … 127.0.0.(N+1), so a per-address cap does not stop them
//! all at once. The kinds:
//!
//! | kind | what it sends |
//! |---|---|
//! | `tcp_header` | a Tell length header announcing 16 MiB, then nothing |
//! | `tcp_partial` | a header announcing 512 KiB, 1 KiB of it, then nothing |
//! | `tcp_trickle` | a header announcing 512 KiB, then one byte a second |
//! | `tcp_idle` | nothing at all |
//! | `syslog_stall` | an octet count of 99999 and a few bytes, then nothing |
//! | `http_trickle` | (with `--key`) a POST claiming 1 MiB, one body byte every 2 s |
//! | `http_head` | a request head, one byte every 2 s |
//! | `admin_head` | a request head, one byte every 2 s |
//! | `admin_chunked` | `GET /health` with a chunked body that never comes |
//!
//! One JSON line on stdout: per kind, connections opened, how many the
//! server closed, the time from connect to close (p50, max) and how many
//! were still open at the end.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::parse_key;

/// Pause before a loop reconnects.
const RECONNECT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, clap::Args)]
pub struct HostileBenchArgs {
    /// Raw TCP source to attack.
    #[arg(long)]
    pub tcp: Option<String>,
    /// HTTP ingest source to attack.
    #[arg(long)]
    pub http: Option<String>,
    /// Syslog TCP listener to attack.
    #[arg(long)]
    pub syslog: Option<String>,
    /// Admin API to attack.
    #[arg(long)]
    pub admin: Option<String>,
    /// A valid streaming key, for the kind that needs one (`http_trickle`).
    #[arg(long)]
    pub key: Option<String>,
    /// Loops per kind.
    #[arg(long, default_value_t = 16)]
    pub per_kind: usize,
    /// Connect from this many loopback addresses (127.0.0.2 on); 0: the default route.
    #[arg(long, default_value_t = 0)]
    pub spread: u8,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    TcpHeader,
    TcpPartial,
    TcpTrickle,
    TcpIdle,
    SyslogStall,
    HttpTrickle,
    HttpHead,
    AdminHead,
    AdminChunked,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::TcpHeader => "tcp_header",
            Kind::TcpPartial => "tcp_partial",
            Kind::TcpTrickle => "tcp_trickle",
            Kind::TcpIdle => "tcp_idle",
            Kind::SyslogStall => "syslog_stall",
            Kind::HttpTrickle => "http_trickle",
            Kind::HttpHead => "http_head",
            Kind::AdminHead => "admin_head",
            Kind::AdminChunked => "admin_chunked",
        }
    }
}

/// What one kind's loops saw.
#[derive(Debug, Default)]
struct Seen {
    opened: u64,
    /// Time from connect to the server's close, in ms.
    closed_after_ms: Vec<u64>,
    open_at_end: u64,
    connect_failed: u64,
}

type Report = Arc<Mutex<BTreeMap<Kind, Seen>>>;

pub fn run(args: &HostileBenchArgs) -> anyhow::Result<()> {
    let plan = plan(args)?;
    if plan.is_empty() {
        bail!("name at least one target: --tcp, --http, --syslog or --admin");
    }
    let key = args.key.as_deref().map(parse_key).transpose().context("--key")?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let report: Report = Arc::default();
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut tasks = JoinSet::new();
        let mut n = 0usize;
        for (kind, target) in plan {
            for _ in 0..args.per_kind {
                let from = source_ip(args.spread, n);
                n += 1;
                let ctx = Loop { kind, target, from, key, deadline, report: report.clone() };
                tasks.spawn(ctx.run());
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    println!("{}", summary(&report));
    Ok(())
}

fn plan(args: &HostileBenchArgs) -> anyhow::Result<Vec<(Kind, SocketAddr)>> {
    let addr = |a: &Option<String>| a.as_deref().map(|s| s.parse::<SocketAddr>().with_context(|| format!("`{s}`")));
    let mut out = Vec::new();
    if let Some(t) = addr(&args.tcp).transpose()? {
        out.extend([Kind::TcpHeader, Kind::TcpPartial, Kind::TcpTrickle, Kind::TcpIdle].map(|k| (k, t)));
    }
    if let Some(t) = addr(&args.syslog).transpose()? {
        out.push((Kind::SyslogStall, t));
    }
    if let Some(t) = addr(&args.http).transpose()? {
        out.push((Kind::HttpHead, t));
        if args.key.is_some() {
            out.push((Kind::HttpTrickle, t));
        }
    }
    if let Some(t) = addr(&args.admin).transpose()? {
        out.extend([Kind::AdminHead, Kind::AdminChunked].map(|k| (k, t)));
    }
    Ok(out)
}

fn source_ip(spread: u8, n: usize) -> Option<IpAddr> {
    (spread > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % usize::from(spread)) as u8)))
}

struct Loop {
    kind: Kind,
    target: SocketAddr,
    from: Option<IpAddr>,
    key: Option<[u8; 16]>,
    deadline: Instant,
    report: Report,
}

impl Loop {
    async fn run(self) {
        while Instant::now() < self.deadline {
            let Ok(mut stream) = self.connect().await else {
                self.note(|s| s.connect_failed += 1);
                tokio::time::sleep(RECONNECT).await;
                continue;
            };
            self.note(|s| s.opened += 1);
            let opened = Instant::now();
            match tokio::time::timeout_at(self.deadline, self.play(&mut stream)).await {
                Ok(()) => self.note(|s| s.closed_after_ms.push(opened.elapsed().as_millis() as u64)),
                Err(_) => self.note(|s| s.open_at_end += 1),
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }

    fn note(&self, f: impl FnOnce(&mut Seen)) {
        f(self.report.lock().unwrap_or_else(|e| e.into_inner()).entry(self.kind).or_default());
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = if self.target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = self.from {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(self.target).await
    }

    /// Plays the kind's part until the server closes the connection.
    async fn play(&self, s: &mut TcpStream) {
        let host = self.target;
        let (first, trickle): (Vec<u8>, Option<(Vec<u8>, Duration)>) = match self.kind {
            Kind::TcpHeader => ((16u32 << 20).to_be_bytes().to_vec(), None),
            Kind::TcpPartial => ([&(512u32 << 10).to_be_bytes()[..], &[0u8; 1024]].concat(), None),
            Kind::TcpTrickle => ((512u32 << 10).to_be_bytes().to_vec(), Some((vec![0], Duration::from_secs(1)))),
            Kind::TcpIdle => (Vec::new(), None),
            Kind::SyslogStall => (b"99999 <13>1 2026-01-01T00:00:00Z host app".to_vec(), None),
            Kind::HttpTrickle => {
                let key = self.key.map(hex::encode).unwrap_or_default();
                let head = format!(
                    "POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/x-ndjson\r\nContent-Length: 1048576\r\n\r\n"
                );
                (head.into_bytes(), Some((b"{".to_vec(), Duration::from_secs(2))))
            }
            Kind::HttpHead | Kind::AdminHead => (b"G".to_vec(), Some((b"E".to_vec(), Duration::from_secs(2)))),
            Kind::AdminChunked => {
                let head = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n");
                (head.into_bytes(), None)
            }
        };
        if s.write_all(&first).await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        let mut tick = trickle.as_ref().map(|(_, every)| tokio::time::interval_at(Instant::now() + *every, *every));
        loop {
            tokio::select! {
                r = s.read(&mut sink) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = next_tick(&mut tick), if tick.is_some() => {
                    if let Some((byte, _)) = &trickle
                        && s.write_all(byte).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// The next trickle tick; never, for kinds that do not trickle.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn summary(report: &Report) -> String {
    let report = report.lock().unwrap_or_else(|e| e.into_inner());
    let mut kinds = serde_json::Map::new();
    for (kind, seen) in report.iter() {
        let mut closed = seen.closed_after_ms.clone();
        closed.sort_unstable();
        let p50 = closed.get(closed.len() / 2).copied();
        kinds.insert(
            kind.name().into(),
            serde_json::json!({
                "connections": seen.opened,
                "closed_by_server": closed.len(),
                "closed_after_ms_p50": p50,
                "closed_after_ms_max": closed.last(),
                "open_at_end": seen.open_at_end,
                "connect_failed": seen.connect_failed,
            }),
        );
    }
    serde_json::json!({ "kinds": kinds }).to_string()
}
