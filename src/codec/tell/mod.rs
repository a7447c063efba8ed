//! Tell batches: the FlatBuffers `Batch` envelope the Tell SDKs send, and the
//! event, log and metric tables inside it, decoded into [`crate::record`] blocks.
//!
//! The layout is the one `tell-encoding` 0.7 (used by the `tell` 0.7 SDK)
//! writes; field ids below are that crate's, which is the wire contract.
//!
//! ```text
//! Batch        0 api_key:[ubyte] (16, required)  1 schema_type:u8  2 version:u8
//!              3 batch_id:u64  4 data:[ubyte] (required)  5 source_ip:[ubyte] (unused)
//!
//! data is a FlatBuffer of its own, chosen by schema_type:
//!   1 EventData  0 events:[Event]       2 LogData  0 logs:[LogEntry]
//!   3 MetricData 0 metrics:[MetricEntry]
//!
//! Event        0 event_type:u8  1 timestamp:u64  2 service:string  3 device_id:[ubyte]
//!              4 session_id:[ubyte]  5 event_name:string  6 payload:[ubyte]
//! LogEntry     0 event_type:u8  1 session_id:[ubyte]  2 level:u8  3 timestamp:u64
//!              4 source:string  5 service:string  6 payload:[ubyte]
//! MetricEntry  0 metric_type:u8  1 timestamp:u64  2 name:string (required)  3 value:f64
//!              4 source:string  5 service:string  6 labels:[Label]  7 temporality:u8
//!              8 histogram:Histogram  9 session_id:[ubyte]  10 int_labels (ignored)
//! Label        0 key:string (required)  1 value:string (required)
//! Histogram    0 count:u64  1 sum:f64  2 buckets:[Bucket]  3 min:f64  4 max:f64
//! Bucket       0 upper_bound:f64  1 count:u64
//! ```
//!
//! Two things about the SDK's bytes shape this decoder:
//!
//! - `tell-encoding` aligns tables to 4 bytes only, so its 8-byte scalars
//!   (`batch_id`, timestamps, metric values, histograms) sit at offsets that
//!   are 4 mod 8, and the histogram's vtable at any offset. The stock
//!   flatbuffers verifier rejects those as unaligned; [`fb`] checks bounds,
//!   not alignment (reads are byte copies either way).
//! - Strings are read as byte vectors, so invalid UTF-8 is accepted and
//!   stored as sent (the record format keeps bytes; readers show them
//!   lossily), and a missing NUL terminator is not an error either.
//!
//! `device_id` and `session_id` are copied as sent: the SDK always sends 16
//! bytes, and another length is kept rather than refusing the whole batch.
//!
//! Absent scalars take their schema default (0; the SDK always writes them).
//! Absent optional strings and vectors produce no field at all. Fields that
//! are never stored (`source_ip`, `int_labels`) are never read, so never
//! checked either.
//!
//! Decoding is two-step and reads every byte once: [`decode_batch`] reads
//! only the envelope (enough to check the key before touching the payload);
//! [`append_items`] reads the payload, bounds-checking each offset as it
//! follows it (see [`fb`] for the limits), and on any error takes back what
//! it appended, so a bad batch leaves the block untouched.

use thiserror::Error;

use crate::record::{BlockBuilder, Kind, tag};

pub use fb::Malformed;

/// Length of a Tell API key (streaming key) in bytes.
pub const API_KEY_LEN: usize = 16;

/// What a batch's `data` holds (`schema_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Event,
    Log,
    Metric,
    /// Unknown (0) or a type sluice does not take (trace, snapshot, …).
    Other(u8),
}

