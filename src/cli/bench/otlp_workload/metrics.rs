//! Metric data points: histograms, monotonic and non-monotonic sums and
//! gauges of the instances, each point of a metric with its own attributes.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exemplar, number_data_point,
};
use rand::Rng;
use rand::seq::index;

use super::fleet::{Origin, TOPICS};
use super::{Gen, int, s, weighted};
use crate::cli::bench::workload::{CURRENCIES, PAYMENTS};
use crate::codec::otlp;

const STATUSES: &[i64] = &[200, 201, 304, 400, 404, 500, 503];

const DURATION_BOUNDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const CUMULATIVE: i32 = 2;

/// A metric of at most `max` points (at least one) of a process.
type MetricMaker = fn(&mut Gen, Origin, usize) -> Metric;

/// Metrics, by how often they come.
pub(super) const METRICS: &[(u32, MetricMaker)] = &[
    (25, http_duration),
    (10, db_duration),
    (8, active_requests),
    (6, connection_count),
    (8, cpu_time),
    (8, network_io),
    (6, orders_placed),
    (6, messages_sent),
    (10, cpu_utilization),
    (6, memory_utilization),
];

/// The times of a point: since the process started, until a moment ago.
struct Times {
    start: u64,
    time: u64,
}

impl Gen {
    pub(super) fn resource_metrics(&mut self, instance: usize, n: usize) -> ResourceMetrics {
        let mut metrics = Vec::new();
        let mut left = n;
        let origin = self.fleet[instance].origin;
        while left > 0 {
            let make = *weighted(&mut self.rng, METRICS);
            let metric = make(self, origin, left);
            left -= otlp::metrics::points(&metric) as usize;
            metrics.push(metric);
        }
        ResourceMetrics {
            resource: Some(self.fleet[instance].resource.clone()),
            scope_metrics: vec![ScopeMetrics { scope: self.scope(instance), metrics, ..Default::default() }],
            ..Default::default()
        }
    }

    /// `k` distinct indices below `n` (1 ≤ k ≤ min(n, max, 8)), and the point times.
    fn series(&mut self, origin: Origin, n: usize, max: usize) -> (Vec<usize>, Times) {
        let k = self.rng.random_range(1..=n.min(max).min(8));
        let times = Times { start: origin.started_ns, time: self.now_ns - self.rng.random_range(0..10_000_000_000) };
        (index::sample(&mut self.rng, n, k).into_vec(), times)
    }

    fn number(&mut self, t: &Times, attributes: Vec<KeyValue>, value: number_data_point::Value) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: t.start,
            time_unix_nano: t.time,
            value: Some(value),
            ..Default::default()
        }
    }

    /// A histogram point of seconds: a count spread around the bucket of
    /// `typical_s`, halving per bucket away from it; one in ten has an exemplar.
    fn histogram(&mut self, t: &Times, attributes: Vec<KeyValue>, typical_s: f64) -> HistogramDataPoint {
        let centre = DURATION_BOUNDS.iter().position(|&b| typical_s <= b).unwrap_or(DURATION_BOUNDS.len()) as i32;
        let count = self.rng.random_range(20..=20_000u64) as f64;
        let weights: Vec<f64> = (0..=DURATION_BOUNDS.len() as i32)
            .map(|i| 0.5f64.powi((i - centre).abs()) * self.rng.random_range(0.5..1.5))
            .collect();
        let total: f64 = weights.iter().sum();
        let bucket_counts: Vec<u64> = weights.iter().map(|w| (w / total * count) as u64).collect();
        let bound = |i: usize| DURATION_BOUNDS.get(i).copied().unwrap_or(15.0);
        let lower = |i: usize| if i == 0 { 0.001 } else { bound(i - 1) };
        let sum = bucket_counts.iter().enumerate().map(|(i, &n)| n as f64 * (lower(i) + bound(i)) / 2.0).sum();
        let first = bucket_counts.iter().position(|&n| n > 0).unwrap_or(0);
        let last = bucket_counts.iter().rposition(|&n| n > 0).unwrap_or(0);
        let exemplars = if self.rng.random_ratio(1, 10) { vec![self.exemplar(bound(last))] } else { Vec::new() };
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: t.start,
            time_unix_nano: t.time,
            count: bucket_counts.iter().sum(),
            sum: Some(sum),
            bucket_counts,
            explicit_bounds: DURATION_BOUNDS.to_vec(),
            exemplars,
            min: Some(lower(first) * 1.1),
            max: Some(bound(last) * 0.9),
            ..Default::default()
        }
    }

    fn exemplar(&mut self, value: f64) -> Exemplar {
        Exemplar {
            time_unix_nano: self.recent_ns(),
            value: Some(exemplar::Value::AsDouble(value * 0.9)),
            trace_id: self.rng.random::<[u8; 16]>().to_vec(),
            span_id: self.rng.random::<[u8; 8]>().to_vec(),
            ..Default::default()
        }
    }
}

