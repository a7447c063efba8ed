//! The light scan every syslog message gets at ingest: strip a UTF-8 BOM,
//! and in `auth = "key"` mode find the streaming key and cut it out.
//!
//! Full parsing happens when events are read (see [`super::syslog`]); at
//! ingest only the RFC 5424 header is walked, and only when needed:
//!
//! ```text
//! <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
//! SD      = "-" / 1*SD-ELEMENT
//! ELEMENT = "[" SD-ID *(SP NAME "=" DQUOTE VALUE DQUOTE) "]"      VALUE escapes \" \\ \]
//! ```
//!
//! The streaming key travels in its own element, [`KEY_SD_ID`] with one
//! parameter [`KEY_PARAM`] holding the 32-hex-character key:
//!
//! ```text
//! <14>1 2024-05-01T10:00:00Z web1 app 42 - [sluice@32473 key="00112233445566778899aabbccddeeff"] hello
//! ```
//!
//! `32473` is the private enterprise number RFC 5612 reserves for
//! documentation; sluice has no number of its own, and the SD-ID only has to
//! be unique among the SD-IDs a sender uses. Every element with this SD-ID
//! is removed from the stored bytes (and so from the structured data shown
//! on read); when it was the only element the SD becomes `-`.
//!
//! A BOM is removed where senders put one: at the very start of the frame,
//! or at the start of an RFC 5424 MSG.

use std::ops::Range;

use crate::auth::keys::{KEY_LEN, parse_hex_key};

/// The SD-ID of the element that carries the streaming key.
pub const KEY_SD_ID: &[u8] = b"sluice@32473";
/// The parameter of that element holding the key.
pub const KEY_PARAM: &[u8] = b"key";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the scan found about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// Not looked for (`workspace` mode).
    NotWanted,
    /// No key element (or no RFC 5424 header to find it in).
    Missing,
    /// A key element whose value is not a key.
    Malformed,
    Found([u8; KEY_LEN]),
}

/// Scans messages, reusing its buffers; one per connection or socket.
#[derive(Debug, Default)]
pub struct Scanner {
    cuts: Vec<Range<usize>>,
    /// Where `-` replaces the SD, when every element was cut.
    nil_at: Option<usize>,
    out: Vec<u8>,
}

impl Scanner {
    /// Scans `msg`; returns the bytes to store and what was found of the key.
    pub fn scan<'a>(&'a mut self, msg: &'a [u8], want_key: bool) -> (&'a [u8], KeyField) {
        self.cuts.clear();
        self.nil_at = None;
        if !want_key && memchr::memchr(BOM[0], msg).is_none() {
            return (msg, KeyField::NotWanted);
        }
        if msg.starts_with(BOM) {
            self.cuts.push(0..BOM.len());
        }
        let key = match header_5424(msg) {
            Some(sd_at) => self.scan_sd(msg, sd_at, want_key),
            None if want_key => KeyField::Missing,
            None => KeyField::NotWanted,
        };
        if self.cuts.is_empty() {
            return (msg, key);
        }
        self.out.clear();
        let mut at = 0;
        for cut in &self.cuts {
            self.out.extend_from_slice(&msg[at..cut.start]);
            if self.nil_at == Some(cut.start) {
                self.out.push(b'-');
            }
            at = cut.end;
        }
        self.out.extend_from_slice(&msg[at..]);
        (&self.out, key)
    }

    /// Walks the SD elements from `sd_at`, cutting key elements and a BOM
    /// at the start of MSG.
    fn scan_sd(&mut self, msg: &[u8], sd_at: usize, want_key: bool) -> KeyField {
        let mut key = if want_key { KeyField::Missing } else { KeyField::NotWanted };
        let mut at = sd_at;
        let mut elements = 0;
        let mut cut_elements = 0;
        let first_cut = self.cuts.len();
        if msg.get(at) == Some(&b'-') {
            at += 1;
        } else {
            while msg.get(at) == Some(&b'[') {
                let Some(end) = element_end(msg, at) else { return key };
                elements += 1;
                if want_key && let Some(found) = key_element(&msg[at + 1..end - 1]) {
                    if key == KeyField::Missing {
                        key = found;
                    }
                    self.cuts.push(at..end);
                    cut_elements += 1;
                }
                at = end;
            }
            if elements > 0 && cut_elements == elements {
                self.nil_at = Some(self.cuts[first_cut].start);
            }
        }
        if msg.get(at) == Some(&b' ') && msg[at + 1..].starts_with(BOM) {
            self.cuts.push(at + 1..at + 1 + BOM.len());
        }
        key
    }
}

