//! Queries over the simple and the extended protocol, on the same path as
//! `tidemark sql`: parse, time-travel rewrite and plan in tidemark-query, then stream
//! the rows encoded by arrow-pg.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::sql::parser::Statement as DFStatement;
use deltalake::datafusion::sql::sqlparser::ast::Statement;
use deltalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser as SqlParser;
use futures::{stream, Sink, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::send_query_response;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::Entry as StoreEntry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, Type};
use pgwire::api::{PgWireConnectionState, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::PgWireBackendMessage;
use tracing::{debug, warn};

use crate::audit::Entry;
use crate::compat;
use crate::copy::{self, CopyFormat};
use crate::error::{fatal, query_error, sql_error};
use crate::session::Session;
use crate::utility::{self, Utility};
use crate::Shared;

/// A parsed statement, kept by pgwire between Parse and Execute.
///
/// It keeps the statement, not its plan: a plan holds the tables (providers) as
/// they were at Parse, and drivers keep statements prepared for the life of a
/// pooled connection (pgjdbc server-prepares after a few executions), so a kept
/// plan would stop seeing new commits and hold old snapshots in memory. Each
/// Execute plans the statement again against the catalog as it is then (grants
/// checked again on the way), binding the parameters as the types told at Parse.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The SQL as the client sent it, for the audit.
    sql: Arc<str>,
    /// The statement as parsed and rewritten.
    statement: Statement,
    described: Described,
}

/// What a prepared statement told the client at Parse and Describe.
#[derive(Debug, Clone)]
enum Described {
    /// A query: its parameter types (see [`parameter_types`]) and result columns.
    Query {
        parameters: Vec<Option<DataType>>,
        columns: SchemaRef,
    },
    /// `COPY (query) TO STDOUT` and how to write its rows.
    Copy(CopyFormat),
    /// Answered without the engine.
    Utility(Utility),
}

impl Described {
    fn new(planned: Planned) -> PgWireResult<Self> {
        Ok(match planned {
            Planned::Plan(plan) => Described::Query {
                parameters: parameter_types(&plan)?,
                columns: Arc::new(plan.schema().as_arrow().clone()),
            },
            Planned::Copy(_, format) => Described::Copy(format),
            Planned::Utility(u) => Described::Utility(u),
        })
    }
}