fn metric(name: &str, description: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, monotonic: bool) -> Data {
    Data::Sum(Sum { data_points: points, aggregation_temporality: CUMULATIVE, is_monotonic: monotonic })
}

fn histogram(points: Vec<HistogramDataPoint>) -> Data {
    Data::Histogram(Histogram { data_points: points, aggregation_temporality: CUMULATIVE })
}

fn http_duration(g: &mut Gen, o: Origin, max: usize) -> Metric {
    let eps = o.service.endpoints;
    let (picked, t) = g.series(o, eps.len() * STATUSES.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let (ep, status) = (&eps[i / STATUSES.len()], STATUSES[i % STATUSES.len()]);
            let attrs = vec![
                s("http.request.method", ep.method),
                s("http.route", ep.route),
                int("http.response.status_code", status),
                s("url.scheme", "https"),
            ];
            g.histogram(&t, attrs, ep.ms / 1000.0)
        })
        .collect();
    metric("http.server.request.duration", "Duration of HTTP server requests.", "s", histogram(points))
}

fn db_duration(g: &mut Gen, o: Origin, max: usize) -> Metric {
    const OPS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];
    let tables = if o.service.tables.is_empty() { &["products"][..] } else { o.service.tables };
    let (picked, t) = g.series(o, tables.len() * OPS.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let (table, op) = (tables[i / OPS.len()], OPS[i % OPS.len()]);
            let attrs = vec![
                s("db.system.name", "postgresql"),
                s("db.namespace", "shop"),
                s("db.collection.name", table),
                s("db.operation.name", op),
            ];
            g.histogram(&t, attrs, if op == "SELECT" { 0.004 } else { 0.012 })
        })
        .collect();
    metric("db.client.operation.duration", "Duration of database client operations.", "s", histogram(points))
}

fn active_requests(g: &mut Gen, o: Origin, max: usize) -> Metric {
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    let (picked, t) = g.series(o, METHODS.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let value = number_data_point::Value::AsInt(g.rng.random_range(0..=40));
            g.number(&t, vec![s("http.request.method", METHODS[i]), s("url.scheme", "https")], value)
        })
        .collect();
    metric("http.server.active_requests", "Number of active HTTP server requests.", "{request}", sum(points, false))
}

fn connection_count(g: &mut Gen, o: Origin, max: usize) -> Metric {
    let (picked, t) = g.series(o, 4, max);
    let points = picked
        .into_iter()
        .map(|i| {
            let pool = format!("{}-{}", o.service.name, if i < 2 { "primary" } else { "replica" });
            let state = if i % 2 == 0 { "idle" } else { "used" };
            let value = number_data_point::Value::AsInt(g.rng.random_range(0..=20));
            g.number(&t, vec![s("db.client.connection.pool.name", pool), s("db.client.connection.state", state)], value)
        })
        .collect();
    metric("db.client.connection.count", "The number of connections in a state.", "{connection}", sum(points, false))
}

