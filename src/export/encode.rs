//! Writing events in an export [`Format`].
//!
//! CSV has a fixed set of columns, the top-level fields of
//! [`crate::export::event_json`] for every kind: a field an event
//! does not have is an empty cell. Strings are written as they are,
//! numbers and booleans as JSON text, and nested values (`payload`,
//! `labels`, `histogram`, `structured_data`, `flags`, and the OpenTelemetry
//! `body`, `attributes`, `resource`, `scope`, `events`, `links`, …) as JSON
//! text in one cell. Cells are quoted only when they hold a comma, a quote or a line
//! break (quotes doubled), as RFC 4180 says.

use std::io;

use serde_json::Value;

use super::{CSV_ERROR, Format};

/// The CSV columns, in order: the fields every event has, then the
/// fields of events, logs, metrics and parsed syslog, then those of
/// OpenTelemetry records, then the bulky ones, then where a relayed event
/// came from.
pub const COLUMNS: [&str; 63] = [
    "seq",
    "workspace",
    "received_at",
    "listener",
    "peer",
    "kind",
    "timestamp",
    "service",
    "device_id",
    "session_id",
    "event_name",
    "event_type",
    "log_type",
    "level",
    "source",
    "name",
    "value",
    "metric_type",
    "temporality",
    "labels",
    "histogram",
    "protocol",
    "facility",
    "severity",
    "hostname",
    "app_name",
    "proc_id",
    "msg_id",
    "structured_data",
    "message",
    "severity_number",
    "severity_text",
    "span_kind",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "otlp_flags",
    "status_code",
    "status_message",
    "time_unix_nano",
    "observed_time_unix_nano",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "unit",
    "description",
    "monotonic",
    "body",
    "attributes",
    "resource",
    "scope",
    "exponential_histogram",
    "summary",
    "exemplars",
    "events",
    "links",
    "dropped",
    "metadata",
    "payload",
    "raw",
    "flags",
    "origin_node",
    "origin_seq",
];

/// Turns events into bytes of one format, appended to a caller's buffer
/// (so a stream can send them in chunks of its choosing).
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    /// How CSV rows are written (quoting as needed, `\n` line ends).
    csv: csv::WriterBuilder,
}

/// The CSV writer's own buffer per row: most rows fit, longer ones pass through.
const CSV_ROW_BUFFER: usize = 1024;

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        let mut csv = csv::WriterBuilder::new();
        // The trailer row is shorter than an event row.
        csv.terminator(csv::Terminator::Any(b'\n')).flexible(true).buffer_capacity(CSV_ROW_BUFFER);
        Encoder { format, csv }
    }

    /// What comes before the first event: the CSV header row.
    pub fn header(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match self.format {
            Format::Ndjson => Ok(()),
            Format::Csv => self.row(COLUMNS, out),
        }
    }

    /// One event (an `event_json` object).
    pub fn event(&mut self, ev: &Value, out: &mut Vec<u8>) -> io::Result<()> {
        match self.format {
            Format::Ndjson => {
                serde_json::to_writer(&mut *out, ev)?;
                out.push(b'\n');
                Ok(())
            }
            Format::Csv => {
                let cells = COLUMNS.map(|c| cell(ev.get(c)));
                self.row(cells.iter().map(String::as_str), out)
            }
        }
    }

    /// The trailer that says the stream was cut (see the module docs of
    /// [`crate::export`]); `code` is a short machine-readable reason.
    pub fn error(&mut self, code: &str, message: &str, out: &mut Vec<u8>) -> io::Result<()> {
        match self.format {
            Format::Ndjson => {
                let v = serde_json::json!({"error": {"code": code, "message": message}});
                serde_json::to_writer(&mut *out, &v)?;
                out.push(b'\n');
                Ok(())
            }
            Format::Csv => self.row([CSV_ERROR, &format!("{code}: {message}")], out),
        }
    }

    fn row<'a>(&self, cells: impl IntoIterator<Item = &'a str>, out: &mut Vec<u8>) -> io::Result<()> {
        let mut w = self.csv.from_writer(out);
        w.write_record(cells).map_err(io::Error::other)?;
        w.flush()
    }
}

