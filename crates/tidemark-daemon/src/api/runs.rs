//! `/api/v1/runs`: one run, or the newest runs of a job or of all.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidemark_scheduler::store::{Outcome, RunRecord};
use utoipa::{IntoParams, ToSchema};

use super::{Api, ApiError, Caller};
use crate::tokens::Role;

/// One run of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// `<job>-<seq>`.
    pub id: String,
    /// The job.
    pub job: String,
    /// Its number among the job's runs.
    pub seq: u64,
    /// What triggered it.
    pub reason: String,
    /// The cron or interval tick it serves.
    pub tick: Option<chrono::DateTime<chrono::Utc>>,
    /// Input tables' Delta versions it consumes.
    pub inputs: BTreeMap<String, i64>,
    /// Parameters of a manual trigger.
    pub params: BTreeMap<String, String>,
    /// The daemon that runs it.
    pub holder: String,
    /// Start.
    pub started: chrono::DateTime<chrono::Utc>,
    /// End, once ended.
    pub ended: Option<chrono::DateTime<chrono::Utc>>,
    /// `running`, `succeeded`, `failed` or `abandoned`.
    pub outcome: String,
    /// Tries it took.
    pub attempts: u32,
    /// Rows it wrote.
    pub rows: u64,
    /// Why it failed, and what to do.
    pub error: Option<String>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        let outcome = match r.outcome {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        };
        Self {
            id: r.id,
            job: r.job,
            seq: r.seq,
            reason: r.reason,
            tick: r.tick,
            inputs: r.inputs,
            params: r.params,
            holder: r.holder,
            started: r.started,
            ended: r.ended,
            outcome: outcome.into(),
            attempts: r.attempts,
            rows: r.rows,
            error: r.error,
        }
    }
}

/// One run.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run, `<job>-<seq>`")),
    responses((status = 200, body = RunView), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn one(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    caller.needs(Role::Viewer, "reading runs")?;
    match api.scheduler.run(&id) {
        Some(r) => Ok(Json(r.into())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run {id}"),
            Some("runs are named <job>-<seq>; GET /api/v1/runs lists the newest"),
        )),
    }
}

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RecentQuery {
    /// Only this job's.
    pub job: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

/// The newest runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RecentQuery),
    responses((status = 200, body = Vec<RunView>), (status = 401, body = ApiError)))]
pub async fn recent(
    State(api): State<Api>,
    caller: Caller,
    Query(q): Query<RecentQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    caller.needs(Role::Viewer, "reading runs")?;
    let runs = api
        .scheduler
        .runs(q.job.as_deref(), q.limit.unwrap_or(50).min(1000));
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}
