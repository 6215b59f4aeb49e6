//! Where tables live: `<root>/<schema>/<table>/{current,history}`, in a local directory
//! or under `s3://bucket/prefix`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::{s3, Error, Result};

/// The two Delta tables kept per source table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// The row as it is now, merged by key.
    Current,
    /// Append-only log of every version.
    History,
    /// Versions closed by compaction, with `_valid_to` stored (see `closed.rs`).
    Closed,
}

impl TableKind {
    /// Directory name.
    pub fn dir(self) -> &'static str {
        match self {
            TableKind::Current => "current",
            TableKind::History => "history",
            TableKind::Closed => "closed",
        }
    }
}

/// Directory of a table a job writes (see [`Warehouse::derived_url`]).
pub const DERIVED: &str = "derived";

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
    /// The bucket's client, for `s3://` warehouses (listing; Delta tables build their
    /// own through the registered factories).
    store: Option<Arc<dyn ObjectStore>>,
    /// Set for a warehouse opened read-only ([`Warehouse::open_read_only`]): the
    /// store (at the root of the file system or bucket) every Delta table it opens
    /// reads through, which refuses every write.
    read_only: Option<Arc<dyn ObjectStore>>,
}

impl Warehouse {
    /// Open a warehouse at a local directory (created if missing) or a URL
    /// (`file://`, `s3://bucket/prefix`). For S3, `storage_options` are S3 client options
    /// (endpoint, region, allow_http, ...); credentials come from the `AWS_*`
    /// environment variables and are refused here.
    pub fn new(location: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        Self::open_with(location, storage_options, false)
    }

    /// Open another environment's warehouse to read only (a deferred build reads its
    /// sources): nothing is created (a local directory must exist), every Delta table
    /// it opens reads through a store that refuses every write (put, delete, copy,
    /// rename), and its own writing operations ([`Warehouse::retire`], tidemark's own
    /// files, [`crate::TableWriter::open`]) are refused. So no code holding it can
    /// change a byte there, by design rather than by care.
    pub fn open_read_only(
        location: &str,
        storage_options: HashMap<String, String>,
    ) -> Result<Self> {
        Self::open_with(location, storage_options, true)
    }

    /// Whether the warehouse was opened with [`Warehouse::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// The refusal of `what` on a read-only warehouse.
    pub(crate) fn refuse_read_only(&self, what: &str) -> Result<()> {
        if self.read_only.is_some() {
            return Err(Error::ReadOnly {
                location: self.root.to_string(),
                what: what.to_string(),
            });
        }
        Ok(())
    }

