//! The stored event record: one compact, tagged, versioned encoding shared by
//! every source (which writes it) and every reader (which decodes it).
//!
//! Sources never build an owned `Event` per item: they append records
//! straight into a [`BlockBuilder`], and a block of records travels through
//! the pipeline and lands in the store as one compressed chunk. This keeps the
//! hot path free of per-event allocations.
//!
//! ```text
//! block  := record*
//! record := len:u32le  kind:u8  received_at_ms:u64le  field*      (len counts kind..end)
//! field  := tag:u8  flen:varint(u32)  bytes[flen]
//! ```
//!
//! Readers skip fields whose tag they do not know, so new tags can be added
//! without a format bump. Integers inside fields are little-endian; strings
//! are UTF-8 as received (invalid UTF-8 is kept as bytes and shown lossily).

use thiserror::Error;

/// What an item is. Stored as one byte; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Event = 1,
    Log = 2,
    Metric = 3,
    Syslog = 4,
    /// An OpenTelemetry span.
    Span = 5,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Event),
            2 => Some(Kind::Log),
            3 => Some(Kind::Metric),
            4 => Some(Kind::Syslog),
            5 => Some(Kind::Span),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Log => "log",
            Kind::Metric => "metric",
            Kind::Syslog => "syslog",
            Kind::Span => "span",
        }
    }

    pub const ALL: [Kind; 5] = [Kind::Event, Kind::Log, Kind::Metric, Kind::Syslog, Kind::Span];

    /// The kind [`Kind::name`] names.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Field tags. Stored as one byte; never renumber, only add.
pub mod tag {
    /// u64: the item's own timestamp (Tell: unix milliseconds).
    pub const TIMESTAMP: u8 = 1;
    /// str: service name.
    pub const SERVICE: u8 = 2;
    /// 16 bytes: device id (UUID).
    pub const DEVICE_ID: u8 = 3;
    /// 16 bytes: session id (UUID).
    pub const SESSION_ID: u8 = 4;
    /// str: event name.
    pub const EVENT_NAME: u8 = 5;
    /// bytes: payload as sent (Tell: JSON).
    pub const PAYLOAD: u8 = 6;
    /// u8: Tell event type (track, identify, …).
    pub const EVENT_TYPE: u8 = 7;
    /// u8: Tell log event type (log, enrich).
    pub const LOG_TYPE: u8 = 8;
    /// u8: log level / syslog severity (RFC 5424 numbering, 8 = trace).
    pub const LEVEL: u8 = 9;
    /// str: log or metric source (Tell's own `source` field).
    pub const SOURCE: u8 = 10;
    /// str: metric name.
    pub const METRIC_NAME: u8 = 11;
    /// f64: metric value.
    pub const METRIC_VALUE: u8 = 12;
    /// u8: metric type (gauge, counter, histogram).
    pub const METRIC_TYPE: u8 = 13;
    /// u8: metric temporality.
    pub const TEMPORALITY: u8 = 14;
    /// repeated: one label, `klen:varint key value`.
    pub const LABEL: u8 = 15;
    /// histogram: `count:u64 sum:f64 min:f64 max:f64 (upper:f64 count:u64)*`.
    pub const HISTOGRAM: u8 = 16;
    /// str: peer address, when it differs from the chunk's peer (UDP).
    pub const PEER: u8 = 17;
    /// bytes: raw bytes as received (syslog).
    pub const RAW: u8 = 18;
    /// u8 bit set of [`super::flag`] values.
    pub const FLAGS: u8 = 19;
    /// str: zone for syslog timestamps that carry none (absent: UTC).
    pub const TIMEZONE: u8 = 20;

    // OpenTelemetry (OTLP) records. Structured values are stored as JSON
    // text (attributes as one object, `AnyValue`s as plain JSON values).

