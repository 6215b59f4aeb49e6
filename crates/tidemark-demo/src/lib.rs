//! # tidemark-demo
//!
//! A deterministic invoicing workload: a small business with customers, products,
//! invoices, invoice lines and payments, simulated one UTC day at a time from a seed.
//!
//! It is the one workload behind three things, so their numbers are comparable:
//!
//! * `tidemark demo` lands it offline (no MySQL) with [`land`], through
//!   [`to_change_batches`], which turns events into the same [`ChangeBatch`]es the
//!   MySQL sources produce;
//! * tests replay it and check what the lake and time-travel queries return;
//! * benchmarks create the schema on a real MySQL or MariaDB ([`create_schema`]) and
//!   replay the same events into it ([`apply_to_mysql`]), then snapshot and pull.
//!
//! The same [`WorkloadConfig`] always yields the same [`Event`]s: every value comes
//! from a ChaCha8 stream seeded by [`WorkloadConfig::seed`], and only the time window
//! ([`WorkloadConfig::end_us`]) moves the instants.
//!
//! ```
//! use tidemark_demo::{Workload, WorkloadConfig};
//!
//! let cfg = WorkloadConfig { days: 3, end_us: 1_717_200_000_000_000, ..Default::default() };
//! let events: usize = Workload::new(cfg).map(|day| day.len()).sum();
//! assert!(events > 250);
//! ```
//!
//! What happens (at scale 1.0; the scale multiplies every count): day 0 loads ~200
//! customers and ~50 products; every day ~3 customers join, ~30 draft invoices are
//! written with 1–5 lines each (invoice and lines in one transaction, lines priced at
//! the product's current price), drafts are issued (`open`, with `issued_at` and a
//! `due_date` from the customer's payment terms), open invoices are paid (the status
//! change and a `payments` row in one transaction) or voided (and written off 60 days
//! past due), a few lines are corrected (quantity or a discount, the invoice total
//! recomputed in the same transaction), a draft is deleted with its lines, prices move,
//! customers change e-mail, products are retired and brought back. Totals are the exact
//! sum of line amounts, amounts exactly quantity × unit price (integer cents).

#![warn(missing_docs)]

mod land;
mod mysql;
mod tables;
mod util;
mod workload;

use std::sync::Arc;

use tidemark_core::change::{ChangeBatch, ChangeBatchBuilder};
use tidemark_core::schema::TableSchema;

pub use land::{land, LandError, Lander};
pub use mysql::{apply_to_mysql, create_schema};
pub use tables::{create_sql, schemas};
pub use workload::{Event, Workload, WorkloadConfig};

/// The source database.
pub const DATABASE: &str = "invoicing";

/// The source tables; [`Event::table`] and [`schemas`] index this order.
pub const TABLES: [&str; 5] = [
    "customers",
    "products",
    "invoices",
    "invoice_lines",
    "payments",
];

/// Index of `customers` in [`TABLES`].
pub const CUSTOMERS: usize = 0;
/// Index of `products` in [`TABLES`].
pub const PRODUCTS: usize = 1;
/// Index of `invoices` in [`TABLES`].
pub const INVOICES: usize = 2;
/// Index of `invoice_lines` in [`TABLES`].
pub const INVOICE_LINES: usize = 3;
/// Index of `payments` in [`TABLES`].
pub const PAYMENTS: usize = 4;

/// The events as change batches: one batch per table that has events, in [`TABLES`]
/// order, its rows in source order. Event `i` gets `_source_ts` = its `ts_us`,
/// `_source_pos` = `demo:{first_offset + i}` and `_seq` = `first_offset + i`, so
/// consecutive calls with `first_offset` advanced by the events already landed number
/// the whole run without gaps.
///
/// `schemas` is [`schemas`]`(naming)` (indexed by [`Event::table`]).
pub fn to_change_batches(
    schemas: &[Arc<TableSchema>],
    events: &[Event],
    first_offset: u64,
) -> tidemark_core::Result<Vec<ChangeBatch>> {
    let mut by_table: Vec<Vec<usize>> = vec![Vec::new(); schemas.len()];
    for (i, e) in events.iter().enumerate() {
        let Some(rows) = by_table.get_mut(e.table) else {
            return Err(tidemark_core::Error::Config {
                path: "<demo>".into(),
                message: format!(
                    "event {i} is for table index {}, but only {} schemas were given",
                    e.table,
                    schemas.len()
                ),
            });
        };
        rows.push(i);
    }
    let mut out = Vec::new();
    for (t, rows) in by_table.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let mut b = ChangeBatchBuilder::new(schemas[t].clone(), rows.len());
        for &i in rows {
            let e = &events[i];
            let offset = first_offset + i as u64;
            b.push_values(
                &e.row,
                e.op,
                e.ts_us,
                &format!("demo:{offset}"),
                offset as i64,
            )?;
        }
        out.push(b.finish()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
