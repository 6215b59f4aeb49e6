//! Where tables live: `<root>/<schema>/<table>/{current,history}`.

use std::collections::HashMap;
use std::path::Path;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::{Error, Result};

/// The two Delta tables kept per source table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// The row as it is now, merged by key.
    Current,
    /// Append-only log of every version.
    History,
}

impl TableKind {
    /// Directory name.
    pub fn dir(self) -> &'static str {
        match self {
            TableKind::Current => "current",
            TableKind::History => "history",
        }
    }
}

/// A table found in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableLocation {
    /// SQL schema of the current table.
    pub schema: String,
    /// SQL table name.
    pub table: String,
}

/// A warehouse root (one per environment).
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: Url,
    storage_options: HashMap<String, String>,
}

impl Warehouse {
    /// Open a warehouse at a local directory (created if missing) or a URL.
    pub fn new(location: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        let bad = |message: String| Error::Warehouse {
            location: location.to_string(),
            message,
        };
        let root = if location.contains("://") {
            let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
            if url.scheme() != "file" {
                return Err(bad(format!(
                    "{}:// warehouses are not supported by this build yet; use a local directory",
                    url.scheme()
                )));
            }
            url
        } else {
            let path = Path::new(location);
            std::fs::create_dir_all(path).map_err(|e| bad(format!("cannot create it: {e}")))?;
            let abs = path
                .canonicalize()
                .map_err(|e| bad(format!("cannot resolve it: {e}")))?;
            Url::from_directory_path(&abs).map_err(|_| bad("not an absolute path".into()))?
        };
        let mut root = root;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Self {
            root,
            storage_options,
        })
    }

    /// The warehouse root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Location of one Delta table.
    pub fn table_url(&self, schema: &str, table: &str, kind: TableKind) -> Url {
        let mut url = self.root.clone();
        url.path_segments_mut()
            .expect("file and object-store URLs have paths")
            .pop_if_empty()
            .extend([schema, table, kind.dir(), ""]);
        url
    }

    /// A handle on a Delta table; `loaded` tells whether it exists yet.
    pub async fn delta_table(&self, url: &Url) -> Result<(DeltaTable, bool)> {
        // delta-rs refuses a local location that does not exist yet.
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| Error::Warehouse {
                location: url.to_string(),
                message: format!("cannot create the table directory: {e}"),
            })?;
        }
        let mut table = DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_options(self.storage_options.clone()).build())
            .map_err(|source| Error::Delta {
                table: url.to_string(),
                source,
            })?;
        match table.load().await {
            Ok(()) => Ok((table, true)),
            Err(DeltaTableError::NotATable(_)) => Ok((table, false)),
            Err(source) => Err(Error::Delta {
                table: url.to_string(),
                source,
            }),
        }
    }

    /// Tables with a current table in the warehouse, sorted.
    pub fn list(&self) -> Result<Vec<TableLocation>> {
        let root = self.root.to_file_path().map_err(|_| Error::Warehouse {
            location: self.root.to_string(),
            message: "not a local path".into(),
        })?;
        let mut out = Vec::new();
        let dirs = |p: &Path| -> Vec<(String, std::path::PathBuf)> {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (schema, sp) in dirs(&root) {
            for (table, tp) in dirs(&sp) {
                if tp.join("current").join("_delta_log").is_dir() {
                    out.push(TableLocation {
                        schema: schema.clone(),
                        table,
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
