//! An online view as a DataFusion table: what `SELECT * FROM features.v WHERE key =
//! $1` reads on the PostgreSQL endpoint.
//!
//! A query whose filters fix every key column to literals (`=`, `IN`, either side,
//! through casts the planner adds) is a point lookup in the store's hash map; any
//! other query scans every entity of the view (a copy of the rows, built per
//! query). The key filters are reported `Inexact`, so DataFusion still applies them
//! on what the lookup returns: a cast the planner put around the column can never
//! make a lookup return a row the filter would not keep.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::datasource::{MemTable, TableType};
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown,
};
use deltalake::datafusion::physical_plan::ExecutionPlan;

use crate::online::{OnlineView, Variant};

/// One online view as a table, read through one mask variant.
#[derive(Debug)]
pub struct OnlineTable {
    view: Arc<OnlineView>,
    variant: Variant,
    schema: SchemaRef,
}

impl OnlineTable {
    /// The table for `view` as read through `variant`; `Err` says why it cannot be
    /// served (not built yet).
    pub fn new(view: Arc<OnlineView>, variant: Variant) -> crate::Result<Self> {
        let schema = view.arrow_schema().ok_or_else(|| crate::Error::NotReady {
            view: view.def.name.clone(),
        })?;
        Ok(Self {
            view,
            variant,
            schema,
        })
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The column an expression reads, under any casts.
fn column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

/// A literal's value, under any casts.
fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        _ => None,
    }
}

/// `(key column, values)` when `e` is `col = lit`, `lit = col` or `col IN (lits)`.
fn key_values<'a>(e: &'a Expr, keys: &[String]) -> Option<(usize, Vec<&'a ScalarValue>)> {
    let at = |c: &Column| keys.iter().position(|k| *k == c.name);
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (c, v) = match (column(left), literal(right), column(right), literal(left)) {
                (Some(c), Some(v), _, _) => (c, v),
                (_, _, Some(c), Some(v)) => (c, v),
                _ => return None,
            };
            Some((at(c)?, vec![v]))
        }
        Expr::InList(l) if !l.negated => {
            let c = column(&l.expr)?;
            let vs = l.list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some((at(c)?, vs))
        }
        _ => None,
    }
}

/// A value as the text a key part is looked up by.
fn text(v: &ScalarValue) -> Option<String> {
    if v.is_null() {
        return None;
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[async_trait]
impl TableProvider for OnlineTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let keys = self.view.key_columns();
        Ok(filters
            .iter()
            .map(|f| match key_values(f, keys) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let keys = self.view.key_columns();
        // Per key column, the values the filters allow (intersected when several
        // filters name one column).
        let mut allowed: Vec<Option<Vec<String>>> = vec![None; keys.len()];
        for f in filters {
            if let Some((j, vs)) = key_values(f, keys) {
                let vs: Vec<String> = vs.into_iter().filter_map(text).collect();
                allowed[j] = Some(match allowed[j].take() {
                    None => vs,
                    Some(before) => before.into_iter().filter(|v| vs.contains(v)).collect(),
                });
            }
        }
        let lookup = if allowed.iter().all(Option::is_some) {
            // Every combination of the allowed parts: a point lookup each.
            let mut combos: Vec<Vec<String>> = vec![vec![]];
            for vs in allowed.into_iter().flatten() {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        vs.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v.clone());
                            c
                        })
                    })
                    .collect();
            }
            // A part that is no key of this type (text for an integer key) matches
            // nothing.
            Some(
                combos
                    .iter()
                    .filter_map(|parts| {
                        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                        self.view.key(&parts).ok()
                    })
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let batch = self
            .view
            .batch(lookup.as_deref(), self.variant, now_us())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, &[], limit).await
    }
}
