//! A lake row rendered to the text the source's checksum query renders
//! (`tidemark_mysql::checksum::row_checksum_sql`), and its CRC32.

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float32Array, Float64Array,
};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType,
};
use std::fmt::Write;

use crate::{Error, Result};

/// CRC32 of each row of `columns` (the table's source columns, in order, as their
/// mapped Arrow types).
pub fn row_crcs(table: &str, columns: &[ArrayRef]) -> Result<Vec<u32>> {
    let rows = columns.first().map_or(0, |c| c.len());
    let mut out = Vec::with_capacity(rows);
    let mut buf = String::with_capacity(256);
    for r in 0..rows {
        row_text(table, columns, r, &mut buf)?;
        out.push(crc32fast::hash(buf.as_bytes()));
    }
    Ok(out)
}

/// The text whose CRC32 is row `r`'s checksum (for diagnosing a rendering that
/// differs from the server's: compare it with the source's `CONCAT_WS(...)`).
pub fn row_text(table: &str, columns: &[ArrayRef], r: usize, buf: &mut String) -> Result<()> {
    buf.clear();
    let mut first = true;
    for c in columns {
        if c.is_null(r) {
            continue;
        }
        if !first {
            buf.push('#');
        }
        first = false;
        render(table, c, r, buf)?;
    }
    if !first {
        buf.push('#');
    }
    for c in columns {
        buf.push(if c.is_null(r) { '1' } else { '0' });
    }
    Ok(())
}

