//! The definitions of SQL models materialised as views: one small JSON object per
//! view at `<warehouse>/.tidemark/views/<schema>/<name>.json`, written whole by a
//! single put (atomic on a local disk and on S3), read by the query engine, which
//! plans each into a view over the tables it reads.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Warehouse};

/// One view's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// The SELECT it stands for (templates resolved).
    pub sql: String,
    /// The model it comes from.
    pub model: String,
}

/// The view definitions of a warehouse.
pub struct ViewDefs {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    location: String,
}

impl ViewDefs {
    /// The definitions of `wh` (a local directory or an object store).
    pub fn open(wh: &Warehouse) -> Result<Self> {
        let (store, prefix) = wh.own_files("views")?;
        Ok(Self {
            store,
            prefix,
            location: wh.root().to_string(),
        })
    }

    /// The definitions of `wh` if any view was ever defined there: readers use this,
    /// so a read-only local warehouse is never written to.
    pub fn existing(wh: &Warehouse) -> Result<Option<Self>> {
        if wh.object_store().is_none() {
            let defined = wh
                .root()
                .to_file_path()
                .is_ok_and(|p| p.join(".tidemark").join("views").is_dir());
            if !defined {
                return Ok(None);
            }
        }
        Self::open(wh).map(Some)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Warehouse {
            location: self.location.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Write (or replace) a view's definition.
    pub async fn put(&self, def: &ViewDef) -> Result<()> {
        let path = self
            .prefix
            .clone()
            .join(def.schema.as_str())
            .join(format!("{}.json", def.name));
        let body = serde_json::to_vec_pretty(def).map_err(|e| self.err("encoding a view", e))?;
        self.store
            .put(&path, body.into())
            .await
            .map_err(|e| self.err(&format!("writing view {}.{}", def.schema, def.name), e))?;
        Ok(())
    }

    /// Every definition, by schema then name.
    pub async fn list(&self) -> Result<Vec<ViewDef>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing views", e))?;
        let mut out = Vec::new();
        for m in metas {
            if !m.location.as_ref().ends_with(".json") {
                continue;
            }
            let body = match self.store.get(&m.location).await {
                Ok(g) => g.bytes().await.map_err(|e| self.err("reading a view", e))?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.err("reading a view", e)),
            };
            let def: ViewDef = serde_json::from_slice(&body)
                .map_err(|e| self.err(&format!("view {}", m.location), e))?;
            out.push(def);
        }
        out.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(out)
    }
}
