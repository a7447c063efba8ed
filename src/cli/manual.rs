//! `sluice package-assets DIR`: the man pages and shell completions the
//! Debian package installs, generated rather than kept by hand, so they
//! cannot drift from the code:
//!
//! - `sluice(1)` and one page per subcommand, from the clap definitions
//!   (`clap_mangen`);
//! - `sluice.toml(5)`, from the annotated `config/production.toml` (every
//!   key with its shipped value and comment), plus the tables of the
//!   forwarding examples that production.toml leaves out;
//! - bash, zsh and fish completions (`clap_complete`).
//!
//! Files are written under DIR at their installed paths (`DIR/usr/share/…`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// The annotated configs `sluice.toml(5)` is made of, in order: the first
/// in full, the others for the tables the earlier ones lack.
const CONFIGS: [(&str, &str); 3] = [
    ("config/production.toml", include_str!("../../config/production.toml")),
    ("config/forward-edge.toml", include_str!("../../config/forward-edge.toml")),
    ("config/central.toml", include_str!("../../config/central.toml")),
];

/// Completions: shell, file name, installed directory.
const COMPLETIONS: [(Shell, &str, &str); 3] = [
    (Shell::Bash, "sluice", "usr/share/bash-completion/completions"),
    (Shell::Zsh, "_sluice", "usr/share/zsh/vendor-completions"),
    (Shell::Fish, "sluice.fish", "usr/share/fish/vendor_completions.d"),
];

/// Writes every asset under `dir`; returns their paths relative to `dir`.
pub fn write_assets(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |relative: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(&relative);
        std::fs::create_dir_all(path.parent().expect("a file under dir"))?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(relative);
        Ok(())
    };
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect_pages(&cmd, &mut pages)?;
    for (name, roff) in pages {
        put(PathBuf::from(format!("usr/share/man/man1/{name}.1.gz")), &gzip(&roff)?)?;
    }
    put(PathBuf::from("usr/share/man/man5/sluice.toml.5.gz"), &gzip(config_page().as_bytes())?)?;
    for (shell, file, installed) in COMPLETIONS {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "sluice", &mut out);
        put(Path::new(installed).join(file), &out)?;
    }
    Ok(written)
}

/// `(page name, roff)` for `cmd` and each visible subcommand, recursively.
fn collect_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("sluice {}", env!("CARGO_PKG_VERSION")));
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    pages.push((man.get_filename().trim_end_matches(".1").to_owned(), roff));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_pages(sub, pages)?;
    }
    Ok(())
}

/// gzip at the best level with no name or time in the header, so the same
/// input gives the same bytes (lintian asks for maximum compression).
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    gz.finish()
}

