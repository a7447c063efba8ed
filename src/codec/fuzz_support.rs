//! Bodies of the fuzz targets in `fuzz/`, kept in the library so that normal
//! builds compile them and `tests/fuzz_corpus.rs` replays the corpora on
//! stable Rust. The cargo-fuzz targets are one-line wrappers.
//!
//! Both functions accept any bytes. They panic only when a decoder breaks
//! one of its promises, which is what a fuzzer should report:
//!
//! - the frame decoder consumes bytes with every frame it returns, never
//!   returns a frame over its limit, and reports oversized frames as such;
//! - a Tell batch either decodes completely or leaves the block untouched;
//! - what it appends is a well formed block of the batch's kind, and not
//!   disproportionately larger than the input.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::codec::frame::{Frame, FrameDecoder};
use crate::codec::tell::{Schema, append_items, decode_batch};
use crate::record::{BlockBuilder, Kind, records, tag};

/// `max_frame_bytes` when the control byte's high bit is clear: room for
/// every seed.
const LARGE_MAX_FRAME: u32 = 1 << 20;
/// When it is set: small, so that oversized frames get skipped too.
const SMALL_MAX_FRAME: u32 = 256;
/// Output may exceed input by this factor (plus [`AMPLIFICATION_SLACK`]):
/// the verifier's apparent-size limit bounds it near 4.
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
