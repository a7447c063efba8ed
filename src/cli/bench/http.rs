//! `sluice bench http`: a load generator for the HTTP source.
//!
//! ```text
//! sluice [--ca-file PEM] bench http --addr ADDR --key KEY [--connections C]
//!                   [--batch-size B] [--event-bytes S] [--duration SECS]
//!                   [--server-name NAME]
//! ```
//!
//! Each of the C keep-alive HTTP/1.1 connections posts `POST /v1/events`
//! requests of B JSON lines (the flat shape of the Tell browser SDK, with the
//! properties of the TCP bench's workload) one at a time for SECS seconds,
//! authenticated with `Authorization: Bearer KEY` (over TLS with
//! `--ca-file`, for `[sources.http.tls]`). A request counts once it
//! is answered 202, which sluice sends only after the durable commit; the
//! time from writing it to reading the answer goes into a latency
//! histogram. 429 and 503 answers are counted (and waited out per
//! `Retry-After`), anything else fails the run. Then one JSON line goes to
//! stdout:
//!
//! ```text
//! {"events":N,"seconds":S,"acked_events_per_sec":R,"p99_ms":Q}
//! ```
//!
//! The connections, the client and the counting are [`super::post`]'s,
//! shared with `bench otlp`. The daemon's rate limit must allow the request
//! rate (`[sources.http.rate_limit] per = "off"`).

use std::path::Path;

use anyhow::bail;

use super::post::{self, Bodies, Load, Route, Target};
use super::workload::{Generator, Pool};
use crate::cli::HttpBenchArgs;

/// JSON lines to `/v1/events`, durable when answered 202.
const ROUTE: Route = Route { path: "/v1/events", content_type: "text/plain", content_encoding: None, durable: 202 };

/// Validated settings.
#[derive(Debug, Clone)]
struct Settings {
    target: Target,
    batch_size: usize,
    event_bytes: usize,
}

impl Settings {
    fn from_args(a: &HttpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<Settings> {
        let load = Load {
            addr: &a.addr,
            key: &a.key,
            connections: a.connections,
            batch_size: a.batch_size,
            duration: a.duration,
            tls: &a.tls,
        };
        let target = load.check(ROUTE, ca_file)?;
        if a.event_bytes > 1 << 20 {
            bail!("--event-bytes must be at most 1 MiB, not {}", a.event_bytes);
        }
        Ok(Settings { target, batch_size: a.batch_size, event_bytes: a.event_bytes })
    }
}

/// One connection's bodies: B fresh JSON lines per request.
struct JsonLines {
    generator: Generator,
    batch_size: usize,
    body: Vec<u8>,
}

impl Bodies for JsonLines {
    fn next(&mut self) -> (&[u8], u64) {
        self.body.clear();
        self.generator.jsonl_into(&mut self.body, self.batch_size);
        (&self.body, self.batch_size as u64)
    }
}

/// Runs the bench on its own runtime and prints the JSON line, also when it fails.
pub fn run(args: &HttpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let s = Settings::from_args(args, ca_file)?;
    let seed: u64 = rand::random();
    let pool = std::sync::Arc::new(Pool::new(s.event_bytes, seed));
    let t = &s.target;
    eprintln!(
        "bench: {} connection(s) to {}://{}/v1/events, {} events/request, ~{} B/event, {:.1} s",
        t.connections,
        t.scheme(),
        t.addr,
        s.batch_size,
        s.event_bytes,
        t.duration.as_secs_f64()
    );
    let bodies = |c: usize| JsonLines {
        generator: Generator::new(pool.clone(), seed.wrapping_add(c as u64 + 1)),
        batch_size: s.batch_size,
        body: Vec::new(),
    };
    post::run(s.target.clone(), bodies, "events", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_refused() {
        let args = HttpBenchArgs {
            addr: "127.0.0.1:1".into(),
            key: "000102030405060708090a0b0c0d0e0f".into(),
            connections: 1,
            batch_size: 1,
            event_bytes: 300,
            duration: 1.0,
            tls: crate::cli::BenchTlsArg::default(),
        };
        assert!(Settings::from_args(&args, None).is_ok());
        for bad in [
            HttpBenchArgs { key: "nope".into(), ..args.clone() },
            HttpBenchArgs { batch_size: 0, ..args.clone() },
            HttpBenchArgs { event_bytes: (1 << 20) + 1, ..args.clone() },
        ] {
            assert!(Settings::from_args(&bad, None).is_err(), "{bad:?}");
        }
    }
}
