//! Roles and grants: the shipped `finance` role (examples/tidemark.toml) reads
//! invoices (drafts filtered out, customer masked), invoice lines and payments,
//! current and history, and nothing else: every other table is absent from the
//! catalogs and refused with SQLSTATE 42501 however a query reaches it. Expected
//! values come from the same query run by an admin with the role's filter and mask
//! spelled out, so the test checks the role's view, not just that something answered.

use std::time::Duration;

use tokio_postgres::Client;

use crate::support::{text, TestServer, ADMIN, FINANCE, PASSWORD, USER};

/// A query that must succeed; its single value as text.
async fn one(c: &Client, sql: &str) -> String {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Every value of the first column, as text.
async fn column(c: &Client, sql: &str) -> Vec<String> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .collect()
}

/// A query that must be refused with 42501 naming `object`.
async fn denied(c: &Client, sql: &str, object: &str) {
    let err = c
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql}: finance must be refused"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: {err:?}"));
    assert_eq!(db.code().code(), "42501", "{sql}: {}", db.message());
    assert!(
        db.message().contains(object),
        "{sql}: the error should name {object}: {}",
        db.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_reads_invoice_data_and_nothing_else() {
    let s = TestServer::start().await;
    let fin = s.client_as(FINANCE).await;
    let admin = s.client_as(ADMIN).await;

    // --- inside the grants, filtered and masked (cases 1-12) ---
    let cases_equal = [
        // 1. current rows: drafts filtered out
        (
            "SELECT count(*) FROM invoicing.invoices",
            "SELECT count(*) FROM invoicing.invoices WHERE status <> 'draft'",
        ),
        // 2. the masked column reads NULL everywhere
        ("SELECT count(customer_id) FROM invoicing.invoices", "SELECT 0"),
        // 3. a predicate on the masked column cannot find the real value
        (
            "SELECT count(*) FROM invoicing.invoices WHERE customer_id = (SELECT 1)",
            "SELECT 0",
        ),
        // 4. an unfiltered table reads whole
        (
            "SELECT count(*) FROM invoicing.invoice_lines",
            "SELECT count(*) FROM invoicing.invoice_lines",
        ),
        // 5. aggregates
        (
            "SELECT sum(amount) FROM invoicing.payments",
            "SELECT sum(amount) FROM invoicing.payments",
        ),
        // 6. a join of the three, through the filter
        (
            "SELECT count(*) FROM invoicing.invoices i JOIN invoicing.invoice_lines l ON l.invoice_id = i.id \
             JOIN invoicing.payments p ON p.invoice_id = i.id",
            "SELECT count(*) FROM invoicing.invoices i JOIN invoicing.invoice_lines l ON l.invoice_id = i.id \
             JOIN invoicing.payments p ON p.invoice_id = i.id WHERE i.status <> 'draft'",
        ),
        // 7. history, filtered per version
        (
            "SELECT count(*) FROM invoicing_history.invoices",
            "SELECT count(*) FROM invoicing_history.invoices WHERE status <> 'draft'",
        ),
        // 8. time travel over a filtered table
        (
            "SELECT count(*) FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '10 days'",
            "SELECT count(*) FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '10 days' WHERE status <> 'draft'",
        ),
        // 9. as_of() and a masked column in the past
        (
            "SELECT count(customer_id) FROM as_of('invoicing.invoices', now() - INTERVAL '10 days')",
            "SELECT 0",
        ),
        // 10. changes() over an unfiltered table
        (
            "SELECT count(*) FROM changes('invoicing.payments', now() - INTERVAL '10 days')",
            "SELECT count(*) FROM changes('invoicing.payments', now() - INTERVAL '10 days')",
        ),
        // 11. VERSION AS OF
        (
            "SELECT count(*) FROM invoicing.invoice_lines VERSION AS OF 1",
            "SELECT count(*) FROM invoicing.invoice_lines VERSION AS OF 1",
        ),
        // 12. a CTE and a subquery inside the grants
        (
            "WITH paid AS (SELECT invoice_id, sum(amount) AS a FROM invoicing.payments GROUP BY invoice_id) \
             SELECT count(*) FROM invoicing.invoices WHERE id IN (SELECT invoice_id FROM paid)",
            "WITH paid AS (SELECT invoice_id, sum(amount) AS a FROM invoicing.payments GROUP BY invoice_id) \
             SELECT count(*) FROM invoicing.invoices WHERE id IN (SELECT invoice_id FROM paid) AND status <> 'draft'",
        ),
    ];
    for (finance_sql, admin_sql) in cases_equal {
        let got = one(&fin, finance_sql).await;
        let want = one(&admin, admin_sql).await;
        assert_eq!(got, want, "finance: {finance_sql}\nadmin: {admin_sql}");
    }
    // The filter does hide something in this data set, and the mask hides values.
    let drafts = one(
        &admin,
        "SELECT count(*) FROM invoicing.invoices WHERE status = 'draft'",
    )
    .await;
    assert_ne!(drafts, "0", "the demo data should have draft invoices");
    assert_ne!(
        one(&admin, "SELECT count(customer_id) FROM invoicing.invoices").await,
        "0"
    );

    // 13. a prepared statement with a parameter: a draft's id finds nothing.
    let draft_id: i64 = admin
        .query_one(
            "SELECT min(id) FROM invoicing.invoices WHERE status = 'draft'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let open_id: i64 = admin
        .query_one(
            "SELECT min(id) FROM invoicing.invoices WHERE status <> 'draft'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let stmt = fin
        .prepare("SELECT id, customer_id FROM invoicing.invoices WHERE id = $1")
        .await
        .unwrap();
    assert!(fin.query(&stmt, &[&draft_id]).await.unwrap().is_empty());
    let row = fin.query_one(&stmt, &[&open_id]).await.unwrap();
    assert_eq!(row.get::<_, Option<i64>>("customer_id"), None);

    // --- the catalogs show only the grants (cases 14-19) ---
    let granted = [
        "invoicing.invoice_lines",
        "invoicing.invoices",
        "invoicing.payments",
        "invoicing_history.invoice_lines",
        "invoicing_history.invoices",
        "invoicing_history.payments",
    ];
    // 14. information_schema.tables
    let tables = column(
        &fin,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1",
    )
    .await;
    assert_eq!(tables, granted, "information_schema.tables for finance");
    // 15. information_schema.columns
    let cols = column(
        &fin,
        "SELECT DISTINCT table_name FROM information_schema.columns \
         WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1",
    )
    .await;
    assert_eq!(cols, ["invoice_lines", "invoices", "payments"]);
    // 16. schemata: no tidemark, no hidden time-travel schemas
    let schemas = column(
        &fin,
        "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
    )
    .await;
    for s in &schemas {
        assert!(
            !s.starts_with("tidemark") && !s.starts_with("__"),
            "finance sees schema {s}: {schemas:?}"
        );
    }
    // 17. pg_class
    let rels = column(
        &fin,
        "SELECT relname FROM pg_catalog.pg_class WHERE relkind IN ('r', 'v')",
    )
    .await;
    for hidden in ["customers", "products", "audit", "dead_letters"] {
        assert!(
            !rels.iter().any(|r| r == hidden),
            "pg_class shows {hidden}: {rels:?}"
        );
    }
    assert!(rels.iter().any(|r| r == "invoices"), "{rels:?}");
    // 18. pg_namespace
    let ns = column(&fin, "SELECT nspname FROM pg_catalog.pg_namespace").await;
    assert!(
        !ns.iter().any(|n| n == "tidemark" || n.starts_with("__")),
        "{ns:?}"
    );
    // 19. psql \dt and \d
    let o = s
        .psql_as(FINANCE, "", PASSWORD, &["-c", r"\dt invoicing.*"])
        .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("invoices") && out.contains("payments"),
        "{out}"
    );
    assert!(
        !out.contains("customers") && !out.contains("products"),
        "{out}"
    );
    let o = s
        .psql_as(FINANCE, "", PASSWORD, &["-c", r"\d invoicing.customers"])
        .await;
    assert!(
        !text(&o).contains("email"),
        "\\d must not describe a table outside the grants: {}",
        text(&o)
    );

    // --- outside the grants: refused, naming the object (cases 20-33) ---
    let refused = [
        ("SELECT * FROM invoicing.customers", "invoicing.customers"),
        (
            "SELECT i.id FROM invoicing.invoices i JOIN invoicing.customers c ON c.id = i.customer_id",
            "invoicing.customers",
        ),
        (
            "SELECT count(*) FROM invoicing.invoices WHERE customer_id IN (SELECT id FROM invoicing.customers WHERE country = 'DE')",
            "invoicing.customers",
        ),
        (
            "WITH p AS (SELECT * FROM invoicing.products) SELECT count(*) FROM p",
            "invoicing.products",
        ),
        (
            "SELECT (SELECT max(unit_price) FROM invoicing.products) AS m",
            "invoicing.products",
        ),
        (
            "SELECT id FROM invoicing.invoices UNION ALL SELECT id FROM invoicing.customers",
            "invoicing.customers",
        ),
        (
            "SELECT count(*) FROM invoicing.invoices i WHERE EXISTS (SELECT 1 FROM invoicing.customers c WHERE c.id = i.id)",
            "invoicing.customers",
        ),
        (
            "SELECT count(*) FROM invoicing_history.customers",
            "invoicing_history.customers",
        ),
        (
            "SELECT count(*) FROM invoicing.customers FOR SYSTEM_TIME AS OF now() - INTERVAL '10 days'",
            "customers",
        ),
        // as_of() reads history: the error names the history table.
        (
            "SELECT count(*) FROM as_of('invoicing.customers', now())",
            "invoicing_history.customers",
        ),
        (
            "SELECT count(*) FROM changes('invoicing.products', now() - INTERVAL '30 days')",
            "invoicing.products",
        ),
        (
            "SELECT count(*) FROM invoicing.customers VERSION AS OF 1",
            "invoicing.customers",
        ),
        // A row-filtered table's raw change log would show filtered-out rows.
        (
            "SELECT count(*) FROM changes('invoicing.invoices', now() - INTERVAL '30 days')",
            "invoicing.invoices",
        ),
        ("SELECT count(*) FROM tidemark.audit", "tidemark.audit"),
    ];
    for (sql, object) in refused {
        denied(&fin, sql, object).await;
    }
    // 34. a prepared statement is refused at Parse.
    let err = fin
        .prepare("SELECT email FROM invoicing.customers WHERE id = $1")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err:?}");

    // The connection is still usable after refusals.
    assert_ne!(
        one(&fin, "SELECT count(*) FROM invoicing.payments").await,
        ""
    );

    // --- the audit: admin-only, with the refusals recorded ---
    let analyst = s.client_as(USER).await;
    denied(&analyst, "SELECT * FROM tidemark.audit", "tidemark.audit").await;
    let mut recorded = 0;
    for _ in 0..100 {
        recorded = one(
            &admin,
            &format!(
                "SELECT count(*) FROM tidemark.audit WHERE user_name = '{FINANCE}' AND role_name = 'finance' \
                 AND outcome = 'denied' AND sqlstate = '42501'"
            ),
        )
        .await
        .parse()
        .unwrap();
        // 14 refused simple queries and one refused Parse.
        if recorded >= 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, 15, "finance's refusals in tidemark.audit");
    let ok = one(
        &admin,
        &format!(
            "SELECT count(*) FROM tidemark.audit WHERE user_name = '{FINANCE}' AND outcome = 'ok' \
             AND statement = 'SELECT count(*) FROM invoicing.invoice_lines' AND rows = 1 AND duration_us > 0"
        ),
    )
    .await;
    assert_eq!(ok, "1", "a successful statement with its row count");
    s.stop().await;
}

/// `has_table_privilege` and its kin answer from the role's grants, over both
/// protocols (tools such as DBeaver and pgAdmin ask them before they show a table).
/// The warehouse is read-only, so only SELECT (and USAGE on a schema) is ever held;
/// a table the role may not read answers false, whether it exists or not, so the
/// answer names nothing the catalogs hide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privilege_functions_answer_from_the_grants() {
    let s = TestServer::start().await;
    let cases: &[(&str, &[(&str, bool)])] = &[
        (
            FINANCE,
            &[
                ("has_table_privilege('invoicing.invoices', 'SELECT')", true),
                ("has_table_privilege('invoicing.payments', 'select')", true),
                (
                    "has_table_privilege('invoicing.customers', 'SELECT')",
                    false,
                ),
                ("has_table_privilege('invoicing.products', 'SELECT')", false),
                (
                    "has_table_privilege('invoicing_history.invoices', 'SELECT')",
                    true,
                ),
                (
                    "has_table_privilege('invoicing_history.customers', 'SELECT')",
                    false,
                ),
                ("has_table_privilege('tidemark.audit', 'SELECT')", false),
                (
                    "has_table_privilege('invoicing.no_such_table', 'SELECT')",
                    false,
                ),
                ("has_table_privilege('invoicing.invoices', 'INSERT')", false),
                (
                    "has_table_privilege('invoicing.invoices', 'INSERT, SELECT')",
                    true,
                ),
                ("has_table_privilege('pg_catalog.pg_class', 'SELECT')", true),
                (
                    "has_table_privilege('fiona', 'invoicing.customers', 'SELECT')",
                    false,
                ),
                (
                    "has_table_privilege('alice', 'invoicing.customers', 'SELECT')",
                    true,
                ),
                (
                    "has_any_column_privilege('invoicing.customers', 'SELECT')",
                    false,
                ),
                (
                    "has_any_column_privilege('invoicing.invoice_lines', 'SELECT')",
                    true,
                ),
                ("has_schema_privilege('invoicing', 'USAGE')", true),
                ("has_schema_privilege('invoicing_history', 'USAGE')", true),
                ("has_schema_privilege('tidemark', 'USAGE')", false),
                ("has_schema_privilege('invoicing', 'CREATE')", false),
                ("has_schema_privilege('pg_catalog', 'USAGE')", true),
            ],
        ),
        (
            USER,
            &[
                ("has_table_privilege('invoicing.customers', 'SELECT')", true),
                ("has_table_privilege('tidemark.audit', 'SELECT')", false),
                (
                    "has_table_privilege('fiona', 'invoicing.customers', 'SELECT')",
                    false,
                ),
                ("has_schema_privilege('tidemark', 'USAGE')", false),
            ],
        ),
        (
            ADMIN,
            &[
                ("has_table_privilege('invoicing.customers', 'SELECT')", true),
                ("has_table_privilege('tidemark.audit', 'SELECT')", true),
                ("has_schema_privilege('tidemark', 'USAGE')", true),
                (
                    "has_table_privilege('invoicing.customers', 'UPDATE')",
                    false,
                ),
            ],
        ),
    ];
    for (user, checks) in cases {
        let c = s.client_as(user).await;
        for (call, want) in checks.iter() {
            let sql = format!("SELECT {call}");
            let simple = one(&c, &sql).await;
            assert_eq!(
                simple,
                if *want { "t" } else { "f" },
                "{user}: {sql} (simple protocol)"
            );
            let extended: bool = c
                .query_one(sql.as_str(), &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .get(0);
            assert_eq!(extended, *want, "{user}: {sql} (extended protocol)");
        }
    }
    // As tools ask: per row of the catalogs, by name and by oid.
    let fin = s.client_as(FINANCE).await;
    for sql in [
        "SELECT bool_and(has_table_privilege(table_schema || '.' || table_name, 'SELECT')) \
         FROM information_schema.tables WHERE table_schema LIKE 'invoicing%'",
        "SELECT bool_and(has_table_privilege(c.oid, 'SELECT')) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'invoicing'",
    ] {
        assert_eq!(one(&fin, sql).await, "t", "{sql}");
    }
    s.stop().await;
}

/// A SQL model is a table like any other to the grants: built (by an admin's build)
/// from customers and invoices, which finance reads only masked and filtered, it is
/// not finance's to read, in its current or history form, until a grant names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_is_readable_only_where_granted() {
    let dir = tempfile::tempdir().unwrap();
    let wh = crate::support::demo_warehouse(&dir.path().join("warehouse")).await;
    let engine = std::sync::Arc::new(tidemark_query::Engine::open(&wh).await.unwrap());
    let models = tidemark_core::config::ModelsConfig {
        path: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models"),
        ..Default::default()
    };
    let project =
        tidemark_models::Project::load(&models, Some(&engine.landed_names()), "dev").unwrap();
    let report = tidemark_models::build(&wh, engine, &project, &Default::default())
        .await
        .unwrap();
    assert!(report.failures().is_empty(), "{report:#?}");
    let s = TestServer::serve(dir, &wh, |_| {}).await;
    let fin = s.client_as(FINANCE).await;
    for sql in [
        "SELECT * FROM analytics.open_receivables",
        "SELECT * FROM analytics_history.open_receivables",
        "SELECT * FROM analytics.open_receivables FOR SYSTEM_TIME AS OF now()",
    ] {
        denied(&fin, sql, "open_receivables").await;
    }
    // A view model too: it reads invoices unmasked.
    denied(
        &fin,
        "SELECT * FROM analytics.overdue_invoices",
        "overdue_invoices",
    )
    .await;
    // The analyst role is granted everything ("*"), models included.
    let analyst = s.client_as(USER).await;
    let n: i64 = one(&analyst, "SELECT count(*) FROM analytics.open_receivables")
        .await
        .parse()
        .unwrap();
    assert!(n > 0);
}
