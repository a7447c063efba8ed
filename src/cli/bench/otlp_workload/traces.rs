//! Spans: whole traces of HTTP calls (a SERVER span and its children),
//! and now and then a CONSUMER span that links its producer.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::Rng;

use super::fleet::{Call, SERVICES, Service, TOPICS, UPSTREAM_ERRORS};
use super::{Gen, int, latency, s, weighted};
use crate::cli::bench::workload::{FEATURES, PRODUCTS, pick};

/// W3C "sampled", and "whether the parent is remote is known" (SpanFlags).
const SPAN_FLAGS: u32 = 0x101;
const NS_PER_MS: f64 = 1e6;

const EXCEPTIONS: &[(&str, &str)] = &[
    ("java.net.SocketTimeoutException", "Read timed out"),
    ("org.postgresql.util.PSQLException", "ERROR: canceling statement due to statement timeout"),
    ("psycopg.errors.UniqueViolation", "duplicate key value violates unique constraint \"orders_pkey\""),
    ("TimeoutError", "operation timed out after 5000 ms"),
    ("System.Net.Http.HttpRequestException", "Connection refused (shipping-rates:443)"),
    ("redis.exceptions.ConnectionError", "Error 111 connecting to cache:6379. Connection refused."),
];

/// Where a span sits: its trace, parent and times.
#[derive(Debug, Clone, Copy)]
struct At {
    trace: [u8; 16],
    parent: Option<[u8; 8]>,
    start: u64,
    end: u64,
}

/// A child span of a call, by how common it is.
type ChildMaker = fn(&mut Gen, &'static Service, At) -> Span;

const CHILDREN: &[(u32, ChildMaker)] =
    &[(25, handler_span), (35, db_span), (15, cache_span), (15, peer_span), (10, producer_span)];

impl Gen {
    pub(super) fn resource_spans(&mut self, instance: usize, n: usize) -> ResourceSpans {
        let svc = self.fleet[instance].origin.service;
        let mut spans = Vec::with_capacity(n);
        while spans.len() < n {
            let room = n - spans.len();
            if self.rng.random_ratio(1, 20) {
                spans.extend(self.consumer_trace(svc, room));
            } else {
                spans.extend(self.server_trace(svc, room));
            }
        }
        ResourceSpans {
            resource: Some(self.fleet[instance].resource.clone()),
            scope_spans: vec![ScopeSpans { scope: self.scope(instance), spans, ..Default::default() }],
            ..Default::default()
        }
    }

    fn span_id(&mut self) -> [u8; 8] {
        self.rng.random()
    }

    fn span(&mut self, at: At, name: String, kind: SpanKind, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: at.trace.to_vec(),
            span_id: self.span_id().to_vec(),
            parent_span_id: at.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: SPAN_FLAGS,
            name,
            kind: kind as i32,
            start_time_unix_nano: at.start,
            end_time_unix_nano: at.end,
            attributes,
            ..Default::default()
        }
    }

    /// A SERVER span for one call and up to `room - 1` children within it.
    fn server_trace(&mut self, svc: &'static Service, room: usize) -> Vec<Span> {
        let call = self.call(svc);
        let end = self.recent_ns();
        let start = end - (call.ms * NS_PER_MS) as u64;
        let at = At { trace: self.rng.random(), parent: None, start, end };
        let name = format!("{} {}", call.ep.method, call.ep.route);
        let mut root = self.span(at, name, SpanKind::Server, call.attributes());
        if call.status >= 500 {
            root.status = Some(Status { code: StatusCode::Error as i32, message: String::new() });
        }
        let parent: [u8; 8] = root.span_id[..].try_into().unwrap_or_default();
        let children = self.rng.random_range(1..=6).min(room - 1);
        let mut spans = vec![root];
        let slice = (end - start) / (children as u64 + 1);
        for c in 0..children as u64 {
            let child_start = start + slice * c + self.rng.random_range(0..=slice / 4);
            let child =
                At { trace: at.trace, parent: Some(parent), start: child_start, end: child_start + slice * 3 / 4 };
            let make = *weighted(&mut self.rng, CHILDREN);
            let mut span = make(self, svc, child);
            self.decorate(&mut span, &call);
            spans.push(span);
        }
        spans
    }

    /// A CONSUMER span that links the PRODUCER span of another trace, and a
    /// database write in it.
    fn consumer_trace(&mut self, svc: &'static Service, room: usize) -> Vec<Span> {
        let topic = pick(&mut self.rng, TOPICS);
        let end = self.recent_ns();
        let start = end - (latency(&mut self.rng, 20.0) * NS_PER_MS) as u64;
        let at = At { trace: self.rng.random(), parent: None, start, end };
        let attrs = vec![
            s("messaging.system", "kafka"),
            s("messaging.destination.name", topic),
            s("messaging.operation.type", "process"),
            s("messaging.consumer.group.name", svc.name),
            int("messaging.kafka.offset", self.rng.random_range(0..50_000_000)),
        ];
        let mut root = self.span(at, format!("process {topic}"), SpanKind::Consumer, attrs);
        let link_trace: [u8; 16] = self.rng.random();
        root.links = vec![Link {
            trace_id: link_trace.to_vec(),
            span_id: self.span_id().to_vec(),
            flags: SPAN_FLAGS,
            ..Default::default()
        }];
        let mut spans = vec![root];
        if room > 1 {
            let parent = spans[0].span_id[..].try_into().unwrap_or_default();
            let child =
                At { parent: Some(parent), start: start + (end - start) / 4, end: end - (end - start) / 8, ..at };
            spans.push(db_span(self, svc, child));
        }
        spans
    }

    /// Statuses and events: a failed child when the call failed (now and
    /// then otherwise), an explicit OK now and then, and an occasional event.
    fn decorate(&mut self, span: &mut Span, call: &Call) {
        let failed = if call.status >= 500 { self.rng.random_ratio(1, 2) } else { self.rng.random_ratio(1, 100) };
        if failed {
            let (kind, message) = EXCEPTIONS[self.rng.random_range(0..EXCEPTIONS.len())];
            span.status = Some(Status { code: StatusCode::Error as i32, message: message.to_owned() });
            span.events.push(Event {
                time_unix_nano: span.end_time_unix_nano,
                name: "exception".into(),
                attributes: vec![s("exception.type", kind), s("exception.message", message)],
                ..Default::default()
            });
        } else if self.rng.random_ratio(1, 10) {
            span.status = Some(Status { code: StatusCode::Ok as i32, message: String::new() });
        }
        if self.rng.random_ratio(1, 20) {
            let event = self.event(span.start_time_unix_nano);
            span.events.push(event);
        }
    }

    fn event(&mut self, time: u64) -> Event {
        let time_unix_nano = time + self.rng.random_range(0..1_000_000);
        let (name, attributes) = match self.rng.random_range(0..3) {
            0 => ("cache.miss", vec![s("cache.key", format!("product:{}", self.id("prod_", 8)))]),
            1 => (
                "retry",
                vec![
                    int("retry.attempt", self.rng.random_range(1..=3)),
                    s("error.type", pick(&mut self.rng, UPSTREAM_ERRORS)),
                ],
            ),
            _ => (
                "feature_flag.evaluation",
                vec![
                    s("feature_flag.key", pick(&mut self.rng, FEATURES)),
                    s("feature_flag.result.variant", pick(&mut self.rng, &["on", "off", "control"])),
                ],
            ),
        };
        Event { time_unix_nano, name: name.into(), attributes, ..Default::default() }
    }
}

