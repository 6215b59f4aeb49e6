//! The web console's saved charts and dashboards: `tidemark.console_charts` and
//! `tidemark.console_dashboards`, plain Delta tables of tidemark's own schema.
//!
//! Append-only: every save (and every delete) is a new row in its own commit, so a
//! chart's or a dashboard's past definitions stay readable (`saved_at`, and the Delta
//! versions: `VERSION AS OF`), and the newest row of an id is what it is now. Blind
//! appends, like the other own tables: two saves of one id at once both land, and
//! the later `saved_at` wins.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use deltalake::datafusion::prelude::SessionContext;

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL name of the saved charts in [`OWN_SCHEMA`].
pub const CHARTS: &str = "console_charts";
/// SQL name of the saved dashboards in [`OWN_SCHEMA`].
pub const DASHBOARDS: &str = "console_dashboards";

/// One saved revision of a chart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChartRow {
    /// Stable id (random, chosen at first save).
    pub id: String,
    /// What it is called.
    pub name: String,
    /// The query it plots.
    pub sql: String,
    /// `line`, `bar` or `area`.
    pub kind: String,
    /// The result column on the x axis.
    pub x: String,
    /// The result columns drawn as series, JSON (`["total","paid"]`).
    pub y: String,
    /// Who created it (may edit and delete it, with admins).
    pub owner: String,
    /// Who saved this revision.
    pub saved_by: String,
    /// When (µs, UTC).
    pub saved_at_us: i64,
    /// This revision deletes the chart.
    pub deleted: bool,
}

/// One saved revision of a dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardRow {
    /// Stable id (random, chosen at first save).
    pub id: String,
    /// What it is called.
    pub name: String,
    /// Its cards in grid order: chart ids, JSON (`["c1","c2"]`).
    pub charts: String,
    /// Who created it.
    pub owner: String,
    /// Who saved this revision.
    pub saved_by: String,
    /// When (µs, UTC).
    pub saved_at_us: i64,
    /// This revision deletes the dashboard.
    pub deleted: bool,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn chart_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        s("id"),
        s("name"),
        s("sql"),
        s("kind"),
        s("x"),
        s("y"),
        s("owner"),
        s("saved_by"),
        Field::new("saved_at", ts(), false),
        Field::new("deleted", DataType::Boolean, false),
    ]))
}

fn dashboard_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        s("id"),
        s("name"),
        s("charts"),
        s("owner"),
        s("saved_by"),
        Field::new("saved_at", ts(), false),
        Field::new("deleted", DataType::Boolean, false),
    ]))
}

fn bools<R>(rows: &[R], f: impl Fn(&R) -> bool) -> Arc<dyn Array> {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
}

/// Append one revision of a chart, in its own commit.
pub async fn save_chart(wh: &Warehouse, row: &ChartRow) -> Result<()> {
    let table = own::open_or_create(
        wh,
        CHARTS,
        chart_schema(),
        "tidemark: the web console's saved charts, one row per save",
    )
    .await?;
    let r = std::slice::from_ref(row);
    let columns = vec![
        own::texts(r, |r| Some(&r.id)),
        own::texts(r, |r| Some(&r.name)),
        own::texts(r, |r| Some(&r.sql)),
        own::texts(r, |r| Some(&r.kind)),
        own::texts(r, |r| Some(&r.x)),
        own::texts(r, |r| Some(&r.y)),
        own::texts(r, |r| Some(&r.owner)),
        own::texts(r, |r| Some(&r.saved_by)),
        own::instants(r, |r| Some(r.saved_at_us)),
        bools(r, |r| r.deleted),
    ];
    own::append(
        table,
        format!("{OWN_SCHEMA}.{CHARTS}"),
        chart_schema(),
        columns,
    )
    .await?;
    Ok(())
}

