//! The one read loop of every framed TCP listener (raw TCP, syslog TCP, and
//! the TLS and RELP listeners built on them).
//!
//! ```text
//!  ┌─► room? (connection under its byte limit, or a frame in progress) ── no ─► wait (deadline)
//!  │   read (deadline: idle between frames, frame deadline within one)
//!  │   charge the bytes received (deadline) ─► protocol decodes, hands frames on
//!  └── settle the clock; shrink a buffer left large by a big frame
//! ```
//!
//! The protocol ([`Protocol`]) only decodes and hands on; the loop owns the
//! socket reads, the deadlines, the budget charges, the shutdown rules and the
//! counting of cuts. After shutdown a connection reads on until its peer is
//! quiet for [`DRAIN_QUIET`] (a client may have written data it believes
//! delivered; one that resends what was not answered stops at once); past
//! the drain deadline (`abort`) it stops at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::Account;
use super::deadline::{Clock, FrameClock, Timeouts};
use crate::metrics::{Cut, SourceMetrics};

/// Room made in the read buffer before each read.
pub const READ_CHUNK: usize = 32 * 1024;
/// Most room made for the rest of a trusted peer's frame, so one read can
/// take what the socket holds instead of one `READ_CHUNK` at a time.
const READ_AHEAD: usize = 1 << 20;
/// An empty buffer larger than this is given back after a large frame.
const SHRINK_ABOVE: usize = 256 * 1024;
/// After shutdown, a connection whose peer sends nothing for this long is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// A protocol decoding what the loop reads.
pub trait Protocol {
    /// Decodes every complete frame in `buf` and hands it on, taking its
    /// budget from `account` (waits end at `deadline`). Returns how many
    /// frames were completed, or why the connection must close (an
    /// `End::Cut` is counted by the loop).
    fn on_data(
        &mut self,
        buf: &mut BytesMut,
        account: &mut Account,
        deadline: Instant,
    ) -> impl Future<Output = Result<usize, End>> + Send;

    /// Whether `buf` (after decoding) holds part of a frame.
    fn in_frame(&self, buf: &BytesMut) -> bool;

    /// How many more bytes the frame begun in `buf` needs, when its header
    /// says (0 when unknown).
    fn frame_rest(&self, buf: &BytesMut) -> usize {
        let _ = buf;
        0
    }

    /// Bytes of a frame in progress the protocol holds outside `buf` (the
    /// kept part of an over-long RELP message): they stay charged.
    fn held_outside(&self) -> usize {
        0
    }

    /// Whether the peer resends whatever was not answered (RELP): then the
    /// loop stops reading at shutdown instead of reading on until the peer
    /// is quiet.
    fn resends_unanswered(&self) -> bool {
        false
    }

    /// Called with the bytes just read, before they are charged: a protocol
    /// that can check a key from a frame's first bytes trusts the peer here,
    /// so a keyed client's first frame is not charged to the untrusted share.
    fn vet(&mut self, buf: &BytesMut, account: &mut Account) {
        let _ = (buf, account);
    }
}

/// Why a connection's read loop ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed; `mid_frame` if it left a partial frame behind.
    Eof {
        mid_frame: bool,
    },
    /// Cut by the toolkit (counted in `sluice_connections_cut_total`).
    Cut(Cut),
    Drained,
    Aborted,
    Io(std::io::Error),
    /// The protocol closed the connection (framing error, bad keys, …).
    Protocol(String),
    PipelineClosed,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof { mid_frame: false } => f.write_str("peer closed"),
            End::Eof { mid_frame: true } => f.write_str("peer closed in the middle of a frame"),
            End::Cut(c) => write!(f, "cut: {}", c.label()),
            End::Drained => f.write_str("drained at shutdown"),
            End::Aborted => f.write_str("aborted at the drain deadline"),
            End::Io(e) => write!(f, "read error: {e}"),
            End::Protocol(why) => f.write_str(why),
            End::PipelineClosed => f.write_str("pipeline closed"),
        }
    }
}