/// `sluice.toml(5)` in roff.
pub fn config_page() -> String {
    let mut out = String::new();
    out.push_str(&format!(".TH SLUICE.TOML 5 \"\" \"sluice {}\" \"File Formats\"\n", env!("CARGO_PKG_VERSION")));
    out.push_str(".SH NAME\nsluice.toml \\- configuration of the sluice ingest daemon\n");
    out.push_str(".SH SYNOPSIS\n/etc/sluice/sluice.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(
        "A TOML file read by \\fBsluice serve \\-\\-config\\fR and checked by \\fBsluice check\\-config\\fR. \
         A table that is absent turns its listener off; a key that is absent takes its default. \
         Unknown keys are errors, named with their file and line. \
         Sizes take units (\\fB64KiB\\fR, \\fB16MiB\\fR), durations too (\\fB10s\\fR, \\fB5m\\fR, \\fB30d\\fR).\n",
    );
    out.push_str(
        ".PP\nBelow, every table and key of the shipped file, with its shipped value and the comment beside it. \
                  Tables shown commented out are off as shipped.\n",
    );
    let mut seen: Vec<String> = Vec::new();
    for (index, (file, text)) in CONFIGS.iter().enumerate() {
        let tables = parse(text);
        let fresh: Vec<&Table> = tables.iter().filter(|t| !seen.contains(&t.name)).collect();
        if fresh.is_empty() {
            continue;
        }
        match index {
            0 => out.push_str(&format!(".SH \"THE SHIPPED FILE\"\nFrom \\fI{}\\fR.\n", roff_text(file))),
            1 => out.push_str(&format!(
                ".SH \"FORWARDING TO NATS JETSTREAM\"\nAn edge node (\\fI{}\\fR) and a central node \
                 that consumes what edges forward; see /usr/share/doc/sluice/forward.md.\n",
                roff_text(file)
            )),
            _ => out.push_str(&format!(".PP\nFrom \\fI{}\\fR:\n", roff_text(file))),
        }
        for table in fresh {
            table.render(&mut out);
            seen.push(table.name.clone());
        }
    }
    out.push_str(".SH FILES\n.TP\n/etc/sluice/sluice.toml\nThe configuration the packaged service reads.\n");
    out.push_str(
        ".TP\n/usr/lib/systemd/system/sluice.socket\nThe privileged sockets (syslog on port 514) systemd binds; \
                  a passed socket serves the listener whose \\fBaddress\\fR it is bound to.\n",
    );
    out.push_str(
        ".SH \"SEE ALSO\"\n\\fBsluice\\fR(1), \\fBsluice\\-serve\\fR(1), \\fBsluice\\-check\\-config\\fR(1), \
                  \\fBsystemd.socket\\fR(5), /usr/share/doc/sluice/operations.md\n",
    );
    out
}

/// One table of an annotated config: its comments, keys and whether it is
/// commented out as shipped.
#[derive(Debug, Default, PartialEq)]
struct Table {
    name: String,
    off: bool,
    about: Vec<String>,
    keys: Vec<Key>,
}

#[derive(Debug, PartialEq)]
struct Key {
    line: String,
    about: Vec<String>,
    off: bool,
}

impl Table {
    fn render(&self, out: &mut String) {
        let off = if self.off { " (off as shipped)" } else { "" };
        out.push_str(&format!(".SS \"[{}]{off}\"\n", roff_text(&self.name)));
        if !self.about.is_empty() {
            out.push_str(&format!("{}\n", roff_text(&self.about.join(" "))));
        }
        for key in &self.keys {
            let prefix = if key.off && !self.off { "# " } else { "" };
            // Unbreakable spaces: a setting is not filled like prose.
            let setting = roff_text(&key.line).replace(' ', "\\ ");
            out.push_str(&format!(".TP\n\\fB{prefix}{setting}\\fR\n{}\n", roff_text(&key.about.join(" "))));
        }
    }
}

/// The tables of an annotated TOML file, read line by line: a comment block
/// before a table header describes the table, a comment after a key (or on
/// the lines under it, indented past the `#`) describes the key, and
/// `# [table]` / `# key = …` lines are tables and keys shipped commented out.
fn parse(text: &str) -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut in_header = true;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            in_header = false;
            pending.clear();
            continue;
        }
        let (off, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if let Some(name) = header(body) {
            in_header = false;
            let mut table = Table { name: name.to_owned(), off, about: std::mem::take(&mut pending), keys: Vec::new() };
            if let Some(comment) = comment_of(body) {
                table.about.push(comment);
            }
            tables.push(table);
            continue;
        }
        if let Some(key) = key_line(body) {
            in_header = false;
            let (setting, comment) = split_comment(key);
            let entry = Key { line: setting.to_owned(), about: comment.into_iter().collect(), off };
            match tables.last_mut() {
                Some(t) => t.keys.push(entry),
                // Top-level keys (data_dir) belong to the unnamed root table.
                None => tables.push(Table { name: String::new(), keys: vec![entry], ..Table::default() }),
            }
            pending.clear();
            continue;
        }
        if !off || in_header {
            continue;
        }
        // A comment-only line: indented ones continue the key above, the
        // others describe what follows.
        let continues = raw.find('#').is_some_and(|at| at > 0);
        match tables.last_mut().and_then(|t| t.keys.last_mut()).filter(|_| continues) {
            Some(key) => key.about.push(body.to_owned()),
            None => pending.push(body.to_owned()),
        }
    }
    for table in &mut tables {
        if table.name.is_empty() {
            table.name = "top level".to_owned();
        }
    }
    tables
}

