//! `[sources.tcp]`: the raw TCP source for Tell SDKs and acked clients.
//!
//! Connections run the toolkit's read loop (`net::conn`): bytes are charged
//! to the connection's budget account as they arrive, and every complete
//! frame is decoded here. Each frame's key is checked (a deleted key is
//! refused on its next frame); a valid key makes the connection trusted, a
//! bad one untrusted again. A peer not yet trusted may not start a frame
//! longer than `[pipeline] max_untrusted_bytes`: an acked one is answered
//! `too_large` and skipped, a Tell frame (which cannot be answered) is
//! counted and the connection closed. The items are decoded into a record
//! block, compressed into a chunk and submitted.
//!
//! Acked frames are answered by a per-connection ack writer task, started on
//! the first acked frame (a Tell SDK connection never receives a byte). Acks
//! go out in frame order; a stored batch is answered only once its commit
//! has returned. A peer that stops reading its acks fills the ack queue and
//! is cut at its frame deadline; each ack write has a deadline too.
//!
//! Before the socket is dropped, the commit of everything the connection
//! handed on is awaited (bounded by `ack_timeout`) and every ack written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::keys::KeyRegistry;
use crate::codec::ack::{Ack, Status};
use crate::codec::frame::{AckedHeader, Frame, FrameDecoder};
use crate::codec::tell;
use crate::config::TcpSource;
use crate::metrics::{Cut, Refusal, SourceMetrics, Stage};
use crate::net::accept::{Listener, accept_loop};
use crate::net::budget::Account;
use crate::net::conn::{End, LoopEnv, Protocol, READ_CHUNK, read_loop};
use crate::net::deadline::Timeouts;
use crate::net::tls::Tls;
use crate::pipeline::{Batch, DedupId, Outcome, Pipeline};
use crate::store::chunk::ChunkBuilder;
use crate::store::now_ms;

/// Acks queued per connection before its reader waits for the writer.
const PENDING_ACKS: usize = 1024;

/// Everything a raw TCP connection needs, shared by all of them.
pub struct TcpContext {
    /// Listener name as stored with each event (the config section name).
    pub name: String,
    pub config: TcpSource,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
    pub ack_timeout: Duration,
    pub timeouts: Timeouts,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
    /// Set when the listener has a `tls` table: connections start with its handshake.
    pub tls: Option<Arc<Tls>>,
}

/// Serves the listener until `shutdown`; connections run on `tracker`.
pub async fn serve(listener: TcpListener, ctx: Arc<TcpContext>, shutdown: CancellationToken, tracker: TaskTracker) {
    let metrics = ctx.metrics.clone();
    let me = Listener { name: &ctx.name, limits: ctx.config.accept_limits(), metrics: &metrics };
    let conn_ctx = ctx.clone();
    accept_loop(listener, me, shutdown.clone(), tracker, move |stream, peer, slot| {
        let ctx = conn_ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            // Best effort: NODELAY only changes ack latency.
            stream.set_nodelay(true).ok();
            match ctx.tls.clone() {
                None => {
                    let (read, write) = stream.into_split();
                    Connection::run(ctx, (read, Box::new(write)), peer, false, shutdown).await;
                }
                Some(tls) => {
                    let (name, deadline) = (ctx.name.as_str(), ctx.timeouts.frame);
                    if let Some(stream) = tls.handshake(stream, peer, deadline, name, &ctx.metrics).await {
                        // A client certificate the client CA signed trusts the peer for the budget.
                        let verified = tls.verifies_clients();
                        let (read, write) = tokio::io::split(stream);
                        Connection::run(ctx, (read, Box::new(write)), peer, verified, shutdown).await;
                    }
                }
            }
            drop(slot);
        }
    })
    .await;
}

/// Where a connection's acks are written: the socket, or its TLS session.
type AckOut = Box<dyn AsyncWrite + Send + Unpin>;

enum Flow {
    Continue,
    Close(End),
}

/// One pending reply, in frame order.
enum Pending {
    Ready(Ack),
    /// A batch handed on; `started` is when its frame's first byte arrived.
    Waiting {
        batch_id: u64,
        outcome: oneshot::Receiver<Outcome>,
        deadline: Instant,
        started: Instant,
    },
}

struct Connection {
    ctx: Arc<TcpContext>,
    peer: String,
    decoder: FrameDecoder,
    builder: ChunkBuilder,
    bad_keys_in_a_row: usize,
    /// The commit outcome of the last unacked (Tell) batch handed on.
    last_commit: Option<oneshot::Receiver<Outcome>>,
    writer: Option<AckOut>,
    acks: Option<(mpsc::Sender<Pending>, JoinHandle<()>)>,
    /// When the first byte of the frame still incomplete in the buffer arrived.
    partial_since: Option<Instant>,
}

