//! Charts and dashboards: saved in the warehouse (`tidemark.console_charts`,
//! `tidemark.console_dashboards`, see [`tidemark_lake::saved`]: one row and one
//! Delta commit per save, so every past definition stays readable), and drawn from
//! queries that run as the *viewing* user.
//!
//! * Anyone signed in may create charts and dashboards and open anyone's (a
//!   dashboard is for sharing). Only the owner (who created it) and admin roles may
//!   change or delete one: a save by someone else is refused with 403.
//! * A chart's data is its SQL run through the viewer's own [`DirectSession`]: their
//!   role's grants, masks and row filters, the statement timeout, the audit. A card
//!   on a table the viewer cannot read gets the endpoint's refusal (its SQLSTATE),
//!   never data.
//! * A chart's SQL, x and y columns are shown to its owner, to admins, and to a
//!   viewer whose run of it succeeded (who reads every table it names). A viewer
//!   whose run was refused learns neither the SQL nor the table's name: the refusal
//!   is told without the name, so a dashboard shows no name the viewer's catalog
//!   does not list.
//! * "As of" and "compare": the data request names up to two instants; each series
//!   runs with a session-level as-of ([`DirectSession::query_as_of`]), which the
//!   server applies with the same rewrite as `FOR SYSTEM_TIME AS OF`, so it reads
//!   through the same access path.
//!
//! [`DirectSession`]: tidemark_server::direct::DirectSession
//! [`DirectSession::query_as_of`]: tidemark_server::direct::DirectSession::query_as_of

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use axum::extract::{Path, Query, State};
use axum::Json;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tidemark_lake::saved::{self, ChartRow, DashboardRow};

use crate::auth::{Reader, SignedIn, Writer};
use crate::query::text_rows;
use crate::{Console, ConsoleError};

/// Rows a chart reads at most; the answer says when the result had more.
pub const MAX_CHART_ROWS: usize = 10_000;
/// Series a chart draws at most.
pub const MAX_SERIES: usize = 8;
/// Cards a dashboard holds at most.
pub const MAX_CARDS: usize = 24;
/// The chart kinds the page draws.
pub const KINDS: [&str; 3] = ["line", "bar", "area"];

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn new_id(prefix: char) -> String {
    let b: [u8; 12] = rand::random();
    let mut s = String::from(prefix);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn lake(e: tidemark_lake::Error) -> ConsoleError {
    ConsoleError::Internal(format!("the saved charts and dashboards: {e}"))
}

/// An instant from the page (`2026-10-24T00:00:00.000Z`) as µs, checked.
fn instant_us(text: &str) -> Result<i64, ConsoleError> {
    string_to_timestamp_nanos(text)
        .map(|ns| ns / 1000)
        .map_err(|_| ConsoleError::BadRequest(format!("{text:?} is not an instant")))
}

/// The newest revision of each id saved at or before `at` (µs; `None`: now), less
/// those whose newest revision deletes them.
fn newest<R: Clone>(
    revisions: Vec<R>,
    at: Option<i64>,
    key: impl Fn(&R) -> (&str, i64, bool),
) -> Vec<R> {
    let mut by_id: BTreeMap<String, R> = BTreeMap::new();
    for r in revisions {
        let (id, saved, _) = key(&r);
        if at.is_some_and(|t| saved > t) {
            continue;
        }
        by_id.insert(id.to_string(), r);
    }
    let mut out: Vec<R> = by_id.into_values().filter(|r| !key(r).2).collect();
    out.sort_by_key(|r| std::cmp::Reverse(key(r).1));
    out
}

fn chart_key(r: &ChartRow) -> (&str, i64, bool) {
    (&r.id, r.saved_at_us, r.deleted)
}

fn dashboard_key(r: &DashboardRow) -> (&str, i64, bool) {
    (&r.id, r.saved_at_us, r.deleted)
}

fn may_edit(s: &SignedIn, owner: &str) -> bool {
    s.direct.user() == owner || s.direct.role().is_admin()
}

fn instant_text(us: i64) -> String {
    arrow::temporal_conversions::timestamp_us_to_datetime(us)
        .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A chart in a listing: what anyone signed in may see of it.
#[derive(Debug, Serialize)]
pub struct ChartSummary {
    id: String,
    name: String,
    kind: String,
    owner: String,
    saved_at: String,
    /// The viewer may change and delete it.
    editable: bool,
}

impl ChartSummary {
    fn of(r: &ChartRow, s: &SignedIn) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: r.kind.clone(),
            owner: r.owner.clone(),
            saved_at: instant_text(r.saved_at_us),
            editable: may_edit(s, &r.owner),
        }
    }
}

