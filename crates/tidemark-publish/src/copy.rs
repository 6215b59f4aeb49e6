//! Arrow batches as PostgreSQL's binary COPY format (`COPY … FROM STDIN (FORMAT
//! binary)`), written column by column straight from the Arrow buffers.
//!
//! Why not tokio-postgres's `BinaryCopyInWriter`: it takes one `&dyn ToSql` per value,
//! so every value of every row would be boxed or wrapped in a type of ours first, and
//! `numeric` has no `ToSql` in tokio-postgres without a decimal crate that stops at
//! 28 digits (MySQL DECIMAL reaches 65). Writing the format directly is a few dozen
//! lines per type (the format is in PostgreSQL's docs: "Binary Format" under COPY,
//! and each type's `*_send`), touches each Arrow buffer once, and sends large chunks
//! through tokio-postgres's `copy_in` sink. pgpq does the same, but would add a crate
//! for what is here a small encoder under our own tests (each type round-trips
//! against a real PostgreSQL in `tests/it.rs`).

use bytes::{BufMut, BytesMut};
use deltalake::arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};

use crate::types::PgType;

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// The same in microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The file header: signature, flags (no OIDs), no header extension.
pub fn header(out: &mut BytesMut) {
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
}

/// The file trailer: a field count of -1.
pub fn trailer(out: &mut BytesMut) {
    out.put_i16(-1);
}

/// One column of a batch, downcast once.
enum Col<'a> {
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    Dec(&'a Decimal128Array, u8),
    DecText(&'a StringArray, u8),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    Date(&'a Date32Array),
    Ts(&'a TimestampMicrosecondArray),
    Text(&'a StringArray),
    Json(&'a StringArray),
    Bytes(&'a BinaryArray),
}

/// Why a batch cannot be encoded: the read plan casts every column to
/// [`PgType::arrow`], so this means a bug, or a decimal text that is not a number.
#[derive(Debug)]
pub struct EncodeError(pub String);

fn col<'a>(a: &'a dyn Array, t: PgType) -> Result<Col<'a>, EncodeError> {
    let wrong = || {
        EncodeError(format!(
            "column of Arrow type {} cannot be written as {}",
            a.data_type(),
            t.sql()
        ))
    };
    Ok(match t {
        PgType::SmallInt => Col::I16(a.as_primitive_opt::<Int16Type>().ok_or_else(wrong)?),
        PgType::Integer => Col::I32(a.as_primitive_opt::<Int32Type>().ok_or_else(wrong)?),
        PgType::BigInt => Col::I64(a.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?),
        PgType::Numeric { scale, .. } => match a.as_primitive_opt::<Decimal128Type>() {
            Some(d) => Col::Dec(d, scale),
            None => Col::DecText(a.as_string_opt::<i32>().ok_or_else(wrong)?, scale),
        },
        PgType::Real => Col::F32(a.as_primitive_opt::<Float32Type>().ok_or_else(wrong)?),
        PgType::Double => Col::F64(a.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?),
        PgType::Boolean => Col::Bool(a.as_boolean_opt().ok_or_else(wrong)?),
        PgType::Date => Col::Date(a.as_primitive_opt::<Date32Type>().ok_or_else(wrong)?),
        PgType::Timestamp | PgType::TimestampTz => Col::Ts(
            a.as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(wrong)?,
        ),
        PgType::Text => Col::Text(a.as_string_opt::<i32>().ok_or_else(wrong)?),
        PgType::Jsonb => Col::Json(a.as_string_opt::<i32>().ok_or_else(wrong)?),
        PgType::Bytea => Col::Bytes(a.as_binary_opt::<i32>().ok_or_else(wrong)?),
    })
}

/// Append the rows of `batch` (its columns in the order of `types`) to `out`.
pub fn encode(
    batch: &RecordBatch,
    types: &[PgType],
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if batch.num_columns() != types.len() {
        return Err(EncodeError(format!(
            "batch has {} columns for {} target columns",
            batch.num_columns(),
            types.len()
        )));
    }
    let cols = batch
        .columns()
        .iter()
        .zip(types)
        .map(|(a, t)| col(a.as_ref(), *t))
        .collect::<Result<Vec<_>, _>>()?;
    let fields = i16::try_from(cols.len())
        .map_err(|_| EncodeError(format!("{} columns: COPY takes at most 32767", cols.len())))?;
    // A rough size so most batches need one allocation.
    out.reserve(batch.num_rows() * (2 + cols.len() * 12));
    for row in 0..batch.num_rows() {
        out.put_i16(fields);
        for c in &cols {
            value(c, row, out)?;
        }
    }
    Ok(())
}

fn value(c: &Col<'_>, row: usize, out: &mut BytesMut) -> Result<(), EncodeError> {
    macro_rules! fixed {
        ($a:expr, $put:ident, $len:expr, $v:expr) => {{
            if $a.is_null(row) {
                out.put_i32(-1);
            } else {
                out.put_i32($len);
                out.$put($v);
            }
        }};
    }
    match c {
        Col::I16(a) => fixed!(a, put_i16, 2, a.value(row)),
        Col::I32(a) => fixed!(a, put_i32, 4, a.value(row)),
        Col::I64(a) => fixed!(a, put_i64, 8, a.value(row)),
        Col::F32(a) => fixed!(a, put_f32, 4, a.value(row)),
        Col::F64(a) => fixed!(a, put_f64, 8, a.value(row)),
        Col::Bool(a) => fixed!(a, put_u8, 1, a.value(row) as u8),
        Col::Date(a) => fixed!(a, put_i32, 4, a.value(row) - PG_EPOCH_DAYS),
        Col::Ts(a) => fixed!(a, put_i64, 8, a.value(row) - PG_EPOCH_MICROS),
        Col::Text(a) => bytes_or_null(a.is_null(row), || a.value(row).as_bytes(), None, out),
        // jsonb's binary form is a version byte (1) and the JSON text.
        Col::Json(a) => bytes_or_null(a.is_null(row), || a.value(row).as_bytes(), Some(1), out),
        Col::Bytes(a) => bytes_or_null(a.is_null(row), || a.value(row), None, out),
        Col::Dec(a, scale) => {
            if a.is_null(row) {
                out.put_i32(-1);
            } else {
                let v = a.value(row);
                let digits = v.unsigned_abs().to_string();
                numeric(v < 0, &digits, *scale as usize, *scale, out);
            }
        }
        Col::DecText(a, scale) => {
            if a.is_null(row) {
                out.put_i32(-1);
            } else {
                let text = a.value(row);
                let (neg, digits, frac) = parse_decimal(text)
                    .ok_or_else(|| EncodeError(format!("{text:?} is not a decimal number")))?;
                numeric(neg, &digits, frac, *scale, out);
            }
        }
    }
    Ok(())
}

fn bytes_or_null<'b>(
    null: bool,
    value: impl FnOnce() -> &'b [u8],
    prefix: Option<u8>,
    out: &mut BytesMut,
) {
    if null {
        out.put_i32(-1);
        return;
    }
    let v = value();
    let len = v.len() + usize::from(prefix.is_some());
    // A value over 1 GB cannot be stored in PostgreSQL anyway; the server says so.
    out.put_i32(len as i32);
    if let Some(p) = prefix {
        out.put_u8(p);
    }
    out.put_slice(v);
}

/// `"-123.4500"` as (negative, all digits `1234500`, digits after the point 4).
fn parse_decimal(text: &str) -> Option<(bool, String, usize)> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((neg, format!("{int}{frac}"), frac.len()))
}