/// `[name]` (with an optional comment after it).
fn header(body: &str) -> Option<&str> {
    let rest = body.strip_prefix('[')?;
    let end = rest.find(']')?;
    let name = &rest[..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')).then_some(name)
}

/// `key = value` (with an optional comment after it).
fn key_line(body: &str) -> Option<&str> {
    let (key, _) = body.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')).then_some(body)
}

/// The comment after a header or key, if any.
fn comment_of(body: &str) -> Option<String> {
    split_comment(body).1
}

/// A key or header line without its trailing comment, and the comment.
/// A `#` inside a quoted string does not start a comment.
fn split_comment(line: &str) -> (&str, Option<String>) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => {
                let comment = line[i + 1..].trim();
                return (line[..i].trim_end(), (!comment.is_empty()).then(|| comment.to_owned()));
            }
            _ => {}
        }
    }
    (line.trim_end(), None)
}

/// Text safe inside a roff paragraph: backslashes and hyphens escaped, and
/// no line starting with a control character.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') { format!("\\&{escaped}") } else { escaped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_keys_and_their_comments() {
        let text = "# header of the file\ndata_dir = \"/d\"\n\n# About the listener.\n[sources.tcp]\n\
                    address = \"0.0.0.0:1\"  # where\nlimit = 3  # first line\n            # second line\n\
                    # tls = { cert = \"a#b\" }  # TLS\n\n# [sources.relp]   # off\n# address = \"x\"\n";
        let tables = parse(text);
        let names: Vec<_> = tables.iter().map(|t| (t.name.as_str(), t.off)).collect();
        assert_eq!(names, [("top level", false), ("sources.tcp", false), ("sources.relp", true)]);
        let tcp = &tables[1];
        assert_eq!(tcp.about, ["About the listener."]);
        assert_eq!(
            tcp.keys[0],
            Key { line: "address = \"0.0.0.0:1\"".into(), about: vec!["where".into()], off: false }
        );
        assert_eq!(tcp.keys[1].about, ["first line", "second line"]);
        assert_eq!(tcp.keys[2], Key { line: "tls = { cert = \"a#b\" }".into(), about: vec!["TLS".into()], off: true });
        assert_eq!(tables[2].about, ["off"]);
        assert_eq!(tables[2].keys.len(), 1);
    }

    /// The annotated files: every key they set says what it does.
    #[test]
    fn every_key_of_the_configs_the_page_is_made_of_has_a_comment() {
        for (file, text) in CONFIGS {
            for table in parse(text) {
                for key in table.keys {
                    assert!(!key.about.is_empty(), "[{}] {} has no comment in {file}", table.name, key.line);
                }
            }
        }
    }

    /// Every key the shipped config sets appears in the page, so the page
    /// cannot lose one the file has.
    #[test]
    fn the_config_page_names_every_shipped_key() {
        let page = config_page();
        for (_, text) in CONFIGS {
            for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && l.contains('=')) {
                let key = line.split('=').next().unwrap().trim();
                assert!(page.contains(&format!("\\fB{}", roff_text(key))), "sluice.toml(5) lacks {key}");
            }
        }
        for (_, text) in CONFIGS {
            for table in text.lines().filter_map(|l| header(l.trim().trim_start_matches('#').trim())) {
                assert!(page.contains(&format!("[{}]", roff_text(table))), "sluice.toml(5) lacks [{table}]");
            }
        }
    }
}
