//! Table definitions from the messages' own schemas: a Kafka Connect field schema
//! (Debezium's JSON converter with schemas on, or the `connect.*` properties of its
//! Avro schemas) turned into the column `information_schema` would describe.
//!
//! Both formats describe a field the same way (a physical type, a logical name,
//! string parameters, a default), so both decoders fill a [`ConnectField`] and this
//! module alone decides what MySQL type it is. The rules:
//!
//! * With the connector's `column.propagate.source.type` on (recommended), each field
//!   carries `__debezium.source.column.type` / `.length` / `.scale`: the source's own
//!   type, so the table lands exactly as binlog capture would land it.
//! * Otherwise the logical name decides where there is one (`io.debezium.time.*`,
//!   Connect's `Decimal` with its precision and scale, `Json`, `Enum`, `EnumSet`,
//!   `Bits`, geometry), and the physical type elsewhere, as the narrowest MySQL type
//!   that holds every value of it: Debezium sends TINYINT and SMALLINT both as
//!   `int16`, which lands as `smallint`. Values are the same; only the Arrow width
//!   can differ from a binlog capture of the same table.

use crate::event::{ColumnDef, Datum, Definition};

/// One field of a row image's schema, as either format describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectField {
    /// The field (column) name.
    pub name: String,
    /// The Connect physical type: `int8`…`int64`, `float32`, `float64`, `boolean`,
    /// `string`, `bytes`, `struct`, `array`, `map`.
    pub ty: String,
    /// The logical name (`io.debezium.time.MicroTimestamp`), empty when none.
    pub logical: String,
    /// The schema's parameters (`scale`, `connect.decimal.precision`, `allowed`,
    /// `length`, `__debezium.source.column.type`, …).
    pub parameters: Vec<(String, String)>,
    /// The default value, decoded as the field's values are.
    pub default: Option<Datum>,
}

impl ConnectField {
    fn param(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn param_u64(&self, name: &str) -> Option<u64> {
        self.param(name).and_then(|v| v.trim().parse().ok())
    }
}

/// The definition of a table whose row images have `fields`, keyed by `key` (the
/// message key's field names). `Err` names the field whose type has no mapping.
pub fn definition(fields: &[ConnectField], key: Vec<String>) -> Result<Definition, String> {
    let columns = fields
        .iter()
        .map(column_def)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Definition { columns, key })
}

/// The column one field describes.
pub fn column_def(f: &ConnectField) -> Result<ColumnDef, String> {
    let (data_type, column_type, precision, scale) = match source_type(f) {
        Some(t) => t,
        None => connect_type(f)?,
    };
    // A binary default has no text form to write into existing rows: refused
    // rather than taken for NULL (wrong values in every older row).
    if let Some(Datum::Bytes(_)) = f.default {
        return Err(format!(
            "column {} has a binary default, which tidemark cannot write into the rows that existed before the column; land the table from a MySQL source (schema_from) instead",
            f.name
        ));
    }
    let default = f.default.as_ref().and_then(default_text);
    Ok(ColumnDef {
        name: f.name.clone(),
        data_type,
        column_type,
        precision,
        scale,
        default,
    })
}

type MySql = (String, String, Option<u64>, Option<u64>);

/// The source's own type, from `column.propagate.source.type`, when it names one
/// tidemark maps.
fn source_type(f: &ConnectField) -> Option<MySql> {
    let full = f
        .param("__debezium.source.column.type")?
        .to_ascii_lowercase();
    let mut words = full.split_whitespace();
    let base = match words.next()? {
        "integer" => "int",
        "bool" | "boolean" => "tinyint",
        "dec" | "fixed" => "decimal",
        other => other,
    }
    .to_string();
    let unsigned = full.contains("unsigned");
    let length = f.param_u64("__debezium.source.column.length");
    let scale = f.param_u64("__debezium.source.column.scale");
    let (column_type, precision, scale) = match base.as_str() {
        "decimal" | "numeric" => {
            let p = length.unwrap_or(10);
            let s = scale.unwrap_or(0);
            (format!("decimal({p},{s})"), Some(p), Some(s))
        }
        "bit" => {
            let w = length.unwrap_or(1);
            (format!("bit({w})"), Some(w), None)
        }
        "enum" | "set" => (allowed(&base, f.param("allowed")), None, None),
        "char" | "varchar" | "binary" | "varbinary" => {
            (format!("{base}({})", length.unwrap_or(255)), None, None)
        }
        "datetime" | "timestamp" | "time" => match length.filter(|l| (1..=6).contains(l)) {
            Some(l) => (format!("{base}({l})"), None, None),
            None => (base.clone(), None, None),
        },
        _ => (base.clone(), None, None),
    };
    let column_type = if unsigned {
        format!("{column_type} unsigned")
    } else {
        column_type
    };
    tidemark_core::types::MySqlType::from_information_schema(
        &base,
        &column_type,
        precision,
        scale,
    )?;
    Some((base, column_type, precision, scale))
}