/// One non-NULL value as MySQL renders it in the checksum.
fn render(table: &str, c: &ArrayRef, r: usize, buf: &mut String) -> Result<()> {
    match c.data_type() {
        DataType::Int8 => write!(buf, "{}", c.as_primitive::<Int8Type>().value(r)),
        DataType::Int16 => write!(buf, "{}", c.as_primitive::<Int16Type>().value(r)),
        DataType::Int32 => write!(buf, "{}", c.as_primitive::<Int32Type>().value(r)),
        DataType::Int64 => write!(buf, "{}", c.as_primitive::<Int64Type>().value(r)),
        DataType::Decimal128(p, s) => {
            let a: &Decimal128Array = c.as_primitive::<Decimal128Type>();
            buf.push_str(
                &<Decimal128Type as deltalake::arrow::datatypes::DecimalType>::format_decimal(
                    a.value(r),
                    *p,
                    *s,
                ),
            );
            Ok(())
        }
        DataType::Boolean => {
            let a: &BooleanArray = c.as_boolean();
            buf.push(if a.value(r) { '1' } else { '0' });
            Ok(())
        }
        DataType::Float32 => {
            let a: &Float32Array = c.as_primitive();
            mysql_double(f64::from(a.value(r)), buf);
            Ok(())
        }
        DataType::Float64 => {
            let a: &Float64Array = c.as_primitive();
            mysql_double(a.value(r), buf);
            Ok(())
        }
        DataType::Date32 => {
            let d = c.as_primitive::<Date32Type>().value(r);
            let day = chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
                .ok_or_else(|| bad(table, "date out of range"))?;
            write!(buf, "{}", day.format("%Y-%m-%d"))
        }
        DataType::Timestamp(_, _) => {
            let us = c.as_primitive::<TimestampMicrosecondType>().value(r);
            let t = chrono::DateTime::from_timestamp_micros(us)
                .ok_or_else(|| bad(table, "timestamp out of range"))?;
            write!(buf, "{}", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f"))
        }
        DataType::Utf8 => {
            buf.push_str(c.as_string::<i32>().value(r));
            Ok(())
        }
        DataType::Binary => {
            for b in c.as_binary::<i32>().value(r) {
                write!(buf, "{b:02X}").expect("write to String");
            }
            Ok(())
        }
        other => return Err(bad(table, &format!("no checksum rendering for {other}"))),
    }
    .map_err(|_| bad(table, "format"))
}

fn bad(table: &str, what: &str) -> Error {
    Error::Value {
        table: table.to_string(),
        message: what.to_string(),
    }
}

/// A DOUBLE as MySQL/MariaDB render it in string context: the shortest digits that
/// read back as the same double (as Rust prints them), in fixed notation unless the
/// decimal exponent is above 15 with no fractional digits left, or below -14
/// (measured on MariaDB 10.11: `1e15`, `1234567890123456.8`, `0.000000000000001`,
/// `1e-16`).
pub fn mysql_double(x: f64, buf: &mut String) {
    if x == 0.0 {
        buf.push('0');
        return;
    }
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let (digits, exp) = half_even(x, digits, exp);
    let len = digits.len() as i32;
    let decpt = exp + 1;
    if (decpt > 15 && decpt >= len) || decpt < -14 {
        if neg {
            buf.push('-');
        }
        buf.push_str(&digits[..1]);
        if len > 1 {
            buf.push('.');
            buf.push_str(&digits[1..]);
        }
        write!(buf, "e{exp}").expect("write to String");
        return;
    }
    if neg {
        buf.push('-');
    }
    if decpt <= 0 {
        buf.push_str("0.");
        for _ in 0..-decpt {
            buf.push('0');
        }
        buf.push_str(&digits);
    } else if decpt >= len {
        buf.push_str(&digits);
        for _ in 0..decpt - len {
            buf.push('0');
        }
    } else {
        buf.push_str(&digits[..decpt as usize]);
        buf.push('.');
        buf.push_str(&digits[decpt as usize..]);
    }
}

/// Where two shortest digit strings are equally close to `x` (its exact value ends
/// in a 5 just past them), the server's dtoa takes the one with an even last digit
/// (`200.100006103515625` prints as `200.10000610351562`); Rust's formatting may
/// take the other. `digits` and `exp` are Rust's; the server's are returned.
fn half_even(x: f64, digits: String, exp: i32) -> (String, i32) {
    let n = digits.len();
    // A tie needs the exact value to have n + 1 significant digits, far fewer
    // than 60; Rust prints the exact expansion to the precision asked.
    let exact = format!("{:.60e}", x.abs());
    let (m, e) = exact.split_once('e').expect("{:e} has an exponent");
    let exact: Vec<u8> = m.bytes().filter(|b| *b != b'.').collect();
    if e.parse::<i32>().ok() != Some(exp)
        || exact[n] != b'5'
        || exact[n + 1..].iter().any(|b| *b != b'0')
    {
        return (digits, exp);
    }
    let floor = &exact[..n];
    if (floor[n - 1] - b'0').is_multiple_of(2) {
        let mut d = String::from_utf8(floor.to_vec()).expect("digits");
        while d.len() > 1 && d.ends_with('0') {
            d.pop();
        }
        return (d, exp);
    }
    // The next digit string up: add one in the last place, carrying.
    let mut up = floor.to_vec();
    let mut i = n;
    loop {
        if i == 0 {
            up.insert(0, b'1');
            up.pop();
            return trimmed(up, exp + 1);
        }
        i -= 1;
        if up[i] == b'9' {
            up[i] = b'0';
        } else {
            up[i] += 1;
            return trimmed(up, exp);
        }
    }
}

fn trimmed(mut d: Vec<u8>, exp: i32) -> (String, i32) {
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (String::from_utf8(d).expect("digits"), exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: f64) -> String {
        let mut s = String::new();
        mysql_double(x, &mut s);
        s
    }

    /// Each expected string is what MariaDB 10.11 printed for `CONCAT(x)`.
    #[test]
    fn doubles_render_as_mariadb_prints_them() {
        for (x, want) in [
            (0.1, "0.1"),
            (1e20, "1e20"),
            (1.2345678901234568e17, "1.2345678901234568e17"),
            (0.000015, "0.000015"),
            (1e15, "1e15"),
            (1e14, "100000000000000"),
            (1.2e15, "1.2e15"),
            (1234567890123456.8, "1234567890123456.8"),
            (1.2345678901234568e16, "1.2345678901234568e16"),
            (123456789.123, "123456789.123"),
            (-0.0, "0"),
            (-0.5, "-0.5"),
            (1e-15, "0.000000000000001"),
            (1e-16, "1e-16"),
            (1.5e-300, "1.5e-300"),
            (5e-324, "5e-324"),
            (0.00009999999747378752, "0.00009999999747378752"),
            (-1e20, "-1e20"),
            (1500.0, "1500"),
        ] {
            assert_eq!(d(x), want, "{x:e}");
        }
        // FLOAT is widened to DOUBLE on both sides.
        assert_eq!(d(f64::from(0.1f32)), "0.10000000149011612");
        // A tie between two shortest strings: the server takes the even digit.
        assert_eq!(d(f64::from(200.1f32)), "200.10000610351562");
    }

    #[test]
    fn nulls_are_flagged_and_skipped_as_concat_ws_does() {
        use deltalake::arrow::array::{Int32Array, StringArray};
        use std::sync::Arc;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(1), None])),
            Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
        ];
        let crcs = row_crcs("t", &cols).unwrap();
        assert_eq!(crcs[0], crc32fast::hash(b"1#a#00"));
        assert_eq!(crcs[1], crc32fast::hash(b"b#10"));
    }
}
