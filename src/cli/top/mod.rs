//! `sluice top [--server URL] [--interval SECS]`: a live view of a running
//! daemon in the terminal, in the spirit of `vector top`: per listener the
//! events and bytes per second, connections, refusals, cuts, drops and ack
//! latency; the commit rate and latency; in-flight bytes against the
//! budget; disk; where an ack's time goes. It reads `GET /metrics` (no login
//! needed) from `--server`, else the stored login's server, else the
//! default; `q`, Esc or Ctrl-C quits. `--batch` prints one screen of the
//! next interval as plain text instead (as `top -b -n 1` does), for logs
//! and benchmarks.

mod model;
mod view;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::credentials::{self, ServerArg};
use super::http::ApiClient;
use super::scrape;
use model::{Scrape, View};

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Print the screen of one interval as text and exit (no terminal needed).
    #[arg(long)]
    pub batch: bool,
    /// The width of the `--batch` screen.
    #[arg(long, default_value_t = 120, requires = "batch")]
    pub width: u16,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=60.0).contains(&v) => Ok(v),
        _ => Err("an interval is 0.1 to 60 seconds".into()),
    }
}

pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    let server = credentials::server_url(args.server.server.as_deref())?;
    let api = ApiClient::new(&server);
    let started = Instant::now();
    // Fail before taking over the terminal if the server is not there.
    let first = fetch(&api, started).with_context(|| format!("cannot read {server}/metrics"))?;
    let health = api.get("/health", None).ok().and_then(|r| r.ok().ok());
    let version = health.as_ref().and_then(|h| h["version"].as_str().map(str::to_owned)).unwrap_or_default();
    let uptime_at_start = health.as_ref().and_then(|h| h["uptime_secs"].as_u64()).unwrap_or(0);
    let interval = Duration::from_secs_f64(args.interval);
    if args.batch {
        std::thread::sleep(interval);
        let view = model::view(&first, &fetch(&api, started)?);
        let header = view::Header {
            server: api.base(),
            version: &version,
            uptime_secs: uptime_at_start + started.elapsed().as_secs(),
            interval_secs: args.interval,
            error: None,
        };
        print!("{}", view::text(&header, &view, args.width));
        return Ok(());
    }
    ratatui::run(|terminal| -> anyhow::Result<()> {
        let (mut before, mut view, mut error) = (first.clone(), View::default(), None::<String>);
        let mut next = Instant::now() + interval;
        loop {
            let header = view::Header {
                server: api.base(),
                version: &version,
                uptime_secs: uptime_at_start + started.elapsed().as_secs(),
                interval_secs: args.interval,
                error: error.as_deref(),
            };
            terminal.draw(|f| view::draw(f, &header, &view))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()?
                    && k.kind == KeyEventKind::Press
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
                {
                    return Ok(());
                }
                continue;
            }
            next = Instant::now() + interval;
            match fetch(&api, started) {
                Ok(now) => {
                    view = model::view(&before, &now);
                    before = now;
                    error = None;
                }
                Err(e) => error = Some(format!("{e:#}")),
            }
        }
    })
}

fn fetch(api: &ApiClient, started: Instant) -> anyhow::Result<Scrape> {
    let reply = api.get("/metrics", None)?;
    anyhow::ensure!(reply.status == 200, "/metrics answered {}", reply.status);
    Ok(Scrape { series: scrape::parse(&reply.body), secs: started.elapsed().as_secs_f64() })
}
