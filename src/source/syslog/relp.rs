//! `[sources.relp]`: RELP, rsyslog's reliable forwarding (`omrelp`), framed
//! by `codec::relp`, answered only after the commit.
//!
//! A session is `open` (answered with sluice's offers: `relp_version=0`,
//! `commands=syslog`), then `syslog` frames, then `close` (answered with an
//! empty `rsp`). Transaction numbers must follow each other from 1; a gap, a
//! frame before `open`, an unknown command or broken framing ends the
//! session (counted as `malformed`). Messages go through the syslog
//! [`Batcher`] like `syslog_tcp`'s, with the same auth modes. Until `open`
//! (and in key mode until a message with a valid key) a peer is not
//! trusted: the untrusted idle timeout and byte share, and a frame longer
//! than `max_untrusted_bytes` is cut at its header.
//!
//! The frames of one read are handed on together and answered together:
//! the reply writer waits for the commits that hold them, then writes
//! `TXNR rsp 6 200 OK` for each, in order. When a commit fails, nothing
//! more is answered and the session ends (librelp drops a frame answered
//! with an error, but resends every unanswered one after reconnecting). A
//! message refused for its key is answered `500` (the sender drops it) and
//! the session ends there, so nothing after it is stored unanswered.
//!
//! At shutdown the listener stops reading at once (the sender resends
//! what was not answered), answers what was committed, and sends the
//! `serverclose` hint before closing.
//!
//! librelp renumbers what it resends, so a resent message cannot be told
//! by its frame. [`Unanswered`] remembers digests of the last messages of
//! every session that ended without `close`, per client address; a new
//! session's messages that match are counted in `sluice_relp_resent_total`
//! (and stored: identical text is not proof).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tcp::{Origin, SyslogTcpContext};
use super::{Batcher, FLUSH_BYTES, Pushed};
use crate::codec::relp::{self, Command, RelpDecoder, RelpFrame};
use crate::config::SyslogAuth;
use crate::metrics::{Cut, Refusal, SourceMetrics};
use crate::net::accept::{Listener, accept_loop};
use crate::net::budget::Account;
use crate::net::conn::{End, LoopEnv, Protocol, READ_CHUNK, read_loop};
use crate::pipeline::Outcome;
use crate::store::now_ms;

/// Answers queued per session before its reader waits for the writer
/// (librelp keeps at most 128 frames unanswered).
const PENDING_REPLIES: usize = 256;
/// Digests remembered of a session that broke: the window docs/rsyslog.md
/// recommends (librelp's default is 128).
const REMEMBERED_PER_SESSION: usize = 1024;
/// Client addresses remembered at once.
const REMEMBERED_PEERS: usize = 1024;

/// Digests of the last messages of broken sessions, per client address.
#[derive(Debug, Default)]
struct Unanswered {
    by_peer: Mutex<HashMap<IpAddr, Vec<u64>>>,
}

impl Unanswered {
    fn keep(&self, ip: IpAddr, digests: Vec<u64>) {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        if by_peer.len() >= REMEMBERED_PEERS
            && !by_peer.contains_key(&ip)
            && let Some(evict) = by_peer.keys().next().copied()
        {
            by_peer.remove(&evict);
        }
        by_peer.insert(ip, digests);
    }

    fn take(&self, ip: IpAddr) -> Vec<u64> {
        self.by_peer.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip).unwrap_or_default()
    }
}

fn digest(message: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    message.hash(&mut h);
    h.finish()
}

/// Serves the listener until `shutdown`, then waits for its sessions to
/// end and logs what the listener did.
pub async fn serve(listener: TcpListener, ctx: Arc<SyslogTcpContext>, shutdown: CancellationToken) {
    let sessions = TaskTracker::new();
    let unanswered = Arc::new(Unanswered::default());
    let metrics = ctx.base.metrics.clone();
    let me = Listener { name: ctx.base.name, limits: ctx.config.accept_limits(), metrics: &metrics };
    let handler_ctx = ctx.clone();
    accept_loop(listener, me, shutdown.clone(), sessions.clone(), move |stream, peer, slot| {
        let ctx = handler_ctx.clone();
        let shutdown = shutdown.clone();
        let unanswered = unanswered.clone();
        async move {
            stream.set_nodelay(true).ok();
            if super::tcp::allowed(&ctx, peer) {
                match ctx.tls.clone() {
                    None => {
                        let (read, write) = stream.into_split();
                        Session::run(ctx, (read, Box::new(write)), (peer, Origin::default()), unanswered, shutdown)
                            .await;
                    }
                    Some(tls) => {
                        if let Some((stream, origin)) = super::tcp::handshake(&ctx, &tls, stream, peer).await {
                            let (read, write) = tokio::io::split(stream);
                            Session::run(ctx, (read, Box::new(write)), (peer, origin), unanswered, shutdown).await;
                        }
                    }
                }
            }
            drop(slot);
        }
    })
    .await;
    sessions.close();
    sessions.wait().await;
    super::log_summary(&ctx.base);
}

