//! Bearer tokens of the HTTP API, stored as SHA-256 hashes only.
//!
//! `tidemark token add NAME --role operator` prints a token once; the file keeps its
//! hash. A token is 32 random bytes, so a plain SHA-256 is enough to make the file
//! useless to whoever reads it (a slow hash protects low-entropy passwords, which
//! these are not), and checking one costs a microsecond per request.
//!
//! ```toml
//! [[tokens]]
//! name = "ci"
//! role = "operator"
//! sha256 = "9f86d0…"
//! created = "2026-12-06T14:00:00Z"
//! ```

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read jobs, runs, status and metrics.
    Viewer,
    /// Also trigger runs.
    Operator,
    /// Everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("role {s:?}: use viewer, operator or admin")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// One stored token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who or what holds it (`ci`, `grafana`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// When it was made.
    pub created: String,
    /// The `[server.roles]` role it reads data as (online features: granted and
    /// masked like their source tables). Without one, a token reads no data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_role: Option<String>,
}

/// The tokens file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Every token.
    #[serde(default)]
    pub tokens: Vec<Token>,
}

fn sha256_hex(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in a time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Read `path`; a missing file is no tokens.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("tokens file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("tokens file {}: {e}", path.display())),
        }
    }

    /// The token presented, if it is one of these.
    pub fn check(&self, presented: &str) -> Option<&Token> {
        let hash = sha256_hex(presented);
        // Compared without stopping at the first differing byte: the hash of a
        // guess must not leak, by timing, how much of a stored hash it matches.
        self.tokens
            .iter()
            .find(|t| same(t.sha256.as_bytes(), hash.as_bytes()))
    }

    /// Add a token named `name` to the file at `path` (created 0600) and return it:
    /// the only time it is ever shown.
    pub fn add(path: &Path, name: &str, role: Role) -> anyhow::Result<String> {
        Self::add_reading_as(path, name, role, None)
    }

    /// [`Self::add`], the token reading data (online features) as the
    /// `[server.roles]` role `sql_role`.
    pub fn add_reading_as(
        path: &Path,
        name: &str,
        role: Role,
        sql_role: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut all = Self::load(path)?;
        if all.tokens.iter().any(|t| t.name == name) {
            anyhow::bail!(
                "a token named {name:?} exists in {}; remove it with `tidemark token remove {name}` first",
                path.display()
            );
        }
        let raw: [u8; 32] = rand::random();
        let token = format!(
            "tmk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        all.tokens.push(Token {
            name: name.to_string(),
            role,
            sha256: sha256_hex(&token),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sql_role: sql_role.map(str::to_string),
        });
        all.save(path)?;
        Ok(token)
    }

    /// Remove the token named `name`; `false` if there was none.
    pub fn remove(path: &Path, name: &str) -> anyhow::Result<bool> {
        let mut all = Self::load(path)?;
        let before = all.tokens.len();
        all.tokens.retain(|t| t.name != name);
        if all.tokens.len() == before {
            return Ok(false);
        }
        all.save(path)?;
        Ok(true)
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Written aside and renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_shown_once_and_checked_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let t = Tokens::add(&path, "ci", Role::Operator).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&t),
            "the file must not hold the token itself"
        );
        let all = Tokens::load(&path).unwrap();
        assert_eq!(all.check(&t).map(|t| t.role), Some(Role::Operator));
        assert!(all.check("tmk_wrong").is_none());
        assert!(Tokens::add(&path, "ci", Role::Viewer).is_err());
        assert!(Tokens::remove(&path, "ci").unwrap());
        assert!(Tokens::load(&path).unwrap().check(&t).is_none());
    }
}
