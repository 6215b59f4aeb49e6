//! `tidemark sql`.

use anyhow::{bail, Result};
use tidemark_query::{format_batches, Engine, OutputFormat};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark sql`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query. Time travel: `FROM db.t FOR SYSTEM_TIME AS OF TIMESTAMP '2026-10-24 00:00:00'`.
    pub query: String,
    /// Output format: table, csv or json (one object per line).
    #[arg(long, default_value = "table")]
    pub format: String,
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
    let engine = Engine::open(&wh).await?;
    let batches = engine.query(&args.query).await?;
    print!("{}", format_batches(&batches, format)?);
    if format == OutputFormat::Table {
        println!();
    }
    Ok(())
}
