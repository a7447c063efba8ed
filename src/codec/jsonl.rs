//! JSON events and logs, as HTTP clients send them, decoded into
//! [`crate::record`] blocks.
//!
//! ```text
//! body  := BOM? ( lines | array )
//! lines := line ( "\n" line )*          one JSON object per line; "\r\n" accepted,
//!                                        blank lines skipped (they still count for numbering)
//! array := ws* "[" object ( "," object )* "]" ws*      chosen when the body starts with "["
//! ```
//!
//! Each object becomes one record, `Kind::Event` for `/v1/events` and
//! `Kind::Log` for `/v1/logs`, with the same field tags as Tell batches
//! (`codec::tell`), so both read back alike:
//!
//! | JSON member                         | events           | logs             |
//! |-------------------------------------|------------------|------------------|
//! | `timestamp` (ms integer, RFC 3339)  | `TIMESTAMP`      | `TIMESTAMP`      |
//! | `service`                           | `SERVICE`        | `SERVICE`        |
//! | `device_id` (a UUID)                | `DEVICE_ID`      | payload          |
//! | `session_id` (a UUID)               | `SESSION_ID`     | `SESSION_ID`     |
//! | `event` or `event_name`             | `EVENT_NAME`     | payload          |
//! | `type`                              | `EVENT_TYPE`     | `LOG_TYPE`       |
//! | `level` (name or 0..=8)             | payload          | `LEVEL`          |
//! | `source`                            | payload          | `SOURCE`         |
//! | `properties` (object)               | its members → payload | same        |
//! | `data` (object)                     | payload          | its members → payload |
//! | anything else (`user_id`, …)        | payload          | payload          |
//!
//! The payload is a JSON object of the members that are not fields, copied
//! byte for byte (never re-serialized), so numbers and nesting survive as
//! sent (a number past f64 range too: valid JSON, though a reader that
//! parses into f64 then shows that payload as text). This is the shape the Tell SDKs give their payloads: properties at
//! the top level, next to `user_id` (events) or `message` (logs).
//!
//! A known member whose value cannot be a field (a `device_id` that is not a
//! UUID, a `timestamp` that is neither milliseconds nor RFC 3339, an unknown
//! `level`, a non-string `service`, …) is kept in the payload under its own
//! name rather than refused: nothing sent is lost. Absent fields take Tell's
//! defaults: `type` track (events) or log (logs), `level` info, and
//! `timestamp` the time the request was received. An unknown `type` string
//! is stored as type 0 ("unknown") and kept in the payload.
//!
//! UUIDs are accepted hyphenated (`8-4-4-4-12`) or as 32 hex digits (what the
//! browser SDK sends); both are stored as 16 bytes and read back hyphenated.
//!
//! Errors are per item (a line, or an array element): invalid JSON (which
//! includes nesting deeper than [`MAX_DEPTH`], so that every stored payload
//! parses back), or JSON that is not an object. All-or-nothing decoding stops at the first; partial
//! decoding records each and goes on. Either way the number of items is
//! checked against the limit before an item past it is parsed.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::record::{BlockBuilder, Kind, tag};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Tell `EventType::Track`, the default event type.
const TRACK: u8 = 1;
/// Tell `LogEventType::Log`, the default log type.
const LOG: u8 = 1;
/// RFC 5424 informational, the default level.
const INFO: u8 = 6;
/// Items nested deeper than this are refused: readers (serde_json, 128
/// levels) must be able to parse every stored payload back.
pub const MAX_DEPTH: usize = 100;

/// Which endpoint the body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Events,
    Logs,
}

impl Stream {
    fn kind(self) -> Kind {
        match self {
            Stream::Events => Kind::Event,
            Stream::Logs => Kind::Log,
        }
    }
}

/// Where an item sits in the body: its line (1-based, blank lines counted)
/// or, in an array body, its element number (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Line(u32),
    Item(u32),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Item(n) => write!(f, "item {n}"),
        }
    }
}

