//! Log records: access logs of HTTP calls and application messages, from
//! TRACE to FATAL, 70 % of them with a trace and span id.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use rand::Rng;

use super::fleet::{Service, UPSTREAM_ERRORS};
use super::{Gen, bool_kv, dbl, int, latency, s, tenths, weighted};
use crate::cli::bench::workload::{COUNTRIES, CURRENCIES, FEATURES, METHODS, PAYMENTS, PLANS, QUERIES, pick};

const DECLINES: &[&str] =
    &["card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "processing_error", "fraud_suspected"];
const UPSTREAM_STATUSES: [i64; 3] = [502, 503, 504];

/// One log record's own parts.
struct Logged {
    severity: Severity,
    body: String,
    attributes: Vec<KeyValue>,
    event_name: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Trace = 1,
    Debug = 5,
    Info = 9,
    Warn = 13,
    Error = 17,
    Fatal = 21,
}

impl Severity {
    fn text(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

impl Gen {
    pub(super) fn resource_logs(&mut self, instance: usize, n: usize) -> ResourceLogs {
        let svc = self.fleet[instance].origin.service;
        let log_records = (0..n).map(|_| self.log_record(svc)).collect();
        ResourceLogs {
            resource: Some(self.fleet[instance].resource.clone()),
            scope_logs: vec![ScopeLogs { scope: self.scope(instance), log_records, ..Default::default() }],
            ..Default::default()
        }
    }

    fn log_record(&mut self, svc: &'static Service) -> LogRecord {
        let logged = if self.rng.random_ratio(45, 100) { self.access_log(svc) } else { self.app_log(svc) };
        let time = self.recent_ns();
        let traced = self.rng.random_ratio(7, 10);
        let (trace_id, span_id) = if traced {
            (self.rng.random::<[u8; 16]>().to_vec(), self.rng.random::<[u8; 8]>().to_vec())
        } else {
            (Vec::new(), Vec::new())
        };
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + self.rng.random_range(50_000..5_000_000),
            severity_number: logged.severity as i32,
            severity_text: logged.severity.text().to_owned(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(logged.body)) }),
            attributes: logged.attributes,
            flags: u32::from(traced),
            trace_id,
            span_id,
            event_name: logged.event_name.to_owned(),
            ..Default::default()
        }
    }

    fn access_log(&mut self, svc: &'static Service) -> Logged {
        let call = self.call(svc);
        let severity = match call.status {
            500.. => Severity::Error,
            400.. => Severity::Warn,
            _ => Severity::Info,
        };
        let body = format!("{} {} {} in {:.1} ms", call.ep.method, call.path, call.status, call.ms);
        let mut attributes = call.attributes();
        attributes.push(dbl("http.server.request.duration_ms", tenths(call.ms)));
        Logged { severity, body, attributes, event_name: "" }
    }

    fn app_log(&mut self, svc: &'static Service) -> Logged {
        let make = *weighted(&mut self.rng, APP_LOGS);
        make(self, svc)
    }
}

