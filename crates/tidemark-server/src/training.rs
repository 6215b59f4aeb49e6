//! `training_set(views, entity_query[, clock])`: a point-in-time training set as a
//! table function over the wire, when the endpoint serves an online feature store.
//!
//! ```sql
//! SELECT * FROM training_set('customer,last_invoice',
//!     'SELECT id AS customer_id, now() AS event_timestamp FROM invoicing.customers',
//!     'known')
//! ```
//!
//! Access is the session's: every view must be readable by the role (its source
//! or the view itself granted, as for `features.*`), and the entity query is planned in the session's own catalog,
//! so it reads only what the role may read. The features themselves are computed
//! from the sources as stored, so a role that reads a view's source through masks or
//! a row filter is refused (a training set over masked values would not be
//! point-in-time correct for anyone, and unmasked ones are not the role's to see).
//!
//! DataFusion plans table functions synchronously; planning a training set reads the
//! entity rows' instants first, so the call blocks its worker (`block_in_place`)
//! while that runs. The rows themselves stream when the statement is executed.

use std::sync::Arc;

use deltalake::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use deltalake::datafusion::common::{DataFusionError, ScalarValue};
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::SessionContext;
use tidemark_query::Engine;

use crate::access::{CurrentRole, FeatureSource};

type DfResult<T> = std::result::Result<T, DataFusionError>;

/// Why a call is refused: a permission (SQLSTATE 42501) or anything else.
struct Refusal {
    denied: bool,
    message: String,
}

impl From<DataFusionError> for Refusal {
    fn from(e: DataFusionError) -> Self {
        Refusal {
            denied: false,
            message: tidemark_query::error_message(&e),
        }
    }
}

impl From<tidemark_query::Error> for Refusal {
    fn from(e: tidemark_query::Error) -> Self {
        Refusal {
            denied: matches!(e, tidemark_query::Error::PermissionDenied(_)),
            message: e.to_string(),
        }
    }
}

/// A refused call, as a table whose scan raises the refusal. Planning errors inside
/// a table function reach the client as "table training_set does not exist" (the
/// engine's missing-table check finds no such table), so the refusal waits for the
/// scan, where it keeps its own words and SQLSTATE.
#[derive(Debug)]
struct Refused {
    denied: bool,
    message: String,
}

#[async_trait::async_trait]
impl TableProvider for Refused {
    fn schema(&self) -> deltalake::arrow::datatypes::SchemaRef {
        Arc::new(deltalake::arrow::datatypes::Schema::empty())
    }

    fn table_type(&self) -> deltalake::datafusion::datasource::TableType {
        deltalake::datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn deltalake::datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn deltalake::datafusion::physical_plan::ExecutionPlan>> {
        Err(if self.denied {
            tidemark_query::Error::PermissionDenied(self.message.clone()).into()
        } else {
            DataFusionError::Plan(self.message.clone())
        })
    }
}

/// The `training_set` table function of one session.
#[derive(Debug)]
pub(crate) struct TrainingSetFn {
    pub(crate) engine: Arc<Engine>,
    pub(crate) features: Arc<dyn FeatureSource>,
    pub(crate) role: Arc<CurrentRole>,
}

const USAGE: &str = "training_set('view1,view2', 'SELECT <entity keys>, <instant> AS event_timestamp FROM …'[, 'event' | 'known'])";

fn text(args: &[Expr], i: usize, what: &str) -> DfResult<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        )) => Ok(Some(s.clone())),
        Some(other) => Err(DataFusionError::Plan(format!(
            "training_set: argument {} ({what}) must be a text literal, got {other}; write {USAGE}",
            i + 1
        ))),
    }
}

impl TableFunctionImpl for TrainingSetFn {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(self.build(args).unwrap_or_else(|r| {
            Arc::new(Refused {
                denied: r.denied,
                message: r.message,
            })
        }))
    }
}

impl TrainingSetFn {
    fn build(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>, Refusal> {
        let exprs = args.exprs();
        if exprs.len() < 2 || exprs.len() > 3 {
            return Err(DataFusionError::Plan(format!(
                "training_set takes 2 or 3 arguments, got {}; write {USAGE}",
                exprs.len()
            ))
            .into());
        }
        let views: Vec<String> = text(exprs, 0, "the views")?
            .unwrap_or_default()
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let sql = text(exprs, 1, "the entity query")?.unwrap_or_default();
        let clock = text(exprs, 2, "the clock")?.unwrap_or_else(|| "event".into());
        let role = self.role.get();
        for v in &views {
            let Some((s, t)) = self.features.source(v) else {
                return Err(DataFusionError::Plan(format!(
                    "training_set: no feature view {v:?}; views: {}",
                    self.features.views().join(", ")
                ))
                .into());
            };
            role.feature_access(v, (s.as_str(), t.as_str()))
                .map_err(tidemark_query::Error::PermissionDenied)?;
            if !role.masks_on(&s, &t).is_empty() {
                return Err(tidemark_query::Error::PermissionDenied(format!(
                    "permission denied for a training set over feature view {v}: role {} reads its source {s}.{t} through masks, which training sets do not apply; use features.{v} for the latest values, or a role without the masks",
                    role.name()
                ))
                .into());
            }
        }
        // The entity query as the session plans it: the role's catalog, its grants.
        let Some(state) = args.session().as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Plan(
                "training_set: not called from a tidemark session".into(),
            )
            .into());
        };
        let ctx = SessionContext::new_with_state(state.clone());
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            DataFusionError::Plan(format!("training_set needs the endpoint's runtime: {e}"))
        })?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(DataFusionError::Plan(
                "training_set needs a multi-threaded runtime".into(),
            )
            .into());
        }
        let (engine, features) = (self.engine.clone(), self.features.clone());
        let work = async move {
            let mut statements = tidemark_query::parse(&sql)?;
            if statements.len() != 1 {
                return Err(Refusal {
                    denied: false,
                    message: format!(
                        "training_set: the entity query must be one SELECT, got {} statements",
                        statements.len()
                    ),
                });
            }
            let statement = statements.pop_front().expect("one statement");
            let plan = engine.plan(&ctx, statement).await?;
            features
                .training_set(views, plan, clock)
                .await
                .map_err(|m| Refusal {
                    denied: false,
                    message: format!("training_set: {m}"),
                })
        };
        tokio::task::block_in_place(|| handle.block_on(work))
    }
}
