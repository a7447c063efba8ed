//! Shared helpers for integration tests: run the real `sluice` binary on a
//! temp data dir with listeners on 127.0.0.1 port 0, learn the bound ports
//! from its log, stop or kill it, and read back what it stored.

#![allow(dead_code)]

pub mod acked;
pub mod admin;
pub mod curl;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub tcp: SocketAddr,
    /// Set when the config has `[sources.syslog_tcp]` / `[sources.syslog_udp]`.
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_udp: Option<SocketAddr>,
    /// Set when the config has `[sources.syslog_tls]`.
    pub syslog_tls: Option<SocketAddr>,
    /// Set when the config has `[sources.relp]`.
    pub relp: Option<SocketAddr>,
    /// Set when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    /// Set when the config has `[sources.http]`.
    pub http: Option<SocketAddr>,
    /// Set when the config has `[sources.otlp]`.
    pub otlp: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The config a test daemon runs with: the raw TCP source on port 0 plus `extra`.
pub fn config_text(data_dir: &Path, extra: &str) -> String {
    format!("data_dir = {:?}\n[sources.tcp]\naddress = \"127.0.0.1:0\"\n{extra}\n", data_dir.display().to_string())
}

impl Daemon {
    pub fn start(data_dir: &Path, extra: &str) -> Daemon {
        Daemon::start_with(data_dir, extra, |_| {})
    }

    /// Starts the daemon; `tweak` may adjust the command (environment, limits).
    pub fn start_with(data_dir: &Path, extra: &str, tweak: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::start_command(data_dir, extra, |config| {
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--config"]).arg(config);
            tweak(&mut cmd);
            cmd
        })
    }

    /// Starts the daemon with the command `make` builds for the config file
    /// (a wrapper that ends by exec'ing `BIN serve --config CONFIG`).
    pub fn start_command(data_dir: &Path, extra: &str, make: impl FnOnce(&Path) -> Command) -> Daemon {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, config_text(data_dir, extra)).expect("config");
        let mut cmd = make(&config);
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info,sluice=debug");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening") || line.contains("sluice is ready") || line.contains("ERROR") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut tcp = None;
        let mut admin = None;
        let mut http = None;
        let mut otlp = None;
        let (mut syslog_tcp, mut syslog_udp, mut syslog_tls, mut relp) = (None, None, None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening") && line.contains("listener=\"tcp\"") => tcp = addr_in(&line),
                Ok(line) if line.contains("listening") && line.contains("listener=\"syslog_tcp\"") => {
                    syslog_tcp = addr_in(&line)
                }
                Ok(line) if line.contains("listening") && line.contains("listener=\"syslog_udp\"") => {
                    syslog_udp = addr_in(&line)
                }
                Ok(line) if line.contains("listening") && line.contains("listener=\"syslog_tls\"") => {
                    syslog_tls = addr_in(&line)
                }
                Ok(line) if line.contains("listening") && line.contains("listener=\"relp\"") => relp = addr_in(&line),
                Ok(line) if line.contains("listening") && line.contains("listener=\"admin\"") => admin = addr_in(&line),
                Ok(line) if line.contains("listening") && line.contains("listener=\"http\"") => http = addr_in(&line),
                Ok(line) if line.contains("listening") && line.contains("listener=\"otlp\"") => otlp = addr_in(&line),
                Ok(line) if line.contains("sluice is ready") => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let daemon = Daemon {
            child: Some(child),
            tcp: tcp.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            syslog_tcp,
            syslog_udp,
            syslog_tls,
            relp,
            admin,
            http,
            otlp,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        assert!(daemon.tcp.port() != 0, "daemon did not start; log:\n{}", daemon.log_text());
        daemon
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("daemon did not stop; log:\n{}", self.log_text()))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn addr_in(line: &str) -> Option<SocketAddr> {
    let at = line.find("addr=")? + 5;
    line[at..].split_whitespace().next()?.parse().ok()
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// What a client program did.
pub struct ScriptRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (a client script: nats-py, the OpenTelemetry SDKs) to its
/// end, its output in files; kills it after `limit` and fails the test then.
pub fn run_bounded(mut cmd: Command, what: &str, limit: Duration) -> ScriptRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let status = wait_timeout(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let run = ScriptRun {
        success: status.is_some_and(|s| s.success()),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    };
    assert!(status.is_some(), "{what} still running after {limit:?}; stderr:\n{}", run.stderr);
    run
}

/// Creates a streaming key with the CLI; returns (id, hex key).
pub fn create_key(data_dir: &Path, workspace: u32) -> (u64, String) {
    let out = Command::new(BIN)
        .args(["apikeys", "create", "--name", "test", "--json", "--workspace", &workspace.to_string(), "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run apikeys");
    assert!(out.status.success(), "apikeys create failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (v["id"].as_u64().expect("id"), v["key"].as_str().expect("key").to_string())
}

/// Everything stored, via `sluice export` on a stopped daemon's data dir.
pub fn export(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(BIN).arg("export").arg("--data-dir").arg(data_dir).output().expect("run export");
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// A Tell batch of one event whose payload is `{"marker":"<marker>"}`.
pub fn marker_batch(key: &[u8; 16], marker: &str) -> Vec<u8> {
    let payload = format!("{{\"marker\":\"{marker}\"}}");
    let event = tell_encoding::EventParams {
        event_type: tell_encoding::EventType::Track,
        timestamp: 1_700_000_000_000,
        service: Some("svc"),
        device_id: Some(&[7u8; 16]),
        session_id: None,
        event_name: Some("Marked"),
        payload: Some(payload.as_bytes()),
    };
    sluice::client::tell_batch(key, 1, &[event])
}

pub fn hex_key(key: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    hex::decode_to_slice(key, &mut out).expect("hex key");
    out
}
