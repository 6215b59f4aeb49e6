//! A source table's shape and the Arrow schemas of its current and history tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::names::{Naming, TableName};
use crate::types::{timestamp_type, MySqlType};
use crate::{Error, Result};

/// UTC instant the version landed in the lake.
pub const INGEST_TS: &str = "_ingest_ts";
/// UTC commit instant at the source, else extraction time.
pub const SOURCE_TS: &str = "_source_ts";
/// `r` snapshot read, `c` insert, `u` update; `d` only in the stored history log.
pub const OP: &str = "_op";
/// Validity start (history).
pub const VALID_FROM: &str = "_valid_from";
/// Validity end, exclusive; NULL while current (history, computed on read).
pub const VALID_TO: &str = "_valid_to";
/// `_valid_to IS NULL` (history, computed on read).
pub const IS_CURRENT: &str = "_is_current";
/// Where the change came from (history).
pub const SOURCE_POS: &str = "_source_pos";
/// Order of changes to one key within one source instant (stored, not shown).
pub const SEQ: &str = "_seq";
/// Closed history only: the merge-on-read mark of the compaction that closed the
/// version (readers ignore versions closed past the current table's mark).
pub const CLOSED_MARK: &str = "_closed_mark";

/// Column names tidemark adds; a source column may not take one of them.
pub const RESERVED: [&str; 9] = [
    INGEST_TS,
    SOURCE_TS,
    OP,
    VALID_FROM,
    VALID_TO,
    IS_CURRENT,
    SOURCE_POS,
    SEQ,
    CLOSED_MARK,
];

/// One source column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// Name at the source.
    pub source_name: String,
    /// Name in SQL and in the Delta table.
    pub name: String,
    /// Type as MySQL spells it (`decimal(10,2) unsigned`), for messages and docs.
    pub column_type: String,
    /// `DATA_TYPE` as information_schema reports it (`decimal`); kept with the other
    /// mapping inputs so a stored schema re-derives the same Arrow type.
    pub data_type: String,
    /// NUMERIC_PRECISION (or BIT width).
    pub precision: Option<u64>,
    /// NUMERIC_SCALE.
    pub scale: Option<u64>,
    /// Where the column's values are stored in the history log after schema changes
    /// (see [`crate::evolve`]): the columns of the log that hold them, newest first.
    /// Empty (the usual case) means the column of the same name. Rows are written to
    /// the first; a read takes the first non-NULL of all of them, cast to the
    /// column's type, which is exact because every row has at most one non-NULL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stored: Vec<String>,
}

impl ColumnSchema {
    /// A source column as `information_schema` describes it; its SQL name is given
    /// when a [`TableSchema`] is built from it.
    pub fn source(
        source_name: &str,
        data_type: &str,
        column_type: &str,
        precision: Option<u64>,
        scale: Option<u64>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            precision,
            scale,
            ..Self::default()
        }
    }

    /// The mapped MySQL type (validated when the schema was built).
    pub fn mysql_type(&self) -> MySqlType {
        MySqlType::from_information_schema(
            &self.data_type,
            &self.column_type,
            self.precision,
            self.scale,
        )
        .expect("validated in TableSchema::new")
    }

    /// The history-log columns holding this column's values, newest first.
    pub fn stored_names(&self) -> Vec<&str> {
        if self.stored.is_empty() {
            vec![self.name.as_str()]
        } else {
            self.stored.iter().map(String::as_str).collect()
        }
    }

    /// The history-log column new rows are written to.
    pub fn write_name(&self) -> &str {
        self.stored
            .first()
            .map_or(self.name.as_str(), String::as_str)
    }

    /// Same definition (names and type), whatever the storage.
    pub fn same_definition(&self, other: &Self) -> bool {
        (
            &self.source_name,
            &self.name,
            &self.column_type,
            &self.data_type,
            self.precision,
            self.scale,
        ) == (
            &other.source_name,
            &other.name,
            &other.column_type,
            &other.data_type,
            other.precision,
            other.scale,
        )
    }
}

/// A source table: names, columns, key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Source and SQL names.
    pub name: TableName,
    /// Columns in source order.
    pub columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
    /// Columns dropped at the source: their values before the drop stay in the history
    /// log, and the history view still shows them (NULL after the drop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<ColumnSchema>,
}

