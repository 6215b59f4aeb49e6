//! Wire encodings the formats use for values JSON has no type for: base64 and hex
//! bytes, big-endian unscaled decimals, little-endian bit strings, ISO instants, and
//! exact decimal text. All exact integer/string arithmetic: no value passes through
//! `f64` unless it arrived as a float.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::event::Datum;
use crate::json::Json;

/// Java's encoder pads; hand-written files and other producers may not.
const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decode base64 (standard or URL-safe alphabet).
pub(crate) fn base64(s: &str, url_safe: bool) -> Result<Vec<u8>, String> {
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine
        .decode(s.trim())
        .map_err(|e| format!("{:?} is not base64 ({e})", preview(s)))
}

/// Decode hex, with or without DMS's `0x` prefix.
pub(crate) fn hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let bad = || format!("{:?} is not hex", preview(s));
    if !t.len().is_multiple_of(2) {
        return Err(bad());
    }
    t.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (p[1] as char).to_digit(16).ok_or_else(bad)?;
            Ok((hi * 16 + lo) as u8)
        })
        .collect()
}

/// The first 40 characters of a value, for messages.
pub(crate) fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// MySQL's widest DECIMAL has 65 digits, under 28 bytes; refuse absurd lengths so
/// the quadratic conversion below stays cheap on garbage.
const MAX_DECIMAL_BYTES: usize = 64;