/// A chart's whole definition: for its owner, admins, and viewers who may run it.
#[derive(Debug, Serialize)]
pub struct ChartDef {
    #[serde(flatten)]
    summary: ChartSummary,
    sql: String,
    x: String,
    y: Vec<String>,
}

impl ChartDef {
    fn of(r: &ChartRow, s: &SignedIn) -> Self {
        Self {
            summary: ChartSummary::of(r, s),
            sql: r.sql.clone(),
            x: r.x.clone(),
            y: serde_json::from_str(&r.y).unwrap_or_default(),
        }
    }
}

/// `GET /console/api/charts`: every saved chart, newest first.
pub(crate) async fn list_charts(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Vec<ChartSummary>>, ConsoleError> {
    let revisions = saved::chart_revisions(&console.inner.wh)
        .await
        .map_err(lake)?;
    Ok(Json(
        newest(revisions, None, chart_key)
            .iter()
            .map(|r| ChartSummary::of(r, &s))
            .collect(),
    ))
}

/// Saving a chart: without `id` a new one, with it a new revision of that one.
#[derive(Debug, Deserialize)]
pub struct ChartBody {
    id: Option<String>,
    name: String,
    sql: String,
    kind: String,
    x: String,
    y: Vec<String>,
}

fn check_name(name: &str) -> Result<String, ConsoleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ConsoleError::BadRequest(
            "a name is 1 to 200 characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// The current revision of chart `id`, or 404.
async fn current_chart(console: &Console, id: &str) -> Result<ChartRow, ConsoleError> {
    let revisions = saved::chart_revisions(&console.inner.wh)
        .await
        .map_err(lake)?;
    newest(revisions, None, chart_key)
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ConsoleError::NotFound(format!("no chart {id}")))
}

/// `POST /console/api/charts`: save a chart (a Delta commit).
pub(crate) async fn save_chart(
    State(console): State<Console>,
    w: Writer,
    Json(b): Json<ChartBody>,
) -> Result<Json<ChartDef>, ConsoleError> {
    let s = &w.signed;
    let name = check_name(&b.name)?;
    if !KINDS.contains(&b.kind.as_str()) {
        return Err(ConsoleError::BadRequest(format!(
            "a chart is one of {}",
            KINDS.join(", ")
        )));
    }
    if b.sql.trim().is_empty() || b.sql.len() > 100_000 {
        return Err(ConsoleError::BadRequest(
            "a chart's SQL is 1 to 100,000 bytes".into(),
        ));
    }
    if b.x.is_empty() || b.y.is_empty() || b.y.len() > MAX_SERIES {
        return Err(ConsoleError::BadRequest(format!(
            "a chart has an x column and 1 to {MAX_SERIES} y columns"
        )));
    }
    let owner = match &b.id {
        Some(id) => {
            let old = current_chart(&console, id).await?;
            if !may_edit(s, &old.owner) {
                return Err(ConsoleError::Forbidden(format!(
                    "chart {id} is {}'s: only its owner and admins change it; save it under a new name instead",
                    old.owner
                )));
            }
            old.owner
        }
        None => s.direct.user().to_string(),
    };
    let row = ChartRow {
        id: b.id.clone().unwrap_or_else(|| new_id('c')),
        name,
        sql: b.sql,
        kind: b.kind,
        x: b.x,
        y: serde_json::to_string(&b.y).unwrap_or_default(),
        owner,
        saved_by: s.direct.user().to_string(),
        saved_at_us: now_us(),
        deleted: false,
    };
    saved::save_chart(&console.inner.wh, &row)
        .await
        .map_err(lake)?;
    Ok(Json(ChartDef::of(&row, s)))
}

/// `DELETE /console/api/charts/{id}`: a revision that deletes it (its past ones
/// stay in the table).
pub(crate) async fn delete_chart(
    State(console): State<Console>,
    w: Writer,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let mut row = current_chart(&console, &id).await?;
    if !may_edit(&w.signed, &row.owner) {
        return Err(ConsoleError::Forbidden(format!(
            "chart {id} is {}'s: only its owner and admins delete it",
            row.owner
        )));
    }
    row.deleted = true;
    row.saved_by = w.signed.direct.user().to_string();
    row.saved_at_us = now_us();
    saved::save_chart(&console.inner.wh, &row)
        .await
        .map_err(lake)?;
    Ok(Json(serde_json::json!({ "deleted": id })))
}

/// Which data a chart draws: as of an instant (default: now), and optionally the
/// same query as of a second instant for the comparison overlay.
#[derive(Debug, Default, Deserialize)]
pub struct DataBody {
    /// Ad hoc (the editor's chart): the SQL to run. Saved charts run their own.
    sql: Option<String>,
    as_of: Option<String>,
    compare_as_of: Option<String>,
}

/// One series set: the result's columns and rows (as text; the page parses
/// numbers and instants), or why it could not be read.
#[derive(Debug, Serialize)]
pub struct Series {
    as_of: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    /// The result had more than [`MAX_CHART_ROWS`] rows: the first ones are drawn.
    truncated: bool,
    error: Option<ErrorView>,
}

#[derive(Debug, Serialize)]
struct ErrorView {
    message: String,
    sqlstate: String,
}

/// A chart's data.
#[derive(Debug, Serialize)]
pub struct ChartData {
    /// The chart (saved charts only): whole when the viewer may see it, otherwise
    /// the summary.
    chart: Option<serde_json::Value>,
    now: Series,
    compare: Option<Series>,
}

/// Run `sql` as the signed-in user, as of `as_of`, keeping at most
/// [`MAX_CHART_ROWS`] rows; answered from the console's cache when the same user
/// and role asked the same over the same data before ([`crate::cache`]).
async fn series(
    console: &Console,
    s: &std::sync::Arc<SignedIn>,
    sql: &str,
    as_of: Option<String>,
) -> Result<Series, ConsoleError> {
    if let Some(t) = &as_of {
        instant_us(t)?;
    }
    let (session, sql, at) = (s.clone(), sql.to_string(), as_of.clone());
    let kept_by = console.clone();
    let work = async move {
        let prepared = session.direct.prepare(&sql, at.as_deref()).await?;
        let kept = prepared.data_state().map(|data| {
            let asked = crate::cache::Asked {
                user: session.direct.user().to_string(),
                role: session.direct.role(),
                sql,
                as_of: at,
            };
            (asked, data.to_vec())
        });
        if let Some((asked, data)) = &kept {
            if let Some(hit) = kept_by.inner.charts.get(asked, data) {
                prepared.answered(hit.rows.len());
                return Ok::<_, ConsoleError>(hit);
            }
        }
        let mut rows = prepared.run().await?;
        let columns = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut out = Vec::new();
        let mut truncated = false;
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            let room = MAX_CHART_ROWS - out.len();
            if batch.num_rows() > room {
                text_rows(&batch.slice(0, room), &mut out)?;
                truncated = true;
                break;
            }
            text_rows(&batch, &mut out)?;
        }
        let result = std::sync::Arc::new(crate::cache::Result {
            columns,
            rows: out,
            truncated,
        });
        if let Some((asked, data)) = kept {
            kept_by.inner.charts.put(asked, data, result.clone());
        }
        Ok(result)
    };
    let outcome = console.exec(work).await?;
    Ok(match outcome {
        Ok(result) => Series {
            as_of,
            columns: result.columns.clone(),
            rows: result.rows.clone(),
            truncated: result.truncated,
            error: None,
        },
        Err(ConsoleError::Query(q)) if !q.fatal => Series {
            as_of,
            columns: vec![],
            rows: vec![],
            truncated: false,
            error: Some(ErrorView {
                message: q.message,
                sqlstate: q.sqlstate,
            }),
        },
        Err(e) => return Err(e),
    })
}

