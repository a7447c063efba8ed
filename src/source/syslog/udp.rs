//! `[sources.syslog_udp]`: syslog over UDP, one datagram one message.
//!
//! Sockets are made with socket2 so the receive buffer can be raised before
//! bind: `SO_RCVBUFFORCE` when the process may (CAP_NET_ADMIN; it ignores
//! `net.core.rmem_max`), else `SO_RCVBUF`, which the kernel caps at
//! `net.core.rmem_max` (`config/sysctl.d/60-sluice-syslog.conf` raises it).
//! With `sockets = N > 1`, N sockets share the address through
//! `SO_REUSEPORT` and the kernel spreads senders over them; each has its
//! own receiver task.
//!
//! A receiver waits until its socket is readable, then takes every waiting
//! datagram (up to [`MAX_BURST`]) into one block per workspace. A block is
//! handed on once it is large, or at most [`LINGER`] (2 ms) after its first
//! message when the socket runs dry: a steady trickle of datagrams then
//! makes a few chunks instead of one per datagram. It never waits for the pipeline: when the byte budget is spent
//! the block is dropped and its messages counted in
//! `sluice_events_dropped_overload_total` (an application drop). Datagrams
//! the kernel drops because the receive buffer was full are counted per
//! listener from `/proc/net/udp{,6}` (the `drops` column of its sockets) and
//! host-wide from `/proc/net/snmp` (`Udp: RcvbufErrors`).
//!
//! On shutdown each receiver takes what is already in its socket buffer,
//! hands it on and stops.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Batcher, FLUSH_BYTES, SyslogContext};
use crate::config::SyslogUdpSource;
use crate::metrics::Metrics;
use crate::store::now_ms;

/// Datagrams taken per wake-up before the block is handed on.
pub const MAX_BURST: usize = 4096;
/// Receive buffer: the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6) fits.
const DATAGRAM_BUF: usize = 64 * 1024;
/// A block smaller than [`LINGER_BYTES`] is handed on at most this long
/// after its first message arrived, if no more come to fill it.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_BYTES: usize = 64 * 1024;
/// How often kernel drop counters are read.
const DROPS_EVERY: Duration = Duration::from_secs(1);
/// At most one "dropped" warning per listener this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the receivers of one UDP listener share.
pub struct SyslogUdpContext {
    pub base: SyslogContext,
    pub config: SyslogUdpSource,
    /// The daemon's metrics, for the host-wide `RcvbufErrors` counter.
    pub all_metrics: Arc<Metrics>,
}

/// Bound sockets of one UDP listener.
#[derive(Debug)]
pub struct UdpSockets {
    pub sockets: Vec<std::net::UdpSocket>,
    /// Receive buffer the kernel granted per socket, in bytes of payload.
    pub granted_rcvbuf: usize,
}

impl UdpSockets {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.first().and_then(|s| s.local_addr().ok())
    }
}

/// Binds `config.sockets` sockets on the configured address.
pub fn bind(config: &SyslogUdpSource) -> io::Result<UdpSockets> {
    let mut addr = config.address;
    let count = config.sockets.0;
    let requested = usize::try_from(config.receive_buffer_bytes.0).unwrap_or(usize::MAX).min(i32::MAX as usize / 2);
    let mut sockets = Vec::with_capacity(count);
    let mut granted_rcvbuf = 0;
    for _ in 0..count {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if count > 1 {
            s.set_reuse_port(true)?;
        }
        granted_rcvbuf = set_rcvbuf(&s, requested);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        // Port 0: the other sockets join the port the first one got.
        if let Some(bound) = s.local_addr()?.as_socket() {
            addr = bound;
        }
        sockets.push(s.into());
    }
    Ok(UdpSockets { sockets, granted_rcvbuf })
}

/// Takes the UDP sockets systemd passed for the configured address (as many
/// as it passed, whatever `sockets` says), raising their receive buffer as
/// far as permitted (`ReceiveBuffer=` in the socket unit can force it).
pub fn adopt(config: &SyslogUdpSource, passed: Vec<std::net::UdpSocket>) -> io::Result<UdpSockets> {
    let requested = usize::try_from(config.receive_buffer_bytes.0).unwrap_or(usize::MAX).min(i32::MAX as usize / 2);
    let mut granted_rcvbuf = usize::MAX;
    let mut sockets = Vec::with_capacity(passed.len());
    for socket in passed {
        let s = Socket::from(socket);
        s.set_nonblocking(true)?;
        let now = s.recv_buffer_size().map(|n| n / 2).unwrap_or(0);
        granted_rcvbuf = granted_rcvbuf.min(if now >= requested { now } else { set_rcvbuf(&s, requested) });
        sockets.push(s.into());
    }
    tracing::info!(
        listener = "syslog_udp",
        address = %config.address,
        sockets = sockets.len(),
        "adopted the UDP sockets passed by systemd"
    );
    Ok(UdpSockets { sockets, granted_rcvbuf })
}