/// PostgreSQL's binary `numeric`: base-10000 digits with a weight (the power of
/// 10000 of the first), a sign and the display scale. `digits` are the decimal
/// digits of the absolute value, the last `frac` of them after the point.
fn numeric(neg: bool, digits: &str, frac: usize, dscale: u8, out: &mut BytesMut) {
    // 0.0001 arrives as digits "1" with 4 after the point.
    let padded;
    let digits = if digits.len() < frac {
        padded = format!("{}{digits}", "0".repeat(frac - digits.len()));
        padded.as_bytes()
    } else {
        digits.as_bytes()
    };
    let split = digits.len() - frac;
    let (int, fr) = digits.split_at(split);
    // Pad the integer part on the left and the fraction on the right to whole groups
    // of four, so group boundaries fall on the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let fr_pad = (4 - fr.len() % 4) % 4;
    let mut all = Vec::with_capacity(int_pad + int.len() + fr.len() + fr_pad);
    all.extend(std::iter::repeat_n(b'0', int_pad));
    all.extend_from_slice(int);
    all.extend_from_slice(fr);
    all.extend(std::iter::repeat_n(b'0', fr_pad));
    let mut groups: Vec<i16> = all
        .chunks(4)
        .map(|g| g.iter().fold(0i16, |n, d| n * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = ((int_pad + int.len()) / 4) as i16 - 1;
    // Leading zero groups lower the weight; trailing ones carry nothing.
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i32(8 + 2 * groups.len() as i32);
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_i16(dscale as i16);
    for g in groups {
        out.put_i16(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(neg: bool, digits: &str, frac: usize, dscale: u8) -> Vec<i16> {
        let mut out = BytesMut::new();
        numeric(neg, digits, frac, dscale, &mut out);
        let b = out.to_vec();
        let len = i32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, b.len() - 4);
        b[4..]
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_groups_fall_on_the_point() {
        // 12345.678 = 1·10000 + 2345 + 6780/10000: weight 1, dscale 3.
        assert_eq!(num(false, "12345678", 3, 3), [3, 1, 0, 3, 1, 2345, 6780]);
        // -0.0001: one group at weight -1.
        assert_eq!(num(true, "00001", 4, 4), [1, -1, 0x4000, 4, 1]);
        // 0.00 is no digits at all, and never negative.
        assert_eq!(num(true, "000", 2, 2), [0, 0, 0, 2]);
        // 18446744073709551615 (BIGINT UNSIGNED max).
        assert_eq!(
            num(false, "18446744073709551615", 0, 0),
            [5, 4, 0, 0, 1844, 6744, 737, 955, 1615]
        );
        // Fewer digits than the scale: 0.0001 from the unscaled 1.
        assert_eq!(num(false, "1", 4, 4), [1, -1, 0, 4, 1]);
        // 10000: trailing zero group dropped, weight kept.
        assert_eq!(num(false, "10000", 0, 0), [1, 1, 0, 0, 1]);
    }

    #[test]
    fn decimal_text_parses() {
        assert_eq!(
            parse_decimal("-123.4500"),
            Some((true, "1234500".into(), 4))
        );
        assert_eq!(parse_decimal("7"), Some((false, "7".into(), 0)));
        assert_eq!(parse_decimal("1e5"), None);
        assert_eq!(parse_decimal(""), None);
    }
}
