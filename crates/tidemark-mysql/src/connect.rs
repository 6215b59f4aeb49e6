//! Connecting to a source.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tidemark_core::config::MySqlSourceConfig;

use crate::{Error, Result};

/// A connected source: a pool plus what we learnt about the server.
#[derive(Debug, Clone)]
pub struct Source {
    /// Source name in the config.
    pub name: String,
    /// The pool (one connection per table snapshotted in parallel, plus one).
    pub pool: Pool,
    /// `SELECT VERSION()`.
    pub version: String,
    /// The config, with environment overrides applied.
    pub config: MySqlSourceConfig,
    user: String,
    address: String,
}

impl Source {
    /// Is the server MariaDB (as opposed to MySQL / Aurora MySQL)?
    pub fn is_mariadb(&self) -> bool {
        self.version.to_ascii_lowercase().contains("mariadb")
    }

    /// Connect and check that the login works.
    pub async fn connect(name: &str, config: MySqlSourceConfig) -> Result<Self> {
        let password = config.password(name)?;
        let opts = Opts::from_url(&config.url).map_err(|e| Error::Unreachable {
            source_name: name.to_string(),
            address: "?".into(),
            message: format!("bad url: {e}"),
        })?;
        let address = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let user = opts.user().unwrap_or("").to_string();
        let max = config.parallel_tables + 2;
        let builder = OptsBuilder::from_opts(opts)
            .pass(password)
            .prefer_socket(false)
            // Every value is read as UTC text in utf8mb4, whatever the server defaults:
            // TIMESTAMP columns then need no conversion and latin1 text arrives as UTF-8.
            .init(vec![
                "SET NAMES utf8mb4".to_string(),
                "SET time_zone = '+00:00'".to_string(),
            ])
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(PoolConstraints::new(0, max).expect("0 <= max")),
            );
        let pool = Pool::new(builder);
        let mut source = Self {
            name: name.to_string(),
            pool,
            version: String::new(),
            config,
            user,
            address,
        };
        let mut conn = source.conn().await?;
        source.version = conn
            .query_first::<String, _>("SELECT VERSION()")
            .await
            .map_err(|e| source.query_error("-", e))?
            .unwrap_or_default();
        Ok(source)
    }

    /// A connection from the pool, with connection errors made readable.
    pub async fn conn(&self) -> Result<Conn> {
        self.pool
            .get_conn()
            .await
            .map_err(|e| self.connect_error(e))
    }

    fn connect_error(&self, e: mysql_async::Error) -> Error {
        match &e {
            mysql_async::Error::Server(s) if s.code == 1045 || s.code == 1044 => {
                Error::AccessDenied {
                    source_name: self.name.clone(),
                    user: self.user.clone(),
                    message: s.message.clone(),
                }
            }
            _ => Error::Unreachable {
                source_name: self.name.clone(),
                address: self.address.clone(),
                message: e.to_string(),
            },
        }
    }

    /// A query error, recognising missing privileges.
    pub fn query_error(&self, table: &str, e: mysql_async::Error) -> Error {
        match &e {
            mysql_async::Error::Server(s) if matches!(s.code, 1142 | 1143 | 1044) => {
                let db = table.split('.').next().unwrap_or("*");
                Error::MissingPrivilege {
                    source_name: self.name.clone(),
                    what: format!("user {} may not read {table} ({})", self.user, s.message),
                    grant: format!("GRANT SELECT ON `{db}`.* TO '{}'@'%';", self.user),
                }
            }
            mysql_async::Error::Server(s) if matches!(s.code, 1227 | 1045) => {
                Error::MissingPrivilege {
                    source_name: self.name.clone(),
                    what: format!("user {} lacks a privilege ({})", self.user, s.message),
                    grant: format!(
                        "GRANT SELECT, REPLICATION CLIENT, REPLICATION SLAVE ON *.* TO '{}'@'%';",
                        self.user
                    ),
                }
            }
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => self.connect_error(e),
            _ => Error::Query {
                source_name: self.name.clone(),
                table: table.to_string(),
                message: e.to_string(),
            },
        }
    }

    /// The user tidemark logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Close the pool.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}
