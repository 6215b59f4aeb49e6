//! tidemark's own tables (schema `tidemark`: dead letters, audit): plain Delta tables
//! at `<warehouse>/tidemark/<name>/`, not landed source tables (no current/history
//! pair), created on first write.

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::StructType;
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
pub(crate) async fn existing(wh: &Warehouse, name: &str) -> Result<Option<DeltaTable>> {
    let url = url(wh, name);
    if let Ok(p) = url.to_file_path() {
        if !p.join("_delta_log").is_dir() {
            return Ok(None);
        }
    }
    let (table, exists) = wh.delta_table(&url).await?;
    Ok(exists.then_some(table))
}
