//! `/api/v1/features`: online feature lookups by entity key.
//!
//! * `GET /api/v1/features/{view}/{key}`: one entity. A composite key is one path
//!   segment per key column, in the view's `entity` order
//!   (`/api/v1/features/by_region/42/eu`); each segment is percent-decoded on its
//!   own, so a `/` inside a key value is written `%2F`.
//! * `POST /api/v1/features/{view}` with `{"keys": [...]}`: up to [`MAX_KEYS`]
//!   entities; each key is a scalar (one key column), an array (the columns in
//!   order) or an object by column name.
//!
//! Access is SQL's: the caller reads as a `[server.roles]` role (a user of the
//! endpoint logging in with HTTP Basic reads as their role; a bearer token as the
//! role it was made with, `tidemark token add NAME --sql-role ROLE`), a view is
//! readable when that role is granted the view's source table, and features that
//! read a column the role sees masked are computed over the mask. A role with a
//! row filter on the source is refused (the store does not apply row filters).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};
use tidemark_features::{Found, OnlineView, Value, Variant};
use utoipa::ToSchema;

use super::{Api, ApiError, Caller};
use crate::tokens::Role;

/// The most keys one batch lookup takes.
pub const MAX_KEYS: usize = 1000;

const PREFIX: &str = "/api/v1/features/";

/// One entity's features.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureVector {
    /// The key, by column, as asked.
    #[schema(value_type = Object)]
    pub key: serde_json::Map<String, serde_json::Value>,
    /// Whether the entity has a value (false: unknown entity, or a stale value).
    pub found: bool,
    /// Whether it has a value older than the view's TTL, which is not served.
    pub stale: bool,
    /// When the value happened (the view's event time), RFC 3339.
    pub event_time: Option<String>,
    /// The features by name (null when not found).
    #[schema(value_type = Object)]
    pub features: serde_json::Map<String, serde_json::Value>,
}

/// A batch lookup's answer, in the order of the keys asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureVectors {
    /// The view.
    pub view: String,
    /// One per key asked.
    pub results: Vec<FeatureVector>,
}

/// A batch lookup.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Keys {
    /// Keys: scalars (a one-column key), arrays (columns in order) or objects by
    /// column name.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    // A `%` must start an escape (the crate would pass a stray one through).
    let bytes = s.as_bytes();
    let stray = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if stray {
        return Err(bad_request(format!(
            "{s:?} is not percent-encoded correctly"
        )));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| bad_request(format!("{s:?} is not UTF-8 once decoded")))
}

fn bad_request(m: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        m,
        Some("see docs/features.md, \"Online lookups\""),
    )
}

/// The view, readable by the caller, and the mask variant it reads.
fn admit(api: &Api, caller: &Caller, view: &str) -> Result<(Arc<OnlineView>, Variant), ApiError> {
    caller.needs(Role::Viewer, "reading features")?;
    let Some(store) = &api.features else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no feature views are served",
            Some("define [features.NAME] in the config file; the daemon serves them online"),
        ));
    };
    let v = store
        .view(view)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string(), None))?;
    let Some(role_name) = &caller.sql_role else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token {:?} reads no data: it has no SQL role, and features are granted like their source tables", caller.name),
            Some("make a token that reads as a [server.roles] role: tidemark token add NAME --role viewer --sql-role ROLE; or log in as a user of the PostgreSQL endpoint"),
        ));
    };
    let users = api.users.read().expect("users lock");
    let Some(role) = users.policy.role(role_name) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{:?} reads as role {role_name}, which [server.roles] does not define",
                caller.name
            ),
            Some("define the role, or give the token another one"),
        ));
    };
    let (schema, table) = (&v.def.schema, &v.def.table);
    role.feature_access(view, (schema.as_str(), table.as_str()))
        .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, m, None))?;
    let variant = v.variant_for(role.masks_on(schema, table)).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("feature view {view} cannot be served to role {role_name}: its masks on {schema}.{table} were not known when the online store was built, or mask a key column"),
            Some("restart the daemon after changing masks"),
        )
    })?;
    if !v.is_ready() {
        // Not built yet: still reading the lake, or failing to (a source that does
        // not exist yet, a feature that does not plan): say which.
        return Err(match v.error() {
            Some(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("feature view {view} cannot be built: {e}"),
                Some("fix the view's definition or land its source; the daemon tries again at every poll"),
            ),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("feature view {view} is being built from the lake"),
                Some("try again in a few seconds"),
            ),
        });
    }
    Ok((v.clone(), variant))
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Text(s) => J::String(s.clone()),
        Value::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
            .map_or(J::Null, |d| J::String(d.to_string())),
        Value::Timestamp(us) => chrono::DateTime::from_timestamp_micros(*us).map_or(J::Null, |t| {
            J::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }),
        // As text: a JSON number would lose digits.
        Value::Decimal(v, _, s) => J::String(decimal(*v, *s)),
    }
}