impl TableSchema {
    /// Build and validate: every type mappable, column names unique after naming,
    /// no column named like one tidemark adds, a non-empty key.
    pub fn new(
        name: TableName,
        mut columns: Vec<ColumnSchema>,
        key_columns: &[String],
        naming: Naming,
    ) -> Result<Self> {
        let table = name.source();
        let mut seen = BTreeMap::new();
        for c in &mut columns {
            if MySqlType::from_information_schema(
                &c.data_type,
                &c.column_type,
                c.precision,
                c.scale,
            )
            .is_none()
            {
                return Err(Error::UnsupportedType {
                    table: table.clone(),
                    column: c.source_name.clone(),
                    mysql_type: c.column_type.clone(),
                });
            }
            c.name = naming.apply(&c.source_name);
            if RESERVED.contains(&c.name.as_str()) {
                return Err(Error::NameCollision(format!(
                    "table {table}: column {} collides with the column tidemark adds ({}); rename it at the source or exclude the table",
                    c.source_name, c.name
                )));
            }
            if let Some(other) = seen.insert(c.name.clone(), c.source_name.clone()) {
                return Err(Error::NameCollision(format!(
                    "table {table}: columns {other} and {} both become {}; set naming = \"preserve\" on the source",
                    c.source_name, c.name
                )));
            }
        }
        let mut key = Vec::new();
        for k in key_columns {
            let i = columns
                .iter()
                .position(|c| c.source_name.eq_ignore_ascii_case(k))
                .ok_or_else(|| Error::Config {
                    path: "<config>".into(),
                    message: format!("table {table}: primary_key names column {k}, which the table does not have"),
                })?;
            key.push(i);
        }
        if key.is_empty() {
            return Err(Error::Config {
                path: "<config>".into(),
                message: format!(
                    "table {table} has no primary key; tidemark needs one to merge changes. Add one at the source, or name the key columns in the config:\n  [sources.<name>.tables.\"{table}\"]\n  primary_key = [\"id\"]\nor exclude the table (exclude = [\"{table}\"])"
                ),
            });
        }
        Ok(Self {
            name,
            columns,
            key,
            dropped: Vec::new(),
        })
    }

    /// Same definition as `other` (names, column types, key), whatever the storage:
    /// what the source has now against what was landed.
    pub fn same_definition(&self, other: &Self) -> bool {
        self.name == other.name
            && self.key == other.key
            && self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.same_definition(b))
    }

    /// True once a schema change moved a column's storage or dropped one: reads of
    /// the history log then go through a projection (see tidemark-lake's `mor`).
    pub fn is_evolved(&self) -> bool {
        !self.dropped.is_empty() || self.columns.iter().any(|c| !c.stored.is_empty())
    }

    /// Dropped columns the history view shows: those whose name no live column took.
    pub fn shown_dropped(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.dropped
            .iter()
            .filter(|d| !self.columns.iter().any(|c| c.name == d.name))
    }

    /// Arrow fields of the source columns. All nullable: an invalid date in a NOT NULL
    /// column still lands, as NULL, and a later ADD COLUMN has no value for old rows.
    pub fn source_fields(&self) -> Vec<Field> {
        self.columns
            .iter()
            .map(|c| Field::new(&c.name, c.mysql_type().arrow_type(), true))
            .collect()
    }

    /// Schema of a [`crate::change::ChangeBatch`]: source columns, then `_op`,
    /// `_source_ts`, `_source_pos`, `_seq`.
    pub fn change_schema(&self) -> SchemaRef {
        let mut f = self.source_fields();
        f.push(Field::new(OP, DataType::Utf8, false));
        f.push(Field::new(SOURCE_TS, timestamp_type(), false));
        f.push(Field::new(SOURCE_POS, DataType::Utf8, false));
        f.push(Field::new(SEQ, DataType::Int64, false));
        Arc::new(Schema::new(f))
    }

    /// Stored current table: source columns, `_ingest_ts`, `_source_ts`, `_op`,
    /// `_source_pos`, `_seq`. The last two are not shown by SQL's `schema.table`; a
    /// compaction needs them when it closes the row into the closed history (the
    /// row's `_valid_from` is its `_source_ts`). Tables landed before they existed
    /// lack them until their first compaction.
    pub fn current_schema(&self) -> SchemaRef {
        let mut f = self.source_fields();
        f.push(Field::new(INGEST_TS, timestamp_type(), true));
        f.push(Field::new(SOURCE_TS, timestamp_type(), true));
        f.push(Field::new(OP, DataType::Utf8, true));
        f.push(Field::new(SOURCE_POS, DataType::Utf8, true));
        f.push(Field::new(SEQ, DataType::Int64, true));
        Arc::new(Schema::new(f))
    }

    /// Stored history log: source columns, `_ingest_ts`, `_source_ts`, `_op`,
    /// `_valid_from`, `_source_pos`, `_seq`. `_valid_to` and `_is_current` are
    /// computed on read (see tidemark-lake).
    pub fn history_schema(&self) -> SchemaRef {
        let mut f = self.source_fields();
        f.push(Field::new(INGEST_TS, timestamp_type(), true));
        f.push(Field::new(SOURCE_TS, timestamp_type(), true));
        f.push(Field::new(OP, DataType::Utf8, true));
        f.push(Field::new(VALID_FROM, timestamp_type(), true));
        f.push(Field::new(SOURCE_POS, DataType::Utf8, true));
        f.push(Field::new(SEQ, DataType::Int64, true));
        Arc::new(Schema::new(f))
    }

    /// The history-log columns new rows are written to, then tidemark's: what a log
    /// must have (it may have more: where older rows' values are).
    pub fn history_write_schema(&self) -> SchemaRef {
        let full = self.history_schema();
        let mut f: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.write_name(), c.mysql_type().arrow_type(), true))
            .collect();
        f.extend(
            full.fields()[self.columns.len()..]
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        Arc::new(Schema::new(f))
    }

    /// SQL names of the key columns.
    pub fn key_names(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect()
    }
}