/// Kafka Connect Decimal: big-endian two's complement unscaled value → decimal text.
pub(crate) fn unscaled_to_decimal(bytes: &[u8], scale: u32) -> Result<String, String> {
    if bytes.is_empty() {
        return Err("empty decimal bytes".into());
    }
    if bytes.len() > MAX_DECIMAL_BYTES {
        return Err(format!(
            "decimal of {} bytes is wider than any MySQL DECIMAL",
            bytes.len()
        ));
    }
    if scale > 100 {
        return Err(format!("decimal scale {scale} is out of range"));
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut mag: Vec<u8> = bytes.to_vec();
    if negative {
        // Two's complement magnitude: invert and add one.
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10 of the big-endian magnitude.
    let mut digits = Vec::new();
    while mag.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let digits = String::from_utf8(digits).map_err(|e| e.to_string())?;
    Ok(place_point(negative, &digits, scale as usize))
}

/// `-`, `12345`, 2 → `-123.45`; pads with zeros as needed.
fn place_point(negative: bool, digits: &str, scale: usize) -> String {
    let mut s = String::new();
    let is_zero = digits.bytes().all(|c| c == b'0');
    if negative && !is_zero {
        s.push('-');
    }
    if scale == 0 {
        s.push_str(digits);
        return s;
    }
    if digits.len() <= scale {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', scale - digits.len()));
        s.push_str(digits);
    } else {
        let (i, f) = digits.split_at(digits.len() - scale);
        s.push_str(i);
        s.push('.');
        s.push_str(f);
    }
    s
}

/// `io.debezium.data.Bits`: little-endian bytes → an integer (BIT(n) has n ≤ 64).
pub(crate) fn bits_le(bytes: &[u8]) -> Result<Datum, String> {
    if bytes.len() > 8 {
        return Err(format!(
            "a BIT value of {} bytes is wider than BIT(64)",
            bytes.len()
        ));
    }
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | *b as u64);
    Ok(match i64::try_from(v) {
        Ok(i) => Datum::Int(i),
        Err(_) => Datum::Number(v.to_string()),
    })
}

/// `io.debezium.data.VariableScaleDecimal`: `{"scale": s, "value": base64}`.
pub(crate) fn variable_scale_decimal(v: &Json) -> Result<Datum, String> {
    let scale = v
        .field("scale")
        .and_then(Json::as_i64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or("VariableScaleDecimal without a valid scale")?;
    let value = v
        .field("value")
        .and_then(Json::as_str)
        .ok_or("VariableScaleDecimal without a value")?;
    Ok(Datum::Decimal(unscaled_to_decimal(
        &base64(value, false)?,
        scale,
    )?))
}

/// `io.debezium.data.geometry.*`: `{"wkb": base64, "srid": n}` → the WKB bytes (SRID
/// dropped, as the snapshot path does).
pub(crate) fn geometry_wkb(v: &Json) -> Result<Datum, String> {
    let wkb = v
        .field("wkb")
        .and_then(Json::as_str)
        .ok_or("geometry without a wkb field")?;
    Ok(Datum::Bytes(base64(wkb, false)?))
}

/// An instant as text → µs since the epoch, UTC. `None` for MySQL's zero dates.
///
/// Accepts `YYYY-MM-DD HH:MM:SS[.f]`, the same with `T`, either with `Z`, a numeric
/// offset (`+02:00`), or nothing (then the wall clock is read as UTC, as tidemark
/// stores DATETIME). Up to nine fraction digits; beyond microseconds is truncated.
pub(crate) fn parse_instant(s: &str) -> Result<Option<i64>, String> {
    let t = s.trim();
    let bad = || format!("{:?} is not a date-time", preview(s));
    // The core parser indexes bytes; keep it to ASCII input.
    if !t.is_ascii() {
        return Err(bad());
    }
    let naive = t.strip_suffix('Z').unwrap_or(t);
    match tidemark_core::types::parse_datetime(naive) {
        Ok(us) => return Ok(Some(us)),
        Err(tidemark_core::types::Bad::Invalid) => return Ok(None),
        Err(_) => {}
    }
    // An offset, or more than six fraction digits: let chrono read it.
    let with_t = if t.len() > 10 && t.as_bytes()[10] == b' ' {
        format!("{}T{}", &t[..10], &t[11..])
    } else {
        t.to_string()
    };
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&with_t) {
        return Ok(Some(dt.timestamp_micros()));
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(&with_t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(Some(dt.and_utc().timestamp_micros()));
    }
    Err(bad())
}

/// A decimal written as text or as a JSON number (`-0012.5`, `1.25E+3`) → exact text
/// with exactly `scale` fraction digits, checked against `precision`.
///
/// Extra fraction digits must be zeros, unless `round` (values that came through a
/// binary float, where rounding to the column's scale recovers the stored value).
pub(crate) fn decimal_text(
    s: &str,
    precision: u32,
    scale: u32,
    round: bool,
) -> Result<String, String> {
    let t = s.trim();
    let bad = || format!("{:?} is not a decimal number", preview(s));
    let (negative, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i64 = body[i + 1..].parse().map_err(|_| bad())?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // MySQL decimals have at most 65 digits; a wild exponent can only be garbage or
    // a value no column holds.
    if !(-200..=200).contains(&exp) {
        return Err(format!(
            "{:?} is out of range for DECIMAL({precision},{scale})",
            preview(s)
        ));
    }
    let digits: String = format!("{int}{frac}");
    let point = int.len() as i64 + exp; // digits before the decimal point
    let (int_digits, frac_digits): (String, String) = if point <= 0 {
        ("0".into(), "0".repeat((-point) as usize) + digits.as_str())
    } else if point as usize >= digits.len() {
        (
            digits.clone() + "0".repeat(point as usize - digits.len()).as_str(),
            String::new(),
        )
    } else {
        let (a, b) = digits.split_at(point as usize);
        (a.to_string(), b.to_string())
    };
    let scale_us = scale as usize;
    let mut kept: Vec<u8> = int_digits.bytes().collect();
    let mut f: Vec<u8> = frac_digits.bytes().take(scale_us).collect();
    f.resize(scale_us, b'0');
    kept.extend_from_slice(&f);
    let rest = frac_digits.as_bytes().get(scale_us..).unwrap_or(&[]);
    if rest.iter().any(|c| *c != b'0') {
        if !round {
            return Err(format!(
                "{:?} has more than {scale} decimal places; DECIMAL({precision},{scale}) cannot hold it exactly",
                preview(s)
            ));
        }
        if rest[0] >= b'5' {
            // Round half away from zero, as MySQL does.
            let mut i = kept.len();
            loop {
                if i == 0 {
                    kept.insert(0, b'1');
                    break;
                }
                i -= 1;
                if kept[i] == b'9' {
                    kept[i] = b'0';
                } else {
                    kept[i] += 1;
                    break;
                }
            }
        }
    }
    let split = kept.len() - scale_us;
    let int_part = std::str::from_utf8(&kept[..split]).map_err(|e| e.to_string())?;
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    if int_part != "0" && int_part.len() as u32 > precision.saturating_sub(scale) {
        return Err(format!(
            "{:?} does not fit DECIMAL({precision},{scale})",
            preview(s)
        ));
    }
    let frac_part = std::str::from_utf8(&kept[split..]).map_err(|e| e.to_string())?;
    let is_zero = int_part == "0" && frac_part.bytes().all(|c| c == b'0');
    let mut out = String::with_capacity(int_part.len() + frac_part.len() + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(int_part);
    if scale > 0 {
        out.push('.');
        out.push_str(frac_part);
    }
    Ok(out)
}

/// MySQL TIME text for a duration in µs, with `fsp` fraction digits, as MySQL's text
/// protocol writes it (and so as a snapshot lands it): `-01:02:03.500`.
pub(crate) fn time_text(us: i64, fsp: u32) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    let secs = a / 1_000_000;
    let micros = a % 1_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = format!("{sign}{h:02}:{m:02}:{s:02}");
    if fsp > 0 {
        let frac = format!("{micros:06}");
        out.push('.');
        out.push_str(&frac[..fsp.min(6) as usize]);
    }
    out
}

/// An integer typed by its Debezium or Kafka Connect logical name: days, instants
/// and times scaled to what [`Datum`] holds; anything else a plain integer.
pub(crate) fn integer(n: i64, logical: &str) -> Result<Datum, String> {
    let scaled = |f: i64| {
        n.checked_mul(f)
            .ok_or_else(|| format!("{n} is out of range"))
    };
    Ok(match logical {
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            Datum::Date(i32::try_from(n).map_err(|_| format!("{n} days is out of range"))?)
        }
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            Datum::Timestamp(scaled(1000)?)
        }
        "io.debezium.time.MicroTimestamp" => Datum::Timestamp(n),
        "io.debezium.time.NanoTimestamp" => Datum::Timestamp(n.div_euclid(1000)),
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            Datum::Time(scaled(1000)?)
        }
        "io.debezium.time.MicroTime" => Datum::Time(n),
        "io.debezium.time.NanoTime" => Datum::Time(n.div_euclid(1000)),
        _ => Datum::Int(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscaled_decimals() {
        // 0x04D2 = 1234
        assert_eq!(unscaled_to_decimal(&[0x04, 0xD2], 2).unwrap(), "12.34");
        assert_eq!(unscaled_to_decimal(&[0xFB, 0x2E], 2).unwrap(), "-12.34");
        assert_eq!(unscaled_to_decimal(&[0x00], 3).unwrap(), "0.000");
        assert_eq!(unscaled_to_decimal(&[0xFF], 0).unwrap(), "-1");
        assert_eq!(unscaled_to_decimal(&[0x05], 3).unwrap(), "0.005");
        assert_eq!(unscaled_to_decimal(&[0x80], 0).unwrap(), "-128");
        // 10^40: wider than i128's 38 digits.
        let big: Vec<u8> = {
            let mut v = vec![0u8; 17];
            // 10^40 = 0x1D6329F1C35CA4BFABB9F5610000000000
            let hex = "1D6329F1C35CA4BFABB9F5610000000000";
            for (i, c) in hex.as_bytes().chunks(2).enumerate() {
                v[i] = u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap();
            }
            v
        };
        assert_eq!(
            unscaled_to_decimal(&big, 10).unwrap(),
            format!("1{}.{}", "0".repeat(30), "0".repeat(10))
        );
    }

    #[test]
    fn decimal_texts() {
        assert_eq!(decimal_text("12.5", 10, 2, false).unwrap(), "12.50");
        assert_eq!(decimal_text("-0012.50", 10, 2, false).unwrap(), "-12.50");
        assert_eq!(decimal_text("1.25E+3", 10, 2, false).unwrap(), "1250.00");
        assert_eq!(decimal_text("125e-4", 10, 4, false).unwrap(), "0.0125");
        assert_eq!(decimal_text("-0.00", 10, 2, false).unwrap(), "0.00");
        assert_eq!(decimal_text("7", 10, 0, false).unwrap(), "7");
        assert!(decimal_text("12.345", 10, 2, false).is_err());
        assert_eq!(decimal_text("12.345", 10, 2, true).unwrap(), "12.35");
        assert_eq!(decimal_text("-9.995", 10, 2, true).unwrap(), "-10.00");
        assert_eq!(
            decimal_text("12.340000000000001", 10, 2, true).unwrap(),
            "12.34"
        );
        assert!(decimal_text("123456", 5, 2, false).is_err());
        assert!(decimal_text("1e999999", 10, 2, false).is_err());
        assert!(decimal_text("abc", 10, 2, false).is_err());
        assert!(decimal_text(".", 10, 2, false).is_err());
    }

    #[test]
    fn instants_and_times() {
        assert_eq!(
            parse_instant("2018-06-20T13:37:03Z").unwrap(),
            Some(1_529_501_823_000_000)
        );
        assert_eq!(
            parse_instant("2018-06-20T15:37:03.123456+02:00").unwrap(),
            Some(1_529_501_823_123_456)
        );
        assert_eq!(
            parse_instant("2018-06-20 13:37:03.5").unwrap(),
            Some(1_529_501_823_500_000)
        );
        assert_eq!(parse_instant("0000-00-00 00:00:00").unwrap(), None);
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2018-06-2é 13:37:03").is_err());
        assert_eq!(time_text(-3_723_500_000, 3), "-01:02:03.500");
        assert_eq!(time_text(838 * 3600 * 1_000_000, 0), "838:00:00");
        assert_eq!(hex("0xDEADbeef").unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        assert!(hex("abc").is_err());
    }
}
