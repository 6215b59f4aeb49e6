//! The SQL table behind `schema.table`: the stored current Delta table, or — for a
//! table fed by a change stream — its compacted base with the history tail applied on
//! read (merge-on-read; the reasons and the invariant are in `tidemark_lake::mor`).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use tidemark_core::schema::{TableSchema, INGEST_TS, OP, SOURCE_TS};

use crate::Result;

/// The provider for a current table whose merge-on-read mark is `mark` (from its
/// committed state). `log` is the history log read at the same time or later than
/// `cur` (a newer log only adds tail rows above the base's mark).
pub(crate) async fn provider(
    ctx: &SessionContext,
    schema: &TableSchema,
    cur: &DeltaTable,
    mark: Option<i64>,
    log: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    let base = tidemark_lake::provider(cur).await?;
    let Some(mark) = mark else {
        // The stored table keeps `_source_pos` and `_seq` for compaction; SQL shows
        // the table's columns and `_ingest_ts`, `_source_ts`, `_op`.
        let shown: Vec<String> = schema
            .columns
            .iter()
            .map(|c| c.name.clone())
            .chain([INGEST_TS, SOURCE_TS, OP].map(str::to_string))
            .collect();
        if base.schema().fields().len() == shown.len() {
            return Ok(base);
        }
        let cols: Vec<&str> = shown.iter().map(String::as_str).collect();
        let df = ctx.read_table(base)?.select_columns(&cols)?;
        return Ok(Arc::new(Merged(df.into_view())));
    };
    let df = tidemark_lake::mor::plan_current(ctx, schema, base, log, mark, None).await?;
    Ok(Arc::new(Merged(df.into_view())))
}

/// A merge-on-read current table: the view DataFusion makes of the merge plan, shown
/// as the table it stands for. Clients list tables by type (information_schema's
/// BASE TABLE, pg_class's relkind `r`, psql's `\dt`, SQLAlchemy's
/// `get_table_names()`), and a source's current table is a table to them however
/// it is stored; a view would vanish from those lists once `tidemark run` streams it.
/// Everything else is the view's: its plan is still inlined into queries, so
/// filters reach the base and the tail as before.
#[derive(Debug)]
struct Merged(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for Merged {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> std::result::Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> std::result::Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        self.0.scan(state, projection, filters, limit).await
    }
}
