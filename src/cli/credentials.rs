//! Stored login credentials: `{server, token, email, expires_at}` as JSON in
//! a file only the user can read (0600, in a 0700 directory):
//! `$SLUICE_CREDENTIALS`, else `$XDG_CONFIG_HOME/sluice/credentials.json`,
//! else `~/.config/sluice/credentials.json`.
//!
//! No OS keyring is used: the ones reachable from Rust on Linux need a
//! running Secret Service (D-Bus) daemon, which servers usually lack, and
//! the kernel keyring forgets everything at logout. A 0600 file is what
//! `gh`, `docker` and `kubectl` fall back to as well.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

pub const CREDENTIALS_ENV: &str = "SLUICE_CREDENTIALS";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub token: String,
    pub email: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Where credentials are kept.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(CREDENTIALS_ENV) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?).join(".config"),
    };
    Ok(base.join("sluice").join("credentials.json"))
}

/// The stored credentials, if any.
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let p = path()?;
    match std::fs::read(&p) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("damaged {}", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Replaces the stored credentials (written to a 0600 temp file, then renamed).
pub fn save(c: &Credentials) -> anyhow::Result<PathBuf> {
    let p = path()?;
    if let Some(dir) = p.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(c)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Forgets the stored credentials; true if there were any.
pub fn remove() -> anyhow::Result<bool> {
    match std::fs::remove_file(path()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `--server URL`: the admin API to talk to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArg {
    /// Admin API URL (default: the server of the stored login, else http://127.0.0.1:3000).
    #[arg(long, env = "SLUICE_SERVER")]
    pub server: Option<String>,
}

/// The server to use: the flag, else the stored login's, else the default.
pub fn server_url(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(s) = flag {
        return Ok(s.to_owned());
    }
    Ok(load()?.map_or_else(|| super::http::DEFAULT_SERVER.to_owned(), |c| c.server))
}

/// The stored token for `server`, or an error saying to log in.
pub fn token_for(server: &str) -> anyhow::Result<String> {
    let c = load()?.ok_or_else(|| anyhow!("not logged in: run `sluice login --server {server}`"))?;
    let same = super::http::ApiClient::new(server).base() == super::http::ApiClient::new(&c.server).base();
    if !same {
        return Err(anyhow!("logged in to {}, not {server}: run `sluice login --server {server}`", c.server));
    }
    Ok(c.token)
}
