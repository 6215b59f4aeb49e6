//! The SQL table behind `schema.table`: the stored current Delta table, or — for a
//! table fed by a change stream — its compacted base with the history tail applied on
//! read (merge-on-read; the reasons and the invariant are in `tidemark_lake::mor`).

use std::sync::Arc;

use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use tidemark_core::schema::TableSchema;
use tidemark_lake::committed_state;

use crate::Result;

/// The provider for a current table. `log` is the history log read at the same time
/// or later than `cur` (a newer log only adds tail rows above the base's mark).
pub(crate) async fn provider(
    ctx: &SessionContext,
    schema: &TableSchema,
    cur: &DeltaTable,
    log: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    let base = cur.table_provider().await?;
    let Some(mark) = committed_state(cur).await?.state.merged_through_us else {
        return Ok(base);
    };
    let df = tidemark_lake::mor::plan_current(ctx, schema, base, log, mark, None).await?;
    Ok(df.into_view())
}