/// What the loop needs besides the socket and the protocol.
pub struct LoopEnv<'a> {
    pub timeouts: Timeouts,
    pub shutdown: &'a CancellationToken,
    pub abort: &'a CancellationToken,
    pub metrics: &'a Arc<SourceMetrics>,
}

/// Reads and decodes until the connection ends; returns why.
pub async fn read_loop<R, P>(
    read: &mut R,
    proto: &mut P,
    account: &mut Account,
    buf: &mut BytesMut,
    env: &LoopEnv<'_>,
) -> End
where
    R: AsyncRead + Unpin,
    P: Protocol,
{
    let mut clock = FrameClock::new(env.timeouts);
    let mut draining = env.shutdown.is_cancelled();
    loop {
        if draining && proto.resends_unanswered() {
            return End::Drained;
        }
        let (deadline, rule) = clock.deadline(account.is_trusted());
        let in_frame = proto.in_frame(buf);
        if !in_frame && !draining && account.held() >= account.limit() {
            tokio::select! {
                r = account.wait_room(deadline) => if r.is_err() { return cut(env, Cut::NoBudget) },
                _ = env.abort.cancelled() => return End::Aborted,
            }
        }
        // Room for the rest of the frame only once the peer is trusted: an
        // untrusted one's header claims nothing it has not sent.
        let room = if account.is_trusted() { proto.frame_rest(buf).clamp(READ_CHUNK, READ_AHEAD) } else { READ_CHUNK };
        if buf.capacity() - buf.len() < room {
            buf.reserve(room);
        }
        let until = if draining { deadline.min(Instant::now() + DRAIN_QUIET) } else { deadline };
        let n = tokio::select! {
            r = tokio::time::timeout_at(until, read.read_buf(buf)) => match r {
                Ok(Ok(0)) => return End::Eof { mid_frame: !buf.is_empty() },
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return End::Io(e),
                Err(_) if draining && Instant::now() < deadline => return End::Drained,
                Err(_) => return cut(env, if rule == Clock::Idle { Cut::Idle } else { Cut::SlowFrame }),
            },
            _ = env.shutdown.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            _ = env.abort.cancelled() => return End::Aborted,
        };
        env.metrics.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        if !account.is_trusted() {
            proto.vet(buf, account);
        }
        clock.received(n);
        let (deadline, _) = clock.deadline(account.is_trusted());
        let charged = tokio::select! {
            r = account.charge(n, deadline) => r,
            _ = env.abort.cancelled() => return End::Aborted,
        };
        if charged.is_err() {
            return cut(env, Cut::NoBudget);
        }
        let completed = tokio::select! {
            r = proto.on_data(buf, account, deadline) => match r {
                Ok(n) => n,
                Err(End::Cut(why)) => return cut(env, why),
                Err(end) => return end,
            },
            _ = env.abort.cancelled() => return End::Aborted,
        };
        if buf.is_empty() {
            // Nothing of what was charged is still here: discarded, handed
            // on, or held by the protocol (that much stays charged).
            account.release_pending_beyond(proto.held_outside());
            if buf.capacity() > SHRINK_ABOVE {
                *buf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        clock.settle(completed, proto.in_frame(buf), buf.len());
    }
}

/// Runs one write of answers to a peer (acks, RELP `rsp`s) with
/// `timeout`: false if it failed, or if the peer did not read in time
/// (counted as a `stalled_reader` cut).
pub async fn write_within(
    timeout: Duration,
    metrics: &SourceMetrics,
    write: impl Future<Output = std::io::Result<()>>,
) -> bool {
    match tokio::time::timeout(timeout, write).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            metrics.cut(Cut::StalledReader);
            tracing::debug!("peer stopped reading its answers; connection cut");
            false
        }
    }
}

