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
//!   are 4 mod 8. The stock flatbuffers verifier rejects those as unaligned,
//!   so 8-byte scalars are read through `fb::LeU64` / `fb::LeF64`, which
//!   check bounds but not alignment (reads are byte copies either way).
//! - Strings are read as byte vectors, so invalid UTF-8 is accepted and
//!   stored as sent (the record format keeps bytes; readers show them
//!   lossily), and a missing NUL terminator is not an error either.
//!
//! `device_id` and `session_id` are copied as sent: the SDK always sends 16
//! bytes, and another length is kept rather than refusing the whole batch.
//!
//! Absent scalars take their schema default (0; the SDK always writes them).
//! Absent optional strings and vectors produce no field at all.
//!
//! Decoding is two-step: [`decode_batch`] verifies only the envelope (cheap;
//! enough to check the key before touching the payload), [`append_items`]
//! verifies the whole payload first and only then appends, so appending can
//! no longer fail half-way and a bad batch leaves the block untouched.

use flatbuffers::{InvalidFlatbuffer, VerifierOptions};
use thiserror::Error;

use crate::record::{BlockBuilder, Kind, tag};

/// Length of a Tell API key (streaming key) in bytes.
pub const API_KEY_LEN: usize = 16;

/// Deepest nesting a valid payload has: MetricData → MetricEntry → Histogram
/// → Bucket is 4; the rest is headroom for schema growth.
const MAX_DEPTH: usize = 8;
/// Verification work allowed per input byte. An honest buffer's "apparent
/// size" (every table, vector and scalar visited, vtables once per table) is
/// at most about 1.3× its length (measured; bucket-heavy histograms are the
/// worst); a buffer whose offsets point many times at the same bytes expands
/// beyond that, and would also expand the output.
const APPARENT_SIZE_PER_BYTE: usize = 2;
/// Floor for the apparent-size limit, so tiny buffers are not judged by ratio.
const MIN_APPARENT_SIZE: usize = 64 << 10;
/// A table costs at least 8 bytes of input (its offset slot and its vtable
/// offset), so an honest buffer never holds more than `len / 8` tables.
const MIN_BYTES_PER_TABLE: usize = 8;

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

/// Which buffer failed verification.
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
    Verify {
        part: Part,
        #[source]
        source: InvalidFlatbuffer,
    },
    #[error("Tell api key is {len} bytes, expected {API_KEY_LEN}")]
    BadKeyLength { len: usize },
    #[error("unsupported Tell schema type {schema}")]
    UnsupportedSchema { schema: u8 },
}

/// Verification limits for a buffer of `len` bytes: proportional to the
/// input, so verification time and output size stay linear in it.
fn verifier_options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: MAX_DEPTH,
        max_tables: len / MIN_BYTES_PER_TABLE + 16,
        max_apparent_size: len.saturating_mul(APPARENT_SIZE_PER_BYTE).max(MIN_APPARENT_SIZE),
        ignore_missing_null_terminator: true,
    }
}

/// Verifies the envelope only (cheap): key, schema, id, data slice.
pub fn decode_batch(buf: &[u8]) -> Result<BatchView<'_>, TellError> {
    let opts = verifier_options(buf.len());
    let batch = flatbuffers::root_with_opts::<fb::Batch>(&opts, buf)
        .map_err(|source| TellError::Verify { part: Part::Envelope, source })?;
    let key = batch.api_key().unwrap_or_default();
    let api_key = key.try_into().map_err(|_| TellError::BadKeyLength { len: key.len() })?;
    Ok(BatchView {
        api_key,
        schema: Schema::from_u8(batch.schema_type()),
        version: batch.version(),
        batch_id: batch.batch_id(),
        data: batch.data().unwrap_or_default(),
    })
}

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
    let before = out.count();
    let opts = verifier_options(view.data.len());
    let verify = |source| TellError::Verify { part: Part::Data, source };
    match view.schema {
        Schema::Event => {
            let data = flatbuffers::root_with_opts::<fb::EventData>(&opts, view.data).map_err(verify)?;
            for event in data.events().into_iter().flatten() {
                append_event(event, received_at_ms, out);
            }
        }
        Schema::Log => {
            let data = flatbuffers::root_with_opts::<fb::LogData>(&opts, view.data).map_err(verify)?;
            for log in data.logs().into_iter().flatten() {
                append_log(log, received_at_ms, out);
            }
        }
        Schema::Metric => {
            let data = flatbuffers::root_with_opts::<fb::MetricData>(&opts, view.data).map_err(verify)?;
            // One scratch buffer for every histogram of the batch; it only
            // allocates if a histogram is present.
            let mut scratch = Vec::new();
            for metric in data.metrics().into_iter().flatten() {
                append_metric(metric, received_at_ms, out, &mut scratch);
            }
        }
        Schema::Other(schema) => return Err(TellError::UnsupportedSchema { schema }),
    }
    Ok(out.count() - before)
}

