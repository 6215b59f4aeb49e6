//! # tidemark-lake
//!
//! Lands [`ChangeBatch`](tidemark_core::change::ChangeBatch)es in Delta Lake, exactly once.
//!
//! ## Layout
//! ```text
//! <warehouse>/<schema>/<table>/current   Delta table: the row as it is now
//! <warehouse>/<schema>/<table>/history   Delta table: append-only log of every version
//! <warehouse>/<schema>/<table>/closed    Delta table: versions closed by compaction,
//!                                        with `_valid_to` stored (see `closed`)
//! ```
//! The warehouse is a local directory or `s3://bucket/prefix` (through object_store's S3
//! client, commits made atomic by S3 conditional writes; see `s3.rs`).
//! Both are plain Delta tables with the portable protocol (reader 1 / writer 2, no
//! column mapping, no deletion vectors), readable by Spark, Trino, Athena.
//!
//! ## Why history is an append-only log (merge-on-read)
//! A type-2 history table stores `_valid_to` on each version; closing a version is an
//! UPDATE, and in Delta an update is copy-on-write: every file holding a closed version
//! is rewritten. Under scattered updates that is most of the table, every batch. So the
//! stored history is a log — one row per version, deletes as `_op = 'd'` tombstones —
//! and `_valid_to` / `_is_current` are not stored in it. Appends never rewrite a file,
//! so a batch costs the same on a 5M-row table as on a 5k-row one. Compaction, which
//! rewrites the current base anyway, writes the versions it closes, with `_valid_to`,
//! to the closed history, so time travel reads stored validity and only the small
//! un-compacted tail is windowed at read ([`closed`]).
//!
//! ## Exactly once
//! Every commit to a table carries, in the same Delta commit:
//! * an application transaction (`txn`, app id [`APP_ID`]) whose version goes up by one
//!   per commit, and
//! * the table's whole [`SourceState`] (snapshot progress, binlog position, watermark)
//!   in the commit info under the key `tidemark`.
//!
//! A writer reads both when it opens a table and checks, before each commit, that the
//! table's `txn` version is still the one it read. delta-rs itself does not reject a
//! commit whose transaction version is not newer than the recorded one (delta-rs
//! #2580, #3821), so this check is ours; it makes a second writer (a restarted process
//! racing an old one) fail loudly instead of applying a batch twice.
//!
//! Current and history are two Delta tables, so two commits: each has its own state,
//! and after a crash between them a source resumes from the older one and re-applies
//! to each table only what that table has not committed.

#![warn(missing_docs)]

mod audit;
pub mod closed;
mod dead_letters;
mod diff;
mod error;
pub mod keyset;
mod maintain;
mod model_tests;
pub mod mor;
mod own;
mod provider;
mod readonly;
mod rows;
mod runs;
mod s3;
pub mod saved;
mod verifications;
mod views;
mod warehouse;
mod writer;

pub use audit::{Audit, AuditRecord, AUDIT};
pub use dead_letters::{DeadLetter, DeadLetters, DEAD_LETTERS};
pub use diff::quote;
pub use error::{Error, Result};
pub use maintain::Maintenance;
pub use model_tests::{
    existing as existing_model_tests, last_model_tests, record_model_tests, ModelTestRow,
    MODEL_TESTS,
};
pub use own::{existing as existing_own, maintain_records, OwnMaintenance, OWN_SCHEMA};

/// tidemark's own tables of records that keep every row (the audit alone expires
/// rows): `tidemark maintain` and the daemon's maintenance job bin-pack, checkpoint
/// and vacuum them ([`maintain_records`]).
pub const KEPT_RECORDS: [&str; 6] = [
    DEAD_LETTERS,
    RUNS,
    MODEL_TESTS,
    VERIFICATIONS,
    saved::CHARTS,
    saved::DASHBOARDS,
];
pub use provider::{provider, snapshot_of, Snapshot};
pub use rows::{collapse_by_key, concat, current_rows, history_rows};
pub use runs::{existing as existing_runs, record_runs, RunClaims, RunRow, RUNS};
pub use verifications::{
    existing as existing_verifications, record_verifications, VerificationRecord, VERIFICATIONS,
};
pub use views::{ViewDef, ViewDefs};
pub use warehouse::{TableKind, TableLocation, Warehouse};
pub use writer::{
    committed_state, stored_schema, Committed, Compaction, TableWriter, APP_ID, SCHEMA_KEY,
};

/// The object_store crate delta-rs uses (to read event files under an S3 prefix).
pub use object_store;
pub use tidemark_core::position::SourceState;
