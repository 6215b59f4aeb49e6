//! `tidemark jobs`: the daemon's jobs, their runs, and triggering one.
//!
//! `list` and `history` read the warehouse (no daemon needed); `run` asks the
//! running daemon over its HTTP API, so the run happens where every other run
//! happens, once, under the same lease.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tidemark_scheduler::store::{Outcome, RunRecord, RunStore};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark jobs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The configured jobs, their triggers and their newest run.
    List,
    /// Trigger a run in the running daemon, and wait for its end.
    Run {
        /// The job.
        name: String,
        /// Parameters for the job (`key=value`, repeatable).
        #[arg(long = "param", value_parser = key_value)]
        params: Vec<(String, String)>,
        /// Return once triggered instead of waiting for the run's end.
        #[arg(long)]
        no_wait: bool,
        /// The daemon's API (default: `[daemon] api_listen`).
        #[arg(long, env = "TIDEMARK_API")]
        api: Option<String>,
        /// A token of role operator or admin.
        #[arg(long, env = "TIDEMARK_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// The newest runs (of one job, or of all), newest first.
    History {
        /// Only this job.
        name: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: write key=value"))
}

/// Run `tidemark jobs`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, true)?.expect("required");
    let wh = warehouse(g, Some(&config))?;
    match args.command {
        Command::List => {
            let runs = stored(&wh).await?;
            println!("{:<28} {:<12} {:<44} last run", "job", "kind", "triggers");
            for (name, table) in &config.jobs {
                let spec = tidemark_scheduler::spec::JobSpec::from_toml(name, table)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let triggers: Vec<String> = spec.triggers.iter().map(|t| t.describe()).collect();
                let last = runs
                    .iter()
                    .filter(|r| &r.job == name)
                    .max_by_key(|r| r.seq)
                    .map_or("-".to_string(), describe);
                println!(
                    "{name:<28} {:<12} {:<44} {last}",
                    spec.kind,
                    if triggers.is_empty() {
                        "manual".to_string()
                    } else {
                        triggers.join("; ")
                    }
                );
            }
        }
        Command::History { name, limit } => {
            let mut runs: Vec<RunRecord> = stored(&wh)
                .await?
                .into_iter()
                .filter(|r| name.as_ref().is_none_or(|n| &r.job == n))
                .collect();
            runs.sort_by_key(|r| std::cmp::Reverse(r.started));
            for r in runs.into_iter().take(limit) {
                println!("{:<32} {}", r.id, describe(&r));
                if let Some(e) = &r.error {
                    println!("{:<32}   {e}", "");
                }
            }
        }
        Command::Run {
            name,
            params,
            no_wait,
            api,
            token,
        } => {
            let base = format!(
                "http://{}",
                api.unwrap_or_else(|| config.daemon.api_listen.clone())
            );
            let client = reqwest::Client::new();
            let params: BTreeMap<String, String> = params.into_iter().collect();
            let resp = client
                .post(format!("{base}/api/v1/jobs/{name}/runs"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "params": params }))
                .send()
                .await
                .with_context(|| {
                    format!("no daemon answers at {base}; is `tidemark run` running?")
                })?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!(
                    "{}: {}{}",
                    status,
                    body["error"].as_str().unwrap_or("refused"),
                    body["hint"]
                        .as_str()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                );
            }
            let run = body["run"].as_str().unwrap_or_default().to_string();
            println!("{run}");
            if no_wait || run == "queued" {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let r: serde_json::Value = client
                    .get(format!("{base}/api/v1/runs/{run}"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                match r["outcome"].as_str() {
                    Some("running") | None => continue,
                    Some("succeeded") => {
                        println!("succeeded: {} rows", r["rows"]);
                        return Ok(());
                    }
                    Some(other) => bail!(
                        "run {run} {other}: {}",
                        r["error"].as_str().unwrap_or("no reason recorded")
                    ),
                }
            }
        }
    }
    Ok(())
}

async fn stored(wh: &tidemark_lake::Warehouse) -> Result<Vec<RunRecord>> {
    let store = tidemark_daemon::store::LakeRunStore::open(wh)?;
    store.load().await.map_err(|e| anyhow::anyhow!("{e}"))
}

fn describe(r: &RunRecord) -> String {
    let outcome = match r.outcome {
        Outcome::Running => "running",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "FAILED",
        Outcome::Abandoned => "abandoned",
    };
    format!(
        "{outcome} {} ({}, {} rows, {} tries)",
        r.started.format("%Y-%m-%d %H:%M:%S"),
        r.reason,
        r.rows,
        r.attempts
    )
}
