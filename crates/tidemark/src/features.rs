//! `tidemark features`: the feature views of `[features.*]` and point-in-time
//! correct training sets (tidemark-features does the work).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidemark_features::{Clock, Entities, FeatureViews, Format, Request};
use tidemark_query::Engine;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `tidemark features …`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build a training set: for each entity row (keys and an instant), the views'
    /// features as they were at that instant, written to Parquet or CSV.
    TrainingSet(TrainingSetArgs),
    /// List the feature views the config defines.
    List,
    /// Build the online store's views from the lake (or bring their snapshots up to
    /// date) and write their snapshots, so `tidemark run` and `tidemark serve` start
    /// from them. Idempotent: running it again writes the same state.
    Materialize(MaterializeArgs),
}

/// Options of `tidemark features materialize`.
#[derive(Debug, clap::Args)]
pub struct MaterializeArgs {
    /// Only this view (repeatable; default: every view).
    #[arg(long = "view")]
    pub views: Vec<String>,
    /// Build from the lake even where a snapshot could be brought up to date.
    #[arg(long)]
    pub full: bool,
}

/// The clock a training set is correct for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClockArg {
    /// The value the source held at each row's instant (corrections landed later
    /// included).
    Event,
    /// The value known at each row's instant: changes landed after it are ignored.
    Known,
}

/// Options of `tidemark features training-set`.
#[derive(Debug, clap::Args)]
pub struct TrainingSetArgs {
    /// A feature view (`[features.NAME]`); repeatable, features in this order.
    #[arg(long = "view", required = true)]
    pub views: Vec<String>,
    /// The entity rows: a .parquet or .csv file (CSV with a header).
    #[arg(
        long,
        required_unless_present = "entities_sql",
        conflicts_with = "entities_sql"
    )]
    pub entities: Option<PathBuf>,
    /// The entity rows as a SELECT over the warehouse (time travel allowed).
    #[arg(long)]
    pub entities_sql: Option<String>,
    /// The entity rows' instant column (default: `event_timestamp`, else their only
    /// timestamp column).
    #[arg(long)]
    pub timestamp_column: Option<String>,
    /// `event`: as the source was at each instant; `known`: as tidemark knew it then.
    #[arg(long, value_enum, default_value = "event")]
    pub clock: ClockArg,
    /// Where to write the training set; `.parquet` or `.csv` unless --format says.
    #[arg(long)]
    pub out: PathBuf,
    /// `parquet` or `csv` (default: from --out's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// Name features `<view>__<feature>` (needed when two views share a feature name).
    #[arg(long)]
    pub full_feature_names: bool,
    /// Memory the join and sorts may hold before sorts spill to disk, in MiB (0: no
    /// limit).
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: usize,
}

/// Run `tidemark features`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let Some(config) = load_config(g, true)? else {
        bail!("tidemark features needs a config file with [features.NAME] views");
    };
    let views = FeatureViews::parse(&config.features)
        .with_context(|| format!("config file {}", g.config.display()))?;
    match args.command {
        Command::Materialize(a) => materialize(g, &config, &views, a).await,
        Command::List => {
            for v in views.iter() {
                let features: Vec<&str> = v.features.iter().map(|f| f.name.as_str()).collect();
                println!(
                    "{:<24} {} ({}) by {}: {}",
                    v.name,
                    v.source(),
                    v.read.as_str(),
                    v.entity.join(", "),
                    features.join(", ")
                );
            }
            Ok(())
        }
        Command::TrainingSet(a) => {
            let format = match a.format.as_deref() {
                Some(f) => {
                    Format::parse(f).with_context(|| format!("--format {f}: use parquet or csv"))?
                }
                None => Format::from_path(&a.out).with_context(|| {
                    format!(
                        "--out {}: name a .parquet or .csv file, or pass --format",
                        a.out.display()
                    )
                })?,
            };
            let entities = match (a.entities, a.entities_sql) {
                (Some(p), None) => Entities::File(p),
                (None, Some(s)) => Entities::Sql(s),
                _ => bail!("give the entity rows with --entities FILE or --entities-sql QUERY"),
            };
            let wh = warehouse(g, Some(&config))?;
            let engine = Arc::new(Engine::open(&wh).await.context("reading the warehouse")?);
            let request = Request {
                views: a.views,
                entities,
                timestamp_column: a.timestamp_column,
                clock: match a.clock {
                    ClockArg::Event => Clock::Event,
                    ClockArg::Known => Clock::Known,
                },
                full_feature_names: a.full_feature_names,
                memory_limit: (a.memory_mb > 0).then_some(a.memory_mb << 20),
            };
            let set = tidemark_features::training_set(&engine, &views, &request).await?;
            let bar = ProgressBar::with_draw_target(Some(set.rows), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, {eta})",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar.set_message("training set");
            let written = tidemark_features::write(set, &a.out, format, &bar).await?;
            println!(
                "wrote {} rows to {} (clock: {})",
                written.rows,
                a.out.display(),
                request.clock.as_str()
            );
            Ok(())
        }
    }
}

