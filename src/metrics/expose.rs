//! `GET /metrics`: every family with its help text and type, through
//! prometheus-client's encoders (the Prometheus text format 0.0.4, or
//! OpenMetrics 1.0 when the scraper's `Accept` asks for it), plus the
//! standard `process_*` families and `sluice_build_info`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process::Process;
use super::*;

/// The two text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics if `accept` names it, as Prometheus asks by default.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The whole exposition of `metrics`.
pub fn render(metrics: &Arc<Metrics>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(metrics.clone())));
    let mut out = String::new();
    let encoded = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing into a String cannot fail; a failure would be a bug in a family below.
    if let Err(e) = encoded {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

#[derive(Debug)]
struct Collect(Arc<Metrics>);

type Result = std::result::Result<(), std::fmt::Error>;

/// A family's name as the encoder wants it: without the `_total` (counter)
/// or `_info` suffix it adds itself.
fn base(name: &'static str, kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        MetricType::Info => name.strip_suffix("_info").unwrap_or(name),
        _ => name,
    }
}

fn family<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &str,
    kind: MetricType,
) -> std::result::Result<MetricEncoder<'a>, std::fmt::Error> {
    enc.encode_descriptor(base(name, kind), help, None, kind)
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &'static str, help: &str, v: impl EncodeCounterValue) -> Result {
    family(enc, name, help, MetricType::Counter)?.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &'static str, help: &str, v: impl EncodeGaugeValue) -> Result {
    family(enc, name, help, MetricType::Gauge)?.encode_gauge(&v)
}