/// What a statement became.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    /// A query, planned (time travel rewritten), placeholders not yet bound.
    Plan(Box<LogicalPlan>),
    /// `COPY (query) TO STDOUT`: the query's plan and how to write its rows.
    Copy(Box<LogicalPlan>, CopyFormat),
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
    /// datafusion-pg-catalog's rewrites that every statement gets.
    general: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl QueryHandler {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            parser: Arc::new(Parser::new(shared)),
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
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            compat: PostgresCompatibilityParser::new(),
            general: compat::general_rules(),
        }
    }

    /// Parse SQL into statements, with the client-compatibility rewrites applied:
    /// every statement gets those that only make it plannable, and statements that
    /// read the catalogs also those that exist for the catalog queries clients send
    /// (see [`compat::reads_catalog`]), so an analyst's query answers over the wire
    /// what it answers in `tidemark sql`.
    pub(crate) fn statements(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        let plain = match SqlParser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(plain) => plain,
            Err(e) => return self.unusual_statements(sql, e.to_string()),
        };
        if !plain.iter().any(compat::reads_catalog) {
            return Ok(plain.into_iter().map(|s| self.general(s)).collect());
        }
        // datafusion-pg-catalog's own parse, for its substitutions of whole client
        // queries (which are all catalog queries).
        let whole = self
            .compat
            .parse(sql)
            .ok()
            .filter(|w| w.len() == plain.len());
        Ok(match whole {
            Some(whole) => plain
                .into_iter()
                .zip(whole)
                .map(|(p, w)| {
                    if compat::reads_catalog(&p) {
                        compat::rewrite(w, true)
                    } else {
                        self.general(p)
                    }
                })
                .collect(),
            None => plain.into_iter().map(|s| self.rewrite(s)).collect(),
        })
    }

    /// Statements the PostgreSQL grammar does not read as they are: `ABORT` and the
    /// client queries datafusion-pg-catalog substitutes whole, and `FOR SYSTEM_TIME
    /// AS OF` (not PostgreSQL syntax), which tidemark-query parses exactly as
    /// `tidemark sql` does. `error`: the PostgreSQL grammar's complaint.
    fn unusual_statements(&self, sql: &str, error: String) -> PgWireResult<Vec<Statement>> {
        if let Ok(s) = self.compat.parse(sql) {
            return Ok(s
                .into_iter()
                .map(|s| {
                    let catalog = compat::reads_catalog(&s);
                    compat::rewrite(s, catalog)
                })
                .collect());
        }
        match tidemark_query::parse(sql) {
            Ok(parsed) => parsed
                .into_iter()
                .map(|s| match s {
                    DFStatement::Statement(s) => Ok(self.rewrite(*s)),
                    other => Err(crate::wire_fix::df_only_statement(&other)),
                })
                .collect(),
            Err(_) => Err(sql_error("42601", error)),
        }
    }

    /// One statement's rewrites, chosen by whether it reads the catalogs.
    fn rewrite(&self, s: Statement) -> Statement {
        if compat::reads_catalog(&s) {
            compat::rewrite(self.compat.rewrite(s), true)
        } else {
            self.general(s)
        }
    }

    /// The rewrites every statement gets (see [`compat::general_rules`]).
    fn general(&self, mut s: Statement) -> Statement {
        for rule in &self.general {
            s = rule.rewrite(s);
        }
        compat::rewrite(s, false)
    }

    pub(crate) async fn prepare(
        &self,
        session: &Session,
        statement: Statement,
    ) -> PgWireResult<Planned> {
        self.prepare_as_of(session, statement, None).await
    }

    /// [`Self::prepare`] with a session-level "as of" (see
    /// [`tidemark_query::Engine::plan_as_of`]): the console's as-of control.
    pub(crate) async fn prepare_as_of(
        &self,
        session: &Session,
        statement: Statement,
        as_of: Option<&str>,
    ) -> PgWireResult<Planned> {
        if let Some((query, format)) = copy::classify(&statement)? {
            let plan = self.plan(session, query, as_of).await?;
            return Ok(Planned::Copy(Box::new(plan), format));
        }
        if let Some(u) = utility::classify(&statement)? {
            return Ok(Planned::Utility(u));
        }
        Ok(Planned::Plan(Box::new(
            self.plan(session, statement, as_of).await?,
        )))
    }

    async fn plan(
        &self,
        session: &Session,
        statement: Statement,
        as_of: Option<&str>,
    ) -> PgWireResult<LogicalPlan> {
        let engine = &self.shared.engine;
        // A write that got past the statement check (the plan check in the engine)
        // is `Error::ReadOnly`, and so gets 25006.
        let plan = engine
            .plan_as_of(
                &session.ctx,
                DFStatement::Statement(Box::new(statement)),
                as_of,
            )
            .await
            .map_err(query_error)?;
        session
            .grants
            .get()
            .check_explain(engine, &session.ctx, &plan)
            .map_err(query_error)?;
        Ok(plan)
    }

    /// Read the session's role from the users and roles in force, for the request
    /// that starts now (see [`crate::Reloader`]): a reload's grants, masks and row
    /// filters apply from the session's next statement. A session whose user was
    /// removed, or has another role now, is ended (FATAL) with the reason.
    pub(crate) fn renew_grants(&self, session: &Session) -> PgWireResult<()> {
        match self
            .shared
            .access
            .get()
            .session_role(&session.user, &session.role)
        {
            Ok(role) => {
                session.grants.set(role);
                Ok(())
            }
            Err(r) => {
                let message = r.message(&session.user, &session.role);
                warn!(user = %session.user, role = %session.role, peer = %session.client, reason = %message, "ended a session after a reload of users and roles");
                Err(fatal("28000", message))
            }
        }
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

fn pg_parameter_types(types: &[Option<DataType>]) -> Vec<Type> {
    types
        .iter()
        .map(|t| match t {
            Some(t) => into_pg_type(t).unwrap_or(Type::TEXT),
            None => Type::TEXT,
        })
        .collect()
}

/// Bind a portal's parameters to a fresh plan of its statement, decoded as the
/// types the client was told at Parse (`types`): pgwire does not keep them.
fn bind(
    portal: &Portal<Prepared>,
    types: &[Option<DataType>],
    plan: LogicalPlan,
) -> PgWireResult<LogicalPlan> {
    let server = pg_parameter_types(types);
    let params = deserialize_parameters_with_server_types(
        portal,
        &types.iter().map(Option::as_ref).collect::<Vec<_>>(),
        &server.iter().map(Some).collect::<Vec<_>>(),
    )?;
    plan.with_param_values(params).map_err(query_error)
}

/// Whether a fresh plan answers the columns described at Parse. PostgreSQL refuses
/// a prepared statement whose tables changed shape the same way, and drivers
/// (pgjdbc) know to prepare it again on this message.
fn same_columns(described: &Schema, fresh: &Schema) -> PgWireResult<()> {
    let shape = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    if shape(described) == shape(fresh) {
        Ok(())
    } else {
        Err(sql_error(
            "0A000",
            "cached plan must not change result type",
        ))
    }
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

pub(crate) fn timeout_error(limit: Duration) -> PgWireError {
    sql_error(
        "57014",
        format!(
            "canceling statement due to statement timeout ({} ms)",
            limit.as_millis()
        ),
    )
}

/// End a row stream with 57014 once `limit` has passed since `start`, or when the
/// client sends a cancel request. DataFusion produces rows lazily while pgwire sends
/// them, so a timeout or cancel that only covered planning would never stop a long
/// scan; dropping the stream stops the scan.
///
/// Cancel: pgwire listens for a cancel request only while `do_query` runs, which
/// returns as soon as the plan is started. So the stream, on its first poll (when
/// pgwire has stopped listening), installs its own receiver on the connection's
/// cancel handle.
pub(crate) fn with_deadline<T: Send + 'static>(
    rows: impl Stream<Item = PgWireResult<T>> + Send + 'static,
    limit: Option<Duration>,
    start: tokio::time::Instant,
    cancel: Option<Arc<ConnectionHandle>>,
) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
    struct State<S> {
        rows: std::pin::Pin<Box<S>>,
        deadline: Option<(Duration, std::pin::Pin<Box<tokio::time::Sleep>>)>,
        cancel: Option<Arc<ConnectionHandle>>,
        cancelled: Option<futures::channel::oneshot::Receiver<()>>,
        done: bool,
    }
    let state = State {
        rows: Box::pin(rows),
        deadline: limit.map(|l| (l, Box::pin(tokio::time::sleep_until(start + l)))),
        cancel,
        cancelled: None,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(handle) = st.cancel.take() {
            st.cancelled = Some(handle.start_query().await);
        }
        let limit = st.deadline.as_ref().map_or(Duration::ZERO, |d| d.0);
        enum Step<T> {
            Next(Option<PgWireResult<T>>),
            /// The cancel sender went away without firing: stop listening.
            SenderGone,
        }
        let next = loop {
            let State {
                rows,
                deadline,
                cancelled,
                ..
            } = &mut st;
            let timed_out = async {
                match deadline.as_mut() {
                    Some((_, sleep)) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let cancel = async {
                match cancelled.as_mut() {
                    Some(rx) => rx.await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                r = rows.next() => Step::Next(r),
                _ = timed_out => Step::Next(Some(Err(timeout_error(limit)))),
                fired = cancel => if fired {
                    Step::Next(Some(Err(sql_error("57014", "canceling statement due to user request"))))
                } else {
                    Step::SenderGone
                },
            };
            match step {
                Step::Next(r) => break r,
                Step::SenderGone => st.cancelled = None,
            }
        };
        match next {
            Some(Err(e)) => {
                st.done = true;
                Some((Err(e), st))
            }
            Some(ok) => Some((ok, st)),
            None => None,
        }
    })
}

/// A plan started: its result columns, its batches as they come, and the deadline.
struct Started {
    fields: Arc<Vec<FieldInfo>>,
    batches: SendableRecordBatchStream,
    limit: Option<Duration>,
    start: tokio::time::Instant,
}

/// Plan a bound plan physically and start it, within the statement timeout.
async fn start(session: &Session, plan: LogicalPlan, format: &Format) -> PgWireResult<Started> {
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
    Ok(Started {
        fields,
        batches,
        limit,
        start,
    })
}

/// Run a plan (parameters already bound) and stream its rows in `format`; the audit
/// entry is closed when the rows end (or when planning fails).
async fn run_plan(
    session: &Session,
    plan: LogicalPlan,
    format: &Format,
    entry: Entry,
) -> PgWireResult<QueryResponse> {
    let started = match start(session, plan, format).await {
        Ok(s) => s,
        Err(e) => {
            entry.failed(&e);
            return Err(e);
        }
    };
    let row_fields = started.fields.clone();
    let rows = started
        .batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
                Ok(b) => encode_recordbatch(row_fields.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(query_error(e)))),
            };
            stream::iter(rows)
        })
        .flatten();
    let rows = with_deadline(rows, started.limit, started.start, session.cancel.clone());
    Ok(QueryResponse::new(started.fields, entry.rows(rows)))
}

