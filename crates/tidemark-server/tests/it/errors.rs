//! Errors are typed end to end: each failure reaches the client with the SQLSTATE of
//! its kind (decided from the error's variant, not its wording); time travel names no
//! table outside the caller's grants; EXPLAIN shows nothing a mask or row filter
//! hides.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tokio_postgres::Client;

use crate::support::{demo_warehouse, TestServer, ADMIN, FINANCE, USER};

/// The error `sql` fails with (simple protocol): SQLSTATE and message.
async fn failure(c: &Client, sql: &str) -> (String, String) {
    let err = c
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql}: must fail"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: {err:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// The single value of a query that must succeed, as text.
async fn one(c: &Client, sql: &str) -> String {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").into()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_kind_has_its_sqlstate() {
    let s = TestServer::start().await;
    let analyst = s.client_as(USER).await;
    let finance = s.client_as(FINANCE).await;
    let cases: &[(&Client, &str, &str)] = &[
        (&analyst, "SELECT * FROM invoicing.nosuch", "42P01"),
        (&analyst, "SELECT * FROM nosuch.invoices", "42P01"),
        (&analyst, "SELECT * FROM nosuch", "42P01"),
        (
            &analyst,
            "SELECT count(*) FROM invoicing.invoices i JOIN invoicing.nosuch n ON n.id = i.id",
            "42P01",
        ),
        (&analyst, "SELECT nosuch FROM invoicing.invoices", "42703"),
        (
            &analyst,
            "SELECT count(*) FROM invoicing.invoices WHERE nosuch = 1",
            "42703",
        ),
        (&analyst, "SELECT nosuch_function(1)", "42883"),
        (
            &analyst,
            "SELECT status, nosuch_aggregate(total) FROM invoicing.invoices GROUP BY status",
            "42883",
        ),
        (&analyst, "SELECT 1/0", "22012"),
        (&analyst, "SELECT CAST('x' AS INT)", "22P02"),
        (
            &analyst,
            "SELECT max(id / (id - id)) FROM invoicing.invoices",
            "22012",
        ),
        (&analyst, "SELEC 1", "42601"),
        (&analyst, "SELECT * FROM invoicing.invoices WHERE", "42601"),
        (&analyst, "DELETE FROM invoicing.invoices", "25006"),
        (&finance, "SELECT * FROM invoicing.customers", "42501"),
        (
            &analyst,
            "SELECT count(*) FROM as_of('invoicing.nosuch', now())",
            "42P01",
        ),
    ];
    let mut wrong = Vec::new();
    for (c, sql, want) in cases {
        let (code, message) = failure(c, sql).await;
        if code != *want {
            wrong.push(format!("{sql}: {code} (want {want}): {message}"));
        }
    }
    // The extended protocol decides the same way (errors at Parse).
    for (sql, want) in [
        (
            "SELECT nosuch FROM invoicing.invoices WHERE id = $1",
            "42703",
        ),
        ("SELECT * FROM invoicing.nosuch WHERE id = $1", "42P01"),
    ] {
        let err = analyst.prepare(sql).await.unwrap_err();
        let code = err.as_db_error().map(|d| d.code().code().to_string());
        if code.as_deref() != Some(want) {
            wrong.push(format!("{sql} (Parse): {code:?} (want {want}): {err:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong SQLSTATEs:\n{}", wrong.join("\n"));
    // Messages start with what happened, not with DataFusion's wrapping.
    let (_, m) = failure(&analyst, "SELECT * FROM invoicing.nosuch").await;
    assert!(
        m.starts_with("table invoicing.nosuch does not exist"),
        "{m}"
    );
    s.stop().await;
}

fn col(name: &str) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: if name == "id" {
            "int(11)"
        } else {
            "varchar(20)"
        }
        .into(),
        data_type: if name == "id" { "int" } else { "varchar" }.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    }
}

/// Land a one-row table `db.name (id, name)`, so the demo's table names exist in a
/// second schema.
async fn land_small(wh: &Warehouse, db: &str, name: &str) {
    let schema = Arc::new(
        TableSchema::new(
            TableName::new(db, name, Naming::SnakeCase),
            vec![col("id"), col("name")],
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let mut b = ChangeBatchBuilder::new(schema.clone(), 1);
    b.push_values(
        &[Value::Int(1), Value::Text("x".into())],
        Op::Read,
        now - 86_400_000_000,
        "pos:0",
        0,
    )
    .unwrap();
    let batch = b.finish().unwrap();
    let state = SourceState {
        source: "test".into(),
        source_table: schema.name.source(),
        stream_offset: Some(1),
        ..Default::default()
    };
    let mut w = TableWriter::open(wh, schema).await.unwrap();
    w.apply(TableKind::History, &batch, now, state.clone())
        .await
        .unwrap();
    w.apply(TableKind::Current, &batch, now, state)
        .await
        .unwrap();
}

/// For a role, a time-travel name that is unknown or ambiguous among the tables it
/// may read fails exactly as a name that exists nowhere (42P01, naming only what was
/// typed), and a name unique among its tables resolves to that table, whatever else
/// the warehouse holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_names_resolve_within_the_grants() {
    let dir = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(&dir.path().join("warehouse")).await;
    // hr.customers makes `customers` ambiguous (both hidden from finance), and
    // hr.invoices makes `invoices` ambiguous warehouse-wide but unique for finance.
    land_small(&wh, "hr", "customers").await;
    land_small(&wh, "hr", "invoices").await;
    let s = TestServer::serve(dir, &wh, |_| {}).await;
    let fin = s.client_as(FINANCE).await;

    let forms = [
        "SELECT count(*) FROM as_of('{}', now())",
        "SELECT count(*) FROM changes('{}', now() - INTERVAL '30 days')",
        "SELECT count(*) FROM {} FOR SYSTEM_TIME AS OF now()",
    ];
    for form in forms {
        let absent = failure(&fin, &form.replace("{}", "nosuch")).await;
        assert_eq!(absent.0, "42P01", "{form}: {}", absent.1);
        // `products` is unique warehouse-wide but outside finance's grants;
        // `customers` is ambiguous, in two schemas finance cannot read.
        for hidden in ["products", "customers"] {
            let sql = form.replace("{}", hidden);
            let (code, message) = failure(&fin, &sql).await;
            let as_absent = absent.1.replace("nosuch", hidden);
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("42P01", as_absent.as_str()),
                "{sql}"
            );
            assert!(!message.contains("hr."), "{sql}: {message}");
        }
    }
    // A qualified name outside the grants is refused as in `FROM` (which names it
    // the same way): nothing is revealed that `SELECT * FROM invoicing.products`
    // does not already say.
    let (code, _) = failure(
        &fin,
        "SELECT count(*) FROM as_of('invoicing.products', now())",
    )
    .await;
    assert_eq!(code, "42501");
    // Unique among finance's tables: resolves (the history of a filtered table).
    let n = one(
        &fin,
        "SELECT count(*) FROM as_of('invoices', now() + INTERVAL '1 day')",
    )
    .await;
    assert_eq!(
        n,
        one(&fin, "SELECT count(*) FROM invoicing.invoices").await
    );
    // An admin sees both, so the name is ambiguous for them.
    let admin = s.client_as(ADMIN).await;
    let (code, message) = failure(&admin, "SELECT count(*) FROM as_of('invoices', now())").await;
    assert!(
        message.contains("hr.invoices") && message.contains("invoicing.invoices"),
        "{code}: {message}"
    );
    s.stop().await;
}

/// EXPLAIN (plain or ANALYZE) over a table the role reads through a mask or row
/// filter is refused: its plan would print the filter and mask expressions, and
/// ANALYZE the number of rows the filter hid. Other tables explain as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_nothing_a_row_filter_hides() {
    let s = TestServer::start().await;
    let fin = s.client_as(FINANCE).await;
    for sql in [
        "EXPLAIN ANALYZE SELECT count(*) FROM invoicing.invoices",
        "EXPLAIN SELECT * FROM invoicing.invoices",
        "EXPLAIN VERBOSE SELECT id FROM invoicing.invoices WHERE total > 0",
        "EXPLAIN ANALYZE SELECT count(*) FROM invoicing.payments p \
         WHERE p.invoice_id IN (SELECT id FROM invoicing.invoices)",
        "EXPLAIN ANALYZE SELECT count(*) FROM as_of('invoicing.invoices', now())",
        "EXPLAIN ANALYZE SELECT count(*) FROM invoicing_history.invoices",
    ] {
        let (code, message) = failure(&fin, sql).await;
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(
            message.contains("invoicing.invoices") && !message.contains("draft"),
            "{sql}: {message}"
        );
    }
    // Unguarded tables, and the same statement by a role without the filter.
    let plan = fin
        .simple_query("EXPLAIN ANALYZE SELECT count(*) FROM invoicing.payments")
        .await
        .unwrap();
    assert!(!plan.is_empty());
    let admin = s.client_as(ADMIN).await;
    admin
        .simple_query("EXPLAIN ANALYZE SELECT count(*) FROM invoicing.invoices")
        .await
        .unwrap();
    // Still answers queries afterwards.
    assert_ne!(
        one(&fin, "SELECT count(*) FROM invoicing.invoices").await,
        ""
    );
    s.stop().await;
}
