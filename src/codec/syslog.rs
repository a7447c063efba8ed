//! Syslog message parsing (RFC 5424, RFC 3164 and the common vendor shapes)
//! with `syslog_loose`. Pure: raw bytes in, fields out.
//!
//! sluice stores the raw bytes of every message and parses them when they
//! are read (export, queries): ingest stays well under a microsecond per
//! message, and a better parser later improves old data too. A message that
//! does not parse keeps its whole text as `message` and is flagged
//! `unparsed`; it is never dropped.
//!
//! Timestamps without a zone (RFC 3164 `Mmm dd hh:mm:ss`) are read in the
//! listener's configured [`Zone`], which is stored with each record. Those
//! without a year get the latest year that puts them no more than two days
//! after the time the message was received: a `Dec 31 23:59:59` received on
//! January 1st is from the year before, a `Jan 1 00:00:01` received on
//! December 31st (a sender whose clock runs ahead) from the year after, and
//! a `Nov 30` received on November 22nd from the year before (an old
//! message, not one from the future).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use serde_json::{Map, Value};
use syslog_loose::{IncompleteDate, Message, ProcId, Protocol, Variant};

use crate::record::{Record, tag};

/// The zone for timestamps that carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    /// A fixed offset such as `+02:00`.
    Fixed(FixedOffset),
    /// An IANA zone such as `Europe/Berlin` (daylight saving applies).
    Named(chrono_tz::Tz),
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Zone, String> {
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::Utc);
        }
        if s.starts_with(['+', '-']) {
            return parse_offset(s).map(Zone::Fixed).ok_or_else(|| format!("`{s}` is not an offset like +02:00"));
        }
        s.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time zone `{s}` (use UTC, an offset like +02:00, or a name like Europe/Berlin)")
        })
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(o) => write!(f, "{o}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// The parsed fields of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyslogFields {
    /// False when the message did not parse: only `message` is set (the whole text).
    pub parsed: bool,
    /// `rfc5424` or `rfc3164`.
    pub protocol: Option<&'static str>,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub timestamp: Option<DateTime<FixedOffset>>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    /// SD elements in order: id and `(name, value)` params, values unescaped.
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    pub message: String,
}

/// Parses one message's raw bytes; `received_at_ms` settles missing years.
/// Invalid UTF-8 is replaced with U+FFFD for parsing (the raw bytes keep it).
pub fn parse(raw: &[u8], received_at_ms: u64, zone: Zone) -> SyslogFields {
    let text = String::from_utf8_lossy(raw);
    let received = Utc.timestamp_millis_opt(received_at_ms as i64).single().unwrap_or_default();
    let parse_text = |text: &str| {
        let parsed = match zone {
            Zone::Utc => parse_in(text, received, Utc),
            Zone::Fixed(o) => parse_in(text, received, o),
            Zone::Named(tz) => parse_in(text, received, tz),
        };
        parsed.map(fields)
    };
    if let Some(f) = parse_text(&text) {
        return f;
    }
    // An RFC 5424 message cut inside its structured data (truncated at
    // `max_message_bytes`) still has a whole header: parse that, with the
    // cut SD as the message.
    if let Some(f) = header_with_cut_sd(&text).and_then(|cut| parse_text(&cut)) {
        return f;
    }
    unparsed(&text)
}

/// `<PRI>1 TS HOST APP PROCID MSGID [cut…` as `… MSGID - [cut…`: the
/// structured data that did not parse becomes the message.
fn header_with_cut_sd(text: &str) -> Option<String> {
    let (pri, rest) = text.strip_prefix('<')?.split_once('>')?;
    let mut parts = rest.splitn(7, ' ');
    let head: Vec<&str> = parts.by_ref().take(6).collect();
    let tail = parts.next()?;
    (head.len() == 6 && head[0] == "1" && tail.starts_with('[')).then(|| format!("<{pri}>{} - {tail}", head.join(" ")))
}