impl Schema {
    pub fn from_u8(b: u8) -> Schema {
        match b {
            1 => Schema::Event,
            2 => Schema::Log,
            3 => Schema::Metric,
            other => Schema::Other(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Schema::Event => 1,
            Schema::Log => 2,
            Schema::Metric => 3,
            Schema::Other(b) => b,
        }
    }
}

/// A verified `Batch` envelope, borrowing its payload from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchView<'a> {
    pub api_key: [u8; API_KEY_LEN],
    pub schema: Schema,
    /// Protocol version (the SDK sends 100); 0 when absent.
    pub version: u8,
    /// 0 when absent (the SDK omits it when it is 0).
    pub batch_id: u64,
    /// The schema's own FlatBuffer (EventData, LogData or MetricData).
    pub data: &'a [u8],
}

/// Which buffer is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The `Batch` envelope.
    Envelope,
    /// The `data` payload (EventData, LogData or MetricData).
    Data,
}

/// Why a Tell batch was refused. Every variant means "malformed, do not
/// retry as is" except [`TellError::UnsupportedSchema`], which is a well
/// formed batch of a kind this build does not store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TellError {
    #[error("malformed Tell batch ({part:?}): {source}")]
    Malformed {
        part: Part,
        #[source]
        source: Malformed,
    },
    #[error("Tell api key is {len} bytes, expected {API_KEY_LEN}")]
    BadKeyLength { len: usize },
    #[error("unsupported Tell schema type {schema}")]
    UnsupportedSchema { schema: u8 },
}

/// Field ids of the tables read here (their order in the schema above).
mod field {
    pub mod batch {
        pub const API_KEY: usize = 0;
        pub const SCHEMA_TYPE: usize = 1;
        pub const VERSION: usize = 2;
        pub const BATCH_ID: usize = 3;
        pub const DATA: usize = 4;
    }
    /// `events`, `logs` and `metrics` of EventData, LogData and MetricData.
    pub const ITEMS: usize = 0;
    pub mod event {
        pub const EVENT_TYPE: usize = 0;
        pub const TIMESTAMP: usize = 1;
        pub const SERVICE: usize = 2;
        pub const DEVICE_ID: usize = 3;
        pub const SESSION_ID: usize = 4;
        pub const EVENT_NAME: usize = 5;
        pub const PAYLOAD: usize = 6;
    }
    pub mod log {
        pub const EVENT_TYPE: usize = 0;
        pub const SESSION_ID: usize = 1;
        pub const LEVEL: usize = 2;
        pub const TIMESTAMP: usize = 3;
        pub const SOURCE: usize = 4;
        pub const SERVICE: usize = 5;
        pub const PAYLOAD: usize = 6;
    }
    pub mod metric {
        pub const METRIC_TYPE: usize = 0;
        pub const TIMESTAMP: usize = 1;
        pub const NAME: usize = 2;
        pub const VALUE: usize = 3;
        pub const SOURCE: usize = 4;
        pub const SERVICE: usize = 5;
        pub const LABELS: usize = 6;
        pub const TEMPORALITY: usize = 7;
        pub const HISTOGRAM: usize = 8;
        pub const SESSION_ID: usize = 9;
    }
    pub mod label {
        pub const KEY: usize = 0;
        pub const VALUE: usize = 1;
    }
    pub mod histogram {
        pub const COUNT: usize = 0;
        pub const SUM: usize = 1;
        pub const BUCKETS: usize = 2;
        pub const MIN: usize = 3;
        pub const MAX: usize = 4;
    }
    pub mod bucket {
        pub const UPPER_BOUND: usize = 0;
        pub const COUNT: usize = 1;
    }
}

/// Reads the envelope only (cheap): key, schema, id, data slice.
pub fn decode_batch(buf: &[u8]) -> Result<BatchView<'_>, TellError> {
    let malformed = |source| TellError::Malformed { part: Part::Envelope, source };
    let buffer = fb::Buffer::new(buf);
    let batch = buffer.root().map_err(malformed)?;
    let read = || -> Result<_, Malformed> {
        use field::batch::*;
        let key = batch.required_bytes(API_KEY, "api_key")?;
        let data = batch.required_bytes(DATA, "data")?;
        Ok((key, batch.u8(SCHEMA_TYPE)?, batch.u8(VERSION)?, batch.u64(BATCH_ID)?, data))
    };
    let (key, schema, version, batch_id, data) = read().map_err(malformed)?;
    let api_key = key.try_into().map_err(|_| TellError::BadKeyLength { len: key.len() })?;
    Ok(BatchView { api_key, schema: Schema::from_u8(schema), version, batch_id, data })
}

