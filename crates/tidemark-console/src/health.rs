//! `GET /console/api/health`: where each table's capture has got to and how fresh
//! it is (tidemark-daemon's table status, what `tidemark status` prints), for the
//! tables the signed-in user's role reads; changes landed per minute for those
//! tables; and, for admin roles (who alone read tidemark's own tables), the dead
//! letters and the daemon's jobs (with a trigger).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use axum::extract::{Path, Query, State};
use axum::Json;
use deltalake::datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use tidemark_daemon::status::TableStatus;

use crate::auth::{Reader, Writer};
use crate::{Console, ConsoleError};

/// Dead letters shown per page load.
const RECENT_DEAD_LETTERS: usize = 20;

/// The health page's data.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Per table the role reads: position, freshness, state, parked reason.
    tables: Vec<TableStatus>,
    /// Tables whose capture stopped, with why and what to do.
    parked: Vec<Parked>,
    /// For admin roles: the dead-letter table's counts and newest entries.
    dead_letters: Option<DeadLetters>,
    /// Whether a daemon (`tidemark run`) serves this console: only then are there
    /// jobs to show.
    daemon: bool,
    /// For admin roles under a daemon: its jobs, their newest run and next run. Job
    /// names and triggers name tables, so other roles do not get them.
    jobs: Option<Vec<tidemark_daemon::api::jobs::JobView>>,
}

#[derive(Debug, Serialize)]
struct Parked {
    table: String,
    reason: String,
    way_out: &'static str,
}

#[derive(Debug, Serialize)]
struct DeadLetters {
    /// Per stream and table: how many, and the newest.
    by_table: Vec<Vec<Option<String>>>,
    /// The newest entries: when, stream, table, topic, partition, offset, error.
    recent: Vec<Vec<Option<String>>>,
}

/// What to do about a parked table (docs/operations.md, schema changes).
const WAY_OUT: &str = "stop `tidemark run`, then `tidemark snapshot --resnapshot --table db.t` and start `run` again; the old tables are moved to <warehouse>/.retired/, and the source's other tables keep flowing meanwhile";

