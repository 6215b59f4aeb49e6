//! # tidemark-publish
//!
//! Publishes chosen tables and models from the lake to a PostgreSQL-protocol
//! database, incrementally and exactly once (`tidemark publish NAME`, the daemon's
//! `publish` job kind). The seed design's "Redshift connector", minus its retries
//! that double rows.
//!
//! ```text
//!  lake: <schema>/<table>/history (the log: every version, _ingest_ts per commit)
//!     │  tidemark-query's Engine: the loaded Delta version, the table's shape
//!     ▼
//!  lake.rs: log rows with _ingest_ts > the target's mark ─► [merge/mirror: last per key]
//!     │  Arrow batches, cast to the target's types (types.rs)
//!     ▼
//!  copy.rs: PostgreSQL binary COPY ─► target.rs, ONE transaction per table:
//!     advisory lock ─► read tidemark_publish_state ─► COPY into a temp stage
//!     ─► DELETE … USING / INSERT … ON CONFLICT ─► update the state row ─► COMMIT
//!     (append, and a table's first publish, COPY into the table itself)
//! ```
//!
//! ## Exactly once
//! The target records, per publication and table, the highest `_ingest_ts` it holds
//! (`tidemark_publish_state`), in the same transaction as the rows. A publish reads
//! that mark *inside* its transaction, after taking `pg_advisory_xact_lock` on
//! (publication, schema, table), and sends only log rows above it. So:
//! * a crash or a kill before COMMIT leaves neither rows nor mark (the server rolls
//!   the transaction back when the connection drops): the rerun sends the same rows;
//! * a crash after COMMIT leaves both: the rerun finds the new mark and sends only
//!   what came after;
//! * two publishers of one table serialise on the lock, and the second reads the
//!   mark the first committed, so it sends nothing twice and never lowers the mark
//!   (its rows are those above it in its own, possibly older, snapshot of the lake).
//!
//! The mark is an `_ingest_ts`, not a Delta version range, because the lake's
//! writers make `_ingest_ts` grow with every history commit, and maintenance
//! rewrites log files without changing it: files added between two versions are not
//! the rows added between them (see `lake.rs`).
//!
//! ## Why binary COPY written from Arrow
//! Rows go through `COPY … FROM STDIN (FORMAT binary)` (tokio-postgres's `copy_in`),
//! encoded column by column from the Arrow buffers (`copy.rs`): no per-value `ToSql`
//! objects (tokio-postgres's `BinaryCopyInWriter` needs one per value, and has no
//! `numeric` beyond 28 digits), no text parsing at the server. Redshift has no
//! `COPY FROM STDIN`; `redshift://` targets are refused as not built yet.
//!
//! ## Schema changes
//! A column added upstream is added at the target (`ALTER TABLE … ADD COLUMN`, in
//! the same transaction). A changed type or key, a table landed again
//! (`--resnapshot`), or a target table someone else changed parks that table with a
//! message naming it and the way out (`tidemark publish NAME --full-refresh --table
//! T`); the publication's other tables go on.

#![warn(missing_docs)]

mod copy;
mod error;
mod lake;
mod target;
mod types;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tidemark_core::config::{PublishConfig, PublishMode};
use tidemark_core::schema::TableSchema;
use tidemark_query::Engine;
use tokio_postgres::Client;
use tracing::info;

pub use error::{Error, Result};
pub use target::STATE_TABLE;
pub use types::PgType;

use error::pg_message;
use target::{Existing, Rows, State};

/// What a run publishes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these of the publication's tables (`schema.table`); empty: all.
    pub tables: Vec<String>,
    /// Drop the target tables and publish them again from the whole log (the way
    /// out of a parked table).
    pub full_refresh: bool,
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New rows were published.
    Published(Published),
    /// Nothing new since the last publish.
    UpToDate,
    /// An incompatible change: the table is not published until a full refresh.
    Parked(String),
    /// This run failed for this table (the target refused a statement, the lake
    /// could not be read); nothing of it was committed.
    Failed(String),
}

/// Counts of one table's publish transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Rows sent by COPY (versions for append, keys for merge and mirror).
    pub rows: u64,
    /// Rows inserted or updated at the target (merge and mirror; append: `rows`).
    pub upserted: u64,
    /// Rows deleted at the target (mirror).
    pub deleted: u64,
    /// The history log's Delta version read.
    pub version: i64,
    /// Columns added at the target for columns added upstream.
    pub added_columns: Vec<String>,
    /// Whether the table was created (first publish or full refresh).
    pub created: bool,
}

/// What a run did, table by table (in the configured order).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(schema.table, outcome)`.
    pub tables: Vec<(String, Outcome)>,
}

