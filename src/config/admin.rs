//! `[admin]`: the HTTP admin API listener (hyper), its token lifetime, rate
//! limits, body limit and the proxies whose `X-Forwarded-For` is believed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ByteSize, Count};

pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:3000";
/// Shortest signing secret accepted from config or environment, in bytes.
pub const MIN_JWT_SECRET_LEN: usize = 32;
/// Token lifetimes outside 1 minute ..= 365 days are refused.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// `[admin]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// How long a login token (and its session) lives (default 24h).
    #[serde(default = "default_token_lifetime", deserialize_with = "token_lifetime")]
    pub token_lifetime: Duration,
    /// Requests per minute to `/api/v1/auth/*` per client IP (default 10).
    #[serde(default = "default_auth_rate")]
    pub auth_requests_per_minute: Count,
    /// Requests per minute to the rest of `/api/v1` per token (default 100).
    #[serde(default = "default_api_rate")]
    pub api_requests_per_minute: Count,
    /// Request bodies larger than this are refused with 413 (default 64 KiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Peers (IPs or CIDR nets) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// HS256 signing secret (at least 32 bytes). Without it (and without
    /// `SLUICE_JWT_SECRET`) a secret is generated once and kept in control.redb.
    #[serde(default)]
    pub jwt_secret: Option<JwtSecret>,
    /// Password hashes computed at once (each argon2id hash holds 19 MiB).
    #[serde(default = "default_max_hashes")]
    pub max_password_hashes: Count,
    /// Admin connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: Count,
    /// Admin connections open at once from one client address.
    #[serde(default = "super::default_per_address")]
    pub max_connections_per_address: Count,
    /// Streamed answers (live tails, exports, backups) running at once;
    /// more are answered 503 (default 16).
    #[serde(default = "default_max_streams")]
    pub max_streams: Count,
    /// Most rows one page of `GET /api/v1/events` looks at when it filters
    /// by `q`, `listener` or `kind` (default 100000); the answer says so
    /// when it stopped there.
    #[serde(default = "default_query_max_scan_rows")]
    pub query_max_scan_rows: Count,
    /// The API over TLS (HTTPS).
    #[serde(default)]
    pub tls: Option<super::TlsConfig>,
}

impl AdminConfig {
    pub fn at(address: SocketAddr) -> AdminConfig {
        AdminConfig {
            address,
            token_lifetime: default_token_lifetime(),
            auth_requests_per_minute: default_auth_rate(),
            api_requests_per_minute: default_api_rate(),
            max_body_bytes: default_max_body(),
            trusted_proxies: Vec::new(),
            jwt_secret: None,
            max_password_hashes: default_max_hashes(),
            max_connections: default_max_connections(),
            max_connections_per_address: super::default_per_address(),
            max_streams: default_max_streams(),
            query_max_scan_rows: default_query_max_scan_rows(),
            tls: None,
        }
    }

    /// The default listener: `127.0.0.1:3000`.
    pub fn default_listener() -> AdminConfig {
        AdminConfig::at(DEFAULT_ADMIN_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 3000))))
    }

    /// Whether `X-Forwarded-For` from this peer is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }
}

fn default_token_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_auth_rate() -> Count {
    Count(10)
}
fn default_api_rate() -> Count {
    Count(100)
}
fn default_max_body() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_max_hashes() -> Count {
    Count(2)
}
fn default_max_streams() -> Count {
    Count(16)
}
fn default_max_connections() -> Count {
    Count(256)
}
fn default_query_max_scan_rows() -> Count {
    Count(100_000)
}

fn token_lifetime<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v: Duration = humantime_serde::deserialize(d)?;
    if !(MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&v) {
        return Err(serde::de::Error::custom("token_lifetime must be between 1m and 365days"));
    }
    Ok(v)
}

/// An IP network (`10.0.0.0/8`) or a single address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyNet(pub ipnet::IpNet);

impl ProxyNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(ProxyNet(net));
        }
        s.parse::<IpAddr>()
            .map(|ip| ProxyNet(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not an IP address or network (try \"10.0.0.0/8\")"))
    }
}

/// A signing secret long enough for HS256.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JwtSecret(pub String);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

impl TryFrom<String> for JwtSecret {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() < MIN_JWT_SECRET_LEN {
            return Err(format!("jwt_secret must be at least {MIN_JWT_SECRET_LEN} bytes, got {}", s.len()));
        }
        Ok(JwtSecret(s))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("[admin]\naddress = \"127.0.0.1:0\"\n").unwrap();
        let a = c.admin.unwrap();
        assert_eq!(a.token_lifetime.as_secs(), 86_400);
        assert_eq!((a.auth_requests_per_minute.0, a.api_requests_per_minute.0), (10, 100));
        let text = "[admin]\naddress = \"127.0.0.1:0\"\ntoken_lifetime = \"1h\"\nauth_requests_per_minute = 3\n\
                    trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nmax_body_bytes = \"1KiB\"\n";
        let a = parse(text).unwrap().admin.unwrap();
        assert_eq!(a.token_lifetime.as_secs(), 3600);
        assert_eq!(a.auth_requests_per_minute.0, 3);
        assert_eq!(a.max_body_bytes.0, 1024);
        assert!(a.trusts("10.1.2.3".parse().unwrap()) && a.trusts("127.0.0.1".parse().unwrap()));
        assert!(!a.trusts("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn bad_admin_values_are_refused_with_their_line() {
        let cases = [
            "[admin]\naddress = \"127.0.0.1:0\"\ntoken_lifetime = \"5s\"\n",
            "[admin]\naddress = \"127.0.0.1:0\"\ntrusted_proxies = [\"nowhere\"]\n",
            "[admin]\naddress = \"127.0.0.1:0\"\njwt_secret = \"short\"\n",
            "[admin]\naddress = \"127.0.0.1:0\"\napi_requests_per_minute = 0\n",
            "[admin]\naddress = \"127.0.0.1:0\"\nrate = 1\n",
        ];
        for text in cases {
            match parse(text) {
                Err(ConfigError::Invalid { line, .. }) => assert_eq!(line, 3, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn embedded_config_runs_the_admin_api_on_loopback() {
        let a = Config::embedded().admin.unwrap();
        assert_eq!(a.address.to_string(), "127.0.0.1:3000");
        assert!(parse("data_dir = \"d\"\n").unwrap().admin.is_none());
    }
}
