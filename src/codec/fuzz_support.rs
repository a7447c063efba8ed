//! Bodies of the fuzz targets in `fuzz/`, kept in the library so that normal
//! builds compile them and `tests/it/fuzz_corpus.rs` replays the corpora on
//! stable Rust. The cargo-fuzz targets are one-line wrappers.
//!
//! Every function accepts any bytes. They panic only when a decoder breaks
//! one of its promises, which is what a fuzzer should report:
//!
//! - the frame decoder consumes bytes with every frame it returns, never
//!   returns a frame over its limit, and reports oversized frames as such;
//! - a Tell batch either decodes completely or leaves the block untouched;
//! - what it appends is a well formed block of the batch's kind, and not
//!   disproportionately larger than the input;
//! - an HTTP JSON body ([`jsonl_body_input`]) decodes the same with and
//!   without partial acceptance when it is valid, into records whose
//!   payloads are JSON objects;
//! - the RELP framer ([`relp_framer_input`]) decodes a stream the same
//!   whole and in pieces, consumes input with every frame, keeps DATA
//!   within the limit, and what it cut is exactly the limit long;
//! - the syslog framer ([`syslog_framer_input`]) consumes input with every
//!   frame, keeps frames within the limit and the stream in sync; the
//!   ingest scan and the parse ([`syslog_parse_input`]) take any bytes and
//!   never let a found key through;
//! - an OTLP body ([`otlp_body_input`]) that decodes accounts for every
//!   item (stored or rejected), stores well formed records of its signal's
//!   kind whose JSON fields are JSON, keeps within the records limit, and
//!   stores the same read item by item (protobuf) as decoded whole.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::value::RawValue;
use tokio_util::codec::Decoder;

use crate::codec::frame::{Frame, FrameDecoder};
use crate::codec::jsonl::{JsonlDecoder, Stream};
use crate::codec::tell::{Schema, append_items, decode_batch};
use crate::record::{BlockBuilder, Kind, records, tag};

/// `max_frame_bytes` when the control byte's high bit is clear: room for
/// every seed.
const LARGE_MAX_FRAME: u32 = 1 << 20;
/// When it is set: small, so that oversized frames get skipped too.
const SMALL_MAX_FRAME: u32 = 256;
/// Output may exceed input by this factor (plus [`AMPLIFICATION_SLACK`]):
/// the Tell reader's work limit (2 per input byte) bounds it near 4.
const AMPLIFICATION_FACTOR: usize = 8;
const AMPLIFICATION_SLACK: usize = 256 << 10;