    /// JSON object: the record's (or data point's) attributes.
    pub const ATTRIBUTES: u8 = 21;
    /// JSON object: the resource's attributes.
    pub const RESOURCE: u8 = 22;
    /// JSON object: the instrumentation scope (`name`, `version`, `attributes`).
    pub const SCOPE: u8 = 23;
    /// JSON value: a log record's body.
    pub const BODY: u8 = 24;
    /// 16 bytes: trace id.
    pub const TRACE_ID: u8 = 25;
    /// 8 bytes: span id.
    pub const SPAN_ID: u8 = 26;
    /// 8 bytes: a span's parent span id.
    pub const PARENT_SPAN_ID: u8 = 27;
    /// u64: the record's time, ns since the epoch (log time, data point time).
    pub const TIME_NS: u8 = 28;
    /// u64: when the log record was observed, ns since the epoch.
    pub const OBSERVED_NS: u8 = 29;
    /// u64: a span's or cumulative data point's start, ns since the epoch.
    pub const START_NS: u8 = 30;
    /// u64: a span's end, ns since the epoch.
    pub const END_NS: u8 = 31;
    /// u8: OTLP severity number (1..=24).
    pub const SEVERITY_NUMBER: u8 = 32;
    /// str: severity text as sent.
    pub const SEVERITY_TEXT: u8 = 33;
    /// str: a span's name.
    pub const SPAN_NAME: u8 = 34;
    /// u8: OTLP span kind (1 internal .. 5 consumer).
    pub const SPAN_KIND: u8 = 35;
    /// u8: OTLP status code (0 unset, 1 ok, 2 error).
    pub const STATUS_CODE: u8 = 36;
    /// str: a span's status message.
    pub const STATUS_MESSAGE: u8 = 37;
    /// JSON array: a span's events.
    pub const SPAN_EVENTS: u8 = 38;
    /// JSON array: a span's links.
    pub const SPAN_LINKS: u8 = 39;
    /// str: W3C trace state.
    pub const TRACE_STATE: u8 = 40;
    /// u32: OTLP flags of a log record, span or data point (for records
    /// and spans the W3C trace flags are the low byte).
    pub const OTLP_FLAGS: u8 = 41;
    /// i64: an integer metric value (OTLP `as_int`).
    pub const METRIC_INT: u8 = 42;
    /// str: a metric's unit.
    pub const METRIC_UNIT: u8 = 43;
    /// str: a metric's description.
    pub const METRIC_DESCRIPTION: u8 = 44;
    /// u8: 1 when a sum is monotonic.
    pub const MONOTONIC: u8 = 45;
    /// JSON object: an exponential histogram data point (`count`, `sum`,
    /// `scale`, `zero_count`, `zero_threshold`, `positive`, `negative`, `min`, `max`).
    pub const EXP_HISTOGRAM: u8 = 46;
    /// JSON object: a summary data point (`count`, `sum`, `quantiles`).
    pub const SUMMARY: u8 = 47;
    /// JSON array: a data point's exemplars.
    pub const EXEMPLARS: u8 = 48;
    /// JSON object: counts of what the sender dropped (`attributes`, `events`, `links`).
    pub const DROPPED: u8 = 49;
    /// JSON object: a metric's metadata.
    pub const METADATA: u8 = 50;
}

/// Bits of the [`tag::FLAGS`] field.
pub mod flag {
    /// The item was longer than the limit and was cut.
    pub const TRUNCATED: u8 = 1;
    /// The item could not be parsed; only its raw bytes are meaningful.
    pub const UNPARSED: u8 = 2;
}

/// A position in a [`BlockBuilder`]: its finished records at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    len: usize,
    count: u32,
}

impl Mark {
    /// Finished records at the mark.
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// Appends records into one contiguous block.
///
/// A record is opened with [`begin`](Self::begin), filled with fields and
/// closed with [`end`](Self::end); [`abandon`](Self::abandon) drops a record
/// that turned out to be malformed half-way, leaving the block as it was.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    count: u32,
    open: Option<usize>,
}

