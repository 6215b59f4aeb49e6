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

/// SQLSTATE for a query error from the engine or DataFusion. DataFusion errors reach
/// us as text (tidemark-query flattens them), so this reads the text: the class
/// matters to clients (42P01 makes tools say "table not found"), the message to
/// people.
pub(crate) fn sqlstate_for(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.starts_with("permission denied for") {
        "42501"
    } else if m.contains("read-only") {
        "25006"
    } else if m.contains("does not exist") && m.contains("table")
        || m.contains("table '") && m.contains("not found")
    {
        "42P01"
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703"
    } else if m.contains("sql parser error") || m.contains("syntax error") {
        "42601"
    } else if m.contains("invalid function") || m.contains("function") && m.contains("not found") {
        "42883"
    } else if m.contains("resources exhausted") {
        "53200"
    } else if m.contains("not implemented")
        || m.contains("unsupported")
        || m.contains("not supported")
    {
        "0A000"
    } else if m.contains("cast") || m.contains("cannot coerce") {
        "22023"
    } else {
        "XX000"
    }
}

/// A query error as clients see it: DataFusion's wrapping ("External error: ",
/// "Error during planning: ") dropped, so the message starts with what happened.
pub(crate) fn query_error(e: impl std::fmt::Display) -> PgWireError {
    let mut message = e.to_string();
    for prefix in [
        "External error: ",
        "Error during planning: ",
        "External error: ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    let code = sqlstate_for(&message);
    if code == "53200" {
        message.push_str(
            " (each statement may use server.query_memory_mb; aggregate or filter more, or ask an administrator to raise it)",
        );
    }
    sql_error(code, message)
}
