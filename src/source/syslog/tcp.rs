//! `[sources.syslog_tcp]`: syslog over TCP, RFC 6587 framing (see
//! `codec::octet`), and `[sources.syslog_tls]`: the same over TLS (RFC 5425,
//! octet-counted; the handshake is `net::tls`'s, before anything is read).
//!
//! Connections run the toolkit's read loop (`net::conn`): bytes are charged
//! to the connection's account as they arrive; every complete frame is
//! decoded into the connection's [`Batcher`], and the blocks are handed on
//! after every read (and mid-read once they pass [`FLUSH_BYTES`]), so a
//! quiet connection never holds messages back. A peer is trusted from the
//! start when it matched `allowed_sources` or the listener takes anyone into
//! a fixed workspace; in key mode otherwise, once a message carried a valid
//! key. A partial message has the frame deadline, so a stalled octet count
//! holds a slot for `[pipeline] frame_timeout`, not for the idle timeout.
//!
//! Syslog over TCP has no acknowledgements: a message is durable once the
//! writer's next commit returns, typically a few milliseconds after it was
//! read. A crash in between loses those messages without the sender
//! knowing (see docs/operations.md).
//!
//! A message cut short by the end of the connection is still stored (a
//! line without its LF as is, an octet-counted frame flagged `truncated`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Batcher, FLUSH_BYTES, Pushed, SyslogContext};
use crate::codec::octet::{OctetDecoder, SyslogFrame};
use crate::config::{SyslogAuth, SyslogTcpSource};
use crate::metrics::Cut;
use crate::net::accept::{Listener, accept_loop};
use crate::net::budget::Account;
use crate::net::conn::{End, LoopEnv, Protocol, READ_CHUNK, read_loop};
use crate::net::deadline::Timeouts;
use crate::net::tls::Tls;
use crate::store::now_ms;

/// Everything a syslog TCP connection needs, shared by all of them.
pub struct SyslogTcpContext {
    pub base: SyslogContext,
    pub config: SyslogTcpSource,
    /// Set on a TLS listener: every connection starts with its handshake.
    pub tls: Option<Arc<Tls>>,
    pub timeouts: Timeouts,
    /// Longest a RELP answer waits for its commit.
    pub ack_timeout: Duration,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
}

/// Serves the listener until `shutdown`, then waits for its connections to
/// drain and logs what the listener did.
pub async fn serve(listener: TcpListener, ctx: Arc<SyslogTcpContext>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let metrics = ctx.base.metrics.clone();
    let me = Listener { name: ctx.base.name, limits: ctx.config.accept_limits(), metrics: &metrics };
    let handler_ctx = ctx.clone();
    accept_loop(listener, me, shutdown.clone(), connections.clone(), move |stream, peer, slot| {
        let ctx = handler_ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            if allowed(&ctx, peer) {
                match ctx.tls.clone() {
                    None => Connection::run(ctx, stream, peer, Origin::default(), shutdown).await,
                    Some(tls) => {
                        if let Some((stream, origin)) = handshake(&ctx, &tls, stream, peer).await {
                            Connection::run(ctx, stream, peer, origin, shutdown).await;
                        }
                    }
                }
            }
            drop(slot);
        }
    })
    .await;
    connections.close();
    connections.wait().await;
    super::log_summary(&ctx.base);
}

/// Whether `peer` may send (`allowed_sources`); a refusal is counted.
pub(super) fn allowed(ctx: &SyslogTcpContext, peer: SocketAddr) -> bool {
    let allowed = ctx.base.common.allows(peer.ip());
    if !allowed {
        ctx.base.metrics.peers_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = ctx.base.name, %peer, "peer not in allowed_sources; connection closed");
    }
    allowed
}

/// The TLS handshake, and what the client certificate says: `None` when it
/// failed, or when a verified certificate maps to no workspace (counted).
pub(super) async fn handshake(
    ctx: &SyslogTcpContext,
    tls: &Tls,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, Origin)> {
    let (name, deadline) = (ctx.base.name, ctx.timeouts.frame);
    let stream = tls.handshake(stream, peer, deadline, name, &ctx.base.metrics).await?;
    let origin = match tls.client_workspace(stream.get_ref().1) {
        None => Origin { workspace: None, verified: tls.verifies_clients() },
        Some(Some(ws)) => Origin { workspace: Some(ws), verified: true },
        Some(None) => {
            ctx.base.metrics.peers_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(listener = name, %peer, "client certificate maps to no workspace; connection closed");
            return None;
        }
    };
    Some((stream, origin))
}