/// Refusals that name what the viewer may not know exists: told without the name
/// when the chart is someone else's.
const NAMING_REFUSALS: [&str; 3] = ["42501", "42P01", "42703"];

fn withhold(series: &mut Series) {
    if let Some(e) = &mut series.error {
        if NAMING_REFUSALS.contains(&e.sqlstate.as_str()) {
            e.message =
                "permission denied: this chart reads a table or column your role does not read"
                    .into();
            e.sqlstate = "42501".into();
        }
    }
}

async fn both(
    console: &Console,
    s: &std::sync::Arc<SignedIn>,
    sql: &str,
    body: &DataBody,
) -> Result<(Series, Option<Series>), ConsoleError> {
    let now = series(console, s, sql, body.as_of.clone()).await?;
    let compare = match &body.compare_as_of {
        Some(t) if now.error.is_none() => Some(series(console, s, sql, Some(t.clone())).await?),
        _ => None,
    };
    Ok((now, compare))
}

/// `POST /console/api/chart-data` `{sql, as_of?, compare_as_of?}`: the editor's
/// chart of its own statement.
pub(crate) async fn adhoc_data(
    State(console): State<Console>,
    w: Writer,
    Json(body): Json<DataBody>,
) -> Result<Json<ChartData>, ConsoleError> {
    let sql = body
        .sql
        .clone()
        .ok_or_else(|| ConsoleError::BadRequest("no sql to chart".into()))?;
    let (now, compare) = both(&console, &w.signed, &sql, &body).await?;
    Ok(Json(ChartData {
        chart: None,
        now,
        compare,
    }))
}

