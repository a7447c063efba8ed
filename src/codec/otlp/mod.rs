//! OTLP/HTTP request bodies: an `Export{Logs,Metrics,Trace}ServiceRequest`
//! as protobuf or as OTLP JSON, decoded with the published
//! `opentelemetry-proto` types (prost and its serde support), then written
//! as records: one per log record ([`Kind::Log`]), per metric data point
//! ([`Kind::Metric`]) and per span ([`Kind::Span`]).
//!
//! ```text
//! protobuf ─► stream: walk the envelope, decode one item at a time ─┐
//! JSON ─► count objects ─► decode whole ─► Request ─► append ────────┴─► BlockBuilder
//!                         resource and scope JSON once per group, copied per record
//! ```
//!
//! [`records`] is the entry point; [`stream`] says why protobuf is not
//! decoded whole.
//!
//! A record that cannot be stored as sent (an id of the wrong length, an
//! enum out of range, a histogram whose counts do not match its bounds, a
//! record over [`MAX_RECORD_BYTES`]) is left out and counted in
//! [`Appended::rejected`], with the first reason, which the source returns
//! as OTLP's `partial_success`. Undecodable bodies are errors: the whole
//! request is refused (400), nothing is stored.
//!
//! Files: [`value`] (attributes and `AnyValue`s as JSON text), [`logs`],
//! [`metrics`], [`traces`], [`stream`] (protobuf, item by item).

pub mod logs;
pub mod metrics;
pub mod stream;
pub mod traces;
pub mod value;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use thiserror::Error;

use crate::record::{BlockBuilder, Kind, Mark, tag};

/// A stored record (its fields) may be at most this long; longer ones are rejected.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Which OTLP signal a request carries (its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

/// How a body is encoded (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json` (OTLP JSON)
    Json,
}

/// A decoded export request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

/// A body that does not decode as the signal's export request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OtlpError {
    #[error("not a protobuf Export{0}ServiceRequest: {1}")]
    Protobuf(&'static str, String),
    #[error("not an OTLP JSON Export{0}ServiceRequest: {1}")]
    Json(&'static str, String),
    /// The records would take more than `limit` bytes (each carries its
    /// resource and scope, so a small body can make many large records).
    #[error("the request's records take more than {limit} bytes once stored; send smaller requests")]
    TooLarge { limit: usize },
    /// A JSON body with so many objects that decoding it would take more
    /// than the records limit (each object becomes a message in memory).
    #[error(
        "the JSON body has {objects} objects, more than a request may decode into ({limit}); send smaller requests"
    )]
    TooManyObjects { objects: usize, limit: usize },
}

/// What one JSON object may take once decoded (the largest OTLP messages,
/// spans and log records, take about this much before their strings).
pub const JSON_OBJECT_BYTES: usize = 256;

/// Writes every item of a `signal` request body as a record into `block`:
/// protobuf one item at a time ([`stream`]), JSON decoded whole. See
/// [`append`] for `max_bytes`.
pub fn records(
    signal: Signal,
    format: Format,
    body: &[u8],
    received_at_ms: u64,
    block: &mut BlockBuilder,
    max_bytes: usize,
) -> Result<Appended, OtlpError> {
    match format {
        Format::Protobuf => stream::append(signal, body, received_at_ms, block, max_bytes),
        Format::Json => {
            // Counting braces bounds what serde will build, before it builds it.
            let objects = memchr::memchr_iter(b'{', body).count();
            let limit = max_bytes / JSON_OBJECT_BYTES;
            if objects > limit {
                return Err(OtlpError::TooManyObjects { objects, limit });
            }
            append(&decode(signal, format, body)?, received_at_ms, block, max_bytes)
        }
    }
}