/// What the TLS handshake told about the peer.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Origin {
    /// The workspace its client certificate maps to (`client_workspaces`).
    pub workspace: Option<u32>,
    /// It showed a certificate the client CA signed: trusted for the budget.
    pub verified: bool,
}

struct Connection {
    ctx: Arc<SyslogTcpContext>,
    peer: SocketAddr,
    /// Trusted whatever its messages carry (a fixed workspace, or a
    /// verified client certificate).
    trusted_throughout: bool,
    decoder: OctetDecoder,
    batcher: Batcher,
}

impl Protocol for Connection {
    async fn on_data(&mut self, buf: &mut BytesMut, account: &mut Account, deadline: Instant) -> Result<usize, End> {
        let received_at = now_ms();
        let mut completed = 0;
        // The decoder never fails; an error here would be a bug, treated as "no frame".
        while let Ok(Some(frame)) = self.decoder.decode(buf) {
            completed += 1;
            self.push(frame, received_at, account);
            if self.batcher.len_bytes() >= FLUSH_BYTES {
                self.flush(account, deadline).await?;
            }
        }
        self.flush(account, deadline).await?;
        Ok(completed)
    }

    fn in_frame(&self, buf: &BytesMut) -> bool {
        !buf.is_empty() || !self.decoder.at_boundary()
    }

    /// Key mode: a first complete message with a valid key trusts the peer
    /// before its bytes are charged (probed on a copy, only while untrusted).
    fn vet(&mut self, buf: &BytesMut, account: &mut Account) {
        if self.ctx.base.common.auth != SyslogAuth::Key {
            return;
        }
        let mut probe = self.decoder.clone();
        let mut copy = BytesMut::from(&buf[..]);
        if let Ok(Some(frame)) = probe.decode(&mut copy)
            && self.batcher.carries_valid_key(&self.ctx.base, &frame.msg)
        {
            account.set_trusted(true);
        }
    }
}

impl Connection {
    async fn run<S: AsyncRead + Unpin>(
        ctx: Arc<SyslogTcpContext>,
        stream: S,
        peer: SocketAddr,
        origin: Origin,
        shutdown: CancellationToken,
    ) {
        let mut stream = stream;
        let metrics = ctx.base.metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let trusted = ctx.base.common.trusts_on_sight() || origin.verified;
        let mut account = Account::new(ctx.base.pipeline.budget(), trusted);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut batcher = Batcher::new(&ctx.base);
        if let Some(ws) = origin.workspace {
            batcher.fix_workspace(ws);
        }
        let mut conn = Connection {
            decoder: OctetDecoder::new(ctx.base.common.max_message_bytes),
            batcher,
            ctx,
            peer,
            trusted_throughout: trusted,
        };
        let abort = conn.ctx.abort.clone();
        let env = LoopEnv { timeouts: conn.ctx.timeouts, shutdown: &shutdown, abort: &abort, metrics: &metrics };
        let end = read_loop(&mut stream, &mut conn, &mut account, &mut buf, &env).await;
        // Whatever is left is still a message: a line without its LF, or a cut frame.
        let received_at = now_ms();
        while let Ok(Some(frame)) = conn.decoder.decode_eof(&mut buf) {
            conn.push(frame, received_at, &mut account);
        }
        let last = Instant::now() + conn.ctx.timeouts.frame;
        let flushed = tokio::select! {
            r = conn.flush(&mut account, last) => r.is_ok(),
            _ = abort.cancelled() => false,
        };
        tracing::debug!(listener = conn.ctx.base.name, peer = %conn.peer, reason = %end, "connection ended");
        if !flushed {
            tracing::debug!(listener = conn.ctx.base.name, peer = %conn.peer, "the last messages could not be handed on");
        }
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    fn push(&mut self, frame: SyslogFrame, received_at: u64, account: &mut Account) {
        match self.batcher.push(&self.ctx.base, &frame.msg, frame.truncated, self.peer, received_at) {
            Pushed::Stored if !account.is_trusted() => account.set_trusted(true),
            Pushed::Refused if !self.trusted_throughout => account.set_trusted(false),
            _ => {}
        }
    }

    /// Hands every waiting block on, the first with what the connection
    /// was charged, the rest with at least the per-batch minimum each.
    async fn flush(&mut self, account: &mut Account, deadline: Instant) -> Result<(), End> {
        if self.batcher.is_empty() {
            return Ok(());
        }
        for pending in self.batcher.drain(&self.ctx.base) {
            let permit = account.take(deadline).await.map_err(|_| End::Cut(Cut::NoBudget))?;
            pending.submit(&self.ctx.base, permit, None).map_err(|_| End::PipelineClosed)?;
        }
        self.batcher.compact();
        Ok(())
    }
}