fn cpu_time(g: &mut Gen, o: Origin, max: usize) -> Metric {
    const MODES: [(&str, f64); 3] = [("user", 0.3), ("system", 0.08), ("wait", 0.02)];
    let (picked, t) = g.series(o, MODES.len(), max);
    let uptime_s = (t.time - t.start) as f64 / 1e9;
    let points = picked
        .into_iter()
        .map(|i| {
            let seconds = uptime_s * MODES[i].1 * g.rng.random_range(0.5..1.5);
            g.number(&t, vec![s("cpu.mode", MODES[i].0)], number_data_point::Value::AsDouble(seconds))
        })
        .collect();
    metric("process.cpu.time", "Total CPU seconds broken down by different CPU modes.", "s", sum(points, true))
}

fn network_io(g: &mut Gen, o: Origin, max: usize) -> Metric {
    let (picked, t) = g.series(o, 4, max);
    let uptime_s = (t.time - t.start) / 1_000_000_000;
    let points = picked
        .into_iter()
        .map(|i| {
            let (direction, interface) = (["receive", "transmit"][i % 2], ["eth0", "lo"][i / 2]);
            let bytes = uptime_s as i64 * g.rng.random_range(2_000..=400_000);
            let attrs = vec![s("network.io.direction", direction), s("network.interface.name", interface)];
            g.number(&t, attrs, number_data_point::Value::AsInt(bytes))
        })
        .collect();
    metric("system.network.io", "The number of bytes transmitted and received.", "By", sum(points, true))
}

fn orders_placed(g: &mut Gen, o: Origin, max: usize) -> Metric {
    let (picked, t) = g.series(o, PAYMENTS.len() * CURRENCIES.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let attrs = vec![
                s("payment.method", PAYMENTS[i / CURRENCIES.len()]),
                s("order.currency", CURRENCIES[i % CURRENCIES.len()]),
            ];
            let value = number_data_point::Value::AsInt(g.rng.random_range(0..=90_000));
            g.number(&t, attrs, value)
        })
        .collect();
    metric("orders.placed", "Orders placed since the process started.", "{order}", sum(points, true))
}

fn messages_sent(g: &mut Gen, o: Origin, max: usize) -> Metric {
    let (picked, t) = g.series(o, TOPICS.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let attrs = vec![
                s("messaging.system", "kafka"),
                s("messaging.destination.name", TOPICS[i]),
                s("messaging.operation.name", "send"),
            ];
            let value = number_data_point::Value::AsInt(g.rng.random_range(0..=2_000_000));
            g.number(&t, attrs, value)
        })
        .collect();
    metric(
        "messaging.client.sent.messages",
        "Number of messages producer attempted to send.",
        "{message}",
        sum(points, true),
    )
}

fn cpu_utilization(g: &mut Gen, o: Origin, max: usize) -> Metric {
    const MODES: [(&str, f64); 4] = [("user", 0.35), ("system", 0.1), ("idle", 0.5), ("iowait", 0.05)];
    let (picked, t) = g.series(o, MODES.len() * 4, max);
    let points = picked
        .into_iter()
        .map(|i| {
            let (mode, share) = MODES[i % MODES.len()];
            let value = (share * g.rng.random_range(0.3..1.7)).min(1.0);
            let attrs = vec![s("cpu.mode", mode), int("cpu.logical_number", (i / MODES.len()) as i64)];
            g.number(&t, attrs, number_data_point::Value::AsDouble(value))
        })
        .collect();
    let data = Data::Gauge(Gauge { data_points: points });
    metric(
        "system.cpu.utilization",
        "Difference in system.cpu.time since the last measurement, divided by the elapsed time and the number of logical CPUs.",
        "1",
        data,
    )
}

fn memory_utilization(g: &mut Gen, o: Origin, max: usize) -> Metric {
    const STATES: [(&str, f64); 4] = [("used", 0.55), ("free", 0.2), ("cached", 0.2), ("buffers", 0.05)];
    let (picked, t) = g.series(o, STATES.len(), max);
    let points = picked
        .into_iter()
        .map(|i| {
            let value = (STATES[i].1 * g.rng.random_range(0.6..1.4)).min(1.0);
            g.number(&t, vec![s("system.memory.state", STATES[i].0)], number_data_point::Value::AsDouble(value))
        })
        .collect();
    metric(
        "system.memory.utilization",
        "Reports memory in use by state.",
        "1",
        Data::Gauge(Gauge { data_points: points }),
    )
}
