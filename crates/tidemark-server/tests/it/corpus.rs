//! The wire answers what `tidemark sql` answers: a corpus of analyst queries
//! (window functions, CASE with scalar subqueries, CTEs, date arithmetic, NULLs,
//! numeric scale) run in-process through [`tidemark_query::Engine`] and over the
//! wire with tokio-postgres, simple and extended protocol, on the same warehouse;
//! the results (column types and rows) must be equal. The `.slt` files already run
//! through both paths (`slt_wire`); these are the queries analysts write that the
//! files do not, in particular the shapes the client-compatibility rewrites of the
//! endpoint look for (scalar subqueries, wildcards, unqualified columns).

use std::sync::Arc;

use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::support::{TestServer, USER};
use crate::wire_db::{Protocol, WireDb};

// The in-process adapter of tidemark-query's `.slt` runner, which `wire_db`
// normalises the wire's text to.
#[path = "../../../tidemark-query/tests/slt/engine_db.rs"]
mod engine_db;

const CORPUS: &[&str] = &[
    // window functions
    "SELECT customer_id, id, total, \
       row_number() OVER (PARTITION BY customer_id ORDER BY issued_at, id) AS n, \
       sum(total) OVER (PARTITION BY customer_id ORDER BY issued_at, id) AS running \
     FROM invoicing.invoices ORDER BY customer_id, id LIMIT 40",
    "SELECT id, total, lag(total) OVER (ORDER BY id) AS prev, \
       total - lag(total) OVER (ORDER BY id) AS delta, \
       rank() OVER (ORDER BY total DESC) AS r \
     FROM invoicing.invoices ORDER BY id LIMIT 30",
    // CASE with scalar subqueries: through a derived table (uncorrelated), ...
    "SELECT id, CASE WHEN total > 0 \
       THEN (SELECT x.m FROM (SELECT max(total) AS m FROM invoicing.invoices) x) \
       ELSE 0 END AS top \
     FROM invoicing.invoices ORDER BY id LIMIT 5",
    // ... aggregated and uncorrelated, ...
    "SELECT id, CASE WHEN total > (SELECT avg(total) FROM invoicing.invoices) \
       THEN 'above' ELSE 'below' END AS side \
     FROM invoicing.invoices ORDER BY id LIMIT 20",
    // ... and correlated, aggregated.
    "SELECT i.id, CASE WHEN i.status = 'paid' \
       THEN (SELECT sum(p.amount) FROM invoicing.payments p WHERE p.invoice_id = i.id) END AS paid \
     FROM invoicing.invoices i ORDER BY i.id LIMIT 20",
    // scalar subqueries in the select list, the table unaliased
    "SELECT (SELECT max(invoices.total) FROM invoicing.invoices) AS top, \
       (SELECT count(*) FROM invoicing.payments) AS payments",
    // a qualified wildcard with an unqualified column of another table
    "SELECT i.*, c.name FROM invoicing.invoices i \
     JOIN invoicing.customers c ON c.id = i.customer_id \
     WHERE country = 'DE' ORDER BY i.id LIMIT 5",
    // CTEs
    "WITH spend AS (SELECT customer_id, sum(total) AS s, count(*) AS n \
                    FROM invoicing.invoices GROUP BY customer_id) \
     SELECT c.country, count(*) AS customers, sum(spend.s) AS total, max(spend.n) AS most \
     FROM spend JOIN invoicing.customers c ON c.id = spend.customer_id \
     GROUP BY c.country ORDER BY c.country",
    "WITH paid AS (SELECT invoice_id, sum(amount) AS a FROM invoicing.payments GROUP BY invoice_id), \
          open AS (SELECT i.id, i.total - coalesce(p.a, 0) AS due \
                   FROM invoicing.invoices i LEFT JOIN paid p ON p.invoice_id = i.id) \
     SELECT count(*) FILTER (WHERE due > 0) AS open, sum(due) AS outstanding FROM open",
    // date arithmetic
    "SELECT id, issued_at, issued_at + INTERVAL '30 days' AS plus30, \
       CAST(issued_at AS DATE) AS d, date_trunc('month', issued_at) AS month, \
       extract(dow FROM issued_at) AS dow, due_date - INTERVAL '1 day' AS day_before \
     FROM invoicing.invoices ORDER BY id LIMIT 10",
    "SELECT date_trunc('week', issued_at) AS week, count(*) AS n, sum(total) AS total \
     FROM invoicing.invoices WHERE issued_at >= TIMESTAMP '2000-01-01 00:00:00' \
     GROUP BY 1 ORDER BY 1",
    // NULL handling
    "SELECT count(due_date) AS with_due, count(*) AS all_rows, \
       sum(CASE WHEN due_date IS NULL THEN 1 ELSE 0 END) AS without_due, \
       count(DISTINCT nullif(status, 'paid')) AS not_paid_statuses \
     FROM invoicing.invoices",
    "SELECT CAST(NULL AS INT) + 1 AS a, 'x' || CAST(NULL AS VARCHAR) AS b, \
       coalesce(CAST(NULL AS VARCHAR), 'fallback') AS c, \
       CAST(NULL AS INT) IS NOT DISTINCT FROM CAST(NULL AS INT) AS d",
    "SELECT i.id, p.amount FROM invoicing.invoices i \
     LEFT JOIN invoicing.payments p ON p.invoice_id = i.id \
     ORDER BY i.id, p.amount NULLS FIRST LIMIT 25",
    // numeric scale
    "SELECT sum(total) AS s, avg(total) AS a, round(avg(total), 2) AS r, \
       min(total) AS lo, max(total) AS hi, CAST(sum(total) AS DECIMAL(20,4)) AS wide \
     FROM invoicing.invoices",
    "SELECT id, quantity, unit_price, quantity * unit_price AS computed, amount, \
       amount / quantity AS per_unit, unit_price * 1.5 AS marked_up \
     FROM invoicing.invoice_lines ORDER BY id LIMIT 15",
    // grouping, HAVING, set operations, strings
    "SELECT status, currency, count(*) AS n, sum(total) AS total FROM invoicing.invoices \
     GROUP BY status, currency HAVING count(*) > 1 ORDER BY status, currency",
    "SELECT 'invoice' AS kind, count(*) AS n FROM invoicing.invoices \
     UNION ALL SELECT 'payment', count(*) FROM invoicing.payments ORDER BY kind",
    "SELECT upper(country) AS c, length(min(name)) AS l, count(DISTINCT name) AS names \
     FROM invoicing.customers GROUP BY upper(country) ORDER BY c",
];

