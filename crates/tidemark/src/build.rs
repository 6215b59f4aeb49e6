//! `tidemark build`: land the SQL models (tidemark-models) in dependency order.

use anyhow::{bail, Result};
use tidemark_models::{Defer, Options, Outcome};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Models to build, as dbt selects them: `name`, `+name` (and what it reads),
    /// `name+` (and what reads it), `tag:x`, `path:dir` (repeatable; default: all).
    #[arg(long, short = 's')]
    pub select: Vec<String>,
    /// Build the selected models whole: their tables so far (with their history) move
    /// to the warehouse's .retired/ first.
    #[arg(long)]
    pub full_refresh: bool,
    /// The models directory (default: [models] path in the config, else ./models).
    #[arg(long)]
    pub models: Option<std::path::PathBuf>,
    /// Models built at once (default: [models] threads).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub defer: DeferArgs,
}

/// Which environment's warehouse a build reads besides its own.
#[derive(Debug, clap::Args)]
pub struct DeferArgs {
    /// Read the landed sources (and the models this build neither selects nor has
    /// built before) from this environment's warehouse, read-only; write only to
    /// --env's (default: [environments.<env>] defer_to).
    #[arg(long, value_name = "ENV", conflicts_with = "no_defer")]
    pub defer: Option<String>,
    /// Read only --env's warehouse, even when its config says defer_to.
    #[arg(long)]
    pub no_defer: bool,
}

impl DeferArgs {
    /// The environment deferred to, its warehouse opened read-only.
    pub(crate) fn resolve(
        &self,
        g: &GlobalArgs,
        config: Option<&tidemark_core::config::Config>,
    ) -> Result<Option<Defer>> {
        let d = tidemark_models::deferred_to(
            config,
            &g.environment,
            self.defer.as_deref(),
            self.no_defer,
        )
        .map_err(anyhow::Error::msg)?;
        if let Some(d) = &d {
            tracing::info!(environment = %g.environment, deferred_to = %d.environment, warehouse = %d.warehouse().root(), "reading the deferred environment's sources, read-only");
        }
        Ok(d)
    }
}

/// `[models]` of the config (defaults without one), its path replaced by `--models`.
fn models_config(
    config: Option<&tidemark_core::config::Config>,
    path: Option<std::path::PathBuf>,
) -> tidemark_core::config::ModelsConfig {
    let mut models = config.map(|c| c.models.clone()).unwrap_or_default();
    if let Some(p) = path {
        models.path = p;
    }
    models
}

