//! `sluice backup [--server URL] DEST` and `sluice restore SRC --data-dir DIR`.
//!
//! `backup` downloads `GET /api/v1/backup` from a running daemon (with the
//! stored login; an admin of workspace 1) and rebuilds it as a ready-to-use
//! data dir in DEST (`DEST/events.redb`, `DEST/control.redb`). The files are
//! built in `DEST/.sluice-backup-partial/` and renamed into DEST only once
//! the stream's trailers verified and the files open; a failed or truncated
//! download leaves DEST without database files.
//!
//! `restore` puts such a data dir in place as a stopped daemon's data dir,
//! each file copied beside its destination and renamed over it (atomic per
//! file), while the old files are held open so no daemon can start on DIR
//! in between.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};

use super::credentials::{self, ServerArg};
use super::progress::Transfer;
use crate::store::backup::{self, Restorer};
use crate::store::{CONTROL_FILE, EVENTS_FILE, StoreError};

/// Staging directory inside DEST while a backup downloads.
pub const PARTIAL_DIR: &str = ".sluice-backup-partial";
/// Read buffer between the socket and the decoder.
const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Directory to create the backup in (as a data dir); must not hold one.
    pub dest: PathBuf,
    /// Print one JSON line {"server","dest","events","bytes","seconds"} instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A backup made by `sluice backup` (a data dir).
    pub src: PathBuf,
    /// The data dir to restore into; the daemon using it must be stopped.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Replace the databases of a data dir that is not empty.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON line {"src","data_dir","events"} instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let server = credentials::server_url(args.server.server.as_deref())?;
    let token = credentials::token_for(&server)?;
    let dest = &args.dest;
    for file in [EVENTS_FILE, CONTROL_FILE] {
        if dest.join(file).exists() {
            return Err(anyhow!("{} already holds a data dir ({file}); back up into a new directory", dest.display()));
        }
    }
    let staging = dest.join(PARTIAL_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove the leftover {} of an earlier backup", staging.display()))?;
    }
    crate::store::ensure_data_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let started = Instant::now();
    let outcome = download(&server, &token, &staging).and_then(|bytes| {
        let info = backup::check_data_dir(&staging).context("the downloaded backup does not open")?;
        install(&staging, dest)?;
        Ok((info, bytes))
    });
    let _ = std::fs::remove_dir_all(&staging);
    let (info, bytes) = outcome.with_context(|| format!("backup failed; nothing was written to {}", dest.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let line = serde_json::json!({"server": server, "dest": dest, "events": info.events, "bytes": bytes, "seconds": seconds});
        println!("{line}");
    } else {
        println!(
            "Backed up {} events ({bytes} bytes) from {server} to {} in {seconds:.1} s.",
            info.events,
            dest.display()
        );
    }
    Ok(())
}

/// Streams the backup into `staging`; returns the bytes received.
fn download(server: &str, token: &str, staging: &Path) -> anyhow::Result<u64> {
    let body = super::stream::get(server, "/api/v1/backup", token)?;
    let progress = Transfer::on_terminal("backup", None);
    let (_, bytes) = Restorer::new(staging).restore(BufReader::with_capacity(READ_BUFFER, progress.reader(body)))?;
    progress.finish();
    Ok(bytes)
}

/// Renames the verified files from `staging` into `dest` (events.redb
/// last: a data dir without it does not look complete).
fn install(staging: &Path, dest: &Path) -> anyhow::Result<()> {
    for file in [CONTROL_FILE, EVENTS_FILE] {
        std::fs::rename(staging.join(file), dest.join(file))
            .with_context(|| format!("cannot move {file} into {}", dest.display()))?;
    }
    sync_dir(dest)
}

pub fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let (src, dir) = (&args.src, &args.data_dir);
    let info = backup::check_data_dir(src).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow!("{e}; restore from a backup, not from a running daemon's data dir"),
        other => anyhow!("{} is not a usable backup: {other}", src.display()),
    })?;
    let lock = backup::lock_data_dir(dir).map_err(|e| match e {
        StoreError::Locked { path } => anyhow!(
            "{} is in use by a running sluice daemon: stop it before restoring into {}",
            path.display(),
            dir.display()
        ),
        other => anyhow!(other),
    })?;
    let non_empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    if non_empty && !args.force {
        return Err(anyhow!("{} is not empty; pass --force to replace its databases with the backup", dir.display()));
    }
    crate::store::ensure_data_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sizes = [CONTROL_FILE, EVENTS_FILE].map(|f| std::fs::metadata(src.join(f)).map_or(0, |m| m.len()));
    let progress = Transfer::on_terminal("restore", Some(sizes.iter().sum()));
    for file in [CONTROL_FILE, EVENTS_FILE] {
        replace_file(&src.join(file), &dir.join(file), &progress)?;
    }
    progress.finish();
    sync_dir(dir)?;
    drop(lock);
    if args.json {
        println!("{}", serde_json::json!({"src": src, "data_dir": dir, "events": info.events}));
    } else {
        println!("Restored {} events from {} into {}.", info.events, src.display(), dir.display());
    }
    Ok(())
}

/// Copies `from` beside `to` (counted in `progress`), syncs it, and renames it over `to`.
fn replace_file(from: &Path, to: &Path, progress: &Transfer) -> anyhow::Result<()> {
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = to.with_file_name(format!(".{name}.restoring"));
    let _ = std::fs::remove_file(&tmp);
    let copy = || -> std::io::Result<()> {
        let mut source = progress.reader(std::fs::File::open(from)?);
        let mut copy = std::fs::File::create(&tmp)?;
        std::io::copy(&mut source, &mut copy)?;
        copy.sync_all()
    };
    copy().with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot move {} into place", tmp.display()))
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}