/// Append one revision of a dashboard, in its own commit.
pub async fn save_dashboard(wh: &Warehouse, row: &DashboardRow) -> Result<()> {
    let table = own::open_or_create(
        wh,
        DASHBOARDS,
        dashboard_schema(),
        "tidemark: the web console's saved dashboards, one row per save",
    )
    .await?;
    let r = std::slice::from_ref(row);
    let columns = vec![
        own::texts(r, |r| Some(&r.id)),
        own::texts(r, |r| Some(&r.name)),
        own::texts(r, |r| Some(&r.charts)),
        own::texts(r, |r| Some(&r.owner)),
        own::texts(r, |r| Some(&r.saved_by)),
        own::instants(r, |r| Some(r.saved_at_us)),
        bools(r, |r| r.deleted),
    ];
    own::append(
        table,
        format!("{OWN_SCHEMA}.{DASHBOARDS}"),
        dashboard_schema(),
        columns,
    )
    .await?;
    Ok(())
}

/// Every row of own table `name` (small: one row per save), or none if it does not
/// exist yet.
async fn read_all(wh: &Warehouse, name: &str) -> Result<Vec<RecordBatch>> {
    let Some(table) = own::existing(wh, name).await? else {
        return Ok(vec![]);
    };
    let full = format!("{OWN_SCHEMA}.{name}");
    let provider = table.table_provider().await.map_err(|e| Error::Batch {
        table: full.clone(),
        message: e.to_string(),
    })?;
    let ctx = SessionContext::new();
    let batches = async { ctx.read_table(provider)?.collect().await }
        .await
        .map_err(|e| Error::Batch {
            table: full,
            message: e.to_string(),
        })?;
    Ok(batches)
}

fn text(b: &RecordBatch, col: &str, row: usize) -> String {
    b.column_by_name(col)
        .and_then(|c| c.as_string_opt::<i32>().map(|a| a.value(row).to_string()))
        .or_else(|| {
            b.column_by_name(col)
                .and_then(|c| c.as_string_view_opt().map(|a| a.value(row).to_string()))
        })
        .unwrap_or_default()
}

fn instant(b: &RecordBatch, row: usize) -> i64 {
    b.column_by_name("saved_at")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .map_or(0, |a| a.value(row))
}

fn deleted(b: &RecordBatch, row: usize) -> bool {
    b.column_by_name("deleted")
        .and_then(|c| c.as_boolean_opt())
        .is_some_and(|a| a.value(row))
}

/// Every saved revision of every chart, oldest first.
pub async fn chart_revisions(wh: &Warehouse) -> Result<Vec<ChartRow>> {
    let mut out = Vec::new();
    for b in read_all(wh, CHARTS).await? {
        for i in 0..b.num_rows() {
            out.push(ChartRow {
                id: text(&b, "id", i),
                name: text(&b, "name", i),
                sql: text(&b, "sql", i),
                kind: text(&b, "kind", i),
                x: text(&b, "x", i),
                y: text(&b, "y", i),
                owner: text(&b, "owner", i),
                saved_by: text(&b, "saved_by", i),
                saved_at_us: instant(&b, i),
                deleted: deleted(&b, i),
            });
        }
    }
    out.sort_by_key(|r| r.saved_at_us);
    Ok(out)
}

/// Every saved revision of every dashboard, oldest first.
pub async fn dashboard_revisions(wh: &Warehouse) -> Result<Vec<DashboardRow>> {
    let mut out = Vec::new();
    for b in read_all(wh, DASHBOARDS).await? {
        for i in 0..b.num_rows() {
            out.push(DashboardRow {
                id: text(&b, "id", i),
                name: text(&b, "name", i),
                charts: text(&b, "charts", i),
                owner: text(&b, "owner", i),
                saved_by: text(&b, "saved_by", i),
                saved_at_us: instant(&b, i),
                deleted: deleted(&b, i),
            });
        }
    }
    out.sort_by_key(|r| r.saved_at_us);
    Ok(out)
}

/// The saved charts' or dashboards' tables, if any save made them (for the SQL
/// catalog: admins read them, past revisions included).
pub async fn existing(wh: &Warehouse, name: &str) -> Result<Option<deltalake::DeltaTable>> {
    own::existing(wh, name).await
}