type LogMaker = fn(&mut Gen, &'static Service) -> Logged;

/// Application messages, by how common they are.
const APP_LOGS: &[(u32, LogMaker)] = &[
    (12, cache_miss),
    (8, recommendations_loaded),
    (12, order_placed),
    (10, signed_in),
    (10, search),
    (10, slow_query),
    (8, retrying),
    (6, rate_limit_near),
    (8, payment_declined),
    (6, upstream_failed),
    (8, flag_evaluated),
    (1, out_of_memory),
];

fn cache_miss(g: &mut Gen, _: &'static Service) -> Logged {
    let product = g.id("prod_", 8);
    let ttl = g.rng.random_range(60..=900);
    Logged {
        severity: Severity::Debug,
        body: format!("cache miss for product:{product}, loading it from the database (ttl {ttl} s)"),
        attributes: vec![
            s("cache.key", format!("product:{product}")),
            bool_kv("cache.hit", false),
            int("cache.ttl_s", ttl),
        ],
        event_name: "",
    }
}

fn recommendations_loaded(g: &mut Gen, _: &'static Service) -> Logged {
    let (user, n, ms) = (g.user(), g.rng.random_range(4..=24), tenths(latency(&mut g.rng, 40.0)));
    Logged {
        severity: Severity::Debug,
        body: format!("loaded {n} recommendations for {user} in {ms:.1} ms (model v{})", g.rng.random_range(12..=19)),
        attributes: vec![s("user.id", user), int("recommendation.count", n), dbl("duration_ms", ms)],
        event_name: "",
    }
}

fn order_placed(g: &mut Gen, _: &'static Service) -> Logged {
    let order = g.id("ord_", 10);
    let r = &mut g.rng;
    let (items, cents) = (r.random_range(1..=9), r.random_range(999..=250_000i64));
    let (currency, payment) = (pick(r, CURRENCIES), pick(r, PAYMENTS));
    let total = format!("{}.{:02}", cents / 100, cents % 100);
    Logged {
        severity: Severity::Info,
        body: format!("order {order} placed: {items} item(s), {total} {currency}, paid by {payment}"),
        attributes: vec![
            s("order.id", order),
            int("order.items", items),
            dbl("order.total", cents as f64 / 100.0),
            s("order.currency", currency),
            s("payment.method", payment),
            s("user.id", g.user()),
        ],
        event_name: "order.placed",
    }
}

fn signed_in(g: &mut Gen, _: &'static Service) -> Logged {
    let user = g.user();
    let (method, country, plan) = (pick(&mut g.rng, METHODS), pick(&mut g.rng, COUNTRIES), pick(&mut g.rng, PLANS));
    Logged {
        severity: Severity::Info,
        body: format!("user {user} signed in with {method} from {country}"),
        attributes: vec![
            s("user.id", user),
            s("auth.method", method),
            s("geo.country.iso_code", country),
            s("user.plan", plan),
        ],
        event_name: "user.signed_in",
    }
}

fn search(g: &mut Gen, _: &'static Service) -> Logged {
    let r = &mut g.rng;
    let (query, results, ms) = (pick(r, QUERIES), r.random_range(0..=480), tenths(latency(r, 45.0)));
    Logged {
        severity: Severity::Info,
        body: format!("search \"{query}\" returned {results} results in {ms:.1} ms"),
        attributes: vec![s("search.query", query), int("search.results", results), dbl("duration_ms", ms)],
        event_name: "",
    }
}

fn slow_query(g: &mut Gen, svc: &'static Service) -> Logged {
    let table = if svc.tables.is_empty() { "products" } else { pick(&mut g.rng, svc.tables) };
    let ms = g.rng.random_range(500..=9_000);
    let statement =
        format!("SELECT * FROM {table} WHERE updated_at > $1 ORDER BY id LIMIT {}", g.rng.random_range(1..=20) * 50);
    Logged {
        severity: Severity::Warn,
        body: format!("slow query on {table} took {ms} ms: {statement}"),
        attributes: vec![
            s("db.system.name", "postgresql"),
            s("db.collection.name", table),
            s("db.operation.name", "SELECT"),
            s("db.query.text", statement),
            int("duration_ms", ms),
        ],
        event_name: "",
    }
}

fn retrying(g: &mut Gen, svc: &'static Service) -> Logged {
    let peer = if svc.calls.is_empty() { "catalog" } else { pick(&mut g.rng, svc.calls) };
    let (attempt, status) = (g.rng.random_range(1..=3), UPSTREAM_STATUSES[g.rng.random_range(0..3)]);
    let backoff = 100 * 2i64.pow(attempt as u32);
    Logged {
        severity: Severity::Warn,
        body: format!("retrying call to {peer} (attempt {} of 4) in {backoff} ms after {status}", attempt + 1),
        attributes: vec![
            s("peer.service", peer),
            int("retry.attempt", attempt),
            int("http.response.status_code", status),
        ],
        event_name: "",
    }
}

fn rate_limit_near(g: &mut Gen, _: &'static Service) -> Logged {
    let (user, used) = (g.user(), g.rng.random_range(800..=999));
    Logged {
        severity: Severity::Warn,
        body: format!("{user} used {used} of 1000 requests this minute"),
        attributes: vec![s("user.id", user), int("ratelimit.used", used), int("ratelimit.limit", 1000)],
        event_name: "",
    }
}

fn payment_declined(g: &mut Gen, _: &'static Service) -> Logged {
    let order = g.id("ord_", 10);
    let (reason, payment) = (pick(&mut g.rng, DECLINES), pick(&mut g.rng, PAYMENTS));
    Logged {
        severity: Severity::Error,
        body: format!("payment declined for order {order}: {reason} ({payment})"),
        attributes: vec![
            s("order.id", order),
            s("payment.method", payment),
            s("error.type", reason),
            s("user.id", g.user()),
        ],
        event_name: "payment.declined",
    }
}

fn upstream_failed(g: &mut Gen, svc: &'static Service) -> Logged {
    let peer = if svc.calls.is_empty() { "postgres" } else { pick(&mut g.rng, svc.calls) };
    let error = pick(&mut g.rng, UPSTREAM_ERRORS);
    Logged {
        severity: Severity::Error,
        body: format!("call to {peer} failed: {error}"),
        attributes: vec![
            s("peer.service", peer),
            s("error.type", error),
            s("code.function.name", pick(&mut g.rng, HANDLER_HINTS)),
        ],
        event_name: "",
    }
}

/// Where an upstream call was made from.
const HANDLER_HINTS: &[&str] =
    &["fetchProduct", "reserveStock", "chargeCard", "quoteShipping", "loadCart", "lookupUser"];

fn flag_evaluated(g: &mut Gen, _: &'static Service) -> Logged {
    let (feature, user) = (pick(&mut g.rng, FEATURES), g.user());
    let on = g.rng.random_ratio(1, 3);
    Logged {
        severity: Severity::Trace,
        body: format!("flag {feature} evaluated to {} for {user}", if on { "on" } else { "off" }),
        attributes: vec![s("feature_flag.key", feature), bool_kv("feature_flag.result.value", on), s("user.id", user)],
        event_name: "feature_flag.evaluation",
    }
}

fn out_of_memory(g: &mut Gen, _: &'static Service) -> Logged {
    let max = 512 * g.rng.random_range(1..=8);
    let used = max - g.rng.random_range(0..8);
    Logged {
        severity: Severity::Fatal,
        body: format!("out of memory: {used} of {max} MiB heap in use, shutting down"),
        attributes: vec![int("memory.used_mib", used), int("memory.limit_mib", max)],
        event_name: "",
    }
}
