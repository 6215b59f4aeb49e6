//! The configuration file.
//!
//! One TOML file describes the environments (each its own warehouse root and its own
//! credentials) and the sources. Parsing is strict: an unknown key is an error that
//! names the key and its line, because a silently ignored typo (`primary_kye`) in a
//! data platform means silently wrong data. Secrets never live in this file: a source
//! names an environment variable or a file that holds its password.
//!
//! See `docs/configuration.md` for every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::names::Naming;
use crate::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Environments by name (`dev`, `test`, `prod`, ...).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// MySQL sources by name.
    #[serde(default)]
    pub sources: BTreeMap<String, MySqlSourceConfig>,
    /// Event streams (Kafka topics or files of change events) by name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
    /// The PostgreSQL-protocol endpoint (`tidemark serve`).
    #[serde(default)]
    pub server: ServerConfig,
    /// `[daemon]`: the HTTP API and scheduling of `tidemark run`.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `[console]`: the web console (`tidemark console`, and `tidemark run`).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// `[jobs.NAME]`: scheduled and triggered jobs. Kept as tables here: each job
    /// kind validates its own keys (`tidemark_scheduler::parse_jobs`), so a kind added
    /// later needs no change to this file.
    #[serde(default)]
    pub jobs: BTreeMap<String, toml::Table>,
    /// `[models]`: the SQL models `tidemark build` lands (tidemark-models).
    #[serde(default)]
    pub models: ModelsConfig,
    /// `[publish.NAME]`: tables and models published to a PostgreSQL-protocol
    /// database (tidemark-publish).
    #[serde(default)]
    pub publish: BTreeMap<String, PublishConfig>,
    /// `[features.VIEW]`: feature views (tidemark-features). Kept as tables here, like
    /// `[jobs]`: tidemark-features parses them into typed definitions with errors
    /// naming the view and the key, so this crate needs no knowledge of them.
    #[serde(default)]
    pub features: BTreeMap<String, toml::Table>,
}

/// How a publication writes a table's changes at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    /// Every version, as a row (the history log: inserts, updates, deletes as rows
    /// with `_op`); no key at the target.
    Append,
    /// The latest image per key, upserted; a deleted row stays, its last image
    /// marked `_op = 'd'`.
    Merge,
    /// The latest image per key, upserted, and deleted keys deleted: the target
    /// equals the table.
    Mirror,
}

impl PublishMode {
    /// The name the config spells.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Append => "append",
            PublishMode::Merge => "merge",
            PublishMode::Mirror => "mirror",
        }
    }
}

/// `[publish.NAME]`: tables (or models) published to a PostgreSQL-protocol target:
/// PostgreSQL, or Amazon Redshift (rows staged as Parquet in S3, then `COPY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// `postgres://user@host:port/database` or `redshift://user@host:5439/database`
    /// (no password in either).
    pub target: String,
    /// Environment variable holding the target password.
    pub password_env: Option<String>,
    /// File holding the target password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Tables and models to publish, as SQL names them: `"schema.table"`.
    pub tables: Vec<String>,
    /// `append`, `merge` or `mirror`.
    pub mode: PublishMode,
    /// Schema at the target that receives the tables (and `tidemark_publish_state`).
    #[serde(default = "default_publish_schema")]
    pub schema: String,
    /// Redshift: where the rows are staged for `COPY`, `s3://bucket/prefix/` (in the
    /// cluster's region: COPY of Parquet reads only from there).
    pub staging: Option<String>,
    /// Redshift: object_store options for the staging bucket (`region`, `endpoint`,
    /// ...), as for an S3 warehouse; credentials come from the usual `AWS_*`
    /// variables (or the instance/container role), never from here.
    #[serde(default)]
    pub staging_options: BTreeMap<String, String>,
    /// Redshift: the IAM role (ARN) Redshift assumes to read the staged files
    /// (`COPY … IAM_ROLE`); a comma-separated chain of roles is passed as is.
    pub iam_role: Option<String>,
}

fn default_publish_schema() -> String {
    "public".to_string()
}

impl PublishConfig {
    /// Whether the target is Amazon Redshift (`redshift://`).
    pub fn is_redshift(&self) -> bool {
        self.target.starts_with("redshift://")
    }

    /// The target password from `password_env` or `password_file`, if either is set.
    pub fn password(&self, publication: &str) -> Result<Option<String>> {
        secret(
            &format!("publication {publication}"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }
}

/// `[models]`: where the SQL models live and what they default to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory of `.sql` files (searched recursively). Relative to the config file.
    #[serde(default = "default_models_path")]
    pub path: PathBuf,
    /// Schema a model lands in unless its `config(schema = …)` says otherwise.
    #[serde(default = "default_models_schema")]
    pub schema: String,
    /// Models built at once when they do not depend on each other.
    #[serde(default = "default_models_threads")]
    pub threads: usize,
    /// Values `var('name')` returns, for every environment.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Per environment (`[models.env.dev]`): values that override `vars` there.
    #[serde(default)]
    pub env: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            path: default_models_path(),
            schema: default_models_schema(),
            threads: default_models_threads(),
            vars: BTreeMap::new(),
            env: BTreeMap::new(),
        }
    }
}

fn default_models_path() -> PathBuf {
    PathBuf::from("models")
}

fn default_models_schema() -> String {
    "analytics".to_string()
}

fn default_models_threads() -> usize {
    4
}

/// `[daemon]`: what `tidemark run` serves besides capture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the HTTP API (jobs, runs, status, metrics, health). Loopback by
    /// default; `"off"` disables it.
    #[serde(default = "default_api_listen")]
    pub api_listen: String,
    /// File of the API's bearer tokens (hashes only; `tidemark token add`). Relative
    /// to the config file.
    #[serde(default = "default_tokens_file")]
    pub tokens_file: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            api_listen: default_api_listen(),
            tokens_file: default_tokens_file(),
        }
    }
}

fn default_api_listen() -> String {
    "127.0.0.1:8421".to_string()
}

fn default_tokens_file() -> PathBuf {
    PathBuf::from("tokens.toml")
}

