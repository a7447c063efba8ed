//! The `bench otlp` payloads: a pool of distinct, pre-encoded OTLP export
//! requests that look like what the services of a small online shop send.
//!
//! ## What a request holds
//!
//! A fleet of 8 services (frontend, checkout, cart, catalog, payment, auth,
//! recommendation, shipping; Node.js, Java, Go, Python and .NET), 3
//! instances each. An instance is a resource: `service.name`,
//! `service.namespace`, `service.version`, `service.instance.id`,
//! `deployment.environment.name`, `host.name`, `cloud.provider`,
//! `cloud.region`, `k8s.namespace.name`, `k8s.pod.name`, `process.pid` and
//! the `telemetry.sdk.*` attributes. A request holds 1–3 instances, as a
//! Collector batches them, each with its service's instrumentation scope
//! (name and version), and exactly `--batch-size` items between them:
//!
//! - **logs**: access logs of HTTP calls (`GET /api/v1/orders/ord_… 200 in
//!   14.2 ms`, with `http.request.method`, `http.route`, `url.path`,
//!   `http.response.status_code`, `user.id`, `client.address`,
//!   `user_agent.original`) at INFO, WARN for 4xx and ERROR for 5xx; and
//!   application messages (cache misses, orders placed, sign-ins, searches,
//!   slow queries, retries, declined payments, upstream failures, flag
//!   evaluations) from TRACE to FATAL, each with its own attributes. 70 %
//!   carry a trace and span id.
//! - **metrics**: data points of histograms (`http.server.request.duration`,
//!   `db.client.operation.duration`; 14 explicit buckets, an exemplar now
//!   and then), monotonic sums (`process.cpu.time`, `system.network.io`,
//!   `orders.placed`, `messaging.client.sent.messages`), non-monotonic sums
//!   (`http.server.active_requests`, `db.client.connection.count`) and
//!   gauges (`system.cpu.utilization`, `system.memory.utilization`); the
//!   points of a metric have distinct attribute sets.
//! - **traces**: whole traces (the last one of a request cut short): a
//!   SERVER span per HTTP call with the access log's attributes (status
//!   ERROR on 5xx), then 1–6 children: INTERNAL handler spans, CLIENT spans
//!   to PostgreSQL (`db.query.text`), Redis and other services, PRODUCER
//!   spans to Kafka; one trace in 20 is a CONSUMER span that links its
//!   producer. Failed children carry an `exception` event; now and then a
//!   span has a `cache.miss`, `retry` or `feature_flag.evaluation` event.
//!
//! Values come from lists and ranges: routes per service, status codes by
//! weight, latencies with a long tail around each route's typical time,
//! user ids of the `bench tcp` workload's shape and its products, plans,
//! currencies, payment methods, countries, regions and user agents. No text
//! is filler and no two items are alike.
//!
//! ## The pool
//!
//! Built once at start from the fixed seed [`SEED`] (`0x5eed_0071`), so
//! every run and every build posts the same bodies (bar the timestamps: the
//! few seconds before the pool was built): up to 64 requests or 64 MiB
//! (at least 2), encoded as protobuf
//! (prost) or OTLP JSON (serde, as the server decodes it), gzip-compressed
//! once with `--gzip`. Connections walk it in order, each from its own
//! offset.
//!
//! Files: [`fleet`] (the services, their resources and HTTP calls),
//! [`logs`], [`metrics`], [`traces`].

mod fleet;
mod logs;
mod metrics;
mod traces;

use std::io::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use prost::Message;
use rand::rngs::SmallRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};

use self::fleet::{Instance, SERVICES};
use super::workload::{push_id, user_id};
use crate::codec::otlp::{self, Format, Request, Signal};

/// The seed of every pool.
pub const SEED: u64 = 0x5eed_0071;
/// Most requests in a pool …
const POOL_BODIES: usize = 64;
/// … and about the most bytes, once a pool has [`MIN_POOL_BODIES`].
const POOL_BYTES: usize = 64 << 20;
const MIN_POOL_BODIES: usize = 2;
const INSTANCES_PER_SERVICE: usize = 3;
const USERS: usize = 2048;

/// What a pool is made of.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub signal: Signal,
    pub format: Format,
    pub gzip: bool,
    /// Items per request: log records, metric data points or spans.
    pub batch_size: usize,
    pub seed: u64,
}

