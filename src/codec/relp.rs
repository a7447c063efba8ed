//! RELP framing, as rsyslog's librelp speaks it (`omrelp` → `[sources.relp]`).
//!
//! ```text
//! frame    = TXNR SP COMMAND SP DATALEN [SP DATA] LF
//! TXNR     = 1*9DIGIT            (1 … 999999999, then 1 again)
//! COMMAND  = 1*32ALPHA           (open, syslog, close; rsp and serverclose from the server)
//! DATALEN  = 1*9DIGIT            (the SP and DATA are there only when DATALEN > 0)
//! ```
//!
//! Every field is checked as it arrives, so a peer cannot make the decoder
//! hold more than a header's 53 bytes before a frame is known to be well
//! formed, and DATA is held only up to `max_data` bytes: a longer DATA is
//! cut to its first `max_data` bytes, the rest is skipped as it arrives,
//! and the frame comes out with `truncated` set (librelp would resend a
//! frame it was refused for after every reconnect). Anything else that
//! breaks the grammar is an error, and the session ends.
//!
//! The server side is [`rsp`], [`serverclose`] and [`OPEN_OK`].

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

/// The largest transaction number; the next one is 1.
pub const MAX_TXNR: u32 = 999_999_999;
/// Longest command name.
pub const MAX_COMMAND: usize = 32;
/// TXNR and DATALEN have at most this many digits.
const MAX_DIGITS: usize = 9;
/// The longest header: `TXNR SP COMMAND SP DATALEN SP`.
pub const MAX_HEADER: usize = MAX_DIGITS + 1 + MAX_COMMAND + 1 + MAX_DIGITS + 1;

/// The answer to `open`: librelp checks the code, `relp_version` (at most
/// its own, 0) and that `commands` offers `syslog`.
pub const OPEN_OK: &str = concat!(
    "200 OK\nrelp_version=0\nrelp_software=sluice,",
    env!("CARGO_PKG_VERSION"),
    ",https://docs.tell.rs\ncommands=syslog"
);
/// The answer to a `syslog` frame once its message is committed.
pub const SYSLOG_OK: &str = "200 OK";

/// What a frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Open,
    Syslog,
    Close,
    /// Anything else (a server's `rsp`, an unknown command): its name.
    Other(String),
}

impl Command {
    fn from_name(name: &[u8]) -> Command {
        match name {
            b"open" => Command::Open,
            b"syslog" => Command::Syslog,
            b"close" => Command::Close,
            other => Command::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpFrame {
    pub txnr: u32,
    pub command: Command,
    pub data: Bytes,
    /// DATA was longer than the limit; `data` is its first part.
    pub truncated: bool,
}

/// Why a stream is not RELP. Every one ends the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelpError {
    #[error("transaction number is not 1 to 9 digits")]
    BadTxnr,
    #[error("command is not 1 to {MAX_COMMAND} letters")]
    BadCommand,
    #[error("data length is not 1 to 9 digits")]
    BadLength,
    #[error("frame does not end with LF")]
    BadTrailer,
    /// The Decoder trait's I/O error (the decoder itself never reads).
    #[error("read error: {0}")]
    Io(String),
}

impl From<std::io::Error> for RelpError {
    fn from(e: std::io::Error) -> RelpError {
        RelpError::Io(e.to_string())
    }
}

/// A header read, its DATA still coming.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    txnr: u32,
    command: Command,
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Header,
    /// DATA of `header.len` bytes, then LF, are coming.
    Data(Header),
    /// The first `max_data` bytes of a longer DATA are in `kept`; `skip`
    /// more are discarded before the LF.
    Skipping { header: Header, kept: Bytes, skip: usize },
}

/// tokio-util decoder for RELP frames. Pure: bytes in, frames out.
#[derive(Debug, Clone)]
pub struct RelpDecoder {
    max_data: usize,
    state: State,
}

impl RelpDecoder {
    /// DATA beyond `max_data` bytes (at least 1) is cut.
    pub fn new(max_data: usize) -> RelpDecoder {
        RelpDecoder { max_data: max_data.max(1), state: State::Header }
    }

    /// Whether the decoder is between frames.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header
    }

    /// Bytes the frame begun in `buf` still needs to be kept, when its
    /// header is read (bytes to be skipped need no room).
    pub fn frame_rest(&self, buf: &BytesMut) -> usize {
        match &self.state {
            State::Data(h) if h.len > self.max_data => self.max_data.saturating_sub(buf.len()),
            State::Data(h) => (h.len + 1).saturating_sub(buf.len()),
            State::Header | State::Skipping { .. } => 0,
        }
    }

    /// Bytes of DATA held outside the buffer: the kept part of a frame
    /// whose rest is being skipped.
    pub fn held(&self) -> usize {
        match &self.state {
            State::Skipping { kept, .. } => kept.len(),
            State::Header | State::Data(_) => 0,
        }
    }

