//! `GET /console/api/features`: the feature views of the config (`[features.*]`,
//! tidemark-features) that the signed-in user's role may read, under the rule the
//! HTTP features API and the endpoint's `features` schema apply
//! ([`Role::feature_access`]: a grant on the view's source or on `features.<view>`,
//! and no row filter on the source). A view granted without its source does not
//! name the source.
//!
//! Each view's features come with their types: as the online store serves them
//! when one runs in this process and has built the view, else as the view's
//! expressions plan over its source in the role's own catalog (masked columns keep
//! their types). With an online store in process (`tidemark run`), each view's
//! entity count and how far it has followed its source (the history log version
//! applied, and the newest change in it); `tidemark console` alone serves no store.
//!
//! [`Role::feature_access`]: tidemark_server::access::Role::feature_access

use axum::extract::State;
use axum::Json;
use deltalake::datafusion::prelude::SQLOptions;
use serde::Serialize;
use tidemark_features::{FeatureView, OnlineView, Read};
use tidemark_lake::quote;

use crate::auth::Reader;
use crate::catalog::sql_type;
use crate::{Console, ConsoleError};

/// The features page's data.
#[derive(Debug, Serialize)]
pub struct Features {
    /// Whether an online store runs in this process: only then are entity counts
    /// and freshness known here.
    served: bool,
    /// The views the role may read, by name.
    views: Vec<ViewInfo>,
}

#[derive(Debug, Serialize)]
struct ViewInfo {
    name: String,
    /// The source, `schema.table`, when the role reads it (a view granted as
    /// `features.<view>` alone does not name it).
    source: Option<String>,
    /// `history` (every version with its validity) or `table` (the rows now).
    read: &'static str,
    /// The entity's key columns.
    entity: Vec<String>,
    /// The source columns they match.
    join_on: Vec<String>,
    /// The column that places a value in time; `None`: the version's
    /// `_valid_from`.
    event_time: Option<String>,
    /// Values older than this are stale (seconds); `None`: never.
    ttl_s: Option<u64>,
    features: Vec<FeatureInfo>,
    tags: Vec<String>,
    description: Option<String>,
    owner: Option<String>,
    /// The online store's state of the view, when one runs in this process.
    online: Option<OnlineInfo>,
}

