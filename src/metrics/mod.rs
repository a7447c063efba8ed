//! What the daemon counts, exposed at `GET /metrics` through
//! prometheus-client ([`expose`]): the Prometheus text format, or
//! OpenMetrics when the scraper asks for it.
//!
//! The hot paths only add to atomics (and [`Histogram`]s, two atomic adds
//! each); the exposition reads them at scrape time. Every family is a named
//! constant (its exported name) with help text in [`expose`]; a drop is
//! counted where it is logged. Labels are listener names, reasons and
//! stages, never keys, tokens or peers. Each listener exports only the
//! families that apply to its [`ListenerKind`].

pub mod expose;
pub mod histogram;
pub mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use histogram::Histogram;

pub const EVENTS_RECEIVED: &str = "sluice_events_received_total";
pub const BYTES_RECEIVED: &str = "sluice_bytes_received_total";
pub const FRAMES_REFUSED: &str = "sluice_frames_refused_total";
pub const CONNECTIONS_OPEN: &str = "sluice_connections_open";
pub const CONNECTIONS_TOTAL: &str = "sluice_connections_total";
pub const AUTH_FAILURES: &str = "sluice_auth_failures_total";
pub const EVENTS_STORED: &str = "sluice_events_stored_total";
pub const BATCHES_DUPLICATE: &str = "sluice_batches_duplicate_total";
pub const COMMITS: &str = "sluice_commits_total";
pub const COMMIT_FAILURES: &str = "sluice_commit_failures_total";
pub const COMMIT_SECONDS: &str = "sluice_commit_duration_seconds";
pub const CHUNK_BYTES_STORED: &str = "sluice_chunk_bytes_stored_total";
pub const STORED_BYTES: &str = "sluice_stored_chunk_bytes";
pub const EVENTS_EXPIRED: &str = "sluice_events_expired_total";
pub const INFLIGHT_BYTES: &str = "sluice_inflight_bytes";
pub const UNTRUSTED_INFLIGHT_BYTES: &str = "sluice_untrusted_inflight_bytes";
pub const ADMIN_AUTH_FAILURES: &str = "sluice_admin_auth_failures_total";
pub const TAILS_DROPPED: &str = "sluice_tails_dropped_total";
pub const PASSWORD_HASHES_IN_FLIGHT: &str = "sluice_admin_password_hashes_in_flight";
pub const PASSWORD_HASH_WAITS: &str = "sluice_admin_password_hash_waits_total";
pub const EXPORTS_CUT: &str = "sluice_exports_cut_total";
pub const MESSAGES_TRUNCATED: &str = "sluice_messages_truncated_total";
pub const PEERS_REFUSED: &str = "sluice_peers_refused_total";
pub const RELP_RESENT: &str = "sluice_relp_resent_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "sluice_tls_handshake_failures_total";
pub const EVENTS_DROPPED_OVERLOAD: &str = "sluice_events_dropped_overload_total";
pub const UDP_KERNEL_DROPS: &str = "sluice_udp_kernel_drops_total";
pub const UDP_RCVBUF_ERRORS: &str = "sluice_udp_rcvbuf_errors_total";
pub const CONNECTIONS_CUT: &str = "sluice_connections_cut_total";
pub const DEDUP_RECORDS: &str = "sluice_dedup_records";
pub const ACK_SECONDS: &str = "sluice_ack_duration_seconds";
pub const ACK_STAGE_SECONDS: &str = "sluice_ack_stage_duration_seconds";
pub const COMMIT_BATCHES: &str = "sluice_commit_batches";
pub const COMMIT_BYTES: &str = "sluice_commit_bytes";
pub const BUILD_INFO: &str = "sluice_build_info";
pub const BUDGET_BYTES: &str = "sluice_inflight_budget_bytes";
pub const DISK_FREE_BYTES: &str = "sluice_disk_free_bytes";
pub const DISK_TOTAL_BYTES: &str = "sluice_disk_total_bytes";
pub const RETENTION_MAX_BYTES: &str = "sluice_retention_max_bytes";
pub const FORWARD_LAG_EVENTS: &str = "sluice_forward_lag_events";
pub const FORWARD_LAG_BYTES: &str = "sluice_forward_lag_bytes";
pub const FORWARD_EVENTS: &str = "sluice_forward_events_total";
pub const FORWARD_MESSAGES: &str = "sluice_forward_messages_total";
pub const FORWARD_FAILURES: &str = "sluice_forward_publish_failures_total";
pub const FORWARD_TOO_LARGE: &str = "sluice_forward_events_too_large_total";
pub const FORWARD_PUBACK_SECONDS: &str = "sluice_forward_puback_duration_seconds";
pub const FORWARD_HELD: &str = "sluice_forward_answers_held";
pub const RELAY_MESSAGES: &str = "sluice_relay_messages_total";
pub const RELAY_EVENTS: &str = "sluice_relay_events_stored_total";
pub const RELAY_SKIPPED: &str = "sluice_relay_messages_skipped_total";
pub const RELAY_UNDECODABLE: &str = "sluice_relay_messages_undecodable_total";
pub const RELAY_GAPS: &str = "sluice_relay_gaps_total";

