//! The event filters `sluice export` and `sluice tail` share: flags that
//! become the admin API's query parameters, or a [`Query`] run offline.
//!
//! Values are checked here, before anything is sent or opened, so a typo
//! fails at once with a usage error naming the flag.

use anyhow::anyhow;

use crate::record::Kind;
use crate::store::query::{MAX_PAGE, Order, Query, time_ms};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only this workspace (through the API it must be your login's; offline, default all for export, 1 for tail).
    #[arg(long)]
    pub workspace: Option<u32>,
    /// Only events with seq >= SEQ.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only events received at or after TIME (unix milliseconds or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<u64>,
    /// Only events received at or before TIME (unix milliseconds or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<u64>,
    /// Only events taken by this listener (tcp, syslog_tcp, syslog_udp, http).
    #[arg(long)]
    pub listener: Option<String>,
    /// Only events of this kind: event, log, metric, syslog or span.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Only events of this service (Tell's `service`, OTLP's `service.name`).
    #[arg(long)]
    pub service: Option<String>,
    /// Only events with a stored field containing TEXT (case-sensitive).
    #[arg(long = "q", value_name = "TEXT")]
    pub text: Option<String>,
}

impl FilterArgs {
    /// Checks what single flags cannot: a workspace id and the time window.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.workspace == Some(0) {
            return Err(anyhow!("--workspace: workspace ids are positive integers"));
        }
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return Err(anyhow!("--from is after --to"));
        }
        Ok(())
    }

    /// The filters as query parameters, `since` left out (callers set it).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(w) = self.workspace {
            p.push(("workspace", w.to_string()));
        }
        if let Some(f) = self.from {
            p.push(("from", f.to_string()));
        }
        if let Some(t) = self.to {
            p.push(("to", t.to_string()));
        }
        if let Some(l) = &self.listener {
            p.push(("listener", l.clone()));
        }
        if let Some(k) = self.kind {
            p.push(("kind", k.name().to_owned()));
        }
        if let Some(s) = &self.service {
            p.push(("service", s.clone()));
        }
        if let Some(q) = &self.text {
            p.push(("q", q.clone()));
        }
        p
    }

    /// The filters as a query of one workspace, oldest first, with no scan
    /// limit (offline, the reader is the only one waiting).
    pub fn query(&self, workspace: u32) -> Query {
        Query {
            workspace,
            since: self.since,
            from_ms: self.from,
            to_ms: self.to,
            listener: self.listener.clone(),
            kind: self.kind,
            service: self.service.clone(),
            text: self.text.clone().filter(|t| !t.is_empty()),
            limit: MAX_PAGE,
            order: Order::Asc,
            cursor: None,
            max_scan_rows: u64::MAX,
        }
    }
}

/// `k=v&…`, form-encoded.
pub fn query_string(params: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn parse_time(v: &str) -> Result<u64, String> {
    time_ms(v).ok_or_else(|| "expected unix milliseconds or an RFC 3339 time such as 2026-11-22T18:00:00Z".into())
}

fn parse_kind(v: &str) -> Result<Kind, String> {
    Kind::from_name(v).ok_or_else(|| "expected event, log, metric, syslog or span".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_values_so_the_server_decodes_them_back() {
        let s = query_string(&[("q", "disk full & 100%/é".into()), ("kind", "log".into())]);
        assert_eq!(s, "q=disk%20full%20%26%20100%25%2F%C3%A9&kind=log");
    }

    #[test]
    fn checks_values_and_windows() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_kind("bird").is_err());
        let bad = FilterArgs { from: Some(5), to: Some(1), ..FilterArgs::default() };
        assert!(bad.check().is_err());
        assert!(FilterArgs { workspace: Some(0), ..FilterArgs::default() }.check().is_err());
        let q = FilterArgs { text: Some(String::new()), since: Some(4), ..FilterArgs::default() }.query(2);
        assert_eq!((q.workspace, q.since, q.text), (2, Some(4), None));
    }
}
