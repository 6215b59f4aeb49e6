//! Startup errors, and the SQLSTATEs clients get.

use std::net::SocketAddr;
use std::path::PathBuf;

use pgwire::error::{ErrorInfo, PgWireError};

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops the endpoint from starting. Messages name the file or setting, never
/// a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[server]` setting is wrong.
    #[error("server config: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The TLS certificate or key cannot be used; the server does not start rather
    /// than serve without TLS.
    #[error("TLS: {path}: {message}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The users file cannot be read or written.
    #[error("users file {path}: {message}")]
    Users {
        /// The users file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Setting up the SQL session (pg_catalog) failed.
    #[error("SQL session setup: {0}")]
    Session(String),
    /// A reload of the users and roles was refused; those in force stay in force.
    #[error("users and roles not reloaded, the previous ones stay in force: {message}")]
    Reload {
        /// What is wrong with the new users file or roles.
        message: String,
    },
    /// Other IO.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// An ERROR with this SQLSTATE.
pub(crate) fn sql_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// A FATAL error (the connection ends).
pub(crate) fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

/// A query error as clients see it: the SQLSTATE its kind has (see
/// [`tidemark_query::Error::sqlstate`]), and a message that starts with what happened.
pub(crate) fn query_error(e: impl Into<tidemark_query::Error>) -> PgWireError {
    let e = e.into();
    let code = e.sqlstate();
    let mut message = e.to_string();
    if code == "53200" {
        message.push_str(
            " (each statement may use server.query_memory_mb; aggregate or filter more, or ask an administrator to raise it)",
        );
    }
    sql_error(code, message)
}

/// An error a library hands pgwire (arrow-pg encoding, DataFusion while streaming):
/// its kind's SQLSTATE where it is one we know, else XX000.
pub(crate) fn library_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> PgWireError {
    use deltalake::arrow::error::ArrowError;
    use deltalake::datafusion::error::DataFusionError;
    if let Some(d) = e.downcast_ref::<DataFusionError>() {
        sql_error(
            tidemark_query::sqlstate(d),
            tidemark_query::error_message(d),
        )
    } else if let Some(a) = e.downcast_ref::<ArrowError>() {
        sql_error(tidemark_query::arrow_sqlstate(a), a.to_string())
    } else {
        sql_error("XX000", e.to_string())
    }
}