/// Decodes `body` as `signal`'s export request.
pub fn decode(signal: Signal, format: Format, body: &[u8]) -> Result<Request, OtlpError> {
    fn pb<M: Message + Default>(what: &'static str, body: &[u8]) -> Result<M, OtlpError> {
        M::decode(body).map_err(|e| OtlpError::Protobuf(what, e.to_string()))
    }
    fn json<M: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<M, OtlpError> {
        serde_json::from_slice(body).map_err(|e| OtlpError::Json(what, e.to_string()))
    }
    Ok(match (signal, format) {
        (Signal::Logs, Format::Protobuf) => Request::Logs(pb("Logs", body)?),
        (Signal::Logs, Format::Json) => Request::Logs(json("Logs", body)?),
        (Signal::Metrics, Format::Protobuf) => Request::Metrics(pb("Metrics", body)?),
        (Signal::Metrics, Format::Json) => Request::Metrics(json("Metrics", body)?),
        (Signal::Traces, Format::Protobuf) => Request::Traces(pb("Trace", body)?),
        (Signal::Traces, Format::Json) => Request::Traces(json("Trace", body)?),
    })
}

/// What [`append`] stored and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: u32,
    pub rejected: u32,
    /// Why the first rejected item was left out.
    pub problem: Option<String>,
}

impl Appended {
    fn reject(&mut self, why: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.problem.is_none() {
            self.problem = Some(why());
        }
    }
}