fn cut(env: &LoopEnv<'_>, why: Cut) -> End {
    env.metrics.cut(why);
    End::Cut(why)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::net::budget::{Budget, ConnLimits, Permit};

    /// Hands every byte on as one "batch" whose permit it keeps, like batches
    /// waiting for their commit.
    struct Holding {
        held: Vec<Permit>,
        bytes: usize,
    }

    impl Protocol for Holding {
        async fn on_data(
            &mut self,
            buf: &mut BytesMut,
            account: &mut Account,
            deadline: Instant,
        ) -> Result<usize, End> {
            self.bytes += buf.len();
            buf.clear();
            self.held.push(account.take(deadline).await.map_err(|_| End::Cut(Cut::NoBudget))?);
            Ok(1)
        }

        fn in_frame(&self, buf: &BytesMut) -> bool {
            !buf.is_empty()
        }
    }

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(5),
        untrusted_idle: Duration::from_secs(5),
        frame: Duration::from_secs(5),
        min_rate: 1,
    };

    #[tokio::test]
    async fn a_connection_holding_max_connection_bytes_stops_reading_until_its_commits_return() {
        let limits = ConnLimits { untrusted_bytes: 1000, connection_bytes: 1000 };
        let budget = Budget::new(1 << 20, limits);
        let (mut client, mut server) = tokio::io::duplex(64);
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        let metrics = Arc::new(SourceMetrics::new(crate::metrics::ListenerKind::Tcp));
        let mut proto = Holding { held: Vec::new(), bytes: 0 };
        let mut account = Account::new(&budget, true);
        let mut buf = BytesMut::new();
        let env = LoopEnv { timeouts: T, shutdown: &shutdown, abort: &abort, metrics: &metrics };
        let reader = read_loop(&mut server, &mut proto, &mut account, &mut buf, &env);
        let writer = async {
            for _ in 0..20 {
                client.write_all(&[0u8; 100]).await.unwrap();
            }
        };
        // The reader holds 1000 bytes and stops: the writer fills the 64-byte pipe and waits.
        let stuck = tokio::time::timeout(Duration::from_millis(200), async { tokio::join!(reader, writer) }).await;
        assert!(stuck.is_err(), "the reader stopped at its limit and the writer could not finish");
        assert!((1000..1100).contains(&proto.bytes), "read {} bytes", proto.bytes);
        assert_eq!(metrics.cuts(Cut::NoBudget), 0);
        // Commits return the bytes: it reads on.
        proto.held.clear();
        let more = proto.bytes;
        let reader = read_loop(&mut server, &mut proto, &mut account, &mut buf, &env);
        let _ = tokio::time::timeout(Duration::from_millis(200), reader).await;
        assert!(proto.bytes > more, "reading resumed once the held bytes were given back");
    }

    #[tokio::test]
    async fn the_read_buffer_shrinks_after_a_large_frame() {
        let budget = Budget::new(16 << 20, ConnLimits { untrusted_bytes: 8 << 20, connection_bytes: 8 << 20 });
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        let metrics = Arc::new(SourceMetrics::new(crate::metrics::ListenerKind::Tcp));
        /// Takes nothing until 4 MiB are buffered (one large frame), then all of it.
        struct Large(usize);
        impl Protocol for Large {
            async fn on_data(&mut self, buf: &mut BytesMut, _: &mut Account, _: Instant) -> Result<usize, End> {
                if buf.len() < 4 << 20 {
                    return Ok(0);
                }
                self.0 = self.0.max(buf.capacity());
                buf.clear();
                Ok(1)
            }
            fn in_frame(&self, buf: &BytesMut) -> bool {
                !buf.is_empty()
            }
        }
        let mut proto = Large(0);
        let mut account = Account::new(&budget, true);
        let mut buf = BytesMut::new();
        let env = LoopEnv { timeouts: T, shutdown: &shutdown, abort: &abort, metrics: &metrics };
        let writer = async move {
            client.write_all(&vec![0u8; 4 << 20]).await.unwrap();
        };
        let (end, ()) = tokio::join!(read_loop(&mut server, &mut proto, &mut account, &mut buf, &env), writer);
        assert!(matches!(end, End::Eof { mid_frame: false }), "{end}");
        assert!(proto.0 >= 4 << 20, "the frame was held whole");
        assert!(buf.capacity() <= READ_CHUNK, "{} bytes kept after the frame", buf.capacity());
        assert_eq!(account.held(), 0);
    }
}
