//! From a decoded event to a row of a [`ChangeBatch`](tidemark_core::change::ChangeBatch).
//!
//! Values become the [`Value`] variant that `ColumnBuilder::push_value` accepts for
//! the column's MySQL type (decimals as exact text, instants as µs UTC, dates as
//! days, TIME as MySQL's text), checked against the type's range *before* anything is
//! appended: the batch builder cannot take back half a row, so a bad value must be
//! found while the row is still ours.
//!
//! Columns are matched by their exact source spelling. Decisions where formats are
//! loose:
//! * a column in the event that the schema lacks is an error (the source changed
//!   shape; landing it anywhere would be a guess);
//! * a column the schema has but the event lacks is NULL, except a key column, which
//!   is an error. tidemark's tables are all-nullable (see `TableSchema::source_fields`),
//!   DMS leaves NULL columns out unless `IncludeNullAndEmpty` is set, and a column
//!   dropped at the source is, from then on, NULL;
//! * JSON numbers for DECIMAL columns are rounded to the column's scale: they came
//!   through a binary float (Debezium's `decimal.handling.mode=double`), and rounding
//!   recovers the stored value. Decimal *text* must be exact.

use tidemark_core::change::{ChangeBatchBuilder, Value};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_core::types::{Bad, MySqlType};

use crate::codec;
use crate::error::DecodeError;
use crate::event::{
    BinaryHandling, ChangeEvent, Datum, DecimalHandling, Encoding, Producer, TimePrecision,
};
use crate::json::{self, Json};

/// The landing image of `ev` (after-image, before-image for deletes) as one value per
/// column of `schema`, in schema order.
pub fn to_values(schema: &TableSchema, ev: &ChangeEvent) -> Result<Vec<Value>, DecodeError> {
    let table = ev.source_table();
    if ev.db != schema.name.source_db || ev.table != schema.name.source_table {
        return Err(DecodeError::WrongTable {
            position: ev.message_pos.clone(),
            event_table: table,
            batch_table: schema.name.source(),
        });
    }
    let Some(image) = ev.image() else {
        return Err(DecodeError::envelope(
            &ev.message_pos,
            Some(table),
            format!("a {:?} event without the row image to land", ev.op),
        ));
    };
    let mut slots: Vec<Option<Value>> = vec![None; schema.columns.len()];
    for (name, datum) in &image.columns {
        let Some(i) = schema.columns.iter().position(|c| &c.source_name == name) else {
            let hint = schema
                .columns
                .iter()
                .find(|c| c.source_name.eq_ignore_ascii_case(name))
                .map(|c| {
                    format!(
                        " (the schema has {:?}; column names are matched exactly)",
                        c.source_name
                    )
                })
                .unwrap_or_default();
            return Err(DecodeError::UnknownColumn {
                position: ev.message_pos.clone(),
                table,
                column: name.clone(),
                hint,
            });
        };
        let col = &schema.columns[i];
        let value_err = |message: String| DecodeError::Value {
            position: ev.message_pos.clone(),
            table: table.clone(),
            column: name.clone(),
            message,
        };
        if slots[i].is_some() {
            return Err(value_err(
                "the column appears twice in the row image".into(),
            ));
        }
        slots[i] = Some(convert(datum, col, &ev.encoding).map_err(|m| {
            value_err(format!(
                "{m}. tidemark's schema has the column as {}; if the source column changed type, refresh the table's schema",
                col.column_type
            ))
        })?);
    }
    let mut values = Vec::with_capacity(slots.len());
    for (i, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(v) => values.push(v),
            None if schema.key.contains(&i) => {
                return Err(DecodeError::MissingKey {
                    position: ev.message_pos.clone(),
                    table,
                    column: schema.columns[i].source_name.clone(),
                })
            }
            None => values.push(Value::Null),
        }
    }
    Ok(values)
}