fn handler_span(g: &mut Gen, svc: &'static Service, at: At) -> Span {
    let ep = &svc.endpoints[g.rng.random_range(0..svc.endpoints.len())];
    let attrs = vec![s("code.function.name", ep.handler), s("code.namespace", svc.name)];
    g.span(at, ep.handler.to_owned(), SpanKind::Internal, attrs)
}

fn db_span(g: &mut Gen, svc: &'static Service, at: At) -> Span {
    let table = if svc.tables.is_empty() { "products" } else { pick(&mut g.rng, svc.tables) };
    let (op, query) = match g.rng.random_range(0..4) {
        0 => ("INSERT", format!("INSERT INTO {table} (id, user_id, data, created_at) VALUES ($1, $2, $3, now())")),
        1 => ("UPDATE", format!("UPDATE {table} SET status = $1, updated_at = now() WHERE id = $2")),
        _ => (
            "SELECT",
            format!(
                "SELECT * FROM {table} WHERE user_id = $1 ORDER BY created_at DESC LIMIT {}",
                g.rng.random_range(1..=10) * 10
            ),
        ),
    };
    let attrs = vec![
        s("db.system.name", "postgresql"),
        s("db.namespace", "shop"),
        s("db.collection.name", table),
        s("db.operation.name", op),
        s("db.query.text", query),
        s("server.address", format!("{}-db.shop.svc.cluster.local", svc.name)),
        int("server.port", 5432),
    ];
    g.span(at, format!("{op} shop.{table}"), SpanKind::Client, attrs)
}

fn cache_span(g: &mut Gen, _: &'static Service, at: At) -> Span {
    let product = g.id("prod_", 8);
    let op = if g.rng.random_ratio(3, 4) { "GET" } else { "SET" };
    let attrs = vec![
        s("db.system.name", "redis"),
        s("db.operation.name", op),
        s("db.query.text", format!("{op} product:{product}")),
        s("server.address", "cache.shop.svc.cluster.local"),
        int("server.port", 6379),
    ];
    g.span(at, op.to_owned(), SpanKind::Client, attrs)
}

fn peer_span(g: &mut Gen, svc: &'static Service, at: At) -> Span {
    let peer = if svc.calls.is_empty() { "catalog" } else { pick(&mut g.rng, svc.calls) };
    let target = SERVICES.iter().find(|x| x.name == peer).unwrap_or(&SERVICES[0]);
    let call = g.call(target);
    let attrs = vec![
        s("http.request.method", call.ep.method),
        s("url.full", format!("http://{peer}.shop.svc.cluster.local:8080{}", call.path)),
        s("server.address", format!("{peer}.shop.svc.cluster.local")),
        int("server.port", 8080),
        int("http.response.status_code", call.status),
    ];
    g.span(at, call.ep.method.to_owned(), SpanKind::Client, attrs)
}

fn producer_span(g: &mut Gen, _: &'static Service, at: At) -> Span {
    let (topic, order) = (pick(&mut g.rng, TOPICS), g.id("ord_", 10));
    let product = pick(&mut g.rng, PRODUCTS);
    let attrs = vec![
        s("messaging.system", "kafka"),
        s("messaging.destination.name", topic),
        s("messaging.operation.type", "send"),
        s("messaging.kafka.message.key", order),
        s("messaging.message.body.summary", product),
        int("messaging.destination.partition.id", g.rng.random_range(0..12)),
    ];
    g.span(at, format!("send {topic}"), SpanKind::Producer, attrs)
}
