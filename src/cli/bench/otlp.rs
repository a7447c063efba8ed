//! `sluice bench otlp`: a load generator for the OTLP/HTTP source.
//!
//! ```text
//! sluice [--ca-file PEM] bench otlp --addr ADDR --key KEY --signal logs|metrics|traces
//!                   [--connections C] [--batch-size B] [--duration SECS]
//!                   [--encoding protobuf|json] [--gzip] [--server-name NAME]
//! ```
//!
//! Each of the C keep-alive HTTP/1.1 connections posts
//! `Export{Logs,Metrics,Trace}ServiceRequest`s of B items (log records,
//! metric data points or spans) to `/v1/<signal>` one at a time for SECS
//! seconds, as `application/x-protobuf` or `application/json` (and
//! `Content-Encoding: gzip` with `--gzip`), authenticated with
//! `Authorization: Bearer KEY`. The bodies come from a pool built and
//! encoded once at start ([`super::otlp_workload`] describes them and their
//! seed), so the bench spends its time posting, not encoding.
//!
//! A request counts once answered 200, which sluice sends only after the
//! durable commit: all of its items, or with `partial_success` only those
//! not rejected (a protobuf answer with an empty body accepts all). 429 and
//! 503 are waited out per `Retry-After`; anything else fails the run. Then
//! one JSON line goes to stdout:
//!
//! ```text
//! {"records":N,"seconds":S,"acked_records_per_sec":R,"p99_ms":Q,"signal":"logs","encoding":"protobuf","gzip":false}
//! ```
//!
//! The connections, the client and the counting are [`super::post`]'s,
//! shared with `bench http`. The daemon's rate limit must allow the request
//! rate (`[sources.otlp] rate_limit = { per = "off" }`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::otlp_workload::{RequestPool, SEED, Spec};
use super::post::{self, Bodies, Load, Route, Target};
use crate::cli::{OtlpBenchArgs, OtlpEncoding, OtlpSignal};
use crate::codec::otlp::{Format, Signal};

/// Validated settings.
#[derive(Debug, Clone)]
struct Settings {
    target: Target,
    spec: Spec,
}

impl Settings {
    fn from_args(a: &OtlpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<Settings> {
        let signal = match a.signal {
            OtlpSignal::Logs => Signal::Logs,
            OtlpSignal::Metrics => Signal::Metrics,
            OtlpSignal::Traces => Signal::Traces,
        };
        let format = match a.encoding {
            OtlpEncoding::Protobuf => Format::Protobuf,
            OtlpEncoding::Json => Format::Json,
        };
        let route = Route {
            path: match signal {
                Signal::Logs => "/v1/logs",
                Signal::Metrics => "/v1/metrics",
                Signal::Traces => "/v1/traces",
            },
            content_type: match format {
                Format::Protobuf => "application/x-protobuf",
                Format::Json => "application/json",
            },
            content_encoding: a.gzip.then_some("gzip"),
            durable: 200,
        };
        let load = Load {
            addr: &a.addr,
            key: &a.key,
            connections: a.connections,
            batch_size: a.batch_size,
            duration: a.duration,
            tls: &a.tls,
        };
        let target = load.check(route, ca_file)?;
        Ok(Settings { target, spec: Spec { signal, format, gzip: a.gzip, batch_size: a.batch_size, seed: SEED } })
    }

    fn encoding(&self) -> &'static str {
        match self.spec.format {
            Format::Protobuf => "protobuf",
            Format::Json => "json",
        }
    }
}