/// Input: `control:u8  stream…`. The stream goes to a [`FrameDecoder`] in
/// pieces whose sizes come from a generator seeded with `control`;
/// `control & 0x80` selects a small frame limit. The batch of every complete
/// frame goes through [`batch_decoder_input`].
pub fn frame_decoder_input(data: &[u8]) {
    let Some((&control, mut rest)) = data.split_first() else { return };
    let max_frame = if control & 0x80 != 0 { SMALL_MAX_FRAME } else { LARGE_MAX_FRAME };
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut seed = u32::from(control) | 0x100;
    while !rest.is_empty() {
        let take = piece_len(&mut seed, rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if !drain(&mut decoder, &mut buf, max_frame) {
            return; // a framing error closes the connection
        }
    }
    // The stream ends: a partial frame left over is an error, not a frame.
    if let Ok(Some(frame)) = decoder.decode_eof(&mut buf) {
        check_frame(frame, max_frame);
    }
}

/// Next piece size: mostly small, sometimes everything that is left.
fn piece_len(seed: &mut u32, left: usize) -> usize {
    // xorshift32; the seed is never 0.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    let r = *seed as usize;
    let len = match r % 4 {
        0 => 1,
        1 => r % 16,
        2 => r % 512,
        _ => left,
    };
    len.clamp(1, left)
}

/// Decodes every complete frame in `buf`; false after a framing error.
fn drain(decoder: &mut FrameDecoder, buf: &mut BytesMut, max_frame: u32) -> bool {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "frame returned without consuming input");
                check_frame(frame, max_frame);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fn check_frame(frame: Frame, max_frame: u32) {
    match frame {
        Frame::Tell { batch } | Frame::Acked { batch, .. } => {
            assert!(batch.len() <= max_frame as usize, "frame of {} over limit {max_frame}", batch.len());
            batch_decoder_input(&batch);
        }
        Frame::Oversized { len, .. } => assert!(len > max_frame, "oversized frame of {len} within limit"),
        Frame::ReservedFlags { flags, .. } => assert_ne!(flags, 0, "a frame without flags refused for its flags"),
    }
}

/// Input: one Tell `Batch`. Decodes it into a block that already holds a
/// record and checks the all-or-nothing contract and the output.
pub fn batch_decoder_input(data: &[u8]) {
    let mut out = BlockBuilder::default();
    out.begin(Kind::Syslog, 0);
    out.bytes(tag::RAW, b"already here");
    out.end();
    let (count, len) = (out.count(), out.len_bytes());
    let Ok(view) = decode_batch(data) else { return };
    let Ok(n) = append_items(&view, 0, &mut out) else {
        assert_eq!((out.count(), out.len_bytes()), (count, len), "failed decode changed the block");
        return;
    };
    assert_eq!(out.count(), count + n);
    let grown = out.len_bytes() - len;
    let bound = data.len().saturating_mul(AMPLIFICATION_FACTOR).saturating_add(AMPLIFICATION_SLACK);
    assert!(grown <= bound, "{} input bytes became {grown} output bytes", data.len());
    check_block(out, view.schema, n);
}

fn check_block(out: BlockBuilder, schema: Schema, n: u32) {
    let kind = match schema {
        Schema::Event => Kind::Event,
        Schema::Log => Kind::Log,
        Schema::Metric => Kind::Metric,
        Schema::Other(s) => panic!("schema {s} decoded"),
    };
    let (block, _) = out.finish();
    let mut appended = 0;
    for record in records(&block).skip(1) {
        let record = record.expect("appended records decode");
        assert_eq!(record.kind, kind);
        appended += 1;
    }
    assert_eq!(appended, n);
}

/// Items per body for [`jsonl_body_input`]: small, so the limit is hit too.
const JSONL_MAX_ITEMS: usize = 64;
/// One item of a few bytes (`{}`) becomes a record of about 30: a timestamp,
/// a type, the record header.
const JSONL_AMPLIFICATION: usize = 16;

/// Input: `control:u8  body…`, an HTTP ingest body. `control & 1` selects
/// logs instead of events. The body is decoded all-or-nothing and with
/// partial acceptance; checks that both agree, that every record decodes
/// with the endpoint's kind and a timestamp, that every payload is a JSON
/// object (members are spliced byte for byte, so this checks the splicing),
/// and that output stays proportional to input.
pub fn jsonl_body_input(data: &[u8]) {
    let Some((&control, body)) = data.split_first() else { return };
    let stream = if control & 1 != 0 { Stream::Logs } else { Stream::Events };
    let mut decoder = JsonlDecoder::new(stream, JSONL_MAX_ITEMS);
    let mut partial_out = BlockBuilder::default();
    let partial = decoder.decode(body, 7, true, &mut partial_out);
    let mut strict_out = BlockBuilder::default();
    let strict = decoder.decode(body, 7, false, &mut strict_out);
    if let Ok(d) = &strict {
        assert_eq!(d.rejected, 0);
        let p = partial.as_ref().expect("partial decoding fails only where all-or-nothing does");
        assert_eq!((p.stored, p.rejected), (d.stored, 0), "the modes disagree");
        assert_eq!(strict_out.finished(), partial_out.finished(), "the modes stored different records");
    }
    let Ok(p) = partial else { return };
    assert_eq!(p.outcomes.len() as u32, p.stored + p.rejected);
    assert_eq!(p.outcomes.iter().filter(|o| o.error.is_none()).count() as u32, p.stored);
    let bound = body.len().saturating_mul(JSONL_AMPLIFICATION).saturating_add(1024);
    assert!(partial_out.len_bytes() <= bound, "{} input bytes became {}", body.len(), partial_out.len_bytes());
    check_json_records(partial_out, stream, p.stored);
}

fn check_json_records(out: BlockBuilder, stream: Stream, stored: u32) {
    let kind = match stream {
        Stream::Events => Kind::Event,
        Stream::Logs => Kind::Log,
    };
    let (block, count) = out.finish();
    assert_eq!(count, stored);
    for record in records(&block) {
        let record = record.expect("appended records decode");
        assert_eq!(record.kind, kind);
        assert!(record.get_u64(tag::TIMESTAMP).is_some(), "every record has a timestamp");
        if let Some(payload) = record.get(tag::PAYLOAD) {
            // Well formed, not necessarily representable: a number past f64
            // range is valid JSON, kept as sent (see `codec::jsonl`).
            let object = serde_json::from_slice::<HashMap<String, &RawValue>>(payload);
            assert!(object.is_ok(), "payload is not a JSON object: {:?}", String::from_utf8_lossy(payload));
        }
    }
}

/// `max_message_bytes` for [`syslog_framer_input`] when `control & 0x80` is set.
const SYSLOG_SMALL_MAX: usize = 16;

/// Input: `control:u8  stream…`, syslog over TCP. The stream goes to an
/// [`OctetDecoder`](crate::codec::octet::OctetDecoder) in pieces (as in
/// [`frame_decoder_input`]); `control & 0x80` selects a 16-byte message
/// limit. Checks that every frame consumes input, stays within the limit
/// (reaching it exactly when flagged truncated) and that the frames never
/// hold more bytes than came in. Framing only: what a frame holds is
/// [`syslog_parse_input`]'s (calling it per frame made this target 6× slower
/// than that one and 15× slower than the other codecs).
pub fn syslog_framer_input(data: &[u8]) {
    use crate::codec::octet::{DEFAULT_MAX_MESSAGE, OctetDecoder, SyslogFrame};
    let Some((&control, mut rest)) = data.split_first() else { return };
    let limit = if control & 0x80 != 0 { SYSLOG_SMALL_MAX } else { DEFAULT_MAX_MESSAGE };
    let total = rest.len();
    let mut decoder = OctetDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut seed = u32::from(control) | 0x100;
    let mut out_bytes = 0;
    let mut check = |frame: SyslogFrame| {
        assert!(frame.msg.len() <= limit, "frame of {} over limit {limit}", frame.msg.len());
        out_bytes += frame.msg.len();
        assert!(out_bytes <= total, "{out_bytes} bytes of frames from {total} bytes of input");
    };
    while !rest.is_empty() {
        let take = piece_len(&mut seed, rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "frame returned without consuming input");
                    check(frame);
                }
                Ok(None) => break,
                Err(e) => panic!("the syslog framer never fails, but said {e}"),
            }
        }
    }
    while let Ok(Some(frame)) = decoder.decode_eof(&mut buf) {
        check(frame);
    }
    assert!(buf.is_empty(), "bytes left over after the end of the stream");
}

