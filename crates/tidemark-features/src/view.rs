//! Feature views: `[features.VIEW]` in the config file, typed.
//!
//! tidemark-core keeps each `[features.VIEW]` as a raw TOML table (as it does jobs),
//! and this module turns it into a [`FeatureView`]. Parsing is by hand rather than by
//! a derived `Deserialize`: serde's messages for the shapes used here ("a string or a
//! list", "a column or `{ name, sql }`") say "data did not match any variant", with no
//! key; these say which view, which key, and what to write instead. What can only be
//! checked against the warehouse (the source exists, its columns, the expressions
//! plan) is checked when a training set is planned, with the same kind of message.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Error, Result};

/// Which form of the source a view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every version with its validity (`<schema>_history.<table>`): the value of a
    /// row at an instant is the version valid then. The default, and the only form
    /// that is point-in-time correct for rows that are updated.
    History,
    /// The rows as they are now, placed in time by `event_time` alone (Feast's
    /// model): right for tables only ever inserted into (events, ledgers), and for
    /// sources with no history of their own (models materialised as views, tables
    /// jobs write). An updated row's earlier values are gone, so training rows would
    /// see them as they are now.
    Table,
}

impl Read {
    /// The word the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Read::History => "history",
            Read::Table => "table",
        }
    }
}

/// One feature of a view: a column of the source, or a SQL expression over a row of
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The name it has in training sets.
    pub name: String,
    /// A SQL expression over one row of the source (a bare column name for a column
    /// feature), planned by DataFusion against the source's columns.
    pub sql: String,
    /// Shown in docs and catalogs.
    pub description: Option<String>,
}

/// A feature view: features of one entity, read from one source at any instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureView {
    /// The view's name (`[features.NAME]`).
    pub name: String,
    /// The source's SQL schema (`invoicing`, or a model's `analytics`).
    pub schema: String,
    /// The source's SQL table name.
    pub table: String,
    /// Which form of the source is read.
    pub read: Read,
    /// The entity's key columns, as entity rows and training sets name them.
    pub entity: Vec<String>,
    /// The source columns the entity's columns match, in the same order (`join_on`;
    /// the entity's names when absent).
    pub join_on: Vec<String>,
    /// The source column that says when a row's values happened: `None` means the
    /// version's `_valid_from` (history only).
    pub event_time: Option<String>,
    /// A value whose event time is more than this before the training row's instant
    /// is NULL (stale); `None`: values never go stale.
    pub ttl: Option<Duration>,
    /// The features, in the order training sets show them.
    pub features: Vec<Feature>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// What the view is.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
}

const KEYS: [&str; 10] = [
    "source",
    "read",
    "entity",
    "join_on",
    "event_time",
    "features",
    "ttl",
    "tags",
    "description",
    "owner",
];

/// Every feature view of a config, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureViews {
    views: BTreeMap<String, FeatureView>,
}

impl FeatureViews {
    /// Parse `[features.*]` as tidemark-core keeps them (`Config::features`).
    pub fn parse(tables: &BTreeMap<String, toml::Table>) -> Result<Self> {
        let mut views = BTreeMap::new();
        for (name, table) in tables {
            views.insert(name.clone(), FeatureView::parse(name, table)?);
        }
        Ok(Self { views })
    }

