//! `[sources.syslog_tcp]` and `[sources.syslog_udp]`.
//!
//! ```toml
//! [sources.syslog_tcp]
//! address = "0.0.0.0:514"
//! workspace = 1                             # fixed workspace: syslog senders carry no key …
//! allowed_sources = ["10.0.0.0/8"]          # … optionally only from these peers
//! # auth = "key"                            # or: a streaming key in each message (not with `workspace`)
//! timezone = "UTC"                          # for timestamps that carry no zone
//! max_message_bytes = "64KiB"               # longer messages are truncated and flagged
//! max_connections = 1024
//! max_connections_per_address = 64         # more from one address are closed at once
//! idle_timeout = "5m"
//!
//! [sources.syslog_tls]                     # RFC 5425: syslog over TLS, the keys of syslog_tcp
//! address = "0.0.0.0:6514"                  # (the default)
//! workspace = 1
//! tls = { cert = "/etc/sluice/tls/server.crt", key = "/etc/sluice/tls/server.key" }  # required
//!
//! [sources.relp]                           # RELP (rsyslog's omrelp), the keys of syslog_tcp
//! address = "0.0.0.0:2514"                  # (the default); `tls` is optional
//! workspace = 1
//!
//! [sources.syslog_udp]
//! address = "0.0.0.0:514"
//! workspace = 1
//! receive_buffer_bytes = "8MiB"             # SO_RCVBUF (SO_RCVBUFFORCE when permitted)
//! sockets = 1                               # more than one: SO_REUSEPORT, one receiver each
//! ```
//!
//! The auth mode is resolved into [`SyslogAuth`], so a listener is either
//! bound to one workspace or reads keys, never both or neither.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::{ByteSize, Count, TlsConfig, default_idle_timeout, default_max_connections, default_per_address};
use crate::codec::octet::{DEFAULT_MAX_MESSAGE, HARD_MAX_MESSAGE};
use crate::codec::syslog::Zone;

pub const DEFAULT_SYSLOG_ADDR: &str = "0.0.0.0:5514";
/// RFC 5425's port for syslog over TLS.
pub const DEFAULT_SYSLOG_TLS_ADDR: &str = "0.0.0.0:6514";
/// RELP's port (as rsyslog's imrelp examples use).
pub const DEFAULT_RELP_ADDR: &str = "0.0.0.0:2514";
/// Default workspace of the embedded syslog listeners (the one a fresh data dir has).
pub const DEFAULT_SYSLOG_WORKSPACE: u32 = 1;
const DEFAULT_RCVBUF: u64 = 8 << 20;
/// `sockets` may not exceed this.
const MAX_SOCKETS: usize = 64;

/// How a syslog listener decides the workspace of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogAuth {
    /// Every message goes to this workspace.
    Workspace(u32),
    /// Each message carries a streaming key (see `codec::syslog_scan`);
    /// messages without a valid one are refused.
    Key,
}

/// `[sources.syslog_tcp]`, `[sources.syslog_tls]` (where `tls` is
/// required) and `[sources.relp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogTcpSource {
    pub address: SocketAddr,
    pub common: SyslogCommon,
    /// Connections speak TLS first (RFC 5425).
    pub tls: Option<TlsConfig>,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: Count,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once from one client address.
    pub max_connections_per_address: Count,
}

impl SyslogTcpSource {
    pub fn accept_limits(&self) -> crate::net::accept::AcceptLimits {
        crate::net::accept::AcceptLimits {
            max_connections: self.max_connections.0,
            per_address: self.max_connections_per_address.0,
        }
    }
}

/// `[sources.syslog_udp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogUdpSource {
    pub address: SocketAddr,
    pub common: SyslogCommon,
    /// Requested `SO_RCVBUF` per socket.
    pub receive_buffer_bytes: ByteSize,
    /// Sockets bound to the address with `SO_REUSEPORT`, one receiver each.
    pub sockets: Count,
}

/// What both syslog listeners have.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogCommon {
    pub auth: SyslogAuth,
    /// Peers allowed to send; empty allows every peer.
    pub allowed_sources: Vec<IpNet>,
    /// Zone for timestamps that carry none.
    pub timezone: Zone,
    /// Longer messages are cut to this many bytes and flagged `truncated`.
    pub max_message_bytes: usize,
}

