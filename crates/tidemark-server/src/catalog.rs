//! The SQL session each connection plans on: the engine's catalog plus pg_catalog
//! and the functions PostgreSQL clients call.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::catalog::CatalogProviderList;
use deltalake::datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;
use tidemark_query::{Engine, CATALOG};

use crate::access::{AccessList, CurrentRole};
use crate::{Error, Result, Shared};

/// The PostgreSQL release whose behaviour clients should expect. Drivers parse the
/// leading digits of `server_version` and `version()`; 16 is what pg_catalog's
/// static tables were taken from.
pub(crate) const PG_VERSION: &str = "16.6";

/// `server_version` as sent at startup and by `SHOW server_version`.
pub(crate) fn server_version() -> String {
    format!("{PG_VERSION} (tidemark {})", env!("CARGO_PKG_VERSION"))
}

/// `version()`, in the form drivers (SQLAlchemy, pgjdbc) parse.
pub(crate) fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} on x86_64-pc-linux-gnu, compiled by rustc, 64-bit (tidemark {})",
        env!("CARGO_PKG_VERSION")
    )
}

fn constant_text_udf(name: &str, value: String, volatility: Volatility) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        volatility,
        // A scalar, not a one-row array: DataFusion broadcasts it to any batch size.
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

/// The engine's session with the PostgreSQL functions clients call, once per server.
/// (`setup_pg_catalog` also registers an unfiltered pg_catalog in the engine's
/// catalog; sessions never see it: each gets its own, see [`session_context`].)
pub(crate) fn base_context(engine: &Engine) -> Result<SessionContext> {
    let ctx = engine.session_context();
    datafusion_pg_catalog::setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider)
        .map_err(|e| Error::Session(e.to_string()))?;
    // Replaces DataFusion's "Apache DataFusion …", which drivers cannot parse.
    ctx.register_udf(constant_text_udf(
        "version",
        version_string(),
        Volatility::Immutable,
    ));
    Ok(ctx)
}

/// pg_catalog's static tables (pg_type, pg_proc, ...), parsed once per server.
pub(crate) fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    Ok(Arc::new(
        PgCatalogStaticTables::try_new().map_err(|e| Error::Session(e.to_string()))?,
    ))
}

/// A connection's own session: a copy of the base state (own settings and functions)
/// over the catalog as `role` may see it, with a pg_catalog built over that same
/// filtered catalog (so `\dt` and JDBC metadata list only what the role reads), a
/// memory pool of its own (one statement runs at a time per connection, so this is
/// the per-query limit), and `session_user`/`current_user` naming the user. The
/// role is read from `role` at each use, so a reload reaches the session.
pub(crate) fn session_context(
    shared: &Shared,
    user: &str,
    role: Arc<CurrentRole>,
) -> Result<SessionContext> {
    let base = &shared.base;
    let inner = base
        .catalog(CATALOG)
        .ok_or_else(|| Error::Session("catalog missing".into()))?;
    let listing: Arc<dyn CatalogProviderList> = Arc::new(AccessList::new(
        shared.engine.clone(),
        inner.clone(),
        role.clone(),
        shared.policy_ctx.clone(),
        None,
        shared.features(),
    ));
    let pg_catalog = PgCatalogSchemaProvider::try_new(
        listing.clone(),
        shared.pg_static.clone(),
        EmptyContextProvider,
    )
    .map_err(|e| Error::Session(e.to_string()))?;
    let list = Arc::new(AccessList::new(
        shared.engine.clone(),
        inner.clone(),
        role.clone(),
        shared.policy_ctx.clone(),
        Some(crate::compat::pg_catalog(
            Arc::new(pg_catalog),
            listing.clone(),
        )),
        shared.features(),
    ));
    let mut state = SessionStateBuilder::new_from_existing(base.state()).with_catalog_list(list);
    if let Some(bytes) = shared.query_memory {
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(bytes),
            NonZeroUsize::new(3).expect("non-zero"),
        );
        let runtime = RuntimeEnvBuilder::from_runtime_env(&base.runtime_env())
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| Error::Session(e.to_string()))?;
        state = state.with_runtime_env(runtime);
    }
    let ctx = SessionContext::new_with_state(state.build());
    // Training sets over the wire, beside the online store's `features` schema.
    if let Some(features) = shared.features() {
        ctx.register_udtf(
            "training_set",
            Arc::new(crate::training::TrainingSetFn {
                engine: shared.engine.clone(),
                features,
                role: role.clone(),
            }),
        );
    }
    crate::privileges::install(
        &ctx,
        shared.engine.clone(),
        inner,
        user,
        role,
        shared.access.clone(),
    );
    // pg_catalog's session_user() always says "postgres"; clients show it.
    for name in ["session_user", "current_user"] {
        ctx.register_udf(constant_text_udf(
            name,
            user.to_string(),
            Volatility::Stable,
        ));
    }
    Ok(ctx)
}