/// The bytes of a batch [`peek_api_key`] needs at most. A frame over
/// `max_untrusted_bytes` from a peer without a valid key yet is judged by
/// the key in what arrived with its header, so `sluice::client` writes this
/// much of the batch together with the header.
pub const KEY_PREFIX_BYTES: usize = 256;

/// Reads the api key from the first bytes of a `Batch` whose rest has not
/// arrived yet: `None` when the key does not lie within `prefix` (or the
/// bytes are not a plausible batch). Every offset is bounds-checked against
/// `prefix`; nothing is trusted beyond the key, and the whole batch is still
/// verified by [`decode_batch`] once it is complete. `tell-encoding` writes
/// the key's vector right after the table, within the first ~80 bytes, so a
/// reader can check the key before holding the rest of a large frame.
pub fn peek_api_key(prefix: &[u8]) -> Option<[u8; API_KEY_LEN]> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = prefix.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u16_at = |at: usize| -> Option<usize> {
        let b = prefix.get(at..at.checked_add(2)?)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let table = u32_at(0)?;
    // The vtable sits at table - soffset (a signed 32-bit distance).
    let soffset = i32::from_le_bytes(prefix.get(table..table.checked_add(4)?)?.try_into().ok()?);
    let vtable = usize::try_from(i64::try_from(table).ok()? - i64::from(soffset)).ok()?;
    let vtable_len = u16_at(vtable)?;
    // Field 0 (api_key) has its slot at vtable + 4, if the vtable is that long.
    if vtable_len < 6 {
        return None;
    }
    let field = u16_at(vtable.checked_add(4)?)?;
    if field == 0 {
        return None;
    }
    let slot = table.checked_add(field)?;
    let vector = slot.checked_add(u32_at(slot)?)?;
    if u32_at(vector)? != API_KEY_LEN {
        return None;
    }
    let start = vector.checked_add(4)?;
    prefix.get(start..start.checked_add(API_KEY_LEN)?)?.try_into().ok()
}

/// Decodes every item of `view.data` into `out`, all or nothing: on error
/// `out` is exactly as before the call. Returns the number of records
/// appended.
pub fn append_items(view: &BatchView<'_>, received_at_ms: u64, out: &mut BlockBuilder) -> Result<u32, TellError> {
    let append: fn(fb::Table<'_, '_>, u64, &mut BlockBuilder, &mut Vec<u8>) -> Result<(), Malformed> = match view.schema
    {
        Schema::Event => append_event,
        Schema::Log => append_log,
        Schema::Metric => append_metric,
        Schema::Other(schema) => return Err(TellError::UnsupportedSchema { schema }),
    };
    let mark = out.mark();
    let buffer = fb::Buffer::new(view.data);
    // One scratch buffer for every histogram of the batch; it only
    // allocates if a histogram is present.
    let mut scratch = Vec::new();
    let mut read = || -> Result<(), Malformed> {
        for item in buffer.root()?.required_tables(field::ITEMS, "items")? {
            append(item?, received_at_ms, out, &mut scratch)?;
        }
        Ok(())
    };
    if let Err(source) = read() {
        out.rollback(mark);
        return Err(TellError::Malformed { part: Part::Data, source });
    }
    Ok(out.count() - mark.count())
}

fn put(out: &mut BlockBuilder, tag: u8, value: Option<&[u8]>) {
    if let Some(value) = value {
        out.bytes(tag, value);
    }
}