fn put(out: &mut BlockBuilder, tag: u8, value: Option<&[u8]>) {
    if let Some(value) = value {
        out.bytes(tag, value);
    }
}

fn append_event(event: fb::Event<'_>, received_at_ms: u64, out: &mut BlockBuilder) {
    out.begin(Kind::Event, received_at_ms);
    out.u64(tag::TIMESTAMP, event.timestamp());
    put(out, tag::SERVICE, event.service());
    put(out, tag::DEVICE_ID, event.device_id());
    put(out, tag::SESSION_ID, event.session_id());
    put(out, tag::EVENT_NAME, event.event_name());
    put(out, tag::PAYLOAD, event.payload());
    out.u8(tag::EVENT_TYPE, event.event_type());
    out.end();
}

fn append_log(log: fb::LogEntry<'_>, received_at_ms: u64, out: &mut BlockBuilder) {
    out.begin(Kind::Log, received_at_ms);
    out.u64(tag::TIMESTAMP, log.timestamp());
    put(out, tag::SESSION_ID, log.session_id());
    out.u8(tag::LEVEL, log.level());
    put(out, tag::SOURCE, log.source());
    put(out, tag::SERVICE, log.service());
    put(out, tag::PAYLOAD, log.payload());
    out.u8(tag::LOG_TYPE, log.event_type());
    out.end();
}

fn append_metric(metric: fb::MetricEntry<'_>, received_at_ms: u64, out: &mut BlockBuilder, scratch: &mut Vec<u8>) {
    out.begin(Kind::Metric, received_at_ms);
    out.u64(tag::TIMESTAMP, metric.timestamp());
    put(out, tag::METRIC_NAME, metric.name());
    out.f64(tag::METRIC_VALUE, metric.value());
    put(out, tag::SOURCE, metric.source());
    put(out, tag::SERVICE, metric.service());
    for label in metric.labels().into_iter().flatten() {
        out.label(label.key().unwrap_or_default(), label.value().unwrap_or_default());
    }
    out.u8(tag::METRIC_TYPE, metric.metric_type());
    out.u8(tag::TEMPORALITY, metric.temporality());
    put(out, tag::SESSION_ID, metric.session_id());
    if let Some(histogram) = metric.histogram() {
        encode_histogram(histogram, scratch);
        out.bytes(tag::HISTOGRAM, scratch);
    }
    out.end();
}

/// `count:u64le sum:f64le min:f64le max:f64le (upper:f64le count:u64le)*`.
fn encode_histogram(h: fb::Histogram<'_>, scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(&h.count().to_le_bytes());
    scratch.extend_from_slice(&h.sum().to_le_bytes());
    scratch.extend_from_slice(&h.min().to_le_bytes());
    scratch.extend_from_slice(&h.max().to_le_bytes());
    for bucket in h.buckets().into_iter().flatten() {
        scratch.extend_from_slice(&bucket.upper_bound().to_le_bytes());
        scratch.extend_from_slice(&bucket.count().to_le_bytes());
    }
}

mod fb;
#[cfg(test)]
mod tests;
