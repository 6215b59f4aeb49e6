//! Where the endpoint answered the same SQL differently from `tidemark sql`, found
//! by running tidemark-query's `.slt` files over the wire (tests/it/slt_wire.rs).
//! Kept apart from the query path so each difference and its reason stay visible.
//!
//! The endpoint parses with PostgreSQL's grammar first (sqlparser, through
//! datafusion-pg-catalog's compatibility parser) and falls back to tidemark-query's
//! parser, while `tidemark sql` parses with DataFusion's parser, which knows
//! statements of its own (`CREATE EXTERNAL TABLE`, `COPY … TO`). A write must be
//! refused as a write whichever parser recognised it.

use deltalake::datafusion::sql::parser::Statement as DFStatement;
use pgwire::error::PgWireError;

use crate::error::sql_error;
use crate::utility::refuse_write;

/// The answer to a statement only DataFusion's parser understood.
///
/// `CREATE EXTERNAL TABLE … STORED AS CSV` is not PostgreSQL syntax (sqlparser knows
/// only Hive's file formats), so it reaches the endpoint as DataFusion's own
/// statement, which was answered "not supported over the PostgreSQL protocol" (0A000)
/// where `tidemark sql` says read-only; the same for DataFusion's `COPY … TO` forms.
pub(crate) fn df_only_statement(s: &DFStatement) -> PgWireError {
    match s {
        DFStatement::CreateExternalTable(_) => refuse_write("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => refuse_write("COPY TO"),
        other => sql_error(
            "0A000",
            format!("{other} is not supported over the PostgreSQL protocol"),
        ),
    }
}
