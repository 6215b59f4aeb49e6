//! `tidemark status`: per table, where change capture has got to and how fresh it is,
//! read from the commits themselves (no running process needed).

use anyhow::Result;
use tidemark_lake::{committed_state, TableKind};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn instant(us: Option<i64>) -> String {
    us.and_then(chrono::DateTime::from_timestamp_micros)
        .map_or("-".into(), |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        })
}

/// Run `tidemark status`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let wh = warehouse(g, config.as_ref())?;
    let now = chrono::Utc::now().timestamp_micros();
    if !args.json {
        println!(
            "{:<36} {:<28} {:<23} {:<23} {:>9} {:>10}  state",
            "table", "source position", "last change at source", "landed", "delay s", "behind s"
        );
    }
    for loc in wh.list().await? {
        let sql = format!("{}.{}", loc.schema, loc.table);
        let url = wh.table_url(&loc.schema, &loc.table, TableKind::History);
        let (hist, ok) = wh.delta_table(&url).await?;
        if !ok {
            continue;
        }
        let st = committed_state(&hist).await?.state;
        let position = st
            .binlog
            .as_ref()
            .or(st.snapshot.as_ref().and_then(|s| s.low.as_ref()))
            .map(|p| format!("{}:{}", p.file, p.pos))
            .or(st.watermark.as_ref().and_then(|w| w.value.clone()))
            .or_else(|| stream_position(&st))
            .unwrap_or_else(|| "-".into());
        // Delay: source commit to landing. Behind: how old the newest landed change is.
        let delay = match (st.last_source_ts_us, st.last_ingest_us) {
            (Some(s), Some(i)) => format!("{:.1}", (i - s) as f64 / 1e6),
            _ => "-".into(),
        };
        let behind = st
            .last_source_ts_us
            .map_or("-".into(), |s| format!("{:.1}", (now - s) as f64 / 1e6));
        let state = match (&st.parked, &st.snapshot) {
            (Some(why), _) => format!("PARKED: {why}"),
            (None, _) if st.closed_at.is_some() => format!(
                "dropped at the source (binlog at {}); history kept",
                st.closed_at.as_deref().unwrap_or("-")
            ),
            (None, Some(s)) if !s.done => format!("snapshotting ({} rows so far)", s.rows),
            (None, _) if st.binlog.is_some() => "streaming".into(),
            (None, _) if !st.partitions.is_empty() => format!("streaming from {}", st.source),
            _ => "landed".into(),
        };
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "table": sql, "position": position,
                    "last_source_ts": instant(st.last_source_ts_us),
                    "landed": instant(st.last_ingest_us),
                    "delay_s": delay, "behind_s": behind, "state": state,
                    "parked": st.parked,
                    "partitions": st.partitions,
                })
            );
        } else {
            println!(
                "{sql:<36} {position:<28} {:<23} {:<23} {delay:>9} {behind:>10}  {state}",
                instant(st.last_source_ts_us),
                instant(st.last_ingest_us),
            );
        }
    }
    dead_letters(&wh, args.json).await
}

/// Where a table fed by an event stream is: `topic/partition@next offset`, or how
/// many partitions it reads.
fn stream_position(st: &tidemark_lake::SourceState) -> Option<String> {
    match st.partitions.len() {
        0 => None,
        1 => st
            .partitions
            .iter()
            .next()
            .map(|(p, pp)| format!("{p}@{}", pp.next_offset)),
        n => Some(format!("{n} partitions")),
    }
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
