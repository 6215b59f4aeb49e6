//! Amazon Redshift targets (`redshift://user@host:5439/database`).
//!
//! Redshift speaks the PostgreSQL protocol but has no `COPY FROM STDIN`, no advisory
//! locks, no `ON CONFLICT`, and enforces no keys. So a table's publish is:
//!
//! ```text
//!  BEGIN; LOCK <schema>.tidemark_publish_state;          (one publisher at a time)
//!  read the table's state row and the target's columns  (read_target)
//!  lake.rs: log rows above the mark [merge/mirror: last per key]  (the same rows
//!     the PostgreSQL path sends)
//!     ─► stage(): Parquet files <staging>/<publication>/<table>/<run>/part-N.parquet,
//!        each at most about `max_file_bytes`, then <run>/manifest.json listing
//!        exactly those files with their stored sizes
//!  statements(): [DROP/CREATE/ALTER TABLE] CREATE TEMP TABLE stage;
//!     COPY stage FROM '<manifest>' IAM_ROLE '…' FORMAT AS PARQUET MANIFEST;
//!     append: INSERT … SELECT | merge: MERGE | mirror: DELETE deleted keys, MERGE;
//!     DROP stage; DELETE + INSERT of the state row; COMMIT
//!  then the staged files are deleted (also when the transaction failed)
//! ```
//!
//! The mark and the rows commit in one Redshift transaction, read after the lock,
//! exactly as for PostgreSQL (see the crate docs): a crash before COMMIT leaves
//! neither, and the rerun stages the same rows again under a new run prefix; the
//! files of a run that died before deleting them are never listed by another run's
//! manifest (a lifecycle rule on the staging prefix can expire them).
//!
//! What is split out so it can be tested without a Redshift: [`stage`] (Parquet and
//! manifest into any object store; the tests use the S3 test server), [`statements`]
//! (the ordered SQL of one run, pure), and [`publish_with`], whose `instead_of_copy`
//! lets the tests run every other statement against PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::error::DataFusionError;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::DeltaTable;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tidemark_core::config::{PublishConfig, PublishMode};
use tidemark_core::schema::{TableSchema, INGEST_TS, OP, SOURCE_TS};
use tidemark_lake::object_store::path::Path as ObjectPath;
use tidemark_lake::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tidemark_lake::Warehouse;
use tidemark_query::Engine;
use tokio_postgres::{Client, SimpleQueryMessage};
use tracing::{info, warn};

use crate::error::pg_message;
use crate::tls::SslMode;
use crate::types::{ident, qualified, PgType};
use crate::{lake, target, Error, Options, Outcome, PgStep, Published, Report, Result, Step};

/// Redshift's limit on the text of one statement.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024 * 1024;

/// The widest `VARCHAR` (bytes, not characters).
pub const MAX_VARCHAR_BYTES: usize = 65_535;

/// The `VARBYTE` width binary columns get: the limit every Redshift release with
/// VARBYTE takes (newer ones go to 16 MB).
pub const MAX_VARBYTE_BYTES: usize = 1_024_000;

/// Staged Parquet files are cut at about this size (Redshift loads files of
/// 1 MB–1 GB well; this keeps one file's buffer modest in memory).
pub const STAGE_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Rows written to a Parquet file at a time: a file overshoots its bound by at most
/// this many rows.
const SLICE_ROWS: usize = 1024;

/// The temporary staging table of one publish transaction (dropped before COMMIT:
/// Redshift keeps temporary tables to the end of the session).
pub const STAGE: &str = "__tidemark_stage";

/// The Redshift column type of a published column.
///
/// JSON is `VARCHAR(65535)` holding the document's text, not `SUPER`: COPY of a
/// Parquet string into `SUPER` stores a SUPER *string*, not the parsed document,
/// and Redshift's JSON functions (`JSON_EXTRACT_PATH_TEXT`, `JSON_PARSE` to get a
/// SUPER) take text. Decimals wider than Redshift's 38 digits are their exact text.
pub fn column_type(t: PgType) -> String {
    match t {
        PgType::SmallInt => "SMALLINT".into(),
        PgType::Integer => "INTEGER".into(),
        PgType::BigInt => "BIGINT".into(),
        PgType::Numeric { precision, scale } if precision <= 38 => {
            format!("NUMERIC({precision},{scale})")
        }
        PgType::Numeric { precision, .. } => format!("VARCHAR({})", precision as u32 + 2),
        PgType::Real => "REAL".into(),
        PgType::Double => "DOUBLE PRECISION".into(),
        PgType::Boolean => "BOOLEAN".into(),
        PgType::Date => "DATE".into(),
        PgType::Timestamp => "TIMESTAMP".into(),
        PgType::TimestampTz => "TIMESTAMPTZ".into(),
        PgType::Text | PgType::Jsonb => format!("VARCHAR({MAX_VARCHAR_BYTES})"),
        PgType::Bytea => format!("VARBYTE({MAX_VARBYTE_BYTES})"),
    }
}

/// The most bytes a value of this type may have at the target, for the types that
/// have such a limit.
fn max_bytes(t: PgType) -> Option<usize> {
    match t {
        PgType::Text | PgType::Jsonb => Some(MAX_VARCHAR_BYTES),
        PgType::Numeric { precision, .. } if precision > 38 => Some(precision as usize + 2),
        PgType::Bytea => Some(MAX_VARBYTE_BYTES),
        _ => None,
    }
}