/// The transaction numbers of the messages handed on together: always a
/// run of consecutive ones (any other frame hands on what came before it),
/// so a peer's tiny frames cost the reply queue nothing per frame.
#[derive(Debug, Default, Clone, Copy)]
struct Txnrs {
    first: u32,
    count: u32,
}

impl Txnrs {
    fn add(&mut self, txnr: u32) {
        if self.count == 0 {
            self.first = txnr;
        }
        self.count += 1;
    }
}

/// Where a session's answers are written: the socket, or its TLS session.
type ReplyOut = Box<dyn AsyncWrite + Send + Unpin>;

/// One entry of the reply queue, in frame order.
enum Reply {
    /// Written as it is.
    Ready(Vec<u8>),
    /// `200 OK` for each frame of `txnrs` once every commit in `outcomes`
    /// returned.
    Committed { txnrs: Txnrs, outcomes: Vec<oneshot::Receiver<Outcome>>, deadline: Instant, started: Instant },
}

struct Session {
    ctx: Arc<SyslogTcpContext>,
    peer: SocketAddr,
    trusted_throughout: bool,
    decoder: RelpDecoder,
    batcher: Batcher,
    /// The transaction number the next frame must carry.
    expected: u32,
    opened: bool,
    /// Transaction numbers of the messages in the batcher.
    txnrs: Txnrs,
    replies: mpsc::Sender<Reply>,
    /// The client sent `close`: nothing will be resent.
    closed: bool,
    /// Digests of the last messages stored.
    recent: VecDeque<u64>,
    /// Digests of the last messages of this peer's previous session, if it
    /// broke (taken at this session's first message).
    suspects: Option<Vec<u64>>,
    unanswered: Arc<Unanswered>,
}

impl Protocol for Session {
    async fn on_data(&mut self, buf: &mut BytesMut, account: &mut Account, deadline: Instant) -> Result<usize, End> {
        let received_at = now_ms();
        let started = Instant::now();
        let mut completed = 0;
        loop {
            let frame = match self.decoder.decode(buf) {
                Ok(Some(frame)) => frame,
                // A peer not yet trusted may not begin a frame over its limit.
                Ok(None) if !account.is_trusted() && self.decoder.data_len().is_some_and(|n| n > account.limit()) => {
                    tracing::debug!(listener = self.ctx.base.name, peer = %self.peer, "frame over max_untrusted_bytes before open or a valid key");
                    return Err(End::Cut(Cut::UntrustedTooLarge));
                }
                Ok(None) => break,
                Err(e) => return Err(self.broken(format!("framing error: {e}"))),
            };
            completed += 1;
            self.on_frame(frame, received_at, account, deadline, started).await?;
            if self.batcher.len_bytes() >= FLUSH_BYTES {
                self.flush(account, deadline, started).await?;
            }
        }
        self.flush(account, deadline, started).await?;
        Ok(completed)
    }

    fn in_frame(&self, buf: &BytesMut) -> bool {
        !buf.is_empty() || !self.decoder.at_boundary()
    }

    fn frame_rest(&self, buf: &BytesMut) -> usize {
        self.decoder.frame_rest(buf)
    }

    fn held_outside(&self) -> usize {
        self.decoder.held()
    }

    /// The sender resends what was not answered: at shutdown, stop reading.
    fn resends_unanswered(&self) -> bool {
        true
    }

    /// Key mode: a first message with a valid key trusts the peer before
    /// its bytes are charged (probed on a copy, only while untrusted).
    fn vet(&mut self, buf: &BytesMut, account: &mut Account) {
        if self.ctx.base.common.auth != SyslogAuth::Key {
            return;
        }
        let mut probe = self.decoder.clone();
        let mut copy = BytesMut::from(&buf[..]);
        while let Ok(Some(frame)) = probe.decode(&mut copy) {
            if frame.command == Command::Syslog {
                if self.batcher.carries_valid_key(&self.ctx.base, &frame.data) {
                    account.set_trusted(true);
                }
                return;
            }
        }
    }
}

