//! In-process sessions for front ends other than the wire protocol: the web console
//! (`tidemark-console`) signs its users in and runs their queries here.
//!
//! A [`DirectSession`] is a PostgreSQL connection without the protocol: the same
//! users file and SCRAM verifiers, the same per-role catalog ([`crate::access`]:
//! grants, masks, row filters, the EXPLAIN rule), the same parser and time-travel
//! rewrite, the same statement timeout and the same audit (`tidemark.audit`, with
//! application name [`APPLICATION`]). Nothing here decides what a role may read;
//! it only lets another front end go through the code that does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt};
use pgwire::error::{PgWireError, PgWireResult};
use tidemark_query::{Engine, CATALOG};

use crate::access::{CurrentRole, Role};
use crate::audit::Entry;
use crate::auth::scram::{self, Verifier};
use crate::error::{library_error, query_error, sql_error};
use crate::query::{timeout_error, with_deadline, Parser, Planned};
use crate::session::Session;
use crate::{Options, Reloader, Result, Shared};

/// The application name of console statements in `tidemark.audit`.
pub const APPLICATION: &str = "tidemark console";

/// The endpoint's users, roles, catalog and audit, for in-process sessions. Cheap
/// to clone. Made by [`crate::Server::gateway`] (sharing a running endpoint's
/// audit writer and reloads) or [`Gateway::open`] (on its own).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    parser: Arc<Parser>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Why a statement or a session was refused: the SQLSTATE and message a PostgreSQL
/// client would get for the same thing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The SQLSTATE (`42501` permission denied, `42P01` unknown table, ...).
    pub sqlstate: String,
    /// What happened.
    pub message: String,
    /// The session is over (its user was removed or has another role now): sign in
    /// again.
    pub fatal: bool,
}

impl From<PgWireError> for QueryError {
    fn from(e: PgWireError) -> Self {
        let e = match e {
            PgWireError::ApiError(inner) => library_error(inner.as_ref()),
            other => other,
        };
        match e {
            PgWireError::UserError(info) => QueryError {
                fatal: info.severity == "FATAL",
                sqlstate: info.code,
                message: info.message,
            },
            other => QueryError {
                sqlstate: "XX000".into(),
                message: other.to_string(),
                fatal: false,
            },
        }
    }
}

impl Gateway {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            parser: Arc::new(Parser::new(shared.clone())),
            shared,
        }
    }

    /// Load and check the users and roles, set up the catalog and open the audit as
    /// [`crate::Server::bind`] does, without listening for PostgreSQL clients.
    pub async fn open(
        engine: Arc<Engine>,
        wh: &tidemark_lake::Warehouse,
        opts: Options,
    ) -> Result<Self> {
        Ok(Self::new(Shared::open(engine, wh, &opts).await?))
    }

    /// The engine the sessions plan on (refresh it to serve new commits).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Replaces the users and roles in force (see [`Reloader::reload`]).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Commit the audit records not yet written (at shutdown).
    pub async fn close(&self) {
        self.shared.audit.close().await;
    }

    /// The role of `user` when `password` is theirs, checked against the user's
    /// SCRAM-SHA-256 verifier (SaltedPassword → ClientKey → StoredKey, as a SCRAM
    /// login proves). An unknown user costs the same key derivation as a known one,
    /// so the answer's timing does not tell whether a name exists.
    pub fn login(&self, user: &str, password: &str) -> Option<String> {
        let access = self.shared.access.get();
        match access.users.get(user) {
            Some((role, verifier)) => verifier.matches_password(password).then(|| role.clone()),
            None => {
                let salt = scram::fake_salt(&self.shared.fake_salt_secret, user);
                let _ = Verifier::with_salt(password, &salt, scram::DEFAULT_ITERATIONS);
                None
            }
        }
    }

    /// A session of `user`, signed in with `role`, from `client` (an address, for
    /// the audit). Refused (fatal) when the user or role is no longer what it was.
    pub fn session(
        &self,
        user: &str,
        role: &str,
        client: &str,
    ) -> std::result::Result<DirectSession, QueryError> {
        let current = self
            .shared
            .access
            .get()
            .session_role(user, role)
            .map_err(|r| QueryError {
                sqlstate: "28000".into(),
                message: r.message(user, role),
                fatal: true,
            })?;
        let grants = Arc::new(CurrentRole::new(current));
        let ctx =
            crate::catalog::session_context(&self.shared, user, grants.clone()).map_err(|e| {
                QueryError {
                    sqlstate: "XX000".into(),
                    message: e.to_string(),
                    fatal: true,
                }
            })?;
        let startup = HashMap::from([("application_name".to_string(), APPLICATION.to_string())]);
        let session = Session::new(
            user.to_string(),
            grants,
            client.to_string(),
            None,
            ctx,
            self.shared.statement_timeout,
            &startup,
        );
        Ok(DirectSession {
            session,
            gateway: self.clone(),
        })
    }
}