/// A SQL string literal. Backslashes are refused rather than escaped: Redshift and
/// PostgreSQL read them differently, and nothing tidemark writes needs one.
fn literal(s: &str) -> std::result::Result<String, String> {
    if s.contains('\\') {
        return Err(format!(
            "{s:?} contains a backslash, which tidemark does not write into Redshift SQL"
        ));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

// ------------------------------------------------------------------ staging

/// Where a publication's rows are staged: an `s3://bucket/prefix/`, through the
/// same S3 client (and options, and `AWS_*` credentials) a warehouse on S3 uses.
#[derive(Debug, Clone)]
pub struct Staging {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    bucket: String,
}

impl Staging {
    /// The staging location `s3://bucket/prefix/` with object_store options
    /// (`region`, `endpoint`, ...; credentials are refused, as for a warehouse).
    pub fn new(
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> std::result::Result<Self, String> {
        if !location.starts_with("s3://") {
            return Err(format!(
                "staging {location:?} is not an S3 prefix; write s3://bucket/prefix/"
            ));
        }
        let options: HashMap<String, String> = options.clone().into_iter().collect();
        let wh = Warehouse::new(location, options).map_err(|e| format!("staging: {e}"))?;
        let bucket = wh.root().host_str().unwrap_or_default().to_string();
        let (store, root) = wh
            .object_store()
            .ok_or_else(|| format!("staging {location:?} is not an object store"))?;
        Ok(Self {
            store,
            root,
            bucket,
        })
    }

    /// The S3 client.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `s3://bucket/<path>`: how COPY and the manifest name an object.
    pub fn url(&self, path: &ObjectPath) -> String {
        format!("s3://{}/{}", self.bucket, path)
    }

    /// The prefix of one run: `<staging>/<publication>/<table>/<run>/`.
    pub fn run_prefix(&self, publication: &str, table: &str, run: &str) -> ObjectPath {
        self.root.clone().join(publication).join(table).join(run)
    }
}

/// A run id unique to this process and moment: `v<version>-<nanos>-<pid>-<n>`.
pub fn run_id(version: i64) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "v{version}-{nanos}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One staged Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// `s3://bucket/key`, as the manifest lists it.
    pub url: String,
    /// Its key in the staging store.
    pub path: ObjectPath,
    /// Its stored size (the manifest's `content_length`).
    pub bytes: u64,
    /// Rows in it.
    pub rows: u64,
}

/// What one run staged.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The run's prefix.
    pub prefix: ObjectPath,
    /// The Parquet files, in order.
    pub files: Vec<StagedFile>,
    /// The manifest (`<prefix>/manifest.json`) and its URL; `None` when no row was
    /// staged (no file, nothing to COPY).
    pub manifest: Option<(ObjectPath, String)>,
    /// Rows staged in all.
    pub rows: u64,
    /// The columns, as the files hold them (and the stage table is made).
    pub columns: Vec<(String, PgType)>,
}

impl Staged {
    /// Delete the run's files and manifest. Best effort for the caller: a file left
    /// behind is garbage, never read again (manifests name files of their own run).
    pub async fn remove(&self, staging: &Staging) -> std::result::Result<(), String> {
        let mut first_err = None;
        let paths = self
            .files
            .iter()
            .map(|f| &f.path)
            .chain(self.manifest.as_ref().map(|(p, _)| p));
        for p in paths {
            if let Err(e) = staging.store.delete(p).await {
                first_err.get_or_insert(format!("deleting {}: {e}", staging.url(p)));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The Redshift manifest of `files`: every file mandatory, with its stored size
/// (`content_length` is required for Parquet).
pub fn manifest(files: &[StagedFile]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "url": f.url,
                "mandatory": true,
                "meta": { "content_length": f.bytes },
            })
        })
        .collect();
    serde_json::json!({ "entries": entries }).to_string()
}

/// The longest value (in bytes) of a string or binary column, over its valid rows.
fn longest(a: &dyn Array) -> usize {
    let lens: Box<dyn Iterator<Item = usize>> = match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            Box::new(
                (0..s.len())
                    .filter(|&i| s.is_valid(i))
                    .map(|i| s.value(i).len()),
            )
        }
        DataType::Binary => {
            let b = a.as_binary::<i32>();
            Box::new(
                (0..b.len())
                    .filter(|&i| b.is_valid(i))
                    .map(|i| b.value(i).len()),
            )
        }
        _ => Box::new(std::iter::empty()),
    };
    lens.max().unwrap_or(0)
}

/// Refuse a batch holding a value wider than its Redshift column: COPY would fail on
/// it anyway, after every file was uploaded, with a less precise message.
fn check_widths(batch: &RecordBatch, cols: &[(String, PgType)]) -> std::result::Result<(), String> {
    for (i, (name, t)) in cols.iter().enumerate() {
        let Some(limit) = max_bytes(*t) else {
            continue;
        };
        let n = longest(batch.column(i).as_ref());
        if n > limit {
            return Err(format!(
                "column {name} has a value of {n} bytes, more than its Redshift type {} holds ({limit} bytes); Redshift cannot store it, so nothing of this table was published",
                column_type(*t)
            ));
        }
    }
    Ok(())
}