impl BlockBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        BlockBuilder { buf: Vec::with_capacity(bytes), count: 0, open: None }
    }

    /// Starts a record. An unfinished previous record is abandoned.
    pub fn begin(&mut self, kind: Kind, received_at_ms: u64) {
        self.abandon();
        self.open = Some(self.buf.len());
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&received_at_ms.to_le_bytes());
    }

    pub fn bytes(&mut self, tag: u8, value: &[u8]) {
        self.buf.push(tag);
        put_varint(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(value);
    }

    pub fn str(&mut self, tag: u8, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    pub fn u8(&mut self, tag: u8, value: u8) {
        self.bytes(tag, &[value]);
    }

    pub fn u32(&mut self, tag: u8, value: u32) {
        self.bytes(tag, &value.to_le_bytes());
    }

    pub fn u64(&mut self, tag: u8, value: u64) {
        self.bytes(tag, &value.to_le_bytes());
    }

    pub fn f64(&mut self, tag: u8, value: f64) {
        self.bytes(tag, &value.to_le_bytes());
    }

    pub fn i64(&mut self, tag: u8, value: i64) {
        self.bytes(tag, &value.to_le_bytes());
    }

    /// Bytes written since `mark` (the open record included).
    pub fn len_since(&self, mark: Mark) -> usize {
        self.buf.len() - mark.len
    }

    /// One metric label: `klen:varint key value` in a single field.
    pub fn label(&mut self, key: &[u8], value: &[u8]) {
        let klen = varint_len(key.len() as u32);
        let total = klen + key.len() + value.len();
        self.buf.push(tag::LABEL);
        put_varint(&mut self.buf, total as u32);
        put_varint(&mut self.buf, key.len() as u32);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
    }

    /// Closes the open record.
    pub fn end(&mut self) {
        if let Some(start) = self.open.take() {
            let len = (self.buf.len() - start - 4) as u32;
            self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
            self.count += 1;
        }
    }

    /// Appends one whole record as [`records`] read it from another block
    /// (its length prefix included; see [`Records::offset`]).
    pub fn raw(&mut self, record: &[u8]) {
        self.abandon();
        self.buf.extend_from_slice(record);
        self.count += 1;
    }

    /// Drops the open record, if any.
    pub fn abandon(&mut self) {
        if let Some(start) = self.open.take() {
            self.buf.truncate(start);
        }
    }

    /// Number of finished records.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished records so far (an open record is left out).
    pub fn finished(&self) -> &[u8] {
        &self.buf[..self.open.unwrap_or(self.buf.len())]
    }

    /// The finished records (an open record is abandoned first).
    pub fn finish(mut self) -> (Vec<u8>, u32) {
        self.abandon();
        (self.buf, self.count)
    }

    /// Where the block stands now, to [`rollback`](Self::rollback) to.
    pub fn mark(&self) -> Mark {
        Mark { len: self.finished().len(), count: self.count }
    }

    /// Drops everything appended since `mark` was taken (an open record too).
    pub fn rollback(&mut self, mark: Mark) {
        self.open = None;
        self.buf.truncate(mark.len);
        self.count = mark.count;
    }

    /// Empties the builder for reuse, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.open = None;
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u32) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// Reads a LEB128 varint of at most 5 bytes; returns the value and bytes used.
fn get_varint(buf: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    for (i, &b) in buf.iter().take(5).enumerate() {
        let part = u32::from(b & 0x7f);
        if i == 4 && part > 0x0f {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A stored block that does not decode: the data is damaged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated at byte {at}")]
    Truncated { at: usize },
    #[error("unknown record kind {kind} at byte {at}")]
    UnknownKind { kind: u8, at: usize },
    #[error("bad field length at byte {at}")]
    BadField { at: usize },
}

/// One decoded record, borrowing from its block.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub kind: Kind,
    pub received_at_ms: u64,
    fields: &'a [u8],
}

impl<'a> Record<'a> {
    /// Every field in stored order.
    pub fn fields(&self) -> Fields<'a> {
        Fields { rest: self.fields }
    }

    /// The first field with this tag.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.fields().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    pub fn get_u64(&self, tag: u8) -> Option<u64> {
        self.get(tag).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    pub fn get_f64(&self, tag: u8) -> Option<f64> {
        self.get(tag).and_then(|b| b.try_into().ok()).map(f64::from_le_bytes)
    }

    pub fn get_u8(&self, tag: u8) -> Option<u8> {
        self.get(tag).and_then(|b| (b.len() == 1).then(|| b[0]))
    }
}

/// Iterator over `(tag, bytes)`; stops at the first malformed field (the
/// block iterator has already checked every field, so that never happens for
/// records it returned).
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, after) = self.rest.split_first()?;
        let (len, used) = get_varint(after)?;
        let body = after.get(used..used.checked_add(len as usize)?)?;
        self.rest = &after[used + len as usize..];
        Some((tag, body))
    }
}

/// Splits a label field into key and value.
pub fn split_label(field: &[u8]) -> Option<(&[u8], &[u8])> {
    let (klen, used) = get_varint(field)?;
    let key_end = used.checked_add(klen as usize)?;
    Some((field.get(used..key_end)?, field.get(key_end..)?))
}

/// Iterates the records of a block, validating each as it goes.
pub struct Records<'a> {
    block: &'a [u8],
    at: usize,
}

pub fn records(block: &[u8]) -> Records<'_> {
    Records { block, at: 0 }
}

