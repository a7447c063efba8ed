//! `[sources.http]`: the HTTP ingest listener.
//!
//! ```toml
//! [sources.http]
//! address = "0.0.0.0:8080"
//! max_body_bytes = "10MiB"       # wire body and decompressed body alike → 413
//! max_lines = 10000              # events per request (JSON lines or array items) → 413
//! query_token = true             # accept ?token=KEY on /v1/events and /v1/logs (browsers)
//! cors_origins = []              # e.g. ["https://app.example.com"], or ["*"]; empty: CORS off
//! trusted_proxies = []           # peers whose X-Forwarded-For names the client (for rate limits)
//! max_connections = 1024
//! max_connections_per_address = 64  # more from one address are closed at once
//! idle_timeout = "10s"           # keep-alive idle time, and time to send a request's headers
//!                                # (a body keeps [pipeline] frame_timeout and min_transfer_rate)
//! busy_timeout = "1s"            # wait this long for room in the pipeline, then 503 + Retry-After
//!
//! [sources.http.rate_limit]
//! per = "key_and_ip"             # or "key", or "off"
//! requests_per_minute = 1000
//! ```

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::{ByteSize, Count, ProxyNet};

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// `max_body_bytes` may not exceed this.
pub const HARD_MAX_BODY: u64 = 1 << 30;
const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// `[sources.http]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub address: SocketAddr,
    /// Bodies larger than this, on the wire or once decompressed, get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: BodyLimit,
    /// Events per request (non-blank JSON lines, or array items); more get 413.
    #[serde(default = "default_max_lines")]
    pub max_lines: Count,
    /// Whether `?token=KEY` authenticates `/v1/events` and `/v1/logs`.
    #[serde(default = "default_true")]
    pub query_token: bool,
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Origins allowed to call from a browser; empty turns CORS off.
    #[serde(default)]
    pub cors_origins: Vec<CorsOrigin>,
    /// Peers (IPs or CIDR nets) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// Connections open at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: Count,
    /// Connections open at once from one client address.
    #[serde(default = "super::default_per_address")]
    pub max_connections_per_address: Count,
    /// Keep-alive idle time, and the time a client has to send a request head.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a request waits for room in the pipeline before 503.
    #[serde(default = "default_busy_timeout", with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// Requests come over TLS (HTTPS).
    #[serde(default)]
    pub tls: Option<super::TlsConfig>,
}

impl HttpSource {
    pub fn at(address: SocketAddr) -> HttpSource {
        HttpSource {
            address,
            max_body_bytes: default_max_body(),
            max_lines: default_max_lines(),
            query_token: true,
            rate_limit: RateLimit::default(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_address: super::default_per_address(),
            idle_timeout: default_idle_timeout(),
            busy_timeout: default_busy_timeout(),
            tls: None,
        }
    }

    /// The default listener: `0.0.0.0:8080`.
    pub fn default_listener() -> HttpSource {
        HttpSource::at(DEFAULT_HTTP_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8080))))
    }

    /// Whether `X-Forwarded-For` from this peer is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }
}

fn default_max_body() -> BodyLimit {
    BodyLimit(DEFAULT_MAX_BODY as usize)
}
fn default_max_lines() -> Count {
    Count(10_000)
}
fn default_true() -> bool {
    true
}
fn default_max_connections() -> Count {
    Count(1024)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_busy_timeout() -> Duration {
    Duration::from_secs(1)
}

/// A body size limit: 1 byte to 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ByteSize")]
pub struct BodyLimit(pub usize);

impl TryFrom<ByteSize> for BodyLimit {
    type Error = String;
    fn try_from(v: ByteSize) -> Result<Self, String> {
        match v.0 {
            n @ 1..=HARD_MAX_BODY => Ok(BodyLimit(n as usize)),
            n => Err(format!("max_body_bytes must be between 1 byte and 1 GiB, got {n} bytes")),
        }
    }
}

/// What a rate limit counts requests per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateScope {
    /// Each (streaming key, client IP) pair has its own quota.
    KeyAndIp,
    /// Each streaming key has one quota, whatever the client.
    Key,
    /// No rate limit.
    Off,
}

