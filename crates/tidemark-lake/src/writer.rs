//! The table writer: one source table → its current and history Delta tables.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{col, Expr};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, MetadataExt, StructType, Transaction};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tidemark_core::change::ChangeBatch;
use tidemark_core::position::SourceState;
use tidemark_core::schema::TableSchema;
use tracing::debug;
use url::Url;

use crate::diff::quote;
use crate::rows::{collapse_by_key, current_rows, history_rows};
use crate::warehouse::{TableKind, Warehouse};
use crate::{Error, Result};

/// Application id of tidemark's `txn` actions.
pub const APP_ID: &str = "tidemark";
/// Commit-info key holding `{ "txn": n, "state": SourceState }`.
const INFO_KEY: &str = "tidemark";
/// Table-configuration key holding the source table's [`TableSchema`] as JSON.
pub const SCHEMA_KEY: &str = "tidemark.schema";
/// Hidden flag column in the merge source.
const DELETE_FLAG: &str = "__tidemark_delete";
/// Delta's table property naming the columns files keep statistics for.
const STATS_COLUMNS: &str = "delta.dataSkippingStatsColumns";
/// Columns of the stored current table that tables landed by earlier versions lack.
const LATER_CURRENT: [&str; 2] = [
    tidemark_core::schema::SOURCE_POS,
    tidemark_core::schema::SEQ,
];

/// The columns one of the tables keeps file statistics for (keys and time columns,
/// wherever they sit among the columns).
fn stats_for(ts: &TableSchema, kind: TableKind) -> Option<String> {
    use tidemark_core::schema::{INGEST_TS, SOURCE_TS, VALID_FROM};
    match kind {
        TableKind::Closed => crate::closed::closed_stats(ts),
        TableKind::History => {
            let mut c = ts.key_names();
            c.extend([INGEST_TS, SOURCE_TS, VALID_FROM]);
            crate::closed::stats_columns(c)
        }
        TableKind::Current => {
            let mut c = ts.key_names();
            c.extend([INGEST_TS, SOURCE_TS]);
            crate::closed::stats_columns(c)
        }
    }
}

/// What a table has committed: its transaction version and source state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Application-transaction version; 0 before the first tidemark commit.
    pub txn: i64,
    /// Source state carried by that commit.
    pub state: SourceState,
}

#[derive(Debug)]
struct Target {
    name: String,
    url: Url,
    table: DeltaTable,
    /// The Delta table's columns (for a history log after schema changes, more than
    /// the table's own: see `tidemark_core::evolve`).
    schema: SchemaRef,
    /// Stored column → the batch column written to it, where they differ.
    stored_from: std::collections::HashMap<String, String>,
    committed: Committed,
}

/// Stored column → table column, for the columns whose storage moved.
fn stored_from(ts: &TableSchema, kind: TableKind) -> std::collections::HashMap<String, String> {
    match kind {
        TableKind::Current | TableKind::Closed => Default::default(),
        TableKind::History => ts
            .columns
            .iter()
            .filter(|c| c.write_name() != c.name)
            .map(|c| (c.write_name().to_string(), c.name.clone()))
            .collect(),
    }
}

/// A DataFusion error while planning or running a read of `table`.
fn batch_err(
    table: &str,
) -> impl Fn(deltalake::datafusion::error::DataFusionError) -> Error + Copy + '_ {
    move |e| Error::Batch {
        table: table.to_string(),
        message: e.to_string(),
    }
}

/// The columns of a Delta table, as Delta types.
fn delta_struct(table: &DeltaTable, name: &str) -> Result<StructType> {
    Ok(table
        .snapshot()
        .map_err(|source| Error::Delta {
            table: name.to_string(),
            source,
        })?
        .schema()
        .as_ref()
        .clone())
}

