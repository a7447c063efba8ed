//! Configuration: one TOML file, parsed strictly, or the embedded defaults.
//!
//! With no file every listener runs on its default address. With a file only
//! the listeners whose sections are present run. Unknown keys and bad values
//! are refused with the file, line and column. Values are checked while they
//! are deserialized (newtypes with `try_from`), so every error has a place.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::codec::frame::{DEFAULT_MAX_FRAME, HARD_MAX_FRAME};
use crate::net::accept::AcceptLimits;
use crate::net::budget::ConnLimits;
use crate::net::deadline::Timeouts;

mod admin;
pub use admin::{AdminConfig, DEFAULT_ADMIN_ADDR, JwtSecret, MIN_JWT_SECRET_LEN, ProxyNet};
mod http;
pub use http::{BodyLimit, CorsOrigin, DEFAULT_HTTP_ADDR, HttpSource, RateLimit, RateScope};
mod nats;
pub use nats::{AckMode, Encoding, ForwardConfig, NatsAuth, NatsForward, NatsSource};
mod otlp;
pub use otlp::{DEFAULT_OTLP_ADDR, OtlpSource};
mod retention;
pub use retention::RetentionConfig;
mod syslog;
pub use syslog::{
    DEFAULT_RELP_ADDR, DEFAULT_SYSLOG_ADDR, DEFAULT_SYSLOG_TLS_ADDR, DEFAULT_SYSLOG_WORKSPACE, SyslogAuth,
    SyslogCommon, SyslogTcpSource, SyslogUdpSource,
};
mod tls;
pub use tls::TlsConfig;

pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
pub const DEFAULT_TCP_ADDR: &str = "0.0.0.0:50000";

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// `[admin]`: the admin API listener; absent means it does not run.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[retention]`: age and size limits of stored events (default: keep all).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// `[forward]`: forwarding committed events to NATS JetStream.
    #[serde(default)]
    pub forward: ForwardConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

/// Listener sections. A missing section means that listener does not run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub tcp: Option<TcpSource>,
    /// `[sources.syslog_tcp]`: syslog over TCP (RFC 6587 framing).
    pub syslog_tcp: Option<SyslogTcpSource>,
    /// `[sources.syslog_tls]`: syslog over TLS (RFC 5425).
    #[serde(default, deserialize_with = "syslog::syslog_tls")]
    pub syslog_tls: Option<SyslogTcpSource>,
    /// `[sources.relp]`: RELP (rsyslog's `omrelp`), answered after the commit.
    #[serde(default, deserialize_with = "syslog::relp")]
    pub relp: Option<SyslogTcpSource>,
    /// `[sources.syslog_udp]`: syslog over UDP.
    pub syslog_udp: Option<SyslogUdpSource>,
    /// `[sources.http]`: HTTP ingest (JSON lines, Tell batches).
    pub http: Option<HttpSource>,
    /// `[sources.otlp]`: OTLP/HTTP (OpenTelemetry logs, metrics, traces).
    pub otlp: Option<OtlpSource>,
    /// `[sources.nats]`: events forwarded by edge nodes, from JetStream.
    pub nats: Option<NatsSource>,
}

/// `[sources.tcp]`: the raw TCP source for Tell SDKs and acked clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSource {
    pub address: SocketAddr,
    /// Frames longer than this are refused (default 16 MiB, at most 1 GiB).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: FrameLimit,
    /// Connections open at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: Count,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection is closed after this many frames with a bad key in a row.
    #[serde(default = "default_max_bad_keys")]
    pub max_bad_keys: Count,
    /// Connections open at once from one client address; more are closed at once.
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: Count,
    /// Connections speak TLS first.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl TcpSource {
    pub fn at(address: SocketAddr) -> TcpSource {
        TcpSource {
            address,
            max_frame_bytes: default_max_frame(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            max_bad_keys: default_max_bad_keys(),
            max_connections_per_address: default_per_address(),
            tls: None,
        }
    }

    pub fn accept_limits(&self) -> AcceptLimits {
        AcceptLimits { max_connections: self.max_connections.0, per_address: self.max_connections_per_address.0 }
    }
}

