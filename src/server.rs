//! The daemon: `run(config, listeners, shutdown)`.
//!
//! Listeners are bound by the caller ([`Listeners::bind`]) so that tests can
//! bind port 0 and read the address back, and so start-up fails before
//! anything else happens when a port is taken.
//!
//! Shutdown: stop accepting, let open connections finish (they read on until
//! their peer is quiet, and wait for their commits) up to `drain_timeout`,
//! then abort the rest, let the writer drain the pipeline and make its final
//! commit, and return.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::keys::KeyRegistry;
use crate::config::Config;
use crate::control::Control;
use crate::metrics::{ListenerKind, Metrics};
use crate::net::activation::Passed;
use crate::net::tls::Tls;
use crate::pipeline::Pipeline;
use crate::source::http::limit::RateLimits;
use crate::source::http::{self, HttpContext, HttpDeps};
use crate::source::otlp::{self, OtlpContext};
use crate::source::syslog::tcp::SyslogTcpContext;
use crate::source::syslog::udp::{SyslogUdpContext, UdpSockets};
use crate::source::syslog::{self, SyslogContext};
use crate::source::tcp::{self, TcpContext};
use crate::store::control::ControlStore;
use crate::store::query::EventsHandle;
use crate::store::writer::{Writer, WriterConfig};
use crate::store::{self, StoreError};

/// How often last-used times of streaming keys are written down.
const KEY_FLUSH_EVERY: Duration = Duration::from_secs(30);
/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// A daemon that could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot bind {listener} on {address}: {source}{}", privileged_hint(address, source))]
    Bind { listener: &'static str, address: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal task failed: {reason}")]
    Task { reason: String },
    #[error("[{section}]: {source}")]
    Tls {
        section: &'static str,
        #[source]
        source: crate::net::tls::TlsError,
    },
}

/// What to do about a port below 1024 the daemon may not bind itself.
fn privileged_hint(address: &SocketAddr, source: &std::io::Error) -> &'static str {
    if address.port() < 1024 && source.kind() == std::io::ErrorKind::PermissionDenied {
        " (ports below 1024 come from systemd's sluice.socket, with the same address, or need CAP_NET_BIND_SERVICE)"
    } else {
        ""
    }
}

/// The bound sockets, one per configured listener.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub syslog_tcp: Option<TcpListener>,
    pub syslog_tls: Option<TcpListener>,
    pub relp: Option<TcpListener>,
    pub syslog_udp: Option<UdpSockets>,
    pub admin: Option<TcpListener>,
    pub http: Option<TcpListener>,
    pub otlp: Option<TcpListener>,
    /// The TLS of each listener with a `tls` table, loaded with the sockets
    /// so that a bad certificate stops start-up as a taken port does.
    pub tls: HashMap<&'static str, Arc<Tls>>,
}

impl Listeners {
    /// Binds every listener the config names, adopting the sockets systemd
    /// passed for their addresses (`passed`; unclaimed ones are closed).
    pub async fn bind(config: &Config, passed: &mut Passed) -> Result<Listeners, ServerError> {
        let s = &config.sources;
        let syslog_udp = match &s.syslog_udp {
            Some(cfg) => {
                let adopted = passed.take_datagram(cfg.address);
                let bound = if adopted.is_empty() { syslog::udp::bind(cfg) } else { syslog::udp::adopt(cfg, adopted) };
                Some(bound.map_err(|source| ServerError::Bind {
                    listener: "syslog_udp",
                    address: cfg.address,
                    source,
                })?)
            }
            None => None,
        };
        let mut listen = |listener, address: Option<SocketAddr>| listen(listener, address, passed);
        let listeners = Listeners {
            tcp: listen("tcp", s.tcp.as_ref().map(|c| c.address))?,
            syslog_tcp: listen("syslog_tcp", s.syslog_tcp.as_ref().map(|c| c.address))?,
            syslog_tls: listen("syslog_tls", s.syslog_tls.as_ref().map(|c| c.address))?,
            relp: listen("relp", s.relp.as_ref().map(|c| c.address))?,
            syslog_udp,
            http: listen("http", s.http.as_ref().map(|c| c.address))?,
            otlp: listen("otlp", s.otlp.as_ref().map(|c| c.address))?,
            admin: listen("admin", config.admin.as_ref().map(|c| c.address))?,
            tls: load_tls(config)?,
        };
        passed.close_unclaimed();
        Ok(listeners)
    }