/// `max_data` of [`relp_framer_input`] when the control byte's high bit is set.
const RELP_SMALL_MAX: usize = 16;

/// Input: `control:u8  stream…`, RELP. The stream is decoded whole and in
/// pieces (sizes from a generator seeded with `control`; `control & 0x80`
/// selects a small DATA limit): both give the same frames and end the same
/// way, every frame consumes input, and DATA stays within the limit.
pub fn relp_framer_input(data: &[u8]) {
    use crate::codec::relp::{RelpDecoder, RelpError, RelpFrame};
    let Some((&control, stream)) = data.split_first() else { return };
    let limit = if control & 0x80 != 0 { RELP_SMALL_MAX } else { 128 * 1024 };
    let run = |pieces: bool| -> (Vec<RelpFrame>, Option<RelpError>) {
        let mut decoder = RelpDecoder::new(limit);
        let (mut buf, mut rest, mut frames) = (BytesMut::new(), stream, Vec::new());
        let mut seed = u32::from(control) | 0x100;
        while !rest.is_empty() {
            let take = if pieces { piece_len(&mut seed, rest.len()) } else { rest.len() };
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        // Every frame ends with its LF, taken from the buffer.
                        assert!(buf.len() < before, "frame returned without consuming input");
                        assert!(frame.data.len() <= limit, "DATA of {} over the limit {limit}", frame.data.len());
                        assert!(!frame.truncated || frame.data.len() == limit, "cut short of the limit");
                        frames.push(frame);
                    }
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    };
    let (whole, whole_end) = run(false);
    let (pieces, pieces_end) = run(true);
    assert_eq!(whole, pieces, "the same stream decoded differently in pieces");
    assert_eq!(whole_end, pieces_end, "the same stream ended differently in pieces");
}

/// Input: one syslog message. The ingest scan (in key mode and not) and
/// the read-time parse (in three zones) must not panic; the scan never
/// grows a message by more than the `-` that replaces a cut SD, and after a
/// key was found and cut, scanning again finds no key.
pub fn syslog_parse_input(data: &[u8]) {
    use crate::codec::syslog::{Zone, parse};
    use crate::codec::syslog_scan::{KeyField, Scanner};
    let mut scanner = Scanner::default();
    for want_key in [false, true] {
        let (out, key) = scanner.scan(data, want_key);
        let out = out.to_vec();
        assert!(out.len() <= data.len() + 1, "scan grew {} bytes into {}", data.len(), out.len());
        if let KeyField::Found(_) = key {
            let (_, again) = Scanner::default().scan(&out, true);
            assert!(!matches!(again, KeyField::Found(_)), "a key survived redaction");
        }
        for zone in
            [Zone::Utc, Zone::Named(chrono_tz::Tz::Europe__Berlin), Zone::Named(chrono_tz::Tz::Pacific__Kiritimati)]
        {
            let fields = parse(&out, 1_700_000_000_000, zone);
            assert!(fields.parsed || fields.structured_data.is_empty());
        }
    }
}

