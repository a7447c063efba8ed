//! Raw TCP framing: Tell's length-prefixed frames and sluice's acked frames,
//! told apart per frame by the first byte.
//!
//! ```text
//! Tell frame (what the Tell SDKs send; never answered):
//!   len:u32be  batch[len]                       len's first byte is < 0x40
//!
//! Acked frame (sluice extension; every one gets an ack reply, see ack.rs):
//!   0xAC  version:u8(=1)  flags:u16be(=0)  producer:[16]  batch_id:u64be  len:u32be  batch[len]
//!   └──────────────────────── 32-byte header ─────────────────────────────┘
//! ```
//!
//! `batch` is a Tell FlatBuffers `Batch` in both cases. A Tell length can
//! never start with 0xAC because lengths are capped at [`HARD_MAX_FRAME`]
//! (1 GiB), so the first byte alone tells the two apart.
//!
//! Limits: a frame over `max_frame_bytes` but under the hard cap is skipped
//! (its bytes are read and discarded, so the stream stays in sync) and
//! reported as [`Frame::Oversized`]; an acked frame with reserved `flags`
//! set is skipped the same way and reported as [`Frame::ReservedFlags`]. A length over the hard cap, or an acked
//! header with an unknown version, cannot be skipped safely: that is
//! [`FrameError::Impossible`] and the connection must close.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

/// No frame may ever be longer than this, whatever the configuration says.
pub const HARD_MAX_FRAME: u32 = 1 << 30;
/// Default for `max_frame_bytes`.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;
/// First byte of an acked frame.
pub const ACKED_MAGIC: u8 = 0xAC;
/// The only acked-frame version this build speaks.
pub const ACKED_VERSION: u8 = 1;
/// Size of the acked frame header.
pub const ACKED_HEADER_LEN: usize = 32;
const TELL_HEADER_LEN: usize = 4;

/// Identity of an acked batch: who sent it and which one it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckedHeader {
    /// Random per client instance; the de-duplication scope with `batch_id`.
    pub producer: [u8; 16],
    pub batch_id: u64,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A Tell frame: never answered.
    Tell { batch: Bytes },
    /// An acked frame: must be answered with an ack naming `header.batch_id`.
    Acked { header: AckedHeader, batch: Bytes },
    /// A frame longer than `max_frame_bytes`; its bytes are being discarded.
    /// `header` is set for acked frames, which must be answered `too_large`.
    Oversized { header: Option<AckedHeader>, len: u32 },
    /// An acked frame with reserved `flags` set: its meaning is unknown to
    /// this build, so it is answered `malformed` and its bytes discarded
    /// (never stored as if the flags were not there).
    ReservedFlags { header: AckedHeader, flags: u16, len: u32 },
}

/// A framing error after which the stream cannot be trusted.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("impossible frame length {len} (hard limit {limit})")]
    Impossible { len: u32, limit: u32 },
    #[error("unsupported acked frame version {version}")]
    UnknownVersion { version: u8 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the next frame header.
    Header,
    /// Skipping the rest of an oversized frame's payload.
    Discarding { remaining: u64 },
}

/// tokio-util decoder for the raw TCP source. Pure: bytes in, frames out.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: u32,
    state: State,
}

impl FrameDecoder {
    /// `max_frame` is clamped to [`HARD_MAX_FRAME`].
    pub fn new(max_frame: u32) -> Self {
        FrameDecoder { max_frame: max_frame.min(HARD_MAX_FRAME), state: State::Header }
    }

    /// Checks a header without consuming: `Ok(None)` when more bytes are needed,
    /// otherwise the header length, the payload length and the acked identity.
    fn peek_header(&self, src: &[u8]) -> Result<Option<(usize, u32, Option<AckedHeader>)>, FrameError> {
        Ok(self.peek_header_flags(src)?.map(|(head, len, acked, _)| (head, len, acked)))
    }

