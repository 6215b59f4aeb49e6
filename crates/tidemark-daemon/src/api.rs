//! The HTTP API (axum), on 127.0.0.1:8421 by default: what the CLI, the console and
//! other systems use to see and drive the daemon. One file per resource:
//! [`jobs`] (list, trigger), [`runs`] (one, recent), [`status`] (tables, jobs,
//! capture), plus `/metrics`, `/healthz` and `/readyz`.
//!
//! The OpenAPI description at `/api/v1/openapi.json` is generated from the
//! handlers' `#[utoipa::path]` annotations (utoipa-axum collects them as routes
//! are added), so it cannot drift from the code.
//!
//! TLS: when `[server]` has `tls_cert` and `tls_key`, the API serves HTTPS with the
//! same certificate and rustls settings as the PostgreSQL endpoint.
//!
//! Auth: every route but `/healthz` and `/readyz` needs `Authorization: Bearer
//! <token>` (tokens: [`crate::tokens`]), or HTTP Basic as a user of the PostgreSQL
//! endpoint: a user whose role is an admin role is an admin here, any other may read. No token or an unknown one is 401; a token
//! whose role does not allow the request is 403; both with a JSON body saying why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tidemark_lake::Warehouse;
use tidemark_scheduler::Handle;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::tokens::{Role, Tokens};

pub mod features;
pub mod jobs;
pub mod runs;
pub mod status;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    /// The scheduler's handle.
    pub scheduler: Handle,
    /// The warehouse (status).
    pub wh: Warehouse,
    /// The tokens in force (swapped whole when the file changes).
    pub tokens: Arc<RwLock<Tokens>>,
    /// Capture's figures, for `/metrics` and status.
    pub metrics: tidemark_capture::metrics::Shared,
    /// Set once capture and the scheduler are running.
    pub ready: Arc<AtomicBool>,
    /// The PostgreSQL endpoint's users, who may also log in here (HTTP Basic).
    pub users: Arc<RwLock<Users>>,
    /// The online feature store (`/api/v1/features`), when the config defines views.
    pub features: Option<Arc<tidemark_features::OnlineStore>>,
}

/// The endpoint's users as the API sees them: a user whose role is an admin role is
/// an admin here; any other user may read (viewer).
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Users with their verifiers.
    pub users: tidemark_server::auth::Users,
    /// Roles with `admin = true` (and the built-in `admin`).
    pub admin_roles: std::collections::BTreeSet<String>,
    /// `[server.roles]`: what each role reads (online features are granted and
    /// masked like their sources, as on the endpoint).
    pub policy: tidemark_server::access::Policy,
}

impl Users {
    /// The users of `[server] users_file` and the admin roles of `[server.roles]`;
    /// no users when the file does not exist.
    pub fn load(config: &tidemark_core::config::Config) -> anyhow::Result<Self> {
        let path = &config.server.users_file;
        let users = if path.exists() {
            tidemark_server::auth::Users::load(path)?
        } else {
            Default::default()
        };
        let mut admin_roles: std::collections::BTreeSet<String> = config
            .server
            .roles
            .iter()
            .filter(|(_, r)| r.admin)
            .map(|(n, _)| n.clone())
            .collect();
        if !config
            .server
            .roles
            .contains_key(tidemark_server::access::ADMIN)
        {
            admin_roles.insert(tidemark_server::access::ADMIN.into());
        }
        let policy = tidemark_server::access::Policy::from_config(&config.server.roles)?;
        Ok(Self {
            users,
            admin_roles,
            policy,
        })
    }
}

/// An error answer: `{"error": "...", "hint": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            error: error.into(),
            hint: hint.map(str::to_string),
            status: status.as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(&self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        r
    }
}

/// Who called: the token presented, with its role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The `[server.roles]` role it reads data as: a user's role, or the role a
    /// token was made with (`--sql-role`); `None`: it reads no data.
    pub sql_role: Option<String>,
}

impl Caller {
    /// 403 unless the caller's role is at least `needed`.
    pub fn needs(&self, needed: Role, to: &str) -> Result<(), ApiError> {
        if self.role >= needed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} has role {}; {to} needs {needed}",
                self.name, self.role
            ),
            Some("use a token with that role (tidemark token add NAME --role ...)"),
        ))
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no bearer token",
                Some("send Authorization: Bearer <token>; make one with `tidemark token add NAME`"),
            ));
        };
        let value = value.to_str().unwrap_or_default();
        if let Some(basic) = value.strip_prefix("Basic ") {
            return basic_login(api, basic.trim());
        }
        let presented = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .unwrap_or_default();
        let tokens = api.tokens.read().expect("tokens lock");
        match tokens.check(presented) {
            Some(t) => Ok(Caller {
                name: t.name.clone(),
                role: t.role,
                sql_role: t.sql_role.clone(),
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid",
                Some("check the token, or make a new one with `tidemark token add NAME`"),
            )),
        }
    }
}

/// A user of the PostgreSQL endpoint logging in with HTTP Basic (`user:password`).
fn basic_login(api: &Api, encoded: &str) -> Result<Caller, ApiError> {
    use base64::Engine as _;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "user name or password is wrong",
            Some("log in as a user of the PostgreSQL endpoint (tidemark user add), or with a bearer token"),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(refused)?;
    let (user, password) = decoded.split_once(':').ok_or_else(refused)?;
    let users = api.users.read().expect("users lock");
    let Some((role, verifier)) = users.users.get(user) else {
        return Err(refused());
    };
    if !verifier.matches_password(password) {
        return Err(refused());
    }
    Ok(Caller {
        name: format!("user:{user}"),
        sql_role: Some(role.clone()),
        role: if users.admin_roles.contains(role) {
            Role::Admin
        } else {
            Role::Viewer
        },
    })
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tidemark", description = "The tidemark daemon: jobs, runs, status."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The router, with the OpenAPI description of its routes.
pub fn router(api: Api) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::trigger))
        .routes(routes!(runs::one))
        .routes(routes!(runs::recent))
        .routes(routes!(status::status))
        .routes(routes!(features::one))
        .routes(routes!(features::many))
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        // Composite keys: one path segment per key column.
        .route("/api/v1/features/{view}/{key}/{*rest}", get(features::one))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(api)
}

async fn readyz(State(api): State<Api>) -> Response {
    if api.ready.load(Ordering::SeqCst) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// Prometheus text: capture's figures, then the jobs'.
async fn metrics(State(api): State<Api>, caller: Caller) -> Result<Response, ApiError> {
    caller.needs(Role::Viewer, "reading metrics")?;
    let mut text = api
        .metrics
        .lock()
        .expect("metrics lock")
        .render(chrono::Utc::now().timestamp_micros());
    text.push_str(&jobs::metrics(&api.scheduler));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Serve `app` over TLS with this certificate and key (PEM, as `[server]` names
/// them: the endpoint's rustls settings) until `shutdown` completes; what `tidemark
/// console` does when `[server]` has a certificate.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = tidemark_server::tls::server_config(cert, key, vec![b"http/1.1".to_vec()])?;
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    serve_tls(listener, app, tls, token).await;
    Ok(())
}

/// Serve `app` over TLS until `shutdown`: axum's `serve` speaks plain TCP only, so
/// each connection is accepted through rustls and handed to hyper. A client whose
/// handshake fails is dropped (and logged at debug: scanners are common).
pub(crate) async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: tokio_rustls::TlsAcceptor,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "the HTTP API could not accept a connection");
                    continue;
                }
            },
        };
        let (tls, app, shutdown) = (tls.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            // The client's address, as `into_make_service_with_connect_info` gives it.
            let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