/// `tidemark features materialize`.
async fn materialize(
    g: &GlobalArgs,
    config: &tidemark_core::config::Config,
    views: &FeatureViews,
    a: MaterializeArgs,
) -> Result<()> {
    for v in &a.views {
        views.get(v)?;
    }
    let chosen: Vec<&tidemark_features::FeatureView> = views
        .iter()
        .filter(|v| a.views.is_empty() || a.views.contains(&v.name))
        .collect();
    if chosen.is_empty() {
        bail!("no feature views to materialize: define [features.NAME] in the config file");
    }
    let wh = warehouse(g, Some(config))?;
    let masks = tidemark_server::access::Policy::from_config(&config.server.roles)?.mask_sets();
    let store = tidemark_features::OnlineStore::new(chosen, &masks);
    let started = std::time::Instant::now();
    let engine = Engine::open(&wh).await.context("reading the warehouse")?;
    if !a.full {
        for s in store.load(&engine, &wh).await? {
            eprintln!(
                "{}: snapshot of {} entities loaded ({} bytes)",
                s.view, s.entities, s.bytes
            );
        }
    }
    store.catch_up(&engine, true).await;
    let mut failed = Vec::new();
    for v in store.views() {
        if let Some(e) = v.error() {
            eprintln!("{}: {e}", v.def.name);
            failed.push(v.def.name.clone());
        }
    }
    let only: Vec<String> = store
        .views()
        .filter(|v| !failed.contains(&v.def.name))
        .map(|v| v.def.name.clone())
        .collect();
    for s in store.save(&wh, &only).await? {
        let v = store.view(&s.view)?;
        let m = v.memory();
        println!(
            "{}: {} entities at log version {}, snapshot {} bytes, {} bytes in memory ({} per entity)",
            s.view,
            s.entities,
            v.mark().map_or(-1, |m| m.version),
            s.bytes,
            m.bytes,
            m.bytes.checked_div(m.entities).unwrap_or(0)
        );
    }
    eprintln!("materialized in {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("views not materialized: {}", failed.join(", "));
    }
    Ok(())
}

/// The online store of a running `tidemark run` / `tidemark serve`, following the
/// warehouse on a task of its own.
pub struct Online {
    /// The store.
    pub store: Arc<tidemark_features::OnlineStore>,
    views: FeatureViews,
    engine: Arc<Engine>,
    task: tokio::task::JoinHandle<()>,
}