/// Why one item was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemProblem {
    /// Not JSON; `column` is 1-based within the line (or element).
    InvalidJson { column: usize, message: String },
    /// JSON, but not an object.
    NotAnObject { message: String },
}

impl ItemProblem {
    /// A stable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            ItemProblem::InvalidJson { .. } => "invalid_json",
            ItemProblem::NotAnObject { .. } => "not_an_object",
        }
    }

    fn from_json(e: &serde_json::Error) -> ItemProblem {
        let text = e.to_string();
        // serde_json appends " at line L column C"; the position is reported separately.
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        };
        match e.classify() {
            serde_json::error::Category::Data => ItemProblem::NotAnObject { message },
            _ => ItemProblem::InvalidJson { column: e.column(), message },
        }
    }
}

impl fmt::Display for ItemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemProblem::InvalidJson { column, message } => write!(f, "invalid JSON at column {column}: {message}"),
            ItemProblem::NotAnObject { message } => write!(f, "not a JSON object: {message}"),
        }
    }
}

/// One item's outcome, for partial acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemOutcome {
    pub at: Position,
    /// `None`: stored.
    pub error: Option<ItemProblem>,
}

/// What a body decoded to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Records appended to the block.
    pub stored: u32,
    /// Items refused (partial acceptance only; otherwise decoding fails).
    pub rejected: u32,
    /// Partial acceptance: every item in body order. Empty otherwise.
    pub outcomes: Vec<ItemOutcome>,
}

/// A body that stores nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("more than {limit} items in one request")]
    TooManyItems { limit: usize },
    /// All-or-nothing decoding: the first bad item.
    #[error("{at}: {problem}")]
    Item { at: Position, problem: ItemProblem },
    /// A body starting with `[` that is not a JSON array.
    #[error("invalid JSON array at line {line} column {column}: {message}")]
    Array { line: usize, column: usize, message: String },
}

/// Decodes bodies of one stream; keeps a scratch buffer between calls.
#[derive(Debug)]
pub struct JsonlDecoder {
    stream: Stream,
    max_items: usize,
    payload: Vec<u8>,
}

/// Per-body state shared by the line and array paths.
struct Run<'o> {
    received_at_ms: u64,
    partial: bool,
    out: &'o mut BlockBuilder,
    decoded: Decoded,
    items: usize,
}

impl JsonlDecoder {
    pub fn new(stream: Stream, max_items: usize) -> JsonlDecoder {
        JsonlDecoder { stream, max_items, payload: Vec::with_capacity(1024) }
    }