/// A relayed message body (`forward::message`, `chunk/1`), as a central
/// node receives it from NATS: whatever the bytes, decoding never panics;
/// every accepted part decodes with its origin numbered on, and cutting it
/// anywhere (`chunk::slice`, as the writer does on an overlap) keeps the
/// events after the cut, numbered on from there.
pub fn relayed_body_input(data: &[u8]) {
    use crate::store::chunk;
    let Ok(parts) = crate::forward::message::relayed_parts(data, "edge", 7) else { return };
    let mut at = 7u64;
    for (value, count) in parts {
        let c = chunk::decode(&value).expect("an accepted part decodes");
        assert_eq!(c.count, count);
        assert_eq!(c.origin, Some(chunk::Origin { node: "edge".into(), first_seq: at }));
        for cut in [0, 1, count / 2, count].into_iter().filter(|c| *c <= count) {
            let (rest, n) = chunk::slice(&value, cut, count).expect("an accepted part cuts");
            assert_eq!(n, count - cut);
            let r = chunk::decode(&rest).expect("a cut part decodes");
            assert_eq!(r.origin.map(|o| o.first_seq), Some(at + u64::from(cut)));
        }
        at += u64::from(count);
    }
}

/// The records limit [`otlp_body_input`] gives a request.
const OTLP_MAX_RECORDS: usize = 1 << 20;

/// An OTLP/HTTP body (`codec::otlp`). The first byte picks the signal (bits
/// 0–1: logs, metrics, traces, logs) and the encoding (bit 2: JSON, else
/// protobuf); the rest is the body.
pub fn otlp_body_input(data: &[u8]) {
    use crate::codec::otlp::{self, Format, OtlpError, Signal};
    let Some((&control, body)) = data.split_first() else { return };
    let signal = match control & 3 {
        1 => Signal::Metrics,
        2 => Signal::Traces,
        _ => Signal::Logs,
    };
    let format = if control & 4 != 0 { Format::Json } else { Format::Protobuf };
    let mut out = BlockBuilder::default();
    let appended = match otlp::records(signal, format, body, 7, &mut out, OTLP_MAX_RECORDS) {
        Ok(a) => a,
        Err(OtlpError::TooLarge { limit }) => {
            assert!(out.len_bytes() > limit, "refused at {} bytes under the limit", out.len_bytes());
            return;
        }
        Err(_) => return,
    };
    // What is served (protobuf read item by item) is what decoding the
    // whole request stores.
    if let Ok(req) = otlp::decode(signal, format, body) {
        let mut whole = BlockBuilder::default();
        let a = otlp::append(&req, 7, &mut whole, OTLP_MAX_RECORDS).expect("within the limit as served");
        assert_eq!(a, appended, "whole and streamed decoding disagree");
        assert_eq!(whole.finished(), out.finished(), "whole and streamed decoding stored different records");
        assert_eq!(u64::from(a.stored) + u64::from(a.rejected), otlp::items(&req));
    } else {
        assert_eq!(format, Format::Protobuf, "JSON is decoded whole: it failed above");
    }
    assert_eq!(appended.problem.is_some(), appended.rejected > 0);
    let kind = match signal {
        Signal::Logs => Kind::Log,
        Signal::Metrics => Kind::Metric,
        Signal::Traces => Kind::Span,
    };
    let (block, count) = out.finish();
    assert_eq!(count, appended.stored);
    for record in records(&block) {
        let record = record.expect("a stored record is well formed");
        assert_eq!(record.kind, kind);
        for (t, bytes) in record.fields() {
            let json = matches!(
                t,
                tag::ATTRIBUTES
                    | tag::RESOURCE
                    | tag::SCOPE
                    | tag::BODY
                    | tag::SPAN_EVENTS
                    | tag::SPAN_LINKS
                    | tag::EXP_HISTOGRAM
                    | tag::SUMMARY
                    | tag::EXEMPLARS
                    | tag::DROPPED
                    | tag::METADATA
            );
            if json {
                let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes);
                assert!(parsed.is_ok(), "tag {t} is not JSON: {:?}", String::from_utf8_lossy(bytes));
            }
        }
    }
}
