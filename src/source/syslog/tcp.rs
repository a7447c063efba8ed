//! `[sources.syslog_tcp]`: syslog over TCP, RFC 6587 framing (see
//! `codec::octet`).
//!
//! Each connection runs a read loop: read; take a byte permit for what was
//! read (this is where a full pipeline stops the reading, and TCP pushes
//! back on the sender); decode every complete frame into the connection's
//! [`Batcher`]; hand the block on. A block is handed on after every read,
//! and in the middle of a large read once it passes [`FLUSH_BYTES`], so a
//! quiet connection never holds messages back. Nothing is held against the
//! budget while a connection waits for data.
//!
//! Syslog over TCP has no acknowledgements: a message is durable once the
//! writer's next commit returns, typically a few milliseconds after it was
//! read. A crash in between loses those messages without the sender
//! knowing (see docs/operations.md); RELP closes that gap.
//!
//! A connection ends on EOF, idle timeout, a read error, or shutdown (then
//! it reads on until the peer is quiet or gone). A message cut short by the
//! end is still stored (a line without its LF as is, an octet-counted frame
//! flagged `truncated`). Reads are cancel-safe, so a read interrupted by the
//! idle timer or by shutdown loses no bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Batcher, FLUSH_BYTES, SyslogContext};
use crate::codec::octet::{OctetDecoder, SyslogFrame};
use crate::config::SyslogTcpSource;
use crate::pipeline::Permit;
use crate::store::now_ms;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// After shutdown, a connection whose peer sends nothing for this long is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// Everything a syslog TCP connection needs, shared by all of them.
pub struct SyslogTcpContext {
    pub base: SyslogContext,
    pub config: SyslogTcpSource,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
}

/// Serves the listener until `shutdown`, then waits for its connections to
/// drain and logs what the listener did.
pub async fn serve(listener: TcpListener, ctx: Arc<SyslogTcpContext>, shutdown: CancellationToken) {
    let max = ctx.config.max_connections.0;
    let connections = TaskTracker::new();
    let handler_ctx = ctx.clone();
    let accept_shutdown = shutdown.clone();
    super::super::accept_loop(listener, max, accept_shutdown, connections.clone(), move |stream, peer, permit| {
        let ctx = handler_ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            if ctx.base.common.allows(peer.ip()) {
                Connection::run(ctx, stream, peer, shutdown).await;
            } else {
                ctx.base.metrics.peers_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = ctx.base.name, %peer, "peer not in allowed_sources; connection closed");
            }
            drop(permit);
        }
    })
    .await;
    connections.close();
    connections.wait().await;
    super::log_summary(&ctx.base);
}

/// Why a connection ended (for the log line).
#[derive(Debug)]
enum End {
    Eof,
    Idle,
    Drained,
    Aborted,
    Io(std::io::Error),
    PipelineClosed,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => f.write_str("peer closed"),
            End::Idle => f.write_str("idle timeout"),
            End::Drained => f.write_str("drained at shutdown"),
            End::Aborted => f.write_str("aborted at the drain deadline"),
            End::Io(e) => write!(f, "read error: {e}"),
            End::PipelineClosed => f.write_str("pipeline closed"),
        }
    }
}

struct Connection {
    ctx: Arc<SyslogTcpContext>,
    peer: SocketAddr,
    decoder: OctetDecoder,
    buf: BytesMut,
    batcher: Batcher,
    /// Budget taken for the bytes of the last read, until they are handed on.
    permit: Option<Permit>,
}

impl Connection {
    async fn run(ctx: Arc<SyslogTcpContext>, mut stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let metrics = ctx.base.metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let mut conn = Connection {
            decoder: OctetDecoder::new(ctx.base.common.max_message_bytes),
            batcher: Batcher::new(&ctx.base),
            ctx,
            peer,
            buf: BytesMut::with_capacity(READ_CHUNK),
            permit: None,
        };
        let end = conn.read_loop(&mut stream, &shutdown).await;
        // Whatever is left is still a message: a line without its LF, or a cut frame.
        let received_at = now_ms();
        while let Ok(Some(frame)) = conn.decoder.decode_eof(&mut conn.buf) {
            conn.push(frame, received_at);
        }
        let flushed = conn.flush().await;
        tracing::debug!(listener = conn.ctx.base.name, peer = %conn.peer, reason = %end, "connection ended");
        if flushed.is_err() {
            tracing::debug!(listener = conn.ctx.base.name, peer = %conn.peer, "pipeline closed before the last messages");
        }
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn read_loop(&mut self, stream: &mut TcpStream, shutdown: &CancellationToken) -> End {
        let mut draining = shutdown.is_cancelled();
        loop {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let quiet = if draining { DRAIN_QUIET } else { self.ctx.config.idle_timeout };
            let read = tokio::select! {
                r = tokio::time::timeout(quiet, stream.read_buf(&mut self.buf)) => r,
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    continue;
                }
                _ = self.ctx.abort.cancelled() => return End::Aborted,
            };
            let n = match read {
                Err(_) if draining => return End::Drained,
                Err(_) => return End::Idle,
                Ok(Ok(0)) => return End::Eof,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return End::Io(e),
            };
            self.ctx.base.metrics.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            // Hold what was read against the budget before reading more.
            let permit = tokio::select! {
                p = self.ctx.base.pipeline.reserve(n) => p,
                _ = self.ctx.abort.cancelled() => return End::Aborted,
            };
            self.permit = Some(permit);
            if self.decode_buffered().await.is_err() || self.flush().await.is_err() {
                return End::PipelineClosed;
            }
        }
    }

    /// Decodes every complete frame in the buffer, handing blocks on as they fill.
    async fn decode_buffered(&mut self) -> Result<(), ()> {
        let received_at = now_ms();
        // The decoder never fails; an error here would be a bug, treated as "no frame".
        while let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
            self.push(frame, received_at);
            if self.batcher.len_bytes() >= FLUSH_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn push(&mut self, frame: SyslogFrame, received_at: u64) {
        self.batcher.push(&self.ctx.base, &frame.msg, frame.truncated, self.peer, received_at);
    }

    /// Hands every waiting block on: the first with the read's permit, the
    /// rest with permits of their own.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.batcher.is_empty() {
            return Ok(());
        }
        for pending in self.batcher.drain(&self.ctx.base) {
            let permit = match self.permit.take() {
                Some(p) => p,
                // Past the drain deadline a stuck pipeline must not hold the connection.
                None => tokio::select! {
                    p = self.ctx.base.pipeline.reserve(pending.chunk.len()) => p,
                    _ = self.ctx.abort.cancelled() => return Err(()),
                },
            };
            pending.submit(&self.ctx.base, permit).map_err(|_| ())?;
        }
        self.batcher.compact();
        Ok(())
    }
}
