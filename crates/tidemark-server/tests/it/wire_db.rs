//! The sqllogictest adapter over the PostgreSQL wire protocol (tokio-postgres): the
//! second of the two adapters the `.slt` files run through, beside tidemark-query's
//! `tests/slt/engine_db.rs` (in-process). The files are written in what that adapter
//! prints, so this one turns PostgreSQL's text output into the same form, and only
//! where PostgreSQL's text form legitimately differs (see [`normalise`]); everything
//! else must already be equal.
//!
//! Both protocols are covered: [`Protocol::Simple`] gets the server's text encoding,
//! [`Protocol::Extended`] (Parse/Describe/Bind/Execute, what drivers use) gets binary
//! results, as tokio-postgres always asks for, which [`pg_text`] turns into the
//! text PostgreSQL would have sent, so one normalisation serves both.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Which query protocol a connection runs the statements with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `Query`: one message, text results.
    Simple,
    /// Parse, Describe, Bind, Execute: binary results.
    Extended,
}

/// One client connection.
pub struct WireDb {
    pub client: Client,
    pub protocol: Protocol,
}

/// A query error as a client sees it: the server's message (what `statement error
/// <regex>` matches, as it matches the in-process error's text) and its SQLSTATE.
#[derive(Debug)]
pub struct WireError {
    message: String,
    sqlstate: Option<String>,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

impl WireError {
    fn adapter(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            sqlstate: None,
        }
    }
}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            // Only the message: tokio-postgres's Display adds "db error: ERROR: ",
            // which the in-process error has no counterpart for.
            Some(db) => Self {
                message: db.message().to_string(),
                sqlstate: Some(db.code().code().to_string()),
            },
            // Not an answer from the server (a closed connection, an undecodable
            // row): the whole chain, so the failure says what happened.
            None => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(&format!(": {s}"));
                    source = s.source();
                }
                Self::adapter(message)
            }
        }
    }
}

/// The `query` header letter of a result column, from its PostgreSQL type, grouped
/// as `engine_db.rs` groups the Arrow types the server maps to these (arrow-pg:
/// Int8/16/32/64 to int2/int4/int8, Float16/32/64 to float4/float8, Decimal128 to
/// numeric, Utf8/LargeUtf8/Utf8View to text).
///
/// Not a normalisation but a known difference: UInt64 is numeric on the wire (it
/// can exceed int8) and so `R`, where the in-process adapter says `I`; no `.slt`
/// column is UInt64.
fn column_type(t: &Type) -> DefaultColumnType {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// A cell's type and raw bytes (`None` for NULL), for decoding by type below.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

type DecodeError = Box<dyn std::error::Error + Sync + Send>;

/// A fractional second as PostgreSQL prints it: up to microseconds, trailing zeros
/// dropped, nothing for a whole second.
fn pg_fraction(nanos: u32) -> String {
    let micros = nanos / 1_000;
    if micros == 0 {
        return String::new();
    }
    let s = format!(".{micros:06}");
    s.trim_end_matches('0').to_string()
}

/// A float as PostgreSQL prints it (extra_float_digits 1, the default: the shortest
/// text that reads back as the same value).
fn pg_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Rust's Display is also shortest-round-trip; PostgreSQL switches to
        // exponent form for large and small magnitudes, which no .slt file shows.
        format!("{v}")
    }
}

/// The text PostgreSQL sends for a binary value of type `ty`: what the simple
/// protocol would have carried. A type not listed is an adapter error, so a new type
/// in a `.slt` result gets a decoder here rather than a wrong comparison.
fn pg_text(ty: &Type, raw: &[u8]) -> Result<String, DecodeError> {
    Ok(match *ty {
        Type::BOOL => if bool::from_sql(ty, raw)? { "t" } else { "f" }.into(),
        Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
        Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
        Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
        Type::FLOAT4 => pg_float(f64::from(f32::from_sql(ty, raw)?)),
        Type::FLOAT8 => pg_float(f64::from_sql(ty, raw)?),
        // rust_decimal keeps the scale the server sent (`1.20`, not `1.2`), as
        // numeric's text form does.
        Type::NUMERIC => Decimal::from_sql(ty, raw)?.to_string(),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            <&str>::from_sql(ty, raw)?.to_string()
        }
        Type::DATE => NaiveDate::from_sql(ty, raw)?.format("%Y-%m-%d").to_string(),
        Type::TIMESTAMP => {
            let t = NaiveDateTime::from_sql(ty, raw)?;
            format!(
                "{}{}",
                t.format("%Y-%m-%d %H:%M:%S"),
                pg_fraction(t.and_utc().timestamp_subsec_nanos())
            )
        }
        // The session's TimeZone is UTC (the server's only one), so the offset is +00.
        Type::TIMESTAMPTZ => {
            let t = DateTime::<Utc>::from_sql(ty, raw)?;
            format!(
                "{}{}+00",
                t.format("%Y-%m-%d %H:%M:%S"),
                pg_fraction(t.timestamp_subsec_nanos())
            )
        }
        Type::BYTEA => {
            let b = <Vec<u8>>::from_sql(ty, raw)?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\\x{hex}")
        }
        _ => return Err(format!("wire_db.rs cannot decode binary {ty} yet").into()),
    })
}

