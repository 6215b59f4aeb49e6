//! # tidemark-core
//!
//! The model every other tidemark crate shares, with no I/O of its own:
//!
//! ```text
//!   config (TOML) ──► sources ──► [tidemark-mysql]  snapshot / pull / (binlog)
//!                                        │  rows decoded with `types`
//!                                        ▼
//!                        ChangeBatch { table, rows, position }
//!                                        │
//!                                        ▼
//!                        [tidemark-lake] current + history Delta tables,
//!                                        position in the same commit
//!                                        │
//!                                        ▼
//!                        [tidemark-query] DataFusion, time travel
//! ```
//!
//! * [`config`]: the one TOML file, parsed strictly (`deny_unknown_fields`) so a typo is
//!   an error naming the key, never a silent default.
//! * [`names`]: how `Chinook.InvoiceLine` becomes SQL `chinook.invoice_line`, and the
//!   collision check that makes a clash a configuration error.
//! * [`position`]: where a table has got to in its source; carried in every Delta commit.
//! * [`types`]: the MySQL → Arrow type mapping (Delta-compatible types only, so Spark,
//!   Trino and Athena read the tables) and the decoders that build Arrow columns.
//! * [`change`]: the source-independent change row (`r`/`c`/`u`/`d`) that snapshot,
//!   pull, the demo generator and later the binlog and Kafka sources all produce.

#![warn(missing_docs)]

pub mod change;
pub mod config;
pub mod error;
pub mod evolve;
pub mod names;
pub mod position;
pub mod schema;
pub mod types;

pub use error::{Error, Result};
