//! Queries over the simple and the extended protocol, on the same path as
//! `tidemark sql`: parse, time-travel rewrite and plan in tidemark-query, then stream
//! the rows encoded by arrow-pg.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::sql::parser::Statement as DFStatement;
use deltalake::datafusion::sql::sqlparser::ast::Statement;
use futures::{stream, Sink, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;
use tracing::debug;

use crate::error::{fatal, query_error, sql_error};
use crate::session::Session;
use crate::utility::{self, Utility};
use crate::Shared;

/// A parsed statement, kept by pgwire between Parse and Execute.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    /// A query, planned (time travel rewritten), placeholders not yet bound.
    Plan(Box<LogicalPlan>),
    /// Answered without the engine.
    Utility(Utility),
}

/// The query side of a connection.
pub(crate) struct QueryHandler {
    parser: Arc<Parser>,
}

/// Turns SQL into [`Prepared`]; pgwire calls it on Parse.
pub(crate) struct Parser {
    shared: Arc<Shared>,
    compat: PostgresCompatibilityParser,
}

impl QueryHandler {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            parser: Arc::new(Parser {
                shared,
                compat: PostgresCompatibilityParser::new(),
            }),
        }
    }
}

fn session<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    // Only a connection that finished SCRAM has a Session; pgwire does not route
    // queries before that, so this is a guard, not a path.
    client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| fatal("28000", "not authenticated"))
}

impl Parser {
    /// Parse SQL into statements, with the client-compatibility rewrites applied.
    fn statements(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        match self.compat.parse(sql) {
            Ok(s) => Ok(s.into_iter().map(crate::compat::rewrite).collect()),
            // `FOR SYSTEM_TIME AS OF` is not PostgreSQL syntax: tidemark-query parses
            // it exactly as `tidemark sql` does.
            Err(e) => match tidemark_query::parse(sql) {
                Ok(parsed) => parsed
                    .into_iter()
                    .map(|s| match s {
                        DFStatement::Statement(s) => {
                            Ok(crate::compat::rewrite(self.compat.rewrite(*s)))
                        }
                        other => Err(sql_error(
                            "0A000",
                            format!("{other} is not supported over the PostgreSQL protocol"),
                        )),
                    })
                    .collect(),
                Err(_) => Err(sql_error("42601", e.to_string())),
            },
        }
    }

    async fn prepare(&self, session: &Session, statement: Statement) -> PgWireResult<Prepared> {
        if let Some(u) = utility::classify(&statement)? {
            return Ok(Prepared::Utility(u));
        }
        let plan = self
            .shared
            .engine
            .plan(&session.ctx, DFStatement::Statement(Box::new(statement)))
            .await
            // A write that got past the statement check (the plan check in the
            // engine) says "read-only" and so gets 25006.
            .map_err(query_error)?;
        Ok(Prepared::Plan(Box::new(plan)))
    }
}

/// Parameter types in `$n` order: what DataFusion inferred, else text. Text rather
/// than `unknown` because drivers can always send text and the engine casts it,
/// while some refuse to bind anything to `unknown` (tokio-postgres accepts only &str).
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types().map_err(query_error)?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| {
            k.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|n| (n, v))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let count = numbered.last().map_or(0, |(n, _)| *n);
    let mut out = vec![None; count];
    for (n, t) in numbered {
        if n >= 1 {
            out[n - 1] = t;
        }
    }
    Ok(out)
}

fn pg_parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Type>> {
    parameter_types(plan)?
        .iter()
        .map(|t| match t {
            Some(t) => into_pg_type(t).or(Ok(Type::TEXT)),
            None => Ok(Type::TEXT),
        })
        .collect()
}

/// Result columns as PostgreSQL describes them. arrow-pg leaves the type modifier
/// unset; numeric gets its precision and scale so JDBC tools show the scale.
fn result_fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, None)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(f, a)| match a.data_type() {
            DataType::Decimal128(p, s) if *s >= 0 => {
                f.with_type_modifier(((i32::from(*p) << 16) | i32::from(*s as u8)) + 4)
            }
            _ => f,
        })
        .collect())
}

fn timeout_error(limit: Duration) -> PgWireError {
    sql_error(
        "57014",
        format!(
            "canceling statement due to statement timeout ({} ms)",
            limit.as_millis()
        ),
    )
}

