//! The same SQL surface over the wire as in-process: every `.slt` file of
//! tidemark-query (tests/slt/*.slt, run there through the engine) runs here through
//! the endpoint with tokio-postgres, once over the simple and once over the extended
//! protocol, against the same warehouse.
//!
//! As in tidemark-query's runner, every file runs even when another fails, and the
//! failures are reported together; `SLT=changes cargo test -p tidemark-server --test it
//! slt` runs only the files whose name contains `changes`.

use std::path::PathBuf;

use crate::support::{TestServer, PASSWORD, USER};
use crate::wire_db::{Protocol, WireDb, WireError};

// One warehouse builder for both runners, so the data the files describe cannot
// drift between them.
#[path = "../../../tidemark-query/tests/slt/warehouse.rs"]
mod warehouse;

async fn connect(conninfo: String, protocol: Protocol) -> Result<WireDb, WireError> {
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(WireDb { client, protocol })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_over_the_wire() {
    let wh_dir = tempfile::tempdir().unwrap();
    let wh = warehouse::build(wh_dir.path()).await;

    let files = warehouse::slt_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tidemark-query/tests/slt"),
    );

    let mut failures = Vec::new();
    let mut runs = 0;
    for file in &files {
        // A fresh server (and so engine) per file, as the in-process runner has a
        // fresh engine per file: no file depends on what another registered.
        let server = TestServer::serve(tempfile::tempdir().unwrap(), &wh, |_| {}).await;
        for protocol in [Protocol::Simple, Protocol::Extended] {
            runs += 1;
            let conninfo = server.conninfo(USER, PASSWORD);
            let mut runner = sqllogictest::Runner::new(move || connect(conninfo.clone(), protocol));
            // Column types in `query` headers are checked too, not only the values.
            runner.with_column_validator(sqllogictest::strict_column_validator);
            if let Err(e) = runner.run_file_async(file).await {
                failures.push(format!(
                    "{} ({protocol:?} protocol):\n{}",
                    file.display(),
                    e.display(false)
                ));
            }
        }
        server.stop().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs ({} .slt files, simple and extended protocol) failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