/// One signed-in user's SQL session: what a PostgreSQL connection of theirs would
/// plan on and be allowed.
pub struct DirectSession {
    session: Session,
    gateway: Gateway,
}

impl std::fmt::Debug for DirectSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSession")
            .field("user", &self.session.user)
            .field("role", &self.session.role)
            .finish_non_exhaustive()
    }
}

impl DirectSession {
    /// The user's name.
    pub fn user(&self) -> &str {
        &self.session.user
    }

    /// The role the session reads through, as last renewed.
    pub fn role(&self) -> Arc<Role> {
        self.session.grants.get()
    }

    /// Read the role again from the users and roles in force, so a reload applies
    /// from the next request (as for a PostgreSQL session). Fatal when the user was
    /// removed or has another role now.
    pub fn renew(&self) -> std::result::Result<(), QueryError> {
        self.gateway
            .parser
            .renew_grants(&self.session)
            .map_err(QueryError::from)
    }

    /// The session's SQL context: the catalog as the role sees it (tables outside
    /// its grants are not listed and refused by name; masked and filtered tables are
    /// served masked and filtered). For the console's own metadata reads; a user's
    /// statements go through [`Self::query`].
    pub fn context(&self) -> &SessionContext {
        &self.session.ctx
    }

    /// Whether the role reads `schema.table` (it is listed for it).
    pub fn reads(&self, schema: &str, table: &str) -> bool {
        self.session
            .ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(schema))
            .is_some_and(|s| s.table_exist(table))
    }

    /// Run one statement as a PostgreSQL client of this user would: parsed, rewritten
    /// and planned by the same code, under the same timeout, and recorded in the
    /// audit when its rows end, fail or are dropped unread (`cancelled`). Only
    /// queries: `COPY`, `SET`, `SHOW` and transaction statements are for SQL clients.
    pub async fn query(&self, sql: &str) -> std::result::Result<Rows, QueryError> {
        self.query_as_of(sql, None).await
    }

    /// [`Self::query`] as of an instant (`2026-10-24T00:00:00Z`): every
    /// schema-qualified landed table the statement names without an `AS OF` of its
    /// own is read as of it, by the same time-travel rewrite as `FOR SYSTEM_TIME AS
    /// OF` (so through the role's history views, masked and filtered, or refused).
    /// The audit records the statement with the instant in front, as a comment.
    pub async fn query_as_of(
        &self,
        sql: &str,
        as_of: Option<&str>,
    ) -> std::result::Result<Rows, QueryError> {
        self.prepare(sql, as_of).await?.run().await
    }

    /// [`Self::query_as_of`] in two steps: the statement parsed, checked and planned
    /// (its audit record begun), then [`Prepared::run`]. In between, a front end that
    /// keeps results may answer from them instead ([`Prepared::data_state`],
    /// [`Prepared::answered`]): the audit records the statement either way.
    pub async fn prepare(
        &self,
        sql: &str,
        as_of: Option<&str>,
    ) -> std::result::Result<Prepared<'_>, QueryError> {
        let shared = &self.gateway.shared;
        let parser = &self.gateway.parser;
        let audited = match as_of {
            Some(t) => format!("/* as of {} */ {sql}", t.replace("*/", "")),
            None => sql.to_string(),
        };
        let entry = Entry::begin(&shared.audit, &self.session, &audited);
        let planned = async {
            parser.renew_grants(&self.session)?;
            let mut statements = parser.statements(sql)?;
            let statement = match (statements.pop(), statements.is_empty()) {
                (Some(s), true) => s,
                (None, _) => return Err(sql_error("42601", "no statement to run")),
                (Some(_), false) => {
                    return Err(sql_error(
                        "42601",
                        "the console runs one statement at a time",
                    ))
                }
            };
            match parser.prepare_as_of(&self.session, statement, as_of).await? {
                Planned::Plan(plan) => Ok(*plan),
                Planned::Copy(..) => Err(sql_error(
                    "0A000",
                    "COPY is for SQL clients; the console downloads a result as CSV itself",
                )),
                Planned::Utility(_) => Err(sql_error(
                    "0A000",
                    "the console runs queries (SELECT, EXPLAIN, time travel); SET, SHOW and transaction statements are for SQL clients",
                )),
            }
        }
        .await;
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                entry.failed(&e);
                return Err(e.into());
            }
        };
        let data = data_state(&plan);
        Ok(Prepared {
            session: self,
            plan,
            entry,
            data,
        })
    }
}