impl Protocol for Connection {
    async fn on_data(&mut self, buf: &mut BytesMut, account: &mut Account, deadline: Instant) -> Result<usize, End> {
        let read_at = Instant::now();
        let mut completed = 0;
        loop {
            if !account.is_trusted()
                && let Some((len, acked)) = self.decoder.pending(buf)
                && len as usize > account.limit()
            {
                self.untrusted_too_large(buf, len, acked, deadline).await?;
                continue;
            }
            match self.decoder.decode(buf) {
                Ok(Some(frame)) => {
                    completed += usize::from(matches!(frame, Frame::Tell { .. } | Frame::Acked { .. }));
                    // Later frames of this buffer began arriving with this read, at the latest.
                    let started = self.partial_since.take().unwrap_or(read_at);
                    if let Flow::Close(end) = self.on_frame(frame, account, deadline, started).await {
                        return Err(end);
                    }
                }
                Ok(None) => {
                    if self.in_frame(buf) {
                        self.partial_since.get_or_insert(read_at);
                    }
                    return Ok(completed);
                }
                Err(e) => {
                    self.ctx.metrics.refuse(Refusal::Malformed);
                    tracing::warn!(peer = %self.peer, error = %e, "closing connection: framing error");
                    return Err(End::Protocol(format!("framing error: {e}")));
                }
            }
        }
    }

    fn in_frame(&self, buf: &BytesMut) -> bool {
        !buf.is_empty() || self.decoder.is_discarding()
    }

    fn frame_rest(&self, buf: &BytesMut) -> usize {
        // The header's own bytes are left out: a little short is fine.
        self.decoder.pending(buf).map_or(0, |(len, _)| (len as usize).saturating_sub(buf.len()))
    }

    fn vet(&mut self, buf: &BytesMut, account: &mut Account) {
        if let Some(prefix) = self.decoder.next_batch_prefix(buf)
            && let Some(key) = tell::peek_api_key(prefix)
            && self.ctx.keys.lookup(&key).is_some()
        {
            account.set_trusted(true);
        }
    }
}