    /// The bound addresses, by listener name.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out: Vec<_> = self.tcp.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("tcp", a)).collect();
        out.extend(self.syslog_tcp.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("syslog_tcp", a)));
        out.extend(self.syslog_tls.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("syslog_tls", a)));
        out.extend(self.relp.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("relp", a)));
        out.extend(self.syslog_udp.iter().filter_map(UdpSockets::local_addr).map(|a| ("syslog_udp", a)));
        out.extend(self.http.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("http", a)));
        out.extend(self.otlp.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("otlp", a)));
        out.extend(self.admin.iter().filter_map(|l| l.local_addr().ok()).map(|a| ("admin", a)));
        out
    }
}

/// `listener`'s TCP socket, when it has an address: the one systemd passed
/// for that address, else bound here.
fn listen(
    listener: &'static str,
    address: Option<SocketAddr>,
    passed: &mut Passed,
) -> Result<Option<TcpListener>, ServerError> {
    let Some(address) = address else { return Ok(None) };
    let bind_error = |source| ServerError::Bind { listener, address, source };
    let Some(socket) = passed.take_stream(address) else {
        return crate::net::accept::listen(address).map(Some).map_err(bind_error);
    };
    tracing::info!(listener, %address, "adopted the socket passed by systemd");
    socket.set_nonblocking(true).and_then(|()| TcpListener::from_std(socket)).map(Some).map_err(bind_error)
}

/// Loads the TLS of every listener with a `tls` table (also what
/// `check-config` does).
pub fn load_tls(config: &Config) -> Result<HashMap<&'static str, Arc<Tls>>, ServerError> {
    config
        .tls_tables()
        .into_iter()
        .map(|(listener, section, cfg)| {
            // Syslog messages carry no workspace of their own; the other listeners' keys do.
            let syslog = listener.starts_with("syslog") || listener == "relp";
            if !cfg.client_workspaces.is_empty() && !syslog {
                return Err(ServerError::Tls { section, source: crate::net::tls::TlsError::WorkspacesNotSyslog });
            }
            match Tls::load(cfg) {
                Ok(tls) => Ok((listener, Arc::new(tls))),
                Err(source) => Err(ServerError::Tls { section, source }),
            }
        })
        .collect()
}

/// Reloads every listener's certificate and key on SIGHUP, until shutdown
/// (SIGHUP never stops the daemon, with or without TLS listeners).
async fn reload_tls_on_sighup(tls: Vec<(&'static str, Arc<Tls>)>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; restart to change certificates");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.cancelled() => return,
        }
        if tls.is_empty() {
            tracing::info!("SIGHUP: no TLS listener to reload");
        }
        for (listener, tls) in &tls {
            match tls.reload() {
                Ok(()) => tracing::info!(listener, "TLS certificate and key reloaded"),
                Err(e) => {
                    tracing::error!(listener, error = %e, "TLS reload failed; the previous certificate stays in use")
                }
            }
        }
    }
}

/// What every listener task shares.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    /// The streaming keys (the same registry as `control.keys()`).
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<Metrics>,
    pub control: Arc<Control>,
    /// Cancelled when the daemon should stop accepting and drain.
    pub shutdown: CancellationToken,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
    /// Every listener and connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Read access to the events database the writer owns.
    pub events: EventsHandle,
}