/// A statement planned as a session's user, not run yet: [`Prepared::run`] it, or
/// answer it from a kept result of the same statement over the same data
/// ([`Prepared::answered`]). One of the two records it in the audit; dropped
/// unused, it records nothing (nothing was read).
pub struct Prepared<'a> {
    session: &'a DirectSession,
    plan: deltalake::datafusion::logical_expr::LogicalPlan,
    entry: Entry,
    data: Option<Vec<tidemark_lake::Snapshot>>,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// What a planned statement's result depends on besides its text, its instant and
/// who reads it: the Delta snapshot (table, id, version) every scan in the plan reads
/// ([`tidemark_lake::snapshot_of`]), in plan order. The plan holds its providers, each
/// over one fixed version, so equal snapshots mean equal rows. `None` when that is
/// not all it depends on: a function that is not immutable (`now()`, `random()`,
/// `current_user`), a scan of anything else (tidemark's own tables and the tables
/// jobs write, read at their newest version when scanned; the feature store; table
/// functions; catalog tables), or an EXPLAIN.
fn data_state(
    plan: &deltalake::datafusion::logical_expr::LogicalPlan,
) -> Option<Vec<tidemark_lake::Snapshot>> {
    use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use deltalake::datafusion::datasource::source_as_provider;
    use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return None;
    }
    let mut snapshots = Vec::new();
    let mut ok = true;
    let walked = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            let snapshot = source_as_provider(&scan.source)
                .ok()
                .and_then(|provider| tidemark_lake::snapshot_of(provider.as_ref()).cloned());
            match snapshot {
                Some(s) => snapshots.push(s),
                None => ok = false,
            }
        }
        if ok {
            p.apply_expressions(|e| {
                e.apply(|e| {
                    let volatile = match e {
                        Expr::ScalarFunction(f) => {
                            f.func.signature().volatility != Volatility::Immutable
                        }
                        Expr::AggregateFunction(f) => {
                            f.func.signature().volatility != Volatility::Immutable
                        }
                        _ => false,
                    };
                    if volatile {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })?;
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    (walked.is_ok() && ok).then_some(snapshots)
}

impl Prepared<'_> {
    /// The data the result depends on (see `data_state`): equal for two
    /// preparations of one statement by one user and role, at one instant, exactly
    /// when their results are equal; `None` when that cannot be told, and such a
    /// result must not be kept.
    pub fn data_state(&self) -> Option<&[tidemark_lake::Snapshot]> {
        self.data.as_deref()
    }

    /// The statement was answered with `rows` rows from a result kept for the same
    /// [`Self::data_state`]: recorded in the audit with outcome `cached`.
    pub fn answered(self, rows: usize) {
        self.entry.finish(
            "cached",
            Some(i64::try_from(rows).unwrap_or(i64::MAX)),
            None,
        );
    }

    /// Run the statement: its rows as they are produced, under the session's
    /// statement timeout, recorded in the audit when they end.
    pub async fn run(self) -> std::result::Result<Rows, QueryError> {
        let Prepared {
            session: direct,
            plan,
            entry,
            ..
        } = self;
        let start = tokio::time::Instant::now();
        let limit = direct.session.statement_timeout();
        let begin = async {
            let df = direct
                .session
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(query_error)?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.execute_stream().await.map_err(query_error)?;
            Ok::<_, PgWireError>((schema, batches))
        };
        let started = match limit {
            Some(l) => tokio::time::timeout(l, begin)
                .await
                .unwrap_or_else(|_| Err(timeout_error(l))),
            None => begin.await,
        };
        let (schema, batches) = match started {
            Ok(s) => s,
            Err(e) => {
                entry.failed(&e);
                return Err(e.into());
            }
        };
        let batches = batches.map(|b| b.map_err(query_error));
        Ok(Rows {
            schema,
            inner: Box::pin(with_deadline(batches, limit, start, None)),
            entry: Some(entry),
            rows: 0,
        })
    }
}

/// A running statement's result: its columns, then its batches as they are produced
/// (nothing is collected). Dropping it stops the query; the audit records it when
/// its rows end, fail, or are dropped unread.
pub struct Rows {
    schema: SchemaRef,
    inner: Pin<Box<dyn Stream<Item = PgWireResult<RecordBatch>> + Send>>,
    entry: Option<Entry>,
    rows: i64,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Rows {
    /// The result's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for Rows {
    type Item = std::result::Result<RecordBatch, QueryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                this.rows += i64::try_from(batch.num_rows()).unwrap_or(i64::MAX);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(entry) = this.entry.take() {
                    entry.finish("error", Some(this.rows), Some(&e));
                }
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                if let Some(entry) = this.entry.take() {
                    entry.finish("ok", Some(this.rows), None);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.finish("cancelled", Some(self.rows), None);
        }
    }
}