/// `[console]`: the web console. Its users and roles are `[server]`'s.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address `tidemark console` listens on. Loopback by default.
    #[serde(default = "default_console_listen")]
    pub listen: String,
    /// Whether `tidemark run` also serves the console, at `/console/` of its HTTP API.
    #[serde(default)]
    pub daemon: bool,
    /// Minutes a console session may go unused before it is signed out.
    #[serde(default = "default_console_idle")]
    pub session_idle_minutes: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: default_console_listen(),
            daemon: false,
            session_idle_minutes: default_console_idle(),
        }
    }
}

fn default_console_listen() -> String {
    "127.0.0.1:8420".to_string()
}

fn default_console_idle() -> u64 {
    60
}

/// `[server]`: the PostgreSQL-protocol endpoint. Paths are relative to the config
/// file. No secret lives here: passwords are SCRAM verifiers in `users_file`, and the
/// TLS key is a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default; 5433 so it runs beside PostgreSQL.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PEM certificate chain for TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS. Needs `tls_cert` and `tls_key`.
    #[serde(default)]
    pub require_tls: bool,
    /// The users file (`tidemark user add` writes it): SCRAM-SHA-256 verifiers, never
    /// passwords.
    #[serde(default = "default_users_file")]
    pub users_file: PathBuf,
    /// Longest a statement may run (planning and streaming its rows); 0 means no limit.
    #[serde(default)]
    pub statement_timeout_ms: u64,
    /// Connections served at once; further ones are refused until one ends.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Memory one query may use for sorts, joins and aggregates, in MiB; a query
    /// that needs more fails (SQLSTATE 53200) instead of starving the others. 0 means
    /// no limit.
    #[serde(default = "default_query_memory_mb")]
    pub query_memory_mb: u64,
    /// How often the endpoint looks for newly landed commits (ms); queries see data at
    /// most this much older than the lake. 0: never (tables as of startup).
    #[serde(default = "default_refresh_ms")]
    pub refresh_interval_ms: u64,
    /// How long audit records may wait before they are committed to `tidemark.audit`.
    #[serde(default = "default_audit_flush_ms")]
    pub audit_flush_ms: u64,
    /// Days of `tidemark.audit` that maintenance keeps; older records are deleted.
    /// 0 (the default) keeps every record: the audit is a security record, and
    /// deleting it is the operator's decision.
    #[serde(default)]
    pub audit_retention_days: u32,
    /// Roles by name: what their users may read. A user whose role is not here
    /// cannot log in, except role `admin`, which is built in (everything, including
    /// `tidemark.audit`) unless defined here.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
}

/// `[server.roles.<name>]`: what a role's users may read. Nothing is readable
/// without a grant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Reads everything, tidemark's own tables (`tidemark.audit`,
    /// `tidemark.dead_letters`) included.
    #[serde(default)]
    pub admin: bool,
    /// Source tables this role reads: `"db.table"`, `"db.*"` or `"*"`. A grant covers
    /// the table's current rows and its history (`db_history.table`, time travel,
    /// `changes()`).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Column masks: `"db.table.column" = "SQL expression"`. The role reads the
    /// expression's value (cast to the column's type) instead of the column's, in the
    /// current table and in history.
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    /// Row filters: `"db.table" = "SQL condition"`. The role reads only the rows (and
    /// history versions) for which it is true.
    #[serde(default)]
    pub row_filters: BTreeMap<String, String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            users_file: default_users_file(),
            statement_timeout_ms: 0,
            max_connections: default_max_connections(),
            query_memory_mb: default_query_memory_mb(),
            audit_flush_ms: default_audit_flush_ms(),
            audit_retention_days: 0,
            refresh_interval_ms: default_refresh_ms(),
            roles: BTreeMap::new(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:5433".into()
}
fn default_users_file() -> PathBuf {
    PathBuf::from("users.toml")
}
fn default_max_connections() -> usize {
    100
}
fn default_query_memory_mb() -> u64 {
    2048
}
fn default_audit_flush_ms() -> u64 {
    1000
}
fn default_refresh_ms() -> u64 {
    2000
}

/// How `tidemark run` captures a MySQL source's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Stream the binlog.
    #[default]
    Binlog,
    /// Not at all: the changes arrive through a stream (`[streams.*]` with
    /// `schema_from` naming this source); the source gives table definitions and
    /// snapshots only.
    None,
}

/// Where a stream's messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Kafka topics (or any Kafka-protocol broker: MSK, Confluent Cloud, Redpanda).
    Kafka,
    /// JSON-lines files in a local directory.
    Files,
}

/// Which producer wrote the change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// Debezium's MySQL connector, JSON converter (with or without schemas).
    Debezium,
    /// AWS DMS with a Kafka target (JSON).
    Dms,
}

