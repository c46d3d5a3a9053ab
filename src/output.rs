//! Logs (tracing, to stderr) and progress bars (indicatif, only on a terminal and without
//! `-q`), kept apart so progress never ends up in a log file or a CI transcript.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber: `RUST_LOG` wins; otherwise warn, info (-v), debug (-vv).
/// Text lines carry colour only when stderr is a terminal (a pipe, a file or journald gets
/// plain bytes) and `NO_COLOR` is unset; JSON lines never do.
pub fn init_logging(verbose: u8, quiet: bool, json: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "m365_connector=info,warn",
        (false, _) => "m365_connector=debug,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().with_ansi(false).try_init()
    } else {
        builder.with_ansi(colour_logs()).try_init()
    };
}

/// Whether log lines may carry ANSI colour: only on an interactive stderr, never with
/// `NO_COLOR` set (no-color.org).
fn colour_logs() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Progress display for one command.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Visible only on an interactive stderr and without `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// Never draws (tests, library callers).
    pub fn hidden() -> Progress {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        }
    }

    /// A spinner line with a prefix, e.g. `users`.
    pub fn line(&self, prefix: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>8} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}