/// What kind of listener a name belongs to: it decides which families the
/// listener exports (a UDP listener has no connections, a TCP one no
/// kernel drops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Raw TCP (Tell frames, acked frames).
    Tcp,
    SyslogTcp,
    SyslogUdp,
    /// RELP (syslog messages, answered after the commit).
    Relp,
    /// HTTP ingest.
    Http,
    /// OTLP/HTTP.
    Otlp,
    /// The admin API (connections only).
    Admin,
}

impl ListenerKind {
    pub fn ingests(self) -> bool {
        self != ListenerKind::Admin
    }

    pub fn has_connections(self) -> bool {
        self != ListenerKind::SyslogUdp
    }

    pub fn is_syslog(self) -> bool {
        matches!(self, ListenerKind::SyslogTcp | ListenerKind::SyslogUdp | ListenerKind::Relp)
    }

    /// Whether it answers after the commit (and so has an ack latency).
    pub fn acks(self) -> bool {
        matches!(self, ListenerKind::Tcp | ListenerKind::Http | ListenerKind::Otlp | ListenerKind::Relp)
    }

    /// The refusal reasons this kind of listener can count.
    pub fn refusals(self) -> &'static [Refusal] {
        match self {
            ListenerKind::Tcp => &[Refusal::BadKey, Refusal::Malformed, Refusal::TooLarge, Refusal::Unavailable],
            ListenerKind::Http | ListenerKind::Otlp => &Refusal::ALL,
            ListenerKind::SyslogTcp | ListenerKind::SyslogUdp => &[Refusal::BadKey],
            ListenerKind::Relp => &[Refusal::BadKey, Refusal::Malformed, Refusal::Unavailable],
            ListenerKind::Admin => &[],
        }
    }
}

/// A stage of the acknowledged path, from a frame's first byte to its ack
/// written (`sluice_ack_stage_duration_seconds{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// First byte of the frame to the whole frame read (a slow sender, or
    /// reading paused at the connection's byte limit).
    Receive,
    /// Checking the batch and decoding its items into records.
    Decode,
    /// Encoding the records as a chunk (zstd).
    Encode,
    /// Waiting for room in the in-flight budget.
    Budget,
    /// Handed to the writer until its transaction starts (per batch).
    Queue,
    /// The write transaction before the commit (per commit).
    Write,
    /// The commit itself, fsync included (per commit).
    Commit,
    /// The outcome known until the ack is written (per batch).
    Reply,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Receive,
        Stage::Decode,
        Stage::Encode,
        Stage::Budget,
        Stage::Queue,
        Stage::Write,
        Stage::Commit,
        Stage::Reply,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Decode => "decode",
            Stage::Encode => "encode",
            Stage::Budget => "budget",
            Stage::Queue => "queue",
            Stage::Write => "write",
            Stage::Commit => "commit",
            Stage::Reply => "reply",
        }
    }
}

/// Time spent per stage of the acknowledged path, all listeners together.
#[derive(Debug)]
pub struct AckStages {
    stages: [Histogram; Stage::ALL.len()],
}

impl Default for AckStages {
    fn default() -> AckStages {
        AckStages { stages: std::array::from_fn(|_| Histogram::new(histogram::STAGE_SECONDS)) }
    }
}

impl AckStages {
    pub fn observe(&self, stage: Stage, took: Duration) {
        self.stages[stage as usize].observe_duration(took);
    }

