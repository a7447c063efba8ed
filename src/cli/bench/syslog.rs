//! `sluice bench syslog`: a load generator for the syslog listeners.
//!
//! ```text
//! sluice [--ca-file PEM] bench syslog --proto tcp|udp --addr ADDR [--connections C]
//!                   [--message-bytes S] [--duration SECS] [--server-name NAME]
//! ```
//!
//! Each of the C connections (UDP: sockets) runs on its own thread and
//! sends RFC 5424 messages of S bytes (`<134>1 TIMESTAMP bench sluice-bench
//! PID - [bench@32473 conn="c" seq="n"] padding`) as fast as it can for SECS
//! seconds: over TCP octet-counted, written in 64 KiB batches; over UDP one
//! datagram per message. With `--ca-file` the TCP connections speak TLS
//! (RFC 5425, for `syslog_tls`). A message counts once written to the
//! socket. Then
//! one JSON line goes to stdout:
//!
//! ```text
//! {"messages":N,"seconds":S,"messages_per_sec":R}
//! ```
//!
//! What the daemon received and stored can be read afterwards from its
//! metrics (`sluice_events_received_total{listener="syslog_tcp"}`), its
//! "syslog listener stopped" log line, or `sluice export`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::{SyslogBenchArgs, SyslogProto};
use crate::net::tls::ClientTls;

/// Bytes written per `write` call over TCP.
const TCP_BATCH: usize = 64 * 1024;
/// Smallest message: room for the longest header and SD (a 7-digit pid, a
/// 4-digit connection and a 20-digit seq), so every message has its size.
const MIN_MESSAGE: usize = 128;

pub fn run(args: &SyslogBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<()> {
    if args.connections == 0 || args.connections > 1024 {
        bail!("--connections must be 1..=1024, not {}", args.connections);
    }
    if !(MIN_MESSAGE..=64 * 1024).contains(&args.message_bytes) {
        bail!("--message-bytes must be {MIN_MESSAGE}..=65536, not {}", args.message_bytes);
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 1e6) {
        bail!("--duration must be a positive number of seconds, not {}", args.duration);
    }
    let addr: SocketAddr =
        args.addr.to_socket_addrs().context("--addr")?.next().with_context(|| format!("--addr {}", args.addr))?;
    let tls = super::client_tls(&args.addr, ca_file, &args.tls)?;
    if tls.is_some() && args.proto == SyslogProto::Udp {
        bail!("--ca-file is for --proto tcp (syslog over TLS)");
    }
    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|c| {
            let (proto, size, tls) = (args.proto, args.message_bytes, tls.clone());
            std::thread::spawn(move || match proto {
                SyslogProto::Tcp => send_tcp(addr, tls.as_ref(), c, size, duration),
                SyslogProto::Udp => send_udp(addr, c, size, duration),
            })
        })
        .collect();
    let mut messages = 0u64;
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok((n, err)) => {
                messages += n;
                if first_error.is_none() {
                    first_error = err;
                }
            }
            Err(_) => first_error = Some(anyhow::anyhow!("a sender thread panicked")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "messages": messages,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "messages_per_sec": (messages as f64 / seconds).round(),
    });
    println!("{line}");
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Message `seq` of connection `conn`, padded to `size` bytes.
fn message(out: &mut Vec<u8>, conn: usize, seq: u64, size: usize) {
    let start = out.len();
    let _ = write!(
        out,
        "<134>1 2024-01-15T10:23:45.123456Z bench sluice-bench {} - [bench@32473 conn=\"{conn}\" seq=\"{seq}\"] ",
        std::process::id()
    );
    // Varied printable padding, so compression sees something like text.
    let mut i = seq as usize;
    while out.len() - start < size {
        out.push(b"abcdefghijklmnopqrstuvwxyz0123456789 "[i % 37]);
        i = i.wrapping_mul(7).wrapping_add(3);
    }
}

fn send_tcp(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    conn: usize,
    size: usize,
    duration: Duration,
) -> (u64, Option<anyhow::Error>) {
    let stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return (0, Some(anyhow::anyhow!("connect {addr}: {e}"))),
    };
    let (sent, result) = match tls {
        None => write_for(stream, conn, size, duration, |_| Ok(())),
        Some(tls) => match tls.connect_blocking(stream) {
            // A TLS sender says it is done (close_notify) before it closes.
            Ok(session) => write_for(session, conn, size, duration, |s| {
                s.conn.send_close_notify();
                s.flush()
            }),
            Err(e) => return (0, Some(anyhow::anyhow!("TLS handshake with {addr}: {e}"))),
        },
    };
    (sent, result.err().map(|e| anyhow::anyhow!("write to {addr}: {e}")))
}

/// Writes octet-counted messages into `stream` until `duration` is up, then
/// calls `finish`; the messages written, and the first error.
fn write_for<W: Write>(
    mut stream: W,
    conn: usize,
    size: usize,
    duration: Duration,
    finish: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> (u64, std::io::Result<()>) {
    let deadline = Instant::now() + duration;
    let (mut sent, mut seq) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(TCP_BATCH + size + 16);
    let mut msg = Vec::with_capacity(size);
    while Instant::now() < deadline {
        buf.clear();
        let mut in_batch = 0;
        while buf.len() < TCP_BATCH {
            msg.clear();
            message(&mut msg, conn, seq, size);
            crate::codec::octet::encode_octet_counted(&msg, &mut buf);
            seq += 1;
            in_batch += 1;
        }
        if let Err(e) = stream.write_all(&buf) {
            return (sent, Err(e));
        }
        sent += in_batch;
    }
    (sent, stream.flush().and_then(|()| finish(&mut stream)))
}

fn send_udp(addr: SocketAddr, conn: usize, size: usize, duration: Duration) -> (u64, Option<anyhow::Error>) {
    let bind: SocketAddr =
        if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => return (0, Some(anyhow::anyhow!("bind: {e}"))),
    };
    let deadline = Instant::now() + duration;
    let mut msg = Vec::with_capacity(size);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            msg.clear();
            message(&mut msg, conn, sent, size);
            // A full socket buffer or an ICMP error: the datagram is lost, as in real life.
            if socket.send_to(&msg, addr).is_ok() {
                sent += 1;
            }
        }
    }
    (sent, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_requested_size_and_parse() {
        for size in [MIN_MESSAGE, 200, 4096] {
            let mut m = Vec::new();
            message(&mut m, 3, 12345, size);
            assert_eq!(m.len(), size);
            let f = crate::codec::syslog::parse(&m, 0, Default::default());
            assert!(f.parsed);
            assert_eq!(f.structured_data[0].1, vec![("conn".into(), "3".into()), ("seq".into(), "12345".into())]);
        }
    }
}