impl Session {
    async fn run(
        ctx: Arc<SyslogTcpContext>,
        (mut read, write): (impl AsyncRead + Unpin, ReplyOut),
        (peer, origin): (SocketAddr, Origin),
        unanswered: Arc<Unanswered>,
        shutdown: CancellationToken,
    ) {
        let metrics = ctx.base.metrics.clone();
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        let trusted = ctx.base.common.trusts_on_sight() || origin.verified;
        // Until `open` (or a valid key), a peer has the untrusted share and
        // idle timeout, whatever the listener trusts.
        let mut account = Account::new(ctx.base.pipeline.budget(), origin.verified);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut batcher = Batcher::new(&ctx.base);
        if let Some(ws) = origin.workspace {
            batcher.fix_workspace(ws);
        }
        let (tx, rx) = mpsc::channel(PENDING_REPLIES);
        let writer = ReplyWriter { metrics: metrics.clone(), write_timeout: ctx.timeouts.frame };
        let writer: JoinHandle<()> = tokio::spawn(writer.run(rx, write));
        let mut session = Session {
            decoder: RelpDecoder::new(ctx.base.common.max_message_bytes),
            batcher,
            ctx,
            peer,
            trusted_throughout: trusted,
            expected: 1,
            opened: false,
            txnrs: Txnrs::default(),
            replies: tx,
            closed: false,
            recent: VecDeque::new(),
            suspects: None,
            unanswered: unanswered.clone(),
        };
        let abort = session.ctx.abort.clone();
        let env = LoopEnv { timeouts: session.ctx.timeouts, shutdown: &shutdown, abort: &abort, metrics: &metrics };
        let end = read_loop(&mut read, &mut session, &mut account, &mut buf, &env).await;
        tracing::debug!(listener = session.ctx.base.name, %peer, reason = %end, "RELP session ended");
        // A frame cut off by the end is never answered: the sender resends it.
        if !session.closed && !session.recent.is_empty() {
            unanswered.keep(peer.ip(), session.recent.drain(..).collect());
        }
        drop(session);
        let mut writer = writer;
        tokio::select! {
            _ = &mut writer => {}
            _ = abort.cancelled() => writer.abort(),
        }
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn on_frame(
        &mut self,
        frame: RelpFrame,
        received_at: u64,
        account: &mut Account,
        deadline: Instant,
        started: Instant,
    ) -> Result<(), End> {
        if frame.txnr != self.expected {
            return Err(self.broken(format!("transaction number {} where {} was due", frame.txnr, self.expected)));
        }
        self.expected = relp::next_txnr(self.expected);
        match frame.command {
            Command::Open => {
                // Answers go out in frame order: what came before is handed on first.
                self.flush(account, deadline, started).await?;
                let mut out = Vec::new();
                relp::rsp(frame.txnr, relp::OPEN_OK, &mut out);
                self.opened = true;
                if self.trusted_throughout {
                    account.set_trusted(true);
                }
                self.answer(out, deadline).await
            }
            Command::Syslog if self.opened => {
                let pushed = self.batcher.push(&self.ctx.base, &frame.data, frame.truncated, self.peer, received_at);
                match pushed {
                    Pushed::Stored => {
                        self.txnrs.add(frame.txnr);
                        self.remember(&frame.data);
                        if !account.is_trusted() {
                            account.set_trusted(true);
                        }
                        Ok(())
                    }
                    Pushed::Refused => {
                        // Answered 500 (the sender drops it); nothing after it is read.
                        if !self.trusted_throughout {
                            account.set_trusted(false);
                        }
                        self.flush(account, deadline, started).await?;
                        let mut out = Vec::new();
                        relp::rsp(frame.txnr, "500 no valid streaming key", &mut out);
                        self.answer(out, deadline).await?;
                        Err(End::Protocol("message refused for its key".into()))
                    }
                }
            }
            Command::Syslog => Err(self.broken("syslog before open".into())),
            Command::Close => {
                self.closed = true;
                self.flush(account, deadline, started).await?;
                let mut out = Vec::new();
                relp::rsp(frame.txnr, "", &mut out);
                self.answer(out, deadline).await?;
                Err(End::Protocol("the client closed the session".into()))
            }
            Command::Other(name) => Err(self.broken(format!("unknown command {name:?}"))),
        }
    }

    /// Keeps the digest of a stored message, and counts it if the previous,
    /// broken session of this peer stored the same.
    fn remember(&mut self, message: &[u8]) {
        let d = digest(message);
        let suspects = self.suspects.get_or_insert_with(|| self.unanswered.take(self.peer.ip()));
        if let Some(i) = suspects.iter().position(|&s| s == d) {
            suspects.swap_remove(i);
            self.ctx.base.metrics.resent.fetch_add(1, Ordering::Relaxed);
        }
        if self.recent.len() == REMEMBERED_PER_SESSION {
            // Resent frames come first, within one window: later ones are new.
            suspects.clear();
            self.recent.pop_front();
        }
        self.recent.push_back(d);
    }

    /// Counts a session broken by its peer; the reason ends it.
    fn broken(&self, why: String) -> End {
        self.ctx.base.metrics.refuse(Refusal::Malformed);
        tracing::debug!(listener = self.ctx.base.name, peer = %self.peer, reason = %why, "RELP session broken");
        End::Protocol(why)
    }

    /// Hands the waiting messages on and queues their answer.
    async fn flush(&mut self, account: &mut Account, deadline: Instant, started: Instant) -> Result<(), End> {
        if self.batcher.is_empty() {
            return Ok(());
        }
        let mut outcomes = Vec::new();
        for pending in self.batcher.drain(&self.ctx.base) {
            let permit = account.take(deadline).await.map_err(|_| End::Cut(Cut::NoBudget))?;
            let (tx, rx) = oneshot::channel();
            pending.submit(&self.ctx.base, permit, Some(tx)).map_err(|_| End::PipelineClosed)?;
            outcomes.push(rx);
        }
        self.batcher.compact();
        let txnrs = std::mem::take(&mut self.txnrs);
        let reply_deadline = Instant::now() + self.ctx.ack_timeout;
        self.queue(Reply::Committed { txnrs, outcomes, deadline: reply_deadline, started }, deadline).await
    }

    async fn answer(&mut self, bytes: Vec<u8>, deadline: Instant) -> Result<(), End> {
        self.queue(Reply::Ready(bytes), deadline).await
    }

    /// Queues a reply. A peer that does not read its answers fills the
    /// queue and is cut at `deadline`.
    async fn queue(&mut self, reply: Reply, deadline: Instant) -> Result<(), End> {
        match tokio::time::timeout_at(deadline, self.replies.send(reply)).await {
            Ok(Ok(())) => Ok(()),
            // The writer ended the session (a failed commit, a peer gone).
            Ok(Err(_)) => Err(End::Protocol("the reply writer stopped".into())),
            Err(_) => Err(End::Cut(Cut::StalledReader)),
        }
    }
}

/// Writes a session's answers in order, then the `serverclose` hint.
struct ReplyWriter {
    metrics: Arc<SourceMetrics>,
    /// Longest a single write may wait for a peer that does not read.
    write_timeout: Duration,
}

impl ReplyWriter {
    async fn run(self, mut rx: mpsc::Receiver<Reply>, write: ReplyOut) {
        let mut out = BufWriter::new(write);
        let mut bytes = Vec::new();
        let mut committed = true;
        while let Some(reply) = rx.recv().await {
            bytes.clear();
            match reply {
                Reply::Ready(b) => bytes = b,
                Reply::Committed { txnrs, outcomes, deadline, started } => {
                    for mut outcome in outcomes {
                        let done = match outcome.try_recv() {
                            Ok(o) => Some(o),
                            Err(oneshot::error::TryRecvError::Closed) => None,
                            Err(oneshot::error::TryRecvError::Empty) => {
                                // Waiting: what is written so far goes out first.
                                if !self.timely(out.flush()).await {
                                    return;
                                }
                                tokio::time::timeout_at(deadline, outcome).await.ok().and_then(Result::ok)
                            }
                        };
                        committed &= matches!(done, Some(Outcome::Stored { .. } | Outcome::Duplicate { .. }));
                    }
                    if !committed {
                        // Unanswered, the frames are resent after the sender reconnects.
                        self.metrics.refuse(Refusal::Unavailable);
                        // The writer logs the failed commit; each session only at DEBUG.
                        tracing::debug!("a commit failed: RELP session closed without answering");
                        break;
                    }
                    let mut txnr = txnrs.first;
                    for _ in 0..txnrs.count {
                        relp::rsp(txnr, relp::SYSLOG_OK, &mut bytes);
                        txnr = relp::next_txnr(txnr);
                    }
                    self.metrics.ack_seconds.observe_duration(started.elapsed());
                }
            }
            if !self.timely(out.write_all(&bytes)).await {
                return;
            }
            if rx.is_empty() && !self.timely(out.flush()).await {
                return;
            }
        }
        drop(rx);
        bytes.clear();
        relp::serverclose(&mut bytes);
        if self.timely(out.write_all(&bytes)).await && self.timely(out.flush()).await {
            let _ = self.timely(out.shutdown()).await;
        }
    }

    /// Runs one write; false if it failed or the peer did not read in time (counted).
    async fn timely(&self, write: impl std::future::Future<Output = std::io::Result<()>>) -> bool {
        crate::net::conn::write_within(self.write_timeout, &self.metrics, write).await
    }
}
