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
//!
//! Each provider also knows which snapshot it reads ([`snapshot_of`]): a plan over
//! such providers only reads data that never changes, which is what lets the web
//! console keep a result until one of its tables has a new commit.

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
    let snapshot = Snapshot {
        table: table.table_url().to_string(),
        id: table
            .snapshot()
            .map(|s| s.metadata().id().to_string())
            .unwrap_or_default(),
        version: table.version(),
    };
    Ok(Arc::new(Guarded(table.table_provider().await?, snapshot)))
}

/// The Delta snapshot a provider reads: the table's place, its id (a table landed
/// again at the same place has a new one, and starts its versions again) and the
/// version. Equal snapshots hold equal rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snapshot {
    /// Where the table is.
    pub table: String,
    /// Its Delta table id (`metaData.id`).
    pub id: String,
    /// The version read (`None`: the table has no commit).
    pub version: Option<u64>,
}

/// The snapshot `provider` reads, when it is one [`provider`] made (which reads one
/// fixed version); `None` for any other provider.
pub fn snapshot_of(provider: &dyn TableProvider) -> Option<&Snapshot> {
    let any: &dyn std::any::Any = provider;
    any.downcast_ref::<Guarded>().map(|g| &g.1)
}

#[derive(Debug)]
struct Guarded(Arc<dyn TableProvider>, Snapshot);

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
