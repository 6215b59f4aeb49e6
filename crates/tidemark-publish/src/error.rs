//! What can go wrong publishing, split the way callers act on it: a target that is
//! down or a lost connection is worth a retry (nothing was committed, the next run
//! catches up); a parked table needs a person; a bad configuration needs an edit.

/// Errors of one publication.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (a table that is not landed, a view, a missing
    /// password variable).
    #[error("publication {publication}: {message}")]
    Config {
        /// The publication.
        publication: String,
        /// What is wrong and what to change.
        message: String,
    },
    /// The target could not be reached or the connection broke. Nothing of the
    /// transaction in flight was committed; a later run publishes what this one
    /// did not.
    #[error("publication {publication}: target {target} is unreachable: {message} (nothing was lost: the next run publishes from the last committed version)")]
    Unreachable {
        /// The publication.
        publication: String,
        /// The target URL (it never holds the password).
        target: String,
        /// The client's message.
        message: String,
    },
    /// The target refused a statement (permissions, a full disk, a value it will
    /// not take). The table's transaction was rolled back.
    #[error("publication {publication}: table {table}: the target refused {what}: {message}")]
    Target {
        /// The publication.
        publication: String,
        /// The lake table (`schema.table`).
        table: String,
        /// Which step.
        what: String,
        /// The server's message (with its detail and hint).
        message: String,
    },
    /// Staging the rows in S3 for a Redshift COPY failed (the S3 client's error, or
    /// a value wider than its Redshift column). What was staged is deleted again.
    #[error("publication {publication}: table {table}: staging the rows for Redshift: {message}")]
    Staging {
        /// The publication.
        publication: String,
        /// The lake table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// Reading the lake failed.
    #[error("publication {publication}: table {table}: reading the lake: {message}")]
    Lake {
        /// The publication.
        publication: String,
        /// The lake table.
        table: String,
        /// The engine's message.
        message: String,
    },
}

impl Error {
    /// Whether a retry may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Lake { .. })
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A PostgreSQL error as a person reads it: the server's message, detail and hint
/// when it is a server error, the client's otherwise.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => {
            // The client's Display adds the cause ("error connecting to server:
            // Connection refused (os error 111)").
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                let t = s.to_string();
                if !m.contains(&t) {
                    m.push_str(&format!(": {t}"));
                }
                src = s.source();
            }
            m
        }
    }
}