impl Connection {
    async fn run(
        ctx: Arc<TcpContext>,
        (mut read, write): (impl AsyncRead + Unpin, AckOut),
        peer: SocketAddr,
        verified: bool,
        shutdown: CancellationToken,
    ) {
        let metrics = ctx.metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let mut account = Account::new(ctx.pipeline.budget(), verified);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut conn = Connection {
            decoder: FrameDecoder::new(ctx.config.max_frame_bytes.0),
            peer: peer.to_string(),
            builder: ChunkBuilder::with_capacity(64 * 1024),
            bad_keys_in_a_row: 0,
            last_commit: None,
            writer: Some(write),
            acks: None,
            partial_since: None,
            ctx,
        };
        let abort = conn.ctx.abort.clone();
        let env = LoopEnv { timeouts: conn.ctx.timeouts, shutdown: &shutdown, abort: &abort, metrics: &metrics };
        let end = read_loop(&mut read, &mut conn, &mut account, &mut buf, &env).await;
        if let End::Eof { mid_frame: true } = end {
            metrics.refuse(Refusal::Malformed);
        }
        tracing::debug!(peer = %conn.peer, reason = %end, "connection ended");
        conn.finish().await;
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A peer without a key announced a frame over its limit: nothing of it is held.
    async fn untrusted_too_large(
        &mut self,
        buf: &mut BytesMut,
        len: u32,
        acked: Option<AckedHeader>,
        deadline: Instant,
    ) -> Result<(), End> {
        self.ctx.metrics.cut(Cut::UntrustedTooLarge);
        tracing::debug!(peer = %self.peer, len, "frame over max_untrusted_bytes before any valid key");
        self.refuse(Refusal::TooLarge, acked, deadline).await?;
        if acked.is_none() {
            return Err(End::Protocol("Tell frame over max_untrusted_bytes before any valid key".into()));
        }
        self.decoder.skip_pending(buf);
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame, account: &mut Account, deadline: Instant, started: Instant) -> Flow {
        let result = match frame {
            Frame::Tell { batch } => self.on_batch(batch, None, account, deadline, started).await,
            Frame::Acked { header, batch } => {
                self.ctx.metrics.stages.observe(Stage::Receive, started.elapsed());
                self.on_batch(batch, Some(header), account, deadline, started).await
            }
            Frame::Oversized { header, len } => {
                tracing::debug!(peer = %self.peer, len, limit = self.ctx.config.max_frame_bytes.0, "frame too large; skipped");
                self.refuse(Refusal::TooLarge, header, deadline).await.map(|()| Flow::Continue)
            }
            Frame::ReservedFlags { header, flags, .. } => {
                tracing::debug!(peer = %self.peer, flags, "acked frame with reserved flags; skipped");
                self.refuse(Refusal::Malformed, Some(header), deadline).await.map(|()| Flow::Continue)
            }
        };
        result.unwrap_or_else(Flow::Close)
    }

    async fn on_batch(
        &mut self,
        bytes: Bytes,
        acked: Option<AckedHeader>,
        account: &mut Account,
        deadline: Instant,
        started: Instant,
    ) -> Result<Flow, End> {
        let began = Instant::now();
        let view = match tell::decode_batch(&bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "malformed batch; skipped");
                self.refuse(Refusal::Malformed, acked, deadline).await?;
                return Ok(Flow::Continue);
            }
        };
        let Some(key) = self.ctx.keys.lookup(&view.api_key) else {
            account.set_trusted(false);
            return self.on_bad_key(acked, deadline).await;
        };
        account.set_trusted(true);
        self.bad_keys_in_a_row = 0;
        let (chunk, count) = match self.build_chunk(&view, acked.map(|_| began)) {
            Ok(built) => built,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "malformed batch items; skipped");
                self.refuse(Refusal::Malformed, acked, deadline).await?;
                return Ok(Flow::Continue);
            }
        };
        let waited = Instant::now();
        let permit = account.take(deadline).await.map_err(|_| End::Cut(Cut::NoBudget))?;
        if acked.is_some() {
            self.ctx.metrics.stages.observe(Stage::Budget, waited.elapsed());
        }
        let (tx, rx) = oneshot::channel();
        let dedup = acked.map(|h| DedupId { producer: h.producer, batch_id: h.batch_id });
        let submitted = std::time::Instant::now();
        let batch =
            Batch { workspace: key.workspace, count, chunk, dedup, relayed: None, reply: Some(tx), permit, submitted };
        if self.ctx.pipeline.submit(batch).is_err() {
            self.refuse(Refusal::Unavailable, acked, deadline).await?;
            return Ok(Flow::Close(End::PipelineClosed));
        }
        match acked {
            Some(h) => {
                let ack_deadline = Instant::now() + self.ctx.ack_timeout;
                let pending = Pending::Waiting { batch_id: h.batch_id, outcome: rx, deadline: ack_deadline, started };
                self.reply(pending, deadline).await?;
            }
            None => self.last_commit = Some(rx),
        }
        Ok(Flow::Continue)
    }

    /// Decodes the batch's items into records and encodes them as a chunk.
    /// An acked batch's decode (from `began`, its check) and encode are timed.
    fn build_chunk(
        &mut self,
        view: &tell::BatchView<'_>,
        began: Option<Instant>,
    ) -> Result<(Vec<u8>, u32), tell::TellError> {
        self.builder.clear();
        let received_at = now_ms();
        tell::append_items(view, received_at, self.builder.records(received_at))?;
        let decoded = Instant::now();
        let (chunk, count) = self.builder.seal(&self.ctx.name, &self.peer);
        if let Some(began) = began {
            self.ctx.metrics.stages.observe(Stage::Decode, decoded - began);
            self.ctx.metrics.stages.observe(Stage::Encode, decoded.elapsed());
        }
        self.ctx.metrics.events_received.fetch_add(u64::from(count), Ordering::Relaxed);
        Ok((chunk, count))
    }

    async fn on_bad_key(&mut self, acked: Option<AckedHeader>, deadline: Instant) -> Result<Flow, End> {
        self.ctx.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        self.bad_keys_in_a_row += 1;
        tracing::debug!(peer = %self.peer, "unknown or revoked streaming key; batch refused");
        self.refuse(Refusal::BadKey, acked, deadline).await?;
        if self.bad_keys_in_a_row >= self.ctx.config.max_bad_keys.0 {
            tracing::info!(peer = %self.peer, frames = self.bad_keys_in_a_row, "closing connection after repeated bad keys");
            return Ok(Flow::Close(End::Protocol("too many bad keys".into())));
        }
        Ok(Flow::Continue)
    }

    /// Counts a refused frame and answers it if it was acked.
    async fn refuse(&mut self, why: Refusal, acked: Option<AckedHeader>, deadline: Instant) -> Result<(), End> {
        self.ctx.metrics.refuse(why);
        if let Some(h) = acked {
            let status = match why {
                Refusal::BadKey => Status::BadKey,
                Refusal::Malformed => Status::Malformed,
                Refusal::TooLarge => Status::TooLarge,
                Refusal::Unavailable | Refusal::RateLimited => Status::Unavailable,
            };
            self.reply(Pending::Ready(Ack::bare(status, h.batch_id)), deadline).await?;
        }
        Ok(())
    }

    /// Queues a reply, starting the ack writer on first use. A peer that does
    /// not read its acks fills the queue: it is cut at `deadline`.
    async fn reply(&mut self, pending: Pending, deadline: Instant) -> Result<(), End> {
        if self.acks.is_none()
            && let Some(write) = self.writer.take()
        {
            let (tx, rx) = mpsc::channel(PENDING_ACKS);
            let ack_writer = AckWriter { metrics: self.ctx.metrics.clone(), write_timeout: self.ctx.timeouts.frame };
            let task = tokio::spawn(ack_writer.run(rx, write));
            self.acks = Some((tx, task));
        }
        let Some((tx, _)) = &self.acks else { return Ok(()) };
        match tokio::time::timeout_at(deadline, tx.send(pending)).await {
            Ok(Ok(())) => Ok(()),
            // The writer gave up on the peer (it hung up or stopped reading).
            Ok(Err(_)) => Err(End::Protocol("the ack writer stopped".into())),
            Err(_) => Err(End::Cut(Cut::StalledReader)),
        }
    }

    /// Waits for the commits of what this connection handed on, and for the
    /// ack writer to write every reply (each write has its own deadline).
    async fn finish(&mut self) {
        let abort = self.ctx.abort.clone();
        if let Some(rx) = self.last_commit.take() {
            tokio::select! {
                _ = tokio::time::timeout(self.ctx.ack_timeout, rx) => {}
                _ = abort.cancelled() => {}
            }
        }
        if let Some((tx, mut task)) = self.acks.take() {
            drop(tx);
            // At the drain deadline the writer is cut off (its batches are committed regardless).
            tokio::select! {
                _ = &mut task => {}
                _ = abort.cancelled() => task.abort(),
            }
        }
    }
}