/// What is left of a message the parser refused: its PRI, if it has a
/// valid one, and the rest as the message (the whole text otherwise).
fn unparsed(text: &str) -> SyslogFields {
    let pri = text
        .strip_prefix('<')
        .and_then(|t| t.split_once('>'))
        .filter(|(digits, _)| (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(digits, rest)| Some((digits.parse::<u8>().ok().filter(|p| *p <= MAX_PRI)?, rest)));
    match pri {
        Some((pri, rest)) => SyslogFields {
            facility: Some(pri >> 3),
            severity: Some(pri & 7),
            message: rest.trim_start().to_string(),
            ..SyslogFields::default()
        },
        None => SyslogFields { message: text.to_string(), ..SyslogFields::default() },
    }
}

/// The largest PRI: facility 23 (local7), severity 7.
const MAX_PRI: u8 = 191;

fn parse_in<Tz: TimeZone + Copy>(text: &str, received: DateTime<Utc>, tz: Tz) -> Option<Message<&str>> {
    let local = received.with_timezone(&tz).naive_local();
    let get_year = move |date: IncompleteDate| year_for(local, date);
    syslog_loose::parse_message_with_year_exact_tz(text, get_year, Some(tz), Variant::Either).ok()
}

/// A timestamp without a year may be at most this far ahead of its receive time.
const FUTURE_SLACK: TimeDelta = TimeDelta::days(2);

/// The latest year that puts `(month, day, h, m, s)` no more than
/// [`FUTURE_SLACK`] after `received` (both in the listener's zone).
fn year_for(received: NaiveDateTime, (month, day, h, m, s): IncompleteDate) -> i32 {
    let limit = received + FUTURE_SLACK;
    let year = received.year();
    [year + 1, year, year - 1]
        .into_iter()
        .find(|&y| {
            NaiveDate::from_ymd_opt(y, month, day).and_then(|d| d.and_hms_opt(h, m, s)).is_some_and(|t| t <= limit)
        })
        .unwrap_or(year)
}

fn fields(m: Message<&str>) -> SyslogFields {
    let structured_data = m
        .structured_data
        .iter()
        .map(|e| (e.id.to_string(), e.params.iter().map(|(k, v)| (k.to_string(), unescape(v))).collect()))
        .collect();
    SyslogFields {
        parsed: true,
        protocol: Some(match m.protocol {
            Protocol::RFC5424(_) => "rfc5424",
            Protocol::RFC3164 => "rfc3164",
        }),
        facility: m.facility.map(|f| f as u8),
        severity: m.severity.map(|s| s as u8),
        timestamp: m.timestamp,
        hostname: m.hostname.map(str::to_string),
        app_name: m.appname.map(str::to_string),
        proc_id: m.procid.map(|p| match p {
            ProcId::PID(n) => n.to_string(),
            ProcId::Name(s) => s.to_string(),
        }),
        msg_id: m.msgid.map(str::to_string),
        structured_data,
        message: m.msg.to_string(),
    }
}

/// RFC 5424 param values escape `"`, `\` and `]` with a backslash.
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\' | ']'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Facility keywords as rsyslog names them.
pub fn facility_name(f: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
        "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ];
    NAMES.get(usize::from(f)).copied().unwrap_or("unknown")
}

/// Severity keywords as rsyslog names them.
pub fn severity_name(s: u8) -> &'static str {
    const NAMES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
    NAMES.get(usize::from(s)).copied().unwrap_or("unknown")
}

impl SyslogFields {
    /// Adds the fields to an event's JSON object (absent fields are left out).
    pub fn insert_json(&self, m: &mut Map<String, Value>) {
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("protocol", self.protocol.map(Value::from));
        put("facility", self.facility.map(|f| facility_name(f).into()));
        put("severity", self.severity.map(|s| severity_name(s).into()));
        put("timestamp", self.timestamp.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true).into()));
        put("hostname", self.hostname.clone().map(Value::from));
        put("app_name", self.app_name.clone().map(Value::from));
        put("proc_id", self.proc_id.clone().map(Value::from));
        put("msg_id", self.msg_id.clone().map(Value::from));
        if !self.structured_data.is_empty() {
            put("structured_data", Some(sd_json(&self.structured_data)));
        }
        put("message", Some(self.message.clone().into()));
    }
}