/// `COPY (query) TO STDOUT`: the rows as COPY data (see [`crate::copy`]).
async fn run_copy(
    session: &Session,
    plan: LogicalPlan,
    format: CopyFormat,
    entry: Entry,
) -> PgWireResult<CopyResponse> {
    let wire = match format {
        CopyFormat::Binary => Format::UnifiedBinary,
        _ => Format::UnifiedText,
    };
    let started = match start(session, plan, &wire).await {
        Ok(s) => s,
        Err(e) => {
            entry.failed(&e);
            return Err(e);
        }
    };
    let columns = started.fields.len();
    let header = copy::header(&started.fields, &format);
    let rows = copy::rows(started.fields, format.clone(), started.batches);
    let rows = entry.rows(with_deadline(
        rows,
        started.limit,
        started.start,
        session.cancel.clone(),
    ));
    Ok(CopyResponse::new(
        format.code(),
        columns,
        copy::with_header(header, rows),
    ))
}

async fn respond(
    session: &Session,
    planned: Planned,
    format: &Format,
    entry: Entry,
) -> PgWireResult<Response> {
    match planned {
        Planned::Plan(plan) => Ok(Response::Query(
            run_plan(session, *plan, format, entry).await?,
        )),
        Planned::Copy(plan, copy) => Ok(Response::CopyOut(
            run_copy(session, *plan, copy, entry).await?,
        )),
        Planned::Utility(u) => audited(entry, utility::execute(session, &u)),
    }
}

