//! MySQL column types and how they land in Arrow / Delta.
//!
//! Only types that Delta's portable protocol (reader 1 / writer 2) knows are produced,
//! so Spark, Trino and Athena read every table tidemark writes. That rules out unsigned
//! integers, a time-of-day type, `timestamp_ntz` and decimals wider than 38 digits; the
//! mapping below says what each becomes and why. Nothing is lost: wider types hold
//! every value exactly, and values with no exact Delta type travel as text.
//!
//! | MySQL | Arrow / Delta | why |
//! |---|---|---|
//! | TINYINT / SMALLINT / MEDIUMINT / INT / BIGINT | Int8 / Int16 / Int32 / Int32 / Int64 | |
//! | the same UNSIGNED | Int16 / Int32 / Int32 / Int64 / Decimal(20,0) | no unsigned in Delta; next wider signed type holds every value |
//! | DECIMAL(p,s), p ≤ 38 | Decimal128(p,s) | exact |
//! | DECIMAL(p,s), p > 38 | Utf8 (exact decimal text) | Delta decimals stop at 38 digits |
//! | FLOAT / DOUBLE | Float32 / Float64 | |
//! | BIT(1) / BIT(2..63) / BIT(64) | Boolean / Int64 / Decimal(20,0) | |
//! | DATE | Date32 | |
//! | DATETIME(0-6) | Timestamp(µs, UTC), wall clock taken as UTC | Delta's portable timestamp is UTC-adjusted |
//! | TIMESTAMP(0-6) | Timestamp(µs, UTC) | read with session time_zone = '+00:00' |
//! | TIME(0-6) | Utf8 `[-]HHH:MM:SS[.ffffff]` | no time type in Delta; range ±838h |
//! | YEAR | Int16 | |
//! | CHAR / VARCHAR / TEXT (any charset) | Utf8 | read as utf8mb4 |
//! | BINARY / VARBINARY / BLOB | Binary | |
//! | ENUM / SET | Utf8 (SET as `a,b`) | |
//! | JSON | Utf8 (JSON text) | |
//! | GEOMETRY and its subtypes | Binary (WKB, SRID dropped) | read via `ST_AsBinary` |
//!
//! Zero dates (`0000-00-00`), dates with a zero month or day and YEAR `0000` are not
//! instants: they become NULL, and every such value is counted per column and reported.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, Int8Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};

use crate::change::Value;