/// Append `ev` to `builder` (a builder for `schema`'s table) with `_seq = seq`.
///
/// The schema is passed alongside because the builder does not expose its own.
/// On error nothing was appended, so the builder stays usable.
pub fn push_event(
    builder: &mut ChangeBatchBuilder,
    schema: &TableSchema,
    ev: &ChangeEvent,
    seq: i64,
) -> Result<(), DecodeError> {
    let values = to_values(schema, ev)?;
    builder
        .push_values(&values, ev.op, ev.source_ts_us, &ev.source_pos, seq)
        .map_err(|source| DecodeError::Land {
            position: ev.message_pos.clone(),
            source,
        })
}

/// Fraction digits from a column type such as `datetime(3)` or `time(6)`.
fn fsp(column_type: &str) -> u32 {
    column_type
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0)
        .min(6)
}

fn describe(d: &Datum) -> String {
    let t = |s: &str| codec::preview(s);
    match d {
        Datum::Null => "NULL".into(),
        Datum::Bool(b) => format!("boolean {b}"),
        Datum::Int(i) => format!("integer {i}"),
        Datum::Number(n) => format!("number {}", t(n)),
        Datum::Text(s) => format!("text {:?}", t(s)),
        Datum::Bytes(b) => format!("{} bytes", b.len()),
        Datum::Decimal(s) => format!("decimal {}", t(s)),
        Datum::Date(d) => format!("date (day {d})"),
        Datum::Timestamp(us) => format!("timestamp ({us} µs)"),
        Datum::Time(us) => format!("time ({us} µs)"),
        Datum::Json(s) => format!("JSON {}", t(s)),
    }
}

