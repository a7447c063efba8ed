//! `[sources.otlp]`: the OTLP/HTTP listener (OpenTelemetry logs, metrics, traces).
//!
//! ```toml
//! [sources.otlp]
//! address = "0.0.0.0:4318"       # the OTLP/HTTP default port
//! max_body_bytes = "20MiB"       # wire body and decompressed body alike → 413
//! trusted_proxies = []           # peers whose X-Forwarded-For names the client (for rate limits)
//! max_connections = 1024
//! max_connections_per_address = 64
//! idle_timeout = "10s"           # keep-alive idle time, and time to send a request's headers
//! busy_timeout = "1s"            # wait this long for room in the pipeline, then 503 + Retry-After
//!
//! [sources.otlp.rate_limit]
//! per = "key_and_ip"             # or "key", or "off"
//! requests_per_minute = 1000
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::{BodyLimit, Count, ProxyNet, RateLimit};

pub const DEFAULT_OTLP_ADDR: &str = "0.0.0.0:4318";
/// What the OTLP specification recommends receivers accept.
const DEFAULT_MAX_BODY: usize = 20 << 20;

/// `[sources.otlp]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSource {
    pub address: SocketAddr,
    /// Bodies larger than this, on the wire or once decompressed, get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: BodyLimit,
    #[serde(default)]
    pub rate_limit: RateLimit,
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

impl OtlpSource {
    pub fn at(address: SocketAddr) -> OtlpSource {
        OtlpSource {
            address,
            max_body_bytes: default_max_body(),
            rate_limit: RateLimit::default(),
            trusted_proxies: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_address: super::default_per_address(),
            idle_timeout: default_idle_timeout(),
            busy_timeout: default_busy_timeout(),
            tls: None,
        }
    }

    /// The default listener: `0.0.0.0:4318`.
    pub fn default_listener() -> OtlpSource {
        OtlpSource::at(DEFAULT_OTLP_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 4318))))
    }

    /// Whether `X-Forwarded-For` from this peer is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }
}

fn default_max_body() -> BodyLimit {
    BodyLimit(DEFAULT_MAX_BODY)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError, RateScope};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse("[sources.otlp]\naddress = \"127.0.0.1:0\"\n").unwrap().sources.otlp.unwrap();
        assert_eq!(o.max_body_bytes, BodyLimit(20 << 20));
        assert_eq!((o.rate_limit.per, o.rate_limit.requests_per_minute.get()), (RateScope::KeyAndIp, 1000));
        let text = "[sources.otlp]\naddress = \"127.0.0.1:0\"\nmax_body_bytes = \"1MiB\"\n\
                    [sources.otlp.rate_limit]\nper = \"key\"\nrequests_per_minute = 5\n";
        let o = parse(text).unwrap().sources.otlp.unwrap();
        assert_eq!(o.max_body_bytes, BodyLimit(1 << 20));
        assert_eq!((o.rate_limit.per, o.rate_limit.requests_per_minute.get()), (RateScope::Key, 5));
        match parse("[sources.otlp]\naddress = \"127.0.0.1:0\"\nmax_lines = 3\n") {
            Err(ConfigError::Invalid { line: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn embedded_config_runs_otlp_on_4318() {
        assert_eq!(Config::embedded().sources.otlp.unwrap().address.to_string(), "0.0.0.0:4318");
        assert!(parse("data_dir = \"d\"\n").unwrap().sources.otlp.is_none());
    }
}