    /// The view named `name`, or an error listing the defined ones.
    pub fn get(&self, name: &str) -> Result<&FeatureView> {
        self.views.get(name).ok_or_else(|| Error::UnknownView {
            name: name.to_string(),
            defined: if self.views.is_empty() {
                "none (define [features.NAME] in the config file)".to_string()
            } else {
                self.views.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// Every view, by name.
    pub fn iter(&self) -> impl Iterator<Item = &FeatureView> {
        self.views.values()
    }

    /// Whether no view is defined.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

impl FeatureView {
    /// Parse one `[features.NAME]` table.
    pub fn parse(name: &str, table: &toml::Table) -> Result<Self> {
        let bad = |field: &str, message: String| Error::definition(name, field, message);
        if name.is_empty() || name.starts_with("__") {
            return Err(bad(
                "",
                "a view's name must be non-empty and not start with __".into(),
            ));
        }
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(bad(
                    key,
                    format!("unknown key; a feature view takes {}", KEYS.join(", ")),
                ));
            }
        }
        let source = string(name, table, "source")?.ok_or_else(|| {
            bad(
                "source",
                "missing; name the table or model the features come from, e.g. source = \"invoicing.customers\"".into(),
            )
        })?;
        let (schema, tbl) = match source.split_once('.') {
            Some((s, t)) if !s.is_empty() && !t.is_empty() && !t.contains('.') => {
                (s.to_string(), t.to_string())
            }
            _ => {
                return Err(bad(
                    "source",
                    format!("{source:?} is not schema.table; write e.g. \"invoicing.customers\" or a model's \"analytics.customer_summary\""),
                ))
            }
        };
        let read = match string(name, table, "read")?.as_deref() {
            None | Some("history") => Read::History,
            Some("table") => Read::Table,
            Some(other) => {
                return Err(bad(
                    "read",
                    format!("{other:?}: write \"history\" (every version with its validity; the default) or \"table\" (the rows as they are now, placed in time by event_time)"),
                ))
            }
        };
        let entity = names(name, table, "entity")?.ok_or_else(|| {
            bad(
                "entity",
                "missing; name the entity's key column(s), e.g. entity = \"customer_id\" or [\"a\", \"b\"]".into(),
            )
        })?;
        let join_on = names(name, table, "join_on")?.unwrap_or_else(|| entity.clone());
        if join_on.len() != entity.len() {
            return Err(bad(
                "join_on",
                format!(
                    "{} columns for {} entity columns; join_on lists the source column each entity column matches, in order",
                    join_on.len(),
                    entity.len()
                ),
            ));
        }
        for e in &entity {
            if e.starts_with("__tm_") {
                return Err(bad(
                    "entity",
                    format!("{e:?}: names starting with __tm_ are tidemark's own"),
                ));
            }
        }
        let event_time = string(name, table, "event_time")?;
        if read == Read::Table && event_time.is_none() {
            return Err(bad(
                "event_time",
                "missing; a view with read = \"table\" has no versions to date its rows, so name the column that says when each row happened (e.g. event_time = \"paid_at\")".into(),
            ));
        }
        let ttl = match string(name, table, "ttl")? {
            None => None,
            Some(t) => Some(humantime::parse_duration(&t).map_err(|e| {
                bad(
                    "ttl",
                    format!("{t:?}: {e}; write a duration such as \"30d\", \"12h\", \"90m\""),
                )
            })?),
        };
        let features = features(name, table)?;
        let tags = names(name, table, "tags")?.unwrap_or_default();
        Ok(Self {
            name: name.to_string(),
            schema,
            table: tbl,
            read,
            entity,
            join_on,
            event_time,
            ttl,
            features,
            tags,
            description: string(name, table, "description")?,
            owner: string(name, table, "owner")?,
        })
    }

    /// `schema.table`, as SQL names the source.
    pub fn source(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// An optional string key.
fn string(view: &str, table: &toml::Table, key: &str) -> Result<Option<String>> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(toml::Value::String(_)) => Err(Error::definition(view, key, "is empty")),
        Some(other) => Err(Error::definition(
            view,
            key,
            format!("is a {}, not a string", other.type_str()),
        )),
    }
}

/// An optional key holding one name or a non-empty list of distinct names.
fn names(view: &str, table: &toml::Table, key: &str) -> Result<Option<Vec<String>>> {
    let bad = |m: String| Error::definition(view, key, m);
    let list = match table.get(key) {
        None => return Ok(None),
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(bad(format!(
                    "holds a {}; write names as strings",
                    other.type_str()
                ))),
            })
            .collect::<Result<Vec<_>>>()?,
        Some(other) => {
            return Err(bad(format!(
                "is a {}; write a name or a list of names",
                other.type_str()
            )))
        }
    };
    if list.is_empty() && key != "tags" {
        return Err(bad("is an empty list".into()));
    }
    for (i, n) in list.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(bad("holds an empty name".into()));
        }
        if list[..i].contains(n) {
            return Err(bad(format!("names {n:?} twice")));
        }
    }
    Ok(Some(list))
}

/// `features = ["col", { name = "x", sql = "expr", description = "…" }, …]`.
fn features(view: &str, table: &toml::Table) -> Result<Vec<Feature>> {
    let Some(value) = table.get("features") else {
        return Err(Error::definition(
            view,
            "features",
            "missing; list the features, e.g. features = [\"country\", { name = \"name_length\", sql = \"length(name)\" }]",
        ));
    };
    let toml::Value::Array(items) = value else {
        return Err(Error::definition(
            view,
            "features",
            format!("is a {}, not a list", value.type_str()),
        ));
    };
    if items.is_empty() {
        return Err(Error::definition(view, "features", "is an empty list"));
    }
    let mut out: Vec<Feature> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("features[{i}]");
        let feature = match item {
            toml::Value::String(c) if !c.trim().is_empty() => Feature {
                name: c.clone(),
                sql: quote_ident(c),
                description: None,
            },
            toml::Value::Table(t) => {
                for k in t.keys() {
                    if !["name", "sql", "description"].contains(&k.as_str()) {
                        return Err(Error::definition(
                            view,
                            format!("{field}.{k}"),
                            "unknown key; a feature takes name, sql, description",
                        ));
                    }
                }
                let get = |k: &str| -> Result<Option<String>> {
                    match t.get(k) {
                        None => Ok(None),
                        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                        Some(_) => Err(Error::definition(
                            view,
                            format!("{field}.{k}"),
                            "must be a non-empty string",
                        )),
                    }
                };
                let name = get("name")?
                    .ok_or_else(|| Error::definition(view, format!("{field}.name"), "missing"))?;
                Feature {
                    // A feature with no SQL is the column of its name.
                    sql: get("sql")?.unwrap_or_else(|| quote_ident(&name)),
                    name,
                    description: get("description")?,
                }
            }
            other => {
                return Err(Error::definition(
                    view,
                    field,
                    format!(
                        "is a {}; write a column name or {{ name = \"…\", sql = \"…\" }}",
                        other.type_str()
                    ),
                ))
            }
        };
        if feature.name.starts_with("__tm_") {
            return Err(Error::definition(
                view,
                field,
                "names starting with __tm_ are tidemark's own",
            ));
        }
        if out.iter().any(|f| f.name == feature.name) {
            return Err(Error::definition(
                view,
                field,
                format!("{:?} is named twice", feature.name),
            ));
        }
        out.push(feature);
    }
    Ok(out)
}

