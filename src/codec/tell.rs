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

/// Accessors for the Tell tables, written the way `flatc` generates them:
/// a struct around [`Table`](flatbuffers::Table), `Follow` to reach it and
/// `Verifiable` to check it. Every accessor reads a field with exactly the
/// type its verifier checked, which is what makes the `unsafe` reads sound.
mod fb {
    use flatbuffers::{
        Follow, ForwardsUOffset, InvalidFlatbuffer, Table, VOffsetT, Vector, VectorIter, Verifiable, Verifier,
    };

    /// A little-endian `u64` at any offset (see the module docs on alignment).
    pub struct LeU64;

    /// A little-endian `f64` at any offset.
    pub struct LeF64;

    fn read8(buf: &[u8], loc: usize) -> [u8; 8] {
        // Verified in bounds; the fallback only keeps this free of panics.
        buf.get(loc..).and_then(|b| b.first_chunk::<8>()).copied().unwrap_or_default()
    }

    impl<'a> Follow<'a> for LeU64 {
        type Inner = u64;
        unsafe fn follow(buf: &'a [u8], loc: usize) -> u64 {
            u64::from_le_bytes(read8(buf, loc))
        }
    }

    impl<'a> Follow<'a> for LeF64 {
        type Inner = f64;
        unsafe fn follow(buf: &'a [u8], loc: usize) -> f64 {
            f64::from_le_bytes(read8(buf, loc))
        }
    }

