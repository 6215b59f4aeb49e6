//! Replaying the workload into a real MySQL or MariaDB server.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Statement, TxOpts};
use tidemark_core::change::{Op, Value};

use crate::tables::{create_sql, delete_sql, insert_sql, update_sql};
use crate::util::{format_date, format_datetime};
use crate::{Event, TABLES};

/// Create the `invoicing` database and its tables (a no-op for the parts that exist).
pub async fn create_schema(conn: &mut Conn) -> Result<(), mysql_async::Error> {
    for sql in create_sql() {
        conn.query_drop(sql).await?;
    }
    Ok(())
}

/// Execute `events` against the server behind `conn`, one MySQL transaction per
/// [`Event::txn`] (the events of a transaction are consecutive): a create is an
/// `INSERT` of the full row, an update sets every column by `id`, a delete deletes by
/// `id` (a [`Op::Read`] is inserted like a create). Statements are prepared once per
/// table and operation and every value travels as a parameter; instants are sent as
/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, which `DATETIME` columns store as is.
///
/// On error the open transaction is rolled back and the error returned; the
/// transactions before it stay committed.
pub async fn apply_to_mysql(conn: &mut Conn, events: &[Event]) -> Result<(), mysql_async::Error> {
    let mut statements: Vec<Option<Statement>> = vec![None; TABLES.len() * 3];
    let mut start = 0;
    while start < events.len() {
        let txn = events[start].txn;
        let end = events[start..]
            .iter()
            .position(|e| e.txn != txn)
            .map_or(events.len(), |n| start + n);
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        for e in &events[start..end] {
            let (slot, sql, params) = match e.op {
                Op::Create | Op::Read => (0, insert_sql as fn(usize) -> String, params(&e.row)),
                Op::Update => {
                    let mut values: Vec<&Value> = e.row[1..].iter().collect();
                    values.push(&e.row[0]);
                    (1, update_sql as fn(usize) -> String, params(values))
                }
                Op::Delete => (2, delete_sql as fn(usize) -> String, params(&e.row[..1])),
            };
            let slot = &mut statements[e.table * 3 + slot];
            if slot.is_none() {
                *slot = Some(tx.prep(sql(e.table)).await?);
            }
            let stmt = slot.as_ref().expect("prepared above");
            tx.exec_drop(stmt, params).await?;
        }
        tx.commit().await?;
        start = end;
    }
    Ok(())
}

fn params<'a>(values: impl IntoIterator<Item = &'a Value>) -> Params {
    Params::Positional(values.into_iter().map(to_mysql).collect())
}

fn to_mysql(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as M;
    match v {
        Value::Null => M::NULL,
        Value::Int(i) => M::Int(*i),
        Value::UInt(u) => M::UInt(*u),
        Value::Float(f) => M::Double(*f),
        Value::Decimal(s) | Value::Text(s) => M::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => M::Bytes(b.clone()),
        Value::Date(d) => M::Bytes(format_date(i64::from(*d)).into_bytes()),
        Value::Timestamp(us) => M::Bytes(format_datetime(*us).into_bytes()),
        Value::Bool(b) => M::Int(i64::from(*b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_parameters() {
        assert_eq!(
            to_mysql(&Value::Timestamp(1_500_000)),
            mysql_async::Value::Bytes(b"1970-01-01 00:00:01.500000".to_vec())
        );
        assert_eq!(
            to_mysql(&Value::Date(1)),
            mysql_async::Value::Bytes(b"1970-01-02".to_vec())
        );
        assert_eq!(
            to_mysql(&Value::Decimal("12.50".into())),
            mysql_async::Value::Bytes(b"12.50".to_vec())
        );
        assert_eq!(to_mysql(&Value::Null), mysql_async::Value::NULL);
    }

    #[test]
    fn statements_have_one_marker_per_value() {
        for (t, schema) in crate::schemas(Default::default()).iter().enumerate() {
            let n = schema.columns.len();
            assert_eq!(insert_sql(t).matches('?').count(), n);
            assert_eq!(update_sql(t).matches('?').count(), n);
            assert_eq!(delete_sql(t).matches('?').count(), 1);
        }
        assert_eq!(
            update_sql(crate::PRODUCTS),
            "UPDATE `invoicing`.`products` SET `sku` = ?, `name` = ?, `unit_price` = ?, \
             `active` = ?, `updated_at` = ? WHERE `id` = ?"
        );
    }
}
