//! NATS for the JetStream tests (issue 15: edge nodes forward into
//! JetStream, a central node consumes). [`NatsCluster`] runs one JetStream
//! server or a JetStream cluster with explicit routes, on free 127.0.0.1
//! ports (never the 4222 a Debian `nats-server` service may hold), each
//! server with its own store dir and log file in a temp dir, and can kill
//! and restart servers. The nats-py scripts of `tests/nats` are the clients
//! that are not sluice: one publishes, one reads NDJSON with a pull consumer.
//!
//! Every wait has a deadline. `scripts/test.sh` installs Debian's
//! nats-server (2.9.10 on bookworm) and the nats-py venv.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{ScriptRun, run_bounded, wait_timeout};

/// How long starting or restarting servers may take until all are ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed server gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// One request to a monitoring port.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// Fresh ports are picked this often when one was taken between pick and bind.
const START_ATTEMPTS: usize = 3;
/// How much longer than its own `--timeout` a nats-py script may run.
const SCRIPT_MARGIN: Duration = Duration::from_secs(15);
const CLUSTER_NAME: &str = "sluice-test";
const DEBIAN_BIN: &str = "/usr/sbin/nats-server";

/// The nats-server to run: `$SLUICE_NATS_SERVER` (to run the suite against
/// another version), else Debian's, else the first `nats-server` on PATH.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "SLUICE_NATS_SERVER={} is not a file", path.display());
        return path;
    }
    if Path::new(DEBIAN_BIN).is_file() {
        return PathBuf::from(DEBIAN_BIN);
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|dirs| std::env::split_paths(&dirs).map(|d| d.join("nats-server")).find(|f| f.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "no nats-server ({DEBIAN_BIN}, PATH, SLUICE_NATS_SERVER): run scripts/test.sh, which installs nats-server"
        )
    })
}

/// The ports of one server, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
struct Ports {
    client: u16,
    /// Monitoring: `/healthz`, `/jsz`, `/varz`.
    http: u16,
    /// Routes between cluster members (unused by a single server).
    cluster: u16,
}

/// `n` sets of free ports. Every listener is held until all are picked, so
/// no two are the same; another process may still take one before the
/// server binds it, which [`NatsCluster::start`] retries.
fn free_ports(n: usize) -> Vec<Ports> {
    let listeners: Vec<TcpListener> =
        (0..3 * n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    let port = |i: usize| listeners[i].local_addr().expect("local addr").port();
    (0..n).map(|i| Ports { client: port(3 * i), http: port(3 * i + 1), cluster: port(3 * i + 2) }).collect()
}

/// One server's config file: JetStream with small explicit limits (the
/// defaults are sized from the machine's RAM and disk), and for a cluster a
/// route to every member, itself included (the documented way to form a
/// JetStream cluster; nats-server ignores the route to itself).
fn config_text(name: &str, ports: Ports, store: &Path, members: &[Ports]) -> String {
    let mut text = format!(
        "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
         jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\n",
        ports.client,
        ports.http,
        store.display(),
    );
    if members.len() > 1 {
        let routes: Vec<String> = members.iter().map(|m| format!("nats-route://127.0.0.1:{}", m.cluster)).collect();
        text += &format!(
            "cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{}\n  routes: [ {} ]\n}}\n",
            ports.cluster,
            routes.join(", "),
        );
    }
    text
}

/// One member: its config, log and store stay in place across restarts.
struct Server {
    name: String,
    ports: Ports,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Runs `nats-server -c conf`, appending its stdout and stderr to the log.
    fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open nats log");
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup nats log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a clean shutdown), SIGKILL when it takes too long.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The exit status when the process ended by itself.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the monitoring port: status and body, or why there is none.
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(HTTP_TIMEOUT)).http_status_as_error(false).build().into();
        let mut resp =
            agent.get(format!("http://127.0.0.1:{}{path}", self.ports.http)).call().map_err(|e| e.to_string())?;
        let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
        Ok((resp.status().as_u16(), body))
    }

    fn jsz(&self, query: &str) -> Option<Value> {
        match self.get(&format!("/jsz?{query}")) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The JetStream meta leader this server knows of ("" when none).
    fn meta_leader(&self) -> String {
        self.jsz("").and_then(|v| v["meta_cluster"]["leader"].as_str().map(String::from)).unwrap_or_default()
    }

    /// This server's view of `stream`, when it holds a replica.
    fn stream(&self, stream: &str) -> Option<Value> {
        let jsz = self.jsz("accounts=true&streams=true&config=true&consumers=true")?;
        let accounts = jsz["account_details"].as_array()?;
        let mut streams = accounts.iter().filter_map(|a| a["stream_detail"].as_array()).flatten();
        streams.find(|s| s["name"] == stream).cloned()
    }
}