    pub fn get(&self, stage: Stage) -> &Histogram {
        &self.stages[stage as usize]
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    BadKey,
    Malformed,
    TooLarge,
    Unavailable,
    /// Over a rate limit (HTTP 429).
    RateLimited,
}

impl Refusal {
    pub const ALL: [Refusal; 5] =
        [Refusal::BadKey, Refusal::Malformed, Refusal::TooLarge, Refusal::Unavailable, Refusal::RateLimited];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadKey => "bad_key",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::Unavailable => "unavailable",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// Why the connection toolkit cut a connection (or refused it at accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cut {
    /// Quiet between frames for the listener's idle timeout.
    Idle,
    /// A frame, request head or body not complete by its deadline (too slow a trickle).
    SlowFrame,
    /// No room in the in-flight budget before the deadline.
    NoBudget,
    /// Too many connections from one client address (`max_connections_per_address`).
    PerAddress,
    /// A peer without a key announced a frame over `max_untrusted_bytes`.
    UntrustedTooLarge,
    /// The peer stopped reading what it asked for (acks, a response body).
    StalledReader,
}

impl Cut {
    pub const ALL: [Cut; 6] =
        [Cut::Idle, Cut::SlowFrame, Cut::NoBudget, Cut::PerAddress, Cut::UntrustedTooLarge, Cut::StalledReader];

    pub fn label(self) -> &'static str {
        match self {
            Cut::Idle => "idle",
            Cut::SlowFrame => "slow_frame",
            Cut::NoBudget => "no_budget",
            Cut::PerAddress => "per_address",
            Cut::UntrustedTooLarge => "untrusted_too_large",
            Cut::StalledReader => "stalled_reader",
        }
    }
}

/// Counters of one listener.
#[derive(Debug)]
pub struct SourceMetrics {
    pub kind: ListenerKind,
    pub events_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub auth_failures: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    cut: [AtomicU64; Cut::ALL.len()],
    /// Messages stored cut to the size limit (flagged `truncated`).
    pub truncated: AtomicU64,
    /// Connections or datagrams refused because the peer is not in `allowed_sources`.
    pub peers_refused: AtomicU64,
    /// TLS handshakes that failed or timed out (TLS listeners only).
    pub tls_handshake_failures: AtomicU64,
    /// RELP messages stored again after a broken session (those it can tell).
    pub resent: AtomicU64,
    /// Messages dropped because the pipeline was full (UDP sheds instead of waiting).
    pub dropped_overload: AtomicU64,
    /// Datagrams the kernel dropped on this listener's sockets (`/proc/net/udp` drops).
    pub kernel_drops: AtomicU64,
    /// First byte of an acknowledged batch to its answer written.
    pub ack_seconds: Histogram,
    /// The daemon's stage histograms (shared by every listener).
    pub stages: Arc<AckStages>,
}

impl SourceMetrics {
    /// A listener's counters, with stage histograms of its own (tests).
    pub fn new(kind: ListenerKind) -> SourceMetrics {
        SourceMetrics::with_stages(kind, Arc::default())
    }

