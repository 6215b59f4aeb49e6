//! Statements answered without the engine: transactions, SET, SHOW, and the refusal
//! of anything that would write.

use std::sync::Arc;
use std::time::Duration;

use deltalake::datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::Type;
use pgwire::error::PgWireResult;

use crate::error::sql_error;
use crate::session::Session;

/// A statement handled here rather than planned.
#[derive(Debug, Clone)]
pub(crate) enum Utility {
    /// BEGIN / START TRANSACTION: every statement reads a consistent snapshot of its
    /// own, so a transaction changes nothing; accepted because drivers send it.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// SET of an allowed client setting (canonical name, value as SHOW shows it).
    Set {
        name: &'static str,
        value: String,
        /// `Some` when the statement sets statement_timeout.
        timeout: Option<Option<Duration>>,
    },
    /// SET SESSION CHARACTERISTICS AS TRANSACTION …, DISCARD ALL, DEALLOCATE:
    /// nothing to do, answered with this tag.
    Noop(&'static str),
    /// SHOW name.
    Show(String),
}

/// The statement kinds that change data or schema, named as PostgreSQL's read-only
/// error names them.
fn write_kind(s: &Statement) -> Option<&'static str> {
    use Statement as S;
    Some(match s {
        S::Insert { .. } => "INSERT",
        S::Update { .. } => "UPDATE",
        S::Delete { .. } => "DELETE",
        S::Merge { .. } => "MERGE",
        S::Truncate { .. } => "TRUNCATE",
        S::Copy { to: false, .. } | S::CopyIntoSnowflake { .. } => "COPY FROM",
        S::CreateTable { .. } => "CREATE TABLE",
        S::CreateView { .. } => "CREATE VIEW",
        S::CreateSchema { .. } => "CREATE SCHEMA",
        S::CreateDatabase { .. } => "CREATE DATABASE",
        S::CreateIndex { .. } => "CREATE INDEX",
        S::CreateFunction { .. } => "CREATE FUNCTION",
        S::CreateRole { .. } => "CREATE ROLE",
        S::CreateSequence { .. } => "CREATE SEQUENCE",
        S::CreateType { .. } => "CREATE TYPE",
        S::CreateExtension { .. } => "CREATE EXTENSION",
        S::AlterTable { .. } => "ALTER TABLE",
        S::AlterView { .. } => "ALTER VIEW",
        S::AlterIndex { .. } => "ALTER INDEX",
        S::AlterRole { .. } => "ALTER ROLE",
        S::AlterSchema { .. } => "ALTER SCHEMA",
        S::Drop { .. } => "DROP",
        S::DropFunction { .. } => "DROP FUNCTION",
        S::Grant { .. } => "GRANT",
        S::Revoke { .. } => "REVOKE",
        S::Comment { .. } => "COMMENT",
        S::Vacuum { .. } => "VACUUM",
        S::Analyze { .. } => "ANALYZE",
        S::Unload { .. } => "UNLOAD",
        _ => return None,
    })
}

/// 25006, as PostgreSQL answers a write in a read-only transaction.
pub(crate) fn refuse_write(kind: &str) -> pgwire::error::PgWireError {
    sql_error(
        "25006",
        format!(
            "cannot execute {kind} in a read-only transaction: tidemark SQL is read-only (a copy of the source databases); change the data at the source"
        ),
    )
}

/// Text of a SET value as SHOW gives it back: `'x'` and `x` are both `x`.
fn value_text(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// `statement_timeout` as PostgreSQL reads it: milliseconds, or with a unit.
fn parse_timeout(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((t.as_str(), ""), |i| (&t[..i], t[i..].trim()));
    let n: f64 = num.parse().ok()?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1e3,
        "min" => n * 60e3,
        "h" => n * 3600e3,
        "us" => n / 1e3,
        _ => return None,
    };
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_micros((ms * 1e3) as u64))
}

