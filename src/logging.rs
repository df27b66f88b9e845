//! Log setup: `tracing` to stderr, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]),
//! as text or JSON lines.

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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