impl Records<'_> {
    /// Where the next record starts in the block.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.block.len() {
            return None;
        }
        let at = self.at;
        let result = parse_record(self.block, at);
        // A damaged record ends the block: its length cannot be trusted.
        self.at = match &result {
            Ok((_, next)) => *next,
            Err(_) => self.block.len(),
        };
        Some(result.map(|(record, _)| record))
    }
}

const RECORD_HEADER: usize = 1 + 8;

fn parse_record(block: &[u8], at: usize) -> Result<(Record<'_>, usize), RecordError> {
    let len_bytes = block.get(at..at + 4).ok_or(RecordError::Truncated { at })?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let start = at + 4;
    let end = start.checked_add(len).ok_or(RecordError::Truncated { at })?;
    let body = block.get(start..end).ok_or(RecordError::Truncated { at })?;
    if body.len() < RECORD_HEADER {
        return Err(RecordError::Truncated { at });
    }
    let kind = Kind::from_u8(body[0]).ok_or(RecordError::UnknownKind { kind: body[0], at })?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&body[1..9]);
    let fields = &body[RECORD_HEADER..];
    check_fields(fields).map_err(|off| RecordError::BadField { at: start + RECORD_HEADER + off })?;
    let record = Record { kind, received_at_ms: u64::from_le_bytes(ts), fields };
    Ok((record, end))
}

/// Checks that `fields` splits exactly into fields; Err carries the offset.
fn check_fields(mut fields: &[u8]) -> Result<(), usize> {
    let total = fields.len();
    while let Some((_, after)) = fields.split_first() {
        let off = total - fields.len();
        let (len, used) = get_varint(after).ok_or(off)?;
        let end = used.checked_add(len as usize).ok_or(off)?;
        if end > after.len() {
            return Err(off);
        }
        fields = &after[end..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_every_field_shape() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Metric, 42);
        b.str(tag::METRIC_NAME, "cpu");
        b.f64(tag::METRIC_VALUE, 0.5);
        b.label(b"host", b"a");
        b.label(b"", b"");
        b.u64(tag::TIMESTAMP, 7);
        b.end();
        b.begin(Kind::Event, 43);
        b.bytes(tag::PAYLOAD, &[0xff; 300]);
        b.end();
        let (block, count) = b.finish();
        assert_eq!(count, 2);
        let got: Vec<_> = records(&block).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0].kind, Kind::Metric);
        assert_eq!(got[0].received_at_ms, 42);
        assert_eq!(got[0].get(tag::METRIC_NAME), Some(&b"cpu"[..]));
        assert_eq!(got[0].get_f64(tag::METRIC_VALUE), Some(0.5));
        assert_eq!(got[0].get_u64(tag::TIMESTAMP), Some(7));
        let labels: Vec<_> =
            got[0].fields().filter(|(t, _)| *t == tag::LABEL).map(|(_, v)| split_label(v).unwrap()).collect();
        assert_eq!(labels, vec![(&b"host"[..], &b"a"[..]), (&b""[..], &b""[..])]);
        assert_eq!(got[1].get(tag::PAYLOAD).unwrap().len(), 300);
    }

    #[test]
    fn abandoned_record_leaves_no_trace() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Log, 1);
        b.str(tag::SERVICE, "kept");
        b.end();
        b.begin(Kind::Log, 2);
        b.str(tag::SERVICE, "dropped");
        b.abandon();
        let (block, count) = b.finish();
        assert_eq!(count, 1);
        assert_eq!(records(&block).count(), 1);
    }

    #[test]
    fn damaged_blocks_error_instead_of_panicking() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Log, 1);
        b.str(tag::SERVICE, "svc");
        b.end();
        let (block, _) = b.finish();
        for cut in 0..block.len() {
            let items: Vec<_> = records(&block[..cut]).collect();
            assert!(items.iter().all(|r| r.is_err()) || cut == 0);
        }
        let mut bad = block.clone();
        bad[4] = 99;
        assert!(matches!(records(&bad).next(), Some(Err(RecordError::UnknownKind { .. }))));
    }

    #[test]
    fn varint_len_matches_the_encoding() {
        for v in [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0x1f_ffff, 0x20_0000, 0xfff_ffff, 0x1000_0000, u32::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v:#x}");
        }
    }

    #[test]
    fn varint_rejects_overlong() {
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]), None);
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some((u32::MAX, 5)));
        assert_eq!(get_varint(&[0x80]), None);
    }
}