/// A stream of MySQL change events that another tool captured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// `kafka` or `files`.
    pub kind: StreamKind,
    /// `debezium` or `dms`.
    pub format: EventFormat,
    /// The MySQL source (`[sources.NAME]`, with `capture = "none"`) whose
    /// information_schema gives the tables' definitions, and whose databases, include,
    /// exclude, naming and per-table keys select and name the tables. Without it, the
    /// messages' own schemas define the tables (Debezium with JSON schemas on, or
    /// Avro), and the stream's own `databases`, `include`, `exclude`, `naming` and
    /// `tables` select and name them.
    pub schema_from: Option<String>,
    /// How Debezium's converter wrote the messages: `json` (default) or `avro`
    /// (Confluent wire format, schemas from `schema_registry`).
    #[serde(default)]
    pub converter: Converter,
    /// The Confluent-compatible schema registry of an `avro` stream.
    pub schema_registry: Option<RegistryConfig>,
    /// Without `schema_from`: databases to land (empty: every database seen).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Without `schema_from`: `db.table` glob patterns to land (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Without `schema_from`: `db.table` glob patterns to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Without `schema_from`: how source identifiers become SQL identifiers.
    #[serde(default)]
    pub naming: Naming,
    /// Without `schema_from`: per-table options (`primary_key`, for messages whose
    /// key has no schema).
    #[serde(default)]
    pub tables: BTreeMap<String, TableOptions>,
    /// Kafka: bootstrap servers, `host:port[,host:port]`.
    pub brokers: Option<String>,
    /// Kafka: topics to read; an entry starting with `^` is a regular expression.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Kafka: Debezium's transaction metadata topic (`<topic.prefix>.transaction`,
    /// with `provide.transaction.metadata = true` at the connector). Read with the
    /// topics; a table's changes of one source transaction then land in one commit,
    /// never split.
    pub transaction_topic: Option<String>,
    /// Kafka: consumer group. Workers in one group share the partitions. Default
    /// `tidemark-<stream name>`.
    pub group_id: Option<String>,
    /// Kafka: further librdkafka settings (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`, ...). Secrets are not allowed here.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Kafka: environment variable holding the SASL password (`sasl.password`).
    pub password_env: Option<String>,
    /// Kafka: file holding the SASL password.
    pub password_file: Option<PathBuf>,
    /// Files: a local directory of `*.jsonl` / `*.json` / `*.ndjson` files (read in
    /// name order, then watched for new ones), one local file, or an
    /// `s3://bucket/prefix/` holding such files.
    pub path: Option<String>,
    /// Files under `s3://`: object_store options (`region`, `endpoint`, ...), as for
    /// an S3 warehouse; credentials come from the usual `AWS_*` variables.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Debezium `decimal.handling.mode` of the connector: `precise`, `string` or
    /// `double` (matters only for messages without schemas).
    pub decimal_handling: Option<String>,
    /// Debezium `binary.handling.mode`: `bytes`, `base64`, `base64-url-safe` or `hex`.
    pub binary_handling: Option<String>,
    /// Debezium `time.precision.mode`: `adaptive_time_microseconds`, `adaptive` or
    /// `connect`.
    pub time_precision: Option<String>,
    /// Commit at least this often (milliseconds): the freshness bound.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Commit early once this many changes are pending.
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
}

/// How Debezium's converter serialised a stream's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Converter {
    /// Kafka Connect's JsonConverter (with or without schemas).
    #[default]
    Json,
    /// Confluent's AvroConverter: the Confluent wire format, with a schema registry.
    Avro,
}

/// A Confluent-compatible schema registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `http(s)://host:port[/path]`.
    pub url: String,
    /// Basic-auth user (Confluent Cloud: the API key).
    pub username: Option<String>,
    /// Environment variable holding the basic-auth password (API secret).
    pub password_env: Option<String>,
    /// File holding the basic-auth password.
    pub password_file: Option<PathBuf>,
    /// A PEM file of the CA certificates to trust for `https://`, instead of the
    /// system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl RegistryConfig {
    /// The basic-auth password, if configured.
    pub fn password(&self, stream: &str) -> Result<Option<String>> {
        secret(
            &format!("stream {stream}: schema_registry"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }
}

impl StreamConfig {
    /// The topics a Kafka stream subscribes to: `topics` and the transaction topic.
    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut all = self.topics.clone();
        if let Some(t) = &self.transaction_topic {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        all
    }

    /// Compiled include/exclude patterns of a stream without `schema_from`.
    pub fn table_filter(&self) -> Result<TableFilter> {
        table_filter(&self.include, &self.exclude)
    }

    /// Does a stream without `schema_from` land `db.table`?
    pub fn selects(&self, db: &str, table: &str) -> Result<bool> {
        Ok(
            (self.databases.is_empty() || self.databases.iter().any(|d| d == db))
                && self.table_filter()?.matches(db, table),
        )
    }

    /// The SASL password from `password_env` or `password_file`, if either is set.
    pub fn password(&self, stream: &str) -> Result<Option<String>> {
        secret(
            &format!("stream {stream}"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }
}

/// A secret from an environment variable or a file (trailing newline dropped).
fn secret(owner: &str, env: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(Error::Secret(format!(
                "{owner}: password_env names {var}, which is not set; export {var} (or use password_file)"
            ))),
        };
    }
    if let Some(file) = file {
        return std::fs::read_to_string(file)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| {
                Error::Secret(format!(
                    "{owner}: cannot read password_file {}: {e}",
                    file.display()
                ))
            });
    }
    Ok(None)
}

/// One environment: where its warehouse lives and which credentials it uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Warehouse root: a local directory (relative to the config file) or `s3://bucket/prefix`.
    pub warehouse: String,
    /// object_store options for the warehouse (region, endpoint). Credentials are read
    /// from the usual `AWS_*` environment variables, not from here.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Per-environment overrides of source connection settings.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceOverride>,
    /// Another environment whose warehouse this one's model builds read, read-only
    /// (dbt's `defer`): `source()` reads its landed tables, and `ref()` its models
    /// where this environment has not built them. Builds write only here.
    #[serde(default)]
    pub defer_to: Option<String>,
}

/// Connection settings that differ between environments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOverride {
    /// `mysql://user@host:port` (no password).
    pub url: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

/// A MySQL (or MariaDB, or Aurora MySQL) source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlSourceConfig {
    /// `mysql://user@host:port`; a password in the URL is rejected.
    pub url: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Databases to read. Empty: every database the user can see except system ones.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Tables to include, as `db.table` glob patterns (`shop.*`). Empty: all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables to exclude, as `db.table` glob patterns; applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// How identifiers become SQL names.
    #[serde(default)]
    pub naming: Naming,
    /// Rows per snapshot chunk; each chunk is one Delta commit per table, so an interrupted
    /// snapshot resumes after the last committed chunk.
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// Tables snapshotted at the same time.
    #[serde(default = "default_parallel_tables")]
    pub parallel_tables: usize,
    /// Per-table options, keyed by `db.table` as spelled at the source.
    #[serde(default)]
    pub tables: BTreeMap<String, TableOptions>,
    /// Server id tidemark's binlog replica announces; unique among the server's
    /// replicas. Default: derived from the source name (see [`Self::replica_server_id`]).
    pub server_id: Option<u32>,
    /// Change capture commits at least this often (milliseconds): the freshness bound.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Change capture commits early once this many row changes are pending.
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
    /// `binlog` (default) or `none` (changes come from a stream; see [`Capture`]).
    #[serde(default)]
    pub capture: Capture,
}

