//! Drawing a [`View`] with ratatui.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::model::View;

/// What the header line says.
pub struct Header<'a> {
    pub server: &'a str,
    pub version: &'a str,
    pub uptime_secs: u64,
    pub interval_secs: f64,
    /// The last error talking to the server, if the last refresh failed.
    pub error: Option<&'a str>,
}

pub fn draw(frame: &mut Frame<'_>, header: &Header<'_>, view: &View) {
    let listeners = view.listeners.len() as u16;
    let [top, table, middle, stages] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(listeners + 3),
        Constraint::Length(7),
        Constraint::Min(4),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(header), top);
    frame.render_widget(listener_table(view), table);
    let [store, pipeline] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    frame.render_widget(store_box(view), store);
    frame.render_widget(pipeline_box(view), pipeline);
    frame.render_widget(stage_table(view), stages);
}

/// The screen as plain text, `width` columns wide and as tall as it needs.
pub fn text(header: &Header<'_>, view: &View, width: u16) -> String {
    let height = view.listeners.len() as u16 + 3 + 7 + view.stages.len() as u16 + 3 + 1;
    // A buffer in memory: drawing cannot fail.
    let Ok(mut terminal) = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height));
    let Ok(_) = terminal.draw(|f| draw(f, header, view));
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn header_line(h: &Header<'_>) -> Paragraph<'static> {
    let mut text = format!(
        "sluice top  {}  sluice {}, up {}  every {}s  q quits",
        h.server,
        h.version,
        uptime(h.uptime_secs),
        h.interval_secs
    );
    if let Some(e) = h.error {
        text.push_str(&format!("  (refresh failed: {e})"));
    }
    Paragraph::new(text).style(Style::new().add_modifier(Modifier::BOLD))
}

fn listener_table(v: &View) -> Table<'static> {
    let head = ["listener", "events/s", "bytes/s", "conns", "refused/s", "cut/s", "dropped/s", "ack p50", "ack p99"];
    let rows = v.listeners.iter().map(|l| {
        Row::new(vec![
            l.name.clone(),
            l.events_per_sec.map_or("-".into(), count),
            bytes(l.bytes_per_sec),
            l.connections.map_or("-".into(), count),
            count(l.refused_per_sec),
            count(l.cut_per_sec),
            count(l.dropped_per_sec),
            opt_secs(l.ack_p50),
            opt_secs(l.ack_p99),
        ])
    });
    let widths = [Constraint::Length(12), Constraint::Length(12), Constraint::Length(11)]
        .into_iter()
        .chain(std::iter::repeat_n(Constraint::Length(10), 6));
    Table::new(rows, widths)
        .header(Row::new(head).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(" Listeners "))
}

fn store_box(v: &View) -> Paragraph<'static> {
    let lines = vec![
        Line::from(format!(
            "stored          {}/s  (duplicate batches {}/s)",
            count(v.stored_per_sec),
            count(v.duplicates_per_sec)
        )),
        Line::from(format!(
            "commits         {}/s  failed {}/s",
            count(v.commits_per_sec),
            count(v.commit_failures_per_sec)
        )),
        Line::from(format!("commit p50/p99  {} / {}", opt_secs(v.commit_p50), opt_secs(v.commit_p99))),
        Line::from(format!("batches/commit  {}", v.batches_per_commit.map_or("-".into(), |b| format!("{b:.1}")))),
    ];
    Paragraph::new(lines).block(Block::bordered().title(" Store "))
}

fn pipeline_box(v: &View) -> Paragraph<'static> {
    let share = if v.budget_bytes > 0.0 { 100.0 * v.inflight_bytes / v.budget_bytes } else { 0.0 };
    let retention =
        if v.retention_max_bytes > 0.0 { format!(" of {}", bytes(v.retention_max_bytes)) } else { String::new() };
    let disk = match (v.disk_free_bytes, v.disk_total_bytes) {
        (Some(free), Some(total)) => format!("{} free of {}", bytes(free), bytes(total)),
        _ => "-".into(),
    };
    let lines = vec![
        Line::from(format!("in flight  {} of {} ({share:.0}%)", bytes(v.inflight_bytes), bytes(v.budget_bytes))),
        Line::from(format!("untrusted  {}", bytes(v.untrusted_bytes))),
        Line::from(format!("stored     {}{retention}", bytes(v.stored_bytes))),
        Line::from(format!("disk       {disk}")),
        Line::from(format!("daemon     CPU {:.0}%  RSS {}", v.cpu_percent, bytes(v.resident_bytes))),
    ];
    Paragraph::new(lines).block(Block::bordered().title(" Pipeline and disk "))
}

fn stage_table(v: &View) -> Table<'static> {
    let rows = v.stages.iter().map(|(stage, p50, p99)| Row::new(vec![stage.clone(), opt_secs(*p50), opt_secs(*p99)]));
    Table::new(rows, [Constraint::Length(10), Constraint::Length(10), Constraint::Length(10)])
        .header(Row::new(["stage", "p50", "p99"]).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(" Where an ack's time goes "))
}

/// A rate or count: `1,234,567`, or with one decimal under 10.
pub fn count(v: f64) -> String {
    if v > 0.0 && v < 10.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn opt_secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 0.001 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::top::model::ListenerRow;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(0.25), "0.2");
        assert_eq!(count(0.0), "0");
        assert_eq!(bytes(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(opt_secs(Some(0.0004)), "400 µs");
        assert_eq!(opt_secs(Some(0.0213)), "21.3 ms");
    }

    #[test]
    fn draws_every_listener_and_stage() {
        let view = View {
            listeners: vec![ListenerRow { name: "tcp".into(), events_per_sec: Some(512_000.0), ..Default::default() }],
            stages: vec![("commit".into(), Some(0.0004), Some(0.002))],
            ..Default::default()
        };
        let header = Header { server: "http://x", version: "0.1.0", uptime_secs: 5, interval_secs: 1.0, error: None };
        let screen = text(&header, &view, 120);
        assert!(screen.contains("512,000"), "{screen}");
        assert!(screen.contains("commit") && screen.contains("400 µs"), "{screen}");
        assert!(screen.contains("q quits"));
    }
}