fn histogram(m: &mut MetricEncoder<'_>, h: &Histogram) -> Result {
    let (sum, count, buckets) = h.snapshot();
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// One family with samples for each listener of the kinds it applies to;
/// `sample` gets the family, the listener's name and its counters.
fn per_listener(
    enc: &mut DescriptorEncoder<'_>,
    sources: &[(String, Arc<SourceMetrics>)],
    (name, help, kind): (&'static str, &str, MetricType),
    applies: impl Fn(ListenerKind) -> bool,
    mut sample: impl FnMut(&mut MetricEncoder<'_>, &str, &SourceMetrics) -> Result,
) -> Result {
    let mine: Vec<_> = sources.iter().filter(|(_, m)| applies(m.kind)).collect();
    if mine.is_empty() {
        return Ok(());
    }
    let mut f = family(enc, name, help, kind)?;
    for (listener, m) in mine {
        sample(&mut f, listener, m)?;
    }
    Ok(())
}

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result {
        let m = &self.0;
        let sources: Vec<_> = m.sources().into_iter().collect();
        self.listeners(&mut enc, &sources)?;
        self.store(&mut enc)?;
        self.pipeline(&mut enc, &sources)?;
        self.admin(&mut enc)?;
        self.nats(&mut enc)?;
        process(&mut enc)?;
        let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
        let info = [("version", env!("CARGO_PKG_VERSION")), ("profile", profile)];
        family(&mut enc, BUILD_INFO, "The running build (always 1).", MetricType::Info)?.encode_info(&info)
    }
}

/// A per-listener family: name, help, type, the kinds it applies to, and its value.
type PerListener = (&'static str, &'static str, MetricType, fn(ListenerKind) -> bool, fn(&SourceMetrics) -> u64);

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collect {
    fn listeners(&self, enc: &mut DescriptorEncoder<'_>, sources: &[(String, Arc<SourceMetrics>)]) -> Result {
        use MetricType::{Counter, Gauge};
        let ingest = ListenerKind::ingests;
        let all = |_| true;
        let plain: [PerListener; 11] = [
            (EVENTS_RECEIVED, "Events received (before the commit).", Counter, ingest, |s| load(&s.events_received)),
            (BYTES_RECEIVED, "Bytes read from the network.", Counter, all, |s| load(&s.bytes_received)),
            (CONNECTIONS_OPEN, "Connections open now.", Gauge, ListenerKind::has_connections, |s| {
                s.connections_open.load(Ordering::Relaxed).max(0) as u64
            }),
            (CONNECTIONS_TOTAL, "Connections accepted.", Counter, ListenerKind::has_connections, |s| {
                load(&s.connections_total)
            }),
            (
                AUTH_FAILURES,
                "Frames, requests or messages with an unknown or revoked streaming key.",
                Counter,
                ingest,
                |s| load(&s.auth_failures),
            ),
            (
                MESSAGES_TRUNCATED,
                "Syslog messages stored cut to max_message_bytes (flagged truncated).",
                Counter,
                ListenerKind::is_syslog,
                |s| load(&s.truncated),
            ),
            (
                TLS_HANDSHAKE_FAILURES,
                "TLS handshakes that failed or timed out (0 on listeners without TLS).",
                Counter,
                ListenerKind::has_connections,
                |s| load(&s.tls_handshake_failures),
            ),
            (
                PEERS_REFUSED,
                "Syslog connections or datagrams from a peer outside allowed_sources.",
                Counter,
                ListenerKind::is_syslog,
                |s| load(&s.peers_refused),
            ),
            (
                RELP_RESENT,
                "RELP messages a sender resent after a broken session, stored again (those sluice can tell).",
                Counter,
                |k| k == ListenerKind::Relp,
                |s| load(&s.resent),
            ),
            (
                EVENTS_DROPPED_OVERLOAD,
                "UDP syslog messages dropped because the pipeline was full.",
                Counter,
                |k| k == ListenerKind::SyslogUdp,
                |s| load(&s.dropped_overload),
            ),
            (
                UDP_KERNEL_DROPS,
                "Datagrams the kernel dropped on this listener's sockets (/proc/net/udp).",
                Counter,
                |k| k == ListenerKind::SyslogUdp,
                |s| load(&s.kernel_drops),
            ),
        ];
        for (name, help, kind, applies, get) in plain {
            per_listener(enc, sources, (name, help, kind), applies, |f, listener, s| {
                let labels = [("listener", listener)];
                let mut f = f.encode_family(&labels)?;
                match kind {
                    Counter => f.encode_counter::<NoLabelSet, _, u64>(&get(s), None),
                    _ => f.encode_gauge(&get(s)),
                }
            })?;
        }
        let ack = (
            ACK_SECONDS,
            "First byte of an acknowledged batch (or request) to its answer written.",
            MetricType::Histogram,
        );
        per_listener(enc, sources, ack, ListenerKind::acks, |f, listener, s| {
            let labels = [("listener", listener)];
            histogram(&mut f.encode_family(&labels)?, &s.ack_seconds)
        })?;
        let refusals = (FRAMES_REFUSED, "Frames, requests or messages refused, by reason.", Counter);
        per_listener(
            enc,
            sources,
            refusals,
            |k| !k.refusals().is_empty(),
            |f, listener, s| {
                for why in s.kind.refusals() {
                    let labels = [("listener", listener), ("reason", why.label())];
                    f.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&s.refused(*why), None)?;
                }
                Ok(())
            },
        )?;
        let cuts = (CONNECTIONS_CUT, "Connections the daemon cut or refused at accept, by reason.", Counter);
        per_listener(enc, sources, cuts, ListenerKind::has_connections, |f, listener, s| {
            for why in Cut::ALL {
                let labels = [("listener", listener), ("reason", why.label())];
                f.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&s.cuts(why), None)?;
            }
            Ok(())
        })
    }

    fn store(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.0.store;
        counter(enc, EVENTS_STORED, "Events committed to events.redb.", load(&s.events_stored))?;
        counter(enc, CHUNK_BYTES_STORED, "Chunk bytes committed (compressed).", load(&s.chunk_bytes_stored))?;
        gauge(
            enc,
            STORED_BYTES,
            "Chunk bytes in the store now (what [retention] max_bytes limits).",
            load(&s.stored_chunk_bytes),
        )?;
        gauge(enc, DEDUP_RECORDS, "De-duplication records in the store now.", load(&s.dedup_records))?;
        counter(
            enc,
            BATCHES_DUPLICATE,
            "Acknowledged batches answered duplicate (stored before).",
            load(&s.duplicates),
        )?;
        counter(enc, COMMITS, "Write transactions committed.", s.commits())?;
        counter(
            enc,
            COMMIT_FAILURES,
            "Commits that failed (nothing in them was acknowledged).",
            load(&s.commit_failures),
        )?;
        histogram(
            &mut family(
                enc,
                COMMIT_SECONDS,
                "Write transaction and commit (fsync), per commit.",
                MetricType::Histogram,
            )?,
            &s.commit_seconds,
        )?;
        histogram(&mut family(enc, COMMIT_BATCHES, "Batches per commit.", MetricType::Histogram)?, &s.commit_batches)?;
        histogram(&mut family(enc, COMMIT_BYTES, "Chunk bytes per commit.", MetricType::Histogram)?, &s.commit_bytes)?;
        let max = load(&self.0.retention_max_bytes);
        gauge(enc, RETENTION_MAX_BYTES, "[retention] max_bytes (0: no size limit).", max)?;
        if let Some((free, total)) = self.0.data_dir.get().and_then(|d| disk_space(d)) {
            gauge(enc, DISK_FREE_BYTES, "Bytes available to sluice on the data dir's filesystem.", free)?;
            gauge(enc, DISK_TOTAL_BYTES, "Size of the data dir's filesystem.", total)?;
        }
        let mut expired = family(enc, EVENTS_EXPIRED, "Events deleted by retention, by reason.", MetricType::Counter)?;
        for (reason, n) in [("max_age", &s.events_expired_age), ("max_bytes", &s.events_expired_size)] {
            expired.encode_family(&[("reason", reason)])?.encode_counter::<NoLabelSet, _, u64>(&load(n), None)?;
        }
        let help = "Time per stage of the acknowledged path (queue and reply per batch; write and commit per commit).";
        let mut stages = family(enc, ACK_STAGE_SECONDS, help, MetricType::Histogram)?;
        for stage in Stage::ALL {
            histogram(&mut stages.encode_family(&[("stage", stage.label())])?, self.0.stages.get(stage))?;
        }
        Ok(())
    }

    fn nats(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let f = &self.0.forward;
        if f.enabled.load(Ordering::Relaxed) {
            gauge(
                enc,
                FORWARD_LAG_EVENTS,
                "Events committed but not yet acknowledged by JetStream.",
                load(&f.lag_events),
            )?;
            gauge(
                enc,
                FORWARD_LAG_BYTES,
                "Chunk bytes committed but not yet acknowledged by JetStream.",
                load(&f.lag_bytes),
            )?;
            counter(enc, FORWARD_EVENTS, "Events acknowledged by JetStream.", load(&f.events))?;
            counter(enc, FORWARD_MESSAGES, "Messages acknowledged by JetStream.", load(&f.messages))?;
            counter(enc, FORWARD_FAILURES, "Publishes that failed or timed out (retried).", load(&f.failures))?;
            counter(
                enc,
                FORWARD_TOO_LARGE,
                "Events larger than the server's max_payload, not forwarded.",
                load(&f.too_large),
            )?;
            gauge(enc, FORWARD_HELD, "Answers waiting for JetStream (ack = \"replicated\").", load(&f.held))?;
            let help = "Publish to PubAck, per message.";
            histogram(&mut family(enc, FORWARD_PUBACK_SECONDS, help, MetricType::Histogram)?, &f.puback_seconds)?;
        }
        let r = &self.0.relay;
        if r.enabled.load(Ordering::Relaxed) {
            counter(enc, RELAY_MESSAGES, "Messages taken from JetStream and acknowledged.", load(&r.messages))?;
            counter(enc, RELAY_EVENTS, "Relayed events stored.", load(&r.events))?;
            counter(
                enc,
                RELAY_SKIPPED,
                "Messages whose events were stored before (redelivered, re-sent).",
                load(&r.skipped),
            )?;
            let help = "Messages of an unknown format or that do not decode (left unacknowledged).";
            counter(enc, RELAY_UNDECODABLE, help, load(&r.undecodable))?;
            counter(enc, RELAY_GAPS, "Messages stored although events before them never arrived.", load(&r.gaps))?;
        }
        Ok(())
    }

    fn pipeline(&self, enc: &mut DescriptorEncoder<'_>, sources: &[(String, Arc<SourceMetrics>)]) -> Result {
        let m = &self.0;
        gauge(
            enc,
            BUDGET_BYTES,
            "[pipeline] max_inflight_bytes: the budget for data in flight.",
            load(&m.budget_bytes),
        )?;
        gauge(enc, INFLIGHT_BYTES, "Bytes received and not yet committed (or refused).", load(&m.inflight_bytes))?;
        let untrusted = "Of those, bytes held by peers without a valid key yet (at most a quarter of the budget).";
        gauge(enc, UNTRUSTED_INFLIGHT_BYTES, untrusted, load(&m.untrusted_inflight_bytes))?;
        if sources.iter().any(|(_, s)| s.kind == ListenerKind::SyslogUdp) {
            let help = "Host-wide UDP receive buffer errors (/proc/net/snmp RcvbufErrors).";
            counter(enc, UDP_RCVBUF_ERRORS, help, load(&m.udp_rcvbuf_errors))?;
        }
        Ok(())
    }

    fn admin(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let m = &self.0;
        counter(
            enc,
            ADMIN_AUTH_FAILURES,
            "Admin API requests with a missing or bad token, and failed logins.",
            load(&m.admin_auth_failures),
        )?;
        counter(enc, TAILS_DROPPED, "Live tails dropped for not keeping up.", load(&m.tail_dropped))?;
        gauge(enc, PASSWORD_HASHES_IN_FLIGHT, "Argon2 hashes running now.", load(&m.password_hashes_in_flight))?;
        counter(
            enc,
            PASSWORD_HASH_WAITS,
            "Logins and password changes that waited for a hashing slot.",
            load(&m.password_hash_waits),
        )?;
        counter(enc, EXPORTS_CUT, "Exports that ended with the error trailer.", load(&m.exports_cut))
    }
}