fn default_chunk_rows() -> usize {
    250_000
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_flush_rows() -> usize {
    200_000
}
fn default_parallel_tables() -> usize {
    2
}

/// Options for one source table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOptions {
    /// Key columns for a table that has no primary key (source spelling).
    pub primary_key: Option<Vec<String>>,
    /// Column whose growth marks changed rows, for `tidemark pull`.
    pub watermark: Option<String>,
}

impl Config {
    /// Read and validate a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        // Relative local warehouses are relative to the config file, not the cwd, so a
        // daemon started from anywhere writes to the same place.
        let base = path.parent().unwrap_or(Path::new("."));
        for env in config.environments.values_mut() {
            if !env.warehouse.contains("://") && Path::new(&env.warehouse).is_relative() {
                env.warehouse = base.join(&env.warehouse).to_string_lossy().into_owned();
            }
        }
        let server = &mut config.server;
        for p in [&mut server.tls_cert, &mut server.tls_key]
            .into_iter()
            .flatten()
            .chain([
                &mut server.users_file,
                &mut config.daemon.tokens_file,
                &mut config.models.path,
            ])
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parse config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        // toml's Display quotes the offending line, which could echo a secret someone
        // pasted into the file; report the line number and the message only.
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Error::Config {
                path: path.to_path_buf(),
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_string(),
                },
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        for (name, env) in &self.environments {
            if env.warehouse.trim().is_empty() {
                return Err(bad(format!("environments.{name}.warehouse is empty")));
            }
            for src in env.sources.keys() {
                if !self.sources.contains_key(src) {
                    return Err(bad(format!(
                        "environments.{name}.sources.{src} overrides a source that is not defined; define [sources.{src}]"
                    )));
                }
            }
        }
        // A build defers one step, to another environment that does not defer.
        for (name, env) in &self.environments {
            let Some(to) = &env.defer_to else {
                continue;
            };
            match self.environments.get(to) {
                _ if to == name => {
                    return Err(bad(format!(
                        "environments.{name}.defer_to names {name} itself; it names the environment whose sources {name}'s builds read (e.g. \"prod\")"
                    )))
                }
                None => {
                    return Err(bad(format!(
                        "environments.{name}.defer_to = {to:?}: no such environment; defined: {}",
                        self.environments.keys().cloned().collect::<Vec<_>>().join(", ")
                    )))
                }
                Some(other) if other.defer_to.is_some() => {
                    return Err(bad(format!(
                        "environments.{name}.defer_to = {to:?}, which defers to {:?} itself: a build defers one step; point {name} at the environment that has the data",
                        other.defer_to.as_deref().unwrap_or_default()
                    )))
                }
                Some(_) => {}
            }
        }
        // Two environments on one warehouse would let dev overwrite prod.
        let mut roots = BTreeMap::new();
        for (name, env) in &self.environments {
            if let Some(other) = roots.insert(env.warehouse.trim_end_matches('/'), name) {
                return Err(bad(format!(
                    "environments {other} and {name} share the warehouse {}; each environment needs its own",
                    env.warehouse
                )));
            }
        }
        let server = &self.server;
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return Err(bad(
                "server: tls_cert and tls_key go together; set both or neither".into(),
            ));
        }
        if server.require_tls && server.tls_cert.is_none() {
            return Err(bad(
                "server: require_tls = true needs tls_cert and tls_key".into()
            ));
        }
        if server.max_connections == 0 {
            return Err(bad("server: max_connections must be at least 1".into()));
        }
        for (name, src) in &self.sources {
            check_url(&src.url).map_err(|m| bad(format!("sources.{name}.url: {m}")))?;
            if src.snapshot_chunk_rows == 0 || src.parallel_tables == 0 {
                return Err(bad(format!(
                    "sources.{name}: snapshot_chunk_rows and parallel_tables must be at least 1"
                )));
            }
            for pat in src.include.iter().chain(&src.exclude) {
                Glob::new(pat)
                    .map_err(|e| bad(format!("sources.{name}: bad table pattern {pat:?}: {e}")))?;
            }
            for key in src.tables.keys() {
                if !key.contains('.') {
                    return Err(bad(format!(
                        "sources.{name}.tables.{key:?}: table keys are \"db.table\""
                    )));
                }
            }
        }
        for (name, st) in &self.streams {
            let at = |m: &str| bad(format!("streams.{name}: {m}"));
            match &st.schema_from {
                Some(from) => {
                    let Some(src) = self.sources.get(from) else {
                        return Err(at(&format!(
                            "schema_from names source {from:?}, which is not defined; define [sources.{from}] (its information_schema gives the tables' definitions), or remove schema_from to take them from the messages' schemas"
                        )));
                    };
                    if src.capture != Capture::None {
                        return Err(at(&format!(
                            "source {from} is also captured from its binlog, so two writers would land the same tables; set capture = \"none\" in [sources.{from}]"
                        )));
                    }
                    if let Some(other) = self
                        .streams
                        .iter()
                        .find(|(n, o)| *n < name && o.schema_from.as_ref() == Some(from))
                    {
                        return Err(at(&format!(
                            "stream {} also lands source {from}'s tables; one stream per source",
                            other.0
                        )));
                    }
                    if !st.databases.is_empty()
                        || !st.include.is_empty()
                        || !st.exclude.is_empty()
                        || !st.tables.is_empty()
                        || st.naming != Naming::default()
                    {
                        return Err(at(&format!(
                            "databases, include, exclude, naming and tables come from [sources.{from}] when schema_from is set; set them there"
                        )));
                    }
                }
                None => {
                    if st.format == EventFormat::Dms {
                        return Err(at(
                            "AWS DMS messages carry no table definitions; set schema_from = \"<source>\" naming a [sources.*] MySQL source with capture = \"none\"",
                        ));
                    }
                    st.table_filter().map_err(|e| at(&e.to_string()))?;
                    for key in st.tables.keys() {
                        if !key.contains('.') {
                            return Err(at(&format!(
                                "tables.{key:?}: table keys are \"db.table\""
                            )));
                        }
                    }
                }
            }
            match (st.converter, &st.schema_registry) {
                (Converter::Avro, None) => {
                    return Err(at(
                        "converter = \"avro\" needs [streams.NAME.schema_registry] with url = \"http://host:port\"",
                    ))
                }
                (Converter::Json, Some(_)) => {
                    return Err(at(
                        "schema_registry is for converter = \"avro\"; set converter = \"avro\" or remove it",
                    ))
                }
                (Converter::Avro, Some(r)) => {
                    if st.kind != StreamKind::Kafka {
                        return Err(at("converter = \"avro\" is for kind = \"kafka\""));
                    }
                    if st.format != EventFormat::Debezium {
                        return Err(at("converter = \"avro\" is for format = \"debezium\""));
                    }
                    if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                        return Err(at(&format!(
                            "schema_registry.url {:?} must start with http:// or https://",
                            r.url
                        )));
                    }
                    if r.url.contains('@') {
                        return Err(at(
                            "schema_registry.url must not hold credentials; use username and password_env or password_file",
                        ));
                    }
                    if r.password_env.is_some() && r.password_file.is_some() {
                        return Err(at(
                            "schema_registry: set password_env or password_file, not both",
                        ));
                    }
                }
                (Converter::Json, None) => {}
            }
            if let Some(t) = &st.transaction_topic {
                if st.kind != StreamKind::Kafka || st.format != EventFormat::Debezium {
                    return Err(at(
                        "transaction_topic is Debezium's transaction metadata topic, for kind = \"kafka\" and format = \"debezium\"",
                    ));
                }
                if t.trim().is_empty() || t.starts_with('^') {
                    return Err(at(
                        "transaction_topic names one topic (<topic.prefix>.transaction), not a pattern",
                    ));
                }
            }
            match st.kind {
                StreamKind::Kafka => {
                    if st.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
                        return Err(at("kind = \"kafka\" needs brokers = \"host:port\""));
                    }
                    if st.topics.is_empty() {
                        return Err(at("kind = \"kafka\" needs topics = [...]"));
                    }
                    if st.path.is_some() {
                        return Err(at("path is for kind = \"files\""));
                    }
                }
                StreamKind::Files => {
                    if st.path.is_none() {
                        return Err(at("kind = \"files\" needs path = \"dir or file\""));
                    }
                    if st.brokers.is_some() || !st.topics.is_empty() {
                        return Err(at("brokers and topics are for kind = \"kafka\""));
                    }
                }
            }
            for key in st.properties.keys() {
                let k = key.to_ascii_lowercase();
                if k.contains("password") || k.contains("secret") || k.ends_with(".key.pem") {
                    return Err(at(&format!(
                        "properties.{key:?} would put a secret in the config file; use password_env or password_file (or a file path setting such as ssl.key.location)"
                    )));
                }
                if matches!(
                    k.as_str(),
                    "group.id"
                        | "bootstrap.servers"
                        | "enable.auto.commit"
                        | "enable.auto.offset.store"
                        | "isolation.level"
                ) {
                    return Err(at(&format!(
                        "properties.{key:?} is set by tidemark (group_id, brokers; offsets are committed with the data)"
                    )));
                }
            }
            if st.flush_rows == 0 {
                return Err(at("flush_rows must be at least 1"));
            }
        }
        for (name, p) in &self.publish {
            let at = |m: &str| bad(format!("publish.{name}: {m}"));
            check_publish_target(&p.target).map_err(|m| at(&format!("target: {m}")))?;
            if p.password_env.is_some() && p.password_file.is_some() {
                return Err(at("set password_env or password_file, not both"));
            }
            if p.tables.is_empty() {
                return Err(at(
                    "tables is empty; name what to publish, e.g. tables = [\"shop.orders\"]",
                ));
            }
            if p.schema.trim().is_empty() {
                return Err(at("schema is empty"));
            }
            check_publish_redshift(p).map_err(|m| at(&m))?;
            // Each table lands at the target as <schema>.<its table name>: two with
            // one name would write into one table.
            let mut seen = BTreeMap::new();
            for t in &p.tables {
                let Some((schema, table)) = t.split_once('.') else {
                    return Err(at(&format!(
                        "tables entry {t:?} is not \"schema.table\" (as SQL names it)"
                    )));
                };
                if schema.is_empty() || table.is_empty() || table.contains('.') {
                    return Err(at(&format!(
                        "tables entry {t:?} is not \"schema.table\" (as SQL names it)"
                    )));
                }
                if let Some(other) = seen.insert(table, t) {
                    return Err(at(&format!(
                        "{other} and {t} would both land as {}.{table} at the target; publish them in two publications with different schemas",
                        p.schema
                    )));
                }
            }
        }
        Ok(())
    }

    /// The named environment, or an error listing the defined ones.
    pub fn environment(&self, name: &str) -> Result<&EnvironmentConfig> {
        self.environments.get(name).ok_or_else(|| Error::Config {
            path: PathBuf::from("<config>"),
            message: format!(
                "environment {name:?} is not defined; defined: {}",
                self.environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// A source with the environment's overrides applied.
    pub fn source_for(&self, env: &str, name: &str) -> Result<MySqlSourceConfig> {
        let mut src = self
            .sources
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Config {
                path: PathBuf::from("<config>"),
                message: format!("source {name:?} is not defined"),
            })?;
        if let Some(o) = self.environment(env)?.sources.get(name) {
            if let Some(u) = &o.url {
                check_url(u).map_err(|m| Error::Config {
                    path: PathBuf::from("<config>"),
                    message: format!("environments.{env}.sources.{name}.url: {m}"),
                })?;
                src.url = u.clone();
            }
            if o.password_env.is_some() || o.password_file.is_some() {
                src.password_env = o.password_env.clone();
                src.password_file = o.password_file.clone();
            }
        }
        Ok(src)
    }
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("mysql://")
        .ok_or_else(|| format!("{url:?} must start with mysql://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            return Err("the URL contains a password; put it in an environment variable (password_env) or a file (password_file) instead".into());
        }
    }
    Ok(())
}

/// A publication's target: `postgres://` (or `postgresql://`) without a password.
fn check_publish_target(url: &str) -> std::result::Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL; write postgres://user@host:port/database"
        ));
    };
    match scheme {
        "postgres" | "postgresql" | "redshift" => {}
        other => {
            return Err(format!(
                "scheme {other}:// is not a publish target; write postgres://user@host:port/database or redshift://user@host:5439/database"
            ))
        }
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            return Err("the URL contains a password; put it in an environment variable (password_env) or a file (password_file) instead".into());
        }
    }
    Ok(())
}

