//! One OTLP log record → one [`Kind::Log`] record.
//!
//! Fields: `timestamp` (ms, from the record's time or else its observed
//! time), `time_unix_nano`, `observed_time_unix_nano`, `severity_number`,
//! `severity_text`, `level` (the severity on sluice's RFC 5424 scale, so
//! level filters work across sources), `body`, `attributes`, `trace_id`,
//! `span_id`, `otlp_flags`, `event_name`, `dropped`, and the resource's
//! (`resource`, `service`) and scope's.

use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::Writer;
use super::value::{self, Object};
use crate::record::{Kind, Mark, tag};

/// Highest OTLP severity number (FATAL4).
const MAX_SEVERITY: i32 = 24;

pub fn record(w: &mut Writer<'_>, lr: &LogRecord) -> Result<Mark, String> {
    let severity = match lr.severity_number {
        n @ 0..=MAX_SEVERITY => n as u8,
        n => return Err(format!("severity_number {n} is out of range (0..=24)")),
    };
    let mark = w.begin(Kind::Log);
    w.timestamp(&[lr.time_unix_nano, lr.observed_time_unix_nano]);
    w.time(tag::TIME_NS, lr.time_unix_nano);
    w.time(tag::OBSERVED_NS, lr.observed_time_unix_nano);
    if severity != 0 {
        w.block.u8(tag::SEVERITY_NUMBER, severity);
        w.block.u8(tag::LEVEL, level(severity));
    }
    if !lr.severity_text.is_empty() {
        w.block.str(tag::SEVERITY_TEXT, &lr.severity_text);
    }
    if let Some(body) = &lr.body {
        w.json(tag::BODY, |out| value::any(out, Some(body)));
    }
    if !lr.attributes.is_empty() {
        w.json(tag::ATTRIBUTES, |out| value::attributes(out, &lr.attributes));
    }
    w.id(tag::TRACE_ID, "trace_id", &lr.trace_id, 16)?;
    w.id(tag::SPAN_ID, "span_id", &lr.span_id, 8)?;
    if lr.flags != 0 {
        w.block.u32(tag::OTLP_FLAGS, lr.flags);
    }
    if !lr.event_name.is_empty() {
        w.block.str(tag::EVENT_NAME, &lr.event_name);
    }
    if lr.dropped_attributes_count != 0 {
        w.json(tag::DROPPED, |out| {
            let mut o = Object::open(out);
            o.u64_nonzero("attributes", u64::from(lr.dropped_attributes_count));
            o.close();
        });
    }
    Ok(mark)
}

/// An OTLP severity (1..=24, in fours: trace, debug, info, warn, error,
/// fatal) on the RFC 5424 scale sluice stores levels on (8 = trace).
pub fn level(severity: u8) -> u8 {
    match severity {
        0..=4 => 8,
        5..=8 => 7,
        9..=12 => 6,
        13..=16 => 4,
        17..=20 => 3,
        _ => 2,
    }
}
