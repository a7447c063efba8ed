//! `[sources.syslog_tcp]` and `[sources.syslog_udp]`: syslog in, raw
//! messages out to the pipeline.
//!
//! At ingest a message is only scanned lightly (BOM, streaming key; see
//! `codec::syslog_scan`) and stored as its raw bytes with the time it was
//! received; it is parsed when read (`codec::syslog`). Per message that is
//! a copy into a [`BlockBuilder`] and a few header bytes.
//!
//! [`Batcher`] collects the messages of one read (TCP) or one burst of
//! datagrams (UDP) into one block per workspace (in `auth = "key"` mode a
//! connection may carry several tenants), and turns them into batches.

pub mod relp;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::auth::keys::KeyRegistry;
use crate::codec::syslog::Zone;
use crate::codec::syslog_scan::{KeyField, Scanner};
use crate::config::{SyslogAuth, SyslogCommon};
use crate::metrics::{Refusal, SourceMetrics};
use crate::pipeline::{Batch, Closed, Outcome, Permit, Pipeline};
use crate::record::{Kind, flag, tag};
use crate::store::chunk::ChunkBuilder;
use tokio::sync::oneshot;

/// A block is handed on once it holds this many bytes, even mid-read.
pub const FLUSH_BYTES: usize = 256 * 1024;

/// What every connection or socket of one syslog listener shares.
pub struct SyslogContext {
    /// Listener name as stored with each event (the config section name).
    pub name: &'static str,
    pub common: SyslogCommon,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
}

impl SyslogContext {
    /// The zone name stored with each record, unless it is UTC.
    fn zone_field(&self) -> Option<String> {
        match self.common.timezone {
            Zone::Utc => None,
            z => Some(z.to_string()),
        }
    }
}

/// Messages of one workspace waiting to be handed on.
#[derive(Debug)]
struct Part {
    workspace: u32,
    chunk: ChunkBuilder,
    /// The peer stored with the chunk; records from other peers carry their own.
    peer: Option<SocketAddr>,
    peer_text: String,
}

impl Part {
    fn new(workspace: u32) -> Part {
        Part { workspace, chunk: ChunkBuilder::with_capacity(64 * 1024), peer: None, peer_text: String::new() }
    }
}

/// Outcome of [`Batcher::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// No valid streaming key: refused and counted.
    Refused,
}

/// Collects messages into per-workspace blocks; one per connection or socket.
#[derive(Debug)]
pub struct Batcher {
    /// The listener's auth mode, or the workspace of a client certificate.
    auth: SyslogAuth,
    parts: Vec<Part>,
    scanner: Scanner,
    zone: Option<String>,
    bytes: usize,
}

impl Batcher {
    pub fn new(ctx: &SyslogContext) -> Batcher {
        Batcher {
            auth: ctx.common.auth,
            parts: Vec::new(),
            scanner: Scanner::default(),
            zone: ctx.zone_field(),
            bytes: 0,
        }
    }

    /// Every message goes to `workspace` (chosen by a client certificate),
    /// whatever the listener's auth mode.
    pub fn fix_workspace(&mut self, workspace: u32) {
        self.auth = SyslogAuth::Workspace(workspace);
    }

