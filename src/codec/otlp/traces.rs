//! One OTLP span → one [`Kind::Span`] record.
//!
//! Fields: `name`, `span_kind`, `trace_id`, `span_id`, `parent_span_id`,
//! `trace_state`, `otlp_flags`, `timestamp` (ms, the start),
//! `start_time_unix_nano`, `end_time_unix_nano`, `status_code`,
//! `status_message`, `attributes`, `events` and `links` (JSON arrays),
//! `dropped`, and the resource's and scope's. A span needs its 16-byte
//! trace id and 8-byte span id; one without is rejected.

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

use super::Writer;
use super::value::{self, Object};
use crate::record::{Kind, Mark, tag};

/// Highest span kind (CONSUMER).
const MAX_SPAN_KIND: i32 = 5;
/// Highest status code (ERROR).
const MAX_STATUS_CODE: i32 = 2;

pub fn span(w: &mut Writer<'_>, s: &Span) -> Result<Mark, String> {
    let kind = match s.kind {
        k @ 0..=MAX_SPAN_KIND => k as u8,
        k => return Err(format!("span kind {k} is out of range (0..=5)")),
    };
    let status = match &s.status {
        Some(st) if !(0..=MAX_STATUS_CODE).contains(&st.code) => {
            return Err(format!("status code {} is out of range (0..=2)", st.code));
        }
        other => other,
    };
    if s.trace_id.len() != 16 || s.span_id.len() != 8 {
        return Err(format!(
            "a span needs a 16-byte trace_id and an 8-byte span_id (got {} and {})",
            s.trace_id.len(),
            s.span_id.len()
        ));
    }
    let mark = w.begin(Kind::Span);
    w.block.str(tag::SPAN_NAME, &s.name);
    w.block.u8(tag::SPAN_KIND, kind);
    w.id(tag::TRACE_ID, "trace_id", &s.trace_id, 16)?;
    w.id(tag::SPAN_ID, "span_id", &s.span_id, 8)?;
    w.id(tag::PARENT_SPAN_ID, "parent_span_id", &s.parent_span_id, 8)?;
    if !s.trace_state.is_empty() {
        w.block.str(tag::TRACE_STATE, &s.trace_state);
    }
    if s.flags != 0 {
        w.block.u32(tag::OTLP_FLAGS, s.flags);
    }
    w.timestamp(&[s.start_time_unix_nano]);
    w.time(tag::START_NS, s.start_time_unix_nano);
    w.time(tag::END_NS, s.end_time_unix_nano);
    if let Some(st) = status {
        w.block.u8(tag::STATUS_CODE, st.code as u8);
        if !st.message.is_empty() {
            w.block.str(tag::STATUS_MESSAGE, &st.message);
        }
    }
    if !s.attributes.is_empty() {
        w.json(tag::ATTRIBUTES, |out| value::attributes(out, &s.attributes));
    }
    if !s.events.is_empty() {
        w.json(tag::SPAN_EVENTS, |out| array(out, &s.events, event));
    }
    if !s.links.is_empty() {
        w.json(tag::SPAN_LINKS, |out| array(out, &s.links, link));
    }
    if s.dropped_attributes_count != 0 || s.dropped_events_count != 0 || s.dropped_links_count != 0 {
        w.json(tag::DROPPED, |out| {
            let mut o = Object::open(out);
            o.u64_nonzero("attributes", u64::from(s.dropped_attributes_count));
            o.u64_nonzero("events", u64::from(s.dropped_events_count));
            o.u64_nonzero("links", u64::from(s.dropped_links_count));
            o.close();
        });
    }
    Ok(mark)
}

/// `[item, …]`, each written by `f`.
pub fn array<T>(out: &mut Vec<u8>, items: &[T], f: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        f(out, item);
    }
    out.push(b']');
}

/// `{"time_unix_nano","name","attributes","dropped_attributes_count"}`.
fn event(out: &mut Vec<u8>, e: &Event) {
    let mut o = Object::open(out);
    o.u64_nonzero("time_unix_nano", e.time_unix_nano);
    o.key("name");
    value::string(o.out(), &e.name);
    if !e.attributes.is_empty() {
        o.key("attributes");
        value::attributes(o.out(), &e.attributes);
    }
    o.u64_nonzero("dropped_attributes_count", u64::from(e.dropped_attributes_count));
    o.close();
}

/// `{"trace_id","span_id","trace_state","attributes","flags","dropped_attributes_count"}`, ids in hex.
fn link(out: &mut Vec<u8>, l: &Link) {
    let mut o = Object::open(out);
    o.key("trace_id");
    value::hex(o.out(), &l.trace_id);
    o.key("span_id");
    value::hex(o.out(), &l.span_id);
    o.str_nonempty("trace_state", &l.trace_state);
    if !l.attributes.is_empty() {
        o.key("attributes");
        value::attributes(o.out(), &l.attributes);
    }
    o.u64_nonzero("flags", u64::from(l.flags));
    o.u64_nonzero("dropped_attributes_count", u64::from(l.dropped_attributes_count));
    o.close();
}