fn append_event(
    e: fb::Table<'_, '_>,
    received_at_ms: u64,
    out: &mut BlockBuilder,
    _: &mut Vec<u8>,
) -> Result<(), Malformed> {
    use field::event::*;
    out.begin(Kind::Event, received_at_ms);
    out.u64(tag::TIMESTAMP, e.u64(TIMESTAMP)?);
    put(out, tag::SERVICE, e.bytes(SERVICE)?);
    put(out, tag::DEVICE_ID, e.bytes(DEVICE_ID)?);
    put(out, tag::SESSION_ID, e.bytes(SESSION_ID)?);
    put(out, tag::EVENT_NAME, e.bytes(EVENT_NAME)?);
    put(out, tag::PAYLOAD, e.bytes(PAYLOAD)?);
    out.u8(tag::EVENT_TYPE, e.u8(EVENT_TYPE)?);
    out.end();
    Ok(())
}

fn append_log(
    l: fb::Table<'_, '_>,
    received_at_ms: u64,
    out: &mut BlockBuilder,
    _: &mut Vec<u8>,
) -> Result<(), Malformed> {
    use field::log::*;
    out.begin(Kind::Log, received_at_ms);
    out.u64(tag::TIMESTAMP, l.u64(TIMESTAMP)?);
    put(out, tag::SESSION_ID, l.bytes(SESSION_ID)?);
    out.u8(tag::LEVEL, l.u8(LEVEL)?);
    put(out, tag::SOURCE, l.bytes(SOURCE)?);
    put(out, tag::SERVICE, l.bytes(SERVICE)?);
    put(out, tag::PAYLOAD, l.bytes(PAYLOAD)?);
    out.u8(tag::LOG_TYPE, l.u8(EVENT_TYPE)?);
    out.end();
    Ok(())
}

fn append_metric(
    m: fb::Table<'_, '_>,
    received_at_ms: u64,
    out: &mut BlockBuilder,
    scratch: &mut Vec<u8>,
) -> Result<(), Malformed> {
    use field::metric::*;
    out.begin(Kind::Metric, received_at_ms);
    out.u64(tag::TIMESTAMP, m.u64(TIMESTAMP)?);
    out.bytes(tag::METRIC_NAME, m.required_bytes(NAME, "name")?);
    out.f64(tag::METRIC_VALUE, m.f64(VALUE)?);
    put(out, tag::SOURCE, m.bytes(SOURCE)?);
    put(out, tag::SERVICE, m.bytes(SERVICE)?);
    for label in m.tables(LABELS)?.into_iter().flatten() {
        let label = label?;
        out.label(label.required_bytes(field::label::KEY, "key")?, label.required_bytes(field::label::VALUE, "value")?);
    }
    out.u8(tag::METRIC_TYPE, m.u8(METRIC_TYPE)?);
    out.u8(tag::TEMPORALITY, m.u8(TEMPORALITY)?);
    put(out, tag::SESSION_ID, m.bytes(SESSION_ID)?);
    if let Some(histogram) = m.table(HISTOGRAM)? {
        encode_histogram(histogram, scratch)?;
        out.bytes(tag::HISTOGRAM, scratch);
    }
    out.end();
    Ok(())
}

/// `count:u64le sum:f64le min:f64le max:f64le (upper:f64le count:u64le)*`.
fn encode_histogram(h: fb::Table<'_, '_>, scratch: &mut Vec<u8>) -> Result<(), Malformed> {
    use field::histogram::*;
    scratch.clear();
    scratch.extend_from_slice(&h.u64(COUNT)?.to_le_bytes());
    scratch.extend_from_slice(&h.f64(SUM)?.to_le_bytes());
    scratch.extend_from_slice(&h.f64(MIN)?.to_le_bytes());
    scratch.extend_from_slice(&h.f64(MAX)?.to_le_bytes());
    for bucket in h.tables(BUCKETS)?.into_iter().flatten() {
        let bucket = bucket?;
        scratch.extend_from_slice(&bucket.f64(field::bucket::UPPER_BOUND)?.to_le_bytes());
        scratch.extend_from_slice(&bucket.u64(field::bucket::COUNT)?.to_le_bytes());
    }
    Ok(())
}

mod fb;
#[cfg(test)]
mod tests;
