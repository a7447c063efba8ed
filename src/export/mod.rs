//! Events as an export stream, in NDJSON or CSV: what
//! `GET /api/v1/events/export` sends and what `sluice export` writes.
//!
//! ```text
//!  NDJSON   {"kind":"event","received_at":…,"seq":1,…}\n      one event_json object a line
//!           …
//!           {"error":{"code":"…","message":"…"}}\n          only if the stream was cut
//!
//!  CSV      seq,workspace,received_at,…\n                   the header row: COLUMNS
//!           1,1,1763830000000,…\n                           one row an event
//!           …
//!           #error,<message>\n                             only if the stream was cut
//! ```
//!
//! A stream that fails part-way (a storage error, a damaged chunk, shutdown,
//! a reader too slow) ends with the error trailer, so a client can always
//! tell a complete export from a cut one: no event line starts with
//! `{"error":` (no event has an `error` field) and no event row starts with
//! `#` (its first column is the sequence number). [`Records`] splits a
//! stream back into records and spots the trailer.

mod encode;
mod json;
mod records;

pub use encode::{COLUMNS, Encoder};
pub use json::event_json;
pub use records::{Record, Records};

/// How events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line.
    #[default]
    Ndjson,
    /// RFC 4180 CSV with a header row of [`COLUMNS`].
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// The format [`Format::name`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Ndjson, Format::Csv].into_iter().find(|f| f.name() == name)
    }

    /// The `Content-Type` of a stream in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// First field of the CSV error trailer.
const CSV_ERROR: &str = "#error";
/// How the NDJSON error trailer starts.
const NDJSON_ERROR: &[u8] = br#"{"error":"#;
