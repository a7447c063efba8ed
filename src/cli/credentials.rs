//! Stored login credentials. The token goes into the OS keyring (the
//! freedesktop Secret Service, [`super::os_keyring`]) when one is reachable,
//! as `gh` and `docker` do; otherwise into the credentials file, readable
//! only by the user (0600, in a 0700 directory). The file always holds the
//! server, email and expiry, and says where the token is:
//! `$SLUICE_CREDENTIALS`, else `$XDG_CONFIG_HOME/sluice/credentials.json`,
//! else `~/.config/sluice/credentials.json`.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

use super::os_keyring::{self, KeyringError};

pub const CREDENTIALS_ENV: &str = "SLUICE_CREDENTIALS";

/// A login: the admin API, its token and who it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub server: String,
    pub token: String,
    pub email: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The credentials file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub server: String,
    /// The token, when it is kept in this file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    token: String,
    pub email: String,
    pub expires_at: u64,
    /// `"keyring"` when the token is in the OS keyring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_store: Option<String>,
}

const IN_KEYRING: &str = "keyring";

impl Stored {
    fn in_keyring(&self) -> bool {
        self.token_store.as_deref() == Some(IN_KEYRING)
    }
}

/// Where [`save`] put the token.
#[derive(Debug)]
pub enum Saved {
    /// In the OS keyring; the rest of the login in `file`.
    Keyring { file: PathBuf },
    /// In `file`, because the keyring could not take it (`why`).
    File { file: PathBuf, why: KeyringError },
}

impl Saved {
    /// `"keyring"` or `"file"`.
    pub fn store(&self) -> &'static str {
        match self {
            Saved::Keyring { .. } => IN_KEYRING,
            Saved::File { .. } => "file",
        }
    }
}

impl std::fmt::Display for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Saved::Keyring { file } => {
                write!(f, "Token saved in the OS keyring (Secret Service); server and email in {}.", file.display())
            }
            Saved::File { file, why } => {
                write!(f, "Token saved in {} (mode 0600): no OS keyring could take it ({why}).", file.display())
            }
        }
    }
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

/// The credentials file, if any (the token may be elsewhere).
pub fn stored() -> anyhow::Result<Option<Stored>> {
    let p = path()?;
    match std::fs::read(&p) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("damaged {}", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

impl Stored {
    /// The login's token: from this file, or from the OS keyring.
    pub fn fetch_token(&self) -> anyhow::Result<String> {
        if !self.in_keyring() {
            return Ok(self.token.clone());
        }
        match os_keyring::get(&self.server) {
            Ok(Some(token)) => Ok(token),
            Ok(None) => Err(anyhow!(
                "the token of your login to {} is no longer in the OS keyring: run `sluice login`",
                self.server
            )),
            Err(e) => Err(anyhow!(
                "the token of your login to {} is in the OS keyring, which cannot be reached ({e}): \
                 run `sluice login` again, here",
                self.server
            )),
        }
    }
}

/// Replaces the stored login: the token into the OS keyring if it takes it,
/// else into the file. A token an earlier login left in the keyring for
/// another server is deleted.
pub fn save(c: &Credentials) -> anyhow::Result<Saved> {
    let earlier = stored().ok().flatten().filter(|s| s.in_keyring() && s.server != c.server);
    let file = path()?;
    let (token, token_store, saved) = match os_keyring::set(&c.server, &c.token) {
        Ok(()) => (String::new(), Some(IN_KEYRING.to_owned()), Saved::Keyring { file: file.clone() }),
        Err(why) => (c.token.clone(), None, Saved::File { file: file.clone(), why }),
    };
    let stored =
        Stored { server: c.server.clone(), token, email: c.email.clone(), expires_at: c.expires_at, token_store };
    write_file(&file, &stored)?;
    if let Some(old) = earlier {
        let _ = os_keyring::delete(&old.server);
    }
    Ok(saved)
}

/// Writes the file (to a 0600 temp file, synced, then renamed over it).
fn write_file(p: &std::path::Path, stored: &Stored) -> anyhow::Result<()> {
    if let Some(dir) = p.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(stored)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))
}

/// Forgets the stored login: its token in the keyring, then the file.
/// False if there was none. A keyring that cannot be reached is an error,
/// and the file is kept, so the token is not left behind unnamed.
pub fn remove() -> anyhow::Result<bool> {
    let Some(s) = stored()? else { return Ok(false) };
    if s.in_keyring() {
        os_keyring::delete(&s.server).map_err(|e| {
            anyhow!("cannot remove the token from the OS keyring ({e}); the login stays stored: try again")
        })?;
    }
    match std::fs::remove_file(path()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
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
    Ok(stored()?.map_or_else(|| super::http::DEFAULT_SERVER.to_owned(), |c| c.server))
}

/// The stored token for `server`, or an error saying to log in.
pub fn token_for(server: &str) -> anyhow::Result<String> {
    let s = stored()?.ok_or_else(|| anyhow!("not logged in: run `sluice login --server {server}`"))?;
    let same = super::http::ApiClient::new(server).base() == super::http::ApiClient::new(&s.server).base();
    if !same {
        return Err(anyhow!("logged in to {}, not {server}: run `sluice login --server {server}`", s.server));
    }
    s.fetch_token()
}