/// The Arrow schema of the staged files: the published columns in order (COPY of
/// Parquet maps columns by position), every one nullable.
fn file_schema(cols: &[(String, PgType)]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t)| Field::new(n, t.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Write `batches` (already cast to the columns' [`PgType::arrow`] types, as
/// `lake.rs` reads them) as Parquet files under `prefix`, each cut at about
/// `max_file_bytes`, then the manifest listing exactly them. On an error, what was
/// written is deleted again.
pub async fn stage<S>(
    staging: &Staging,
    prefix: ObjectPath,
    cols: &[(String, PgType)],
    batches: S,
    max_file_bytes: usize,
) -> std::result::Result<Staged, String>
where
    S: Stream<Item = std::result::Result<RecordBatch, DataFusionError>> + Unpin,
{
    let mut staged = Staged {
        prefix,
        files: Vec::new(),
        manifest: None,
        rows: 0,
        columns: cols.to_vec(),
    };
    match write_files(staging, &mut staged, batches, max_file_bytes).await {
        Ok(()) => Ok(staged),
        Err(e) => {
            if let Err(cleanup) = staged.remove(staging).await {
                warn!(error = %cleanup, "removing the files of a failed staging");
            }
            Err(e)
        }
    }
}

async fn write_files<S>(
    staging: &Staging,
    staged: &mut Staged,
    mut batches: S,
    max_file_bytes: usize,
) -> std::result::Result<(), String>
where
    S: Stream<Item = std::result::Result<RecordBatch, DataFusionError>> + Unpin,
{
    let schema = file_schema(&staged.columns);
    // Row groups are flushed at a quarter of the file size, so a file's size is
    // known (bytes written) rather than estimated for most of it.
    let row_group_bytes = (max_file_bytes / 4).max(1);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let parquet = |e: deltalake::parquet::errors::ParquetError| format!("writing Parquet: {e}");
    let mut writer: Option<(ArrowWriter<Vec<u8>>, u64)> = None;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| format!("reading the lake: {e}"))?;
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| format!("the rows do not have the published columns: {e}"))?;
        check_widths(&batch, &staged.columns)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let piece = batch.slice(offset, SLICE_ROWS.min(batch.num_rows() - offset));
            offset += piece.num_rows();
            if writer.is_none() {
                let w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                    .map_err(parquet)?;
                writer = Some((w, 0));
            }
            let (w, rows) = writer.as_mut().expect("a writer");
            w.write(&piece).map_err(parquet)?;
            *rows += piece.num_rows() as u64;
            if w.in_progress_size() >= row_group_bytes {
                w.flush().map_err(parquet)?;
            }
            if w.bytes_written() + w.in_progress_size() >= max_file_bytes {
                let (w, rows) = writer.take().expect("a writer");
                put_file(staging, staged, w, rows).await?;
            }
        }
    }
    if let Some((w, rows)) = writer.take() {
        put_file(staging, staged, w, rows).await?;
    }
    if !staged.files.is_empty() {
        let path = staged.prefix.clone().join("manifest.json");
        staging
            .store
            .put(&path, PutPayload::from(manifest(&staged.files)))
            .await
            .map_err(|e| format!("writing {}: {e}", staging.url(&path)))?;
        staged.manifest = Some((path.clone(), staging.url(&path)));
    }
    Ok(())
}

async fn put_file(
    staging: &Staging,
    staged: &mut Staged,
    w: ArrowWriter<Vec<u8>>,
    rows: u64,
) -> std::result::Result<(), String> {
    let buf = w
        .into_inner()
        .map_err(|e| format!("writing Parquet: {e}"))?;
    let path = staged
        .prefix
        .clone()
        .join(format!("part-{:05}.parquet", staged.files.len()));
    let bytes = buf.len() as u64;
    staging
        .store
        .put(&path, PutPayload::from(Bytes::from(buf)))
        .await
        .map_err(|e| format!("writing {}: {e}", staging.url(&path)))?;
    staged.files.push(StagedFile {
        url: staging.url(&path),
        path,
        bytes,
        rows,
    });
    staged.rows += rows;
    Ok(())
}

/// What a run reads from the lake: a table's history log above `mark`.
#[derive(Debug, Clone, Copy)]
pub struct Increment<'a> {
    /// The loaded history log.
    pub hist: &'a DeltaTable,
    /// The table's schema.
    pub ts: &'a TableSchema,
    /// The publication's mode (merge and mirror: the last version of each key).
    pub mode: PublishMode,
    /// The target's mark (`None`: the whole log).
    pub mark: Option<i64>,
    /// Whether the target table is created by this run (a new mirror leaves out
    /// keys deleted by then).
    pub new_table: bool,
}

/// Why [`stage_increment`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// Reading the lake.
    Lake(String),
    /// Writing to the staging store, or a value Redshift cannot hold.
    Staging(String),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Lake(m) => write!(f, "reading the lake: {m}"),
            StageError::Staging(m) => write!(f, "staging: {m}"),
        }
    }
}

/// The rows a run publishes (the same `lake.rs` reads for PostgreSQL), staged
/// under `prefix`: the staged files and the next mark, or `None` when the log has
/// nothing above the mark.
pub async fn stage_increment(
    staging: &Staging,
    prefix: ObjectPath,
    inc: &Increment<'_>,
    max_file_bytes: usize,
) -> std::result::Result<Option<(Staged, i64)>, StageError> {
    let lake_err = |e: DataFusionError| StageError::Lake(e.to_string());
    let cols = lake::published_columns(inc.ts, inc.mode);
    let (mut df, next) = lake::increment(inc.hist, inc.ts, &cols, inc.mode, inc.mark)
        .await
        .map_err(lake_err)?;
    let Some(next) = next else {
        return Ok(None);
    };
    if inc.new_table && inc.mode == PublishMode::Mirror {
        df = df.filter(lake::not_deleted()).map_err(lake_err)?;
    }
    let stream = df.execute_stream().await.map_err(lake_err)?;
    let staged = stage(staging, prefix, &cols, stream, max_file_bytes)
        .await
        .map_err(StageError::Staging)?;
    Ok(Some((staged, next)))
}

// ------------------------------------------------------------------ the target

/// The state table (as for PostgreSQL, plus the key and column types tidemark
/// created, since Redshift's catalog spells types its own way).
pub fn setup_statements(schema: &str) -> Vec<String> {
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {} (\"publication\" VARCHAR(512) NOT NULL, \"table_name\" VARCHAR(512) NOT NULL, \
         \"mode\" VARCHAR(16) NOT NULL, \"version\" BIGINT NOT NULL, \"ingest_us\" BIGINT NOT NULL, \
         \"table_id\" VARCHAR(128) NOT NULL, \"rows_published\" BIGINT NOT NULL, \
         \"key_columns\" VARCHAR({MAX_VARCHAR_BYTES}) NOT NULL, \"column_types\" VARCHAR({MAX_VARCHAR_BYTES}) NOT NULL, \
         \"published_at\" TIMESTAMPTZ NOT NULL, PRIMARY KEY (\"publication\", \"table_name\"))",
        qualified(schema, target::STATE_TABLE)
    )]
}

