//! `sluice bench login`: logins per second against the admin API, with
//! their latency.
//!
//! ```text
//! sluice bench login --server URL --email E --password-stdin [--rate 10] [--duration 20] [--workers 4]
//! ```
//!
//! Starts `rate` logins per second (open loop: a slow answer does not delay
//! the next start) on `workers` threads for `duration` seconds and prints
//! one JSON line: `{"logins","errors","seconds","p50_ms","p99_ms","max_ms"}`.
//! Raise the daemon's `auth_requests_per_minute` first: the default of 10
//! per client IP would refuse most of them. Run it beside `sluice bench tcp
//! --rate` to see whether password hashing slows ingest down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;

use crate::cli::credentials::ServerArg;
use crate::cli::http::ApiClient;

#[derive(Debug, Clone, clap::Args)]
pub struct LoginBenchArgs {
    #[command(flatten)]
    pub server: ServerArg,
    #[arg(long)]
    pub email: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Logins started per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Threads sending logins (bounds the logins in flight).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
}

pub fn run(args: &LoginBenchArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.duration > 0.0 && args.workers > 0) {
        return Err(anyhow!("--rate, --duration and --workers must be positive"));
    }
    let password = crate::cli::prompt::password(args.password_stdin, "Password: ")?;
    let server = crate::cli::credentials::server_url(args.server.server.as_deref())?;
    let body = json!({"email": args.email, "password": password});
    let api = ApiClient::new(&server);
    let total = (args.rate * args.duration).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..args.workers as u64)
        .map(|w| {
            let (api, body, tally, n) = (api.clone(), body.clone(), tally.clone(), args.workers as u64);
            std::thread::spawn(move || {
                for i in (w..total).step_by(n as usize) {
                    let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let t = Instant::now();
                    let ok = api.post("/api/v1/auth/login", None, &body).is_ok_and(|r| r.status == 200);
                    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
                    if ok {
                        tally.latencies_us.push(t.elapsed().as_micros() as u64);
                    } else {
                        tally.errors += 1;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    t.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &t.latencies_us;
        if v.is_empty() { None } else { Some(v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0) }
    };
    let line = json!({
        "logins": t.latencies_us.len(), "errors": t.errors, "seconds": start.elapsed().as_secs_f64(),
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
    });
    println!("{line}");
    if t.errors > 0 { Err(anyhow!("{} logins failed", t.errors)) } else { Ok(()) }
}