/// A MySQL column type, as far as the mapping needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MySqlType {
    /// TINYINT.
    TinyInt {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// SMALLINT.
    SmallInt {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// MEDIUMINT.
    MediumInt {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// INT.
    Int {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// BIGINT.
    BigInt {
        /// UNSIGNED.
        unsigned: bool,
    },
    /// DECIMAL(precision, scale).
    Decimal {
        /// Digits in all.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// FLOAT.
    Float,
    /// DOUBLE.
    Double,
    /// BIT(n).
    Bit(u8),
    /// DATE.
    Date,
    /// DATETIME(fsp).
    DateTime,
    /// TIMESTAMP(fsp).
    Timestamp,
    /// TIME(fsp).
    Time,
    /// YEAR.
    Year,
    /// CHAR, VARCHAR, TEXT and friends, ENUM, SET, JSON.
    Text,
    /// BINARY, VARBINARY, BLOB and friends.
    Binary,
    /// GEOMETRY and subtypes, read as WKB.
    Geometry,
}

impl MySqlType {
    /// Classify a column from `information_schema.COLUMNS` (`DATA_TYPE`, `COLUMN_TYPE`,
    /// `NUMERIC_PRECISION`, `NUMERIC_SCALE`). `None` for a type tidemark cannot map.
    pub fn from_information_schema(
        data_type: &str,
        column_type: &str,
        precision: Option<u64>,
        scale: Option<u64>,
    ) -> Option<Self> {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        let t = match data_type.to_ascii_lowercase().as_str() {
            "tinyint" => Self::TinyInt { unsigned },
            "smallint" => Self::SmallInt { unsigned },
            "mediumint" => Self::MediumInt { unsigned },
            "int" | "integer" => Self::Int { unsigned },
            "bigint" => Self::BigInt { unsigned },
            "decimal" | "numeric" => Self::Decimal {
                precision: precision.unwrap_or(10).clamp(1, 65) as u8,
                scale: scale.unwrap_or(0).min(30) as u8,
            },
            "float" => Self::Float,
            "double" | "real" | "double precision" => Self::Double,
            "bit" => Self::Bit(precision.unwrap_or(1).clamp(1, 64) as u8),
            "date" => Self::Date,
            "datetime" => Self::DateTime,
            "timestamp" => Self::Timestamp,
            "time" => Self::Time,
            "year" => Self::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "json" | "uuid" | "inet4" | "inet6" => Self::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Self::Binary
            }
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" | "geomcollection" => Self::Geometry,
            _ => return None,
        };
        Some(t)
    }

    /// The Arrow type this MySQL type lands as.
    pub fn arrow_type(self) -> DataType {
        use MySqlType::*;
        match self {
            TinyInt { unsigned: false } => DataType::Int8,
            TinyInt { unsigned: true } | SmallInt { unsigned: false } | Year => DataType::Int16,
            SmallInt { unsigned: true } | MediumInt { .. } | Int { unsigned: false } => {
                DataType::Int32
            }
            Int { unsigned: true } | BigInt { unsigned: false } => DataType::Int64,
            BigInt { unsigned: true } | Bit(64) => DataType::Decimal128(20, 0),
            Decimal { precision, scale } if precision <= 38 => {
                DataType::Decimal128(precision, scale as i8)
            }
            Decimal { .. } | Time | Text => DataType::Utf8,
            Float => DataType::Float32,
            Double => DataType::Float64,
            Bit(1) => DataType::Boolean,
            Bit(_) => DataType::Int64,
            Date => DataType::Date32,
            DateTime | Timestamp => timestamp_type(),
            Binary | Geometry => DataType::Binary,
        }
    }
}

/// The one timestamp type tidemark writes: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Why a value became NULL or could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// A value that is not an instant (zero date, zero month/day, YEAR 0000): stored
    /// as NULL and counted.
    Invalid,
    /// Text that does not parse as the column's type: an error.
    Unparseable(String),
}

/// Builds one Arrow column from MySQL values.
#[derive(Debug)]
pub struct ColumnBuilder {
    ty: MySqlType,
    inner: Inner,
    /// Values that were not instants and were stored as NULL.
    pub invalid: u64,
}

#[derive(Debug)]
enum Inner {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Dec(Decimal128Builder, i8),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
}

impl ColumnBuilder {
    /// A builder for a column of `ty`, sized for `capacity` rows.
    pub fn new(ty: MySqlType, capacity: usize) -> Self {
        let inner = match ty.arrow_type() {
            DataType::Int8 => Inner::I8(Int8Builder::with_capacity(capacity)),
            DataType::Int16 => Inner::I16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Inner::I32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Inner::I64(Int64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => Inner::Dec(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(p, s)
                    .expect("precision <= 38 by construction"),
                s,
            ),
            DataType::Float32 => Inner::F32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Inner::F64(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => Inner::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Date32 => Inner::Date(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(..) => {
                Inner::Ts(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
            DataType::Binary => Inner::Bin(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            _ => Inner::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
        };
        Self {
            ty,
            inner,
            invalid: 0,
        }
    }

    fn push_null(&mut self) {
        match &mut self.inner {
            Inner::I8(b) => b.append_null(),
            Inner::I16(b) => b.append_null(),
            Inner::I32(b) => b.append_null(),
            Inner::I64(b) => b.append_null(),
            Inner::Dec(b, _) => b.append_null(),
            Inner::F32(b) => b.append_null(),
            Inner::F64(b) => b.append_null(),
            Inner::Bool(b) => b.append_null(),
            Inner::Date(b) => b.append_null(),
            Inner::Ts(b) => b.append_null(),
            Inner::Str(b) => b.append_null(),
            Inner::Bin(b) => b.append_null(),
        }
    }

    /// Append a value as MySQL's text protocol sends it (`None` is SQL NULL).
    ///
    /// Invalid instants become NULL and are counted; text that cannot be this type is
    /// an error, because it means the mapping is wrong, not the data.
    pub fn push_text(&mut self, v: Option<&[u8]>) -> Result<(), String> {
        let Some(bytes) = v else {
            self.push_null();
            return Ok(());
        };
        match self.append_text(bytes) {
            Ok(()) => Ok(()),
            Err(Bad::Invalid) => {
                self.invalid += 1;
                self.push_null();
                Ok(())
            }
            Err(Bad::Unparseable(m)) => Err(m),
        }
    }

    fn append_text(&mut self, bytes: &[u8]) -> Result<(), Bad> {
        let ty = self.ty;
        let text = || {
            std::str::from_utf8(bytes)
                .map_err(|_| Bad::Unparseable(format!("not UTF-8: {}", hex(bytes))))
        };
        match &mut self.inner {
            Inner::I8(b) => b.append_value(parse_num(text()?)?),
            Inner::I16(b) => {
                let v: i16 = parse_num(text()?)?;
                if ty == MySqlType::Year && v == 0 {
                    return Err(Bad::Invalid);
                }
                b.append_value(v)
            }
            Inner::I32(b) => b.append_value(parse_num(text()?)?),
            Inner::I64(b) => match ty {
                MySqlType::Bit(_) => b.append_value(bits(bytes) as i64),
                _ => b.append_value(parse_num(text()?)?),
            },
            Inner::Dec(b, scale) => match ty {
                MySqlType::Bit(_) => b.append_value(bits(bytes) as i128),
                _ => b.append_value(parse_decimal(text()?, *scale)?),
            },
            Inner::F32(b) => b.append_value(parse_num(text()?)?),
            Inner::F64(b) => b.append_value(parse_num(text()?)?),
            Inner::Bool(b) => b.append_value(bits(bytes) != 0),
            Inner::Date(b) => b.append_value(parse_date(text()?)?),
            Inner::Ts(b) => b.append_value(parse_datetime(text()?)?),
            Inner::Str(b) => match std::str::from_utf8(bytes) {
                Ok(s) => b.append_value(s),
                Err(_) => return Err(Bad::Unparseable(format!("not UTF-8: {}", hex(bytes)))),
            },
            Inner::Bin(b) => b.append_value(bytes),
        }
        Ok(())
    }

    /// Append a typed value (generated data, decoded events). On error nothing was
    /// appended.
    pub fn push_value(&mut self, v: &Value) -> Result<(), String> {
        let p = self.prepare(v)?;
        self.append_prepared(p);
        Ok(())
    }

    /// Check and convert `v` for this column without appending it, so that a row of
    /// several columns is appended all or nothing (see [`ColumnBuilder::append_prepared`]).
    pub fn prepare<'v>(&self, v: &'v Value) -> Result<Prepared<'v>, String> {
        let mismatch = || format!("value {v:?} does not fit MySQL type {:?}", self.ty);
        let scaled =
            |i: i128, scale: i8| i.checked_mul(10i128.pow(scale as u32)).ok_or_else(mismatch);
        Ok(match (&self.inner, v) {
            (_, Value::Null) => Prepared::Null,
            (Inner::I8(_), Value::Int(i)) => {
                Prepared::Int(i8::try_from(*i).map_err(|_| mismatch())?.into())
            }
            (Inner::I16(_), Value::Int(i)) => {
                Prepared::Int(i16::try_from(*i).map_err(|_| mismatch())?.into())
            }
            (Inner::I32(_), Value::Int(i)) => {
                Prepared::Int(i32::try_from(*i).map_err(|_| mismatch())?.into())
            }
            (Inner::I64(_), Value::Int(i)) => Prepared::Int(*i),
            // An integer into DECIMAL(p,s) is a whole number: scale it, 5 -> 5.00.
            (Inner::Dec(_, scale), Value::Int(i)) => Prepared::Dec(scaled(*i as i128, *scale)?),
            (Inner::Dec(_, scale), Value::UInt(u)) => Prepared::Dec(scaled(*u as i128, *scale)?),
            (Inner::Dec(_, scale), Value::Decimal(s)) => {
                Prepared::Dec(parse_decimal(s, *scale).map_err(|_| mismatch())?)
            }
            (Inner::F32(_) | Inner::F64(_), Value::Float(f)) => Prepared::Float(*f),
            (Inner::Bool(_), Value::Bool(x)) => Prepared::Bool(*x),
            (Inner::Date(_), Value::Date(d)) => Prepared::Int((*d).into()),
            (Inner::Ts(_), Value::Timestamp(t)) => Prepared::Int(*t),
            (Inner::Str(_), Value::Text(s) | Value::Decimal(s)) => Prepared::Str(s),
            (Inner::Bin(_), Value::Bytes(x)) => Prepared::Bin(x),
            _ => return Err(mismatch()),
        })
    }

    /// Append a value [`ColumnBuilder::prepare`] accepted for this column.
    pub fn append_prepared(&mut self, p: Prepared<'_>) {
        match (&mut self.inner, p) {
            (_, Prepared::Null) => self.push_null(),
            (Inner::I8(b), Prepared::Int(i)) => b.append_value(i as i8),
            (Inner::I16(b), Prepared::Int(i)) => b.append_value(i as i16),
            (Inner::I32(b), Prepared::Int(i)) => b.append_value(i as i32),
            (Inner::I64(b), Prepared::Int(i)) => b.append_value(i),
            (Inner::Date(b), Prepared::Int(i)) => b.append_value(i as i32),
            (Inner::Ts(b), Prepared::Int(i)) => b.append_value(i),
            (Inner::Dec(b, _), Prepared::Dec(d)) => b.append_value(d),
            (Inner::F32(b), Prepared::Float(f)) => b.append_value(f as f32),
            (Inner::F64(b), Prepared::Float(f)) => b.append_value(f),
            (Inner::Bool(b), Prepared::Bool(x)) => b.append_value(x),
            (Inner::Str(b), Prepared::Str(s)) => b.append_value(s),
            (Inner::Bin(b), Prepared::Bin(x)) => b.append_value(x),
            // `prepare` pairs every value with its column's builder; a value prepared
            // for another column is a programming error, kept visible as a NULL
            // rather than a column out of step.
            (_, p) => {
                debug_assert!(false, "value {p:?} prepared for another column");
                self.push_null()
            }
        }
    }

    /// The finished column.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.inner {
            Inner::I8(b) => Arc::new(b.finish()),
            Inner::I16(b) => Arc::new(b.finish()),
            Inner::I32(b) => Arc::new(b.finish()),
            Inner::I64(b) => Arc::new(b.finish()),
            Inner::Dec(b, _) => Arc::new(b.finish()),
            Inner::F32(b) => Arc::new(b.finish()),
            Inner::F64(b) => Arc::new(b.finish()),
            Inner::Bool(b) => Arc::new(b.finish()),
            Inner::Date(b) => Arc::new(b.finish()),
            Inner::Ts(b) => Arc::new(b.finish()),
            Inner::Str(b) => Arc::new(b.finish()),
            Inner::Bin(b) => Arc::new(b.finish()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(32)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// BIT values arrive as big-endian bytes.
fn bits(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, Bad> {
    s.trim()
        .parse()
        .map_err(|_| Bad::Unparseable(format!("{s:?} is not a {}", std::any::type_name::<T>())))
}

/// `-123.45` at scale 4 → `-1234500`. MySQL sends exactly `scale` fraction digits, but
/// shorter or longer fractions are handled (longer ones must be zeros: no rounding).
pub fn parse_decimal(s: &str, scale: i8) -> Result<i128, Bad> {
    let bad = || Bad::Unparseable(format!("{s:?} is not a decimal of scale {scale}"));
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let scale = scale.max(0) as usize;
    let mut v: i128 = 0;
    for c in int.bytes() {
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as i128))
            .ok_or_else(bad)?;
    }
    for i in 0..scale {
        let d = frac.as_bytes().get(i).copied().unwrap_or(b'0');
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as i128))
            .ok_or_else(bad)?;
    }
    if frac.bytes().skip(scale).any(|c| c != b'0') {
        return Err(bad());
    }
    Ok(if neg { -v } else { v })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm:
/// exact for every year MySQL stores, no allocation, no chrono parse on the hot path).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32))
}

fn parse_date_parts(s: &str) -> Result<(i64, u32, u32), Bad> {
    let bad = || Bad::Unparseable(format!("{s:?} is not a date"));
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let y = digits(&b[0..4]).ok_or_else(bad)?;
    let m = digits(&b[5..7]).ok_or_else(bad)?;
    let d = digits(&b[8..10]).ok_or_else(bad)?;
    if m == 0 || d == 0 {
        // 0000-00-00 and 2024-00-15 are MySQL's "zero" dates, not instants.
        return Err(Bad::Invalid);
    }
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return Err(Bad::Invalid),
    };
    if d > dim {
        return Err(Bad::Invalid);
    }
    Ok((y as i64, m, d))
}

/// `YYYY-MM-DD` → days since epoch.
pub fn parse_date(s: &str) -> Result<i32, Bad> {
    let (y, m, d) = parse_date_parts(s)?;
    Ok(days_from_civil(y, m, d) as i32)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` → microseconds since epoch, taking the text as UTC.
pub fn parse_datetime(s: &str) -> Result<i64, Bad> {
    let bad = || Bad::Unparseable(format!("{s:?} is not a datetime"));
    // Byte 10 must be a char boundary: text that is not ASCII there is not a datetime.
    if s.len() < 19 || !s.is_char_boundary(10) {
        return Err(bad());
    }
    let (date, rest) = s.split_at(10);
    let days = {
        let (y, m, d) = parse_date_parts(date)?;
        days_from_civil(y, m, d)
    };
    let b = rest.as_bytes();
    if b[0] != b' ' && b[0] != b'T' || b[3] != b':' || b[6] != b':' {
        return Err(bad());
    }
    let hh = digits(&b[1..3]).ok_or_else(bad)? as i64;
    let mm = digits(&b[4..6]).ok_or_else(bad)? as i64;
    let ss = digits(&b[7..9]).ok_or_else(bad)? as i64;
    let mut micros = 0i64;
    if b.len() > 9 {
        if b[9] != b'.' {
            return Err(bad());
        }
        let frac = &b[10..];
        if frac.len() > 6 || !frac.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).map_or(0, |c| (c - b'0') as i64);
        }
    }
    Ok(((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// A value checked and converted for one column by [`ColumnBuilder::prepare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prepared<'v> {
    /// NULL.
    Null,
    /// Integers, dates (days) and instants (µs), already range-checked.
    Int(i64),
    /// A decimal's unscaled value at the column's scale.
    Dec(i128),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Str(&'v str),
    /// Bytes.
    Bin(&'v [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int16Type, Int64Type};

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("-123.45", 4).unwrap(), -1_234_500);
        assert_eq!(parse_decimal("0.0001", 4).unwrap(), 1);
        assert_eq!(
            parse_decimal("18446744073709551615", 0).unwrap(),
            18446744073709551615
        );
        assert_eq!(parse_decimal("1.50", 1).unwrap(), 15);
        assert!(parse_decimal("1.55", 1).is_err());
        assert!(parse_decimal("abc", 0).is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 11_017);
        assert_eq!(parse_date("1000-01-01").unwrap(), -354_285);
        assert_eq!(parse_date("0000-00-00"), Err(Bad::Invalid));
        assert_eq!(parse_date("2024-02-30"), Err(Bad::Invalid));
        assert_eq!(parse_datetime("1970-01-01 00:00:01.5").unwrap(), 1_500_000);
        assert_eq!(
            parse_datetime("2038-01-19 03:14:07.999999").unwrap(),
            2_147_483_647_999_999
        );
        assert_eq!(parse_datetime("0000-00-00 00:00:00"), Err(Bad::Invalid));
    }

    #[test]
    fn builder_counts_invalid_and_maps_unsigned() {
        let mut b = ColumnBuilder::new(MySqlType::Date, 4);
        b.push_text(Some(b"0000-00-00")).unwrap();
        b.push_text(Some(b"2024-01-31")).unwrap();
        b.push_text(None).unwrap();
        assert_eq!(b.invalid, 1);
        let a = b.finish();
        assert_eq!(a.null_count(), 2);

        let mut b = ColumnBuilder::new(MySqlType::BigInt { unsigned: true }, 1);
        b.push_text(Some(b"18446744073709551615")).unwrap();
        let a = b.finish();
        assert_eq!(
            a.as_primitive::<Decimal128Type>().value(0),
            u64::MAX as i128
        );

        let mut b = ColumnBuilder::new(MySqlType::Bit(12), 1);
        b.push_text(Some(&[0x0a, 0xbc])).unwrap();
        assert_eq!(b.finish().as_primitive::<Int64Type>().value(0), 0xabc);

        let mut b = ColumnBuilder::new(MySqlType::Year, 2);
        b.push_text(Some(b"0000")).unwrap();
        b.push_text(Some(b"2155")).unwrap();
        let a = b.finish();
        assert!(a.is_null(0));
        assert_eq!(a.as_primitive::<Int16Type>().value(1), 2155);

        let mut b = ColumnBuilder::new(MySqlType::Int { unsigned: false }, 1);
        assert!(b.push_text(Some(b"x1")).is_err());

        // Whole numbers into a scaled decimal keep their value.
        let mut b = ColumnBuilder::new(
            MySqlType::Decimal {
                precision: 10,
                scale: 2,
            },
            2,
        );
        b.push_value(&Value::Int(5)).unwrap();
        b.push_value(&Value::UInt(7)).unwrap();
        let a = b.finish();
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 500);
        assert_eq!(a.as_primitive::<Decimal128Type>().value(1), 700);
    }
}