/// One value for one column.
fn convert(d: &Datum, col: &ColumnSchema, enc: &Encoding) -> Result<Value, String> {
    if matches!(d, Datum::Null) {
        return Ok(Value::Null);
    }
    let ty = MySqlType::from_information_schema(
        &col.data_type,
        &col.column_type,
        col.precision,
        col.scale,
    )
    .ok_or_else(|| format!("type {} cannot be mapped", col.column_type))?;
    let mismatch = || {
        format!(
            "{} does not fit the column's type {}",
            describe(d),
            col.column_type
        )
    };
    use MySqlType as T;
    let ranged = |lo: i128, hi: i128| -> Result<Value, String> {
        let v = integer(d).ok_or_else(mismatch)?;
        if v < lo || v > hi {
            return Err(format!(
                "{v} is out of range for {} ({lo} to {hi})",
                col.column_type
            ));
        }
        Ok(Value::Int(v as i64))
    };
    match ty {
        T::TinyInt { unsigned: false } => ranged(-128, 127),
        T::TinyInt { unsigned: true } => ranged(0, 255),
        T::SmallInt { unsigned: false } => ranged(-32_768, 32_767),
        T::SmallInt { unsigned: true } => ranged(0, 65_535),
        T::MediumInt { unsigned: false } => ranged(-8_388_608, 8_388_607),
        T::MediumInt { unsigned: true } => ranged(0, 16_777_215),
        T::Int { unsigned: false } => ranged(i32::MIN as i128, i32::MAX as i128),
        T::Int { unsigned: true } => ranged(0, u32::MAX as i128),
        T::BigInt { unsigned: false } => ranged(i64::MIN as i128, i64::MAX as i128),
        T::BigInt { unsigned: true } | T::Bit(64) => {
            let mut v = integer(d).ok_or_else(mismatch)?;
            // Debezium's default bigint.unsigned.handling.mode=long sends values above
            // i64::MAX as the negative i64 with the same bits; undo the wrap.
            if v < 0 && v >= i64::MIN as i128 && enc.producer == Producer::Debezium {
                v = (v as i64) as u64 as i128;
            }
            let u = u64::try_from(v)
                .map_err(|_| format!("{v} is out of range for {}", col.column_type))?;
            Ok(match i64::try_from(u) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::UInt(u),
            })
        }
        T::Year => {
            let v = ranged(0, 2155)?;
            // YEAR 0000 is not a year; the snapshot path stores it as NULL too.
            Ok(if v == Value::Int(0) { Value::Null } else { v })
        }
        T::Decimal { precision, scale } => {
            let (p, s) = (precision as u32, scale as u32);
            let text = match d {
                Datum::Decimal(t) => codec::decimal_text(t, p, s, false)?,
                Datum::Int(i) => codec::decimal_text(&i.to_string(), p, s, false)?,
                Datum::Number(n) => codec::decimal_text(n, p, s, true)?,
                Datum::Text(t) => {
                    let base64 = !enc.typed
                        && enc.producer == Producer::Debezium
                        && enc.decimal == DecimalHandling::Precise;
                    match (base64, codec::base64(t, false)) {
                        (true, Ok(bytes)) => {
                            let exact = codec::unscaled_to_decimal(&bytes, s)?;
                            codec::decimal_text(&exact, p, s, false)?
                        }
                        _ => codec::decimal_text(t, p, s, false)?,
                    }
                }
                Datum::Json(t) => {
                    let v = json::parse(t.as_bytes()).map_err(|_| mismatch())?;
                    match codec::variable_scale_decimal(&v)? {
                        Datum::Decimal(x) => codec::decimal_text(&x, p, s, false)?,
                        _ => return Err(mismatch()),
                    }
                }
                _ => return Err(mismatch()),
            };
            Ok(Value::Decimal(text))
        }
        T::Float | T::Double => match d {
            Datum::Int(i) => Ok(Value::Float(*i as f64)),
            Datum::Number(t) | Datum::Text(t) | Datum::Decimal(t) => t
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| mismatch()),
            _ => Err(mismatch()),
        },
        T::Bit(1) => match d {
            Datum::Bool(b) => Ok(Value::Bool(*b)),
            Datum::Int(0) => Ok(Value::Bool(false)),
            Datum::Int(1) => Ok(Value::Bool(true)),
            Datum::Text(t) => match t.trim() {
                "0" | "false" | "0x00" | "0x0" => Ok(Value::Bool(false)),
                "1" | "true" | "0x01" | "0x1" => Ok(Value::Bool(true)),
                _ => Err(mismatch()),
            },
            Datum::Bytes(b) => Ok(Value::Bool(b.iter().any(|x| *x != 0))),
            _ => Err(mismatch()),
        },
        T::Bit(n) => {
            let v: u64 = match d {
                Datum::Bytes(b) => be_u64(b).ok_or_else(mismatch)?,
                // Debezium without schemas: io.debezium.data.Bits, base64, little-endian.
                Datum::Text(t) if enc.producer == Producer::Debezium => {
                    match codec::bits_le(&codec::base64(t, false)?)? {
                        Datum::Int(i) => i as u64,
                        _ => return Err(mismatch()),
                    }
                }
                // DMS writes bit strings like LOBs: hex, most significant byte first.
                Datum::Text(t) if t.trim().starts_with("0x") => {
                    be_u64(&codec::hex(t)?).ok_or_else(mismatch)?
                }
                _ => {
                    let v = integer(d).ok_or_else(mismatch)?;
                    u64::try_from(v).map_err(|_| mismatch())?
                }
            };
            if n < 64 && v >> n != 0 {
                return Err(format!("{v} does not fit BIT({n})"));
            }
            Ok(Value::Int(v as i64))
        }
        T::Date => match d {
            Datum::Date(days) => Ok(Value::Date(*days)),
            Datum::Int(i) => i32::try_from(*i).map(Value::Date).map_err(|_| mismatch()),
            Datum::Timestamp(us) if us.rem_euclid(86_400_000_000) == 0 => {
                i32::try_from(us.div_euclid(86_400_000_000))
                    .map(Value::Date)
                    .map_err(|_| mismatch())
            }
            Datum::Text(t) if t.is_ascii() => match tidemark_core::types::parse_date(t.trim()) {
                Ok(days) => Ok(Value::Date(days)),
                Err(Bad::Invalid) => Ok(Value::Null),
                Err(Bad::Unparseable(m)) => Err(m),
            },
            _ => Err(mismatch()),
        },
        T::DateTime | T::Timestamp => match d {
            Datum::Timestamp(us) => Ok(Value::Timestamp(*us)),
            Datum::Int(i) => {
                let millis = match enc.time_precision {
                    TimePrecision::Connect => true,
                    _ => fsp(&col.column_type) <= 3,
                };
                let us = if millis {
                    i.checked_mul(1000)
                } else {
                    Some(*i)
                };
                us.map(Value::Timestamp)
                    .ok_or_else(|| format!("{i} is out of range for {}", col.column_type))
            }
            Datum::Date(days) => (*days as i64)
                .checked_mul(86_400_000_000)
                .map(Value::Timestamp)
                .ok_or_else(mismatch),
            Datum::Text(t) => Ok(match codec::parse_instant(t)? {
                Some(us) => Value::Timestamp(us),
                None => Value::Null,
            }),
            _ => Err(mismatch()),
        },
        T::Time => {
            let digits = fsp(&col.column_type);
            let us = match d {
                Datum::Time(us) => *us,
                Datum::Int(i) => {
                    let millis = match enc.time_precision {
                        TimePrecision::Connect => true,
                        TimePrecision::Adaptive => digits <= 3,
                        TimePrecision::AdaptiveTimeMicroseconds => false,
                    };
                    if millis {
                        i.checked_mul(1000).ok_or_else(mismatch)?
                    } else {
                        *i
                    }
                }
                Datum::Text(t) => parse_time(t).ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            };
            Ok(Value::Text(codec::time_text(us, digits)))
        }
        T::Text => match d {
            Datum::Text(s) | Datum::Json(s) | Datum::Number(s) | Datum::Decimal(s) => {
                Ok(Value::Text(s.clone()))
            }
            Datum::Int(i) => Ok(Value::Text(i.to_string())),
            Datum::Bool(b) => Ok(Value::Text(b.to_string())),
            Datum::Bytes(b) => String::from_utf8(b.clone())
                .map(Value::Text)
                .map_err(|_| format!("{} bytes that are not UTF-8 text", b.len())),
            _ => Err(mismatch()),
        },
        T::Binary | T::Geometry => match d {
            Datum::Bytes(b) => Ok(Value::Bytes(b.clone())),
            Datum::Text(t) => match enc.binary {
                BinaryHandling::Bytes | BinaryHandling::Base64 => codec::base64(t, false),
                BinaryHandling::Base64UrlSafe => codec::base64(t, true),
                BinaryHandling::Hex => codec::hex(t),
            }
            .map(Value::Bytes),
            // A Debezium geometry struct that arrived without a schema.
            Datum::Json(t) => {
                let v: Json = json::parse(t.as_bytes()).map_err(|_| mismatch())?;
                match codec::geometry_wkb(&v) {
                    Ok(Datum::Bytes(b)) => Ok(Value::Bytes(b)),
                    _ => Err(mismatch()),
                }
            }
            _ => Err(mismatch()),
        },
    }
}