/// Runs the daemon until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> Result<(), ServerError> {
    let data_dir = config.data_dir.clone();
    let control = Arc::new(blocking(move || Control::new(ControlStore::open(&data_dir)?)).await??);
    store::warn_if_not_private(&config.data_dir);
    let keys = control.keys().clone();
    let metrics = Arc::new(Metrics::default());
    metrics.budget_bytes.store(config.pipeline.max_inflight_bytes.0, std::sync::atomic::Ordering::Relaxed);
    let _ = metrics.data_dir.set(config.data_dir.clone());
    let max_bytes = config.retention.max_bytes.map_or(0, |b| b.0);
    metrics.retention_max_bytes.store(max_bytes, std::sync::atomic::Ordering::Relaxed);
    let p = config.pipeline.clone();
    match crate::net::limits::raise_nofile() {
        Ok((soft, hard)) => tracing::info!(soft, hard, "open file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    let (pipeline, rx) = Pipeline::with_limits(p.max_inflight_bytes.0 as usize, p.conn_limits());
    let mut writer_config = WriterConfig::new(
        config.data_dir.join(store::EVENTS_FILE),
        p.cache_bytes.0 as usize,
        p.dedup_window,
        p.max_commit_bytes.0 as usize,
    );
    writer_config.retention = config.retention.policy();
    writer_config.max_dedup_records = p.max_dedup_records.0 as u64;
    let forward = config.forward.nats.clone();
    let gate = forward.as_ref().and_then(|f| crate::forward::gate_for(f, p.ack_timeout));
    writer_config.gate = gate.clone();
    writer_config.retention.hold_unforwarded = forward.is_some() && !config.forward.retention_may_drop_unforwarded;
    let writer = Writer::spawn(writer_config, rx, metrics.clone())?;
    let services = Services {
        config: Arc::new(config),
        pipeline,
        keys,
        metrics,
        control,
        shutdown,
        abort: CancellationToken::new(),
        tracker: TaskTracker::new(),
        events: writer.events(),
    };
    for (name, addr) in listeners.addresses() {
        tracing::info!(listener = name, %addr, "listening");
    }
    let tls: Vec<_> = listeners.tls.iter().map(|(name, tls)| (*name, tls.clone())).collect();
    services.tracker.spawn(reload_tls_on_sighup(tls, services.shutdown.clone()));
    start_listeners(&services, listeners);
    if let Some(nats) = services.config.sources.nats.clone() {
        let (pipeline, metrics, shutdown) =
            (services.pipeline.clone(), services.metrics.clone(), services.shutdown.clone());
        services.tracker.spawn(crate::source::nats::serve(nats, pipeline, metrics, shutdown));
    }
    let housekeeping = CancellationToken::new();
    let chores = tokio::spawn(housekeep(services.clone(), housekeeping.clone()));
    // It runs until the drain is over: answers held for JetStream need it.
    let forwarder = forward.map(|f| {
        let deps = crate::forward::Deps {
            events: writer.events(),
            cursors: writer.cursors(),
            gate,
            metrics: services.metrics.clone(),
        };
        tokio::spawn(crate::forward::run(f, deps, housekeeping.clone()))
    });
    notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(data_dir = %services.config.data_dir.display(), keys = services.keys.len(), "sluice is ready");

    services.shutdown.cancelled().await;
    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: no new connections; draining open ones");
    services.tracker.close();
    if tokio::time::timeout(p.drain_timeout, services.tracker.wait()).await.is_err() {
        tracing::warn!(timeout = ?p.drain_timeout, "drain deadline passed; closing remaining connections");
        services.abort.cancel();
        services.tracker.wait().await;
    }
    housekeeping.cancel();
    let _ = chores.await;
    if let Some(f) = forwarder {
        let _ = f.await;
    }
    let control = services.control.clone();
    drop(services);
    // Every pipeline sender is gone now: the writer drains and makes its final commit.
    blocking(move || writer.join()).await?;
    flush_last_used(&control).await;
    tracing::info!("stopped; everything received was committed");
    Ok(())
}

/// Starts one task per bound listener.
fn start_listeners(services: &Services, listeners: Listeners) {
    let addresses = listeners.addresses();
    let tls = |name| listeners.tls.get(name).cloned();
    if let (Some(listener), Some(cfg)) = (listeners.tcp, &services.config.sources.tcp) {
        start_tcp(services, listener, tls("tcp"), cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.syslog_tcp, &services.config.sources.syslog_tcp) {
        start_syslog_tcp(services, listener, ("syslog_tcp", tls("syslog_tcp")), cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.syslog_tls, &services.config.sources.syslog_tls) {
        start_syslog_tcp(services, listener, ("syslog_tls", tls("syslog_tls")), cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.relp, &services.config.sources.relp) {
        start_syslog_tcp(services, listener, ("relp", tls("relp")), cfg.clone());
    }
    if let (Some(sockets), Some(cfg)) = (listeners.syslog_udp, &services.config.sources.syslog_udp) {
        start_syslog_udp(services, sockets, cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.http, &services.config.sources.http) {
        start_http(services, listener, tls("http"), cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.otlp, &services.config.sources.otlp) {
        start_otlp(services, listener, tls("otlp"), cfg.clone());
    }
    if let (Some(listener), Some(cfg)) = (listeners.admin, &services.config.admin) {
        start_admin(services, listener, (tls("admin"), cfg.clone()), addresses);
    }
}

fn start_http(services: &Services, listener: TcpListener, tls: Option<Arc<Tls>>, cfg: crate::config::HttpSource) {
    let ctx = Arc::new(HttpContext::new(HttpDeps {
        name: "http".into(),
        pipeline: services.pipeline.clone(),
        keys: services.keys.clone(),
        metrics: services.metrics.source("http", ListenerKind::Http),
        ack_timeout: services.config.pipeline.ack_timeout,
        timeouts: services.config.pipeline.timeouts(cfg.idle_timeout),
        abort: services.abort.clone(),
        tls,
        config: cfg,
    }));
    let tracker = services.tracker.clone();
    services.tracker.spawn(http::serve(listener, ctx, services.shutdown.clone(), tracker));
}

fn start_otlp(services: &Services, listener: TcpListener, tls: Option<Arc<Tls>>, cfg: crate::config::OtlpSource) {
    let ctx = Arc::new(OtlpContext {
        name: "otlp".into(),
        pipeline: services.pipeline.clone(),
        keys: services.keys.clone(),
        metrics: services.metrics.source("otlp", ListenerKind::Otlp),
        ack_timeout: services.config.pipeline.ack_timeout,
        timeouts: services.config.pipeline.timeouts(cfg.idle_timeout),
        abort: services.abort.clone(),
        tls,
        limits: RateLimits::new(&cfg.rate_limit),
        decode_slots: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        config: cfg,
    });
    let tracker = services.tracker.clone();
    services.tracker.spawn(otlp::serve(listener, ctx, services.shutdown.clone(), tracker));
}

fn start_tcp(services: &Services, listener: TcpListener, tls: Option<Arc<Tls>>, cfg: crate::config::TcpSource) {
    let ctx = Arc::new(TcpContext {
        name: "tcp".into(),
        pipeline: services.pipeline.clone(),
        keys: services.keys.clone(),
        metrics: services.metrics.source("tcp", ListenerKind::Tcp),
        ack_timeout: services.config.pipeline.ack_timeout,
        timeouts: services.config.pipeline.timeouts(cfg.idle_timeout),
        abort: services.abort.clone(),
        tls,
        config: cfg,
    });
    let tracker = services.tracker.clone();
    services.tracker.spawn(tcp::serve(listener, ctx, services.shutdown.clone(), tracker));
}

/// The admin API; it builds its state (JWT secret, sessions) on its own task.
fn start_admin(
    services: &Services,
    listener: TcpListener,
    (tls, cfg): (Option<Arc<Tls>>, crate::config::AdminConfig),
    listeners: Vec<(&'static str, SocketAddr)>,
) {
    let deps = crate::admin::state::AdminDeps {
        config: cfg,
        control: services.control.clone(),
        metrics: services.metrics.clone(),
        data_dir: services.config.data_dir.clone(),
        listeners,
        events: services.events.clone(),
        shutdown: services.shutdown.clone(),
        timeouts: services.config.pipeline.timeouts(Duration::ZERO),
        tls,
    };
    let tracker = services.tracker.clone();
    let (shutdown, abort) = (services.shutdown.clone(), services.abort.clone());
    services.tracker.spawn(crate::admin::run(listener, deps, shutdown, abort, tracker));
}

fn syslog_context(
    services: &Services,
    (name, kind): (&'static str, ListenerKind),
    common: &crate::config::SyslogCommon,
) -> SyslogContext {
    if let crate::config::SyslogAuth::Workspace(ws) = common.auth {
        ensure_workspace(services.control.store(), ws, name);
    }
    SyslogContext {
        name,
        common: common.clone(),
        pipeline: services.pipeline.clone(),
        keys: services.keys.clone(),
        metrics: services.metrics.source(name, kind),
    }
}

/// A syslog listener's fixed workspace must exist for queries to find its data.
fn ensure_workspace(control: &ControlStore, id: u32, listener: &str) {
    match control.workspace_exists(id) {
        Ok(true) => {}
        Ok(false) => match control.create_workspace(id, &format!("workspace {id}")) {
            Ok(_) => tracing::info!(listener, workspace = id, "created the listener's workspace"),
            Err(e) => tracing::warn!(listener, workspace = id, error = %e, "cannot create the listener's workspace"),
        },
        Err(e) => tracing::warn!(listener, workspace = id, error = %e, "cannot check the listener's workspace"),
    }
}

fn start_syslog_tcp(
    services: &Services,
    listener: TcpListener,
    (name, tls): (&'static str, Option<Arc<Tls>>),
    cfg: crate::config::SyslogTcpSource,
) {
    for ws in cfg.tls.iter().flat_map(|t| t.client_workspaces.values()) {
        ensure_workspace(services.control.store(), *ws, name);
    }
    let kind = if name == "relp" { ListenerKind::Relp } else { ListenerKind::SyslogTcp };
    let ctx = Arc::new(SyslogTcpContext {
        base: syslog_context(services, (name, kind), &cfg.common),
        tls,
        timeouts: services.config.pipeline.timeouts(cfg.idle_timeout),
        ack_timeout: services.config.pipeline.ack_timeout,
        abort: services.abort.clone(),
        config: cfg,
    });
    let shutdown = services.shutdown.clone();
    match kind {
        ListenerKind::Relp => services.tracker.spawn(syslog::relp::serve(listener, ctx, shutdown)),
        _ => services.tracker.spawn(syslog::tcp::serve(listener, ctx, shutdown)),
    };
}

fn start_syslog_udp(services: &Services, sockets: UdpSockets, cfg: crate::config::SyslogUdpSource) {
    let ctx = Arc::new(SyslogUdpContext {
        base: syslog_context(services, ("syslog_udp", ListenerKind::SyslogUdp), &cfg.common),
        config: cfg,
        all_metrics: services.metrics.clone(),
    });
    services.tracker.spawn(syslog::udp::serve(sockets, ctx, services.shutdown.clone()));
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServerError::Task { reason: e.to_string() })
}

/// Periodic chores: watchdog pings, the in-flight gauge, key last-use
/// times, handing freed memory back.
async fn housekeep(services: Services, stop: CancellationToken) {
    let Services { pipeline, metrics, control, .. } = services;
    let watchdog = sd_notify::watchdog_enabled();
    let tick = watchdog.map_or(Duration::from_secs(1), |w| (w / 2).min(Duration::from_secs(1)));
    let mut interval = tokio::time::interval(tick);
    let mut since_flush = Duration::ZERO;
    let mut since_trim = Duration::ZERO;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => return,
        }
        if watchdog.is_some() {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
        metrics.inflight_bytes.store(pipeline.inflight_bytes() as u64, Ordering::Relaxed);
        metrics.untrusted_inflight_bytes.store(pipeline.budget().untrusted_held() as u64, Ordering::Relaxed);
        since_trim += tick;
        if since_trim >= TRIM_EVERY {
            since_trim = Duration::ZERO;
            tokio::task::spawn_blocking(crate::net::limits::release_free_memory);
        }
        since_flush += tick;
        if since_flush >= KEY_FLUSH_EVERY {
            since_flush = Duration::ZERO;
            flush_last_used(&control).await;
        }
    }
}

async fn flush_last_used(control: &Arc<Control>) {
    let control = control.clone();
    match blocking(move || control.flush_key_use()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not record key last-use times"),
        Err(e) => tracing::warn!(error = %e, "could not record key last-use times"),
    }
}

/// Tells systemd about a state change; a no-op outside systemd.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// The data dir a command should use: the flag, else the config's, else the default.
pub fn data_dir_for(flag: Option<PathBuf>, config: &Config) -> PathBuf {
    flag.unwrap_or_else(|| config.data_dir.clone())
}
