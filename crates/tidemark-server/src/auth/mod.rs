//! Users and how they prove who they are.
//!
//! The users file holds, per user, a role and a SCRAM-SHA-256 verifier in
//! PostgreSQL's format; never a password. `tidemark user add` writes it.

pub mod scram;
pub(crate) mod startup;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};
pub use scram::Verifier;

/// One user of the endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The role whose grants apply (`[server.roles.<role>]`; `admin` is built in).
    pub role: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub verifier: String,
}

/// The users file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Users by name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

/// Users with parsed verifiers, as the server holds them.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: BTreeMap<String, (String, Verifier)>,
}

impl Users {
    /// Load and check a users file; a bad verifier names the user, never its value.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_file(UsersFile::read(path)?, path)
    }

    /// Parse and check users file text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        Self::from_file(UsersFile::parse(text, path)?, path)
    }

    fn from_file(file: UsersFile, path: &Path) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, u) in file.users {
            let v: Verifier = u.verifier.parse().map_err(|e| Error::Users {
                path: path.to_path_buf(),
                message: format!("user {name}: {e}"),
            })?;
            by_name.insert(name, (u.role, v));
        }
        Ok(Self { by_name })
    }

    /// The role and verifier of `name`.
    pub fn get(&self, name: &str) -> Option<&(String, Verifier)> {
        self.by_name.get(name)
    }

    /// Every user's name and role.
    pub fn roles(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_name
            .iter()
            .map(|(n, (r, _))| (n.as_str(), r.as_str()))
    }

    /// Every user's name, role and verifier.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, (&str, &Verifier))> {
        self.by_name
            .iter()
            .map(|(n, (r, v))| (n.as_str(), (r.as_str(), v)))
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl UsersFile {
    /// Read a users file; a missing file is an error that says how to create one.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Users {
            path: path.to_path_buf(),
            message: format!("cannot read it ({e}); create users with `tidemark user add NAME`"),
        })?;
        Self::parse(&text, path)
    }

    /// Parse users file text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        // As for the config file: the line number and message only, since toml's
        // Display quotes the line (a verifier is not a password, but keep the habit).
        toml::from_str(text).map_err(|e| Error::Users {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }

    /// Add or replace a user with a verifier for `password`, then write the file
    /// (created readable by its owner only).
    pub fn add_user(path: &Path, name: &str, role: &str, password: &str) -> Result<()> {
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(Error::Users {
                path: path.to_path_buf(),
                message: format!("{name:?} is not a usable user name"),
            });
        }
        if password.is_empty() {
            return Err(Error::Users {
                path: path.to_path_buf(),
                message: "empty password".into(),
            });
        }
        let mut file = if path.exists() {
            Self::read(path)?
        } else {
            Self::default()
        };
        file.users.insert(
            name.to_string(),
            User {
                role: role.to_string(),
                verifier: Verifier::new(password, scram::DEFAULT_ITERATIONS).to_string(),
            },
        );
        let body = toml::to_string(&file).map_err(|e| Error::Users {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = format!(
            "# tidemark users: SCRAM-SHA-256 verifiers (PostgreSQL format), written by\n# `tidemark user add`. No passwords are stored here.\n\n{body}"
        );
        write_private(path, &text).map_err(|e| Error::Users {
            path: path.to_path_buf(),
            message: format!("cannot write it: {e}"),
        })
    }
}

/// Write through a temporary file and rename, so a crash never leaves half a users
/// file; mode 0600 on Unix (a verifier allows offline guessing of weak passwords).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("toml.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