/// `enum('a','b')` from Debezium's comma-separated `allowed` parameter.
fn allowed(kind: &str, values: Option<&str>) -> String {
    let quoted: Vec<String> = values
        .unwrap_or("")
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect();
    format!("{kind}({})", quoted.join(","))
}

/// The narrowest MySQL type for the Connect type and logical name.
fn connect_type(f: &ConnectField) -> Result<MySql, String> {
    let t = |dt: &str, ct: &str| Ok((dt.to_string(), ct.to_string(), None, None));
    match (f.ty.as_str(), f.logical.as_str()) {
        (_, "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => t("date", "date"),
        (_, "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
            t("datetime", "datetime(3)")
        }
        (_, "io.debezium.time.MicroTimestamp" | "io.debezium.time.NanoTimestamp") => {
            t("datetime", "datetime(6)")
        }
        (_, "io.debezium.time.ZonedTimestamp") => t("timestamp", "timestamp(6)"),
        (_, "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time") => {
            t("time", "time(3)")
        }
        (_, "io.debezium.time.MicroTime" | "io.debezium.time.NanoTime") => t("time", "time(6)"),
        (_, "io.debezium.time.Year") => t("year", "year"),
        (_, "io.debezium.data.Json") => t("json", "json"),
        (_, "io.debezium.data.Enum") => Ok((
            "enum".into(),
            allowed("enum", f.param("allowed")),
            None,
            None,
        )),
        (_, "io.debezium.data.EnumSet") => {
            Ok(("set".into(), allowed("set", f.param("allowed")), None, None))
        }
        (_, "org.apache.kafka.connect.data.Decimal") => {
            let s = f.param_u64("scale").ok_or_else(|| {
                format!(
                    "column {}: the Decimal schema has no scale parameter",
                    f.name
                )
            })?;
            // Without the precision (older connectors), the widest MySQL allows.
            let p = f.param_u64("connect.decimal.precision").unwrap_or(65);
            Ok((
                "decimal".into(),
                format!("decimal({p},{s})"),
                Some(p),
                Some(s),
            ))
        }
        (_, "io.debezium.data.VariableScaleDecimal") => Ok((
            "decimal".into(),
            "decimal(65,30)".into(),
            Some(65),
            Some(30),
        )),
        (_, "io.debezium.data.Bits") => {
            let w = f.param_u64("length").unwrap_or(1).clamp(1, 64);
            Ok(("bit".into(), format!("bit({w})"), Some(w), None))
        }
        (_, l) if l.starts_with("io.debezium.data.geometry.") => t("geometry", "geometry"),
        ("int8", _) => t("tinyint", "tinyint"),
        ("int16", _) => t("smallint", "smallint"),
        ("int32", _) => t("int", "int"),
        ("int64", _) => t("bigint", "bigint"),
        ("float32", _) => t("float", "float"),
        ("float64", _) => t("double", "double"),
        ("boolean", _) => Ok(("bit".into(), "bit(1)".into(), Some(1), None)),
        ("string", _) => t("longtext", "longtext"),
        ("bytes", _) => t("longblob", "longblob"),
        ("map" | "array", _) => t("json", "json"),
        (ty, logical) => Err(format!(
            "column {}: no MySQL type for the Connect type {ty}{}{logical}; turn on the connector's column.propagate.source.type so each field names its source type",
            f.name,
            if logical.is_empty() { "" } else { " " },
        )),
    }
}

/// A default as MySQL prints it unquoted (what `information_schema` gives for a
/// literal default), or `None` for NULL (bytes are refused before).
fn default_text(d: &Datum) -> Option<String> {
    use chrono::{DateTime, NaiveDate};
    Some(match d {
        Datum::Null | Datum::Bytes(_) => return None,
        Datum::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Datum::Int(n) => n.to_string(),
        Datum::Number(s) | Datum::Text(s) | Datum::Decimal(s) | Datum::Json(s) => s.clone(),
        Datum::Date(days) => NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::Duration::days(i64::from(*days)))?
            .format("%Y-%m-%d")
            .to_string(),
        Datum::Timestamp(us) => DateTime::from_timestamp_micros(*us)?
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        Datum::Time(us) => {
            let sign = if *us < 0 { "-" } else { "" };
            let a = us.unsigned_abs();
            format!(
                "{sign}{:02}:{:02}:{:02}.{:06}",
                a / 3_600_000_000,
                a / 60_000_000 % 60,
                a / 1_000_000 % 60,
                a % 1_000_000
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(ty: &str, logical: &str, params: &[(&str, &str)]) -> ConnectField {
        ConnectField {
            name: "c".into(),
            ty: ty.into(),
            logical: logical.into(),
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default: None,
        }
    }

    fn ct(f: &ConnectField) -> String {
        column_def(f).unwrap().column_type
    }

    #[test]
    fn logical_names_decide_before_physical_types() {
        assert_eq!(
            ct(&field(
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                &[("scale", "2"), ("connect.decimal.precision", "10")]
            )),
            "decimal(10,2)"
        );
        assert_eq!(
            ct(&field("int64", "io.debezium.time.MicroTimestamp", &[])),
            "datetime(6)"
        );
        assert_eq!(ct(&field("int32", "io.debezium.time.Date", &[])), "date");
        assert_eq!(
            ct(&field(
                "string",
                "io.debezium.data.Enum",
                &[("allowed", "open,it's")]
            )),
            "enum('open','it''s')"
        );
        assert_eq!(ct(&field("int16", "", &[])), "smallint");
        assert_eq!(ct(&field("boolean", "", &[])), "bit(1)");
        assert!(column_def(&field(
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            &[]
        ))
        .unwrap_err()
        .contains("no scale"));
    }

    #[test]
    fn propagated_source_types_win() {
        let f = field(
            "int64",
            "",
            &[("__debezium.source.column.type", "INT UNSIGNED")],
        );
        let c = column_def(&f).unwrap();
        assert_eq!(
            (c.data_type.as_str(), c.column_type.as_str()),
            ("int", "int unsigned")
        );
        let f = field(
            "int16",
            "",
            &[
                ("__debezium.source.column.type", "TINYINT"),
                ("__debezium.source.column.length", "4"),
            ],
        );
        assert_eq!(ct(&f), "tinyint");
        let f = field(
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            &[
                ("scale", "2"),
                ("__debezium.source.column.type", "DECIMAL"),
                ("__debezium.source.column.length", "12"),
                ("__debezium.source.column.scale", "2"),
            ],
        );
        assert_eq!(ct(&f), "decimal(12,2)");
        // A source type tidemark does not know falls back to the Connect type.
        let f = field("string", "", &[("__debezium.source.column.type", "VECTOR")]);
        assert_eq!(ct(&f), "longtext");
    }

    #[test]
    fn defaults_print_as_mysql_does() {
        assert_eq!(default_text(&Datum::Int(7)).as_deref(), Some("7"));
        assert_eq!(default_text(&Datum::Date(1)).as_deref(), Some("1970-01-02"));
        assert_eq!(
            default_text(&Datum::Timestamp(1_500_000)).as_deref(),
            Some("1970-01-01 00:00:01.500000")
        );
        assert_eq!(
            default_text(&Datum::Time(-1_000_001)).as_deref(),
            Some("-00:00:01.000001")
        );
        assert_eq!(default_text(&Datum::Null), None);
    }
}
