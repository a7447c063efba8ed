//! Syslog over TCP framing (RFC 6587), detected per frame.
//!
//! ```text
//! octet-counted:      MSG-LEN SP SYSLOG-MSG        MSG-LEN = NONZERO-DIGIT 0*8DIGIT
//! non-transparent:    SYSLOG-MSG LF                (a CR before the LF is dropped too)
//! ```
//!
//! A frame that starts with a digit 1-9 followed by up to eight more digits
//! and a space is octet-counted; anything else (a `<PRI>`, a digit run that
//! is not followed by a space, a zero length, a length over
//! [`MAX_OCTET_COUNT`]) is read up to the next LF. That is the detection
//! rsyslog's `imtcp` does, except that rsyslog believes a count with a
//! missing space and sluice does not (it reads such a line as text, which
//! keeps a PRI-less "2024-01-01 …" line intact).
//!
//! rsyslog's `RSYSLOG_SyslogProtocol23Format` template ends with LF, and
//! rsyslog counts that LF inside the octet-counted frame: one trailing LF
//! (and a CR before it) is trimmed from octet-counted frames.
//!
//! A message longer than `max_message_bytes` is cut to that many bytes and
//! returned with `truncated` set; the rest of its frame is skipped (the
//! remaining octets, or up to the next LF), so the stream stays in sync.
//! Empty non-transparent frames (blank lines) carry no message and are
//! skipped. The decoder never fails on input: every byte sequence is some
//! sequence of frames.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Default for `max_message_bytes`.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// `max_message_bytes` may not exceed this.
pub const HARD_MAX_MESSAGE: usize = 16 << 20;
/// An octet count above this is not believed: the line is read as
/// newline-framed text instead of skipping up to a gigabyte of stream.
pub const MAX_OCTET_COUNT: usize = 256 << 20;
/// MSG-LEN has at most this many digits (the largest count above has 9).
const MAX_LEN_DIGITS: usize = 9;

/// One syslog message as framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogFrame {
    pub msg: Bytes,
    /// The message was longer than the limit; `msg` is its first part.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary (or inside a frame whose start is still buffered).
    NotDiscarding,
    /// Skipping the remaining octets of a truncated octet-counted frame.
    DiscardingOctets { remaining: usize },
    /// Skipping the rest of a truncated line, up to and including its LF.
    DiscardingToEol,
}

/// How the frame at the head of the buffer is framed.
enum Head {
    /// More bytes are needed to tell.
    Undecided,
    /// Octet-counted: `header` bytes of `LEN SP`, then `len` octets.
    Octets { header: usize, len: usize },
    /// Up to the next LF.
    Line,
}

/// tokio-util decoder for syslog over TCP. Pure: bytes in, frames out.
#[derive(Debug, Clone)]
pub struct OctetDecoder {
    max_message: usize,
    state: State,
}