/// Create the target schema (if missing) and the state table (if missing). With no
/// advisory lock to take, two publishers starting at once may race on the CREATE
/// (`IF NOT EXISTS` is not atomic); the loser looks again once, and finds them.
pub async fn setup(
    client: &Client,
    schema: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    match setup_once(client, schema).await {
        Err(e) if e.as_db_error().is_some() => {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            setup_once(client, schema).await
        }
        done => done,
    }
}

async fn setup_once(
    client: &Client,
    schema: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    let sch = literal(schema).unwrap_or_else(|_| "''".into());
    let found = client
        .simple_query(&format!("SELECT 1 FROM pg_namespace WHERE nspname = {sch}"))
        .await?;
    if !found
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(_)))
    {
        client
            .batch_execute(&format!("CREATE SCHEMA {}", ident(schema)))
            .await?;
    }
    for s in setup_statements(schema) {
        client.batch_execute(&s).await?;
    }
    Ok(())
}

/// What the state table says about one table.
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
    /// The key tidemark published by (empty for append).
    pub key: Vec<String>,
    /// The columns tidemark created at the target, with their Redshift types.
    pub columns: Vec<(String, String)>,
}

/// The target as one table's transaction finds it (after the lock).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The state row: `None` without one; `Some(Err)` when it cannot be read back.
    pub state: Option<std::result::Result<State, String>>,
    /// The target table's column names; `None` when there is no such table.
    pub columns: Option<Vec<String>>,
}

/// `BEGIN` and the lock: the first statements of every table's transaction.
/// Redshift has no advisory locks; `LOCK` on the state table serialises every
/// publisher of this target schema until COMMIT.
pub fn begin(schema: &str) -> Vec<Statement> {
    vec![
        Statement::new(Kind::Begin, "BEGIN".into()),
        Statement::new(
            Kind::Lock,
            format!("LOCK {}", qualified(schema, target::STATE_TABLE)),
        ),
    ]
}

/// Read the state row of (`publication`, `table`) and the columns of the target
/// table `name`, with the simple query protocol (no prepared statements, no type
/// OIDs: what Redshift takes from any PostgreSQL client).
pub async fn read_target(
    client: &Client,
    schema: &str,
    publication: &str,
    table: &str,
    name: &str,
) -> std::result::Result<Target, tokio_postgres::Error> {
    let lit = |s: &str| literal(s).unwrap_or_else(|_| "NULL".into());
    let rows = client
        .simple_query(&format!(
            "SELECT \"mode\", \"version\", \"ingest_us\", \"table_id\", \"rows_published\", \"key_columns\", \"column_types\" \
             FROM {} WHERE \"publication\" = {} AND \"table_name\" = {}",
            qualified(schema, target::STATE_TABLE),
            lit(publication),
            lit(table)
        ))
        .await?;
    let state = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(parse_state(r)),
        _ => None,
    });
    // Lower-cased: Redshift folds identifiers to lower case unless
    // enable_case_sensitive_identifier is on.
    let rows = client
        .simple_query(&format!(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE lower(n.nspname) = lower({}) AND lower(c.relname) = lower({}) AND c.relkind = 'r' \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            lit(schema),
            lit(name)
        ))
        .await?;
    let columns: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    Ok(Target {
        state,
        columns: (!columns.is_empty()).then_some(columns),
    })
}

fn parse_state(r: &tokio_postgres::SimpleQueryRow) -> std::result::Result<State, String> {
    let text = |i: usize| r.get(i).map(str::to_string).ok_or("a NULL".to_string());
    let int = |i: usize| -> std::result::Result<i64, String> {
        text(i)?.parse().map_err(|e| format!("not a number: {e}"))
    };
    let key: Vec<String> =
        serde_json::from_str(&text(5)?).map_err(|e| format!("key_columns: {e}"))?;
    let columns: Vec<(String, String)> =
        serde_json::from_str(&text(6)?).map_err(|e| format!("column_types: {e}"))?;
    Ok(State {
        mode: text(0)?,
        version: int(1)?,
        ingest_us: int(2)?,
        table_id: text(3)?,
        rows: int(4)?,
        key,
        columns,
    })
}

// ------------------------------------------------------------------ planning

/// What a table's transaction does, decided from the target and the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Drop the target table first (a full refresh of an existing table).
    pub drop_first: bool,
    /// Create the table (first publish, or after the drop).
    pub create: bool,
    /// Columns added upstream, to add at the target.
    pub add: Vec<(String, PgType)>,
    /// The mark to read above (`None`: the whole log).
    pub mark: Option<i64>,
    /// Rows published before.
    pub rows_before: i64,
    /// The columns the state row records after this run.
    pub columns: Vec<(String, String)>,
}