    /// Appends one record per item of `body` to `out`.
    ///
    /// All-or-nothing (`partial == false`): the first bad item fails the
    /// body. Partial: bad items are listed in [`Decoded::outcomes`] and the
    /// others stored. On `Err`, records of earlier items may already be in
    /// `out`: the caller drops the block.
    pub fn decode(
        &mut self,
        body: &[u8],
        received_at_ms: u64,
        partial: bool,
        out: &mut BlockBuilder,
    ) -> Result<Decoded, BodyError> {
        let body = body.strip_prefix(BOM).unwrap_or(body);
        let mut run = Run { received_at_ms, partial, out, decoded: Decoded::default(), items: 0 };
        match body.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) if body[i] == b'[' => self.decode_array(body, &mut run)?,
            Some(_) => self.decode_lines(body, &mut run)?,
            None => {}
        }
        Ok(run.decoded)
    }

    fn decode_lines(&mut self, body: &[u8], run: &mut Run<'_>) -> Result<(), BodyError> {
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
        for (i, end) in ends.enumerate() {
            let line = &body[start..end];
            start = end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = Position::Line(u32::try_from(i + 1).unwrap_or(u32::MAX));
            self.count_item(run)?;
            let result = self.item(line, run);
            run.settle(at, result)?;
        }
        Ok(())
    }

    fn decode_array(&mut self, body: &[u8], run: &mut Run<'_>) -> Result<(), BodyError> {
        let mut halted: Option<BodyError> = None;
        let seed = ArraySeed { decoder: self, run, halted: &mut halted };
        let mut de = serde_json::Deserializer::from_slice(body);
        let result = seed.deserialize(&mut de).and_then(|()| de.end());
        match (halted, result) {
            (Some(e), _) => Err(e),
            (None, Ok(())) => Ok(()),
            (None, Err(e)) => Err(BodyError::Array {
                line: e.line(),
                column: e.column(),
                message: ItemProblem::from_json(&e).to_string(),
            }),
        }
    }

    fn count_item(&self, run: &mut Run<'_>) -> Result<(), BodyError> {
        run.items += 1;
        if run.items > self.max_items {
            return Err(BodyError::TooManyItems { limit: self.max_items });
        }
        Ok(())
    }

    /// Decodes one object into one record.
    fn item(&mut self, text: &[u8], run: &mut Run<'_>) -> Result<(), ItemProblem> {
        // Checked once here, so that parsing (`from_str`) need not check
        // each string and raw value again.
        let text = std::str::from_utf8(text).map_err(|e| ItemProblem::InvalidJson {
            column: e.valid_up_to() + 1,
            message: "invalid UTF-8".to_owned(),
        })?;
        self.item_str(text, run)
    }

    fn item_str(&mut self, text: &str, run: &mut Run<'_>) -> Result<(), ItemProblem> {
        check_depth(text.as_bytes())?;
        self.payload.clear();
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = ObjectSeed { stream: self.stream, payload: &mut self.payload };
        let fields = seed.deserialize(&mut de).and_then(|f| de.end().map(|()| f));
        let fields = fields.map_err(|e| ItemProblem::from_json(&e))?;
        if !self.payload.is_empty() {
            self.payload.push(b'}');
        }
        fields.append(self.stream, run.received_at_ms, &self.payload, run.out);
        Ok(())
    }
}

impl Run<'_> {
    /// Counts an item's outcome; in all-or-nothing mode a problem ends the body.
    fn settle(&mut self, at: Position, result: Result<(), ItemProblem>) -> Result<(), BodyError> {
        match (result, self.partial) {
            (Ok(()), partial) => {
                self.decoded.stored += 1;
                if partial {
                    self.decoded.outcomes.push(ItemOutcome { at, error: None });
                }
            }
            (Err(problem), false) => return Err(BodyError::Item { at, problem }),
            (Err(problem), true) => {
                self.decoded.rejected += 1;
                self.decoded.outcomes.push(ItemOutcome { at, error: Some(problem) });
            }
        }
        Ok(())
    }
}