    /// [`Self::peek_header`] plus the acked frame's `flags` (0 for Tell frames).
    #[allow(clippy::type_complexity)]
    fn peek_header_flags(&self, src: &[u8]) -> Result<Option<(usize, u32, Option<AckedHeader>, u16)>, FrameError> {
        let Some(&first) = src.first() else { return Ok(None) };
        if first != ACKED_MAGIC {
            let Some(head) = src.get(..TELL_HEADER_LEN) else { return Ok(None) };
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if len > HARD_MAX_FRAME {
                return Err(FrameError::Impossible { len, limit: HARD_MAX_FRAME });
            }
            return Ok(Some((TELL_HEADER_LEN, len, None, 0)));
        }
        if let Some(&version) = src.get(1)
            && version != ACKED_VERSION
        {
            return Err(FrameError::UnknownVersion { version });
        }
        let Some(head) = src.get(..ACKED_HEADER_LEN) else { return Ok(None) };
        let mut producer = [0u8; 16];
        producer.copy_from_slice(&head[4..20]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&head[20..28]);
        let len = u32::from_be_bytes([head[28], head[29], head[30], head[31]]);
        if len > HARD_MAX_FRAME {
            return Err(FrameError::Impossible { len, limit: HARD_MAX_FRAME });
        }
        let header = AckedHeader { producer, batch_id: u64::from_be_bytes(id) };
        let flags = u16::from_be_bytes([head[2], head[3]]);
        Ok(Some((ACKED_HEADER_LEN, len, Some(header), flags)))
    }
}

impl FrameDecoder {
    /// A frame whose header is in `src` but whose payload is not complete
    /// yet: its payload length and acked identity. `None` when no frame is
    /// pending, or it is being discarded.
    pub fn pending(&self, src: &[u8]) -> Option<(u32, Option<AckedHeader>)> {
        if self.state != State::Header {
            return None;
        }
        match self.peek_header(src) {
            Ok(Some((head, len, acked))) if src.len() < head + len as usize => Some((len, acked)),
            _ => None,
        }
    }

    /// The bytes received so far of the batch of the next frame in `src`
    /// (complete or not); `None` before its header is complete or while a
    /// frame is being discarded.
    pub fn next_batch_prefix<'b>(&self, src: &'b [u8]) -> Option<&'b [u8]> {
        if self.state != State::Header {
            return None;
        }
        match self.peek_header(src) {
            Ok(Some((head, len, _))) => src.get(head..src.len().min(head + len as usize)),
            _ => None,
        }
    }

    /// Skips the pending frame (see [`Self::pending`]): its header is
    /// consumed and the rest of its payload will be discarded as it arrives.
    pub fn skip_pending(&mut self, src: &mut BytesMut) {
        if let Ok(Some((head, len, _))) = self.peek_header(src)
            && self.state == State::Header
        {
            src.advance(head);
            let take = src.len().min(len as usize);
            src.advance(take);
            let left = u64::from(len) - take as u64;
            self.state = if left > 0 { State::Discarding { remaining: left } } else { State::Header };
        }
    }

    /// Whether the decoder is discarding the rest of a skipped frame.
    pub fn is_discarding(&self) -> bool {
        self.state != State::Header
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                // Skip what we have of an oversized payload; every byte seen is consumed.
                State::Discarding { remaining } => {
                    let take = remaining.min(src.len() as u64) as usize;
                    src.advance(take);
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::Discarding { remaining: left };
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let Some((head_len, len, header, flags)) = self.peek_header_flags(src)? else {
                        return Ok(None);
                    };
                    if let Some(acked) = header
                        && flags != 0
                    {
                        src.advance(head_len);
                        self.state = State::Discarding { remaining: u64::from(len) };
                        return Ok(Some(Frame::ReservedFlags { header: acked, flags, len }));
                    }
                    if len > self.max_frame {
                        src.advance(head_len);
                        self.state = State::Discarding { remaining: u64::from(len) };
                        return Ok(Some(Frame::Oversized { header, len }));
                    }
                    // Lengths are ≤ 1 GiB here, so this sum cannot overflow.
                    let total = head_len + len as usize;
                    // Memory grows as the payload arrives, never for the claim.
                    if src.len() < total {
                        return Ok(None);
                    }
                    src.advance(head_len);
                    let batch = src.split_to(len as usize).freeze();
                    return Ok(Some(match header {
                        None => Frame::Tell { batch },
                        Some(header) => Frame::Acked { header, batch },
                    }));
                }
            }
        }
    }
}