/// The Arrow schema of a Delta table.
fn delta_arrow(table: &DeltaTable, name: &str) -> Result<SchemaRef> {
    let st = delta_struct(table, name)?;
    let arrow: Schema = (&st).try_into_arrow().map_err(|e| Error::Batch {
        table: name.to_string(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(arrow))
}

impl Target {
    /// Open (or create) one of the two tables. `arrow` is what `schema` needs the table
    /// to have; `check` compares it with what the table has.
    async fn open(
        wh: &Warehouse,
        schema: &TableSchema,
        kind: TableKind,
        arrow: SchemaRef,
        check: bool,
    ) -> Result<Self> {
        let url = wh.table_url(&schema.name.schema, &schema.name.table, kind);
        let name = format!("{}/{}", schema.name.sql(), kind.dir());
        let (mut table, exists) = wh.delta_table(&url).await?;
        let delta_err = |source| Error::Delta {
            table: name.clone(),
            source,
        };
        if !exists {
            let st: StructType = arrow.as_ref().try_into_kernel().map_err(|e| Error::Batch {
                table: name.clone(),
                message: e.to_string(),
            })?;
            table = table
                .create()
                .with_columns(st.fields().cloned())
                .with_table_name(format!("{}_{}", schema.name.schema, schema.name.table))
                // The source shape (MySQL types, key) travels with the table, so readers
                // (the query layer's history view, later the binlog decoder) need no
                // connection to the source. Unknown keys are allowed by Delta readers.
                .with_configuration(
                    [(
                        SCHEMA_KEY.to_string(),
                        Some(serde_json::to_string(schema).map_err(|e| Error::Batch {
                            table: name.clone(),
                            message: e.to_string(),
                        })?),
                    )]
                    .into_iter()
                    .chain(stats_for(schema, kind).map(|c| (STATS_COLUMNS.to_string(), Some(c)))),
                )
                .with_raise_if_key_not_exists(false)
                .with_comment(format!(
                    "tidemark {} table of source table {}",
                    kind.dir(),
                    schema.name.source()
                ))
                .await
                .map_err(delta_err)?;
        } else if check {
            check_schema(&table, &arrow, &name, &schema.name.source(), kind)?;
        }
        let committed = read_committed(&table, &name).await?;
        Ok(Self {
            schema: delta_arrow(&table, &name)?,
            stored_from: stored_from(schema, kind),
            name,
            url,
            table,
            committed,
        })
    }

    /// `batch` (the table's columns) as the stored table's columns: moved columns
    /// under their stored names, stored columns the batch has no value for as NULL.
    fn to_stored(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.stores_as_is(&batch.schema()) {
            return RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(
                |e| Error::Batch {
                    table: self.name.clone(),
                    message: e.to_string(),
                },
            );
        }
        let rows = batch.num_rows();
        let mut cols = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            // The batch column stored here: the one moved here, else the same name
            // unless that column's values now go elsewhere.
            let from = match self.stored_from.get(f.name()) {
                Some(moved) => Some(moved.as_str()),
                None if self.stored_from.values().any(|v| v == f.name()) => None,
                None => Some(f.name().as_str()),
            };
            let col = match from.map(|n| batch.schema().index_of(n)) {
                Some(Ok(i)) => {
                    let c = batch.column(i).clone();
                    if c.data_type() == f.data_type() {
                        c
                    } else {
                        deltalake::arrow::compute::cast(&c, f.data_type()).map_err(|e| {
                            Error::Batch {
                                table: self.name.clone(),
                                message: format!("column {}: {e}", f.name()),
                            }
                        })?
                    }
                }
                // A column of older storage (or a name a moved column used to have).
                _ => deltalake::arrow::array::new_null_array(f.data_type(), rows),
            };
            cols.push(col);
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::Batch {
            table: self.name.clone(),
            message: e.to_string(),
        })
    }

    /// One commit that replaces the table's column list with `arrow` and its stored
    /// source schema with `ts`, carrying `state`. No data files change: readers find
    /// added columns NULL in older files.
    async fn replace_metadata(
        &mut self,
        ts: &TableSchema,
        kind: TableKind,
        arrow: SchemaRef,
        state: SourceState,
    ) -> Result<()> {
        self.check_fresh().await?;
        let (props, next) = self.commit_properties(&state);
        let json = serde_json::to_string(ts).map_err(|e| Error::Batch {
            table: self.name.clone(),
            message: e.to_string(),
        })?;
        let st: StructType = arrow.as_ref().try_into_kernel().map_err(|e| Error::Batch {
            table: self.name.clone(),
            message: e.to_string(),
        })?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta_err(e))?;
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&st)
            .and_then(|m| m.add_config_key(SCHEMA_KEY.to_string(), json.clone()))
            .map_err(|e| Error::Batch {
                table: self.name.clone(),
                message: format!("new table metadata: {e}"),
            })?;
        let operation = deltalake::protocol::DeltaOperation::SetTableProperties {
            properties: [(SCHEMA_KEY.to_string(), json)].into_iter().collect(),
        };
        self.commit_actions(props, vec![Action::Metadata(metadata)], operation)
            .await?;
        self.schema = arrow;
        self.stored_from = stored_from(ts, kind);
        debug!(table = %self.name, txn = next, "schema changed");
        self.committed = Committed { txn: next, state };
        Ok(())
    }

    /// Commit `actions` as one Delta commit on the loaded snapshot and load the result.
    async fn commit_actions(
        &mut self,
        props: CommitProperties,
        actions: Vec<Action>,
        operation: deltalake::protocol::DeltaOperation,
    ) -> Result<()> {
        let snapshot = self.table.snapshot().map_err(|e| self.delta_err(e))?;
        CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(|e| self.delta_err(e))?;
        self.table
            .update_state()
            .await
            .map_err(|e| self.delta_err(e))
    }

    fn delta_err(&self, source: deltalake::DeltaTableError) -> Error {
        Error::Delta {
            table: self.name.clone(),
            source,
        }
    }

    /// Refuse to commit if anyone else committed since we read the table: delta-rs does
    /// not check that a txn version is newer than the recorded one, so we do.
    async fn check_fresh(&mut self) -> Result<()> {
        self.table
            .update_state()
            .await
            .map_err(|e| self.delta_err(e))?;
        let found = txn_version(&self.table)
            .await
            .map_err(|e| self.delta_err(e))?
            .unwrap_or(0);
        if found != self.committed.txn {
            return Err(Error::StaleWriter {
                table: self.name.clone(),
                expected: self.committed.txn,
                found,
            });
        }
        Ok(())
    }

    fn commit_properties(&self, state: &SourceState) -> (CommitProperties, i64) {
        let next = self.committed.txn + 1;
        let info = serde_json::json!({ "txn": next, "state": state });
        (
            CommitProperties::default()
                .with_application_transaction(Transaction::new(APP_ID, next))
                .with_metadata([(INFO_KEY.to_string(), info)]),
            next,
        )
    }

    async fn append(&mut self, batches: Vec<RecordBatch>, state: SourceState) -> Result<()> {
        let mut batches = batches
            .into_iter()
            .map(|b| self.to_stored(b))
            .collect::<Result<Vec<_>>>()?;
        self.check_fresh().await?;
        let (props, next) = self.commit_properties(&state);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if batches.is_empty() {
            // A commit that only moves the position (e.g. "snapshot done").
            batches.push(RecordBatch::new_empty(self.schema.clone()));
        }
        self.table = self
            .table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties(&self.schema))
            .with_commit_properties(props)
            .await
            .map_err(|e| self.delta_err(e))?;
        debug!(table = %self.name, rows, txn = next, "appended");
        self.committed = Committed { txn: next, state };
        Ok(())
    }

    /// Whether rows of `schema` are stored as they are: same column names and types in
    /// the same order (no column moved by a schema change), so a file written for
    /// them holds the table's own columns.
    fn stores_as_is(&self, schema: &Schema) -> bool {
        schema.fields().len() == self.schema.fields().len()
            && schema
                .fields()
                .iter()
                .zip(self.schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
    }

    /// The columns this table's files keep statistics for, when set
    /// (`delta.dataSkippingStatsColumns`); `None` means Delta's default.
    fn stats_columns(&self) -> Option<Vec<String>> {
        let snapshot = self.table.snapshot().ok()?;
        let cols = snapshot
            .table_config()
            .data_skipping_stats_columns
            .as_ref()?;
        Some(cols.iter().map(|c| c.to_string()).collect())
    }

    /// The data files the table's newest commit added.
    async fn added_by_last_commit(&self) -> Result<Vec<deltalake::kernel::Add>> {
        let version = self.table.version().unwrap_or_default();
        let entry = self
            .table
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(|e| self.delta_err(e))?
            .unwrap_or_default();
        let mut adds = Vec::new();
        for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| Error::Batch {
                    table: self.name.clone(),
                    message: format!("commit {version} is not JSON lines: {e}"),
                })?;
            if let Some(add) = action.get("add") {
                adds.push(
                    serde_json::from_value(add.clone()).map_err(|e| Error::Batch {
                        table: self.name.clone(),
                        message: format!("add action of commit {version}: {e}"),
                    })?,
                );
            }
        }
        Ok(adds)
    }

    /// Add to this table, in one commit carrying `state`, copies of data files `from`
    /// wrote (`adds`, its newest commit's): the files are copied byte for byte, not
    /// encoded again, and their statistics kept for this table's stats columns.
    /// The caller has checked that the files hold this table's columns as stored
    /// ([`Target::stores_as_is`]); columns this table lacks are ignored by readers.
    async fn adopt(
        &mut self,
        from: &Target,
        adds: Vec<deltalake::kernel::Add>,
        state: SourceState,
    ) -> Result<()> {
        self.check_fresh().await?;
        let (props, next) = self.commit_properties(&state);
        let keep: Vec<String> = self.stats_columns().unwrap_or_default();
        let (src, dst) = (from.table.object_store(), self.table.object_store());
        // Both tables sit in one warehouse, so the unprefixed store sees both: a copy
        // there is a hard link on a local disk and a server-side copy on S3, and no
        // bytes pass through tidemark (a plain read and write where it fails).
        let root = self.table.log_store().root_object_store(None);
        let under = |url: &Url| object_store::path::Path::from_url_path(url.path()).ok();
        let roots = under(&from.url).zip(under(&self.url));
        let mut actions = Vec::with_capacity(adds.len());
        for mut add in adds {
            let path =
                object_store::path::Path::from_url_path(&add.path).map_err(|e| Error::Batch {
                    table: self.name.clone(),
                    message: format!("file {} of {}: {e}", add.path, from.name),
                })?;
            let store_err = |e: object_store::Error| self.delta_err(e.into());
            let linked = match &roots {
                Some((s, d)) => {
                    let full = |root: &object_store::path::Path| {
                        object_store::path::Path::from_iter(root.parts().chain(path.parts()))
                    };
                    root.copy(&full(s), &full(d)).await.is_ok()
                }
                None => false,
            };
            if !linked {
                let bytes = src
                    .get(&path)
                    .await
                    .map_err(store_err)?
                    .bytes()
                    .await
                    .map_err(store_err)?;
                dst.put(&path, bytes.into()).await.map_err(store_err)?;
            }
            add.stats = add.stats.as_deref().and_then(|s| keep_stats(s, &keep));
            actions.push(Action::Add(add));
        }
        let operation = deltalake::protocol::DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        self.commit_actions(props, actions, operation).await?;
        debug!(table = %self.name, from = %from.name, txn = next, "appended (files shared)");
        self.committed = Committed { txn: next, state };
        Ok(())
    }

    /// Write the rows of `df` (streamed, not collected, in `df`'s order) in one commit
    /// carrying `state`: replacing the table's rows (`Overwrite`, taking the plan's
    /// columns as the table's) or adding to them (`Append`). Returns the rows written.
    async fn write_plan(
        &mut self,
        df: deltalake::datafusion::prelude::DataFrame,
        state: SourceState,
        mode: SaveMode,
        props: WriterProperties,
    ) -> Result<u64> {
        self.check_fresh().await?;
        let (commit, next) = self.commit_properties(&state);
        let session = ordered_write_session().map_err(|e| self.delta_err(e))?;
        let plan = ordered_source(df).await.map_err(|e| Error::Batch {
            table: self.name.clone(),
            message: format!("planning the rows to write: {e}"),
        })?;
        let mut write = self
            .table
            .clone()
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(session)
            .with_save_mode(mode)
            .with_writer_properties(props)
            .with_commit_properties(commit);
        if mode == SaveMode::Overwrite {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite);
        }
        let table = write.await.map_err(|e| self.delta_err(e))?;
        // The row count is in the commit's operation metrics; it is only reported.
        let mut last = table.history(Some(1));
        let rows = match last.try_next().await {
            Ok(Some(ci)) => ci
                .info
                .get("operationMetrics")
                .and_then(|m| m.get("num_added_rows"))
                .and_then(|n| n.as_u64())
                .unwrap_or(0),
            _ => 0,
        };
        drop(last);
        self.schema = delta_arrow(&table, &self.name)?;
        self.table = table;
        debug!(table = %self.name, rows, txn = next, "written");
        self.committed = Committed { txn: next, state };
        Ok(rows)
    }

    async fn merge(
        &mut self,
        ctx: &SessionContext,
        rows: RecordBatch,
        keys: &[&str],
        state: SourceState,
    ) -> Result<()> {
        self.check_fresh().await?;
        let (props, next) = self.commit_properties(&state);
        let df = ctx.read_batch(rows).map_err(|e| Error::Batch {
            table: self.name.clone(),
            message: e.to_string(),
        })?;
        let q = |alias: &str, c: &str| col(Column::new(Some(alias), c));
        let predicate = keys
            .iter()
            .map(|k| q("t", k).eq(q("s", k)))
            .reduce(Expr::and)
            .expect("tables have a key");
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let merge_err = |e| Error::Delta {
            table: self.name.clone(),
            source: e,
        };
        let (table, metrics) = self
            .table
            .clone()
            .merge(df, predicate)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_commit_properties(props)
            .with_writer_properties(writer_properties(&self.schema))
            .when_matched_delete(|d| d.predicate(q("s", DELETE_FLAG)))
            .map_err(merge_err)?
            .when_matched_update(|mut u| {
                for n in &names {
                    u = u.update(Column::new_unqualified(n), q("s", n));
                }
                u
            })
            .map_err(merge_err)?
            .when_not_matched_insert(|mut i| {
                i = i.predicate(!q("s", DELETE_FLAG));
                for n in &names {
                    i = i.set(Column::new_unqualified(n), q("s", n));
                }
                i
            })
            .map_err(merge_err)?
            .await
            .map_err(merge_err)?;
        debug!(table = %self.name, inserted = metrics.num_target_rows_inserted,
            updated = metrics.num_target_rows_updated, deleted = metrics.num_target_rows_deleted,
            txn = next, "merged");
        self.table = table;
        self.committed = Committed { txn: next, state };
        Ok(())
    }
}

