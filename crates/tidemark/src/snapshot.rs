//! `tidemark snapshot`.

use anyhow::{bail, Result};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::{discover, DiscoveredTable};
use tidemark_mysql::snapshot::snapshot_table;
use tracing::error;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source (default: every source in the config).
    #[arg(long)]
    pub source: Option<String>,
    /// Only these tables, as `db.table` spelled at the source (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
}

/// Connect to one configured source and list its selected tables (narrowed by
/// `--table`), erroring on a `--table` that is not there.
pub async fn source_tables(
    g: &GlobalArgs,
    config: &tidemark_core::config::Config,
    name: &str,
    only: &[String],
) -> Result<(Source, Vec<DiscoveredTable>)> {
    let source = Source::connect(name, config.source_for(&g.environment, name)?).await?;
    let mut tables = discover(&source).await?;
    if !only.is_empty() {
        for t in only {
            if !tables.iter().any(|d| &d.schema.name.source() == t) {
                bail!("--table {t}: source {name} has no selected table {t} (check the spelling and the source's include/exclude)");
            }
        }
        tables.retain(|d| only.contains(&d.schema.name.source()));
    }
    Ok((source, tables))
}

/// The names of the sources a command acts on.
pub fn source_names(
    config: &tidemark_core::config::Config,
    only: Option<&str>,
) -> Result<Vec<String>> {
    match only {
        Some(s) if config.sources.contains_key(s) => Ok(vec![s.to_string()]),
        Some(s) => bail!("source {s:?} is not defined in the config"),
        None if config.sources.is_empty() => bail!("the config defines no [sources.NAME]"),
        None => Ok(config.sources.keys().cloned().collect()),
    }
}

/// Run `tidemark snapshot`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, true)?.expect("required");
    let wh = warehouse(g, Some(&config))?;
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix:>28} {bar:30} {pos:>10}/{len:10} rows {per_sec:>12} {eta}",
    )
    .expect("valid template");
    let mut failed = 0;
    for name in source_names(&config, args.source.as_deref())? {
        let (source, tables) = source_tables(g, &config, &name, &args.tables).await?;
        let parallel = source.config.parallel_tables;
        let chunk_rows = source.config.snapshot_chunk_rows;
        let results: Vec<_> = futures::stream::iter(tables.iter())
            .map(|t| {
                let bar = bars.add(ProgressBar::new(t.estimated_rows.max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(t.schema.name.source());
                let (source, wh) = (&source, &wh);
                async move { (t, snapshot_table(source, wh, t, chunk_rows, bar).await) }
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        for (t, r) in results {
            match r {
                Ok(r) => println!(
                    "{:<40} {:>12} rows  {}{}",
                    format!("{} -> {}", r.table, t.schema.name.sql()),
                    r.total_rows,
                    if r.already_done {
                        "already complete"
                    } else {
                        "complete"
                    },
                    r.resume_from
                        .map(|p| format!("  (change capture resumes at {p})"))
                        .unwrap_or_default()
                ),
                Err(e) => {
                    failed += 1;
                    error!(table = %t.schema.name.source(), error = %e, "snapshot failed");
                    println!("{:<40} FAILED: {e}", t.schema.name.source());
                }
            }
        }
        source.close().await;
    }
    if failed > 0 {
        bail!("{failed} table(s) failed; the others landed. Run the command again to resume the failed ones after fixing the cause");
    }
    Ok(())
}
