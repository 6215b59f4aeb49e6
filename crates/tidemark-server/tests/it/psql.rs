//! psql: catalog commands, queries, time travel, read-only errors.

use crate::support::{text, TestServer, PASSWORD, USER};

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
    let out = s
        .psql_error(USER, "SET datafusion.execution.batch_size = 1")
        .await;
    assert!(out.contains("42501"), "{out}");
    s.stop().await;
}

/// psql's `\copy (query) to file` (COPY … TO STDOUT) and `\x`: the file holds what
/// the query returns, in CSV with a header or in COPY's text format; a role's grants
/// and masks hold for COPY too; COPY to a server file is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_to_file_and_expanded_display() {
    let s = TestServer::start().await;
    let csv = s.path("invoices.csv");
    let tsv = s.path("lines.tsv");
    let query = "SELECT id, status, total, due_date FROM invoicing.invoices ORDER BY id LIMIT 50";
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-c",
                &format!("\\copy ({query}) to '{}' with csv header", csv.display()),
                "-c",
                &format!("\\copy invoicing.invoice_lines to '{}'", tsv.display()),
            ],
        )
        .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("COPY 50"), "{out}");
    // The same rows as a SELECT, in psql's own CSV output.
    let o = s.psql("", PASSWORD, &["--csv", "-c", query]).await;
    assert!(o.status.success(), "{}", text(&o));
    let copied = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        copied,
        String::from_utf8_lossy(&o.stdout),
        "COPY CSV vs SELECT"
    );
    assert!(copied.starts_with("id,status,total,due_date\n"), "{copied}");
    // Text format: tab-separated, one line per row.
    let lines = std::fs::read_to_string(&tsv).unwrap();
    let o = s
        .psql(
            "",
            PASSWORD,
            &["-At", "-c", "SELECT count(*) FROM invoicing.invoice_lines"],
        )
        .await;
    assert_eq!(
        lines.lines().count().to_string(),
        String::from_utf8_lossy(&o.stdout).trim()
    );
    // The 7 source columns and _ingest_ts, _source_ts, _op.
    assert!(
        lines.lines().all(|l| l.split('\t').count() == 10),
        "{lines:.300}"
    );

    // \x: one "-[ RECORD n ]-" block per row.
    let o = s
        .psql(
            "",
            PASSWORD,
            &[
                "-c",
                r"\x",
                "-c",
                "SELECT id, total FROM invoicing.invoices ORDER BY id LIMIT 2",
            ],
        )
        .await;
    let out = text(&o);
    assert!(
        out.contains("-[ RECORD 1 ]") && out.contains("-[ RECORD 2 ]"),
        "{out}"
    );

    // Finance: COPY of a table outside the grants is refused, and the mask holds.
    let out = s
        .psql_error(
            crate::support::FINANCE,
            &format!(
                "\\copy invoicing.customers to '{}'",
                s.path("c.txt").display()
            ),
        )
        .await;
    assert!(out.contains("42501"), "{out}");
    let masked = s.path("masked.csv");
    let o = s
        .psql_as(
            crate::support::FINANCE,
            "",
            PASSWORD,
            &[
                "-c",
                &format!(
                    "\\copy (SELECT customer_id FROM invoicing.invoices) to '{}' with csv",
                    masked.display()
                ),
            ],
        )
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let masked = std::fs::read_to_string(&masked).unwrap();
    assert!(
        !masked.is_empty() && masked.lines().all(str::is_empty),
        "customer_id is masked to NULL for finance: {masked:.200}"
    );
    // COPY to a file on the server writes: refused as a write, as in `tidemark sql`.
    let out = s
        .psql_error(USER, "COPY invoicing.invoices TO '/tmp/x.csv'")
        .await;
    assert!(out.contains("25006") && out.contains("read-only"), "{out}");
    s.stop().await;
}

/// A source's current table is a table to every client however it is stored: once
/// `tidemark run` streams it, it is a merge-on-read base plus the history tail, and
/// still lists as a BASE TABLE (information_schema), relkind `r` (pg_class) and in
/// psql's `\dt`, where SQL tools look for tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tables_are_listed_as_tables() {
    use tidemark_lake::{stored_schema, TableKind, TableWriter};

    let dir = tempfile::tempdir().unwrap();
    let wh = crate::support::demo_warehouse(&dir.path().join("warehouse")).await;
    // What `tidemark run` does before it streams a table.
    let url = wh.table_url("invoicing", "invoices", TableKind::History);
    let (hist, _) = wh.delta_table(&url).await.unwrap();
    let schema = std::sync::Arc::new(stored_schema(&hist).expect("a tidemark table"));
    let mut writer = TableWriter::open(&wh, schema).await.unwrap();
    writer.start_merge_on_read().await.unwrap();

    // In-process, as `tidemark sql` lists it.
    let engine = tidemark_query::Engine::open(&wh).await.unwrap();
    let b = engine
        .query(
            "SELECT table_type FROM information_schema.tables \
             WHERE table_schema = 'invoicing' AND table_name = 'invoices'",
        )
        .await
        .unwrap();
    let shown = deltalake::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(shown.contains("BASE TABLE"), "tidemark sql:\n{shown}");

    let s = TestServer::serve(dir, &wh, |_| {}).await;
    for user in [USER, crate::support::FINANCE] {
        let c = s.client_as(user).await;
        let row = c
            .query_one(
                "SELECT table_type FROM information_schema.tables \
                 WHERE table_schema = 'invoicing' AND table_name = 'invoices'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "BASE TABLE", "{user}");
        let row = c
            .query_one(
                "SELECT c.relkind FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'invoicing' AND c.relname = 'invoices'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "r", "{user}");
    }
    let o = s.psql("", PASSWORD, &["-c", r"\dt invoicing.*"]).await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" invoices ") && l.contains(" table ")),
        "\\dt should list the streamed table invoices:\n{out}"
    );
    s.stop().await;
}
