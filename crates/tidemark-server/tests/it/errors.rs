//! Errors are typed end to end: each failure reaches the client with the SQLSTATE of
//! its kind (decided from the error's variant, not its wording); time travel names no
//! table outside the caller's grants; EXPLAIN shows nothing a mask or row filter
//! hides.

use tokio_postgres::Client;

use crate::support::{TestServer, FINANCE, USER};

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