/// A field's CSV cell.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::codec::otlp::{self, Signal};
    use crate::export::event_json;
    use crate::export::{Record, Records};
    use crate::record::{BlockBuilder, Kind, records, tag};
    use crate::store::reader::StoredEvent;

    /// The JSON of one stored record of each kind, with most fields set.
    fn samples() -> Vec<Value> {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Event, 1);
        b.u64(tag::TIMESTAMP, 5);
        b.str(tag::SERVICE, "svc");
        b.bytes(tag::DEVICE_ID, &[1; 16]);
        b.bytes(tag::SESSION_ID, &[2; 16]);
        b.str(tag::EVENT_NAME, "signup");
        b.bytes(tag::PAYLOAD, br#"{"plan":"pro"}"#);
        b.bytes(tag::EVENT_TYPE, &[1]);
        b.end();
        b.begin(Kind::Log, 2);
        b.bytes(tag::LOG_TYPE, &[1]);
        b.bytes(tag::LEVEL, &[3]);
        b.str(tag::SOURCE, "host");
        b.end();
        b.begin(Kind::Metric, 3);
        b.str(tag::METRIC_NAME, "cpu");
        b.bytes(tag::METRIC_VALUE, &0.5f64.to_le_bytes());
        b.bytes(tag::METRIC_TYPE, &[1]);
        b.bytes(tag::TEMPORALITY, &[1]);
        b.label(b"host", b"a");
        b.end();
        b.begin(Kind::Syslog, 4);
        b.str(tag::RAW, "<34>1 2003-10-11T22:14:15.003Z mymachine su 77 ID47 [ex@1 iut=\"3\"] 'su root' failed");
        b.bytes(tag::FLAGS, &[1]);
        b.end();
        for (signal, body) in [
            (Signal::Logs, &include_bytes!("../../tests/fixtures/otlp/py-logs.pb")[..]),
            (Signal::Metrics, include_bytes!("../../tests/fixtures/otlp/py-metrics.pb")),
            (Signal::Traces, include_bytes!("../../tests/fixtures/otlp/py-traces.pb")),
        ] {
            otlp::append(&otlp::decode(signal, otlp::Format::Protobuf, body).unwrap(), 5, &mut b, usize::MAX).unwrap();
        }
        let (block, _) = b.finish();
        records(&block)
            .enumerate()
            .map(|(i, r)| {
                let ev = StoredEvent {
                    seq: i as u64,
                    workspace: 1,
                    listener: "tcp",
                    chunk_peer: "p",
                    origin: None,
                    record: r.unwrap(),
                };
                event_json(&ev)
            })
            .collect()
    }

    #[test]
    fn every_field_of_every_kind_has_a_column() {
        let all = samples();
        assert!(all.len() > 4 + 3, "the OTLP samples are in");
        for ev in &all {
            for key in ev.as_object().unwrap().keys() {
                assert!(COLUMNS.contains(&key.as_str()), "{key} has no CSV column: {ev}");
            }
        }
        assert!(all[3].get("hostname").is_some(), "the syslog sample parsed: {}", all[3]);
    }

    #[test]
    fn csv_rows_round_trip_through_a_csv_parser() {
        let tricky = json!({"seq": 7, "kind": "log", "message": "a, \"quoted\"\nsecond line", "labels": {"k": "v,w"}});
        let mut enc = Encoder::new(Format::Csv);
        let mut out = Vec::new();
        enc.header(&mut out).unwrap();
        enc.event(&tricky, &mut out).unwrap();
        let mut r = csv::Reader::from_reader(out.as_slice());
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let row = r.records().next().unwrap().unwrap();
        let at = |c: &str| row.get(COLUMNS.iter().position(|x| *x == c).unwrap()).unwrap().to_owned();
        assert_eq!(at("seq"), "7");
        assert_eq!(at("message"), "a, \"quoted\"\nsecond line");
        assert_eq!(at("labels"), r#"{"k":"v,w"}"#);
        assert_eq!(at("peer"), "");
    }

    #[test]
    fn a_cut_stream_reads_back_as_failed_in_both_formats() {
        for format in [Format::Ndjson, Format::Csv] {
            let mut enc = Encoder::new(format);
            let mut out = Vec::new();
            enc.header(&mut out).unwrap();
            // An event whose text looks like a trailer must not be taken for one.
            enc.event(&json!({"seq": 1, "message": "x\n#error,boom\n{\"error\":1}"}), &mut out).unwrap();
            enc.error("damaged", "skipped 1 chunk", &mut out).unwrap();
            let mut recs = Records::new(format);
            let (mut events, mut failed) = (0, None);
            // Byte by byte: record boundaries never depend on how reads split.
            for b in &out {
                recs.feed(std::slice::from_ref(b), |r| {
                    match r {
                        Record::Header(_) => {}
                        Record::Event(_) => events += 1,
                        Record::Failed(m) => failed = Some(m),
                    }
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(events, 1, "{format:?}");
            assert_eq!(failed.as_deref(), Some("damaged: skipped 1 chunk"), "{format:?}");
            assert!(recs.is_at_boundary());
        }
    }
}
