//! Counters and gauges, rendered in the Prometheus text format.
//!
//! Every counter is a named constant; a drop is counted where it is logged.
//! Labels are only listener names and reasons, never keys, tokens or peers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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
pub const EVENTS_DROPPED_OVERLOAD: &str = "sluice_events_dropped_overload_total";
pub const UDP_KERNEL_DROPS: &str = "sluice_udp_kernel_drops_total";
pub const UDP_RCVBUF_ERRORS: &str = "sluice_udp_rcvbuf_errors_total";
pub const CONNECTIONS_CUT: &str = "sluice_connections_cut_total";
pub const DEDUP_RECORDS: &str = "sluice_dedup_records";

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

/// Reads one value of a listener's counters.
type SourceReading = fn(&SourceMetrics) -> i64;

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct SourceMetrics {
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
    /// Messages dropped because the pipeline was full (UDP sheds instead of waiting).
    pub dropped_overload: AtomicU64,
    /// Datagrams the kernel dropped on this listener's sockets (`/proc/net/udp` drops).
    pub kernel_drops: AtomicU64,
}

impl SourceMetrics {
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
const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

/// Counters of the writer thread.
#[derive(Debug, Default)]
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
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    commit_micros_sum: AtomicU64,
}

impl StoreMetrics {
    pub fn observe_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_micros_sum.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything the daemon counts; shared by all tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: std::sync::RwLock<BTreeMap<String, Arc<SourceMetrics>>>,
    pub store: StoreMetrics,
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
    pub fn source(&self, listener: &str) -> Arc<SourceMetrics> {
        if let Some(m) = self.sources.read().unwrap_or_else(|e| e.into_inner()).get(listener) {
            return m.clone();
        }
        let mut map = self.sources.write().unwrap_or_else(|e| e.into_inner());
        map.entry(listener.to_string()).or_default().clone()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner()).clone();
        let per_source: [(&str, &str, SourceReading); 9] = [
            (EVENTS_RECEIVED, "counter", |m| m.events_received.load(Ordering::Relaxed) as i64),
            (BYTES_RECEIVED, "counter", |m| m.bytes_received.load(Ordering::Relaxed) as i64),
            (CONNECTIONS_OPEN, "gauge", |m| m.connections_open.load(Ordering::Relaxed)),
            (CONNECTIONS_TOTAL, "counter", |m| m.connections_total.load(Ordering::Relaxed) as i64),
            (AUTH_FAILURES, "counter", |m| m.auth_failures.load(Ordering::Relaxed) as i64),
            (MESSAGES_TRUNCATED, "counter", |m| m.truncated.load(Ordering::Relaxed) as i64),
            (PEERS_REFUSED, "counter", |m| m.peers_refused.load(Ordering::Relaxed) as i64),
            (EVENTS_DROPPED_OVERLOAD, "counter", |m| m.dropped_overload.load(Ordering::Relaxed) as i64),
            (UDP_KERNEL_DROPS, "counter", |m| m.kernel_drops.load(Ordering::Relaxed) as i64),
        ];
        for (name, kind, get) in per_source {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (listener, m) in &sources {
                let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", get(m));
            }
        }
        let _ = writeln!(out, "# TYPE {FRAMES_REFUSED} counter");
        for (listener, m) in &sources {
            for why in Refusal::ALL {
                let _ = writeln!(
                    out,
                    "{FRAMES_REFUSED}{{listener=\"{listener}\",reason=\"{}\"}} {}",
                    why.label(),
                    m.refused(why)
                );
            }
        }
        let _ = writeln!(out, "# TYPE {CONNECTIONS_CUT} counter");
        for (listener, m) in &sources {
            for why in Cut::ALL {
                let _ = writeln!(
                    out,
                    "{CONNECTIONS_CUT}{{listener=\"{listener}\",reason=\"{}\"}} {}",
                    why.label(),
                    m.cuts(why)
                );
            }
        }
        self.render_store(&mut out);
        let failures = self.admin_auth_failures.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {ADMIN_AUTH_FAILURES} counter\n{ADMIN_AUTH_FAILURES} {failures}");
        let tails = self.tail_dropped.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {TAILS_DROPPED} counter\n{TAILS_DROPPED} {tails}");
        let hashing = self.password_hashes_in_flight.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {PASSWORD_HASHES_IN_FLIGHT} gauge\n{PASSWORD_HASHES_IN_FLIGHT} {hashing}");
        let waits = self.password_hash_waits.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {PASSWORD_HASH_WAITS} counter\n{PASSWORD_HASH_WAITS} {waits}");
        let cut = self.exports_cut.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {EXPORTS_CUT} counter\n{EXPORTS_CUT} {cut}");
        out
    }

    fn render_store(&self, out: &mut String) {
        let s = &self.store;
        let plain: [(&str, &str, u64); 10] = [
            (DEDUP_RECORDS, "gauge", s.dedup_records.load(Ordering::Relaxed)),
            (EVENTS_STORED, "counter", s.events_stored.load(Ordering::Relaxed)),
            (CHUNK_BYTES_STORED, "counter", s.chunk_bytes_stored.load(Ordering::Relaxed)),
            (STORED_BYTES, "gauge", s.stored_chunk_bytes.load(Ordering::Relaxed)),
            (BATCHES_DUPLICATE, "counter", s.duplicates.load(Ordering::Relaxed)),
            (COMMITS, "counter", s.commits.load(Ordering::Relaxed)),
            (COMMIT_FAILURES, "counter", s.commit_failures.load(Ordering::Relaxed)),
            (INFLIGHT_BYTES, "gauge", self.inflight_bytes.load(Ordering::Relaxed)),
            (UNTRUSTED_INFLIGHT_BYTES, "gauge", self.untrusted_inflight_bytes.load(Ordering::Relaxed)),
            (UDP_RCVBUF_ERRORS, "counter", self.udp_rcvbuf_errors.load(Ordering::Relaxed)),
        ];
        for (name, kind, v) in plain {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(out, "# TYPE {EVENTS_EXPIRED} counter");
        for (reason, n) in [("max_age", &s.events_expired_age), ("max_bytes", &s.events_expired_size)] {
            let _ = writeln!(out, "{EVENTS_EXPIRED}{{reason=\"{reason}\"}} {}", n.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# TYPE {COMMIT_SECONDS} histogram");
        let mut cumulative = 0;
        for (bound, n) in COMMIT_BUCKETS.iter().zip(&s.commit_buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{COMMIT_SECONDS}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = s.commits.load(Ordering::Relaxed);
        let sum = s.commit_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{COMMIT_SECONDS}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{COMMIT_SECONDS}_sum {sum}\n{COMMIT_SECONDS}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_per_listener_and_the_histogram() {
        let m = Metrics::default();
        m.source("tcp").events_received.fetch_add(5, Ordering::Relaxed);
        m.source("tcp").refuse(Refusal::BadKey);
        m.store.observe_commit(Duration::from_micros(700));
        let text = m.render();
        assert!(text.contains("sluice_events_received_total{listener=\"tcp\"} 5"), "{text}");
        assert!(text.contains("sluice_frames_refused_total{listener=\"tcp\",reason=\"bad_key\"} 1"));
        assert!(text.contains("sluice_commit_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("sluice_commit_duration_seconds_count 1"));
    }
}