/// What a `redshift://` publication needs besides the target (and what only it
/// takes): `staging`, an `s3://` prefix, and `iam_role`, the role COPY assumes.
fn check_publish_redshift(p: &PublishConfig) -> std::result::Result<(), String> {
    if !p.is_redshift() {
        if p.staging.is_some() || p.iam_role.is_some() || !p.staging_options.is_empty() {
            return Err(
                "staging, staging_options and iam_role are for redshift:// targets only".into(),
            );
        }
        return Ok(());
    }
    let Some(staging) = &p.staging else {
        return Err("a redshift:// target needs staging, the S3 prefix the rows are staged under for COPY, e.g. staging = \"s3://my-bucket/tidemark-staging/\"".into());
    };
    let bucket = staging
        .strip_prefix("s3://")
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    if bucket.is_empty() {
        return Err(format!(
            "staging {staging:?} is not an S3 prefix; write s3://bucket/prefix/ (e.g. staging = \"s3://my-bucket/tidemark-staging/\")"
        ));
    }
    if staging.contains(['\'', '\\']) {
        return Err(format!(
            "staging {staging:?} contains a quote or a backslash, which the COPY statement cannot carry"
        ));
    }
    let Some(role) = &p.iam_role else {
        return Err("a redshift:// target needs iam_role, the IAM role Redshift assumes to read the staged files, e.g. iam_role = \"arn:aws:iam::123456789012:role/tidemark-copy\"".into());
    };
    // One role, or a chain (`arn:…:role/a,arn:…:role/b`), as COPY takes it.
    for arn in role.split(',') {
        let ok = arn.starts_with("arn:aws")
            && arn.contains(":iam::")
            && arn.contains(":role/")
            && !arn.contains(['\'', '\\', ' ']);
        if !ok {
            return Err(format!(
                "iam_role {role:?} is not an IAM role ARN; write e.g. iam_role = \"arn:aws:iam::123456789012:role/tidemark-copy\""
            ));
        }
    }
    Ok(())
}

