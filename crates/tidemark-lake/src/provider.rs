//! The DataFusion provider of a Delta table, for every read tidemark plans.
//!
//! delta-rs (1.1) answers `Exact` for a filter that references no column (its test
//! "only partition columns" holds vacuously) and then hands it to the kernel's data
//! skipping, which keeps every file for it: DataFusion drops its own filter, and the
//! rows come back unfiltered. Such filters are what DataFusion's simplifier leaves of
//! a user's predicate on a column that is a constant on one side of a union: the
//! history view's `_valid_to` is NULL over the base, so `WHERE _valid_to < T`
//! became `NULL` there and returned every current row as a closed version (found by
//! `tidemark verify`'s history tests). Answering `Inexact` for those keeps
//! DataFusion's filter above the scan; every other filter is delta-rs's to judge.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::Statistics;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

/// `table`'s provider, with column-free filters kept by DataFusion.
pub async fn provider(table: &DeltaTable) -> deltalake::DeltaResult<Arc<dyn TableProvider>> {
    Ok(Arc::new(Guarded(table.table_provider().await?)))
}

#[derive(Debug)]
struct Guarded(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for Guarded {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        self.0.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        let mut answers = self.0.supports_filters_pushdown(filters)?;
        for (f, a) in filters.iter().zip(answers.iter_mut()) {
            if f.column_refs().is_empty() && *a == TableProviderFilterPushDown::Exact {
                *a = TableProviderFilterPushDown::Inexact;
            }
        }
        Ok(answers)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.0.statistics()
    }
}
