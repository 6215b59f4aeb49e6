//! A model's result landed as a tidemark table: the same history log, current table
//! (merge-on-read) and compaction as a source table, so `schema_history.model`,
//! `FOR SYSTEM_TIME AS OF` and `changes()` answer for models as for sources.
//!
//! A build lands what changed since the last build (inserts, updates, deletes, by
//! the model's key) in **one** history commit that also carries the build's
//! [`ModelProgress`] (its number, SQL hash, the input versions it read). Readers see
//! the previous build or this one, never half; a build that dies before its commit
//! left nothing, and one whose commit landed is not made again.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::functions_aggregate::expr_fn::count;
use deltalake::datafusion::logical_expr::{col, lit, Expr};
use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::change::ChangeBatch;
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::{ModelProgress, SourceState};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{stored_schema, TableKind, TableWriter, Warehouse};

use crate::error::Error;
use crate::project::Model;

/// `SourceState::source` of a model's commits.
pub const MODELS_SOURCE: &str = "models";

/// The MySQL-style column a result column lands as (tidemark's tables are typed by
/// the MySQL type their Arrow type comes from), or why it cannot.
fn column_of(name: &str, ty: &DataType) -> Result<ColumnSchema, String> {
    let c = |data_type: &str, column_type: String, precision: Option<u64>, scale: Option<u64>| {
        ColumnSchema {
            source_name: name.to_string(),
            name: name.to_string(),
            column_type,
            data_type: data_type.to_string(),
            precision,
            scale,
            stored: Vec::new(),
        }
    };
    let int = |t: &str, unsigned: bool| {
        c(
            t,
            format!("{t}{}", if unsigned { " unsigned" } else { "" }),
            None,
            Some(0),
        )
    };
    Ok(match ty {
        DataType::Int8 => int("tinyint", false),
        DataType::Int16 => int("smallint", false),
        DataType::Int32 => int("int", false),
        DataType::Int64 => int("bigint", false),
        DataType::UInt8 => int("tinyint", true),
        DataType::UInt16 => int("smallint", true),
        DataType::UInt32 => int("int", true),
        DataType::UInt64 => int("bigint", true),
        DataType::Decimal128(p, s) if *s >= 0 => c(
            "decimal",
            format!("decimal({p},{s})"),
            Some(*p as u64),
            Some(*s as u64),
        ),
        DataType::Float16 | DataType::Float32 => c("float", "float".into(), None, None),
        DataType::Float64 => c("double", "double".into(), None, None),
        DataType::Boolean => c("bit", "bit(1)".into(), Some(1), None),
        DataType::Date32 | DataType::Date64 => c("date", "date".into(), None, None),
        DataType::Timestamp(_, _) => c("timestamp", "timestamp(6)".into(), None, None),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            c("text", "text".into(), None, None)
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => c("blob", "blob".into(), None, None),
        DataType::Dictionary(_, v) => return column_of(name, v),
        DataType::Null => {
            return Err(format!(
                "column {name} is always NULL with no type: CAST it (e.g. CAST(NULL AS BIGINT) AS {name})"
            ))
        }
        other => {
            return Err(format!(
                "column {name} has type {other}, which a table cannot hold: CAST it to a number, text, date or timestamp"
            ))
        }
    })
}

