//! Decoding errors. Each one names where the message came from (and the table when it
//! is known), says what was wrong and what to do, because the person reading it is
//! looking at a dead-letter row or a log line, not at this code.

/// Why a message could not be decoded or landed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not one JSON document.
    #[error("{position}: the message is not valid JSON ({message}); tidemark reads JSON change events (Debezium with org.apache.kafka.connect.json.JsonConverter, AWS DMS with MessageFormat json), one per message or file line")]
    Json {
        /// Where the message was read (topic/partition/offset, file:line).
        position: String,
        /// What the JSON reader found.
        message: String,
    },
    /// Valid JSON, but not the envelope the format defines (a field missing or of the
    /// wrong type, an unknown operation).
    #[error("{position}{}: {message}", on_table(.table))]
    Envelope {
        /// Where the message was read.
        position: String,
        /// `db.table`, when the message got far enough to say.
        table: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
    /// A column value that does not fit the column's type.
    #[error("{position}: table {table}: column {column}: {message}")]
    Value {
        /// Where the message was read.
        position: String,
        /// `db.table` at the source.
        table: String,
        /// Column as spelled at the source.
        column: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The event carries a column the table's schema does not have.
    #[error("{position}: table {table}: the event has column {column:?}, which tidemark's schema of the table does not have{hint}. The source table has probably changed (ALTER TABLE ... ADD COLUMN): refresh the table's schema in tidemark, or exclude the table")]
    UnknownColumn {
        /// Where the message was read.
        position: String,
        /// `db.table` at the source.
        table: String,
        /// Column as spelled in the event.
        column: String,
        /// `" (the schema has \"Id\"; column names are matched exactly)"` or empty.
        hint: String,
    },
    /// A row image without a value for a primary-key column.
    #[error("{position}: table {table}: the event has no value for key column {column:?}, and a row without its key cannot be merged. For AWS DMS deletes and before images, set the task's BeforeImageSettings ColumnFilter to pk-only or all; otherwise check that the table's key in tidemark matches the source")]
    MissingKey {
        /// Where the message was read.
        position: String,
        /// `db.table` at the source.
        table: String,
        /// The key column, as spelled at the source.
        column: String,
    },
    /// The event is for another table than the batch it was pushed into.
    #[error("{position}: an event for table {event_table} was pushed into a batch for table {batch_table}; events must be routed by their db and table first (a bug in the caller)")]
    WrongTable {
        /// Where the message was read.
        position: String,
        /// `db.table` of the event.
        event_table: String,
        /// `db.table` of the batch.
        batch_table: String,
    },
    /// The change batch refused the row.
    #[error("{position}: {source}")]
    Land {
        /// Where the message was read.
        position: String,
        /// What the batch builder said.
        source: tidemark_core::Error,
    },
    /// A file of events could not be read.
    #[error("line {line}: cannot read the events file: {source}")]
    Io {
        /// Line number (1-based) being read.
        line: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn on_table(table: &Option<String>) -> String {
    match table {
        Some(t) => format!(": table {t}"),
        None => String::new(),
    }
}

impl DecodeError {
    pub(crate) fn envelope(
        position: &str,
        table: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        DecodeError::Envelope {
            position: position.to_string(),
            table,
            message: message.into(),
        }
    }

    /// The message position the error is about (empty for I/O errors).
    pub fn position(&self) -> &str {
        match self {
            DecodeError::Json { position, .. }
            | DecodeError::Envelope { position, .. }
            | DecodeError::Value { position, .. }
            | DecodeError::UnknownColumn { position, .. }
            | DecodeError::MissingKey { position, .. }
            | DecodeError::WrongTable { position, .. }
            | DecodeError::Land { position, .. } => position,
            DecodeError::Io { .. } => "",
        }
    }
}
