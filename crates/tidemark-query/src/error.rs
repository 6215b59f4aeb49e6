//! Query errors.

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL could not be parsed, planned or run.
    #[error("{0}")]
    Sql(String),
    /// A table the query names does not exist.
    #[error(
        "table {0} does not exist; `SELECT * FROM information_schema.tables` lists the tables"
    )]
    UnknownTable(String),
    /// A statement that would change data.
    #[error("tidemark SQL is read-only: {0} statements are not allowed")]
    ReadOnly(String),
    /// Opening the warehouse failed (boxed: delta-rs errors are large).
    #[error(transparent)]
    Lake(Box<tidemark_lake::Error>),
}

impl From<tidemark_lake::Error> for Error {
    fn from(e: tidemark_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

impl From<deltalake::datafusion::error::DataFusionError> for Error {
    fn from(e: deltalake::datafusion::error::DataFusionError) -> Self {
        Error::Sql(e.to_string())
    }
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        Error::Sql(e.to_string())
    }
}
