//! `sluice top` in a real terminal: tmux runs it against a daemon under
//! acked load; the screen must show the listener's non-zero rates and
//! the ack stages, and `q` must end it with exit status 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::admin::admin_section;
use crate::common::{BIN, Daemon, create_key};

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux { socket: format!("sluice-top-test-{}", std::process::id()) }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (scripts/test.sh installs it)");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

/// The events/s column of `listener`'s row, if the screen has one.
fn events_per_sec(screen: &str, listener: &str) -> Option<f64> {
    let row = screen.lines().find(|l| l.trim_start_matches(['│', ' ']).starts_with(&format!("{listener} ")))?;
    let cells: Vec<&str> = row.trim_matches(['│', ' ']).split_whitespace().collect();
    cells.get(1)?.replace(',', "").parse().ok()
}

#[test]
fn top_shows_live_rates_under_load_and_q_quits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, &admin_section(""));
    let admin = daemon.admin.unwrap();
    let mut load = Command::new(BIN)
        .args(["bench", "tcp", "--addr", &daemon.tcp.to_string(), "--key", &key, "--acked", "--duration", "20"])
        .args(["--connections", "2", "--batch-size", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let tmux = Tmux::new();
    let status_file = dir.path().join("top.status");
    let shell =
        format!("{BIN} top --server http://{admin} --interval 0.5; echo $? > {}; sleep 60", status_file.display());
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "150", "-y", "45", &shell]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        screen = tmux.screen();
        if events_per_sec(&screen, "tcp").is_some_and(|r| r > 0.0) && screen.contains("commit") {
            break;
        }
    }
    let rate = events_per_sec(&screen, "tcp");
    assert!(rate.is_some_and(|r| r > 0.0), "no events/s on the tcp row:\n{screen}");
    assert!(screen.contains("admin"), "the admin listener's row:\n{screen}");
    assert!(screen.contains("Where an ack's time goes") && screen.contains("queue"), "{screen}");
    assert!(screen.contains("in flight"), "{screen}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    // The shell creates the file before it writes the status into it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let read = || std::fs::read_to_string(&status_file).unwrap_or_default();
    while !read().ends_with('\n') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = read();
    assert_eq!(status.trim(), "0", "top did not exit 0 on q; screen:\n{}", tmux.screen());

    let _ = load.kill();
    let _ = load.wait();
    daemon.stop();
}
