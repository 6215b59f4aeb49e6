//! `tidemark sql`.

use std::sync::Arc;

use anyhow::{bail, Result};
use tidemark_query::{format_batches, Engine, OutputFormat};

use crate::build::DeferArgs;
use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark sql`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query. Time travel: `FROM db.t FOR SYSTEM_TIME AS OF TIMESTAMP '2026-10-24 00:00:00'`.
    pub query: String,
    /// Output format: table, csv or json (one object per line).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// With an environment that defers to another (`defer_to`, or --defer ENV), read
    /// every name its warehouse does not have from that one's, read-only: a dev
    /// environment with no data of its own answers from prod's landed tables and
    /// models, and from the models it built itself.
    #[command(flatten)]
    pub defer: DeferArgs,
}

/// Run `tidemark sql`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let format = match args.format.as_str() {
        "table" => OutputFormat::Table,
        "csv" => OutputFormat::Csv,
        "json" => OutputFormat::Json,
        other => bail!("--format {other}: use table, csv or json"),
    };
    let config = load_config(g, false)?;
    let wh = warehouse(g, config.as_ref())?;
    let engine = match args.defer.resolve(g, config.as_ref())? {
        None => Arc::new(Engine::open(&wh).await?),
        Some(defer) => tidemark_models::open_for_queries(&wh, &defer).await?,
    };
    let batches = engine.query(&args.query).await?;
    print!("{}", format_batches(&batches, format)?);
    if format == OutputFormat::Table {
        println!();
    }
    Ok(())
}