#[derive(Debug, Serialize)]
struct FeatureInfo {
    name: String,
    /// Its SQL over a row of the source (a quoted column for a column feature).
    sql: String,
    /// The type it is served as (PostgreSQL's name), when known.
    r#type: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Serialize)]
struct OnlineInfo {
    /// Built from the lake (lookups are served).
    ready: bool,
    /// Entities held.
    entities: usize,
    /// Bytes held in memory.
    bytes: usize,
    /// The source's history log version applied.
    version: Option<i64>,
    /// The newest change applied landed then (ms since 1970).
    landed_ms: Option<i64>,
    /// Why following the source last failed (the last good state is served).
    error: Option<String>,
}

/// A view's facts, its feature types unknown.
fn info(v: &FeatureView, source_readable: bool) -> ViewInfo {
    ViewInfo {
        name: v.name.clone(),
        source: source_readable.then(|| v.source()),
        read: v.read.as_str(),
        entity: v.entity.clone(),
        join_on: v.join_on.clone(),
        event_time: v.event_time.clone(),
        ttl_s: v.ttl.map(|t| t.as_secs()),
        features: v
            .features
            .iter()
            .map(|f| FeatureInfo {
                name: f.name.clone(),
                sql: f.sql.clone(),
                r#type: None,
                description: f.description.clone(),
            })
            .collect(),
        tags: v.tags.clone(),
        description: v.description.clone(),
        owner: v.owner.clone(),
        online: None,
    }
}

fn online_info(o: &OnlineView) -> OnlineInfo {
    let memory = o.memory();
    let mark = o.mark();
    OnlineInfo {
        ready: o.is_ready(),
        entities: memory.entities,
        bytes: memory.bytes,
        version: mark.as_ref().map(|m| m.version),
        landed_ms: mark
            .as_ref()
            .filter(|m| m.ingest_us != i64::MIN)
            .map(|m| m.ingest_us.div_euclid(1000)),
        error: o.error(),
    }
}

/// The statement whose columns are the view's features, over the form of the
/// source it reads: planned, never run.
fn features_sql(v: &FeatureView) -> String {
    let schema = match v.read {
        Read::History => format!("{}_history", v.schema),
        Read::Table => v.schema.clone(),
    };
    let columns: Vec<String> = v
        .features
        .iter()
        .map(|f| format!("{} AS {}", f.sql, quote(&f.name)))
        .collect();
    format!(
        "SELECT {} FROM {}.{}",
        columns.join(", "),
        quote(&schema),
        quote(&v.table)
    )
}

/// The features page's data for the signed-in user.
pub(crate) async fn features(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Features>, ConsoleError> {
    let options = &console.inner.options;
    let role = s.direct.role();
    let online = options.online.as_ref();
    let mut views = Vec::new();
    for v in options.features.iter() {
        // The HTTP features API's rule, from tidemark-server's access code.
        if role
            .feature_access(&v.name, (v.schema.as_str(), v.table.as_str()))
            .is_err()
        {
            continue;
        }
        let source_readable = s.direct.reads(&v.schema, &v.table);
        let mut view = info(v, source_readable);
        let served = online.and_then(|store| store.view(&v.name).ok());
        if let Some(o) = served {
            view.online = Some(online_info(o));
            if let Some(schema) = o.arrow_schema() {
                for f in &mut view.features {
                    f.r#type = schema
                        .field_with_name(&f.name)
                        .ok()
                        .map(|field| sql_type(field.data_type()));
                }
            }
        }
        if source_readable && view.features.iter().any(|f| f.r#type.is_none()) {
            // Planned in the role's catalog (what it may not read does not plan),
            // and only a query is let through.
            let read_only = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            if let Ok(df) = s
                .direct
                .context()
                .sql_with_options(&features_sql(v), read_only)
                .await
            {
                let schema = df.schema();
                for (f, field) in view.features.iter_mut().zip(schema.fields()) {
                    f.r#type.get_or_insert_with(|| sql_type(field.data_type()));
                }
            }
        }
        views.push(view);
    }
    Ok(Json(Features {
        served: online.is_some(),
        views,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str) -> FeatureView {
        let table: toml::Table = toml::from_str(text).unwrap();
        FeatureView::parse("spend", &table).unwrap()
    }

    #[test]
    fn the_features_plan_over_the_form_of_the_source_the_view_reads() {
        let v = view(
            "source = \"shop.orders\"\nentity = \"customer_id\"\nttl = \"30d\"\n\
             features = [\"total\", { name = \"big\", sql = \"total > 100\" }]\n",
        );
        assert_eq!(
            features_sql(&v),
            "SELECT \"total\" AS \"total\", total > 100 AS \"big\" FROM \"shop_history\".\"orders\""
        );
        let i = info(&v, true);
        assert_eq!(i.source.as_deref(), Some("shop.orders"));
        assert_eq!(i.ttl_s, Some(30 * 86400));
        assert_eq!(i.read, "history");
        let v = view(
            "source = \"shop.payments\"\nread = \"table\"\nevent_time = \"paid_at\"\n\
             entity = \"customer_id\"\nfeatures = [\"amount\"]\n",
        );
        assert!(features_sql(&v).ends_with("FROM \"shop\".\"payments\""));
    }

    #[test]
    fn a_view_granted_without_its_source_does_not_name_it() {
        let v =
            view("source = \"shop.orders\"\nentity = \"customer_id\"\nfeatures = [\"total\"]\n");
        let i = info(&v, false);
        assert!(i.source.is_none());
        assert!(!serde_json::to_string(&i).unwrap().contains("orders"));
    }
}
