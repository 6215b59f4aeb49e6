//! Environments that read another environment's warehouse: dbt's `defer`, what
//! SQLMesh's virtual environments give a dev environment with no data of its own.
//!
//! ```toml
//! [environments.dev]
//! warehouse = "./warehouse/dev"
//! defer_to = "prod"              # or, for one build: tidemark build --defer prod
//! ```
//!
//! A build of `dev` deferring to `prod` reads through one engine over both warehouses
//! ([`open`]): `source('db', 't')` is prod's landed table, and `ref('m')` is prod's
//! model table when `m` is neither selected in this build nor built in dev before;
//! the models it builds, and those dev has, are dev's. Prod's warehouse is opened with
//! [`Warehouse::open_read_only`], so every table read there goes through a store that
//! refuses every write, and nothing there is created; the build's writers are made for
//! dev's warehouse alone ([`crate::build`] refuses a read-only one). Nothing in dev can
//! write to prod by construction, not by care.
//!
//! The input versions a deferred build records carry the warehouse they were read
//! from (`InputMark::deferred_from`): a later build reading the input elsewhere (dev's
//! own sources, or deferring no more) is not up to date, and an incremental model
//! then builds whole rather than following another warehouse's versions.

use std::collections::BTreeSet;
use std::sync::Arc;

use tidemark_core::config::{Config, EnvironmentConfig, ModelsConfig};
use tidemark_lake::Warehouse;
use tidemark_query::Engine;

use crate::project::Project;

/// The environment a build reads from besides its own, with its warehouse opened
/// read-only.
#[derive(Debug, Clone)]
pub struct Defer {
    /// Its name (`prod`).
    pub environment: String,
    warehouse: Warehouse,
}

impl Defer {
    /// `environment`'s warehouse, opened read-only.
    pub fn open(environment: &str, config: &EnvironmentConfig) -> Result<Self, String> {
        let warehouse = Warehouse::open_read_only(
            &config.warehouse,
            config.storage_options.clone().into_iter().collect(),
        )
        .map_err(|e| format!("environment {environment} (deferred to): {e}"))?;
        Ok(Self {
            environment: environment.to_string(),
            warehouse,
        })
    }

    /// The warehouse (read-only).
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }
}

/// The environment a build of `environment` defers to: `flag` (`--defer ENV`) over
/// `[environments.<environment>] defer_to`; none with `no_defer` (`--no-defer`), or
/// when neither names one.
pub fn deferred_to(
    config: Option<&Config>,
    environment: &str,
    flag: Option<&str>,
    no_defer: bool,
) -> Result<Option<Defer>, String> {
    if no_defer {
        return Ok(None);
    }
    let Some(config) = config else {
        return match flag {
            Some(f) => Err(format!(
                "--defer {f}: no config file defines environment {f} (pass --config)"
            )),
            None => Ok(None),
        };
    };
    let name = match flag {
        Some(f) => f.to_string(),
        None => match config
            .environments
            .get(environment)
            .and_then(|e| e.defer_to.clone())
        {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    if name == environment {
        return Err(format!(
            "environment {environment} cannot defer to itself: defer names another environment (dev defers to prod)"
        ));
    }
    let env = config.environment(&name).map_err(|e| e.to_string())?;
    Defer::open(&name, env).map(Some)
}

/// Why [`open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading a warehouse failed (it may pass: a network error, say).
    #[error("{0}")]
    Warehouse(String),
    /// The models directory, or the selection, is wrong.
    #[error("{0}")]
    Models(String),
}

/// The engine a build (or test, or compile) of `environment` into `wh` reads through,
/// and the models of `models` as they render there. Without `defer`, an engine over
/// `wh`. With it, over `wh` and the deferred warehouse (read-only), where the names
/// the build keeps its own are the targets of the models `select` selects and of the
/// models `wh` already has (tables or views); every other name the deferred warehouse
/// has (its landed sources, its other models) is served from there.
pub async fn open(
    wh: &Warehouse,
    defer: Option<&Defer>,
    models: &ModelsConfig,
    environment: &str,
    select: &[String],
) -> Result<(Arc<Engine>, Project), OpenError> {
    let wh_err =
        |e: &dyn std::fmt::Display| OpenError::Warehouse(format!("reading the warehouse: {e}"));
    let models_err = |e: &dyn std::fmt::Display| OpenError::Models(e.to_string());
    let Some(defer) = defer else {
        let engine = Engine::open(wh).await.map_err(|e| wh_err(&e))?;
        let project = Project::load(models, Some(&engine.landed_names()), environment)
            .map_err(|e| models_err(&e))?;
        return Ok((Arc::new(engine), project));
    };
    let engine = open_deferred(wh, defer).await?;
    // `source()` names what the deferred warehouse landed.
    let project = Project::load(models, Some(&engine.landed_names()), environment)
        .map_err(|e| models_err(&e))?;
    let selected = crate::graph::select(&project, select).map_err(|e| models_err(&e))?;
    let here = own_names(wh).await?;
    let keep: BTreeSet<(String, String)> = project
        .models
        .iter()
        .map(|(name, m)| (name, (m.target.schema.clone(), m.target.table.clone())))
        .filter(|(name, key)| selected.contains(*name) || here.contains(key))
        .map(|(_, key)| key)
        .collect();
    engine.keep_own(keep).await.map_err(|e| wh_err(&e))?;
    Ok((Arc::new(engine), project))
}

/// Every table and view `wh` has, by (schema, name).
async fn own_names(wh: &Warehouse) -> Result<BTreeSet<(String, String)>, OpenError> {
    let wh_err =
        |e: &dyn std::fmt::Display| OpenError::Warehouse(format!("reading the warehouse: {e}"));
    let mut here: BTreeSet<(String, String)> = wh
        .list()
        .await
        .map_err(|e| wh_err(&e))?
        .into_iter()
        .map(|l| (l.schema, l.table))
        .collect();
    if let Some(views) = tidemark_lake::ViewDefs::existing(wh).map_err(|e| wh_err(&e))? {
        for v in views.list().await.map_err(|e| wh_err(&e))? {
            here.insert((v.schema, v.name));
        }
    }
    Ok(here)
}

/// The engine `tidemark sql` reads an environment that defers through: everything
/// `wh` has (its models, tables, views) from `wh`, every other name from the
/// deferred warehouse, read-only. Unlike a build's ([`open`]), no model is taken as
/// this environment's before it has been built here.
pub async fn open_for_queries(wh: &Warehouse, defer: &Defer) -> Result<Arc<Engine>, OpenError> {
    let engine = open_deferred(wh, defer).await?;
    let here = own_names(wh).await?;
    engine
        .keep_own(here)
        .await
        .map_err(|e| OpenError::Warehouse(format!("reading the warehouse: {e}")))?;
    Ok(Arc::new(engine))
}

/// An engine over `wh` and `defer`'s warehouse (read-only), its error naming both.
async fn open_deferred(wh: &Warehouse, defer: &Defer) -> Result<Engine, OpenError> {
    Engine::open_deferred(wh, &defer.warehouse)
        .await
        .map_err(|e| {
            OpenError::Warehouse(format!(
                "reading environment {} ({}, deferred to) and this warehouse: {e}",
                defer.environment,
                defer.warehouse.root()
            ))
        })
}
