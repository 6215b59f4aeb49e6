//! Source errors. Each names the source (and table where there is one) and says what to fix.

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading a MySQL source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached (transient: retried by long-running commands).
    #[error("cannot connect to MySQL source {source_name} at {address}: {message}. Check that the server is running and reachable from here, and the url in [sources.{source_name}]")]
    Unreachable {
        /// Source name.
        source_name: String,
        /// host:port.
        address: String,
        /// The client error.
        message: String,
    },
    /// The login was refused.
    #[error("MySQL source {source_name} refused user {user}: {message}. Check the user in [sources.{source_name}].url and the password in its password_env / password_file")]
    AccessDenied {
        /// Source name.
        source_name: String,
        /// The user.
        user: String,
        /// The server message.
        message: String,
    },
    /// A privilege is missing.
    #[error("MySQL source {source_name}: {what}. Ask a DBA to run: {grant}")]
    MissingPrivilege {
        /// Source name.
        source_name: String,
        /// What failed.
        what: String,
        /// The GRANT that fixes it.
        grant: String,
    },
    /// A query failed.
    #[error("MySQL source {source_name}, table {table}: {message}")]
    Query {
        /// Source name.
        source_name: String,
        /// `db.table` or `-`.
        table: String,
        /// The error.
        message: String,
    },
    /// Shared-model error (config, types, names).
    #[error(transparent)]
    Core(#[from] tidemark_core::Error),
    /// Landing error.
    #[error(transparent)]
    Lake(#[from] tidemark_lake::Error),
}
