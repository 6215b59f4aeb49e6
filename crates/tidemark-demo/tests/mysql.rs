//! Replays the workload into the private MariaDB that `scripts/test.sh` starts
//! (`TIDEMARK_TEST_MYSQL_URL`); skipped when that is not set.
//!
//! Checks that the DDL is what `schemas()` says the server reports, and that the
//! server ends up with exactly the rows an in-memory replay of the events gives.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use tidemark_core::change::{Op, Value};
use tidemark_core::names::Naming;
use tidemark_core::types::parse_datetime;
use tidemark_demo::{
    apply_to_mysql, create_schema, schemas, Workload, WorkloadConfig, DATABASE, TABLES,
};

/// TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE.
type ColumnRow = (String, String, String, String, Option<u64>, Option<u64>);

fn url() -> Option<String> {
    let url = std::env::var("TIDEMARK_TEST_MYSQL_URL").ok();
    if url.is_none() {
        eprintln!("TIDEMARK_TEST_MYSQL_URL is not set (scripts/test.sh sets it); skipping");
    }
    url
}

/// A cell as the text protocol returns it, or the event value rendered the same way.
fn render(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(i.to_string()),
        Value::Decimal(s) | Value::Text(s) => Some(s.clone()),
        Value::Date(d) => Some(d.to_string()),
        Value::Timestamp(t) => Some(t.to_string()),
        other => panic!("the workload does not produce {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_into_mariadb() {
    let Some(url) = url() else { return };
    let opts = mysql_async::Opts::from_url(&url).expect("TIDEMARK_TEST_MYSQL_URL");
    let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{DATABASE}`"))
        .await
        .unwrap();
    create_schema(&mut conn).await.unwrap();
    // Idempotent.
    create_schema(&mut conn).await.unwrap();

    // information_schema reports what schemas() says.
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, \
                    CAST(NUMERIC_PRECISION AS UNSIGNED), CAST(NUMERIC_SCALE AS UNSIGNED) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (DATABASE,),
        )
        .await
        .unwrap();
    let schemas = schemas(Naming::SnakeCase);
    for (t, schema) in schemas.iter().enumerate() {
        let cols: Vec<_> = rows.iter().filter(|r| r.0 == TABLES[t]).collect();
        assert_eq!(cols.len(), schema.columns.len(), "{}", TABLES[t]);
        for (c, r) in schema.columns.iter().zip(cols) {
            assert_eq!(
                (
                    &c.source_name,
                    &c.data_type,
                    &c.column_type,
                    c.precision,
                    c.scale
                ),
                (&r.1, &r.2, &r.3, r.4, r.5),
                "{}",
                TABLES[t]
            );
        }
    }

    // Replay a few days, and the same events in memory.
    let cfg = WorkloadConfig {
        scale: 0.3,
        days: 6,
        end_us: 1_717_200_000_000_000,
        seed: 7,
    };
    let mut expected: Vec<BTreeMap<i64, Vec<Option<String>>>> = vec![BTreeMap::new(); 5];
    let mut n = 0;
    for day in Workload::new(cfg) {
        apply_to_mysql(&mut conn, &day).await.unwrap();
        for e in &day {
            n += 1;
            let Value::Int(id) = e.row[0] else { panic!() };
            if e.op == Op::Delete {
                expected[e.table].remove(&id);
            } else {
                expected[e.table].insert(id, e.row.iter().map(render).collect());
            }
        }
    }
    assert!(n > 300, "{n} events");

    for (t, schema) in schemas.iter().enumerate() {
        let cols: Vec<String> = schema
            .columns
            .iter()
            .map(|c| format!("`{}`", c.source_name))
            .collect();
        let rows: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT {} FROM `{DATABASE}`.`{}` ORDER BY id",
                cols.join(", "),
                TABLES[t]
            ))
            .await
            .unwrap();
        let mut actual = BTreeMap::new();
        for row in rows {
            let cells: Vec<Option<String>> = (0..schema.columns.len())
                .map(|i| {
                    let v: Option<String> = row.get(i).unwrap();
                    let ty = schema.columns[i].data_type.as_str();
                    v.map(|s| match ty {
                        "datetime" => parse_datetime(&s).unwrap().to_string(),
                        "date" => tidemark_core::types::parse_date(&s).unwrap().to_string(),
                        _ => s,
                    })
                })
                .collect();
            let id: i64 = cells[0].as_deref().unwrap().parse().unwrap();
            actual.insert(id, cells);
        }
        assert_eq!(actual.len(), expected[t].len(), "{}", TABLES[t]);
        assert!(actual == expected[t], "{} differs", TABLES[t]);
    }
    conn.query_drop(format!("DROP DATABASE `{DATABASE}`"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}