fn default_max_frame() -> FrameLimit {
    FrameLimit(DEFAULT_MAX_FRAME)
}
fn default_max_connections() -> Count {
    Count(1024)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_bad_keys() -> Count {
    Count(3)
}
pub(crate) fn default_per_address() -> Count {
    Count(64)
}

/// `[pipeline]`: the in-flight budget and the ack rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Bytes of received data not yet committed, across all sources.
    #[serde(default = "default_inflight")]
    pub max_inflight_bytes: ByteSize,
    /// An acked batch not committed within this time is answered `unavailable`.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// How long the de-duplication record of an acked batch is kept.
    #[serde(default = "default_dedup_window", with = "humantime_serde")]
    pub dedup_window: Duration,
    /// De-duplication records one workspace may hold (each ~128 bytes on
    /// disk); new acked batches of a workspace at the cap are answered
    /// `unavailable` rather than evicting a record inside the window.
    #[serde(default = "default_max_dedup_records")]
    pub max_dedup_records: Count,
    /// Most bytes of chunks written in one commit.
    #[serde(default = "default_commit_bytes")]
    pub max_commit_bytes: ByteSize,
    /// redb page cache for the events database.
    #[serde(default = "default_cache")]
    pub cache_bytes: ByteSize,
    /// On shutdown, how long open connections may take to finish.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Most bytes a connection may hold before it has shown a valid key
    /// (or matched `allowed_sources`); all such connections together hold
    /// at most a quarter of `max_inflight_bytes`.
    #[serde(default = "default_untrusted_bytes")]
    pub max_untrusted_bytes: ByteSize,
    /// Most bytes a trusted connection may hold before it stops reading
    /// (a frame already started may finish).
    #[serde(default = "default_connection_bytes")]
    pub max_connection_bytes: ByteSize,
    /// A frame header or request head must arrive within this time, and a
    /// connection without a valid key yet may not be quiet for longer.
    #[serde(default = "default_frame_timeout", with = "humantime_serde")]
    pub frame_timeout: Duration,
    /// Bytes per second a frame or body in progress must keep up after
    /// `frame_timeout` (each byte earns 1/min_transfer_rate seconds).
    #[serde(default = "default_min_rate")]
    pub min_transfer_rate: ByteSize,
}

impl PipelineConfig {
    /// The per-connection byte limits.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            untrusted_bytes: self.max_untrusted_bytes.0 as usize,
            connection_bytes: self.max_connection_bytes.0 as usize,
        }
    }

    /// The deadlines of a listener whose trusted peers may be quiet for `idle`.
    pub fn timeouts(&self, idle: Duration) -> Timeouts {
        Timeouts {
            idle,
            untrusted_idle: idle.min(self.frame_timeout),
            frame: self.frame_timeout,
            min_rate: self.min_transfer_rate.0,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_inflight_bytes: default_inflight(),
            ack_timeout: default_ack_timeout(),
            dedup_window: default_dedup_window(),
            max_dedup_records: default_max_dedup_records(),
            max_commit_bytes: default_commit_bytes(),
            cache_bytes: default_cache(),
            drain_timeout: default_drain_timeout(),
            max_untrusted_bytes: default_untrusted_bytes(),
            max_connection_bytes: default_connection_bytes(),
            frame_timeout: default_frame_timeout(),
            min_transfer_rate: default_min_rate(),
        }
    }
}

fn default_inflight() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_dedup_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_dedup_records() -> Count {
    // ~4,400 acked batches a second over the default 15-minute window.
    Count(4_000_000)
}
fn default_commit_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_cache() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_untrusted_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_connection_bytes() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_frame_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_min_rate() -> ByteSize {
    ByteSize(8 << 10)
}

/// A frame size limit: 1 byte to 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ByteSize")]
pub struct FrameLimit(pub u32);

impl TryFrom<ByteSize> for FrameLimit {
    type Error = String;
    fn try_from(v: ByteSize) -> Result<Self, String> {
        match u32::try_from(v.0) {
            Ok(n) if n > 0 && n <= HARD_MAX_FRAME => Ok(FrameLimit(n)),
            _ => Err(format!("frame limit must be between 1 byte and 1 GiB, got {} bytes", v.0)),
        }
    }
}

/// A positive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Count(pub usize);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match usize::try_from(v) {
            Ok(n) if n > 0 => Ok(Count(n)),
            _ => Err(format!("must be a positive number, got {v}")),
        }
    }
}

/// A size in bytes: an integer, or a string such as `"64MiB"`, `"512 KiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(i64),
    Text(String),
}

impl TryFrom<SizeRepr> for ByteSize {
    type Error = String;
    fn try_from(v: SizeRepr) -> Result<Self, String> {
        match v {
            SizeRepr::Int(n) => {
                u64::try_from(n).map(ByteSize).map_err(|_| format!("size must not be negative, got {n}"))
            }
            SizeRepr::Text(s) => parse_size(&s).map(ByteSize),
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size (try \"64MiB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size `{s}` is too large"))
}

/// A configuration that could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

impl Config {
    /// The listeners with a `tls` table: listener name, the table's
    /// section, the table.
    pub fn tls_tables(&self) -> Vec<(&'static str, &'static str, &TlsConfig)> {
        let s = &self.sources;
        [
            ("tcp", "sources.tcp.tls", s.tcp.as_ref().and_then(|t| t.tls.as_ref())),
            ("syslog_tcp", "sources.syslog_tcp.tls", s.syslog_tcp.as_ref().and_then(|t| t.tls.as_ref())),
            ("syslog_tls", "sources.syslog_tls.tls", s.syslog_tls.as_ref().and_then(|t| t.tls.as_ref())),
            ("relp", "sources.relp.tls", s.relp.as_ref().and_then(|t| t.tls.as_ref())),
            ("http", "sources.http.tls", s.http.as_ref().and_then(|t| t.tls.as_ref())),
            ("otlp", "sources.otlp.tls", s.otlp.as_ref().and_then(|t| t.tls.as_ref())),
            ("admin", "admin.tls", self.admin.as_ref().and_then(|t| t.tls.as_ref())),
        ]
        .into_iter()
        .filter_map(|(listener, section, tls)| Some((listener, section, tls?)))
        .collect()
    }

