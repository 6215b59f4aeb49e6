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
    /// The binlog stream failed or carried something tidemark cannot apply.
    #[error("MySQL source {source_name}, binlog at {position}: {message}")]
    Binlog {
        /// Source name.
        source_name: String,
        /// `file:pos` where it happened.
        position: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The binlog position to resume from is no longer on the server.
    #[error("MySQL source {source_name}: change capture must resume at binlog {position}, but the server no longer has it (oldest binlog: {oldest}); binlogs were purged while tidemark was stopped. Land the tables again with `tidemark snapshot --resnapshot --source {source_name}`, and raise binlog retention (`tidemark check` says how)")]
    BinlogPurged {
        /// Source name.
        source_name: String,
        /// The committed position.
        position: String,
        /// What the server has instead.
        oldest: String,
    },
    /// The server behind the source's address is not the one whose binlog the
    /// committed positions are in (a failover, a restore, a re-pointed address).
    #[error("MySQL source {source_name}: change capture must resume at binlog {position} of server {committed_server} (server_id), but the source's address now reaches server {now_server}; binlog coordinates of two servers cannot be compared, so nothing was read. Point the source back at server {committed_server}, or land its tables again from this server with `tidemark snapshot --resnapshot --source {source_name}`")]
    ServerChanged {
        /// Source name.
        source_name: String,
        /// The committed position.
        position: String,
        /// The server id the position was committed on.
        committed_server: u32,
        /// The server id reached now.
        now_server: u32,
    },
    /// A table's shape in the binlog differs from the one tidemark landed.
    #[error("MySQL source {source_name}, table {table}, binlog at {position}: the table's definition changed ({message}); the table is parked and the other tables keep flowing. Land it again with `tidemark snapshot --resnapshot --table {table}`")]
    SchemaChanged {
        /// Source name.
        source_name: String,
        /// `db.table` at the source.
        table: String,
        /// `file:pos`.
        position: String,
        /// What differs.
        message: String,
    },
    /// Shared-model error (config, types, names).
    #[error(transparent)]
    Core(#[from] tidemark_core::Error),
}