impl SyslogCommon {
    fn new(auth: SyslogAuth) -> SyslogCommon {
        SyslogCommon { auth, allowed_sources: Vec::new(), timezone: Zone::Utc, max_message_bytes: DEFAULT_MAX_MESSAGE }
    }

    /// Whether a peer counts as trusted before it has shown a key: it
    /// matched an `allowed_sources` entry, or the listener accepts anyone
    /// into a fixed workspace.
    pub fn trusts_on_sight(&self) -> bool {
        matches!(self.auth, SyslogAuth::Workspace(_)) || !self.allowed_sources.is_empty()
    }

    /// Whether a peer may send.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|net| net.contains(&peer))
    }
}

/// An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl SyslogTcpSource {
    /// A listener on `address` writing into `workspace`, with every default.
    pub fn at(address: SocketAddr, workspace: u32) -> SyslogTcpSource {
        SyslogTcpSource {
            address,
            common: SyslogCommon::new(SyslogAuth::Workspace(workspace)),
            tls: None,
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            max_connections_per_address: default_per_address(),
        }
    }
}

impl SyslogUdpSource {
    /// A listener on `address` writing into `workspace`, with every default.
    pub fn at(address: SocketAddr, workspace: u32) -> SyslogUdpSource {
        SyslogUdpSource {
            address,
            common: SyslogCommon::new(SyslogAuth::Workspace(workspace)),
            receive_buffer_bytes: ByteSize(DEFAULT_RCVBUF),
            sockets: Count(1),
        }
    }
}

/// `auth = …` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    Workspace,
    Key,
}

/// The keys both sections share, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    address: Option<SocketAddr>,
    #[serde(default)]
    tls: Option<TlsConfig>,
    workspace: Option<WorkspaceId>,
    auth: Option<AuthKind>,
    #[serde(default)]
    allowed_sources: Vec<Cidr>,
    #[serde(default, deserialize_with = "zone")]
    timezone: Zone,
    #[serde(default)]
    max_message_bytes: MessageLimit,
    #[serde(default = "default_max_connections")]
    max_connections: Count,
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(default = "default_per_address")]
    max_connections_per_address: Count,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUdp {
    address: SocketAddr,
    workspace: Option<WorkspaceId>,
    auth: Option<AuthKind>,
    #[serde(default)]
    allowed_sources: Vec<Cidr>,
    #[serde(default, deserialize_with = "zone")]
    timezone: Zone,
    #[serde(default)]
    max_message_bytes: MessageLimit,
    #[serde(default = "default_rcvbuf")]
    receive_buffer_bytes: ByteSize,
    #[serde(default = "one")]
    sockets: Count,
}

fn default_rcvbuf() -> ByteSize {
    ByteSize(DEFAULT_RCVBUF)
}
fn one() -> Count {
    Count(1)
}

fn common(
    workspace: Option<WorkspaceId>,
    auth: Option<AuthKind>,
    allowed: Vec<Cidr>,
    timezone: Zone,
    limit: MessageLimit,
) -> Result<SyslogCommon, String> {
    let auth = match (auth, workspace) {
        (Some(AuthKind::Key), Some(_)) => {
            return Err(
                "`workspace` cannot be combined with auth = \"key\": each message's key names its workspace".into()
            );
        }
        (Some(AuthKind::Key), None) => SyslogAuth::Key,
        (_, Some(WorkspaceId(ws))) => SyslogAuth::Workspace(ws),
        (_, None) => {
            return Err(
                "set `workspace = ID` (every message goes there) or `auth = \"key\"` (a key in each message)".into()
            );
        }
    };
    let allowed_sources = allowed.into_iter().map(|c| c.0).collect();
    Ok(SyslogCommon { auth, allowed_sources, timezone, max_message_bytes: limit.0 })
}

impl<'de> Deserialize<'de> for SyslogTcpSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawTcp::deserialize(d)?;
        let address = r.address.ok_or_else(|| serde::de::Error::missing_field("address"))?;
        tcp_source(r, address)
    }
}