async fn txn_version(table: &DeltaTable) -> deltalake::DeltaResult<Option<i64>> {
    table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), APP_ID)
        .await
}

/// What a Delta table tidemark wrote has committed (its txn version and source
/// state), for readers such as the query engine.
pub async fn committed_state(table: &DeltaTable) -> Result<Committed> {
    let name = table.table_url().to_string();
    read_committed(table, &name).await
}

/// Commit properties for a commit that moves no position (OPTIMIZE, VACUUM): it
/// repeats the table's committed txn version and state in its commit info.
///
/// Why: the state lives in commit info, which Delta checkpoints do not keep, and
/// Delta's expired-log cleanup deletes commit files older than the log retention
/// behind a checkpoint. A table that only gets maintenance commits for that long (a
/// parked, dropped or snapshot-only table) would lose the commit holding its state.
/// Cleanup never deletes the newest commit, so when every commit tidemark makes carries
/// the state, the newest one always has it. `read_committed` matches on the txn
/// version, so a maintenance commit that raced a data commit and carries the older
/// version is skipped, not believed.
pub(crate) fn carry_properties(committed: &Committed) -> CommitProperties {
    if committed.txn == 0 {
        return CommitProperties::default();
    }
    let info = serde_json::json!({ "txn": committed.txn, "state": committed.state });
    CommitProperties::default().with_metadata([(INFO_KEY.to_string(), info)])
}

/// The committed state of a table: its txn version and the state in that commit's info.
pub(crate) async fn read_committed(table: &DeltaTable, name: &str) -> Result<Committed> {
    let delta_err = |source| Error::Delta {
        table: name.to_string(),
        source,
    };
    let Some(txn) = txn_version(table).await.map_err(delta_err)? else {
        return Ok(Committed::default());
    };
    // Newest first; maintenance commits repeat the state (`carry_properties`), and
    // other writers' commits (an external OPTIMIZE) carry none and are skipped. The state is nearly always in the last few commits, so look there
    // first: listing the whole log grows with the table's commit count.
    for limit in [Some(32), None] {
        let mut history = table.history(limit);
        while let Some(info) = history.try_next().await.map_err(delta_err)? {
            if let Some(v) = info.info.get(INFO_KEY) {
                if v.get("txn").and_then(|t| t.as_i64()) == Some(txn) {
                    let state: SourceState =
                        serde_json::from_value(v["state"].clone()).map_err(|e| Error::Schema {
                            table: name.to_string(),
                            message: format!(
                                "unreadable tidemark state in commit with txn {txn}: {e}"
                            ),
                        })?;
                    return Ok(Committed { txn, state });
                }
            }
        }
    }
    Err(Error::Schema {
        table: name.to_string(),
        message: format!(
            "the table's transaction version is {txn} but no commit in the Delta log carries its tidemark state (was the log cleaned up?); resnapshot the table"
        ),
    })
}

/// Does the table have the columns `want` names? The current table must have exactly
/// those; a history log may have more (older storage of moved or dropped columns).
fn check_schema(
    table: &DeltaTable,
    want: &SchemaRef,
    name: &str,
    source: &str,
    kind: TableKind,
) -> Result<()> {
    let have = delta_struct(table, name)?;
    let want_k: StructType = want.as_ref().try_into_kernel().map_err(|e| Error::Batch {
        table: name.to_string(),
        message: e.to_string(),
    })?;
    let describe = |s: &StructType| {
        s.fields()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
    };
    let (h, w) = (describe(&have), describe(&want_k));
    // A history log's columns are added in the order schema changes came, after
    // tidemark's; only their presence matters.
    let matches = match kind {
        TableKind::History | TableKind::Closed => w.iter().all(|c| h.contains(c)),
        // Current tables landed before `_source_pos` and `_seq` were kept lack them
        // until their first compaction (writes leave them out meanwhile).
        TableKind::Current => {
            h == w
                || h == w
                    .iter()
                    .filter(|c| {
                        !LATER_CURRENT
                            .iter()
                            .any(|n| c.starts_with(&format!("{n} ")))
                    })
                    .cloned()
                    .collect::<Vec<_>>()
        }
    };
    if !matches {
        let added: Vec<_> = w.iter().filter(|c| !h.contains(c)).cloned().collect();
        let gone: Vec<_> = h.iter().filter(|c| !w.contains(c)).cloned().collect();
        return Err(Error::Schema {
            table: name.to_string(),
            message: format!(
                "the source table no longer matches the landed table (at the source now: [{}]; landed: [{}]); land it again with `tidemark snapshot --resnapshot --table {}`",
                added.join(", "),
                gone.join(", "),
                source
            ),
        });
    }
    Ok(())
}

