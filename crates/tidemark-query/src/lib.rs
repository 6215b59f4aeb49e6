//! # tidemark-query
//!
//! SQL over the warehouse with DataFusion: the one SQL surface that `tidemark sql`
//! and the PostgreSQL endpoint (tidemark-server) share: both parse with [`parse`]
//! and plan with [`Engine::plan`].
//!
//! * Catalog `tidemark`: a source table `db.t` is schema `db`, table `t` (its current
//!   Delta table), and `db_history.t`, every version with its validity:
//!   `_valid_to` is what `LEAD(_valid_from) OVER (PARTITION BY key ORDER BY _valid_from,
//!   _seq)` over the whole log gives, `_is_current = _valid_to IS NULL`, tombstones
//!   (`_op = 'd'`) hidden after they have closed the version before them. It reads the
//!   closed history compaction writes (validity stored) plus the base and the tail, or,
//!   for tables without one, that window over the log (`tidemark_lake::closed`).
//! * Time travel, rewritten on the SQL syntax tree before planning:
//!   - `FROM db.t FOR SYSTEM_TIME AS OF <instant>` and `FROM as_of('db.t', <instant>)`:
//!     the rows of `db_history.t` valid at that instant, with the current table's
//!     columns. Served from history, so it reaches back as far as history does, not as
//!     far as Delta log retention or VACUUM allow.
//!   - `FROM changes('db.t', <from>[, <to>])`: one row per change whose source instant
//!     is in `(from, to]` (`to` defaults to `now()`), deletes included. The interval is
//!     half-open the same way as `AS OF`, so the changes in `(a, b]` turn the table as
//!     of `a` into the table as of `b`. Columns, in order:
//!     - the key columns;
//!     - `_op`: `r` snapshot read, `c` insert, `u` update, `d` delete;
//!     - `_changed_at`: the change's source instant (the log's `_valid_from`);
//!     - `_change_no` (BIGINT): 1 for the key's first change in the interval, 2 for
//!       its next, … in source order (`_valid_from`, then the hidden `_seq`), so
//!       several changes to one key within one instant can still be put in order;
//!     - `before_<col>`, `after_<col>` for every non-key column, in table order:
//!       `before_` is the version the change replaced (also when that is older than
//!       `from`: the versions that ended in the interval are read too), NULL when
//!       the key did not exist (an insert, a re-insert after a delete, the first
//!       snapshot read); `after_` is the version the change made, NULL for a delete;
//!     - `_source_pos`: where the change came from.
//!
//!     Without an alias the result is named like the table, as for `as_of()`. The
//!     table name in `as_of()` and `changes()` is matched as written first, then as SQL
//!     would read it (`'Shop.Items'` is `shop.items`, `'"Shop"."T"'` keeps its case).
//!   - `FROM db.t VERSION AS OF <n>`: Delta version `n` of the current table.
//!
//! Queries are read-only: DDL and DML are refused with a clear error.
//!
//! Functions: DataFusion's, with `date_trunc` of tidemark's UTC instants served
//! without chrono's per-value time zone arithmetic ([`functions`]).

#![warn(missing_docs)]

mod current;
mod engine;
mod error;
mod format;
pub mod functions;
mod latest;
mod travel;

pub use engine::{parse, Engine, Form, Resolved, TableStats, CATALOG};
pub use error::{arrow_sqlstate, message as error_message, sqlstate, Error, Result};
pub use format::{format_batches, sorted_lines, OutputFormat};
pub use latest::Latest;
