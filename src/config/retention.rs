//! `[retention]`: how long and how much event data is kept. Without the
//! section (or with neither limit) everything is kept.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ByteSize;
use crate::store::retention::Policy;

/// Shortest `max_age` accepted: anything shorter is almost certainly a typo
/// (`"30s"` for `"30d"`) that would delete data within a minute.
const MIN_MAX_AGE: Duration = Duration::from_secs(1);
/// Smallest `max_bytes` accepted: one full commit must fit.
const MIN_MAX_BYTES: u64 = 1 << 20;

/// `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events received longer ago than this are deleted (e.g. `"30d"`).
    #[serde(default, deserialize_with = "max_age")]
    pub max_age: Option<Duration>,
    /// The oldest events are deleted while stored chunk bytes exceed this (e.g. `"50GiB"`).
    #[serde(default, deserialize_with = "max_bytes")]
    pub max_bytes: Option<ByteSize>,
    /// How often the age limit is applied (default 10s); the size limit is
    /// also applied right after a commit that goes over it.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { max_age: None, max_bytes: None, check_interval: default_check_interval() }
    }
}

impl RetentionConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            max_age: self.max_age,
            max_bytes: self.max_bytes.map(|b| b.0),
            check_every: self.check_interval,
            hold_unforwarded: false,
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}

fn max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let age: Duration = humantime_serde::deserialize(d)?;
    if age < MIN_MAX_AGE {
        return Err(serde::de::Error::custom(format!("max_age must be at least {MIN_MAX_AGE:?}, got {age:?}")));
    }
    Ok(Some(age))
}

fn max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    let size = ByteSize::deserialize(d)?;
    if size.0 < MIN_MAX_BYTES {
        return Err(serde::de::Error::custom(format!("max_bytes must be at least 1 MiB, got {} bytes", size.0)));
    }
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("sluice.toml"))
    }

    #[test]
    fn limits_parse_into_the_policy() {
        let c = parse("[retention]\nmax_age = \"30d\"\nmax_bytes = \"2GiB\"\ncheck_interval = \"1s\"\n").unwrap();
        let p = c.retention.policy();
        assert_eq!(p.max_age, Some(std::time::Duration::from_secs(30 * 86_400)));
        assert_eq!(p.max_bytes, Some(2 << 30));
        assert_eq!(p.check_every, std::time::Duration::from_secs(1));
        assert!(parse("").unwrap().retention.policy().is_off());
    }

    #[test]
    fn tiny_limits_and_unknown_keys_are_refused_with_their_line() {
        for (text, line) in [
            ("[retention]\nmax_age = \"0s\"\n", 2),
            ("[retention]\nmax_bytes = 1000\n", 2),
            ("[retention]\n\nmax_size = \"1GiB\"\n", 3),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