/// What a compaction of a merge-on-read current table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// History rows folded in.
    pub tail_rows: u64,
    /// Rows in the new base.
    pub rows: u64,
    /// The new mark.
    pub merged_through_us: i64,
}

/// Writes one source table's current and history tables.
pub struct TableWriter {
    schema: Arc<TableSchema>,
    current: Target,
    history: Target,
    /// The closed history (see `closed.rs`), written by compaction only.
    closed: Target,
    current_stale: bool,
    ctx: SessionContext,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &self.schema.name.sql())
            .field("current", &self.current.committed)
            .field("history", &self.history.committed)
            .finish()
    }
}

impl TableWriter {
    /// Open (creating if needed) both Delta tables of `schema` and read what they have
    /// committed.
    pub async fn open(wh: &Warehouse, schema: Arc<TableSchema>) -> Result<Self> {
        // A read-only warehouse (another environment's) has no writers: its tables'
        // store refuses writes anyway, this says so before anything is tried.
        wh.refuse_read_only(&format!("writing {}", schema.name.sql()))?;
        let history = Target::open(
            wh,
            &schema,
            TableKind::History,
            schema.history_write_schema(),
            true,
        )
        .await?;
        let current = Target::open(
            wh,
            &schema,
            TableKind::Current,
            schema.current_schema(),
            false,
        )
        .await?;
        let closed =
            Target::open(wh, &schema, TableKind::Closed, closed_arrow(&schema), false).await?;
        // The current table is derived from history. A crash between the two commits
        // of a schema change leaves it with the old shape while history has the new
        // one; `current_stale` tells, and `evolve_current` mends it.
        let current_stale = stored_schema(&history.table).as_ref() == Some(schema.as_ref())
            && stored_schema(&current.table).as_ref() != Some(schema.as_ref());
        if !current_stale && current.committed.txn > 0 {
            check_schema(
                &current.table,
                &schema.current_schema(),
                &current.name,
                &schema.name.source(),
                TableKind::Current,
            )?;
        }
        Ok(Self {
            schema,
            current,
            history,
            closed,
            current_stale,
            ctx: SessionContext::new(),
        })
    }

    /// True when the current table still has the shape from before a schema change
    /// (see [`TableWriter::evolve_current`]).
    pub fn current_stale(&self) -> bool {
        self.current_stale
    }

    /// Apply a schema change (see `tidemark_core::evolve`): the history log gets the
    /// `added` columns and the new schema in one commit carrying `state` (the position
    /// past the DDL statement); then the current table follows.
    pub async fn evolve(
        &mut self,
        evolved: TableSchema,
        added: &[(String, tidemark_core::schema::ColumnSchema)],
        state: SourceState,
    ) -> Result<()> {
        let mut fields: Vec<Field> = self
            .history
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (name, c) in added {
            if !fields.iter().any(|f| f.name() == name) {
                fields.push(Field::new(name, c.mysql_type().arrow_type(), true));
            }
        }
        let evolved = Arc::new(evolved);
        self.history
            .replace_metadata(
                &evolved,
                TableKind::History,
                Arc::new(Schema::new(fields)),
                state,
            )
            .await?;
        self.schema = evolved;
        self.current_stale = true;
        self.evolve_current().await
    }

    /// Give the current table the schema's shape. Its rows are not rewritten here: the
    /// merge-on-read mark moves to the start of time, so reads take every row from
    /// the history log (which has the new shape) until the next compaction writes a
    /// new base.
    pub async fn evolve_current(&mut self) -> Result<()> {
        if !self.current_stale {
            return Ok(());
        }
        // Compactions commit to the current table from their own writer: start from
        // what it has now.
        self.current
            .table
            .update_state()
            .await
            .map_err(|e| self.current.delta_err(e))?;
        self.current.committed = read_committed(&self.current.table, &self.current.name).await?;
        let state = SourceState {
            merged_through_us: Some(i64::MIN),
            ..self.current.committed.state.clone()
        };
        let schema = self.schema.clone();
        self.current
            .replace_metadata(&schema, TableKind::Current, schema.current_schema(), state)
            .await?;
        self.current_stale = false;
        Ok(())
    }

    /// The table's schema.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// What one of the two tables has committed.
    pub fn committed(&self, kind: TableKind) -> &Committed {
        match kind {
            TableKind::Current => &self.current.committed,
            TableKind::History => &self.history.committed,
            TableKind::Closed => &self.closed.committed,
        }
    }

    /// Location of one of the two tables.
    pub fn url(&self, kind: TableKind) -> &Url {
        match kind {
            TableKind::Current => &self.current.url,
            TableKind::History => &self.history.url,
            TableKind::Closed => &self.closed.url,
        }
    }

    fn target(&mut self, kind: TableKind) -> &mut Target {
        match kind {
            TableKind::Current => &mut self.current,
            TableKind::History => &mut self.history,
            TableKind::Closed => &mut self.closed,
        }
    }

    /// Append rows that are new to `kind` (snapshot chunks: no key can already be
    /// there) in one commit that also carries `state`.
    pub async fn append(
        &mut self,
        kind: TableKind,
        batches: &[ChangeBatch],
        ingest_ts_us: i64,
        state: SourceState,
    ) -> Result<()> {
        let rows = stored_rows(kind, batches, ingest_ts_us)?;
        self.target(kind).append(rows, state).await
    }

    /// Append the same new rows to both tables, as two concurrent commits each carrying
    /// `state`. Either commit may land without the other (a crash in between); callers
    /// repair by comparing the two tables' states, whichever is behind.
    pub async fn append_both(
        &mut self,
        batches: &[ChangeBatch],
        ingest_ts_us: i64,
        state: SourceState,
    ) -> Result<()> {
        let current = stored_rows(TableKind::Current, batches, ingest_ts_us)?;
        let history = stored_rows(TableKind::History, batches, ingest_ts_us)?;
        if self.can_share_files(&current, &history) {
            // Encode once: a history row is the current row plus `_valid_from`, so
            // the history's files serve the current table as they are (readers ignore
            // the extra column). History commits first; a crash before the current
            // commit leaves the current table behind, which callers repair as below.
            self.history.append(history, state.clone()).await?;
            let adds = self.history.added_by_last_commit().await?;
            return self.current.adopt(&self.history, adds, state).await;
        }
        let (c, h) = (&mut self.current, &mut self.history);
        // Parquet encoding dominates a snapshot; the two tables encode on two cores.
        let (rc, rh) = tokio::join!(c.append(current, state.clone()), h.append(history, state));
        rc.and(rh)
    }

    /// Whether the history files written for `history` can be the current table's
    /// files for `current` too: both stored as they are, every current column in the
    /// history files with its type, and statistics kept there for every column the
    /// current table keeps them for.
    fn can_share_files(&self, current: &[RecordBatch], history: &[RecordBatch]) -> bool {
        let (Some(c), Some(h)) = (current.first(), history.first()) else {
            return false;
        };
        let stats_covered = match (self.current.stats_columns(), self.history.stats_columns()) {
            (Some(c), Some(h)) => c.iter().all(|x| h.contains(x)),
            _ => false,
        };
        stats_covered
            && self.current.stores_as_is(&c.schema())
            && self.history.stores_as_is(&h.schema())
            && c.schema().fields().iter().all(|f| {
                h.schema()
                    .field_with_name(f.name())
                    .is_ok_and(|g| g.data_type() == f.data_type())
            })
    }