fn decimal(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * 10i128.pow(u32::from(scale.unsigned_abs()))).to_string();
    }
    let s = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let s = format!("{s:0>width$}", width = scale + 1);
    let (int, frac) = s.split_at(s.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

fn vector(v: &OnlineView, parts: &[String], found: Found) -> FeatureVector {
    FeatureVector {
        key: v
            .key_columns()
            .iter()
            .zip(parts)
            .map(|(c, p)| (c.clone(), serde_json::Value::String(p.clone())))
            .collect(),
        found: found.found,
        stale: found.stale,
        event_time: found
            .event_time_us
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        features: v
            .def
            .features
            .iter()
            .zip(&found.values)
            .map(|(f, x)| (f.name.clone(), json(x)))
            .collect(),
    }
}

fn lookup_error(e: tidemark_features::Error) -> ApiError {
    match e {
        tidemark_features::Error::NotReady { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
            Some("try again in a few seconds"),
        ),
        other => bad_request(other.to_string()),
    }
}

/// One entity's latest features. A composite key takes one path segment per key
/// column (`/api/v1/features/{view}/{part1}/{part2}`).
#[utoipa::path(get, path = "/api/v1/features/{view}/{key}", tag = "features",
    params(("view" = String, Path, description = "The feature view"),
           ("key" = String, Path, description = "The entity key; a composite key is one segment per column")),
    responses((status = 200, body = FeatureVector), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 503, body = ApiError)))]
pub async fn one(
    State(api): State<Api>,
    caller: Caller,
    uri: Uri,
) -> Result<Json<FeatureVector>, ApiError> {
    // Split the raw path, then decode each segment: a decoded `/` stays in its part.
    let rest = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let mut segments = rest.split('/');
    let view = percent_decode(segments.next().unwrap_or_default())?;
    let parts: Vec<String> = segments.map(percent_decode).collect::<Result<_, _>>()?;
    let (v, variant) = admit(&api, &caller, &view)?;
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let key = v.key(&refs).map_err(lookup_error)?;
    let found = v
        .lookup(&[key], variant, now_us())
        .map_err(lookup_error)?
        .pop()
        .expect("one key, one answer");
    Ok(Json(vector(&v, &parts, found)))
}

/// Many entities' latest features (up to 1000 keys), in the order asked.
#[utoipa::path(post, path = "/api/v1/features/{view}", tag = "features",
    params(("view" = String, Path, description = "The feature view")),
    request_body(content = Keys, content_type = "application/json"),
    responses((status = 200, body = FeatureVectors), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 503, body = ApiError)))]
pub async fn many(
    State(api): State<Api>,
    caller: Caller,
    axum::extract::Path(view): axum::extract::Path<String>,
    Json(body): Json<Keys>,
) -> Result<Json<FeatureVectors>, ApiError> {
    let (v, variant) = admit(&api, &caller, &view)?;
    if body.keys.len() > MAX_KEYS {
        return Err(bad_request(format!(
            "{} keys; a batch takes at most {MAX_KEYS}: split it",
            body.keys.len()
        )));
    }
    let columns = v.key_columns();
    let text = |x: &serde_json::Value| -> Result<String, ApiError> {
        match x {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            other => Err(bad_request(format!(
                "key value {other} is not a string or a number"
            ))),
        }
    };
    let mut all_parts: Vec<Vec<String>> = Vec::with_capacity(body.keys.len());
    for k in &body.keys {
        let parts = match k {
            serde_json::Value::Array(a) => a.iter().map(text).collect::<Result<Vec<_>, _>>()?,
            serde_json::Value::Object(o) => columns
                .iter()
                .map(|c| {
                    o.get(c)
                        .ok_or_else(|| {
                            bad_request(format!(
                                "key {k} has no {c:?}; view {view} is keyed by {}",
                                columns.join(", ")
                            ))
                        })
                        .and_then(text)
                })
                .collect::<Result<Vec<_>, _>>()?,
            scalar => vec![text(scalar)?],
        };
        all_parts.push(parts);
    }
    let keys = all_parts
        .iter()
        .map(|p| v.key(&p.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(lookup_error)?;
    let found = v.lookup(&keys, variant, now_us()).map_err(lookup_error)?;
    Ok(Json(FeatureVectors {
        view,
        results: all_parts
            .iter()
            .zip(found)
            .map(|(p, f)| vector(&v, p, f))
            .collect(),
    }))
}