/// Runs the bench on its own runtime and prints the JSON line, also when it fails.
pub fn run(args: &OtlpBenchArgs, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let s = Settings::from_args(args, ca_file)?;
    let pool = Arc::new(RequestPool::new(&s.spec).context("building the request pool")?);
    let bytes: usize = pool.bodies().iter().map(|b| b.bytes.len()).sum();
    let t = &s.target;
    eprintln!(
        "bench: {} connection(s) to {}://{}{}, {} {} per request, {}{}, {} distinct requests ({:.1} MB), {:.1} s",
        t.connections,
        t.scheme(),
        t.addr,
        t.route.path,
        s.spec.batch_size,
        match s.spec.signal {
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
            Signal::Traces => "spans",
        },
        s.encoding(),
        if s.spec.gzip { " + gzip" } else { "" },
        pool.bodies().len(),
        bytes as f64 / 1e6,
        t.duration.as_secs_f64()
    );
    let (signal, format) = (s.spec.signal, s.spec.format);
    let connections = t.connections;
    let bodies = |c: usize| Walk {
        next: c * pool.bodies().len() / connections,
        pool: pool.clone(),
        answers: Answers { signal, format, warned: false },
    };
    let extra = format!(",\"signal\":\"{}\",\"encoding\":\"{}\",\"gzip\":{}", signal.name(), s.encoding(), s.spec.gzip);
    post::run(s.target.clone(), bodies, "records", &extra)
}

/// One connection's walk through the pool, from its own offset.
struct Walk {
    pool: Arc<RequestPool>,
    next: usize,
    answers: Answers,
}

impl Bodies for Walk {
    fn next(&mut self) -> (&[u8], u64) {
        let bodies = self.pool.bodies();
        let body = &bodies[self.next % bodies.len()];
        self.next = (self.next + 1) % bodies.len();
        (&body.bytes, body.items)
    }

    fn accepted(&mut self, body: &[u8], items: u64) -> anyhow::Result<u64> {
        let (rejected, message) = self.answers.rejected(body)?;
        if rejected > items {
            bail!("the answer rejects {rejected} of {items} items");
        }
        if rejected > 0 && !self.answers.warned {
            self.answers.warned = true;
            eprintln!("bench: partial success, {rejected} of {items} rejected: {message}");
        }
        Ok(items - rejected)
    }
}

/// Reads a 200's `Export*ServiceResponse`.
struct Answers {
    signal: Signal,
    format: Format,
    /// Whether a partial success was reported on stderr already.
    warned: bool,
}

impl Answers {
    /// The rejected count of `partial_success` (0 without one) and its message.
    fn rejected(&self, body: &[u8]) -> anyhow::Result<(u64, String)> {
        let (rejected, message) = match self.format {
            Format::Protobuf => self.protobuf(body)?,
            Format::Json => self.json(body)?,
        };
        let rejected = u64::try_from(rejected).context("a negative rejected count")?;
        Ok((rejected, message))
    }

    fn protobuf(&self, body: &[u8]) -> anyhow::Result<(i64, String)> {
        let undecodable = || format!("a 200 whose body is no Export{}ServiceResponse", self.what());
        Ok(match self.signal {
            Signal::Logs => ExportLogsServiceResponse::decode(body)
                .with_context(undecodable)?
                .partial_success
                .map(|p| (p.rejected_log_records, p.error_message)),
            Signal::Metrics => ExportMetricsServiceResponse::decode(body)
                .with_context(undecodable)?
                .partial_success
                .map(|p| (p.rejected_data_points, p.error_message)),
            Signal::Traces => ExportTraceServiceResponse::decode(body)
                .with_context(undecodable)?
                .partial_success
                .map(|p| (p.rejected_spans, p.error_message)),
        }
        .unwrap_or_default())
    }

    /// `{}`, or `{"partialSuccess":{"rejected…":N,"errorMessage":"…"}}`
    /// where N is a number or, as the protobuf JSON mapping writes int64, a string.
    fn json(&self, body: &[u8]) -> anyhow::Result<(i64, String)> {
        let v: serde_json::Value = serde_json::from_slice(body).context("a 200 whose body is no JSON")?;
        let Some(partial) = v.get("partialSuccess") else { return Ok((0, String::new())) };
        let field = match self.signal {
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
            Signal::Traces => "rejectedSpans",
        };
        let rejected = match &partial[field] {
            serde_json::Value::Null => 0,
            serde_json::Value::String(s) => s.parse().with_context(|| format!("{field}: {s:?}"))?,
            n => n.as_i64().with_context(|| format!("{field}: {n}"))?,
        };
        let message = partial["errorMessage"].as_str().unwrap_or_default().to_owned();
        Ok((rejected, message))
    }