/// `[sources.syslog_tls]`: a syslog TCP section whose `tls` table is
/// required and whose address defaults to port 6514.
pub(super) fn syslog_tls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SyslogTcpSource>, D::Error> {
    let r = RawTcp::deserialize(d)?;
    if r.tls.is_none() {
        return Err(serde::de::Error::custom("[sources.syslog_tls] needs a `tls` table (cert and key)"));
    }
    let address = r.address.unwrap_or_else(|| DEFAULT_SYSLOG_TLS_ADDR.parse().expect("valid default address"));
    tcp_source(r, address).map(Some)
}

/// `[sources.relp]`: a syslog TCP section whose address defaults to port 2514.
pub(super) fn relp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SyslogTcpSource>, D::Error> {
    let r = RawTcp::deserialize(d)?;
    let address = r.address.unwrap_or_else(|| DEFAULT_RELP_ADDR.parse().expect("valid default address"));
    tcp_source(r, address).map(Some)
}

fn tcp_source<E: serde::de::Error>(r: RawTcp, address: SocketAddr) -> Result<SyslogTcpSource, E> {
    let common = common(r.workspace, r.auth, r.allowed_sources, r.timezone, r.max_message_bytes).map_err(E::custom)?;
    Ok(SyslogTcpSource {
        address,
        common,
        tls: r.tls,
        max_connections: r.max_connections,
        idle_timeout: r.idle_timeout,
        max_connections_per_address: r.max_connections_per_address,
    })
}

impl<'de> Deserialize<'de> for SyslogUdpSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawUdp::deserialize(d)?;
        let common = common(r.workspace, r.auth, r.allowed_sources, r.timezone, r.max_message_bytes)
            .map_err(serde::de::Error::custom)?;
        if r.sockets.0 > MAX_SOCKETS {
            return Err(serde::de::Error::custom(format!("`sockets` may be at most {MAX_SOCKETS}")));
        }
        Ok(SyslogUdpSource {
            address: r.address,
            common,
            receive_buffer_bytes: r.receive_buffer_bytes,
            sockets: r.sockets,
        })
    }
}

fn zone<'de, D: Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

/// A workspace id: a positive integer.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct WorkspaceId(u32);

impl TryFrom<i64> for WorkspaceId {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(n) if n > 0 => Ok(WorkspaceId(n)),
            _ => Err(format!("a workspace id is a positive integer, got {v}")),
        }
    }
}

/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
struct Cidr(IpNet);

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not a network like 10.0.0.0/8 or an address"))
    }
}

/// `max_message_bytes`: 1 byte to 16 MiB.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "ByteSize")]
struct MessageLimit(usize);

impl Default for MessageLimit {
    fn default() -> Self {
        MessageLimit(DEFAULT_MAX_MESSAGE)
    }
}

