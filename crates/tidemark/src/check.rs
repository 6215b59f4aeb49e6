//! `tidemark check`: is each source ready, and what to change if not.

use anyhow::{bail, Result};
use tidemark_mysql::connect::Source;
use tidemark_mysql::preflight::{preflight, Outcome};

use crate::common::{init_logging, load_config, GlobalArgs};
use crate::snapshot::source_names;

/// Options of `tidemark check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
}

/// Run `tidemark check`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, true)?.expect("required");
    let mut failed = 0;
    if config.sources.is_empty() && args.source.is_none() && !config.streams.is_empty() {
        // Streams whose messages define their tables have no MySQL to check; their
        // broker and registry are reached when they run, with errors that say so.
        println!("no MySQL sources to check (the streams' messages define their tables)");
        return Ok(());
    }
    for name in source_names(&config, args.source.as_deref())? {
        let source = Source::connect(&name, config.source_for(&g.environment, &name)?).await?;
        println!("source {name} (environment {})", g.environment);
        for c in preflight(&source).await? {
            let mark = match c.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Warn => "WARN",
                Outcome::Fail => {
                    failed += 1;
                    "FAIL"
                }
            };
            println!("  {mark} {:<26} {}", c.name, c.detail);
        }
        source.close().await;
    }
    if failed > 0 {
        bail!("{failed} check(s) failed: snapshots and pulls work, change capture will not until they are fixed");
    }
    Ok(())
}
