//! psql: catalog commands, queries, time travel, read-only errors.

use crate::support::{text, TestServer, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_describes_and_queries() {
    let s = TestServer::start().await;
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-c",
                r"\dt invoicing.*",
                "-c",
                r"\dn",
                "-c",
                r"\d invoicing.invoices",
                "-c",
                "SELECT count(*) AS n FROM invoicing.invoices",
            ],
        )
        .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // \dt lists the demo's tables in schema invoicing.
    for t in [
        "invoices",
        "invoice_lines",
        "payments",
        "customers",
        "products",
    ] {
        assert!(out.contains(t), "\\dt should list {t}:\n{out}");
    }
    // \dn lists the current and history schemas.
    assert!(out.contains("invoicing_history"), "{out}");
    // \d shows columns with PostgreSQL type names.
    assert!(out.contains("due_date") && out.contains("date"), "{out}");
    assert!(out.contains("total") && out.contains("numeric"), "{out}");
    assert!(out.contains("_ingest_ts"), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_time_travel_matches_history() {
    let s = TestServer::start().await;
    // A month ago the generator had not started: nothing existed yet. Ten days ago
    // fewer invoices existed than now. Both answered through the wire exactly as
    // `tidemark sql` answers them.
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-At",
                "-c",
                "SELECT (SELECT count(*) FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '10 days') \
                 < (SELECT count(*) FROM invoicing.invoices)",
                "-c",
                "SELECT count(*) FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '40 days'",
                "-c",
                "SELECT (SELECT count(*) FROM as_of('invoicing.invoices', now())) \
                 = (SELECT count(*) FROM invoicing.invoices)",
            ],
        )
        .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["t", "0", "t"], "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_statements_and_read_only() {
    let s = TestServer::start().await;
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-At",
                "-c",
                "SELECT version()",
                "-c",
                "SHOW server_version",
                "-c",
                "BEGIN",
                "-c",
                "SET application_name = 'report'",
                "-c",
                "SHOW application_name",
                "-c",
                "SET extra_float_digits = 3",
                "-c",
                "SET statement_timeout = '5s'",
                "-c",
                "SHOW statement_timeout",
                "-c",
                "COMMIT",
                "-c",
                "SELECT current_user",
            ],
        )
        .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let ver = env!("CARGO_PKG_VERSION");
    assert_eq!(
        lines,
        [
            format!("PostgreSQL 16.6 on x86_64-pc-linux-gnu, compiled by rustc, 64-bit (tidemark {ver})").as_str(),
            format!("16.6 (tidemark {ver})").as_str(),
            "BEGIN",
            "SET",
            "report",
            "SET",
            "SET",
            "5s",
            "COMMIT",
            "alice",
        ],
        "{out}"
    );

    for (sql, kind) in [
        ("INSERT INTO invoicing.invoices (id) VALUES (1)", "INSERT"),
        ("DELETE FROM invoicing.invoices", "DELETE"),
        ("CREATE TABLE x (a int)", "CREATE TABLE"),
        ("DROP TABLE invoicing.invoices", "DROP"),
    ] {
        let o = s
            .psql("", PASSWORD, &["-v", "VERBOSITY=verbose", "-c", sql])
            .await;
        let out = text(&o);
        assert!(!o.status.success(), "{sql} should fail:\n{out}");
        assert!(
            out.contains("25006")
                && out.contains(&format!("cannot execute {kind} in a read-only transaction")),
            "{sql}:\n{out}"
        );
    }
    // Engine settings are not a session's to change.
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-v",
                "VERBOSITY=verbose",
                "-c",
                "SET datafusion.execution.batch_size = 1",
            ],
        )
        .await;
    let out = text(&o);
    assert!(!o.status.success() && out.contains("42501"), "{out}");
    s.stop().await;
}
