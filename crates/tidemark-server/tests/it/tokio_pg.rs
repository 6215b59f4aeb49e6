//! tokio-postgres: extended protocol, prepared statements with parameters, binary
//! results.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_parameters_and_binary_results() {
    let s = TestServer::start().await;
    let c = s.client().await;

    // tokio-postgres asks for binary results on every column.
    let stmt = c
        .prepare(
            "SELECT id, total, due_date, _ingest_ts, status = 'paid' AS paid \
             FROM invoicing.invoices WHERE id = $1",
        )
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::INT8]);
    let first: i64 = c
        .query_one("SELECT min(id) FROM invoicing.invoices", &[])
        .await
        .unwrap()
        .get(0);
    let row = c.query_one(&stmt, &[&first]).await.unwrap();
    assert_eq!(row.get::<_, i64>("id"), first);
    let total: Decimal = row.get("total");
    assert!(total >= Decimal::ZERO, "{total}");
    assert_eq!(total.scale(), 2, "numeric keeps its scale: {total}");
    let due: NaiveDate = row.get("due_date");
    assert!(due.format("%Y").to_string().parse::<i32>().unwrap() >= 2000);
    let ingested: DateTime<Utc> = row.get("_ingest_ts");
    assert!(ingested <= Utc::now());
    let _paid: bool = row.get("paid");

    // The same statement again with another parameter: rebinding works.
    let second: i64 = c
        .query_one("SELECT max(id) FROM invoicing.invoices", &[])
        .await
        .unwrap()
        .get(0);
    let rows = c.query(&stmt, &[&second]).await.unwrap();
    assert_eq!(rows.len(), 1);

    // bytea and bool, binary, from literals.
    let row = c
        .query_one("SELECT X'DEADBEEF' AS b, true AS t, false AS f", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>("b"), vec![0xde, 0xad, 0xbe, 0xef]);
    assert!(row.get::<_, bool>("t"));
    assert!(!row.get::<_, bool>("f"));

    // A parameter in a time-travel query.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '10 days' WHERE id >= $1",
            &[&first],
        )
        .await
        .unwrap()
        .get(0);
    let now: i64 = c
        .query_one("SELECT count(*) FROM invoicing.invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n < now, "as of 10 days ago {n}, now {now}");

    // Read-only over the extended protocol too.
    let err = c
        .execute("UPDATE invoicing.invoices SET status = 'x'", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25006", "{err:?}");

    // Transactions are accepted (drivers with autocommit off send them).
    c.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_own_settings() {
    let s = TestServer::start().await;
    let a = s.client().await;
    let b = s.client().await;
    a.batch_execute("SET application_name = 'a-report'; SET TimeZone = 'Europe/Paris'")
        .await
        .unwrap();
    assert_eq!(show(&a, "application_name").await, "a-report");
    assert_eq!(show(&a, "timezone").await, "Europe/Paris");
    assert_ne!(show(&b, "application_name").await, "a-report");
    assert_eq!(show(&b, "timezone").await, "UTC");
    s.stop().await;
}

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    let m = c.simple_query(&format!("SHOW {name}")).await.unwrap();
    m.iter()
        .find_map(|msg| match msg {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("SHOW {name} returned no row: {m:?}"))
}

/// A connection over `max_connections` gets PostgreSQL's "too many clients" error
/// (53300), not a closed socket; a slot freed is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_53300() {
    let s = TestServer::start_with(|o| o.max_connections = 1).await;
    let first = s.client().await;
    first.simple_query("SELECT 1").await.unwrap();
    let err = tokio_postgres::connect(
        &s.conninfo(crate::support::USER, crate::support::PASSWORD),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("a second connection is refused");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS),
        "{err}"
    );
    drop(first);
    // The slot comes back once the first connection has closed.
    let mut again = None;
    for _ in 0..50 {
        if let Ok((c, conn)) = tokio_postgres::connect(
            &s.conninfo(crate::support::USER, crate::support::PASSWORD),
            tokio_postgres::NoTls,
        )
        .await
        {
            tokio::spawn(conn);
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = again.expect("a slot is free again");
    again.simple_query("SELECT 1").await.unwrap();
    s.stop().await;
}

/// A cancel request (what psql sends on Ctrl-C) stops a scan that is streaming rows,
/// with 57014, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_streaming_scan() {
    use futures::StreamExt;
    let s = TestServer::start().await;
    let c = s.client().await;
    let lines: i64 = c
        .query_one("SELECT count(*) FROM invoicing.invoice_lines", &[])
        .await
        .unwrap()
        .get(0);
    let total = lines * lines * lines;
    let params: [&str; 0] = [];
    let rows = c
        .query_raw(
            "SELECT a.id, b.id, c.id FROM invoicing.invoice_lines a \
             CROSS JOIN invoicing.invoice_lines b CROSS JOIN invoicing.invoice_lines c",
            params,
        )
        .await
        .unwrap();
    futures::pin_mut!(rows);
    let mut n: i64 = 0;
    while n < 1000 {
        rows.next().await.unwrap().unwrap();
        n += 1;
    }
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    // What was in flight (socket buffers, one batch) still arrives; far less than
    // the whole result.
    let err = loop {
        match rows.next().await {
            Some(Ok(_)) if n > 5_000_000 => {
                panic!("{n} of {total} rows arrived after the cancel: it did not stop the scan")
            }
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => break e,
            None => panic!("the scan ran to its end ({n} of {total} rows) despite the cancel"),
        }
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014", "{err:?}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("user request"),
        "{err:?}"
    );
    assert!(n < total);
    let one: i64 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    s.stop().await;
}

/// A statement that needs more memory than `query_memory` allows fails with 53200
/// naming the setting; the session and other statements carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_cleanly() {
    let s = TestServer::start_with(|o| o.query_memory = Some(64 * 1024)).await;
    let c = s.client().await;
    let err = c
        .simple_query(
            "SELECT a.id, count(*) FROM invoicing.invoice_lines a \
             JOIN invoicing.invoice_lines b ON a.invoice_id = b.invoice_id GROUP BY a.id ORDER BY 2 DESC",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53200", "{err:?}");
    assert!(db.message().contains("query_memory_mb"), "{}", db.message());
    let n: i64 = c
        .query_one("SELECT count(*) FROM invoicing.payments", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    s.stop().await;
}
