//! tidemark's own tables are maintained like source tables (issue 14, item 9): the
//! audit, which gets a commit each second while the endpoint serves, is compacted,
//! checkpointed and vacuumed by `tidemark maintain`, and records older than
//! `audit_retention_days` go; the tables of records that keep every row (here the
//! data-test outcomes, a commit per build) are compacted too.

use crate::support::{ok, tidemark};

fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[tokio::test]
async fn maintain_compacts_the_audit_and_applies_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let wh_dir = dir.path().join("warehouse");
    let wh = tidemark_lake::Warehouse::new(wh_dir.to_str().unwrap(), Default::default()).unwrap();
    let mut audit = tidemark_lake::Audit::open(&wh).await.unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let day = 86_400_000_000i64;
    let record = |started_us: i64, i: i64| tidemark_lake::AuditRecord {
        started_us,
        user: "ana".into(),
        role: "analyst".into(),
        client: "127.0.0.1".into(),
        application: "psql".into(),
        statement: format!("SELECT {i}"),
        duration_us: 10,
        rows: Some(1),
        outcome: "ok".into(),
        sqlstate: None,
        error: None,
    };
    // 12 flushes as the endpoint makes them: 4 of records from 100 days ago.
    for i in 0..12 {
        let at = if i < 4 { now - 100 * day } else { now - day };
        audit
            .append(&[record(at + i, i), record(at + i, i + 100)])
            .await
            .unwrap();
    }
    // And a record table that keeps every row: data-test outcomes, a commit per
    // build.
    for i in 0..5 {
        tidemark_lake::record_model_tests(
            &wh,
            &[tidemark_lake::ModelTestRow {
                model: "m".into(),
                test: format!("unique(id) {i}"),
                severity: "error".into(),
                outcome: "pass".into(),
                started_us: now,
                ended_us: now,
                ran_by: "tidemark build".into(),
                environment: "dev".into(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    }
    let tests_dir = wh_dir.join("tidemark").join("model_tests");
    assert_eq!(parquet_files(&tests_dir), 5);
    let table_dir = wh_dir.join("tidemark").join("audit");
    assert_eq!(parquet_files(&table_dir), 12);
    let config = dir.path().join("tidemark.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[server]\naudit_retention_days = 30\n",
            wh_dir.display()
        ),
    )
    .unwrap();
    let out = ok(tidemark(&config, &["maintain", "--retain-hours", "0"]));
    assert!(out.contains("tidemark.audit"), "{out}");
    assert!(out.contains("expired rows 8"), "{out}");
    // One file left (the bin-packed rows), a checkpoint, the rest vacuumed.
    assert_eq!(parquet_files(&table_dir), 1, "{out}");
    assert!(
        std::fs::read_dir(table_dir.join("_delta_log"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".checkpoint.")),
        "a checkpoint was written"
    );
    // The test outcomes: bin-packed and vacuumed, every row kept.
    assert!(
        out.contains("tidemark.model_tests") && out.contains("expired rows 0"),
        "{out}"
    );
    assert_eq!(parquet_files(&tests_dir), 1, "{out}");
    let url = url::Url::from_directory_path(&table_dir).unwrap();
    let t = deltalake::open_table(url).await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("audit", t.table_provider().await.unwrap())
        .unwrap();
    let n = ctx
        .sql("SELECT count(*) FROM audit")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = n[0]
        .column(0)
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 16, "the last 30 days are kept");
    // And `tidemark sql` reads it (an engine that is not the endpoint's own).
    let out = ok(tidemark(
        &config,
        &["sql", "SELECT count(*) AS kept FROM tidemark.audit"],
    ));
    assert!(out.contains("16"), "{out}");
    let out = ok(tidemark(
        &config,
        &["sql", "SELECT count(*) AS kept FROM tidemark.model_tests"],
    ));
    assert!(out.contains('5'), "{out}");
}