/// `(available, total)` bytes of the filesystem holding `dir` (statvfs).
fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frag = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frag, st.f_blocks as u64 * frag))
}

fn process(enc: &mut DescriptorEncoder<'_>) -> Result {
    use super::process::{CPU_SECONDS, MAX_FDS, OPEN_FDS, RESIDENT_BYTES, START_TIME, THREADS, VIRTUAL_BYTES};
    let p = Process::read();
    counter(enc, CPU_SECONDS, "Total user and system CPU time spent in seconds.", p.cpu_seconds)?;
    gauge(enc, RESIDENT_BYTES, "Resident memory size in bytes.", p.resident_bytes)?;
    gauge(enc, VIRTUAL_BYTES, "Virtual memory size in bytes.", p.virtual_bytes)?;
    gauge(enc, OPEN_FDS, "Number of open file descriptors.", p.open_fds)?;
    gauge(enc, MAX_FDS, "Maximum number of open file descriptors.", p.max_fds)?;
    gauge(enc, THREADS, "Number of OS threads in the process.", p.threads)?;
    gauge(enc, START_TIME, "Start time of the process since unix epoch in seconds.", p.start_time_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Arc<Metrics> {
        let m = Arc::new(Metrics::default());
        m.source("tcp", ListenerKind::Tcp).events_received.fetch_add(5, Ordering::Relaxed);
        m.source("tcp", ListenerKind::Tcp).refuse(Refusal::BadKey);
        m.source("syslog_udp", ListenerKind::SyslogUdp).kernel_drops.store(3, Ordering::Relaxed);
        m.store.observe_commit(Duration::from_micros(700), 3, 5000);
        m.stages.observe(Stage::Commit, Duration::from_micros(400));
        m
    }

    #[test]
    fn every_family_has_help_and_type_and_listeners_only_what_applies() {
        let text = render(&sample(), Format::Prometheus);
        assert!(text.contains("# HELP sluice_events_received_total Events received"), "{text}");
        assert!(text.contains("# TYPE sluice_events_received_total counter"), "{text}");
        assert!(text.contains("sluice_events_received_total{listener=\"tcp\"} 5"), "{text}");
        assert!(text.contains("sluice_frames_refused_total{listener=\"tcp\",reason=\"bad_key\"} 1"), "{text}");
        assert!(!text.contains("sluice_frames_refused_total{listener=\"tcp\",reason=\"rate_limited\"}"), "{text}");
        assert!(text.contains("sluice_udp_kernel_drops_total{listener=\"syslog_udp\"} 3"), "{text}");
        assert!(!text.contains("sluice_udp_kernel_drops_total{listener=\"tcp\"}"), "{text}");
        assert!(!text.contains("sluice_connections_open{listener=\"syslog_udp\"}"), "{text}");
        assert!(text.contains("sluice_commit_duration_seconds_bucket{le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("sluice_commit_batches_sum 3"), "{text}");
        assert!(text.contains("sluice_commits_total 1"), "{text}");
        assert!(text.contains("sluice_ack_stage_duration_seconds_count{stage=\"commit\"} 1"), "{text}");
        assert!(text.contains("sluice_build_info{version=\""), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "no help for {name}");
        }
    }

    #[test]
    fn openmetrics_when_asked() {
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let text = render(&sample(), Format::OpenMetrics);
        assert!(text.contains("# TYPE sluice_events_received counter"), "{text}");
        assert!(text.contains("sluice_events_received_total{listener=\"tcp\"} 5"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