/// One encoded request.
#[derive(Debug)]
pub struct Body {
    /// As sent: protobuf or JSON, gzip-compressed with `--gzip`.
    pub bytes: Vec<u8>,
    /// Items in it, as the server counts them.
    pub items: u64,
}

/// Distinct requests, encoded once.
#[derive(Debug)]
pub struct RequestPool {
    bodies: Vec<Body>,
}

impl RequestPool {
    pub fn new(spec: &Spec) -> io::Result<RequestPool> {
        Self::build(spec, now_ns(), POOL_BYTES)
    }

    /// A pool whose timestamps end at `now_ns`, of about `max_bytes`.
    fn build(spec: &Spec, now_ns: u64, max_bytes: usize) -> io::Result<RequestPool> {
        let mut g = Gen::new(spec.seed, now_ns);
        let (mut bodies, mut bytes) = (Vec::new(), 0usize);
        while bodies.len() < POOL_BODIES && (bodies.len() < MIN_POOL_BODIES || bytes < max_bytes) {
            let request = g.request(spec.signal, spec.batch_size);
            let mut body = encode(&request, spec.format)?;
            if spec.gzip {
                body = gzip(&body)?;
            }
            bytes += body.len();
            bodies.push(Body { bytes: body, items: otlp::items(&request) });
        }
        Ok(RequestPool { bodies })
    }

    pub fn bodies(&self) -> &[Body] {
        &self.bodies
    }
}

fn encode(request: &Request, format: Format) -> io::Result<Vec<u8>> {
    Ok(match (request, format) {
        (Request::Logs(r), Format::Protobuf) => r.encode_to_vec(),
        (Request::Metrics(r), Format::Protobuf) => r.encode_to_vec(),
        (Request::Traces(r), Format::Protobuf) => r.encode_to_vec(),
        (Request::Logs(r), Format::Json) => serde_json::to_vec(r)?,
        (Request::Metrics(r), Format::Json) => serde_json::to_vec(r)?,
        (Request::Traces(r), Format::Json) => serde_json::to_vec(r)?,
    })
}

fn gzip(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::default());
    enc.write_all(body)?;
    enc.finish()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A short text attribute.
fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn dbl(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn bool_kv(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// One of `table`, by its weight.
fn weighted<'a, T>(rng: &mut SmallRng, table: &'a [(u32, T)]) -> &'a T {
    let total: u32 = table.iter().map(|e| e.0).sum();
    let mut w = rng.random_range(0..total);
    for (weight, item) in table {
        if w < *weight {
            return item;
        }
        w -= weight;
    }
    &table[0].1
}

/// A latency in ms around `typical`, with a long tail (exponential).
fn latency(rng: &mut SmallRng, typical: f64) -> f64 {
    let tail = -(1.0 - rng.random::<f64>()).ln();
    typical * (0.35 + 0.65 * tail)
}

/// `x` to one decimal, as a program would log it.
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Makes requests; all randomness comes from one seeded generator.
struct Gen {
    rng: SmallRng,
    now_ns: u64,
    fleet: Vec<Instance>,
    users: Vec<[u8; 14]>,
}

impl Gen {
    fn new(seed: u64, now_ns: u64) -> Gen {
        let mut rng = SmallRng::seed_from_u64(seed);
        let users = (0..USERS).map(|_| user_id(&mut rng)).collect();
        let mut g = Gen { rng, now_ns, fleet: Vec::new(), users };
        for service in SERVICES {
            for _ in 0..INSTANCES_PER_SERVICE {
                let instance = g.instance(service);
                g.fleet.push(instance);
            }
        }
        g
    }

    fn request(&mut self, signal: Signal, items: usize) -> Request {
        // 1–3 distinct instances, each with at least one item.
        let parts = self.rng.random_range(1..=3).min(items);
        let instances = index::sample(&mut self.rng, self.fleet.len(), parts).into_vec();
        let mut shares = Vec::with_capacity(parts);
        let mut left = items;
        for (part, instance) in instances.into_iter().enumerate().rev() {
            let share = if part == 0 { left } else { self.rng.random_range(1..=left - part) };
            shares.push((instance, share));
            left -= share;
        }
        match signal {
            Signal::Logs => Request::Logs(ExportLogsServiceRequest {
                resource_logs: shares.into_iter().map(|(i, n)| self.resource_logs(i, n)).collect(),
            }),
            Signal::Metrics => Request::Metrics(ExportMetricsServiceRequest {
                resource_metrics: shares.into_iter().map(|(i, n)| self.resource_metrics(i, n)).collect(),
            }),
            Signal::Traces => Request::Traces(ExportTraceServiceRequest {
                resource_spans: shares.into_iter().map(|(i, n)| self.resource_spans(i, n)).collect(),
            }),
        }
    }