/// `POST /console/api/charts/{id}/data` `{as_of?, compare_as_of?}`: a saved chart's
/// data as the viewer reads it.
pub(crate) async fn chart_data(
    State(console): State<Console>,
    w: Writer,
    Path(id): Path<String>,
    Json(body): Json<DataBody>,
) -> Result<Json<ChartData>, ConsoleError> {
    let s = &w.signed;
    let chart = current_chart(&console, &id).await?;
    let (mut now, mut compare) = both(&console, s, &chart.sql, &body).await?;
    let privileged = may_edit(s, &chart.owner);
    let def = if privileged || now.error.is_none() {
        serde_json::to_value(ChartDef::of(&chart, s))
    } else {
        withhold(&mut now);
        if let Some(c) = &mut compare {
            withhold(c);
        }
        serde_json::to_value(ChartSummary::of(&chart, s))
    }
    .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok(Json(ChartData {
        chart: Some(def),
        now,
        compare,
    }))
}

/// A dashboard as the page draws it.
#[derive(Debug, Serialize)]
pub struct DashboardView {
    id: String,
    name: String,
    owner: String,
    saved_at: String,
    editable: bool,
    /// Its cards in grid order (a chart deleted since shows as missing).
    cards: Vec<Card>,
}

#[derive(Debug, Serialize)]
struct Card {
    chart: String,
    /// `None`: the chart was deleted.
    summary: Option<ChartSummary>,
}

