//! Splitting an export stream back into records, as a client reads it.
//!
//! NDJSON records end at every line feed (JSON text never holds a raw one).
//! CSV records end at a line feed outside quotes; since a quote inside a
//! quoted cell is doubled, "inside quotes" is the parity of the quotes seen
//! since the record began. So records are found without parsing cells, and
//! whatever way the bytes arrive in reads.

use std::io;

use super::{CSV_ERROR, Format, NDJSON_ERROR};

/// One complete record of an export stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// The CSV header row, with its line feed.
    Header(&'a [u8]),
    /// One event, with its line feed.
    Event(&'a [u8]),
    /// The error trailer: the server's reason the stream was cut.
    Failed(String),
}

/// Finds the records in the bytes fed to it.
#[derive(Debug)]
pub struct Records {
    format: Format,
    /// Bytes of records not complete yet.
    pending: Vec<u8>,
    /// How much of `pending` was already looked at.
    scanned: usize,
    /// CSV: inside a quoted cell at `scanned`.
    quoted: bool,
    /// CSV: the header row has not been seen yet.
    header_due: bool,
}

impl Records {
    pub fn new(format: Format) -> Records {
        Records { format, pending: Vec::new(), scanned: 0, quoted: false, header_due: format == Format::Csv }
    }

    /// Takes the next bytes of the stream; calls `f` with every record they
    /// complete, in order, stopping at `f`'s first error.
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(Record<'_>) -> io::Result<()>) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.pending.len() {
            match self.pending[i] {
                b'"' if self.format == Format::Csv => self.quoted = !self.quoted,
                b'\n' if !self.quoted => {
                    let record = &self.pending[start..=i];
                    let kind = classify(self.format, record, self.header_due);
                    self.header_due = false;
                    start = i + 1;
                    if let Err(e) = f(kind) {
                        self.pending.drain(..start);
                        self.scanned = 0;
                        return Err(e);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
        Ok(())
    }

    /// True when no partial record is waiting: a stream that ends here
    /// ended between records.
    pub fn is_at_boundary(&self) -> bool {
        self.pending.is_empty()
    }
}

fn classify(format: Format, record: &[u8], header_due: bool) -> Record<'_> {
    match format {
        Format::Ndjson if record.starts_with(NDJSON_ERROR) => {
            let v: serde_json::Value = serde_json::from_slice(record).unwrap_or_default();
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let message = v["error"]["message"].as_str().unwrap_or("the export was cut");
            Record::Failed(format!("{code}: {message}"))
        }
        Format::Csv if header_due => Record::Header(record),
        Format::Csv if record.starts_with(CSV_ERROR.as_bytes()) => {
            let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(record);
            let row = r.records().next().and_then(Result::ok);
            let message = row.as_ref().and_then(|row| row.get(1)).unwrap_or("the export was cut");
            Record::Failed(message.to_owned())
        }
        Format::Ndjson | Format::Csv => Record::Event(record),
    }
}