    fn open_with(
        location: &str,
        storage_options: HashMap<String, String>,
        read_only: bool,
    ) -> Result<Self> {
        let bad = |message: String| Error::Warehouse {
            location: location.to_string(),
            message,
        };
        let mut store = None;
        let root = if location.contains("://") {
            let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
            match url.scheme() {
                "file" => {}
                "s3" => {
                    let bucket = url
                        .host_str()
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| bad("no bucket; use s3://bucket/prefix".into()))?;
                    s3::check_options(&storage_options).map_err(bad)?;
                    let s3 = s3::build_store(bucket, &storage_options)
                        .map_err(|e| bad(format!("cannot configure the S3 client: {e}")))?;
                    store = Some(Arc::new(s3) as Arc<dyn ObjectStore>);
                    s3::register();
                }
                other => {
                    return Err(bad(format!(
                        "{other}:// warehouses are not supported; use a local directory or s3://bucket/prefix"
                    )))
                }
            }
            url
        } else {
            let path = Path::new(location);
            if read_only {
                if !path.is_dir() {
                    return Err(bad(
                        "no such directory (a warehouse read from is not created)".into(),
                    ));
                }
            } else {
                std::fs::create_dir_all(path).map_err(|e| bad(format!("cannot create it: {e}")))?;
            }
            let abs = path
                .canonicalize()
                .map_err(|e| bad(format!("cannot resolve it: {e}")))?;
            Url::from_directory_path(&abs).map_err(|_| bad("not an absolute path".into()))?
        };
        let mut root = root;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let read_only = if !read_only {
            None
        } else {
            let under: Arc<dyn ObjectStore> = match &store {
                Some(s) => s.clone(),
                None => Arc::new(object_store::local::LocalFileSystem::new()),
            };
            Some(
                Arc::new(crate::readonly::ReadOnlyStore::new(under, root.as_str()))
                    as Arc<dyn ObjectStore>,
            )
        };
        Ok(Self {
            root,
            storage_options,
            store,
            read_only,
        })
    }

    /// The object store and the root's path in it, for a warehouse on an object store
    /// (`None` for a local directory). Also how files of change events under an S3
    /// prefix are read (`[streams.*]` with `kind = "files"`).
    pub fn object_store(&self) -> Option<(Arc<dyn ObjectStore>, ObjectPath)> {
        let store = match &self.read_only {
            // The bucket itself, read only.
            Some(ro) if self.store.is_some() => ro.clone(),
            _ => self.store.clone()?,
        };
        let path = ObjectPath::from_url_path(self.root.path()).ok()?;
        Some((store, path))
    }

    /// A store for tidemark's own small files under `<root>/.tidemark/<sub>/` (run
    /// claims, view definitions), and the prefix in it: the warehouse's object
    /// store, or for a local directory a file-system store rooted there (created).
    /// On a read-only warehouse the store reads only, and a local directory missing
    /// is an error rather than created.
    pub(crate) fn own_files(&self, sub: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        if let Some((store, root)) = self.object_store() {
            return Ok((store, root.join(".tidemark").join(sub)));
        }
        let location = self.root.to_string();
        let err = |message: String| Error::Warehouse {
            location: location.clone(),
            message,
        };
        let path = self
            .root
            .to_file_path()
            .map_err(|_| err("not a local path".into()))?;
        let dir = path.join(".tidemark").join(sub);
        if self.read_only.is_some() {
            if !dir.is_dir() {
                return Err(err(format!("{} does not exist", dir.display())));
            }
        } else {
            std::fs::create_dir_all(&dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let fs: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| err(e.to_string()))?,
        );
        let fs = match self.read_only {
            Some(_) => Arc::new(crate::readonly::ReadOnlyStore::new(fs, self.root.as_str())),
            None => fs,
        };
        Ok((fs, ObjectPath::default()))
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
    ///
    /// On a read-only warehouse the table reads through a store that refuses every
    /// write, and nothing is created: a table that is not there is `(handle, false)`.
    pub async fn delta_table(&self, url: &Url) -> Result<(DeltaTable, bool)> {
        let delta_err = |source| Error::Delta {
            table: url.to_string(),
            source,
        };
        if let Some(ro) = &self.read_only {
            let table = DeltaTableBuilder::from_url(url.clone())
                .and_then(|b| {
                    b.with_storage_options(self.storage_options.clone())
                        .with_storage_backend(ro.clone(), url.clone())
                        .build()
                })
                .map_err(delta_err)?;
            if let Ok(path) = url.to_file_path() {
                if !path.join("_delta_log").is_dir() {
                    return Ok((table, false));
                }
            }
            return self.load(table, url).await;
        }
        // delta-rs refuses a local location that does not exist yet.
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| Error::Warehouse {
                location: url.to_string(),
                message: format!("cannot create the table directory: {e}"),
            })?;
        }
        let table = DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_options(self.storage_options.clone()).build())
            .map_err(delta_err)?;
        self.load(table, url).await
    }

    async fn load(&self, mut table: DeltaTable, url: &Url) -> Result<(DeltaTable, bool)> {
        match table.load().await {
            Ok(()) => Ok((table, true)),
            Err(DeltaTableError::NotATable(_)) => Ok((table, false)),
            Err(source) => Err(Error::Delta {
                table: url.to_string(),
                source,
            }),
        }
    }

    /// Move a table's current and history Delta tables aside, to
    /// `<root>/.retired/<schema>.<table>.<UTC instant>/`, so that it can be landed
    /// again (`tidemark snapshot --resnapshot`). Nothing is deleted: the retired tables
    /// stay plain Delta tables any engine can read. Returns where they went, or `None`
    /// when the table was not in the warehouse.
    pub async fn retire(&self, schema: &str, table: &str) -> Result<Option<String>> {
        self.refuse_read_only(&format!("moving {schema}.{table} aside"))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        if self.store.is_some() {
            return Err(Error::Warehouse {
                location: self.root.to_string(),
                message: format!(
                    "moving {schema}.{table} aside on an object store is not built yet; move the prefix {schema}/{table}/ to .retired/{schema}.{table}.{stamp}/ with your S3 tools, then run the command again"
                ),
            });
        }
        let root = self.root.to_file_path().map_err(|_| Error::Warehouse {
            location: self.root.to_string(),
            message: "not a local path".into(),
        })?;
        let from = root.join(schema).join(table);
        if !from.exists() {
            return Ok(None);
        }
        let to = root
            .join(".retired")
            .join(format!("{schema}.{table}.{stamp}"));
        let io = |e: std::io::Error| Error::Warehouse {
            location: from.display().to_string(),
            message: format!("cannot move it to {}: {e}", to.display()),
        };
        std::fs::create_dir_all(root.join(".retired")).map_err(io)?;
        std::fs::rename(&from, &to).map_err(io)?;
        Ok(Some(to.display().to_string()))
    }

    /// The tables moved aside so far: the entries of `<root>/.retired/`
    /// (`<schema>.<table>.<UTC instant>`, see [`Warehouse::retire`], or moved there by
    /// hand on an object store as its message says). A long-running reader compares
    /// this with what it saw before: a new entry means the table at that place is a
    /// new Delta table, whose log must not be followed on from the old one's version.
    /// One listing for the whole warehouse.
    pub async fn retired(&self) -> Result<BTreeSet<String>> {
        if let Some(store) = &self.store {
            let err = |e: String| Error::Warehouse {
                location: self.root.to_string(),
                message: format!("cannot list .retired/: {e}"),
            };
            let root =
                ObjectPath::from_url_path(self.root.path()).map_err(|e| err(e.to_string()))?;
            let listed = store
                .list_with_delimiter(Some(&root.join(".retired")))
                .await
                .map_err(|e| err(e.to_string()))?;
            return Ok(listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect());
        }
        let root = self.root.to_file_path().map_err(|_| Error::Warehouse {
            location: self.root.to_string(),
            message: "not a local path".into(),
        })?;
        Ok(std::fs::read_dir(root.join(".retired"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Tables with a current table in the warehouse, sorted. Directories starting
    /// with `.` (retired tables) are not tables.
    pub async fn list(&self) -> Result<Vec<TableLocation>> {
        self.list_with(TableKind::Current.dir()).await
    }

    /// Tables that jobs write (`<schema>/<table>/derived/`: a SQL job's result), sorted.
    pub async fn list_derived(&self) -> Result<Vec<TableLocation>> {
        self.list_with(DERIVED).await
    }

    /// Location of the table a job writes as `schema.table`.
    pub fn derived_url(&self, schema: &str, table: &str) -> Url {
        let mut url = self.root.clone();
        url.path_segments_mut()
            .expect("file and object-store URLs have paths")
            .pop_if_empty()
            .extend([schema, table, DERIVED, ""]);
        url
    }

    /// Tables whose `<schema>/<table>/<dir>/` holds a Delta log.
    async fn list_with(&self, dir: &str) -> Result<Vec<TableLocation>> {
        if let Some(store) = &self.store {
            return self.list_store(store.as_ref(), dir).await;
        }
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
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (schema, sp) in dirs(&root) {
            for (table, tp) in dirs(&sp) {
                if tp.join(dir).join("_delta_log").is_dir() {
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

    /// [`Warehouse::list`] on an object store: `<root>/<schema>/<table>/current/_delta_log/`
    /// holding at least one object.
    async fn list_store(&self, store: &dyn ObjectStore, dir: &str) -> Result<Vec<TableLocation>> {
        let err = |e: String| Error::Warehouse {
            location: self.root.to_string(),
            message: format!("cannot list it: {e}"),
        };
        let root = ObjectPath::from_url_path(self.root.path()).map_err(|e| err(e.to_string()))?;
        let dirs = |prefix: ObjectPath| async move {
            store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| err(e.to_string()))
        };
        let mut out = Vec::new();
        for sp in dirs(root).await?.common_prefixes {
            let Some(schema) = sp.filename().map(str::to_string) else {
                continue;
            };
            for tp in dirs(sp).await?.common_prefixes {
                let Some(table) = tp.filename().map(str::to_string) else {
                    continue;
                };
                let log = dirs(tp.join(dir).join("_delta_log")).await?;
                if !log.objects.is_empty() {
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
