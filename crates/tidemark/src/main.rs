//! `tidemark`: the one binary. Each subcommand lives in its own file; this one only
//! parses the command line and reports errors.

use clap::{Parser, Subcommand};

mod build;
mod check;
mod common;
mod console;
mod demo;
mod features;
mod jobs;
mod maintain;
mod publish;
mod pull;
mod run;
mod serve;
mod snapshot;
mod sql;
mod status;
mod token;
mod user;
mod verify;

/// A complete, time-travelling copy of your MySQL databases in Delta Lake, served
/// over SQL.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that each source is ready (binlog settings, privileges, retention).
    Check(check::Args),
    /// Land a consistent snapshot of the selected MySQL tables (resumes if interrupted).
    Snapshot(snapshot::Args),
    /// Pull rows changed since the last pull, by each table's watermark column.
    Pull(pull::Args),
    /// The daemon: capture changes continuously (snapshot what is missing, then
    /// stream), run the configured jobs, serve the HTTP API.
    Run(run::Args),
    /// Build the SQL models (`[models] path`) in dependency order, with history.
    Build(build::Args),
    /// Render the models' SQL (templates resolved) without running it.
    Compile(build::CompileArgs),
    /// Run the models' data tests (on their landed tables) and unit tests (on
    /// fixtures, without a warehouse with --unit).
    Test(build::TestArgs),
    /// Publish a `[publish.NAME]` publication's tables to its PostgreSQL target,
    /// incrementally and exactly once.
    Publish(publish::Args),
    /// Compact, checkpoint and vacuum the warehouse's tables (history is kept).
    Maintain(maintain::Args),
    /// Where each table's change capture has got to, its freshness, parked tables.
    Status(status::Args),
    /// Run a SQL query on the warehouse and print the result.
    Sql(sql::Args),
    /// Serve the warehouse over the PostgreSQL protocol (psql, JDBC, Python, BI tools).
    Serve(serve::Args),
    /// Serve the web console (health, catalog, SQL editor) to the endpoint's users.
    Console(console::Args),
    /// Prove the lake equals the source at one binlog position, and its history
    /// consistent; exits non-zero on any difference.
    Verify(verify::Args),
    /// Manage the users of the PostgreSQL endpoint.
    User(user::Args),
    /// The daemon's jobs: list them, trigger one, read their runs.
    Jobs(jobs::Args),
    /// Manage the bearer tokens of the daemon's HTTP API.
    Token(token::Args),
    /// Run the whole product offline on generated invoicing data.
    Demo(demo::Args),
    /// Feature views (`[features.*]`) and point-in-time correct training sets.
    Features(features::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(a) => check::run(&cli.global, a).await,
            Command::Snapshot(a) => snapshot::run(&cli.global, a).await,
            Command::Pull(a) => pull::run(&cli.global, a).await,
            Command::Build(a) => build::run(&cli.global, a).await,
            Command::Test(a) => build::test(&cli.global, a).await,
            Command::Compile(a) => build::compile(&cli.global, a).await,
            Command::Maintain(a) => maintain::run(&cli.global, a).await,
            Command::Publish(a) => publish::run(&cli.global, a).await,
            Command::Status(a) => status::run(&cli.global, a).await,
            Command::Run(a) => run::run(&cli.global, a).await,
            Command::Sql(a) => sql::run(&cli.global, a).await,
            Command::Serve(a) => serve::run(&cli.global, a).await,
            Command::Console(a) => console::run(&cli.global, a).await,
            Command::User(a) => user::run(&cli.global, a).await,
            Command::Jobs(a) => jobs::run(&cli.global, a).await,
            Command::Token(a) => token::run(&cli.global, a).await,
            Command::Verify(a) => verify::run(&cli.global, a).await,
            Command::Demo(a) => demo::run(&cli.global, a).await,
            Command::Features(a) => features::run(&cli.global, a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
