//! `tidemark demo`: the whole product offline.
//!
//! A deterministic invoicing workload (tidemark-demo) produces ~90 simulated days of
//! inserts, updates and deletes. They go through the same change batches and the same
//! lake writer as real sources, into a local warehouse; then the demo answers the
//! questions analysts ask, time travel included. With `--mysql URL` the same workload
//! is written to a real MySQL/MariaDB instead (for change capture and benchmarks).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use tidemark_core::names::Naming;
use tidemark_lake::Warehouse;
use tidemark_query::{format_batches, Engine, OutputFormat};

use crate::common::{init_logging, GlobalArgs};

/// Marks a directory as the demo's own, so re-running may replace it.
const MARKER: &str = ".tidemark-demo";

/// Options of `tidemark demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Warehouse directory for the demo (replaced on each run).
    #[arg(long, default_value = "tidemark-demo")]
    pub dir: PathBuf,
    /// Size of the business: 1.0 is ~30 invoices a day.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Simulated days, ending today.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulated days per landing batch (one Delta commit per table per batch).
    #[arg(long, default_value_t = 7)]
    pub days_per_batch: u32,
    /// Write the workload to this MySQL/MariaDB (`mysql://user@host:port`, password in
    /// TIDEMARK_DEMO_MYSQL_PASSWORD) instead of landing it.
    #[arg(long)]
    pub mysql: Option<String>,
    /// Then serve the web console over the demo warehouse (127.0.0.1:8420, or
    /// TIDEMARK_CONSOLE_LISTEN) until Ctrl-C, signed in as the generated user.
    #[arg(long)]
    pub console: bool,
}

fn workload(args: &Args) -> tidemark_demo::Workload {
    tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: args.scale,
        days: args.days,
        seed: args.seed,
        ..Default::default()
    })
}

/// Run `tidemark demo`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    if args.scale <= 0.0 || args.days == 0 || args.days_per_batch == 0 {
        bail!("--scale, --days and --days-per-batch must be positive");
    }
    match &args.mysql {
        Some(url) => to_mysql(&args, url).await,
        None => {
            offline(&args).await?;
            let config = console_sign_in(&args)?;
            if !args.console {
                return Ok(());
            }
            let g = GlobalArgs {
                config,
                environment: "dev".into(),
                warehouse: None,
                log_format: g.log_format.clone(),
            };
            crate::console::serve(&g, crate::console::Args { listen: None }).await
        }
    }
}

/// The web console's part of the demo: a config beside the warehouse (the example
/// roles, so finance and analyst users can be tried too) and a generated `demo`
/// user of the built-in admin role, whose password is printed once with the
/// console's address. Returns the config's path.
fn console_sign_in(args: &Args) -> Result<PathBuf> {
    let dir = std::path::absolute(&args.dir)?;
    let users = dir.join("users.toml");
    let config = dir.join("tidemark.toml");
    let example = include_str!("../../../examples/tidemark.toml");
    let roles: String = example
        .split("\n[")
        .filter(|s| s.starts_with("server.roles."))
        // A section runs to the next one; the comments at its end belong to that.
        .map(|s| {
            let mut lines: Vec<&str> = s.lines().collect();
            while lines
                .last()
                .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                lines.pop();
            }
            format!("\n[{}\n", lines.join("\n"))
        })
        .collect();
    let listen = std::env::var("TIDEMARK_CONSOLE_LISTEN")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| tidemark_core::config::ConsoleConfig::default().listen);
    // TOML basic strings: paths quoted as JSON quotes them (the same escapes).
    let q = |p: &std::path::Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_default();
    // The console's Models page reads the models the demo built; its Features page
    // two feature views over them and over the landed payments (docs/features.md).
    const FEATURES: &str = "\n[features.customer_spend]\nsource = \"analytics.customer_summary\"\n\
        entity = \"customer_id\"\nttl = \"30d\"\n\
        features = [\"billed\", \"paid\", { name = \"unpaid\", sql = \"billed - paid\" }]\n\n\
        [features.payment_amounts]\nsource = \"invoicing.payments\"\nentity = \"payment_id\"\n\
        join_on = \"id\"\nfeatures = [\"amount\", \"method\"]\n";
    std::fs::write(
        &config,
        format!(
            "# Written by tidemark demo for its web console; replaced on every run.\n\
             [environments.dev]\nwarehouse = {}\n\n[server]\nusers_file = {}\n{roles}\n\
             [console]\nlisten = {}\n\n[models]\npath = {}\n{FEATURES}",
            q(&dir),
            q(&users),
            serde_json::to_string(&listen).unwrap_or_default(),
            q(&dir.join("models")),
        ),
    )?;
    let password = tidemark_console::random_password();
    tidemark_server::auth::UsersFile::add_user(&users, "demo", "admin", &password)?;
    let cfg = config.display();
    if !args.console {
        println!("Browse it in the web console:\n  tidemark --config {cfg} console");
    }
    println!(
        "Web console: http://{listen}/console/  user: demo  password: {password}\n  (role admin; add others with `tidemark --config {cfg} user add ana --role finance`)"
    );
    Ok(config)
}

