//! Errors of the lake writer.

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong landing data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Delta operation failed.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// `schema.table/current` or `.../history`.
        table: String,
        /// The delta-rs error.
        #[source]
        source: deltalake::DeltaTableError,
    },
    /// Another writer committed to the table since this one read it.
    #[error("Delta table {table} was committed to by another writer (transaction version {found}, this writer expected {expected}); stop the other tidemark process for this environment, then restart this one")]
    StaleWriter {
        /// The table.
        table: String,
        /// Version this writer last saw.
        expected: i64,
        /// Version in the table now.
        found: i64,
    },
    /// The warehouse location is not usable.
    #[error("warehouse {location}: {message}")]
    Warehouse {
        /// The location.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A write asked of a warehouse opened read-only (another environment's, read by
    /// a deferred build): refused before anything is touched.
    #[error("warehouse {location} is open read-only: {what} refused (a deferred build writes only to its own environment's warehouse)")]
    ReadOnly {
        /// The warehouse.
        location: String,
        /// What was refused.
        what: String,
    },
    /// The stored table does not match what the source now looks like.
    #[error("table {table}: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What differs and what to do.
        message: String,
    },
    /// Arrow or DataFusion failed on the batch.
    #[error("table {table}: {message}")]
    Batch {
        /// The table.
        table: String,
        /// The error.
        message: String,
    },
    /// Shared-model error.
    #[error(transparent)]
    Core(#[from] tidemark_core::Error),
}

impl Error {
    /// Another writer committed to the table concurrently: the commit did not happen,
    /// and doing it again on the table's fresh state may succeed.
    pub fn is_conflict(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError as T;
        use deltalake::DeltaTableError as D;
        match self {
            Error::StaleWriter { .. } => true,
            Error::Delta { source, .. } => matches!(
                source,
                D::Transaction {
                    source: T::CommitConflict(_)
                        | T::MaxCommitAttempts(_)
                        | T::VersionAlreadyExists(_)
                } | D::VersionAlreadyExists(_)
            ),
            _ => false,
        }
    }

    /// The failure may pass by itself (the object store or disk failed, the
    /// network dropped): the same commit, tried again later, may succeed. Everything
    /// else (a damaged log, a schema that no longer fits, another writer) is definite:
    /// trying again gives the same answer.
    pub fn is_transient(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError as T;
        use deltalake::DeltaTableError as D;
        match self {
            Error::Delta { source, .. } => {
                matches!(
                    source,
                    D::ObjectStore { .. }
                        | D::Io { .. }
                        | D::Transaction {
                            source: T::ObjectStore { .. } | T::MaxCommitAttempts(_)
                        }
                ) || matches!(source, D::Parquet { source } if parquet_io(source))
            }
            Error::Warehouse { .. } => true,
            _ => false,
        }
    }
}

/// A Parquet error that is an I/O failure underneath (a full disk while writing).
fn parquet_io(e: &deltalake::parquet::errors::ParquetError) -> bool {
    use deltalake::parquet::errors::ParquetError as P;
    matches!(e, P::External(inner) if inner.is::<std::io::Error>())
}