impl OctetDecoder {
    /// `max_message` is clamped to 1..=[`HARD_MAX_MESSAGE`].
    pub fn new(max_message: usize) -> Self {
        OctetDecoder { max_message: max_message.clamp(1, HARD_MAX_MESSAGE), state: State::NotDiscarding }
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// True when no frame has been started: nothing in the buffer belongs to
    /// a frame already partly consumed.
    pub fn at_boundary(&self) -> bool {
        self.state == State::NotDiscarding
    }

    fn head(src: &[u8]) -> Head {
        let Some(&first) = src.first() else { return Head::Undecided };
        if !(b'1'..=b'9').contains(&first) {
            return Head::Line;
        }
        let digits = src.iter().take(MAX_LEN_DIGITS + 1).take_while(|b| b.is_ascii_digit()).count();
        match src.get(digits) {
            Some(b' ') if digits <= MAX_LEN_DIGITS => {
                // At most nine ASCII digits: always fits in usize.
                let len = src[..digits].iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                if len > MAX_OCTET_COUNT { Head::Line } else { Head::Octets { header: digits + 1, len } }
            }
            None if digits == src.len() && digits <= MAX_LEN_DIGITS => Head::Undecided,
            _ => Head::Line,
        }
    }

    fn decode_octets(&mut self, src: &mut BytesMut, header: usize, len: usize) -> Option<SyslogFrame> {
        // A frame up to two bytes over the limit may still fit once its LF is trimmed.
        if len > self.max_message.saturating_add(2) {
            // Return the first part once it is here; skip the rest as it comes.
            if src.len() < header + self.max_message {
                return None;
            }
            src.advance(header);
            let msg = src.split_to(self.max_message).freeze();
            self.state = State::DiscardingOctets { remaining: len - self.max_message };
            return Some(SyslogFrame { msg, truncated: true });
        }
        if src.len() < header + len {
            return None;
        }
        src.advance(header);
        let msg = src.split_to(len);
        Some(self.finish(msg))
    }

    /// Trims the line end and enforces the limit on a complete frame.
    fn finish(&self, mut msg: BytesMut) -> SyslogFrame {
        trim_eol(&mut msg);
        let truncated = msg.len() > self.max_message;
        msg.truncate(self.max_message);
        SyslogFrame { msg: msg.freeze(), truncated }
    }

    /// The next line, or `None` if its end is not here yet. A blank line
    /// comes back as an empty message.
    fn decode_line(&mut self, src: &mut BytesMut) -> Option<SyslogFrame> {
        // The limit, plus a CR and the LF.
        let window = &src[..src.len().min(self.max_message + 2)];
        match memchr::memchr(b'\n', window) {
            Some(end) => {
                let msg = src.split_to(end + 1);
                Some(self.finish(msg))
            }
            None if window.len() == self.max_message + 2 => {
                let msg = src.split_to(self.max_message).freeze();
                self.state = State::DiscardingToEol;
                Some(SyslogFrame { msg, truncated: true })
            }
            None => None,
        }
    }

    /// Skips discarded bytes; true when back at a frame boundary.
    fn discard(&mut self, src: &mut BytesMut) -> bool {
        match self.state {
            // Nothing to skip.
            State::NotDiscarding => true,
            // Drop what is here of the remaining octets; done when none remain.
            State::DiscardingOctets { remaining } => {
                let n = remaining.min(src.len());
                src.advance(n);
                if n == remaining {
                    self.state = State::NotDiscarding;
                    true
                } else {
                    self.state = State::DiscardingOctets { remaining: remaining - n };
                    false
                }
            }
            // Drop up to and including the next LF, or everything if none yet.
            State::DiscardingToEol => match memchr::memchr(b'\n', src) {
                Some(end) => {
                    src.advance(end + 1);
                    self.state = State::NotDiscarding;
                    true
                }
                None => {
                    src.clear();
                    false
                }
            },
        }
    }
}

/// Drops one trailing LF and a CR before it.
fn trim_eol(msg: &mut BytesMut) {
    if msg.last() == Some(&b'\n') {
        msg.truncate(msg.len() - 1);
        if msg.last() == Some(&b'\r') {
            msg.truncate(msg.len() - 1);
        }
    }
}

impl Decoder for OctetDecoder {
    type Item = SyslogFrame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<SyslogFrame>, std::io::Error> {
        loop {
            if !self.discard(src) {
                return Ok(None);
            }
            let frame = match Self::head(src) {
                Head::Undecided => return Ok(None),
                Head::Octets { header, len } => self.decode_octets(src, header, len),
                Head::Line => self.decode_line(src),
            };
            match frame {
                // A blank line or an empty count-framed message: nothing to keep.
                Some(f) if f.msg.is_empty() && !f.truncated => continue,
                other => return Ok(other),
            }
        }
    }

    /// At end of stream a partial frame is still a message: a line without
    /// its LF is complete, an octet-counted frame cut short is truncated.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<SyslogFrame>, std::io::Error> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if !self.discard(src) || src.is_empty() {
            src.clear();
            return Ok(None);
        }
        let frame = match Self::head(src) {
            Head::Octets { header, .. } => {
                src.advance(header);
                let mut msg = src.split();
                msg.truncate(self.max_message);
                SyslogFrame { msg: msg.freeze(), truncated: true }
            }
            // A bare count with nothing after it, or a line without its LF
            // (up to one byte over the limit: the decoder waits for a CR).
            Head::Undecided | Head::Line => self.finish(src.split()),
        };
        if frame.msg.is_empty() {
            return Ok(None);
        }
        Ok(Some(frame))
    }
}

