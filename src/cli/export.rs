//! `sluice export [--server URL | --data-dir DIR] [filters] [--limit N]
//! [--format ndjson|csv]`: stored events on stdout, oldest first, in one of
//! the [`crate::export`] formats.
//!
//! - Without `--data-dir`, through the admin API of a running daemon: one
//!   streamed `GET /api/v1/events/export` (one request against the rate
//!   limit, however many events), with the stored login. The events are
//!   those of the login's workspace.
//! - With `--data-dir`, from a stopped daemon's files: every workspace in
//!   (workspace, seq) order unless `--workspace` picks one.
//!
//! Either way the same scan ([`crate::store::query`]) selects the events and
//! the same encoder writes them. A progress line (events, bytes) is drawn
//! when stderr is a terminal. An export that was cut (the server's error
//! trailer, a connection that broke, a damaged chunk offline) exits
//! non-zero after writing what it had. A reader that goes away (`| head`)
//! ends the export quietly with success.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::anyhow;

use super::filters::{FilterArgs, query_string};
use super::progress::Progress;
use super::{credentials, stream};
use crate::export::event_json;
use crate::export::{Encoder, Format, Record, Records};
use crate::store::StoreError;
use crate::store::query::{EventsHandle, Sink};
use crate::store::reader::StoredEvent;

/// Page cache for an offline export: the scan is sequential.
const OFFLINE_CACHE_BYTES: usize = 16 << 20;
const OUT_BUFFER: usize = 1 << 16;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Admin API URL (default: the server of the stored login, else http://127.0.0.1:3000).
    #[arg(long, conflicts_with = "data_dir")]
    pub server: Option<String>,
    /// Read a stopped daemon's data dir directly instead of going through the API.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// At most N events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// ndjson (one JSON object a line) or csv (a header row, then one row an event).
    #[arg(long, default_value = "ndjson", value_parser = parse_format)]
    pub format: Format,
}

fn parse_format(v: &str) -> Result<Format, String> {
    Format::from_name(v).ok_or_else(|| "expected ndjson or csv".into())
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    args.filters.check()?;
    if args.limit == Some(0) {
        return Ok(());
    }
    match &args.data_dir {
        Some(dir) => offline(args, dir),
        None => remote(args, &credentials::server_url(args.server.as_deref())?),
    }
}

/// Streams the export from the admin API to stdout.
fn remote(args: &ExportArgs, server: &str) -> anyhow::Result<()> {
    let token = credentials::token_for(server)?;
    let mut params = args.filters.params();
    if let Some(s) = args.filters.since {
        params.push(("since", s.to_string()));
    }
    if let Some(l) = args.limit {
        params.push(("limit", l.to_string()));
    }
    params.push(("format", args.format.name().to_owned()));
    let body = stream::get(server, &format!("/api/v1/events/export?{}", query_string(&params)), &token)?;
    copy_records(body, args.format)
}

/// Copies an export stream to stdout record by record, so that the error
/// trailer is caught (and not written) and a cut stream is noticed.
fn copy_records(mut body: impl Read, format: Format) -> anyhow::Result<()> {
    let mut records = Records::new(format);
    let mut out = BufWriter::with_capacity(OUT_BUFFER, io::stdout().lock());
    let mut progress = Progress::on_terminal();
    let mut failed = None;
    let mut buf = vec![0u8; OUT_BUFFER];
    let result = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(anyhow!("the export was cut: {e}")),
        };
        let fed = records.feed(&buf[..n], |r| match r {
            Record::Header(bytes) => out.write_all(bytes),
            Record::Event(bytes) => {
                progress.event(bytes.len());
                out.write_all(bytes)
            }
            Record::Failed(message) => {
                failed = Some(message);
                Ok(())
            }
        });
        if let Err(e) = fed {
            break Err(e.into());
        }
        if failed.is_some() {
            break Ok(());
        }
    };
    let flushed = out.flush();
    progress.finish();
    quiet_on_broken_pipe(result.and_then(|()| flushed.map_err(Into::into)))?;
    if let Some(message) = failed {
        return Err(anyhow!("the export was cut by the server ({message}); what came before was written"));
    }
    if !records.is_at_boundary() {
        return Err(anyhow!("the export ended in the middle of a record: the connection was cut"));
    }
    Ok(())
}

/// A reader that went away (`| head`) is a success.
fn quiet_on_broken_pipe(r: anyhow::Result<()>) -> anyhow::Result<()> {
    match r {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

/// Exports from a stopped daemon's data dir.
fn offline(args: &ExportArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    // Opening the control store too sets up a fresh dir (with workspace 1)
    // like every other command, and refuses a dir a daemon holds.
    let _control = super::apikeys::open(dir)?;
    let events = match EventsHandle::open(dir, OFFLINE_CACHE_BYTES) {
        Ok(h) => h,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(anyhow!(
                "{e}. Offline export reads a stopped daemon's data dir: stop it, or leave out --data-dir."
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let snapshot = events.snapshot()?;
    let workspaces = match args.filters.workspace {
        Some(ws) => vec![ws],
        None => snapshot.workspaces()?,
    };
    let mut sink = Writer {
        encoder: Encoder::new(args.format),
        line: Vec::with_capacity(1024),
        out: BufWriter::with_capacity(OUT_BUFFER, io::stdout().lock()),
        left: args.limit,
        error: None,
        progress: Progress::on_terminal(),
    };
    let mut written = sink.encoder.header(&mut sink.line).and_then(|()| sink.out.write_all(&sink.line));
    let (mut damaged, mut count) = (0, 0);
    for ws in workspaces {
        if written.is_err() || sink.error.is_some() || sink.left == Some(0) {
            break;
        }
        let stats = snapshot.stream(&args.filters.query(ws), &mut sink)?;
        damaged += stats.damaged_chunks;
        count += stats.rows_read;
    }
    written = written.and(sink.error.map_or(Ok(()), Err)).and_then(|()| sink.out.flush());
    sink.progress.finish();
    quiet_on_broken_pipe(written.map_err(Into::into))?;
    if damaged > 0 {
        return Err(anyhow!("looked at {count} events but skipped {damaged} damaged chunk(s) in {}", dir.display()));
    }
    Ok(())
}

/// The offline scan's sink: encodes events straight to stdout.
struct Writer<W: Write> {
    encoder: Encoder,
    line: Vec<u8>,
    out: W,
    /// Events still wanted, when a limit was given.
    left: Option<u64>,
    /// Why writing stopped.
    error: Option<io::Error>,
    progress: Progress,
}

impl<W: Write> Sink for Writer<W> {
    fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
        self.line.clear();
        let written = self.encoder.event(&event_json(ev), &mut self.line).and_then(|()| self.out.write_all(&self.line));
        if let Err(e) = written {
            self.error = Some(e);
            return false;
        }
        self.progress.event(self.line.len());
        match &mut self.left {
            Some(left) => {
                *left -= 1;
                *left > 0
            }
            None => true,
        }
    }
}
