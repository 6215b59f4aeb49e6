//! `tidemark.audit`: every statement the PostgreSQL endpoint answered (or refused),
//! with who, when, how long, how many rows and how it ended.
//!
//! A plain Delta table at `<warehouse>/tidemark/audit/`, appended in batches (the
//! server commits what gathered every second or so, not one commit per statement,
//! which would cost a Delta commit per query). Appends are blind, so several servers
//! over one warehouse can write it at once.

use std::sync::Arc;

use deltalake::arrow::array::{
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL name of the audit table in [`OWN_SCHEMA`].
pub const AUDIT: &str = "audit";

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it started (µs, UTC).
    pub started_us: i64,
    /// The login name.
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The client's address.
    pub client: String,
    /// `application_name` as the client set it.
    pub application: String,
    /// The SQL text as received.
    pub statement: String,
    /// How long it ran, until its last row was sent (µs).
    pub duration_us: i64,
    /// Rows sent (None for statements without rows).
    pub rows: Option<i64>,
    /// `ok`, `error`, `denied`, `timeout` or `cancelled`.
    pub outcome: String,
    /// The SQLSTATE of an error.
    pub sqlstate: Option<String>,
    /// The error message.
    pub error: Option<String>,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("started_at", ts, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("role_name", DataType::Utf8, false),
        Field::new("client", DataType::Utf8, false),
        Field::new("application", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        Field::new("duration_us", DataType::Int64, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("sqlstate", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// The audit table of a warehouse.
#[derive(Debug)]
pub struct Audit {
    table: DeltaTable,
}

impl Audit {
    /// Open the table, creating it if it does not exist.
    pub async fn open(wh: &Warehouse) -> Result<Self> {
        let table = own::open_or_create(
            wh,
            AUDIT,
            schema(),
            "tidemark: statements answered by the PostgreSQL endpoint",
        )
        .await?;
        Ok(Self { table })
    }

    /// The audit table, if the endpoint has ever written one (for reading:
    /// `tidemark sql` and other engines than the endpoint's own).
    pub async fn existing(wh: &Warehouse) -> Result<Option<DeltaTable>> {
        own::existing(wh, AUDIT).await
    }

    /// Maintain the audit table (see `own::maintain`): records older than
    /// `keep_days` are deleted (0 keeps every record), small files bin-packed, a
    /// checkpoint written, files older than `retention` vacuumed. `None` when the
    /// warehouse has no audit table.
    pub async fn maintain(
        wh: &Warehouse,
        retention: Option<chrono::Duration>,
        keep_days: u32,
    ) -> Result<Option<own::OwnMaintenance>> {
        let expire =
            (keep_days > 0).then(|| ("started_at", chrono::Duration::days(i64::from(keep_days))));
        own::maintain(wh, AUDIT, retention, expire).await
    }

    /// The table as last written (for reading: callers update a clone).
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// Append `records` in one commit.
    pub async fn append(&mut self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len();
        let name = format!("{OWN_SCHEMA}.{AUDIT}");
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut text: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
        let (mut dur, mut rows) = (
            Int64Builder::with_capacity(n),
            Int64Builder::with_capacity(n),
        );
        let (mut outcome, mut state, mut error) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for r in records {
            at.append_value(r.started_us);
            for (b, v) in
                text.iter_mut()
                    .zip([&r.user, &r.role, &r.client, &r.application, &r.statement])
            {
                b.append_value(v);
            }
            dur.append_value(r.duration_us);
            rows.append_option(r.rows);
            outcome.append_value(&r.outcome);
            state.append_option(r.sqlstate.as_deref());
            error.append_option(r.error.as_deref());
        }
        let mut columns: Vec<Arc<dyn deltalake::arrow::array::Array>> = vec![Arc::new(at.finish())];
        columns.extend(
            text.iter_mut()
                .map(|b| Arc::new(b.finish()) as Arc<dyn deltalake::arrow::array::Array>),
        );
        columns.extend([
            Arc::new(dur.finish()) as Arc<dyn deltalake::arrow::array::Array>,
            Arc::new(rows.finish()),
            Arc::new(outcome.finish()),
            Arc::new(state.finish()),
            Arc::new(error.finish()),
        ]);
        let batch = RecordBatch::try_new(schema(), columns).map_err(|e| Error::Batch {
            table: name.clone(),
            message: e.to_string(),
        })?;
        self.table = self
            .table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(CommitProperties::default().with_max_retries(20))
            .await
            .map_err(|source| Error::Delta {
                table: name,
                source,
            })?;
        Ok(())
    }
}