/// NATS servers with JetStream, killed when dropped. Server `i` is named
/// `n{i+1}` (the name `/jsz` reports as leader).
pub struct NatsCluster {
    servers: Vec<Server>,
    /// Holds every config, log and store dir.
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` servers: one JetStream server for `n == 1`, else a
    /// JetStream cluster of `n`. Returns once every server is ready (see
    /// [`Self::restart`]); retries with fresh ports when a port was taken.
    pub fn start(n: usize) -> NatsCluster {
        assert!(n >= 1, "a cluster needs a server");
        let mut attempt = 1;
        loop {
            let mut cluster = NatsCluster::configure(n);
            cluster.servers.iter_mut().for_each(Server::spawn);
            match cluster.wait_ready() {
                Ok(()) => return cluster,
                Err(_) if attempt < START_ATTEMPTS && cluster.port_taken() => attempt += 1,
                Err(why) => panic!("{why}\n{}", cluster.all_logs()),
            }
        }
    }

    /// Writes the config of `n` servers on fresh ports; starts none.
    fn configure(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("nats temp dir");
        let ports = free_ports(n);
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let conf = dir.path().join(format!("{name}.conf"));
                let text = config_text(&name, ports[i], &dir.path().join(&name), &ports);
                std::fs::write(&conf, text).expect("write nats config");
                let log = dir.path().join(format!("{name}.log"));
                Server { name, ports: ports[i], conf, log, child: None }
            })
            .collect();
        NatsCluster { servers, dir }
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Client URLs, `nats://127.0.0.1:PORT`, of every server, running or not.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].ports.client)
    }

    /// [`Self::urls`] as a TOML array, for a sluice config's `servers = ...`.
    pub fn toml_servers(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Server `i`'s name, as `/jsz` reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.servers[i].name
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    /// Everything server `i` wrote, across restarts.
    pub fn log(&self, i: usize) -> String {
        self.servers[i].log_text()
    }

    /// SIGKILL server `i` (a crash: nothing flushed) and reap it.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Starts server `i` again (after a SIGKILL when it runs) on the same
    /// ports and store dir, then waits until every running server is ready:
    /// `/healthz?js-enabled-only=true` answers 200 and, in a cluster, it
    /// knows a meta leader that is running. A cluster elects one only with
    /// a quorum running: after [`Self::stop_all`], use [`Self::start_all`].
    pub fn restart(&mut self, i: usize) {
        self.servers[i].kill();
        self.servers[i].spawn();
        self.wait_ready().unwrap_or_else(|why| panic!("{why}\n{}", self.all_logs()));
    }

    /// SIGTERM every running server (SIGKILL after 10 s); stores stay.
    pub fn stop_all(&mut self) {
        self.servers.iter_mut().for_each(Server::terminate);
    }

    /// Starts every stopped server at once, then waits as [`Self::restart`] does.
    pub fn start_all(&mut self) {
        self.servers.iter_mut().filter(|s| s.child.is_none()).for_each(Server::spawn);
        self.wait_ready().unwrap_or_else(|why| panic!("{why}\n{}", self.all_logs()));
    }

    /// The meta leader's index, as a running server reports it; `None`
    /// for a single server, or while a cluster has none (or names a server
    /// that is down: followers keep a dead leader's name for a while).
    pub fn meta_leader(&self) -> Option<usize> {
        self.running().find_map(|s| self.index_of(&s.meta_leader()))
    }

    /// Waits until [`Self::meta_leader`] names a running server.
    pub fn wait_meta_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.meta_leader() {
                return i;
            }
            assert!(Instant::now() < deadline, "no meta leader after {limit:?}\n{}", self.all_logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `stream`'s entry in `/jsz` (`name`, `cluster`, `config`, `state`),
    /// preferably from its leader (followers may lag), else from any running
    /// server holding a replica; `Value::Null` when none does (not created yet).
    pub fn stream_info(&self, stream: &str) -> Value {
        let views: Vec<(&Server, Value)> = self.running().filter_map(|s| Some((s, s.stream(stream)?))).collect();
        let from_leader = views.iter().find(|(s, v)| v["cluster"]["leader"] == s.name.as_str());
        from_leader.or(views.first()).map(|(_, v)| v.clone()).unwrap_or(Value::Null)
    }

    /// Messages in `stream` now (0 when it does not exist).
    pub fn stream_messages(&self, stream: &str) -> u64 {
        self.stream_info(stream)["state"]["messages"].as_u64().unwrap_or(0)
    }

    /// Waits until `stream` holds at least `n` messages; returns how many.
    pub fn wait_stream_messages(&self, stream: &str, n: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let have = self.stream_messages(stream);
            if have >= n {
                return have;
            }
            assert!(Instant::now() < deadline, "{stream} holds {have} of {n} messages after {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the server leading `stream`, if it is running.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.index_of(self.stream_info(stream)["cluster"]["leader"].as_str()?)
    }

    fn running(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.child.is_some())
    }

    /// The running server called `name`.
    fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name && s.child.is_some())
    }

    /// Waits until every running server is ready (see [`Self::restart`]);
    /// fails early when one exits.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for s in &mut self.servers {
                if let Some(status) = s.exited() {
                    s.child = None;
                    return Err(format!("nats-server {} exited: {status}", s.name));
                }
            }
            let waiting: Vec<String> = self.running().filter_map(|s| self.not_ready(s)).collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("nats not ready after {READY_TIMEOUT:?}: {}", waiting.join("; ")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Why `s` is not ready yet, or `None` when it is.
    fn not_ready(&self, s: &Server) -> Option<String> {
        match s.get("/healthz?js-enabled-only=true") {
            Ok((200, _)) => {}
            Ok((status, body)) => return Some(format!("{}: healthz {status} {body}", s.name)),
            Err(e) => return Some(format!("{}: healthz: {e}", s.name)),
        }
        if self.len() == 1 {
            return None;
        }
        let leader = s.meta_leader();
        match self.index_of(&leader) {
            Some(_) => None,
            None => Some(format!("{}: no running meta leader (knows {leader:?})", s.name)),
        }
    }

    fn port_taken(&self) -> bool {
        self.servers.iter().any(|s| s.log_text().contains("address already in use"))
    }

    fn all_logs(&self) -> String {
        self.servers.iter().map(|s| format!("--- {} log ---\n{}", s.name, s.log_text())).collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.servers.iter_mut().for_each(Server::kill);
    }
}

