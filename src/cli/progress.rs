//! The progress line of `sluice export`: events and bytes written so far,
//! drawn on stderr only when stderr is a terminal (never into a log file
//! or a pipe).

use std::io::IsTerminal;
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
