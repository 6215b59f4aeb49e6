//! `tidemark token`: the bearer tokens of the daemon's HTTP API.

use std::path::PathBuf;

use anyhow::{bail, Result};
use tidemark_daemon::tokens::{Role, Tokens};

use crate::common::{load_config, GlobalArgs};

/// Options of `tidemark token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Tokens file to use instead of `[daemon] tokens_file`.
    #[arg(long, global = true)]
    tokens_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a token and print it, once: only its hash is kept. A running daemon
    /// accepts it within a second.
    Add {
        /// What holds it (`ci`, `grafana`).
        name: String,
        /// `viewer` (read), `operator` (also trigger runs) or `admin`.
        #[arg(long, default_value = "operator")]
        role: Role,
        /// The `[server.roles]` role the token reads data as (online features, which
        /// are granted and masked like their source tables). Without it the token
        /// reads no data.
        #[arg(long)]
        sql_role: Option<String>,
    },
    /// Revoke a token (a running daemon refuses it within a second).
    Remove {
        /// Its name.
        name: String,
    },
    /// The tokens' names and roles (never the tokens).
    List,
}

/// Run `tidemark token`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    let path = match args.tokens_file {
        Some(p) => p,
        None => match load_config(g, false)? {
            Some(c) => c.daemon.tokens_file,
            None => PathBuf::from("tokens.toml"),
        },
    };
    match args.command {
        Command::Add {
            name,
            role,
            sql_role,
        } => {
            let token = Tokens::add_reading_as(&path, &name, role, sql_role.as_deref())?;
            eprintln!(
                "token {name:?} ({role}) added to {}; it is shown once, here:",
                path.display()
            );
            println!("{token}");
        }
        Command::Remove { name } => {
            if !Tokens::remove(&path, &name)? {
                bail!("no token named {name:?} in {}", path.display());
            }
            eprintln!("token {name:?} removed from {}", path.display());
        }
        Command::List => {
            for t in Tokens::load(&path)?.tokens {
                println!("{:<24} {:<9} {}", t.name, t.role.to_string(), t.created);
            }
        }
    }
    Ok(())
}