/// End a row stream with 57014 once `limit` has passed since `start`. DataFusion
/// produces rows lazily while pgwire sends them, so a timeout on planning alone
/// would never stop a long scan; dropping the stream stops the scan.
fn with_deadline(
    rows: impl Stream<Item = PgWireResult<DataRow>> + Send + 'static,
    limit: Option<Duration>,
    start: tokio::time::Instant,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    enum Next {
        Row(Option<PgWireResult<DataRow>>),
        TimedOut(Duration),
    }
    let timer = limit.map(|l| (l, Box::pin(tokio::time::sleep_until(start + l))));
    stream::unfold(
        (Box::pin(rows), timer, false),
        |(mut rows, mut timer, done)| async move {
            if done {
                return None;
            }
            let next = match timer.as_mut() {
                None => Next::Row(rows.next().await),
                Some((limit, sleep)) => {
                    let limit = *limit;
                    tokio::select! {
                        r = rows.next() => Next::Row(r),
                        _ = sleep.as_mut() => Next::TimedOut(limit),
                    }
                }
            };
            match next {
                Next::Row(r) => r.map(|r| (r, (rows, timer, false))),
                Next::TimedOut(l) => Some((Err(timeout_error(l)), (rows, timer, true))),
            }
        },
    )
}

/// Run a plan (parameters already bound) and stream its rows in `format`.
async fn run_plan(
    session: &Session,
    plan: LogicalPlan,
    format: &Format,
) -> PgWireResult<QueryResponse> {
    let start = tokio::time::Instant::now();
    let limit = session.statement_timeout();
    let begin = async {
        let df = session
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(query_error)?;
        let fields = Arc::new(result_fields(df.schema().as_arrow(), format)?);
        let batches = df.execute_stream().await.map_err(query_error)?;
        Ok::<_, PgWireError>((fields, batches))
    };
    let (fields, batches) = match limit {
        Some(l) => tokio::time::timeout(l, begin)
            .await
            .map_err(|_| timeout_error(l))??,
        None => begin.await?,
    };
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(b) => encode_recordbatch(row_fields.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(query_error(e)))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(
        fields,
        with_deadline(rows, limit, start),
    ))
}

async fn respond(session: &Session, prepared: Prepared, format: &Format) -> PgWireResult<Response> {
    match prepared {
        Prepared::Plan(plan) => Ok(Response::Query(run_plan(session, *plan, format).await?)),
        Prepared::Utility(u) => utility::execute(session, &u),
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        debug!(user = %session.user, role = %session.role, sql = %query, "simple query");
        let mut responses = Vec::new();
        // Statements run in order and stop at the first error, as in PostgreSQL; the
        // ones before it have answered already.
        let statements = match self.parser.statements(query) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        for s in statements {
            let r = match self.parser.prepare(&session, s).await {
                Ok(p) => respond(&session, p, &Format::UnifiedText).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(r) => responses.push(r),
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session(client)?;
        debug!(user = %session.user, role = %session.role, sql = %sql, "parse");
        let mut statements = self.statements(sql)?;
        if statements.len() > 1 {
            return Err(sql_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        match statements.pop() {
            Some(s) => Ok(Some(self.prepare(&session, s).await?)),
            None => Ok(None),
        }
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match stmt {
            Prepared::Plan(plan) => pg_parameter_types(plan),
            Prepared::Utility(_) => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            Prepared::Plan(plan) => result_fields(
                plan.schema().as_arrow(),
                column_format.unwrap_or(&Format::UnifiedText),
            ),
            Prepared::Utility(Utility::Show(name)) => Ok(utility::show_fields(name)),
            Prepared::Utility(_) => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        match &portal.statement.statement {
            Prepared::Plan(plan) => {
                // pgwire does not keep the types it advertised; recompute them the
                // same way so the bytes are read as the type the client was told.
                let inferred = parameter_types(plan)?;
                let server = pg_parameter_types(plan)?;
                let params = deserialize_parameters_with_server_types(
                    portal,
                    &inferred.iter().map(Option::as_ref).collect::<Vec<_>>(),
                    &server.iter().map(Some).collect::<Vec<_>>(),
                )?;
                let bound = plan
                    .as_ref()
                    .clone()
                    .with_param_values(params)
                    .map_err(query_error)?;
                Ok(Response::Query(
                    run_plan(&session, bound, &portal.result_column_format).await?,
                ))
            }
            Prepared::Utility(u) => utility::execute(&session, u),
        }
    }
}
