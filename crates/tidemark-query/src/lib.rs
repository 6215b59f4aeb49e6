//! # tidemark-query
//!
//! SQL over the warehouse with DataFusion: the one SQL surface that `tidemark sql`
//! (and later the PostgreSQL endpoint) share.
//!
//! * Catalog `tidemark`: a source table `db.t` is schema `db`, table `t` (its current
//!   Delta table), and `db_history.t`, a view over the history log that computes the
//!   validity columns on read:
//!   `_valid_to = LEAD(_valid_from) OVER (PARTITION BY key ORDER BY _valid_from, _seq)`,
//!   `_is_current = _valid_to IS NULL`, tombstones (`_op = 'd'`) hidden after they have
//!   closed the version before them. See tidemark-lake for why history is stored as a log.
//! * Time travel, rewritten on the SQL syntax tree before planning:
//!   - `FROM db.t FOR SYSTEM_TIME AS OF <instant>` and `FROM as_of('db.t', <instant>)`:
//!     the rows of `db_history.t` valid at that instant, with the current table's
//!     columns. Served from history, so it reaches back as far as history does, not as
//!     far as Delta log retention or VACUUM allow.
//!   - `FROM changes('db.t', <from>, <to>)`: every version that started in `(from, to]`,
//!     deletes included, with the operation.
//!   - `FROM db.t VERSION AS OF <n>`: Delta version `n` of the current table.
//!
//! Queries are read-only: DDL and DML are refused with a clear error.

#![warn(missing_docs)]

mod engine;
mod error;
mod format;
mod travel;

pub use engine::Engine;
pub use error::{Error, Result};
pub use format::{format_batches, OutputFormat};
