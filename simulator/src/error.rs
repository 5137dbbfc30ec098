//! Input errors: each names the file, and where it can, the line and the field.

use thiserror::Error;

/// Bad input (trace CSV, scenario YAML, command-line values). The binary exits with
/// code 2 on these, 1 on anything else.
#[derive(Debug, Error)]
pub enum InputError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// Path.
        file: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A value in a file is wrong.
    #[error("{file}:{line}: field {field:?}: {message}")]
    Field {
        /// Path.
        file: String,
        /// 1-based line number.
        line: u64,
        /// Column or key name.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A problem with the file as a whole (no data rows, bad header, ...).
    #[error("{file}: {message}")]
    File {
        /// Path.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A name that is neither a built-in scenario nor a file.
    #[error(
        "unknown scenario {0:?}: not a built-in (see `autoscaler-sim scenarios`) and no such file"
    )]
    UnknownScenario(String),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
}
