//! `sluice tail [--server URL | --data-dir DIR] [-n N] [-f] [filters]`: the
//! newest N matching events (default 10), oldest first, one JSON object a
//! line; with `-f`, then every new matching event as it is committed.
//!
//! Through the API: `GET /api/v1/events?order=desc&limit=N` for the first
//! lines, then `GET /api/v1/events/tail` (Server-Sent Events) from right
//! after them (`since`), so nothing is missed or printed twice in between.
//! A follow runs until interrupted; it exits 0 when the server shuts down
//! (`event: shutdown`) and non-zero when the server dropped it for reading
//! too slowly (`event: dropped`) or the connection broke.
//!
//! With `--data-dir` (a stopped daemon) only the first part exists: a data
//! dir no daemon runs on gets no new commits to follow.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde_json::Value;

use super::filters::{FilterArgs, query_string};
use super::http::ApiClient;
use super::{credentials, stream};
use crate::store::StoreError;
use crate::store::query::{EventsHandle, MAX_PAGE, Order, Query};

/// Page cache for an offline tail: one page is read.
const OFFLINE_CACHE_BYTES: usize = 16 << 20;
/// Longest SSE line accepted (an event is one `data:` line).
const MAX_SSE_LINE: u64 = 64 << 20;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Admin API URL (default: the server of the stored login, else http://127.0.0.1:3000).
    #[arg(long, conflicts_with = "data_dir")]
    pub server: Option<String>,
    /// Read a stopped daemon's data dir directly (no --follow then).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How many of the newest matching events to print first (0..=1000).
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub lines: u16,
    /// Then print new matching events as they are committed, until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub filters: FilterArgs,
}

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    args.filters.check()?;
    let printed = match (&args.data_dir, args.follow) {
        (Some(_), true) => {
            return Err(anyhow!(
                "--follow needs a running daemon: a data dir read with --data-dir gets no new events. \
                 Leave out --data-dir to follow through the admin API."
            ));
        }
        (Some(dir), false) => offline(args, dir),
        (None, _) => remote(args, &credentials::server_url(args.server.as_deref())?),
    };
    match printed {
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

/// The newest events from a stopped daemon's data dir.
fn offline(args: &TailArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let _control = super::apikeys::open(dir)?;
    let events = match EventsHandle::open(dir, OFFLINE_CACHE_BYTES) {
        Ok(h) => h,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(anyhow!("{e}. A daemon runs on this data dir: leave out --data-dir to go through its API."));
        }
        Err(e) => return Err(e.into()),
    };
    if args.lines == 0 {
        return Ok(());
    }
    let q = Query {
        limit: usize::from(args.lines).min(MAX_PAGE),
        order: Order::Desc,
        ..args.filters.query(args.filters.workspace.unwrap_or(1))
    };
    let page = events.query(&q, crate::export::event_json)?;
    print_oldest_first(&page.events)?;
    if page.scan_limited || page.damaged_chunks > 0 {
        eprintln!("note: not every stored event was looked at (damaged chunks: {})", page.damaged_chunks);
    }
    Ok(())
}

/// The newest events through the API, then the live tail.
fn remote(args: &TailArgs, server: &str) -> anyhow::Result<()> {
    let token = credentials::token_for(server)?;
    let filters = args.filters.params();
    // Where a follow starts: right after what the first part looked at.
    let mut follow_from = args.filters.since;
    if args.lines > 0 {
        let mut params = filters.clone();
        if let Some(s) = args.filters.since {
            params.push(("since", s.to_string()));
        }
        params.push(("order", "desc".into()));
        params.push(("limit", args.lines.to_string()));
        let path = format!("/api/v1/events?{}", query_string(&params));
        let page = ApiClient::new(server).get(&path, Some(&token))?.ok()?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        print_oldest_first(&events)?;
        let newest = events.first().and_then(|e| e["seq"].as_u64());
        let cursor = page["next_cursor"].as_str().and_then(|c| c.parse::<u64>().ok());
        let scan_limited = page["scan_limited"] == true;
        if scan_limited && events.len() < usize::from(args.lines) {
            eprintln!(
                "note: the server looked at its newest rows only (query_max_scan_rows); older matches are not shown"
            );
        }
        follow_from = match (newest, scan_limited, cursor) {
            (Some(seq), _, _) => Some(seq + 1),
            // Every row above the cursor was looked at, none matched.
            (None, true, Some(c)) => Some(c + 1),
            // Nothing stored matches: a follow replays from the start, finding only new ones.
            (None, _, _) => Some(args.filters.since.unwrap_or(1)),
        };
        follow_from = follow_from.max(args.filters.since);
    }
    if !args.follow {
        return Ok(());
    }
    let mut params = filters;
    if let Some(s) = follow_from {
        params.push(("since", s.to_string()));
    }
    let body = stream::get(server, &format!("/api/v1/events/tail?{}", query_string(&params)), &token)?;
    follow(body)
}

/// Prints a descending page oldest first.
fn print_oldest_first(events: &[Value]) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for ev in events.iter().rev() {
        serde_json::to_writer(&mut out, ev)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Prints the events of a Server-Sent Events tail as they come.
fn follow(body: impl Read) -> anyhow::Result<()> {
    let mut reader = BufReader::new(body);
    let mut out = io::stdout().lock();
    let (mut event, mut data, mut line) = (None::<String>, String::new(), String::new());
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_SSE_LINE).read_line(&mut line).context("the tail was cut")?;
        if n == 0 {
            return Err(anyhow!("the server ended the tail without saying why"));
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if !text.is_empty() {
            if let Some(v) = text.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else if let Some(v) = text.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            }
            // `id:` lines repeat the seq; `:` lines are comments (keepalives).
            continue;
        }
        // A blank line ends a frame.
        match event.take().as_deref() {
            None | Some("message") if !data.is_empty() => {
                out.write_all(data.as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
            Some("shutdown") => return Ok(()),
            Some("dropped") => {
                let reason: Value = serde_json::from_str(&data).unwrap_or_default();
                let reason = reason["reason"].as_str().unwrap_or("unknown reason");
                return Err(anyhow!("the server dropped this tail ({reason}); run it again to resume"));
            }
            _ => {}
        }
        data.clear();
    }
}