    fn what(&self) -> &'static str {
        match self.signal {
            Signal::Logs => "Logs",
            Signal::Metrics => "Metrics",
            Signal::Traces => "Trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::BenchTlsArg;
    use crate::codec::otlp::Appended;
    use crate::source::otlp::reply;
    use http_body_util::BodyExt;

    fn args() -> OtlpBenchArgs {
        OtlpBenchArgs {
            addr: "127.0.0.1:1".into(),
            key: "000102030405060708090a0b0c0d0e0f".into(),
            signal: OtlpSignal::Metrics,
            connections: 1,
            batch_size: 10,
            duration: 1.0,
            encoding: OtlpEncoding::Json,
            gzip: true,
            tls: BenchTlsArg::default(),
        }
    }

    #[test]
    fn the_arguments_choose_path_type_and_encoding() {
        let s = Settings::from_args(&args(), None).unwrap();
        let r = s.target.route;
        assert_eq!(
            (r.path, r.content_type, r.content_encoding, r.durable),
            ("/v1/metrics", "application/json", Some("gzip"), 200)
        );
        assert_eq!((s.spec.batch_size, s.encoding()), (10, "json"));
        let s = Settings::from_args(
            &OtlpBenchArgs { signal: OtlpSignal::Traces, encoding: OtlpEncoding::Protobuf, gzip: false, ..args() },
            None,
        )
        .unwrap();
        let r = s.target.route;
        assert_eq!((r.path, r.content_type, r.content_encoding), ("/v1/traces", "application/x-protobuf", None));
        assert!(Settings::from_args(&OtlpBenchArgs { batch_size: 0, ..args() }, None).is_err());
        assert!(Settings::from_args(&OtlpBenchArgs { key: "nope".into(), ..args() }, None).is_err());
    }

    /// The server's own answers, read back: what was rejected, in both encodings.
    #[tokio::test]
    async fn answers_are_read_as_the_server_writes_them() {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            for format in [Format::Protobuf, Format::Json] {
                let answers = Answers { signal, format, warned: false };
                for appended in [
                    Appended { stored: 5, rejected: 0, problem: None },
                    Appended { stored: 3, rejected: 2, problem: Some("span kind 9 is out of range".into()) },
                ] {
                    let body =
                        reply::success(signal, format, &appended).into_body().collect().await.unwrap().to_bytes();
                    let (rejected, message) = answers.rejected(&body).unwrap();
                    assert_eq!(rejected, u64::from(appended.rejected), "{signal:?} {format:?}");
                    assert_eq!(message, appended.problem.unwrap_or_default());
                }
                assert!(answers.rejected(b"\xff\xff").is_err());
            }
        }
    }

    #[test]
    fn a_partial_success_counts_only_what_was_accepted() {
        let pool = Arc::new(
            RequestPool::new(&Spec { batch_size: 4, ..Settings::from_args(&args(), None).unwrap().spec }).unwrap(),
        );
        let mut walk =
            Walk { pool, next: 0, answers: Answers { signal: Signal::Metrics, format: Format::Json, warned: false } };
        let (_, items) = walk.next();
        assert_eq!(items, 4);
        assert_eq!(walk.accepted(b"{}", 4).unwrap(), 4);
        let partial = br#"{"partialSuccess":{"rejectedDataPoints":"1","errorMessage":"bad histogram"}}"#;
        assert_eq!(walk.accepted(partial, 4).unwrap(), 3);
        assert!(walk.answers.warned);
        let too_many = br#"{"partialSuccess":{"rejectedDataPoints":5}}"#;
        assert!(walk.accepted(too_many, 4).is_err());
    }
}