/// `{"id": {"name": "value"}}`; a param given more than once becomes an array.
fn sd_json(sd: &[(String, Vec<(String, String)>)]) -> Value {
    let mut out = Map::new();
    for (id, params) in sd {
        let mut obj = Map::new();
        for (k, v) in params {
            match obj.get_mut(k) {
                None => {
                    obj.insert(k.clone(), v.clone().into());
                }
                Some(Value::Array(a)) => a.push(v.clone().into()),
                Some(first) => *first = Value::Array(vec![first.take(), v.clone().into()]),
            }
        }
        out.insert(id.clone(), Value::Object(obj));
    }
    Value::Object(out)
}

/// The zone a stored syslog record was received with (absent: UTC).
pub fn record_zone(record: &Record<'_>) -> Zone {
    record.get(tag::TIMEZONE).and_then(|z| std::str::from_utf8(z).ok()).and_then(|z| z.parse().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64
    }

    #[test]
    fn zones_parse_and_print() {
        assert_eq!("UTC".parse::<Zone>().unwrap(), Zone::Utc);
        assert_eq!("+02:00".parse::<Zone>().unwrap().to_string(), "+02:00");
        assert_eq!("-0530".parse::<Zone>().unwrap().to_string(), "-05:30");
        assert_eq!("Europe/Berlin".parse::<Zone>().unwrap().to_string(), "Europe/Berlin");
        for bad in ["+2", "+25:00", "Mars/Olympus", ""] {
            assert!(bad.parse::<Zone>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc5424_every_field() {
        let raw = br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 8710 ID47 [exampleSDID@32473 iut="3" eventSource="App\"lication\]"][examplePriority@32473 class="high"] An application event"#;
        let f = parse(raw, 0, Zone::Utc);
        assert!(f.parsed);
        assert_eq!(f.protocol, Some("rfc5424"));
        assert_eq!((f.facility, f.severity), (Some(20), Some(5)));
        assert_eq!(f.timestamp.unwrap().to_rfc3339_opts(SecondsFormat::AutoSi, true), "2003-10-11T22:14:15.003Z");
        assert_eq!(f.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(f.app_name.as_deref(), Some("evntslog"));
        assert_eq!(f.proc_id.as_deref(), Some("8710"));
        assert_eq!(f.msg_id.as_deref(), Some("ID47"));
        assert_eq!(f.structured_data[0].1[1], ("eventSource".into(), "App\"lication]".into()));
        assert_eq!(f.structured_data[1].0, "examplePriority@32473");
        assert_eq!(f.message, "An application event");
    }

    #[test]
    fn rfc3164_year_and_zone() {
        let raw = b"<34>Dec 31 23:59:59 host su: 'su root' failed";
        let f = parse(raw, ms("2024-01-01T00:00:05Z"), Zone::Utc);
        assert_eq!(f.timestamp.unwrap().to_rfc3339(), "2023-12-31T23:59:59+00:00");
        let f = parse(b"<34>Jan  1 00:00:01 host su: x", ms("2023-12-31T23:59:00Z"), Zone::Utc);
        assert_eq!(f.timestamp.unwrap().to_rfc3339(), "2024-01-01T00:00:01+00:00");
        let berlin = "Europe/Berlin".parse().unwrap();
        let f = parse(b"<34>Jul  1 12:00:00 host su: x", ms("2024-07-01T10:00:00Z"), berlin);
        assert_eq!(f.timestamp.unwrap().to_rfc3339(), "2024-07-01T12:00:00+02:00");
        let f = parse(b"<34>Jan  1 12:00:00 host su: x", ms("2024-01-01T10:00:00Z"), berlin);
        assert_eq!(f.timestamp.unwrap().to_rfc3339(), "2024-01-01T12:00:00+01:00");
        assert_eq!((f.hostname.as_deref(), f.app_name.as_deref()), (Some("host"), Some("su")));
    }

    #[test]
    fn a_message_cut_inside_its_structured_data_keeps_its_header() {
        let raw = b"<165>1 2003-10-11T22:14:15.003Z host app 87 ID47 [ex@1 a=\"cut";
        let f = parse(raw, 0, Zone::Utc);
        assert!(f.parsed);
        assert_eq!(
            (f.hostname.as_deref(), f.app_name.as_deref(), f.msg_id.as_deref()),
            (Some("host"), Some("app"), Some("ID47"))
        );
        assert_eq!(f.timestamp.unwrap().to_rfc3339_opts(SecondsFormat::AutoSi, true), "2003-10-11T22:14:15.003Z");
        assert_eq!(f.message, "[ex@1 a=\"cut");
        // Cut in a later element: the whole ones are read as structured data.
        let f = parse(b"<165>1 2003-10-11T22:14:15.003Z host app 87 ID47 [ex@1 a=\"1\"][ex@2 b=\"cut", 0, Zone::Utc);
        assert_eq!((f.structured_data.len(), f.message.as_str()), (1, "[ex@2 b=\"cut"));
        // Cut inside the header itself: only the PRI is read.
        let f = parse(b"<165>1 2003-10-11T22:14:15.003Z host ap", 0, Zone::Utc);
        assert!(!f.parsed);
        assert_eq!(f.facility, Some(20));
    }

    #[test]
    fn a_message_whose_msg_is_not_utf8_keeps_its_header() {
        for raw in [
            &b"<165>1 2003-10-11T22:14:15.003Z host app 87 ID47 - bad \xff\xfe utf8"[..],
            b"<165>1 2003-10-11T22:14:15.003Z host app 87 ID47 [a@1 b=\"\xff\"] \xef\xbb\xbf\xc3",
            b"<34>Oct 11 22:14:15 host su: bad \xff utf8",
        ] {
            let f = parse(raw, ms("2003-10-12T00:00:00Z"), Zone::Utc);
            assert!(f.parsed, "{raw:?}");
            assert_eq!((f.hostname.as_deref(), f.timestamp.is_some()), (Some("host"), true), "{raw:?}");
        }
    }

    #[test]
    fn unparsable_text_keeps_everything_as_message() {
        let f = parse(b"\xff\xfegarbage", 0, Zone::Utc);
        assert!(!f.parsed);
        assert_eq!(f.message, "\u{fffd}\u{fffd}garbage");
        // A valid PRI is still read; an invalid one stays part of the text.
        let f = parse(b"<189>123: *Mar  1 00:01:02: %LINK-3-UPDOWN", 0, Zone::Utc);
        assert_eq!((f.parsed, f.facility, f.severity), (false, Some(23), Some(5)));
        assert_eq!(f.message, "123: *Mar  1 00:01:02: %LINK-3-UPDOWN");
        let f = parse(b"<13>", 0, Zone::Utc);
        assert_eq!((f.facility, f.severity, f.message.as_str()), (Some(1), Some(5), ""));
        for bad in ["<999>1 garbage", "<192>x", "<>x", "<1x>y"] {
            let f = parse(bad.as_bytes(), 0, Zone::Utc);
            assert_eq!((f.facility, f.message.as_str()), (None, bad), "{bad}");
        }
    }

    #[test]
    fn json_shape_and_repeated_params() {
        let f = parse(br#"<13>1 - h a - - [x@1 k="1" k="2"][y@1] m"#, 0, Zone::Utc);
        let mut m = Map::new();
        f.insert_json(&mut m);
        assert_eq!(m["structured_data"], serde_json::json!({"x@1": {"k": ["1", "2"]}, "y@1": {}}));
        assert_eq!(m["facility"], "user");
        assert_eq!(m["severity"], "notice");
        assert!(m.get("timestamp").is_none() && m.get("proc_id").is_none());
    }

    #[test]
    fn year_wraps_both_ways_around_new_year() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().naive_utc();
        assert_eq!(year_for(at("2024-01-01T00:00:05Z"), (12, 31, 23, 59, 59)), 2023);
        assert_eq!(year_for(at("2023-12-31T23:59:00Z"), (1, 1, 0, 0, 1)), 2024);
        assert_eq!(year_for(at("2026-11-22T00:00:00Z"), (1, 15, 10, 0, 0)), 2026, "old, not far future");
        assert_eq!(year_for(at("2026-11-22T00:00:00Z"), (11, 23, 10, 0, 0)), 2026, "slightly ahead");
        assert_eq!(year_for(at("2026-11-22T00:00:00Z"), (11, 30, 10, 0, 0)), 2025, "a week ahead: last year's");
        assert_eq!(year_for(at("2025-03-01T00:00:00Z"), (2, 29, 10, 0, 0)), 2024, "Feb 29 goes to a leap year");
    }
}