    fn scope(&self, instance: usize) -> Option<InstrumentationScope> {
        let svc = self.fleet[instance].origin.service;
        Some(InstrumentationScope { name: svc.scope.into(), version: svc.scope_version.into(), ..Default::default() })
    }

    /// A time in the last 5 s.
    fn recent_ns(&mut self) -> u64 {
        self.now_ns - self.rng.random_range(0..5_000_000_000)
    }

    fn user(&mut self) -> String {
        let u = self.users[self.rng.random_range(0..USERS)];
        String::from_utf8_lossy(&u).into_owned()
    }

    fn id(&mut self, prefix: &str, digits: usize) -> String {
        let mut out = String::with_capacity(prefix.len() + digits);
        push_id(&mut out, &mut self.rng, prefix, digits);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::metrics::METRICS;
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::Metric;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use std::collections::HashSet;
    use std::io::Read;

    const NOW: u64 = 1_750_000_000_000_000_000;

    fn spec(signal: Signal, format: Format, gzip: bool, batch_size: usize) -> Spec {
        Spec { signal, format, gzip, batch_size, seed: SEED }
    }

    fn decoded(signal: Signal, format: Format, bytes: &[u8]) -> Request {
        otlp::decode(signal, format, bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One request of `n` items, as the pool makes them.
    fn request(signal: Signal, n: usize) -> Request {
        let req = Gen::new(SEED, NOW).request(signal, n);
        assert_eq!(otlp::items(&req), n as u64);
        req
    }

    #[test]
    fn every_body_decodes_as_the_server_decodes_it_with_exactly_the_batch() {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            for format in [Format::Protobuf, Format::Json] {
                for batch in [1, 2, 7, 120] {
                    let pool = RequestPool::build(&spec(signal, format, false, batch), NOW, POOL_BYTES).unwrap();
                    assert_eq!(pool.bodies().len(), POOL_BODIES);
                    for body in pool.bodies() {
                        assert_eq!(body.items, batch as u64, "{signal:?} {format:?}");
                        assert_eq!(otlp::items(&decoded(signal, format, &body.bytes)), batch as u64);
                    }
                }
            }
        }
    }

    #[test]
    fn json_and_protobuf_carry_the_same_requests() {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            let pb = RequestPool::build(&spec(signal, Format::Protobuf, false, 40), NOW, POOL_BYTES).unwrap();
            let json = RequestPool::build(&spec(signal, Format::Json, false, 40), NOW, POOL_BYTES).unwrap();
            for (a, b) in pb.bodies().iter().zip(json.bodies()) {
                // serde_json may parse a double one ulp off, so compare as JSON text.
                let from_pb = encode(&decoded(signal, Format::Protobuf, &a.bytes), Format::Json).unwrap();
                assert_eq!(from_pb, b.bytes);
            }
        }
    }

    #[test]
    fn gzip_bodies_expand_to_the_plain_ones() {
        let plain = RequestPool::build(&spec(Signal::Traces, Format::Json, false, 50), NOW, POOL_BYTES).unwrap();
        let zipped = RequestPool::build(&spec(Signal::Traces, Format::Json, true, 50), NOW, POOL_BYTES).unwrap();
        for (a, b) in plain.bodies().iter().zip(zipped.bodies()) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&b.bytes[..]).read_to_end(&mut out).unwrap();
            assert_eq!(out, a.bytes);
            assert!(b.bytes.len() < a.bytes.len() / 3, "{} of {}", b.bytes.len(), a.bytes.len());
        }
    }

    #[test]
    fn bodies_are_distinct_and_the_pool_is_bounded_by_bytes() {
        let full = RequestPool::build(&spec(Signal::Logs, Format::Protobuf, false, 100), NOW, POOL_BYTES).unwrap();
        let distinct: HashSet<&[u8]> = full.bodies().iter().map(|b| &b.bytes[..]).collect();
        assert_eq!(distinct.len(), POOL_BODIES);
        let one = full.bodies()[0].bytes.len();
        let some = RequestPool::build(&spec(Signal::Logs, Format::Protobuf, false, 100), NOW, one * 5).unwrap();
        assert!((5..=7).contains(&some.bodies().len()), "{}", some.bodies().len());
        let least = RequestPool::build(&spec(Signal::Logs, Format::Protobuf, false, 100), NOW, 1).unwrap();
        assert_eq!(least.bodies().len(), MIN_POOL_BODIES);
    }

    #[test]
    fn logs_have_every_severity_varied_text_and_trace_context() {
        let Request::Logs(r) = request(Signal::Logs, 3000) else { panic!("logs") };
        let records: Vec<&LogRecord> =
            r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).flat_map(|sl| &sl.log_records).collect();
        let severities: HashSet<i32> = records.iter().map(|l| l.severity_number).collect();
        assert_eq!(severities, HashSet::from([1, 5, 9, 13, 17, 21]));
        // Access logs of routes without ids may read alike; the records never are.
        let bodies: HashSet<String> = records.iter().map(|l| format!("{:?}", l.body)).collect();
        assert!(bodies.len() > records.len() * 85 / 100, "{} distinct of {}", bodies.len(), records.len());
        let whole: HashSet<Vec<u8>> = records.iter().map(|l| l.encode_to_vec()).collect();
        assert_eq!(whole.len(), records.len());
        let traced = records.iter().filter(|l| l.trace_id.len() == 16 && l.span_id.len() == 8).count();
        assert!((1900..2300).contains(&traced), "{traced}");
        for rl in &r.resource_logs {
            let resource = &rl.resource.as_ref().expect("resource").attributes;
            assert!(
                ["service.name", "host.name", "cloud.region"].iter().all(|k| resource.iter().any(|kv| kv.key == *k))
            );
            assert!(rl.scope_logs[0].scope.as_ref().is_some_and(|s| !s.name.is_empty() && !s.version.is_empty()));
        }
        let keys: HashSet<&str> = records.iter().flat_map(|l| &l.attributes).map(|kv| kv.key.as_str()).collect();
        for key in ["http.request.method", "http.route", "http.response.status_code", "user.id", "order.id"] {
            assert!(keys.contains(key), "{key}");
        }
    }

    #[test]
    fn metrics_mix_sums_gauges_and_histograms() {
        let Request::Metrics(r) = request(Signal::Metrics, 3000) else { panic!("metrics") };
        let metrics: Vec<&Metric> =
            r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics).collect();
        let kinds: HashSet<&str> = metrics
            .iter()
            .map(|m| match m.data {
                Some(Data::Sum(_)) => "sum",
                Some(Data::Gauge(_)) => "gauge",
                Some(Data::Histogram(_)) => "histogram",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, HashSet::from(["sum", "gauge", "histogram"]));
        let names: HashSet<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.len(), METRICS.len());
        for m in &metrics {
            if let Some(Data::Histogram(h)) = &m.data {
                for p in &h.data_points {
                    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
                    assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>());
                }
            }
        }
    }

    #[test]
    fn traces_hang_together() {
        let Request::Traces(r) = request(Signal::Traces, 3000) else { panic!("traces") };
        let spans: Vec<&Span> =
            r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans).collect();
        let ids: HashSet<&[u8]> = spans.iter().map(|s| &s.span_id[..]).collect();
        assert_eq!(ids.len(), spans.len());
        let kinds: HashSet<i32> = spans.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, HashSet::from([1, 2, 3, 4, 5]));
        for s in &spans {
            assert_eq!((s.trace_id.len(), s.span_id.len()), (16, 8));
            assert!(s.parent_span_id.is_empty() || ids.contains(&s.parent_span_id[..]));
            assert!(s.start_time_unix_nano < s.end_time_unix_nano);
        }
        assert!(spans.iter().any(|s| s.events.iter().any(|e| e.name == "exception")));
        assert!(spans.iter().any(|s| s.events.iter().any(|e| e.name != "exception")));
        let statuses: HashSet<i32> = spans.iter().map(|s| s.status.as_ref().map_or(0, |st| st.code)).collect();
        assert_eq!(statuses, HashSet::from([0, 1, 2]));
        assert!(spans.iter().any(|s| !s.links.is_empty()));
    }
}