impl Online {
    /// The store (and training sets) as the endpoint serves them.
    pub fn pg(&self) -> Arc<PgFeatures> {
        Arc::new(PgFeatures {
            store: self.store.clone(),
            views: self.views.clone(),
            engine: self.engine.clone(),
        })
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How often the online store looks for new commits: with the commit itself, the
/// freshness bound (a value lands in the store within a second of its commit).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Start the online store for the config's feature views (`None` when it defines
/// none): snapshots loaded where `tidemark features materialize` wrote them, then
/// built and followed on the current runtime. Lookups answer 503 / "being built"
/// until a view is built.
pub async fn start_online(
    config: &tidemark_core::config::Config,
    wh: &tidemark_lake::Warehouse,
) -> Result<Option<Online>> {
    let views = FeatureViews::parse(&config.features).context("[features.*] in the config file")?;
    if views.is_empty() {
        return Ok(None);
    }
    let masks = tidemark_server::access::Policy::from_config(&config.server.roles)?.mask_sets();
    let store = Arc::new(tidemark_features::OnlineStore::new(views.iter(), &masks));
    let engine = Arc::new(
        Engine::open(wh)
            .await
            .context("reading the warehouse for the online feature store")?,
    );
    let started = std::time::Instant::now();
    match store.load(&engine, wh).await {
        Ok(loaded) => {
            for s in loaded {
                tracing::info!(view = %s.view, entities = s.entities, ms = started.elapsed().as_millis() as u64, "online feature snapshot loaded");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "online feature snapshots not loaded; building from the lake")
        }
    }
    let task = tokio::spawn(store.clone().follow(engine.clone(), FOLLOW_EVERY));
    Ok(Some(Online {
        store,
        views,
        engine,
        task,
    }))
}

/// The online store as the PostgreSQL endpoint's `features` schema, and training
/// sets as its `training_set(…)` table function.
#[derive(Debug)]
pub struct PgFeatures {
    store: Arc<tidemark_features::OnlineStore>,
    views: FeatureViews,
    engine: Arc<Engine>,
}

impl tidemark_server::access::FeatureSource for PgFeatures {
    fn views(&self) -> Vec<String> {
        // Listed once built: catalogs (pg_catalog, `\dt`) read every listed table's
        // columns, which a view being built does not have yet. Naming it still
        // answers that it is being built.
        self.store
            .views()
            .filter(|v| v.is_ready())
            .map(|v| v.def.name.clone())
            .collect()
    }

    fn source(&self, view: &str) -> Option<(String, String)> {
        let v = self.store.view(view).ok()?;
        Some((v.def.schema.clone(), v.def.table.clone()))
    }

    fn table(
        &self,
        view: &str,
        masks: &[(String, String)],
    ) -> std::result::Result<Arc<dyn deltalake::datafusion::catalog::TableProvider>, String> {
        let v = self.store.view(view).map_err(|e| e.to_string())?;
        let variant = v.variant_for(masks).ok_or_else(|| {
            format!("feature view {view}: the role's masks on {} were not known when the online store was built, or mask a key column; restart after changing masks", v.def.source())
        })?;
        tidemark_features::OnlineTable::new(v.clone(), variant)
            .map(|t| Arc::new(t) as Arc<dyn deltalake::datafusion::catalog::TableProvider>)
            .map_err(|e| match v.error() {
                // Not built because building fails: say why, not "being built".
                Some(why) => format!("feature view {view} cannot be built: {why}"),
                None => e.to_string(),
            })
    }

    fn training_set(
        &self,
        views: Vec<String>,
        entities: deltalake::datafusion::logical_expr::LogicalPlan,
        clock: String,
    ) -> tidemark_server::access::TrainingSetFuture {
        let (defs, engine) = (self.views.clone(), self.engine.clone());
        Box::pin(async move {
            let clock = match clock.as_str() {
                "event" => Clock::Event,
                "known" => Clock::Known,
                other => return Err(format!("clock {other:?}: write 'event' or 'known'")),
            };
            let request = Request {
                views,
                entities: Entities::Plan(entities),
                timestamp_column: None,
                clock,
                full_feature_names: false,
                // As the command's default: sorts spill beyond it.
                memory_limit: Some(2048 << 20),
            };
            let set = tidemark_features::training_set(&engine, &defs, &request)
                .await
                .map_err(|e| e.to_string())?;
            Ok(set.frame.into_view())
        })
    }
}
