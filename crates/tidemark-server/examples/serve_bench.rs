//! Load generator and in-process peer for `bench/serve.sh`.
//!
//! ```text
//! serve_bench compare    WAREHOUSE URL RUNS LOOKUPS   # (a)–(d): in-process vs wire
//! serve_bench concurrent URL CLIENTS SECS LIVE_TABLE LABEL  # CLIENTS sessions at once
//! ```
//!
//! `compare` opens the warehouse in this process (the same `Engine` that `tidemark
//! sql` and `tidemark serve` use) and connects to a running `tidemark serve` at URL
//! (tokio-postgres, extended protocol, binary results), then runs each query on both
//! sides, alternating which side goes first, and prints one markdown table row per
//! query with medians and the ratio wire / in-process:
//!
//! * (a) point lookup by key: LOOKUPS lookups of random ids per side, p50 and p99.
//!   In-process plans the statement with the id as a literal each time; the wire
//!   client prepares `… WHERE id = $1` once and binds each id, as drivers do.
//! * (b) an aggregate over every invoice;
//! * (c) the same aggregate `FOR SYSTEM_TIME AS OF` one, thirty and eighty-five days
//!   before the newest `updated_at` (read from history);
//! * (e) `changes()` over the last day, counted by operation;
//! * (d) one million rows streamed to the client and counted as they arrive.
//!
//! `concurrent` runs CLIENTS sessions for SECS seconds, each looping over point
//! lookups of random invoices with, every tenth query, a count of LIVE_TABLE (the
//! table that ingestion is writing while the script runs this), and prints one row:
//! queries/s, errors and latency percentiles per kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tidemark_lake::Warehouse;
use tidemark_query::Engine;
use tokio_postgres::{Client, NoTls};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const LOOKUP: &str = "SELECT * FROM invoicing.invoices WHERE id = ";
const AGGREGATE: &str = "SELECT status, currency, count(*) AS invoices, sum(total) AS total \
     FROM invoicing.invoices{AS_OF} GROUP BY status, currency ORDER BY status, currency";
const STREAM: &str = "SELECT * FROM invoicing.invoices LIMIT 1000000";

/// xorshift: a cheap, repeatable spread of looked-up keys.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection: {e}");
        }
    });
    Ok(client)
}

/// Runs one statement in-process the way the endpoint does (plan, then stream the
/// batches) and returns the rows it produced.
async fn in_process(engine: &Engine, sql: &str) -> Result<u64> {
    let mut stream = engine.sql(sql).await?.execute_stream().await?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows() as u64;
    }
    Ok(rows)
}

