//! Structured JSON logs on stderr (tracing-subscriber).

use crate::flags::Flags;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; `RUST_LOG` overrides the level from `--v`.
pub fn init(flags: &Flags) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(flags.log_filter()));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
