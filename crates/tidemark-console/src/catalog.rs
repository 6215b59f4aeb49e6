//! `GET /console/api/catalog`: the schemas, tables and columns the signed-in user's
//! role reads, taken from the role's own catalog in tidemark-server (the one `\dt`
//! and `information_schema` list for the same user over psql): a table outside the
//! grants is not there to list, and a masked table shows the columns the role gets.
//!
//! Each table of data carries what its Delta log's statistics say (rows, changes in
//! its history, how far back it reaches: [`tidemark_query::Engine::table_stats`]),
//! read without reading a row, so the listing stays fast on large tables. Not for a
//! role that reads the table through a row filter: the statistics count rows it does
//! not see (its table page counts what it sees).

use axum::extract::State;
use axum::Json;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::datasource::TableType;
use serde::Serialize;
use tidemark_query::{Form, Resolved, CATALOG};

use crate::auth::Reader;
use crate::{Console, ConsoleError};

/// Schemas of the catalog that are not the warehouse's tables.
const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// The catalog as one role sees it.
#[derive(Debug, Serialize)]
pub struct Catalog {
    schemas: Vec<Schema>,
}

#[derive(Debug, Serialize)]
struct Schema {
    name: String,
    tables: Vec<Table>,
}

#[derive(Debug, Serialize)]
struct Table {
    name: String,
    /// `table` or `view`.
    kind: &'static str,
    columns: Vec<Column>,
    /// Rows now, from the statistics (see [`tidemark_query::TableStats`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    /// `rows` is exact; otherwise it is the rows at the last compaction.
    rows_exact: bool,
    /// Changes in the table's history (its history log's rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<u64>,
    /// How far back its history reaches (`AS OF` before this finds nothing), ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    history_from: Option<String>,
}

#[derive(Debug, Serialize)]
struct Column {
    name: String,
    /// The PostgreSQL type name clients see.
    r#type: String,
    nullable: bool,
}

/// The type name a PostgreSQL client is told, for the types tidemark lands; others
/// as Arrow names them.
pub(crate) fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::Dictionary(_, v) => sql_type(v),
        other => other.to_string(),
    }
}

/// An instant in micros since 1970 as ISO 8601 (UTC, milliseconds).
fn iso_micros(us: i64) -> Option<String> {
    let t = arrow::temporal_conversions::timestamp_us_to_datetime(us)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The role's catalog, sorted by schema and table.
pub(crate) async fn catalog(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Catalog>, ConsoleError> {
    let ctx = s.direct.context();
    let engine = console.inner.gateway.engine();
    let role = s.direct.role();
    let Some(catalog) = ctx.catalog(CATALOG) else {
        return Ok(Json(Catalog { schemas: vec![] }));
    };
    let mut names = catalog.schema_names();
    names.retain(|n| !SYSTEM_SCHEMAS.contains(&n.as_str()));
    names.sort();
    let mut schemas = Vec::new();
    for name in names {
        let Some(provider) = catalog.schema(&name) else {
            continue;
        };
        let mut table_names = provider.table_names();
        table_names.sort();
        let mut tables = Vec::new();
        for t in table_names {
            // Looked up as a query would (the role's view of it: masked columns keep
            // their names and types); a table that went away meanwhile is skipped.
            let Ok(Some(table)) = provider.table(&t).await else {
                continue;
            };
            let columns = table
                .schema()
                .fields()
                .iter()
                .map(|f| Column {
                    name: f.name().clone(),
                    r#type: sql_type(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect();
            // The statistics of the data this name is: the current rows of a landed
            // table or of one a job writes, unless the role filters its rows.
            let stats = match engine.resolve(&name, &t) {
                Some(Resolved::Source {
                    schema,
                    table,
                    form: Form::Current,
                }) if !role.filters_rows(&schema, &table) => engine.table_stats(&schema, &table),
                _ => None,
            }
            .unwrap_or_default();
            tables.push(Table {
                kind: if table.table_type() == TableType::View {
                    "view"
                } else {
                    "table"
                },
                name: t,
                columns,
                rows: stats.rows,
                rows_exact: stats.rows_exact,
                changes: stats.changes,
                history_from: stats.oldest_us.and_then(iso_micros),
            });
        }
        if !tables.is_empty() {
            schemas.push(Schema { name, tables });
        }
    }
    Ok(Json(Catalog { schemas }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::TimeUnit;

    #[test]
    fn type_names_are_postgresql_s() {
        assert_eq!(sql_type(&DataType::Int64), "bigint");
        assert_eq!(sql_type(&DataType::Decimal128(12, 2)), "numeric(12,2)");
        assert_eq!(
            sql_type(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            )),
            "timestamptz"
        );
        assert_eq!(sql_type(&DataType::Utf8View), "text");
    }
}
