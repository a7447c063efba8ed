//! Protobuf bodies, one item at a time.
//!
//! Decoding a whole request with prost builds every message at once, and a
//! message can take a hundred times its wire size (an empty `LogRecord` is
//! 2 bytes on the wire and some 200 in memory): a 20 MiB body of empty
//! records would take 2 GB. So the envelope is walked on the wire format,
//! with prost's own primitives, and prost decodes only the parts:
//!
//! ```text
//! Export*ServiceRequest  1: Resource{Logs,Spans,Metrics}*        walked
//!   Resource*            1: Resource (merged)   2: Scope*         walked
//!     Scope*             1: InstrumentationScope (merged)  2: item*   walked
//!       item             LogRecord | Span                          decoded, one at a time
//!       Metric           1..3, 12 (decoded as a shell)  5|7|9|10|11: data  walked
//!         data           1: data point*  2: temporality  3: monotonic   points decoded one at a time
//! ```
//!
//! Peak memory is then the body, the block being written and one item. An
//! item larger on the wire than [`MAX_ITEM_BYTES`] is rejected unread: its
//! record would be over `MAX_RECORD_BYTES` anyway (stored fields are not
//! smaller than their wire form by more than half).
//!
//! What prost would refuse stays refused: a known field with the wrong wire
//! type, a truncated field, a bad item. Unknown fields are skipped, as prost
//! skips them; singular message fields that occur more than once are merged,
//! and of the metric data `oneof` the last one sent wins, as in prost.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::metrics::{self, Shape, metric_type};
use super::{Appended, Group, Limit, MAX_RECORD_BYTES, OtlpError, Signal, Writer, logs, scope_json, traces};
use crate::record::BlockBuilder;

/// Items longer than this on the wire are rejected without decoding them.
pub const MAX_ITEM_BYTES: usize = 2 * MAX_RECORD_BYTES;

/// Metric fields that hold its data (the `oneof`): gauge, sum, histogram,
/// exponential histogram, summary.
const DATA_FIELDS: [u32; 5] = [5, 7, 9, 10, 11];

/// Writes every item of a protobuf `signal` request as a record (see
/// [`super::append`] for the limit).
pub fn append(
    signal: Signal,
    body: &[u8],
    received_at_ms: u64,
    block: &mut BlockBuilder,
    max_bytes: usize,
) -> Result<Appended, OtlpError> {
    let mut out = Appended::default();
    let mut scratch = Vec::new();
    let limit = Limit { end: block.len_bytes().saturating_add(max_bytes), max_bytes };
    // One message of each kind, cleared and refilled per item: its strings
    // and lists keep their capacity, so most items allocate little.
    let (mut lr, mut span) = (LogRecord::default(), Span::default());
    each(signal, body, 1, &mut |group_bytes| {
        let resource: Option<Resource> = merged(signal, group_bytes, 1)?;
        let group = Group::new(resource.as_ref());
        each(signal, group_bytes, 2, &mut |scope_bytes| {
            let scope: Option<InstrumentationScope> = merged(signal, scope_bytes, 1)?;
            let scope = scope_json(scope.as_ref());
            let mut w = Writer {
                block: &mut *block,
                received_at_ms,
                group: &group,
                scope: &scope,
                scratch: &mut scratch,
                limit,
            };
            each(signal, scope_bytes, 2, &mut |item| {
                if item.len() > MAX_ITEM_BYTES {
                    return w.skip(&mut out, || format!("an item of {} bytes is over {MAX_ITEM_BYTES}", item.len()));
                }
                match signal {
                    Signal::Logs => {
                        refill(&mut lr, item).map_err(|e| bad(signal, e))?;
                        w.item(&mut out, |w| logs::record(w, &lr))
                    }
                    Signal::Traces => {
                        refill(&mut span, item).map_err(|e| bad(signal, e))?;
                        w.item(&mut out, |w| traces::span(w, &span))
                    }
                    Signal::Metrics => metric(&mut w, item, &mut out),
                }
            })
        })
    })?;
    Ok(out)
}

/// Decodes `bytes` into `message` as `M::decode` would, reusing its allocations.
fn refill<M: Message>(message: &mut M, bytes: &[u8]) -> Result<(), prost::DecodeError> {
    message.clear();
    message.merge(bytes)
}