/// `GET /console/api/dashboards`: every saved dashboard, newest first (no cards).
pub(crate) async fn list_dashboards(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Vec<DashboardView>>, ConsoleError> {
    let revisions = saved::dashboard_revisions(&console.inner.wh)
        .await
        .map_err(lake)?;
    Ok(Json(
        newest(revisions, None, dashboard_key)
            .into_iter()
            .map(|d| DashboardView {
                editable: may_edit(&s, &d.owner),
                saved_at: instant_text(d.saved_at_us),
                id: d.id,
                name: d.name,
                owner: d.owner,
                cards: vec![],
            })
            .collect(),
    ))
}

/// Which revision of a dashboard: `saved_as_of` an instant (default: the newest).
#[derive(Debug, Deserialize)]
pub struct At {
    saved_as_of: Option<String>,
}

/// `GET /console/api/dashboards/{id}[?saved_as_of=…]`: a dashboard and its cards,
/// as last saved or as it stood at an instant (its definition travels in time; the
/// cards' data is asked for separately, as of the page's own instant).
pub(crate) async fn dashboard(
    State(console): State<Console>,
    Reader(s): Reader,
    Path(id): Path<String>,
    Query(at): Query<At>,
) -> Result<Json<DashboardView>, ConsoleError> {
    let at = at.saved_as_of.as_deref().map(instant_us).transpose()?;
    let wh = &console.inner.wh;
    let d = newest(
        saved::dashboard_revisions(wh).await.map_err(lake)?,
        at,
        dashboard_key,
    )
    .into_iter()
    .find(|d| d.id == id)
    .ok_or_else(|| ConsoleError::NotFound(format!("no dashboard {id}")))?;
    let charts = newest(
        saved::chart_revisions(wh).await.map_err(lake)?,
        at,
        chart_key,
    );
    let ids: Vec<String> = serde_json::from_str(&d.charts).unwrap_or_default();
    let cards = ids
        .into_iter()
        .map(|c| Card {
            summary: charts
                .iter()
                .find(|r| r.id == c)
                .map(|r| ChartSummary::of(r, &s)),
            chart: c,
        })
        .collect();
    Ok(Json(DashboardView {
        editable: may_edit(&s, &d.owner),
        saved_at: instant_text(d.saved_at_us),
        id: d.id,
        name: d.name,
        owner: d.owner,
        cards,
    }))
}

/// Saving a dashboard: without `id` a new one.
#[derive(Debug, Deserialize)]
pub struct DashboardBody {
    id: Option<String>,
    name: String,
    charts: Vec<String>,
}

/// `POST /console/api/dashboards`: save a dashboard (a Delta commit).
pub(crate) async fn save_dashboard(
    State(console): State<Console>,
    w: Writer,
    Json(b): Json<DashboardBody>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let s = &w.signed;
    let name = check_name(&b.name)?;
    if b.charts.len() > MAX_CARDS {
        return Err(ConsoleError::BadRequest(format!(
            "a dashboard holds at most {MAX_CARDS} charts"
        )));
    }
    let wh = &console.inner.wh;
    let known: HashSet<String> = newest(
        saved::chart_revisions(wh).await.map_err(lake)?,
        None,
        chart_key,
    )
    .into_iter()
    .map(|c| c.id)
    .collect();
    if let Some(c) = b.charts.iter().find(|c| !known.contains(*c)) {
        return Err(ConsoleError::BadRequest(format!("no chart {c}")));
    }
    let owner = match &b.id {
        Some(id) => {
            let old = newest(
                saved::dashboard_revisions(wh).await.map_err(lake)?,
                None,
                dashboard_key,
            )
            .into_iter()
            .find(|d| &d.id == id)
            .ok_or_else(|| ConsoleError::NotFound(format!("no dashboard {id}")))?;
            if !may_edit(s, &old.owner) {
                return Err(ConsoleError::Forbidden(format!(
                    "dashboard {id} is {}'s: only its owner and admins change it",
                    old.owner
                )));
            }
            old.owner
        }
        None => s.direct.user().to_string(),
    };
    let row = DashboardRow {
        id: b.id.clone().unwrap_or_else(|| new_id('d')),
        name,
        charts: serde_json::to_string(&b.charts).unwrap_or_default(),
        owner,
        saved_by: s.direct.user().to_string(),
        saved_at_us: now_us(),
        deleted: false,
    };
    saved::save_dashboard(wh, &row).await.map_err(lake)?;
    Ok(Json(serde_json::json!({ "id": row.id })))
}

/// `DELETE /console/api/dashboards/{id}`.
pub(crate) async fn delete_dashboard(
    State(console): State<Console>,
    w: Writer,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let wh = &console.inner.wh;
    let mut row = newest(
        saved::dashboard_revisions(wh).await.map_err(lake)?,
        None,
        dashboard_key,
    )
    .into_iter()
    .find(|d| d.id == id)
    .ok_or_else(|| ConsoleError::NotFound(format!("no dashboard {id}")))?;
    if !may_edit(&w.signed, &row.owner) {
        return Err(ConsoleError::Forbidden(format!(
            "dashboard {id} is {}'s: only its owner and admins delete it",
            row.owner
        )));
    }
    row.deleted = true;
    row.saved_by = w.signed.direct.user().to_string();
    row.saved_at_us = now_us();
    saved::save_dashboard(wh, &row).await.map_err(lake)?;
    Ok(Json(serde_json::json!({ "deleted": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_revision_wins_and_deletes_hide() {
        let r = |id: &str, at: i64, deleted: bool| ChartRow {
            id: id.into(),
            name: format!("{id}@{at}"),
            saved_at_us: at,
            deleted,
            ..Default::default()
        };
        let revs = vec![
            r("a", 1, false),
            r("b", 2, false),
            r("a", 3, false),
            r("b", 4, true),
        ];
        let now = newest(revs.clone(), None, chart_key);
        assert_eq!(
            now.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a@3"]
        );
        // As it stood at 2: both, a's first revision.
        let then = newest(revs, Some(2), chart_key);
        assert_eq!(
            then.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["b@2", "a@1"]
        );
    }

    #[test]
    fn instants_are_checked() {
        assert!(instant_us("2026-10-24T00:00:00.000Z").is_ok());
        assert!(instant_us("yesterday").is_err());
        assert!(instant_us("2026-10-24'; DROP").is_err());
    }
}