/// Writes every item of `req` as a record into `block`, which may grow by
/// at most `max_bytes` (past that: [`OtlpError::TooLarge`], and `block`
/// holds what was written so far: drop it).
pub fn append(
    req: &Request,
    received_at_ms: u64,
    block: &mut BlockBuilder,
    max_bytes: usize,
) -> Result<Appended, OtlpError> {
    let mut out = Appended::default();
    let mut scratch = Vec::new();
    let limit = Limit { end: block.len_bytes().saturating_add(max_bytes), max_bytes };
    match req {
        Request::Logs(r) => {
            for rl in &r.resource_logs {
                let group = Group::new(rl.resource.as_ref());
                for sl in &rl.scope_logs {
                    let scope = scope_json(sl.scope.as_ref());
                    let mut w =
                        Writer { block, received_at_ms, group: &group, scope: &scope, scratch: &mut scratch, limit };
                    for lr in &sl.log_records {
                        w.item(&mut out, |w| logs::record(w, lr))?;
                    }
                }
            }
        }
        Request::Metrics(r) => {
            for rm in &r.resource_metrics {
                let group = Group::new(rm.resource.as_ref());
                for sm in &rm.scope_metrics {
                    let scope = scope_json(sm.scope.as_ref());
                    let mut w =
                        Writer { block, received_at_ms, group: &group, scope: &scope, scratch: &mut scratch, limit };
                    for m in &sm.metrics {
                        metrics::metric(&mut w, m, &mut out)?;
                    }
                }
            }
        }
        Request::Traces(r) => {
            for rs in &r.resource_spans {
                let group = Group::new(rs.resource.as_ref());
                for ss in &rs.scope_spans {
                    let scope = scope_json(ss.scope.as_ref());
                    let mut w =
                        Writer { block, received_at_ms, group: &group, scope: &scope, scratch: &mut scratch, limit };
                    for span in &ss.spans {
                        w.item(&mut out, |w| traces::span(w, span))?;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Where a request's records must end in the block.
#[derive(Debug, Clone, Copy)]
struct Limit {
    /// The block's length may not pass this.
    end: usize,
    /// What the request was allowed (for the error).
    max_bytes: usize,
}

/// Items in a request: what a 200 counts and `partial_success` refers to.
pub fn items(req: &Request) -> u64 {
    match req {
        Request::Logs(r) => {
            r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len() as u64).sum()
        }
        Request::Metrics(r) => r
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(metrics::points)
            .sum(),
        Request::Traces(r) => {
            r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len() as u64).sum()
        }
    }
}

/// What every record of one resource shares, encoded once.
struct Group {
    /// The resource's attributes as a JSON object (empty: none).
    resource: Vec<u8>,
    /// Its `service.name`, when it is a string.
    service: Option<String>,
}

impl Group {
    fn new(resource: Option<&Resource>) -> Group {
        let attrs = resource.map(|r| &r.attributes[..]).unwrap_or(&[]);
        let service = value::service_name(attrs);
        let mut resource = Vec::new();
        if !attrs.is_empty() {
            value::attributes(&mut resource, attrs);
        }
        Group { resource, service }
    }
}

/// The scope as `{"name","version","attributes"}` (empty parts left out);
/// empty when there is no scope or it is all empty.
fn scope_json(scope: Option<&InstrumentationScope>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(s) = scope else { return out };
    if s.name.is_empty() && s.version.is_empty() && s.attributes.is_empty() {
        return out;
    }
    let mut obj = value::Object::open(&mut out);
    if !s.name.is_empty() {
        obj.key("name");
        value::string(obj.out(), &s.name);
    }
    if !s.version.is_empty() {
        obj.key("version");
        value::string(obj.out(), &s.version);
    }
    if !s.attributes.is_empty() {
        obj.key("attributes");
        value::attributes(obj.out(), &s.attributes);
    }
    obj.close();
    out
}

/// Writes one item's record: the shared fields, and its own through the
/// signal's function.
pub struct Writer<'a> {
    pub block: &'a mut BlockBuilder,
    pub received_at_ms: u64,
    group: &'a Group,
    scope: &'a [u8],
    /// A reusable buffer for JSON fields.
    pub scratch: &'a mut Vec<u8>,
    limit: Limit,
}

impl Writer<'_> {
    /// Begins a record with the resource and scope fields.
    pub fn begin(&mut self, kind: Kind) -> Mark {
        let mark = self.block.mark();
        self.block.begin(kind, self.received_at_ms);
        if let Some(service) = &self.group.service {
            self.block.str(tag::SERVICE, service);
        }
        if !self.group.resource.is_empty() {
            self.block.bytes(tag::RESOURCE, &self.group.resource);
        }
        if !self.scope.is_empty() {
            self.block.bytes(tag::SCOPE, self.scope);
        }
        mark
    }

    /// Writes `f(JSON buffer)` as field `tag`.
    pub fn json(&mut self, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
        self.scratch.clear();
        f(self.scratch);
        self.block.bytes(tag, self.scratch);
    }

    /// Runs `write` for one item; a rejected or too-long record is rolled
    /// back and counted. Errs when the request's records grow past their limit.
    pub fn item(
        &mut self,
        out: &mut Appended,
        write: impl FnOnce(&mut Self) -> Result<Mark, String>,
    ) -> Result<(), OtlpError> {
        if self.block.len_bytes() > self.limit.end {
            return Err(OtlpError::TooLarge { limit: self.limit.max_bytes });
        }
        // Every record carries these: when they alone are too long, so is
        // each record, and writing each one to roll it back would be slow.
        let shared = self.group.resource.len() + self.scope.len();
        if shared > MAX_RECORD_BYTES {
            out.reject(|| format!("the resource and scope alone are {shared} bytes, over {MAX_RECORD_BYTES}"));
            return Ok(());
        }
        let before = self.block.mark();
        match write(self) {
            Ok(mark) if self.block.len_since(mark) > MAX_RECORD_BYTES => {
                self.block.rollback(before);
                out.reject(|| format!("a record is over {MAX_RECORD_BYTES} bytes"));
            }
            Ok(_) => {
                self.block.end();
                out.stored += 1;
            }
            Err(why) => {
                self.block.rollback(before);
                out.reject(|| why);
            }
        }
        Ok(())
    }

    /// Counts an item rejected before it was read.
    pub fn skip(&mut self, out: &mut Appended, why: impl FnOnce() -> String) -> Result<(), OtlpError> {
        out.reject(why);
        Ok(())
    }

    /// Trace and span ids: empty, or exactly `len` bytes.
    pub fn id(&mut self, tag: u8, what: &str, bytes: &[u8], len: usize) -> Result<(), String> {
        match bytes.len() {
            0 => Ok(()),
            n if n == len => {
                self.block.bytes(tag, bytes);
                Ok(())
            }
            n => Err(format!("{what} is {n} bytes; it must be {len}")),
        }
    }

    /// A nanosecond time; zero means unknown and is left out.
    pub fn time(&mut self, tag: u8, ns: u64) {
        if ns != 0 {
            self.block.u64(tag, ns);
        }
    }

    /// The record's own time as `timestamp` (ms, what Tell records carry),
    /// from the first of `ns` that is known.
    pub fn timestamp(&mut self, ns: &[u64]) {
        if let Some(ns) = ns.iter().copied().find(|&n| n != 0) {
            self.block.u64(tag::TIMESTAMP, ns / 1_000_000);
        }
    }
}

#[cfg(test)]
mod tests;