async fn to_mysql(args: &Args, url: &str) -> Result<()> {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
        .pass(std::env::var("TIDEMARK_DEMO_MYSQL_PASSWORD").ok());
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    conn.query_drop("SET time_zone = '+00:00'").await?;
    tidemark_demo::create_schema(&mut conn).await?;
    let mut w = workload(args);
    let (mut events, start) = (0usize, Instant::now());
    while let Some(day) = w.next_day() {
        tidemark_demo::apply_to_mysql(&mut conn, &day).await?;
        events += day.len();
    }
    println!(
        "wrote {events} changes ({} simulated days) to database {} in {:.1}s",
        args.days,
        tidemark_demo::DATABASE,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn offline(args: &Args) -> Result<()> {
    let dir = &args.dir;
    if dir.exists() {
        if !dir.join(MARKER).exists() && dir.read_dir()?.next().is_some() {
            bail!(
                "{} exists and is not a tidemark demo directory; pass --dir with a new path",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        "created by tidemark demo; replaced on every run\n",
    )?;
    let wh = Warehouse::new(dir.to_str().context("non-UTF-8 path")?, Default::default())?;

    println!(
        "tidemark demo: {} simulated days of invoicing (scale {}, seed {})",
        args.days, args.scale, args.seed
    );
    let start = Instant::now();
    let (schemas, landed) = tidemark_demo::land(
        &wh,
        Naming::SnakeCase,
        &mut workload(args),
        args.days_per_batch,
    )
    .await?;
    println!(
        "landed {landed} changes into {} tables (current + history) in {:.1}s\n",
        schemas.len(),
        start.elapsed().as_secs_f64()
    );

    // The example models (examples/models), written beside the warehouse so they can
    // be edited and built again with `tidemark build`.
    let models_dir = dir.join("models");
    for (path, text) in EXAMPLE_MODELS {
        let to = models_dir.join(path);
        std::fs::create_dir_all(to.parent().context("a file has a directory")?)?;
        std::fs::write(&to, text)?;
    }
    let engine = std::sync::Arc::new(Engine::open(&wh).await?);
    let models = tidemark_core::config::ModelsConfig {
        path: models_dir.clone(),
        ..Default::default()
    };
    let project = tidemark_models::Project::load(&models, Some(&engine.landed_names()), "dev")?;
    let start = Instant::now();
    let report = tidemark_models::build(&wh, engine, &project, &Default::default())
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some((name, o)) = report.failures().first() {
        bail!("example model {name} failed: {}", o.reason());
    }
    println!(
        "built {} models from {} in {:.1}s: tables with history of their own (analytics.*, analytics_history.*)\n",
        report.models.len(),
        models_dir.display(),
        start.elapsed().as_secs_f64()
    );

    let engine = Engine::open(&wh).await?;
    for (title, sql) in QUERIES {
        println!("-- {title}\n{}", sql.trim());
        let batches = engine.query(sql).await.with_context(|| title.to_string())?;
        println!("{}\n", format_batches(&batches, OutputFormat::Table)?);
    }
    println!(
        "Query it yourself (from a checkout: cargo run --release -- sql ...):\n  tidemark sql --warehouse {} \"SELECT * FROM invoicing_history.invoices WHERE id = 1\"\nEdit a model and build again (only what changed is rebuilt):\n  tidemark build --warehouse {} --models {}",
        dir.display(),
        dir.display(),
        models_dir.display()
    );
    Ok(())
}

/// The example models (examples/models), as the demo writes them out.
const EXAMPLE_MODELS: &[(&str, &str)] = &[
    (
        "customers/customer_summary.sql",
        include_str!("../../../examples/models/customers/customer_summary.sql"),
    ),
    (
        "customers/customer_summary.toml",
        include_str!("../../../examples/models/customers/customer_summary.toml"),
    ),
    (
        "finance/open_receivables.sql",
        include_str!("../../../examples/models/finance/open_receivables.sql"),
    ),
    (
        "finance/open_receivables.toml",
        include_str!("../../../examples/models/finance/open_receivables.toml"),
    ),
    (
        "finance/overdue_invoices.sql",
        include_str!("../../../examples/models/finance/overdue_invoices.sql"),
    ),
    (
        "finance/revenue_by_month.sql",
        include_str!("../../../examples/models/finance/revenue_by_month.sql"),
    ),
    (
        "finance/revenue_by_country.sql",
        include_str!("../../../examples/models/finance/revenue_by_country.sql"),
    ),
    (
        "finance/payments_received.sql",
        include_str!("../../../examples/models/finance/payments_received.sql"),
    ),
    (
        "tests/paid_never_exceeds_billed.sql",
        include_str!("../../../examples/models/tests/paid_never_exceeds_billed.sql"),
    ),
];

/// What the demo shows: the questions analysts ask.
const QUERIES: &[(&str, &str)] = &[
    (
        "Tables: current state in `invoicing`, every version in `invoicing_history`",
        "SELECT table_schema, table_name, table_type FROM information_schema.tables \
         WHERE table_schema LIKE 'invoicing%' ORDER BY 1, 2",
    ),
    (
        "Revenue by status: today vs one month ago (time travel in one query)",
        "WITH today AS (SELECT status, count(*) AS n, sum(total) AS revenue FROM invoicing.invoices GROUP BY status),
     month_ago AS (SELECT status, count(*) AS n, sum(total) AS revenue
                   FROM invoicing.invoices FOR SYSTEM_TIME AS OF now() - INTERVAL '30 days' GROUP BY status)
SELECT coalesce(t.status, m.status) AS status, m.n AS invoices_month_ago, t.n AS invoices_today,
       m.revenue AS revenue_month_ago, t.revenue AS revenue_today
FROM today t FULL JOIN month_ago m ON t.status = m.status ORDER BY 1",
    ),
    (
        "The life of one invoice: every version with its validity",
        "SELECT id, status, total, _op, _valid_from, _valid_to, _is_current
FROM invoicing_history.invoices
WHERE id = (SELECT id FROM invoicing_history.invoices GROUP BY id ORDER BY count(*) DESC, id LIMIT 1)
ORDER BY _valid_from",
    ),
    (
        "Top customers by paid revenue",
        "SELECT c.name, c.country, sum(p.amount) AS paid
FROM invoicing.payments p JOIN invoicing.invoices i ON p.invoice_id = i.id
JOIN invoicing.customers c ON i.customer_id = c.id
GROUP BY c.name, c.country ORDER BY paid DESC LIMIT 5",
    ),
    (
        "A model (examples/models/finance/revenue_by_month.sql): invoiced and collected revenue by month",
        "SELECT month, invoices, revenue, collected FROM analytics.revenue_by_month ORDER BY month DESC LIMIT 4",
    ),
    (
        "A model built from another (revenue_by_country reads customer_summary)",
        "SELECT country, customers, billed, paid FROM analytics.revenue_by_country ORDER BY billed DESC LIMIT 5",
    ),
    (
        "Price changes in the last 30 days",
        "SELECT p.sku, h.unit_price, h._valid_from
FROM invoicing_history.products h JOIN invoicing.products p ON h.id = p.id
WHERE h._valid_from >= now() - INTERVAL '30 days' AND h._op = 'u'
ORDER BY h._valid_from DESC LIMIT 5",
    ),
];
