//! `/api/v1/status`: what `tidemark status --json` prints, and the jobs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::jobs::{views, JobView};
use super::{Api, ApiError, Caller};
use crate::tokens::Role;

/// The daemon's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Per landed table: position, freshness, state (`tidemark status`).
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<crate::status::TableStatus>,
    /// The jobs.
    pub jobs: Vec<JobView>,
}

/// Tables and jobs.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = Status), (status = 401, body = ApiError)))]
pub async fn status(State(api): State<Api>, caller: Caller) -> Result<Json<Status>, ApiError> {
    caller.needs(Role::Viewer, "reading status")?;
    let tables = crate::status::tables(&api.wh).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the warehouse: {e}"),
            Some("try again; if it persists, check the warehouse's storage"),
        )
    })?;
    Ok(Json(Status {
        tables,
        jobs: views(&api.scheduler),
    }))
}