/// Refuses an item nested deeper than [`MAX_DEPTH`]. Counting brackets
/// first (SIMD) keeps the byte-by-byte walk off the common path.
fn check_depth(text: &[u8]) -> Result<(), ItemProblem> {
    if memchr::memchr2_iter(b'[', b'{', text).nth(MAX_DEPTH).is_none() {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in text.iter().enumerate() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let message = format!("nested deeper than {MAX_DEPTH} levels");
                    return Err(ItemProblem::InvalidJson { column: i + 1, message });
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Walks an array body element by element, decoding each as it goes, so
/// the item limit holds before the rest of the array is looked at.
struct ArraySeed<'a, 'o> {
    decoder: &'a mut JsonlDecoder,
    run: &'a mut Run<'o>,
    halted: &'a mut Option<BodyError>,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n: u32 = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            n = n.saturating_add(1);
            let step = self.decoder.count_item(self.run).and_then(|()| {
                let result = self.decoder.item_str(raw.get(), self.run);
                self.run.settle(Position::Item(n), result)
            });
            if let Err(e) = step {
                *self.halted = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

/// The string a raw value holds, if it is a string.
fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(s).ok().map(Cow::Owned)
}

/// Appends `"key":raw` to a payload object being built.
fn keep(payload: &mut Vec<u8>, key: &Text<'_>, raw: &RawValue) {
    payload.push(if payload.is_empty() { b'{' } else { b',' });
    match &key.0 {
        // serde_json borrows only strings without escapes: quoting restores them exactly.
        Cow::Borrowed(k) => {
            payload.push(b'"');
            payload.extend_from_slice(k.as_bytes());
            payload.push(b'"');
        }
        Cow::Owned(k) => {
            // Writing a String into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *payload, k);
        }
    }
    payload.push(b':');
    payload.extend_from_slice(raw.get().as_bytes());
}

/// The record fields found in one object.
#[derive(Default)]
struct Fields<'de> {
    timestamp: Option<u64>,
    service: Option<Cow<'de, str>>,
    device_id: Option<[u8; 16]>,
    session_id: Option<[u8; 16]>,
    name: Option<Cow<'de, str>>,
    kind_type: Option<u8>,
    level: Option<u8>,
    source: Option<Cow<'de, str>>,
}

impl<'de> Fields<'de> {
    /// Takes one member as a field, or keeps it in the payload.
    fn take(&mut self, stream: Stream, key: Text<'de>, raw: &'de RawValue, payload: &mut Vec<u8>) {
        let taken = match (key.0.as_ref(), stream) {
            ("timestamp", _) => set(&mut self.timestamp, timestamp_of(raw)),
            ("service", _) => set(&mut self.service, string_of(raw)),
            ("session_id", _) => set(&mut self.session_id, string_of(raw).and_then(|s| parse_uuid(&s))),
            ("device_id", Stream::Events) => set(&mut self.device_id, string_of(raw).and_then(|s| parse_uuid(&s))),
            ("event" | "event_name", Stream::Events) => set(&mut self.name, string_of(raw)),
            ("level", Stream::Logs) => set(&mut self.level, level_of(raw)),
            ("source", Stream::Logs) => set(&mut self.source, string_of(raw)),
            ("type", _) => return self.take_type(stream, key, raw, payload),
            ("properties", _) | ("data", Stream::Logs) => flatten(raw, payload),
            _ => false,
        };
        if !taken {
            keep(payload, &key, raw);
        }
    }

    /// `type`: a known name is a field; an unknown name is type 0 and kept.
    fn take_type(&mut self, stream: Stream, key: Text<'de>, raw: &'de RawValue, payload: &mut Vec<u8>) {
        if self.kind_type.is_none()
            && let Some(name) = string_of(raw)
        {
            let code = match stream {
                Stream::Events => event_type_code(&name),
                Stream::Logs => log_type_code(&name),
            };
            self.kind_type = Some(code.unwrap_or(0));
            if code.is_some() {
                return;
            }
        }
        keep(payload, &key, raw);
    }

    /// Appends the record, with `payload` (empty: none).
    fn append(&self, stream: Stream, received_at_ms: u64, payload: &[u8], out: &mut BlockBuilder) {
        out.begin(stream.kind(), received_at_ms);
        out.u64(tag::TIMESTAMP, self.timestamp.unwrap_or(received_at_ms));
        match stream {
            Stream::Events => {
                put_str(out, tag::SERVICE, &self.service);
                put_id(out, tag::DEVICE_ID, &self.device_id);
                put_id(out, tag::SESSION_ID, &self.session_id);
                put_str(out, tag::EVENT_NAME, &self.name);
                put_payload(out, payload);
                out.u8(tag::EVENT_TYPE, self.kind_type.unwrap_or(TRACK));
            }
            Stream::Logs => {
                put_id(out, tag::SESSION_ID, &self.session_id);
                out.u8(tag::LEVEL, self.level.unwrap_or(INFO));
                put_str(out, tag::SOURCE, &self.source);
                put_str(out, tag::SERVICE, &self.service);
                put_payload(out, payload);
                out.u8(tag::LOG_TYPE, self.kind_type.unwrap_or(LOG));
            }
        }
        out.end();
    }
}

/// Sets `slot` to `value` if both are free/present; true if it did.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    match (slot.is_none(), value) {
        (true, Some(v)) => {
            *slot = Some(v);
            true
        }
        _ => false,
    }
}