/// PostgreSQL's text form of a cell turned into `engine_db.rs`'s (Arrow's display),
/// by column type. Each rule is a difference of form only, the same value:
fn normalise(ty: &Type, text: Option<&str>) -> Result<String, WireError> {
    let Some(text) = text else {
        return Ok("NULL".into());
    };
    let out = match *ty {
        // PostgreSQL writes booleans `t`/`f`; Arrow `true`/`false`.
        Type::BOOL => match text {
            "t" => "true".into(),
            "f" => "false".into(),
            other => return Err(WireError::adapter(format!("bool {other:?}"))),
        },
        // PostgreSQL writes `2026-09-15 12:01:00+00` (space, offset of the session's
        // TimeZone, UTC here, microseconds with trailing zeros dropped); Arrow writes
        // RFC 3339 in UTC, `2026-09-15T12:01:00Z`, fractions in groups of three digits.
        Type::TIMESTAMPTZ => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map_err(|e| WireError::adapter(format!("timestamptz {text:?}: {e}")))?
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        // `2026-09-15 12:01:00` against Arrow's `2026-09-15T12:01:00` (chrono's Debug).
        Type::TIMESTAMP => {
            let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| WireError::adapter(format!("timestamp {text:?}: {e}")))?;
            format!("{t:?}")
        }
        // PostgreSQL writes a whole float without a fraction (`1`), Arrow with one
        // (`1.0`); both are shortest round-trip otherwise.
        Type::FLOAT4 | Type::FLOAT8 => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => format!("{v:?}"),
            Ok(v) if v.is_nan() => "NaN".into(),
            Ok(v) => if v > 0.0 { "inf" } else { "-inf" }.into(),
            Err(e) => return Err(WireError::adapter(format!("float {text:?}: {e}"))),
        },
        // Integers, numeric (scale kept on both sides), text, date: the same form.
        _ => text.to_string(),
    };
    // The sqllogictest convention, as in engine_db.rs: a blank cell could not be told
    // apart from a missing one.
    Ok(if out.is_empty() {
        "(empty)".into()
    } else {
        out
    })
}

impl WireDb {
    async fn run_extended(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let stmt = self.client.prepare(sql).await?;
        if stmt.columns().is_empty() {
            let n = self.client.execute(&stmt, &[]).await?;
            return Ok(DBOutput::StatementComplete(n));
        }
        // From Describe, so an empty result still has column types.
        let types = stmt
            .columns()
            .iter()
            .map(|c| column_type(c.type_()))
            .collect();
        let rows = self.client.query(&stmt, &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let Raw(raw) = row.try_get(i)?;
                let text = raw
                    .map(|raw| pg_text(col.type_(), raw))
                    .transpose()
                    .map_err(|e| {
                        WireError::adapter(format!("column {} ({}): {e}", col.name(), col.type_()))
                    })?;
                cells.push(normalise(col.type_(), text.as_deref())?);
            }
            out.push(cells);
        }
        Ok(DBOutput::Rows { types, rows: out })
    }

    async fn run_simple(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let messages = self.client.simple_query(sql).await?;
        let mut described = false;
        let mut count = 0;
        let mut rows = Vec::new();
        for m in &messages {
            match m {
                SimpleQueryMessage::RowDescription(_) => described = true,
                SimpleQueryMessage::Row(r) => rows.push(r),
                SimpleQueryMessage::CommandComplete(n) => count = *n,
                _ => {}
            }
        }
        if !described {
            return Ok(DBOutput::StatementComplete(count));
        }
        // The simple protocol's RowDescription has the type OIDs, but tokio-postgres
        // keeps only the names; Describe of the same statement has the types.
        let stmt = self.client.prepare(sql).await?;
        let pg_types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if r.len() != pg_types.len() {
                return Err(WireError::adapter(format!(
                    "simple protocol row has {} columns, Describe {}",
                    r.len(),
                    pg_types.len()
                )));
            }
            out.push(
                pg_types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| normalise(ty, r.get(i)))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(DBOutput::Rows {
            types: pg_types.iter().map(column_type).collect(),
            rows: out,
        })
    }
}

#[async_trait]
impl AsyncDB for WireDb {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        match self.protocol {
            Protocol::Simple => "tidemark-wire-simple",
            Protocol::Extended => "tidemark-wire-extended",
        }
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.sqlstate.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_text_reads_as_the_in_process_adapter_prints() {
        let n = |ty: &Type, s: &str| normalise(ty, Some(s)).unwrap();
        assert_eq!(n(&Type::BOOL, "t"), "true");
        assert_eq!(n(&Type::BOOL, "f"), "false");
        assert_eq!(
            n(&Type::TIMESTAMPTZ, "2026-09-15 12:01:00+00"),
            "2026-09-15T12:01:00Z"
        );
        // PostgreSQL trims the fraction, Arrow writes it in groups of three digits.
        assert_eq!(
            n(&Type::TIMESTAMPTZ, "2026-10-10 08:29:59.5+00"),
            "2026-10-10T08:29:59.500Z"
        );
        assert_eq!(
            n(&Type::TIMESTAMPTZ, "2026-10-10 08:29:59.999999+00"),
            "2026-10-10T08:29:59.999999Z"
        );
        assert_eq!(
            n(&Type::TIMESTAMP, "2026-10-10 08:29:59.25"),
            "2026-10-10T08:29:59.250"
        );
        assert_eq!(n(&Type::FLOAT8, "1"), "1.0");
        assert_eq!(n(&Type::FLOAT8, "0.1"), "0.1");
        assert_eq!(n(&Type::NUMERIC, "1.20"), "1.20");
        assert_eq!(n(&Type::TEXT, ""), "(empty)");
        assert_eq!(normalise(&Type::TEXT, None).unwrap(), "NULL");
        assert_eq!(pg_fraction(500_000_000), ".5");
        assert_eq!(pg_fraction(999_999_000), ".999999");
        assert_eq!(pg_fraction(0), "");
    }
}