    impl Verifiable for LeU64 {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.range_in_buffer(pos, 8)
        }
    }

    impl Verifiable for LeF64 {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.range_in_buffer(pos, 8)
        }
    }

    /// `[ubyte]` and `string` alike: a string is a byte vector plus a NUL.
    type Bytes<'a> = ForwardsUOffset<Vector<'a, u8>>;
    /// `[T]` for a table type `T`.
    type Tables<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;

    /// vtable slot of field `id`.
    const fn slot(id: VOffsetT) -> VOffsetT {
        4 + 2 * id
    }

    macro_rules! table {
        ($name:ident) => {
            #[derive(Clone, Copy)]
            pub struct $name<'a> {
                tab: Table<'a>,
            }

            impl<'a> Follow<'a> for $name<'a> {
                type Inner = $name<'a>;
                unsafe fn follow(buf: &'a [u8], loc: usize) -> Self {
                    // SAFETY: the caller guarantees a verified table at `loc`.
                    $name { tab: unsafe { Table::new(buf, loc) } }
                }
            }
        };
    }

    /// Field readers shared by every table type.
    trait Fields<'a> {
        fn tab(&self) -> &Table<'a>;

        fn u8(&self, id: VOffsetT) -> u8 {
            // SAFETY: the table's verifier checked field `id` as a u8.
            unsafe { self.tab().get::<u8>(slot(id), Some(0)) }.unwrap_or(0)
        }

        fn u64(&self, id: VOffsetT) -> u64 {
            // SAFETY: the table's verifier checked field `id` as an LeU64.
            unsafe { self.tab().get::<LeU64>(slot(id), Some(0)) }.unwrap_or(0)
        }

        fn f64(&self, id: VOffsetT) -> f64 {
            // SAFETY: the table's verifier checked field `id` as an LeF64.
            unsafe { self.tab().get::<LeF64>(slot(id), Some(0.0)) }.unwrap_or(0.0)
        }

        fn bytes(&self, id: VOffsetT) -> Option<&'a [u8]> {
            // SAFETY: the table's verifier checked field `id` as a byte vector.
            unsafe { self.tab().get::<Bytes<'a>>(slot(id), None) }.map(|v| v.bytes())
        }

        fn tables<T: Follow<'a> + 'a>(&self, id: VOffsetT) -> Option<VectorIter<'a, ForwardsUOffset<T>>> {
            // SAFETY: the table's verifier checked field `id` as a vector of T.
            unsafe { self.tab().get::<Tables<'a, T>>(slot(id), None) }.map(|v| v.iter())
        }
    }

    macro_rules! fields {
        ($name:ident) => {
            impl<'a> Fields<'a> for $name<'a> {
                fn tab(&self) -> &Table<'a> {
                    &self.tab
                }
            }
        };
    }

    table!(Batch);
    fields!(Batch);
    impl<'a> Batch<'a> {
        pub fn api_key(&self) -> Option<&'a [u8]> {
            self.bytes(0)
        }
        pub fn schema_type(&self) -> u8 {
            self.u8(1)
        }
        pub fn version(&self) -> u8 {
            self.u8(2)
        }
        pub fn batch_id(&self) -> u64 {
            self.u64(3)
        }
        pub fn data(&self) -> Option<&'a [u8]> {
            self.bytes(4)
        }
    }
    impl Verifiable for Batch<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            // source_ip (5) is never read, so it is not verified either.
            v.visit_table(pos)?
                .visit_field::<Bytes>("api_key", slot(0), true)?
                .visit_field::<u8>("schema_type", slot(1), false)?
                .visit_field::<u8>("version", slot(2), false)?
                .visit_field::<LeU64>("batch_id", slot(3), false)?
                .visit_field::<Bytes>("data", slot(4), true)?
                .finish();
            Ok(())
        }
    }

    table!(EventData);
    fields!(EventData);
    impl<'a> EventData<'a> {
        pub fn events(&self) -> Option<VectorIter<'a, ForwardsUOffset<Event<'a>>>> {
            self.tables(0)
        }
    }
    impl Verifiable for EventData<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?.visit_field::<Tables<Event>>("events", slot(0), true)?.finish();
            Ok(())
        }
    }

    table!(Event);
    fields!(Event);
    impl<'a> Event<'a> {
        pub fn event_type(&self) -> u8 {
            self.u8(0)
        }
        pub fn timestamp(&self) -> u64 {
            self.u64(1)
        }
        pub fn service(&self) -> Option<&'a [u8]> {
            self.bytes(2)
        }
        pub fn device_id(&self) -> Option<&'a [u8]> {
            self.bytes(3)
        }
        pub fn session_id(&self) -> Option<&'a [u8]> {
            self.bytes(4)
        }
        pub fn event_name(&self) -> Option<&'a [u8]> {
            self.bytes(5)
        }
        pub fn payload(&self) -> Option<&'a [u8]> {
            self.bytes(6)
        }
    }
    impl Verifiable for Event<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<u8>("event_type", slot(0), false)?
                .visit_field::<LeU64>("timestamp", slot(1), false)?
                .visit_field::<Bytes>("service", slot(2), false)?
                .visit_field::<Bytes>("device_id", slot(3), false)?
                .visit_field::<Bytes>("session_id", slot(4), false)?
                .visit_field::<Bytes>("event_name", slot(5), false)?
                .visit_field::<Bytes>("payload", slot(6), false)?
                .finish();
            Ok(())
        }
    }

    table!(LogData);
    fields!(LogData);
    impl<'a> LogData<'a> {
        pub fn logs(&self) -> Option<VectorIter<'a, ForwardsUOffset<LogEntry<'a>>>> {
            self.tables(0)
        }
    }
    impl Verifiable for LogData<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?.visit_field::<Tables<LogEntry>>("logs", slot(0), true)?.finish();
            Ok(())
        }
    }

    table!(LogEntry);
    fields!(LogEntry);
    impl<'a> LogEntry<'a> {
        pub fn event_type(&self) -> u8 {
            self.u8(0)
        }
        pub fn session_id(&self) -> Option<&'a [u8]> {
            self.bytes(1)
        }
        pub fn level(&self) -> u8 {
            self.u8(2)
        }
        pub fn timestamp(&self) -> u64 {
            self.u64(3)
        }
        pub fn source(&self) -> Option<&'a [u8]> {
            self.bytes(4)
        }
        pub fn service(&self) -> Option<&'a [u8]> {
            self.bytes(5)
        }
        pub fn payload(&self) -> Option<&'a [u8]> {
            self.bytes(6)
        }
    }
    impl Verifiable for LogEntry<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<u8>("event_type", slot(0), false)?
                .visit_field::<Bytes>("session_id", slot(1), false)?
                .visit_field::<u8>("level", slot(2), false)?
                .visit_field::<LeU64>("timestamp", slot(3), false)?
                .visit_field::<Bytes>("source", slot(4), false)?
                .visit_field::<Bytes>("service", slot(5), false)?
                .visit_field::<Bytes>("payload", slot(6), false)?
                .finish();
            Ok(())
        }
    }

    table!(MetricData);
    fields!(MetricData);
    impl<'a> MetricData<'a> {
        pub fn metrics(&self) -> Option<VectorIter<'a, ForwardsUOffset<MetricEntry<'a>>>> {
            self.tables(0)
        }
    }
    impl Verifiable for MetricData<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?.visit_field::<Tables<MetricEntry>>("metrics", slot(0), true)?.finish();
            Ok(())
        }
    }

    table!(MetricEntry);
    fields!(MetricEntry);
    impl<'a> MetricEntry<'a> {
        pub fn metric_type(&self) -> u8 {
            self.u8(0)
        }
        pub fn timestamp(&self) -> u64 {
            self.u64(1)
        }
        pub fn name(&self) -> Option<&'a [u8]> {
            self.bytes(2)
        }
        pub fn value(&self) -> f64 {
            self.f64(3)
        }
        pub fn source(&self) -> Option<&'a [u8]> {
            self.bytes(4)
        }
        pub fn service(&self) -> Option<&'a [u8]> {
            self.bytes(5)
        }
        pub fn labels(&self) -> Option<VectorIter<'a, ForwardsUOffset<Label<'a>>>> {
            self.tables(6)
        }
        pub fn temporality(&self) -> u8 {
            self.u8(7)
        }
        pub fn histogram(&self) -> Option<Histogram<'a>> {
            // SAFETY: the verifier checked field 8 as a Histogram table.
            unsafe { self.tab.get::<ForwardsUOffset<Histogram<'a>>>(slot(8), None) }
        }
        pub fn session_id(&self) -> Option<&'a [u8]> {
            self.bytes(9)
        }
    }
    impl Verifiable for MetricEntry<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            // int_labels (10) is never read, so it is not verified either.
            v.visit_table(pos)?
                .visit_field::<u8>("metric_type", slot(0), false)?
                .visit_field::<LeU64>("timestamp", slot(1), false)?
                .visit_field::<Bytes>("name", slot(2), true)?
                .visit_field::<LeF64>("value", slot(3), false)?
                .visit_field::<Bytes>("source", slot(4), false)?
                .visit_field::<Bytes>("service", slot(5), false)?
                .visit_field::<Tables<Label>>("labels", slot(6), false)?
                .visit_field::<u8>("temporality", slot(7), false)?
                .visit_field::<ForwardsUOffset<Histogram>>("histogram", slot(8), false)?
                .visit_field::<Bytes>("session_id", slot(9), false)?
                .finish();
            Ok(())
        }
    }

    table!(Label);
    fields!(Label);
    impl<'a> Label<'a> {
        pub fn key(&self) -> Option<&'a [u8]> {
            self.bytes(0)
        }
        pub fn value(&self) -> Option<&'a [u8]> {
            self.bytes(1)
        }
    }
    impl Verifiable for Label<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<Bytes>("key", slot(0), true)?
                .visit_field::<Bytes>("value", slot(1), true)?
                .finish();
            Ok(())
        }
    }

    table!(Histogram);
    fields!(Histogram);
    impl<'a> Histogram<'a> {
        pub fn count(&self) -> u64 {
            self.u64(0)
        }
        pub fn sum(&self) -> f64 {
            self.f64(1)
        }
        pub fn buckets(&self) -> Option<VectorIter<'a, ForwardsUOffset<Bucket<'a>>>> {
            self.tables(2)
        }
        pub fn min(&self) -> f64 {
            self.f64(3)
        }
        pub fn max(&self) -> f64 {
            self.f64(4)
        }
    }
    impl Verifiable for Histogram<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            // tell-encoding writes this vtable straight after the last label
            // string, at any offset: see `LooseTable`.
            let table = LooseTable::visit(v, pos)?;
            table.visit_field::<LeU64>(v, slot(0))?;
            table.visit_field::<LeF64>(v, slot(1))?;
            table.visit_field::<Tables<Bucket>>(v, slot(2))?;
            table.visit_field::<LeF64>(v, slot(3))?;
            table.visit_field::<LeF64>(v, slot(4))
        }
    }

    /// A table checked like `Verifier::visit_table` does, except that its
    /// vtable may sit at an odd offset (the stock verifier insists on 2-byte
    /// alignment). Reads go through `Verifier::get_u8`, which checks bounds
    /// and counts towards the apparent size; the table itself must still be
    /// 4-aligned. Field lookup mirrors `VTable::get`, which the accessors use.
    struct LooseTable {
        pos: usize,
        vtable: usize,
        vtable_len: usize,
    }

    impl LooseTable {
        fn visit(v: &mut Verifier, pos: usize) -> Result<LooseTable, InvalidFlatbuffer> {
            let soffset = v.get_uoffset(pos)? as i32;
            // Signed offsets point backwards when positive (FlatBuffers' rule).
            let vtable = if soffset > 0 {
                pos.checked_sub(soffset.unsigned_abs() as usize)
            } else {
                pos.checked_add(soffset.unsigned_abs() as usize)
            };
            let vtable = vtable.ok_or(InvalidFlatbuffer::SignedOffsetOutOfBounds {
                soffset,
                position: pos,
                error_trace: Default::default(),
            })?;
            let vtable_len = usize::from(read_u16(v, vtable)?);
            v.range_in_buffer(vtable, vtable_len)?;
            Ok(LooseTable { pos, vtable, vtable_len })
        }

        fn visit_field<T: Verifiable>(&self, v: &mut Verifier, slot: VOffsetT) -> Result<(), InvalidFlatbuffer> {
            let slot = usize::from(slot);
            if slot + 2 > self.vtable_len {
                return Ok(());
            }
            match read_u16(v, self.vtable + slot)? {
                0 => Ok(()),
                offset => T::run_verifier(v, self.pos.saturating_add(usize::from(offset))),
            }
        }
    }

    /// A little-endian u16 at any offset, bounds-checked.
    fn read_u16(v: &mut Verifier, pos: usize) -> Result<u16, InvalidFlatbuffer> {
        Ok(u16::from_le_bytes([v.get_u8(pos)?, v.get_u8(pos.saturating_add(1))?]))
    }

    table!(Bucket);
    fields!(Bucket);
    impl Bucket<'_> {
        pub fn upper_bound(&self) -> f64 {
            self.f64(0)
        }
        pub fn count(&self) -> u64 {
            self.u64(1)
        }
    }
    impl Verifiable for Bucket<'_> {
        fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            v.visit_table(pos)?
                .visit_field::<LeF64>("upper_bound", slot(0), false)?
                .visit_field::<LeU64>("count", slot(1), false)?
                .finish();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, records, split_label};
    use flatbuffers::{FlatBufferBuilder, WIPOffset};
    use proptest::prelude::*;
    use tell_encoding::{
        BatchParams, EventParams, EventType, HistogramParams, LabelParam, LogEntryParams, LogEventType, LogLevel,
        MetricEntryParams, MetricType, SchemaType, Temporality, encode_batch, encode_event_data_into,
        encode_log_data_into, encode_metric_data_into,
    };

    const KEY: [u8; 16] = *b"0123456789abcdef";
    const DEVICE: [u8; 16] = [0xd1; 16];
    const SESSION: [u8; 16] = [0x5e; 16];
    const RECEIVED: u64 = 1_700_000_000_123;

    fn batch(schema_type: SchemaType, batch_id: u64, data: &[u8]) -> Vec<u8> {
        encode_batch(&BatchParams { api_key: &KEY, schema_type, version: 0, batch_id, data })
    }

    fn events_batch(events: &[EventParams<'_>]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_event_data_into(&mut data, events);
        batch(SchemaType::Event, 7, &data)
    }

    fn logs_batch(logs: &[LogEntryParams<'_>]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_log_data_into(&mut data, logs);
        batch(SchemaType::Log, 8, &data)
    }

    fn metrics_batch(metrics: &[MetricEntryParams<'_>]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_metric_data_into(&mut data, metrics);
        batch(SchemaType::Metric, 9, &data)
    }

    /// Decodes a whole batch into a fresh block.
    fn decode(buf: &[u8]) -> Result<(Vec<u8>, u32), TellError> {
        let view = decode_batch(buf)?;
        let mut out = BlockBuilder::default();
        let n = append_items(&view, RECEIVED, &mut out)?;
        let (block, count) = out.finish();
        assert_eq!(n, count);
        Ok((block, count))
    }

    fn all(block: &[u8]) -> Vec<Record<'_>> {
        records(block).collect::<Result<_, _>>().expect("block decodes")
    }

    /// Every field of a record, in stored order.
    fn fields(r: &Record<'_>) -> Vec<(u8, Vec<u8>)> {
        r.fields().map(|(t, v)| (t, v.to_vec())).collect()
    }

    fn f(tag: u8, v: impl AsRef<[u8]>) -> (u8, Vec<u8>) {
        (tag, v.as_ref().to_vec())
    }

    fn full_event(payload: &[u8]) -> EventParams<'_> {
        EventParams {
            event_type: EventType::Identify,
            timestamp: 1_700_000_000_000,
            service: Some("checkout"),
            device_id: Some(&DEVICE),
            session_id: Some(&SESSION),
            event_name: Some("Order Placed"),
            payload: Some(payload),
        }
    }

    #[test]
    fn envelope_fields_and_sdk_defaults() {
        let view_buf = events_batch(&[]);
        let view = decode_batch(&view_buf).unwrap();
        assert_eq!(view.api_key, KEY);
        assert_eq!(view.schema, Schema::Event);
        assert_eq!(view.version, tell_encoding::DEFAULT_VERSION, "encoder turns version 0 into 100");
        assert_eq!(view.batch_id, 7);
        // The encoder omits batch_id when it is 0; absent reads as 0.
        let no_id = batch(SchemaType::Log, 0, b"xyz");
        let view = decode_batch(&no_id).unwrap();
        assert_eq!((view.batch_id, view.schema, view.data), (0, Schema::Log, &b"xyz"[..]));
    }

    #[test]
    fn batch_id_is_read_despite_4_byte_alignment() {
        // tell-encoding puts batch_id at offset 36 (4 mod 8): the stock u64
        // verifier would refuse every SDK batch that has an id.
        let buf = batch(SchemaType::Event, u64::MAX - 1, &[]);
        assert_eq!(decode_batch(&buf).unwrap().batch_id, u64::MAX - 1);
    }

    #[test]
    fn events_with_every_field() {
        let payload = br#"{"order":42,"total":19.99}"#;
        let mut second = full_event(b"{}");
        second.event_type = EventType::Track;
        second.timestamp = 1;
        let buf = events_batch(&[full_event(payload), second]);
        let (block, count) = decode(&buf).unwrap();
        assert_eq!(count, 2);
        let recs = all(&block);
        assert_eq!((recs[0].kind, recs[0].received_at_ms), (Kind::Event, RECEIVED));
        assert_eq!(
            fields(&recs[0]),
            vec![
                f(tag::TIMESTAMP, 1_700_000_000_000u64.to_le_bytes()),
                f(tag::SERVICE, "checkout"),
                f(tag::DEVICE_ID, DEVICE),
                f(tag::SESSION_ID, SESSION),
                f(tag::EVENT_NAME, "Order Placed"),
                f(tag::PAYLOAD, payload),
                f(tag::EVENT_TYPE, [EventType::Identify as u8]),
            ]
        );
        assert_eq!(recs[1].get_u64(tag::TIMESTAMP), Some(1));
        assert_eq!(recs[1].get_u8(tag::EVENT_TYPE), Some(EventType::Track as u8));
        assert_eq!(recs[1].get(tag::PAYLOAD), Some(&b"{}"[..]));
    }

    #[test]
    fn events_with_optional_fields_absent() {
        let bare = EventParams {
            event_type: EventType::Unknown,
            timestamp: 0,
            service: None,
            device_id: None,
            session_id: None,
            event_name: None,
            payload: None,
        };
        let (block, _) = decode(&events_batch(&[bare])).unwrap();
        let recs = all(&block);
        assert_eq!(fields(&recs[0]), vec![f(tag::TIMESTAMP, 0u64.to_le_bytes()), f(tag::EVENT_TYPE, [0])]);
    }

    #[test]
    fn empty_strings_and_vectors_are_present_fields() {
        let mut event = full_event(b"");
        event.service = Some("");
        event.event_name = Some("");
        let (block, _) = decode(&events_batch(&[event])).unwrap();
        let recs = all(&block);
        assert_eq!(recs[0].get(tag::SERVICE), Some(&b""[..]));
        assert_eq!(recs[0].get(tag::EVENT_NAME), Some(&b""[..]));
        assert_eq!(recs[0].get(tag::PAYLOAD), Some(&b""[..]));
    }

    #[test]
    fn logs_with_every_field_and_with_none() {
        let full = LogEntryParams {
            event_type: LogEventType::Enrich,
            session_id: Some(&SESSION),
            level: LogLevel::Warning,
            timestamp: 1_700_000_000_555,
            source: Some("web-01"),
            service: Some("api"),
            payload: Some(br#"{"message":"slow"}"#),
        };
        let bare = LogEntryParams {
            event_type: LogEventType::Unknown,
            session_id: None,
            level: LogLevel::Emergency,
            timestamp: 3,
            source: None,
            service: None,
            payload: None,
        };
        let (block, count) = decode(&logs_batch(&[full, bare])).unwrap();
        assert_eq!(count, 2);
        let recs = all(&block);
        assert_eq!(recs[0].kind, Kind::Log);
        assert_eq!(
            fields(&recs[0]),
            vec![
                f(tag::TIMESTAMP, 1_700_000_000_555u64.to_le_bytes()),
                f(tag::SESSION_ID, SESSION),
                f(tag::LEVEL, [LogLevel::Warning as u8]),
                f(tag::SOURCE, "web-01"),
                f(tag::SERVICE, "api"),
                f(tag::PAYLOAD, br#"{"message":"slow"}"#),
                f(tag::LOG_TYPE, [LogEventType::Enrich as u8]),
            ]
        );
        assert_eq!(
            fields(&recs[1]),
            vec![f(tag::TIMESTAMP, 3u64.to_le_bytes()), f(tag::LEVEL, [0]), f(tag::LOG_TYPE, [0])]
        );
    }

    fn histogram_bytes(h: &HistogramParams) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&h.count.to_le_bytes());
        v.extend_from_slice(&h.sum.to_le_bytes());
        v.extend_from_slice(&h.min.to_le_bytes());
        v.extend_from_slice(&h.max.to_le_bytes());
        for (upper, count) in &h.buckets {
            v.extend_from_slice(&upper.to_le_bytes());
            v.extend_from_slice(&count.to_le_bytes());
        }
        v
    }

    fn label_field(key: &str, value: &str) -> (u8, Vec<u8>) {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Metric, 0);
        b.label(key.as_bytes(), value.as_bytes());
        b.end();
        let (block, _) = b.finish();
        let recs = all(&block);
        fields(&recs[0]).remove(0)
    }

    #[test]
    fn metrics_with_every_field() {
        let hist = HistogramParams {
            count: 1000,
            sum: 45.5,
            min: 0.0001,
            max: 2.3,
            buckets: vec![(0.01, 300), (1.0, 998), (f64::INFINITY, 1000)],
        };
        let labels = [LabelParam { key: "method", value: "GET" }, LabelParam { key: "path", value: "/api" }];
        let metric = MetricEntryParams {
            metric_type: MetricType::Histogram,
            timestamp: 1_749_587_340_000_000_000,
            name: "http_request_duration_seconds",
            value: -1.5,
            source: Some("server-1"),
            service: Some("api"),
            labels: &labels,
            temporality: Temporality::Delta,
            histogram: Some(&hist),
            session_id: Some(&SESSION),
        };
        // "/api" ends at an odd offset, and tell-encoding writes the
        // histogram's vtable right there: the stock verifier refuses that.
        let (block, _) = decode(&metrics_batch(&[metric])).unwrap();
        let recs = all(&block);
        assert_eq!(recs[0].kind, Kind::Metric);
        assert_eq!(
            fields(&recs[0]),
            vec![
                f(tag::TIMESTAMP, 1_749_587_340_000_000_000u64.to_le_bytes()),
                f(tag::METRIC_NAME, "http_request_duration_seconds"),
                f(tag::METRIC_VALUE, (-1.5f64).to_le_bytes()),
                f(tag::SOURCE, "server-1"),
                f(tag::SERVICE, "api"),
                label_field("method", "GET"),
                label_field("path", "/api"),
                f(tag::METRIC_TYPE, [MetricType::Histogram as u8]),
                f(tag::TEMPORALITY, [Temporality::Delta as u8]),
                f(tag::SESSION_ID, SESSION),
                f(tag::HISTOGRAM, histogram_bytes(&hist)),
            ]
        );
        let labels: Vec<_> =
            recs[0].fields().filter(|(t, _)| *t == tag::LABEL).map(|(_, v)| split_label(v).unwrap()).collect();
        assert_eq!(labels, vec![(&b"method"[..], &b"GET"[..]), (&b"path"[..], &b"/api"[..])]);
    }

    #[test]
    fn metrics_with_optional_fields_absent() {
        let empty_hist = HistogramParams { count: 0, sum: 0.0, min: 0.0, max: 0.0, buckets: vec![] };
        let gauge = |histogram| MetricEntryParams {
            metric_type: MetricType::Gauge,
            timestamp: 5,
            name: "cpu",
            value: 0.25,
            source: None,
            service: None,
            labels: &[],
            temporality: Temporality::Unspecified,
            histogram,
            session_id: None,
        };
        let (block, count) = decode(&metrics_batch(&[gauge(None), gauge(Some(&empty_hist))])).unwrap();
        assert_eq!(count, 2);
        let recs = all(&block);
        let base = vec![
            f(tag::TIMESTAMP, 5u64.to_le_bytes()),
            f(tag::METRIC_NAME, "cpu"),
            f(tag::METRIC_VALUE, 0.25f64.to_le_bytes()),
            f(tag::METRIC_TYPE, [MetricType::Gauge as u8]),
            f(tag::TEMPORALITY, [0]),
        ];
        assert_eq!(fields(&recs[0]), base);
        let mut with_hist = base;
        with_hist.push(f(tag::HISTOGRAM, [0u8; 32]));
        assert_eq!(fields(&recs[1]), with_hist);
    }

    #[test]
    fn appends_after_existing_records_and_counts_only_its_own() {
        let mut out = BlockBuilder::default();
        out.begin(Kind::Syslog, 1);
        out.bytes(tag::RAW, b"earlier");
        out.end();
        let buf = events_batch(&[full_event(b"{}"), full_event(b"[]"), full_event(b"0")]);
        let n = append_items(&decode_batch(&buf).unwrap(), RECEIVED, &mut out).unwrap();
        assert_eq!((n, out.count()), (3, 4));
        let (block, _) = out.finish();
        let kinds: Vec<_> = all(&block).iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![Kind::Syslog, Kind::Event, Kind::Event, Kind::Event]);
    }

    #[test]
    fn empty_batch_appends_nothing() {
        assert_eq!(decode(&events_batch(&[])).unwrap().1, 0);
        assert_eq!(decode(&logs_batch(&[])).unwrap().1, 0);
        assert_eq!(decode(&metrics_batch(&[])).unwrap().1, 0);
    }

    #[test]
    fn unknown_schema_is_refused_and_leaves_block_alone() {
        let mut data = Vec::new();
        encode_event_data_into(&mut data, &[full_event(b"{}")]);
        let buf = batch(SchemaType::Unknown, 1, &data);
        let view = decode_batch(&buf).unwrap();
        assert_eq!(view.schema, Schema::Other(0));
        let mut out = BlockBuilder::default();
        let err = append_items(&view, RECEIVED, &mut out).unwrap_err();
        assert!(matches!(err, TellError::UnsupportedSchema { schema: 0 }));
        assert_eq!((out.count(), out.len_bytes()), (0, 0));
    }

    #[test]
    fn schema_round_trips_through_u8() {
        for b in 0..=u8::MAX {
            assert_eq!(Schema::from_u8(b).as_u8(), b);
        }
    }

    /// Builds a Batch with flatc's own builder (aligned, shared vtables).
    fn flatc_batch(key: &[u8], schema: u8, data: &[u8]) -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        let key = b.create_vector(key);
        let data = b.create_vector(data);
        let start = b.start_table();
        b.push_slot_always::<WIPOffset<_>>(slot(0), key);
        b.push_slot::<u8>(slot(1), schema, 0);
        b.push_slot::<u8>(slot(2), 100, 0);
        b.push_slot::<u64>(slot(3), 77, 0);
        b.push_slot_always::<WIPOffset<_>>(slot(4), data);
        let root = b.end_table(start);
        b.finish_minimal(root);
        b.finished_data().to_vec()
    }

    fn slot(id: u16) -> u16 {
        4 + 2 * id
    }

    /// EventData with `n` slots that all point at one event table.
    fn flatc_events(name: &[u8], payload: &[u8], n: usize) -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        let name = b.create_byte_string(name);
        let payload = b.create_vector(payload);
        let start = b.start_table();
        b.push_slot::<u64>(slot(1), 99, 0);
        b.push_slot_always::<WIPOffset<_>>(slot(5), name);
        b.push_slot_always::<WIPOffset<_>>(slot(6), payload);
        b.push_slot::<u8>(slot(0), 1, 0);
        let event = b.end_table(start);
        let events = b.create_vector(&vec![event; n]);
        let start = b.start_table();
        b.push_slot_always::<WIPOffset<_>>(slot(0), events);
        let root = b.end_table(start);
        b.finish_minimal(root);
        b.finished_data().to_vec()
    }

    #[test]
    fn flatc_built_batches_decode_and_invalid_utf8_is_kept() {
        let name = b"caf\xc3\xa9 \xff\xfe";
        let buf = flatc_batch(&KEY, 1, &flatc_events(name, b"{}", 2));
        let view = decode_batch(&buf).unwrap();
        assert_eq!((view.version, view.batch_id), (100, 77));
        let (block, count) = decode(&buf).unwrap();
        assert_eq!(count, 2);
        let recs = all(&block);
        assert_eq!(recs[1].get(tag::EVENT_NAME), Some(&name[..]));
        assert_eq!(recs[1].get_u64(tag::TIMESTAMP), Some(99));
        assert_eq!(recs[1].get_u8(tag::EVENT_TYPE), Some(1));
    }

    #[test]
    fn wrong_key_length_is_refused() {
        for len in [0, 15, 17, 32] {
            let buf = flatc_batch(&vec![1u8; len], 1, &flatc_events(b"e", b"", 1));
            assert!(matches!(decode_batch(&buf), Err(TellError::BadKeyLength { len: l }) if l == len));
        }
    }

    #[test]
    fn missing_required_fields_are_refused() {
        let mut b = FlatBufferBuilder::new();
        let key = b.create_vector(&KEY);
        let start = b.start_table();
        b.push_slot_always::<WIPOffset<_>>(slot(0), key);
        let root = b.end_table(start);
        b.finish_minimal(root);
        let err = decode_batch(b.finished_data()).unwrap_err();
        assert!(matches!(err, TellError::Verify { part: Part::Envelope, .. }), "{err}");
        // EventData without its events vector.
        let mut b = FlatBufferBuilder::new();
        let start = b.start_table();
        let root = b.end_table(start);
        b.finish_minimal(root);
        let buf = flatc_batch(&KEY, 1, b.finished_data());
        let err = decode(&buf).unwrap_err();
        assert!(matches!(err, TellError::Verify { part: Part::Data, .. }), "{err}");
    }

    #[test]
    fn offsets_that_repeat_the_same_bytes_hit_the_apparent_size_limit() {
        // 20k slots pointing at one 4 KiB payload: ~80 KiB of input that
        // would expand to ~80 MiB of records.
        let data = flatc_events(b"e", &[b'x'; 4096], 20_000);
        assert!(data.len() < 100_000);
        let buf = flatc_batch(&KEY, 1, &data);
        let mut out = BlockBuilder::default();
        let err = append_items(&decode_batch(&buf).unwrap(), RECEIVED, &mut out).unwrap_err();
        let TellError::Verify { source, .. } = err else { panic!("{err}") };
        assert!(matches!(source, InvalidFlatbuffer::ApparentSizeTooLarge), "{source}");
        assert_eq!(out.count(), 0);
    }

    #[test]
    fn a_16_mib_batch_of_100k_events_is_within_limits() {
        let payload = br#"{"n":12345678901234}"#;
        let events: Vec<_> = (0..100_000).map(|_| full_event(payload)).collect();
        let buf = events_batch(&events);
        assert!(buf.len() < 16 << 20, "{}", buf.len());
        assert_eq!(decode(&buf).unwrap().1, 100_000);
    }

    #[test]
    fn label_and_bucket_heavy_metrics_are_within_limits() {
        // Labels and buckets are the tables with the most verifier work per
        // input byte (about 1.05× and 1.3×).
        let keys: Vec<String> = (0..5000).map(|i| format!("k{}", i % 7)).collect();
        let labels: Vec<_> = keys.iter().map(|k| LabelParam { key: k, value: "" }).collect();
        let buckets = (0..20_000).map(|i| (f64::from(i), 0)).collect();
        let hist = HistogramParams { count: 1, sum: 1.0, min: 1.0, max: 1.0, buckets };
        let metric = MetricEntryParams {
            metric_type: MetricType::Histogram,
            timestamp: 1,
            name: "",
            value: 0.0,
            source: None,
            service: None,
            labels: &labels,
            temporality: Temporality::Delta,
            histogram: Some(&hist),
            session_id: None,
        };
        let (block, _) = decode(&metrics_batch(&[metric])).unwrap();
        let recs = all(&block);
        assert_eq!(recs[0].fields().filter(|(t, _)| *t == tag::LABEL).count(), 5000);
        assert_eq!(recs[0].get(tag::HISTOGRAM).map(<[u8]>::len), Some(32 + 16 * 20_000));
    }

    /// One sample of each schema, with every field set.
    fn samples() -> Vec<Vec<u8>> {
        let hist = HistogramParams { count: 2, sum: 3.0, min: 1.0, max: 2.0, buckets: vec![(1.0, 1), (2.0, 2)] };
        let labels = [LabelParam { key: "k", value: "v" }];
        let metric = MetricEntryParams {
            metric_type: MetricType::Counter,
            timestamp: 9,
            name: "n",
            value: 1.0,
            source: Some("s"),
            service: Some("svc"),
            labels: &labels,
            temporality: Temporality::Cumulative,
            histogram: Some(&hist),
            session_id: Some(&SESSION),
        };
        let log = LogEntryParams {
            event_type: LogEventType::Log,
            session_id: Some(&SESSION),
            level: LogLevel::Info,
            timestamp: 4,
            source: Some("src"),
            service: Some("svc"),
            payload: Some(b"{}"),
        };
        vec![events_batch(&[full_event(b"{\"a\":1}")]), logs_batch(&[log]), metrics_batch(&[metric])]
    }

    /// Decodes `buf` into a block that already holds a record and checks the
    /// all-or-nothing contract either way.
    fn check_all_or_nothing(buf: &[u8]) -> bool {
        let mut out = BlockBuilder::default();
        out.begin(Kind::Log, 1);
        out.bytes(tag::PAYLOAD, b"before");
        out.end();
        let before = (out.count(), out.len_bytes());
        let result = decode_batch(buf).and_then(|view| append_items(&view, RECEIVED, &mut out));
        match result {
            Ok(n) => {
                assert_eq!(out.count(), before.0 + n);
                let (block, _) = out.finish();
                assert_eq!(records(&block).filter(|r| r.is_ok()).count() as u32, before.0 + n);
                true
            }
            Err(_) => {
                assert_eq!((out.count(), out.len_bytes()), before);
                false
            }
        }
    }

    #[test]
    fn every_prefix_of_a_valid_batch_errors_without_panicking() {
        for buf in samples() {
            assert!(check_all_or_nothing(&buf));
            for cut in 0..buf.len() {
                // `data` is the last thing in the buffer: any cut reaches it.
                assert!(!check_all_or_nothing(&buf[..cut]), "prefix {cut} of {} decoded", buf.len());
            }
        }
    }

    #[test]
    fn every_prefix_of_the_payload_errors_or_decodes_without_panicking() {
        for buf in samples() {
            let view = decode_batch(&buf).unwrap();
            for cut in 0..view.data.len() {
                let short = BatchView { data: &view.data[..cut], ..view };
                let mut out = BlockBuilder::default();
                if append_items(&short, RECEIVED, &mut out).is_err() {
                    assert_eq!((out.count(), out.len_bytes()), (0, 0));
                }
            }
        }
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let mut decoded = 0;
        for buf in samples() {
            for _ in 0..3000 {
                let mut bad = buf.clone();
                for _ in 0..=rng(&mut state) % 3 {
                    let at = (rng(&mut state) % bad.len() as u64) as usize;
                    bad[at] ^= 1 << (rng(&mut state) % 8);
                }
                decoded += usize::from(check_all_or_nothing(&bad));
            }
        }
        // Many flips land in payload bytes and still decode.
        assert!(decoded > 0);
    }

    fn opt(tag: u8, v: Option<impl AsRef<[u8]>>) -> Option<(u8, Vec<u8>)> {
        v.map(|v| f(tag, v))
    }

    proptest! {
        #[test]
        fn any_sdk_event_round_trips(
            kind in 0u8..7,
            timestamp: u64,
            service in prop::option::of(".{0,9}"),
            device: Option<[u8; 16]>,
            session: Option<[u8; 16]>,
            name in prop::option::of(".{0,9}"),
            payload in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        ) {
            use EventType::*;
            let event_type = [Unknown, Track, Identify, Group, Alias, Enrich, Context][usize::from(kind)];
            let params = EventParams {
                event_type,
                timestamp,
                service: service.as_deref(),
                device_id: device.as_ref(),
                session_id: session.as_ref(),
                event_name: name.as_deref(),
                payload: payload.as_deref(),
            };
            let (block, _) = decode(&events_batch(&[params])).unwrap();
            let expected: Vec<_> = [
                Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
                opt(tag::SERVICE, service),
                opt(tag::DEVICE_ID, device),
                opt(tag::SESSION_ID, session),
                opt(tag::EVENT_NAME, name),
                opt(tag::PAYLOAD, payload),
                Some(f(tag::EVENT_TYPE, [kind])),
            ]
            .into_iter()
            .flatten()
            .collect();
            prop_assert_eq!(fields(&all(&block)[0]), expected);
        }

        #[test]
        fn any_sdk_log_round_trips(
            level in 0u8..9,
            timestamp: u64,
            session: Option<[u8; 16]>,
            source in prop::option::of(".{0,9}"),
            service in prop::option::of(".{0,9}"),
            payload in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        ) {
            use LogLevel::*;
            let levels = [Emergency, Alert, Critical, Error, Warning, Notice, Info, Debug, Trace];
            let params = LogEntryParams {
                event_type: LogEventType::Log,
                session_id: session.as_ref(),
                level: levels[usize::from(level)],
                timestamp,
                source: source.as_deref(),
                service: service.as_deref(),
                payload: payload.as_deref(),
            };
            let (block, _) = decode(&logs_batch(&[params])).unwrap();
            let expected: Vec<_> = [
                Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
                opt(tag::SESSION_ID, session),
                Some(f(tag::LEVEL, [level])),
                opt(tag::SOURCE, source),
                opt(tag::SERVICE, service),
                opt(tag::PAYLOAD, payload),
                Some(f(tag::LOG_TYPE, [LogEventType::Log as u8])),
            ]
            .into_iter()
            .flatten()
            .collect();
            prop_assert_eq!(fields(&all(&block)[0]), expected);
        }

        /// Random string lengths move every table and vtable around, which
        /// is how the unaligned histogram vtable shows up.
        #[test]
        fn any_sdk_metric_round_trips(
            name in ".{0,9}",
            value: f64,
            timestamp: u64,
            source in prop::option::of(".{0,9}"),
            service in prop::option::of(".{0,9}"),
            labels in prop::collection::vec((".{0,7}", ".{0,7}"), 0..4),
            hist in prop::option::of((any::<(u64, f64, f64, f64)>(), prop::collection::vec(any::<(f64, u64)>(), 0..4))),
            session: Option<[u8; 16]>,
        ) {
            let label_params: Vec<_> = labels.iter().map(|(k, v)| LabelParam { key: k, value: v }).collect();
            let hist = hist.map(|((count, sum, min, max), buckets)| HistogramParams { count, sum, min, max, buckets });
            let params = |labels| MetricEntryParams {
                metric_type: MetricType::Gauge,
                timestamp,
                name: &name,
                value,
                source: source.as_deref(),
                service: service.as_deref(),
                labels,
                temporality: Temporality::Cumulative,
                histogram: hist.as_ref(),
                session_id: session.as_ref(),
            };
            // Two entries, so the second starts wherever the first ended.
            let (block, _) = decode(&metrics_batch(&[params(&label_params), params(&[])])).unwrap();
            let mut expected: Vec<_> = [
                Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
                Some(f(tag::METRIC_NAME, &name)),
                Some(f(tag::METRIC_VALUE, value.to_le_bytes())),
                opt(tag::SOURCE, source),
                opt(tag::SERVICE, service),
            ]
            .into_iter()
            .flatten()
            .collect();
            expected.extend(labels.iter().map(|(k, v)| label_field(k, v)));
            expected.push(f(tag::METRIC_TYPE, [MetricType::Gauge as u8]));
            expected.push(f(tag::TEMPORALITY, [Temporality::Cumulative as u8]));
            expected.extend(opt(tag::SESSION_ID, session));
            expected.extend(hist.as_ref().map(|h| f(tag::HISTOGRAM, histogram_bytes(h))));
            let recs = all(&block);
            prop_assert_eq!(recs.len(), 2);
            prop_assert_eq!(fields(&recs[0]), expected);
        }
    }

    /// Runs the published `tell` SDK against a loopback socket and returns
    /// the bytes it wrote.
    fn capture_sdk(drive: impl FnOnce(&tell::Tell)) -> Vec<u8> {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut wire = Vec::new();
            // EOF once the SDK closes; a timeout just ends the capture.
            let _ = stream.read_to_end(&mut wire);
            wire
        });
        let config = tell::TellConfig::builder(hex_key())
            .endpoint(addr.to_string())
            .service("shop")
            .source("host-1")
            .build()
            .unwrap();
        let client = tell::Tell::new(config).unwrap();
        drive(&client);
        client.close_blocking().unwrap();
        drop(client);
        reader.join().unwrap()
    }

    fn hex_key() -> String {
        KEY.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Splits a captured stream into frames and decodes every batch.
    fn decode_stream(wire: &[u8]) -> Vec<(Schema, Vec<u8>)> {
        use crate::codec::frame::{Frame, FrameDecoder};
        use tokio_util::codec::Decoder;
        let mut buf = bytes::BytesMut::from(wire);
        let mut decoder = FrameDecoder::new(crate::codec::frame::DEFAULT_MAX_FRAME);
        let mut batches = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            let Frame::Tell { batch } = frame else { panic!("SDK sent {frame:?}") };
            let view = decode_batch(&batch).unwrap();
            assert_eq!((view.api_key, view.version), (KEY, 100));
            assert_ne!(view.batch_id, 0, "the SDK numbers its batches from 1");
            batches.push((view.schema, decode(&batch).unwrap().0));
        }
        assert!(buf.is_empty(), "{} trailing bytes", buf.len());
        batches
    }

    #[test]
    fn real_sdk_bytes_decode() {
        let wire = capture_sdk(|client| {
            client.track("user_1", "Page Viewed", tell::props! { "url" => "/home" });
            client.log_info("Request handled", Some("http"), tell::props! { "status" => 200 });
            client.gauge("cpu_percent", 45.5, &[("core", "0")]);
            let hist = tell::HistogramParams { count: 3, sum: 0.6, min: 0.1, max: 0.3, buckets: vec![(0.5, 3)] };
            client.histogram("latency", hist, &[("route", "/api/x")]);
        });
        let batches = decode_stream(&wire);
        let find = |schema| batches.iter().find(|(s, _)| *s == schema).map(|(_, b)| b).expect("batch of schema");
        let events = find(Schema::Event);
        let event = &all(events)[0];
        assert_eq!(event.get(tag::EVENT_NAME), Some(&b"Page Viewed"[..]));
        assert_eq!(event.get(tag::SERVICE), Some(&b"shop"[..]));
        assert_eq!(event.get(tag::DEVICE_ID).map(<[u8]>::len), Some(16));
        assert_eq!(event.get_u8(tag::EVENT_TYPE), Some(EventType::Track as u8));
        assert!(event.get(tag::PAYLOAD).is_some_and(|p| p.windows(5).any(|w| w == b"/home")));
        let logs = find(Schema::Log);
        let log = &all(logs)[0];
        assert_eq!(log.get(tag::SOURCE), Some(&b"http"[..]));
        assert_eq!(log.get_u8(tag::LEVEL), Some(LogLevel::Info as u8));
        let metrics = find(Schema::Metric);
        let metrics = all(metrics);
        let latency = metrics.iter().find(|m| m.get(tag::METRIC_NAME) == Some(b"latency")).unwrap();
        assert_eq!(latency.get(tag::SOURCE), Some(&b"host-1"[..]));
        assert_eq!(latency.get(tag::HISTOGRAM).map(<[u8]>::len), Some(32 + 16));
        assert_eq!(latency.get(tag::LABEL).and_then(split_label), Some((&b"route"[..], &b"/api/x"[..])));
    }
}