    /// DATALEN of the frame whose header has been read, while its DATA comes.
    pub fn data_len(&self) -> Option<usize> {
        match &self.state {
            State::Data(h) | State::Skipping { header: h, .. } => Some(h.len),
            State::Header => None,
        }
    }
}

/// The transaction number after `txnr`.
pub fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR { 1 } else { txnr + 1 }
}

/// Appends `TXNR rsp DATALEN[ DATA]\n`.
pub fn rsp(txnr: u32, data: &str, out: &mut Vec<u8>) {
    let space = if data.is_empty() { "" } else { " " };
    out.extend_from_slice(format!("{txnr} rsp {}{space}{data}\n", data.len()).as_bytes());
}

/// Appends the hint a server sends before it closes a session.
pub fn serverclose(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0 serverclose 0\n");
}

/// Reads `1..=9` digits ending at a SP (or, for DATALEN, an LF) at `*at`.
/// `Ok(None)`: the buffer ends first.
fn number(buf: &[u8], at: &mut usize, lf_ends: bool, error: RelpError) -> Result<Option<(u32, u8)>, RelpError> {
    let start = *at;
    let mut value = 0u32;
    loop {
        let Some(&b) = buf.get(*at) else {
            return if *at - start > MAX_DIGITS { Err(error) } else { Ok(None) };
        };
        match b {
            b'0'..=b'9' if *at - start < MAX_DIGITS => value = value * 10 + u32::from(b - b'0'),
            b' ' if *at > start => break,
            b'\n' if lf_ends && *at > start => break,
            _ => return Err(error),
        }
        *at += 1;
    }
    let end = buf[*at];
    *at += 1;
    Ok(Some((value, end)))
}

/// Parses a header at the start of `buf`: the header, the bytes it took,
/// and whether DATA follows (its SP was there).
fn header(buf: &[u8]) -> Result<Option<(Header, usize)>, RelpError> {
    let mut at = 0;
    let Some((txnr, _)) = number(buf, &mut at, false, RelpError::BadTxnr)? else { return Ok(None) };
    let start = at;
    loop {
        let Some(&b) = buf.get(at) else {
            return if at - start > MAX_COMMAND { Err(RelpError::BadCommand) } else { Ok(None) };
        };
        match b {
            b if b.is_ascii_alphabetic() && at - start < MAX_COMMAND => at += 1,
            b' ' if at > start => break,
            _ => return Err(RelpError::BadCommand),
        }
    }
    let command = Command::from_name(&buf[start..at]);
    at += 1;
    let Some((len, end)) = number(buf, &mut at, true, RelpError::BadLength)? else { return Ok(None) };
    let len = len as usize;
    // `N close 0\n`: no SP and no DATA when the length is 0; a SP announces DATA.
    match (len, end) {
        (0, b'\n') => Ok(Some((Header { txnr, command, len: 0 }, at - 1))),
        (n, b' ') if n > 0 => Ok(Some((Header { txnr, command, len }, at))),
        _ => Err(RelpError::BadLength),
    }
}

