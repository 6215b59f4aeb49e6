//! `tidemark pull`.

use anyhow::{bail, Result};
use tidemark_capture::sources::pull::{pull_table, reconcile};
use tracing::error;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};
use crate::snapshot::{source_names, source_tables, Selection};

/// Options of `tidemark pull`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tables to pull. Default: every selected table with a `watermark` in the config.
    #[command(flatten)]
    pub select: Selection,
    /// Also find rows deleted at the source (compares key sets; reads every key).
    #[arg(long)]
    pub reconcile: bool,
    /// Only reconcile deletes; pull nothing.
    #[arg(long, conflicts_with = "reconcile")]
    pub reconcile_only: bool,
}

/// Run `tidemark pull`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, true)?.expect("required");
    let wh = warehouse(g, Some(&config))?;
    let mut failed = 0;
    let mut pulled = 0;
    for name in source_names(&config, args.select.source.as_deref())? {
        let (source, mut tables) = source_tables(g, &config, &name, &args.select.tables).await?;
        if args.select.tables.is_empty() && !args.reconcile_only {
            tables.retain(|t| {
                source
                    .config
                    .table_options(&t.schema.name.source_db, &t.schema.name.source_table)
                    .watermark
                    .is_some()
            });
        }
        for t in &tables {
            pulled += 1;
            let r = if args.reconcile_only {
                reconcile(&source, &wh, t, Default::default())
                    .await
                    .map(|deleted| {
                        println!("{:<40} {deleted} deleted", t.schema.name.source());
                    })
            } else {
                pull_table(&source, &wh, t, args.reconcile, Default::default())
                    .await
                    .map(|r| {
                        println!(
                            "{:<40} read {:>9}  changed {:>9}  deleted {:>7}  watermark {}{}",
                            r.table,
                            r.read,
                            r.changed,
                            r.deleted,
                            r.watermark.as_deref().unwrap_or("-"),
                            if r.snapshotted {
                                "  (first landed by a snapshot)"
                            } else {
                                ""
                            }
                        );
                    })
            };
            if let Err(e) = r {
                failed += 1;
                error!(table = %t.schema.name.source(), error = %e, "pull failed");
                println!("{:<40} FAILED: {e}", t.schema.name.source());
            }
        }
        source.close().await;
    }
    if pulled == 0 {
        bail!("no table to pull: give tables a watermark column in the config ([sources.NAME.tables.\"db.table\"] watermark = \"updated_at\") or name them with --table");
    }
    if failed > 0 {
        bail!("{failed} table(s) failed; the others were pulled");
    }
    Ok(())
}