/// A column name as a SQL identifier, so a column feature named `Total` or `order`
/// reads that column rather than `total` or a keyword.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FeatureViews> {
        #[derive(serde::Deserialize)]
        struct File {
            features: BTreeMap<String, toml::Table>,
        }
        let f: File = toml::from_str(text).unwrap();
        FeatureViews::parse(&f.features)
    }

    #[test]
    fn a_full_view() {
        let v = parse(
            r#"
[features.customer]
source = "invoicing.customers"
entity = "customer_id"
join_on = "id"
features = ["country", { name = "name_length", sql = "length(name)", description = "letters" }]
ttl = "30d"
tags = ["finance"]
description = "who the customer is"
owner = "ml@example.com"
"#,
        )
        .unwrap();
        let v = v.get("customer").unwrap();
        assert_eq!(
            (v.schema.as_str(), v.table.as_str()),
            ("invoicing", "customers")
        );
        assert_eq!(v.read, Read::History);
        assert_eq!(v.entity, ["customer_id"]);
        assert_eq!(v.join_on, ["id"]);
        assert_eq!(v.event_time, None);
        assert_eq!(v.ttl, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(v.features[0].sql, "\"country\"");
        assert_eq!(v.features[1].name, "name_length");
        assert_eq!(v.features[1].sql, "length(name)");
        assert_eq!(v.tags, ["finance"]);
        assert_eq!(v.owner.as_deref(), Some("ml@example.com"));
    }

    #[test]
    fn errors_name_the_view_and_the_key() {
        let cases = [
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [\"a\"]\nentiy = 1",
                "features.v.entiy: unknown key",
            ),
            (
                "entity = \"id\"\nfeatures = [\"a\"]",
                "features.v.source: missing",
            ),
            (
                "source = \"xy\"\nentity = \"id\"\nfeatures = [\"a\"]",
                "features.v.source: \"xy\" is not schema.table",
            ),
            (
                "source = \"x.y\"\nfeatures = [\"a\"]",
                "features.v.entity: missing",
            ),
            (
                "source = \"x.y\"\nentity = [\"a\", \"b\"]\njoin_on = \"id\"\nfeatures = [\"a\"]",
                "features.v.join_on: 1 columns for 2",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [\"a\"]\nttl = \"soon\"",
                "features.v.ttl: \"soon\"",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [\"a\", \"a\"]",
                "features.v.features[1]: \"a\" is named twice",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [{ sql = \"1\" }]",
                "features.v.features[0].name: missing",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [{ name = \"a\", expr = \"1\" }]",
                "features.v.features[0].expr: unknown key",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [1]",
                "features.v.features[0]: is a integer",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [\"a\"]\nread = \"table\"",
                "features.v.event_time: missing",
            ),
            (
                "source = \"x.y\"\nentity = \"id\"\nfeatures = [\"a\"]\nread = \"now\"",
                "features.v.read: \"now\"",
            ),
            (
                "source = \"x.y\"\nentity = 3\nfeatures = [\"a\"]",
                "features.v.entity: is a integer",
            ),
        ];
        for (body, want) in cases {
            let e = parse(&format!("[features.v]\n{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{body}\n  gave: {e}\n  want: {want}…");
        }
    }

    #[test]
    fn an_unknown_view_lists_the_defined_ones() {
        let v =
            parse("[features.a]\nsource = \"x.y\"\nentity = \"id\"\nfeatures = [\"c\"]\n").unwrap();
        let e = v.get("b").unwrap_err().to_string();
        assert!(e.contains("\"b\" is not defined; defined: a"), "{e}");
    }
}
