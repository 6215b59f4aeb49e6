//! End-to-end tests of the `tidemark` binary against a real MariaDB (binlog on, ROW
//! format) that `scripts/test.sh` starts and names in `TIDEMARK_TEST_MYSQL_URL`.
//!
//! Each test gets its own database and warehouse directory, so tests run in parallel.
//! The `serve` tests need no MariaDB: their warehouse comes from `tidemark demo`.

mod binlog_forms;
mod capture_lib;
mod cdc;
mod chinook;
mod compaction;
mod console;
mod daemon;
mod demo;
mod errors;
mod faults;
mod features;
mod message_schemas;
mod models;
mod own_tables;
mod publish;
mod pull;
mod resume;
mod serve;
mod serve_reload;
mod streams;
mod support;
mod transactions;
mod types;
mod verify;
