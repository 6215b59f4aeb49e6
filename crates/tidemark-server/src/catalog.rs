//! The SQL session each connection plans on: the engine's catalog plus pg_catalog
//! and the functions PostgreSQL clients call.

use std::sync::Arc;

use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;
use tidemark_query::{Engine, CATALOG};

use crate::{Error, Result};

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

/// The engine's session with pg_catalog set up, once per server: the static catalog
/// tables are parsed here, not per connection.
pub(crate) fn base_context(engine: &Engine) -> Result<SessionContext> {
    let ctx = engine.session_context();
    // Roles come with grants in a later slice; until then pg_roles is empty.
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

/// A connection's own session: a copy of the base state (shared catalog, own
/// settings and functions) where `session_user`/`current_user` name the user.
pub(crate) fn session_context(base: &SessionContext, user: &str) -> SessionContext {
    let ctx = SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(base.state()).build(),
    );
    // pg_catalog's session_user() always says "postgres"; clients show it.
    ctx.register_udf(constant_text_udf(
        "session_user",
        user.to_string(),
        Volatility::Stable,
    ));
    ctx
}
