//! `tidemark status`: per table, where change capture has got to and how fresh it is,
//! read from the commits themselves (no running process needed).

use anyhow::Result;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run `tidemark status`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let wh = warehouse(g, config.as_ref())?;
    if !args.json {
        println!(
            "{:<36} {:<28} {:<23} {:<23} {:>9} {:>10}  state",
            "table", "source position", "last change at source", "landed", "delay s", "behind s"
        );
    }
    for t in tidemark_daemon::status::tables(&wh).await? {
        if args.json {
            println!("{}", serde_json::to_string(&t)?);
        } else {
            println!(
                "{:<36} {:<28} {:<23} {:<23} {:>9} {:>10}  {}",
                t.table, t.position, t.last_source_ts, t.landed, t.delay_s, t.behind_s, t.state
            );
        }
    }
    dead_letters(&wh, args.json).await
}

/// The dead letters of event streams, per stream.
async fn dead_letters(wh: &tidemark_lake::Warehouse, json: bool) -> Result<()> {
    let Some(dl) = tidemark_lake::DeadLetters::existing(wh).await? else {
        return Ok(());
    };
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    dl.update_datafusion_session(&ctx.state())?;
    ctx.register_table("dead_letters", dl.table_provider().await?)?;
    let batches = ctx
        .sql("SELECT stream, count(*) AS n, max(received_at) AS last FROM dead_letters GROUP BY stream ORDER BY stream")
        .await?
        .collect()
        .await?;
    for b in &batches {
        let text = deltalake::arrow::util::display::ArrayFormatter::try_new(
            b.column(0).as_ref(),
            &Default::default(),
        )?;
        let last = deltalake::arrow::util::display::ArrayFormatter::try_new(
            b.column(2).as_ref(),
            &Default::default(),
        )?;
        let n = deltalake::arrow::array::AsArray::as_primitive::<
            deltalake::arrow::datatypes::Int64Type,
        >(b.column(1).as_ref());
        for i in 0..b.num_rows() {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"dead_letters": n.value(i), "stream": text.value(i).to_string(), "last": last.value(i).to_string()})
                );
            } else {
                println!(
                    "dead letters: {} from stream {} (last at {}); see SELECT * FROM tidemark.dead_letters",
                    n.value(i),
                    text.value(i),
                    last.value(i)
                );
            }
        }
    }
    Ok(())
}
