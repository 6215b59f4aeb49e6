//! The PostgreSQL side: connecting, the state table, what a target table looks like
//! now, and the statements of one table's publish transaction.

use std::time::Duration;

use tokio_postgres::{Client, GenericClient, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use crate::tls::{self, SslMode, TlsParams};
use crate::types::{ident, qualified, PgType};

/// The table in the target schema that records, per publication and table, what the
/// target holds: written in the same transaction as the rows.
pub const STATE_TABLE: &str = "tidemark_publish_state";

/// The staging table of one publish transaction (temporary, dropped at commit).
pub const STAGE: &str = "__tidemark_stage";

/// A target as the client connects to it: tokio-postgres's settings, and the TLS
/// the URL asked for.
pub struct Target {
    /// The client's settings (without the TLS parameters tokio-postgres refuses).
    pub config: tokio_postgres::Config,
    /// `sslmode` and `sslrootcert`, as given or defaulted.
    pub tls: TlsParams,
    /// The rustls connector, `None` for `sslmode=disable`.
    connector: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres's Config Debug redacts the password.
        f.debug_struct("Target")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A connection string the client takes, checked: no password in it (the config
/// check refuses one in the userinfo; the query string could carry one too), and
/// its TLS parameters (`sslmode`, `sslrootcert`; see `tls.rs`) turned into a
/// connector. `default_mode` applies when the URL has no `sslmode`: PostgreSQL
/// targets take tokio-postgres's (and libpq's) `prefer`.
pub fn client_config(
    target: &str,
    password: Option<&str>,
    default_mode: SslMode,
) -> Result<Target, String> {
    let url = target.replacen("postgresql://", "postgres://", 1);
    if let Some((_, query)) = url.split_once('?') {
        if query
            .split('&')
            .any(|kv| kv.split('=').next() == Some("password"))
        {
            return Err(
                "the target URL carries a password; use password_env or password_file".into(),
            );
        }
    }
    let (url, tls) = tls::take_tls_params(&url, default_mode)?;
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("target is not a PostgreSQL URL: {e}"))?;
    if let Some(p) = password {
        cfg.password(p);
    }
    cfg.ssl_mode(tls.mode.client_mode());
    cfg.application_name("tidemark publish");
    cfg.connect_timeout(Duration::from_secs(10));
    let connector = tls::connector(&tls, cfg.get_ssl_negotiation())?;
    Ok(Target {
        config: cfg,
        tls,
        connector,
    })
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// TLS could not be set up as the URL asks (a server without TLS under
    /// `require`, a certificate that does not verify): what to change, naming the
    /// host. A retry would fail the same way.
    Tls(String),
    /// Anything else (refused, timed out, the password, a lost server).
    Client(tokio_postgres::Error),
}

/// Connect; the connection task runs until the client is dropped.
pub async fn connect(target: &Target) -> Result<Client, ConnectError> {
    let connected = match &target.connector {
        None => target.config.connect(NoTls).await.map(|(client, conn)| {
            tokio::spawn(drive(conn));
            client
        }),
        Some(tls) => target
            .config
            .connect(tls.clone())
            .await
            .map(|(client, conn)| {
                tokio::spawn(drive(conn));
                client
            }),
    };
    connected.map_err(|e| {
        let hosts = target
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        match tls::failure(&e, &target.tls, &hosts) {
            Some(message) => ConnectError::Tls(message),
            None => ConnectError::Client(e),
        }
    })
}

/// Run a connection's IO until the client is dropped.
async fn drive<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        warn!(error = %e, "publish target connection ended");
    }
}

/// A stable 64-bit key for `pg_advisory_xact_lock` (FNV-1a: the same on every
/// machine and build, unlike std's hasher), so every publisher of one table to one
/// target takes the same lock.
pub fn lock_key(parts: &[&str]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h as i64
}

/// Create the target schema and the state table if missing. Two publishers starting
/// at once would race on `CREATE … IF NOT EXISTS` (it is not atomic in PostgreSQL:
/// the loser fails on the catalog's unique index), so this takes a lock of its own.
pub async fn setup(client: &mut Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(&["tidemark publish setup", schema])],
    )
    .await?;
    // `CREATE SCHEMA IF NOT EXISTS` checks the CREATE privilege on the database
    // before it looks whether the schema exists: a loader that may only write into
    // an existing schema would be refused.
    let have_schema = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await?
        .is_some();
    if !have_schema {
        tx.batch_execute(&format!("CREATE SCHEMA {}", ident(schema)))
            .await?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {t} (
             publication text NOT NULL,
             table_name text NOT NULL,
             mode text NOT NULL,
             version bigint NOT NULL,
             ingest_us bigint NOT NULL,
             table_id text NOT NULL,
             rows_published bigint NOT NULL,
             published_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (publication, table_name)
         )",
        t = qualified(schema, STATE_TABLE),
    ))
    .await?;
    tx.commit().await
}

/// What the state table says about one published table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `append`, `merge` or `mirror`.
    pub mode: String,
    /// The history log's Delta version the last publish read.
    pub version: i64,
    /// The highest `_ingest_ts` (micros) published.
    pub ingest_us: i64,
    /// The history log's Delta table id.
    pub table_id: String,
    /// Rows sent so far.
    pub rows: i64,
}