/// The table a model's result lands as: its columns and key.
pub fn table_schema(model: &Model, result: &Schema) -> Result<TableSchema, Error> {
    let bad = |message: String| Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message,
    };
    let columns = result
        .fields()
        .iter()
        .map(|f| column_of(f.name(), f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key: Vec<String> = if model.config.unique_key.is_empty() {
        columns.iter().map(|c| c.name.clone()).collect()
    } else {
        model.config.unique_key.clone()
    };
    for k in &key {
        if !columns.iter().any(|c| c.name.eq_ignore_ascii_case(k)) {
            return Err(bad(format!(
                "unique_key names column {k}, which the result does not have (columns: {})",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let name = TableName {
        source_db: model.target.schema.clone(),
        source_table: model.target.table.clone(),
        schema: model.target.schema.clone(),
        table: model.target.table.clone(),
    };
    TableSchema::new(name, columns, &key, Naming::Preserve).map_err(|e| bad(e.to_string()))
}

/// The result as a change batch of `schema` (every row an insert at `ts_us`, which
/// the diff turns into what changed).
pub fn change_batch(
    model: &Model,
    schema: &Arc<TableSchema>,
    batches: &[RecordBatch],
    ts_us: i64,
    build: i64,
) -> Result<ChangeBatch, Error> {
    let bad = |message: String| Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message,
    };
    let target: SchemaRef = schema.change_schema();
    let n_cols = schema.columns.len();
    let mut out = Vec::with_capacity(batches.len());
    let pos = format!("build:{build}");
    for b in batches {
        let rows = b.num_rows();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(n_cols + 4);
        // By name: a table evolved in place keeps its columns' order, which the
        // model's new SELECT need not.
        for (c, f) in schema.columns.iter().zip(target.fields()) {
            let col = b
                .column_by_name(&c.name)
                .ok_or_else(|| bad(format!("the result has no column {}", c.name)))?;
            let v = cast_column(col, f.data_type())
                .map_err(|e| bad(format!("column {}: {e}", c.name)))?;
            cols.push(v);
        }
        cols.push(Arc::new(StringArray::from(vec!["c"; rows])));
        cols.push(Arc::new(
            TimestampMicrosecondArray::from(vec![ts_us; rows]).with_timezone("UTC"),
        ));
        cols.push(Arc::new(StringArray::from(vec![pos.as_str(); rows])));
        cols.push(Arc::new(Int64Array::from(vec![build; rows])));
        out.push(RecordBatch::try_new(target.clone(), cols).map_err(|e| bad(e.to_string()))?);
    }
    let data =
        deltalake::arrow::compute::concat_batches(&target, &out).map_err(|e| bad(e.to_string()))?;
    Ok(ChangeBatch {
        table: schema.clone(),
        data,
    })
}

/// Cast a result column to its landed type (timestamps of any unit and zone to UTC
/// microseconds, dictionaries to their values).
fn cast_column(col: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    let col = match col.data_type() {
        DataType::Timestamp(unit, Some(_)) if *unit != TimeUnit::Microsecond => cast(
            col,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )
        .map_err(|e| e.to_string())?,
        _ => col.clone(),
    };
    if col.data_type() == to {
        return Ok(col);
    }
    let out = cast(&col, to).map_err(|e| e.to_string())?;
    if out.null_count() > col.null_count() {
        return Err(format!(
            "some values do not fit {to} (CAST them in the model)"
        ));
    }
    Ok(out)
}

/// Refuse a result whose key repeats or is NULL: the model's history is by key, and
/// merging such rows would lose some of them.
pub async fn check_keys(
    model: &Model,
    keys: &[&str],
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), Error> {
    let bad = |message: String| Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message,
    };
    let df_err = |e: deltalake::datafusion::error::DataFusionError| bad(e.to_string());
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(schema, vec![batches.to_vec()]).map_err(df_err)?;
    let df = ctx.read_table(Arc::new(mem)).map_err(df_err)?;
    let key_cols: Vec<Expr> = keys.iter().map(|k| col(format!("\"{k}\""))).collect();
    let what = if model.config.unique_key.is_empty() {
        "rows (the model has no unique_key, so a whole row identifies itself)".to_string()
    } else {
        format!("unique_key ({})", keys.join(", "))
    };
    let null = key_cols
        .iter()
        .map(|c| c.clone().is_null())
        .reduce(Expr::or)
        .expect("a key");
    let nulls = df
        .clone()
        .filter(null)
        .map_err(df_err)?
        .count()
        .await
        .map_err(df_err)?;
    if nulls > 0 {
        return Err(bad(format!(
            "{nulls} row(s) have a NULL in the {what}: a key must identify each row (filter them out, or COALESCE the key)"
        )));
    }
    let dup = df
        .aggregate(key_cols, vec![count(lit(1)).alias("n")])
        .map_err(df_err)?
        .filter(col("n").gt(lit(1i64)))
        .map_err(df_err)?
        .limit(0, Some(3))
        .map_err(df_err)?
        .collect()
        .await
        .map_err(df_err)?;
    let shown: Vec<String> = dup
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                (0..b.num_columns() - 1)
                    .map(|c| {
                        deltalake::arrow::util::display::array_value_to_string(b.column(c), r)
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        })
        .collect();
    if !shown.is_empty() {
        return Err(bad(format!(
            "the result repeats {what}, e.g. ({}); make it unique (GROUP BY, DISTINCT) or set unique_key to the columns that are",
            shown.join("), (")
        )));
    }
    Ok(())
}

/// Open a model's table for landing `schema`: created when new, evolved in place when
/// its columns changed compatibly (a column added, dropped, widened); refused when a
/// table of that name is not a model's, or the change cannot apply in place.
pub async fn open(
    wh: &Warehouse,
    model: &Model,
    schema: TableSchema,
) -> Result<TableWriter, Error> {
    let lake = |source| Error::lake(&model.name, source);
    let bad = |message: String| Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message,
    };
    let t = &model.target;
    let url = wh.table_url(&t.schema, &t.table, TableKind::History);
    let (delta, exists) = wh.delta_table(&url).await.map_err(lake)?;
    let stored = exists.then(|| stored_schema(&delta)).flatten();
    let Some(stored) = stored else {
        let mut w = TableWriter::open(wh, Arc::new(schema))
            .await
            .map_err(lake)?;
        w.start_merge_on_read().await.map_err(lake)?;
        return Ok(w);
    };
    let state = tidemark_lake::committed_state(&delta)
        .await
        .map_err(lake)?
        .state;
    if state.source != MODELS_SOURCE {
        return Err(bad(format!(
            "{t} is a table landed from source {}, not a model's: give the model another name or schema",
            state.source
        )));
    }
    let mut w = TableWriter::open(wh, Arc::new(stored.clone()))
        .await
        .map_err(lake)?;
    w.evolve_current().await.map_err(lake)?;
    w.start_merge_on_read().await.map_err(lake)?;
    if stored.same_definition(&schema) && stored.key == schema.key {
        return Ok(w);
    }
    let log_columns: Vec<String> = w
        .delta(TableKind::History)
        .snapshot()
        .map(|s| s.schema().fields().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    let evolution = if stored.key_names() != schema.key_names() {
        Err(format!(
            "its key changed from ({}) to ({})",
            stored.key_names().join(", "),
            schema.key_names().join(", ")
        ))
    } else {
        tidemark_core::evolve::evolve(&stored, &schema, &[], &log_columns)
    };
    let evolution = evolution.map_err(|why| {
        bad(format!(
            "its result changed shape in a way its table cannot follow in place ({why}); build it whole again with `tidemark build --full-refresh --select {}` (the table so far, with its history, moves to .retired/)",
            model.name
        ))
    })?;
    let state = w.committed(TableKind::History).state.clone();
    w.evolve(evolution.schema, &evolution.added, state)
        .await
        .map_err(lake)?;
    tracing::info!(model = %model.name, changes = %evolution.changes.join("; "), "the model's columns changed; its table evolved in place");
    Ok(w)
}

/// Commit a build's changes with its `progress`, provided the table's newest commit
/// is still the build it started from (`after`: that build's number, `None` for a
/// new table). Two builds of one model at once (the daemon's and one by hand)
/// cannot both land: the second finds the first's commit and writes nothing.
pub async fn commit(
    writer: &mut TableWriter,
    model: &Model,
    changes: &ChangeBatch,
    progress: ModelProgress,
    after: Option<i64>,
) -> Result<(), Error> {
    let merge = |st: SourceState| {
        let newest = st.model.as_ref().map(|m| m.build);
        if newest != after {
            return Err(newest);
        }
        Ok(SourceState {
            source: MODELS_SOURCE.into(),
            source_table: model.name.clone(),
            model: Some(progress.clone()),
            last_source_ts_us: Some(chrono::Utc::now().timestamp_micros()),
            ..st
        })
    };
    match writer
        .append_history_shared(changes, merge)
        .await
        .map_err(|e| Error::lake(&model.name, e))?
    {
        Ok(_) => Ok(()),
        Err(newest) => Err(raced(model, newest, after)),
    }
}

/// Another build of `model` landed build `newest` while this one ran from build
/// `after`: nothing of this one is written.
pub fn raced(model: &Model, newest: Option<i64>, after: Option<i64>) -> Error {
    Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message: format!(
            "another build of this model landed (build {}) while this one ran from build {}; nothing of this one was written: build again",
            newest.unwrap_or(0),
            after.unwrap_or(0)
        ),
    }
}