/// `[sources.http.rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default = "default_scope")]
    pub per: RateScope,
    #[serde(default = "default_rate", deserialize_with = "per_minute")]
    pub requests_per_minute: NonZeroU32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per: default_scope(), requests_per_minute: default_rate() }
    }
}

fn default_scope() -> RateScope {
    RateScope::KeyAndIp
}
fn default_rate() -> NonZeroU32 {
    NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN)
}

fn per_minute<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    let n = i64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| serde::de::Error::custom(format!("requests_per_minute must be 1..=4294967295, got {n}")))
}

/// An origin browsers may call from: `scheme://host[:port]`, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CorsOrigin(pub String);

impl CorsOrigin {
    pub fn allows(&self, origin: &str) -> bool {
        self.0 == "*" || self.0.eq_ignore_ascii_case(origin)
    }
}

impl TryFrom<String> for CorsOrigin {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "*" {
            return Ok(CorsOrigin(s));
        }
        let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => Ok(CorsOrigin(s)),
            _ => Err(format!("`{s}` is not an origin (try \"https://app.example.com\" or \"*\")")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn defaults_and_overrides() {
        let h = parse("[sources.http]\naddress = \"127.0.0.1:0\"\n").unwrap().sources.http.unwrap();
        assert_eq!(h.max_body_bytes, BodyLimit(10 << 20));
        assert_eq!(h.max_lines, Count(10_000));
        assert!(h.query_token && h.cors_origins.is_empty());
        assert_eq!(h.rate_limit, RateLimit { per: RateScope::KeyAndIp, requests_per_minute: default_rate() });
        let text = "[sources.http]\naddress = \"127.0.0.1:0\"\nmax_body_bytes = \"1KiB\"\nquery_token = false\n\
                    cors_origins = [\"http://localhost:3000\", \"*\"]\nbusy_timeout = \"0s\"\n\
                    [sources.http.rate_limit]\nper = \"key\"\nrequests_per_minute = 5\n";
        let h = parse(text).unwrap().sources.http.unwrap();
        assert_eq!(h.max_body_bytes, BodyLimit(1024));
        assert!(!h.query_token);
        assert!(h.cors_origins[0].allows("http://localhost:3000") && !h.cors_origins[0].allows("http://evil"));
        assert!(h.cors_origins[1].allows("http://evil"));
        assert_eq!((h.rate_limit.per, h.rate_limit.requests_per_minute.get()), (RateScope::Key, 5));
        assert_eq!(h.busy_timeout, Duration::ZERO);
        let off = "[sources.http]\naddress = \"127.0.0.1:0\"\nrate_limit = { per = \"off\" }\n";
        assert_eq!(parse(off).unwrap().sources.http.unwrap().rate_limit.per, RateScope::Off);
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let cases = [
            ("[sources.http]\naddress = \"127.0.0.1:0\"\nmax_body_bytes = \"2GiB\"\n", 3),
            ("[sources.http]\naddress = \"127.0.0.1:0\"\nmax_lines = 0\n", 3),
            ("[sources.http]\naddress = \"127.0.0.1:0\"\ncors_origins = [\"example.com\"]\n", 3),
            ("[sources.http]\naddress = \"127.0.0.1:0\"\nbody_limit = 1\n", 3),
            ("[sources.http]\naddress = \"127.0.0.1:0\"\n[sources.http.rate_limit]\nper = \"ip\"\n", 4),
            ("[sources.http]\naddress = \"127.0.0.1:0\"\n[sources.http.rate_limit]\nrequests_per_minute = 0\n", 4),
        ];
        for (text, line) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn embedded_config_runs_http_on_8080() {
        let h = Config::embedded().sources.http.unwrap();
        assert_eq!(h.address.to_string(), "0.0.0.0:8080");
        assert!(parse("data_dir = \"d\"\n").unwrap().sources.http.is_none());
    }
}