    /// Bytes of records waiting.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends one message received from `peer` at `received_at_ms`.
    pub fn push(
        &mut self,
        ctx: &SyslogContext,
        msg: &[u8],
        truncated: bool,
        peer: SocketAddr,
        received_at_ms: u64,
    ) -> Pushed {
        let want_key = self.auth == SyslogAuth::Key;
        let (raw, key) = self.scanner.scan(msg, want_key);
        let workspace = match (self.auth, key) {
            (SyslogAuth::Workspace(ws), _) => ws,
            (SyslogAuth::Key, KeyField::Found(k)) => match ctx.keys.lookup(&k) {
                Some(info) => info.workspace,
                None => return refuse(ctx, "unknown or revoked streaming key"),
            },
            (SyslogAuth::Key, KeyField::Missing | KeyField::NotWanted) => {
                return refuse(ctx, "no streaming key element");
            }
            (SyslogAuth::Key, KeyField::Malformed) => return refuse(ctx, "malformed streaming key element"),
        };
        let i = match self.parts.iter().position(|p| p.workspace == workspace) {
            Some(i) => i,
            None => {
                self.parts.push(Part::new(workspace));
                self.parts.len() - 1
            }
        };
        let part = &mut self.parts[i];
        let before = part.chunk.len_bytes();
        let other_peer = match part.peer {
            None => {
                part.peer = Some(peer);
                part.peer_text = peer.to_string();
                false
            }
            Some(p) => p != peer,
        };
        let block = part.chunk.records(received_at_ms);
        block.begin(Kind::Syslog, received_at_ms);
        block.bytes(tag::RAW, raw);
        if truncated {
            block.u8(tag::FLAGS, flag::TRUNCATED);
            ctx.metrics.truncated.fetch_add(1, Ordering::Relaxed);
        }
        if other_peer {
            block.str(tag::PEER, &peer.to_string());
        }
        if let Some(zone) = &self.zone {
            block.str(tag::TIMEZONE, zone);
        }
        block.end();
        self.bytes += part.chunk.len_bytes() - before;
        Pushed::Stored
    }

    /// Whether `msg` carries a valid streaming key (key mode), without storing it.
    pub fn carries_valid_key(&mut self, ctx: &SyslogContext, msg: &[u8]) -> bool {
        match self.scanner.scan(msg, true) {
            (_, KeyField::Found(k)) => ctx.keys.lookup(&k).is_some(),
            _ => false,
        }
    }

    /// Encodes every waiting block as a chunk and empties the batcher.
    pub fn drain(&mut self, ctx: &SyslogContext) -> Vec<Pending> {
        self.bytes = 0;
        let mut out = Vec::with_capacity(self.parts.len());
        for part in self.parts.iter_mut().filter(|p| !p.chunk.is_empty()) {
            let (chunk, count) = part.chunk.seal(ctx.name, &part.peer_text);
            out.push(Pending { workspace: part.workspace, count, chunk });
            part.peer = None;
        }
        out
    }

    /// Forgets the parts of workspaces that sent nothing lately (key mode
    /// with many tenants on one connection); keeps the common case cheap.
    pub fn compact(&mut self) {
        if self.parts.len() > 8 {
            self.parts.retain(|p| !p.chunk.is_empty());
        }
    }
}

/// An encoded chunk on its way to the pipeline.
pub struct Pending {
    pub workspace: u32,
    pub count: u32,
    pub chunk: Vec<u8>,
}

impl Pending {
    /// Hands the chunk on with `permit`, counting its messages as received;
    /// `reply` hears the commit's outcome.
    pub fn submit(
        self,
        ctx: &SyslogContext,
        permit: Permit,
        reply: Option<oneshot::Sender<Outcome>>,
    ) -> Result<(), Closed> {
        ctx.metrics.events_received.fetch_add(u64::from(self.count), Ordering::Relaxed);
        let batch = Batch {
            workspace: self.workspace,
            count: self.count,
            chunk: self.chunk,
            dedup: None,
            relayed: None,
            reply,
            permit,
            submitted: std::time::Instant::now(),
        };
        ctx.pipeline.submit(batch)
    }
}

/// The line a syslog listener logs when it stops: what it took and what it did not.
pub fn log_summary(ctx: &SyslogContext) {
    let m = &ctx.metrics;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    tracing::info!(
        listener = ctx.name,
        received = get(&m.events_received),
        truncated = get(&m.truncated),
        bad_key = m.refused(Refusal::BadKey),
        peers_refused = get(&m.peers_refused),
        shed = get(&m.dropped_overload),
        kernel_drops = get(&m.kernel_drops),
        "syslog listener stopped"
    );
}

fn refuse(ctx: &SyslogContext, why: &'static str) -> Pushed {
    ctx.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.refuse(Refusal::BadKey);
    tracing::debug!(listener = ctx.name, reason = why, "syslog message refused");
    Pushed::Refused
}