/// Compare the target with the lake: the plan, or why the table is parked.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    publication: &str,
    table: &str,
    schema: &str,
    name: &str,
    mode: PublishMode,
    cols: &[(String, PgType)],
    key: &[&str],
    table_id: &str,
    target: &Target,
    full_refresh: bool,
) -> std::result::Result<Plan, String> {
    if mode != PublishMode::Append && key.is_empty() {
        return Err(format!(
            "{table} has no key, which mode {} upserts by (use mode = \"append\", or give the model a unique_key)",
            mode.as_str()
        ));
    }
    let (mut state, mut existing) = (target.state.clone(), target.columns.clone());
    let drop_first = full_refresh && existing.is_some();
    if full_refresh {
        state = None;
        existing = None;
    }
    let state = match state {
        Some(Err(e)) => {
            return Err(format!(
                "its row in {schema}.{} cannot be read ({e})",
                target::STATE_TABLE
            ))
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let wanted: Vec<(String, String)> = cols
        .iter()
        .map(|(n, t)| (n.clone(), column_type(*t)))
        .collect();
    let (s, have) = match (&state, &existing) {
        (None, None) => {
            return Ok(Plan {
                drop_first,
                create: true,
                add: Vec::new(),
                mark: None,
                rows_before: 0,
                columns: wanted,
            })
        }
        (None, Some(_)) => {
            return Err(format!(
                "{schema}.{name} exists at the target, but publication {publication} has no record of publishing it (another tool's table, or one whose state was removed)"
            ))
        }
        (Some(_), None) => {
            return Err(format!(
                "{schema}.{name} is gone from the target, which {} says holds it",
                target::STATE_TABLE
            ))
        }
        (Some(s), Some(have)) => (s, have),
    };
    if s.mode != mode.as_str() {
        return Err(format!(
            "it was published with mode {}, and the publication now says {}",
            s.mode,
            mode.as_str()
        ));
    }
    if s.table_id != table_id {
        return Err(format!(
            "{table} was landed again in the lake (a new history log), so the rows at the target cannot be continued from"
        ));
    }
    if s.key.iter().map(String::as_str).collect::<Vec<_>>() != key {
        return Err(format!(
            "the key is ({}) at the target and ({}) in the lake now",
            s.key.join(", "),
            key.join(", ")
        ));
    }
    for (n, _) in &s.columns {
        if !have.iter().any(|h| h.eq_ignore_ascii_case(n)) {
            return Err(format!(
                "column {n} is gone from {schema}.{name} at the target"
            ));
        }
    }
    let mut columns = s.columns.clone();
    let mut add = Vec::new();
    for ((n, t), (_, want)) in cols.iter().zip(&wanted) {
        match s.columns.iter().find(|(c, _)| c == n) {
            None => {
                add.push((n.clone(), *t));
                columns.push((n.clone(), want.clone()));
            }
            Some((_, had)) if had != want => {
                return Err(format!(
                    "column {n} is {had} at the target and {want} in the lake now (its type changed upstream)"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(Plan {
        drop_first,
        create: false,
        add,
        mark: Some(s.ingest_us),
        rows_before: s.rows,
        columns,
    })
}

// ------------------------------------------------------------------ the SQL

/// What a statement of the transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BEGIN`.
    Begin,
    /// `LOCK` of the state table.
    Lock,
    /// `DROP TABLE` of the target table (full refresh).
    DropTable,
    /// `CREATE TABLE` of the target table.
    CreateTable,
    /// `ALTER TABLE … ADD COLUMN`.
    AddColumn,
    /// `CREATE TEMP TABLE` of the stage.
    CreateStage,
    /// `COPY` of the staged files into the stage.
    Copy,
    /// `INSERT … SELECT` from the stage (append).
    Insert,
    /// `DELETE` at the target of keys whose last change is a delete (mirror).
    DeleteDeleted,
    /// `DELETE` of those keys from the stage (mirror, before its MERGE).
    PruneStage,
    /// `MERGE` from the stage (merge, mirror).
    Merge,
    /// `DROP TABLE` of the stage.
    DropStage,
    /// `DELETE` of the table's state row.
    DeleteState,
    /// `INSERT` of the table's new state row.
    InsertState,
    /// `COMMIT`.
    Commit,
}

impl Kind {
    /// The step, as an error message names it.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Begin => "BEGIN",
            Kind::Lock => "the publish lock (LOCK of tidemark_publish_state)",
            Kind::DropTable => "dropping the table for a full refresh",
            Kind::CreateTable => "creating the table",
            Kind::AddColumn => "adding a column added upstream",
            Kind::CreateStage => "creating the staging table",
            Kind::Copy => "COPY from the staged Parquet files",
            Kind::Insert => "INSERT from the stage",
            Kind::DeleteDeleted => "DELETE of deleted keys",
            Kind::PruneStage => "removing deleted keys from the stage",
            Kind::Merge => "MERGE from the stage",
            Kind::DropStage => "dropping the staging table",
            Kind::DeleteState => "clearing the table's row in tidemark_publish_state",
            Kind::InsertState => "writing tidemark_publish_state",
            Kind::Commit => "COMMIT",
        }
    }
}

/// One statement of a table's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// What it does.
    pub kind: Kind,
    /// Its text.
    pub sql: String,
}

impl Statement {
    fn new(kind: Kind, sql: String) -> Self {
        Self { kind, sql }
    }
}

/// Everything [`statements`] needs to write one table's transaction.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    /// The publication.
    pub publication: &'a str,
    /// The lake table, `schema.table` (the state row's `table_name`).
    pub table: &'a str,
    /// The target schema.
    pub schema: &'a str,
    /// The target table's name.
    pub name: &'a str,
    /// The mode.
    pub mode: PublishMode,
    /// The published columns, in order (the staged files' and the stage's).
    pub columns: &'a [(String, PgType)],
    /// The key (empty for append).
    pub key: &'a [&'a str],
    /// What the target needs first.
    pub plan: &'a Plan,
    /// `Some((manifest URL, IAM role))` when rows were staged.
    pub copy: Option<(&'a str, &'a str)>,
    /// The new state row.
    pub state: &'a State,
    /// `published_at`, micros since the epoch.
    pub published_at_us: i64,
}

/// The statements of one table's transaction after [`begin`] and [`read_target`],
/// in order, ending with COMMIT. Each is checked against Redshift's 16 MB limit
/// (the rows travel through S3, so only a table of very many columns could reach
/// it).
pub fn statements(l: &Load<'_>) -> std::result::Result<Vec<Statement>, String> {
    if l.name == STAGE {
        return Err(format!(
            "a target table cannot be named {STAGE}, tidemark's staging table"
        ));
    }
    let target = qualified(l.schema, l.name);
    // The target is referred to by its bare name (Redshift's MERGE takes no alias
    // for it), the stage by its own.
    let t = ident(l.name);
    let s = ident(STAGE);
    let list = l
        .columns
        .iter()
        .map(|(n, _)| ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    let on = l
        .key
        .iter()
        .map(|k| format!("{t}.{k} = {s}.{k}", k = ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let defs = |cols: &[(String, PgType)]| {
        cols.iter()
            .map(|(n, ty)| format!("{} {}", ident(n), column_type(*ty)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    let mut push = |kind: Kind, sql: String| out.push(Statement::new(kind, sql));
    if l.plan.drop_first {
        push(Kind::DropTable, format!("DROP TABLE {target}"));
    }
    if l.plan.create {
        let mut parts = defs(l.columns);
        if !l.key.is_empty() {
            parts.push_str(&format!(
                ", PRIMARY KEY ({})",
                l.key
                    .iter()
                    .map(|k| ident(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        push(
            Kind::CreateTable,
            format!("CREATE TABLE {target} ({parts})"),
        );
    }
    for (n, ty) in &l.plan.add {
        push(
            Kind::AddColumn,
            format!(
                "ALTER TABLE {target} ADD COLUMN {} {}",
                ident(n),
                column_type(*ty)
            ),
        );
    }
    if let Some((manifest, role)) = l.copy {
        push(
            Kind::CreateStage,
            format!("CREATE TEMP TABLE {s} ({})", defs(l.columns)),
        );
        push(
            Kind::Copy,
            format!(
                "COPY {s} FROM {} IAM_ROLE {} FORMAT AS PARQUET MANIFEST",
                literal(manifest)?,
                literal(role)?
            ),
        );
        let op = ident(OP);
        let insert = format!(
            "WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({})",
            l.columns
                .iter()
                .map(|(n, _)| format!("{s}.{}", ident(n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let non_key = l
            .columns
            .iter()
            .filter(|(n, _)| !l.key.contains(&n.as_str()));
        match l.mode {
            PublishMode::Append => push(
                Kind::Insert,
                format!("INSERT INTO {target} ({list}) SELECT {list} FROM {s}"),
            ),
            PublishMode::Merge => {
                // A key whose last change is a delete keeps its values at the target
                // and takes the delete's _op, _source_ts, _ingest_ts; a key the
                // target never had arrives with the image the delete carried. One
                // MERGE: the stage holds each key once (lake.rs's fold).
                let set = non_key
                    .map(|(n, _)| {
                        let c = ident(n);
                        if [OP, SOURCE_TS, INGEST_TS].contains(&n.as_str()) {
                            format!("{c} = {s}.{c}")
                        } else {
                            format!("{c} = CASE WHEN {s}.{op} = 'd' THEN {t}.{c} ELSE {s}.{c} END")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                push(
                    Kind::Merge,
                    format!("MERGE INTO {target} USING {s} ON {on} WHEN MATCHED THEN UPDATE SET {set} {insert}"),
                );
            }
            PublishMode::Mirror => {
                push(
                    Kind::DeleteDeleted,
                    format!("DELETE FROM {target} USING {s} WHERE {s}.{op} = 'd' AND {on}"),
                );
                push(
                    Kind::PruneStage,
                    format!("DELETE FROM {s} WHERE {op} = 'd'"),
                );
                let set = non_key
                    .map(|(n, _)| format!("{c} = {s}.{c}", c = ident(n)))
                    .collect::<Vec<_>>()
                    .join(", ");
                push(
                    Kind::Merge,
                    format!("MERGE INTO {target} USING {s} ON {on} WHEN MATCHED THEN UPDATE SET {set} {insert}"),
                );
            }
        }
        push(Kind::DropStage, format!("DROP TABLE {s}"));
    }
    let state_table = qualified(l.schema, target::STATE_TABLE);
    let (p, tn) = (literal(l.publication)?, literal(l.table)?);
    push(
        Kind::DeleteState,
        format!("DELETE FROM {state_table} WHERE \"publication\" = {p} AND \"table_name\" = {tn}"),
    );
    let key_json = serde_json::to_string(&l.state.key).expect("strings serialise");
    let cols_json = serde_json::to_string(&l.state.columns).expect("strings serialise");
    if cols_json.len() > MAX_VARCHAR_BYTES {
        return Err(format!(
            "the table's {} columns do not fit the state row's column_types ({MAX_VARCHAR_BYTES} bytes)",
            l.state.columns.len()
        ));
    }
    let at = deltalake::arrow::temporal_conversions::timestamp_us_to_datetime(l.published_at_us)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00+00".into());
    push(
        Kind::InsertState,
        format!(
            "INSERT INTO {state_table} (\"publication\", \"table_name\", \"mode\", \"version\", \"ingest_us\", \"table_id\", \
             \"rows_published\", \"key_columns\", \"column_types\", \"published_at\") \
             VALUES ({p}, {tn}, {}, {}, {}, {}, {}, {}, {}, CAST({} AS TIMESTAMPTZ))",
            literal(&l.state.mode)?,
            l.state.version,
            l.state.ingest_us,
            literal(&l.state.table_id)?,
            l.state.rows,
            literal(&key_json)?,
            literal(&cols_json)?,
            literal(&at)?,
        ),
    );
    push(Kind::Commit, "COMMIT".into());
    for st in &out {
        check_size(&st.sql)?;
    }
    Ok(out)
}

/// Refuse a statement over Redshift's 16 MB limit.
pub fn check_size(sql: &str) -> std::result::Result<(), String> {
    if sql.len() > MAX_STATEMENT_BYTES {
        let head: String = sql.chars().take(60).collect();
        return Err(format!(
            "a generated statement ({head}…) is {} bytes, over Redshift's limit of {MAX_STATEMENT_BYTES} bytes per statement",
            sql.len()
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ running it

/// Instead of the COPY statement, the statements that fill the stage from what was
/// staged: for running a publish against a server that has no `COPY … FROM 's3://'`
/// (the tests use PostgreSQL, reading the staged Parquet files back into INSERTs).
pub type InsteadOfCopy =
    dyn Fn(Staged) -> BoxFuture<'static, std::result::Result<Vec<String>, String>> + Send + Sync;

/// The connection settings of a `redshift://user@host[:5439]/database` target.
///
/// Without `sslmode` in the URL, TLS is required (`sslmode=require`), not merely
/// preferred as for PostgreSQL: every Redshift cluster offers TLS, a cluster whose
/// `require_ssl` parameter is on (AWS's default for new clusters since 2025) refuses
/// plaintext, and a cluster is often reached across networks tidemark's operator
/// does not control, where `prefer` would fall back to plaintext silently if
/// anything in between answered "no TLS". The certificate is not verified under
/// that default (libpq's `require`); `sslmode=verify-full` verifies it against the
/// system store (Redshift's certificates are issued by ACM, whose Amazon roots the
/// usual system stores hold) or `sslrootcert`.
pub(crate) fn client_config(
    url: &str,
    password: Option<&str>,
) -> std::result::Result<target::Target, String> {
    let rest = url
        .strip_prefix("redshift://")
        .ok_or_else(|| format!("{url:?} is not a redshift:// URL"))?;
    // The client would take PostgreSQL's 5432 for a host without a port.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    let url = if has_port || host.is_empty() {
        format!("postgres://{rest}")
    } else {
        format!("postgres://{authority}:5439{tail}")
    };
    target::client_config(&url, password, SslMode::Require)
        .map_err(|e| e.replace("PostgreSQL URL", "redshift:// URL"))
}

/// Publish to a `redshift://` target (what [`crate::publish`] does for one).
pub(crate) async fn publish(
    engine: &Engine,
    name: &str,
    cfg: &PublishConfig,
    options: &Options,
) -> Result<Report> {
    publish_with(engine, name, cfg, options, None).await
}

/// [`crate::publish`] for a `redshift://` target, with the COPY statement replaced by
/// `instead_of_copy` when given (see [`InsteadOfCopy`]); everything else (the lock,
/// the state, staging to S3, the MERGE, deleting the staged files) runs as it does
/// against Redshift.
pub async fn publish_with(
    engine: &Engine,
    name: &str,
    cfg: &PublishConfig,
    options: &Options,
    instead_of_copy: Option<&InsteadOfCopy>,
) -> Result<Report> {
    let config_err = |message: String| Error::Config {
        publication: name.to_string(),
        message,
    };
    let tables = crate::tables_of(engine, name, cfg, options)?;
    let Some(staging_url) = &cfg.staging else {
        return Err(config_err(
            "a redshift:// target needs staging, the S3 prefix the rows are staged under for COPY, e.g. staging = \"s3://my-bucket/tidemark-staging/\"".into(),
        ));
    };
    let Some(iam_role) = &cfg.iam_role else {
        return Err(config_err(
            "a redshift:// target needs iam_role, the IAM role Redshift assumes to read the staged files, e.g. iam_role = \"arn:aws:iam::123456789012:role/tidemark-copy\"".into(),
        ));
    };
    let staging = Staging::new(staging_url, &cfg.staging_options).map_err(config_err)?;
    let password = cfg.password(name).map_err(|e| config_err(e.to_string()))?;
    let client_cfg = client_config(&cfg.target, password.as_deref()).map_err(config_err)?;
    let unreachable = |e: &tokio_postgres::Error| Error::Unreachable {
        publication: name.to_string(),
        target: cfg.target.clone(),
        message: pg_message(e),
    };
    let client = target::connect(&client_cfg)
        .await
        .map_err(|e| crate::connect_error(e, &config_err, &unreachable))?;
    setup(&client, &cfg.schema)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(_) => config_err(format!(
                "preparing schema {} at the target: {}",
                cfg.schema,
                pg_message(&e)
            )),
            None => unreachable(&e),
        })?;
    let mut report = Report::default();
    for (t, ts, hist) in tables {
        let one = One {
            publication: name,
            cfg,
            table: &t,
            ts: &ts,
            hist: &hist,
            full_refresh: options.full_refresh,
            staging: &staging,
            iam_role,
            instead_of_copy,
        };
        let result = one.run(&client).await;
        if result.is_err() && !client.is_closed() {
            // Nothing of the table's transaction stays; the connection goes on.
            let _ = client.batch_execute("ROLLBACK").await;
        }
        let outcome = crate::settle(name, &cfg.target, &t, result, client.is_closed())?;
        report.tables.push((t, outcome));
    }
    Ok(report)
}

/// One table of one run.
struct One<'a> {
    publication: &'a str,
    cfg: &'a PublishConfig,
    table: &'a str,
    ts: &'a TableSchema,
    hist: &'a DeltaTable,
    full_refresh: bool,
    staging: &'a Staging,
    iam_role: &'a str,
    instead_of_copy: Option<&'a InsteadOfCopy>,
}

/// Run one statement (simple query protocol); the rows it affected.
async fn exec(client: &Client, sql: &str, kind: Kind) -> std::result::Result<u64, Step> {
    let messages = client.simple_query(sql).await.pg(kind.what())?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .last()
        .unwrap_or(0))
}

impl One<'_> {
    fn target_name(&self) -> &str {
        self.table.split_once('.').map_or(self.table, |(_, t)| t)
    }

    async fn run(&self, client: &Client) -> std::result::Result<Outcome, Step> {
        let mode = self.cfg.mode;
        let schema = self.cfg.schema.as_str();
        let name = self.target_name();
        let cols = lake::published_columns(self.ts, mode);
        let key: Vec<&str> = match mode {
            PublishMode::Append => Vec::new(),
            _ => self.ts.key_names(),
        };
        let version = lake::version(self.hist);
        let table_id = lake::table_id(self.hist);
        let park = |why: String| {
            Step::Parked(crate::park_message(
                self.publication,
                self.table,
                schema,
                name,
                &why,
            ))
        };

        for st in begin(schema) {
            exec(client, &st.sql, st.kind).await?;
        }
        let found = read_target(client, schema, self.publication, self.table, name)
            .await
            .pg("reading tidemark_publish_state and the target table")?;
        let plan = plan(
            self.publication,
            self.table,
            schema,
            name,
            mode,
            &cols,
            &key,
            &table_id,
            &found,
            self.full_refresh,
        )
        .map_err(park)?;
        let inc = Increment {
            hist: self.hist,
            ts: self.ts,
            mode,
            mark: plan.mark,
            new_table: plan.create,
        };
        let prefix = self
            .staging
            .run_prefix(self.publication, self.table, &run_id(version));
        let (staged, next) = match stage_increment(self.staging, prefix, &inc, STAGE_FILE_BYTES)
            .await
            .map_err(|e| match e {
                StageError::Lake(m) => Step::Lake(m),
                StageError::Staging(m) => Step::Staging(m),
            })? {
            Some((s, next)) => (Some(s), Some(next)),
            None => (None, None),
        };
        if next.is_none() && !plan.create && plan.add.is_empty() {
            exec(client, "ROLLBACK", Kind::Commit).await?;
            return Ok(Outcome::UpToDate);
        }
        let result = self
            .load(
                client,
                &cols,
                &key,
                &plan,
                version,
                &table_id,
                next,
                staged.as_ref(),
            )
            .await;
        if let Some(st) = &staged {
            if let Err(e) = st.remove(self.staging).await {
                warn!(publication = %self.publication, table = %self.table, error = %e, "the staged files stay behind (they are never read again)");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        client: &Client,
        cols: &[(String, PgType)],
        key: &[&str],
        plan: &Plan,
        version: i64,
        table_id: &str,
        next: Option<i64>,
        staged: Option<&Staged>,
    ) -> std::result::Result<Outcome, Step> {
        let rows = staged.map_or(0, |s| s.rows);
        let state = State {
            mode: self.cfg.mode.as_str().into(),
            version,
            ingest_us: next.or(plan.mark).unwrap_or(i64::MIN),
            table_id: table_id.to_string(),
            rows: plan.rows_before + rows as i64,
            key: key.iter().map(|k| k.to_string()).collect(),
            columns: plan.columns.clone(),
        };
        let manifest = staged.and_then(|s| s.manifest.as_ref().map(|(_, url)| url.as_str()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let load = Load {
            publication: self.publication,
            table: self.table,
            schema: &self.cfg.schema,
            name: self.target_name(),
            mode: self.cfg.mode,
            columns: cols,
            key,
            plan,
            copy: manifest.map(|m| (m, self.iam_role)),
            state: &state,
            published_at_us: now,
        };
        let sql = statements(&load).map_err(Step::Staging)?;
        let (mut upserted, mut deleted) = (0, 0);
        for st in &sql {
            match (st.kind, self.instead_of_copy, staged) {
                (Kind::Copy, Some(instead), Some(s)) => {
                    for q in instead(s.clone()).await.map_err(Step::Staging)? {
                        exec(client, &q, Kind::Copy).await?;
                    }
                }
                _ => {
                    let n = exec(client, &st.sql, st.kind).await?;
                    match st.kind {
                        Kind::Insert | Kind::Merge => upserted += n,
                        Kind::DeleteDeleted => deleted += n,
                        _ => {}
                    }
                }
            }
        }
        info!(publication = %self.publication, table = %self.table, rows, files = staged.map_or(0, |s| s.files.len()), "loaded into Redshift from staged Parquet");
        Ok(Outcome::Published(Published {
            rows,
            upserted,
            deleted,
            version,
            added_columns: plan.add.iter().map(|(n, _)| n.clone()).collect(),
            created: plan.create,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_redshift() {
        let cases = [
            (PgType::SmallInt, "SMALLINT"),
            (PgType::Integer, "INTEGER"),
            (PgType::BigInt, "BIGINT"),
            (
                PgType::Numeric {
                    precision: 20,
                    scale: 0,
                },
                "NUMERIC(20,0)",
            ),
            (
                PgType::Numeric {
                    precision: 38,
                    scale: 10,
                },
                "NUMERIC(38,10)",
            ),
            (
                PgType::Numeric {
                    precision: 65,
                    scale: 30,
                },
                "VARCHAR(67)",
            ),
            (PgType::Real, "REAL"),
            (PgType::Double, "DOUBLE PRECISION"),
            (PgType::Boolean, "BOOLEAN"),
            (PgType::Date, "DATE"),
            (PgType::Timestamp, "TIMESTAMP"),
            (PgType::TimestampTz, "TIMESTAMPTZ"),
            (PgType::Text, "VARCHAR(65535)"),
            (PgType::Jsonb, "VARCHAR(65535)"),
            (PgType::Bytea, "VARBYTE(1024000)"),
        ];
        for (t, want) in cases {
            assert_eq!(column_type(t), want, "{t:?}");
        }
    }

    #[test]
    fn literals_quote_and_refuse_backslashes() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert!(literal("a\\b").unwrap_err().contains("backslash"));
    }

    #[test]
    fn redshift_urls_default_to_port_5439() {
        let c = client_config("redshift://loader@dw.example.com/analytics", None)
            .unwrap()
            .config;
        assert_eq!(c.get_ports(), [5439]);
        let c = client_config("redshift://loader@[::1]/analytics", None)
            .unwrap()
            .config;
        assert_eq!(c.get_ports(), [5439]);
        assert_eq!(c.get_user(), Some("loader"));
        let c = client_config(
            "redshift://loader@dw.example.com:5440/analytics",
            Some("pw"),
        )
        .unwrap()
        .config;
        assert_eq!(c.get_ports(), [5440]);
        assert!(client_config("redshift://u@h/db?password=x", None).is_err());
        // TLS is required unless the URL says otherwise.
        let mode = |url: &str| client_config(url, None).unwrap().tls.mode;
        assert_eq!(mode("redshift://u@h/db"), SslMode::Require);
        assert_eq!(
            mode("redshift://u@h/db?sslmode=verify-ca"),
            SslMode::VerifyCa
        );
        assert_eq!(mode("redshift://u@h/db?sslmode=prefer"), SslMode::Prefer);
        assert!(client_config("postgres://u@h/db", None).is_err());
    }

    #[test]
    fn oversized_statements_are_refused() {
        assert!(check_size(&"x".repeat(MAX_STATEMENT_BYTES)).is_ok());
        let e = check_size(&"x".repeat(MAX_STATEMENT_BYTES + 1)).unwrap_err();
        assert!(e.contains("16777217 bytes") && e.contains("limit"), "{e}");
    }
}