async fn rows(ctx: &SessionContext, sql: &str) -> Option<Vec<Vec<Option<String>>>> {
    let batches: Vec<RecordBatch> = ctx.sql(sql).await.ok()?.collect().await.ok()?;
    let mut out = Vec::new();
    for b in &batches {
        let options = arrow::util::display::FormatOptions::default();
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .ok()?;
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Some(out)
}

/// The health page's data for the signed-in user.
pub(crate) async fn health(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Health>, ConsoleError> {
    let all = tidemark_daemon::status::tables(&console.inner.wh)
        .await
        .map_err(|e| ConsoleError::Internal(format!("reading the warehouse: {e}")))?;
    // The role decides which names the user may even learn.
    let tables: Vec<TableStatus> = all
        .into_iter()
        .filter(|t| {
            t.table
                .split_once('.')
                .is_some_and(|(schema, table)| s.direct.reads(schema, table))
        })
        .collect();
    let parked = tables
        .iter()
        .filter_map(|t| {
            t.parked.as_ref().map(|why| Parked {
                table: t.table.clone(),
                reason: why.clone(),
                way_out: WAY_OUT,
            })
        })
        .collect();
    let dead_letters = if s.direct.role().is_admin()
        && s.direct
            .reads(tidemark_lake::OWN_SCHEMA, tidemark_lake::DEAD_LETTERS)
    {
        // Read through the role's own catalog (only admin roles are let in).
        let ctx = s.direct.context();
        let by_table = rows(
            ctx,
            "SELECT stream, \"table\", count(*) AS dead_letters, max(received_at) AS newest \
             FROM tidemark.dead_letters GROUP BY stream, \"table\" ORDER BY dead_letters DESC",
        )
        .await;
        let recent = rows(
            ctx,
            &format!(
                "SELECT received_at, stream, \"table\", topic, \"partition\", \"offset\", error \
                 FROM tidemark.dead_letters ORDER BY received_at DESC LIMIT {RECENT_DEAD_LETTERS}"
            ),
        )
        .await;
        by_table
            .zip(recent)
            .map(|(by_table, recent)| DeadLetters { by_table, recent })
    } else {
        None
    };
    let handle = console.inner.jobs.get();
    let jobs = handle
        .filter(|_| s.direct.role().is_admin())
        .map(tidemark_daemon::api::jobs::views);
    Ok(Json(Health {
        tables,
        parked,
        dead_letters,
        daemon: handle.is_some(),
        jobs,
    }))
}

/// `POST /console/api/jobs/{name}/runs`: an admin triggers a run of a daemon job
/// (the daemon's own trigger: queued behind a run in flight, recorded as by
/// `console:<user>`).
pub(crate) async fn trigger(
    State(console): State<Console>,
    w: Writer,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    if !w.signed.direct.role().is_admin() {
        return Err(ConsoleError::Forbidden(
            "only admin roles trigger job runs from the console".into(),
        ));
    }
    let Some(handle) = console.inner.jobs.get() else {
        return Err(ConsoleError::NotFound(
            "no daemon serves this console (tidemark console alone): jobs run under `tidemark run`"
                .into(),
        ));
    };
    let by = format!("console:{}", w.signed.direct.user());
    let run = handle
        .trigger(&name, &by, Default::default())
        .await
        .map_err(|e| ConsoleError::NotFound(e.to_string()))?;
    Ok(Json(serde_json::json!({ "job": name, "run": run })))
}

/// Hours the throughput chart covers at most.
const MAX_THROUGHPUT_HOURS: u32 = 48;

/// How many hours back.
#[derive(Debug, Deserialize)]
pub struct Hours {
    hours: Option<u32>,
}

/// Changes landed per minute, summed over the tables the role reads.
#[derive(Debug, Serialize)]
pub struct Throughput {
    hours: u32,
    /// Seconds per bucket.
    bucket_s: u32,
    /// `[unix seconds of the bucket, changes landed in it]`, oldest first; empty
    /// buckets are left out.
    points: Vec<(i64, i64)>,
    /// The tables counted.
    tables: usize,
}

/// `GET /console/api/health/throughput?hours=6`: changes landed per minute over the
/// last hours, from what the lake records: each history-log row's `_ingest_ts` (one
/// row per change, deletes included), for the tables the role reads only. From the
/// history logs the engine serves (the same versions queries see): the files'
/// statistics when they answer it ([`counts_from_stats`]), else one column read,
/// pruned by those statistics.
pub(crate) async fn throughput(
    State(console): State<Console>,
    Reader(s): Reader,
    Query(q): Query<Hours>,
) -> Result<Json<Throughput>, ConsoleError> {
    let hours = q.hours.unwrap_or(6).clamp(1, MAX_THROUGHPUT_HOURS);
    let since_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        - i64::from(hours) * 3_600_000_000;
    let engine = console.inner.gateway.engine().clone();
    let readable: Vec<(String, String)> = engine
        .landed_names()
        .into_iter()
        .filter(|n| s.direct.reads(&n.schema, &n.table))
        .map(|n| (n.schema, n.table))
        .collect();
    let tables = readable.len();
    let work = async move {
        let mut by_minute = std::collections::BTreeMap::<i64, i64>::new();
        for (schema, table) in readable {
            let Some(hist) = engine.loaded_history(&schema, &table) else {
                continue;
            };
            if let Some(counts) = counts_from_stats(&hist, since_us) {
                for (m, n) in counts {
                    *by_minute.entry(m).or_default() += n;
                }
                continue;
            }
            let provider = hist
                .table_provider()
                .await
                .map_err(|e| ConsoleError::Internal(format!("{schema}.{table}: {e}")))?;
            let ctx = SessionContext::new();
            ctx.register_table("h", provider)
                .map_err(|e| ConsoleError::Internal(e.to_string()))?;
            let sql = format!(
                "SELECT CAST(date_part('epoch', date_bin(INTERVAL '1 minute', \"{ts}\")) AS BIGINT) AS m, \
                 count(*) AS n FROM h WHERE \"{ts}\" >= now() - INTERVAL '{hours} hours' GROUP BY 1",
                ts = tidemark_core::schema::INGEST_TS,
            );
            let batches = async { ctx.sql(&sql).await?.collect().await }
                .await
                .map_err(|e| ConsoleError::Internal(format!("{schema}.{table}: {e}")))?;
            for b in batches {
                let (Some(m), Some(n)) = (
                    b.column(0).as_primitive_opt::<Int64Type>(),
                    b.column(1).as_primitive_opt::<Int64Type>(),
                ) else {
                    continue;
                };
                for i in 0..b.num_rows() {
                    if !m.is_null(i) {
                        *by_minute.entry(m.value(i)).or_default() += n.value(i);
                    }
                }
            }
        }
        Ok::<_, ConsoleError>(by_minute.into_iter().collect::<Vec<(i64, i64)>>())
    };
    let points = console.exec(work).await??;
    Ok(Json(Throughput {
        hours,
        bucket_s: 60,
        points,
        tables,
    }))
}

/// Changes landed per minute (unix seconds) since `since_us`, from the Delta log's
/// per-file statistics alone, when they can say it: every file's rows landed at one
/// instant (`min(_ingest_ts) = max(_ingest_ts)`: one commit's batch, as capture writes
/// the log), so its row count belongs to that minute and no row is read. `None` when
/// a file in the window lacks statistics or spans instants (rewritten by
/// maintenance): the rows are counted then.
fn counts_from_stats(hist: &deltalake::DeltaTable, since_us: i64) -> Option<Vec<(i64, i64)>> {
    use arrow::datatypes::{DataType, TimeUnit};
    let files = hist.snapshot().ok()?.add_actions_table(true).ok()?;
    let ts = tidemark_core::schema::INGEST_TS;
    let micros = |name: &str| {
        let c = files.column_by_name(name)?;
        matches!(c.data_type(), DataType::Timestamp(TimeUnit::Microsecond, _))
            .then(|| arrow::compute::cast(c, &DataType::Int64).ok())
            .flatten()
    };
    let (min, max) = (micros(&format!("min.{ts}"))?, micros(&format!("max.{ts}"))?);
    let (min, max) = (
        min.as_primitive_opt::<Int64Type>()?,
        max.as_primitive_opt::<Int64Type>()?,
    );
    let rows = files
        .column_by_name("num_records")?
        .as_primitive_opt::<Int64Type>()?;
    let mut out = std::collections::BTreeMap::<i64, i64>::new();
    for i in 0..files.num_rows() {
        if min.is_null(i) || max.is_null(i) || rows.is_null(i) {
            return None;
        }
        if max.value(i) < since_us {
            continue;
        }
        if min.value(i) != max.value(i) {
            return None;
        }
        *out.entry(min.value(i).div_euclid(60_000_000) * 60)
            .or_default() += rows.value(i);
    }
    Some(out.into_iter().collect())
}

/// Commits of each current table looked at for compactions.
const COMMITS_PER_TABLE: usize = 20;

/// One compaction: the change log folded into a table's current base.
#[derive(Debug, Serialize)]
pub struct CompactionView {
    table: String,
    /// When it committed (ms since 1970).
    at_ms: Option<i64>,
    /// Rows in the new base, when the commit recorded them.
    rows: Option<u64>,
}

/// `GET /console/api/health/compactions`: the newest compactions of the tables the
/// role reads, newest first. Merge-on-read current tables are written only by a
/// snapshot and by compaction, which replaces the base (an overwrite): the
/// overwrites among each current table's newest Delta commits are its compactions.
pub(crate) async fn compactions(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Vec<CompactionView>>, ConsoleError> {
    use futures::StreamExt;
    let engine = console.inner.gateway.engine().clone();
    let wh = console.inner.wh.clone();
    let readable: Vec<(String, String)> = engine
        .landed_names()
        .into_iter()
        .filter(|n| s.direct.reads(&n.schema, &n.table))
        .map(|n| (n.schema, n.table))
        .collect();
    let work = async move {
        let mut out = Vec::new();
        for (schema, table) in readable {
            let url = wh.table_url(&schema, &table, tidemark_lake::TableKind::Current);
            let Ok((t, true)) = wh.delta_table(&url).await else {
                continue;
            };
            let commits: Vec<_> = t.history(Some(COMMITS_PER_TABLE)).collect().await;
            for c in commits.into_iter().flatten() {
                let overwrite = c
                    .operation_parameters
                    .as_ref()
                    .and_then(|p| p.get("mode"))
                    .and_then(|m| m.as_str())
                    .is_some_and(|m| m.eq_ignore_ascii_case("overwrite"));
                if !overwrite {
                    continue;
                }
                let metric = |k: &str| {
                    c.info
                        .get("operationMetrics")
                        .and_then(|m| m.get(k))
                        .and_then(serde_json::Value::as_u64)
                };
                out.push(CompactionView {
                    table: format!("{schema}.{table}"),
                    at_ms: c.timestamp,
                    rows: metric("num_added_rows").or_else(|| metric("numOutputRows")),
                });
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.at_ms));
        out.truncate(50);
        out
    };
    Ok(Json(console.exec(work).await?))
}