/// If `msg` starts with an RFC 5424 header, the offset of its SD.
fn header_5424(msg: &[u8]) -> Option<usize> {
    let skip = if msg.starts_with(BOM) { BOM.len() } else { 0 };
    let m = &msg[skip..];
    let close = m.iter().take(5).position(|&b| b == b'>')?;
    if m.first() != Some(&b'<') || close < 2 || !m[1..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut at = close + 1;
    let version = m[at..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    if version == 0 || m.get(at + version) != Some(&b' ') {
        return None;
    }
    at += version + 1;
    // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, each followed by one SP.
    for _ in 0..5 {
        let len = m[at..].iter().position(|&b| b == b' ')?;
        if len == 0 {
            return None;
        }
        at += len + 1;
    }
    Some(skip + at)
}

/// The end (exclusive) of the SD element starting with `[` at `start`.
fn element_end(msg: &[u8], start: usize) -> Option<usize> {
    let mut quoted = false;
    let mut i = start + 1;
    while let Some(&b) = msg.get(i) {
        match (quoted, b) {
            (true, b'\\') => i += 1,
            (_, b'"') => quoted = !quoted,
            (false, b']') => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The offset of the `"` closing a value that started just before `value`.
fn quoted_end(value: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// If the element body (between the brackets) is a key element, the key.
fn key_element(body: &[u8]) -> Option<KeyField> {
    let id_len = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    if &body[..id_len] != KEY_SD_ID {
        return None;
    }
    let mut rest = &body[id_len..];
    while let Some(param) = rest.strip_prefix(b" ") {
        let eq = param.iter().position(|&b| b == b'=')?;
        let value = param[eq + 1..].strip_prefix(b"\"")?;
        let close = quoted_end(value)?;
        if &param[..eq] == KEY_PARAM {
            let found = std::str::from_utf8(&value[..close])
                .ok()
                .and_then(|s| parse_hex_key(s).ok())
                .map_or(KeyField::Malformed, KeyField::Found);
            return Some(found);
        }
        rest = &value[close + 1..];
    }
    Some(KeyField::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn scan(msg: &[u8], want_key: bool) -> (String, KeyField) {
        let mut s = Scanner::default();
        let (out, key) = s.scan(msg, want_key);
        (String::from_utf8_lossy(out).into_owned(), key)
    }

    fn found() -> KeyField {
        KeyField::Found(parse_hex_key(KEY).unwrap())
    }

    #[test]
    fn plain_messages_pass_untouched_without_a_header_walk() {
        let m = b"<13>Oct 11 22:14:15 host app: hi";
        assert_eq!(scan(m, false), (String::from_utf8_lossy(m).into_owned(), KeyField::NotWanted));
        assert_eq!(scan(m, true).1, KeyField::Missing);
    }

    #[test]
    fn the_only_key_element_becomes_nil_sd() {
        let m = format!("<14>1 2024-05-01T10:00:00Z web1 app 42 - [sluice@32473 key=\"{KEY}\"] hello");
        let (out, key) = scan(m.as_bytes(), true);
        assert_eq!(out, "<14>1 2024-05-01T10:00:00Z web1 app 42 - - hello");
        assert_eq!(key, found());
    }

    #[test]
    fn other_elements_stay_and_every_key_element_goes() {
        let m = format!(
            "<14>1 - h a - - [timeQuality tzKnown=\"1\"][sluice@32473 key=\"{KEY}\"][x@1 a=\"q\\\"]\"][sluice@32473 key=\"zz\"]"
        );
        let (out, key) = scan(m.as_bytes(), true);
        assert_eq!(out, "<14>1 - h a - - [timeQuality tzKnown=\"1\"][x@1 a=\"q\\\"]\"]");
        assert_eq!(key, found());
    }

    #[test]
    fn bad_or_missing_keys() {
        let cases = [
            ("<14>1 - h a - - [sluice@32473 key=\"nothex\"] m", KeyField::Malformed),
            ("<14>1 - h a - - [sluice@32473 other=\"1\"] m", KeyField::Malformed),
            ("<14>1 - h a - - [sluice@32473] m", KeyField::Malformed),
            ("<14>1 - h a - - [other@1 key=\"00112233445566778899aabbccddeeff\"] m", KeyField::Missing),
            ("<14>1 - h a - - - [sluice@32473 key=\"00112233445566778899aabbccddeeff\"]", KeyField::Missing),
            ("<14>1 - h a - - [sluice@32473 key=\"00112233445566778899aabbccddeeff\"", KeyField::Missing),
        ];
        for (m, want) in cases {
            assert_eq!(scan(m.as_bytes(), true).1, want, "{m}");
        }
        let (out, _) = scan(b"<14>1 - h a - - [sluice@32473 key=\"nothex\"] m", true);
        assert_eq!(out, "<14>1 - h a - - - m", "a bad key is redacted too");
    }

    #[test]
    fn key_with_other_params_is_found() {
        let m = format!("<14>1 - h a - - [sluice@32473 note=\"a\\\"b\" key=\"{KEY}\"] m");
        assert_eq!(scan(m.as_bytes(), true), ("<14>1 - h a - - - m".into(), found()));
    }

    #[test]
    fn boms_are_stripped_at_frame_start_and_msg_start() {
        assert_eq!(scan(b"\xEF\xBB\xBF<13>hi", false).0, "<13>hi");
        assert_eq!(scan(b"<13>1 - h a - - - \xEF\xBB\xBFhi \xEF\xBB\xBF", false).0, "<13>1 - h a - - - hi \u{feff}");
        assert_eq!(scan(b"<13>1 - h a - - [a@1 b=\"c\"] \xEF\xBB\xBFhi", false).0, "<13>1 - h a - - [a@1 b=\"c\"] hi");
        assert_eq!(scan(b"<13>hi \xEF\xBB\xBF", false).0, "<13>hi \u{feff}");
        let m = format!("\u{feff}<14>1 - h a - - [sluice@32473 key=\"{KEY}\"] \u{feff}m");
        assert_eq!(scan(m.as_bytes(), true), ("<14>1 - h a - - - m".into(), found()));
    }

    #[test]
    fn never_panics_on_cut_messages() {
        let m = format!("\u{feff}<14>1 - h a - - [x@1 a=\"\\]\"][sluice@32473 key=\"{KEY}\"] \u{feff}m");
        for cut in 0..=m.len() {
            let _ = scan(&m.as_bytes()[..cut], true);
            let _ = scan(&m.as_bytes()[..cut], false);
        }
    }
}