/// Run `tidemark build`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let config = load_config(g, false)?;
    let wh = warehouse(g, config.as_ref())?;
    let models = models_config(config.as_ref(), args.models);
    let defer = args.defer.resolve(g, config.as_ref())?;
    let (engine, project) =
        tidemark_models::open(&wh, defer.as_ref(), &models, &g.environment, &args.select)
            .await
            .map_err(anyhow::Error::msg)?;
    if project.models.is_empty() && project.broken.is_empty() {
        bail!("no models: {} has no .sql files", models.path.display());
    }
    let options = Options {
        select: args.select,
        full_refresh: args.full_refresh,
        threads: args.threads.unwrap_or(models.threads),
        progress,
        ran_by: tidemark_models::RanBy {
            who: "tidemark build".into(),
            environment: g.environment.clone(),
        },
    };
    let report = tidemark_models::build(&wh, engine, &project, &options)
        .await
        .map_err(anyhow::Error::msg)?;
    for (name, o) in &report.models {
        let line = match o {
            Outcome::Built(b) if !b.failed_tests.is_empty() => {
                format!(
                    "built, but its tests FAILED:\n    {}",
                    b.failed_tests.join("\n    ")
                )
            }
            Outcome::Built(b) if b.view => format!("view defined; {} ms", b.millis),
            Outcome::Built(b) => format!(
                "built {} (build {}): {} rows; {} new, {} changed, {} gone; {} ms{}",
                if b.appended {
                    "by appending"
                } else if b.incremental {
                    "incrementally"
                } else {
                    "whole"
                },
                b.build,
                b.rows,
                b.inserted,
                b.updated,
                b.deleted,
                b.millis,
                b.full_because
                    .as_ref()
                    .map(|w| format!(" ({w})"))
                    .or_else(|| b
                        .from_tail
                        .as_ref()
                        .map(|t| format!(" ({t} read from its changes alone)")))
                    .unwrap_or_default()
            ),
            Outcome::UpToDate => "up to date (its SQL and inputs are unchanged)".into(),
            Outcome::Failed(e) => format!("FAILED: {e}"),
            Outcome::Skipped(e) => format!("SKIPPED: {e}"),
        };
        println!("{name:<32} {line}");
        if let Outcome::Built(b) = o {
            for w in &b.warned_tests {
                println!("{:<32} warning: {w}", "");
            }
        }
    }
    let failures = report.failures();
    if !failures.is_empty() {
        bail!(
            "{} of {} models failed or were skipped: {}",
            failures.len(),
            report.models.len(),
            failures
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Options of `tidemark test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Models whose tests run, as `tidemark build` selects them (default: all).
    #[arg(long, short = 's')]
    pub select: Vec<String>,
    /// The models directory (default: [models] path in the config, else ./models).
    #[arg(long)]
    pub models: Option<std::path::PathBuf>,
    /// Unit tests only: no warehouse is read.
    #[arg(long)]
    pub unit: bool,
    #[command(flatten)]
    pub defer: DeferArgs,
}

/// Run `tidemark test`.
pub async fn test(g: &GlobalArgs, args: TestArgs) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let models = models_config(config.as_ref(), args.models);
    let (engine, project, wh) = if args.unit {
        let project = tidemark_models::Project::load(&models, None, &g.environment)?;
        (None, project, None)
    } else {
        let wh = warehouse(g, config.as_ref())?;
        let defer = args.defer.resolve(g, config.as_ref())?;
        let (engine, project) =
            tidemark_models::open(&wh, defer.as_ref(), &models, &g.environment, &args.select)
                .await
                .map_err(anyhow::Error::msg)?;
        (Some(engine), project, Some(wh))
    };
    // The data tests' outcomes go to this environment's tidemark.model_tests.
    let ran_by = tidemark_models::RanBy {
        who: "tidemark test".into(),
        environment: g.environment.clone(),
    };
    let results = tidemark_models::test(
        engine.as_deref(),
        &project,
        &args.select,
        wh.as_ref().map(|wh| (wh, &ran_by)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let mut failed = Vec::new();
    let (mut passed, mut warned) = (0, 0);
    for t in &results {
        for r in &t.data {
            if r.passed() {
                passed += 1;
                println!("{:<32} pass  {}", t.model, r.test.name);
            } else if r.test.severity == tidemark_models::testing::Severity::Warn {
                warned += 1;
                println!("{:<32} WARN  {}", t.model, r.message());
            } else {
                println!("{:<32} FAIL  {}", t.model, r.message());
            }
        }
        for (n, r) in &t.unit {
            match r {
                Ok(()) => {
                    passed += 1;
                    println!("{:<32} pass  unit test {n}", t.model);
                }
                Err(e) => println!("{:<32} FAIL  unit test {n}: {e}", t.model),
            }
        }
        for e in &t.errors {
            println!("{:<32} FAIL  {e}", t.model);
        }
        failed.extend(t.failures());
    }
    for e in &project.broken_tests {
        println!("{:<32} FAIL  {e}", "-");
        failed.push(e.to_string());
    }
    println!("{passed} passed, {warned} warned, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("{} test(s) failed", failed.len());
    }
    Ok(())
}

/// Options of `tidemark compile`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// Models to compile, as `tidemark build` selects them (default: all).
    #[arg(long, short = 's')]
    pub select: Vec<String>,
    /// The models directory (default: [models] path in the config, else ./models).
    #[arg(long)]
    pub models: Option<std::path::PathBuf>,
    /// Where the rendered SQL goes: `<model>.sql` each, and `manifest.json` (build
    /// order, targets, the tables each reads).
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub defer: DeferArgs,
}

/// Run `tidemark compile`: render the models as a build would, without running them.
pub async fn compile(g: &GlobalArgs, args: CompileArgs) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let models = models_config(config.as_ref(), args.models);
    let wh = warehouse(g, config.as_ref())?;
    let defer = args.defer.resolve(g, config.as_ref())?;
    let (_engine, project) =
        tidemark_models::open(&wh, defer.as_ref(), &models, &g.environment, &args.select)
            .await
            .map_err(anyhow::Error::msg)?;
    for (name, e) in &project.broken {
        eprintln!("{name}: {e}");
    }
    let selected =
        tidemark_models::graph::select(&project, &args.select).map_err(anyhow::Error::msg)?;
    let order = tidemark_models::graph::order(&project, &selected)?;
    std::fs::create_dir_all(&args.out)?;
    let mut manifest = Vec::new();
    for name in &order {
        let m = &project.models[name];
        std::fs::write(args.out.join(format!("{name}.sql")), &m.sql)?;
        manifest.push(serde_json::json!({
            "name": name,
            "path": m.path,
            "schema": m.target.schema,
            "table": m.target.table,
            "materialized": format!("{:?}", m.config.materialized).to_lowercase(),
            "unique_key": m.config.unique_key,
            "incremental_strategy": format!("{:?}", m.config.strategy).to_lowercase(),
            "reads": m.reads.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "sql": m.sql,
        }));
    }
    std::fs::write(
        args.out.join("manifest.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "models": manifest }))?,
    )?;
    println!("{} models compiled to {}", order.len(), args.out.display());
    if !project.broken.is_empty() {
        bail!(
            "{} model(s) could not be compiled (above)",
            project.broken.len()
        );
    }
    Ok(())
}