    /// Apply changes to `kind`: history appends every change; current upserts the last
    /// change per key and deletes keys whose last change is a delete.
    pub async fn apply(
        &mut self,
        kind: TableKind,
        batch: &ChangeBatch,
        ingest_ts_us: i64,
        state: SourceState,
    ) -> Result<()> {
        match kind {
            TableKind::History => {
                let rows = history_rows(batch, ingest_ts_us)?;
                self.history.append(vec![rows], state).await
            }
            TableKind::Current => {
                let rows = self.merge_source(batch, ingest_ts_us)?;
                let keys = self.schema.key_names();
                self.current.merge(&self.ctx, rows, &keys, state).await
            }
            TableKind::Closed => Err(closed_by_compaction(&self.closed.name)),
        }
    }

    /// The merge-on-read mark of the current table (see `mor.rs`): `None` while the
    /// stored current table is complete by itself.
    pub fn merged_through(&self) -> Option<i64> {
        self.current.committed.state.merged_through_us
    }

    /// A fresh `_ingest_ts` for a history commit: now, but above every one written
    /// before and above the current table's mark, even if the clock stepped back.
    pub fn next_ingest_us(&self) -> i64 {
        let floor = [
            self.history.committed.state.last_ingest_us,
            self.current.committed.state.merged_through_us,
        ]
        .into_iter()
        .flatten()
        .max()
        .map_or(i64::MIN, |m| m + 1);
        chrono::Utc::now().timestamp_micros().max(floor)
    }

    /// Fold the tail into the base when it has reached the size at which `tidemark run`
    /// compacts ([`crate::mor::compaction_due`]); `None` when it has not (or the table
    /// is not merge-on-read). For writers that land in batches (watermark pulls) and
    /// keep no running count of the tail: both counts come from the tables.
    pub async fn compact_if_due(&mut self) -> Result<Option<Compaction>> {
        use deltalake::datafusion::functions_aggregate::expr_fn::count;
        use deltalake::datafusion::logical_expr::lit;
        let Some(mark) = self.merged_through() else {
            return Ok(None);
        };
        let name = self.current.name.clone();
        let df_err = batch_err(&name);
        let ctx = SessionContext::new();
        let base = ctx
            .read_table(self.current.table.table_provider().await.map_err(df_err)?)
            .map_err(df_err)?;
        let log = ctx
            .read_table(self.history.table.table_provider().await.map_err(df_err)?)
            .map_err(df_err)?;
        let tail = crate::mor::tail(log, mark, None).map_err(df_err)?;
        let (base, tail) = (
            count_of(base, count(lit(1))).await.map_err(df_err)?,
            count_of(tail, count(lit(1))).await.map_err(df_err)?,
        );
        if !crate::mor::compaction_due(tail, base) {
            return Ok(None);
        }
        self.compact_current().await
    }

    /// Make the current table a merge-on-read base (a commit with no data): from here
    /// on, history rows landed after the returned mark are applied to it on read.
    pub async fn start_merge_on_read(&mut self) -> Result<i64> {
        if let Some(m) = self.merged_through() {
            return Ok(m);
        }
        let mark = self.next_ingest_us();
        let state = SourceState {
            merged_through_us: Some(mark),
            ..self.current.committed.state.clone()
        };
        self.current.append(Vec::new(), state).await?;
        self.start_closed(mark).await?;
        Ok(mark)
    }

    /// Give a table that starts merge-on-read a closed history at once, when nothing
    /// has been closed yet: its log holds only the snapshot's reads, the same rows as
    /// the base (or nothing). Time travel then reads the closed layout from the first
    /// change on, instead of the window over the log until the first compaction. A
    /// table with history already (landed by MERGE or pulls before) gets its closed
    /// history from its first compaction, which rebuilds it from the log.
    async fn start_closed(&mut self, mark: i64) -> Result<()> {
        use deltalake::datafusion::functions_aggregate::expr_fn::count;
        use deltalake::datafusion::logical_expr::{lit, when};
        use tidemark_core::schema::OP;

        let complete = LATER_CURRENT
            .iter()
            .all(|c| self.current.schema.field_with_name(c).is_ok());
        if !complete || !crate::closed::layout_applies(&self.schema) {
            return Ok(());
        }
        let name = self.history.name.clone();
        let df_err = batch_err(&name);
        let ctx = SessionContext::new();
        let changes = count(
            when(col(OP).not_eq(lit("r")), lit(1))
                .end()
                .map_err(df_err)?,
        );
        let log = ctx
            .read_table(self.history.table.table_provider().await.map_err(df_err)?)
            .map_err(df_err)?;
        let base = ctx
            .read_table(self.current.table.table_provider().await.map_err(df_err)?)
            .map_err(df_err)?;
        let only_reads = count_of(log.clone(), changes).await.map_err(df_err)? == 0
            && count_of(log, count(lit(1))).await.map_err(df_err)?
                == count_of(base, count(lit(1))).await.map_err(df_err)?;
        if !only_reads {
            return Ok(());
        }
        let state = SourceState {
            closed_through_us: Some(mark),
            closed_since_us: Some(mark),
            ..self.closed.committed.state.clone()
        };
        self.closed.append(Vec::new(), state).await
    }

    /// Append changes to the history log only (merge-on-read current tables), in one
    /// commit carrying `state`; returns the rows' `_ingest_ts`.
    pub async fn append_history(&mut self, batch: &ChangeBatch, state: SourceState) -> Result<i64> {
        let ingest = self.next_ingest_us();
        let state = SourceState {
            last_ingest_us: Some(ingest),
            ..state
        };
        let rows = if batch.data.num_rows() > 0 {
            vec![history_rows(batch, ingest)?]
        } else {
            Vec::new()
        };
        self.history.append(rows, state).await?;
        Ok(ingest)
    }

    /// Re-read what both tables have committed, including other writers' commits.
    pub async fn reload(&mut self) -> Result<()> {
        for t in [&mut self.history, &mut self.current] {
            t.table.update_state().await.map_err(|e| t.delta_err(e))?;
            t.committed = read_committed(&t.table, &t.name).await?;
        }
        Ok(())
    }

    /// [`TableWriter::append_history`] for a table that other writers append to as
    /// well (workers of one Kafka consumer group): the commit's state is `merge` of
    /// the table's newest state, and a commit that loses a race with another writer's
    /// is retried on the fresh state. Every history commit carries the `tidemark`
    /// application transaction, which delta-rs treats as a conflict between two
    /// concurrent commits, so the table state is updated as by compare-and-swap and
    /// `_ingest_ts` still grows with each commit (which merge-on-read relies on).
    ///
    /// `merge` may refuse the fresh state (`Err`): then nothing is committed and the
    /// refusal is returned, so a writer that finds another one has taken over its
    /// work (a partition landed by its new owner) never overwrites it.
    pub async fn append_history_shared<E>(
        &mut self,
        batch: &ChangeBatch,
        merge: impl Fn(SourceState) -> std::result::Result<SourceState, E>,
    ) -> Result<std::result::Result<i64, E>> {
        use backon::BackoffBuilder;
        // Competing writers back off with jitter, so they spread out rather than
        // collide again: 10 ms doubling to 200 ms, 50 times.
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(10))
            .with_max_delay(std::time::Duration::from_millis(200))
            .with_max_times(50)
            .with_jitter()
            .build();
        loop {
            self.reload().await?;
            let state = match merge(self.history.committed.state.clone()) {
                Ok(s) => s,
                Err(refused) => return Ok(Err(refused)),
            };
            match self.append_history(batch, state).await {
                Err(e) if e.is_conflict() => match backoff.next() {
                    Some(pause) => {
                        debug!(table = %self.history.name, "concurrent commit; retrying on the fresh state");
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(e),
                },
                r => return r.map(Ok),
            }
        }
    }

