//! Errors of feature views and training sets.

use std::path::PathBuf;

use deltalake::datafusion::error::DataFusionError;

/// What can go wrong defining a feature view or building a training set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[features.VIEW]` definition is wrong; `field` is the key (`entity`,
    /// `features[2].sql`, ...) so the message points at the line to fix.
    #[error("features.{view}.{field}: {message}")]
    Definition {
        /// The view.
        view: String,
        /// The key within it.
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// A view named in a request is not defined.
    #[error("feature view {name:?} is not defined; defined: {defined}")]
    UnknownView {
        /// The name asked for.
        name: String,
        /// The views the config defines, comma-separated (or "none").
        defined: String,
    },
    /// The entity rows cannot be used as given.
    #[error("entity rows: {0}")]
    Entities(String),
    /// The request itself is contradictory (no views, clashing output names, ...).
    #[error("{0}")]
    Request(String),
    /// Reading the entity rows or writing the training set.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Planning or running the query (DataFusion), kept as the error itself.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Reading the warehouse through the query engine.
    #[error(transparent)]
    Query(#[from] tidemark_query::Error),
    /// Writing Parquet.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] deltalake::parquet::errors::ParquetError),
    /// Arrow (writing CSV, converting values of the online store).
    #[error("{0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// The online store has not built the view yet (it is reading it from the lake).
    #[error("feature view {view} is being built from the lake; try again in a few seconds")]
    NotReady {
        /// The view.
        view: String,
    },
    /// Reading a table of the lake.
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
    /// Reading a table's committed state (boxed: the lake's error is large, and
    /// lookups return this type on their hot path).
    #[error(transparent)]
    Lake(Box<tidemark_lake::Error>),
}

impl From<tidemark_lake::Error> for Error {
    fn from(e: tidemark_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn definition(
        view: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Definition {
            view: view.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}