fn set(name: &str, values: &[Expr]) -> PgWireResult<Utility> {
    let Some(canonical) = Session::settable(name) else {
        let lower = name.to_ascii_lowercase();
        // Engine settings (memory limits, parallelism) are the server's, not a
        // session's: one analyst must not change them for everybody.
        return Err(if lower.starts_with("datafusion.") {
            sql_error(
                "42501",
                format!("permission denied to set parameter \"{name}\""),
            )
        } else {
            sql_error(
                "42704",
                format!("unrecognized or unsupported configuration parameter \"{name}\""),
            )
        });
    };
    let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
    let mut timeout = None;
    match canonical {
        "client_encoding"
            if !matches!(
                value.to_ascii_uppercase().as_str(),
                "UTF8" | "UTF-8" | "UNICODE"
            ) =>
        {
            return Err(sql_error(
                "22023",
                format!("client_encoding {value} is not supported; use UTF8"),
            ));
        }
        "statement_timeout" => {
            let d = parse_timeout(&value).ok_or_else(|| {
                sql_error(
                    "22023",
                    format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
                )
            })?;
            timeout = Some((!d.is_zero()).then_some(d));
        }
        _ => {}
    }
    Ok(Utility::Set {
        name: canonical,
        value,
        timeout,
    })
}

/// What to do with a statement that is not planned: `Ok(None)` means plan it.
pub(crate) fn classify(s: &Statement) -> PgWireResult<Option<Utility>> {
    if let Some(kind) = write_kind(s) {
        return Err(refuse_write(kind));
    }
    Ok(Some(match s {
        Statement::StartTransaction { .. } => Utility::Begin,
        Statement::Commit { .. } => Utility::Commit,
        Statement::Rollback { .. } => Utility::Rollback,
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => set(&variable.to_string(), values)?,
        Statement::Set(Set::SetTimeZone { value, .. }) => {
            set("TimeZone", std::slice::from_ref(value))?
        }
        Statement::Set(Set::SetTransaction { .. }) => Utility::Noop("SET"),
        Statement::Set(other) => {
            return Err(sql_error("0A000", format!("{other} is not supported")))
        }
        Statement::Discard { .. } => Utility::Noop("DISCARD ALL"),
        Statement::Deallocate { .. } => Utility::Noop("DEALLOCATE"),
        Statement::ShowVariable { variable } => Utility::Show(
            variable
                .iter()
                .map(|i| i.value.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => return Ok(crate::compat::utility(s)),
    }))
}

/// The one text column SHOW returns.
pub(crate) fn show_fields(name: &str) -> Vec<FieldInfo> {
    vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]
}

fn show_value(session: &Session, name: &str) -> PgWireResult<(String, String)> {
    if let Some((canonical, v)) = session.get(name) {
        return Ok((canonical.to_string(), v));
    }
    let fixed = |k: &str, v: String| Ok((k.to_string(), v));
    match name.to_ascii_lowercase().as_str() {
        "server_version" => fixed("server_version", crate::catalog::server_version()),
        "server_version_num" => fixed("server_version_num", "160006".into()),
        "server_encoding" => fixed("server_encoding", "UTF8".into()),
        "transaction isolation level" | "transaction_isolation" => {
            fixed("transaction_isolation", "read committed".into())
        }
        "transaction_read_only" | "default_transaction_read_only" => fixed(name, "on".into()),
        "standard_conforming_strings" => fixed("standard_conforming_strings", "on".into()),
        "integer_datetimes" => fixed("integer_datetimes", "on".into()),
        "is_superuser" => fixed("is_superuser", "off".into()),
        "max_identifier_length" => fixed("max_identifier_length", "63".into()),
        "session_authorization" => fixed("session_authorization", session.user.clone()),
        "intervalstyle" => fixed("IntervalStyle", "postgres".into()),
        _ => Err(sql_error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )),
    }
}

/// Carry out a utility statement for a session.
pub(crate) fn execute(session: &Session, u: &Utility) -> PgWireResult<Response> {
    Ok(match u {
        Utility::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Utility::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Utility::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        Utility::Set {
            name,
            value,
            timeout,
        } => {
            session.set(name, value.clone(), *timeout);
            Response::Execution(Tag::new("SET"))
        }
        Utility::Noop(tag) => Response::Execution(Tag::new(tag)),
        Utility::Show(name) => {
            let (column, value) = show_value(session, name)?;
            let fields = Arc::new(show_fields(&column));
            let mut enc = DataRowEncoder::new(fields.clone());
            enc.encode_field(&Some(value))?;
            let row = Ok(enc.take_row());
            Response::Query(QueryResponse::new(
                fields,
                futures::stream::once(async move { row }),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_postgresql_does() {
        assert_eq!(parse_timeout("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("0"), Some(Duration::ZERO));
        assert_eq!(parse_timeout("soon"), None);
    }
}