/// Sets the receive buffer, forcing it past `rmem_max` when permitted;
/// returns what the kernel granted.
fn set_rcvbuf(s: &Socket, bytes: usize) -> usize {
    let value = bytes as libc::c_int;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        // Capped by net.core.rmem_max; the granted size is logged.
        let _ = s.set_recv_buffer_size(bytes);
    }
    // Linux doubles the value for its bookkeeping and reports the doubled figure.
    s.recv_buffer_size().map(|n| n / 2).unwrap_or(0)
}

/// Receives on every socket until `shutdown`, then drains them and returns.
pub async fn serve(sockets: UdpSockets, ctx: Arc<SyslogUdpContext>, shutdown: CancellationToken) {
    let requested = ctx.config.receive_buffer_bytes.0;
    let granted = sockets.granted_rcvbuf as u64;
    if granted < requested {
        tracing::warn!(
            listener = ctx.base.name,
            requested,
            granted,
            "UDP receive buffer smaller than configured; raise net.core.rmem_max (see config/sysctl.d) or grant CAP_NET_ADMIN"
        );
    } else {
        tracing::info!(
            listener = ctx.base.name,
            requested,
            granted,
            sockets = sockets.sockets.len(),
            "UDP receive buffer"
        );
    }
    let inodes: Vec<u64> = sockets.sockets.iter().filter_map(|s| socket_inode(s).ok()).collect();
    // Duplicates keep the sockets (and their kernel drop counters) alive for the last reading.
    let keep: Vec<_> = sockets.sockets.iter().filter_map(|s| s.try_clone().ok()).collect();
    let mut receivers = JoinSet::new();
    for socket in sockets.sockets {
        match UdpSocket::from_std(socket) {
            Ok(s) => {
                receivers.spawn(receive(s, ctx.clone(), shutdown.clone()));
            }
            Err(e) => {
                tracing::error!(listener = ctx.base.name, error = %e, "cannot register UDP socket; it will not receive")
            }
        }
    }
    let watching = CancellationToken::new();
    let watcher = tokio::spawn(watch_drops(inodes.clone(), ctx.clone(), watching.clone()));
    while receivers.join_next().await.is_some() {}
    watching.cancel();
    let _ = watcher.await;
    read_drops(&inodes, &ctx);
    drop(keep);
    super::log_summary(&ctx.base);
}

/// One socket's receive loop.
async fn receive(socket: UdpSocket, ctx: Arc<SyslogUdpContext>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; DATAGRAM_BUF];
    let mut batcher = Batcher::new(&ctx.base);
    let mut last_warn: Option<Instant> = None;
    let max = ctx.base.common.max_message_bytes;
    // When the first message of the waiting block arrived: it is handed on
    // by LINGER after that at the latest.
    let mut oldest: Option<tokio::time::Instant> = None;
    loop {
        let linger = oldest.map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600), |t| t + LINGER);
        let draining = tokio::select! {
            r = socket.readable() => match r {
                Ok(()) => false,
                Err(e) => {
                    tracing::error!(listener = ctx.base.name, error = %e, "UDP socket failed; receiver stopped");
                    return;
                }
            },
            _ = tokio::time::sleep_until(linger), if oldest.is_some() => {
                oldest = None;
                if !flush(&ctx, &mut batcher, &mut last_warn) {
                    return;
                }
                continue;
            }
            _ = shutdown.cancelled() => true,
        };
        let received_at = now_ms();
        let mut empty = false;
        for _ in 0..MAX_BURST {
            let (n, peer) = match socket.try_recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(listener = ctx.base.name, error = %e, "UDP receive error");
                    break;
                }
            };
            if !ctx.base.common.allows(peer.ip()) {
                ctx.base.metrics.peers_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            ctx.base.metrics.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            let msg = trim_datagram(&buf[..n]);
            if msg.is_empty() {
                continue;
            }
            batcher.push(&ctx.base, &msg[..msg.len().min(max)], msg.len() > max, peer, received_at);
            if batcher.len_bytes() >= FLUSH_BYTES && !flush(&ctx, &mut batcher, &mut last_warn) {
                return;
            }
        }
        // A small block waits up to LINGER for more datagrams: under a steady
        // load that makes a few large chunks instead of many tiny ones.
        if !draining && empty && batcher.len_bytes() < LINGER_BYTES && !batcher.is_empty() {
            oldest.get_or_insert_with(tokio::time::Instant::now);
            continue;
        }
        oldest = None;
        // At shutdown, stop once the kernel holds nothing more for this socket.
        if !flush(&ctx, &mut batcher, &mut last_warn) || (draining && empty) {
            return;
        }
    }
}