impl MySqlSourceConfig {
    /// The replica server id: `server_id` if set, else a stable value derived from the
    /// source name, above the range DBAs usually hand out (1..2^31), so two tidemark
    /// sources on one server do not collide.
    pub fn replica_server_id(&self, source_name: &str) -> u32 {
        self.server_id.unwrap_or_else(|| {
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            let h = source_name.bytes().fold(0x811c_9dc5u32, |h, b| {
                (h ^ b as u32).wrapping_mul(0x0100_0193)
            });
            0x8000_0000 | (h & 0x7fff_ffff)
        })
    }

    /// The password from `password_env` or `password_file`, if either is set.
    pub fn password(&self, source: &str) -> Result<Option<String>> {
        secret(
            &format!("source {source}"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }

    /// Compiled include/exclude patterns.
    pub fn table_filter(&self) -> Result<TableFilter> {
        table_filter(&self.include, &self.exclude)
    }

    /// Options for `db.table`, if any.
    pub fn table_options(&self, db: &str, table: &str) -> TableOptions {
        self.tables
            .get(&format!("{db}.{table}"))
            .cloned()
            .unwrap_or_default()
    }
}

/// Compiled include/exclude `db.table` patterns.
fn table_filter(include: &[String], exclude: &[String]) -> Result<TableFilter> {
    let build = |pats: &[String]| -> Result<GlobSet> {
        let mut b = GlobSetBuilder::new();
        for p in pats {
            b.add(Glob::new(p).map_err(|e| Error::Config {
                path: PathBuf::from("<config>"),
                message: format!("bad table pattern {p:?}: {e}"),
            })?);
        }
        b.build().map_err(|e| Error::Config {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })
    };
    Ok(TableFilter {
        include: (!include.is_empty()).then(|| build(include)).transpose()?,
        exclude: build(exclude)?,
    })
}

/// Which tables of a source are selected.
#[derive(Debug, Clone)]
pub struct TableFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl TableFilter {
    /// Is `db.table` selected?
    pub fn matches(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        self.include.as_ref().is_none_or(|i| i.is_match(&name)) && !self.exclude.is_match(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, item 10: the config parser under the fuzzer, seeded with the shipped
    /// example config. Any text gets a config or an error, never a panic.
    #[test]
    fn fuzz_config() {
        let example = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
        )
        .unwrap();
        tidemark_fuzz::fuzz("config", &[example, GOOD.as_bytes().to_vec()], |input| {
            let text = String::from_utf8_lossy(input);
            if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
                let _ = e.to_string();
            }
        });
    }

    const GOOD: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
[environments.prod]
warehouse = "s3://bucket/prod"
[environments.prod.sources.shop]
url = "mysql://tidemark@prod-db:3306"
password_env = "PROD_SHOP_PASSWORD"

[sources.shop]
url = "mysql://tidemark@127.0.0.1:3306"
password_env = "SHOP_PASSWORD"
databases = ["shop"]
include = ["shop.*"]
exclude = ["shop.tmp_*"]
[sources.shop.tables."shop.audit_log"]
primary_key = ["id"]
watermark = "updated_at"
"#;

    #[test]
    fn parses_and_overrides() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        let dev = c.source_for("dev", "shop").unwrap();
        assert_eq!(dev.url, "mysql://tidemark@127.0.0.1:3306");
        let prod = c.source_for("prod", "shop").unwrap();
        assert_eq!(prod.url, "mysql://tidemark@prod-db:3306");
        assert_eq!(prod.password_env.as_deref(), Some("PROD_SHOP_PASSWORD"));
        let f = dev.table_filter().unwrap();
        assert!(f.matches("shop", "invoices"));
        assert!(!f.matches("shop", "tmp_x"));
        assert!(!f.matches("other", "invoices"));
        assert_eq!(
            dev.table_options("shop", "audit_log").watermark.as_deref(),
            Some("updated_at")
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("primary_key", "primary_kye");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("primary_kye"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn password_in_url_rejected() {
        let text = GOOD.replace("tidemark@127", "tidemark:secret@127");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("password_env"), "{err}");
        assert!(
            !err.contains("secret"),
            "the secret must not be echoed: {err}"
        );
    }

    #[test]
    fn shared_warehouse_rejected() {
        let text = GOOD.replace("s3://bucket/prod", "./wh/dev");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("share the warehouse"), "{err}");
    }

    #[test]
    fn missing_password_env_is_clear() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        let mut src = c.source_for("dev", "shop").unwrap();
        src.password_env = Some("TIDEMARK_TEST_SURELY_UNSET_VAR".into());
        let err = src.password("shop").unwrap_err().to_string();
        assert!(err.contains("TIDEMARK_TEST_SURELY_UNSET_VAR"), "{err}");
    }
}

#[cfg(test)]
mod publish {
    use super::*;