/// One `Metric`: its shell (name, description, unit, metadata) decoded, its
/// data points one at a time.
fn metric(w: &mut Writer<'_>, bytes: &[u8], out: &mut Appended) -> Result<(), OtlpError> {
    let signal = Signal::Metrics;
    let mut shell = Vec::with_capacity(256);
    let mut data: Vec<(u32, &[u8])> = Vec::new();
    fields(signal, bytes, |field, wire, raw, value| {
        if DATA_FIELDS.contains(&field) {
            let value = value.ok_or_else(|| wrong_type(signal, field, wire))?;
            // A different member of the oneof replaces what came before.
            if data.last().is_some_and(|(f, _)| *f != field) {
                data.clear();
            }
            data.push((field, value));
        } else {
            shell.extend_from_slice(raw);
        }
        Ok(())
    })?;
    let shell = Metric::decode(&shell[..]).map_err(|e| bad(signal, e))?;
    let Some(&(field, _)) = data.last() else { return Ok(()) };
    // Temporality and monotonicity: the last one sent, over every part.
    let (mut temporality, mut monotonic) = (0i32, false);
    for (_, part) in &data {
        fields(signal, part, |f, wire, _, _| {
            match (f, wire) {
                (2 | 3, WireType::Varint) => {}
                (2 | 3, _) => return Err(wrong_type(signal, f, wire)),
                _ => {}
            }
            Ok(())
        })?;
        scalars(part, &mut temporality, &mut monotonic);
    }
    let kind = match field {
        5 => metric_type::GAUGE,
        7 => metric_type::SUM,
        9 => metric_type::HISTOGRAM,
        10 => metric_type::EXPONENTIAL_HISTOGRAM,
        _ => metric_type::SUMMARY,
    };
    let shape = Shape { metric: &shell, kind, temporality, monotonic };
    // Reused from point to point, as items are in `append`.
    let mut number = NumberDataPoint::default();
    let mut histogram = HistogramDataPoint::default();
    let mut exponential = ExponentialHistogramDataPoint::default();
    let mut summary = SummaryDataPoint::default();
    for (_, part) in &data {
        each(signal, part, 1, &mut |point| {
            if point.len() > MAX_ITEM_BYTES {
                return w.skip(out, || format!("a data point of {} bytes is over {MAX_ITEM_BYTES}", point.len()));
            }
            let e = |e| bad(signal, e);
            match field {
                5 | 7 => {
                    refill(&mut number, point).map_err(e)?;
                    w.item(out, |w| metrics::number(w, &shape, &number))
                }
                9 => {
                    refill(&mut histogram, point).map_err(e)?;
                    w.item(out, |w| metrics::histogram(w, &shape, &histogram))
                }
                10 => {
                    refill(&mut exponential, point).map_err(e)?;
                    w.item(out, |w| metrics::exponential(w, &shape, &exponential))
                }
                _ => {
                    refill(&mut summary, point).map_err(e)?;
                    w.item(out, |w| metrics::summary(w, &shape, &summary))
                }
            }
        })?;
    }
    Ok(())
}

/// Reads `aggregation_temporality` (2) and `is_monotonic` (3) of a metric's
/// data message (already checked to be well formed).
fn scalars(part: &[u8], temporality: &mut i32, monotonic: &mut bool) {
    let _ = fields(Signal::Metrics, part, |f, _, raw, _| {
        let mut v = raw;
        let _ = decode_key(&mut v);
        if let Ok(n) = decode_varint(&mut v) {
            match f {
                // An int32 enum: the low 32 bits, as prost reads it.
                2 => *temporality = n as i32,
                3 => *monotonic = n != 0,
                _ => {}
            }
        }
        Ok(())
    });
}

/// Calls `f` with each length-delimited occurrence of field `want` in
/// `msg`, in order; other fields are skipped.
fn each(
    signal: Signal,
    msg: &[u8],
    want: u32,
    f: &mut dyn FnMut(&[u8]) -> Result<(), OtlpError>,
) -> Result<(), OtlpError> {
    fields(signal, msg, |field, wire, _, value| match (field == want, value) {
        (false, _) => Ok(()),
        (true, Some(v)) => f(v),
        (true, None) => Err(wrong_type(signal, field, wire)),
    })
}

/// The message in field `want` of `msg`, every occurrence merged (as prost
/// does for a singular message field); `None` when absent.
fn merged<M: Message + Default>(signal: Signal, msg: &[u8], want: u32) -> Result<Option<M>, OtlpError> {
    let mut found: Option<M> = None;
    each(signal, msg, want, &mut |bytes| {
        found.get_or_insert_with(M::default).merge(bytes).map_err(|e| bad(signal, e))
    })?;
    Ok(found)
}

/// Walks the fields of `msg`: `f(field, wire type, the field's bytes with
/// its key, the value of a length-delimited field)`.
fn fields<'a>(
    signal: Signal,
    msg: &'a [u8],
    mut f: impl FnMut(u32, WireType, &'a [u8], Option<&'a [u8]>) -> Result<(), OtlpError>,
) -> Result<(), OtlpError> {
    let mut rest = msg;
    while !rest.is_empty() {
        let start = msg.len() - rest.len();
        let (field, wire) = decode_key(&mut rest).map_err(|e| bad(signal, e))?;
        let value = if wire == WireType::LengthDelimited {
            let len = decode_varint(&mut rest).map_err(|e| bad(signal, e))?;
            let len = usize::try_from(len).ok().filter(|&l| l <= rest.len()).ok_or_else(|| truncated(signal))?;
            let (value, after) = rest.split_at(len);
            rest = after;
            Some(value)
        } else {
            skip_field(wire, field, &mut rest, DecodeContext::default()).map_err(|e| bad(signal, e))?;
            None
        };
        let end = msg.len() - rest.len();
        f(field, wire, &msg[start..end], value)?;
    }
    Ok(())
}

fn what(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "Logs",
        Signal::Metrics => "Metrics",
        Signal::Traces => "Trace",
    }
}

fn bad(signal: Signal, e: prost::DecodeError) -> OtlpError {
    OtlpError::Protobuf(what(signal), e.to_string())
}

fn truncated(signal: Signal) -> OtlpError {
    OtlpError::Protobuf(what(signal), "a field runs past the end of its message".into())
}

fn wrong_type(signal: Signal, field: u32, wire: WireType) -> OtlpError {
    OtlpError::Protobuf(what(signal), format!("field {field} has wire type {wire:?}"))
}
