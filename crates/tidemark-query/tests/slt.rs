//! sqllogictest coverage of the SQL surface, one `.slt` file per form of time travel,
//! against a small warehouse written through the real lake writer (tests/slt/warehouse.rs).
//!
//! Every `.slt` file runs even when an earlier one fails (a file stops at its first
//! failure), and the failures are reported together, so one broken form does not hide
//! the others. `SLT=changes cargo test -p tidemark-query --test slt` runs
//! only the files whose name contains `changes`.

// Test crate roots resolve modules next to themselves; these live with the .slt files.
#[path = "slt/engine_db.rs"]
mod engine_db;
#[path = "slt/warehouse.rs"]
mod warehouse;

use std::path::PathBuf;
use std::sync::Arc;

use engine_db::EngineDb;
use tidemark_query::Engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let dir = tempfile::tempdir().unwrap();
    let wh = warehouse::build(dir.path()).await;

    let files = warehouse::slt_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt"));

    let mut failures = Vec::new();
    for file in &files {
        // A fresh engine per file, so no file depends on what another registered
        // (Delta versions, logs for changes()).
        let engine = Arc::new(Engine::open(&wh).await.unwrap());
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok::<_, tidemark_query::Error>(EngineDb { engine }) }
        });
        // Column types in `query` headers are checked too, not only the values.
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{}", file.display(), e.display(false)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