/// An integer from any datum that states one exactly (`5`, `"5"`, `5.00`).
fn integer(d: &Datum) -> Option<i128> {
    match d {
        Datum::Int(i) => Some(*i as i128),
        Datum::Bool(b) => Some(*b as i128),
        Datum::Number(t) | Datum::Text(t) | Datum::Decimal(t) => {
            let exact = codec::decimal_text(t, 40, 0, false).ok()?;
            exact.parse().ok()
        }
        _ => None,
    }
}

fn be_u64(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64))
}

/// `[-]H+:MM:SS[.ffffff]` → µs.
fn parse_time(t: &str) -> Option<i64> {
    let t = t.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0..60).contains(&m) || !(0..60).contains(&s) || h > 10_000 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut us = 0i64;
    for i in 0..6 {
        us = us * 10 + frac.as_bytes().get(i).map_or(0, |c| (c - b'0') as i64);
    }
    let v = ((h * 60 + m) * 60 + s) * 1_000_000 + us;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsp_and_time() {
        assert_eq!(fsp("datetime(3)"), 3);
        assert_eq!(fsp("time"), 0);
        assert_eq!(
            parse_time("-838:59:59.5"),
            Some(-(838 * 3600 + 59 * 60 + 59) * 1_000_000 - 500_000)
        );
        assert_eq!(parse_time("12:61:00"), None);
        assert_eq!(parse_time("x"), None);
    }
}