/// How a result compares: its column types and rows, or that it failed.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows(Vec<DefaultColumnType>, Vec<Vec<String>>),
    Statement,
    Failed(String),
}

/// The one known difference in column types: PostgreSQL has no unsigned integers,
/// so arrow-pg sends UInt64 (`row_number()`, `rank()`, `count(*)` in some plans) as
/// numeric, which the wire adapter heads `R` where the in-process one says `I`.
/// The values are still compared as they are.
fn same_types(want: &[DefaultColumnType], got: &[DefaultColumnType]) -> bool {
    want.len() == got.len()
        && want.iter().zip(got).all(|(w, g)| {
            w == g
                || matches!(
                    (w, g),
                    (DefaultColumnType::Integer, DefaultColumnType::FloatingPoint)
                )
        })
}

fn same(want: &Answer, got: &Answer) -> bool {
    match (want, got) {
        (Answer::Rows(wt, wr), Answer::Rows(gt, gr)) => same_types(wt, gt) && wr == gr,
        _ => want == got,
    }
}

fn answer<E: std::fmt::Display>(r: Result<DBOutput<DefaultColumnType>, E>) -> Answer {
    match r {
        Ok(DBOutput::Rows { types, rows }) => Answer::Rows(types, rows),
        Ok(_) => Answer::Statement,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_queries_answer_the_same_over_the_wire_and_in_process() {
    let s = TestServer::start().await;
    let wh =
        tidemark_lake::Warehouse::new(s.path("warehouse").to_str().unwrap(), Default::default())
            .unwrap();
    let mut local = engine_db::EngineDb {
        engine: Arc::new(tidemark_query::Engine::open(&wh).await.unwrap()),
    };
    let mut differences = Vec::new();
    for protocol in [Protocol::Simple, Protocol::Extended] {
        let mut wire = WireDb {
            client: s.client_as(USER).await,
            protocol,
        };
        for sql in CORPUS {
            let want = answer(local.run(sql).await);
            assert!(
                matches!(want, Answer::Rows(..)),
                "the corpus is of queries `tidemark sql` answers: {sql}\n{want:?}"
            );
            let got = answer(wire.run(sql).await);
            if !same(&want, &got) {
                differences.push(format!(
                    "{sql}\n  ({protocol:?} protocol)\n  in-process: {want:?}\n  wire:       {got:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} answers differ between the wire and `tidemark sql`:\n\n{}",
        differences.len(),
        differences.join("\n\n")
    );
    s.stop().await;
}
