//! The five tables: one column list drives both the DDL and the [`TableSchema`]s, so
//! the two cannot drift apart.

use std::sync::Arc;

use tidemark_core::names::{Naming, TableName};
use tidemark_core::schema::{ColumnSchema, TableSchema};

use crate::DATABASE;

/// One column as written in the DDL and as MariaDB's `information_schema.COLUMNS`
/// reports it back.
pub(crate) struct Col {
    pub name: &'static str,
    /// Type in the DDL, with NULL-ness.
    pub ddl: &'static str,
    /// `DATA_TYPE`.
    pub data_type: &'static str,
    /// `COLUMN_TYPE` (MariaDB keeps integer display widths).
    pub column_type: &'static str,
    /// `NUMERIC_PRECISION`.
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
}

const fn col(
    name: &'static str,
    ddl: &'static str,
    data_type: &'static str,
    column_type: &'static str,
    precision: Option<u64>,
    scale: Option<u64>,
) -> Col {
    Col {
        name,
        ddl,
        data_type,
        column_type,
        precision,
        scale,
    }
}

const fn bigint(name: &'static str) -> Col {
    col(
        name,
        "BIGINT NOT NULL",
        "bigint",
        "bigint(20)",
        Some(19),
        Some(0),
    )
}

const fn int(name: &'static str) -> Col {
    col(name, "INT NOT NULL", "int", "int(11)", Some(10), Some(0))
}

const fn money10(name: &'static str) -> Col {
    col(
        name,
        "DECIMAL(10,2) NOT NULL",
        "decimal",
        "decimal(10,2)",
        Some(10),
        Some(2),
    )
}

const fn money12(name: &'static str) -> Col {
    col(
        name,
        "DECIMAL(12,2) NOT NULL",
        "decimal",
        "decimal(12,2)",
        Some(12),
        Some(2),
    )
}

const fn datetime(name: &'static str) -> Col {
    col(
        name,
        "DATETIME(6) NOT NULL",
        "datetime",
        "datetime(6)",
        None,
        None,
    )
}

const UPDATED_AT: Col = datetime("updated_at");

/// A table: name, columns (key `id` first), secondary indexes.
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [Col],
    pub indexes: &'static [&'static str],
}

pub(crate) const DEFS: [Table; 5] = [
    Table {
        name: "customers",
        columns: &[
            bigint("id"),
            col(
                "name",
                "VARCHAR(100) NOT NULL",
                "varchar",
                "varchar(100)",
                None,
                None,
            ),
            col(
                "email",
                "VARCHAR(200) NOT NULL",
                "varchar",
                "varchar(200)",
                None,
                None,
            ),
            col("country", "CHAR(2) NOT NULL", "char", "char(2)", None, None),
            datetime("created_at"),
            UPDATED_AT,
        ],
        indexes: &["updated_at"],
    },
    Table {
        name: "products",
        columns: &[
            int("id"),
            col(
                "sku",
                "VARCHAR(32) NOT NULL",
                "varchar",
                "varchar(32)",
                None,
                None,
            ),
            col(
                "name",
                "VARCHAR(200) NOT NULL",
                "varchar",
                "varchar(200)",
                None,
                None,
            ),
            money10("unit_price"),
            col(
                "active",
                "TINYINT(1) NOT NULL",
                "tinyint",
                "tinyint(1)",
                Some(3),
                Some(0),
            ),
            UPDATED_AT,
        ],
        indexes: &["updated_at"],
    },
    Table {
        name: "invoices",
        columns: &[
            bigint("id"),
            bigint("customer_id"),
            col(
                "status",
                "ENUM('draft','open','paid','void') NOT NULL",
                "enum",
                "enum('draft','open','paid','void')",
                None,
                None,
            ),
            col(
                "currency",
                "CHAR(3) NOT NULL",
                "char",
                "char(3)",
                None,
                None,
            ),
            col(
                "issued_at",
                "DATETIME(6) NULL",
                "datetime",
                "datetime(6)",
                None,
                None,
            ),
            col("due_date", "DATE NULL", "date", "date", None, None),
            money12("total"),
            UPDATED_AT,
        ],
        indexes: &["updated_at", "customer_id"],
    },
    Table {
        name: "invoice_lines",
        columns: &[
            bigint("id"),
            bigint("invoice_id"),
            int("product_id"),
            int("quantity"),
            money10("unit_price"),
            money12("amount"),
            UPDATED_AT,
        ],
        indexes: &["updated_at", "invoice_id"],
    },
    Table {
        name: "payments",
        columns: &[
            bigint("id"),
            bigint("invoice_id"),
            money12("amount"),
            col(
                "method",
                "ENUM('card','transfer','cash') NOT NULL",
                "enum",
                "enum('card','transfer','cash')",
                None,
                None,
            ),
            datetime("paid_at"),
            UPDATED_AT,
        ],
        indexes: &["updated_at", "invoice_id"],
    },
];