    /// Write the versions a [`SourceState::pending_fill`] owes: every row the table
    /// has now, with the added columns set to their defaults, as an update at the
    /// statement — the server changed every row that way, without row events. One
    /// history commit clears the pending fill; returns the rows written.
    pub async fn fill_defaults(&mut self) -> Result<u64> {
        let Some(fill) = self.history.committed.state.pending_fill.clone() else {
            return Ok(0);
        };
        let name = self.current.name.clone();
        let df_err = batch_err(&name);
        // The defaults as typed values, through the same decoders as binlog rows.
        let mut one = tidemark_core::change::ChangeBatchBuilder::new(self.schema.clone(), 1);
        let cells: Vec<Option<&[u8]>> = self
            .schema
            .columns
            .iter()
            .map(|c| {
                fill.values
                    .iter()
                    .find(|(n, _)| n == &c.name)
                    .map(|(_, v)| v.as_bytes())
            })
            .collect();
        one.push_text_row(
            cells,
            tidemark_core::change::Op::Update,
            fill.source_ts_us,
            &fill.position,
            fill.seq,
        )
        .map_err(|e| Error::Batch {
            table: name.clone(),
            message: format!("a default of an added column: {e}"),
        })?;
        let one = one.finish().map_err(|e| Error::Batch {
            table: name.clone(),
            message: e.to_string(),
        })?;
        let df = self.current_state(&SessionContext::new()).await?;
        let mut exprs = Vec::new();
        for (i, c) in self.schema.columns.iter().enumerate() {
            let e = if fill.values.iter().any(|(n, _)| n == &c.name) {
                let v = deltalake::datafusion::common::ScalarValue::try_from_array(
                    one.data.column(i),
                    0,
                )
                .map_err(df_err)?;
                deltalake::datafusion::logical_expr::lit(v)
            } else {
                col(Column::new_unqualified(&c.name))
            };
            exprs.push(e.alias(&c.name));
        }
        let rows = df
            .select(exprs)
            .map_err(df_err)?
            .collect()
            .await
            .map_err(df_err)?;
        let change_schema = self.schema.change_schema();
        let n_cols = self.schema.columns.len();
        let mut batches = Vec::new();
        for b in rows.into_iter().filter(|b| b.num_rows() > 0) {
            let n = b.num_rows();
            let mut cols: Vec<ArrayRef> = b.columns()[..n_cols]
                .iter()
                .zip(change_schema.fields().iter())
                .map(|(c, f)| conform(c, f, &name))
                .collect::<Result<_>>()?;
            cols.extend(Self::meta_columns(
                n,
                "u",
                fill.source_ts_us,
                &fill.position,
                fill.seq,
            ));
            batches.push(ChangeBatch {
                table: self.schema.clone(),
                data: RecordBatch::try_new(change_schema.clone(), cols).map_err(|e| {
                    Error::Batch {
                        table: name.clone(),
                        message: e.to_string(),
                    }
                })?,
            });
        }
        let written = batches.iter().map(|b| b.data.num_rows() as u64).sum();
        let ingest = self.next_ingest_us();
        let state = SourceState {
            pending_fill: None,
            last_ingest_us: Some(ingest),
            ..self.history.committed.state.clone()
        };
        let stored = stored_rows(TableKind::History, &batches, ingest)?;
        self.history.append(stored, state).await?;
        Ok(written)
    }

    /// The table's rows now (the merge-on-read view, or the stored current table).
    pub(crate) async fn current_state(
        &self,
        ctx: &SessionContext,
    ) -> Result<deltalake::datafusion::prelude::DataFrame> {
        let name = self.current.name.clone();
        let df_err = batch_err(&name);
        let base = self.current.table.table_provider().await.map_err(df_err)?;
        Ok(match self.merged_through() {
            Some(mark) => {
                let log = crate::mor::logical_log(
                    ctx,
                    &self.schema,
                    self.history.table.table_provider().await.map_err(df_err)?,
                )
                .map_err(df_err)?;
                crate::mor::plan_current(ctx, &self.schema, base, log, mark, None)
                    .await
                    .map_err(df_err)?
            }
            None => ctx.read_table(base).map_err(df_err)?,
        })
    }

