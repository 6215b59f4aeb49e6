//! `tidemark snapshot`.

use anyhow::{bail, Result};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidemark_capture::sources::snapshot::snapshot_table;
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::{discover, DiscoveredTable};
use tracing::error;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Which source tables a command acts on.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Only this source (default: every source in the config).
    #[arg(long)]
    pub source: Option<String>,
    /// Only these tables, as `db.table` spelled at the source (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
}

/// Options of `tidemark snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    /// Land the selected tables again from scratch: their current and history Delta
    /// tables are first moved aside to `<warehouse>/.retired/` (kept, not deleted).
    /// For a table parked after a schema change, or a source whose binlog was purged.
    /// Needs --table or --source, so a whole warehouse is never re-landed by accident.
    #[arg(long)]
    pub resnapshot: bool,
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

pub use tidemark_capture::source_names;

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
    if args.resnapshot && args.select.tables.is_empty() && args.select.source.is_none() {
        bail!("--resnapshot needs --table db.table (repeatable) or --source NAME: it re-lands those tables from scratch");
    }
    let mut failed = 0;
    for name in source_names(&config, args.select.source.as_deref())? {
        let (source, tables) = source_tables(g, &config, &name, &args.select.tables).await?;
        if args.resnapshot {
            for t in &tables {
                if let Some(to) = wh
                    .retire(&t.schema.name.schema, &t.schema.name.table)
                    .await?
                {
                    println!("{} moved aside to {to}", t.schema.name.sql());
                }
            }
        }
        let parallel = source.config.parallel_tables;
        let chunk_rows = source.config.snapshot_chunk_rows;
        let results: Vec<_> = futures::stream::iter(tables.iter())
            .map(|t| {
                let bar = bars.add(ProgressBar::new(t.estimated_rows.max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(t.schema.name.source());
                let (source, wh) = (&source, &wh);
                // Each chunk lands atomically, so an interrupted run (Ctrl-C) loses
                // nothing and resumes after the last chunk; no stop flag is needed.
                let stop = Default::default();
                async move {
                    (
                        t,
                        snapshot_table(source, wh, t, chunk_rows, bar, stop).await,
                    )
                }
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        let width = results
            .iter()
            .map(|(t, _)| t.schema.name.source().len().max(t.schema.name.sql().len()))
            .max()
            .unwrap_or(10);
        println!(
            "{:<width$}  {:<width$}  {:>12}  status",
            "source table", "sql table", "rows"
        );
        // Where change capture resumes, once per distinct position (usually one).
        let mut resume: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (t, r) in results {
            let (src, sql) = (t.schema.name.source(), t.schema.name.sql());
            match r {
                Ok(r) => {
                    println!(
                        "{src:<width$}  {sql:<width$}  {:>12}  {}",
                        r.total_rows,
                        if r.already_done {
                            "already complete"
                        } else {
                            "complete"
                        },
                    );
                    let at = r.resume_from.map_or_else(
                        || "nowhere (no binlog position: binary logging off or no REPLICATION CLIENT)".to_string(),
                        |p| p.to_string(),
                    );
                    resume.entry(at).or_default().push(src);
                }
                Err(e) => {
                    failed += 1;
                    error!(table = %src, error = %e, "snapshot failed");
                    println!("{src:<width$}  {sql:<width$}  {:>12}  FAILED: {e}", "-");
                }
            }
        }
        match resume.len() {
            0 => {}
            1 => println!(
                "change capture resumes at {}",
                resume.keys().next().expect("one")
            ),
            _ => {
                for (at, tables) in resume {
                    println!("change capture resumes at {at} for {}", tables.join(", "));
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
