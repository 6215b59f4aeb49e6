//! `/api/v1/jobs`: the configured jobs, and triggering one.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidemark_scheduler::Handle;
use utoipa::ToSchema;

use super::runs::RunView;
use super::{Api, ApiError, Caller};
use crate::tokens::Role;

/// One job as the daemon runs it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Its name (`[jobs.NAME]`).
    pub name: String,
    /// Its kind (`sql`, `maintenance`, `pull`, …).
    pub kind: String,
    /// What triggers it, readable (`cron 0 3 * * * Europe/Paris`, `new data in shop.orders`).
    pub triggers: Vec<String>,
    /// The run in flight, if any.
    pub running: Option<String>,
    /// When a time trigger next fires.
    pub next_due: Option<chrono::DateTime<chrono::Utc>>,
    /// Its newest run.
    pub last: Option<RunView>,
    /// Stopped by a definite error until triggered by hand or reconfigured.
    pub paused_by_error: bool,
}

/// What a manual trigger may carry.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TriggerBody {
    /// Parameters the job's kind reads.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// The answer to a trigger.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triggered {
    /// The job.
    pub job: String,
    /// The run started, or `queued` when a run is in flight (it runs once after it).
    pub run: String,
}

/// The jobs in force.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobView>), (status = 401, body = ApiError)))]
pub async fn list(State(api): State<Api>, caller: Caller) -> Result<Json<Vec<JobView>>, ApiError> {
    caller.needs(Role::Viewer, "listing jobs")?;
    Ok(Json(views(&api.scheduler)))
}

/// The jobs in force as the API lists them (the web console shows the same).
pub fn views(h: &Handle) -> Vec<JobView> {
    h.jobs()
        .into_iter()
        .map(|j| JobView {
            name: j.name,
            kind: j.kind,
            triggers: j.triggers,
            running: j.running,
            next_due: j.next_due,
            last: j.last.map(RunView::from),
            paused_by_error: j.paused_by_error,
        })
        .collect()
}

/// Trigger a run of a job now (queued behind a run in flight).
#[utoipa::path(post, path = "/api/v1/jobs/{name}/runs", tag = "jobs",
    params(("name" = String, Path, description = "The job")),
    request_body(content = Option<TriggerBody>, content_type = "application/json"),
    responses((status = 202, body = Triggered), (status = 401, body = ApiError),
               (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn trigger(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    body: Option<Json<TriggerBody>>,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    caller.needs(Role::Operator, "triggering a run")?;
    let params = body.map(|b| b.0.params).unwrap_or_default();
    let by = format!("api:{}", caller.name);
    match api.scheduler.trigger(&name, &by, params).await {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(Triggered { job: name, run }))),
        Err(e) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            e.to_string(),
            Some("GET /api/v1/jobs lists the jobs; add one as [jobs.NAME] in the config"),
        )),
    }
}

/// The jobs' figures in Prometheus text.
pub(crate) fn metrics(h: &Handle) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let jobs = h.jobs();
    let _ = writeln!(
        out,
        "# HELP tidemark_job_running Whether a run of the job is in flight."
    );
    let _ = writeln!(out, "# TYPE tidemark_job_running gauge");
    for j in &jobs {
        let _ = writeln!(
            out,
            "tidemark_job_running{{job=\"{}\"}} {}",
            j.name,
            u8::from(j.running.is_some())
        );
    }
    let _ = writeln!(
        out,
        "# HELP tidemark_job_last_success_seconds When the job last succeeded (Unix seconds)."
    );
    let _ = writeln!(out, "# TYPE tidemark_job_last_success_seconds gauge");
    for j in &jobs {
        if let Some(r) = j
            .last
            .as_ref()
            .filter(|r| r.outcome == tidemark_scheduler::store::Outcome::Succeeded)
        {
            if let Some(end) = r.ended {
                let _ = writeln!(
                    out,
                    "tidemark_job_last_success_seconds{{job=\"{}\"}} {}",
                    j.name,
                    end.timestamp()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP tidemark_job_paused Whether a definite error stopped the job."
    );
    let _ = writeln!(out, "# TYPE tidemark_job_paused gauge");
    for j in &jobs {
        let _ = writeln!(
            out,
            "tidemark_job_paused{{job=\"{}\"}} {}",
            j.name,
            u8::from(j.paused_by_error)
        );
    }
    out
}
