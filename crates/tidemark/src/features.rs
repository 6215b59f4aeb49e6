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
