//! Errors of the shared model. Each variant carries what a person needs to act on it.

use std::path::PathBuf;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised while reading configuration, naming tables or decoding values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid (unknown key, wrong type, bad value).
    #[error("invalid config {path}: {message}")]
    Config {
        /// The file, or `<inline>`.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// A secret could not be resolved.
    #[error("{0}")]
    Secret(String),
    /// Two source tables or columns normalise to the same SQL name.
    #[error("name collision: {0}")]
    NameCollision(String),
    /// A column type that tidemark cannot map.
    #[error("table {table}: column {column} has type {mysql_type}, which tidemark cannot map yet; exclude the table (exclude = [\"{table}\"]) and report the type")]
    UnsupportedType {
        /// Source table.
        table: String,
        /// Source column.
        column: String,
        /// The column type as MySQL reports it.
        mysql_type: String,
    },
    /// A value that does not fit the column's Arrow type.
    #[error("table {table}: column {column}: {message}")]
    Decode {
        /// Source table.
        table: String,
        /// Source column.
        column: String,
        /// What went wrong.
        message: String,
    },
    /// Arrow failed to build a batch.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}
