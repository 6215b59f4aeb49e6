//! `tidemark.verifications`: one row per table per `tidemark verify` run, so an
//! auditor can query over SQL what was proven equal to the source, at which source
//! position, and what differed.
//!
//! A plain Delta table at `<warehouse>/tidemark/verifications/`, appended once per
//! run (blind appends: runs may overlap).

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::DeltaTable;

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::Result;

/// SQL name of the table in [`OWN_SCHEMA`].
pub const VERIFICATIONS: &str = "verifications";

/// One table's verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerificationRecord {
    /// The run.
    pub run_id: String,
    /// `db.table` at the source.
    pub table_name: String,
    /// `clean`, `differences` or `error`.
    pub status: String,
    /// `file:pos` the comparison holds for.
    pub source_position: Option<String>,
    /// The GTID position there.
    pub gtid: Option<String>,
    /// When the source read was taken (µs, UTC).
    pub source_instant_us: Option<i64>,
    /// Rows at the source.
    pub rows_source: i64,
    /// Rows in the lake at that position.
    pub rows_lake: i64,
    /// Keys the lake lacks.
    pub missing_in_lake: i64,
    /// Keys only the lake has.
    pub extra_in_lake: i64,
    /// Keys whose values differ.
    pub different: i64,
    /// History violations.
    pub history_violations: i64,
    /// The run's start and end (µs, UTC).
    pub started_us: i64,
    /// See `started_us`.
    pub finished_us: i64,
    /// The table's whole report, JSON.
    pub report: String,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        s("run_id", false),
        s("table_name", false),
        s("status", false),
        s("source_position", true),
        s("gtid", true),
        Field::new("source_instant", ts.clone(), true),
        i("rows_source"),
        i("rows_lake"),
        i("missing_in_lake"),
        i("extra_in_lake"),
        i("different"),
        i("history_violations"),
        Field::new("started_at", ts.clone(), false),
        Field::new("finished_at", ts, false),
        s("report", false),
    ]))
}

/// Append `records` in one commit, creating the table on first use.
pub async fn record_verifications(
    wh: &Warehouse,
    records: &[VerificationRecord],
) -> Result<DeltaTable> {
    let table = own::open_or_create(
        wh,
        VERIFICATIONS,
        schema(),
        "tidemark: one row per table per `tidemark verify` run",
    )
    .await?;
    let name = format!("{OWN_SCHEMA}.{VERIFICATIONS}");
    let r = records;
    let columns = vec![
        own::texts(r, |r| Some(&r.run_id)),
        own::texts(r, |r| Some(&r.table_name)),
        own::texts(r, |r| Some(&r.status)),
        own::texts(r, |r| r.source_position.as_deref()),
        own::texts(r, |r| r.gtid.as_deref()),
        own::instants(r, |r| r.source_instant_us),
        own::ints(r, |r| r.rows_source),
        own::ints(r, |r| r.rows_lake),
        own::ints(r, |r| r.missing_in_lake),
        own::ints(r, |r| r.extra_in_lake),
        own::ints(r, |r| r.different),
        own::ints(r, |r| r.history_violations),
        own::instants(r, |r| Some(r.started_us)),
        own::instants(r, |r| Some(r.finished_us)),
        own::texts(r, |r| Some(&r.report)),
    ];
    own::append(table, name, schema(), columns).await
}

/// The table, if any run recorded one.
pub async fn existing(wh: &Warehouse) -> Result<Option<DeltaTable>> {
    let (t, exists) = wh.delta_table(&own::url(wh, VERIFICATIONS)).await?;
    Ok(exists.then_some(t))
}
