//! `sluice apikeys create|list|delete --data-dir DIR`: streaming keys managed
//! on a data dir directly (the daemon must be stopped; it holds the files
//! while it runs). Without `--data-dir` the commands go through the admin
//! API of the stored login ([`super::remote_keys`]).
//!
//! `create` is the only moment a key is ever shown: sluice keeps its SHA-256
//! digest and an 8-character prefix for recognising it in `list`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::cli::ApikeysCommand;
use crate::store::StoreError;
use crate::store::control::{ControlStore, KeyRecord};

pub fn run(cmd: &ApikeysCommand) -> anyhow::Result<()> {
    let Some(data_dir) = cmd.data_dir() else {
        return super::remote_keys::run(cmd, &super::credentials::server_url(cmd.server())?);
    };
    match cmd {
        ApikeysCommand::Create { name, workspace, json, .. } => {
            let store = open(data_dir)?;
            let (record, key) = store.create_key(name, *workspace, &creator())?;
            let mut out = std::io::stdout().lock();
            if *json {
                // A struct, not `json!`, to keep the documented field order.
                #[derive(serde::Serialize)]
                struct Created<'a> {
                    id: u64,
                    key: &'a str,
                    workspace: u32,
                    name: &'a str,
                }
                let line = Created { id: record.id, key: &key, workspace: record.workspace, name: &record.name };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            } else {
                writeln!(
                    out,
                    "Created streaming key {} \"{}\" for workspace {}:",
                    record.id, record.name, record.workspace
                )?;
                writeln!(out)?;
                writeln!(out, "{key}")?;
                writeln!(out)?;
                writeln!(out, "Store it now: it will not be shown again (sluice keeps only its SHA-256 digest).")?;
            }
            out.flush()?;
            Ok(())
        }
        ApikeysCommand::List { json, .. } => {
            let store = open(data_dir)?;
            let keys = store.list_keys(None)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if *json {
                for k in &keys {
                    serde_json::to_writer(&mut out, k)?;
                    out.write_all(b"\n")?;
                }
            } else {
                write_table(&mut out, &keys)?;
            }
            out.flush()?;
            Ok(())
        }
        ApikeysCommand::Delete { id, json, .. } => {
            let store = open(data_dir)?;
            let record = match store.delete_key(*id) {
                Ok(r) => r,
                Err(StoreError::NotFound { .. }) => {
                    return Err(anyhow!("no streaming key with id {id} in {}", data_dir.display()));
                }
                Err(e) => return Err(e.into()),
            };
            if *json {
                println!("{}", serde_json::json!({"id": record.id, "deleted": true}));
            } else {
                println!("Deleted streaming key {} \"{}\" (workspace {}).", record.id, record.name, record.workspace);
            }
            Ok(())
        }
    }
}

/// Opens the control store, explaining a data dir held by a daemon.
pub(crate) fn open(data_dir: &Path) -> anyhow::Result<ControlStore> {
    match ControlStore::open(data_dir) {
        Ok(store) => Ok(store),
        Err(e @ StoreError::Locked { .. }) => {
            Err(anyhow!("{e}. Commands given --data-dir work only while no daemon runs on that dir: stop it first."))
        }
        Err(e) => Err(e).with_context(|| format!("cannot open data dir {}", data_dir.display())),
    }
}

/// Prints the key table to stdout.
pub(crate) fn print_table(keys: &[KeyRecord]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_table(&mut out, keys)?;
    out.flush()?;
    Ok(())
}

/// Who created a key, as recorded with it.
fn creator() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

fn write_table(out: &mut impl Write, keys: &[KeyRecord]) -> std::io::Result<()> {
    if keys.is_empty() {
        return writeln!(out, "No streaming keys. Create one with `sluice apikeys create --name NAME`.");
    }
    let header = ["ID", "NAME", "WORKSPACE", "PREFIX", "CREATED", "LAST USED"];
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|k| {
            [
                k.id.to_string(),
                k.name.clone(),
                k.workspace.to_string(),
                format!("{}…", k.prefix),
                utc(k.created_at_ms),
                k.last_used_ms.map_or_else(|| "never".to_owned(), utc),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.extend(std::iter::repeat_n(' ', w.saturating_sub(cell.chars().count())));
            }
        }
        writeln!(out, "{text}")
    };
    line(out, &header)?;
    for row in &rows {
        line(out, &row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000_999), "2023-11-14 22:13:20Z");
    }

    #[test]
    fn table_aligns_columns() {
        let k = |id, name: &str| KeyRecord {
            id,
            name: name.into(),
            workspace: 1,
            prefix: "abcdef01".into(),
            created_at_ms: 0,
            last_used_ms: None,
            creator: "t".into(),
        };
        let mut out = Vec::new();
        write_table(&mut out, &[k(1, "a"), k(12, "longer name")]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  NAME         WORKSPACE"));
        assert!(lines[2].starts_with("12  longer name  1"));
        assert!(lines[2].ends_with("never"));
    }
}