impl Decoder for RelpDecoder {
    type Item = RelpFrame;
    type Error = RelpError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RelpFrame>, RelpError> {
        loop {
            match std::mem::replace(&mut self.state, State::Header) {
                State::Header => match header(buf)? {
                    None => return Ok(None),
                    Some((h, used)) => {
                        buf.advance(used);
                        self.state = State::Data(h);
                    }
                },
                State::Data(h) if h.len > self.max_data => {
                    if buf.len() < self.max_data {
                        self.state = State::Data(h);
                        return Ok(None);
                    }
                    let kept = buf.split_to(self.max_data).freeze();
                    let skip = h.len - self.max_data;
                    self.state = State::Skipping { header: h, kept, skip };
                }
                State::Data(h) => {
                    if buf.len() <= h.len {
                        self.state = State::Data(h);
                        return Ok(None);
                    }
                    if buf[h.len] != b'\n' {
                        return Err(RelpError::BadTrailer);
                    }
                    let data = buf.split_to(h.len).freeze();
                    buf.advance(1);
                    return Ok(Some(RelpFrame { txnr: h.txnr, command: h.command, data, truncated: false }));
                }
                State::Skipping { header, kept, skip } if skip > 0 => {
                    let n = skip.min(buf.len());
                    buf.advance(n);
                    self.state = State::Skipping { header, kept, skip: skip - n };
                    if buf.is_empty() {
                        return Ok(None);
                    }
                }
                State::Skipping { header, kept, .. } => {
                    let Some(&b) = buf.first() else {
                        self.state = State::Skipping { header, kept, skip: 0 };
                        return Ok(None);
                    };
                    if b != b'\n' {
                        return Err(RelpError::BadTrailer);
                    }
                    buf.advance(1);
                    let Header { txnr, command, .. } = header;
                    return Ok(Some(RelpFrame { txnr, command, data: kept, truncated: true }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut RelpDecoder, bytes: &[u8]) -> Result<Vec<RelpFrame>, RelpError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = decoder.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    fn frame(txnr: u32, command: Command, data: &str) -> RelpFrame {
        RelpFrame { txnr, command, data: Bytes::copy_from_slice(data.as_bytes()), truncated: false }
    }

    /// What omrelp (librelp 1.11) sent in a capture, in one segment.
    const SESSION: &[u8] = b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n\
2 syslog 48 <13>2026-05-01T12:00:00+00:00 host1 app: hello 1\n3 syslog 48 <13>2026-05-01T12:00:00+00:00 host1 app: hello 2\n\
4 close 0\n";

    #[test]
    fn a_librelp_session_decodes_whole_and_byte_by_byte() {
        let want = vec![
            frame(
                1,
                Command::Open,
                "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog",
            ),
            frame(2, Command::Syslog, "<13>2026-05-01T12:00:00+00:00 host1 app: hello 1"),
            frame(3, Command::Syslog, "<13>2026-05-01T12:00:00+00:00 host1 app: hello 2"),
            frame(4, Command::Close, ""),
        ];
        assert_eq!(all(&mut RelpDecoder::new(1024), SESSION).unwrap(), want);
        let mut decoder = RelpDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in SESSION {
            buf.extend_from_slice(&[b]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, want);
        assert!(buf.is_empty() && decoder.at_boundary());
    }

    #[test]
    fn data_may_hold_line_feeds_and_ends_exactly_at_its_length() {
        let got = all(&mut RelpDecoder::new(64), b"7 syslog 5 a\nb\nc\n").unwrap();
        assert_eq!(got, vec![frame(7, Command::Syslog, "a\nb\nc")]);
    }

    #[test]
    fn longer_data_is_cut_to_the_limit_and_the_rest_skipped_in_step() {
        let mut decoder = RelpDecoder::new(4);
        let mut buf = BytesMut::from(&b"2 syslog 10 0123"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty(), "the kept part leaves the buffer");
        assert_eq!((decoder.frame_rest(&buf), decoder.held(), decoder.data_len()), (0, 4, Some(10)));
        buf.extend_from_slice(b"456789\n3 syslog 2 ok\n");
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!((first.data.as_ref(), first.truncated), (&b"0123"[..], true));
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(frame(3, Command::Syslog, "ok")));
    }

    #[test]
    fn broken_grammar_is_an_error_before_anything_large_is_held() {
        for (bytes, error) in [
            (&b"x open 0\n"[..], RelpError::BadTxnr),
            (b"1234567890 open 0\n", RelpError::BadTxnr),
            (b" 1 open 0\n", RelpError::BadTxnr),
            (b"1  open 0\n", RelpError::BadCommand),
            (b"1 op3n 0\n", RelpError::BadCommand),
            (b"1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0\n", RelpError::BadCommand),
            (b"1 open x\n", RelpError::BadLength),
            (b"1 open 1234567890 ", RelpError::BadLength),
            (b"1 close 0 \n", RelpError::BadLength),
            (b"1 syslog 3\nabc\n", RelpError::BadLength),
            (b"1 close \n", RelpError::BadLength),
            (b"1 syslog 3 abcd\n", RelpError::BadTrailer),
            (b"1 close 0\r\n", RelpError::BadLength),
        ] {
            let got = all(&mut RelpDecoder::new(64), bytes);
            assert_eq!(
                got.as_ref().map_err(Clone::clone).err(),
                Some(error.clone()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A long run of digits or letters is refused at the tenth digit or the 33rd letter.
        assert_eq!(all(&mut RelpDecoder::new(64), &[b'1'; 10]), Err(RelpError::BadTxnr));
        let mut letters = b"1 ".to_vec();
        letters.extend_from_slice(&[b'a'; 33]);
        assert_eq!(all(&mut RelpDecoder::new(64), &letters), Err(RelpError::BadCommand));
    }

    #[test]
    fn other_commands_come_out_by_name() {
        let got = all(&mut RelpDecoder::new(64), b"5 starttls 0\n6 rsp 6 200 OK\n").unwrap();
        assert_eq!(got[0].command, Command::Other("starttls".into()));
        assert_eq!(got[1].command, Command::Other("rsp".into()));
    }

    #[test]
    fn answers_are_relp_frames() {
        let mut out = Vec::new();
        rsp(2, SYSLOG_OK, &mut out);
        rsp(3, "", &mut out);
        serverclose(&mut out);
        assert_eq!(out, b"2 rsp 6 200 OK\n3 rsp 0\n0 serverclose 0\n");
        let mut open = Vec::new();
        rsp(1, OPEN_OK, &mut open);
        let parsed = all(&mut RelpDecoder::new(1024), &open).unwrap();
        assert!(String::from_utf8_lossy(&parsed[0].data).contains("\nrelp_version=0\n"));
        assert!(String::from_utf8_lossy(&parsed[0].data).ends_with("\ncommands=syslog"));
        assert_eq!((next_txnr(1), next_txnr(MAX_TXNR)), (2, 1));
    }
}
