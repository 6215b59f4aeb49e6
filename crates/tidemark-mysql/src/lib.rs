//! # tidemark-mysql
//!
//! The MySQL source (MySQL 8, Aurora MySQL, MariaDB): the only crate that links the
//! MySQL client.
//!
//! * [`connect`]: connection options from config (password from env/file only), with
//!   errors that say what to fix: unreachable host, refused login, missing privilege.
//! * [`discover`]: selected tables, their columns and keys, from `information_schema`,
//!   mapped through `tidemark_core::types`.
//! * [`snapshot`]: a consistent read of a table in primary-key chunks, resumable
//!   after any key (`tidemark_capture` lands each chunk with the resume key in the
//!   same commit, so a killed snapshot resumes after the last committed chunk). The
//!   binlog position recorded with it is where change capture resumes:
//!   - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` exposes
//!     `binlog_snapshot_file` / `_position`, the exact position of the snapshot's read
//!     view, with no lock at all.
//!   - MySQL 8 / Aurora (no global read lock allowed): the position read *before*
//!     the consistent-snapshot transaction starts is the low watermark. Every change
//!     after it is either in the snapshot or after it in the binlog, and row events
//!     carry full images, so replaying from the low watermark converges to the
//!     source — the lock-free approach of Debezium's incremental snapshots and Flink
//!     CDC. The position right after the transaction starts is the high watermark;
//!     when they are equal the snapshot is exact.
//! * [`pull`]: the reads of incremental batch pulls by a watermark column, and of the
//!   reconcile pass that finds deleted keys.
//! * [`binlog`]: the replica side of the replication protocol: committed source
//!   transactions with the position after each commit, MariaDB GTIDs, values decoded
//!   through the same text decoders as snapshot rows.
//! * [`checksum`]: the source side of `tidemark verify`: a consistent read with its
//!   binlog position, and server-side checksums of key ranges.
//! * [`ddl`]: what a DDL statement in the binlog does to the tables it names, and the
//!   values the server gave existing rows in the columns it added.
//! * [`preflight`]: whether the server is ready for change capture, and what to change.
//!
//! This crate reads; it does not write the lake. What it reads lands through
//! `tidemark_capture`'s one landing loop.

#![warn(missing_docs)]

pub mod binlog;
pub mod checksum;
pub mod connect;
pub mod ddl;
pub mod discover;
mod error;
pub mod preflight;
pub mod pull;
pub mod snapshot;

pub use error::{Error, Result};