impl TryFrom<ByteSize> for MessageLimit {
    type Error = String;
    fn try_from(v: ByteSize) -> Result<Self, String> {
        match usize::try_from(v.0) {
            Ok(n) if n > 0 && n <= HARD_MAX_MESSAGE => Ok(MessageLimit(n)),
            _ => Err(format!("max_message_bytes must be between 1 byte and 16 MiB, got {} bytes", v.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn workspace_mode_with_every_setting() {
        let c = parse(
            "[sources.syslog_tcp]\naddress = \"127.0.0.1:514\"\nworkspace = 3\nallowed_sources = [\"10.0.0.0/8\", \"192.168.1.7\"]\n\
             timezone = \"Europe/Berlin\"\nmax_message_bytes = \"1KiB\"\nmax_connections = 5\nidle_timeout = \"30s\"\n\
             [sources.syslog_udp]\naddress = \"127.0.0.1:514\"\nauth = \"key\"\nreceive_buffer_bytes = \"1MiB\"\nsockets = 2\n",
        )
        .unwrap();
        let tcp = c.sources.syslog_tcp.unwrap();
        assert_eq!(tcp.common.auth, SyslogAuth::Workspace(3));
        assert_eq!(tcp.common.max_message_bytes, 1024);
        assert_eq!(tcp.common.timezone.to_string(), "Europe/Berlin");
        assert_eq!((tcp.max_connections, tcp.idle_timeout), (Count(5), Duration::from_secs(30)));
        assert!(tcp.common.allows("10.1.2.3".parse().unwrap()));
        assert!(tcp.common.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(tcp.common.allows("192.168.1.7".parse().unwrap()));
        assert!(!tcp.common.allows("192.168.1.8".parse().unwrap()));
        let udp = c.sources.syslog_udp.unwrap();
        assert_eq!(udp.common.auth, SyslogAuth::Key);
        assert!(udp.common.allows("8.8.8.8".parse().unwrap()), "no list allows everyone");
        assert_eq!((udp.receive_buffer_bytes, udp.sockets), (ByteSize(1 << 20), Count(2)));
    }

    #[test]
    fn defaults() {
        let c = parse("[sources.syslog_udp]\naddress = \"127.0.0.1:514\"\nworkspace = 1\n").unwrap();
        assert_eq!(c.sources.syslog_udp.unwrap(), SyslogUdpSource::at("127.0.0.1:514".parse().unwrap(), 1));
        let embedded = Config::embedded();
        assert_eq!(embedded.sources.syslog_tcp.unwrap().address.port(), 5514);
        assert_eq!(embedded.sources.syslog_udp.unwrap().address.port(), 5514);
    }

    #[test]
    fn syslog_tls_takes_the_syslog_tcp_keys_and_defaults_to_port_6514() {
        let c = parse(
            "[sources.syslog_tls]\nworkspace = 2\nmax_connections = 7\n\
             tls = { cert = \"/c.pem\", key = \"/k.pem\", client_ca = \"/ca.pem\" }\n",
        )
        .unwrap();
        let s = c.sources.syslog_tls.unwrap();
        assert_eq!((s.address.port(), s.common.auth, s.max_connections.0), (6514, SyslogAuth::Workspace(2), 7));
        let tls = s.tls.unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.client_ca.as_deref().and_then(Path::to_str)),
            (Some("/c.pem"), Some("/ca.pem"))
        );
        assert!(
            Config::embedded().sources.syslog_tls.is_none(),
            "TLS needs a certificate, so it is never on by default"
        );
    }

    #[test]
    fn relp_takes_the_syslog_tcp_keys_and_defaults_to_port_2514() {
        let c = parse("[sources.relp]\nauth = \"key\"\nmax_message_bytes = \"8KiB\"\n").unwrap();
        let r = c.sources.relp.unwrap();
        assert_eq!((r.address.port(), r.common.auth, r.common.max_message_bytes), (2514, SyslogAuth::Key, 8192));
        assert!(r.tls.is_none());
        assert_eq!(Config::embedded().sources.relp.unwrap().address.port(), 2514);
        assert!(parse("[sources.relp]\n").unwrap_err().to_string().contains("workspace"));
    }

    #[test]
    fn invalid_combinations_and_values_are_refused_with_their_line() {
        let cases = [
            ("[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nauth = \"key\"\nworkspace = 2\n", "cannot be combined"),
            ("[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\n", "set `workspace = ID`"),
            ("[sources.syslog_udp]\naddress = \"127.0.0.1:1\"\nauth = \"password\"\n", "unknown variant"),
            ("[sources.syslog_udp]\naddress = \"127.0.0.1:1\"\nworkspace = 0\n", "positive"),
            ("[sources.syslog_udp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\nsockets = 65\n", "at most 64"),
            (
                "[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\nallowed_sources = [\"10/8\"]\n",
                "network",
            ),
            ("[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\ntimezone = \"Mars\"\n", "time zone"),
            ("[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\nmax_message_bytes = 0\n", "between"),
            ("[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\nsockets = 2\n", "unknown field"),
            ("[sources.syslog_tls]\nworkspace = 1\n", "needs a `tls` table"),
            ("[sources.syslog_tls]\nworkspace = 1\ntls = { cert = \"c\" }\n", "missing field `key`"),
            ("[sources.syslog_tcp]\nworkspace = 1\n", "missing field `address`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("sluice.toml:"), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = parse(
            "data_dir = \"d\"\n\n[sources.syslog_tcp]\naddress = \"127.0.0.1:1\"\nworkspace = 1\ntimezone = \"Mars\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("sluice.toml:6:"), "{err}");
    }
}
