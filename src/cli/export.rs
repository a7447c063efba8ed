//! `sluice export --data-dir DIR [--workspace ID] [--since SEQ] [--limit N]`:
//! stored events as NDJSON on stdout, one object per event (see
//! [`event_json`]), in (workspace, seq) order.
//!
//! It reads a stopped daemon's data dir. Output is buffered; a reader that
//! goes away (`| head`) ends the export quietly with success.

use std::io::{self, BufWriter, Write};

use anyhow::anyhow;

use crate::cli::ExportArgs;
use crate::store::StoreError;
use crate::store::reader::{EventReader, ScanFilter, event_json};

/// Why a scan stopped early.
enum Stop {
    Store(StoreError),
    Io(io::Error),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Store(e)
    }
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    if args.workspace == Some(0) {
        return Err(anyhow!("--workspace: workspace ids are positive integers"));
    }
    let dir = &args.dir.data_dir;
    // Opening the control store too sets up a fresh dir (with workspace 1)
    // like every other command, and refuses a dir a daemon holds.
    let _control = super::apikeys::open(dir)?;
    let reader = match EventReader::open(dir) {
        Ok(r) => r,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(anyhow!("{e}. export reads a stopped daemon's data dir: stop the daemon first."));
        }
        Err(e) => return Err(e.into()),
    };
    let filter = ScanFilter { workspace: args.workspace, since: args.since, limit: args.limit };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = Vec::with_capacity(1024);
    let scanned = reader.scan::<Stop>(&filter, |ev| {
        line.clear();
        serde_json::to_writer(&mut line, &event_json(ev)).map_err(|e| Stop::Io(e.into()))?;
        line.push(b'\n');
        out.write_all(&line).map_err(Stop::Io)?;
        Ok(true)
    });
    let flushed = out.flush();
    let stats = match scanned {
        Ok(stats) => stats,
        Err(Stop::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(Stop::Io(e)) => return Err(anyhow!("writing to stdout: {e}")),
        Err(Stop::Store(e)) => return Err(e.into()),
    };
    match flushed {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(anyhow!("writing to stdout: {e}")),
        Ok(()) => {}
    }
    if stats.damaged_chunks > 0 {
        return Err(anyhow!(
            "exported {} events but skipped {} damaged chunk(s) in {}",
            stats.events,
            stats.damaged_chunks,
            dir.display()
        ));
    }
    Ok(())
}
