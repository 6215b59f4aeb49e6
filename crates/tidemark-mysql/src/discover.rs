//! Which tables a source has, their columns and keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use tidemark_core::names::{check_table_collisions, TableName};
use tidemark_core::position::BinlogPosition;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tracing::warn;

use crate::connect::Source;
use crate::Result;

/// Databases never read: the server's own.
const SYSTEM_DBS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// A selected table and an estimate of its rows (for progress bars).
#[derive(Debug, Clone)]
pub struct DiscoveredTable {
    /// Its schema.
    pub schema: Arc<TableSchema>,
    /// `information_schema.TABLES.TABLE_ROWS`: an estimate on InnoDB.
    pub estimated_rows: u64,
}

type ColumnRow = (
    String,
    String,
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
);

/// Discover the selected tables. Tables with an unmappable type or no key are errors
/// that name the table and say how to exclude it or name its key.
pub async fn discover(source: &Source) -> Result<Vec<DiscoveredTable>> {
    let (tables, unusable) = discover_each(source).await?;
    match unusable.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(tables),
    }
}

/// [`discover`], with the selected tables that cannot be captured (no primary key and
/// none configured, a column tidemark cannot map) apart, each with why: a long-running
/// capture parks those and goes on with the others.
pub async fn discover_each(
    source: &Source,
) -> Result<(Vec<DiscoveredTable>, Vec<(String, crate::Error)>)> {
    discover_in(source, None).await
}

/// One selected table's definition as the server has it now; `None` when it does
/// not exist (any more) or is not selected. Errors concern that table only.
pub async fn describe(source: &Source, db: &str, table: &str) -> Result<Option<DiscoveredTable>> {
    let (mut tables, unusable) = discover_in(source, Some((db, table))).await?;
    match unusable.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(tables.pop()),
    }
}

type Discovered = (Vec<DiscoveredTable>, Vec<(String, crate::Error)>);

async fn discover_in(source: &Source, only: Option<(&str, &str)>) -> Result<Discovered> {
    let cfg = &source.config;
    let filter = cfg.table_filter()?;
    let mut conn = source.conn().await?;
    let tables: Vec<(String, String, Option<u64>)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(|e| source.query_error("information_schema.TABLES", e))?;
    // MySQL hides what a user may not read, so a configured database with no visible
    // table is either missing or not granted; say both.
    for db in cfg.databases.iter().filter(|_| only.is_none()) {
        if !tables.iter().any(|(d, _, _)| d == db) {
            return Err(crate::Error::MissingPrivilege {
                source_name: source.name.clone(),
                what: format!(
                    "database {db} has no table that user {} can see: it does not exist, is empty, or the user may not read it",
                    source.user()
                ),
                grant: format!("GRANT SELECT ON `{db}`.* TO '{}'@'%';", source.user()),
            });
        }
    }
    let selected: Vec<_> = tables
        .into_iter()
        .filter(|(db, t, _)| {
            !SYSTEM_DBS.contains(&db.to_ascii_lowercase().as_str())
                && (cfg.databases.is_empty() || cfg.databases.iter().any(|d| d == db))
                && filter.matches(db, t)
                && only.is_none_or(|(od, ot)| od == db && ot == t)
        })
        .collect();
    if selected.is_empty() && only.is_none() {
        warn!(source = %source.name, "no tables selected: check databases/include/exclude, and that the user may see the tables");
    }

    let columns: Vec<ColumnRow> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, \
                    CAST(NUMERIC_PRECISION AS UNSIGNED), CAST(NUMERIC_SCALE AS UNSIGNED) \
             FROM information_schema.COLUMNS ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        )
        .await
        .map_err(|e| source.query_error("information_schema.COLUMNS", e))?;
    let mut by_table: BTreeMap<(String, String), Vec<ColumnSchema>> = BTreeMap::new();
    for (db, t, name, data_type, column_type, precision, scale) in columns {
        by_table.entry((db, t)).or_default().push(ColumnSchema {
            source_name: name,
            name: String::new(),
            column_type,
            data_type,
            precision,
            scale,
            stored: Vec::new(),
        });
    }
    let keys: Vec<(String, String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        )
        .await
        .map_err(|e| source.query_error("information_schema.KEY_COLUMN_USAGE", e))?;
    let mut key_by_table: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (db, t, c) in keys {
        key_by_table.entry((db, t)).or_default().push(c);
    }

    let mut out = Vec::new();
    let mut unusable = Vec::new();
    for (db, t, rows) in selected {
        let id = (db.clone(), t.clone());
        let opts = cfg.table_options(&db, &t);
        let key = opts
            .primary_key
            .clone()
            .or_else(|| key_by_table.get(&id).cloned())
            .unwrap_or_default();
        let cols = by_table.remove(&id).unwrap_or_default();
        match TableSchema::new(TableName::new(&db, &t, cfg.naming), cols, &key, cfg.naming) {
            Ok(schema) => out.push(DiscoveredTable {
                schema: Arc::new(schema),
                estimated_rows: rows.unwrap_or(0),
            }),
            Err(e) => unusable.push((format!("{db}.{t}"), e.into())),
        }
    }
    check_table_collisions(out.iter().map(|t| &t.schema.name))?;
    Ok((out, unusable))
}

/// Where the binlog is now, or `None` when binary logging is off or the user may not
/// ask (then the snapshot still lands, but change capture cannot start from it; the
/// caller warns).
pub async fn binlog_position(
    source: &Source,
    conn: &mut mysql_async::Conn,
) -> Result<Option<BinlogPosition>> {
    // MySQL 8.4 renamed SHOW MASTER STATUS; MariaDB and MySQL 8.0 keep the old name.
    let mut row: Option<mysql_async::Row> = None;
    for stmt in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        match conn.query_first(stmt).await {
            Ok(r) => {
                row = r;
                break;
            }
            Err(mysql_async::Error::Server(s)) if s.code == 1064 => continue,
            Err(mysql_async::Error::Server(s)) if matches!(s.code, 1227 | 1142) => {
                warn!(source = %source.name, "cannot read the binlog position ({}); the snapshot will land, but change capture needs: GRANT REPLICATION CLIENT ON *.* TO '{}'@'%'", s.message, source.user());
                return Ok(None);
            }
            Err(e) => return Err(source.query_error("-", e)),
        }
    }
    let Some(row) = row else {
        return Ok(None);
    };
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    let (Some(file), Some(pos)) = (file, pos) else {
        return Ok(None);
    };
    let gtid = if source.is_mariadb() {
        gtid_at(source, conn, &file, pos).await?
    } else {
        // MySQL: Executed_Gtid_Set is the fifth column.
        row.get::<Option<String>, _>(4)
            .flatten()
            .map(|g| g.replace('\n', ""))
            .filter(|g| !g.is_empty())
    };
    Ok(Some(BinlogPosition {
        file,
        pos,
        gtid,
        server_id: server_id(source, conn).await?,
    }))
}

/// `@@server_id` of the server `conn` reaches.
pub async fn server_id(source: &Source, conn: &mut mysql_async::Conn) -> Result<Option<u32>> {
    conn.query_first::<u32, _>("SELECT @@server_id")
        .await
        .map_err(|e| source.query_error("-", e))
}

/// MariaDB: the GTID position matching a binlog file/offset.
pub async fn gtid_at(
    source: &Source,
    conn: &mut mysql_async::Conn,
    file: &str,
    pos: u64,
) -> Result<Option<String>> {
    let g: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .map_err(|e| source.query_error("-", e))?;
    Ok(g.flatten().filter(|g| !g.is_empty()))
}