impl Report {
    /// Tables parked or failed, with their messages.
    pub fn problems(&self) -> Vec<(&str, &str)> {
        self.tables
            .iter()
            .filter_map(|(t, o)| match o {
                Outcome::Parked(m) | Outcome::Failed(m) => Some((t.as_str(), m.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// Publish publication `name` from the tables `engine` has loaded (refresh it first
/// to publish the newest commits). Each table is its own target transaction; a
/// table that fails or is parked does not stop the others. `Err` only when nothing
/// could be attempted: a configuration that cannot work, or a target that cannot be
/// reached (or was lost mid-run: the tables committed before stay committed).
pub async fn publish(
    engine: &Engine,
    name: &str,
    cfg: &PublishConfig,
    options: &Options,
) -> Result<Report> {
    let config_err = |message: String| Error::Config {
        publication: name.to_string(),
        message,
    };
    for t in &options.tables {
        if !cfg.tables.contains(t) {
            return Err(config_err(format!(
                "--table {t} is not one of its tables ({})",
                cfg.tables.join(", ")
            )));
        }
    }
    let mut tables = Vec::new();
    for t in cfg
        .tables
        .iter()
        .filter(|t| options.tables.is_empty() || options.tables.contains(t))
    {
        let (schema, table) = t.split_once('.').unwrap_or(("", t));
        if engine.is_view(schema, table) {
            return Err(config_err(format!(
                "{t} is a model materialised as a view, which keeps no change log to publish from; materialise it as a table or incremental model"
            )));
        }
        let (Some(ts), Some(hist)) = (
            engine.landed_schema(schema, table),
            engine.loaded_history(schema, table),
        ) else {
            return Err(config_err(format!(
                "{t} is not a landed table or model in this warehouse (land it first: tidemark snapshot / run / build)"
            )));
        };
        tables.push((t.clone(), ts, hist));
    }
    let password = cfg.password(name).map_err(|e| config_err(e.to_string()))?;
    let client_cfg = target::client_config(&cfg.target, password.as_deref()).map_err(config_err)?;
    let unreachable = |e: &tokio_postgres::Error| Error::Unreachable {
        publication: name.to_string(),
        target: cfg.target.clone(),
        message: pg_message(e),
    };
    let mut client = target::connect(&client_cfg)
        .await
        .map_err(|e| unreachable(&e))?;
    target::setup(&mut client, &cfg.schema)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(_) => config_err(format!(
                "preparing schema {} at the target: {}",
                cfg.schema,
                pg_message(&e)
            )),
            None => unreachable(&e),
        })?;
    let mut report = Report::default();
    for (t, ts, hist) in tables {
        let one = One {
            publication: name,
            cfg,
            table: &t,
            ts: &ts,
            hist: &hist,
            full_refresh: options.full_refresh,
        };
        let outcome = match one.run(&mut client).await {
            Ok(o) => o,
            Err(Step::Parked(m)) => Outcome::Parked(m),
            Err(Step::Pg(what, e)) => {
                if client.is_closed() || e.as_db_error().is_none() {
                    // The connection is gone: the remaining tables would fail the
                    // same way. What committed so far stays committed.
                    return Err(unreachable(&e));
                }
                Outcome::Failed(
                    Error::Target {
                        publication: name.to_string(),
                        table: t.clone(),
                        what,
                        message: pg_message(&e),
                    }
                    .to_string(),
                )
            }
            Err(Step::Lake(m)) => Outcome::Failed(
                Error::Lake {
                    publication: name.to_string(),
                    table: t.clone(),
                    message: m,
                }
                .to_string(),
            ),
        };
        match &outcome {
            Outcome::Published(p) => {
                info!(publication = %name, table = %t, rows = p.rows, upserted = p.upserted, deleted = p.deleted, version = p.version, "published")
            }
            Outcome::UpToDate => info!(publication = %name, table = %t, "up to date"),
            Outcome::Parked(m) | Outcome::Failed(m) => {
                tracing::error!(publication = %name, table = %t, error = %m, "not published; the other tables go on")
            }
        }
        report.tables.push((t, outcome));
    }
    Ok(report)
}

/// Why one table's transaction stopped (it was rolled back).
enum Step {
    Parked(String),
    Pg(String, tokio_postgres::Error),
    Lake(String),
}

/// `.pg("what")?` on a tokio-postgres result.
trait PgStep<T> {
    fn pg(self, what: &str) -> Result<T, Step>;
}

impl<T> PgStep<T> for Result<T, tokio_postgres::Error> {
    fn pg(self, what: &str) -> Result<T, Step> {
        self.map_err(|e| Step::Pg(what.to_string(), e))
    }
}

/// One table of one run.
struct One<'a> {
    publication: &'a str,
    cfg: &'a PublishConfig,
    table: &'a str,
    ts: &'a TableSchema,
    hist: &'a deltalake::DeltaTable,
    full_refresh: bool,
}

impl One<'_> {
    fn park(&self, why: String) -> Step {
        Step::Parked(format!(
            "{why}; publication {p} parks table {t} (its other tables go on). Way out: `tidemark publish {p} --full-refresh --table {t}` drops {s}.{n} at the target and publishes it again from the whole history",
            p = self.publication,
            t = self.table,
            s = self.cfg.schema,
            n = self.target_name(),
        ))
    }

    fn target_name(&self) -> &str {
        self.table.split_once('.').map_or(self.table, |(_, t)| t)
    }

    async fn run(&self, client: &mut Client) -> Result<Outcome, Step> {
        let mode = self.cfg.mode;
        let schema = self.cfg.schema.as_str();
        let name = self.target_name();
        let cols = lake::published_columns(self.ts, mode);
        let key: Vec<&str> = match mode {
            PublishMode::Append => Vec::new(),
            _ => self.ts.key_names(),
        };
        if mode != PublishMode::Append && key.is_empty() {
            return Err(self.park(format!(
                "{} has no key, which mode {} upserts by (use mode = \"append\", or give the model a unique_key)",
                self.table,
                mode.as_str()
            )));
        }
        let version = lake::version(self.hist);
        let table_id = lake::table_id(self.hist);

        let tx = client.transaction().await.pg("BEGIN")?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&target::lock_key(&[self.publication, schema, name])],
        )
        .await
        .pg("the publish lock")?;
        let mut state = target::read_state(&tx, schema, self.publication, self.table)
            .await
            .pg("reading tidemark_publish_state")?;
        let mut existing = target::existing(&tx, schema, name)
            .await
            .pg("reading the target table's columns")?;
        if self.full_refresh {
            if existing.is_some() {
                tx.batch_execute(&format!("DROP TABLE {}", types::qualified(schema, name)))
                    .await
                    .pg("dropping the table for a full refresh")?;
            }
            target::delete_state(&tx, schema, self.publication, self.table)
                .await
                .pg("clearing the table's state")?;
            state = None;
            existing = None;
        }
        match (&state, &existing) {
            (None, Some(_)) => {
                return Err(self.park(format!(
                    "{schema}.{name} exists at the target, but publication {} has no record of publishing it (another tool's table, or one whose state was removed)",
                    self.publication
                )))
            }
            (Some(_), None) => {
                return Err(self.park(format!(
                    "{schema}.{name} is gone from the target, which tidemark_publish_state says holds it"
                )))
            }
            (Some(s), Some(_)) => {
                if s.mode != mode.as_str() {
                    return Err(self.park(format!(
                        "it was published with mode {}, and the publication now says {}",
                        s.mode,
                        mode.as_str()
                    )));
                }
                if s.table_id != table_id {
                    return Err(self.park(format!(
                        "{} was landed again in the lake (a new history log), so the rows at the target cannot be continued from",
                        self.table
                    )));
                }
            }
            (None, None) => {}
        }
        let mut added_columns = Vec::new();
        if let Some(ex) = &existing {
            added_columns = self.reconcile(ex, &cols, &key)?;
            for c in &added_columns {
                let ty = cols.iter().find(|(n, _)| n == c).map(|(_, t)| *t);
                if let Some(ty) = ty {
                    tx.batch_execute(&target::add_column(schema, name, c, ty))
                        .await
                        .pg("adding a column added upstream")?;
                }
            }
        }

        let mark = state.as_ref().map(|s| s.ingest_us);
        let (df, next) = lake::increment(self.hist, self.ts, &cols, mode, mark)
            .await
            .map_err(|e| Step::Lake(e.to_string()))?;
        let created = existing.is_none();
        if created {
            tx.batch_execute(&target::create_table(schema, name, &cols, &key))
                .await
                .pg("creating the table")?;
        }
        let Some(next) = next else {
            if created || !added_columns.is_empty() {
                // A new (empty) table or new columns: record them, so the next run
                // continues rather than finding a table it has no record of.
                let s = State {
                    mode: mode.as_str().into(),
                    version,
                    ingest_us: mark.unwrap_or(i64::MIN),
                    table_id,
                    rows: state.as_ref().map_or(0, |s| s.rows),
                };
                target::write_state(&tx, schema, self.publication, self.table, &s)
                    .await
                    .pg("writing tidemark_publish_state")?;
                tx.commit().await.pg("COMMIT")?;
                return Ok(Outcome::Published(Published {
                    rows: 0,
                    upserted: 0,
                    deleted: 0,
                    version,
                    added_columns,
                    created,
                }));
            }
            // Nothing to write: the transaction ends without a change.
            tx.commit().await.pg("COMMIT")?;
            return Ok(Outcome::UpToDate);
        };

        // Append, and the first publish of any mode (the table was created empty in
        // this transaction, and the increment holds each key once), go straight into
        // the table: the transaction already makes it all or nothing, and a stage
        // would write every row twice. Mirror leaves out the keys deleted by then.
        let direct = mode == PublishMode::Append || created;
        let mut df = df;
        if created && mode == PublishMode::Mirror {
            df = df
                .filter(lake::not_deleted())
                .map_err(|e| Step::Lake(e.to_string()))?;
        }
        let into = if direct {
            types::qualified(schema, name)
        } else {
            tx.batch_execute(&target::create_stage(&cols))
                .await
                .pg("creating the staging table")?;
            types::ident(target::STAGE)
        };
        let pg_types: Vec<PgType> = cols.iter().map(|(_, t)| *t).collect();
        let sink = tx
            .copy_in::<_, bytes::Bytes>(&target::copy_in(&into, &cols))
            .await
            .pg("COPY")?;
        futures::pin_mut!(sink);
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| Step::Lake(e.to_string()))?;
        let mut buf = BytesMut::with_capacity(1 << 20);
        copy::header(&mut buf);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| Step::Lake(e.to_string()))?;
            copy::encode(&batch, &pg_types, &mut buf)
                .map_err(|e| Step::Lake(format!("encoding rows for COPY: {}", e.0)))?;
            // Send in chunks of about a megabyte: large enough to keep the server
            // busy, small enough not to hold a whole table in memory.
            if buf.len() >= 1 << 20 {
                sink.send(buf.split().freeze()).await.pg("COPY")?;
            }
        }
        copy::trailer(&mut buf);
        sink.send(buf.split().freeze()).await.pg("COPY")?;
        let rows = sink.as_mut().finish().await.pg("COPY")?;

        let (mut upserted, mut deleted) = (rows, 0);
        if !direct {
            if rows > 10_000 {
                // The stage has no statistics yet; without them the planner guesses
                // a small table and may pick a nested loop against a large target.
                tx.batch_execute(&format!("ANALYZE {}", types::ident(target::STAGE)))
                    .await
                    .pg("ANALYZE of the stage")?;
            }
            if mode == PublishMode::Mirror {
                deleted = tx
                    .execute(&target::delete_from_stage(schema, name, &key), &[])
                    .await
                    .pg("DELETE of deleted keys")?;
            }
            upserted = tx
                .execute(
                    &target::upsert_from_stage(schema, name, &cols, &key, Rows::Live),
                    &[],
                )
                .await
                .pg("INSERT … ON CONFLICT")?;
            if mode == PublishMode::Merge {
                upserted += tx
                    .execute(
                        &target::upsert_from_stage(schema, name, &cols, &key, Rows::Deleted),
                        &[],
                    )
                    .await
                    .pg("INSERT … ON CONFLICT of deleted rows")?;
            }
        }
        let s = State {
            mode: mode.as_str().into(),
            version,
            ingest_us: next,
            table_id,
            rows: state.as_ref().map_or(0, |s| s.rows) + rows as i64,
        };
        target::write_state(&tx, schema, self.publication, self.table, &s)
            .await
            .pg("writing tidemark_publish_state")?;
        tx.commit().await.pg("COMMIT")?;
        Ok(Outcome::Published(Published {
            rows,
            upserted,
            deleted,
            version,
            added_columns,
            created,
        }))
    }

    /// Compare the target table with what would be published now: the columns to
    /// add, or why the table must be parked (a type or the key changed).
    fn reconcile(
        &self,
        ex: &Existing,
        cols: &[(String, PgType)],
        key: &[&str],
    ) -> Result<Vec<String>, Step> {
        let mut add = Vec::new();
        for (n, t) in cols {
            match ex.columns.iter().find(|(c, _)| c == n) {
                None => add.push(n.clone()),
                Some((_, have)) if *have != t.sql() => {
                    return Err(self.park(format!(
                        "column {n} is {have} at the target and {} in the lake now (its type changed upstream)",
                        t.sql()
                    )))
                }
                Some(_) => {}
            }
        }
        if ex.key.iter().map(String::as_str).collect::<Vec<_>>() != key {
            return Err(self.park(format!(
                "the key is ({}) at the target and ({}) in the lake now",
                ex.key.join(", "),
                key.join(", ")
            )));
        }
        Ok(add)
    }
}
