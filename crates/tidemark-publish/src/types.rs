//! The PostgreSQL type each lake column is published as.
//!
//! Decided from the column's MySQL type (what the lake records in `tidemark.schema`),
//! not from its Arrow type alone: DATETIME and TIMESTAMP are both stored as UTC
//! microseconds, but one is a wall-clock value (`timestamp`) and the other an
//! instant (`timestamptz`); JSON is stored as text but is `jsonb` at the target;
//! DECIMAL(65,30) is stored as exact text (Delta decimals stop at 38 digits) and is
//! `numeric(65,30)` at the target.

use deltalake::arrow::datatypes::{DataType, TimeUnit};
use tidemark_core::schema::ColumnSchema;
use tidemark_core::types::MySqlType;

/// A PostgreSQL column type tidemark writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    /// `smallint` (TINYINT, SMALLINT, YEAR).
    SmallInt,
    /// `integer`.
    Integer,
    /// `bigint`.
    BigInt,
    /// `numeric(p,s)`.
    Numeric {
        /// Precision.
        precision: u8,
        /// Scale.
        scale: u8,
    },
    /// `real` (FLOAT).
    Real,
    /// `double precision`.
    Double,
    /// `boolean` (BIT(1)).
    Boolean,
    /// `date`.
    Date,
    /// `timestamp` (DATETIME: the wall-clock value).
    Timestamp,
    /// `timestamptz` (TIMESTAMP, and tidemark's `_source_ts`, `_ingest_ts`).
    TimestampTz,
    /// `text` (CHAR, VARCHAR, TEXT, ENUM, SET, TIME as `[-]HHH:MM:SS[.ffffff]`).
    Text,
    /// `jsonb`.
    Jsonb,
    /// `bytea` (BINARY, BLOB, GEOMETRY as WKB).
    Bytea,
}

impl PgType {
    /// The type of a lake column.
    pub fn of(c: &ColumnSchema) -> Self {
        use MySqlType::*;
        match c.mysql_type() {
            TinyInt { .. } | SmallInt { unsigned: false } | Year => PgType::SmallInt,
            SmallInt { unsigned: true } | MediumInt { .. } | Int { unsigned: false } => {
                PgType::Integer
            }
            Int { unsigned: true } | BigInt { unsigned: false } => PgType::BigInt,
            BigInt { unsigned: true } | Bit(64) => PgType::Numeric {
                precision: 20,
                scale: 0,
            },
            Decimal { precision, scale } => PgType::Numeric { precision, scale },
            Float => PgType::Real,
            Double => PgType::Double,
            Bit(1) => PgType::Boolean,
            Bit(_) => PgType::BigInt,
            Date => PgType::Date,
            DateTime => PgType::Timestamp,
            Timestamp => PgType::TimestampTz,
            // TIME reaches ±838 hours, beyond PostgreSQL's `time`; its exact text is
            // what the lake stores.
            Time => PgType::Text,
            Text if c.data_type.eq_ignore_ascii_case("json") => PgType::Jsonb,
            Text => PgType::Text,
            Binary | Geometry => PgType::Bytea,
        }
    }

    /// The type as PostgreSQL's `format_type` spells it, so a column found at the
    /// target compares equal to the one tidemark would create.
    pub fn sql(self) -> String {
        match self {
            PgType::SmallInt => "smallint".into(),
            PgType::Integer => "integer".into(),
            PgType::BigInt => "bigint".into(),
            PgType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            PgType::Real => "real".into(),
            PgType::Double => "double precision".into(),
            PgType::Boolean => "boolean".into(),
            PgType::Date => "date".into(),
            PgType::Timestamp => "timestamp without time zone".into(),
            PgType::TimestampTz => "timestamp with time zone".into(),
            PgType::Text => "text".into(),
            PgType::Jsonb => "jsonb".into(),
            PgType::Bytea => "bytea".into(),
        }
    }

    /// The Arrow type the encoder takes for this column; the read plan casts to it,
    /// so the encoder sees one representation whatever the scan produced (string
    /// views, a narrower integer, a column an evolved log stores elsewhere).
    pub fn arrow(self) -> DataType {
        match self {
            PgType::SmallInt => DataType::Int16,
            PgType::Integer => DataType::Int32,
            PgType::BigInt => DataType::Int64,
            PgType::Numeric { precision, scale } if precision <= 38 => {
                DataType::Decimal128(precision, scale as i8)
            }
            // Wider than Arrow's decimals: the lake stores the exact text.
            PgType::Numeric { .. } => DataType::Utf8,
            PgType::Real => DataType::Float32,
            PgType::Double => DataType::Float64,
            PgType::Boolean => DataType::Boolean,
            PgType::Date => DataType::Date32,
            PgType::Timestamp | PgType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PgType::Text | PgType::Jsonb => DataType::Utf8,
            PgType::Bytea => DataType::Binary,
        }
    }
}

/// `name` as a PostgreSQL identifier: always quoted, so case, spaces and keywords
/// survive, and a quote in a name cannot end it.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str, p: Option<u64>, s: Option<u64>) -> ColumnSchema {
        ColumnSchema {
            name: "c".into(),
            ..ColumnSchema::source("c", data_type, column_type, p, s)
        }
    }

    #[test]
    fn mysql_types_map_exactly() {
        let cases = [
            (col("tinyint", "tinyint(4)", None, None), "smallint"),
            (col("int", "int(10) unsigned", None, None), "bigint"),
            (
                col("bigint", "bigint(20) unsigned", None, None),
                "numeric(20,0)",
            ),
            (
                col("decimal", "decimal(12,3)", Some(12), Some(3)),
                "numeric(12,3)",
            ),
            (
                col("decimal", "decimal(65,30)", Some(65), Some(30)),
                "numeric(65,30)",
            ),
            (col("bit", "bit(1)", Some(1), None), "boolean"),
            (
                col("datetime", "datetime(6)", None, None),
                "timestamp without time zone",
            ),
            (
                col("timestamp", "timestamp", None, None),
                "timestamp with time zone",
            ),
            (col("json", "json", None, None), "jsonb"),
            (col("longtext", "longtext", None, None), "text"),
            (col("blob", "blob", None, None), "bytea"),
            (col("date", "date", None, None), "date"),
            (col("double", "double", None, None), "double precision"),
            (col("float", "float", None, None), "real"),
        ];
        for (c, want) in cases {
            assert_eq!(PgType::of(&c).sql(), want, "{}", c.column_type);
        }
        // Wider than 38 digits travels as text and is still numeric at the target.
        assert_eq!(
            PgType::of(&col("decimal", "decimal(65,30)", Some(65), Some(30))).arrow(),
            DataType::Utf8
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("Order"), "\"Order\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("s", "t"), "\"s\".\"t\"");
    }
}
