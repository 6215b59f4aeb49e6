//! A Delta table read at its newest version on every scan: tidemark's own tables
//! (audit, dead letters) grow while a server runs, and are small enough that reading
//! their log per query costs little, unlike the source tables, which
//! [`crate::Engine::refresh`] swaps in whole.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

/// See the module docs.
#[derive(Debug)]
pub struct Latest {
    table: DeltaTable,
    schema: SchemaRef,
}

impl Latest {
    /// Over `table` (loaded), whose schema it keeps: own tables do not change shape.
    pub async fn new(table: &DeltaTable) -> Result<Self, deltalake::DeltaTableError> {
        let schema = table.table_provider().await?.schema();
        Ok(Self {
            table: DeltaTable::new(table.log_store()),
            schema,
        })
    }
}

#[async_trait]
impl TableProvider for Latest {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let mut table = self.table.clone();
        table
            .load()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        provider.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        // Applied again above the scan: the scan's provider is only known then.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
