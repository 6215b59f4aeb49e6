//! The new-data cursor's source: the newest Delta version of each input table.
//!
//! An input is named as SQL names it (`shop.orders`). A landed table's commits
//! land in its history log first (the current table follows at compaction), so its
//! version is the history log's; a table a job writes (`derived`) has one log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::DeltaTable;
use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_lake::{TableKind, Warehouse};
use tidemark_scheduler::inputs::Inputs;
use tidemark_scheduler::store::StoreError;
use tokio::sync::Mutex;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LakeInputs {
    wh: Warehouse,
    /// Opened logs, so that a poll lists only what is newer than the last one seen.
    open: Arc<Mutex<HashMap<String, DeltaTable>>>,
}

impl LakeInputs {
    /// Inputs read from `wh`.
    pub fn new(wh: &Warehouse) -> Self {
        Self {
            wh: wh.clone(),
            open: Arc::default(),
        }
    }

    /// The log of input `name`, if the table exists yet.
    async fn log(&self, name: &str) -> Result<Option<DeltaTable>, StoreError> {
        let Some((schema, table)) = name.split_once('.') else {
            return Err(StoreError::Other(format!(
                "input {name:?} is not schema.table; name it as SQL does, e.g. shop.orders"
            )));
        };
        let urls = [
            self.wh.table_url(schema, table, TableKind::History),
            self.wh.derived_url(schema, table),
        ];
        for url in urls {
            if let Ok(p) = url.to_file_path() {
                if !p.join("_delta_log").is_dir() {
                    continue;
                }
            }
            let (t, exists) = self
                .wh
                .delta_table(&url)
                .await
                .map_err(|e| StoreError::Other(e.to_string()))?;
            if exists {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}

impl Inputs for LakeInputs {
    fn versions(
        &self,
        names: &[String],
    ) -> BoxFuture<'static, Result<BTreeMap<String, i64>, StoreError>> {
        let (this, names) = (self.clone(), names.to_vec());
        async move {
            let mut out = BTreeMap::new();
            for name in names {
                let mut open = this.open.lock().await;
                if !open.contains_key(&name) {
                    match this.log(&name).await? {
                        Some(t) => open.insert(name.clone(), t),
                        None => continue,
                    };
                }
                let t = &open[&name];
                let v = t
                    .get_latest_version()
                    .await
                    .map_err(|e| StoreError::Other(format!("input {name}: {e}")))?;
                out.insert(name, v as i64);
            }
            Ok(out)
        }
        .boxed()
    }
}