/// Encodes messages octet-counted (`LEN SP MSG`), as the tests and the bench send them.
pub fn encode_octet_counted(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(decoder: &mut OctetDecoder, input: &[u8]) -> Vec<SyslogFrame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = decoder.decode(&mut buf).unwrap() {
            out.push(f);
        }
        while let Some(f) = decoder.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn msgs(frames: &[SyslogFrame]) -> Vec<(&[u8], bool)> {
        frames.iter().map(|f| (&f.msg[..], f.truncated)).collect()
    }

    #[test]
    fn detects_framing_per_frame() {
        let input = b"11 <13>1 - - a\n<13>plain line\r\n5 hello12 <13>counted\n\n<14>last";
        let frames = decode_all(&mut OctetDecoder::new(1024), input);
        assert_eq!(
            msgs(&frames),
            vec![
                (&b"<13>1 - - a"[..], false),
                (b"<13>plain line", false),
                (b"hello", false),
                (b"<13>counted", false),
                (b"<14>last", false),
            ]
        );
    }

    #[test]
    fn digits_without_a_space_are_a_line() {
        let frames = decode_all(&mut OctetDecoder::new(1024), b"2024-01-01 no pri\n0 zero\n1234567890 ten digits\n");
        assert_eq!(
            msgs(&frames),
            vec![(&b"2024-01-01 no pri"[..], false), (b"0 zero", false), (b"1234567890 ten digits", false)]
        );
    }

    #[test]
    fn a_count_over_the_believable_maximum_is_a_line() {
        let frames = decode_all(&mut OctetDecoder::new(1024), b"999999999 not really\n3 abc");
        assert_eq!(msgs(&frames), vec![(&b"999999999 not really"[..], false), (b"abc", false)]);
    }

    #[test]
    fn rsyslog_trailing_lf_inside_the_count_is_trimmed_but_inner_lfs_are_kept() {
        let frames = decode_all(&mut OctetDecoder::new(1024), b"14 line1\nline2\r\n\n4 abc\n");
        assert_eq!(msgs(&frames), vec![(&b"line1\nline2\r\n"[..], false), (b"abc", false)]);
    }

    #[test]
    fn oversized_octet_frame_is_truncated_and_the_stream_stays_in_sync() {
        let mut d = OctetDecoder::new(4);
        let frames = decode_all(&mut d, b"10 0123456789<1>next\n3 abc");
        assert_eq!(msgs(&frames), vec![(&b"0123"[..], true), (b"<1>n", true), (b"abc", false)]);
    }

    #[test]
    fn oversized_line_is_truncated_and_skipped_to_its_end() {
        let mut d = OctetDecoder::new(5);
        let frames = decode_all(&mut d, b"<1>abcdefgh\n<2>ok\n12345\n");
        assert_eq!(msgs(&frames), vec![(&b"<1>ab"[..], true), (b"<2>ok", false), (b"12345", false)]);
    }

    #[test]
    fn truncation_works_when_bytes_arrive_one_at_a_time() {
        let input = b"10 0123456789<1>abcdefgh\n3 abc";
        let mut d = OctetDecoder::new(4);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in input {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = d.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        assert_eq!(msgs(&out), vec![(&b"0123"[..], true), (b"<1>a", true), (b"abc", false)]);
    }

    #[test]
    fn eof_mid_frame_keeps_what_arrived() {
        let frames = decode_all(&mut OctetDecoder::new(64), b"20 <13>cut short");
        assert_eq!(msgs(&frames), vec![(&b"<13>cut short"[..], true)]);
        let frames = decode_all(&mut OctetDecoder::new(64), b"<13>no newline");
        assert_eq!(msgs(&frames), vec![(&b"<13>no newline"[..], false)]);
        let frames = decode_all(&mut OctetDecoder::new(64), b"12");
        assert_eq!(msgs(&frames), vec![(&b"12"[..], false)]);
        assert!(decode_all(&mut OctetDecoder::new(64), b"\n\r\n").is_empty());
    }

    /// Found by the syslog_framer fuzz target: a line one byte over the
    /// limit without its LF at the end of the stream came out whole.
    #[test]
    fn eof_frames_respect_the_limit() {
        let frames = decode_all(&mut OctetDecoder::new(4), b"<1>ab");
        assert_eq!(msgs(&frames), vec![(&b"<1>a"[..], true)]);
        let frames = decode_all(&mut OctetDecoder::new(4), b"6 <1>ab");
        assert_eq!(msgs(&frames), vec![(&b"<1>a"[..], true)]);
    }

    #[test]
    fn partial_input_waits_without_consuming() {
        let mut d = OctetDecoder::new(64);
        for partial in [&b"1"[..], b"12", b"12 <13>", b"<13>no end yet"] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(d.decode(&mut buf).unwrap(), None);
            assert_eq!(&buf[..], partial);
        }
    }

    /// Messages as a sender would produce them: no LF inside line-framed ones.
    fn message() -> impl Strategy<Value = (Vec<u8>, bool)> {
        (proptest::collection::vec(any::<u8>(), 1..200), any::<bool>()).prop_map(|(mut m, octet)| {
            if !octet {
                m.retain(|&b| b != b'\n');
                m.insert(0, b'<');
                if m.last() == Some(&b'\r') {
                    m.push(b'x');
                }
            } else if m.last() == Some(&b'\n') {
                m.push(b'x');
            }
            (m, octet)
        })
    }

    proptest! {
        #[test]
        fn encode_split_decode_round_trips(
            messages in proptest::collection::vec(message(), 1..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            limit in prop_oneof![Just(1024usize), 1usize..64],
        ) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for (m, octet) in &messages {
                if *octet {
                    encode_octet_counted(m, &mut wire);
                } else {
                    wire.extend_from_slice(m);
                    wire.extend_from_slice(b"\r\n");
                }
                let truncated = m.len() > limit;
                want.push((m[..m.len().min(limit)].to_vec(), truncated));
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut d = OctetDecoder::new(limit);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for p in points.into_iter().chain(std::iter::once(wire.len())) {
                buf.extend_from_slice(&wire[at..p]);
                at = p;
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    got.push((f.msg.to_vec(), f.truncated));
                }
            }
            while let Some(f) = d.decode_eof(&mut buf).unwrap() {
                got.push((f.msg.to_vec(), f.truncated));
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn any_bytes_decode_without_looping(input in proptest::collection::vec(any::<u8>(), 0..512), limit in 1usize..64) {
            let mut d = OctetDecoder::new(limit);
            let mut buf = BytesMut::from(&input[..]);
            let mut n = 0;
            while let Some(f) = d.decode(&mut buf).unwrap() {
                prop_assert!(f.msg.len() <= limit);
                n += 1;
                prop_assert!(n <= input.len());
            }
        }
    }
}