fn put_str(out: &mut BlockBuilder, tag: u8, value: &Option<Cow<'_, str>>) {
    if let Some(v) = value {
        out.str(tag, v);
    }
}

fn put_id(out: &mut BlockBuilder, tag: u8, value: &Option<[u8; 16]>) {
    if let Some(v) = value {
        out.bytes(tag, v);
    }
}

fn put_payload(out: &mut BlockBuilder, payload: &[u8]) {
    if !payload.is_empty() {
        out.bytes(tag::PAYLOAD, payload);
    }
}

/// Copies the members of an object value into the payload; false (keep it
/// whole) when the value is not an object.
fn flatten(raw: &RawValue, payload: &mut Vec<u8>) -> bool {
    if !raw.get().starts_with('{') {
        return false;
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    // The value was checked as JSON already; an error cannot happen, and if
    // it did the members copied so far are still well formed.
    let before = payload.len();
    if de.deserialize_map(FlattenVisitor { payload: &mut *payload }).is_err() {
        payload.truncate(before);
        return false;
    }
    true
}

struct FlattenVisitor<'a> {
    payload: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for FlattenVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            keep(self.payload, &key, raw);
        }
        Ok(())
    }
}

/// Reads one object: fields into [`Fields`], the rest into the payload.
struct ObjectSeed<'a> {
    stream: Stream,
    payload: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            fields.take(self.stream, key, raw, self.payload);
        }
        Ok(fields)
    }
}

/// Milliseconds since the epoch: a non-negative number, or an RFC 3339 string.
fn timestamp_of(raw: &RawValue) -> Option<u64> {
    let s = raw.get();
    if let Ok(ms) = s.parse::<u64>() {
        return Some(ms);
    }
    if let Ok(f) = s.parse::<f64>() {
        // 2^63: beyond any plausible time, and the cast below stays exact in range.
        return (f.is_finite() && (0.0..9.2e18).contains(&f)).then_some(f as u64);
    }
    let text = string_of(raw)?;
    let t = chrono::DateTime::parse_from_rfc3339(&text).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// A UUID, hyphenated (`8-4-4-4-12`) or as 32 hex digits.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let hyphenated = match b.len() {
        32 => false,
        36 if b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-' => true,
        _ => return None,
    };
    let mut out = [0u8; 16];
    let mut n = 0;
    for &c in b {
        if hyphenated && c == b'-' {
            continue;
        }
        let v = HEX_VALUE[usize::from(c)];
        if v > 0xf || n >= 32 {
            return None;
        }
        out[n / 2] |= v << (4 * (1 - n % 2));
        n += 1;
    }
    (n == 32).then_some(out)
}

/// Hex digit values; 0xff for other bytes.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A level name (RFC 5424 names and common short forms, any case) or 0..=8.
fn level_of(raw: &RawValue) -> Option<u8> {
    if let Ok(n) = raw.get().parse::<u8>() {
        return (n <= 8).then_some(n);
    }
    let name = string_of(raw)?;
    const NAMES: [(&str, u8); 14] = [
        ("emergency", 0),
        ("emerg", 0),
        ("alert", 1),
        ("critical", 2),
        ("crit", 2),
        ("error", 3),
        ("err", 3),
        ("warning", 4),
        ("warn", 4),
        ("notice", 5),
        ("info", 6),
        ("information", 6),
        ("debug", 7),
        ("trace", 8),
    ];
    NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)).map(|&(_, code)| code)
}

/// Tell `EventType` numbering.
fn event_type_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 6] = ["track", "identify", "group", "alias", "enrich", "context"];
    NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| i as u8 + 1)
}

/// Tell `LogEventType` numbering.
fn log_type_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 2] = ["log", "enrich"];
    NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| i as u8 + 1)
}

#[cfg(test)]
#[path = "jsonl_tests.rs"]
mod tests;