/// `invoicing.table`, quoted.
pub(crate) fn qualified(table: usize) -> String {
    format!("`{DATABASE}`.`{}`", DEFS[table].name)
}

/// The DDL: the database, then one `CREATE TABLE IF NOT EXISTS` per table in
/// [`crate::TABLES`] order. Every table has primary key `id` and an index on
/// `updated_at` (the watermark batch pulls filter on); child tables also index their
/// parent id.
pub fn create_sql() -> Vec<String> {
    let mut out = vec![format!(
        "CREATE DATABASE IF NOT EXISTS `{DATABASE}` DEFAULT CHARACTER SET utf8mb4"
    )];
    for (i, t) in DEFS.iter().enumerate() {
        let mut lines: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("  `{}` {}", c.name, c.ddl))
            .collect();
        lines.push("  PRIMARY KEY (`id`)".to_string());
        for ix in t.indexes {
            lines.push(format!("  KEY `ix_{}_{ix}` (`{ix}`)", t.name));
        }
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            qualified(i),
            lines.join(",\n")
        ));
    }
    out
}

/// The tables' schemas in [`crate::TABLES`] order, as tidemark would discover them
/// from a MariaDB server after [`create_sql`].
pub fn schemas(naming: Naming) -> Vec<Arc<TableSchema>> {
    DEFS.iter()
        .map(|t| {
            let columns = t
                .columns
                .iter()
                .map(|c| ColumnSchema {
                    source_name: c.name.to_string(),
                    name: String::new(),
                    column_type: c.column_type.to_string(),
                    data_type: c.data_type.to_string(),
                    precision: c.precision,
                    scale: c.scale,
                    stored: Vec::new(),
                })
                .collect();
            let schema = TableSchema::new(
                TableName::new(DATABASE, t.name, naming),
                columns,
                &["id".to_string()],
                naming,
            )
            .expect("the demo tables use only mappable types and lower snake_case names");
            Arc::new(schema)
        })
        .collect()
}

/// `INSERT` of a full row, columns in order.
pub(crate) fn insert_sql(table: usize) -> String {
    let t = &DEFS[table];
    let cols: Vec<String> = t.columns.iter().map(|c| format!("`{}`", c.name)).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        qualified(table),
        cols.join(", ")
    )
}

/// `UPDATE` of every non-key column by id; parameters are the row without its first
/// value, then the id.
pub(crate) fn update_sql(table: usize) -> String {
    let t = &DEFS[table];
    let sets: Vec<String> = t.columns[1..]
        .iter()
        .map(|c| format!("`{}` = ?", c.name))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE `id` = ?",
        qualified(table),
        sets.join(", ")
    )
}

/// `DELETE` by id.
pub(crate) fn delete_sql(table: usize) -> String {
    format!("DELETE FROM {} WHERE `id` = ?", qualified(table))
}
