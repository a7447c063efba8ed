//! One OTLP metric data point → one [`Kind::Metric`] record.
//!
//! Every point carries its metric's `name`, `description`, `unit`,
//! `metric_type` (gauge, sum, histogram, exponential_histogram, summary),
//! `temporality`, `monotonic` (sums) and `metadata`, then its own
//! `timestamp` (ms), `time_unix_nano`, `start_time_unix_nano`,
//! `attributes`, `exemplars`, `otlp_flags` and value: `value` (a number
//! point: a double, or an exact 64-bit integer), `histogram` (the same
//! binary layout Tell histograms use, the last bucket's upper bound +Inf),
//! `exponential_histogram` or `summary` (JSON objects).

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint, exemplar,
};

use super::traces::array;
use super::value::{self, Object};
use super::{Appended, OtlpError, Writer};
use crate::record::{Kind, Mark, tag};

/// `metric_type` values (Tell's numbering, extended: 1..=3 are Tell's).
pub mod metric_type {
    pub const GAUGE: u8 = 1;
    pub const HISTOGRAM: u8 = 3;
    pub const EXPONENTIAL_HISTOGRAM: u8 = 4;
    pub const SUMMARY: u8 = 5;
    pub const SUM: u8 = 6;
}

/// What every point of one metric shares.
pub(super) struct Shape<'a> {
    pub metric: &'a Metric,
    pub kind: u8,
    pub temporality: i32,
    pub monotonic: bool,
}

/// The data points of one metric, each as a record.
pub fn metric(w: &mut Writer<'_>, m: &Metric, out: &mut Appended) -> Result<(), OtlpError> {
    let shape = |kind, temporality, monotonic| Shape { metric: m, kind, temporality, monotonic };
    match &m.data {
        None => {}
        Some(Data::Gauge(g)) => {
            let s = shape(metric_type::GAUGE, 0, false);
            for p in &g.data_points {
                w.item(out, |w| number(w, &s, p))?;
            }
        }
        Some(Data::Sum(sum)) => {
            let s = shape(metric_type::SUM, sum.aggregation_temporality, sum.is_monotonic);
            for p in &sum.data_points {
                w.item(out, |w| number(w, &s, p))?;
            }
        }
        Some(Data::Histogram(h)) => {
            let s = shape(metric_type::HISTOGRAM, h.aggregation_temporality, false);
            for p in &h.data_points {
                w.item(out, |w| histogram(w, &s, p))?;
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let s = shape(metric_type::EXPONENTIAL_HISTOGRAM, h.aggregation_temporality, false);
            for p in &h.data_points {
                w.item(out, |w| exponential(w, &s, p))?;
            }
        }
        Some(Data::Summary(sm)) => {
            let s = shape(metric_type::SUMMARY, 0, false);
            for p in &sm.data_points {
                w.item(out, |w| summary(w, &s, p))?;
            }
        }
    }
    Ok(())
}

/// Data points in a metric.
pub fn points(m: &Metric) -> u64 {
    (match &m.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }) as u64
}

/// The metric's fields and the point's common ones.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
    exemplars: &'a [Exemplar],
    flags: u32,
}

/// The common [`Point`] of any OTLP data point type (they share these names).
macro_rules! point {
    ($p:expr, $exemplars:expr) => {
        Point {
            attributes: &$p.attributes,
            start: $p.start_time_unix_nano,
            time: $p.time_unix_nano,
            exemplars: $exemplars,
            flags: $p.flags,
        }
    };
}

fn begin(w: &mut Writer<'_>, s: &Shape<'_>, p: Point<'_>) -> Result<Mark, String> {
    // OTLP numbers temporality 1 delta, 2 cumulative; Tell 1 cumulative, 2 delta.
    let temporality = match s.temporality {
        0 => None,
        1 => Some(2),
        2 => Some(1),
        t => return Err(format!("aggregation_temporality {t} is out of range (0..=2)")),
    };
    let m = s.metric;
    let mark = w.begin(Kind::Metric);
    w.block.str(tag::METRIC_NAME, &m.name);
    w.block.u8(tag::METRIC_TYPE, s.kind);
    if let Some(t) = temporality {
        w.block.u8(tag::TEMPORALITY, t);
    }
    if s.kind == metric_type::SUM {
        w.block.u8(tag::MONOTONIC, u8::from(s.monotonic));
    }
    if !m.description.is_empty() {
        w.block.str(tag::METRIC_DESCRIPTION, &m.description);
    }
    if !m.unit.is_empty() {
        w.block.str(tag::METRIC_UNIT, &m.unit);
    }
    if !m.metadata.is_empty() {
        w.json(tag::METADATA, |out| value::attributes(out, &m.metadata));
    }
    w.timestamp(&[p.time, p.start]);
    w.time(tag::TIME_NS, p.time);
    w.time(tag::START_NS, p.start);
    if !p.attributes.is_empty() {
        w.json(tag::ATTRIBUTES, |out| value::attributes(out, p.attributes));
    }
    if !p.exemplars.is_empty() {
        w.json(tag::EXEMPLARS, |out| array(out, p.exemplars, exemplar_json));
    }
    if p.flags != 0 {
        w.block.u32(tag::OTLP_FLAGS, p.flags);
    }
    Ok(mark)
}

