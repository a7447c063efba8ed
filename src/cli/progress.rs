//! Progress lines, drawn on stderr only when stderr is a terminal (never
//! into a log file or a pipe): events and bytes of `sluice export`
//! ([`Progress`]), bytes and rate of `backup` and `restore` ([`Transfer`]).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Events between two updates of the byte count (a message is a string).
const MESSAGE_EVERY: u64 = 1024;

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    events: u64,
    bytes: u64,
}

impl Progress {
    /// A spinner on stderr if it is a terminal, else nothing at all.
    pub fn on_terminal() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {pos} events, {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, events: 0, bytes: 0 }
    }

    /// One more event of `bytes` bytes written.
    pub fn event(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if self.events.is_multiple_of(MESSAGE_EVERY) {
                bar.set_message(HumanBytes(self.bytes).to_string());
            }
        }
    }

    /// Leaves the final counts on the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.set_message(HumanBytes(self.bytes).to_string());
            bar.finish();
        }
    }
}

/// Bytes moved so far and their rate, with a bar when the total is known.
#[derive(Debug)]
pub struct Transfer {
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// A counter for `what` on stderr if it is a terminal, else nothing at all.
    pub fn on_terminal(what: &str, total: Option<u64>) -> Transfer {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(n) => (
                    ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                    "{msg} {wide_bar} {bytes}/{total_bytes} ({binary_bytes_per_sec}, {elapsed})",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{spinner} {msg} {bytes} ({binary_bytes_per_sec}, {elapsed})",
                ),
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Transfer { bar }
    }

    /// `inner`, counting what is read from it.
    pub fn reader<R: Read>(&self, inner: R) -> Counted<R> {
        Counted { inner, bar: self.bar.clone() }
    }

    /// Leaves the final count on the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}

/// A reader whose bytes advance a [`Transfer`].
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}