/// Writes a connection's replies in order.
struct AckWriter {
    metrics: Arc<SourceMetrics>,
    /// Longest a single write may wait for a peer that does not read.
    write_timeout: Duration,
}

impl AckWriter {
    /// Writes replies in order; flushes whenever the next one is not ready yet.
    async fn run(self, mut rx: mpsc::Receiver<Pending>, write: AckOut) {
        let mut out = BufWriter::new(write);
        // Acks written and not flushed yet: when their outcome came, and their frame's first byte.
        let mut unflushed: Vec<(Instant, Instant)> = Vec::new();
        while let Some(pending) = rx.recv().await {
            let ack = match pending {
                Pending::Ready(ack) => ack,
                Pending::Waiting { batch_id, mut outcome, deadline, started } => {
                    let result = match outcome.try_recv() {
                        Ok(o) => Ok(o),
                        Err(oneshot::error::TryRecvError::Closed) => Err(()),
                        Err(oneshot::error::TryRecvError::Empty) => {
                            if !self.flush(&mut out, &mut unflushed).await {
                                return;
                            }
                            match tokio::time::timeout_at(deadline, outcome).await {
                                Ok(Ok(o)) => Ok(o),
                                _ => Err(()),
                            }
                        }
                    };
                    unflushed.push((Instant::now(), started));
                    to_ack(batch_id, result, &self.metrics)
                }
            };
            if !self.timely(out.write_all(&ack.encode())).await {
                return;
            }
            if rx.is_empty() && !self.flush(&mut out, &mut unflushed).await {
                return;
            }
        }
        if self.flush(&mut out, &mut unflushed).await {
            let _ = self.timely(out.shutdown()).await;
        }
    }

    /// Flushes, then times the acks that went out: the `reply` stage and
    /// the whole `sluice_ack_duration_seconds`.
    async fn flush(&self, out: &mut BufWriter<AckOut>, unflushed: &mut Vec<(Instant, Instant)>) -> bool {
        if !self.timely(out.flush()).await {
            return false;
        }
        let now = Instant::now();
        for (known, started) in unflushed.drain(..) {
            self.metrics.stages.observe(Stage::Reply, now - known);
            self.metrics.ack_seconds.observe_duration(now - started);
        }
        true
    }

    /// Runs one write; false if it failed or the peer did not read in time (counted).
    async fn timely(&self, write: impl std::future::Future<Output = std::io::Result<()>>) -> bool {
        crate::net::conn::write_within(self.write_timeout, &self.metrics, write).await
    }
}

fn to_ack(batch_id: u64, result: Result<Outcome, ()>, metrics: &SourceMetrics) -> Ack {
    match result {
        Ok(Outcome::Stored { first_seq, count }) => Ack { status: Status::Stored, batch_id, first_seq, count },
        Ok(Outcome::Duplicate { first_seq, count }) => Ack { status: Status::Duplicate, batch_id, first_seq, count },
        // Timed out, store unavailable, or the writer went away: retry later.
        Ok(Outcome::Unavailable) | Err(()) => {
            metrics.refuse(Refusal::Unavailable);
            Ack::bare(Status::Unavailable, batch_id)
        }
    }
}
