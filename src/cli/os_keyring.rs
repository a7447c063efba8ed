//! The login token in the OS keyring: the freedesktop Secret Service
//! (gnome-keyring, KWallet) over D-Bus, through the `keyring` crate's
//! pure-Rust client. One item per server: service `sluice`, user the admin
//! API's URL, so `secret-tool lookup service sluice username URL` finds it.
//!
//! Every call runs on its own thread with a deadline: a session bus whose
//! Secret Service never answers (or is being started by D-Bus activation)
//! must not hang the CLI, and the crate must not be driven from a thread
//! that runs an async runtime. Past the deadline the keyring counts as
//! unreachable and the caller falls back to the credentials file.

use std::sync::mpsc;
use std::time::Duration;

/// The Secret Service item's `service` attribute.
pub const SERVICE: &str = "sluice";
/// `SLUICE_KEYRING=off` keeps tokens in the file even where a keyring runs.
pub const KEYRING_ENV: &str = "SLUICE_KEYRING";
/// How long one keyring call may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// Why the keyring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("turned off by {KEYRING_ENV}=off")]
    Off,
    #[error("no answer from the Secret Service within {}s", DEADLINE.as_secs())]
    Timeout,
    #[error("{0}")]
    Keyring(#[from] keyring::Error),
}

/// Stores `token` for `server`, replacing any earlier one.
pub fn set(server: &str, token: &str) -> Result<(), KeyringError> {
    let token = token.to_owned();
    call(server, move |entry| entry.set_password(&token))
}

/// The token stored for `server`; `Ok(None)` when there is none.
pub fn get(server: &str) -> Result<Option<String>, KeyringError> {
    match call(server, |entry| entry.get_password()) {
        Ok(token) => Ok(Some(token)),
        Err(KeyringError::Keyring(keyring::Error::NoEntry)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the token stored for `server`; true if there was one.
pub fn delete(server: &str) -> Result<bool, KeyringError> {
    match call(server, |entry| entry.delete_credential()) {
        Ok(()) => Ok(true),
        Err(KeyringError::Keyring(keyring::Error::NoEntry)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs `op` on the entry for `server` on a thread of its own, within [`DEADLINE`].
fn call<T: Send + 'static>(
    server: &str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<T, KeyringError> {
    if std::env::var(KEYRING_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return Err(KeyringError::Off);
    }
    let user = server.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let result = keyring::Entry::new(SERVICE, &user).and_then(|entry| op(&entry));
            let _ = tx.send(result);
        })
        .map_err(|e| KeyringError::Keyring(keyring::Error::PlatformFailure(Box::new(e))))?;
    // A thread still waiting past the deadline is left behind: the CLI exits soon.
    match rx.recv_timeout(DEADLINE) {
        Ok(result) => result.map_err(KeyringError::Keyring),
        Err(_) => Err(KeyringError::Timeout),
    }
}