    /// `_op`, `_source_ts`, `_source_pos`, `_seq` columns of `n` rows alike.
    fn meta_columns(
        n: usize,
        op: &str,
        source_ts_us: i64,
        position: &str,
        seq: i64,
    ) -> [ArrayRef; 4] {
        use deltalake::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
        [
            Arc::new(StringArray::from(vec![op; n])),
            Arc::new(TimestampMicrosecondArray::from_value(source_ts_us, n).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![position; n])),
            Arc::new(Int64Array::from_value(seq, n)),
        ]
    }

    /// Delete every row the table has now, as of `source_ts_us` (a TRUNCATE or DROP
    /// TABLE at the source removed them without row events): one history commit of
    /// tombstones (key only) carrying `state`. Returns how many rows it closed.
    pub async fn delete_all(
        &mut self,
        source_ts_us: i64,
        position: &str,
        seq: i64,
        state: SourceState,
    ) -> Result<u64> {
        let name = self.current.name.clone();
        let df_err = batch_err(&name);
        let df = self.current_state(&SessionContext::new()).await?;
        let keys = self.schema.key_names();
        let keys_df = df
            .select(
                keys.iter()
                    .map(|k| col(Column::new_unqualified(*k)))
                    .collect::<Vec<_>>(),
            )
            .map_err(df_err)?;
        let key_batches = keys_df.collect().await.map_err(df_err)?;
        let change_schema = self.schema.change_schema();
        let mut parts = Vec::new();
        for b in &key_batches {
            let n = b.num_rows();
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(change_schema.fields().len());
            for (i, f) in change_schema.fields()[..self.schema.columns.len()]
                .iter()
                .enumerate()
            {
                cols.push(match self.schema.key.iter().position(|&k| k == i) {
                    Some(k) => conform(b.column(k), f, &name)?,
                    None => deltalake::arrow::array::new_null_array(f.data_type(), n),
                });
            }
            cols.extend(Self::meta_columns(n, "d", source_ts_us, position, seq));
            parts.push(
                RecordBatch::try_new(change_schema.clone(), cols).map_err(|e| Error::Batch {
                    table: name.clone(),
                    message: e.to_string(),
                })?,
            );
        }
        let data =
            deltalake::arrow::compute::concat_batches(&change_schema, &parts).map_err(|e| {
                Error::Batch {
                    table: name.clone(),
                    message: e.to_string(),
                }
            })?;
        let rows = data.num_rows() as u64;
        let batch = ChangeBatch {
            table: self.schema.clone(),
            data,
        };
        self.append_history(&batch, state).await?;
        Ok(rows)
    }

    /// Fold the history tail into a new current base and move the mark (a Delta
    /// overwrite of the current table, sorted by key; earlier bases stay readable as
    /// older Delta versions until VACUUM). First the versions the tail closes are
    /// appended to the closed history (see `closed.rs`), or, when the closed history
    /// cannot be extended at this mark, it is rebuilt from the whole log. `None` when
    /// the table is not merge-on-read, or its tail is empty and its closed history
    /// serves it already.
    pub async fn compact_current(&mut self) -> Result<Option<Compaction>> {
        use deltalake::datafusion::functions_aggregate::expr_fn::{count, max};
        use deltalake::datafusion::logical_expr::lit;
        use tidemark_core::schema::{CLOSED_MARK, INGEST_TS};

        let Some(mark) = self.merged_through() else {
            return Ok(None);
        };
        let name = self.current.name.clone();
        let df_err = batch_err(&name);
        for t in [&mut self.history, &mut self.closed] {
            t.table.update_state().await.map_err(|e| t.delta_err(e))?;
            t.committed = read_committed(&t.table, &t.name).await?;
        }
        let ctx = SessionContext::new();
        let log = crate::mor::logical_log(
            &ctx,
            &self.schema,
            self.history.table.table_provider().await.map_err(df_err)?,
        )
        .map_err(df_err)?;
        let stats = crate::mor::tail(ctx.read_table(log.clone()).map_err(df_err)?, mark, None)
            .map_err(df_err)?
            .aggregate(vec![], vec![max(col(INGEST_TS)), count(lit(1))])
            .map_err(df_err)?
            .collect()
            .await
            .map_err(df_err)?;
        let (tail_max, tail_rows) = match stats.first() {
            Some(b) if b.num_rows() == 1 => {
                let max = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::TimestampMicrosecondArray>()
                    .filter(|a| deltalake::arrow::array::Array::is_valid(a, 0))
                    .map(|a| a.value(0));
                let n = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::Int64Array>()
                    .map_or(0, |a| a.value(0));
                (max, n)
            }
            _ => (None, 0),
        };
        // The closed history extends at this mark only if it holds exactly what was
        // closed up to it and the base has the columns a closure needs. A table whose
        // history still shows a dropped column keeps none: its base does not hold the
        // old values of those columns, so readers take the log window for it.
        let base_complete = LATER_CURRENT
            .iter()
            .all(|c| self.current.schema.field_with_name(c).is_ok());
        let layout = crate::closed::layout_applies(&self.schema);
        let extend = layout
            && base_complete
            && crate::closed::serves(&self.closed.committed, Some(mark))
            && self.closed.committed.state.closed_through_us == Some(mark);
        // The new base from the old one and the tail, or from the whole log.
        let incremental = if layout {
            extend
        } else {
            base_complete && mark != i64::MIN
        };
        let upto = match tail_max {
            Some(u) => u,
            None if !layout || extend || mark == i64::MIN => return Ok(None),
            // A base compacted before the closed history existed: migrate it.
            None => mark,
        };
        let base = self.current.table.table_provider().await.map_err(df_err)?;
        let (tail_from, since) = if incremental {
            (
                mark,
                self.closed.committed.state.closed_since_us.unwrap_or(mark),
            )
        } else {
            (i64::MIN, upto)
        };
        let tail = crate::mor::tail(ctx.read_table(log).map_err(df_err)?, tail_from, Some(upto))
            .map_err(df_err)?;
        ctx.register_table("__tidemark_tail", tail.into_view())
            .map_err(df_err)?;
        if incremental {
            let b = ctx
                .read_table(base.clone())
                .and_then(|d| d.select(crate::closed::base_version_exprs(&self.schema)))
                .map_err(df_err)?;
            ctx.register_table("__tidemark_base", b.into_view())
                .map_err(df_err)?;
            ctx.register_table("__tidemark_base_raw", base)
                .map_err(df_err)?;
        }
        let mut closed_rows = 0;
        // Closed rows: in the order readers prune by, `_valid_from` within each week
        // of `_valid_to` (one compaction closes a few days' versions). Planned over the
        // base as it is now; written after the new base (see below).
        let closures = if layout {
            let df = ctx
                .sql(&format!(
                    "SELECT * FROM ({body}) ORDER BY date_trunc('week', {vt}), {vf}",
                    body = crate::closed::closures_sql(
                        &self.schema,
                        extend.then_some("__tidemark_base"),
                        "__tidemark_tail"
                    ),
                    vt = quote(tidemark_core::schema::VALID_TO),
                    vf = quote(tidemark_core::schema::VALID_FROM),
                ))
                .await
                .and_then(|df| df.with_column(CLOSED_MARK, lit(crate::mor::ingest_literal(upto))))
                .map_err(df_err)?;
            Some(conform_plan(df, &closed_arrow(&self.schema)).map_err(df_err)?)
        } else {
            None
        };
        let new_base = ctx
            .sql(&crate::closed::base_sql(
                &self.schema,
                incremental.then_some("__tidemark_base_raw"),
                "__tidemark_tail",
            ))
            .await
            .map_err(df_err)?;
        let new_base = conform_plan(new_base, &self.schema.current_schema()).map_err(df_err)?;
        let state = SourceState {
            merged_through_us: Some(upto),
            binlog: self.history.committed.state.binlog.clone(),
            last_source_ts_us: self.history.committed.state.last_source_ts_us,
            ..self.current.committed.state.clone()
        };
        let props = writer_properties(&self.schema.current_schema());
        let rows = self
            .current
            .write_plan(new_base, state, SaveMode::Overwrite, props)
            .await?;
        // The closures go in after the base, so the closed history is never ahead
        // of a base: a crash between the two commits leaves it behind the base's mark,
        // readers then take the log window (always right), and the next compaction
        // rebuilds it. The other order would leave closures a concurrent compaction
        // (another Kafka worker's) could not tell from a crashed one's.
        if let Some(closures) = closures {
            let want = closed_arrow(&self.schema);
            let closed_state = SourceState {
                closed_through_us: Some(upto),
                closed_since_us: Some(since),
                ..self.closed.committed.state.clone()
            };
            let mode = if extend {
                SaveMode::Append
            } else {
                SaveMode::Overwrite
            };
            closed_rows = self
                .closed
                .write_plan(
                    closures,
                    closed_state,
                    mode,
                    closed_writer_properties(&want),
                )
                .await?;
        }
        debug!(table = %name, closed_rows, rebuilt = !extend, "compacted");
        Ok(Some(Compaction {
            tail_rows: tail_rows as u64,
            rows,
            merged_through_us: upto,
        }))
    }

    /// The merge source for the current table: the last change per key, with a flag
    /// telling deletes apart.
    fn merge_source(&self, batch: &ChangeBatch, ingest_ts_us: i64) -> Result<RecordBatch> {
        let (last, deleted) = collapse_by_key(batch)?;
        let rows = current_rows(&last, ingest_ts_us)?;
        let mut fields: Vec<Field> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(DELETE_FLAG, DataType::Boolean, false));
        let mut cols: Vec<ArrayRef> = rows.columns().to_vec();
        cols.push(Arc::new(deleted));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| Error::Batch {
            table: self.schema.name.sql(),
            message: e.to_string(),
        })
    }

    /// Re-read one table after others (maintenance) committed to it; maintenance
    /// commits repeat the committed state, so it stays the same.
    pub(crate) async fn refresh(&mut self, kind: TableKind) -> Result<()> {
        let t = self.target(kind);
        t.table.update_state().await.map_err(|e| t.delta_err(e))
    }

    /// The Delta table handle (for reads after writing).
    pub fn delta(&self, kind: TableKind) -> &DeltaTable {
        match kind {
            TableKind::Current => &self.current.table,
            TableKind::History => &self.history.table,
            TableKind::Closed => &self.closed.table,
        }
    }
}

/// A column read back through DataFusion, in the type `field` stores it as: reads
/// hand out strings and binaries as view types (`Utf8View`), change batches have the
/// plain ones.
fn conform(column: &ArrayRef, field: &Field, table: &str) -> Result<ArrayRef> {
    if column.data_type() == field.data_type() {
        return Ok(column.clone());
    }
    deltalake::arrow::compute::cast(column, field.data_type()).map_err(|e| Error::Batch {
        table: table.to_string(),
        message: format!("column {}: {e}", field.name()),
    })
}

/// Change batches as the rows stored in one of the two tables.
fn stored_rows(
    kind: TableKind,
    batches: &[ChangeBatch],
    ingest_ts_us: i64,
) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| match kind {
            TableKind::Current => current_rows(b, ingest_ts_us),
            TableKind::History => history_rows(b, ingest_ts_us),
            TableKind::Closed => Err(closed_by_compaction(&b.table.name.sql())),
        })
        .collect()
}

