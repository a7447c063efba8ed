//! `[sources.tcp]`: the raw TCP source for Tell SDKs and acked clients.
//!
//! Each connection runs a read loop: decode every complete frame in the
//! buffer, take a byte permit for a pending payload *before* reading it (so a
//! full pipeline stops the reading and TCP pushes back on the sender), read
//! more. Each frame's key is checked (a deleted key is refused on its next
//! frame), its items are decoded into a record block, compressed into a chunk
//! and submitted.
//!
//! Acked frames are answered by a per-connection ack writer task, started on
//! the first acked frame (a Tell SDK connection never receives a byte). Acks
//! go out in frame order; a stored batch is answered only once its commit
//! has returned.
//!
//! A connection ends on EOF, idle timeout, an impossible frame length,
//! repeated bad keys, or shutdown (then it reads on until the peer is quiet
//! or gone). Before the socket is dropped, the commit of everything it
//! handed on is awaited (bounded by `ack_timeout`) and every ack is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
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
use crate::metrics::{Refusal, SourceMetrics};
use crate::pipeline::{Batch, Outcome, Permit, Pipeline};
use crate::record::BlockBuilder;
use crate::store::chunk::{self, ChunkMeta};
use crate::store::now_ms;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 32 * 1024;
/// After shutdown, a connection whose peer sends nothing for this long is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
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
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
}

/// Serves the listener until `shutdown`; connections run on `tracker`.
pub async fn serve(listener: TcpListener, ctx: Arc<TcpContext>, shutdown: CancellationToken, tracker: TaskTracker) {
    let max = ctx.config.max_connections.0;
    let accept_shutdown = shutdown.clone();
    super::accept_loop(listener, max, accept_shutdown, tracker, move |stream, peer, permit| {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            Connection::run(ctx, stream, peer, shutdown).await;
            drop(permit);
        }
    })
    .await;
}

/// Why a connection ended (for the log line).
#[derive(Debug)]
enum End {
    Eof,
    Idle,
    Drained,
    Aborted,
    TruncatedFrame,
    BadKeys,
    Framing(String),
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
            End::TruncatedFrame => f.write_str("peer closed in the middle of a frame"),
            End::BadKeys => f.write_str("too many bad keys"),
            End::Framing(e) => write!(f, "framing error: {e}"),
            End::Io(e) => write!(f, "read error: {e}"),
            End::PipelineClosed => f.write_str("pipeline closed"),
        }
    }
}

enum Flow {
    Continue,
    Close(End),
}

/// One pending reply, in frame order.
enum Pending {
    Ready(Ack),
    Waiting { batch_id: u64, outcome: oneshot::Receiver<Outcome>, deadline: Instant },
}

struct Connection {
    ctx: Arc<TcpContext>,
    peer: String,
    decoder: FrameDecoder,
    buf: BytesMut,
    builder: BlockBuilder,
    /// Budget taken for the frame whose payload is being read.
    pending_permit: Option<Permit>,
    bad_keys_in_a_row: usize,
    /// The commit outcome of the last unacked (Tell) batch handed on.
    last_commit: Option<oneshot::Receiver<Outcome>>,
    writer: Option<OwnedWriteHalf>,
    acks: Option<(mpsc::Sender<Pending>, JoinHandle<()>)>,
}

