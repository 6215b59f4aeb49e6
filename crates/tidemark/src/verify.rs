//! `tidemark verify`: compare the lake with the source (see `tidemark_verify`).

use std::time::Duration;

use anyhow::{bail, Result};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidemark_verify::report::{Report, TableReport};
use tidemark_verify::Options;
use tracing::{error, info};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};
use crate::snapshot::{source_names, source_tables, Selection};

/// Options of `tidemark verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    /// Rows per checksum chunk on the source.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_rows: u64,
    /// Read at most this many source rows per second (0: no limit), to stay light on
    /// a busy primary.
    #[arg(long, default_value_t = 0)]
    pub max_rows_per_sec: u64,
    /// Seconds to wait for the lake to land past the position the source was read at.
    #[arg(long, default_value_t = 300)]
    pub wait: u64,
    /// Differences described with their values, per table (all are counted).
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// `text` or `json` (one JSON document on stdout).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Skip the history checks.
    #[arg(long)]
    pub no_history: bool,
}

/// Run `tidemark verify`. Exits non-zero when any table differs or could not be
/// compared.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    if !matches!(args.format.as_str(), "text" | "json") {
        bail!("--format must be text or json, not {:?}", args.format);
    }
    if args.chunk_rows < 2 {
        bail!("--chunk-rows must be at least 2");
    }
    let config = load_config(g, true)?.expect("required");
    let wh = warehouse(g, Some(&config))?;
    let opts = Options {
        chunk_rows: args.chunk_rows,
        max_rows_per_sec: args.max_rows_per_sec,
        wait: Duration::from_secs(args.wait),
        show: args.show,
        history: !args.no_history,
    };
    let started = chrono::Utc::now();
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>28} {bar:30} {pos:>10}/{len:10} rows {msg}")
        .expect("valid template");
    let mut reports: Vec<TableReport> = Vec::new();
    for name in source_names(&config, args.select.source.as_deref())? {
        let (source, tables) = source_tables(g, &config, &name, &args.select.tables).await?;
        // One connection per table; tables side by side as snapshots go.
        let parallel = source.config.parallel_tables;
        let done: Vec<TableReport> = futures::stream::iter(tables.iter())
            .map(|t| {
                let bar = bars.add(ProgressBar::new(t.estimated_rows.max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(t.schema.name.source());
                let (source, wh, opts) = (&source, &wh, &opts);
                async move {
                    let name = t.schema.name.source();
                    let r = tidemark_verify::verify_table(source, wh, t.schema.clone(), opts, &bar).await;
                    bar.finish_and_clear();
                    match r {
                        Ok(r) => {
                            info!(table = %name, status = %r.status, position = ?r.source_position,
                                missing_in_lake = r.counts.missing_in_lake, extra_in_lake = r.counts.extra_in_lake,
                                different = r.counts.different, history_violations = r.history_violations, "verified");
                            r
                        }
                        Err(e) => {
                            error!(table = %name, error = %e, "could not verify");
                            TableReport::failed(name, e.to_string())
                        }
                    }
                }
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        reports.extend(done);
        source.close().await;
    }
    reports.sort_by(|a, b| a.table.cmp(&b.table));
    let finished = chrono::Utc::now();
    let report = Report {
        run_id: format!(
            "{}-{}",
            started.format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id()
        ),
        started_at: started.to_rfc3339(),
        finished_at: finished.to_rfc3339(),
        clean: reports.iter().all(TableReport::is_clean),
        tables: reports,
    };
    tidemark_verify::record(
        &wh,
        &report,
        started.timestamp_micros(),
        finished.timestamp_micros(),
    )
    .await?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if !report.clean {
        let bad = report.tables.iter().filter(|t| !t.is_clean()).count();
        bail!(
            "{bad} of {} tables did not verify clean (recorded in tidemark.verifications, run {})",
            report.tables.len(),
            report.run_id
        );
    }
    Ok(())
}