/// `df` with exactly the columns of `want`, cast to their types (reads hand out
/// view types and SQL literals have their own), in that order.
fn conform_plan(
    df: deltalake::datafusion::prelude::DataFrame,
    want: &Schema,
) -> deltalake::datafusion::error::Result<deltalake::datafusion::prelude::DataFrame> {
    let exprs: Vec<Expr> = want
        .fields()
        .iter()
        .map(|f| {
            deltalake::datafusion::logical_expr::cast(
                col(Column::new_unqualified(f.name())),
                f.data_type().clone(),
            )
            .alias(f.name())
        })
        .collect();
    df.select(exprs)
}

/// The value of one count aggregate over `df`.
async fn count_of(
    df: deltalake::datafusion::prelude::DataFrame,
    n: Expr,
) -> deltalake::datafusion::error::Result<u64> {
    let b = df.aggregate(vec![], vec![n])?.collect().await?;
    Ok(b.first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<deltalake::arrow::array::Int64Array>()
                .map(|a| a.value(0) as u64)
        })
        .unwrap_or(0))
}

/// Delta file statistics (`stats` JSON of an add action) restricted to the columns
/// in `keep`: what a table adopting another's file records for it. `None` when the
/// statistics cannot be read (the file is then never skipped, which is only slower).
fn keep_stats(stats: &str, keep: &[String]) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(stats).ok()?;
    let obj = v.as_object_mut()?;
    for part in ["minValues", "maxValues", "nullCount"] {
        if let Some(serde_json::Value::Object(m)) = obj.get_mut(part) {
            m.retain(|k, _| keep.iter().any(|c| c == k));
        }
    }
    serde_json::to_string(&v).ok()
}

/// The rows of `df` as a plan delta-rs writes in `df`'s order: one stream, executed
/// in `df`'s own session (where its tables' stores are registered), behind a scan
/// with nothing to reorder.
///
/// Why not hand delta-rs the logical plan: the frames written this way end in ORDER
/// BY (the base by key, the closed history by validity), yet delta-rs wrote them
/// unordered, even with round-robin repartitioning off: the same plan, physically
/// planned in our session, ends in one ordered stream, so delta-rs's own planning of
/// its write (which wraps the input in operators of its own; which one loses the
/// order was not pinned down) drops the final merge of the sorted partitions, and its
/// single writer interleaves them. Every file then spanned the whole key range, so no
/// lookup could skip one (`the_compacted_base_is_ordered_by_key_across_and_within_files`
/// failed that way before this function).
async fn ordered_source(
    df: deltalake::datafusion::prelude::DataFrame,
) -> deltalake::datafusion::error::Result<deltalake::datafusion::logical_expr::LogicalPlan> {
    use deltalake::datafusion::catalog::streaming::StreamingTable;
    use deltalake::datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use deltalake::datafusion::physical_plan::ExecutionPlanProperties;

    let task = Arc::new(df.task_ctx());
    let mut plan = df.create_physical_plan().await?;
    if plan.output_partitioning().partition_count() > 1 {
        // Unordered anyway (no ORDER BY at the top): one stream all the same.
        plan = Arc::new(CoalescePartitionsExec::new(plan));
    }
    let schema = plan.schema();
    let stream = OneStream {
        schema: schema.clone(),
        plan,
        task,
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(stream)])?;
    Ok(SessionContext::new()
        .read_table(Arc::new(table))?
        .into_unoptimized_plan())
}

/// One partition of an executed plan, as a [`StreamingTable`] partition.
///
/// [`StreamingTable`]: deltalake::datafusion::catalog::streaming::StreamingTable
#[derive(Debug)]
struct OneStream {
    schema: SchemaRef,
    plan: Arc<dyn deltalake::datafusion::physical_plan::ExecutionPlan>,
    task: Arc<deltalake::datafusion::execution::TaskContext>,
}

impl deltalake::datafusion::physical_plan::streaming::PartitionStream for OneStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _ctx: Arc<deltalake::datafusion::execution::TaskContext>,
    ) -> deltalake::datafusion::execution::SendableRecordBatchStream {
        use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        match self.plan.execute(0, self.task.clone()) {
            Ok(s) => s,
            Err(e) => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(e) }),
            )),
        }
    }
}

/// The session delta-rs plans a [`Target::write_plan`] in: its defaults, without
/// round-robin repartitioning, which would deal the one ordered stream
/// ([`ordered_source`]) out to two, for delta-rs's single writer to interleave.
fn ordered_write_session(
) -> deltalake::DeltaResult<Arc<dyn deltalake::datafusion::catalog::Session>> {
    let overrides = std::collections::HashMap::from([(
        "datafusion.optimizer.enable_round_robin_repartition".to_string(),
        "false".to_string(),
    )]);
    let ctx =
        deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides)?;
    Ok(Arc::new(ctx.state()))
}

/// Parquet settings for the closed history: smaller row groups than the default
/// (a million rows), so row-group statistics on `_valid_from` skip more of a file
/// whose `_valid_to` range an instant needs.
fn closed_writer_properties(schema: &Schema) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(128 * 1024));
    for f in schema.fields() {
        if matches!(f.data_type(), DataType::Utf8) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    b.build()
}

/// Rows reach the closed history only through compaction.
fn closed_by_compaction(table: &str) -> Error {
    Error::Batch {
        table: table.to_string(),
        message: "the closed history is written by compaction only".into(),
    }
}

/// The closed history's columns: every version's (see `closed::version_columns`),
/// then `_valid_to` and `_closed_mark`.
fn closed_arrow(ts: &TableSchema) -> SchemaRef {
    use tidemark_core::schema::{CLOSED_MARK, VALID_TO};
    let mut f: Vec<Field> = ts
        .columns
        .iter()
        .chain(ts.shown_dropped())
        .map(|c| Field::new(&c.name, c.mysql_type().arrow_type(), true))
        .collect();
    f.extend(
        ts.history_schema().fields()[ts.columns.len()..]
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    let ty = tidemark_core::types::timestamp_type();
    f.push(Field::new(VALID_TO, ty.clone(), true));
    f.push(Field::new(CLOSED_MARK, ty, true));
    Arc::new(Schema::new(f))
}

/// The source table's schema stored in a Delta table tidemark created; `None` if
/// absent, unreadable, or naming a type this build cannot map (a table written by a
/// newer tidemark), so readers skip the table instead of failing on it later.
pub fn stored_schema(table: &DeltaTable) -> Option<TableSchema> {
    let json = table
        .snapshot()
        .ok()?
        .metadata()
        .configuration()
        .get(SCHEMA_KEY)?
        .clone();
    let schema: TableSchema = serde_json::from_str(&json).ok()?;
    let mappable = schema.columns.iter().all(|c| {
        tidemark_core::types::MySqlType::from_information_schema(
            &c.data_type,
            &c.column_type,
            c.precision,
            c.scale,
        )
        .is_some()
    });
    let key_ok = !schema.key.is_empty() && schema.key.iter().all(|&k| k < schema.columns.len());
    (mappable && key_ok).then_some(schema)
}

/// Parquet settings for tidemark's files: snappy, and dictionary encoding only for
/// string columns. Dictionaries pay off for strings (statuses, codes, `_op`,
/// `_source_pos`: smaller files, faster filters) but for numbers, decimals and
/// timestamps the per-value hashing cost more than it saved: on the 5M-row snapshot
/// benchmark this cut the snapshot from 4.46 s to 3.84 s and the files from 358 to
/// 338 MiB (bench/RESULTS.md).
fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false);
    for f in schema.fields() {
        if matches!(f.data_type(), DataType::Utf8) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    b.build()
}