    fn with_stages(kind: ListenerKind, stages: Arc<AckStages>) -> SourceMetrics {
        SourceMetrics {
            stages,
            kind,
            events_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            refused: Default::default(),
            cut: Default::default(),
            truncated: AtomicU64::new(0),
            peers_refused: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            dropped_overload: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            kernel_drops: AtomicU64::new(0),
            ack_seconds: Histogram::new(histogram::STAGE_SECONDS),
        }
    }

    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Counts a connection the toolkit cut (the caller logs it at DEBUG).
    pub fn cut(&self, why: Cut) {
        self.cut[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn cuts(&self, why: Cut) -> u64 {
        self.cut[why as usize].load(Ordering::Relaxed)
    }
}

/// Upper bounds of the commit latency histogram, in seconds.
const COMMIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

/// Counters of the writer thread.
#[derive(Debug)]
pub struct StoreMetrics {
    pub events_stored: AtomicU64,
    pub chunk_bytes_stored: AtomicU64,
    /// Bytes of chunks in the store now (what `[retention] max_bytes` limits).
    pub stored_chunk_bytes: AtomicU64,
    /// De-duplication records in the store now (all workspaces).
    pub dedup_records: AtomicU64,
    /// Events deleted by retention for `max_age`.
    pub events_expired_age: AtomicU64,
    /// Events deleted by retention for `max_bytes`.
    pub events_expired_size: AtomicU64,
    pub duplicates: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Whole transactions (write and commit) that committed.
    pub commit_seconds: Histogram,
    /// Batches and chunk bytes per commit.
    pub commit_batches: Histogram,
    pub commit_bytes: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> StoreMetrics {
        StoreMetrics {
            events_stored: AtomicU64::new(0),
            chunk_bytes_stored: AtomicU64::new(0),
            stored_chunk_bytes: AtomicU64::new(0),
            dedup_records: AtomicU64::new(0),
            events_expired_age: AtomicU64::new(0),
            events_expired_size: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            commit_batches: Histogram::new(histogram::GROUP_BATCHES),
            commit_bytes: Histogram::new(histogram::GROUP_BYTES),
        }
    }
}

impl StoreMetrics {
    /// A commit that succeeded: how long the transaction took, and what it held.
    pub fn observe_commit(&self, took: Duration, batches: usize, bytes: usize) {
        self.commit_seconds.observe_duration(took);
        self.commit_batches.observe(batches as f64);
        self.commit_bytes.observe(bytes as f64);
    }

    pub fn commits(&self) -> u64 {
        self.commit_seconds.count()
    }
}

/// The forwarder's counters (`[forward.nats]`; exported only when it runs).
#[derive(Debug)]
pub struct ForwardMetrics {
    pub enabled: std::sync::atomic::AtomicBool,
    /// Events and chunk bytes committed but not yet acknowledged by JetStream.
    pub lag_events: AtomicU64,
    pub lag_bytes: AtomicU64,
    pub events: AtomicU64,
    pub messages: AtomicU64,
    pub failures: AtomicU64,
    pub too_large: AtomicU64,
    /// Answers held for `ack = "replicated"` now.
    pub held: AtomicU64,
    /// Publish to PubAck, per message.
    pub puback_seconds: Histogram,
}

impl Default for ForwardMetrics {
    fn default() -> ForwardMetrics {
        ForwardMetrics {
            enabled: Default::default(),
            lag_events: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            events: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            held: AtomicU64::new(0),
            puback_seconds: Histogram::new(COMMIT_BUCKETS),
        }
    }
}

/// The central consumer's counters (`[sources.nats]`; exported only when it runs).
#[derive(Debug, Default)]
pub struct RelayMetrics {
    pub enabled: std::sync::atomic::AtomicBool,
    pub messages: AtomicU64,
    pub events: AtomicU64,
    /// Messages whose events were all stored before (redelivered or re-sent).
    pub skipped: AtomicU64,
    /// Messages of an unknown format or that do not decode (left for later).
    pub undecodable: AtomicU64,
    /// Messages stored although events before them never arrived.
    pub gaps: AtomicU64,
}

/// Everything the daemon counts; shared by all tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: std::sync::RwLock<BTreeMap<String, Arc<SourceMetrics>>>,
    pub store: StoreMetrics,
    pub stages: Arc<AckStages>,
    pub forward: ForwardMetrics,
    pub relay: RelayMetrics,
    /// The data dir, set at start: its filesystem's free and total bytes are read at scrape time.
    pub data_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// `[retention] max_bytes` (0: no limit), set at start.
    pub retention_max_bytes: AtomicU64,
    /// `[pipeline] max_inflight_bytes`, set at start.
    pub budget_bytes: AtomicU64,
    pub inflight_bytes: AtomicU64,
    /// Of those, bytes held by peers not trusted yet (at most a quarter of the budget).
    pub untrusted_inflight_bytes: AtomicU64,
    /// Admin API requests refused for a missing or bad token.
    pub admin_auth_failures: AtomicU64,
    /// Live tails (`GET /api/v1/events/tail`) dropped for not keeping up.
    pub tail_dropped: AtomicU64,
    /// Argon2 hashes running now (at most `[admin] max_password_hashes`).
    pub password_hashes_in_flight: AtomicU64,
    /// Logins (and password changes) that waited for a free hashing slot.
    pub password_hash_waits: AtomicU64,
    /// Exports (`GET /api/v1/events/export`) that ended with the error trailer.
    pub exports_cut: AtomicU64,
    /// Host-wide `Udp: RcvbufErrors` from `/proc/net/snmp`, kept up to date by the UDP source.
    pub udp_rcvbuf_errors: AtomicU64,
}

impl Metrics {
    /// The counters of a listener, created on first use.
    pub fn source(&self, listener: &str, kind: ListenerKind) -> Arc<SourceMetrics> {
        if let Some(m) = self.sources.read().unwrap_or_else(|e| e.into_inner()).get(listener) {
            return m.clone();
        }
        let mut map = self.sources.write().unwrap_or_else(|e| e.into_inner());
        let stages = self.stages.clone();
        map.entry(listener.to_string()).or_insert_with(|| Arc::new(SourceMetrics::with_stages(kind, stages))).clone()
    }

    /// Every listener's counters, by name.
    pub fn sources(&self) -> BTreeMap<String, Arc<SourceMetrics>> {
        self.sources.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
