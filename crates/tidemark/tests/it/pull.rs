//! Watermark pulls: inserts and updates land in current and history, re-runs add
//! nothing, reconcile finds deletes, and AS OF answers match the source at each pull.

use std::time::Duration;

use deltalake::arrow::util::pretty::pretty_format_batches;

use crate::support::{ok, TestDb};

async fn rows(db: &TestDb, sql: &str) -> String {
    pretty_format_batches(&db.sql(sql).await)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn pulls_updates_versions_and_reconciles_deletes() {
    let db = TestDb::new("pull").await;
    db.exec(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2), \
         updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
    )
    .await;
    db.exec("INSERT INTO items (id, name, price) VALUES (1, 'one', 1.00), (2, 'two', 2.00), (3, 'three', 3.00)").await;
    let config = db.config(&format!(
        "[sources.main.tables.\"{}.items\"]\nwatermark = \"updated_at\"",
        db.name
    ));
    let s = &db.name;

    let out = ok(db.tidemark(&config, &["pull"]));
    assert!(out.contains("first landed by a snapshot"), "{out}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t1 = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;

    db.exec("UPDATE items SET price = 2.50 WHERE id = 2").await;
    db.exec("INSERT INTO items (id, name, price) VALUES (4, 'four', 4.00)")
        .await;
    let out = ok(db.tidemark(&config, &["pull"]));
    assert!(out.contains("changed         2"), "{out}");
    // Re-reading the boundary adds nothing.
    let out = ok(db.tidemark(&config, &["pull"]));
    assert!(out.contains("changed         0"), "{out}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t2 = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;

    db.exec("DELETE FROM items WHERE id = 1").await;
    let out = ok(db.tidemark(&config, &["pull", "--reconcile"]));
    assert!(out.contains("deleted       1"), "{out}");
    ok(db.tidemark(&config, &["pull", "--reconcile"]));

    assert_eq!(
        rows(
            &db,
            &format!("SELECT id, name, price, _op FROM {s}.items ORDER BY id")
        )
        .await,
        "+----+-------+-------+-----+\n\
         | id | name  | price | _op |\n\
         +----+-------+-------+-----+\n\
         | 2  | two   | 2.50  | u   |\n\
         | 3  | three | 3.00  | r   |\n\
         | 4  | four  | 4.00  | c   |\n\
         +----+-------+-------+-----+"
    );
    // One version per change, closed versions not current.
    assert_eq!(
        rows(&db, &format!("SELECT id, price, _op, _is_current FROM {s}_history.items ORDER BY id, _valid_from")).await,
        "+----+-------+-----+-------------+\n\
         | id | price | _op | _is_current |\n\
         +----+-------+-----+-------------+\n\
         | 1  | 1.00  | r   | false       |\n\
         | 2  | 2.00  | r   | false       |\n\
         | 2  | 2.50  | u   | true        |\n\
         | 3  | 3.00  | r   | true        |\n\
         | 4  | 4.00  | c   | true        |\n\
         +----+-------+-----+-------------+"
    );
    // AS OF each instant equals the source as it was then.
    assert_eq!(
        rows(&db, &format!("SELECT id, price FROM {s}.items FOR SYSTEM_TIME AS OF TIMESTAMP '{t1}' ORDER BY id")).await,
        "+----+-------+\n| id | price |\n+----+-------+\n| 1  | 1.00  |\n| 2  | 2.00  |\n| 3  | 3.00  |\n+----+-------+"
    );
    assert_eq!(
        rows(&db, &format!("SELECT id, price FROM as_of('{s}.items', TIMESTAMP '{t2}') ORDER BY id")).await,
        "+----+-------+\n| id | price |\n+----+-------+\n| 1  | 1.00  |\n| 2  | 2.50  |\n| 3  | 3.00  |\n| 4  | 4.00  |\n+----+-------+"
    );
    // Today vs then, in one query.
    assert_eq!(
        rows(
            &db,
            &format!(
                "SELECT (SELECT SUM(price) FROM {s}.items) AS now_total, \
                        (SELECT SUM(price) FROM {s}.items FOR SYSTEM_TIME AS OF TIMESTAMP '{t1}') AS then_total"
            )
        )
        .await,
        "+-----------+------------+\n| now_total | then_total |\n+-----------+------------+\n| 9.50      | 6.00       |\n+-----------+------------+"
    );
    // Pulled tables are merge-on-read: compaction folds the pulls into a base and
    // writes the closed history, and time travel then reads it with the same answers.
    ok(db.tidemark(&config, &["maintain", "--no-vacuum"]));
    let closed = db.warehouse().join(s).join("items").join("closed");
    assert!(
        closed.join("_delta_log").is_dir(),
        "no closed history at {}",
        closed.display()
    );
    assert_eq!(
        rows(&db, &format!("SELECT id, price FROM {s}.items FOR SYSTEM_TIME AS OF TIMESTAMP '{t1}' ORDER BY id")).await,
        "+----+-------+\n| id | price |\n+----+-------+\n| 1  | 1.00  |\n| 2  | 2.00  |\n| 3  | 3.00  |\n+----+-------+"
    );
    assert_eq!(
        rows(&db, &format!("SELECT id, price FROM {s}.items ORDER BY id")).await,
        "+----+-------+\n| id | price |\n+----+-------+\n| 2  | 2.50  |\n| 3  | 3.00  |\n| 4  | 4.00  |\n+----+-------+"
    );
    // The CLI's other output formats.
    let csv = ok(db.tidemark(
        &config,
        &[
            "sql",
            "--format",
            "csv",
            &format!("SELECT id, price FROM {s}.items ORDER BY id"),
        ],
    ));
    assert!(
        csv.starts_with("id,price\n2,2.50\n3,3.00\n4,4.00\n"),
        "{csv}"
    );
    let json = ok(db.tidemark(
        &config,
        &[
            "sql",
            "--format",
            "json",
            &format!("SELECT id, name FROM {s}.items WHERE id = 4"),
        ],
    ));
    assert!(json.starts_with("{\"id\":4,\"name\":\"four\"}\n"), "{json}");
    let bad = db.tidemark(&config, &["sql", "DROP TABLE x"]);
    assert!(!bad.status.success() && crate::support::text(&bad).contains("read-only"));

    // A Delta version of the current table: version 1 is the first snapshot commit.
    assert_eq!(
        rows(&db, &format!("SELECT id, price FROM {s}.items VERSION AS OF 1 ORDER BY id")).await,
        "+----+-------+\n| id | price |\n+----+-------+\n| 1  | 1.00  |\n| 2  | 2.00  |\n| 3  | 3.00  |\n+----+-------+"
    );
    db.drop().await;
}