/// The state row of (`publication`, `table`), if any.
pub async fn read_state(
    c: &impl GenericClient,
    schema: &str,
    publication: &str,
    table: &str,
) -> Result<Option<State>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &format!(
                "SELECT mode, version, ingest_us, table_id, rows_published FROM {} \
                 WHERE publication = $1 AND table_name = $2",
                qualified(schema, STATE_TABLE)
            ),
            &[&publication, &table],
        )
        .await?;
    Ok(row.map(|r| State {
        mode: r.get(0),
        version: r.get(1),
        ingest_us: r.get(2),
        table_id: r.get(3),
        rows: r.get(4),
    }))
}

/// Record what the target now holds.
pub async fn write_state(
    c: &impl GenericClient,
    schema: &str,
    publication: &str,
    table: &str,
    s: &State,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        &format!(
            "INSERT INTO {} (publication, table_name, mode, version, ingest_us, table_id, rows_published, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
             ON CONFLICT (publication, table_name) DO UPDATE SET mode = EXCLUDED.mode, \
             version = EXCLUDED.version, ingest_us = EXCLUDED.ingest_us, table_id = EXCLUDED.table_id, \
             rows_published = EXCLUDED.rows_published, published_at = EXCLUDED.published_at",
            qualified(schema, STATE_TABLE)
        ),
        &[&publication, &table, &s.mode, &s.version, &s.ingest_us, &s.table_id, &s.rows],
    )
    .await?;
    Ok(())
}

/// Forget a table's state (a full refresh starts over).
pub async fn delete_state(
    c: &impl GenericClient,
    schema: &str,
    publication: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        &format!(
            "DELETE FROM {} WHERE publication = $1 AND table_name = $2",
            qualified(schema, STATE_TABLE)
        ),
        &[&publication, &table],
    )
    .await?;
    Ok(())
}

/// A table as it is at the target.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// Columns in order, with their types as `format_type` spells them.
    pub columns: Vec<(String, String)>,
    /// Primary key columns, in key order.
    pub key: Vec<String>,
}

/// The target table `schema.table`, if it exists.
pub async fn existing(
    c: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Option<Existing>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let key = c
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary ORDER BY k.ord",
            &[&schema, &table],
        )
        .await?;
    Ok(Some(Existing {
        columns: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        key: key.iter().map(|r| r.get(0)).collect(),
    }))
}

/// `CREATE TABLE` for a published table (with its primary key, when `key` is not
/// empty: merge and mirror upsert by it).
pub fn create_table(schema: &str, table: &str, cols: &[(String, PgType)], key: &[&str]) -> String {
    let mut parts: Vec<String> = cols
        .iter()
        .map(|(n, t)| format!("{} {}", ident(n), t.sql()))
        .collect();
    if !key.is_empty() {
        parts.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    format!(
        "CREATE TABLE {} ({})",
        qualified(schema, table),
        parts.join(", ")
    )
}

/// The staging table: the published columns, no key, gone at commit.
pub fn create_stage(cols: &[(String, PgType)]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|(n, t)| format!("{} {}", ident(n), t.sql()))
        .collect();
    format!(
        "CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP",
        ident(STAGE),
        parts.join(", ")
    )
}

