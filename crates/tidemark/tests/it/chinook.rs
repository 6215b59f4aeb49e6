//! A real public schema (../shared/datasets/chinook): mixed-case names, utf8mb3
//! NVARCHAR, DATETIME, DECIMAL(10,2), foreign keys.

use std::path::PathBuf;

use crate::support::{ok, server_url, TestDb};

fn script(db: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/chinook/Chinook_MySql.sql");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the checkout)",
            path.display()
        )
    });
    text.replace("`Chinook`", &format!("`{db}`"))
}

#[tokio::test]
async fn chinook_snapshots_with_snake_case_names() {
    let db = TestDb::new("Chinook").await;
    // The script creates and fills its database; run it with the mariadb client.
    let url = server_url();
    let hostport = url.trim_start_matches("mysql://root@");
    let (host, port) = hostport.split_once(':').unwrap();
    let mut child = std::process::Command::new("mariadb")
        .args(["-h", host, "-P", port.trim_end_matches('/'), "-u", "root"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mariadb client");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script(&db.name).as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let config = db.config("");
    ok(db.tidemark(&config, &["snapshot"]));
    let schema = db.name.to_lowercase();
    for (table, source_table) in [
        ("invoice", "Invoice"),
        ("invoice_line", "InvoiceLine"),
        ("customer", "Customer"),
        ("track", "Track"),
        ("playlist_track", "PlaylistTrack"),
    ] {
        let source = db
            .query_i64(&format!("SELECT COUNT(*) FROM `{source_table}`"))
            .await;
        let landed = db
            .sql_i64(&format!("SELECT COUNT(*) FROM {schema}.{table}"))
            .await;
        let history = db
            .sql_i64(&format!(
                "SELECT COUNT(*) FROM {schema}_history.{table} WHERE _is_current"
            ))
            .await;
        assert_eq!((landed, history), (source, source), "{table}");
    }
    // DECIMAL(10,2) sums exactly; column names are snake_case.
    let source_cents = db
        .query_i64("SELECT CAST(SUM(UnitPrice * Quantity) * 100 AS SIGNED) FROM InvoiceLine")
        .await;
    let landed_cents = db
        .sql_i64(&format!(
            "SELECT CAST(SUM(unit_price * quantity) * 100 AS BIGINT) FROM {schema}.invoice_line"
        ))
        .await;
    assert_eq!(source_cents, landed_cents);
    let names = db
        .sql(&format!(
            "SELECT first_name, last_name FROM {schema}.customer WHERE customer_id = 1"
        ))
        .await;
    let row = deltalake::arrow::util::pretty::pretty_format_batches(&names)
        .unwrap()
        .to_string();
    assert!(row.contains("Luís") && row.contains("Gonçalves"), "{row}");
    db.drop().await;
}
