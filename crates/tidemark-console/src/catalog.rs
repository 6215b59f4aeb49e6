//! `GET /console/api/catalog`: the schemas, tables and columns the signed-in user's
//! role reads, taken from the role's own catalog in tidemark-server (the one `\dt`
//! and `information_schema` list for the same user over psql): a table outside the
//! grants is not there to list, and a masked table shows the columns the role gets.

use axum::Json;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::datasource::TableType;
use serde::Serialize;
use tidemark_query::CATALOG;

use crate::auth::Reader;
use crate::ConsoleError;

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
fn sql_type(t: &DataType) -> String {
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

/// The role's catalog, sorted by schema and table.
pub(crate) async fn catalog(Reader(s): Reader) -> Result<Json<Catalog>, ConsoleError> {
    let ctx = s.direct.context();
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
            tables.push(Table {
                name: t,
                kind: if table.table_type() == TableType::View {
                    "view"
                } else {
                    "table"
                },
                columns,
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