/// Writes a Tell frame (what the Tell SDK sends).
pub fn encode_tell(batch: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(batch.len() as u32).to_be_bytes());
    out.extend_from_slice(batch);
}

/// Writes an acked frame header followed by the batch.
pub fn encode_acked(header: &AckedHeader, batch: &[u8], out: &mut Vec<u8>) {
    out.push(ACKED_MAGIC);
    out.push(ACKED_VERSION);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&header.producer);
    out.extend_from_slice(&header.batch_id.to_be_bytes());
    out.extend_from_slice(&(batch.len() as u32).to_be_bytes());
    out.extend_from_slice(batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = dec.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        out
    }

    fn header(id: u64) -> AckedHeader {
        AckedHeader { producer: [7; 16], batch_id: id }
    }

    #[test]
    fn tell_and_acked_frames_interleave() {
        let mut wire = Vec::new();
        encode_tell(b"one", &mut wire);
        encode_acked(&header(9), b"two", &mut wire);
        encode_tell(b"", &mut wire);
        let frames = decode_all(&mut FrameDecoder::new(1024), &[&wire]);
        assert_eq!(
            frames,
            vec![
                Frame::Tell { batch: Bytes::from_static(b"one") },
                Frame::Acked { header: header(9), batch: Bytes::from_static(b"two") },
                Frame::Tell { batch: Bytes::new() },
            ]
        );
    }

    #[test]
    fn oversized_frames_are_skipped_and_the_stream_stays_in_sync() {
        let mut wire = Vec::new();
        encode_acked(&header(1), &[0u8; 100], &mut wire);
        encode_tell(&[1u8; 50], &mut wire);
        encode_tell(b"ok", &mut wire);
        let pieces: Vec<&[u8]> = wire.chunks(7).collect();
        let frames = decode_all(&mut FrameDecoder::new(10), &pieces);
        assert_eq!(
            frames,
            vec![
                Frame::Oversized { header: Some(header(1)), len: 100 },
                Frame::Oversized { header: None, len: 50 },
                Frame::Tell { batch: Bytes::from_static(b"ok") },
            ]
        );
    }

    #[test]
    fn reserved_flags_are_refused_and_the_stream_stays_in_sync() {
        let mut wire = Vec::new();
        encode_acked(&header(1), b"flagged", &mut wire);
        wire[3] = 0x01;
        encode_tell(b"ok", &mut wire);
        let pieces: Vec<&[u8]> = wire.chunks(5).collect();
        let frames = decode_all(&mut FrameDecoder::new(1024), &pieces);
        assert_eq!(
            frames,
            vec![
                Frame::ReservedFlags { header: header(1), flags: 1, len: 7 },
                Frame::Tell { batch: Bytes::from_static(b"ok") },
            ]
        );
    }

    #[test]
    fn impossible_length_is_an_error() {
        let mut buf = BytesMut::from(&[0x7f, 0, 0, 0][..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::Impossible { .. }));
    }

    #[test]
    fn unknown_acked_version_is_an_error_as_soon_as_seen() {
        let mut buf = BytesMut::from(&[ACKED_MAGIC, 2][..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::UnknownVersion { version: 2 }));
    }

    #[test]
    fn max_frame_is_clamped_to_the_hard_limit() {
        assert_eq!(FrameDecoder::new(u32::MAX).max_frame, HARD_MAX_FRAME);
    }

    proptest! {
        #[test]
        fn split_anywhere_decodes_the_same(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            acked in proptest::collection::vec(any::<bool>(), 8),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if acked[i] {
                    encode_acked(&header(i as u64), p, &mut wire);
                    expected.push(Frame::Acked { header: header(i as u64), batch: Bytes::copy_from_slice(p) });
                } else {
                    encode_tell(p, &mut wire);
                    expected.push(Frame::Tell { batch: Bytes::copy_from_slice(p) });
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for p in points {
                pieces.push(&wire[last..p]);
                last = p;
            }
            pieces.push(&wire[last..]);
            let frames = decode_all(&mut FrameDecoder::new(1 << 20), &pieces);
            prop_assert_eq!(frames, expected);
        }
    }
}
