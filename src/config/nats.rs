//! `[forward]`, `[forward.nats]` and `[sources.nats]`: forwarding committed
//! events to NATS JetStream, and consuming them on a central node.
//!
//! ```toml
//! [forward]
//! retention_may_drop_unforwarded = false
//!
//! [forward.nats]
//! servers = ["nats://127.0.0.1:4222"]   # several for a cluster
//! stream = "SLUICE"                     # created if missing
//! replicas = 1
//! subject_prefix = "sluice.events"      # messages go to <prefix>.<workspace>
//! node_id = "edge-1"                    # default: the host name
//! duplicate_window = "2m"
//! encoding = "chunk"                    # or "ndjson"
//! ack = "local"                         # or "replicated" (waits at most [pipeline] ack_timeout)
//! # user = "..", password = "..", or token = "..", or creds = "/path/x.creds"; ca_file = "/path/ca.pem"
//!
//! [sources.nats]
//! servers = ["nats://127.0.0.1:4222"]
//! stream = "SLUICE"
//! consumer = "central"
//! filter_subject = "sluice.events.>"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[forward]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Let retention delete chunks not yet forwarded (default: never).
    #[serde(default)]
    pub retention_may_drop_unforwarded: bool,
    pub nats: Option<NatsForward>,
}

/// What a message body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Stored chunk values, as sluice stores them (for a central sluice).
    #[default]
    Chunk,
    /// The events as `sluice export` prints them, one JSON object per line.
    Ndjson,
}

/// When clients are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the local commit.
    #[default]
    Local,
    /// After JetStream's PubAck for the message holding the batch.
    Replicated,
}

/// How to reach and log in to the NATS servers (shared by both sides).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub creds: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// `[forward.nats]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsForward {
    #[serde(deserialize_with = "servers")]
    pub servers: Vec<String>,
    #[serde(deserialize_with = "name")]
    pub stream: String,
    #[serde(default = "default_replicas", deserialize_with = "replicas")]
    pub replicas: usize,
    #[serde(default = "default_prefix", deserialize_with = "subject")]
    pub subject_prefix: String,
    /// Default: the host name.
    #[serde(default, deserialize_with = "node_id")]
    pub node_id: Option<String>,
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
    #[serde(default)]
    pub encoding: Encoding,
    /// With `ack = "replicated"` a client waits at most `[pipeline]
    /// ack_timeout` for JetStream, then is told `unavailable` (and retries).
    #[serde(default)]
    pub ack: AckMode,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub creds: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl NatsForward {
    pub fn auth(&self) -> NatsAuth {
        auth(&self.user, &self.password, &self.token, &self.creds, &self.ca_file)
    }

    /// The node id, or the host name when none is set.
    pub fn node(&self) -> String {
        self.node_id.clone().unwrap_or_else(host_name)
    }
}

/// `[sources.nats]`: a durable JetStream pull consumer on a central node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    #[serde(deserialize_with = "servers")]
    pub servers: Vec<String>,
    #[serde(deserialize_with = "name")]
    pub stream: String,
    #[serde(default = "default_consumer", deserialize_with = "name")]
    pub consumer: String,
    /// Default: every subject of the stream.
    #[serde(default, deserialize_with = "filter")]
    pub filter_subject: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub creds: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl NatsSource {
    pub fn auth(&self) -> NatsAuth {
        auth(&self.user, &self.password, &self.token, &self.creds, &self.ca_file)
    }
}

fn auth(
    user: &Option<String>,
    password: &Option<String>,
    token: &Option<String>,
    creds: &Option<PathBuf>,
    ca_file: &Option<PathBuf>,
) -> NatsAuth {
    NatsAuth {
        user: user.clone(),
        password: password.clone(),
        token: token.clone(),
        creds: creds.clone(),
        ca_file: ca_file.clone(),
    }
}

/// The machine's host name (the default node id).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if rc == 0 { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() };
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() { "sluice".to_string() } else { clean }
}

fn default_replicas() -> usize {
    1
}
fn default_prefix() -> String {
    "sluice.events".into()
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_consumer() -> String {
    "central".into()
}

fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom("servers must name at least one NATS server"));
    }
    for s in &v {
        if s.parse::<async_nats::ServerAddr>().is_err() {
            return Err(serde::de::Error::custom(format!("{s:?} is not a NATS server address (nats://host:port)")));
        }
    }
    Ok(v)
}

/// A stream or consumer name: NATS forbids whitespace, `.`, `*`, `>`, `/` and `\`.
fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() || v.len() > 255 || v.chars().any(|c| c.is_whitespace() || ".*>/\\".contains(c)) {
        return Err(serde::de::Error::custom(format!(
            "{v:?} is not a valid NATS name (no spaces, '.', '*', '>', '/', '\\')"
        )));
    }
    Ok(v)
}

/// A subject prefix: dot-separated tokens without wildcards.
fn subject<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if !valid_subject(&v, false) {
        return Err(serde::de::Error::custom(format!(
            "{v:?} is not a subject prefix (tokens separated by '.', no wildcards)"
        )));
    }
    Ok(v)
}

fn filter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    if !valid_subject(&v, true) {
        return Err(serde::de::Error::custom(format!("{v:?} is not a subject filter")));
    }
    Ok(Some(v))
}

fn valid_subject(v: &str, wildcards: bool) -> bool {
    !v.is_empty()
        && v.split('.').all(|t| {
            !t.is_empty()
                && !t.chars().any(char::is_whitespace)
                && (wildcards && (t == "*" || t == ">") || !t.contains(['*', '>']))
        })
}

/// Letters, digits, `-` and `_`: it is part of every message id
/// (`node:incarnation:workspace:first_seq`).
fn node_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(serde::de::Error::custom(format!("node_id {v:?}: use 1 to 64 letters, digits, '-' or '_'")));
    }
    Ok(Some(v))
}

fn replicas<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = i64::deserialize(d)?;
    if !(1..=5).contains(&v) {
        return Err(serde::de::Error::custom(format!("replicas must be 1 to 5 (JetStream's limit), got {v}")));
    }
    Ok(v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let f: NatsForward = toml::from_str("servers = [\"nats://127.0.0.1:4222\"]\nstream = \"SLUICE\"").unwrap();
        assert_eq!((f.replicas, f.subject_prefix.as_str()), (1, "sluice.events"));
        assert_eq!(
            (f.encoding, f.ack, f.duplicate_window),
            (Encoding::Chunk, AckMode::Local, Duration::from_secs(120))
        );
        assert!(!f.node().is_empty());
        for bad in [
            "servers = []\nstream = \"S\"",
            "servers = [\"nats://a:1\"]\nstream = \"a.b\"",
            "servers = [\"nats://a:1\"]\nstream = \"S\"\nreplicas = 7",
            "servers = [\"nats://a:1\"]\nstream = \"S\"\nsubject_prefix = \"a.*\"",
            "servers = [\"nats://a:1\"]\nstream = \"S\"\nnode_id = \"a:b\"",
            "servers = [\"nats://a:1\"]\nstream = \"S\"\nencoding = \"xml\"",
            "servers = [\"nats://a:1\"]",
        ] {
            assert!(toml::from_str::<NatsForward>(bad).is_err(), "{bad}");
        }
        let s: NatsSource =
            toml::from_str("servers = [\"nats://a:1\"]\nstream = \"S\"\nfilter_subject = \"sluice.events.>\"").unwrap();
        assert_eq!((s.consumer.as_str(), s.filter_subject.as_deref()), ("central", Some("sluice.events.>")));
    }
}
