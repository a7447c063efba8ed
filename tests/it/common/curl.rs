//! `curl -i` as the HTTP client of the ingest tests: real requests, and the
//! answer's status, headers and body (raw, and parsed when it is JSON).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `curl -i` with `args`, the body (if any) from a file in `dir`; parses the
/// last (non-1xx) status line, its headers and the body.
pub fn curl(dir: &Path, url: &str, body: Option<&[u8]>, args: &[&str]) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--http1.1", "--max-time", "30"]).args(args);
    if let Some(bytes) = body {
        let file = dir.join(format!("body-{}", rand_suffix()));
        std::fs::write(&file, bytes).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    let out = cmd.arg(url).output().expect("curl is installed (apt-get install -y curl)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_answer(&out.stdout)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let mut rest = bytes;
    loop {
        let split = rest.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&rest[..at], &rest[at + 4..]),
            None => (rest, &b""[..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.lines();
        let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap();
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let parsed = serde_json::from_slice(body).unwrap_or(Value::Null);
        return Answer { status, headers, body: parsed, raw: body.to_vec() };
    }
}