pub(super) fn number(w: &mut Writer<'_>, s: &Shape<'_>, p: &NumberDataPoint) -> Result<Mark, String> {
    let mark = begin(w, s, point!(p, &p.exemplars))?;
    match p.value {
        Some(Value::AsDouble(d)) => w.block.f64(tag::METRIC_VALUE, d),
        Some(Value::AsInt(i)) => w.block.i64(tag::METRIC_INT, i),
        None => {}
    }
    Ok(mark)
}

pub(super) fn histogram(w: &mut Writer<'_>, s: &Shape<'_>, p: &HistogramDataPoint) -> Result<Mark, String> {
    let (bounds, counts) = (&p.explicit_bounds, &p.bucket_counts);
    if !counts.is_empty() && counts.len() != bounds.len() + 1 {
        return Err(format!("a histogram point has {} bucket counts for {} bounds", counts.len(), bounds.len()));
    }
    let mark = begin(w, s, point!(p, &p.exemplars))?;
    let mut h = Vec::with_capacity(32 + 16 * counts.len());
    h.extend_from_slice(&p.count.to_le_bytes());
    for v in [p.sum, p.min, p.max] {
        h.extend_from_slice(&v.unwrap_or(f64::NAN).to_le_bytes());
    }
    for (i, count) in counts.iter().enumerate() {
        let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        h.extend_from_slice(&upper.to_le_bytes());
        h.extend_from_slice(&count.to_le_bytes());
    }
    w.block.bytes(tag::HISTOGRAM, &h);
    Ok(mark)
}

pub(super) fn exponential(
    w: &mut Writer<'_>,
    s: &Shape<'_>,
    p: &ExponentialHistogramDataPoint,
) -> Result<Mark, String> {
    let mark = begin(w, s, point!(p, &p.exemplars))?;
    w.json(tag::EXP_HISTOGRAM, |out| {
        let mut o = Object::open(out);
        o.key("count");
        value::u64(o.out(), p.count);
        optional_f64(&mut o, "sum", p.sum);
        o.key("scale");
        value::i64(o.out(), i64::from(p.scale));
        o.key("zero_count");
        value::u64(o.out(), p.zero_count);
        if p.zero_threshold != 0.0 {
            o.key("zero_threshold");
            value::f64(o.out(), p.zero_threshold);
        }
        for (name, buckets) in [("positive", &p.positive), ("negative", &p.negative)] {
            if let Some(b) = buckets {
                o.key(name);
                buckets_json(o.out(), b);
            }
        }
        optional_f64(&mut o, "min", p.min);
        optional_f64(&mut o, "max", p.max);
        o.close();
    });
    Ok(mark)
}

pub(super) fn summary(w: &mut Writer<'_>, s: &Shape<'_>, p: &SummaryDataPoint) -> Result<Mark, String> {
    let mark = begin(w, s, point!(p, &[]))?;
    w.json(tag::SUMMARY, |out| {
        let mut o = Object::open(out);
        o.key("count");
        value::u64(o.out(), p.count);
        o.key("sum");
        value::f64(o.out(), p.sum);
        o.key("quantiles");
        array(o.out(), &p.quantile_values, |out, q| {
            out.push(b'[');
            value::f64(out, q.quantile);
            out.push(b',');
            value::f64(out, q.value);
            out.push(b']');
        });
        o.close();
    });
    Ok(mark)
}

fn optional_f64(o: &mut Object<'_>, name: &str, v: Option<f64>) {
    if let Some(v) = v {
        o.key(name);
        value::f64(o.out(), v);
    }
}

/// `{"offset","bucket_counts"}`.
fn buckets_json(out: &mut Vec<u8>, b: &Buckets) {
    let mut o = Object::open(out);
    o.key("offset");
    value::i64(o.out(), i64::from(b.offset));
    o.key("bucket_counts");
    array(o.out(), &b.bucket_counts, |out, c| value::u64(out, *c));
    o.close();
}

/// `{"time_unix_nano","value","trace_id","span_id","filtered_attributes"}`.
fn exemplar_json(out: &mut Vec<u8>, e: &Exemplar) {
    let mut o = Object::open(out);
    o.u64_nonzero("time_unix_nano", e.time_unix_nano);
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => {
            o.key("value");
            value::f64(o.out(), d);
        }
        Some(exemplar::Value::AsInt(i)) => {
            o.key("value");
            value::i64(o.out(), i);
        }
        None => {}
    }
    if !e.trace_id.is_empty() {
        o.key("trace_id");
        value::hex(o.out(), &e.trace_id);
    }
    if !e.span_id.is_empty() {
        o.key("span_id");
        value::hex(o.out(), &e.span_id);
    }
    if !e.filtered_attributes.is_empty() {
        o.key("filtered_attributes");
        value::attributes(o.out(), &e.filtered_attributes);
    }
    o.close();
}
