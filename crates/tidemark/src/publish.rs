//! `tidemark publish NAME`: publish a `[publish.NAME]` publication's tables to its
//! target now (tidemark-publish does the work; the daemon's `publish` job kind runs
//! the same on a schedule or on new data).

use anyhow::{bail, Context, Result};
use tidemark_publish::{Options, Outcome};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The publication (`[publish.NAME]` in the config).
    pub name: String,
    /// Only this table of the publication, as SQL names it: `schema.table`
    /// (repeatable; default: all of them).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Drop the tables at the target and publish them again from the whole history:
    /// the way out of a parked table (a type or key changed upstream).
    #[arg(long)]
    pub full_refresh: bool,
}

/// Run `tidemark publish`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let Some(config) = load_config(g, true)? else {
        bail!("tidemark publish needs a config file");
    };
    let Some(publication) = config.publish.get(&args.name) else {
        bail!(
            "publication {:?} is not defined; defined: {}",
            args.name,
            config
                .publish
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let wh = warehouse(g, Some(&config))?;
    let engine = tidemark_query::Engine::open(&wh)
        .await
        .context("reading the warehouse")?;
    let options = Options {
        tables: args.tables,
        full_refresh: args.full_refresh,
    };
    let report = tidemark_publish::publish(&engine, &args.name, publication, &options).await?;
    for (table, o) in &report.tables {
        let line = match o {
            Outcome::Published(p) => format!(
                "published {} rows ({} upserted, {} deleted) up to history version {}{}{}",
                p.rows,
                p.upserted,
                p.deleted,
                p.version,
                if p.created { "; table created" } else { "" },
                if p.added_columns.is_empty() {
                    String::new()
                } else {
                    format!("; columns added: {}", p.added_columns.join(", "))
                }
            ),
            Outcome::UpToDate => "up to date".into(),
            Outcome::Parked(m) => format!("PARKED: {m}"),
            Outcome::Failed(m) => format!("FAILED: {m}"),
        };
        println!("{table:<32} {line}");
    }
    let problems = report.problems();
    if !problems.is_empty() {
        bail!(
            "{} of {} tables not published: {}",
            problems.len(),
            report.tables.len(),
            problems
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