/// The nats-py venv's python, made by `scripts/test.sh`.
pub fn nats_py() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-py-venv/bin/python");
    assert!(python.is_file(), "no {}: run scripts/test.sh, which creates the nats-py venv", python.display());
    python
}

/// A script in `tests/nats`.
pub fn nats_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nats").join(name)
}

/// Runs `tests/nats/<script>` with `args` under the nats-py venv; kills it
/// after `limit` (the scripts bound themselves too, with `--timeout`).
pub fn run_nats_py(script: &str, args: &[String], limit: Duration) -> ScriptRun {
    let mut cmd = Command::new(nats_py());
    cmd.arg(nats_script(script)).args(args);
    run_bounded(cmd, script, limit)
}

/// What `ndjson_consumer.py` read.
pub struct Consumed {
    /// Every NDJSON line, in delivery order.
    pub lines: Vec<String>,
    /// Each message's headers, in delivery order.
    pub headers: Vec<Value>,
    /// Whether the wanted number of events arrived before the timeout.
    pub complete: bool,
    pub stderr: String,
}

/// Reads `events` NDJSON lines from `stream` (filter `subject`) with an
/// ephemeral pull consumer of nats-py, acking each message; gives up after
/// `timeout`.
pub fn consume_ndjson(server: &str, stream: &str, subject: &str, events: usize, timeout: Duration) -> Consumed {
    let args = [
        "--server",
        server,
        "--stream",
        stream,
        "--subject",
        subject,
        "--events",
        events.to_string().as_str(),
        "--timeout",
        timeout.as_secs_f64().to_string().as_str(),
    ]
    .map(String::from);
    let run = run_nats_py("ndjson_consumer.py", &args, timeout + SCRIPT_MARGIN);
    let headers = run.stderr.lines().filter_map(|l| l.strip_prefix("headers: "));
    Consumed {
        lines: run.stdout.lines().map(String::from).collect(),
        headers: headers.map(|h| serde_json::from_str(h).expect("headers json")).collect(),
        complete: run.success,
        stderr: run.stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_three_server_cluster_starts_survives_a_kill_and_restarts() {
        let mut nats = NatsCluster::start(3);
        let urls = nats.urls();
        assert_eq!(urls.len(), 3);
        assert!(urls.iter().all(|u| u.starts_with("nats://127.0.0.1:") && !u.ends_with(":4222")), "{urls:?}");
        assert_eq!(nats.toml_servers(), format!("[\"{}\", \"{}\", \"{}\"]", urls[0], urls[1], urls[2]));

        let leader = nats.wait_meta_leader(READY_TIMEOUT);
        nats.kill(leader);
        assert!(!nats.is_running(leader));
        // The two left elect a new one (a running server, so not `leader`).
        nats.wait_meta_leader(READY_TIMEOUT);

        nats.restart(leader);
        assert!(nats.is_running(leader));
        for i in 0..3 {
            assert_eq!(nats.servers[i].get("/healthz?js-enabled-only=true").map(|r| r.0), Ok(200), "n{}", i + 1);
        }
        let log = nats.log(leader);
        assert_eq!(log.matches("Server is ready").count(), 2, "one log across the restart:\n{log}");

        nats.stop_all();
        assert!((0..3).all(|i| !nats.is_running(i)));
        nats.start_all();
        assert!(nats.meta_leader().is_some());
    }

    #[test]
    fn nats_py_publishes_ndjson_and_the_consumer_reads_its_lines_and_headers() {
        let nats = NatsCluster::start(1);
        let url = nats.url(0);
        let publish = [
            "--server",
            url.as_str(),
            "--stream",
            "EVENTS",
            "--stream-subject",
            "events.>",
            "--subject",
            "events.1.edge-1",
            "--header",
            "Sluice-Origin=edge-1",
            "--message",
            "{\"n\":1}\n{\"n\":2}\n",
            "--message",
            "{\"n\":3}\n",
        ]
        .map(String::from);
        let run = run_nats_py("publish.py", &publish, Duration::from_secs(30));
        assert!(run.success, "publish failed:\n{}", run.stderr);
        assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
        assert_eq!(nats.stream_messages("EVENTS"), 2);
        assert_eq!(nats.stream_info("EVENTS")["config"]["subjects"][0], "events.>");
        assert_eq!(nats.stream_info("NONE"), Value::Null);

        let got = consume_ndjson(&url, "EVENTS", "events.>", 3, Duration::from_secs(10));
        assert!(got.complete, "{}", got.stderr);
        assert_eq!(got.lines, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        assert_eq!(got.headers.len(), 2);
        assert!(got.headers.iter().all(|h| h["Sluice-Origin"] == "edge-1"), "{:?}", got.headers);

        let short = consume_ndjson(&url, "EVENTS", "events.>", 4, Duration::from_secs(1));
        assert!(!short.complete, "only 3 events exist");
        assert_eq!(short.lines.len(), 3);
    }
}