/// Runs one statement over the wire, rows streamed and counted as they arrive.
async fn wire(client: &Client, sql: &str) -> Result<u64> {
    let stream = client
        .query_raw(
            sql,
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        )
        .await?;
    futures::pin_mut!(stream);
    let mut rows = 0;
    while let Some(row) = stream.next().await {
        row?;
        rows += 1;
    }
    Ok(rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// The `q`-quantile of sorted `xs` (nearest rank).
fn quantile(xs: &[Duration], q: f64) -> Duration {
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

async fn compare(warehouse: &str, url: &str, runs: usize, lookups: usize) -> Result<()> {
    let t = Instant::now();
    let engine = Engine::open(&Warehouse::new(warehouse, Default::default())?).await?;
    eprintln!(
        "in-process engine opened in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let client = connect(url).await?;

    let row = client
        .query_one(
            "SELECT count(*), min(id), max(id), CAST(max(updated_at) AS VARCHAR) FROM invoicing.invoices",
            &[],
        )
        .await?;
    let (count, min_id, max_id, newest): (i64, i64, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let before = |days: u32| format!("TIMESTAMP '{newest}' - INTERVAL '{days} days'");
    eprintln!("invoicing.invoices: {count} rows, ids {min_id}..={max_id}, newest change {newest}");
    println!("invoices: {count} current rows; newest change {newest}; (c) reads AS OF that minus 1, 30 and 85 days\n");
    println!("| query | in-process | wire | wire / in-process | rows |");
    println!("|---|---|---|---|---|");

    // (a) point lookups: the same ids on both sides.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let span = (max_id - min_id + 1) as u64;
    let ids: Vec<i64> = (0..lookups)
        .map(|_| min_id + (next(&mut rng) % span) as i64)
        .collect();
    let stmt = client.prepare(&format!("{LOOKUP}$1")).await?;
    // One warm-up each: the first query of a session loads metadata and caches.
    in_process(&engine, &format!("{LOOKUP}{}", ids[0])).await?;
    client.query(&stmt, &[&ids[0]]).await?;
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let (mut local_rows, mut remote_rows) = (0u64, 0u64);
    for (i, id) in ids.iter().enumerate() {
        for side in [i % 2, 1 - i % 2] {
            let t = Instant::now();
            if side == 0 {
                local_rows += in_process(&engine, &format!("{LOOKUP}{id}")).await?;
                local.push(t.elapsed());
            } else {
                remote_rows += client.query(&stmt, &[id]).await?.len() as u64;
                remote.push(t.elapsed());
            }
        }
    }
    if local_rows != remote_rows {
        return Err(format!(
            "point lookups: {local_rows} rows in-process, {remote_rows} over the wire"
        )
        .into());
    }
    local.sort_unstable();
    remote.sort_unstable();
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (l, r) = (quantile(&local, q), quantile(&remote, q));
        println!(
            "| (a) point lookup by id, {label} of {lookups} | {:.2} ms | {:.2} ms | {:.2} | {remote_rows} found |",
            ms(l),
            ms(r),
            r.as_secs_f64() / l.as_secs_f64()
        );
    }

    // (b)–(d): whole queries, RUNS times per side, alternating which goes first.
    let queries = [
        (
            "(b) aggregate over all invoices",
            AGGREGATE.replace("{AS_OF}", ""),
        ),
        (
            "(c) the same aggregate AS OF 1 day earlier",
            AGGREGATE.replace("{AS_OF}", &format!(" FOR SYSTEM_TIME AS OF {}", before(1))),
        ),
        (
            "(c) the same aggregate AS OF 30 days earlier",
            AGGREGATE.replace("{AS_OF}", &format!(" FOR SYSTEM_TIME AS OF {}", before(30))),
        ),
        (
            "(c) the same aggregate AS OF 85 days earlier",
            AGGREGATE.replace("{AS_OF}", &format!(" FOR SYSTEM_TIME AS OF {}", before(85))),
        ),
        (
            "(e) changes() over the last day, by operation",
            format!(
                "SELECT _op, count(*) AS changes, sum(after_total) AS total \
                 FROM changes('invoicing.invoices', {}, TIMESTAMP '{newest}') GROUP BY _op ORDER BY _op",
                before(1)
            ),
        ),
        ("(d) 1,000,000 rows streamed", STREAM.to_string()),
    ];
    let mut medians = Vec::new();
    for (label, sql) in &queries {
        // Warm-up: the first run of a plan reads Parquet footers into caches.
        let rows = in_process(&engine, sql).await?;
        wire(&client, sql).await?;
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for side in [run % 2, 1 - run % 2] {
                let t = Instant::now();
                let n = if side == 0 {
                    in_process(&engine, sql).await?
                } else {
                    wire(&client, sql).await?
                };
                let d = t.elapsed();
                if n != rows {
                    return Err(format!("{label}: {n} rows, expected {rows}").into());
                }
                if side == 0 {
                    local.push(d)
                } else {
                    remote.push(d)
                }
            }
            eprintln!("{label}: run {} of {runs} done", run + 1);
        }
        let (l, r) = (median(&mut local), median(&mut remote));
        let rate = if rows >= 1000 {
            format!(
                " ({:.0} rows/s in-process, {:.0} rows/s wire)",
                rows as f64 / l.as_secs_f64(),
                rows as f64 / r.as_secs_f64()
            )
        } else {
            String::new()
        };
        println!(
            "| {label}, median of {runs} | {:.0} ms | {:.0} ms | {:.2} | {rows}{rate} |",
            ms(l),
            ms(r),
            r.as_secs_f64() / l.as_secs_f64()
        );
        medians.push((l, r));
    }
    let (bl, br) = medians[0];
    println!();
    for (i, what) in [
        (1, "(c) 1 day / (b)"),
        (2, "(c) 30 days / (b)"),
        (3, "(c) 85 days / (b)"),
        (4, "(e) changes() over a day / (b)"),
    ] {
        let (l, r) = medians[i];
        println!(
            "{what}: {:.2} in-process, {:.2} over the wire",
            l.as_secs_f64() / bl.as_secs_f64(),
            r.as_secs_f64() / br.as_secs_f64()
        );
    }
    Ok(())
}

/// What one session measured.
#[derive(Default)]
struct Tally {
    lookups: Vec<Duration>,
    live: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

async fn concurrent(
    url: &str,
    clients: usize,
    secs: u64,
    live_table: &str,
    label: &str,
) -> Result<()> {
    let probe = connect(url).await?;
    let row = probe
        .query_one("SELECT min(id), max(id) FROM invoicing.invoices", &[])
        .await?;
    let (min_id, max_id): (i64, i64) = (row.get(0), row.get(1));
    let live_sql = Arc::new(format!("SELECT count(*) FROM {live_table}"));
    let before: i64 = probe.query_one(live_sql.as_str(), &[]).await?.get(0);

    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(connect(url).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (n, client) in sessions.into_iter().enumerate() {
        let live_sql = live_sql.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let stmt = match client.prepare(&format!("{LOOKUP}$1")).await {
                Ok(s) => s,
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error = Some(e.to_string());
                    return tally;
                }
            };
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (n as u64 + 1) << 32;
            let span = (max_id - min_id + 1) as u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let t = Instant::now();
                let live = i.is_multiple_of(10);
                let r = if live {
                    client.query_one(live_sql.as_str(), &[]).await.map(|_| ())
                } else {
                    let id = min_id + (next(&mut rng) % span) as i64;
                    client.query(&stmt, &[&id]).await.map(|_| ())
                };
                let d = t.elapsed();
                match r {
                    Ok(()) if live => tally.live.push(d),
                    Ok(()) => tally.lookups.push(d),
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.lookups.extend(t.lookups);
        all.live.extend(t.live);
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after: i64 = probe.query_one(live_sql.as_str(), &[]).await?.get(0);
    all.lookups.sort_unstable();
    all.live.sort_unstable();
    let done = all.lookups.len() + all.live.len();
    let pct = |xs: &[Duration], q| {
        if xs.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", ms(quantile(xs, q)))
        }
    };
    println!(
        "| {label} | {clients} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
        done as f64 / elapsed,
        all.errors,
        pct(&all.lookups, 0.5),
        pct(&all.lookups, 0.99),
        pct(&all.live, 0.5),
        pct(&all.live, 0.99),
        all.lookups.len(),
        after - before,
    );
    if let Some(e) = all.first_error {
        eprintln!("first error: {e}");
    }
    Ok(())
}

/// The peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `depth WAREHOUSE WHICH RUNS`: one query in a process of its own (so its peak memory
/// is its own): WHICH is `b` (the aggregate over the current invoices) or `c` (the
/// same aggregate AS OF 7 days before the newest change: inside every depth measured,
/// so each answer is a real past state). Prints one line: the
/// query, the median time of RUNS runs after a warm-up, the peak memory, the
/// history's depth.
async fn depth(warehouse: &str, which: &str, runs: usize) -> Result<()> {
    let engine = Engine::open(&Warehouse::new(warehouse, Default::default())?).await?;
    let newest = engine
        .query("SELECT CAST(max(updated_at) AS VARCHAR) FROM invoicing.invoices")
        .await?;
    let newest = deltalake::arrow::util::display::array_value_to_string(newest[0].column(0), 0)?;
    let versions = engine
        .query("SELECT count(*) FROM invoicing_history.invoices")
        .await?;
    let versions =
        deltalake::arrow::util::display::array_value_to_string(versions[0].column(0), 0)?;
    let sql = match which {
        "b" => AGGREGATE.replace("{AS_OF}", ""),
        _ => AGGREGATE.replace(
            "{AS_OF}",
            &format!(" FOR SYSTEM_TIME AS OF TIMESTAMP '{newest}' - INTERVAL '7 days'"),
        ),
    };
    in_process(&engine, &sql).await?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        in_process(&engine, &sql).await?;
        times.push(t.elapsed());
    }
    println!(
        "{which} {:.0} {:.0} {versions}",
        ms(median(&mut times)),
        peak_mib()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {i}; see the example's doc comment").into())
    };
    match arg(0)? {
        "depth" => depth(arg(1)?, arg(2)?, arg(3)?.parse()?).await,
        "compare" => compare(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await,
        "concurrent" => {
            concurrent(
                arg(1)?,
                arg(2)?.parse()?,
                arg(3)?.parse()?,
                arg(4)?,
                arg(5)?,
            )
            .await
        }
        other => Err(format!("unknown mode {other:?}: compare or concurrent").into()),
    }
}
