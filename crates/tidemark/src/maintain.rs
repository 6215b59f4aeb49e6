//! `tidemark maintain`: the maintenance `tidemark run` also does on its own, on demand.

use anyhow::{Context, Result};
use tidemark_lake::{stored_schema, TableKind, TableWriter};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark maintain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these tables, as SQL names `schema.table` (repeatable; default: all).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Keep files that older Delta versions need for this many hours (what
    /// `VERSION AS OF` can reach). History itself is never removed.
    #[arg(long, default_value_t = 168)]
    pub retain_hours: u32,
    /// Skip VACUUM.
    #[arg(long)]
    pub no_vacuum: bool,
}

/// Run `tidemark maintain`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let wh = warehouse(g, config.as_ref())?;
    let retention = (!args.no_vacuum).then(|| chrono::Duration::hours(args.retain_hours as i64));
    let mut done = 0;
    for loc in wh.list().await? {
        let sql = format!("{}.{}", loc.schema, loc.table);
        if !args.tables.is_empty() && !args.tables.contains(&sql) {
            continue;
        }
        let url = wh.table_url(&loc.schema, &loc.table, TableKind::Current);
        let (cur, _) = wh.delta_table(&url).await?;
        let Some(schema) = stored_schema(&cur) else {
            println!("{sql:<40} skipped: not a tidemark table");
            continue;
        };
        let mut w = TableWriter::open(&wh, std::sync::Arc::new(schema))
            .await
            .with_context(|| format!("table {sql}"))?;
        let m = w
            .maintain(retention)
            .await
            .with_context(|| format!("table {sql}"))?;
        let folded = m.compaction.map_or("no tail".to_string(), |c| {
            format!("{} changes folded, {} rows", c.tail_rows, c.rows)
        });
        println!(
            "{sql:<40} current: {folded}; files bin-packed {} -> {}; files vacuumed {}",
            m.files_optimized.0, m.files_optimized.1, m.files_vacuumed
        );
        done += 1;
    }
    // tidemark's own tables: the audit (a commit each second while the endpoint
    // serves; rows older than its retention go) and the records kept whole (dead
    // letters, job runs, model test outcomes, verifications, saved charts).
    let keep_days = config.as_ref().map_or(0, |c| c.server.audit_retention_days);
    let own = std::iter::once(tidemark_lake::AUDIT).chain(tidemark_lake::KEPT_RECORDS);
    for table in own {
        let name = format!("{}.{table}", tidemark_lake::OWN_SCHEMA);
        if !args.tables.is_empty() && !args.tables.contains(&name) {
            continue;
        }
        let m = if table == tidemark_lake::AUDIT {
            tidemark_lake::Audit::maintain(&wh, retention, keep_days).await
        } else {
            tidemark_lake::maintain_records(&wh, table, retention).await
        };
        if let Some(m) = m.with_context(|| format!("table {name}"))? {
            println!(
                "{name:<40} expired rows {}; files bin-packed {} -> {}; files vacuumed {}",
                m.rows_expired, m.files_optimized.0, m.files_optimized.1, m.files_vacuumed
            );
            done += 1;
        }
    }
    if done == 0 && !args.tables.is_empty() {
        anyhow::bail!("no table named {} in the warehouse", args.tables.join(", "));
    }
    Ok(())
}
