//! tidemark's own tables (schema `tidemark`: dead letters, audit): plain Delta tables
//! at `<warehouse>/tidemark/<name>/`, not landed source tables (no current/history
//! pair), created on first write.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use url::Url;

use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL schema of tidemark's own tables.
pub const OWN_SCHEMA: &str = "tidemark";

/// Where own table `name` lives.
pub(crate) fn url(wh: &Warehouse, name: &str) -> Url {
    let mut url = wh.root().clone();
    url.path_segments_mut()
        .expect("warehouse URLs have paths")
        .pop_if_empty()
        .extend([OWN_SCHEMA, name, ""]);
    url
}

/// Open own table `name`, creating it with `schema` if it does not exist.
pub(crate) async fn open_or_create(
    wh: &Warehouse,
    name: &str,
    schema: SchemaRef,
    comment: &str,
) -> Result<DeltaTable> {
    let url = url(wh, name);
    let full = format!("{OWN_SCHEMA}.{name}");
    let (table, exists) = wh.delta_table(&url).await?;
    if exists {
        return Ok(table);
    }
    let st: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::Batch {
            table: full.clone(),
            message: e.to_string(),
        })?;
    match table
        .create()
        .with_columns(st.fields().cloned())
        .with_comment(comment)
        .await
    {
        Ok(table) => Ok(table),
        // Another process (a worker of the group, a second server) may have
        // created it meanwhile.
        Err(source) => match wh.delta_table(&url).await? {
            (table, true) => Ok(table),
            _ => Err(Error::Delta {
                table: full,
                source,
            }),
        },
    }
}

/// Own table `name` if it exists, read-only.
pub async fn existing(wh: &Warehouse, name: &str) -> Result<Option<DeltaTable>> {
    let url = url(wh, name);
    if let Ok(p) = url.to_file_path() {
        if !p.join("_delta_log").is_dir() {
            return Ok(None);
        }
    }
    let (table, exists) = wh.delta_table(&url).await?;
    Ok(exists.then_some(table))
}

/// What maintenance did to one of tidemark's own tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnMaintenance {
    /// Rows deleted for being older than the table's retention.
    pub rows_expired: u64,
    /// Small files bin-packed into bigger ones (removed, added).
    pub files_optimized: (u64, u64),
    /// Files VACUUM deleted.
    pub files_vacuumed: usize,
}

/// Maintain own table `name` as source tables are maintained: delete rows whose
/// `expire.0` column is older than `expire.1` (the audit's retention), bin-pack small
/// files, write a checkpoint, and VACUUM files older than `retention`. The audit gets
/// a commit each second while the endpoint serves, so without this its log and file
/// count grow without bound. `None` when the table does not exist.
pub(crate) async fn maintain(
    wh: &Warehouse,
    name: &str,
    retention: Option<chrono::Duration>,
    expire: Option<(&str, chrono::Duration)>,
) -> Result<Option<OwnMaintenance>> {
    use deltalake::datafusion::logical_expr::{col, lit};
    use deltalake::datafusion::scalar::ScalarValue;
    let full = format!("{OWN_SCHEMA}.{name}");
    let delta_err = |source| Error::Delta {
        table: full.clone(),
        source,
    };
    let Some(mut table) = existing(wh, name).await? else {
        return Ok(None);
    };
    table.update_state().await.map_err(delta_err)?;
    let mut out = OwnMaintenance::default();
    if let Some((column, keep)) = expire {
        let cutoff = (chrono::Utc::now() - keep).timestamp_micros();
        let (t, m) = table
            .delete()
            .with_predicate(col(column).lt(lit(ScalarValue::TimestampMicrosecond(
                Some(cutoff),
                Some("UTC".into()),
            ))))
            .await
            .map_err(delta_err)?;
        out.rows_expired = m.num_deleted_rows.unwrap_or(0) as u64;
        table = t;
    }
    let (t, m) = table
        .optimize()
        .with_target_size(
            std::num::NonZeroU64::new(crate::maintain::TARGET_FILE_BYTES).expect("non-zero"),
        )
        .await
        .map_err(delta_err)?;
    out.files_optimized = (m.num_files_removed, m.num_files_added);
    deltalake::checkpoints::create_checkpoint(&t, None)
        .await
        .map_err(delta_err)?;
    if let Some(r) = retention {
        let (_, vm) = t
            .vacuum()
            .with_retention_period(r)
            .with_enforce_retention_duration(false)
            .await
            .map_err(delta_err)?;
        out.files_vacuumed = vm.files_deleted.len();
    }
    Ok(Some(out))
}

/// Maintain own table `name` keeping every row (bin-pack, checkpoint, VACUUM as
/// [`maintain`] does): for the tables of records other than the audit
/// ([`crate::KEPT_RECORDS`]), which grow by a commit per job run, build, verification
/// or save. `None` when the table does not exist.
pub async fn maintain_records(
    wh: &Warehouse,
    name: &str,
    retention: Option<chrono::Duration>,
) -> Result<Option<OwnMaintenance>> {
    maintain(wh, name, retention, None).await
}

/// One text column of `rows`, for an own table's batch.
pub(crate) fn texts<R>(rows: &[R], f: impl Fn(&R) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

/// One integer column of `rows`.
pub(crate) fn ints<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

/// One UTC timestamp column (µs) of `rows`.
pub(crate) fn instants<R>(rows: &[R], f: impl Fn(&R) -> Option<i64>) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(f)
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC"),
    )
}

/// Append one batch of `columns` to own table `table` (named `name` in errors), in
/// one commit (blind appends: writers may overlap).
pub(crate) async fn append(
    table: DeltaTable,
    name: String,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<DeltaTable> {
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| Error::Batch {
        table: name.clone(),
        message: e.to_string(),
    })?;
    table
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(CommitProperties::default().with_max_retries(20))
        .await
        .map_err(|source| Error::Delta {
            table: name,
            source,
        })
}