/// `COPY <into> (<cols>) FROM STDIN (FORMAT binary)`.
pub fn copy_in(into: &str, cols: &[(String, PgType)]) -> String {
    format!(
        "COPY {into} ({}) FROM STDIN (FORMAT binary)",
        cols.iter()
            .map(|(n, _)| ident(n))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Delete from the target the keys whose last change in the stage is a delete.
pub fn delete_from_stage(schema: &str, table: &str, key: &[&str]) -> String {
    let on = key
        .iter()
        .map(|k| format!("t.{k} = s.{k}", k = ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "DELETE FROM {} t USING {} s WHERE s.{op} = 'd' AND {on}",
        qualified(schema, table),
        ident(STAGE),
        op = ident(tidemark_core::schema::OP),
    )
}

/// Which rows of the stage an upsert takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Rows whose last change is not a delete: every column is set.
    Live,
    /// Rows whose last change is a delete (merge keeps them): a key the target has
    /// keeps its values and gets the delete's `_op`, `_source_ts`, `_ingest_ts`; a
    /// key it never had (inserted and deleted since the last publish) gets the image
    /// the delete carried.
    Deleted,
}

/// Upsert the stage's `rows` into the target by key.
pub fn upsert_from_stage(
    schema: &str,
    table: &str,
    cols: &[(String, PgType)],
    key: &[&str],
    rows: Rows,
) -> String {
    use tidemark_core::schema::{INGEST_TS, OP, SOURCE_TS};
    let list = cols
        .iter()
        .map(|(n, _)| ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    let set = cols
        .iter()
        .filter(|(n, _)| !key.contains(&n.as_str()))
        .filter(|(n, _)| rows == Rows::Live || [OP, SOURCE_TS, INGEST_TS].contains(&n.as_str()))
        .map(|(n, _)| format!("{c} = EXCLUDED.{c}", c = ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = match rows {
        Rows::Live => "<>",
        Rows::Deleted => "=",
    };
    format!(
        "INSERT INTO {} ({list}) SELECT {list} FROM {} WHERE {} {filter} 'd' ON CONFLICT ({}) DO UPDATE SET {set}",
        qualified(schema, table),
        ident(STAGE),
        ident(OP),
        key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", "),
    )
}

/// `ALTER TABLE … ADD COLUMN` for a column added upstream.
pub fn add_column(schema: &str, table: &str, name: &str, ty: PgType) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        qualified(schema, table),
        ident(name),
        ty.sql()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_every_name() {
        let cols = vec![
            ("Id".to_string(), PgType::Integer),
            ("we\"ird".to_string(), PgType::Text),
            ("_op".to_string(), PgType::Text),
        ];
        assert_eq!(
            create_table("dw", "Orders", &cols, &["Id"]),
            "CREATE TABLE \"dw\".\"Orders\" (\"Id\" integer, \"we\"\"ird\" text, \"_op\" text, PRIMARY KEY (\"Id\"))"
        );
        assert_eq!(
            upsert_from_stage("dw", "Orders", &cols, &["Id"], Rows::Live),
            "INSERT INTO \"dw\".\"Orders\" (\"Id\", \"we\"\"ird\", \"_op\") SELECT \"Id\", \"we\"\"ird\", \"_op\" FROM \"__tidemark_stage\" WHERE \"_op\" <> 'd' ON CONFLICT (\"Id\") DO UPDATE SET \"we\"\"ird\" = EXCLUDED.\"we\"\"ird\", \"_op\" = EXCLUDED.\"_op\""
        );
        assert_eq!(
            upsert_from_stage("dw", "Orders", &cols, &["Id"], Rows::Deleted),
            "INSERT INTO \"dw\".\"Orders\" (\"Id\", \"we\"\"ird\", \"_op\") SELECT \"Id\", \"we\"\"ird\", \"_op\" FROM \"__tidemark_stage\" WHERE \"_op\" = 'd' ON CONFLICT (\"Id\") DO UPDATE SET \"_op\" = EXCLUDED.\"_op\""
        );
        assert_eq!(
            delete_from_stage("dw", "Orders", &["Id"]),
            "DELETE FROM \"dw\".\"Orders\" t USING \"__tidemark_stage\" s WHERE s.\"_op\" = 'd' AND t.\"Id\" = s.\"Id\""
        );
    }

    #[test]
    fn urls_with_secrets_are_refused() {
        let prefer = SslMode::Prefer;
        assert!(client_config("postgres://u@h:5/db", Some("pw"), prefer).is_ok());
        assert!(client_config("postgresql://u@h:5/db", None, prefer).is_ok());
        let e = client_config("postgres://u@h:5/db?password=x", None, prefer).unwrap_err();
        assert!(e.contains("password_env") && !e.contains("=x"), "{e}");
        let e = client_config(
            "postgres://u@h:5/db?sslmode=require&password=x",
            None,
            prefer,
        )
        .unwrap_err();
        assert!(e.contains("password_env") && !e.contains("=x"), "{e}");
    }

    #[test]
    fn tls_parameters_reach_the_client_as_modes_it_knows() {
        use tokio_postgres::config::SslMode as Client;
        let mode = |url: &str| {
            let t = client_config(url, None, SslMode::Prefer).unwrap();
            (t.tls.mode, t.config.get_ssl_mode(), t.connector.is_some())
        };
        // No sslmode: tokio-postgres's and libpq's default, now able to upgrade.
        assert_eq!(
            mode("postgres://u@h/db"),
            (SslMode::Prefer, Client::Prefer, true)
        );
        assert_eq!(
            mode("postgres://u@h/db?sslmode=disable"),
            (SslMode::Disable, Client::Disable, false)
        );
        assert_eq!(
            mode("postgres://u@h/db?sslmode=require"),
            (SslMode::Require, Client::Require, true)
        );
        // The others keep their parameters: a verifying mode is TLS-or-nothing.
        let t = client_config(
            "postgres://u@h:7/db?application_name=x&sslmode=require&connect_timeout=4",
            None,
            SslMode::Prefer,
        )
        .unwrap();
        assert_eq!(t.config.get_ports(), [7]);
        // client_config names the connection itself, whatever the URL says.
        assert_eq!(t.config.get_application_name(), Some("tidemark publish"));
        let e = client_config(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            None,
            SslMode::Prefer,
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e =
            client_config("postgres://u@h/db?sslmode=allow", None, SslMode::Prefer).unwrap_err();
        assert!(e.contains("sslmode=allow"), "{e}");
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // Fixed: two tidemark builds (or machines) must take the same lock.
        assert_eq!(lock_key(&["a", "b"]), lock_key(&["a", "b"]));
        assert_ne!(lock_key(&["ab", ""]), lock_key(&["a", "b"]));
        assert_eq!(lock_key(&[]), 0xcbf2_9ce4_8422_2325u64 as i64);
    }
}