/// Drops the line end some senders put after a datagram's message.
fn trim_datagram(d: &[u8]) -> &[u8] {
    let d = d.strip_suffix(b"\n").unwrap_or(d);
    let d = d.strip_suffix(b"\r").unwrap_or(d);
    d.strip_suffix(b"\0").unwrap_or(d)
}

/// Hands the blocks on if the budget has room, else drops and counts them.
/// False when the pipeline has closed.
fn flush(ctx: &SyslogUdpContext, batcher: &mut Batcher, last_warn: &mut Option<Instant>) -> bool {
    if batcher.is_empty() {
        return true;
    }
    for pending in batcher.drain(&ctx.base) {
        match ctx.base.pipeline.try_reserve(pending.chunk.len()) {
            Some(permit) => {
                if pending.submit(&ctx.base, permit, None).is_err() {
                    return false;
                }
            }
            None => {
                let dropped = ctx.base.metrics.dropped_overload.fetch_add(u64::from(pending.count), Ordering::Relaxed);
                if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    *last_warn = Some(Instant::now());
                    tracing::warn!(
                        listener = ctx.base.name,
                        dropped_total = dropped + u64::from(pending.count),
                        "pipeline full: UDP messages dropped"
                    );
                }
            }
        }
    }
    batcher.compact();
    true
}

fn socket_inode(s: &std::net::UdpSocket) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))?.ino())
}

/// Refreshes the kernel drop counters every [`DROPS_EVERY`] until `stop`.
async fn watch_drops(inodes: Vec<u64>, ctx: Arc<SyslogUdpContext>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(DROPS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => read_drops(&inodes, &ctx),
            _ = stop.cancelled() => return,
        }
    }
}

fn read_drops(inodes: &[u64], ctx: &SyslogUdpContext) {
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            drops += socket_drops(&text, inodes);
        }
    }
    ctx.base.metrics.kernel_drops.store(drops, Ordering::Relaxed);
    if let Some(n) = std::fs::read_to_string("/proc/net/snmp").ok().and_then(|t| rcvbuf_errors(&t)) {
        ctx.all_metrics.udp_rcvbuf_errors.store(n, Ordering::Relaxed);
    }
}

/// Sums the `drops` column of the `/proc/net/udp` rows of these inodes.
fn socket_drops(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.get(12)?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

/// `Udp: RcvbufErrors` from `/proc/net/snmp` (a header line, then a value line).
fn rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let header = udp.next()?;
    let values = udp.next()?;
    let col = header.split_whitespace().position(|c| c == "RcvbufErrors")?;
    values.split_whitespace().nth(col)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_tables_parse() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   1: 0100007F:15AA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
                   2: 0100007F:15AB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5\n";
        assert_eq!(socket_drops(udp, &[4242]), 17);
        assert_eq!(socket_drops(udp, &[4242, 4343]), 22);
        assert_eq!(socket_drops(udp, &[1]), 0);
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 185 0 3 186 77 0\n";
        assert_eq!(rcvbuf_errors(snmp), Some(77));
        assert_eq!(rcvbuf_errors("Ip: 1\n"), None);
    }

    #[test]
    fn datagram_line_ends_are_trimmed() {
        assert_eq!(trim_datagram(b"<13>hi\r\n"), b"<13>hi");
        assert_eq!(trim_datagram(b"<13>hi\0"), b"<13>hi");
        assert_eq!(trim_datagram(b"<13>hi\n\n"), b"<13>hi\n");
    }

    #[test]
    fn binds_several_sockets_on_one_port_with_a_large_buffer() {
        let mut cfg = SyslogUdpSource::at("127.0.0.1:0".parse().unwrap(), 1);
        cfg.sockets = crate::config::Count(3);
        let bound = bind(&cfg).unwrap();
        assert_eq!(bound.sockets.len(), 3);
        let port = bound.local_addr().unwrap().port();
        assert!(bound.sockets.iter().all(|s| s.local_addr().unwrap().port() == port));
        assert!(bound.granted_rcvbuf > 0);
        let inode = socket_inode(&bound.sockets[0]).unwrap();
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        assert!(table.lines().any(|l| l.split_whitespace().nth(9) == Some(&inode.to_string())));
    }
}