    /// Every configured listener: its name and address.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let s = &self.sources;
        [
            ("tcp", s.tcp.as_ref().map(|c| c.address)),
            ("syslog_tcp", s.syslog_tcp.as_ref().map(|c| c.address)),
            ("syslog_tls", s.syslog_tls.as_ref().map(|c| c.address)),
            ("relp", s.relp.as_ref().map(|c| c.address)),
            ("syslog_udp", s.syslog_udp.as_ref().map(|c| c.address)),
            ("http", s.http.as_ref().map(|c| c.address)),
            ("otlp", s.otlp.as_ref().map(|c| c.address)),
            ("admin", self.admin.as_ref().map(|c| c.address)),
        ]
        .into_iter()
        .filter_map(|(name, address)| Some((name, address?)))
        .collect()
    }

    /// The embedded defaults: every listener on its default address.
    pub fn embedded() -> Config {
        let tcp = DEFAULT_TCP_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 50000)));
        let syslog = DEFAULT_SYSLOG_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 5514)));
        let relp = DEFAULT_RELP_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 2514)));
        Config {
            data_dir: default_data_dir(),
            sources: Sources {
                tcp: Some(TcpSource::at(tcp)),
                syslog_tcp: Some(SyslogTcpSource::at(syslog, DEFAULT_SYSLOG_WORKSPACE)),
                // TLS needs a certificate, which the embedded defaults do not have.
                syslog_tls: None,
                relp: Some(SyslogTcpSource::at(relp, DEFAULT_SYSLOG_WORKSPACE)),
                syslog_udp: Some(SyslogUdpSource::at(syslog, DEFAULT_SYSLOG_WORKSPACE)),
                http: Some(HttpSource::default_listener()),
                otlp: Some(OtlpSource::default_listener()),
                nats: None,
            },
            pipeline: PipelineConfig::default(),
            admin: Some(AdminConfig::default_listener()),
            retention: RetentionConfig::default(),
            forward: ForwardConfig::default(),
        }
    }

    /// A configuration with no listeners, for commands and tests that add their own.
    pub fn bare(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            sources: Sources::default(),
            pipeline: PipelineConfig::default(),
            admin: None,
            retention: RetentionConfig::default(),
            forward: ForwardConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    /// Parses TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid { path: path.to_path_buf(), line, column, message: e.message().to_string() }
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn the_issue_example_is_accepted_as_written() {
        let c = parse("data_dir = \"/var/lib/sluice\"\n[sources.tcp]\naddress = \"127.0.0.1:50000\"\n").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sluice"));
        let tcp = c.sources.tcp.unwrap();
        assert_eq!(tcp.address, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(tcp.max_frame_bytes, FrameLimit(16 << 20));
    }

    #[test]
    fn a_file_without_listener_sections_runs_no_listener() {
        let c = parse("data_dir = \"d\"\n").unwrap();
        assert!(c.sources.tcp.is_none());
        assert!(Config::embedded().sources.tcp.is_some());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let err = parse("data_dir = \"d\"\n[sources.tcp]\naddress = \"127.0.0.1:1\"\nadress = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("sluice.toml:4:"), "{text}");
        assert!(text.contains("adress"), "{text}");
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let cases = [
            ("[sources.tcp]\naddress = \"nowhere\"\n", 2),
            ("[sources.tcp]\naddress = \"127.0.0.1:1\"\nmax_frame_bytes = \"2GiB\"\n", 3),
            ("[sources.tcp]\naddress = \"127.0.0.1:1\"\nmax_connections = 0\n", 3),
            ("[pipeline]\nmax_inflight_bytes = \"12 parsecs\"\n", 2),
            ("[pipeline]\nack_timeout = \"soon\"\n", 2),
            ("[sources.udp]\naddress = \"127.0.0.1:1\"\n", 1),
        ];
        for (text, line) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn sizes_and_durations_parse() {
        let c =
            parse("[pipeline]\nmax_inflight_bytes = \"8MiB\"\nack_timeout = \"250ms\"\ncache_bytes = 1000\n").unwrap();
        assert_eq!(c.pipeline.max_inflight_bytes, ByteSize(8 << 20));
        assert_eq!(c.pipeline.ack_timeout, Duration::from_millis(250));
        assert_eq!(c.pipeline.cache_bytes, ByteSize(1000));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
    }
}
