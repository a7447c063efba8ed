//! rsyslog 8 run by a test: its own config, work dir and pid file in a temp
//! dir, inputs on private unix sockets (imptcp `path`), no system sockets.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Rsyslog {
    child: Option<Child>,
    pub dir: PathBuf,
}

impl Rsyslog {
    /// Starts `rsyslogd -n` with `body` after a global block; waits until
    /// every input socket in `sockets` accepts connections (the socket file
    /// exists from `bind`, before `listen`: a connect then is refused).
    pub fn start(dir: &Path, body: &str, sockets: &[PathBuf]) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("rsyslog work dir");
        let conf = dir.join("rsyslog.conf");
        let text = format!(
            "global(workDirectory=\"{}\" maxMessageSize=\"64k\" parser.escapeControlCharactersOnReceive=\"off\")\n\
             module(load=\"imptcp\")\n{body}\n",
            work.display()
        );
        std::fs::write(&conf, text).expect("rsyslog config");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("rsyslogd.log")).expect("log file")))
            .spawn()
            .expect("run rsyslogd (apt-get install rsyslog)");
        let r = Rsyslog { child: Some(child), dir: dir.to_path_buf() };
        let deadline = Instant::now() + START_TIMEOUT;
        while !sockets.iter().all(|s| UnixStream::connect(s).is_ok()) {
            assert!(Instant::now() < deadline, "rsyslogd did not open its inputs; log:\n{}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait for it to flush its queues and exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = crate::common::wait_timeout(&mut child, STOP_TIMEOUT);
        assert!(status.is_some(), "rsyslogd did not stop; log:\n{}", self.log());
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes octet-counted frames of `messages` into a unix stream socket.
pub fn send_octet_counted(socket: &Path, messages: &[Vec<u8>]) {
    let mut s = UnixStream::connect(socket).expect("connect to rsyslog input");
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    s.write_all(&super::octet_counted(&refs)).expect("write to rsyslog");
}