impl Connection {
    async fn run(ctx: Arc<TcpContext>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        // Best effort: NODELAY only changes ack latency.
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let metrics = ctx.metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let mut conn = Connection {
            decoder: FrameDecoder::new(ctx.config.max_frame_bytes.0),
            ctx,
            peer: peer.to_string(),
            buf: BytesMut::with_capacity(READ_CHUNK),
            builder: BlockBuilder::with_capacity(64 * 1024),
            pending_permit: None,
            bad_keys_in_a_row: 0,
            last_commit: None,
            writer: Some(write),
            acks: None,
        };
        let end = conn.read_loop(read, &shutdown).await;
        tracing::debug!(peer = %conn.peer, reason = %end, "connection ended");
        conn.finish().await;
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn read_loop(&mut self, mut read: OwnedReadHalf, shutdown: &CancellationToken) -> End {
        let mut draining = shutdown.is_cancelled();
        loop {
            if let Some(end) = self.decode_buffered().await {
                return end;
            }
            if self.pending_permit.is_none()
                && let Some(len) = self.decoder.pending_payload(&self.buf)
            {
                let Some(permit) = self.reserve(len).await else { return End::Aborted };
                self.pending_permit = Some(permit);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let quiet = if draining { DRAIN_QUIET } else { self.ctx.config.idle_timeout };
            let read_result = tokio::select! {
                r = tokio::time::timeout(quiet, read.read_buf(&mut self.buf)) => r,
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    continue;
                }
                _ = self.ctx.abort.cancelled() => return End::Aborted,
            };
            match read_result {
                Err(_) if draining => return End::Drained,
                Err(_) => return End::Idle,
                Ok(Ok(0)) if self.buf.is_empty() => return End::Eof,
                Ok(Ok(0)) => {
                    self.ctx.metrics.refuse(Refusal::Malformed);
                    return End::TruncatedFrame;
                }
                Ok(Ok(n)) => {
                    self.ctx.metrics.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(Err(e)) => return End::Io(e),
            }
        }
    }

    /// Handles every complete frame in the buffer.
    async fn decode_buffered(&mut self) -> Option<End> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if let Flow::Close(end) = self.on_frame(frame).await {
                        return Some(end);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    self.ctx.metrics.refuse(Refusal::Malformed);
                    tracing::warn!(peer = %self.peer, error = %e, "closing connection: framing error");
                    return Some(End::Framing(e.to_string()));
                }
            }
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Flow {
        match frame {
            Frame::Tell { batch } => self.on_batch(batch, None).await,
            Frame::Acked { header, batch } => self.on_batch(batch, Some(header)).await,
            Frame::Oversized { header, len } => {
                tracing::debug!(peer = %self.peer, len, limit = self.ctx.config.max_frame_bytes.0, "frame too large; skipped");
                self.refuse(Refusal::TooLarge, header).await
            }
        }
    }

    async fn on_batch(&mut self, bytes: Bytes, acked: Option<AckedHeader>) -> Flow {
        let permit = match self.pending_permit.take() {
            Some(p) => p,
            None => match self.reserve(bytes.len()).await {
                Some(p) => p,
                None => return Flow::Close(End::Aborted),
            },
        };
        let view = match tell::decode_batch(&bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "malformed batch; skipped");
                return self.refuse(Refusal::Malformed, acked).await;
            }
        };
        let Some(key) = self.ctx.keys.lookup(&view.api_key) else {
            return self.on_bad_key(acked).await;
        };
        self.bad_keys_in_a_row = 0;
        let (chunk, count) = match self.build_chunk(&view) {
            Ok(built) => built,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "malformed batch items; skipped");
                return self.refuse(Refusal::Malformed, acked).await;
            }
        };
        let (tx, rx) = oneshot::channel();
        let batch = Batch { workspace: key.workspace, count, chunk, dedup: acked, reply: Some(tx), permit };
        if self.ctx.pipeline.submit(batch).is_err() {
            self.refuse(Refusal::Unavailable, acked).await;
            return Flow::Close(End::PipelineClosed);
        }
        match acked {
            Some(h) => {
                let deadline = Instant::now() + self.ctx.ack_timeout;
                self.reply(Pending::Waiting { batch_id: h.batch_id, outcome: rx, deadline }).await;
            }
            None => self.last_commit = Some(rx),
        }
        Flow::Continue
    }

    /// Decodes the batch's items into records and encodes them as a chunk.
    fn build_chunk(&mut self, view: &tell::BatchView<'_>) -> Result<(Vec<u8>, u32), tell::TellError> {
        let received_at = now_ms();
        self.builder.clear();
        tell::append_items(view, received_at, &mut self.builder)?;
        let count = self.builder.count();
        self.ctx.metrics.events_received.fetch_add(u64::from(count), Ordering::Relaxed);
        let meta = ChunkMeta {
            listener: &self.ctx.name,
            peer: &self.peer,
            count,
            min_received_ms: received_at,
            max_received_ms: received_at,
        };
        Ok((chunk::encode(&meta, self.builder.finished()), count))
    }

    async fn on_bad_key(&mut self, acked: Option<AckedHeader>) -> Flow {
        self.ctx.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        self.bad_keys_in_a_row += 1;
        tracing::debug!(peer = %self.peer, "unknown or revoked streaming key; batch refused");
        self.refuse(Refusal::BadKey, acked).await;
        if self.bad_keys_in_a_row >= self.ctx.config.max_bad_keys.0 {
            tracing::info!(peer = %self.peer, frames = self.bad_keys_in_a_row, "closing connection after repeated bad keys");
            return Flow::Close(End::BadKeys);
        }
        Flow::Continue
    }

    /// Counts a refused frame and answers it if it was acked.
    async fn refuse(&mut self, why: Refusal, acked: Option<AckedHeader>) -> Flow {
        self.ctx.metrics.refuse(why);
        if let Some(h) = acked {
            let status = match why {
                Refusal::BadKey => Status::BadKey,
                Refusal::Malformed => Status::Malformed,
                Refusal::TooLarge => Status::TooLarge,
                Refusal::Unavailable | Refusal::RateLimited => Status::Unavailable,
            };
            self.reply(Pending::Ready(Ack::bare(status, h.batch_id))).await;
        }
        Flow::Continue
    }

    /// Queues a reply, starting the ack writer on first use.
    async fn reply(&mut self, pending: Pending) {
        if self.acks.is_none()
            && let Some(write) = self.writer.take()
        {
            let (tx, rx) = mpsc::channel(PENDING_ACKS);
            let task = tokio::spawn(write_acks(rx, write, self.ctx.metrics.clone()));
            self.acks = Some((tx, task));
        }
        if let Some((tx, _)) = &self.acks {
            // A peer that does not read its acks fills this queue; the drain
            // deadline must still end the connection.
            tokio::select! {
                // If the writer is gone the peer has hung up; replies are moot.
                _ = tx.send(pending) => {}
                _ = self.ctx.abort.cancelled() => {}
            }
        }
    }

    /// Takes budget for `len` bytes; `None` once the drain deadline has passed.
    async fn reserve(&self, len: usize) -> Option<Permit> {
        tokio::select! {
            p = self.ctx.pipeline.reserve(len) => Some(p),
            _ = self.ctx.abort.cancelled() => None,
        }
    }

    /// Waits for the commits of what this connection handed on, and for the
    /// ack writer to write every reply.
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
            // The ack writer blocks on a peer that stops reading: at the drain
            // deadline it is cut off (its batches are committed regardless).
            tokio::select! {
                _ = &mut task => {}
                _ = abort.cancelled() => task.abort(),
            }
        }
    }
}

/// Writes replies in order; flushes whenever the next one is not ready yet.
async fn write_acks(mut rx: mpsc::Receiver<Pending>, write: OwnedWriteHalf, metrics: Arc<SourceMetrics>) {
    let mut out = BufWriter::new(write);
    while let Some(pending) = rx.recv().await {
        let ack = match pending {
            Pending::Ready(ack) => ack,
            Pending::Waiting { batch_id, mut outcome, deadline } => {
                let result = match outcome.try_recv() {
                    Ok(o) => Ok(o),
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        if out.flush().await.is_err() {
                            return;
                        }
                        match tokio::time::timeout_at(deadline, outcome).await {
                            Ok(Ok(o)) => Ok(o),
                            _ => Err(()),
                        }
                    }
                };
                to_ack(batch_id, result, &metrics)
            }
        };
        if out.write_all(&ack.encode()).await.is_err() {
            return;
        }
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
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
