//! What every admin request shares, and how it is built at start-up.
//!
//! Start-up (on the blocking pool): the JWT secret (config, else
//! `SLUICE_JWT_SECRET`, else the one kept in control.redb), the live
//! sessions, and — while no user exists — the one-time setup token, written
//! to `DATA_DIR/setup-token` (mode 0600) and logged.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::ApiError;
use crate::auth::jwt::JwtKeys;
use crate::auth::password::Hasher;
use crate::auth::ratelimit::Limiter;
use crate::auth::session::Authenticator;
use crate::config::AdminConfig;
use crate::control::Control;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::control::AuditEntry;
use crate::store::query::EventsHandle;
use tokio_util::sync::CancellationToken;

use crate::net::body_stream::{BodyReceiver, BodySender, StreamShape, Streams};

/// Environment variable that can hold the JWT secret (at least 32 bytes).
pub const JWT_SECRET_ENV: &str = "SLUICE_JWT_SECRET";
/// File in the data dir holding the one-time setup token until setup.
pub const SETUP_TOKEN_FILE: &str = "setup-token";
/// Rate-limit keys tracked at most, per limiter.
const MAX_LIMITER_KEYS: usize = 100_000;
/// A client IP over its auth-endpoint quota is refused this long (`Retry-After: 60`).
const AUTH_LOCKOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct AdminState {
    pub config: AdminConfig,
    /// control.redb and the key and session registries: every change goes here.
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    pub hasher: Hasher,
    pub ip_limit: Limiter<IpAddr>,
    pub token_limit: Limiter<String>,
    /// The setup token while setup is open; `None` after.
    pub setup_token: Mutex<Option<String>>,
    pub data_dir: PathBuf,
    pub listeners: Vec<(&'static str, SocketAddr)>,
    pub started: Instant,
    /// Read access to events.redb (owned by the writer thread).
    pub events: EventsHandle,
    /// Cancelled when the daemon stops; ends live tails.
    pub shutdown: CancellationToken,
    /// Request body deadlines (`[pipeline] frame_timeout`, `min_transfer_rate`).
    pub timeouts: crate::net::deadline::Timeouts,
    /// The cap on streamed answers running at once (`[admin] max_streams`).
    pub streams: Streams,
}

/// What [`AdminState::build`] needs.
pub struct AdminDeps {
    pub config: AdminConfig,
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub data_dir: PathBuf,
    pub listeners: Vec<(&'static str, SocketAddr)>,
    pub events: EventsHandle,
    pub shutdown: CancellationToken,
    /// Request body deadlines (`[pipeline] frame_timeout`, `min_transfer_rate`).
    pub timeouts: crate::net::deadline::Timeouts,
    /// Set when `[admin]` has a `tls` table.
    pub tls: Option<Arc<crate::net::tls::Tls>>,
}

impl AdminState {
    /// A streamed answer's channel, or 503 when `[admin] max_streams` run already.
    pub fn open_stream(&self, shape: StreamShape) -> Result<(BodySender, BodyReceiver), ApiError> {
        self.streams.open(shape, self.shutdown.clone()).ok_or_else(|| {
            ApiError::unavailable(format!(
                "{} streamed answers (tails, exports, backups) are running; retry later",
                self.config.max_streams.0
            ))
        })
    }

    /// Builds the state (blocking: reads and may write control.redb).
    pub fn build(deps: AdminDeps) -> Result<AdminState, StoreError> {
        let secret = match (&deps.config.jwt_secret, std::env::var(JWT_SECRET_ENV)) {
            (Some(s), _) => s.0.as_bytes().to_vec(),
            (None, Ok(env)) if env.len() >= crate::config::MIN_JWT_SECRET_LEN => env.into_bytes(),
            (None, Ok(_)) => {
                return Err(StoreError::Invalid { reason: format!("{JWT_SECRET_ENV} is shorter than 32 bytes") });
            }
            (None, Err(_)) => deps.control.store().jwt_secret()?,
        };
        let sessions = deps.control.sessions().clone();
        let setup_token = deps.control.store().setup_token()?;
        publish_setup_token(&deps.data_dir, setup_token.as_deref());
        let hasher = Hasher::new(deps.config.max_password_hashes.0, deps.metrics.clone());
        hasher.prime_blocking().map_err(|e| StoreError::Invalid { reason: e.to_string() })?;
        let max_streams = deps.config.max_streams.0;
        let per_min = |n: usize| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        Ok(AdminState {
            auth: Authenticator { keys: JwtKeys::new(&secret), sessions },
            hasher,
            ip_limit: Limiter::per_minute(per_min(deps.config.auth_requests_per_minute.0), MAX_LIMITER_KEYS)
                .with_lockout(AUTH_LOCKOUT),
            token_limit: Limiter::per_minute(per_min(deps.config.api_requests_per_minute.0), MAX_LIMITER_KEYS),
            setup_token: Mutex::new(setup_token),
            config: deps.config,
            control: deps.control,
            metrics: deps.metrics,
            data_dir: deps.data_dir,
            listeners: deps.listeners,
            started: Instant::now(),
            events: deps.events,
            shutdown: deps.shutdown,
            timeouts: deps.timeouts,
            streams: Streams::new(max_streams),
        })
    }

    /// Runs a control-plane operation on the blocking pool.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Control) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let control = self.control.clone();
        match tokio::task::spawn_blocking(move || f(&control)).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => Err(ApiError::internal(format!("storage task failed: {e}"))),
        }
    }

    /// Appends to the audit log; a failure is logged, not returned (the
    /// action itself already happened).
    pub async fn audit(&self, entry: AuditEntry) {
        let (action, outcome) = (entry.action.clone(), entry.outcome.clone());
        if let Err(e) = self.db(move |c| c.store().append_audit(entry)).await {
            tracing::error!(%action, %outcome, error = %e.message, "could not write the audit log");
        }
    }

    /// Ends setup: forgets the token and removes its file.
    pub fn close_setup(&self) {
        *self.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let _ = std::fs::remove_file(self.data_dir.join(SETUP_TOKEN_FILE));
    }

    pub fn setup_token(&self) -> Option<String> {
        self.setup_token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes the setup token file (0600) and logs where it is; removes a stale
/// file once setup is done.
fn publish_setup_token(data_dir: &Path, token: Option<&str>) {
    let path = data_dir.join(SETUP_TOKEN_FILE);
    let Some(token) = token else {
        let _ = std::fs::remove_file(&path);
        return;
    };
    let _ = std::fs::remove_file(&path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{token}"));
    match written {
        Ok(()) => tracing::warn!(
            file = %path.display(), setup_token = token,
            "no user yet: create the first admin with `sluice setup` (from this host) or POST /api/v1/auth/setup with this setup token"
        ),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, setup_token = token, "cannot write the setup token file")
        }
    }
}
