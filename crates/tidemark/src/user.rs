//! `tidemark user`: the users of the PostgreSQL endpoint.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tidemark_server::auth::UsersFile;

use crate::common::{load_config, GlobalArgs};

/// Options of `tidemark user`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add a user (or replace its password and role). The password is read from the
    /// environment variable named by --password-env, else from the first line of
    /// stdin; never from the command line, where `ps` and shell history would show
    /// it. Only a SCRAM-SHA-256 verifier is stored.
    Add {
        /// Login name.
        name: String,
        /// Role whose grants apply.
        #[arg(long, default_value = "analyst")]
        role: String,
        /// Environment variable holding the password.
        #[arg(long, default_value = "TIDEMARK_USER_PASSWORD")]
        password_env: String,
        /// Users file to write instead of `[server] users_file`.
        #[arg(long)]
        users_file: Option<PathBuf>,
    },
}

/// Run `tidemark user`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    match args.command {
        Command::Add {
            name,
            role,
            password_env,
            users_file,
        } => {
            let config = load_config(g, false)?;
            // A user whose role the config does not define cannot log in (the
            // server refuses to start): say so now, not at the next restart.
            if let Some(c) = &config {
                if role != tidemark_server::access::ADMIN && !c.server.roles.contains_key(&role) {
                    bail!(
                        "role {role:?} is not defined in [server.roles] (defined: {}); define it first, or pick one with --role",
                        c.server.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let path = match users_file {
                Some(p) => p,
                None => config
                    .map(|c| c.server.users_file)
                    .unwrap_or_else(|| tidemark_core::config::ServerConfig::default().users_file),
            };
            let password = match std::env::var(&password_env) {
                Ok(p) => p,
                Err(_) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("password for {name} (input is shown; prefer {password_env} or a pipe):");
                    }
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            if password.is_empty() {
                bail!("no password: set {password_env} or pipe it on stdin");
            }
            UsersFile::add_user(&path, &name, &role, &password)?;
            println!("user {name} (role {role}) written to {}", path.display());
            Ok(())
        }
    }
}
