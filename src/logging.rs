//! Log setup: `tracing` to stderr, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]),
//! as text or JSON lines. Colours only on a terminal: a file, a pipe or the
//! journal gets plain text (and `NO_COLOR` turns them off everywhere).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Filter without `RUST_LOG`: our `info`, but only warnings from the Fluvio
/// client, which logs every socket it opens at `info`.
pub const DEFAULT_FILTER: &str = "info,fluvio=warn,fluvio_socket=warn,fluvio_future=warn,fluvio_sc_schema=warn";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether log lines get ANSI colours: only on a terminal, unless `NO_COLOR` is set.
pub fn colours(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal() {
        assert!(colours(true, false));
        assert!(!colours(false, false), "files, pipes and the journal get plain text");
        assert!(!colours(true, true), "NO_COLOR wins");
    }
}