/// Record a statement answered without rows.
fn audited<T>(entry: Entry, r: PgWireResult<T>) -> PgWireResult<T> {
    match &r {
        Ok(_) => entry.ok(),
        Err(e) => entry.failed(e),
    }
    r
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
        let audit = &self.parser.shared.audit;
        if let Err(e) = self.parser.renew_grants(&session) {
            Entry::begin(audit, &session, query).failed(&e);
            return Err(e);
        }
        // Statements run in order and stop at the first error, as in PostgreSQL; the
        // ones before it have answered already.
        let statements = match self.parser.statements(query) {
            Ok(s) => s,
            Err(e) => {
                Entry::begin(audit, &session, query).failed(&e);
                return Err(e);
            }
        };
        let single = statements.len() == 1;
        for s in statements {
            // The audit keeps the client's text; of several statements in one
            // query, each as parsed.
            let text = if single {
                query.to_string()
            } else {
                s.to_string()
            };
            let entry = Entry::begin(audit, &session, &text);
            let r = match self.parser.prepare(&session, s).await {
                Ok(p) => respond(&session, p, &Format::UnifiedText, entry).await,
                Err(e) => {
                    entry.failed(&e);
                    Err(e)
                }
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
        let r = async {
            self.renew_grants(&session)?;
            let mut statements = self.statements(sql)?;
            if statements.len() > 1 {
                return Err(sql_error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
            match statements.pop() {
                Some(s) => {
                    // Planned now for the parameter types and result columns (and
                    // to refuse what cannot run); executions plan it again.
                    let planned = self.prepare(&session, s.clone()).await?;
                    Ok(Some(Prepared {
                        sql: sql.into(),
                        statement: s,
                        described: Described::new(planned)?,
                    }))
                }
                None => Ok(None),
            }
        }
        .await;
        // A statement refused at Parse never executes: recorded here.
        if let Err(e) = &r {
            Entry::begin(&self.shared.audit, &session, sql).failed(e);
        }
        r
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match &stmt.described {
            Described::Query { parameters, .. } => Ok(pg_parameter_types(parameters)),
            Described::Copy(_) | Described::Utility(_) => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.described {
            Described::Query { columns, .. } => {
                result_fields(columns, column_format.unwrap_or(&Format::UnifiedText))
            }
            Described::Utility(Utility::Show(name)) => Ok(utility::show_fields(name)),
            // COPY describes no row (its columns come with CopyOutResponse).
            Described::Copy(_) | Described::Utility(_) => Ok(vec![]),
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

    /// Execute a whole portal (`max_rows` 0, what drivers send) by streaming its rows
    /// to the client as they are produced. pgwire's default execute first collects
    /// every row of the portal in memory, which holds a large result whole, delays
    /// its first row until its last, and lets a cancel arrive only after the scan has
    /// finished. Partial fetches (`max_rows` > 0, JDBC's fetch size) keep pgwire's
    /// portal suspension.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(StoreEntry::Value(p)) => Some(p),
            _ => None,
        };
        let streamable = match &portal {
            Some(p) => {
                message.max_rows == 0
                    && matches!(client.state(), PgWireConnectionState::ReadyForQuery)
                    && matches!(p.statement.statement.described, Described::Query { .. })
                    && matches!(*p.state().lock().await, PortalExecutionState::Initial)
            }
            None => false,
        };
        let Some(portal) = portal.filter(|_| streamable) else {
            return self._on_execute(client, message).await;
        };
        let status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let result = async {
            match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await? {
                Response::Query(rows) => send_query_response(client, rows, false).await,
                // A plan always answers rows; anything else is pgwire's to send.
                _ => Err(PgWireError::ApiError(
                    "a query answered without rows".into(),
                )),
            }
        }
        .await;
        *portal.state().lock().await = PortalExecutionState::Finished;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        result
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
        let prepared = &portal.statement.statement;
        let entry = Entry::begin(&self.parser.shared.audit, &session, &prepared.sql);
        if let Err(e) = self.parser.renew_grants(&session) {
            entry.failed(&e);
            return Err(e);
        }
        if let Described::Utility(u) = &prepared.described {
            return audited(entry, utility::execute(&session, u));
        }
        // Planned again: the tables as they are now (see [`Prepared`]).
        let planned = match self
            .parser
            .prepare(&session, prepared.statement.clone())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                entry.failed(&e);
                return Err(e);
            }
        };
        match (planned, &prepared.described) {
            (
                Planned::Plan(plan),
                Described::Query {
                    parameters,
                    columns,
                },
            ) => {
                let bound = same_columns(columns, plan.schema().as_arrow())
                    .and_then(|()| bind(portal, parameters, *plan));
                let bound = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        entry.failed(&e);
                        return Err(e);
                    }
                };
                Ok(Response::Query(
                    run_plan(&session, bound, &portal.result_column_format, entry).await?,
                ))
            }
            (Planned::Copy(plan, _), Described::Copy(format)) => Ok(Response::CopyOut(
                run_copy(&session, *plan, format.clone(), entry).await?,
            )),
            // The same text classifies the same way; a guard, not a path.
            _ => {
                let e = PgWireError::ApiError("a prepared statement changed its kind".into());
                entry.failed(&e);
                Err(e)
            }
        }
    }
}