    const PUBLISH: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
[publish.pg]
target = "postgres://loader@127.0.0.1:5432/dw"
password_env = "DW_PASSWORD"
tables = ["shop.orders", "analytics.revenue"]
mode = "mirror"
schema = "lake"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_publication_parses() {
        let c = Config::parse(PUBLISH, Path::new("t.toml")).unwrap();
        let p = &c.publish["pg"];
        assert_eq!(p.mode, PublishMode::Mirror);
        assert_eq!(p.schema, "lake");
        assert_eq!(p.tables, ["shop.orders", "analytics.revenue"]);
        let defaulted = Config::parse(
            &PUBLISH.replace("schema = \"lake\"\n", ""),
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(defaulted.publish["pg"].schema, "public");
    }

    #[test]
    fn bad_publications_are_named() {
        let e = err(&PUBLISH.replace("loader@", "loader:hunter2@"));
        assert!(
            e.contains("publish.pg: target") && e.contains("password_env"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "the secret must not be echoed: {e}");
        let e = err(&PUBLISH.replace("postgres://", "mysql://"));
        assert!(e.contains("publish.pg") && e.contains("redshift://"), "{e}");
        let e = err(&PUBLISH.replace("mode = \"mirror\"", "mode = \"upsert\""));
        assert!(e.contains("upsert"), "{e}");
        let e = err(&PUBLISH.replace("schema = \"lake\"", "schema = \"lake\"\nschmea = 1"));
        assert!(e.contains("schmea"), "{e}");
        let e = err(&PUBLISH.replace("\"analytics.revenue\"", "\"revenue\""));
        assert!(e.contains("publish.pg") && e.contains("\"revenue\""), "{e}");
        let e = err(&PUBLISH.replace("\"analytics.revenue\"", "\"analytics.orders\""));
        assert!(e.contains("both land as lake.orders"), "{e}");
        let e = err(&PUBLISH.replace("[\"shop.orders\", \"analytics.revenue\"]", "[]"));
        assert!(e.contains("publish.pg: tables is empty"), "{e}");
    }

    const REDSHIFT: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
[publish.rs]
target = "redshift://loader@dw.example.com:5439/analytics"
password_env = "DW_PASSWORD"
tables = ["shop.orders"]
mode = "merge"
staging = "s3://my-bucket/tidemark-staging/"
staging_options = { region = "eu-west-1" }
iam_role = "arn:aws:iam::123456789012:role/tidemark-copy"
"#;

    #[test]
    fn a_redshift_publication_parses() {
        let c = Config::parse(REDSHIFT, Path::new("t.toml")).unwrap();
        let p = &c.publish["rs"];
        assert!(p.is_redshift());
        assert_eq!(
            p.staging.as_deref(),
            Some("s3://my-bucket/tidemark-staging/")
        );
        assert_eq!(p.staging_options["region"], "eu-west-1");
        assert_eq!(
            p.iam_role.as_deref(),
            Some("arn:aws:iam::123456789012:role/tidemark-copy")
        );
        // A chain of roles passes as COPY takes it.
        Config::parse(
            &REDSHIFT.replace(
                "role/tidemark-copy\"",
                "role/a,arn:aws:iam::210987654321:role/b\"",
            ),
            Path::new("t.toml"),
        )
        .unwrap();
    }

    #[test]
    fn redshift_needs_staging_and_iam_role() {
        let e = err(&REDSHIFT.replace("iam_role = ", "# iam_role = "));
        assert!(
            e.contains("publish.rs: a redshift:// target needs iam_role")
                && e.contains("iam_role = \"arn:aws:iam::123456789012:role/"),
            "{e}"
        );
        let e = err(&REDSHIFT.replace("staging = ", "# staging = "));
        assert!(
            e.contains("publish.rs: a redshift:// target needs staging")
                && e.contains("staging = \"s3://"),
            "{e}"
        );
        let e = err(&REDSHIFT.replace("s3://my-bucket/", "/tmp/"));
        assert!(e.contains("is not an S3 prefix"), "{e}");
        let e = err(&REDSHIFT.replace("arn:aws:iam::123456789012:role/", "tidemark-"));
        assert!(e.contains("is not an IAM role ARN"), "{e}");
        let e = err(&REDSHIFT.replace("role/tidemark-copy", "role/x'; DROP TABLE t; --"));
        assert!(e.contains("is not an IAM role ARN"), "{e}");
        // Only Redshift takes them.
        let e = err(&PUBLISH.replace(
            "schema = \"lake\"",
            "schema = \"lake\"\nstaging = \"s3://b/p/\"",
        ));
        assert!(
            e.contains("publish.pg: staging") && e.contains("redshift:// targets only"),
            "{e}"
        );
    }

    #[test]
    fn missing_password_env_names_the_publication() {
        let c = Config::parse(
            &PUBLISH.replace("DW_PASSWORD", "TIDEMARK_TEST_SURELY_UNSET_VAR"),
            Path::new("t.toml"),
        )
        .unwrap();
        let e = c.publish["pg"].password("pg").unwrap_err().to_string();
        assert!(
            e.contains("publication pg") && e.contains("TIDEMARK_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// The shipped example must stay valid: docs point people at it.
    #[test]
    fn shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.environments.len(), 3);
        let prod = c.source_for("prod", "shop").unwrap();
        assert_eq!(
            prod.password_env.as_deref(),
            Some("TIDEMARK_PROD_SHOP_PASSWORD")
        );
        assert!(c
            .environment("dev")
            .unwrap()
            .warehouse
            .ends_with("warehouse/dev"));
        assert_eq!(c.daemon.api_listen, "127.0.0.1:8421");
        assert!(c.daemon.tokens_file.ends_with("tokens.toml"));
        assert_eq!(
            c.jobs.keys().collect::<Vec<_>>(),
            ["daily_revenue", "nightly_maintenance", "unpaid"]
        );
        assert_eq!(c.publish["dw"].mode, PublishMode::Mirror);
    }

    const STREAM: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
[sources.shop]
url = "mysql://tidemark@127.0.0.1:3306"
capture = "none"
[streams.cdc]
kind = "kafka"
format = "debezium"
schema_from = "shop"
brokers = "127.0.0.1:9092"
topics = ["^shop\\..*"]
[streams.cdc.properties]
"security.protocol" = "SASL_SSL"
"#;

    fn stream_err(text: &str) -> String {
        Config::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn streams_are_checked() {
        let c = Config::parse(STREAM, Path::new("t.toml")).unwrap();
        assert_eq!(c.streams["cdc"].kind, StreamKind::Kafka);
        assert_eq!(c.sources["shop"].capture, Capture::None);
        let e = stream_err(&STREAM.replace("capture = \"none\"\n", ""));
        assert!(
            e.contains("set capture = \"none\" in [sources.shop]"),
            "{e}"
        );
        let e = stream_err(&format!("{STREAM}\"sasl.password\" = \"hunter2\"\n"));
        assert!(e.contains("would put a secret in the config file"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = stream_err(&format!("{STREAM}\"group.id\" = \"x\"\n"));
        assert!(e.contains("is set by tidemark"), "{e}");
        let e = stream_err(&STREAM.replace("schema_from = \"shop\"", "schema_from = \"nope\""));
        assert!(e.contains("schema_from names source \"nope\""), "{e}");
        let e = stream_err(&STREAM.replace("brokers = \"127.0.0.1:9092\"\n", ""));
        assert!(e.contains("needs brokers"), "{e}");
    }

    /// Issue 21: a stream needs no MySQL source when its messages define the tables.
    #[test]
    fn streams_without_a_source_select_their_own_tables() {
        let own = STREAM.replace(
            "schema_from = \"shop\"\n",
            "databases = [\"shop\"]\nexclude = [\"shop.tmp_*\"]\n",
        );
        let c = Config::parse(&own, Path::new("t.toml")).unwrap();
        let st = &c.streams["cdc"];
        assert_eq!(st.schema_from, None);
        assert!(st.selects("shop", "orders").unwrap());
        assert!(!st.selects("shop", "tmp_1").unwrap());
        assert!(!st.selects("other", "orders").unwrap());
        let e = stream_err(&own.replace("format = \"debezium\"", "format = \"dms\""));
        assert!(
            e.contains("AWS DMS messages carry no table definitions"),
            "{e}"
        );
        let e = stream_err(&STREAM.replace(
            "schema_from = \"shop\"\n",
            "schema_from = \"shop\"\ninclude = [\"shop.x\"]\n",
        ));
        assert!(e.contains("come from [sources.shop]"), "{e}");
        let avro = own.replace(
            "format = \"debezium\"\n",
            "format = \"debezium\"\nconverter = \"avro\"\n",
        );
        let e = stream_err(&avro);
        assert!(e.contains("needs [streams.NAME.schema_registry]"), "{e}");
        let with_registry = format!(
            "{avro}[streams.cdc.schema_registry]\nurl = \"http://127.0.0.1:8081\"\npassword_env = \"REGISTRY_SECRET\"\n"
        );
        let c = Config::parse(&with_registry, Path::new("t.toml")).unwrap();
        assert_eq!(c.streams["cdc"].converter, Converter::Avro);
        let e = stream_err(&with_registry.replace("http://", "http://u:p@"));
        assert!(e.contains("must not hold credentials"), "{e}");
    }
}

#[cfg(test)]
mod defer {
    use super::*;

    const ENVS: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
defer_to = "prod"
[environments.test]
warehouse = "./wh/test"
defer_to = "prod"
[environments.prod]
warehouse = "./wh/prod"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn environments_defer_one_step_to_another() {
        let c = Config::parse(ENVS, Path::new("t.toml")).unwrap();
        assert_eq!(c.environments["dev"].defer_to.as_deref(), Some("prod"));
        assert_eq!(c.environments["prod"].defer_to, None);
        let e = err(&ENVS.replace(
            "defer_to = \"prod\"\n[environments.test]",
            "defer_to = \"dev\"\n[environments.test]",
        ));
        assert!(e.contains("names dev itself"), "{e}");
        let e = err(&ENVS.replacen("defer_to = \"prod\"", "defer_to = \"staging\"", 1));
        assert!(
            e.contains("no such environment") && e.contains("dev, prod, test"),
            "{e}"
        );
        let e = err(&ENVS.replacen("defer_to = \"prod\"", "defer_to = \"test\"", 1));
        assert!(e.contains("defers to \"prod\" itself"), "{e}");
        let e = err(&ENVS.replace("defer_to", "defer"));
        assert!(e.contains("defer"), "{e}");
    }
}
